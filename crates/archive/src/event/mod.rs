//! The report event of CONTRACT.md section 1: parsed and checked field by field, so that
//! every problem is reported with the name of the field it concerns.
//!
//! `parse` turns a body into a [`ReportEvent`] (JSON, duplicate keys, each field's rule);
//! `expiry` computes when the event's media URLs stop working. This module holds the types
//! both share. It uses no other module of the crate: the fuzz target compiles it alone.

mod expiry;
mod parse;

pub use expiry::{event_expiry, media_expiry, plausible_timestamp, url_own_expiry};
pub use parse::{is_valid_tenant, parse_event, session_id};

use time::OffsetDateTime;
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
        let shown = |url: &Option<Url>| url.as_ref().map(crate::fetch::redacted);
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

pub(crate) fn field_error(field: &'static str, problem: impl Into<String>) -> EventError {
    EventError::Field {
        field,
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests;
