//! [`Archiver`]: one report event in, its evidence safely in encrypted S3 out, and never a
//! record made worse (docs/contract.md section 3).
//!
//! The session's manifest is read first. A finished session fetches nothing (a changed
//! decision is recorded). Otherwise each media that is not yet `stored` or `rejected` is
//! looked for at its key (an object with a store-verified checksum is stored evidence even
//! without a manifest entry), then fetched. The entries are merged with what was there
//! (the best status wins), and the manifest is written under the store's conditions,
//! re-read and merged again when another writer got there first.
//!
//! An erased session (its `erased.json`, looked for beside the manifest read and again just
//! before the manifest write) fetches and stores nothing: [`Disposition::Erased`].

use std::sync::Arc;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt::MediaJob;
use crate::config::ArchiveConfig;
use crate::erasure::TOMBSTONE_FILE;
use crate::event::{event_expiry, media_expiry, ReportEvent};
use crate::fetch::Fetcher;
use crate::manifest::{manifest_time, Encryption, FaceSummary, Manifest, MediaEntry, MediaSet, MediaStatus};
use crate::outcome::{self, Cause, Disposition, Failure};
use crate::slot::{Slot, MANIFEST_FILE, SLOTS};
use crate::store::{ManifestRead, Store, StoreError};
use crate::{ArchiveError, Archived, ProgressObserver, Received, MANIFEST_SCHEMA};

/// Conditional manifest writes lost to other writers before giving up for this delivery.
const MANIFEST_WRITE_ROUNDS: usize = 5;

/// Archives report events. Cheap to clone: the clients are shared.
#[derive(Clone)]
pub struct Archiver {
    inner: Arc<Inner>,
}

struct Inner {
    config: ArchiveConfig,
    fetcher: Fetcher,
    store: Store,
}

impl Archiver {
    pub async fn new(config: ArchiveConfig) -> Result<Archiver, ArchiveError> {
        let fetcher = Fetcher::new(&config.fetch).map_err(ArchiveError::Fetch)?;
        let store = Store::new(&config.store).await?;
        Ok(Archiver {
            inner: Arc::new(Inner { config, fetcher, store }),
        })
    }

    /// Archives one event. Never panics; the [`Disposition`] says what to do with the
    /// message. Once `cancel` fires (the delivery was lost), nothing more is written.
    pub async fn archive(&self, event: &ReportEvent, received: &Received, cancel: &CancellationToken) -> Archived {
        let span = tracing::info_span!("archive", session_id = %event.session_id, tenant = %event.tenant);
        // Boxed here and below: the nested futures are large, and a worker thread's stack
        // (2 MiB) overflowed polling them unboxed in debug builds.
        Box::pin(self.archive_in_span(event, received, cancel))
            .instrument(span)
            .await
    }

    /// [`archive`](Self::archive), telling `observer` how each media progresses.
    pub async fn archive_with_progress(
        &self,
        event: &ReportEvent,
        received: &Received,
        cancel: &CancellationToken,
        observer: Arc<dyn ProgressObserver>,
    ) -> Archived {
        crate::progress::scope(observer, self.archive(event, received, cancel)).await
    }

