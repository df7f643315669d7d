//! `archiver webhook`: serves `POST /webhooks/{tenant}` on `ARCHIVER_WEBHOOK_ADDR` until
//! SIGTERM or SIGINT, then stops accepting, finishes the requests in flight and exits 0
//! (docs/contract.md section 8). Serves `/metrics`, `/healthz` and `/readyz` (the broker
//! confirms publishes) on `ARCHIVER_METRICS_ADDR` meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::broker::Publisher;
use crate::cli::{Settings, WebhookOptions};
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::metrics::{self, Readiness};
use crate::webhook::{self, Queue, Webhook};

/// How often `/readyz` is refreshed by a probe publish.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(options: &WebhookOptions, settings: &Settings) -> Result<Outcome, CommandError> {
    let mut problems = Problems::default();
    let topology = crate::worker::config::topology(settings, &mut problems);
    let tls = config::broker_tls(settings, &mut problems);
    let addr = problems.parse::<SocketAddr>(
        "ARCHIVER_WEBHOOK_ADDR",
        &options.webhook_addr,
        "an address and port such as 127.0.0.1:8080",
    );
    let metrics_addr = problems.parse::<SocketAddr>(
        "ARCHIVER_METRICS_ADDR",
        &settings.metrics_addr,
        "an address and port such as 127.0.0.1:9090",
    );
    let drain = problems
        .parse::<u64>("ARCHIVER_DRAIN_SECS", &settings.drain_secs, "a whole number of seconds")
        .map(Duration::from_secs);
    let tenants = config::tenants(settings, &mut problems);
    match &tenants {
        None => problems.push("ARCHIVER_TENANTS_FILE is required by archiver webhook (each tenant's webhook_secret)"),
        Some(tenants) if tenants.iter().all(|(_, tenant)| tenant.webhook_secrets.is_empty()) => {
            problems.push("ARCHIVER_TENANTS_FILE: no tenant has a webhook_secret, so every webhook would be refused")
        }
        Some(_) => {}
    }
    let (addr, metrics_addr, drain, tenants) = problems.finish_with(
        addr.zip(metrics_addr)
            .zip(drain)
            .zip(tenants)
            .map(|(((addr, metrics_addr), drain), tenants)| (addr, metrics_addr, drain, tenants)),
    )?;
    crate::logging::init(&settings.log_format)?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| CommandError::usage(format!("ARCHIVER_WEBHOOK_ADDR: cannot listen on {addr}: {err}")))?;
    let local_addr = listener.local_addr().context("the webhook's address")?;
    let readiness = Readiness::new();
    // The webhook never touches the store: only the broker decides whether it is ready.
    readiness.set_store(true);
    let server = metrics::serve(metrics_addr, readiness.clone())
        .await
        .map_err(|err| CommandError::usage(format!("ARCHIVER_METRICS_ADDR: cannot listen on {metrics_addr}: {err}")))?;
    metrics::describe_webhook();
    let shutdown = crate::worker::shutdown::on_signal().context("cannot listen for SIGTERM and SIGINT")?;
    let queue = Queue::new(Publisher::new(&settings.amqp_url, &tls), topology, readiness.clone());
    let webhook = Arc::new(Webhook { tenants, queue });
    let probe = tokio::spawn(probe(webhook.clone(), shutdown.clone()));
    // Not ready from the first moment of the drain, so that the Service stops sending traffic.
    let draining = {
        let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            readiness.set_draining(true);
        })
    };
    tracing::info!(
        addr = %local_addr,
        metrics_addr = %server.local_addr(),
        "serving POST /webhooks/{{tenant}}; /metrics, /healthz and /readyz on the metrics address"
    );

    webhook::serve(listener, webhook.clone(), shutdown.clone(), drain).await;
    let _ = draining.await;
    let _ = probe.await;
    webhook.queue.close().await;
    server.stop();
    tracing::info!("webhook stopped");
    Ok(Outcome::Done)
}

/// Keeps `/readyz` told whether the broker confirms publishes, until shutdown.
async fn probe(webhook: Arc<Webhook>, shutdown: CancellationToken) {
    loop {
        webhook.queue.probe().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}
