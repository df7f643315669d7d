//! One media from URL to stored object: fetch attempts with jittered exponential backoff
//! (`backon`) bounded by the URL's expiry, each streaming the body through the validator
//! and SHA-256 into the store.

// Atomics rather than `Cell`: the archive future must be `Send` to run on the worker's tasks.
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use media::{MediaError, MediaKind, Validator};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use url::Url;

use crate::fetch::{redacted, FetchError};
use crate::manifest::{manifest_time, MediaEntry, StoredMedia};
use crate::outcome::MediaOutcome;
use crate::store::StoreError;
use crate::Archiver;

/// Why one attempt at one media failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Rejected(#[from] MediaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("url expired at {0}")]
    Expired(String),
}

impl AttemptError {
    fn is_transient(&self) -> bool {
        match self {
            AttemptError::Fetch(err) => err.is_transient(),
            AttemptError::Store(err) => err.is_transient(),
            AttemptError::Rejected(_) | AttemptError::Expired(_) => false,
        }
    }
}

/// Which media of the report, with where and how it is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub kind: MediaKind,
    pub file_name: &'static str,
    pub content_type: &'static str,
}

pub(crate) const SOURCE: Slot = Slot {
    kind: MediaKind::Source,
    file_name: "source.jpg",
    content_type: "image/jpeg",
};
pub(crate) const TARGET: Slot = Slot {
    kind: MediaKind::Target,
    file_name: "target.jpg",
    content_type: "image/jpeg",
};
pub(crate) const VIDEO: Slot = Slot {
    kind: MediaKind::Video,
    file_name: "video.mp4",
    content_type: "video/mp4",
};

