//! The archive pipeline: one report event in, its evidence safely in encrypted S3 out.
//!
//! ```text
//! parse_event(body) -> ReportEvent                      CONTRACT.md section 1
//! Archiver::new(ArchiveConfig)                          built by the binary; no env reading here
//! Archiver::archive(&event, &Received) -> Archived      never panics; always classifies
//!     three media at once: fetch (https, host policy, deadlines, backon retries until the
//!     URL expiry) -> media::Validator + SHA-256 -> S3 (single PUT below one part, else
//!     multipart completed only after validation) -> HEAD: the expected encryption or delete
//!     then manifest.json last (schema 1, no URL)
//! Archived { manifest, manifest_key, disposition: Done | DeadLetter | Retry }
//! Archiver::manifest / get_object / check_ready         for refetch, `archiver get`, /readyz
//! ```
//!
//! Invariants: only `fetch` talks to media hosts and only `store` to S3; no media URL is
//! logged or stored with its query string; [`Disposition`] is decided in `outcome` alone.
#![forbid(unsafe_code)]

mod address;
mod config;
mod event;
mod fetch;
mod hosts;
mod manifest;
mod outcome;
mod pipeline;
mod progress;
#[macro_use]
mod store;
mod upload;
mod vendor;

use std::sync::Arc;

use tracing::Instrument;

pub use address::{is_public, non_public_reason};
pub use config::{AllowedHost, ArchiveConfig, FetchConfig, Sse, SseCustomerKey, StoreConfig};
pub use event::{
    event_expiry, is_valid_tenant, media_expiry, parse_event, url_own_expiry, EventError, Face, Received, ReportEvent,
    Status,
};
pub use fetch::{redacted, FetchError};
pub use hosts::HostNotAllowed;
pub use manifest::{Encryption, FaceSummary, Manifest, MediaEntry, MediaSet, StoredMedia};
pub use outcome::Disposition;
pub use progress::{ProgressObserver, StageTimings};
pub use store::StoreError;
pub use vendor::{event_json, report_from_answer, wants_fresh_urls, VendorClient, VendorConfig, VendorError};

use crate::fetch::Fetcher;
use crate::manifest::manifest_time;
use crate::pipeline::{SOURCE, TARGET, VIDEO};
use crate::store::Store;

/// The manifest schema this crate writes.
pub const MANIFEST_SCHEMA: u32 = 1;

/// Why an [`Archiver`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store cannot be configured (bad CA, sse-c over http, bad part size).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The media client cannot be built (bad CA).
    #[error("{0}")]
    Fetch(String),
}

