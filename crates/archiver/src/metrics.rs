//! Prometheus metrics and the health endpoints on `ARCHIVER_METRICS_ADDR`: `/metrics`,
//! `/healthz` (the process is alive) and `/readyz` (connected to the broker, S3 reachable,
//! not draining).
//!
//! Every metric name, unit and bucket layout is defined here, once; the worker records
//! through the helpers below so that no label can ever carry a URL, a key or any other
//! free text (labels are `&'static str` taken from enums).
//!
//! The text format is rendered by `metrics-exporter-prometheus`; only the HTTP listener is
//! ours, because the exporter's own listener cannot answer `/healthz` and `/readyz` on
//! the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use media::MediaKind;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Events finished, by `outcome` (see [`EventOutcome`]).
pub const EVENTS: &str = "archiver_events_total";
/// Media finished, by `kind` and `status` (see [`MediaStatus`]).
pub const MEDIA: &str = "archiver_media_total";
/// HTTP fetch attempts started, by `kind` (the first attempt included).
pub const FETCH_ATTEMPTS: &str = "archiver_fetch_attempts_total";
/// Fetch attempts that were retries of an earlier failed attempt, by `kind`.
pub const FETCH_RETRIES: &str = "archiver_fetch_retries_total";
/// Bytes written to S3 for stored media, by `kind`.
pub const STORED_BYTES: &str = "archiver_stored_bytes_total";
/// Seconds spent per stage of one media, by `stage` and `kind`.
pub const STAGE_DURATION: &str = "archiver_stage_duration_seconds";
/// Seconds from receipt of an event to its acknowledgement, dead-lettering or requeue.
pub const EVENT_DURATION: &str = "archiver_event_duration_seconds";
/// Age of an event when the worker receives it (from `issued_at` or the AMQP timestamp).
pub const EVENT_AGE: &str = "archiver_event_age_seconds";
/// Time left before the media URL expires when its fetch starts, by `kind`.
pub const URL_TIME_LEFT: &str = "archiver_url_time_left_seconds";
/// Events being processed right now by this process.
pub const EVENTS_IN_FLIGHT: &str = "archiver_events_in_flight";
/// 1 while `/readyz` answers 200, else 0.
pub const READY: &str = "archiver_ready";
/// Always 1; the `version` label carries the binary's version.
pub const BUILD_INFO: &str = "archiver_build_info";

/// Short stages (a part of one event) span milliseconds to the per-fetch deadline.
const STAGE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Ages and times left are measured against the 60-minute URL lifetime: fine-grained where
/// an operator must act (the last ten minutes), coarse elsewhere.
const LIFETIME_BUCKETS: &[f64] = &[
    5.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3300.0, 3500.0, 3600.0,
];

/// How an event ended, as the `outcome` label of [`EVENTS`] and [`EVENT_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Manifest written and message acknowledged (routing key `archived`).
    Archived,
    /// Dead-lettered with a reason (routing key `dead-lettered`), invalid events included.
    DeadLettered,
    /// Returned to the queue after a transient failure or a drain.
    Requeued,
}

impl EventOutcome {
    fn label(self) -> &'static str {
        match self {
            EventOutcome::Archived => "archived",
            EventOutcome::DeadLettered => "dead-lettered",
            EventOutcome::Requeued => "requeued",
        }
    }
}

/// A media's `status` in the manifest (CONTRACT.md section 3), as a label of [`MEDIA`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    Stored,
    Absent,
    Rejected,
    Failed,
}

impl MediaStatus {
    fn label(self) -> &'static str {
        match self {
            MediaStatus::Stored => "stored",
            MediaStatus::Absent => "absent",
            MediaStatus::Rejected => "rejected",
            MediaStatus::Failed => "failed",
        }
    }
}

/// A stage of one media's processing, as the `stage` label of [`STAGE_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Downloading the bytes (all attempts).
    Fetch,
    /// Checking the bytes against the media rules (time spent inside the validator).
    Validate,
    /// Writing to S3 and reading the encryption back.
    Store,
    /// One whole media, first attempt to outcome. The pipeline streams fetch, validation
    /// and upload together, so this is the stage its progress reports can time.
    Media,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Validate => "validate",
            Stage::Store => "store",
            Stage::Media => "media",
        }
    }
}

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process;
/// later calls return the same handle) and describes every metric.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = recorder_builder().build_recorder();
            let handle = recorder.handle();
            // Only fails when another recorder is already installed, which this OnceLock
            // rules out for our own code; metrics then simply go to that recorder.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn recorder_builder() -> PrometheusBuilder {
    let builder = PrometheusBuilder::new();
    // The bucket lists are constants and non-empty, so these cannot fail.
    let builder = builder
        .set_buckets_for_metric(Matcher::Full(STAGE_DURATION.into()), STAGE_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EVENT_DURATION.into()), STAGE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(EVENT_AGE.into()), LIFETIME_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(URL_TIME_LEFT.into()), LIFETIME_BUCKETS));
    builder.unwrap_or_else(|_| PrometheusBuilder::new())
}

