//! What a tenant holds, and erasure that stays erased (docs/contract.md section 9).
//!
//! - [`Archiver::sessions`]: a tenant's sessions from the store's listing (every key of
//!   the tenant, page by page, says which sessions have a manifest and a tombstone; then
//!   one GET per manifest, a few at a time; never a media body).
//! - [`Archiver::erase`]: the retention checks, the tombstone `erased.json` written first
//!   (what was there: keys, sizes, SHA-256; who, when, why), then every version of the
//!   session's objects deleted and its unfinished uploads aborted. A rerun finds the
//!   tombstone and finishes the deletes.
//! - [`Archiver::is_erased`]: the tombstone's presence, which the pipeline checks with the
//!   manifest read and again before its manifest write.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{self, StreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::manifest::{Manifest, MediaEntry};
use crate::slot::MANIFEST_FILE;
use crate::store::{Condition, Deleted, Lock, StoreError};
use crate::Archiver;

/// The tombstone's file name, beside the manifest.
pub const TOMBSTONE_FILE: &str = "erased.json";
/// The tombstone schema this crate writes.
pub const TOMBSTONE_SCHEMA: u32 = 1;
/// Sessions whose manifest and tombstone are read at once while listing.
const LIST_CONCURRENCY: usize = 32;

/// `erased.json`, schema 1: what an erasure removed, by whom, when and why. No biometric
/// data and no URL: keys, sizes and digests only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    pub schema: u32,
    pub session_id: String,
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub erased_at: OffsetDateTime,
    pub reason: String,
    pub by: String,
    pub objects: Vec<ErasedObject>,
}

/// One object an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedObject {
    pub key: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the object's bytes.
    pub sha256: String,
}

/// One session of a tenant, as `archiver list` shows it.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub session_id: String,
    pub manifest_key: String,
    /// The manifest, when one is there (not after an erasure, not before the first write).
    pub manifest: Option<Manifest>,
    pub erased: bool,
}

/// What `erase` is asked to do, and under which rules.
#[derive(Debug, Clone)]
pub struct EraseRequest {
    pub reason: String,
    /// Who asks (`ARCHIVER_OPERATOR` or the store credentials' access key id).
    pub by: String,
    /// `ARCHIVER_RETAIN_DAYS`: erasure is refused until `archived_at` + this.
    pub retain: Duration,
}

/// How the erasure of one session ended.
#[derive(Debug, Clone)]
pub enum Erasure {
    /// The tombstone is written and every version is gone.
    Erased { tombstone: Tombstone, deleted: Deleted },
    /// Nothing was changed: the retention period or a lock forbids it until `until`
    /// (`None` for a legal hold, which has no date).
    Refused {
        reason: String,
        until: Option<OffsetDateTime>,
    },
    /// The tombstone is written, but the store refused to delete some versions
    /// (`deleted.refused`); a rerun tries them again.
    Incomplete { tombstone: Tombstone, deleted: Deleted },
    /// Nothing is archived for the session: nothing was written.
    NotFound,
}

impl Archiver {
    /// The tenant's sessions, in key order, each with its manifest (if any) and whether it
    /// is erased. The listing is paginated by the store; the manifests are read
    /// [`LIST_CONCURRENCY`] at a time.
    pub async fn sessions(&self, tenant: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let store = self.store();
        let prefix = store.tenant_prefix(tenant);
        // One listing of every key (about five a session, a thousand a page) says which
        // sessions have a manifest and which a tombstone: only the manifests are then read,
        // one GET each, and nothing else.
        let mut found: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
        for object in store.list_objects(&prefix, None).await? {
            let Some((session_id, name)) = object.key.strip_prefix(&prefix).and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let entry = found.entry(session_id.to_string()).or_default();
            entry.0 |= name == MANIFEST_FILE;
            entry.1 |= name == TOMBSTONE_FILE;
        }
        let summaries = stream::iter(found)
            .map(|(session_id, (has_manifest, erased))| async move {
                let manifest_key = store.key(tenant, &session_id, MANIFEST_FILE);
                let manifest = if has_manifest {
                    self.manifest_body(&manifest_key).await?
                } else {
                    None
                };
                Ok(SessionSummary {
                    manifest,
                    erased,
                    session_id,
                    manifest_key,
                })
            })
            .buffered(LIST_CONCURRENCY)
            .collect::<Vec<Result<SessionSummary, StoreError>>>()
            .await;
        summaries.into_iter().collect()
    }

