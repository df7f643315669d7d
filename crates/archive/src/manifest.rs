//! `manifest.json`, schema 1 (docs/contract.md section 3): what was archived for one
//! session, and the rules by which a later delivery may only make it better. It never
//! holds a media URL: they are temporary and their query strings are credentials.

use media::MediaKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::Status;
use crate::outcome::Cause;

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
    /// The latest decision delivered for the session.
    pub face: FaceSummary,
    /// When `face` was received (absent in manifests written before decisions were kept).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub face_received_at: Option<OffsetDateTime>,
    /// Earlier decisions, oldest first, each with when it was received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<PastDecision>,
    pub encryption: Encryption,
    pub media: MediaSet,
}

/// A decision that a later one replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastDecision {
    pub face: FaceSummary,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub received_at: Option<OffsetDateTime>,
}

impl Manifest {
    /// Finished: no media `failed`. A later delivery of a finished session fetches nothing.
    pub fn is_finished(&self) -> bool {
        self.media
            .entries()
            .iter()
            .all(|(_, entry)| entry.status() != MediaStatus::Failed)
    }

    /// Complete: every media stored or absent (nothing rejected or failed).
    pub fn is_complete(&self) -> bool {
        self.media
            .entries()
            .iter()
            .all(|(_, entry)| matches!(entry.status(), MediaStatus::Stored | MediaStatus::Absent))
    }

    /// Takes `face` as the latest decision, received at `at`. The same decision again, or
    /// one that an earlier delivery already replaced (a redelivery arriving late), changes
    /// nothing. Returns whether the manifest changed.
    pub fn record_decision(&mut self, face: &FaceSummary, at: OffsetDateTime) -> bool {
        if &self.face == face || self.decisions.iter().any(|past| &past.face == face) {
            return false;
        }
        let previous = std::mem::replace(&mut self.face, face.clone());
        self.decisions.push(PastDecision {
            face: previous,
            received_at: self.face_received_at,
        });
        self.face_received_at = Some(manifest_time(at));
        true
    }

    /// Merges what another writer wrote for the same session (read back after a
    /// conditional write failed): each media keeps the better entry, the first
    /// `archived_at` stays, and decisions are merged without loss.
    pub fn merge_from(&mut self, theirs: &Manifest) {
        for (kind, entry) in theirs.media.entries() {
            let ours = self.media.get_mut(kind);
            *ours = MediaEntry::better(ours.clone(), entry.clone());
        }
        self.archived_at = self.archived_at.min(theirs.archived_at);
        self.urls_expire_at = self.urls_expire_at.max(theirs.urls_expire_at);
        let ours_face = self.face.clone();
        let ours_at = self.face_received_at;
        let mut merged = theirs.clone();
        for past in &self.decisions {
            if merged.face != past.face && !merged.decisions.contains(past) {
                merged.decisions.push(past.clone());
            }
        }
        if merged.face != ours_face && !merged.decisions.iter().any(|past| past.face == ours_face) {
            merged.record_decision(&ours_face, ours_at.unwrap_or(self.archived_at));
        }
        self.face = merged.face;
        self.face_received_at = merged.face_received_at;
        self.decisions = merged.decisions;
    }
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

impl FaceSummary {
    /// The decision of a report, without its URLs.
    pub fn of(face: &crate::event::Face) -> FaceSummary {
        FaceSummary {
            status: face.status,
            face_match_status: face.face_match_status,
            liveness_status: face.liveness_status,
            face_match_similarity: face.face_match_similarity,
            liveness_confidence: face.liveness_confidence,
        }
    }
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
    /// Every media absent (the start of a session's first manifest).
    pub fn absent() -> MediaSet {
        MediaSet {
            source_image: MediaEntry::Absent,
            target_image: MediaEntry::Absent,
            video: MediaEntry::Absent,
        }
    }

    /// The entries with their kinds, in contract order.
    pub fn entries(&self) -> [(MediaKind, &MediaEntry); 3] {
        [
            (MediaKind::Source, &self.source_image),
            (MediaKind::Target, &self.target_image),
            (MediaKind::Video, &self.video),
        ]
    }

    pub fn get(&self, kind: MediaKind) -> &MediaEntry {
        match kind {
            MediaKind::Source => &self.source_image,
            MediaKind::Target => &self.target_image,
            MediaKind::Video => &self.video,
        }
    }

    pub fn get_mut(&mut self, kind: MediaKind) -> &mut MediaEntry {
        match kind {
            MediaKind::Source => &mut self.source_image,
            MediaKind::Target => &mut self.target_image,
            MediaKind::Video => &mut self.video,
        }
    }
}

/// A media's status word in the manifest, result events, metrics and displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStatus {
    // In rank order, lowest first: a media keeps the best status it ever reached.
    Absent,
    Failed,
    Rejected,
    Stored,
}

