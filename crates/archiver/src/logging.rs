//! Logs through `tracing` to stderr, as text or JSON (`ARCHIVER_LOG_FORMAT`). Stdout is
//! kept for the JSON the commands print.
//!
//! Whatever `RUST_LOG` asks for, the libraries that see requests, frames or bodies are
//! capped at a level where they log none of them (see [`CAPS`]): their traces would print
//! the SSE-C key, the broker's password and media URLs with their query strings.

use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{filter, EnvFilter, Layer as _};

use crate::exit::CommandError;

/// The most verbose level each library may log at, and why: what it logs beyond it, read
/// in its source (aws-sigv4 1.6, aws-smithy-runtime 1.16, aws-runtime 1.10, aws-config
/// 1.13, lapin 4.12, hyper-util 0.1, reqwest 0.13, h2 0.4, rustls 0.23).
const CAPS: &[(&str, Level)] = &[
    // trace: the request being signed, every header included (the SSE-C key and its MD5).
    ("aws_sigv4", Level::DEBUG),
    // trace: every request and response, headers included.
    ("aws_smithy_runtime", Level::DEBUG),
    ("aws_smithy_runtime_api", Level::DEBUG),
    // trace: signed event-stream messages; the HTTP client's connection details.
    ("aws_smithy_http", Level::DEBUG),
    ("aws_smithy_http_client", Level::DEBUG),
    // trace: the chunks of request bodies, that is the media (biometrics).
    ("aws_runtime", Level::DEBUG),
    // trace: a credential_process command line, "unredacted".
    ("aws_config", Level::DEBUG),
    // The generated S3 client: nothing found beyond debug; capped with its runtime.
    ("aws_sdk_s3", Level::DEBUG),
    // trace: every AMQP frame, among them the connection's PLAIN credentials and the
    // bodies published (events with media URLs).
    ("lapin", Level::DEBUG),
    ("amq_protocol", Level::DEBUG),
    ("amq_protocol_tcp", Level::DEBUG),
    ("amq_protocol_types", Level::DEBUG),
    ("amq_protocol_uri", Level::DEBUG),
    // debug: a request URI with its query string (the media URL's credentials).
    ("hyper_util", Level::INFO),
    // trace: raw connection bytes (`reqwest::connect::verbose`), when verbose.
    ("reqwest", Level::DEBUG),
    // hyper, h2 and rustls log no header value nor body at any level today (h2's frame
    // `Debug` leaves header fields out on purpose; rustls traces certificates). They are
    // capped all the same, as they handle the same bytes and a new version could log more.
    ("hyper", Level::DEBUG),
    ("h2", Level::DEBUG),
    ("rustls", Level::DEBUG),
];

/// Whether an event or span of `target` at `level` is allowed by [`CAPS`]. A cap covers
/// its crate's modules (`aws_sigv4::http_request::sign`), not crates whose name merely
/// starts the same (`h2o`).
fn within_caps(target: &str, level: &Level) -> bool {
    CAPS.iter()
        .find(|(name, _)| {
            target
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
        .is_none_or(|(_, cap)| level <= cap)
}

/// Installs the global subscriber. `RUST_LOG` filters; the default is `info`.
pub fn init(format: &str) -> Result<(), CommandError> {
    init_with_default(format, "info")
}

/// Installs the global subscriber; `RUST_LOG` filters, else `default_level`.
pub fn init_with_default(format: &str, default_level: &str) -> Result<(), CommandError> {
    let mut env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // The caps as directives, added after `RUST_LOG` was parsed: a directive for the same
    // target replaces the one `RUST_LOG` gave (`RUST_LOG=aws_sigv4=trace`), and a bare
    // `RUST_LOG=trace` is less specific than each of them. A more specific `RUST_LOG`
    // directive (`aws_sigv4::http_request=trace`) would still win over these, so the
    // `within_caps` filter below, which no `RUST_LOG` can change, enforces the caps again.
    for (name, cap) in CAPS {
        let directive = format!("{name}={}", cap.as_str().to_ascii_lowercase());
        env_filter = env_filter.add_directive(directive.parse().expect("a valid directive"));
    }
    let caps = filter::filter_fn(|metadata| within_caps(metadata.target(), metadata.level()));
    // Colour codes only for a person at a terminal, never into a pipe or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = match format {
        "text" => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        "json" => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        other => {
            return Err(CommandError::usage(format!(
                "ARCHIVER_LOG_FORMAT must be `text` or `json`, got {other:?}"
            )))
        }
    };
    let result = tracing_subscriber::registry()
        .with(layer.with_filter(env_filter).with_filter(caps))
        .try_init();
    // A second init (tests calling commands in-process) is harmless.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13): `RUST_LOG=trace` printed the SSE-C key through aws-sigv4's
    /// and aws-smithy-runtime's request traces.
    #[test]
    fn libraries_that_see_secrets_are_capped() {
        let cases = [
            ("aws_sigv4", Level::TRACE, false),
            ("aws_sigv4::http_request::sign", Level::TRACE, false),
            ("aws_sigv4::http_request::sign", Level::DEBUG, true),
            ("aws_smithy_runtime::client::orchestrator", Level::TRACE, false),
            ("aws_smithy_runtime_api::client::interceptors", Level::TRACE, false),
            ("aws_runtime::content_encoding::body", Level::TRACE, false),
            ("aws_config::credential_process", Level::TRACE, false),
            ("lapin::channels", Level::TRACE, false),
            ("lapin", Level::DEBUG, true),
            ("amq_protocol_tcp", Level::TRACE, false),
            ("hyper_util::client::legacy::client", Level::DEBUG, false),
            ("hyper_util::client::legacy::client", Level::INFO, true),
            ("reqwest::connect::verbose", Level::TRACE, false),
            ("hyper::proto::h1::role", Level::TRACE, false),
            ("h2::codec::framed_write", Level::TRACE, false),
            ("h2::codec::framed_write", Level::DEBUG, true),
            ("rustls::client::tls13", Level::TRACE, false),
            ("aws_sdk_s3::operation", Level::WARN, true),
            // Ours and other crates are left to RUST_LOG.
            ("archive::fetch", Level::TRACE, true),
            ("archiver", Level::TRACE, true),
            ("h2o", Level::TRACE, true),
            ("hyperloop::x", Level::TRACE, true),
        ];
        for (target, level, allowed) in cases {
            assert_eq!(within_caps(target, &level), allowed, "{target} at {level}");
        }
    }

    #[test]
    fn every_cap_is_a_valid_directive() {
        for (name, cap) in CAPS {
            let directive = format!("{name}={}", cap.as_str().to_ascii_lowercase());
            assert!(
                directive.parse::<tracing_subscriber::filter::Directive>().is_ok(),
                "{directive}"
            );
        }
    }
}