    /// The access key id of the store credentials (see `Store::access_key_id`): who did
    /// it, when `ARCHIVER_OPERATOR` does not say.
    pub async fn access_key_id(&self) -> Option<String> {
        self.store().access_key_id().await
    }

    /// A manifest read in one GET (no ETag needed: nothing is written back); `None` when
    /// it went away since the listing.
    async fn manifest_body(&self, key: &str) -> Result<Option<Manifest>, StoreError> {
        let mut body = Vec::new();
        match self.store().get_object(key, &mut body).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|err| StoreError::BadManifest {
                key: key.to_string(),
                detail: err.to_string(),
            })
    }

    /// Whether the session has a tombstone (one HEAD).
    pub async fn is_erased(&self, tenant: &str, session_id: &str) -> Result<bool, StoreError> {
        self.store().exists(&self.tombstone_key(tenant, session_id)).await
    }

    /// The key of a session's tombstone.
    pub fn tombstone_key(&self, tenant: &str, session_id: &str) -> String {
        self.store().key(tenant, session_id, TOMBSTONE_FILE)
    }

    /// The session's tombstone, when it has one.
    pub async fn tombstone(&self, tenant: &str, session_id: &str) -> Result<Option<Tombstone>, StoreError> {
        let key = self.tombstone_key(tenant, session_id);
        let mut body = Vec::new();
        match self.store().get_object(&key, &mut body).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|err| StoreError::BadManifest {
                key,
                detail: err.to_string(),
            })
    }

    /// Erases one session; see the module documentation. A store error before the
    /// tombstone changes nothing; after it, a rerun finishes the work.
    pub async fn erase(&self, tenant: &str, session_id: &str, request: &EraseRequest) -> Result<Erasure, StoreError> {
        let store = self.store();
        let prefix = store.session_prefix(tenant, session_id);
        let tombstone_key = self.tombstone_key(tenant, session_id);
        let tombstone = match self.tombstone(tenant, session_id).await? {
            // An erasure begun earlier: its decision stands; finish its deletes.
            Some(tombstone) => tombstone,
            None => match self.prepare_tombstone(tenant, session_id, request).await? {
                Prepared::Tombstone(tombstone) => {
                    let body = serde_json::to_vec_pretty(&tombstone).map_err(|err| StoreError::BadManifest {
                        key: tombstone_key.clone(),
                        detail: format!("cannot encode: {err}"),
                    })?;
                    match store
                        .put_object(
                            &tombstone_key,
                            body.into(),
                            "application/json",
                            &[],
                            &Condition::IfAbsent,
                        )
                        .await
                    {
                        Ok(_) => tombstone,
                        // Another erase got there first: theirs is the record.
                        Err(StoreError::Conflict { .. }) => {
                            self.tombstone(tenant, session_id).await?.unwrap_or(tombstone)
                        }
                        Err(err) => return Err(err),
                    }
                }
                Prepared::Refused { reason, until } => return Ok(Erasure::Refused { reason, until }),
                Prepared::NotFound => return Ok(Erasure::NotFound),
            },
        };
        let deleted = store.delete_everything_under(&prefix, &tombstone_key).await?;
        Ok(if deleted.refused.is_empty() {
            Erasure::Erased { tombstone, deleted }
        } else {
            Erasure::Incomplete { tombstone, deleted }
        })
    }

    /// Checks the retention rules and builds the tombstone of what is there now.
    async fn prepare_tombstone(
        &self,
        tenant: &str,
        session_id: &str,
        request: &EraseRequest,
    ) -> Result<Prepared, StoreError> {
        let store = self.store();
        let now = OffsetDateTime::now_utc();
        let tombstone_key = self.tombstone_key(tenant, session_id);
        let manifest_key = self.manifest_key(tenant, session_id);
        let objects: Vec<_> = store
            .list_objects(&store.session_prefix(tenant, session_id), None)
            .await?
            .into_iter()
            .filter(|object| object.key != tombstone_key)
            .collect();
        if objects.is_empty() {
            return Ok(Prepared::NotFound);
        }
        let manifest = store.read_manifest(&manifest_key).await?.map(|read| read.manifest);
        // The retention period runs from the first manifest; a session without one (an
        // archive in progress, or cut short) from its oldest object.
        let archived_at = manifest
            .as_ref()
            .map(|manifest| manifest.archived_at)
            .or_else(|| objects.iter().filter_map(|object| object.last_modified).min())
            .unwrap_or(now);
        let retained_until = archived_at + request.retain;
        if retained_until > now {
            return Ok(Prepared::Refused {
                reason: format!(
                    "inside the retention period: archived at {}, kept until {} (ARCHIVER_RETAIN_DAYS)",
                    rfc3339(archived_at),
                    rfc3339(retained_until)
                ),
                until: Some(retained_until),
            });
        }
        for object in &objects {
            match store.lock_of(&object.key, now).await? {
                Some(Lock::Retention { mode, until }) => {
                    return Ok(Prepared::Refused {
                        reason: format!(
                            "{} is under an S3 Object Lock ({mode}) until {}: it cannot be erased before that date",
                            object.key,
                            rfc3339(until)
                        ),
                        until: Some(until),
                    })
                }
                Some(Lock::LegalHold) => {
                    return Ok(Prepared::Refused {
                        reason: format!(
                            "{} is under an S3 legal hold: it cannot be erased until the hold is lifted",
                            object.key
                        ),
                        until: None,
                    })
                }
                None => {}
            }
        }
        let mut erased = Vec::with_capacity(objects.len());
        for object in objects {
            let sha256 = self.sha256_of(&object.key, manifest.as_ref()).await?;
            erased.push(ErasedObject {
                key: object.key,
                bytes: object.bytes,
                sha256,
            });
        }
        Ok(Prepared::Tombstone(Tombstone {
            schema: TOMBSTONE_SCHEMA,
            session_id: session_id.to_string(),
            tenant: tenant.to_string(),
            erased_at: crate::manifest::manifest_time(now),
            reason: request.reason.clone(),
            by: request.by.clone(),
            objects: erased,
        }))
    }

    /// The SHA-256 of an object: the manifest's record for a stored media, else computed
    /// from its bytes (the manifest itself, or an object no manifest names yet).
    async fn sha256_of(&self, key: &str, manifest: Option<&Manifest>) -> Result<String, StoreError> {
        let recorded = manifest
            .into_iter()
            .flat_map(|manifest| manifest.media.entries())
            .find_map(|(_, entry)| match entry {
                MediaEntry::Stored(stored) if stored.key == key => Some(stored.sha256.clone()),
                _ => None,
            });
        if let Some(sha256) = recorded {
            return Ok(sha256);
        }
        let mut hasher = HashingSink(Sha256::new());
        self.store().get_object(key, &mut hasher).await?;
        Ok(hex::encode(hasher.0.finalize()))
    }
}

enum Prepared {
    Tombstone(Tombstone),
    Refused {
        reason: String,
        until: Option<OffsetDateTime>,
    },
    NotFound,
}

/// RFC 3339, whole seconds.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    crate::manifest::manifest_time(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A writer that only hashes what it is given: an object's SHA-256 without keeping it.
struct HashingSink(Sha256);

impl tokio::io::AsyncWrite for HashingSink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.update(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
