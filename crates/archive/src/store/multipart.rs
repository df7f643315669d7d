//! One object on its way into S3 with bounded memory, whatever its size.
//!
//! The bytes are gathered into parts of `part_size` (5 MiB, S3's smallest, by default). An object smaller
//! than one part goes up in one PUT at the end; a larger one as a multipart upload created
//! with the SHA-256 algorithm, each part sent with its own `x-amz-checksum-sha256` once
//! it is complete in memory, and completed with the composite checksum.
//!
//! Why whole parts in memory rather than parts streamed as the download arrives: a part's
//! checksum header must be known before its body, and a part streamed at a slow source's
//! pace keeps an S3 request open for as long as the download takes, which the SDK's
//! stalled-stream protection and read timeout (rightly) end. A buffered part is sent at the
//! store's pace in a second or two, whatever the source's. The cost is one part of memory
//! per large media (measured in bench/README.md). Trailing checksums would allow streaming,
//! but Garage does not verify them yet, and a checksum the store does not verify is no
//! better than our own metadata.
//!
//! Nothing is visible under the key before [`Upload::finish`], which is called only after
//! the validator accepted the whole file; every failure path ends in [`Upload::abort`].

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::error::{is_condition_failed, request_error};
use super::lock::LockWrite;
use super::put::Condition;
use super::sse::{SseC, SseWrite};
use super::{checksum_of_hex, Store, StoreError, META_KEY_ID, META_SHA256};

/// An object being written; see the module documentation.
pub struct Upload<'a> {
    store: &'a Store,
    key: String,
    content_type: &'static str,
    /// The length the source declared, to size the buffer.
    declared: Option<u64>,
    /// The part being gathered. A `Vec`, not a `BytesMut`, for `reserve_exact`: see `grow`.
    buffer: Vec<u8>,
    /// Bytes already sent as parts.
    sent: u64,
    multipart: Option<Multipart>,
}

struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
    /// Each part's SHA-256, for the composite checksum the store reports at the end.
    part_digests: Vec<u8>,
}

impl<'a> Upload<'a> {
    pub(crate) fn new(store: &'a Store, key: String, content_type: &'static str, declared: Option<u64>) -> Self {
        Upload {
            store,
            key,
            content_type,
            declared,
            buffer: Vec::new(),
            sent: 0,
            multipart: None,
        }
    }

