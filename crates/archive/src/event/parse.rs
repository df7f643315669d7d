//! Parsing one event body: JSON with a size and a nesting limit, duplicate keys refused,
//! then each field against its rule of CONTRACT.md section 1.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

use super::{field_error, EventError, Face, ReportEvent, Status, MAX_EVENT_BYTES};

/// Parses and checks one event body (CONTRACT.md section 1). Unknown fields are ignored.
pub fn parse_event(body: &[u8]) -> Result<ReportEvent, EventError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge {
            size: body.len(),
            limit: MAX_EVENT_BYTES,
        });
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| EventError::NotJson(err.to_string()))?;
    reject_duplicate_keys(body)?;
    let Value::Object(root) = value else {
        return Err(EventError::NotJson(format!("found {}", describe(&value))));
    };
    let session_id = parse_session_id(&root)?;
    let tenant = parse_tenant(&root)?;
    let issued_at = match root.get("issued_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|_| field_error("issued_at", format!("must be an RFC 3339 time, got {}", quoted(text))))?,
        ),
        Some(other) => {
            return Err(field_error(
                "issued_at",
                format!("must be an RFC 3339 time, got {}", describe(other)),
            ))
        }
    };
    let face = match root.get("face") {
        Some(Value::Object(face)) => parse_face(face)?,
        None | Some(Value::Null) => return Err(field_error("face", "is required")),
        Some(other) => {
            return Err(field_error(
                "face",
                format!("must be an object, got {}", describe(other)),
            ))
        }
    };
    Ok(ReportEvent {
        session_id,
        tenant,
        issued_at,
        face,
    })
}

/// Walks the body once more refusing any object that repeats a key: `serde_json::Value`
/// keeps the last silently, and no crate offers a strict mode. Runs only on bodies that
/// already parsed, so its own errors can only be the duplicate.
fn reject_duplicate_keys(body: &[u8]) -> Result<(), EventError> {
    use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};

    struct Strict;

    impl<'de> serde::de::DeserializeSeed<'de> for Strict {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Strict)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("{DUPLICATE}{}", quoted(&key))));
                }
                map.next_value_seed(Strict)?;
            }
            Ok(())
        }
    }

    const DUPLICATE: &str = "duplicate key ";
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match deserializer.deserialize_any(Strict) {
        Ok(()) => Ok(()),
        Err(err) => {
            let text = err.to_string();
            match text.strip_prefix(DUPLICATE) {
                Some(rest) => {
                    // serde_json appends " at line L column C"; keep the key alone.
                    let key = rest.rsplit_once(" at line ").map_or(rest, |(key, _)| key);
                    Err(EventError::DuplicateKey(key.to_string()))
                }
                None => Err(EventError::NotJson(text)),
            }
        }
    }
}

/// A session id in its stored form (lower-case hyphenated UUID), if `text` is one: the
/// one rule for events, the command line and dead-lettered bodies alike.
pub fn session_id(text: &str) -> Option<String> {
    uuid::Uuid::try_parse(text)
        // `try_parse` also takes braced and URN forms; the contract means the plain one.
        .ok()
        .filter(|_| text.len() == 36)
        .map(|id| id.hyphenated().to_string())
}

fn parse_session_id(root: &Map<String, Value>) -> Result<String, EventError> {
    match root.get("session_id") {
        Some(Value::String(text)) => {
            session_id(text).ok_or_else(|| field_error("session_id", format!("must be a UUID, got {}", quoted(text))))
        }
        None | Some(Value::Null) => Err(field_error("session_id", "is required")),
        Some(other) => Err(field_error(
            "session_id",
            format!("must be a UUID, got {}", describe(other)),
        )),
    }
}

/// `[a-z0-9][a-z0-9-]{0,62}`, checked by hand: one character class does not need a regex crate.
pub fn is_valid_tenant(tenant: &str) -> bool {
    let bytes = tenant.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn parse_tenant(root: &Map<String, Value>) -> Result<String, EventError> {
    match root.get("tenant") {
        None | Some(Value::Null) => Ok("default".to_string()),
        Some(Value::String(text)) if is_valid_tenant(text) => Ok(text.clone()),
        Some(Value::String(text)) => Err(field_error(
            "tenant",
            format!("must match [a-z0-9][a-z0-9-]{{0,62}}, got {}", quoted(text)),
        )),
        Some(other) => Err(field_error(
            "tenant",
            format!("must be a string, got {}", describe(other)),
        )),
    }
}

fn parse_face(face: &Map<String, Value>) -> Result<Face, EventError> {
    Ok(Face {
        status: parse_status(face, "status", "face.status")?,
        face_match_status: parse_status(face, "face_match_status", "face.face_match_status")?,
        liveness_status: parse_status(face, "liveness_status", "face.liveness_status")?,
        face_match_similarity: parse_score(face, "face_match_similarity", "face.face_match_similarity")?,
        liveness_confidence: parse_score(face, "liveness_confidence", "face.liveness_confidence")?,
        source_image: parse_media_url(face, "source_image", "face.source_image")?,
        target_image: parse_media_url(face, "target_image", "face.target_image")?,
        video_url: parse_media_url(face, "video_url", "face.video_url")?,
    })
}

fn parse_status(face: &Map<String, Value>, name: &str, field: &'static str) -> Result<Status, EventError> {
    let expected = "must be one of Approved, Rejected, In Review, Not Finished";
    match face.get(name) {
        Some(Value::String(text)) => Status::ALL
            .iter()
            .find(|(word, _)| word == text)
            .map(|(_, status)| *status)
            .ok_or_else(|| field_error(field, format!("{expected}, got {}", quoted(text)))),
        None | Some(Value::Null) => Err(field_error(field, "is required")),
        Some(other) => Err(field_error(field, format!("{expected}, got {}", describe(other)))),
    }
}

fn parse_score(face: &Map<String, Value>, name: &str, field: &'static str) -> Result<f64, EventError> {
    let expected = "must be a number from 0 to 100";
    match face.get(name) {
        Some(Value::Number(number)) => match number.as_f64() {
            Some(score) if score.is_finite() && (0.0..=100.0).contains(&score) => Ok(score),
            _ => Err(field_error(field, format!("{expected}, got {number}"))),
        },
        None | Some(Value::Null) => Err(field_error(field, "is required")),
        Some(other) => Err(field_error(field, format!("{expected}, got {}", describe(other)))),
    }
}

/// The URL itself is never quoted in an error: its query string is a credential.
fn parse_media_url(face: &Map<String, Value>, name: &str, field: &'static str) -> Result<Option<Url>, EventError> {
    match face.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let url = Url::parse(text).map_err(|err| field_error(field, format!("must be an https URL: {err}")))?;
            if url.scheme() != "https" {
                return Err(field_error(
                    field,
                    format!("must be an https URL, got scheme {}", url.scheme()),
                ));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(field_error(field, "must be an https URL with a host"));
            }
            // User info would become an Authorization header sent to the media host.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(field_error(field, "must be an https URL without user info"));
            }
            Ok(Some(url))
        }
        Some(other) => Err(field_error(
            field,
            format!("must be an https URL or null, got {}", describe(other)),
        )),
    }
}

/// A short, safe rendering of a JSON value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Quotes a string, cut to 64 characters so a hostile event cannot flood the logs.
fn quoted(text: &str) -> String {
    if text.chars().count() > 64 {
        let cut: String = text.chars().take(64).collect();
        format!("{cut:?}...")
    } else {
        format!("{text:?}")
    }
}
