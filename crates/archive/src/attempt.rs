//! One media from URL to stored object: fetch attempts with jittered exponential backoff
//! (`backon`) bounded by the URL's expiry, each streaming the body through the validator
//! and SHA-256 into the store; and the recovery of a media already at its key.

// Atomics rather than `Cell`: the archive future must be `Send` to run on the worker's tasks.
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use media::{MediaError, Validator};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::ArchiveConfig;
use crate::fetch::{redacted, FetchError, Fetcher};
use crate::manifest::{manifest_time, MediaEntry, StoredMedia};
use crate::outcome::Cause;
use crate::slot::Slot;
use crate::store::{FoundObject, Store, StoreError, StoreFault};
use crate::store::{META_DURATION, META_FETCHED_AT, META_HEIGHT, META_SHA256, META_WIDTH};

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
    fn cause(&self) -> Cause {
        match self {
            AttemptError::Fetch(err) => Cause::from(err),
            AttemptError::Store(err) => Cause::from(err),
            AttemptError::Expired(_) => Cause::UrlExpired,
            // Never a failure: a rejection is a verdict (see `media_entry`).
            AttemptError::Rejected(_) => Cause::SourceRefused,
        }
    }
}

/// What one media's attempts need: the clients, the rules, and the delivery's token.
pub(crate) struct MediaJob<'a> {
    pub config: &'a ArchiveConfig,
    pub fetcher: &'a Fetcher,
    pub store: &'a Store,
    pub cancel: &'a CancellationToken,
}

