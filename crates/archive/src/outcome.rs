//! The one place that decides what becomes of an event (docs/contract.md section 4): done,
//! dead-lettered (retrying cannot help) or retried (it might), and why, as a typed
//! [`Cause`] that travels with the failure: into the manifest's `failed` entries, the
//! dead-letter header `x-archiver-cause`, the metrics and the refresh decision. No decision
//! anywhere reads an error's text; the text (`reason`) is for people.

use serde::{Deserialize, Serialize};

use crate::event::EventError;
use crate::fetch::FetchError;
use crate::manifest::MediaEntry;
use crate::store::{StoreError, StoreFault};
use media::MediaKind;

/// Why a media (or an event) failed, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The URL's expiry passed before the media could be fetched.
    UrlExpired,
    /// The source answered 401 or 403: what a presigned URL past its expiry answers.
    SourceDenied,
    /// The source answered 410.
    SourceGone,
    /// The source answered 404.
    SourceNotFound,
    /// The source answered another final status, or the URL is unusable (not https, user
    /// info, too many redirects).
    SourceRefused,
    /// The host policy refused the host.
    HostNotAllowed,
    /// The media is larger than `ARCHIVER_MAX_MEDIA_BYTES` (or than the store takes).
    TooLarge,
    /// The source timed out, answered 5xx/429, or the connection broke: may pass.
    SourceUnavailable,
    /// The store is unreachable or answers 5xx/SlowDown: an outage, not the media's fault.
    StoreUnavailable,
    /// The store refuses for reasons of its configuration (AccessDenied, NoSuchBucket, a
    /// disabled KMS key, a refused checksum header): an outage until an operator fixes it.
    StoreMisconfigured,
    /// The store did not report the requested encryption.
    EncryptionNotHonoured,
    /// What the store holds differs from what was sent, again on a fresh download.
    ChecksumMismatch,
    /// The event breaks docs/contract.md section 1.
    InvalidEvent,
    /// The writer lost its delivery (channel or connection closed) and stopped.
    Cancelled,
    /// The media's key holds an object the archiver did not write; left untouched.
    KeyOccupied,
}

impl Cause {
    /// Every cause, for tables and tests.
    pub const ALL: [Cause; 15] = [
        Cause::UrlExpired,
        Cause::SourceDenied,
        Cause::SourceGone,
        Cause::SourceNotFound,
        Cause::SourceRefused,
        Cause::HostNotAllowed,
        Cause::TooLarge,
        Cause::SourceUnavailable,
        Cause::StoreUnavailable,
        Cause::StoreMisconfigured,
        Cause::EncryptionNotHonoured,
        Cause::ChecksumMismatch,
        Cause::InvalidEvent,
        Cause::Cancelled,
        Cause::KeyOccupied,
    ];

    /// The code as written in manifests, headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::UrlExpired => "url-expired",
            Cause::SourceDenied => "source-denied",
            Cause::SourceGone => "source-gone",
            Cause::SourceNotFound => "source-not-found",
            Cause::SourceRefused => "source-refused",
            Cause::HostNotAllowed => "host-not-allowed",
            Cause::TooLarge => "too-large",
            Cause::SourceUnavailable => "source-unavailable",
            Cause::StoreUnavailable => "store-unavailable",
            Cause::StoreMisconfigured => "store-misconfigured",
            Cause::EncryptionNotHonoured => "encryption-not-honoured",
            Cause::ChecksumMismatch => "checksum-mismatch",
            Cause::InvalidEvent => "invalid-event",
            Cause::Cancelled => "cancelled",
            Cause::KeyOccupied => "key-occupied",
        }
    }

    /// The cause named by a code (a dead-letter header read back), if it is one.
    pub fn from_code(code: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|cause| cause.as_str() == code)
    }

    /// Whether another delivery could succeed with the same URLs.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Cause::SourceUnavailable | Cause::StoreUnavailable | Cause::StoreMisconfigured | Cause::Cancelled
        )
    }

    /// Whether the failure is the store's, not the event's: such an event is held or
    /// returned without spending its delivery count (docs/contract.md section 4).
    pub fn is_store_outage(self) -> bool {
        matches!(self, Cause::StoreUnavailable | Cause::StoreMisconfigured)
    }

    /// Whether fresh URLs from the vendor could fix it: the URL expired, or the source
    /// refused it as a presigned URL past its expiry does (401, 403, 410). A 404, a
    /// refused host or a too large media would fail again with fresh URLs.
    pub fn fresh_urls_could_help(self) -> bool {
        matches!(self, Cause::UrlExpired | Cause::SourceDenied | Cause::SourceGone)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&FetchError> for Cause {
    fn from(err: &FetchError) -> Cause {
        match err {
            FetchError::Status { status, .. } => match status {
                401 | 403 => Cause::SourceDenied,
                404 => Cause::SourceNotFound,
                410 => Cause::SourceGone,
                408 | 425 | 429 | 500..=599 => Cause::SourceUnavailable,
                _ => Cause::SourceRefused,
            },
            FetchError::HostNotAllowed(_) => Cause::HostNotAllowed,
            FetchError::TooLarge { .. } => Cause::TooLarge,
            FetchError::Timeout(_) | FetchError::Connection(_) => Cause::SourceUnavailable,
            FetchError::NotHttps(_) | FetchError::UserInfo | FetchError::Redirect(_) => Cause::SourceRefused,
        }
    }
}

impl From<&StoreError> for Cause {
    fn from(err: &StoreError) -> Cause {
        match err.fault() {
            StoreFault::Outage => Cause::StoreUnavailable,
            StoreFault::Configuration => Cause::StoreMisconfigured,
            StoreFault::Retryable => Cause::StoreUnavailable,
            StoreFault::EncryptionNotHonoured => Cause::EncryptionNotHonoured,
            StoreFault::Mismatch => Cause::ChecksumMismatch,
            StoreFault::TooLarge => Cause::TooLarge,
            StoreFault::Cancelled => Cause::Cancelled,
            StoreFault::Occupied => Cause::KeyOccupied,
        }
    }
}

/// A failure: its code and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub cause: Cause,
    /// For people: names the media and what went wrong, never a URL's query string.
    pub reason: String,
}

