//! The worker's part of the configuration (CONTRACT.md section 7 plus the drain and the
//! delivery limit), validated with every problem reported at once.

use std::time::Duration;

use crate::cli::Settings;
use crate::config::Problems;

use super::{Topology, WorkerConfig};

/// Queue names are at most 255 bytes, and `{queue}.dlx` / `{queue}.dlq` must fit too.
const MAX_QUEUE_NAME_BYTES: usize = 255 - ".dlq".len();

/// The broker URL and topology, for `archiver topology` and `archiver worker`.
pub fn topology(settings: &Settings, problems: &mut Problems) -> Topology {
    let queue = settings.queue.trim().to_owned();
    if queue.is_empty() || queue.len() > MAX_QUEUE_NAME_BYTES || queue.chars().any(char::is_control) {
        problems.push(format!(
            "ARCHIVER_QUEUE must be a queue name of 1 to {MAX_QUEUE_NAME_BYTES} bytes without control characters, got {:?}",
            settings.queue
        ));
    } else if queue.starts_with("amq.") {
        problems.push(format!(
            "ARCHIVER_QUEUE must not start with `amq.` (reserved by the broker), got {queue:?}"
        ));
    }
    let delivery_limit = problems
        .parse::<u32>(
            "ARCHIVER_DELIVERY_LIMIT",
            &settings.delivery_limit,
            "a whole number of deliveries, at least 1",
        )
        .filter(|limit| *limit >= 1)
        .unwrap_or_else(|| {
            if settings.delivery_limit.trim() == "0" {
                problems.push("ARCHIVER_DELIVERY_LIMIT must be at least 1, got \"0\"");
            }
            1
        });
    let nodes: Vec<&str> = settings.amqp_url.split(',').map(str::trim).collect();
    if nodes
        .iter()
        .any(|url| !url.starts_with("amqp://") && !url.starts_with("amqps://"))
    {
        // The URL may hold a password: name the setting, never echo the value.
        problems.push("ARCHIVER_AMQP_URL must start with amqp:// or amqps://");
    }
    Topology { queue, delivery_limit }
}

/// Everything `archiver worker` needs besides the pipeline.
pub fn worker(settings: &Settings, problems: &mut Problems) -> WorkerConfig {
    let topology = topology(settings, problems);
    let concurrency = problems
        .parse::<u16>(
            "ARCHIVER_CONCURRENCY",
            &settings.concurrency,
            "a whole number of events from 1 to 65535",
        )
        .filter(|concurrency| *concurrency >= 1)
        .unwrap_or_else(|| {
            if settings.concurrency.trim() == "0" {
                problems.push("ARCHIVER_CONCURRENCY must be at least 1, got \"0\"");
            }
            1
        });
    let drain_secs = problems
        .parse::<u64>("ARCHIVER_DRAIN_SECS", &settings.drain_secs, "a whole number of seconds")
        .unwrap_or_default();
    WorkerConfig {
        amqp_url: settings.amqp_url.clone(),
        broker_tls: crate::config::broker_tls(settings, problems),
        topology,
        concurrency,
        drain: Duration::from_secs(drain_secs),
        panic_on_session: test_panic_session(),
    }
}

/// `ARCHIVER_TEST_PANIC_SESSION_ID`, read only in test builds (`debug_assertions`): the
/// integration tests use it to make one event's handler panic. Release builds, such as
/// the container image's (deploy/Dockerfile builds `--release`), never read it.
fn test_panic_session() -> Option<String> {
    if cfg!(debug_assertions) {
        std::env::var("ARCHIVER_TEST_PANIC_SESSION_ID").ok()
    } else {
        None
    }
}