fn describe() {
    describe_counter!(EVENTS, Unit::Count, "Report events finished, by outcome.");
    describe_counter!(MEDIA, Unit::Count, "Media finished, by kind and manifest status.");
    describe_counter!(
        FETCH_ATTEMPTS,
        Unit::Count,
        "Media fetch attempts started, first attempts included."
    );
    describe_counter!(
        FETCH_RETRIES,
        Unit::Count,
        "Media fetch attempts that retried an earlier failure."
    );
    describe_counter!(STORED_BYTES, Unit::Bytes, "Bytes of media written to S3.");
    describe_histogram!(STAGE_DURATION, Unit::Seconds, "Time spent per stage of one media.");
    describe_histogram!(
        EVENT_DURATION,
        Unit::Seconds,
        "Time from receipt of an event to its outcome."
    );
    describe_histogram!(
        EVENT_AGE,
        Unit::Seconds,
        "Age of an event when received, from issued_at or the AMQP timestamp."
    );
    describe_histogram!(
        URL_TIME_LEFT,
        Unit::Seconds,
        "Time left before the media URL expires when its fetch starts; low values mean the archive is losing the race."
    );
    describe_gauge!(EVENTS_IN_FLIGHT, Unit::Count, "Events being processed by this process.");
    describe_gauge!(READY, "1 while /readyz answers 200.");
    describe_gauge!(BUILD_INFO, "Always 1; the version label is the binary's version.");
}

/// A fetch attempt of a media starts. `attempt` counts from 1; `time_left` is the time
/// until the URL expires (zero when it already has).
pub fn fetch_attempt(kind: media::MediaKind, attempt: u32, time_left: Duration) {
    let kind = kind.as_str();
    counter!(FETCH_ATTEMPTS, "kind" => kind).increment(1);
    if attempt > 1 {
        counter!(FETCH_RETRIES, "kind" => kind).increment(1);
    } else {
        // Only the first attempt: retries would weigh the histogram toward slow media.
        histogram!(URL_TIME_LEFT, "kind" => kind).record(time_left.as_secs_f64());
    }
}

/// A stage of one media took `elapsed`.
pub fn stage_finished(stage: Stage, kind: media::MediaKind, elapsed: Duration) {
    histogram!(STAGE_DURATION, "stage" => stage.label(), "kind" => kind.as_str()).record(elapsed.as_secs_f64());
}

/// A media ended with `status`; `stored_bytes` is its size when it was stored.
pub fn media_finished(kind: media::MediaKind, status: MediaStatus, stored_bytes: Option<u64>) {
    let kind = kind.as_str();
    counter!(MEDIA, "kind" => kind, "status" => status.label()).increment(1);
    if let Some(bytes) = stored_bytes {
        counter!(STORED_BYTES, "kind" => kind).increment(bytes);
    }
}

/// One event's metrics, fed by the pipeline's progress reports: create it when the
/// event arrives, pass it to `Archiver::archive_with_progress`, and call
/// [`EventMetrics::finish`] with the outcome once the message is settled.
///
/// It records the event's age at receipt, and per media: fetch attempts and retries, the
/// time left before the URL expires at the first attempt, bytes stored, the final status
/// and the media's duration.
#[derive(Debug)]
pub struct EventMetrics {
    started: Instant,
    /// When each media's URL expires (CONTRACT.md section 1), by [`slot`].
    expiry: [Option<OffsetDateTime>; 3],
    attempts: [AtomicU32; 3],
    /// Bytes of the current attempt (a retry starts again from zero).
    bytes: [AtomicU64; 3],
    first_attempt: [Mutex<Option<Instant>>; 3],
    finished: AtomicBool,
}

impl EventMetrics {
    /// A parsed event has arrived. `url_ttl` is `ARCHIVER_URL_TTL_SECS`.
    pub fn for_event(event: &archive::ReportEvent, received: &archive::Received, url_ttl: Duration) -> Arc<Self> {
        let issued = event.issued_at.or(received.amqp_timestamp);
        let age = issued.map(|issued| positive(received.received_at - issued));
        let expiry = archive::event_expiry(event, received, url_ttl);
        let face = &event.face;
        let media_expiry = |url: Option<&url::Url>| url.map(|url| archive::media_expiry(expiry, url));
        Self::start(
            age,
            [
                media_expiry(face.source_image.as_ref()),
                media_expiry(face.target_image.as_ref()),
                media_expiry(face.video_url.as_ref()),
            ],
        )
    }

