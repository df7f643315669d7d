//! `archiver get KEY [-o FILE]`: downloads an archived object, decrypted with the
//! configured SSE-C key, to FILE or stdout (CONTRACT.md section 5).
//!
//! FILE receives decrypted biometrics, so it is written as a private file: the object goes
//! to a temporary file (mode 0600) in FILE's folder, which is renamed over FILE only once
//! the whole object is there. A symbolic link at FILE is refused, never followed; a file
//! that was at FILE is replaced in one step or left as it was, never deleted.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use archive::{Archiver, StoreError};

use crate::cli::Settings;
use crate::config;
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(key: &str, output: Option<&Path>, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let archive_config = config::archive_config_alone(settings)?;
    if key.is_empty() || key.starts_with('/') {
        return Err(CommandError::usage(format!(
            "KEY must be an object key such as face-reports/acme/<session>/source.jpg, got {key:?}"
        )));
    }
    // Checked before anything is downloaded, so a refusal costs no request.
    let output = output.map(OutputFile::check).transpose()?;
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let bytes = match output {
        None => archiver
            .get_object(key, tokio::io::stdout())
            .await
            .map_err(|err| get_failed(key, err))?,
        Some(output) => output.write(&archiver, key).await?,
    };
    tracing::debug!(key, bytes, "object written");
    Ok(Outcome::Done)
}

fn get_failed(key: &str, err: StoreError) -> CommandError {
    match err {
        err @ StoreError::NotFound { .. } => CommandError::Failed(anyhow!("{err}")),
        err @ StoreError::WrongKey { .. } => CommandError::Failed(anyhow!(
            "cannot get {key}: {err}; an object written before a key rotation needs its own key: pass it with \
             ARCHIVER_SSE_C_KEY or ARCHIVER_SSE_C_KEY_FILE (the manifest's encryption.key_id names it)"
        )),
        err => CommandError::Failed(anyhow!("cannot get {key}: {err}")),
    }
}

/// The `-o FILE` of `archiver get`, checked: not a symbolic link, not a folder or device.
struct OutputFile {
    path: PathBuf,
    /// Where the temporary file goes: FILE's folder, so that the rename is one step on one
    /// file system.
    folder: PathBuf,
}

impl OutputFile {
    fn check(path: &Path) -> Result<OutputFile, CommandError> {
        let shown = path.display();
        // `symlink_metadata` looks at FILE itself: a link is seen as a link, not followed.
        match std::fs::symlink_metadata(path) {
            Ok(found) if found.file_type().is_symlink() => {
                return Err(CommandError::usage(format!(
                    "refusing to write {shown}: it is a symbolic link; decrypted media are never written through \
                     a link, give the path of a regular file"
                )))
            }
            Ok(found) if !found.is_file() => {
                return Err(CommandError::usage(format!(
                    "refusing to write {shown}: it is not a regular file; give the path of a file"
                )))
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(CommandError::usage(format!("cannot write {shown}: {err}"))),
        }
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(OutputFile {
            path: path.to_path_buf(),
            folder,
        })
    }

    /// Downloads into a private temporary file, then renames it over FILE. On any failure
    /// only the temporary file is removed (dropping it does), never what was at FILE.
    async fn write(self, archiver: &Archiver, key: &str) -> Result<u64, CommandError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(".archiver-get-").suffix(".part");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let temp = builder.tempfile_in(&self.folder).map_err(|err| {
            CommandError::usage(format!(
                "cannot write {}: cannot create a file in {}: {err}",
                self.path.display(),
                self.folder.display()
            ))
        })?;
        let cannot_write =
            |err: std::io::Error| CommandError::Failed(anyhow!("cannot write {}: {err}", self.path.display()));
        let file = temp.as_file().try_clone().map_err(cannot_write)?;
        let bytes = archiver
            .get_object(key, tokio::fs::File::from_std(file))
            .await
            .map_err(|err| get_failed(key, err))?;
        temp.as_file().sync_all().map_err(cannot_write)?;
        // rename(2) replaces FILE in one step. Should a link appear at FILE since the
        // check, the rename replaces the link itself; its target is never written.
        temp.persist(&self.path).map_err(|err| cannot_write(err.error))?;
        Ok(bytes)
    }
}