    async fn archive_in_span(&self, event: &ReportEvent, received: &Received, cancel: &CancellationToken) -> Archived {
        let store = &self.inner.store;
        let manifest_key = self.manifest_key(&event.tenant, &event.session_id);
        let ended = |disposition: Disposition, manifest: Option<Manifest>| Archived {
            manifest,
            manifest_key: manifest_key.clone(),
            disposition,
            fetched_nothing: false,
        };
        // The tombstone is looked for in the same round trip as the manifest (a HEAD beside
        // the manifest's HEAD and GET): an erased session is final.
        let tombstone_key = store.key(&event.tenant, &event.session_id, TOMBSTONE_FILE);
        let (existing, erased) = tokio::join!(store.read_manifest(&manifest_key), store.exists(&tombstone_key));
        match erased {
            Ok(true) => {
                tracing::info!(key = %tombstone_key, "session erased; nothing fetched or stored");
                return Archived {
                    fetched_nothing: true,
                    ..ended(Disposition::Erased, None)
                };
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(key = %tombstone_key, error = %err, "cannot look for the session's tombstone");
                let failure = Failure::new(Cause::from(&err), format!("cannot look for erased.json: {err}"));
                return ended(Disposition::Retry(failure), None);
            }
        }
        let existing = match existing {
            Ok(existing) => existing,
            Err(err) => {
                tracing::warn!(key = %manifest_key, error = %err, "cannot read the session's manifest");
                let failure = Failure::new(Cause::from(&err), format!("cannot read the manifest: {err}"));
                return ended(Disposition::Retry(failure), None);
            }
        };
        let now = OffsetDateTime::now_utc();
        let face = FaceSummary::of(&event.face);
        if let Some(read) = existing.as_ref().filter(|read| read.manifest.is_finished()) {
            // Evidence is never downgraded: a finished session fetches nothing.
            let mut manifest = read.manifest.clone();
            if !manifest.record_decision(&face, now) {
                tracing::info!(key = %manifest_key, "session already finished; nothing fetched");
                return Archived {
                    fetched_nothing: true,
                    ..ended(Disposition::Done, Some(manifest))
                };
            }
            tracing::info!(key = %manifest_key, status = ?face.status, "session already finished; recording the new decision");
            if let Some(erased) = self.erased_meanwhile(&tombstone_key).await {
                return ended(erased, None);
            }
            let written = self.write_manifest(&manifest_key, manifest, Some(read), cancel).await;
            return match written {
                Ok(manifest) => Archived {
                    fetched_nothing: true,
                    ..ended(Disposition::Done, Some(manifest))
                },
                Err(err) => ended(Disposition::Done.manifest_not_written(&err), None),
            };
        }

        let expiry = event_expiry(event, received, self.inner.config.fetch.url_ttl);
        let job = MediaJob {
            config: &self.inner.config,
            fetcher: &self.inner.fetcher,
            store,
            cancel,
        };
        let before = existing.as_ref().map(|read| &read.manifest.media);
        let media_of = |slot: Slot| {
            let url = crate::slot::url_of(&event.face, slot.kind);
            let earlier = before.map(|media| media.get(slot.kind).clone());
            let key = store.key(&event.tenant, &event.session_id, slot.file_name);
            let expires_at = url.map_or(expiry, |url| media_expiry(expiry, url));
            Box::pin(self.complete_media(&job, slot, url, key, expires_at, earlier))
        };
        let (source, target, video) = tokio::join!(media_of(SLOTS[0]), media_of(SLOTS[1]), media_of(SLOTS[2]));
        let media = MediaSet {
            source_image: source,
            target_image: target,
            video,
        };
        let disposition = outcome::classify(&media.entries());
        if let Disposition::Retry(failure) = &disposition {
            tracing::warn!(reason = %failure.reason, cause = %failure.cause, "not finished; the event should be retried");
            return ended(disposition, None);
        }
        let urls_expire_at = SLOTS
            .iter()
            .filter_map(|slot| crate::slot::url_of(&event.face, slot.kind))
            .map(|url| media_expiry(expiry, url))
            .min()
            .unwrap_or(expiry);
        let manifest = match &existing {
            Some(read) => {
                let mut manifest = read.manifest.clone();
                for (kind, entry) in media.entries() {
                    let ours = manifest.media.get_mut(kind);
                    *ours = MediaEntry::better(ours.clone(), entry.clone());
                }
                manifest.record_decision(&face, now);
                manifest
            }
            None => Manifest {
                schema: MANIFEST_SCHEMA,
                session_id: event.session_id.clone(),
                tenant: event.tenant.clone(),
                archived_at: manifest_time(now),
                urls_expire_at: manifest_time(urls_expire_at),
                face,
                face_received_at: Some(manifest_time(now)),
                decisions: Vec::new(),
                encryption: Encryption {
                    mode: store.sse().mode().to_string(),
                    key_id: store.key_id().to_string(),
                },
                media,
            },
        };
        // The merged record decides: a media another delivery already finished counts.
        let disposition = outcome::classify(&manifest.media.entries());
        if let Some(erased) = self.erased_meanwhile(&tombstone_key).await {
            return ended(erased, None);
        }
        match self
            .write_manifest(&manifest_key, manifest, existing.as_ref(), cancel)
            .await
        {
            Ok(manifest) => {
                tracing::info!(key = %manifest_key, disposition = ?disposition, "manifest written");
                ended(outcome::classify(&manifest.media.entries()), Some(manifest))
            }
            Err(err) => {
                tracing::error!(key = %manifest_key, error = %err, "manifest not written");
                ended(disposition.manifest_not_written(&err), None)
            }
        }
    }

