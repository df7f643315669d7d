//! `archiver worker`: not built yet.

use crate::cli::Settings;
use crate::exit::{CommandError, Outcome};

pub async fn run(_settings: &Settings) -> Result<Outcome, CommandError> {
    Err(CommandError::usage("`archiver worker` is not available in this build yet"))
}
