//! The S3 side: a client built from the standard AWS chain (optional endpoint, path style,
//! region and CA), uploads that stream with bounded memory, server-side encryption on
//! every request, and a read-back of what the store reports after every write.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::{Sse, StoreConfig};

/// Metadata names (sent as `x-amz-meta-*`).
const META_SHA256: &str = "sha256";
const META_KEY_ID: &str = "key-id";

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An S3 request failed (unreachable, refused, timed out).
    #[error("s3 {operation} failed: {detail}")]
    Request { operation: &'static str, detail: String },
    /// The object does not exist.
    #[error("no object at {key}")]
    NotFound { key: String },
    /// After writing, the store did not report the requested encryption; what was written
    /// has been deleted. Retrying cannot fix this: the store or its configuration must change.
    #[error("store did not report the requested encryption {mode}; object deleted")]
    EncryptionNotReported { mode: &'static str },
    /// The object read back does not match what was written.
    #[error("stored object does not match what was written: {0}")]
    Mismatch(String),
    /// The store cannot be set up as configured.
    #[error("{0}")]
    Config(String),
    /// A manifest read back is not valid schema 1 JSON.
    #[error("manifest at {key} is not valid: {detail}")]
    BadManifest { key: String, detail: String },
    /// Writing to the local sink failed.
    #[error("cannot write the object out: {0}")]
    Sink(String),
}

impl StoreError {
    /// Whether another attempt could succeed. Only a store that ignores the requested
    /// encryption, and a misconfiguration, are final.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StoreError::EncryptionNotReported { .. } | StoreError::Config(_))
    }
}

fn request_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Request { operation, detail: DisplayErrorContext(&err).to_string() }
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    matches!(err.code(), Some("NoSuchKey" | "NotFound"))
        || err.raw_response().is_some_and(|response| response.status().as_u16() == 404)
}

/// Adds the SSE-C headers (algorithm, key, key MD5) to a request builder.
macro_rules! with_sse_c {
    ($builder:expr, $sse:expr) => {{
        let builder = $builder;
        match $sse {
            Sse::CustomerKey(key) => builder
                .sse_customer_algorithm("AES256")
                .sse_customer_key(key.key_base64())
                .sse_customer_key_md5(key.md5_base64()),
            _ => builder,
        }
    }};
}

/// Adds the encryption request of a write (PUT, CreateMultipartUpload, CopyObject).
macro_rules! with_sse {
    ($builder:expr, $sse:expr) => {{
        let builder = $builder;
        match $sse {
            Sse::CustomerKey(_) => with_sse_c!(builder, $sse),
            Sse::Kms { key_id } => {
                builder.server_side_encryption(ServerSideEncryption::AwsKms).set_ssekms_key_id(key_id.clone())
            }
            Sse::Aes256 => builder.server_side_encryption(ServerSideEncryption::Aes256),
        }
    }};
}

/// The bucket, its prefix and the encryption every object gets.
#[derive(Clone)]
pub struct Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    sse: Sse,
    key_id: String,
    part_size: usize,
}

