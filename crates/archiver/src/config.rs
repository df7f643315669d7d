//! Turns the raw settings of `cli.rs` into one validated configuration, reporting every
//! bad value at once (exit 2) rather than one per run.

use std::time::Duration;

use crate::cli::{LimitSettings, Settings};
use crate::exit::CommandError;

/// Collects configuration problems so they can all be reported together.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Parses `value` or records why it is not acceptable for `variable`.
    pub fn parse<T: std::str::FromStr>(&mut self, variable: &str, value: &str, expected: &str) -> Option<T> {
        match value.trim().parse() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.push(format!("{variable} must be {expected}, got {value:?}"));
                None
            }
        }
    }

    /// Ends the checks and hands out what they built: `value` is `None` only when a
    /// problem was found, which the error then names with every other.
    pub fn finish_with<T>(self, value: Option<T>) -> Result<T, CommandError> {
        self.finish()?;
        value.ok_or_else(|| CommandError::usage("invalid configuration"))
    }

    /// How many problems were found so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Ends the checks: `Ok` when nothing was wrong, else one usage error naming every problem.
    pub fn finish(self) -> Result<(), CommandError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CommandError::usage(format!(
                "invalid configuration: {}",
                self.0.join("; ")
            )))
        }
    }
}

/// Reads the secrets given as files (`ARCHIVER_AMQP_URL_FILE`, `ARCHIVER_SSE_C_KEY_FILE`,
/// `ARCHIVER_PROVIDER_API_KEY_FILE`; Kubernetes mounts Secrets as files) into `settings`, so
/// every command sees one value whichever way it came. Surrounding whitespace (the trailing
/// newline of `echo > file`) is dropped. Errors name the variable and the path, never the content.
pub fn read_secret_files(settings: &mut Settings) -> Result<(), CommandError> {
    let mut problems = Problems::default();
    // clap refuses a value and its file together (`conflicts_with`).
    let files = [
        (
            "ARCHIVER_AMQP_URL",
            "ARCHIVER_AMQP_URL_FILE",
            settings.amqp_url_file.as_deref(),
        ),
        (
            "ARCHIVER_SSE_C_KEY",
            "ARCHIVER_SSE_C_KEY_FILE",
            settings.sse_c_key_file.as_deref(),
        ),
        (
            "ARCHIVER_PROVIDER_API_KEY",
            "ARCHIVER_PROVIDER_API_KEY_FILE",
            settings.provider_api_key_file.as_deref(),
        ),
    ];
    let mut read = Vec::new();
    for (variable, file_variable, path) in files {
        let Some(path) = path else { continue };
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => read.push((variable, text.trim().to_string())),
            Ok(_) => problems.push(format!("{file_variable}: {} is empty", path.display())),
            Err(err) => problems.push(format!(
                "{file_variable}: cannot read {}: {}",
                path.display(),
                err.kind()
            )),
        }
    }
    problems.finish()?;
    for (variable, value) in read {
        match variable {
            "ARCHIVER_AMQP_URL" => settings.amqp_url = value,
            "ARCHIVER_SSE_C_KEY" => settings.sse_c_key = Some(value),
            _ => settings.provider_api_key = Some(value),
        }
    }
    Ok(())
}

/// The media limits (CONTRACT.md section 2), validated.
pub fn limits(settings: &LimitSettings, problems: &mut Problems) -> media::Limits {
    let defaults = media::Limits::default();
    let source_max = match settings.source_max.parse::<media::Dimensions>() {
        Ok(dims) => dims,
        Err(err) => {
            problems.push(format!("ARCHIVER_SOURCE_MAX: {err}"));
            defaults.source_max
        }
    };
    let target_min_short_side = problems
        .parse::<u32>(
            "ARCHIVER_TARGET_MIN_SHORT_SIDE",
            &settings.target_min_short_side,
            "a whole number of pixels",
        )
        .unwrap_or(defaults.target_min_short_side);
    let video_max_secs = problems
        .parse::<f64>(
            "ARCHIVER_VIDEO_MAX_SECS",
            &settings.video_max_secs,
            "a number of seconds",
        )
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .unwrap_or_else(|| {
            if settings.video_max_secs.trim().parse::<f64>().is_ok() {
                problems.push(format!(
                    "ARCHIVER_VIDEO_MAX_SECS must be a positive number of seconds, got {:?}",
                    settings.video_max_secs
                ));
            }
            defaults.video_max_secs
        });
    media::Limits {
        source_max,
        target_min_short_side,
        video_max_secs,
    }
}

