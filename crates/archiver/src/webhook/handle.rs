//! One request to `POST /webhooks/{tenant}`, in the contract's order (section 8): the
//! tenant (404), the headers (401), the body read within its cap and deadline (413, 408),
//! the signature (401), and only then the body's meaning: an event published with a
//! confirm (200, or 503), nothing yet (200), or a contract breach (400, dead-lettered).

use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::auth::{self, Unauthorized};
use super::payload::{self, Invalid, Payload};
use super::Webhook;
use crate::metrics::{self, WebhookOutcome};

/// The largest body taken (the contract's 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client may take to send its body.
pub const BODY_READ_DEADLINE: Duration = Duration::from_secs(10);
/// What is read and thrown away of a too large body, so that the client sees the 413
/// rather than a reset while it is still sending; past it the connection is closed.
const DISCARD_BYTES: usize = 8 * 1024 * 1024;
const DISCARD_DEADLINE: Duration = Duration::from_secs(2);

/// What a request ended as: the answer, and what the log and the metrics say of it.
struct Answer {
    status: StatusCode,
    outcome: WebhookOutcome,
    /// `None` for `{"queued": true}`.
    reason: Option<String>,
    /// A configured tenant, or `unknown`.
    tenant: String,
    session_id: Option<String>,
    /// The connection cannot be reused (the body was not read to its end).
    close: bool,
}

impl Answer {
    fn new(status: StatusCode, outcome: WebhookOutcome, reason: impl Into<String>) -> Answer {
        Answer {
            status,
            outcome,
            reason: Some(reason.into()),
            tenant: "unknown".into(),
            session_id: None,
            close: false,
        }
    }

    fn tenant(self, tenant: &str) -> Answer {
        Answer {
            tenant: tenant.to_string(),
            ..self
        }
    }

    fn session(self, session_id: Option<String>) -> Answer {
        Answer { session_id, ..self }
    }
}

/// Answers one request; logs and counts it. The log names the tenant, the session, the
/// outcome and the latency: never the query string, a header value or the body.
pub async fn handle(webhook: &Webhook, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let in_flight = InFlight::start();
    let answer = answer(webhook, request).await;
    drop(in_flight);
    let elapsed = started.elapsed();
    metrics::webhook_answered(&answer.tenant, answer.outcome, elapsed);
    tracing::info!(
        tenant = %answer.tenant,
        session_id = answer.session_id.as_deref().unwrap_or("-"),
        outcome = answer.outcome.as_str(),
        status = answer.status.as_u16(),
        latency_ms = elapsed.as_millis() as u64,
        reason = answer.reason.as_deref().unwrap_or(""),
        "webhook answered"
    );
    let body = match &answer.reason {
        None => json!({ "queued": true }),
        Some(reason) => json!({ "queued": false, "reason": reason }),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().expect("a header value"),
    );
    if answer.close {
        headers.insert(hyper::header::CONNECTION, "close".parse().expect("a header value"));
    }
    response
}