/// The result of archiving one event.
#[derive(Debug, Clone)]
pub struct Archived {
    /// The manifest, when one was written (not for [`Disposition::Retry`]).
    pub manifest: Option<Manifest>,
    /// Where the manifest is (or would be).
    pub manifest_key: String,
    pub disposition: Disposition,
}

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

    /// Archives one event: the three media concurrently, then the manifest. Never panics;
    /// the [`Disposition`] says what to do with the message.
    pub async fn archive(&self, event: &ReportEvent, received: &Received) -> Archived {
        let span = tracing::info_span!("archive", session_id = %event.session_id, tenant = %event.tenant);
        // Boxed here and below: the nested futures are large, and a worker thread's stack
        // (2 MiB) overflowed polling them unboxed in debug builds.
        Box::pin(self.archive_in_span(event, received)).instrument(span).await
    }

    /// [`archive`](Self::archive), telling `observer` how each media progresses.
    pub async fn archive_with_progress(
        &self,
        event: &ReportEvent,
        received: &Received,
        observer: Arc<dyn ProgressObserver>,
    ) -> Archived {
        progress::scope(observer, self.archive(event, received)).await
    }

    async fn archive_in_span(&self, event: &ReportEvent, received: &Received) -> Archived {
        let store = &self.inner.store;
        let face = &event.face;
        let expiry = event_expiry(event, received, self.inner.config.fetch.url_ttl);
        let key = |name: &str| store.key(&event.tenant, &event.session_id, name);
        let expiry_of = |url: Option<&url::Url>| url.map_or(expiry, |url| media_expiry(expiry, url));
        let source_url = face.source_image.as_ref();
        let target_url = face.target_image.as_ref();
        let video_url = face.video_url.as_ref();
        let (source, target, video) = tokio::join!(
            Box::pin(self.archive_media(SOURCE, source_url, key(SOURCE.file_name), expiry_of(source_url))),
            Box::pin(self.archive_media(TARGET, target_url, key(TARGET.file_name), expiry_of(target_url))),
            Box::pin(self.archive_media(VIDEO, video_url, key(VIDEO.file_name), expiry_of(video_url))),
        );
        let disposition = outcome::classify(&[("source_image", &source), ("target_image", &target), ("video", &video)]);
        let manifest_key = key("manifest.json");
        if let Disposition::Retry { reason } = &disposition {
            tracing::warn!(reason = %reason, "not finished; the event should be retried");
            return Archived {
                manifest: None,
                manifest_key,
                disposition,
            };
        }
        let urls_expire_at = [source_url, target_url, video_url]
            .into_iter()
            .map(expiry_of)
            .min()
            .unwrap_or(expiry);
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA,
            session_id: event.session_id.clone(),
            tenant: event.tenant.clone(),
            archived_at: manifest_time(time::OffsetDateTime::now_utc()),
            urls_expire_at: manifest_time(urls_expire_at),
            face: FaceSummary {
                status: face.status,
                face_match_status: face.face_match_status,
                liveness_status: face.liveness_status,
                face_match_similarity: face.face_match_similarity,
                liveness_confidence: face.liveness_confidence,
            },
            encryption: Encryption {
                mode: store.sse().mode().to_string(),
                key_id: store.key_id().to_string(),
            },
            media: MediaSet {
                source_image: source.entry,
                target_image: target.entry,
                video: video.entry,
            },
        };
        let body = match serde_json::to_vec_pretty(&manifest) {
            Ok(body) => body,
            Err(err) => {
                let reason = format!("cannot encode the manifest: {err}");
                return Archived {
                    manifest: None,
                    manifest_key,
                    disposition: Disposition::DeadLetter { reason },
                };
            }
        };
        match store.put_small(&manifest_key, body.into(), "application/json").await {
            Ok(()) => {
                tracing::info!(key = %manifest_key, disposition = ?disposition, "manifest written");
                Archived {
                    manifest: Some(manifest),
                    manifest_key,
                    disposition,
                }
            }
            Err(err) => {
                tracing::error!(key = %manifest_key, error = %err, "manifest not written");
                Archived {
                    manifest: None,
                    manifest_key,
                    disposition: Disposition::manifest_not_written(&disposition, &err),
                }
            }
        }
    }

    /// The session's manifest, `None` when it has none yet (for `refetch` without `--force`).
    pub async fn manifest(&self, tenant: &str, session_id: &str) -> Result<Option<Manifest>, StoreError> {
        let key = self.inner.store.key(tenant, session_id, "manifest.json");
        store::read_manifest(&self.inner.store, &key).await
    }

    /// Streams an archived object, decrypted with the configured SSE-C key, into `sink`;
    /// returns the number of bytes written.
    pub async fn get_object(&self, key: &str, sink: impl tokio::io::AsyncWrite + Unpin) -> Result<u64, StoreError> {
        self.inner.store.get_object(key, sink).await
    }

    /// Can the bucket be reached (for `/readyz`)?
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        self.inner.store.check_ready().await
    }

    /// The manifest key of a session.
    pub fn manifest_key(&self, tenant: &str, session_id: &str) -> String {
        self.inner.store.key(tenant, session_id, "manifest.json")
    }
}
