//! The local stack's settings, read from the env file scripts/stack/up.sh writes, and an
//! S3 client built from the same settings to look at what the archiver stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use base64::Engine as _;
use md5::Digest as _;

/// The repository root (the integration tests belong to crates/archiver).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The settings of a running stack.
pub struct Stack {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
}

impl Stack {
    /// Reads the stack's env file once per test process. Panics, saying how to fix it,
    /// when the stack has not been started.
    pub fn load() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(Stack::read)
    }

    fn read() -> Stack {
        let dir = match std::env::var_os("ARCHIVER_STACK_DIR") {
            Some(dir) => repo_root().join(dir),
            None => repo_root().join(".stack"),
        };
        let file = dir.join("env");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|error| {
            panic!(
                "cannot read the stack settings {}: {error}\n\
                 run scripts/stack/up.sh first (scripts/test.sh does it for you)",
                file.display()
            )
        });
        Stack {
            dir,
            vars: parse_env_file(&text),
        }
    }

    /// The state directory of the stack (`.stack/` by default).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every setting of the env file.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// One setting; panics if the env file lacks it.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the stack env file; rerun scripts/stack/up.sh"))
    }

    /// The settings to give an archiver process (the whole env file).
    pub fn env_for_archiver(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    pub fn bucket(&self) -> &str {
        self.var("ARCHIVER_S3_BUCKET")
    }

    pub fn amqp_url(&self) -> &str {
        self.var("ARCHIVER_AMQP_URL")
    }

    /// The SSE-C key, base64 (what `ARCHIVER_SSE_C_KEY` holds).
    pub fn sse_c_key(&self) -> &str {
        self.var("ARCHIVER_SSE_C_KEY")
    }

    /// An S3 client for the stack's bucket, over TLS trusting only the stack's CA.
    pub fn s3(&self) -> S3 {
        let ca = std::fs::read(self.var("ARCHIVER_S3_CA_FILE")).expect("read the stack CA file");
        let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(ca);
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .expect("tls context"),
            )
            .build_https();
        let credentials = Credentials::new(
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "archiver-stack",
        );
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(120))
            .build();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.var("ARCHIVER_S3_ENDPOINT"))
            .region(Region::new(self.var("ARCHIVER_S3_REGION").to_string()))
            .force_path_style(true)
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(timeouts)
            .build();
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.sse_c_key())
            .expect("ARCHIVER_SSE_C_KEY is base64");
        S3 {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: self.bucket().to_string(),
            sse_c_key: self.sse_c_key().to_string(),
            sse_c_key_md5: base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&key)),
        }
    }
}

/// Parses `export NAME='value'` lines (comments and blank lines skipped).
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .map(|(name, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (name.trim().to_string(), value.to_string())
        })
        .collect()
}

/// A name no other test (in this run or an earlier one against the same bucket) uses:
/// `label` cut to fit, then the process, the time and a counter. It is a valid tenant
/// (`[a-z0-9][a-z0-9-]{0,62}`), queue name and S3 key segment.
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut clean: String = label
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        clean.insert(0, 't');
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{clean}-{:x}-{:x}-{count}", std::process::id(), nanos % (1 << 48))
}

/// Why an S3 call failed: the HTTP status when there was an answer, and the full error.
#[derive(Debug)]
pub struct S3Failure {
    pub status: Option<u16>,
    pub message: String,
}

type HttpResponse = aws_smithy_runtime_api::client::orchestrator::HttpResponse;

impl<E> From<aws_sdk_s3::error::SdkError<E, HttpResponse>> for S3Failure
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: aws_sdk_s3::error::SdkError<E, HttpResponse>) -> Self {
        S3Failure {
            status: error.raw_response().map(|response| response.status().as_u16()),
            message: aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
        }
    }
}

/// An S3 client on the stack's bucket, with the stack's SSE-C key at hand.
pub struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    sse_c_key: String,
    sse_c_key_md5: String,
}

impl S3 {
    /// The SDK client, for what the helpers below do not cover.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes an object encrypted with the stack's SSE-C key.
    pub async fn put_object_sse_c(&self, key: &str, body: Vec<u8>) -> Result<(), S3Failure> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&self.sse_c_key)
            .sse_customer_key_md5(&self.sse_c_key_md5)
            .send()
            .await?;
        Ok(())
    }

    /// Reads an object encrypted with the stack's SSE-C key.
    pub async fn get_object_sse_c(&self, key: &str) -> Result<Vec<u8>, S3Failure> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&self.sse_c_key)
            .sse_customer_key_md5(&self.sse_c_key_md5)
            .send()
            .await?;
        collect(output.body).await
    }

    /// Reads an object without any key: must fail for an SSE-C object.
    pub async fn get_object_plain(&self, key: &str) -> Result<Vec<u8>, S3Failure> {
        let output = self.client.get_object().bucket(&self.bucket).key(key).send().await?;
        collect(output.body).await
    }

    /// The metadata of an SSE-C object (encryption, user metadata, checksums).
    pub async fn head_object_sse_c(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput, S3Failure> {
        Ok(self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&self.sse_c_key)
            .sse_customer_key_md5(&self.sse_c_key_md5)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await?)
    }

    /// Every key under `prefix`, sorted.
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .unwrap_or_else(|error| panic!("list {prefix}: {}", aws_sdk_s3::error::DisplayErrorContext(&error)));
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key().map(String::from)),
            );
        }
        keys.sort();
        keys
    }

    /// Deletes every object under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> usize {
        let keys = self.list_keys(prefix).await;
        for key in &keys {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|error| panic!("delete {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&error)));
        }
        keys.len()
    }
}

async fn collect(body: aws_sdk_s3::primitives::ByteStream) -> Result<Vec<u8>, S3Failure> {
    body.collect()
        .await
        .map(|data| data.into_bytes().to_vec())
        .map_err(|error| S3Failure {
            status: None,
            message: error.to_string(),
        })
}
