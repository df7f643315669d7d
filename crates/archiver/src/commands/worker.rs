//! `archiver worker`: consumes report events until SIGTERM or SIGINT, then stops taking
//! new ones, finishes or returns those in flight, and exits 0 (CONTRACT.md sections 4, 5).

use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::Settings;
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::worker::{self, Pipeline};

pub async fn run(settings: &Settings) -> Result<Outcome, CommandError> {
    // Every configuration problem at once: the worker's own, then the pipeline's.
    let mut problems = Problems::default();
    let worker_config = worker::config::worker(settings, &mut problems);
    let archive_config = config::archive_config(settings);
    match (problems.finish(), archive_config) {
        (Ok(()), Ok(archive_config)) => {
            crate::logging::init(&settings.log_format)?;
            let archiver = archive::Archiver::new(archive_config)
                .await
                .map_err(|err| CommandError::usage(format!("cannot set up the archive pipeline: {err}")))?;
            let shutdown = worker::shutdown::on_signal().context("cannot listen for SIGTERM and SIGINT")?;
            worker::run(worker_config, Arc::new(Pipeline::new(archiver)), shutdown).await?;
            Ok(Outcome::Done)
        }
        (Err(mine), Ok(_)) => Err(mine),
        (Ok(()), Err(theirs)) => Err(theirs),
        (Err(mine), Err(theirs)) => Err(CommandError::usage(format!("{mine}; {theirs}"))),
    }
}
