//! The pipeline's configuration, built and validated by the binary from its settings
//! (CONTRACT.md section 7). Nothing here reads the environment or files.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;

/// Everything [`Archiver::new`](crate::Archiver::new) needs.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub store: StoreConfig,
    pub fetch: FetchConfig,
    /// The media rules of CONTRACT.md section 2.
    pub limits: media::Limits,
}

/// Where and how objects are written.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub bucket: String,
    /// Key prefix, such as `face-reports/`.
    pub prefix: String,
    /// An S3-compatible endpoint; AWS when `None`.
    pub endpoint: Option<String>,
    /// The region; from the AWS chain when `None` (and `us-east-1` when the chain has none
    /// but an endpoint is set, as S3-compatible stores rarely care).
    pub region: Option<String>,
    pub path_style: bool,
    /// Extra PEM CAs to trust for the endpoint, on top of the platform's roots.
    pub extra_ca_pem: Vec<Vec<u8>>,
    pub sse: Sse,
    /// A name for the key in use, recorded in object metadata and the manifest.
    pub key_id: String,
    /// Earlier SSE-C keys by key id (`ARCHIVER_SSE_C_KEYRING_FILE`): used only to read
    /// what they wrote (manifests written before a rotation); never to write.
    pub previous_keys: Vec<(String, SseCustomerKey)>,
    /// Multipart part size; objects smaller than one part go up with a single PUT.
    pub part_size: usize,
    /// Deadline for each S3 call attempt.
    pub operation_timeout: Duration,
    /// S3 Object Lock retention on every write (`ARCHIVER_OBJECT_LOCK_MODE` with
    /// `ARCHIVER_RETAIN_DAYS`); `None` writes no lock headers.
    pub object_lock: Option<ObjectLock>,
}

/// S3 Object Lock retention: every object is written with this mode, retained until its
/// write time plus `retain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub retain: Duration,
}

/// The two Object Lock modes (docs/operations.md explains the difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete before the date.
    Governance,
    /// Nobody, not even the account's root user, can delete before the date.
    Compliance,
}

/// How media are fetched.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// `ARCHIVER_ALLOWED_HOSTS`; empty means any host whose every address is public.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Extra PEM CAs to trust for media hosts.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// URL lifetime from `issued_at` (`ARCHIVER_URL_TTL_SECS`).
    pub url_ttl: Duration,
    /// Per-media size cap (`ARCHIVER_MAX_MEDIA_BYTES`).
    pub max_media_bytes: u64,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Longest one attempt (request, body and upload) may take.
    pub attempt_timeout: Duration,
    /// The low-speed limit: fewer than `min_transfer_rate` bytes a second over any window of
    /// `transfer_rate_grace` ends the attempt (curl's `--speed-limit`/`--speed-time`),
    /// whatever came before (a trickling source cannot hold a worker for long).
    pub min_transfer_rate: u64,
    pub transfer_rate_grace: Duration,
    /// Attempts per media, the first included.
    pub max_attempts: usize,
    /// Backoff between attempts: jittered exponential from `min_backoff` to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl FetchConfig {
    /// The defaults for everything but the hosts, CAs and limits the operator sets.
    pub fn new(allowed_hosts: Vec<AllowedHost>, url_ttl: Duration, max_media_bytes: u64) -> Self {
        FetchConfig {
            allowed_hosts,
            extra_ca_pem: Vec::new(),
            url_ttl,
            max_media_bytes,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(300),
            min_transfer_rate: 1024,
            transfer_rate_grace: Duration::from_secs(10),
            max_attempts: 4,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
        }
    }
}

/// One entry of `ARCHIVER_ALLOWED_HOSTS`: `host` (any port) or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl std::str::FromStr for AllowedHost {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || format!("{text:?} is not a host or host:port");
        // Let the URL parser do the work: it knows IPv6 brackets and IDNA.
        let url = url::Url::parse(&format!("https://{text}/")).map_err(|_| bad())?;
        if !url.username().is_empty() || url.path() != "/" || url.query().is_some() {
            return Err(bad());
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad()),
        };
        // `Url` drops a port equal to the scheme default; keep what the operator wrote.
        let port = match url.port() {
            Some(port) => Some(port),
            None if text.ends_with(":443") => Some(443),
            None => None,
        };
        Ok(AllowedHost { host, port })
    }
}

