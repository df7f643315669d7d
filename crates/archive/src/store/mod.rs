//! The S3 side: a client built from the standard AWS chain (optional endpoint, path style,
//! region and CA), server-side encryption on every request, SHA-256 checksums that the
//! store verifies on every write, and a read-back of what the store reports after it.
//!
//! - `sse`: the encryption headers, as builder methods;
//! - `put`: one object in one PUT (media below a part, manifests), with conditions;
//! - `multipart`: one object of any size with bounded memory, part by part;
//! - `verify`: what the store reports after a write (checksum, length, encryption);
//! - `read`: GET and HEAD, the manifest with its ETag, objects found without a manifest;
//! - `list`: listings page by page, locks as a HEAD reports them, and erasure's deletes;
//! - `lock`: the Object Lock retention headers on writes;
//! - `error`: [`StoreError`] and whose fault it is ([`StoreFault`]).

mod error;
mod list;
mod lock;
mod multipart;
mod put;
mod read;
mod sse;
mod verify;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;

use crate::config::{ObjectLock, Sse, StoreConfig};

pub use error::{StoreError, StoreFault};
pub use list::{Deleted, Lock, Undeleted};
pub use multipart::Upload;
pub(crate) use put::Condition;
pub use read::{FoundObject, ManifestRead};

/// Metadata names (sent as `x-amz-meta-*`). The SHA-256 and what validation learned are
/// known before a single PUT, so such objects carry them; a multipart object is created
/// before they are known and carries only the key id.
pub(crate) const META_SHA256: &str = "sha256";
pub(crate) const META_KEY_ID: &str = "key-id";
pub(crate) const META_WIDTH: &str = "width";
pub(crate) const META_HEIGHT: &str = "height";
pub(crate) const META_DURATION: &str = "duration-secs";
pub(crate) const META_FETCHED_AT: &str = "fetched-at";

/// The bucket, its prefix and the encryption every object gets.
#[derive(Clone)]
pub struct Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    sse: Sse,
    key_id: String,
    /// Earlier SSE-C keys, to read what they wrote (never to write).
    previous_keys: Vec<(String, Sse)>,
    part_size: usize,
    /// Object Lock retention for every write, when configured.
    object_lock: Option<ObjectLock>,
    /// The credentials chain the client signs with (for `access_key_id`).
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
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
        // Every body sent is already in memory (a part at most), so a request never waits
        // for a slow download: the read timeout bounds the store's own answer only.
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
            // The checksum of every write is ours: SHA-256, computed as the bytes arrive and
            // sent as `x-amz-checksum-sha256` (the store verifies it). The SDK's own default
            // (a CRC32 on every upload) would add a second, weaker checksum that some
            // S3-compatible stores refuse; response validation is ours too (verify.rs).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let client = aws_sdk_s3::Client::from_conf(builder.build());
        let sse = match &config.sse {
            Sse::Kms { key_id: None } => Sse::Kms {
                key_id: Some(bucket_default_kms_key(&client, &config.bucket).await?),
            },
            other => other.clone(),
        };
        let previous_keys = config
            .previous_keys
            .iter()
            .map(|(id, key)| (id.clone(), Sse::CustomerKey(key.clone())))
            .collect();
        Ok(Store {
            client,
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            sse,
            key_id: config.key_id.clone(),
            previous_keys,
            part_size: config.part_size,
            object_lock: config.object_lock,
            credentials: shared.credentials_provider(),
        })
    }

    /// `{prefix}{tenant}/{session_id}/{name}` (docs/contract.md section 3).
    pub fn key(&self, tenant: &str, session_id: &str, name: &str) -> String {
        format!("{}{tenant}/{session_id}/{name}", self.prefix)
    }

    pub fn sse(&self) -> &Sse {
        &self.sse
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The keys to read with: the current one first, then the keyring's.
    fn read_keys(&self) -> impl Iterator<Item = &Sse> {
        std::iter::once(&self.sse).chain(self.previous_keys.iter().map(|(_, sse)| sse))
    }

    /// Starts an upload to `key` of `declared` bytes when the source said; nothing is
    /// visible under `key` before [`Upload::finish`].
    pub fn upload(&self, key: String, content_type: &'static str, declared: Option<u64>) -> Upload<'_> {
        Upload::new(self, key, content_type, declared)
    }

    /// The access key id of the credentials the client was built with, asked of the AWS
    /// chain it already loaded. The chain answers static keys (the environment's) from
    /// memory; the binary asks only then, so that this never costs a network call.
    pub async fn access_key_id(&self) -> Option<String> {
        use aws_sdk_s3::config::ProvideCredentials as _;
        let provider = self.credentials.as_ref()?;
        let credentials = tokio::time::timeout(Duration::from_secs(2), provider.provide_credentials())
            .await
            .ok()?
            .ok()?;
        Some(credentials.access_key_id().to_string())
    }

    /// Can the bucket be reached with these credentials?
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|err| error::request_error("HeadBucket", err))?;
        Ok(())
    }
}

