//! `manifest.json`, schema 1 (CONTRACT.md section 3): what was archived for one session.
//! It never holds a media URL: they are temporary and their query strings are credentials.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::Status;

/// The manifest of one session, written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub session_id: String,
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub archived_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub urls_expire_at: OffsetDateTime,
    pub face: FaceSummary,
    pub encryption: Encryption,
    pub media: MediaSet,
}

/// The report's verdicts and scores, without the URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceSummary {
    pub status: Status,
    pub face_match_status: Status,
    pub liveness_status: Status,
    pub face_match_similarity: f64,
    pub liveness_confidence: f64,
}

/// How the objects were encrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    /// `sse-c`, `aws:kms` or `AES256`.
    pub mode: String,
    pub key_id: String,
}

/// The three media, under the names the contract uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaSet {
    pub source_image: MediaEntry,
    pub target_image: MediaEntry,
    pub video: MediaEntry,
}

impl MediaSet {
    /// The entries with their manifest names, in contract order.
    pub fn entries(&self) -> [(&'static str, &MediaEntry); 3] {
        [
            ("source_image", &self.source_image),
            ("target_image", &self.target_image),
            ("video", &self.video),
        ]
    }
}

/// What happened to one media.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum MediaEntry {
    /// Fetched, accepted and stored with the expected encryption.
    Stored(StoredMedia),
    /// The event has no URL for it.
    Absent,
    /// Fetched but it breaks CONTRACT.md section 2; not stored.
    Rejected { reason: String },
    /// Could not be fetched or stored.
    Failed { reason: String },
}

impl MediaEntry {
    /// The status word: `stored`, `absent`, `rejected` or `failed`.
    pub fn status(&self) -> &'static str {
        match self {
            MediaEntry::Stored(_) => "stored",
            MediaEntry::Absent => "absent",
            MediaEntry::Rejected { .. } => "rejected",
            MediaEntry::Failed { .. } => "failed",
        }
    }
}

/// A stored media's key, size, digest and what validation learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMedia {
    pub key: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    #[serde(with = "time::serde::rfc3339")]
    pub fetched_at: OffsetDateTime,
    pub attempts: u32,
}

/// A time as the manifest shows it: UTC, whole seconds.
pub(crate) fn manifest_time(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn serialises_as_the_contract_shows() {
        let manifest = Manifest {
            schema: 1,
            session_id: "11111111-2222-3333-4444-555555555555".into(),
            tenant: "acme".into(),
            archived_at: datetime!(2026-11-25 10:00:04 UTC),
            urls_expire_at: datetime!(2026-11-25 11:00:00 UTC),
            face: FaceSummary {
                status: Status::InReview,
                face_match_status: Status::Approved,
                liveness_status: Status::InReview,
                face_match_similarity: 95.43,
                liveness_confidence: 65.0,
            },
            encryption: Encryption {
                mode: "sse-c".into(),
                key_id: "k1".into(),
            },
            media: MediaSet {
                source_image: MediaEntry::Stored(StoredMedia {
                    key: "face-reports/acme/x/source.jpg".into(),
                    bytes: 81234,
                    sha256: "ab".into(),
                    width: Some(600),
                    height: Some(800),
                    duration_secs: None,
                    fetched_at: datetime!(2026-11-25 10:00:02 UTC),
                    attempts: 1,
                }),
                target_image: MediaEntry::Rejected {
                    reason: "short side 480 is below 720".into(),
                },
                video: MediaEntry::Absent,
            },
        };
        let text = serde_json::to_string(&manifest).unwrap();
        let expected = concat!(
            r#"{"schema":1,"session_id":"11111111-2222-3333-4444-555555555555","tenant":"acme","#,
            r#""archived_at":"2026-11-25T10:00:04Z","urls_expire_at":"2026-11-25T11:00:00Z","#,
            r#""face":{"status":"In Review","face_match_status":"Approved","liveness_status":"In Review","#,
            r#""face_match_similarity":95.43,"liveness_confidence":65.0},"#,
            r#""encryption":{"mode":"sse-c","key_id":"k1"},"#,
            r#""media":{"source_image":{"status":"stored","key":"face-reports/acme/x/source.jpg","bytes":81234,"#,
            r#""sha256":"ab","width":600,"height":800,"fetched_at":"2026-11-25T10:00:02Z","attempts":1},"#,
            r#""target_image":{"status":"rejected","reason":"short side 480 is below 720"},"#,
            r#""video":{"status":"absent"}}}"#
        );
        assert_eq!(text, expected);
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), manifest);
    }
}
