//! The one place that decides what becomes of an event (CONTRACT.md section 4): done,
//! dead-lettered (retrying cannot help) or retried (it might).

use crate::event::EventError;
use crate::manifest::MediaEntry;
use crate::store::StoreError;

/// What the worker must do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every present media is stored or rejected, and the manifest is written: acknowledge.
    Done,
    /// A failure that retrying cannot fix (URL expired, 403, 404, 410, host not allowed,
    /// too large, an invalid event, a store ignoring the requested encryption):
    /// dead-letter with this reason (header `x-archiver-reason`).
    DeadLetter { reason: String },
    /// A transient failure outlasted the retries (source 5xx or timeout, S3 unavailable):
    /// return the message to the queue.
    Retry { reason: String },
}

impl Disposition {
    /// An event that breaks CONTRACT.md section 1 is dead-lettered at once.
    pub fn invalid_event(err: &EventError) -> Disposition {
        Disposition::DeadLetter {
            reason: format!("invalid event: {err}"),
        }
    }

    /// A failure to write the manifest, after the media gave `media` (never `Retry`).
    pub(crate) fn manifest_not_written(media: &Disposition, err: &StoreError) -> Disposition {
        let reason = match media {
            Disposition::DeadLetter { reason } | Disposition::Retry { reason } => {
                format!("{reason}; cannot write the manifest: {err}")
            }
            Disposition::Done => format!("cannot write the manifest: {err}"),
        };
        if err.is_transient() {
            Disposition::Retry { reason }
        } else {
            Disposition::DeadLetter { reason }
        }
    }
}

/// One media's result, with whether a failure is worth retrying.
#[derive(Debug, Clone)]
pub(crate) struct MediaOutcome {
    pub entry: MediaEntry,
    /// Meaningful for `failed` only.
    pub transient: bool,
}

/// A permanent failure anywhere dead-letters the event, since a refetch with fresh URLs is
/// needed anyway; otherwise a transient failure returns it to the queue.
pub(crate) fn classify(media: &[(&str, &MediaOutcome)]) -> Disposition {
    let failures = |transient: bool| -> Vec<String> {
        media
            .iter()
            .filter_map(|(name, outcome)| match &outcome.entry {
                MediaEntry::Failed { reason } if outcome.transient == transient => Some(format!("{name}: {reason}")),
                _ => None,
            })
            .collect()
    };
    let permanent = failures(false);
    if !permanent.is_empty() {
        return Disposition::DeadLetter {
            reason: permanent.join("; "),
        };
    }
    let transient = failures(true);
    if !transient.is_empty() {
        return Disposition::Retry {
            reason: transient.join("; "),
        };
    }
    Disposition::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(entry: MediaEntry, transient: bool) -> MediaOutcome {
        MediaOutcome { entry, transient }
    }

    #[test]
    fn permanent_beats_transient_beats_done() {
        let failed = |reason: &str| MediaEntry::Failed { reason: reason.into() };
        let rejected = outcome(
            MediaEntry::Rejected {
                reason: "file is empty".into(),
            },
            false,
        );
        let absent = outcome(MediaEntry::Absent, false);
        let gone = outcome(failed("source answered 404"), false);
        let busy = outcome(failed("source answered 503"), true);
        let cases: Vec<(Vec<(&str, &MediaOutcome)>, Disposition)> = vec![
            (vec![("source_image", &rejected), ("video", &absent)], Disposition::Done),
            (
                vec![("source_image", &busy), ("video", &gone)],
                Disposition::DeadLetter {
                    reason: "video: source answered 404".into(),
                },
            ),
            (
                vec![("source_image", &busy), ("video", &absent)],
                Disposition::Retry {
                    reason: "source_image: source answered 503".into(),
                },
            ),
        ];
        for (media, expected) in cases {
            assert_eq!(classify(&media), expected);
        }
    }
}