    /// Whether an erasure began while this delivery ran (its tombstone is there now), checked
    /// just before the manifest write: a writer in flight then stops and writes no manifest.
    /// `Some(Retry)` when the store cannot say.
    async fn erased_meanwhile(&self, tombstone_key: &str) -> Option<Disposition> {
        match self.inner.store.exists(tombstone_key).await {
            Ok(false) => None,
            Ok(true) => {
                tracing::warn!(key = %tombstone_key, "the session was erased while it was archived; no manifest written");
                Some(Disposition::Erased)
            }
            Err(err) => Some(Disposition::Retry(Failure::new(
                Cause::from(&err),
                format!("cannot look for erased.json: {err}"),
            ))),
        }
    }

    /// One media's entry after this delivery: kept when it was already `stored` or
    /// `rejected`, found at its key when another delivery stored it, else fetched. A media
    /// without a URL keeps what it had (an `absent` never replaces an entry with a URL).
    async fn complete_media(
        &self,
        job: &MediaJob<'_>,
        slot: Slot,
        url: Option<&url::Url>,
        key: String,
        expires_at: OffsetDateTime,
        earlier: Option<MediaEntry>,
    ) -> MediaEntry {
        let earlier = earlier.unwrap_or(MediaEntry::Absent);
        if matches!(earlier.status(), MediaStatus::Stored | MediaStatus::Rejected) {
            crate::progress::finished(slot.kind, earlier.status());
            return earlier;
        }
        let Some(url) = url else {
            crate::progress::finished(slot.kind, earlier.status());
            return earlier;
        };
        match job.recover(slot, &key).await {
            Ok(Some(stored)) => {
                crate::progress::finished(slot.kind, MediaStatus::Stored);
                return MediaEntry::Stored(stored);
            }
            Ok(None) => {}
            Err(err) => {
                let reason = match err {
                    // Someone else's object holds the key: not fetched, never written over.
                    StoreError::Occupied { .. } => err.to_string(),
                    _ => {
                        tracing::warn!(key, error = %err, "cannot look for an object already stored");
                        format!("cannot look for an object already stored: {err}")
                    }
                };
                let entry = MediaEntry::Failed {
                    reason,
                    cause: Some(Cause::from(&err)),
                };
                crate::progress::finished(slot.kind, MediaStatus::Failed);
                return entry;
            }
        }
        let entry = job.archive(slot, url, key, expires_at).await;
        MediaEntry::better(earlier, entry)
    }

    /// Writes the manifest under the store's conditions (`If-None-Match: *` for a first
    /// one, `If-Match` on the ETag read otherwise); when another writer got there first,
    /// reads theirs, merges, and tries again. Nothing is written once `cancel` fired.
    async fn write_manifest(
        &self,
        key: &str,
        mut manifest: Manifest,
        read: Option<&ManifestRead>,
        cancel: &CancellationToken,
    ) -> Result<Manifest, StoreError> {
        use crate::store::Condition;
        let store = &self.inner.store;
        let mut condition = match read {
            Some(read) => Condition::IfMatch(read.etag.clone()),
            None => Condition::IfAbsent,
        };
        for _ in 0..MANIFEST_WRITE_ROUNDS {
            if cancel.is_cancelled() {
                return Err(StoreError::Cancelled { key: key.to_string() });
            }
            match store.write_manifest(key, &manifest, &condition).await {
                Ok(()) => return Ok(manifest),
                Err(StoreError::Conflict { .. }) => {
                    tracing::info!(key, "another writer changed the manifest; merging with theirs");
                    match store.read_manifest(key).await? {
                        Some(theirs) => {
                            manifest.merge_from(&theirs.manifest);
                            condition = Condition::IfMatch(theirs.etag);
                        }
                        None => condition = Condition::IfAbsent,
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Conflict { key: key.to_string() })
    }

    /// The session's manifest, `None` when it has none yet.
    pub async fn manifest(&self, tenant: &str, session_id: &str) -> Result<Option<Manifest>, StoreError> {
        let key = self.manifest_key(tenant, session_id);
        Ok(self.inner.store.read_manifest(&key).await?.map(|read| read.manifest))
    }

    /// Streams an archived object, decrypted, into `sink`; returns the number of bytes.
    pub async fn get_object(&self, key: &str, sink: impl tokio::io::AsyncWrite + Unpin) -> Result<u64, StoreError> {
        self.inner.store.get_object(key, sink).await
    }

    /// Can the bucket be reached (for `/readyz`)?
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        self.inner.store.check_ready().await
    }

    /// The store, for the listing, erasure and audit code of this crate.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The manifest key of a session.
    pub fn manifest_key(&self, tenant: &str, session_id: &str) -> String {
        self.inner.store.key(tenant, session_id, MANIFEST_FILE)
    }
}