impl Failure {
    pub fn new(cause: Cause, reason: impl Into<String>) -> Failure {
        Failure {
            cause,
            reason: reason.into(),
        }
    }
}

/// What the worker must do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every present media is stored, rejected or absent, and the manifest is written (or
    /// was already finished): acknowledge and publish `archived`.
    Done,
    /// A failure that retrying cannot fix: dead-letter with the reason and its cause.
    DeadLetter(Failure),
    /// A failure that may pass (the source, or the store): return the message, or hold it
    /// when the store is at fault ([`Cause::is_store_outage`]).
    Retry(Failure),
    /// The session was erased (its `erased.json` is there): nothing was fetched or
    /// stored; acknowledge and publish `erased`.
    Erased,
}

impl Disposition {
    /// An event that breaks docs/contract.md section 1 is dead-lettered at once.
    pub fn invalid_event(err: &EventError) -> Disposition {
        Disposition::DeadLetter(Failure::new(Cause::InvalidEvent, format!("invalid event: {err}")))
    }

    /// The failure, for a dead-letter or a retry.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Disposition::Done | Disposition::Erased => None,
            Disposition::DeadLetter(failure) | Disposition::Retry(failure) => Some(failure),
        }
    }

    /// The word of the outcome: the result event's `outcome` and routing key, for a
    /// settled event (a retry is not settled and has none).
    pub fn outcome(&self) -> Option<&'static str> {
        match self {
            Disposition::Done => Some("archived"),
            Disposition::DeadLetter(_) => Some("dead-lettered"),
            Disposition::Erased => Some("erased"),
            Disposition::Retry(_) => None,
        }
    }

    /// A failure to write the manifest, after the media gave `self`.
    pub(crate) fn manifest_not_written(&self, err: &StoreError) -> Disposition {
        let reason = match self.failure() {
            Some(failure) => format!("{}; cannot write the manifest: {err}", failure.reason),
            None => format!("cannot write the manifest: {err}"),
        };
        let cause = Cause::from(err);
        if cause.is_transient() {
            Disposition::Retry(Failure::new(cause, reason))
        } else {
            Disposition::DeadLetter(Failure::new(cause, reason))
        }
    }
}

/// A permanent failure anywhere dead-letters the event, since a refetch with fresh URLs is
/// needed anyway; otherwise a store outage, then any transient failure, returns it to the
/// queue. The cause of a mixed verdict is that of its first failure of the winning kind.
pub(crate) fn classify(media: &[(MediaKind, &MediaEntry)]) -> Disposition {
    let failures = |wanted: fn(Cause) -> bool| -> Option<Failure> {
        let failed: Vec<(MediaKind, Cause, &str)> = media
            .iter()
            .filter_map(|(kind, entry)| match entry {
                MediaEntry::Failed { reason, cause } => {
                    let cause = cause.unwrap_or(Cause::SourceRefused);
                    wanted(cause).then_some((*kind, cause, reason.as_str()))
                }
                _ => None,
            })
            .collect();
        let cause = failed.first()?.1;
        let reason = failed
            .iter()
            .map(|(kind, _, reason)| format!("{}: {reason}", crate::slot::manifest_name(*kind)))
            .collect::<Vec<_>>()
            .join("; ");
        Some(Failure { cause, reason })
    };
    if let Some(failure) = failures(|cause| !cause.is_transient()) {
        return Disposition::DeadLetter(failure);
    }
    if let Some(failure) = failures(Cause::is_store_outage) {
        return Disposition::Retry(failure);
    }
    if let Some(failure) = failures(Cause::is_transient) {
        return Disposition::Retry(failure);
    }
    Disposition::Done
}

