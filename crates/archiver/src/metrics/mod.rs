//! Prometheus metrics: the vocabulary (every metric name, unit, bucket layout and label,
//! defined here once), the per-event recorder (`recorder`) and the HTTP endpoints on
//! `ARCHIVER_METRICS_ADDR` (`http`: `/metrics`, `/healthz`, `/readyz`).
//!
//! The worker records through the helpers below so that no label can ever carry a URL, a
//! key or any other free text: labels are `&'static str` taken from enums (the pipeline's
//! own [`MediaStatus`] and [`Cause`] among them).

mod http;
mod recorder;
mod webhook;

pub use http::{serve, Readiness};
pub use recorder::EventMetrics;
pub use webhook::{describe_webhook, webhook_answered, webhook_confirmed, webhook_in_flight, WebhookOutcome};

use std::sync::OnceLock;
use std::time::Duration;

use archive::{Disposition, MediaStatus};
use media::MediaKind;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
/// Result events no queue bound to `archiver.results` took (published `mandatory`).
pub const RESULTS_UNROUTABLE: &str = "archiver_results_unroutable_total";
/// Events with neither `issued_at` nor a plausible AMQP `timestamp`: their URL expiry can
/// only be counted from their receipt, so each redelivery gives them a fresh lifetime.
pub const EVENTS_WITHOUT_ISSUE_TIME: &str = "archiver_events_without_issue_time_total";
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
    /// The session was erased: nothing stored, acknowledged (routing key `erased`).
    Erased,
    /// Returned to the queue after a transient failure or a drain.
    Requeued,
    /// Held unacknowledged through an outage of the store, to be run again when it answers
    /// (one count per hold; the event ends later with another outcome).
    Held,
}

impl EventOutcome {
    /// The outcome of a settled event: the disposition's own word, or `requeued` when it
    /// went back to the queue (a retry, or a settlement that could not be made durable).
    pub fn settled(disposition: &Disposition, durable: bool) -> EventOutcome {
        match disposition {
            Disposition::Done if durable => EventOutcome::Archived,
            Disposition::DeadLetter(_) if durable => EventOutcome::DeadLettered,
            Disposition::Erased if durable => EventOutcome::Erased,
            _ => EventOutcome::Requeued,
        }
    }

    fn label(self) -> &'static str {
        match self {
            EventOutcome::Archived => "archived",
            EventOutcome::DeadLettered => "dead-lettered",
            EventOutcome::Erased => "erased",
            EventOutcome::Requeued => "requeued",
            EventOutcome::Held => "held",
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
    describe_counter!(
        RESULTS_UNROUTABLE,
        Unit::Count,
        "Result events that no queue bound to archiver.results took."
    );
    describe_counter!(
        EVENTS_WITHOUT_ISSUE_TIME,
        Unit::Count,
        "Events with neither issued_at nor a plausible AMQP timestamp (URL expiry counted from receipt)."
    );
    describe_gauge!(READY, "1 while /readyz answers 200.");
    describe_gauge!(BUILD_INFO, "Always 1; the version label is the binary's version.");
}

/// A fetch attempt of a media starts. `attempt` counts from 1; `time_left` is the time
/// until the URL expires (zero when it already has).
pub fn fetch_attempt(kind: MediaKind, attempt: u32, time_left: Duration) {
    let kind = kind.as_str();
    counter!(FETCH_ATTEMPTS, "kind" => kind).increment(1);
    if attempt > 1 {
        counter!(FETCH_RETRIES, "kind" => kind).increment(1);
    } else {
        // Only the first attempt: retries would weigh the histogram toward slow media.
        histogram!(URL_TIME_LEFT, "kind" => kind).record(time_left.as_secs_f64());
    }
}

/// A result event was returned unroutable by the broker.
pub fn result_unroutable() {
    counter!(RESULTS_UNROUTABLE).increment(1);
}

/// A stage of one media took `elapsed`.
pub fn stage_finished(stage: Stage, kind: MediaKind, elapsed: Duration) {
    histogram!(STAGE_DURATION, "stage" => stage.label(), "kind" => kind.as_str()).record(elapsed.as_secs_f64());
}

/// A media ended with `status`; `stored_bytes` is its size when it was stored.
pub fn media_finished(kind: MediaKind, status: MediaStatus, stored_bytes: Option<u64>) {
    let kind = kind.as_str();
    counter!(MEDIA, "kind" => kind, "status" => status.as_str()).increment(1);
    if let Some(bytes) = stored_bytes {
        counter!(STORED_BYTES, "kind" => kind).increment(bytes);
    }
}

#[cfg(test)]
mod tests {
    use archive::{Cause, Disposition, Failure};

    use super::EventOutcome;

    /// A settled event's label is the disposition's own word (the result's routing key).
    #[test]
    fn settled_outcomes_are_labelled_with_the_routing_key() {
        let failure = Failure::new(Cause::InvalidEvent, "x");
        for disposition in [
            Disposition::Done,
            Disposition::DeadLetter(failure.clone()),
            Disposition::Erased,
        ] {
            let outcome = EventOutcome::settled(&disposition, true);
            assert_eq!(Some(outcome.label()), disposition.outcome(), "{disposition:?}");
            assert_eq!(EventOutcome::settled(&disposition, false), EventOutcome::Requeued);
        }
        assert_eq!(
            EventOutcome::settled(&Disposition::Retry(failure), true),
            EventOutcome::Requeued
        );
    }
}
