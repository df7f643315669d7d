//! `archiver audit --tenant T [--since RFC3339]`: a tenant's audit records (who read or
//! erased what, when and why) as JSON lines, oldest first (docs/contract.md section 9).

use anyhow::anyhow;
use archive::Archiver;

use crate::cli::{AuditOptions, Settings};
use crate::commands::list::{check_tenant, since};
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(options: &AuditOptions, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let mut problems = Problems::default();
    let archive_config = config::archive_config(settings, &mut problems);
    check_tenant(&options.tenant, &mut problems);
    let since = since(options.since.as_deref(), &mut problems);
    let archive_config = problems.finish_with(archive_config)?;
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let records = archiver
        .audit_records(&options.tenant, since)
        .await
        .map_err(|err| CommandError::Failed(anyhow!("cannot read the audit trail of {}: {err}", options.tenant)))?;
    for record in records {
        let line = serde_json::to_string(&record).map_err(|err| CommandError::Failed(err.into()))?;
        println!("{line}");
    }
    Ok(Outcome::Done)
}