fn rfc3339(at: OffsetDateTime) -> String {
    manifest_time(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

impl Archiver {
    /// Archives one media: `absent` without a URL, else attempts until stored, rejected,
    /// a permanent failure, the attempts are spent, or the URL expires.
    pub(crate) async fn archive_media(
        &self,
        slot: Slot,
        url: Option<&Url>,
        key: String,
        expires_at: OffsetDateTime,
    ) -> MediaOutcome {
        let Some(url) = url else {
            crate::progress::finished(slot.kind, "absent");
            return MediaOutcome {
                entry: MediaEntry::Absent,
                transient: false,
            };
        };
        let config = &self.inner.config.fetch;
        let attempts = AtomicU32::new(0);
        let expired_while_waiting = AtomicBool::new(false);
        let gave_up_on_retry_after = AtomicBool::new(false);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(config.min_backoff)
            .with_max_delay(config.max_backoff)
            .with_max_times(config.max_attempts.saturating_sub(1));
        let attempt = || async {
            // No attempt starts after the URL expiry (CONTRACT.md section 1).
            if OffsetDateTime::now_utc() >= expires_at {
                return Err(AttemptError::Expired(rfc3339(expires_at)));
            }
            attempts.fetch_add(1, Relaxed);
            crate::progress::attempt_started(slot.kind);
            Box::pin(self.attempt(slot, url, &key)).await
        };
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(AttemptError::is_transient)
            .adjust(|err, backoff_wait| {
                let wait = backoff_wait?;
                let wait = match err {
                    AttemptError::Fetch(fetch) => match fetch.retry_after() {
                        // A source asking for a longer pause than our longest backoff is
                        // left alone; the message goes back to the queue instead.
                        Some(asked) if asked > config.max_backoff => {
                            gave_up_on_retry_after.store(true, Relaxed);
                            return None;
                        }
                        Some(asked) => asked.max(wait),
                        None => wait,
                    },
                    _ => wait,
                };
                let resume_at = OffsetDateTime::now_utc() + wait;
                if resume_at >= expires_at {
                    expired_while_waiting.store(true, Relaxed);
                    return None;
                }
                Some(wait)
            })
            .notify(|err, wait: Duration| {
                tracing::warn!(media = slot.kind.as_str(), url = %redacted(url), error = %err, retry_in_ms = wait.as_millis() as u64, "attempt failed; retrying");
            })
            .await;
        let attempts = attempts.load(Relaxed);
        let outcome = media_outcome(
            slot,
            url,
            result,
            attempts,
            expires_at,
            &expired_while_waiting,
            &gave_up_on_retry_after,
        );
        crate::progress::finished(slot.kind, outcome.entry.status());
        outcome
    }
}

/// Turns the last attempt's result into the media's manifest entry.
fn media_outcome(
    slot: Slot,
    url: &Url,
    result: Result<StoredMedia, AttemptError>,
    attempts: u32,
    expires_at: OffsetDateTime,
    expired_while_waiting: &AtomicBool,
    gave_up_on_retry_after: &AtomicBool,
) -> MediaOutcome {
    match result {
        Ok(stored) => {
            tracing::info!(media = slot.kind.as_str(), key = %stored.key, bytes = stored.bytes, attempts, "stored");
            MediaOutcome {
                entry: MediaEntry::Stored(StoredMedia { attempts, ..stored }),
                transient: false,
            }
        }
        Err(AttemptError::Rejected(err)) => {
            tracing::info!(media = slot.kind.as_str(), reason = %err, "rejected");
            MediaOutcome {
                entry: MediaEntry::Rejected {
                    reason: err.to_string(),
                },
                transient: false,
            }
        }
        Err(err) => {
            let (reason, transient) = if expired_while_waiting.load(Relaxed) {
                (
                    format!(
                        "url expired at {} before the next attempt; last error: {err}",
                        rfc3339(expires_at)
                    ),
                    false,
                )
            } else if gave_up_on_retry_after.load(Relaxed) {
                (format!("{err} (asked to retry later than the longest backoff)"), true)
            } else if err.is_transient() {
                (format!("{err} (after {attempts} attempts)"), true)
            } else {
                (err.to_string(), false)
            };
            tracing::warn!(media = slot.kind.as_str(), url = %redacted(url), reason = %reason, attempts, "failed");
            MediaOutcome {
                entry: MediaEntry::Failed { reason },
                transient,
            }
        }
    }
}

impl Archiver {
    /// One attempt: download, validate and store as the bytes arrive. A failed attempt
    /// leaves nothing behind: a started multipart upload is aborted.
    async fn attempt(&self, slot: Slot, url: &Url, key: &str) -> Result<StoredMedia, AttemptError> {
        // Where the attempt's time goes, for the per-stage metrics: the three stages are
        // interleaved chunk by chunk, so each is the sum of its own slices.
        let mut timings = crate::progress::StageTimings::default();
        let started = Instant::now();
        let mut download = self.inner.fetcher.open(url).await?;
        timings.fetch += started.elapsed();
        let store = &self.inner.store;
        let mut upload = store.upload(key.to_string(), slot.content_type, download.declared_length());
        let streamed = async {
            let mut validator = Validator::new(slot.kind, &self.inner.config.limits);
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            loop {
                let waited = Instant::now();
                let Some(chunk) = download.chunk().await? else { break };
                timings.fetch += waited.elapsed();
                let checked = Instant::now();
                validator.feed(&chunk)?;
                hasher.update(&chunk);
                timings.validate += checked.elapsed();
                bytes += chunk.len() as u64;
                crate::progress::bytes(slot.kind, chunk.len() as u64);
                let stored = Instant::now();
                upload.write(chunk).await?;
                timings.store += stored.elapsed();
            }
            let fetched_at = manifest_time(OffsetDateTime::now_utc());
            let checked = Instant::now();
            let verdict = validator.finish()?;
            let sha256 = hex::encode(hasher.finalize());
            timings.validate += checked.elapsed();
            let stored = Instant::now();
            upload.finish(&sha256, bytes).await?;
            timings.store += stored.elapsed();
            Ok::<_, AttemptError>(StoredMedia {
                key: key.to_string(),
                bytes,
                sha256,
                width: verdict.width,
                height: verdict.height,
                duration_secs: verdict.duration_secs,
                fetched_at,
                attempts: 0,
            })
        }
        .await;
        if streamed.is_err() {
            upload.abort().await;
        }
        crate::progress::attempt_timings(slot.kind, &timings);
        streamed
    }
}
