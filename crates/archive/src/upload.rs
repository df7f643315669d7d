//! One object on its way into S3 with bounded memory, whatever its size.
//!
//! - A source that declares a length of at least [`STREAM_MIN_BYTES`] is streamed: each
//!   part of a multipart upload is sent while its bytes arrive (1 MiB blocks through a
//!   channel between the download and the part's request), so memory stays at about 2 MiB
//!   per media whatever its size.
//! - Anything smaller is buffered (at its declared size) and goes up in one PUT at the end.
//!   An object of unknown length is buffered up to one part, then sent part by part.
//!
//! Either way nothing is visible under the key before [`Upload::finish`], which is called
//! only after the validator accepted the whole file; every failure path ends in
//! [`Upload::abort`].

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Sse;
use crate::store::{request_error, Store, StoreError, META_KEY_ID, META_SHA256};

/// Declared sizes from which an object is streamed rather than buffered. Below it an object
/// takes one PUT (two requests with the read-back, against five for a multipart upload);
/// from it, memory per media is about the same as a buffered object just below it.
pub const STREAM_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Blocks queued between the download and a streamed part's request.
const CHANNEL_BLOCKS: usize = 1;

/// Download chunks (often 16 KiB TLS records) are gathered into blocks of this size before
/// they go to the part's request: far fewer hand-offs and writes, and with one block queued
/// and one filling, a streamed media holds about what a buffered one of 2 MiB does.
const BLOCK_BYTES: usize = 1024 * 1024;

/// An object being written; see the module documentation.
pub struct Upload<'a> {
    store: &'a Store,
    key: String,
    content_type: &'static str,
    /// The length the source declared, to size the buffer.
    declared: Option<u64>,
    /// Bytes the source declared and not yet assigned to a part (streaming mode only).
    unassigned: Option<u64>,
    buffer: BytesMut,
    multipart: Option<Multipart>,
    in_flight: Option<PartInFlight>,
}

struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

/// A streamed part: its request runs in a task fed through `sender`.
struct PartInFlight {
    sender: mpsc::Sender<Bytes>,
    /// Bytes of this part not yet received from the download.
    remaining: u64,
    /// Received bytes not yet sent, fewer than a block.
    pending: BytesMut,
    task: JoinHandle<Result<CompletedPart, StoreError>>,
}

impl<'a> Upload<'a> {
    pub(crate) fn new(store: &'a Store, key: String, content_type: &'static str, declared: Option<u64>) -> Self {
        let unassigned = declared.filter(|length| *length >= STREAM_MIN_BYTES);
        Upload {
            store,
            key,
            content_type,
            declared,
            unassigned,
            buffer: BytesMut::new(),
            multipart: None,
            in_flight: None,
        }
    }