/// Server-side encryption (CONTRACT.md section 7); there is no plaintext mode.
#[derive(Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-C: the store encrypts with a key sent on every request and never kept.
    CustomerKey(SseCustomerKey),
    /// SSE-KMS, with the bucket's default key when `key_id` is `None`.
    Kms { key_id: Option<String> },
    /// SSE-S3 (`AES256`), keys managed by the store.
    Aes256,
}

impl Sse {
    /// The word of `ARCHIVER_SSE` and of the manifest's `encryption.mode`.
    pub fn mode(&self) -> &'static str {
        match self {
            Sse::CustomerKey(_) => "sse-c",
            Sse::Kms { .. } => "aws:kms",
            Sse::Aes256 => "AES256",
        }
    }
}

impl fmt::Debug for Sse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sse::CustomerKey(key) => write!(f, "Sse::CustomerKey(md5 {})", key.md5_base64()),
            Sse::Kms { key_id } => write!(f, "Sse::Kms {{ key_id: {key_id:?} }}"),
            Sse::Aes256 => write!(f, "Sse::Aes256"),
        }
    }
}

/// A 32-byte SSE-C key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SseCustomerKey {
    key_base64: String,
    md5_base64: String,
}

impl SseCustomerKey {
    /// From the base64 text of `ARCHIVER_SSE_C_KEY`; the key must be 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let engine = base64::engine::general_purpose::STANDARD;
        let key = zeroize::Zeroizing::new(
            engine
                .decode(text.trim())
                .map_err(|_| "must be base64 of a 32-byte key (try `openssl rand -base64 32`)".to_string())?,
        );
        if key.len() != 32 {
            return Err(format!(
                "must be base64 of a 32-byte key, got {} bytes (try `openssl rand -base64 32`)",
                key.len()
            ));
        }
        let md5 = md5::Md5::digest(key.as_slice());
        Ok(SseCustomerKey {
            key_base64: engine.encode(key.as_slice()),
            md5_base64: engine.encode(md5),
        })
    }

    pub(crate) fn key_base64(&self) -> &str {
        &self.key_base64
    }

    /// The key's MD5 in base64, as S3 reports it; safe to show.
    pub fn md5_base64(&self) -> &str {
        &self.md5_base64
    }
}

/// Our copy of the key is wiped when dropped; the copies aws-sdk-s3 makes for each request
/// (headers, its own strings) are outside our reach.
impl Drop for SseCustomerKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_base64);
    }
}

impl fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SseCustomerKey(md5 {})", self.md5_base64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_parse() {
        let cases = [
            ("localhost:8443", Some(("localhost", Some(8443)))),
            ("Media.Vendor.Example", Some(("media.vendor.example", None))),
            ("cdn.example:443", Some(("cdn.example", Some(443)))),
            ("[::1]:9000", Some(("::1", Some(9000)))),
            ("127.0.0.1", Some(("127.0.0.1", None))),
            ("host/path", None),
            ("user@host", None),
            ("host:notaport", None),
        ];
        for (text, expected) in cases {
            let parsed = text.parse::<AllowedHost>().ok();
            let parsed = parsed.as_ref().map(|h| (h.host.as_str(), h.port));
            assert_eq!(parsed, expected, "{text}");
        }
    }

    #[test]
    fn sse_c_key_must_be_32_bytes_and_never_shows() {
        let key = SseCustomerKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        assert!(!format!("{key:?}").contains("MDEy"));
        assert!(SseCustomerKey::from_base64("c2hvcnQ=")
            .unwrap_err()
            .contains("got 5 bytes"));
        assert!(SseCustomerKey::from_base64("not base64!").is_err());
    }
}
