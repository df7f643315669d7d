//! Reads: objects streamed out decrypted (with the current SSE-C key, then the keyring's),
//! a session's manifest with its ETag, and media objects found without a manifest entry.

use std::collections::HashMap;

use aws_sdk_s3::types::ChecksumMode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::error::{is_key_refusal, is_not_found, request_error};
use super::sse::SseC;
use super::{Store, StoreError, META_KEY_ID};
use crate::config::Sse;
use crate::manifest::Manifest;

/// A manifest as read, with the ETag a conditional rewrite must name.
#[derive(Debug, Clone)]
pub struct ManifestRead {
    pub manifest: Manifest,
    pub etag: String,
}

/// An object found at a media key: what the store reports of it.
#[derive(Debug, Clone)]
pub struct FoundObject {
    pub bytes: u64,
    /// The SHA-256 checksum the store verified on write (base64; `-N` for a composite).
    pub checksum: String,
    pub metadata: HashMap<String, String>,
}

impl FoundObject {
    /// Written in one PUT: its checksum is the whole object's SHA-256.
    pub fn is_single_part(&self) -> bool {
        !self.checksum.contains('-')
    }
}

impl Store {
    /// Streams an object, decrypted, into `sink`; returns the number of bytes written.
    /// With `sse-c`, the keyring's earlier keys are tried when the current one is refused.
    pub async fn get_object(&self, key: &str, mut sink: impl AsyncWrite + Unpin) -> Result<u64, StoreError> {
        let mut refused = None;
        for sse in self.read_keys() {
            match self.get_with(key, sse, &mut sink).await {
                Err(err @ StoreError::WrongKey { .. }) => refused = Some(err),
                other => return other,
            }
        }
        Err(refused.unwrap_or_else(|| StoreError::NotFound { key: key.to_string() }))
    }

    async fn get_with(&self, key: &str, sse: &Sse, sink: &mut (impl AsyncWrite + Unpin)) -> Result<u64, StoreError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key).sse_c(sse);
        let output = match request.send().await {
            Ok(output) => output,
            Err(err) if is_not_found(&err) => return Err(StoreError::NotFound { key: key.to_string() }),
            Err(err)
                if matches!(sse, Sse::CustomerKey(_))
                    && is_key_refusal(aws_sdk_s3::error::ProvideErrorMetadata::code(&err)) =>
            {
                use aws_sdk_s3::error::ProvideErrorMetadata;
                let code = err.code().unwrap_or_default().to_string();
                let message = err.message().unwrap_or_default().to_string();
                return Err(StoreError::WrongKey { code, message });
            }
            Err(err) => return Err(request_error("GetObject", err)),
        };
        let mut body = output.body;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| StoreError::Request {
                operation: "GetObject",
                detail: err.to_string(),
                fault: super::StoreFault::Outage,
            })?;
            sink.write_all(&chunk)
                .await
                .map_err(|err| StoreError::Sink(err.to_string()))?;
            written += chunk.len() as u64;
        }
        sink.flush().await.map_err(|err| StoreError::Sink(err.to_string()))?;
        Ok(written)
    }

    /// Reads a manifest back with its ETag; `None` when there is none.
    pub async fn read_manifest(&self, key: &str) -> Result<Option<ManifestRead>, StoreError> {
        let etag = match self.head(key).await? {
            Some(head) => head.e_tag().unwrap_or_default().to_string(),
            None => return Ok(None),
        };
        let mut body = Vec::new();
        match self.get_object(key, &mut body).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        }
        let manifest = serde_json::from_slice(&body).map_err(|err| StoreError::BadManifest {
            key: key.to_string(),
            detail: err.to_string(),
        })?;
        Ok(Some(ManifestRead { manifest, etag }))
    }

    /// What the store reports of the object at a media key, when it holds one written by
    /// the archiver with a SHA-256 checksum it verified (the archiver completes a media
    /// only after validation, so such an object is stored evidence); `None` when the key is
    /// free. Any other object there is [`StoreError::Occupied`]: the archiver never writes
    /// over what it did not write.
    pub async fn find_stored(&self, key: &str) -> Result<Option<FoundObject>, StoreError> {
        let Some(head) = self.head(key).await? else {
            return Ok(None);
        };
        let metadata = head.metadata().cloned().unwrap_or_default();
        let (Some(checksum), true) = (head.checksum_sha256(), metadata.contains_key(META_KEY_ID)) else {
            tracing::warn!(
                key,
                "an object without a verified checksum or our metadata is at a media key; left untouched"
            );
            return Err(StoreError::Occupied { key: key.to_string() });
        };
        Ok(Some(FoundObject {
            bytes: head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            checksum: checksum.to_string(),
            metadata,
        }))
    }

    /// HEAD with checksum mode, trying the keyring; `None` when nothing is there.
    pub(super) async fn head(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, StoreError> {
        let mut refused = None;
        for sse in self.read_keys() {
            let answer = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .sse_c(sse)
                .send()
                .await;
            match answer {
                Ok(head) => return Ok(Some(head)),
                Err(err) if is_not_found(&err) => return Ok(None),
                // A HEAD refused for its key answers 400/403 without a code.
                Err(err)
                    if matches!(sse, Sse::CustomerKey(_))
                        && err
                            .raw_response()
                            .is_some_and(|r| matches!(r.status().as_u16(), 400 | 403)) =>
                {
                    refused = Some(request_error("HeadObject", err));
                }
                Err(err) => return Err(request_error("HeadObject", err)),
            }
        }
        Err(refused.unwrap_or_else(|| StoreError::NotFound { key: key.to_string() }))
    }
}
