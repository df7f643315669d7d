//! `archiver archive FILE|-`: archives one report event now and prints its manifest
//! (docs/contract.md section 5).

use std::io::Read;
use std::path::Path;

use archive::{Archiver, CancellationToken, Disposition, Received};

use crate::cli::Settings;
use crate::config;
use crate::exit::{CommandError, Outcome};
use crate::logging;

/// Exit 0 when every media is stored or absent; 1 when something was rejected or failed
/// (the manifest is still printed when one was written); 2 for bad configuration or an
/// unreadable or invalid event.
pub async fn run(file: &Path, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let archive_config = config::archive_config_alone(settings)?;
    let body = read_input(file)?;
    let event = archive::parse_event(&body)
        .map_err(|err| CommandError::usage(format!("invalid event in {}: {err}", file.display())))?;
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let archived = archiver
        .archive(&event, &Received::now(), &CancellationToken::new())
        .await;
    if let Some(manifest) = &archived.manifest {
        let text = serde_json::to_string_pretty(manifest).map_err(|err| CommandError::Failed(err.into()))?;
        println!("{text}");
    }
    match archived.disposition {
        Disposition::Done => {
            let all_kept = archived
                .manifest
                .as_ref()
                .is_some_and(|manifest| manifest.is_complete());
            Ok(if all_kept { Outcome::Done } else { Outcome::Partial })
        }
        Disposition::Erased => {
            eprintln!(
                "archiver: session {} was erased ({}); nothing fetched or stored",
                event.session_id,
                archive::TOMBSTONE_FILE
            );
            Ok(Outcome::Done)
        }
        Disposition::DeadLetter(failure) | Disposition::Retry(failure) => {
            eprintln!("archiver: {}", failure.reason);
            Ok(Outcome::Partial)
        }
    }
}

fn read_input(file: &Path) -> Result<Vec<u8>, CommandError> {
    let mut body = Vec::new();
    let result = if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::File::open(file)
            .and_then(|mut opened| opened.read_to_end(&mut body))
            .map(|_| ())
    };
    result.map_err(|err| {
        CommandError::usage(format!(
            "cannot read {}: {err}; give a readable event file or `-` for stdin",
            file.display()
        ))
    })?;
    Ok(body)
}