impl MediaStatus {
    pub const ALL: [MediaStatus; 4] = [
        MediaStatus::Stored,
        MediaStatus::Absent,
        MediaStatus::Rejected,
        MediaStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Stored => "stored",
            MediaStatus::Absent => "absent",
            MediaStatus::Rejected => "rejected",
            MediaStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for MediaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// Could not be fetched or stored. `cause` is the machine-readable code a later
    /// delivery, `refetch --from-dlq` or the refresh decide on (absent in manifests
    /// written before causes were recorded).
    Failed {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
    },
}

impl MediaEntry {
    pub fn status(&self) -> MediaStatus {
        match self {
            MediaEntry::Stored(_) => MediaStatus::Stored,
            MediaEntry::Absent => MediaStatus::Absent,
            MediaEntry::Rejected { .. } => MediaStatus::Rejected,
            MediaEntry::Failed { .. } => MediaStatus::Failed,
        }
    }

    /// The better of an earlier and a later entry for the same media: the higher status
    /// (`stored` > `rejected` > `failed` > `absent`); at equal status the earlier one,
    /// except that a later failure's reason replaces an earlier one's. A stored entry is
    /// never replaced: its object is immutable evidence.
    pub fn better(earlier: MediaEntry, later: MediaEntry) -> MediaEntry {
        match later.status().cmp(&earlier.status()) {
            std::cmp::Ordering::Greater => later,
            std::cmp::Ordering::Equal if later.status() == MediaStatus::Failed => later,
            _ => earlier,
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

    fn face(status: Status) -> FaceSummary {
        FaceSummary {
            status,
            face_match_status: Status::Approved,
            liveness_status: Status::InReview,
            face_match_similarity: 95.43,
            liveness_confidence: 65.0,
        }
    }

    fn stored() -> MediaEntry {
        MediaEntry::Stored(StoredMedia {
            key: "k".into(),
            bytes: 1,
            sha256: "ab".into(),
            width: None,
            height: None,
            duration_secs: None,
            fetched_at: datetime!(2026-11-25 10:00:02 UTC),
            attempts: 1,
        })
    }

    #[test]
    fn a_media_keeps_the_best_status_it_reached() {
        let failed = |reason: &str| MediaEntry::Failed {
            reason: reason.into(),
            cause: Some(Cause::UrlExpired),
        };
        let rejected = MediaEntry::Rejected { reason: "small".into() };
        let cases = [
            (stored(), failed("later"), stored()),
            (stored(), MediaEntry::Absent, stored()),
            (stored(), rejected.clone(), stored()),
            (failed("first"), MediaEntry::Absent, failed("first")),
            (failed("first"), failed("later"), failed("later")),
            (failed("first"), rejected.clone(), rejected.clone()),
            (rejected.clone(), failed("later"), rejected.clone()),
            (MediaEntry::Absent, stored(), stored()),
        ];
        for (earlier, later, expected) in cases {
            assert_eq!(
                MediaEntry::better(earlier.clone(), later.clone()),
                expected,
                "{earlier:?} then {later:?}"
            );
        }
    }

    #[test]
    fn decisions_are_kept_and_a_late_redelivery_changes_nothing() {
        let first_at = datetime!(2026-11-25 10:00:04 UTC);
        let mut manifest = sample();
        manifest.face_received_at = Some(first_at);
        assert!(!manifest.record_decision(&face(Status::InReview), first_at));
        let later = datetime!(2026-11-26 09:00:00 UTC);
        assert!(manifest.record_decision(&face(Status::Approved), later));
        assert_eq!(manifest.face.status, Status::Approved);
        assert_eq!(manifest.face_received_at, Some(later));
        assert_eq!(
            manifest.decisions,
            [PastDecision {
                face: face(Status::InReview),
                received_at: Some(first_at)
            }]
        );
        // The first decision delivered again (a redelivery after the change) is old news.
        assert!(!manifest.record_decision(&face(Status::InReview), later));
        assert_eq!(manifest.face.status, Status::Approved);
        assert_eq!(manifest.archived_at, sample().archived_at);
    }

    #[test]
    fn merging_keeps_the_best_of_both_writers() {
        let mut ours = sample();
        ours.media.video = stored();
        let mut theirs = sample();
        theirs.media.target_image = stored();
        theirs.archived_at = datetime!(2026-11-25 09:00:00 UTC);
        ours.merge_from(&theirs);
        assert_eq!(ours.media.video, stored());
        assert_eq!(ours.media.target_image, stored());
        assert_eq!(ours.archived_at, datetime!(2026-11-25 09:00:00 UTC));
    }

    fn sample() -> Manifest {
        let text = serde_json::to_string(&sample_value()).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn sample_value() -> Manifest {
        Manifest {
            schema: 1,
            session_id: "s".into(),
            tenant: "acme".into(),
            archived_at: datetime!(2026-11-25 10:00:04 UTC),
            urls_expire_at: datetime!(2026-11-25 11:00:00 UTC),
            face: face(Status::InReview),
            face_received_at: None,
            decisions: Vec::new(),
            encryption: Encryption {
                mode: "sse-c".into(),
                key_id: "k1".into(),
            },
            media: MediaSet::absent(),
        }
    }

    #[test]
    fn serialises_as_the_contract_shows() {
        let manifest = Manifest {
            schema: 1,
            session_id: "11111111-2222-3333-4444-555555555555".into(),
            tenant: "acme".into(),
            archived_at: datetime!(2026-11-25 10:00:04 UTC),
            urls_expire_at: datetime!(2026-11-25 11:00:00 UTC),
            face: face(Status::InReview),
            face_received_at: None,
            decisions: Vec::new(),
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
