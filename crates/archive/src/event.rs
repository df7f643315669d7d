//! The report event of CONTRACT.md section 1: parsed and checked field by field, so that
//! every problem is reported with the name of the field it concerns.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use url::Url;

/// A report event that passed every rule of CONTRACT.md section 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportEvent {
    /// The session's UUID, lower-case.
    pub session_id: String,
    /// The tenant, `default` when the event has none.
    pub tenant: String,
    /// When the vendor issued the media URLs, if the event says.
    pub issued_at: Option<OffsetDateTime>,
    pub face: Face,
}

/// The `face` object: verdicts, scores and the three media URLs. Its `Debug` shows the
/// URLs without their query strings (credentials).
#[derive(Clone, PartialEq)]
pub struct Face {
    pub status: Status,
    pub face_match_status: Status,
    pub liveness_status: Status,
    pub face_match_similarity: f64,
    pub liveness_confidence: f64,
    /// `None` when the vendor has no such media (`null` or absent): the media is `absent`.
    pub source_image: Option<Url>,
    pub target_image: Option<Url>,
    pub video_url: Option<Url>,
}

impl std::fmt::Debug for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Scheme, host, port and path: what may be shown of a presigned URL.
        let shown = |url: &Option<Url>| {
            url.as_ref().map(|url| {
                format!(
                    "{}://{}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.port().map_or(String::new(), |p| format!(":{p}"))
                ) + url.path()
            })
        };
        f.debug_struct("Face")
            .field("status", &self.status)
            .field("face_match_status", &self.face_match_status)
            .field("liveness_status", &self.liveness_status)
            .field("face_match_similarity", &self.face_match_similarity)
            .field("liveness_confidence", &self.liveness_confidence)
            .field("source_image", &shown(&self.source_image))
            .field("target_image", &shown(&self.target_image))
            .field("video_url", &shown(&self.video_url))
            .finish()
    }
}

/// A verdict word of the vendor's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    Approved,
    Rejected,
    #[serde(rename = "In Review")]
    InReview,
    #[serde(rename = "Not Finished")]
    NotFinished,
}

impl Status {
    const ALL: [(&'static str, Status); 4] = [
        ("Approved", Status::Approved),
        ("Rejected", Status::Rejected),
        ("In Review", Status::InReview),
        ("Not Finished", Status::NotFinished),
    ];
}

/// When the event was received, for the URL expiry when it has no `issued_at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Received {
    /// The AMQP `timestamp` property, when the message has one.
    pub amqp_timestamp: Option<OffsetDateTime>,
    /// When this process received the event.
    pub received_at: OffsetDateTime,
}

impl Received {
    /// Received now, without an AMQP timestamp (the `archive` command).
    pub fn now() -> Self {
        Received {
            amqp_timestamp: None,
            received_at: OffsetDateTime::now_utc(),
        }
    }
}

/// The largest event body taken. A real report is about 2 KB; anything near this is not a
/// report, and parsing it would only spend the worker's memory.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Why an event breaks CONTRACT.md section 1. Such an event is dead-lettered at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// The body is larger than [`MAX_EVENT_BYTES`]; it is not parsed at all.
    #[error("event is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The body is not a UTF-8 JSON object (this includes nesting deeper than serde_json's
    /// limit of 128 and numbers no float can hold).
    #[error("event is not a JSON object: {0}")]
    NotJson(String),
    /// An object holds the same key twice; which one the vendor meant is unknowable, so the
    /// event is refused rather than one of them silently kept.
    #[error("event has a duplicate key {0}")]
    DuplicateKey(String),
    /// One field breaks its rule; the message names the field.
    #[error("{field}: {problem}")]
    Field { field: &'static str, problem: String },
}

fn field_error(field: &'static str, problem: impl Into<String>) -> EventError {
    EventError::Field {
        field,
        problem: problem.into(),
    }
}

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

