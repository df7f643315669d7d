//! The command line: subcommands and settings, parsed raw by clap before they are turned
//! into one validated configuration (`config.rs`). Every setting is an environment
//! variable and a flag of the same name (CONTRACT.md section 7).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Archives identity-verification face reports (portrait, live frame, liveness video)
/// into encrypted S3 before their media URLs expire.
#[derive(Debug, Parser)]
#[command(name = "archiver", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume report events until SIGTERM or SIGINT, then drain and exit 0.
    Worker {
        #[command(flatten)]
        settings: Settings,
    },
    /// Archive one report event now and print its manifest JSON.
    Archive {
        /// The event JSON file, or `-` for stdin.
        file: PathBuf,
        #[command(flatten)]
        settings: Settings,
    },
    /// Ask the vendor API for fresh reports of sessions and archive them now.
    Refetch {
        #[command(flatten)]
        options: RefetchOptions,
        #[command(flatten)]
        settings: Settings,
    },
    /// Check one local file against the media rules and print a JSON verdict.
    Validate {
        /// Which media rule to apply.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The file to check, or `-` for stdin.
        file: PathBuf,
        #[command(flatten)]
        limits: LimitSettings,
    },
    /// Download an archived object, decrypting it, to FILE or stdout.
    Get {
        /// The object key, such as face-reports/acme/<session>/source.jpg.
        key: String,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Why the object is read (required for media objects; recorded in the audit trail).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print one JSON line per archived session of a tenant.
    List {
        #[command(flatten)]
        options: ListOptions,
        #[command(flatten)]
        settings: Settings,
    },
    /// Erase sessions for good: a tombstone first, then every version of their objects.
    Erase {
        #[command(flatten)]
        options: EraseOptions,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print a tenant's audit records (reads and erasures) as JSON lines.
    Audit {
        #[command(flatten)]
        options: AuditOptions,
        #[command(flatten)]
        settings: Settings,
    },
    /// Serve the vendor's signed webhooks: each decided session becomes a queued report event.
    Webhook {
        #[command(flatten)]
        webhook: WebhookOptions,
        #[command(flatten)]
        settings: Settings,
    },
    /// Declare the queues and exchanges, then exit.
    Topology {
        #[command(flatten)]
        settings: Settings,
    },
}

impl Command {
    /// The settings of a command that has them (all but `validate`).
    pub fn settings_mut(&mut self) -> Option<&mut Settings> {
        match self {
            Command::Worker { settings }
            | Command::Archive { settings, .. }
            | Command::Refetch { settings, .. }
            | Command::Get { settings, .. }
            | Command::Topology { settings }
            | Command::List { settings, .. }
            | Command::Erase { settings, .. }
            | Command::Audit { settings, .. }
            | Command::Webhook { settings, .. } => Some(settings),
            Command::Validate { .. } => None,
        }
    }
}

/// Where `archiver webhook` listens.
#[derive(Debug, Clone, Args)]
pub struct WebhookOptions {
    /// Address for POST /webhooks/{tenant}.
    #[arg(long, env = "ARCHIVER_WEBHOOK_ADDR", default_value = "127.0.0.1:8080")]
    pub webhook_addr: String,
}

/// What `archiver list` is asked to show.
#[derive(Debug, Clone, Args)]
pub struct ListOptions {
    /// The tenant whose sessions to list.
    #[arg(long)]
    pub tenant: String,
    /// Only sessions archived at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only sessions not finished (a media failed, or no manifest yet).
    #[arg(long)]
    pub incomplete: bool,
}

/// What `archiver erase` is asked to do.
#[derive(Debug, Clone, Args)]
pub struct EraseOptions {
    /// Session ids (UUIDs) to erase.
    #[arg(required = true)]
    pub session_ids: Vec<String>,
    /// The tenant the sessions belong to.
    #[arg(long)]
    pub tenant: String,
    /// Why (a request reference, a retention end); recorded in the tombstone and the audit trail.
    #[arg(long)]
    pub reason: String,
}

/// What `archiver audit` is asked to show.
#[derive(Debug, Clone, Args)]
pub struct AuditOptions {
    /// The tenant whose audit records to print.
    #[arg(long)]
    pub tenant: String,
    /// Only records at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
}

/// What `archiver refetch` is asked to do.
#[derive(Debug, Clone, Args)]
pub struct RefetchOptions {
    /// Session ids (UUIDs).
    pub session_ids: Vec<String>,
    /// The tenant the sessions belong to (their S3 keys); --from-dlq reads it from each event.
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Publish the fresh event to the queue instead of archiving it here.
    #[arg(long)]
    pub enqueue: bool,
    /// Only show what would be fetched; fetch and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Archive again even when the session already has a manifest.
    #[arg(long)]
    pub force: bool,
    /// Take the sessions from the dead-letter queue instead of the command line.
    #[arg(long)]
    pub from_dlq: bool,
    /// With --from-dlq, handle at most this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Source,
    Target,
    Video,
}

impl From<KindArg> for media::MediaKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Source => media::MediaKind::Source,
            KindArg::Target => media::MediaKind::Target,
            KindArg::Video => media::MediaKind::Video,
        }
    }
}

