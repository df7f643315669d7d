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

/// `layer` filtered by `RUST_LOG` and then by [`CAPS`]. The caps are a filter of their own
/// rather than directives added to the `EnvFilter` after parsing: a directive sets a level,
/// so `aws_sigv4=debug` would also raise these libraries to debug when `RUST_LOG` asks for
/// less (the default `info`), and a more specific `RUST_LOG` directive
/// (`aws_sigv4::http_request=trace`) would win over it. This filter can only hold events
/// back, and no `RUST_LOG` reaches it.
fn capped<S>(
    layer: Box<dyn tracing_subscriber::Layer<S> + Send + Sync>,
    env_filter: EnvFilter,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let caps = filter::filter_fn(|metadata| within_caps(metadata.target(), metadata.level()));
    layer.with_filter(env_filter).with_filter(caps)
}

/// Installs the global subscriber. `RUST_LOG` filters; the default is `info`.
pub fn init(format: &str) -> Result<(), CommandError> {
    init_with_default(format, "info")
}

/// Installs the global subscriber; `RUST_LOG` filters, else `default_level`.
pub fn init_with_default(format: &str, default_level: &str) -> Result<(), CommandError> {
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
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
        .with(capped(layer, env_filter))
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

    /// What a subscriber built like `init`'s, under `rust_log`, prints of one event per
    /// (target, level) below.
    fn printed_under(rust_log: &str) -> String {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let out = out.clone();
            move || Capture(out.clone())
        };
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .boxed();
        let subscriber = tracing_subscriber::registry().with(capped(layer, EnvFilter::new(rust_log)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_sigv4::http_request::sign", "sigv4-trace");
            tracing::debug!(target: "aws_sigv4::http_request::sign", "sigv4-debug");
            tracing::trace!(target: "lapin::channels", "lapin-trace");
            tracing::debug!(target: "rustls::client", "rustls-debug");
            tracing::trace!(target: "archive::fetch", "ours-trace");
            tracing::info!(target: "archive::fetch", "ours-info");
        });
        let printed = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        printed
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The caps only ever hold events back: under `info` the capped libraries stay at
    /// info (regression: cap directives raised them to debug), and under any `trace`
    /// they stop at their cap.
    #[test]
    fn caps_hold_back_and_never_raise() {
        let cases = [
            ("info", &["ours-info"][..]),
            ("trace", &["sigv4-debug", "rustls-debug", "ours-trace", "ours-info"]),
            (
                "trace,aws_sigv4::http_request=trace,lapin::channels=trace",
                &["sigv4-debug", "rustls-debug", "ours-trace", "ours-info"],
            ),
            ("aws_sigv4=trace", &["sigv4-debug"]),
        ];
        let all = [
            "sigv4-trace",
            "sigv4-debug",
            "lapin-trace",
            "rustls-debug",
            "ours-trace",
            "ours-info",
        ];
        for (rust_log, expected) in cases {
            let printed = printed_under(rust_log);
            for message in all {
                assert_eq!(
                    printed.contains(message),
                    expected.contains(&message),
                    "RUST_LOG={rust_log}: {message}\n{printed}"
                );
            }
        }
    }
}
