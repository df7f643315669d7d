//! `archiver`: thin glue between the command line and the pipeline crates.
#![forbid(unsafe_code)]

mod broker;
mod cli;
mod commands;
mod config;
mod exit;
mod logging;
mod metrics;
mod tenants;
mod webhook;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::CommandError;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Secrets mounted as files are read before anything else sees the settings.
    if let Some(Err(err)) = cli.command.settings_mut().map(config::read_secret_files) {
        return err.report();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return CommandError::Failed(err.into()).report(),
    };
    let result = runtime.block_on(run(cli));
    // A finished command must not wait on background tasks still holding connections.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code.into(),
        Err(err) => err.report(),
    }
}

async fn run(cli: Cli) -> Result<exit::Outcome, CommandError> {
    match cli.command {
        Command::Validate { kind, file, limits } => commands::validate::run(kind.into(), &file, &limits),
        Command::Archive { file, settings } => commands::archive::run(&file, &settings).await,
        Command::Get {
            key,
            output,
            reason,
            settings,
        } => commands::get::run(&key, output.as_deref(), reason.as_deref(), &settings).await,
        Command::List { options, settings } => commands::list::run(&options, &settings).await,
        Command::Erase { options, settings } => commands::erase::run(&options, &settings).await,
        Command::Audit { options, settings } => commands::audit::run(&options, &settings).await,
        Command::Worker { settings } => commands::worker::run(&settings).await,
        Command::Topology { settings } => commands::topology::run(&settings).await,
        Command::Refetch { options, settings } => commands::refetch::run(options, &settings).await,
        Command::Webhook { webhook, settings } => commands::webhook::run(&webhook, &settings).await,
    }
}
