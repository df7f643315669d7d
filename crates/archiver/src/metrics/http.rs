//! The HTTP endpoints on `ARCHIVER_METRICS_ADDR`: `/metrics`, `/healthz` (the process is
//! alive) and `/readyz` (connected to the broker, S3 reachable, not draining).
//!
//! The text format is rendered by `metrics-exporter-prometheus`; only the HTTP listener is
//! ours, because the exporter's own listener cannot answer `/healthz` and `/readyz` on
//! the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{install, READY};

/// The worker's readiness, shared with `/readyz`: ready when connected to the broker and
/// S3 is reachable, and not draining. Cheap to clone; every clone is the same state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<ReadinessState>);

#[derive(Debug, Default)]
struct ReadinessState {
    broker: AtomicBool,
    store: AtomicBool,
    /// Publishes are confirmed; `false` while the broker blocks or does not confirm them.
    publisher: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Not ready: nothing is connected yet.
    pub fn new() -> Self {
        let readiness = Self::default();
        // Publishes are presumed confirmed until one is not.
        readiness.0.publisher.store(true, Ordering::Relaxed);
        readiness
    }

    /// The consumer's connection to the broker is up (or lost).
    pub fn set_broker(&self, connected: bool) {
        self.0.broker.store(connected, Ordering::Relaxed);
        self.publish();
    }

    /// The last call to S3 succeeded (or failed for a reason of the store, not of a media).
    pub fn set_store(&self, reachable: bool) {
        self.0.store.store(reachable, Ordering::Relaxed);
        self.publish();
    }

    /// The broker confirms publishes (or stopped: blocked, unconfirmed).
    pub fn set_publisher(&self, confirming: bool) {
        self.0.publisher.store(confirming, Ordering::Relaxed);
        self.publish();
    }

    /// SIGTERM received: the worker takes no new events. Never reset in a process.
    pub fn set_draining(&self, draining: bool) {
        self.0.draining.store(draining, Ordering::Relaxed);
        self.publish();
    }

    pub fn is_ready(&self) -> bool {
        self.0.broker.load(Ordering::Relaxed)
            && self.0.store.load(Ordering::Relaxed)
            && self.0.publisher.load(Ordering::Relaxed)
            && !self.0.draining.load(Ordering::Relaxed)
    }

    /// The reasons `/readyz` answers 503, for its body (fixed words, no error text).
    fn not_ready_reasons(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if !self.0.broker.load(Ordering::Relaxed) {
            reasons.push("broker not connected");
        }
        if !self.0.store.load(Ordering::Relaxed) {
            reasons.push("store not reachable");
        }
        if !self.0.publisher.load(Ordering::Relaxed) {
            reasons.push("publishes not confirmed");
        }
        if self.0.draining.load(Ordering::Relaxed) {
            reasons.push("draining");
        }
        reasons
    }

    fn publish(&self) {
        gauge!(READY).set(if self.is_ready() { 1.0 } else { 0.0 });
    }
}

/// The running metrics endpoint. Dropping it does not stop it; call [`MetricsServer::stop`].
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting scrapes; call it last so that the drain stays observable.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// How long one scrape or probe connection may take: a stuck client must not pin a task.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often histogram samples are folded into buckets when nobody scrapes, so that
/// memory stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the recorder (see [`install`]), binds `addr` and serves `/metrics`, `/healthz`
/// and `/readyz` until [`MetricsServer::stop`]. Binding errors (address in use, bad
/// address) are returned here so that the worker fails at start, not later.
pub async fn serve(addr: SocketAddr, readiness: Readiness) -> std::io::Result<MetricsServer> {
    let handle = install();
    readiness.publish();
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let handle = handle.clone();
                    let readiness = readiness.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let response = respond(&request, &handle, &readiness);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let connection = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                        // A failed or timed-out scrape only concerns that scraper.
                        let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                    });
                }
                _ = upkeep.tick() => handle.run_upkeep(),
            }
        }
    });
    Ok(MetricsServer { local_addr, task })
}

