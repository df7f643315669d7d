//! `archiver archive`: not built yet.

use std::path::Path;

use crate::cli::Settings;
use crate::exit::{CommandError, Outcome};

pub async fn run(_file: &Path, _settings: &Settings) -> Result<Outcome, CommandError> {
    Err(CommandError::usage("`archiver archive` is not available in this build yet"))
}
