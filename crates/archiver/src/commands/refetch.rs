//! `archiver refetch`: not built yet.

use crate::cli::Settings;
use crate::exit::{CommandError, Outcome};

/// What `archiver refetch` was asked to do.
#[derive(Debug)]
#[allow(dead_code)]
pub struct Options {
    pub session_ids: Vec<String>,
    pub enqueue: bool,
    pub dry_run: bool,
    pub force: bool,
    pub from_dlq: bool,
    pub limit: Option<u64>,
}

pub async fn run(_options: Options, _settings: &Settings) -> Result<Outcome, CommandError> {
    Err(CommandError::usage("`archiver refetch` is not available in this build yet"))
}