    /// Adds the next bytes of the object; sends a part whenever one is complete.
    pub async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        let part_size = self.store.part_size;
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                // What is left of the declared size when known (a part at most), else a
                // small start that grows (see `grow`); `take` keeps it within one part.
                let initial = self.declared.map_or(64 * 1024, |length| {
                    length.saturating_sub(self.sent).clamp(1, part_size as u64) as usize
                });
                self.buffer = Vec::with_capacity(initial);
            }
            let take = chunk.len().min(part_size - self.buffer.len());
            self.grow(self.buffer.len() + take);
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == part_size {
                let part = Bytes::from(std::mem::take(&mut self.buffer));
                self.sent += part.len() as u64;
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    /// Makes room for `needed` bytes by doubling, but never past one part: left to itself,
    /// a growing buffer would double a 4 MiB buffer to 8 MiB to hold a 5 MiB part, and with
    /// sources that declare no length that waste was most of a worker's peak memory. The
    /// growth is a `realloc` of the same buffer (`reserve_exact`), not a new buffer and a
    /// copy: glibc grows a large (mmapped) block with `mremap`, so the old and the new never
    /// both count in the worker's memory, where a copy held both for a moment (up to 9 MiB
    /// for the step from 4 to 5 MiB, on each core at once).
    fn grow(&mut self, needed: usize) {
        if needed <= self.buffer.capacity() {
            return;
        }
        let capacity = (self.buffer.capacity() * 2).max(needed).min(self.store.part_size);
        self.buffer.reserve_exact(capacity - self.buffer.len());
    }

    /// Sends one complete part with its checksum, creating the upload on first use.
    async fn send_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        let store = self.store;
        if self.multipart.is_none() {
            let created = store
                .client
                .create_multipart_upload()
                .bucket(&store.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .metadata(META_KEY_ID, &store.key_id)
                .sse_write(&store.sse)
                .object_lock(store.object_lock.as_ref())
                .send()
                .await
                .map_err(|err| request_error("CreateMultipartUpload", err))?;
            let upload_id = created.upload_id().ok_or_else(|| StoreError::Request {
                operation: "CreateMultipartUpload",
                detail: "the store returned no upload id".into(),
                fault: super::StoreFault::Outage,
            })?;
            self.multipart = Some(Multipart {
                upload_id: upload_id.to_string(),
                parts: Vec::new(),
                part_digests: Vec::new(),
            });
        }
        let Some(multipart) = self.multipart.as_mut() else {
            unreachable!("created above")
        };
        let number = multipart.parts.len() as i32 + 1;
        let digest = Sha256::digest(&part);
        let checksum = base64::engine::general_purpose::STANDARD.encode(digest);
        let uploaded = store
            .client
            .upload_part()
            .bucket(&store.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .part_number(number)
            .content_length(part.len() as i64)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(part))
            .sse_c(&store.sse)
            .send()
            .await
            .map_err(|err| request_error("UploadPart", err))?;
        multipart.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_string))
                .checksum_sha256(checksum)
                .build(),
        );
        multipart.part_digests.extend_from_slice(&digest);
        Ok(())
    }

    /// Makes the object visible under its key (only if nothing is there yet), then checks
    /// what the store reports. `sha256` is the whole object's (hex); `metadata` what
    /// validation learned, stored with an object written in one PUT. Call only after the
    /// validator accepted the whole file.
    pub async fn finish(
        &mut self,
        sha256: &str,
        bytes: u64,
        metadata: Vec<(&'static str, String)>,
    ) -> Result<(), StoreError> {
        let store = self.store;
        if self.multipart.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buffer));
            let mut metadata = metadata;
            metadata.push((META_SHA256, sha256.to_string()));
            let etag = store
                .put_object(&self.key, body, self.content_type, &metadata, &Condition::IfAbsent)
                .await?;
            let expected = checksum_of_hex(sha256).unwrap_or_default();
            return store.verify_written(&self.key, bytes, &expected, &etag).await;
        }
        if !self.buffer.is_empty() {
            let last = Bytes::from(std::mem::take(&mut self.buffer));
            self.send_part(last).await?;
        }
        let Some(multipart) = self.multipart.as_ref() else {
            unreachable!("checked above")
        };
        let composite = format!(
            "{}-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&multipart.part_digests)),
            multipart.parts.len()
        );
        let completed = store
            .client
            .complete_multipart_upload()
            .bucket(&store.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(multipart.parts.clone()))
                    .build(),
            )
            .sse_c(&store.sse)
            .send()
            .await;
        let etag = match completed {
            Ok(output) => output.e_tag().unwrap_or_default().to_string(),
            Err(err) if is_condition_failed(&err) => return Err(StoreError::Conflict { key: self.key.clone() }),
            Err(err) => return Err(request_error("CompleteMultipartUpload", err)),
        };
        // Completed: nothing left to abort.
        self.multipart = None;
        store.verify_written(&self.key, bytes, &composite, &etag).await
    }

    /// Abandons the upload: a started multipart upload is aborted, so no parts linger.
    pub async fn abort(mut self) {
        if let Some(multipart) = self.multipart.take() {
            let store = self.store;
            let result = store
                .client
                .abort_multipart_upload()
                .bucket(&store.bucket)
                .key(&self.key)
                .upload_id(&multipart.upload_id)
                .send()
                .await;
            if let Err(err) = result {
                tracing::warn!(key = %self.key, error = %aws_sdk_s3::error::DisplayErrorContext(&err), "could not abort a multipart upload");
            }
        }
    }
}
