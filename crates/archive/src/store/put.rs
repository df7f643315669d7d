//! One object in one PUT: a media below one part, a manifest, a tombstone or an audit
//! record. Every PUT carries the SHA-256 of its body as `x-amz-checksum-sha256`, which the
//! store verifies on receipt (and S3 Object Lock buckets require), the Object Lock
//! retention when one is configured (`lock.rs`), and may carry a write condition.

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::error::{is_condition_failed, request_error};
use super::lock::LockWrite;
use super::sse::SseWrite;
use super::{checksum_of, Store, StoreError, META_KEY_ID};

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// Only if nothing is at the key yet (`If-None-Match: *`).
    IfAbsent,
    /// Only if the object is still the one read (`If-Match: <etag>`).
    IfMatch(String),
}

impl Store {
    /// Writes `body` under `key` in one PUT with its checksum, our metadata and
    /// `condition`; returns the ETag the store gave it. A refused condition is
    /// [`StoreError::Conflict`].
    pub(crate) async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &'static str,
        metadata: &[(&'static str, String)],
        condition: &Condition,
    ) -> Result<String, StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(body.len() as i64)
            .checksum_sha256(checksum_of(&body))
            .metadata(META_KEY_ID, &self.key_id);
        for (name, value) in metadata {
            request = request.metadata(*name, value);
        }
        request = match condition {
            Condition::IfAbsent => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(etag),
        };
        let written = request
            .body(ByteStream::from(body))
            .sse_write(&self.sse)
            .object_lock(self.object_lock.as_ref())
            .send()
            .await;
        match written {
            Ok(output) => Ok(output.e_tag().unwrap_or_default().to_string()),
            Err(err) if is_condition_failed(&err) => Err(StoreError::Conflict { key: key.to_string() }),
            Err(err) => Err(request_error("PutObject", err)),
        }
    }
}

impl Store {
    /// Writes a manifest under `condition` and checks what the store reports of it.
    pub(crate) async fn write_manifest(
        &self,
        key: &str,
        manifest: &crate::manifest::Manifest,
        condition: &Condition,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_vec_pretty(manifest).map_err(|err| StoreError::BadManifest {
            key: key.to_string(),
            detail: format!("cannot encode: {err}"),
        })?;
        let (length, checksum) = (body.len() as u64, checksum_of(&body));
        let etag = self
            .put_object(key, body.into(), "application/json", &[], condition)
            .await?;
        self.verify_written(key, length, &checksum, &etag).await
    }
}