    /// Adds the next bytes of the object.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if self.unassigned.is_some() {
            self.write_streamed(chunk).await
        } else {
            self.write_buffered(chunk).await
        }
    }

    async fn write_buffered(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        let part_size = self.store.part_size;
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                // The declared size when known (a part at most), else a small start that
                // grows by doubling; `take` below keeps it within one part.
                let initial = self
                    .declared
                    .map_or(64 * 1024, |length| length.min(part_size as u64) as usize);
                self.buffer = BytesMut::with_capacity(initial);
            }
            let take = chunk.len().min(part_size - self.buffer.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == part_size {
                let part = std::mem::take(&mut self.buffer).freeze();
                let length = part.len() as u64;
                let number = self.next_part_number().await?;
                let completed = self.part_request(number, ByteStream::from(part), length).await?;
                self.push_part(completed);
            }
        }
        Ok(())
    }

    async fn write_streamed(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        while !chunk.is_empty() {
            if self.in_flight.is_none() {
                self.start_streamed_part().await?;
            }
            let Some(part) = self.in_flight.as_mut() else {
                unreachable!("started above")
            };
            let take = chunk.len().min(part.remaining as usize);
            part.pending.extend_from_slice(&chunk.split_to(take));
            part.remaining -= take as u64;
            if part.pending.len() < BLOCK_BYTES && part.remaining > 0 {
                continue;
            }
            let block = std::mem::replace(&mut part.pending, BytesMut::with_capacity(BLOCK_BYTES)).freeze();
            if part.sender.send(block).await.is_err() {
                // The request ended early: its task holds the reason.
                return Err(self
                    .end_streamed_part()
                    .await
                    .err()
                    .unwrap_or_else(|| StoreError::Request {
                        operation: "UploadPart",
                        detail: "the part request ended before its body".into(),
                    }));
            }
            if part.remaining == 0 {
                self.end_streamed_part().await?;
            }
        }
        Ok(())
    }

    async fn start_streamed_part(&mut self) -> Result<(), StoreError> {
        let unassigned = self.unassigned.unwrap_or(0);
        if unassigned == 0 {
            return Err(StoreError::Mismatch(format!(
                "{} received more bytes than the source declared",
                self.key
            )));
        }
        let length = unassigned.min(self.store.part_size as u64);
        self.unassigned = Some(unassigned - length);
        let number = self.next_part_number().await?;
        let (sender, receiver) = mpsc::channel(CHANNEL_BLOCKS);
        let body = ByteStream::from_body_1_x(ChannelBody {
            receiver,
            remaining: length,
        });
        let request = self.part_request(number, body, length);
        // One task per media at most: it lives while this part streams.
        let task = tokio::spawn(request);
        let pending = BytesMut::with_capacity(BLOCK_BYTES);
        self.in_flight = Some(PartInFlight {
            sender,
            remaining: length,
            pending,
            task,
        });
        Ok(())
    }

    async fn end_streamed_part(&mut self) -> Result<(), StoreError> {
        let Some(part) = self.in_flight.take() else {
            return Ok(());
        };
        drop(part.sender);
        let completed = part.task.await.map_err(|err| StoreError::Request {
            operation: "UploadPart",
            detail: format!("the part upload stopped: {err}"),
        })??;
        self.push_part(completed);
        Ok(())
    }

    /// Creates the multipart upload on first use; gives the next part number.
    async fn next_part_number(&mut self) -> Result<i32, StoreError> {
        let store = self.store;
        if self.multipart.is_none() {
            let request = store
                .client
                .create_multipart_upload()
                .bucket(&store.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .metadata(META_KEY_ID, &store.key_id);
            let created = with_sse!(request, &store.sse)
                .send()
                .await
                .map_err(|err| request_error("CreateMultipartUpload", err))?;
            let upload_id = created.upload_id().ok_or_else(|| StoreError::Request {
                operation: "CreateMultipartUpload",
                detail: "the store returned no upload id".into(),
            })?;
            self.multipart = Some(Multipart {
                upload_id: upload_id.to_string(),
                parts: Vec::new(),
            });
        }
        let started = self.multipart.as_ref().map_or(0, |multipart| multipart.parts.len());
        Ok(started as i32 + 1)
    }

    fn push_part(&mut self, part: CompletedPart) {
        if let Some(multipart) = self.multipart.as_mut() {
            multipart.parts.push(part);
        }
    }

    /// The UploadPart request as a `'static` future, so a streamed part can run in a task.
    fn part_request(
        &self,
        number: i32,
        body: ByteStream,
        length: u64,
    ) -> impl std::future::Future<Output = Result<CompletedPart, StoreError>> + Send + 'static {
        let store = self.store;
        let upload_id = self
            .multipart
            .as_ref()
            .map(|multipart| multipart.upload_id.clone())
            .unwrap_or_default();
        let request = store
            .client
            .upload_part()
            .bucket(&store.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(length as i64)
            .body(body);
        let sent = with_sse_c!(request, &store.sse).send();
        async move {
            let uploaded = sent.await.map_err(|err| request_error("UploadPart", err))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_string))
                .build())
        }
    }

    /// Makes the object visible under its key with its digest in metadata, then checks what
    /// the store reports. Call only after the validator accepted the whole file.
    pub async fn finish(&mut self, sha256: &str, bytes: u64) -> Result<(), StoreError> {
        let store = self.store;
        if self.in_flight.is_some() || self.unassigned.is_some_and(|left| left > 0) {
            return Err(StoreError::Mismatch(format!(
                "{} received fewer bytes than the source declared",
                self.key
            )));
        }
        if self.multipart.is_none() {
            let body = std::mem::take(&mut self.buffer).freeze();
            store.put_object(&self.key, body, self.content_type, sha256).await?;
            return store.verify(&self.key, bytes, sha256).await;
        }
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer).freeze();
            let length = last.len() as u64;
            let number = self.next_part_number().await?;
            let completed = self.part_request(number, ByteStream::from(last), length).await?;
            self.push_part(completed);
        }
        let Some(multipart) = self.multipart.as_ref() else {
            unreachable!("checked above")
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(multipart.parts.clone()))
            .build();
        let request = store
            .client
            .complete_multipart_upload()
            .bucket(&store.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .multipart_upload(completed);
        with_sse_c!(request, &store.sse)
            .send()
            .await
            .map_err(|err| request_error("CompleteMultipartUpload", err))?;
        // Completed: nothing left to abort.
        self.multipart = None;
        // The digest is known only now, and metadata can only be set by copying the object
        // onto itself (server-side; Garage and S3 link the same data without rewriting it).
        if let Err(err) = self.copy_with_digest(sha256).await {
            store.delete(&self.key).await.ok();
            return Err(err);
        }
        store.verify(&self.key, bytes, sha256).await
    }

    async fn copy_with_digest(&self, sha256: &str) -> Result<(), StoreError> {
        let store = self.store;
        let source = format!("{}/{}", store.bucket, urlencode_key(&self.key));
        let mut request = store
            .client
            .copy_object()
            .bucket(&store.bucket)
            .key(&self.key)
            .copy_source(source)
            .metadata_directive(MetadataDirective::Replace)
            .content_type(self.content_type)
            .metadata(META_SHA256, sha256)
            .metadata(META_KEY_ID, &store.key_id);
        if let Sse::CustomerKey(key) = &store.sse {
            request = request
                .copy_source_sse_customer_algorithm("AES256")
                .copy_source_sse_customer_key(key.key_base64())
                .copy_source_sse_customer_key_md5(key.md5_base64());
        }
        with_sse!(request, &store.sse)
            .send()
            .await
            .map_err(|err| request_error("CopyObject", err))?;
        Ok(())
    }

    /// Abandons the upload: a streamed part's request is cancelled and a started multipart
    /// upload is aborted, so no parts linger.
    pub async fn abort(mut self) {
        if let Some(part) = self.in_flight.take() {
            part.task.abort();
        }
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

/// A request body fed chunk by chunk through a channel, of a length known in advance (S3
/// needs each part's Content-Length up front). Hand-written: the SDK takes any
/// `http_body::Body`, and no crate offers a channel body with an exact size.
struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
    remaining: u64,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
            }
            Poll::Ready(None) if self.remaining == 0 => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the download ended before the part was complete",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/`.
fn urlencode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
