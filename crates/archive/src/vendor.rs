//! The vendor API of docs/contract.md section 6: a fresh report (with fresh media URLs) for a
//! session, for `archiver refetch` and the worker's automatic refresh.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

use crate::event::{parse_event, EventError, ReportEvent};

/// Where the vendor API is and how to talk to it.
#[derive(Clone)]
pub struct VendorConfig {
    /// `ARCHIVER_PROVIDER_API_URL`, such as `https://api.vendor.example`.
    pub base_url: Url,
    /// `ARCHIVER_PROVIDER_API_KEY`, sent as `x-api-key`.
    pub api_key: String,
    /// Extra PEM CAs to trust for the API host.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Deadline for one request.
    pub request_timeout: Duration,
    /// Attempts per session, the first included (429 and 5xx are retried).
    pub max_attempts: usize,
    /// Longest wait honoured from a `Retry-After` header.
    pub max_retry_after: Duration,
}

impl std::fmt::Debug for VendorConfig {
    // The API key is a credential: never printed, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl VendorConfig {
    pub fn new(base_url: Url, api_key: String) -> Self {
        VendorConfig {
            base_url,
            api_key,
            extra_ca_pem: Vec::new(),
            request_timeout: Duration::from_secs(20),
            max_attempts: 5,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Why a fresh report could not be had. Each message names the session.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VendorError {
    /// The API key was refused (401).
    #[error("vendor api refused the api key (401) for session {session_id}: check ARCHIVER_PROVIDER_API_KEY")]
    Unauthorized { session_id: String },
    /// The key may not read this session (403).
    #[error("vendor api denied access (403) to session {session_id}")]
    Forbidden { session_id: String },
    /// The vendor does not know the session (404).
    #[error("vendor api has no session {session_id} (404)")]
    NotFound { session_id: String },
    /// Any other status, or 429/5xx that outlasted the retries.
    #[error("vendor api answered {status} for session {session_id}")]
    Status {
        session_id: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The request could not be sent or the answer not read.
    #[error("vendor api unreachable for session {session_id}: {detail}")]
    Transport { session_id: String, detail: String },
    /// The answer is not a report of section 1's shape.
    #[error("vendor api answer for session {session_id} is not a valid report: {problem}")]
    BadAnswer { session_id: String, problem: String },
    /// The client could not be built (a bad CA file).
    #[error("vendor api client: {0}")]
    Client(String),
}

impl VendorError {
    /// 429, 5xx and transport trouble may pass; everything else is final.
    pub fn is_transient(&self) -> bool {
        match self {
            VendorError::Status { status, .. } => *status == 429 || (500..600).contains(status),
            VendorError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// A client of the vendor API.
#[derive(Clone, Debug)]
pub struct VendorClient {
    client: reqwest::Client,
    config: VendorConfig,
}

impl VendorClient {
    pub fn new(config: VendorConfig) -> Result<Self, VendorError> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout);
        for pem in &config.extra_ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|err| VendorError::Client(err.to_string()))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|err| VendorError::Client(err.to_string()))?;
        Ok(VendorClient { client, config })
    }

    /// The decision URL of a session: `{base}/v3/session/{id}/decision/`.
    pub fn decision_url(&self, session_id: &str) -> Url {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/v3/session/{session_id}/decision/"));
        url
    }

    /// Asks for a fresh report of `session_id` and turns it into a report event for
    /// `tenant`, checked like any event. The fresh URLs count as issued now.
    pub async fn fresh_report(&self, session_id: &str, tenant: &str) -> Result<ReportEvent, VendorError> {
        let attempt = || self.fetch_once(session_id);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.config.max_attempts.saturating_sub(1));
        let max_retry_after = self.config.max_retry_after;
        let answer = attempt
            .retry(backoff)
            .when(VendorError::is_transient)
            .adjust(move |err, planned| match err {
                // The server's own word on when to come back beats our guess.
                VendorError::Status {
                    retry_after: Some(wait),
                    ..
                } => planned.map(|_| (*wait).min(max_retry_after)),
                _ => planned,
            })
            .notify(|err, wait| tracing::warn!(%err, ?wait, "vendor api call failed; retrying"))
            .await?;
        report_from_answer(session_id, tenant, answer, OffsetDateTime::now_utc())
    }

    async fn fetch_once(&self, session_id: &str) -> Result<Value, VendorError> {
        let transport = |err: reqwest::Error| VendorError::Transport {
            session_id: session_id.to_string(),
            detail: err.without_url().to_string(),
        };
        let response = self
            .client
            .get(self.decision_url(session_id))
            .header("x-api-key", &self.config.api_key)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let session = session_id.to_string();
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(VendorError::Unauthorized { session_id: session }),
            StatusCode::FORBIDDEN => return Err(VendorError::Forbidden { session_id: session }),
            StatusCode::NOT_FOUND => return Err(VendorError::NotFound { session_id: session }),
            other => {
                let retry_after = crate::fetch::retry_after(response.headers());
                return Err(VendorError::Status {
                    session_id: session,
                    status: other.as_u16(),
                    retry_after,
                });
            }
        }
        // A report is a few hundred bytes; a megabyte bound stops a hostile answer.
        let body = response.bytes().await.map_err(transport)?;
        if body.len() > 1024 * 1024 {
            return Err(VendorError::BadAnswer {
                session_id: session,
                problem: "answer is larger than 1 MiB".into(),
            });
        }
        serde_json::from_slice(&body).map_err(|err| VendorError::BadAnswer {
            session_id: session,
            problem: format!("not JSON: {err}"),
        })
    }
}

/// Builds the event from the vendor's answer: its `face` object, the session asked for,
/// the tenant the caller knows, and `issued_at` = when the answer arrived.
pub fn report_from_answer(
    session_id: &str,
    tenant: &str,
    answer: Value,
    answered_at: OffsetDateTime,
) -> Result<ReportEvent, VendorError> {
    let bad = |problem: String| VendorError::BadAnswer {
        session_id: session_id.to_string(),
        problem,
    };
    let face = answer
        .get("face")
        .cloned()
        .ok_or_else(|| bad("face: is required".into()))?;
    if let Some(answered_id) = answer.get("session_id").and_then(Value::as_str) {
        if !answered_id.eq_ignore_ascii_case(session_id) {
            return Err(bad(format!(
                "session_id: answer is for another session ({answered_id})"
            )));
        }
    }
    let issued_at = answered_at.format(&Rfc3339).map_err(|err| bad(err.to_string()))?;
    let event = json!({ "session_id": session_id, "tenant": tenant, "issued_at": issued_at, "face": face });
    parse_event(event.to_string().as_bytes()).map_err(|err: EventError| bad(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "11111111-2222-3333-4444-555555555555";

    fn face() -> Value {
        json!({
            "status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
            "face_match_similarity": 97.5, "liveness_confidence": 99.0,
            "source_image": "https://media.example/s.jpg?sig=1", "target_image": null
        })
    }

    #[test]
    fn an_answer_becomes_an_event_issued_when_it_arrived() {
        let at = time::macros::datetime!(2026-11-26 08:00:00 UTC);
        let event = report_from_answer(SESSION, "acme", json!({"session_id": SESSION, "face": face()}), at).unwrap();
        assert_eq!(event.session_id, SESSION);
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.issued_at, Some(at));
        assert!(event.face.target_image.is_none());
    }

    #[test]
    fn bad_answers_name_the_session_and_the_problem() {
        let at = OffsetDateTime::now_utc();
        let cases = [
            (json!({"session_id": SESSION}), "face: is required"),
            (
                json!({"session_id": "99999999-2222-3333-4444-555555555555", "face": face()}),
                "answer is for another session",
            ),
            (json!({"face": {"status": "Maybe"}}), "face.status"),
        ];
        for (answer, expected) in cases {
            let err = report_from_answer(SESSION, "acme", answer, at).unwrap_err().to_string();
            assert!(err.contains(SESSION) && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn the_decision_url_keeps_the_base_path() {
        let client = VendorClient::new(VendorConfig::new(
            Url::parse("https://api.example/base/").unwrap(),
            "k".into(),
        ))
        .unwrap();
        assert_eq!(
            client.decision_url(SESSION).as_str(),
            format!("https://api.example/base/v3/session/{SESSION}/decision/")
        );
    }

    #[test]
    fn only_429_5xx_and_transport_errors_are_retried() {
        let status = |status| VendorError::Status {
            session_id: SESSION.into(),
            status,
            retry_after: None,
        };
        assert!(status(429).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!VendorError::NotFound {
            session_id: SESSION.into()
        }
        .is_transient());
        assert!(!VendorError::Unauthorized {
            session_id: SESSION.into()
        }
        .is_transient());
    }
}

/// The event as docs/contract.md section 1 JSON, for publishing a fresh report to the queue.
pub fn event_json(event: &ReportEvent) -> Value {
    let face = &event.face;
    let url = |url: &Option<Url>| url.as_ref().map(Url::as_str).map(Value::from).unwrap_or(Value::Null);
    let mut value = json!({
        "session_id": event.session_id,
        "tenant": event.tenant,
        "face": {
            "status": face.status,
            "face_match_status": face.face_match_status,
            "liveness_status": face.liveness_status,
            "face_match_similarity": face.face_match_similarity,
            "liveness_confidence": face.liveness_confidence,
            "source_image": url(&face.source_image),
            "target_image": url(&face.target_image),
            "video_url": url(&face.video_url),
        }
    });
    if let Some(issued_at) = event.issued_at.and_then(|at| at.format(&Rfc3339).ok()) {
        value["issued_at"] = Value::from(issued_at);
    }
    value
}

#[cfg(test)]
mod event_json_tests {
    use super::*;

    #[test]
    fn an_event_survives_the_round_trip_through_json() {
        let at = time::macros::datetime!(2026-11-26 08:00:00 UTC);
        let answer = json!({"face": {
            "status": "In Review", "face_match_status": "Approved", "liveness_status": "Not Finished",
            "face_match_similarity": 95.43, "liveness_confidence": 65.0,
            "source_image": "https://media.example/s.jpg?sig=1", "video_url": "https://media.example/v.mp4"
        }});
        let event = report_from_answer("11111111-2222-3333-4444-555555555555", "acme", answer, at).unwrap();
        let again = parse_event(event_json(&event).to_string().as_bytes()).unwrap();
        assert_eq!(again, event);
    }
}
