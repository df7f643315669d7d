//! `archiver worker`: consumes report events until SIGTERM or SIGINT, then stops taking
//! new ones, finishes or returns those in flight, and exits 0 (CONTRACT.md sections 4, 5).
//! Serves `/metrics`, `/healthz` and `/readyz` on `ARCHIVER_METRICS_ADDR` meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::Settings;
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::metrics::{self, Readiness};
use crate::worker::{self, Pipeline};

const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(settings: &Settings) -> Result<Outcome, CommandError> {
    // Every configuration problem at once: the worker's own, then the pipeline's.
    let mut problems = Problems::default();
    let worker_config = worker::config::worker(settings, &mut problems);
    let metrics_addr = problems.parse::<SocketAddr>(
        "ARCHIVER_METRICS_ADDR",
        &settings.metrics_addr,
        "an address and port such as 127.0.0.1:9090",
    );
    // The vendor API is optional for the worker: with it, an event whose URLs expired is
    // archived again with fresh ones (asked with its tenant's own key); without it, such an
    // event is dead-lettered.
    let tenants = config::tenants(settings, &mut problems);
    let vendor = config::vendor_clients(settings, tenants.as_ref(), false, &mut problems);
    let archive_config = config::archive_config(settings, &mut problems);
    let archive_config = problems.finish_with(archive_config)?;
    let metrics_addr = metrics_addr.ok_or_else(|| CommandError::usage("ARCHIVER_METRICS_ADDR is invalid"))?;
    crate::logging::init(&settings.log_format)?;

    let url_ttl = archive_config.fetch.url_ttl;
    let archiver = archive::Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive pipeline: {err}")))?;
    let pipeline = Pipeline::new(archiver.clone(), url_ttl).with_vendor(vendor);
    let readiness = Readiness::new();
    let server = metrics::serve(metrics_addr, readiness.clone())
        .await
        .map_err(|err| CommandError::usage(format!("ARCHIVER_METRICS_ADDR: cannot listen on {metrics_addr}: {err}")))?;
    tracing::info!(addr = %server.local_addr(), "serving /metrics, /healthz and /readyz");
    let shutdown = worker::shutdown::on_signal().context("cannot listen for SIGTERM and SIGINT")?;
    let store_probe = store_probe(archiver.clone());
    let result = worker::run(
        worker_config,
        Arc::new(pipeline),
        readiness,
        store_probe,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    server.stop();
    result?;
    Ok(Outcome::Done)
}

/// Asks whether the bucket answers, bounded: for `/readyz`, and to end a store outage.
fn store_probe(archiver: archive::Archiver) -> worker::StoreProbe {
    Arc::new(move || {
        let archiver = archiver.clone();
        Box::pin(async move {
            match tokio::time::timeout(STORE_PROBE_TIMEOUT, archiver.check_ready()).await {
                Ok(Ok(())) => true,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "the bucket does not answer");
                    false
                }
                Err(_) => {
                    tracing::warn!("the bucket did not answer within {}s", STORE_PROBE_TIMEOUT.as_secs());
                    false
                }
            }
        })
    })
}