fn respond<B>(request: &Request<B>, handle: &PrometheusHandle, readiness: &Readiness) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, handle.render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if readiness.is_ready() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", readiness.not_ready_reasons().join(", ")),
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EventMetrics, EventOutcome};
    use archive::MediaStatus;
    use media::MediaKind;
    use time::OffsetDateTime;

    async fn get(client: &reqwest::Client, server: &MetricsServer, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", server.local_addr());
        let response = client.get(url).send().await.expect("the metrics endpoint answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    /// The value of one series in the text format; 0 when it is not there yet.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn endpoints_answer_health_readiness_and_metrics() {
        let readiness = Readiness::new();
        let server = serve("127.0.0.1:0".parse().unwrap(), readiness.clone())
            .await
            .expect("binds port 0");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        assert_eq!(get(&client, &server, "/healthz").await.0, 200);
        assert_eq!(get(&client, &server, "/nope").await.0, 404);

        // Readiness needs the broker and the store, and is lost while draining.
        let cases: &[(&str, bool, bool, bool, u16, &str)] = &[
            (
                "nothing connected",
                false,
                false,
                false,
                503,
                "broker not connected, store not reachable",
            ),
            ("broker only", true, false, false, 503, "store not reachable"),
            ("store only", false, true, false, 503, "broker not connected"),
            ("both", true, true, false, 200, "ready"),
            ("draining", true, true, true, 503, "draining"),
        ];
        for (name, broker, store, draining, status, body) in cases {
            readiness.set_broker(*broker);
            readiness.set_store(*store);
            readiness.set_draining(*draining);
            let (got_status, got_body) = get(&client, &server, "/readyz").await;
            assert_eq!(got_status, *status, "{name}");
            assert!(got_body.contains(body), "{name}: {got_body:?}");
        }

        // Other tests in this process may record too (the recorder is global), so compare
        // each series before and after rather than expecting absolute values.
        let series: &[(&str, f64)] = &[
            ("archiver_events_total{outcome=\"archived\"}", 1.0),
            ("archiver_events_total{outcome=\"dead-lettered\"}", 0.0),
            ("archiver_media_total{kind=\"video\",status=\"stored\"}", 1.0),
            ("archiver_media_total{kind=\"target\",status=\"rejected\"}", 1.0),
            ("archiver_media_total{kind=\"source\",status=\"absent\"}", 1.0),
            ("archiver_fetch_attempts_total{kind=\"video\"}", 2.0),
            ("archiver_fetch_retries_total{kind=\"video\"}", 1.0),
            ("archiver_fetch_attempts_total{kind=\"target\"}", 1.0),
            ("archiver_fetch_retries_total{kind=\"target\"}", 0.0),
            ("archiver_stored_bytes_total{kind=\"video\"}", 2_337_998.0),
            ("archiver_stored_bytes_total{kind=\"target\"}", 0.0),
            // About 3200 s left: in the le="3300" bucket, not in le="3000"; first attempts only.
            ("archiver_url_time_left_seconds_bucket{kind=\"video\",le=\"3300\"}", 1.0),
            ("archiver_url_time_left_seconds_bucket{kind=\"video\",le=\"3000\"}", 0.0),
            ("archiver_url_time_left_seconds_count{kind=\"video\"}", 1.0),
            // 400 s old at receipt.
            ("archiver_event_age_seconds_bucket{le=\"600\"}", 1.0),
            ("archiver_event_age_seconds_bucket{le=\"300\"}", 0.0),
            (
                "archiver_stage_duration_seconds_count{stage=\"media\",kind=\"video\"}",
                1.0,
            ),
            (
                "archiver_stage_duration_seconds_count{stage=\"media\",kind=\"source\"}",
                0.0,
            ),
            ("archiver_event_duration_seconds_count{outcome=\"archived\"}", 1.0),
        ];
        let before = get(&client, &server, "/metrics").await.1;

        // An event issued 400 s ago: 3200 s left of its hour when its fetches start.
        let issued_at = (OffsetDateTime::now_utc() - time::Duration::seconds(400))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body = format!(
            r#"{{"session_id": "11111111-2222-3333-4444-555555555555", "issued_at": "{issued_at}",
                "face": {{"status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
                          "face_match_similarity": 90, "liveness_confidence": 90, "source_image": null,
                          "target_image": "https://media.example/t.jpg", "video_url": "https://media.example/v.mp4"}}}}"#
        );
        let event = archive::parse_event(body.as_bytes()).expect("a valid event");
        let received = archive::Received {
            amqp_timestamp: None,
            received_at: OffsetDateTime::now_utc(),
        };
        let observer = EventMetrics::for_event(&event, &received, Duration::from_secs(3600));
        let progress: &dyn archive::ProgressObserver = observer.as_ref();
        progress.attempt_started(MediaKind::Video);
        progress.bytes(MediaKind::Video, 1000);
        // A retry starts again from zero bytes: only the last attempt's bytes are stored.
        progress.attempt_started(MediaKind::Video);
        progress.bytes(MediaKind::Video, 2_000_000);
        progress.bytes(MediaKind::Video, 337_998);
        progress.finished(MediaKind::Video, MediaStatus::Stored);
        progress.attempt_started(MediaKind::Target);
        progress.finished(MediaKind::Target, MediaStatus::Rejected);
        progress.finished(MediaKind::Source, MediaStatus::Absent);
        observer.finish(EventOutcome::Archived);
        // A second settlement of the same event is not counted twice.
        observer.finish(EventOutcome::DeadLettered);

        let (status, after) = get(&client, &server, "/metrics").await;
        assert_eq!(status, 200);
        for (name, delta) in series {
            let change = value(&after, name) - value(&before, name);
            assert_eq!(
                change, *delta,
                "{name} changed by {change}, expected {delta}, in:\n{after}"
            );
        }
        for expected in [
            "archiver_build_info{version=",
            "# TYPE archiver_ready gauge",
            "# HELP archiver_url_time_left_seconds",
            "# TYPE archiver_url_time_left_seconds histogram",
        ] {
            assert!(after.contains(expected), "missing {expected:?} in:\n{after}");
        }
        server.stop();
    }
}