/// Whether fresh URLs could finish what the pipeline could not: the event is
/// dead-lettered and every failed media failed for a cause fresh URLs can fix.
pub fn wants_fresh_urls(disposition: &Disposition, media: &[(MediaKind, &MediaEntry)]) -> bool {
    if !matches!(disposition, Disposition::DeadLetter(_)) {
        return false;
    }
    let mut causes = media.iter().filter_map(|(_, entry)| match entry {
        MediaEntry::Failed { cause, .. } => Some(*cause),
        _ => None,
    });
    let helps = |cause: Option<Cause>| cause.is_some_and(Cause::fresh_urls_could_help);
    let first = causes.next();
    first.is_some_and(helps) && causes.all(helps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(cause: Cause, reason: &str) -> MediaEntry {
        MediaEntry::Failed {
            reason: reason.into(),
            cause: Some(cause),
        }
    }

    #[test]
    fn permanent_beats_outage_beats_transient_beats_done() {
        let rejected = MediaEntry::Rejected {
            reason: "file is empty".into(),
        };
        let gone = failed(Cause::SourceNotFound, "source answered 404");
        let busy = failed(Cause::SourceUnavailable, "source answered 503");
        let store = failed(Cause::StoreUnavailable, "s3 PutObject failed");
        let (s, t, v) = (MediaKind::Source, MediaKind::Target, MediaKind::Video);
        let cases: Vec<(Vec<(MediaKind, &MediaEntry)>, Disposition)> = vec![
            (vec![(s, &rejected), (v, &MediaEntry::Absent)], Disposition::Done),
            (
                vec![(s, &busy), (v, &gone)],
                Disposition::DeadLetter(Failure::new(Cause::SourceNotFound, "video: source answered 404")),
            ),
            (
                vec![(s, &busy), (t, &store)],
                Disposition::Retry(Failure::new(
                    Cause::StoreUnavailable,
                    "target_image: s3 PutObject failed",
                )),
            ),
            (
                vec![(s, &busy), (v, &MediaEntry::Absent)],
                Disposition::Retry(Failure::new(
                    Cause::SourceUnavailable,
                    "source_image: source answered 503",
                )),
            ),
        ];
        for (media, expected) in cases {
            assert_eq!(classify(&media), expected);
        }
    }

    #[test]
    fn codes_round_trip_and_fresh_urls_help_only_expiry_like_causes() {
        for cause in Cause::ALL {
            assert_eq!(Cause::from_code(cause.as_str()), Some(cause));
            let json = serde_json::to_string(&cause).unwrap();
            assert_eq!(json, format!("\"{}\"", cause.as_str()));
        }
        let helped: Vec<Cause> = Cause::ALL.into_iter().filter(|c| c.fresh_urls_could_help()).collect();
        assert_eq!(helped, [Cause::UrlExpired, Cause::SourceDenied, Cause::SourceGone]);
    }

    #[test]
    fn fresh_urls_are_wanted_only_when_every_failure_is_expiry_like() {
        let dead = Disposition::DeadLetter(Failure::new(Cause::UrlExpired, "x"));
        let expired = failed(Cause::UrlExpired, "url expired");
        let denied = failed(Cause::SourceDenied, "source answered 403");
        let missing = failed(Cause::SourceNotFound, "source answered 404");
        let old = MediaEntry::Failed {
            reason: "url expired".into(),
            cause: None,
        };
        let (s, v) = (MediaKind::Source, MediaKind::Video);
        assert!(wants_fresh_urls(&dead, &[(s, &expired), (v, &denied)]));
        assert!(!wants_fresh_urls(&dead, &[(s, &expired), (v, &missing)]));
        assert!(!wants_fresh_urls(&dead, &[(s, &MediaEntry::Absent)]));
        // A manifest written before causes existed is not guessed from its text.
        assert!(!wants_fresh_urls(&dead, &[(s, &old)]));
        assert!(!wants_fresh_urls(&Disposition::Done, &[(s, &expired)]));
    }

    #[test]
    fn fetch_errors_map_to_causes() {
        let status = |status| {
            Cause::from(&FetchError::Status {
                status,
                retry_after: None,
            })
        };
        assert_eq!(status(401), Cause::SourceDenied);
        assert_eq!(status(403), Cause::SourceDenied);
        assert_eq!(status(404), Cause::SourceNotFound);
        assert_eq!(status(410), Cause::SourceGone);
        assert_eq!(status(503), Cause::SourceUnavailable);
        assert_eq!(status(429), Cause::SourceUnavailable);
        assert_eq!(status(400), Cause::SourceRefused);
        assert_eq!(Cause::from(&FetchError::TooLarge { limit: 1 }), Cause::TooLarge);
        assert_eq!(Cause::from(&FetchError::Timeout("body")), Cause::SourceUnavailable);
    }
}