/// The media limits of CONTRACT.md section 2 (shared by `validate` and the pipeline).
#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Source image bound, either orientation (WIDTHxHEIGHT).
    #[arg(long, env = "ARCHIVER_SOURCE_MAX", default_value = "1920x1080")]
    pub source_max: String,
    /// Target image minimum short side, in pixels.
    #[arg(long, env = "ARCHIVER_TARGET_MIN_SHORT_SIDE", default_value = "720")]
    pub target_min_short_side: String,
    /// Video maximum duration, in seconds.
    #[arg(long, env = "ARCHIVER_VIDEO_MAX_SECS", default_value = "15")]
    pub video_max_secs: String,
}

/// Every setting of CONTRACT.md section 7, kept as raw text here so that `config.rs`
/// can report every bad value at once rather than stopping at the first. Its `Debug`
/// leaves out the secrets (see below).
#[derive(Clone, Args)]
pub struct Settings {
    /// AMQP broker URL.
    #[arg(
        long,
        env = "ARCHIVER_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// File holding the AMQP broker URL (a mounted Kubernetes Secret); instead of --amqp-url.
    #[arg(long, env = "ARCHIVER_AMQP_URL_FILE", conflicts_with = "amqp_url")]
    pub amqp_url_file: Option<PathBuf>,
    /// Extra PEM CA to trust for an amqps:// broker (besides the system's roots).
    #[arg(long, env = "ARCHIVER_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to an amqps:// broker that asks for one (with --amqp-client-key-file).
    #[arg(long, env = "ARCHIVER_AMQP_CLIENT_CERT_FILE")]
    pub amqp_client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ARCHIVER_AMQP_CLIENT_KEY_FILE")]
    pub amqp_client_key_file: Option<PathBuf>,
    /// Queue of report events.
    #[arg(long, env = "ARCHIVER_QUEUE", default_value = "face-reports")]
    pub queue: String,
    /// Events in flight per worker process.
    #[arg(long, env = "ARCHIVER_CONCURRENCY", default_value = "8")]
    pub concurrency: String,
    /// Seconds the worker waits for events in flight after SIGTERM before returning them to the queue.
    #[arg(long, env = "ARCHIVER_DRAIN_SECS", default_value = "20")]
    pub drain_secs: String,
    /// Deliveries of one event before the queue dead-letters it.
    #[arg(long, env = "ARCHIVER_DELIVERY_LIMIT", default_value = "5")]
    pub delivery_limit: String,
    /// S3 bucket (required for commands that touch S3).
    #[arg(long, env = "ARCHIVER_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 key prefix.
    #[arg(long, env = "ARCHIVER_S3_PREFIX", default_value = "face-reports/")]
    pub s3_prefix: String,
    /// An S3-compatible endpoint (https://...); AWS when absent.
    #[arg(long, env = "ARCHIVER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region; from the AWS chain when absent.
    #[arg(long, env = "ARCHIVER_S3_REGION")]
    pub s3_region: Option<String>,
    /// Path-style addressing (true or false).
    #[arg(long, env = "ARCHIVER_S3_PATH_STYLE", default_value = "false")]
    pub s3_path_style: String,
    /// Extra PEM CA to trust for the S3 endpoint.
    #[arg(long, env = "ARCHIVER_S3_CA_FILE")]
    pub s3_ca_file: Option<PathBuf>,
    /// Server-side encryption: sse-c, aws:kms or AES256 (required for commands that touch S3).
    #[arg(long, env = "ARCHIVER_SSE")]
    pub sse: Option<String>,
    /// Base64 of a 32-byte key, for sse-c.
    #[arg(long, env = "ARCHIVER_SSE_C_KEY", hide_env_values = true)]
    pub sse_c_key: Option<String>,
    /// File holding the base64 SSE-C key (a mounted Kubernetes Secret); instead of --sse-c-key.
    #[arg(long, env = "ARCHIVER_SSE_C_KEY_FILE", conflicts_with = "sse_c_key")]
    pub sse_c_key_file: Option<PathBuf>,
    /// Previous SSE-C keys, one `key_id=base64` a line, to read what they wrote (never to write).
    #[arg(long, env = "ARCHIVER_SSE_C_KEYRING_FILE")]
    pub sse_c_keyring_file: Option<PathBuf>,
    /// A name for the key in use, recorded in metadata and manifest.
    #[arg(long, env = "ARCHIVER_SSE_KEY_ID", default_value = "k1")]
    pub sse_key_id: String,
    /// KMS key, for aws:kms; the bucket default when absent.
    #[arg(long, env = "ARCHIVER_SSE_KMS_KEY_ID")]
    pub sse_kms_key_id: Option<String>,
    /// Comma-separated media hosts (host or host:port). Empty: any host whose every address is public.
    #[arg(long, env = "ARCHIVER_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,
    /// Extra PEM CA to trust for media hosts.
    #[arg(long, env = "ARCHIVER_SOURCE_CA_FILE")]
    pub source_ca_file: Option<PathBuf>,
    /// URL lifetime from issued_at, in seconds.
    #[arg(long, env = "ARCHIVER_URL_TTL_SECS", default_value = "3600")]
    pub url_ttl_secs: String,
    /// Per-media size cap, in bytes.
    #[arg(long, env = "ARCHIVER_MAX_MEDIA_BYTES", default_value = "104857600")]
    pub max_media_bytes: String,
    /// Longest one media download attempt may take (request, body and upload), in seconds.
    #[arg(long, env = "ARCHIVER_FETCH_TIMEOUT_SECS", default_value = "300")]
    pub fetch_timeout_secs: String,
    /// Attempts per media (the first included) before a transient failure is reported.
    #[arg(long, env = "ARCHIVER_FETCH_ATTEMPTS", default_value = "4")]
    pub fetch_attempts: String,
    #[command(flatten)]
    pub limits: LimitSettings,
    /// Vendor API base URL, for refetch.
    #[arg(long, env = "ARCHIVER_PROVIDER_API_URL")]
    pub provider_api_url: Option<String>,
    /// Vendor API key, for refetch.
    #[arg(long, env = "ARCHIVER_PROVIDER_API_KEY", hide_env_values = true)]
    pub provider_api_key: Option<String>,
    /// File holding the vendor API key; instead of --provider-api-key.
    #[arg(long, env = "ARCHIVER_PROVIDER_API_KEY_FILE", conflicts_with = "provider_api_key")]
    pub provider_api_key_file: Option<PathBuf>,
    /// TOML file of per-tenant credentials ([tenants.NAME] with provider_api_key and/or webhook_secret).
    #[arg(long, env = "ARCHIVER_TENANTS_FILE")]
    pub tenants_file: Option<PathBuf>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "ARCHIVER_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: String,
    /// Log format: text or json.
    #[arg(long, env = "ARCHIVER_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Retention period from archived_at, in days; erasure is refused inside it.
    #[arg(long, env = "ARCHIVER_RETAIN_DAYS", default_value = "0")]
    pub retain_days: String,
    /// GOVERNANCE or COMPLIANCE: write every object with S3 Object Lock retention (needs ARCHIVER_RETAIN_DAYS).
    #[arg(long, env = "ARCHIVER_OBJECT_LOCK_MODE")]
    pub object_lock_mode: Option<String>,
    /// Who erase and get record as `by`; the store credentials' access key id when absent.
    #[arg(long, env = "ARCHIVER_OPERATOR")]
    pub operator: Option<String>,
}