/// Validated limits alone, for `archiver validate`.
pub fn limits_only(settings: &LimitSettings) -> Result<media::Limits, CommandError> {
    let mut problems = Problems::default();
    let limits = limits(settings, &mut problems);
    problems.finish()?;
    Ok(limits)
}

/// Reads an optional PEM file named by `variable`, recording a problem when it is unreadable.
pub fn read_pem(variable: &str, path: Option<&std::path::Path>, problems: &mut Problems) -> Vec<Vec<u8>> {
    let Some(path) = path else { return Vec::new() };
    match std::fs::read(path) {
        Ok(pem) if pem.windows(11).any(|w| w == b"-----BEGIN ") => vec![pem],
        Ok(_) => {
            problems.push(format!("{variable}: {} holds no PEM certificate", path.display()));
            Vec::new()
        }
        Err(err) => {
            problems.push(format!("{variable}: cannot read {}: {err}", path.display()));
            Vec::new()
        }
    }
}

/// The pipeline's configuration (docs/contract.md section 7: S3, encryption, fetch,
/// limits), every setting checked; its problems join the command's own in `problems`, so
/// that a command reports every problem in one round. `None` when any was found.
pub fn archive_config(settings: &Settings, problems: &mut Problems) -> Option<archive::ArchiveConfig> {
    let found_before = problems.len();
    let limits = limits(&settings.limits, problems);

    let bucket = settings.s3_bucket.as_deref().map(str::trim).unwrap_or("");
    if bucket.is_empty() {
        problems.push("ARCHIVER_S3_BUCKET is required (the bucket to archive into)");
    }
    let prefix = settings.s3_prefix.trim().to_string();
    if prefix.starts_with('/') {
        problems.push(format!("ARCHIVER_S3_PREFIX must not start with `/`, got {prefix:?}"));
    }
    let endpoint = settings
        .s3_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    if let Some(endpoint) = &endpoint {
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            problems.push(format!(
                "ARCHIVER_S3_ENDPOINT must be an https:// URL, got {endpoint:?}"
            ));
        }
    }
    let path_style = problems
        .parse::<bool>("ARCHIVER_S3_PATH_STYLE", &settings.s3_path_style, "true or false")
        .unwrap_or(false);
    let region = settings
        .s3_region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    let mut s3_ca = read_pem("ARCHIVER_S3_CA_FILE", settings.s3_ca_file.as_deref(), problems);
    // The AWS tools' own variable for an extra bundle; honoured as well (FIELD-NOTES).
    if let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE").filter(|b| !b.is_empty()) {
        s3_ca.extend(read_pem("AWS_CA_BUNDLE", Some(std::path::Path::new(&bundle)), problems));
    }

    let key_id = settings.sse_key_id.trim().to_string();
    if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        problems.push(format!(
            "ARCHIVER_SSE_KEY_ID must be a non-empty printable name, got {key_id:?}"
        ));
    }
    let sse = match settings.sse.as_deref().map(str::trim) {
        None | Some("") => {
            problems.push("ARCHIVER_SSE is required: sse-c, aws:kms or AES256 (there is no plaintext mode)");
            None
        }
        Some("sse-c") => match settings.sse_c_key.as_deref() {
            None | Some("") => {
                problems.push("ARCHIVER_SSE_C_KEY is required with ARCHIVER_SSE=sse-c (try `openssl rand -base64 32`)");
                None
            }
            Some(key) => match archive::SseCustomerKey::from_base64(key) {
                Ok(key) => {
                    if endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
                        problems
                            .push("ARCHIVER_SSE=sse-c is refused over a plain http ARCHIVER_S3_ENDPOINT: use https");
                    }
                    Some(archive::Sse::CustomerKey(key))
                }
                Err(why) => {
                    problems.push(format!("ARCHIVER_SSE_C_KEY {why}"));
                    None
                }
            },
        },
        Some("aws:kms") => Some(archive::Sse::Kms {
            key_id: settings
                .sse_kms_key_id
                .as_deref()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
        }),
        Some("AES256") => Some(archive::Sse::Aes256),
        Some(other) => {
            problems.push(format!("ARCHIVER_SSE must be sse-c, aws:kms or AES256, got {other:?}"));
            None
        }
    };

    let mut allowed_hosts = Vec::new();
    for entry in settings
        .allowed_hosts
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match entry.parse::<archive::AllowedHost>() {
            Ok(host) => allowed_hosts.push(host),
            Err(why) => problems.push(format!("ARCHIVER_ALLOWED_HOSTS: {why}")),
        }
    }
    let source_ca = read_pem("ARCHIVER_SOURCE_CA_FILE", settings.source_ca_file.as_deref(), problems);
    let url_ttl_secs = problems
        .parse::<u64>(
            "ARCHIVER_URL_TTL_SECS",
            &settings.url_ttl_secs,
            "a whole number of seconds",
        )
        .unwrap_or_default();
    let max_media_bytes = problems
        .parse::<u64>(
            "ARCHIVER_MAX_MEDIA_BYTES",
            &settings.max_media_bytes,
            "a whole number of bytes",
        )
        .unwrap_or_default();
    if max_media_bytes > MAX_OBJECT_BYTES {
        problems.push(format!(
            "ARCHIVER_MAX_MEDIA_BYTES must be at most {MAX_OBJECT_BYTES} (S3's 10,000 parts of {PART_SIZE} bytes), got {max_media_bytes}"
        ));
    }
    let attempt_timeout_secs = problems.parse::<u64>(
        "ARCHIVER_FETCH_TIMEOUT_SECS",
        &settings.fetch_timeout_secs,
        "a whole number of seconds",
    );
    let attempts = problems.parse::<usize>(
        "ARCHIVER_FETCH_ATTEMPTS",
        &settings.fetch_attempts,
        "a whole number of attempts",
    );
    if attempt_timeout_secs == Some(0) || attempts == Some(0) {
        problems.push("ARCHIVER_FETCH_TIMEOUT_SECS and ARCHIVER_FETCH_ATTEMPTS must be at least 1");
    }
    let (attempt_timeout_secs, attempts) = (attempt_timeout_secs.unwrap_or_default(), attempts.unwrap_or_default());
    let previous_keys = match &settings.sse_c_keyring_file {
        Some(path) => keyring(path, problems),
        None => Vec::new(),
    };
    let object_lock = object_lock(settings, problems);
    if problems.len() > found_before {
        return None;
    }
    let sse = sse?;

    let mut fetch = archive::FetchConfig::new(allowed_hosts, Duration::from_secs(url_ttl_secs), max_media_bytes);
    fetch.extra_ca_pem = source_ca;
    fetch.attempt_timeout = Duration::from_secs(attempt_timeout_secs);
    fetch.max_attempts = attempts;
    let store = archive::StoreConfig {
        bucket: bucket.to_string(),
        prefix,
        endpoint,
        region,
        path_style,
        extra_ca_pem: s3_ca,
        sse,
        key_id,
        previous_keys,
        part_size: PART_SIZE,
        // Each request sends at most one part from memory: two minutes is ample even for a
        // slow store, and short enough that a stalled one is noticed.
        operation_timeout: Duration::from_secs(120),
        object_lock,
    };
    Some(archive::ArchiveConfig { store, fetch, limits })
}

