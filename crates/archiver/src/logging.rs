//! Logs through `tracing` to stderr, as text or JSON (`ARCHIVER_LOG_FORMAT`). Stdout is
//! kept for the JSON the commands print.

use crate::exit::CommandError;

/// Installs the global subscriber. `RUST_LOG` filters; the default is `info`.
pub fn init(format: &str) -> Result<(), CommandError> {
    init_with_default(format, "info")
}

/// Installs the global subscriber; `RUST_LOG` filters, else `default_level`.
pub fn init_with_default(format: &str, default_level: &str) -> Result<(), CommandError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a pipe or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        "text" => builder.try_init(),
        "json" => builder.json().flatten_event(true).with_current_span(true).try_init(),
        other => {
            return Err(CommandError::usage(format!(
                "ARCHIVER_LOG_FORMAT must be `text` or `json`, got {other:?}"
            )))
        }
    };
    // A second init (tests calling commands in-process) is harmless.
    let _ = result;
    Ok(())
}