/// The secrets as clap parsed them are wiped when the settings are dropped (the copies
/// made from them, and the process environment, are not).
impl Drop for Settings {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.amqp_url.zeroize();
        self.sse_c_key.zeroize();
        self.provider_api_key.zeroize();
    }
}

/// Written by hand so that no secret can reach a log through `{:?}`: the SSE-C key and
/// the vendor API key show only whether they are set, the broker URL loses its user info.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: &Option<String>| if value.is_some() { "<set>" } else { "<unset>" };
        let broker = match self.amqp_url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host)),
            None => "<not a URL>".to_string(),
        };
        f.debug_struct("Settings")
            .field("amqp_url", &broker)
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_prefix", &self.s3_prefix)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("sse", &self.sse)
            .field("sse_c_key", &set(&self.sse_c_key))
            .field("sse_key_id", &self.sse_key_id)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("provider_api_url", &self.provider_api_url)
            .field("provider_api_key", &set(&self.provider_api_key))
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// The limits' defaults are stated once for the command line (clap) and once as the
    /// contract's values in `media::Limits::default()`; this keeps the two the same.
    #[test]
    fn the_command_line_defaults_are_the_contract_limits() {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            limits: LimitSettings,
        }
        let only = Only::try_parse_from(["archiver"]).expect("defaults parse");
        let mut problems = crate::config::Problems::default();
        let limits = crate::config::limits(&only.limits, &mut problems);
        assert_eq!(problems.len(), 0);
        assert_eq!(format!("{limits:?}"), format!("{:?}", media::Limits::default()));
    }

    /// A setting's name is declared once, here (`env = ...`), and spelled again where
    /// `config.rs` and the other checks name it in a message. Every such name in the three
    /// crates' sources must be one the command line declares, so that a renamed setting
    /// cannot leave a message naming the old one.
    #[test]
    fn every_setting_a_message_names_is_declared() {
        use clap::CommandFactory as _;
        fn declared(command: &clap::Command, names: &mut std::collections::BTreeSet<String>) {
            for arg in command.get_arguments() {
                if let Some(name) = arg.get_env() {
                    names.insert(name.to_string_lossy().into_owned());
                }
            }
            for sub in command.get_subcommands() {
                declared(sub, names);
            }
        }
        fn spelled(dir: &std::path::Path, names: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    spelled(&path, names);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (at, _) in text.match_indices("ARCHIVER_") {
                        let name: String = text[at..]
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                            .collect();
                        // The bare prefix is this test's own search string.
                        if name.len() > "ARCHIVER_".len() {
                            names.push((name, path.display().to_string()));
                        }
                    }
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        declared(&Cli::command(), &mut names);
        assert!(names.len() > 30, "{names:?}");
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        for krate in ["archiver", "archive", "media"] {
            spelled(&crates.join(krate).join("src"), &mut found);
        }
        // A test build's hook, not a setting (worker/settle.rs).
        let hooks = ["ARCHIVER_TEST_PANIC_SESSION_ID"];
        let unknown: Vec<_> = found
            .iter()
            .filter(|(name, _)| !names.contains(name) && !hooks.contains(&name.as_str()))
            .collect();
        assert!(found.len() > 40, "{found:?}");
        assert!(unknown.is_empty(), "names no argument declares: {unknown:?}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let cli = Cli::try_parse_from([
            "archiver",
            "worker",
            "--amqp-url=amqp://user:PASSWORD@broker:5672/%2f",
            "--sse-c-key=S3CRETKEYBASE64",
            "--provider-api-key=APIKEY",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        for secret in ["PASSWORD", "S3CRETKEYBASE64", "APIKEY", "user:"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("amqp://broker:5672/%2f") && shown.contains(r#"sse_c_key: "<set>""#),
            "{shown}"
        );
    }
}