/// `ARCHIVER_RETAIN_DAYS` (docs/contract.md section 9): the retention period.
pub fn retention(settings: &Settings, problems: &mut Problems) -> Duration {
    let days = problems
        .parse::<u32>("ARCHIVER_RETAIN_DAYS", &settings.retain_days, "a whole number of days")
        .unwrap_or_default();
    Duration::from_secs(u64::from(days) * 86_400)
}

/// `ARCHIVER_OBJECT_LOCK_MODE` with `ARCHIVER_RETAIN_DAYS`: the lock every write carries.
fn object_lock(settings: &Settings, problems: &mut Problems) -> Option<archive::ObjectLock> {
    let retain = retention(settings, problems);
    let mode = match settings.object_lock_mode.as_deref().map(str::trim) {
        None | Some("") => return None,
        Some("GOVERNANCE") => archive::LockMode::Governance,
        Some("COMPLIANCE") => archive::LockMode::Compliance,
        Some(other) => {
            problems.push(format!(
                "ARCHIVER_OBJECT_LOCK_MODE must be GOVERNANCE or COMPLIANCE, got {other:?}"
            ));
            return None;
        }
    };
    if retain.is_zero() {
        problems.push("ARCHIVER_OBJECT_LOCK_MODE needs ARCHIVER_RETAIN_DAYS of at least 1 (the retention period)");
        return None;
    }
    Some(archive::ObjectLock { mode, retain })
}

