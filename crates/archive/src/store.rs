//! The S3 side: a client built from the standard AWS chain (optional endpoint, path style,
//! region and CA), uploads that stream with bounded memory, server-side encryption on
//! every request, and a read-back of what the store reports after every write.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::{Sse, StoreConfig};
pub use crate::upload::Upload;

/// Metadata names (sent as `x-amz-meta-*`).
pub(crate) const META_SHA256: &str = "sha256";
pub(crate) const META_KEY_ID: &str = "key-id";

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
    /// The store refused to read an SSE-C object with the key given: the object was
    /// written under another key (S3 answers AccessDenied, Garage InvalidRequest).
    #[error("the store refused the SSE-C key ({code}: {message})")]
    WrongKey { code: String, message: String },
}

impl StoreError {
    /// Whether another attempt could succeed. A store that ignores the requested
    /// encryption, a refused SSE-C key and a misconfiguration are final.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            StoreError::EncryptionNotReported { .. } | StoreError::Config(_) | StoreError::WrongKey { .. }
        )
    }
}

pub(crate) fn request_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Request {
        operation,
        detail: DisplayErrorContext(&err).to_string(),
    }
}

/// The codes a store answers a read whose SSE-C key is not the object's.
fn is_key_refusal(code: Option<&str>) -> bool {
    matches!(code, Some("AccessDenied" | "InvalidRequest" | "InvalidArgument"))
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    matches!(err.code(), Some("NoSuchKey" | "NotFound"))
        || err
            .raw_response()
            .is_some_and(|response| response.status().as_u16() == 404)
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
            Sse::Kms { key_id } => builder
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
            Sse::Aes256 => builder.server_side_encryption(ServerSideEncryption::Aes256),
        }
    }};
}

/// The bucket, its prefix and the encryption every object gets.
#[derive(Clone)]
pub struct Store {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) bucket: String,
    prefix: String,
    pub(crate) sse: Sse,
    pub(crate) key_id: String,
    pub(crate) part_size: usize,
}

impl Store {
    pub async fn new(config: &StoreConfig) -> Result<Store, StoreError> {
        if matches!(config.sse, Sse::CustomerKey(_))
            && config.endpoint.as_deref().is_some_and(|ep| ep.starts_with("http://"))
        {
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
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .timeout_config(timeouts);
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

    /// Starts an upload to `key` of `declared` bytes when the source said; nothing is
    /// visible under `key` before [`Upload::finish`].
    pub fn upload(&self, key: String, content_type: &'static str, declared: Option<u64>) -> Upload<'_> {
        Upload::new(self, key, content_type, declared)
    }

    /// Writes a small object in one PUT and checks it (the manifest).
    pub async fn put_small(&self, key: &str, body: Bytes, content_type: &'static str) -> Result<(), StoreError> {
        let mut upload = self.upload(key.to_string(), content_type, None);
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        let length = body.len() as u64;
        upload.write(body).await?;
        upload.finish(&sha256, length).await
    }

    pub(crate) async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &'static str,
        sha256: &str,
    ) -> Result<(), StoreError> {
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
        with_sse!(request, &self.sse)
            .send()
            .await
            .map_err(|err| request_error("PutObject", err))?;
        Ok(())
    }

    /// Reads the object's metadata back: it counts as stored only when the store reports
    /// the requested encryption, the length and the digest written. Otherwise it is deleted.
    pub(crate) async fn verify(&self, key: &str, bytes: u64, sha256: &str) -> Result<(), StoreError> {
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
            tracing::error!(
                key,
                mode = self.sse.mode(),
                "store did not report the requested encryption; deleting the object"
            );
            self.delete(key).await?;
            return Err(StoreError::EncryptionNotReported { mode: self.sse.mode() });
        }
        let stored_sha = head
            .metadata()
            .and_then(|meta| meta.get(META_SHA256))
            .map(String::as_str);
        if head.content_length() != Some(bytes as i64) || stored_sha != Some(sha256) {
            return Err(StoreError::Mismatch(format!(
                "{key} has {:?} bytes and sha256 {:?}, expected {bytes} and {sha256}",
                head.content_length(),
                stored_sha
            )));
        }
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
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
            Err(err) if matches!(self.sse, Sse::CustomerKey(_)) && is_key_refusal(err.code()) => {
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
            })?;
            sink.write_all(&chunk)
                .await
                .map_err(|err| StoreError::Sink(err.to_string()))?;
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
        .map_err(|err| StoreError::BadManifest {
            key: key.to_string(),
            detail: err.to_string(),
        })
}
