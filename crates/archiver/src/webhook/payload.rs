//! What a signed webhook body says (docs/contract.md section 8): a decided session becomes
//! a report event of section 1, checked by the same code as the worker's events
//! (`archive::parse_event`); a session without a decision yet is nothing to queue.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A signed body that can be acted on.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A decided session: the report event to publish.
    Decided { session_id: String, event: Vec<u8> },
    /// Nothing to archive yet; `reason` is the answer's.
    Undecided { session_id: String, reason: &'static str },
}

/// A signed body that breaks the contract: answered 400 and dead-lettered with `reason`,
/// which names the field (and never quotes a URL).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The session, when the body names a valid one.
    pub session_id: Option<String>,
    pub reason: String,
}

/// Reads a signed body sent for `tenant` at `timestamp` (the `X-Timestamp`, unix seconds).
pub fn read(body: &[u8], tenant: &str, timestamp: i64) -> Result<Payload, Invalid> {
    let invalid = |session_id: Option<&str>, reason: String| Invalid {
        session_id: session_id.map(str::to_string),
        reason,
    };
    // The event parser's JSON rules (size, nesting, duplicate keys) apply to the whole body;
    // its field rules do not (the body is the vendor's webhook, not an event).
    match archive::parse_event(body) {
        Err(archive::EventError::NotJson(detail)) => {
            return Err(invalid(None, format!("body is not a JSON object: {detail}")))
        }
        Err(archive::EventError::DuplicateKey(key)) => {
            return Err(invalid(None, format!("body has a duplicate key {key}")))
        }
        Err(err @ archive::EventError::TooLarge { .. }) => return Err(invalid(None, err.to_string())),
        _ => {}
    }
    let root = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(root)) => root,
        _ => return Err(invalid(None, "body is not a JSON object".into())),
    };
    let session_id = match root.get("session_id") {
        Some(Value::String(text)) => match uuid::Uuid::try_parse(text) {
            Ok(id) if text.len() == 36 => id.hyphenated().to_string(),
            _ => return Err(invalid(None, "session_id: must be a UUID".into())),
        },
        None | Some(Value::Null) => return Err(invalid(None, "session_id: is required".into())),
        Some(_) => return Err(invalid(None, "session_id: must be a UUID string".into())),
    };
    let face = match root.get("decision") {
        None | Some(Value::Null) => {
            return Ok(Payload::Undecided {
                session_id,
                reason: "the session has no decision yet",
            })
        }
        Some(Value::Object(decision)) => match decision.get("face") {
            None | Some(Value::Null) => {
                return Ok(Payload::Undecided {
                    session_id,
                    reason: "the decision has no face report",
                })
            }
            Some(face) => face.clone(),
        },
        Some(_) => return Err(invalid(Some(&session_id), "decision: must be an object".into())),
    };
    let issued_at = OffsetDateTime::from_unix_timestamp(timestamp)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .ok_or_else(|| invalid(Some(&session_id), "X-Timestamp is out of range".into()))?;
    let event = json!({ "session_id": session_id, "tenant": tenant, "issued_at": issued_at, "face": face });
    let event = serde_json::to_vec(&event).map_err(|err| invalid(Some(&session_id), err.to_string()))?;
    match archive::parse_event(&event) {
        Ok(_) => Ok(Payload::Decided { session_id, event }),
        // The field names of the event are the webhook's under `decision.`.
        Err(err) => Err(invalid(Some(&session_id), format!("decision.{err}"))),
    }
}

/// The message id of a delivery: the same tenant, session and body give the same id, so a
/// retried or replayed webhook is one message for the worker's idempotency.
pub fn message_id(tenant: &str, session_id: &str, body: &[u8]) -> String {
    let mut digest = Sha256::new();
    for part in [tenant.as_bytes(), session_id.as_bytes()] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.update(body);
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "11111111-2222-3333-4444-555555555555";

    fn face() -> Value {
        json!({
            "status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
            "face_match_similarity": 97.5, "liveness_confidence": 99.0,
            "source_image": "https://media.example/s.jpg?X-Amz-Signature=SECRET", "target_image": null
        })
    }

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn a_decided_session_becomes_a_report_event_of_the_paths_tenant() {
        let sent = body(json!({"session_id": SESSION.to_uppercase(), "status": "Approved",
            "webhook_type": "status.updated", "tenant": "mallory", "decision": {"face": face()}}));
        let Payload::Decided { session_id, event } = read(&sent, "acme", 1_800_000_000).unwrap() else {
            panic!("not decided")
        };
        assert_eq!(session_id, SESSION);
        let event = archive::parse_event(&event).unwrap();
        assert_eq!(event.tenant, "acme", "the path names the tenant, not the body");
        assert_eq!(event.issued_at.unwrap().unix_timestamp(), 1_800_000_000);
        assert!(event.face.target_image.is_none());
    }

    #[test]
    fn undecided_and_invalid_bodies() {
        let undecided = read(
            &body(json!({"session_id": SESSION, "status": "In Progress"})),
            "acme",
            0,
        );
        assert!(matches!(undecided, Ok(Payload::Undecided { .. })), "{undecided:?}");
        let mut big = face();
        big["face_match_similarity"] = json!(150);
        let cases = [
            (b"not json".to_vec(), "body is not a JSON object"),
            (br#"{"session_id": "a", "session_id": "b"}"#.to_vec(), "duplicate key"),
            (body(json!({"decision": {"face": face()}})), "session_id: is required"),
            (body(json!({"session_id": "nope"})), "session_id: must be a UUID"),
            (
                body(json!({"session_id": SESSION, "decision": 5})),
                "decision: must be an object",
            ),
            (
                body(json!({"session_id": SESSION, "decision": {"face": big}})),
                "decision.face.face_match_similarity: must be a number from 0 to 100, got 150",
            ),
        ];
        for (sent, expected) in cases {
            let err = read(&sent, "acme", 0).unwrap_err();
            assert!(err.reason.contains(expected), "{expected:?} not in {err:?}");
            assert!(!err.reason.contains("SECRET"), "{err:?}");
        }
    }

    #[test]
    fn the_message_id_depends_on_tenant_session_and_body_only() {
        let id = message_id("acme", SESSION, b"{}");
        assert_eq!(id, message_id("acme", SESSION, b"{}"));
        assert_eq!(id.len(), 64);
        assert_ne!(id, message_id("acmf", SESSION, b"{}"));
        assert_ne!(id, message_id("acme", SESSION, b"{ }"));
    }
}