/// [`archive_config`] for a command that needs nothing else.
pub fn archive_config_alone(settings: &Settings) -> Result<archive::ArchiveConfig, CommandError> {
    let mut problems = Problems::default();
    let config = archive_config(settings, &mut problems);
    problems.finish_with(config)
}

/// Multipart part size: the memory one large media holds while it is fetched (see
/// crates/archive/src/store/multipart.rs), and the single-PUT threshold. S3's smallest:
/// measured (bench/README.md), 5 MiB parts keep a worker at concurrency 8 with large
/// videos at 75 MiB peak RSS against 98 MiB with 8 MiB parts, at the same throughput.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest object a multipart upload of [`PART_SIZE`] parts can make: S3 takes at
/// most 10,000 parts.
const MAX_OBJECT_BYTES: u64 = 10_000 * PART_SIZE as u64;

/// `ARCHIVER_SSE_C_KEYRING_FILE`: one `key_id=base64` a line; blank lines and `#` comments
/// are skipped. Every bad line is a problem of its own, named by its number (never its key).
fn keyring(path: &std::path::Path, problems: &mut Problems) -> Vec<(String, archive::SseCustomerKey)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(err) => {
            problems.push(format!("ARCHIVER_SSE_C_KEYRING_FILE {}: {err}", path.display()));
            return Vec::new();
        }
    };
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once('=')
            .ok_or_else(|| "is not key_id=base64".to_string())
            .and_then(|(id, key)| Ok((id.trim().to_string(), archive::SseCustomerKey::from_base64(key.trim())?)));
        match parsed {
            Ok((id, key)) if !id.is_empty() => keys.push((id, key)),
            Ok(_) => problems.push(format!(
                "ARCHIVER_SSE_C_KEYRING_FILE line {}: the key id is empty",
                number + 1
            )),
            Err(why) => problems.push(format!("ARCHIVER_SSE_C_KEYRING_FILE line {}: {why}", number + 1)),
        }
    }
    keys
}

