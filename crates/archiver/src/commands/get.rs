//! `archiver get`: not built yet.

use std::path::Path;

use crate::cli::Settings;
use crate::exit::{CommandError, Outcome};

pub async fn run(_key: &str, _output: Option<&Path>, _settings: &Settings) -> Result<Outcome, CommandError> {
    Err(CommandError::usage("`archiver get` is not available in this build yet"))
}
