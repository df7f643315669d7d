//! Turns the raw settings of `cli.rs` into one validated configuration, reporting every
//! bad value at once (exit 2) rather than one per run.

use crate::cli::LimitSettings;
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

    /// Ends the checks: `Ok` when nothing was wrong, else one usage error naming every problem.
    pub fn finish(self) -> Result<(), CommandError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CommandError::usage(format!("invalid configuration: {}", self.0.join("; "))))
        }
    }
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
        .parse::<u32>("ARCHIVER_TARGET_MIN_SHORT_SIDE", &settings.target_min_short_side, "a whole number of pixels")
        .unwrap_or(defaults.target_min_short_side);
    let video_max_secs = problems
        .parse::<f64>("ARCHIVER_VIDEO_MAX_SECS", &settings.video_max_secs, "a number of seconds")
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
    media::Limits { source_max, target_min_short_side, video_max_secs }
}

/// Validated limits alone, for `archiver validate`.
pub fn limits_only(settings: &LimitSettings) -> Result<media::Limits, CommandError> {
    let mut problems = Problems::default();
    let limits = limits(settings, &mut problems);
    problems.finish()?;
    Ok(limits)
}
