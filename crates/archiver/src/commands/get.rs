//! `archiver get KEY [-o FILE]`: downloads an archived object, decrypted with the
//! configured SSE-C key, to FILE or stdout (CONTRACT.md section 5).

use std::path::Path;

use anyhow::anyhow;
use archive::{Archiver, StoreError};

use crate::cli::Settings;
use crate::config;
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(key: &str, output: Option<&Path>, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let archive_config = config::archive_config(settings)?;
    if key.is_empty() || key.starts_with('/') {
        return Err(CommandError::usage(format!(
            "KEY must be an object key such as face-reports/acme/<session>/source.jpg, got {key:?}"
        )));
    }
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let result = match output {
        None => archiver.get_object(key, tokio::io::stdout()).await,
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .map_err(|err| CommandError::usage(format!("cannot create {}: {err}", path.display())))?;
            let result = archiver.get_object(key, file).await;
            if result.is_err() {
                // A partial download must not pass for the object.
                tokio::fs::remove_file(path).await.ok();
            }
            result
        }
    };
    match result {
        Ok(bytes) => {
            tracing::debug!(key, bytes, "object written");
            Ok(Outcome::Done)
        }
        Err(err @ StoreError::NotFound { .. }) => Err(CommandError::Failed(anyhow!("{err}"))),
        Err(err @ StoreError::WrongKey { .. }) => Err(CommandError::Failed(anyhow!(
            "cannot get {key}: {err}; an object written before a key rotation needs its own key: pass it with \
             ARCHIVER_SSE_C_KEY or ARCHIVER_SSE_C_KEY_FILE (the manifest's encryption.key_id names it)"
        ))),
        Err(err) => Err(CommandError::Failed(anyhow!("cannot get {key}: {err}"))),
    }
}