impl Store {
    pub async fn new(config: &StoreConfig) -> Result<Store, StoreError> {
        if matches!(config.sse, Sse::CustomerKey(_)) && config.endpoint.as_deref().is_some_and(|ep| ep.starts_with("http://")) {
            return Err(StoreError::Config(
                "sse-c is refused over plain http: the key would travel in clear; use an https endpoint".into(),
            ));
        }
        if config.part_size < 5 * 1024 * 1024 {
            return Err(StoreError::Config("multipart part size must be at least 5 MiB".into()));
        }
        let mut trust = TrustStore::default();
        for pem in &config.extra_ca_pem {
            // The SDK only reads the PEM at connection time; check it now for a clear error.
            reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|err| StoreError::Config(format!("S3 CA file is not PEM: {err}")))?;
            trust = trust.with_pem_certificate(pem.clone());
        }
        let tls_context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|err| StoreError::Config(format!("cannot set up TLS for S3: {err}")))?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls_context)
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .operation_attempt_timeout(config.operation_timeout)
            .operation_timeout(config.operation_timeout * 3)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client).timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            // S3-compatible stores differ in their support of the SDK's default CRC
            // checksums; integrity is covered by TLS and the SHA-256 read back instead.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(Store {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            sse: config.sse.clone(),
            key_id: config.key_id.clone(),
            part_size: config.part_size,
        })
    }

    /// `{prefix}{tenant}/{session_id}/{name}` (CONTRACT.md section 3).
    pub fn key(&self, tenant: &str, session_id: &str, name: &str) -> String {
        format!("{}{tenant}/{session_id}/{name}", self.prefix)
    }

    pub fn sse(&self) -> &Sse {
        &self.sse
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Starts an upload to `key`; nothing is visible under `key` before [`Upload::finish`].
    pub fn upload(&self, key: String, content_type: &'static str) -> Upload<'_> {
        Upload { store: self, key, content_type, buffer: BytesMut::new(), multipart: None }
    }

    /// Writes a small object in one PUT and checks it (the manifest).
    pub async fn put_small(&self, key: &str, body: Bytes, content_type: &'static str) -> Result<(), StoreError> {
        let mut upload = self.upload(key.to_string(), content_type);
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        let length = body.len() as u64;
        upload.write(body).await?;
        upload.finish(&sha256, length).await
    }

    async fn put_object(&self, key: &str, body: Bytes, content_type: &'static str, sha256: &str) -> Result<(), StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(body.len() as i64)
            .metadata(META_SHA256, sha256)
            .metadata(META_KEY_ID, &self.key_id)
            .body(ByteStream::from(body));
        with_sse!(request, &self.sse).send().await.map_err(|err| request_error("PutObject", err))?;
        Ok(())
    }

    /// Reads the object's metadata back: it counts as stored only when the store reports
    /// the requested encryption, the length and the digest written. Otherwise it is deleted.
    async fn verify(&self, key: &str, bytes: u64, sha256: &str) -> Result<(), StoreError> {
        let head = with_sse_c!(self.client.head_object().bucket(&self.bucket).key(key), &self.sse)
            .send()
            .await
            .map_err(|err| request_error("HeadObject", err))?;
        let encrypted = match &self.sse {
            Sse::CustomerKey(key) => {
                head.sse_customer_algorithm() == Some("AES256") && head.sse_customer_key_md5() == Some(key.md5_base64())
            }
            Sse::Kms { .. } => head.server_side_encryption() == Some(&ServerSideEncryption::AwsKms),
            Sse::Aes256 => head.server_side_encryption() == Some(&ServerSideEncryption::Aes256),
        };
        if !encrypted {
            tracing::error!(key, mode = self.sse.mode(), "store did not report the requested encryption; deleting the object");
            self.delete(key).await?;
            return Err(StoreError::EncryptionNotReported { mode: self.sse.mode() });
        }
        let stored_sha = head.metadata().and_then(|meta| meta.get(META_SHA256)).map(String::as_str);
        if head.content_length() != Some(bytes as i64) || stored_sha != Some(sha256) {
            return Err(StoreError::Mismatch(format!(
                "{key} has {:?} bytes and sha256 {:?}, expected {bytes} and {sha256}",
                head.content_length(),
                stored_sha
            )));
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| request_error("DeleteObject", err))?;
        Ok(())
    }

    /// Streams an object, decrypted with the configured SSE-C key, into `sink`.
    pub async fn get_object(&self, key: &str, mut sink: impl AsyncWrite + Unpin) -> Result<u64, StoreError> {
        let request = with_sse_c!(self.client.get_object().bucket(&self.bucket).key(key), &self.sse);
        let output = match request.send().await {
            Ok(output) => output,
            Err(err) if is_not_found(&err) => return Err(StoreError::NotFound { key: key.to_string() }),
            Err(err) => return Err(request_error("GetObject", err)),
        };
        let mut body = output.body;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| StoreError::Request { operation: "GetObject", detail: err.to_string() })?;
            sink.write_all(&chunk).await.map_err(|err| StoreError::Sink(err.to_string()))?;
            written += chunk.len() as u64;
        }
        sink.flush().await.map_err(|err| StoreError::Sink(err.to_string()))?;
        Ok(written)
    }

    /// Can the bucket be reached with these credentials?
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|err| request_error("HeadBucket", err))?;
        Ok(())
    }
}