fn rfc3339(at: OffsetDateTime) -> String {
    manifest_time(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

impl MediaJob<'_> {
    /// Archives one media: attempts until stored, rejected, a permanent failure, the
    /// attempts are spent, the URL expires, or the store is out (no media is downloaded
    /// again for the store's trouble).
    pub(crate) async fn archive(&self, slot: Slot, url: &Url, key: String, expires_at: OffsetDateTime) -> MediaEntry {
        let config = &self.config.fetch;
        let attempts = AtomicU32::new(0);
        let mismatches = AtomicU32::new(0);
        let expired_while_waiting = AtomicBool::new(false);
        let gave_up_on_retry_after = AtomicBool::new(false);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(config.min_backoff)
            .with_max_delay(config.max_backoff)
            .with_max_times(config.max_attempts.saturating_sub(1));
        let attempt = || async {
            // No attempt starts after the URL expiry (docs/contract.md section 1).
            if OffsetDateTime::now_utc() >= expires_at {
                return Err(AttemptError::Expired(rfc3339(expires_at)));
            }
            if self.cancel.is_cancelled() {
                return Err(AttemptError::Store(StoreError::Cancelled { key: key.clone() }));
            }
            attempts.fetch_add(1, Relaxed);
            crate::progress::attempt_started(slot.kind);
            let mut result = Box::pin(self.attempt(slot, url, &key)).await;
            // Another writer completed this media first: its object is the evidence, at
            // once. Retrying would download again only to lose the same race.
            if matches!(result, Err(AttemptError::Store(StoreError::Conflict { .. }))) {
                match self.recover(slot, &key).await {
                    Ok(Some(stored)) => result = Ok(stored),
                    // Gone meanwhile: the conflict is retried like any other.
                    Ok(None) => {}
                    // `Occupied` among them: an object that is not ours won the race; every
                    // write would lose to it again, so the media fails with its own cause.
                    Err(err) => result = Err(AttemptError::Store(err)),
                }
            }
            if let Err(AttemptError::Store(err)) = &result {
                if err.fault() == StoreFault::Mismatch {
                    mismatches.fetch_add(1, Relaxed);
                }
            }
            result
        };
        let worth_retrying = |err: &AttemptError| match err {
            AttemptError::Fetch(err) => Cause::from(err).is_transient(),
            // A checksum mismatch is tried once more on a fresh download; a second one is
            // this media's. Store outages are not retried here: the event is held instead.
            AttemptError::Store(err) => match err.fault() {
                StoreFault::Retryable => true,
                StoreFault::Mismatch => mismatches.load(Relaxed) < 2,
                _ => false,
            },
            AttemptError::Rejected(_) | AttemptError::Expired(_) => false,
        };
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(worth_retrying)
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
                if OffsetDateTime::now_utc() + wait >= expires_at {
                    expired_while_waiting.store(true, Relaxed);
                    return None;
                }
                Some(wait)
            })
            .notify(|err, wait: Duration| {
                tracing::warn!(media = slot.manifest_name, url = %redacted(url), error = %err, retry_in_ms = wait.as_millis() as u64, "attempt failed; retrying");
            })
            .await;
        let attempts = attempts.load(Relaxed);
        let entry = match result {
            Ok(stored) => {
                tracing::info!(media = slot.manifest_name, key = %stored.key, bytes = stored.bytes, attempts, "stored");
                MediaEntry::Stored(StoredMedia { attempts, ..stored })
            }
            Err(AttemptError::Rejected(err)) => {
                tracing::info!(media = slot.manifest_name, reason = %err, "rejected");
                MediaEntry::Rejected {
                    reason: err.to_string(),
                }
            }
            Err(err) => {
                let (reason, cause) = if expired_while_waiting.load(Relaxed) {
                    let reason = format!(
                        "url expired at {} before the next attempt; last error: {err}",
                        rfc3339(expires_at)
                    );
                    (reason, Cause::UrlExpired)
                } else if gave_up_on_retry_after.load(Relaxed) {
                    (
                        format!("{err} (asked to retry later than the longest backoff)"),
                        err.cause(),
                    )
                } else if worth_retrying(&err) || err.cause().is_transient() {
                    (format!("{err} (after {attempts} attempts)"), err.cause())
                } else {
                    (err.to_string(), err.cause())
                };
                tracing::warn!(media = slot.manifest_name, url = %redacted(url), %reason, %cause, attempts, "failed");
                MediaEntry::Failed {
                    reason,
                    cause: Some(cause),
                }
            }
        };
        crate::progress::finished(slot.kind, entry.status());
        entry
    }

    /// One attempt: download, validate and store as the bytes arrive. A failed attempt
    /// leaves nothing behind: a started multipart upload is aborted.
    async fn attempt(&self, slot: Slot, url: &Url, key: &str) -> Result<StoredMedia, AttemptError> {
        // Where the attempt's time goes, for the per-stage metrics: the three stages are
        // interleaved chunk by chunk, so each is the sum of its own slices.
        let mut timings = crate::progress::StageTimings::default();
        let started = Instant::now();
        let mut download = self.fetcher.open(url).await?;
        timings.fetch += started.elapsed();
        let mut upload = self
            .store
            .upload(key.to_string(), slot.content_type, download.declared_length());
        let streamed = async {
            let mut validator = Validator::new(slot.kind, &self.config.limits);
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            loop {
                let waited = Instant::now();
                // A writer told to stop (its delivery lost, shutdown's last moment) stops
                // here too, so that the multipart upload it began is aborted below.
                let next = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => {
                        return Err(AttemptError::Store(StoreError::Cancelled { key: key.to_string() }))
                    }
                    next = download.chunk() => next,
                };
                let Some(chunk) = next? else { break };
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
            let media = stored_media(key, bytes, sha256, &verdict, fetched_at);
            // The last side effect, the one that makes the object visible: a writer whose
            // delivery was lost stops before it.
            if self.cancel.is_cancelled() {
                return Err(AttemptError::Store(StoreError::Cancelled { key: key.to_string() }));
            }
            let stored = Instant::now();
            upload.finish(&media.sha256, bytes, metadata_of(&media)).await?;
            timings.store += stored.elapsed();
            Ok::<_, AttemptError>(media)
        }
        .await;
        if streamed.is_err() {
            upload.abort().await;
        }
        crate::progress::attempt_timings(slot.kind, &timings);
        streamed
    }

    /// The entry of a media already at its key with a checksum the store verified: from
    /// its metadata when it was written in one PUT (its checksum is then the SHA-256 the
    /// metadata names), else by reading it back through the validator and a SHA-256.
    /// `None` when there is no such object.
    pub(crate) async fn recover(&self, slot: Slot, key: &str) -> Result<Option<StoredMedia>, StoreError> {
        let Some(found) = self.store.find_stored(key).await? else {
            return Ok(None);
        };
        if let Some(media) = from_metadata(key, &found) {
            tracing::info!(media = slot.manifest_name, key, "found stored with a verified checksum");
            return Ok(Some(media));
        }
        let mut reader = RehashSink {
            validator: Validator::new(slot.kind, &self.config.limits),
            hasher: Sha256::new(),
            rejected: None,
        };
        let bytes = self.store.get_object(key, &mut reader).await?;
        let sha256 = hex::encode(reader.hasher.clone().finalize());
        let verdict = match reader.rejected.take().map_or_else(|| reader.validator.finish(), Err) {
            Ok(verdict) => verdict,
            Err(err) => {
                // Never expected: only validated media are completed. Reported, not stored.
                tracing::error!(key, error = %err, "an object at a media key fails validation");
                return Err(StoreError::Mismatch(format!(
                    "{key} holds an object that fails validation: {err}"
                )));
            }
        };
        tracing::info!(
            media = slot.manifest_name,
            key,
            "found stored with a verified checksum; read back to complete its entry"
        );
        let fetched_at = manifest_time(OffsetDateTime::now_utc());
        Ok(Some(stored_media(key, bytes, sha256, &verdict, fetched_at)))
    }
}

