//! `archiver get KEY [-o FILE] [--reason TEXT]`: downloads an archived object, decrypted
//! with the configured SSE-C key, to FILE or stdout (CONTRACT.md section 5).
//!
//! Every get is accounted for (docs/contract.md section 9): `--reason` is required for a
//! media object (refused with exit 2 before any request), and an audit record (who, which
//! key, why, when; never the contents) is written before the object is read. A get whose
//! audit record cannot be written reads nothing.
//!
//! FILE receives decrypted biometrics, so it is written as a private file: the object goes
//! to a temporary file (mode 0600) in FILE's folder, which is renamed over FILE only once
//! the whole object is there. A symbolic link at FILE is refused, never followed; a file
//! that was at FILE is replaced in one step or left as it was, never deleted.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use archive::{Archiver, AuditAction, AuditRecord, StoreError};

use crate::cli::Settings;
use crate::config;
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(
    key: &str,
    output: Option<&Path>,
    reason: Option<&str>,
    settings: &Settings,
) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let archive_config = config::archive_config_alone(settings)?;
    if key.is_empty() || key.starts_with('/') {
        return Err(CommandError::usage(format!(
            "KEY must be an object key such as face-reports/acme/<session>/source.jpg, got {key:?}"
        )));
    }
    let place = ArchivedKey::of(key, &archive_config.store.prefix).ok_or_else(|| {
        CommandError::usage(format!(
            "KEY must be an archived object, {}<tenant>/<session>/<file>, got {key:?}",
            archive_config.store.prefix
        ))
    })?;
    let reason = reason.map(str::trim).filter(|reason| !reason.is_empty());
    if place.is_media && reason.is_none() {
        return Err(CommandError::usage(format!(
            "{key} is a media object (biometric data): say why it is read with --reason TEXT (recorded in the audit trail)"
        )));
    }
    // Checked before anything is downloaded, so a refusal costs no request.
    let output = output.map(OutputFile::check).transpose()?;
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let record = AuditRecord {
        action: AuditAction::Get,
        tenant: place.tenant.to_string(),
        session_id: place.session_id.to_string(),
        key: key.to_string(),
        by: crate::commands::erase::operator(settings, &archiver).await?,
        reason: reason.map(str::to_string),
        at: time::OffsetDateTime::now_utc(),
    };
    let audit_key = archiver
        .append_audit(&record)
        .await
        .map_err(|err| CommandError::Failed(anyhow!("cannot get {key}: the audit record was not written: {err}")))?;
    tracing::debug!(key, audit_key, "audit record written");
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

/// Where an archived key points: `{prefix}{tenant}/{session_id}/{file}`.
struct ArchivedKey<'a> {
    tenant: &'a str,
    session_id: &'a str,
    /// One of the three media files (biometric data).
    is_media: bool,
}

impl<'a> ArchivedKey<'a> {
    fn of(key: &'a str, prefix: &str) -> Option<ArchivedKey<'a>> {
        let mut parts = key.strip_prefix(prefix)?.splitn(3, '/');
        let (tenant, session_id, file) = (parts.next()?, parts.next()?, parts.next()?);
        if !archive::is_valid_tenant(tenant) || session_id.is_empty() || file.is_empty() {
            return None;
        }
        Some(ArchivedKey {
            tenant,
            session_id,
            is_media: archive::SLOTS.iter().any(|slot| slot.file_name == file),
        })
    }
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
