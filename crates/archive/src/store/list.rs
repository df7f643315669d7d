//! Listings and what they need to erase: the objects under a prefix (ListObjectsV2, page
//! by page; a tenant's keys say which sessions it has), whether an object exists, what a
//! HEAD says of an object's lock, and the deletes of erasure: every version of every
//! object under a prefix (ListObjectVersions where the store keeps versions) and the
//! prefix's unfinished multipart uploads.

use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
use time::OffsetDateTime;

use super::error::{is_not_found, request_error};
use super::sse::SseC;
use super::{Store, StoreError};

/// One object of a listing.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    pub bytes: u64,
    pub last_modified: Option<OffsetDateTime>,
}

/// What stops an object from being deleted now, as its HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// An Object Lock retention (`GOVERNANCE` or `COMPLIANCE`) that ends at `until`.
    Retention { mode: String, until: OffsetDateTime },
    /// A legal hold: no date; it lasts until someone lifts it.
    LegalHold,
}

/// A version the store refused to delete.
#[derive(Debug, Clone)]
pub struct Undeleted {
    pub key: String,
    pub version_id: Option<String>,
    pub reason: String,
}

/// What the deletes of an erasure did.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// Versions (or, on a store without versions, objects) deleted.
    pub deleted: usize,
    /// Unfinished multipart uploads aborted.
    pub uploads_aborted: usize,
    /// Whether the store keeps versions (each deleted by its id) or not (plain deletes).
    pub versioned: bool,
    pub refused: Vec<Undeleted>,
}

impl Store {
    /// The prefix of a tenant's sessions: `{prefix}{tenant}/`.
    pub fn tenant_prefix(&self, tenant: &str) -> String {
        format!("{}{tenant}/", self.prefix)
    }

    /// The prefix of one session's objects: `{prefix}{tenant}/{session_id}/`.
    pub fn session_prefix(&self, tenant: &str, session_id: &str) -> String {
        format!("{}{tenant}/{session_id}/", self.prefix)
    }

    /// The key prefix every object of this archive shares.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every object under `prefix` (ListObjectsV2, page by page), with `start_after` to skip
    /// what sorts before a key (the audit trail's days).
    pub async fn list_objects(&self, prefix: &str, start_after: Option<&str>) -> Result<Vec<ListedObject>, StoreError> {
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_string))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|err| request_error("ListObjectsV2", err))?;
            objects.extend(page.contents().iter().filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_string(),
                    bytes: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: object
                        .last_modified()
                        .and_then(|at| OffsetDateTime::from_unix_timestamp(at.secs()).ok()),
                })
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(objects),
            }
        }
    }

    /// Whether an object is at `key` (a HEAD; no key needed to see that it exists).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        // A HEAD of an SSE-C object without its key is refused (400), not "absent": the
        // current key goes along, then the keyring's; a 400 for the key still means
        // "something is here" (an object written under a key no longer configured), while a
        // 403 may be a missing permission and stays an error.
        let answer = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .sse_c(&self.sse)
            .send()
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err)
                if err
                    .raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 400 | 403)) =>
            {
                let refused_for_its_key = err.raw_response().is_some_and(|r| r.status().as_u16() == 400);
                match self.head(key).await {
                    Ok(found) => Ok(found.is_some()),
                    Err(_) if refused_for_its_key => Ok(true),
                    Err(_) => Err(request_error("HeadObject", err)),
                }
            }
            Err(err) => Err(request_error("HeadObject", err)),
        }
    }

    /// The lock on the object at `key` that has not expired at `now`, if any (HEAD: S3
    /// reports `x-amz-object-lock-retain-until-date`, `-mode` and `-legal-hold`).
    pub async fn lock_of(&self, key: &str, now: OffsetDateTime) -> Result<Option<Lock>, StoreError> {
        let Some(head) = self.head(key).await? else {
            return Ok(None);
        };
        if head.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On) {
            return Ok(Some(Lock::LegalHold));
        }
        let until = head
            .object_lock_retain_until_date()
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at.secs()).ok());
        Ok(match until {
            Some(until) if until > now => Some(Lock::Retention {
                mode: head
                    .object_lock_mode()
                    .map_or_else(|| "GOVERNANCE".to_string(), |mode| mode.as_str().to_string()),
                until,
            }),
            _ => None,
        })
    }

    /// Deletes every version of every object under `prefix` except `keep`, and aborts the
    /// prefix's unfinished multipart uploads. Where the store keeps versions, each version
    /// and delete marker is deleted by its id (a plain DELETE would only add a marker);
    /// a store that does not implement ListObjectVersions (Garage) keeps no versions, and
    /// a plain DELETE of each object removes it for good. Versions the store refuses to
    /// delete (an Object Lock, a policy) are reported, never skipped silently.
    pub async fn delete_everything_under(&self, prefix: &str, keep: &str) -> Result<Deleted, StoreError> {
        let mut deleted = Deleted::default();
        let versions = match self.list_versions(prefix).await {
            Ok(versions) => {
                deleted.versioned = true;
                versions
            }
            Err(ListVersions::NotImplemented) => self
                .list_objects(prefix, None)
                .await?
                .into_iter()
                .map(|object| (object.key, None))
                .collect(),
            Err(ListVersions::Failed(err)) => return Err(err),
        };
        for (key, version_id) in versions.into_iter().filter(|(key, _)| key != keep) {
            let answer = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .set_version_id(version_id.clone())
                .send()
                .await;
            match answer {
                Ok(_) => deleted.deleted += 1,
                Err(err) if is_not_found(&err) => {}
                Err(err) => deleted.refused.push(Undeleted {
                    key,
                    version_id,
                    reason: request_error("DeleteObject", err).to_string(),
                }),
            }
        }
        deleted.uploads_aborted = self.abort_uploads(prefix).await?;
        Ok(deleted)
    }

    /// Every version and delete marker under `prefix`, as (key, version id).
    async fn list_versions(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, ListVersions> {
        let mut versions = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err)
                    if aws_sdk_s3::error::ProvideErrorMetadata::code(&err) == Some("NotImplemented")
                        || err.raw_response().is_some_and(|r| r.status().as_u16() == 501) =>
                {
                    return Err(ListVersions::NotImplemented)
                }
                Err(err) => return Err(ListVersions::Failed(request_error("ListObjectVersions", err))),
            };
            for version in page.versions() {
                if let Some(key) = version.key() {
                    versions.push((key.to_string(), version.version_id().map(str::to_string)));
                }
            }
            for marker in page.delete_markers() {
                if let Some(key) = marker.key() {
                    versions.push((key.to_string(), marker.version_id().map(str::to_string)));
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(versions);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Ok(versions);
            }
        }
    }

    /// Aborts every unfinished multipart upload under `prefix`; returns how many.
    async fn abort_uploads(&self, prefix: &str) -> Result<usize, StoreError> {
        let mut aborted = 0;
        let (mut key_marker, mut upload_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .send()
                .await
                .map_err(|err| request_error("ListMultipartUploads", err))?;
            for upload in page.uploads() {
                let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let answer = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await;
                match answer {
                    Ok(_) => aborted += 1,
                    Err(err) if is_not_found(&err) => {}
                    Err(err) => return Err(request_error("AbortMultipartUpload", err)),
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            upload_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Ok(aborted);
            }
        }
    }
}

enum ListVersions {
    /// The store keeps no versions (Garage answers 501 NotImplemented).
    NotImplemented,
    Failed(StoreError),
}