/// One object being written. Memory stays at most one part: smaller objects go up in one
/// PUT at the end, larger ones as a multipart upload completed only by [`Upload::finish`].
/// A failed upload must be given to [`Upload::abort`].
pub struct Upload<'a> {
    store: &'a Store,
    key: String,
    content_type: &'static str,
    buffer: BytesMut,
    multipart: Option<Multipart>,
}

struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl Upload<'_> {
    /// Adds bytes; uploads a part each time a whole part is buffered.
    pub async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        let part_size = self.store.part_size;
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                // Reserve a part at once: untouched pages cost no memory, and growing by
                // doubling would overshoot the part size.
                self.buffer = BytesMut::with_capacity(part_size);
            }
            let take = chunk.len().min(part_size - self.buffer.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == part_size {
                let part = std::mem::take(&mut self.buffer).freeze();
                self.upload_part(part).await?;
            }
        }
        Ok(())
    }

    async fn upload_part(&mut self, body: Bytes) -> Result<(), StoreError> {
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
            self.multipart = Some(Multipart { upload_id: upload_id.to_string(), parts: Vec::new() });
        }
        let Some(multipart) = self.multipart.as_mut() else { unreachable!("created above") };
        let number = multipart.parts.len() as i32 + 1;
        let request = store
            .client
            .upload_part()
            .bucket(&store.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body));
        let uploaded = with_sse_c!(request, &store.sse).send().await.map_err(|err| request_error("UploadPart", err))?;
        multipart
            .parts
            .push(CompletedPart::builder().part_number(number).set_e_tag(uploaded.e_tag().map(str::to_string)).build());
        Ok(())
    }

    /// Makes the object visible under its key with its digest in metadata, then checks what
    /// the store reports. Call only after the validator accepted the whole file.
    pub async fn finish(&mut self, sha256: &str, bytes: u64) -> Result<(), StoreError> {
        let store = self.store;
        if self.multipart.is_none() {
            let body = std::mem::take(&mut self.buffer).freeze();
            store.put_object(&self.key, body, self.content_type, sha256).await?;
            return store.verify(&self.key, bytes, sha256).await;
        }
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer).freeze();
            self.upload_part(last).await?;
        }
        let Some(multipart) = self.multipart.take() else { unreachable!("checked above") };
        let completed = CompletedMultipartUpload::builder().set_parts(Some(multipart.parts)).build();
        let request = store
            .client
            .complete_multipart_upload()
            .bucket(&store.bucket)
            .key(&self.key)
            .upload_id(&multipart.upload_id)
            .multipart_upload(completed);
        if let Err(err) = with_sse_c!(request, &store.sse).send().await {
            // Put it back so that `abort` cleans up.
            self.multipart = Some(Multipart { upload_id: multipart.upload_id, parts: Vec::new() });
            return Err(request_error("CompleteMultipartUpload", err));
        }
        // The digest is known only now, and metadata can only be set by copying the object
        // onto itself (server-side: no bytes travel through this process).
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
        with_sse!(request, &store.sse).send().await.map_err(|err| request_error("CopyObject", err))?;
        Ok(())
    }

    /// Abandons the upload: a started multipart upload is aborted so no parts linger.
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
                tracing::warn!(key = %self.key, error = %DisplayErrorContext(&err), "could not abort a multipart upload");
            }
        }
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

/// Reads a manifest back, `None` when there is none.
pub(crate) async fn read_manifest(store: &Store, key: &str) -> Result<Option<crate::manifest::Manifest>, StoreError> {
    let mut body = Vec::new();
    match store.get_object(key, &mut body).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(err) => return Err(err),
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|err| StoreError::BadManifest { key: key.to_string(), detail: err.to_string() })
}