/// TLS for an `amqps://` broker: `ARCHIVER_AMQP_CA_FILE` and the client certificate
/// (`ARCHIVER_AMQP_CLIENT_CERT_FILE` with `ARCHIVER_AMQP_CLIENT_KEY_FILE`), every file read
/// and checked now, so that a bad one is a configuration error (exit 2) rather than a
/// handshake failing on every reconnect. Problems name the variable and the path, never a
/// key's content. Set with a plain `amqp://` URL they are a problem too: whoever set them
/// expects an encrypted connection, and would get plaintext.
pub fn broker_tls(settings: &Settings, problems: &mut Problems) -> crate::broker::BrokerTls {
    let found_before = problems.len();
    let extra_ca = settings.amqp_ca_file.as_deref().and_then(|path| {
        let pem = read_file("ARCHIVER_AMQP_CA_FILE", path, problems)?;
        let certs = certificates("ARCHIVER_AMQP_CA_FILE", path, &pem, problems)?;
        let mut roots = rustls::RootCertStore::empty();
        if certs.into_iter().any(|cert| roots.add(cert).is_err()) {
            problems.push(format!(
                "ARCHIVER_AMQP_CA_FILE: {} holds a certificate that cannot be a trust anchor",
                path.display()
            ));
            return None;
        }
        match String::from_utf8(pem) {
            Ok(pem) => Some(pem),
            Err(_) => {
                problems.push(format!("ARCHIVER_AMQP_CA_FILE: {} is not text", path.display()));
                None
            }
        }
    });
    let client = match (
        settings.amqp_client_cert_file.as_deref(),
        settings.amqp_client_key_file.as_deref(),
    ) {
        (None, None) => None,
        (Some(_), None) => {
            problems.push("ARCHIVER_AMQP_CLIENT_CERT_FILE needs ARCHIVER_AMQP_CLIENT_KEY_FILE (its private key)");
            None
        }
        (None, Some(_)) => {
            problems.push("ARCHIVER_AMQP_CLIENT_KEY_FILE needs ARCHIVER_AMQP_CLIENT_CERT_FILE (its certificate)");
            None
        }
        (Some(cert_path), Some(key_path)) => client_identity(cert_path, key_path, problems),
    };
    let set: Vec<&str> = [
        ("ARCHIVER_AMQP_CA_FILE", &settings.amqp_ca_file),
        ("ARCHIVER_AMQP_CLIENT_CERT_FILE", &settings.amqp_client_cert_file),
        ("ARCHIVER_AMQP_CLIENT_KEY_FILE", &settings.amqp_client_key_file),
    ]
    .into_iter()
    .filter_map(|(variable, path)| path.as_ref().map(|_| variable))
    .collect();
    // A comma-separated URL names the nodes of a cluster: each must be amqps://. The URL
    // may hold a password, so it is never quoted.
    let plaintext = settings
        .amqp_url
        .split(',')
        .any(|url| !url.trim().starts_with("amqps://"));
    if !set.is_empty() && plaintext {
        problems.push(format!(
            "{} apply to amqps:// only, but ARCHIVER_AMQP_URL is not amqps:// (the broker would be reached in plaintext)",
            set.join(", ")
        ));
    }
    if problems.len() > found_before {
        return crate::broker::BrokerTls::default();
    }
    crate::broker::BrokerTls::new(extra_ca, client)
}

/// The client certificate chain and its key, checked to parse and to match each other.
fn client_identity(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
    problems: &mut Problems,
) -> Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)> {
    use rustls::pki_types::{pem::PemObject as _, PrivateKeyDer};
    let chain_pem = read_file("ARCHIVER_AMQP_CLIENT_CERT_FILE", cert_path, problems);
    let chain = chain_pem
        .as_deref()
        .and_then(|pem| certificates("ARCHIVER_AMQP_CLIENT_CERT_FILE", cert_path, pem, problems));
    let key_pem = read_file("ARCHIVER_AMQP_CLIENT_KEY_FILE", key_path, problems).map(zeroize::Zeroizing::new);
    let key = key_pem
        .as_deref()
        .and_then(|pem| match PrivateKeyDer::from_pem_slice(pem) {
            Ok(key) => Some(key),
            Err(_) => {
                problems.push(format!(
                    "ARCHIVER_AMQP_CLIENT_KEY_FILE: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    key_path.display()
                ));
                None
            }
        });
    let (chain, key) = (chain?, key?);
    // What rustls itself checks when lapin hands it the pair (`with_client_auth_cert`):
    // the key loads, the first certificate parses (X.509 v3), and the two match.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            problems.push(format!(
                "ARCHIVER_AMQP_CLIENT_KEY_FILE: {} is not the private key of the certificate in {}",
                key_path.display(),
                cert_path.display()
            ));
            return None;
        }
        Err(err) => {
            problems.push(format!(
                "ARCHIVER_AMQP_CLIENT_CERT_FILE: {} with the key in {} is not usable as a client certificate: {err}",
                cert_path.display(),
                key_path.display()
            ));
            return None;
        }
    }
    Some((chain_pem?, key_pem?))
}

