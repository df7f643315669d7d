//! The webhook's metrics (`archiver webhook`): requests by tenant and outcome, how long an
//! answer took, and how long from the vendor's `X-Timestamp` to the broker's confirm.
//! Labels are fixed words and the tenants of `ARCHIVER_TENANTS_FILE` (a bounded set): a
//! path that names no known tenant is counted as `unknown`.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

/// Webhook requests answered, by `tenant` and `outcome` (see [`WebhookOutcome`]).
pub const WEBHOOK_REQUESTS: &str = "archiver_webhook_requests_total";
/// Webhook requests being answered right now by this process.
pub const WEBHOOK_IN_FLIGHT: &str = "archiver_webhook_requests_in_flight";
/// Seconds from the request's arrival to its answer, by `outcome`.
pub const WEBHOOK_DURATION: &str = "archiver_webhook_request_duration_seconds";
/// Seconds from the delivery's `X-Timestamp` to the broker's confirm of its event.
pub const WEBHOOK_CONFIRM_LAG: &str = "archiver_webhook_timestamp_to_confirm_seconds";

/// How a webhook request ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// 200: the event is confirmed by the broker.
    Queued,
    /// 200: the session has no decision yet; nothing published.
    Ignored,
    /// 401 (missing, stale or wrong timestamp or signature) or 404 (unknown tenant).
    Unauthorized,
    /// 400: signed, but breaks the contract (dead-lettered); also 413, 408 and 405.
    Invalid,
    /// 503: the broker is down, did not confirm in time, or returned the message.
    Unavailable,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Queued => "queued",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::Invalid => "invalid",
            WebhookOutcome::Unavailable => "unavailable",
        }
    }
}

/// Describes the webhook's metrics (after [`super::install`]).
pub fn describe_webhook() {
    describe_counter!(
        WEBHOOK_REQUESTS,
        Unit::Count,
        "Webhook requests answered, by tenant and outcome."
    );
    describe_gauge!(
        WEBHOOK_IN_FLIGHT,
        Unit::Count,
        "Webhook requests being answered by this process."
    );
    describe_histogram!(
        WEBHOOK_DURATION,
        Unit::Seconds,
        "Time from a webhook request to its answer."
    );
    describe_histogram!(
        WEBHOOK_CONFIRM_LAG,
        Unit::Seconds,
        "Time from a delivery's X-Timestamp to the broker's confirm of its event."
    );
}

/// A request arrived (`+1`) or was answered (`-1`).
pub fn webhook_in_flight(change: f64) {
    gauge!(WEBHOOK_IN_FLIGHT).increment(change);
}

/// One request answered; `tenant` is a configured tenant or `unknown`.
pub fn webhook_answered(tenant: &str, outcome: WebhookOutcome, elapsed: Duration) {
    counter!(WEBHOOK_REQUESTS, "tenant" => tenant.to_owned(), "outcome" => outcome.as_str()).increment(1);
    histogram!(WEBHOOK_DURATION, "outcome" => outcome.as_str()).record(elapsed.as_secs_f64());
}

/// An event was confirmed `lag` after its delivery's `X-Timestamp`.
pub fn webhook_confirmed(lag: Duration) {
    histogram!(WEBHOOK_CONFIRM_LAG).record(lag.as_secs_f64());
}