/// The bucket's default KMS key, for `aws:kms` without `ARCHIVER_SSE_KMS_KEY_ID`: sent
/// explicitly on every write and checked on every read-back, so that an object can never
/// end up under the account's `aws/s3` key (what S3 uses for `aws:kms` without a key id).
async fn bucket_default_kms_key(client: &aws_sdk_s3::Client, bucket: &str) -> Result<String, StoreError> {
    let fix = "set ARCHIVER_SSE_KMS_KEY_ID to the KMS key the archive must use";
    let answer = client
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .map_err(|err| {
            StoreError::Config(format!(
                "aws:kms without a key id: cannot read the bucket's default KMS key ({}); {fix}",
                error::request_error("GetBucketEncryption", err)
            ))
        })?;
    answer
        .server_side_encryption_configuration()
        .into_iter()
        .flat_map(|configuration| configuration.rules())
        .filter_map(|rule| rule.apply_server_side_encryption_by_default())
        .find_map(|default| default.kms_master_key_id())
        .map(str::to_string)
        .ok_or_else(|| {
            StoreError::Config(format!(
                "aws:kms without a key id: the bucket has no default KMS key; {fix}"
            ))
        })
}

/// Whether the KMS key the store reports is the one asked for: the same ARN, or an ARN
/// ending in the key id given. An alias cannot be compared without a KMS call, so any key
/// is accepted for it (docs/security.md says so).
pub(crate) fn is_kms_key(reported: Option<&str>, wanted: Option<&str>) -> bool {
    match (reported, wanted) {
        (Some(_), Some(wanted)) if wanted.starts_with("alias/") || wanted.contains(":alias/") => true,
        (Some(reported), Some(wanted)) => reported == wanted || reported.ends_with(&format!("/{wanted}")),
        _ => false,
    }
}

/// The base64 form of a hex SHA-256, as `x-amz-checksum-sha256` carries it.
pub(crate) fn checksum_of_hex(sha256_hex: &str) -> Option<String> {
    hex::decode(sha256_hex)
        .ok()
        .map(|digest| base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The base64 SHA-256 of some bytes.
pub(crate) fn checksum_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn kms_keys_match_by_arn_or_id() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let cases = [
            (Some(arn), Some(arn), true),
            (Some(arn), Some("1234abcd-12ab-34cd-56ef-1234567890ab"), true),
            (Some(arn), Some("ffffffff-12ab-34cd-56ef-1234567890ab"), false),
            (
                Some("arn:aws:kms:eu-west-1:111122223333:key/aws-s3-default"),
                Some("1234abcd"),
                false,
            ),
            (None, Some(arn), false),
            (Some(arn), Some("alias/archive"), true),
            (Some(arn), None, false),
        ];
        for (reported, wanted, expected) in cases {
            assert_eq!(super::is_kms_key(reported, wanted), expected, "{reported:?} {wanted:?}");
        }
    }
}