async fn answer(webhook: &Webhook, request: Request<Incoming>) -> Answer {
    let Some(name) = request.uri().path().strip_prefix("/webhooks/") else {
        return Answer::new(
            StatusCode::NOT_FOUND,
            WebhookOutcome::Unauthorized,
            "not found: POST /webhooks/{tenant}",
        );
    };
    // A tenant without a webhook secret takes no webhooks: the same 404 as an unknown one,
    // so that the answer does not tell which tenants exist.
    let Some((name, tenant)) = webhook
        .tenants
        .get(name)
        .filter(|tenant| !tenant.webhook_secrets.is_empty())
        .map(|tenant| (name.to_string(), tenant))
    else {
        return Answer::new(
            StatusCode::NOT_FOUND,
            WebhookOutcome::Unauthorized,
            "no webhook for this tenant",
        );
    };
    if request.method() != Method::POST {
        return Answer::new(StatusCode::METHOD_NOT_ALLOWED, WebhookOutcome::Invalid, "only POST").tenant(&name);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let headers = request.headers();
    let checked = auth::check_headers(
        headers.get("x-timestamp").map(|value| value.as_bytes()),
        headers.get("x-signature").map(|value| value.as_bytes()),
        now,
    );
    let (timestamp, signature) = match checked {
        Ok(checked) => checked,
        Err(why) => return unauthorized(why).tenant(&name),
    };
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let body = request.into_body();
    let body = if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        Err(BodyError::TooLarge(body))
    } else {
        read_body(body).await
    };
    let body = match body {
        Ok(body) => body,
        Err(BodyError::TooLarge(rest)) => {
            discard(rest).await;
            let mut answer = Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                WebhookOutcome::Invalid,
                "body is over 1 MiB",
            );
            answer.close = true;
            return answer.tenant(&name);
        }
        Err(BodyError::TimedOut) => {
            let reason = format!("body not received within {} s", BODY_READ_DEADLINE.as_secs());
            let mut answer = Answer::new(StatusCode::REQUEST_TIMEOUT, WebhookOutcome::Invalid, reason);
            answer.close = true;
            return answer.tenant(&name);
        }
        Err(BodyError::Broken) => {
            let mut answer = Answer::new(
                StatusCode::BAD_REQUEST,
                WebhookOutcome::Invalid,
                "body could not be read",
            );
            answer.close = true;
            return answer.tenant(&name);
        }
    };
    if let Err(why) = auth::verify(&tenant.webhook_secrets, &body, &signature) {
        return unauthorized(why).tenant(&name);
    }
    // Signed: from here on, the body is the vendor's word.
    match payload::read(&body, &name, timestamp) {
        Ok(Payload::Undecided { session_id, reason }) => Answer::new(StatusCode::OK, WebhookOutcome::Ignored, reason)
            .tenant(&name)
            .session(Some(session_id)),
        Ok(Payload::Decided { session_id, event }) => {
            let message_id = payload::message_id(&name, &session_id, &body);
            match webhook.queue.publish_event(&message_id, &event).await {
                Ok(()) => {
                    let lag = now_unix_f64() - timestamp as f64;
                    metrics::webhook_confirmed(Duration::from_secs_f64(lag.max(0.0)));
                    Answer {
                        reason: None,
                        ..Answer::new(StatusCode::OK, WebhookOutcome::Queued, "")
                    }
                    .tenant(&name)
                    .session(Some(session_id))
                }
                Err(err) => {
                    tracing::warn!(tenant = %name, session_id = %session_id, error = %err, "the event is not queued");
                    unavailable().tenant(&name).session(Some(session_id))
                }
            }
        }
        Err(Invalid { session_id, reason }) => {
            let message_id = payload::message_id(&name, session_id.as_deref().unwrap_or(""), &body);
            match webhook.queue.dead_letter(&name, &message_id, &body, &reason).await {
                Ok(()) => Answer::new(StatusCode::BAD_REQUEST, WebhookOutcome::Invalid, reason)
                    .tenant(&name)
                    .session(session_id),
                Err(err) => {
                    // Not kept anywhere yet: a 5xx makes the vendor send it again.
                    tracing::warn!(tenant = %name, error = %err, "an invalid delivery could not be dead-lettered");
                    unavailable().tenant(&name).session(session_id)
                }
            }
        }
    }
}

/// Counts a request in flight until dropped (also when hyper drops the request's future).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        metrics::webhook_in_flight(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::webhook_in_flight(-1.0);
    }
}

fn unauthorized(why: Unauthorized) -> Answer {
    Answer::new(StatusCode::UNAUTHORIZED, WebhookOutcome::Unauthorized, why.to_string())
}

fn unavailable() -> Answer {
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        WebhookOutcome::Unavailable,
        "the queue did not take the event; retry later",
    )
}

fn now_unix_f64() -> f64 {
    let now = time::OffsetDateTime::now_utc();
    now.unix_timestamp() as f64 + f64::from(now.nanosecond()) / 1e9
}

enum BodyError {
    /// Over [`MAX_BODY_BYTES`]; the rest of the body, to throw away.
    TooLarge(Incoming),
    TimedOut,
    Broken,
}

/// Reads the body within [`MAX_BODY_BYTES`] and [`BODY_READ_DEADLINE`].
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let deadline = tokio::time::Instant::now() + BODY_READ_DEADLINE;
    let mut bytes = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::TimedOut),
            Ok(None) => return Ok(bytes),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge(body));
            }
            bytes.extend_from_slice(&data);
        }
    }
}

/// Reads and drops up to [`DISCARD_BYTES`] more within [`DISCARD_DEADLINE`], holding no
/// more than one frame in memory.
async fn discard(mut body: Incoming) {
    let deadline = tokio::time::Instant::now() + DISCARD_DEADLINE;
    let mut discarded = 0usize;
    while discarded < DISCARD_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => discarded += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}
