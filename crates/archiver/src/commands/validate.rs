//! `archiver validate --kind source|target|video FILE`: checks one local file against
//! CONTRACT.md section 2 and prints one JSON verdict.

use std::io::Read;
use std::path::Path;

use media::{MediaKind, Validator};
use serde_json::json;

use crate::cli::LimitSettings;
use crate::config;
use crate::exit::{CommandError, Outcome};

/// Streams the file through the validator in fixed chunks, as the pipeline does with a
/// download, so a large video never sits in memory whole.
pub fn run(kind: MediaKind, file: &Path, limit_settings: &LimitSettings) -> Result<Outcome, CommandError> {
    let limits = config::limits_only(limit_settings)?;
    let mut input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let opened = std::fs::File::open(file).map_err(|err| {
            CommandError::usage(format!(
                "cannot read {}: {err}; give a readable file or `-` for stdin",
                file.display()
            ))
        })?;
        Box::new(opened)
    };
    let mut validator = Validator::new(kind, &limits);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut early_rejection = None;
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(CommandError::usage(format!("cannot read {}: {err}", file.display()))),
        };
        if let Err(err) = validator.feed(&buffer[..read]) {
            early_rejection = Some(err);
            break;
        }
    }
    let verdict = match early_rejection {
        Some(err) => Err(err),
        None => validator.finish(),
    };
    let (value, outcome) = match verdict {
        Ok(verdict) => {
            let mut value = json!({ "ok": true, "kind": kind.as_str(), "format": verdict.format.as_str() });
            if let (Some(width), Some(height)) = (verdict.width, verdict.height) {
                value["width"] = json!(width);
                value["height"] = json!(height);
            }
            if let Some(duration) = verdict.duration_secs {
                value["duration_secs"] = json!(duration);
            }
            (value, Outcome::Done)
        }
        Err(err) => (
            json!({ "ok": false, "kind": kind.as_str(), "reason": err.to_string() }),
            Outcome::Partial,
        ),
    };
    println!("{value}");
    Ok(outcome)
}