    /// An event that could not be parsed has arrived (it will be dead-lettered).
    pub fn for_unparsed() -> Arc<Self> {
        Self::start(None, [None, None, None])
    }

    fn start(age: Option<Duration>, expiry: [Option<OffsetDateTime>; 3]) -> Arc<Self> {
        gauge!(EVENTS_IN_FLIGHT).increment(1.0);
        if let Some(age) = age {
            histogram!(EVENT_AGE).record(age.as_secs_f64());
        }
        Arc::new(EventMetrics {
            started: Instant::now(),
            expiry,
            attempts: Default::default(),
            bytes: Default::default(),
            first_attempt: Default::default(),
            finished: AtomicBool::new(false),
        })
    }

    /// The message is settled with `outcome`. Only the first call counts.
    pub fn finish(&self, outcome: EventOutcome) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        gauge!(EVENTS_IN_FLIGHT).decrement(1.0);
        counter!(EVENTS, "outcome" => outcome.label()).increment(1);
        histogram!(EVENT_DURATION, "outcome" => outcome.label()).record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for EventMetrics {
    /// An event dropped without an outcome (its task was aborted) is no longer in flight.
    fn drop(&mut self) {
        if !self.finished.load(Ordering::Relaxed) {
            gauge!(EVENTS_IN_FLIGHT).decrement(1.0);
        }
    }
}

impl archive::ProgressObserver for EventMetrics {
    fn attempt_started(&self, kind: MediaKind) {
        let slot = slot(kind);
        let attempt = self.attempts[slot].fetch_add(1, Ordering::Relaxed) + 1;
        self.bytes[slot].store(0, Ordering::Relaxed);
        if attempt == 1 {
            if let Ok(mut first) = self.first_attempt[slot].lock() {
                *first = Some(Instant::now());
            }
        }
        let time_left = self.expiry[slot].map_or(Duration::ZERO, |expiry| positive(expiry - OffsetDateTime::now_utc()));
        fetch_attempt(kind, attempt, time_left);
    }

    fn bytes(&self, kind: MediaKind, bytes: u64) {
        self.bytes[slot(kind)].fetch_add(bytes, Ordering::Relaxed);
    }

    fn attempt_timings(&self, kind: MediaKind, timings: &archive::StageTimings) {
        stage_finished(Stage::Fetch, kind, timings.fetch);
        stage_finished(Stage::Validate, kind, timings.validate);
        stage_finished(Stage::Store, kind, timings.store);
    }

    fn finished(&self, kind: MediaKind, status: &'static str) {
        let slot = slot(kind);
        let status = match status {
            "stored" => MediaStatus::Stored,
            "absent" => MediaStatus::Absent,
            "rejected" => MediaStatus::Rejected,
            _ => MediaStatus::Failed,
        };
        let stored = (status == MediaStatus::Stored).then(|| self.bytes[slot].load(Ordering::Relaxed));
        media_finished(kind, status, stored);
        let first = self.first_attempt[slot].lock().ok().and_then(|first| *first);
        if let Some(first) = first {
            stage_finished(Stage::Media, kind, first.elapsed());
        }
    }
}

fn slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Source => 0,
        MediaKind::Target => 1,
        MediaKind::Video => 2,
    }
}

/// A signed span as a duration, zero when negative (a clock ahead of the vendor's).
fn positive(span: time::Duration) -> Duration {
    Duration::try_from(span).unwrap_or(Duration::ZERO)
}

/// The worker's readiness, shared with `/readyz`: ready when connected to the broker and
/// S3 is reachable, and not draining. Cheap to clone; every clone is the same state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<ReadinessState>);

#[derive(Debug, Default)]
struct ReadinessState {
    broker: AtomicBool,
    store: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Not ready: nothing is connected yet.
    pub fn new() -> Self {
        Self::default()
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

    /// SIGTERM received: the worker takes no new events. Never reset in a process.
    pub fn set_draining(&self, draining: bool) {
        self.0.draining.store(draining, Ordering::Relaxed);
        self.publish();
    }

    pub fn is_ready(&self) -> bool {
        self.0.broker.load(Ordering::Relaxed)
            && self.0.store.load(Ordering::Relaxed)
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
        progress.finished(MediaKind::Video, "stored");
        progress.attempt_started(MediaKind::Target);
        progress.finished(MediaKind::Target, "rejected");
        progress.finished(MediaKind::Source, "absent");
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