fn parse_session_id(root: &Map<String, Value>) -> Result<String, EventError> {
    match root.get("session_id") {
        Some(Value::String(text)) => uuid::Uuid::try_parse(text)
            // `try_parse` also takes braced and URN forms; the contract means the plain one.
            .ok()
            .filter(|_| text.len() == 36)
            .map(|id| id.hyphenated().to_string())
            .ok_or_else(|| field_error("session_id", format!("must be a UUID, got {}", quoted(text)))),
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

/// When the event's URLs expire by the event alone: `ttl` after `issued_at`, else after
/// the AMQP timestamp, else after receipt (CONTRACT.md section 1).
pub fn event_expiry(event: &ReportEvent, received: &Received, ttl: std::time::Duration) -> OffsetDateTime {
    let start = event
        .issued_at
        .or(received.amqp_timestamp)
        .unwrap_or(received.received_at);
    start.saturating_add(Duration::try_from(ttl).unwrap_or(Duration::MAX))
}

/// The expiry a URL carries itself: `X-Amz-Date` plus `X-Amz-Expires` (S3 presigned),
/// or a unix `Expires=` (CloudFront, GCS). The earliest wins when both are present.
pub fn url_own_expiry(url: &Url) -> Option<OffsetDateTime> {
    let mut amz_date = None;
    let mut amz_expires = None;
    let mut unix_expires = None;
    for (name, value) in url.query_pairs() {
        if name.eq_ignore_ascii_case("X-Amz-Date") {
            amz_date = parse_amz_date(&value);
        } else if name.eq_ignore_ascii_case("X-Amz-Expires") {
            amz_expires = value.parse::<i64>().ok().filter(|secs| *secs >= 0);
        } else if name == "Expires" {
            unix_expires = value
                .parse::<i64>()
                .ok()
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok());
        }
    }
    let presigned = match (amz_date, amz_expires) {
        (Some(date), Some(secs)) => Some(date.saturating_add(Duration::seconds(secs))),
        _ => None,
    };
    [presigned, unix_expires].into_iter().flatten().min()
}

/// `20261125T100000Z`, the basic ISO 8601 form SigV4 uses.
fn parse_amz_date(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(text, format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// The expiry of one media URL: the earlier of the event's expiry and the URL's own.
pub fn media_expiry(event_expiry: OffsetDateTime, url: &Url) -> OffsetDateTime {
    url_own_expiry(url).map_or(event_expiry, |own| own.min(event_expiry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const GOOD: &str = r#"{
        "session_id": "11111111-2222-3333-4444-55555555AAAA",
        "tenant": "acme",
        "issued_at": "2026-11-25T10:00:00Z",
        "extra": {"ignored": true},
        "face": {
            "status": "In Review", "face_match_status": "Approved", "liveness_status": "Not Finished",
            "face_match_similarity": 95.43, "liveness_confidence": 65,
            "source_image": "https://media.example/s.jpg?X-Amz-Date=20261125T100000Z&X-Amz-Expires=600",
            "target_image": null
        }
    }"#;

    #[test]
    fn a_good_event_is_parsed_and_normalised() {
        let event = parse_event(GOOD.as_bytes()).unwrap();
        assert_eq!(event.session_id, "11111111-2222-3333-4444-55555555aaaa");
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.issued_at, Some(datetime!(2026-11-25 10:00:00 UTC)));
        assert_eq!(event.face.status, Status::InReview);
        assert_eq!(event.face.liveness_status, Status::NotFinished);
        assert_eq!(event.face.liveness_confidence, 65.0);
        assert!(event.face.target_image.is_none());
        assert!(event.face.video_url.is_none());
        let shown = format!("{event:?}");
        assert!(
            shown.contains("https://media.example/s.jpg") && !shown.contains("X-Amz"),
            "{shown}"
        );
    }

    #[test]
    fn tenant_defaults_to_default() {
        let body = GOOD.replace(r#""tenant": "acme","#, "");
        assert_eq!(parse_event(body.as_bytes()).unwrap().tenant, "default");
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#""session_id": "11111111-2222-3333-4444-55555555AAAA""#,
                r#""session_id": "nope""#,
                "session_id: must be a UUID, got \"nope\"",
            ),
            (
                r#""session_id": "11111111-2222-3333-4444-55555555AAAA","#,
                "",
                "session_id: is required",
            ),
            (r#""tenant": "acme""#, r#""tenant": "Acme""#, "tenant: must match"),
            (r#""tenant": "acme""#, r#""tenant": "-x""#, "tenant: must match"),
            (
                r#""issued_at": "2026-11-25T10:00:00Z""#,
                r#""issued_at": "yesterday""#,
                "issued_at: must be an RFC 3339 time",
            ),
            (
                r#""status": "In Review""#,
                r#""status": "Maybe""#,
                "face.status: must be one of",
            ),
            (
                r#""face_match_status": "Approved""#,
                r#""face_match_status": 3"#,
                "face.face_match_status: must be one of",
            ),
            (
                r#""liveness_confidence": 65"#,
                r#""liveness_confidence": 140"#,
                "face.liveness_confidence: must be a number from 0 to 100, got 140",
            ),
            (
                r#""face_match_similarity": 95.43"#,
                r#""face_match_similarity": -1"#,
                "face.face_match_similarity: must be a number from 0 to 100, got -1",
            ),
            (
                r#""face_match_similarity": 95.43"#,
                r#""face_match_similarity": "95""#,
                "face.face_match_similarity: must be a number",
            ),
            (
                r#""target_image": null"#,
                r#""target_image": "http://media.example/t.jpg?secret=1""#,
                "face.target_image: must be an https URL, got scheme http",
            ),
            (
                r#""target_image": null"#,
                r#""target_image": 7"#,
                "face.target_image: must be an https URL or null",
            ),
        ];
        for (from, to, expected) in cases {
            let body = GOOD.replace(from, to);
            assert_ne!(body, GOOD, "case {expected} did not change the event");
            let err = parse_event(body.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err:?} should start with {expected:?}");
            assert!(!err.contains("secret"), "an error leaked a URL query: {err}");
        }
    }

    /// Hostile bodies: each refused with a reason that names the problem, none panics.
    #[test]
    fn hostile_bodies_are_refused_with_a_reason() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let deep_in_event = GOOD.replacen("\"extra\": {\"ignored\": true}", &format!("\"extra\": {deep}"), 1);
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_EVENT_BYTES));
        let duplicate_session = GOOD.replacen(
            "\"tenant\": \"acme\",",
            "\"tenant\": \"acme\", \"session_id\": \"x\",",
            1,
        );
        // The same key spelt with an escape is the same key.
        let duplicate_escaped = GOOD.replacen(
            "\"tenant\": \"acme\",",
            "\"tenant\": \"acme\", \"session\\u005fid\": \"x\",",
            1,
        );
        let duplicate_nested = GOOD.replacen(
            "\"status\": \"In Review\",",
            "\"status\": \"In Review\", \"status\": \"Approved\",",
            1,
        );
        let mut invalid_utf8 = GOOD.as_bytes().to_vec();
        let at = GOOD.find("acme").unwrap();
        invalid_utf8[at] = 0xff;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (big.into_bytes(), "more than the limit of 1048576 bytes"),
            (deep.clone().into_bytes(), "recursion limit exceeded"),
            (deep_in_event.into_bytes(), "recursion limit exceeded"),
            (duplicate_session.into_bytes(), "duplicate key \"session_id\""),
            (duplicate_escaped.into_bytes(), "duplicate key \"session_id\""),
            (duplicate_nested.into_bytes(), "duplicate key \"status\""),
            (invalid_utf8, "invalid unicode code point"),
            (GOOD.replacen("95.43", "1e400", 1).into_bytes(), "number out of range"),
            (
                GOOD.replacen("95.43", "100.0000001", 1).into_bytes(),
                "face.face_match_similarity: must be a number from 0 to 100",
            ),
            (
                GOOD.replacen("65", "18446744073709551616", 1).into_bytes(),
                "face.liveness_confidence: must be a number from 0 to 100",
            ),
            (
                GOOD.replacen("\"Approved\"", "\"APPROVED\"", 1).into_bytes(),
                "face.face_match_status: must be one of",
            ),
            (
                GOOD.replacen("\"In Review\"", "\"In\\u0000Review\"", 1).into_bytes(),
                "face.status: must be one of",
            ),
            (
                GOOD.replacen("\"acme\"", "[\"acme\"]", 1).into_bytes(),
                "tenant: must be a string, got an array",
            ),
            (
                GOOD.replacen("\"target_image\": null", "\"target_image\": {\"url\": 1}", 1)
                    .into_bytes(),
                "face.target_image: must be an https URL or null",
            ),
            (
                GOOD.replacen(
                    "https://media.example/s.jpg",
                    "https://user:SECRETPW@media.example/s.jpg",
                    1,
                )
                .into_bytes(),
                "face.source_image: must be an https URL without user info",
            ),
            (
                GOOD.replacen("https://media.example/s.jpg", "https://[::1/s.jpg", 1)
                    .into_bytes(),
                "face.source_image: must be an https URL",
            ),
            (
                GOOD.replacen("https://media.example/s.jpg", "file:///etc/passwd", 1)
                    .into_bytes(),
                "face.source_image: must be an https URL, got scheme file",
            ),
            (
                b"\"a string\"".to_vec(),
                "event is not a JSON object: found \"a string\"",
            ),
            (b"{} trailing".to_vec(), "trailing characters"),
        ];
        for (body, expected) in cases {
            let err = parse_event(&body).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
            assert!(
                !err.contains("SECRETPW") && !err.contains("X-Amz"),
                "an error leaked a URL: {err}"
            );
        }
    }

    #[test]
    fn non_json_and_non_objects_are_refused() {
        for body in [&b"\xff\xfe"[..], b"[1]", b"", b"{"] {
            assert!(matches!(parse_event(body), Err(EventError::NotJson(_))));
        }
    }

    #[test]
    fn the_earliest_expiry_wins() {
        let event = parse_event(GOOD.as_bytes()).unwrap();
        let received = Received {
            amqp_timestamp: None,
            received_at: datetime!(2026-11-25 12:00:00 UTC),
        };
        let ttl = std::time::Duration::from_secs(3600);
        let expiry = event_expiry(&event, &received, ttl);
        assert_eq!(expiry, datetime!(2026-11-25 11:00:00 UTC));
        let source = event.face.source_image.as_ref().unwrap();
        assert_eq!(media_expiry(expiry, source), datetime!(2026-11-25 10:10:00 UTC));

        let mut no_issued = event.clone();
        no_issued.issued_at = None;
        assert_eq!(
            event_expiry(&no_issued, &received, ttl),
            datetime!(2026-11-25 13:00:00 UTC)
        );
        let stamped = Received {
            amqp_timestamp: Some(datetime!(2026-11-25 09:00:00 UTC)),
            ..received
        };
        assert_eq!(
            event_expiry(&no_issued, &stamped, ttl),
            datetime!(2026-11-25 10:00:00 UTC)
        );

        let unix = Url::parse("https://cdn.example/v.mp4?Expires=1795000000&Signature=x").unwrap();
        assert_eq!(
            url_own_expiry(&unix),
            OffsetDateTime::from_unix_timestamp(1_795_000_000).ok()
        );
        assert_eq!(url_own_expiry(&Url::parse("https://cdn.example/v.mp4").unwrap()), None);
    }
}