/// A file's bytes, or a problem naming `variable` and the path (never the content).
fn read_file(variable: &str, path: &std::path::Path, problems: &mut Problems) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            problems.push(format!("{variable}: cannot read {}: {err}", path.display()));
            None
        }
    }
}

/// The PEM certificates of `pem`: at least one, and every one parsed.
fn certificates(
    variable: &str,
    path: &std::path::Path,
    pem: &[u8],
    problems: &mut Problems,
) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            problems.push(format!("{variable}: {} holds no PEM certificate", path.display()));
            None
        }
        Err(err) => {
            problems.push(format!(
                "{variable}: {} holds a malformed PEM certificate: {err}",
                path.display()
            ));
            None
        }
    }
}

/// `ARCHIVER_TENANTS_FILE`, read and checked, when it is set.
pub fn tenants(settings: &Settings, problems: &mut Problems) -> Option<crate::tenants::Tenants> {
    let path = settings.tenants_file.as_deref()?;
    Some(crate::tenants::Tenants::read(path, problems))
}

/// The vendor API clients, one per key (`ARCHIVER_PROVIDER_API_KEY` and each tenant's own
/// `provider_api_key`). `required`: the command cannot work without one (`refetch`).
pub fn vendor_clients(
    settings: &Settings,
    tenants: Option<&crate::tenants::Tenants>,
    required: bool,
    problems: &mut Problems,
) -> crate::tenants::VendorClients {
    use crate::tenants::VendorClients;
    let url = settings
        .provider_api_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty());
    let global = settings
        .provider_api_key
        .as_deref()
        .map(str::trim)
        .filter(|key| !key.is_empty());
    let own: Vec<(&str, &str)> = tenants
        .into_iter()
        .flat_map(|tenants| tenants.iter())
        .filter_map(|(name, tenant)| tenant.provider_api_key.as_ref().map(|key| (name, key.expose())))
        .collect();
    let any_key = global.is_some() || !own.is_empty();
    let Some(url) = url else {
        if required || any_key {
            problems.push(
                "ARCHIVER_PROVIDER_API_URL and ARCHIVER_PROVIDER_API_KEY (or a tenant's provider_api_key in ARCHIVER_TENANTS_FILE) are required to ask the vendor for fresh reports",
            );
        }
        return VendorClients::default();
    };
    if !any_key {
        problems.push(
            "ARCHIVER_PROVIDER_API_URL is set but no key is: give ARCHIVER_PROVIDER_API_KEY or a tenant's provider_api_key in ARCHIVER_TENANTS_FILE",
        );
        return VendorClients::default();
    }
    let url = match url::Url::parse(url) {
        Ok(url) if url.scheme() == "https" => url,
        _ => {
            problems.push(format!("ARCHIVER_PROVIDER_API_URL must be an https URL, got {url:?}"));
            return VendorClients::default();
        }
    };
    let ca = read_pem("ARCHIVER_SOURCE_CA_FILE", settings.source_ca_file.as_deref(), problems);
    let mut client = |key: &str| {
        let mut config = archive::VendorConfig::new(url.clone(), key.to_string());
        config.extra_ca_pem = ca.clone();
        archive::VendorClient::new(config)
            .map_err(|err| problems.push(format!("vendor api: {err}")))
            .ok()
    };
    let global = global.and_then(&mut client);
    let own = own
        .into_iter()
        .filter_map(|(name, key)| client(key).map(|client| (name.to_string(), client)))
        .collect();
    VendorClients::new(tenants.is_some(), global, own)
}