/// A stored media's entry from what validation learned (attempts are counted by the caller).
fn stored_media(
    key: &str,
    bytes: u64,
    sha256: String,
    verdict: &media::Verdict,
    fetched_at: OffsetDateTime,
) -> StoredMedia {
    StoredMedia {
        key: key.to_string(),
        bytes,
        sha256,
        width: verdict.width,
        height: verdict.height,
        duration_secs: verdict.duration_secs,
        fetched_at,
        attempts: 0,
    }
}

/// The metadata a single-PUT media carries, so that its entry can be rebuilt from a HEAD.
fn metadata_of(media: &StoredMedia) -> Vec<(&'static str, String)> {
    let mut metadata = vec![(META_FETCHED_AT, rfc3339(media.fetched_at))];
    if let Some(width) = media.width {
        metadata.push((META_WIDTH, width.to_string()));
    }
    if let Some(height) = media.height {
        metadata.push((META_HEIGHT, height.to_string()));
    }
    if let Some(duration) = media.duration_secs {
        metadata.push((META_DURATION, duration.to_string()));
    }
    metadata
}

/// The entry from a single-PUT object's metadata, when its SHA-256 is the checksum the
/// store verified.
fn from_metadata(key: &str, found: &FoundObject) -> Option<StoredMedia> {
    let sha256 = found.metadata.get(META_SHA256)?;
    if !found.is_single_part() || crate::store::checksum_of_hex(sha256).as_deref() != Some(found.checksum.as_str()) {
        return None;
    }
    let number = |name: &str| found.metadata.get(name).and_then(|text| text.parse().ok());
    let fetched_at = found
        .metadata
        .get(META_FETCHED_AT)
        .and_then(|text| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| manifest_time(OffsetDateTime::now_utc()));
    Some(StoredMedia {
        key: key.to_string(),
        bytes: found.bytes,
        sha256: sha256.clone(),
        width: number(META_WIDTH),
        height: number(META_HEIGHT),
        duration_secs: found.metadata.get(META_DURATION).and_then(|text| text.parse().ok()),
        fetched_at,
        attempts: 0,
    })
}

/// A sink that validates and hashes an object read back.
struct RehashSink {
    validator: Validator,
    hasher: Sha256,
    rejected: Option<MediaError>,
}

impl tokio::io::AsyncWrite for RehashSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.hasher.update(buf);
        if this.rejected.is_none() {
            if let Err(err) = this.validator.feed(buf) {
                this.rejected = Some(err);
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
