//! `archiver erase --tenant T --reason TEXT SESSION_ID...`: erases sessions for good
//! (docs/contract.md section 9). For each session: the retention checks (nothing changed
//! when they refuse), the tombstone `erased.json` first, then every version of the
//! session's objects deleted and its unfinished uploads aborted, then an audit record. One
//! JSON line per session on stdout; exit 0 when every session is erased, 1 otherwise.

use archive::{Archiver, AuditAction, AuditRecord, EraseRequest, Erasure};
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::{EraseOptions, Settings};
use crate::commands::list::{check_tenant, rfc3339};
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(options: &EraseOptions, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let mut problems = Problems::default();
    let archive_config = config::archive_config(settings, &mut problems);
    check_tenant(&options.tenant, &mut problems);
    for session_id in &options.session_ids {
        if archive::session_id(session_id).is_none() {
            problems.push(format!("{session_id:?} is not a session id (a UUID)"));
        }
    }
    if options.reason.trim().is_empty() {
        problems.push("--reason must say why the sessions are erased (a request reference, a retention end)");
    }
    let archive_config = problems.finish_with(archive_config)?;
    // Already checked by `archive_config` (its problems were reported above).
    let retain = config::retention(settings, &mut Problems::default());
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let by = operator(settings, &archiver).await?;
    let request = EraseRequest {
        reason: options.reason.trim().to_string(),
        by,
        retain,
    };
    let mut all_erased = true;
    for session_id in &options.session_ids {
        let (line, erased) = erase_one(&archiver, &options.tenant, session_id, &request).await;
        all_erased &= erased;
        println!("{line}");
    }
    Ok(if all_erased { Outcome::Done } else { Outcome::Partial })
}

/// Erases one session and writes its audit record; the JSON line and whether it is erased.
async fn erase_one(archiver: &Archiver, tenant: &str, session_id: &str, request: &EraseRequest) -> (String, bool) {
    let tombstone_key = archiver.tombstone_key(tenant, session_id);
    let mut line = json!({ "session_id": session_id, "tenant": tenant, "tombstone_key": tombstone_key });
    let erased = match archiver.erase(tenant, session_id, request).await {
        Ok(Erasure::NotFound) => {
            line["outcome"] = "not-found".into();
            line["reason"] = "nothing is archived for this session; nothing was written".into();
            return (line.to_string(), false);
        }
        Ok(Erasure::Refused { reason, until }) => {
            line["outcome"] = "refused".into();
            line["reason"] = reason.into();
            line["until"] = until.map(rfc3339).into();
            return (line.to_string(), false);
        }
        Err(err) => {
            line["outcome"] = "failed".into();
            line["reason"] = format!("{err}; run the same command again to finish").into();
            return (line.to_string(), false);
        }
        Ok(Erasure::Erased { tombstone, deleted }) => {
            line["outcome"] = "erased".into();
            (tombstone, deleted, true)
        }
        Ok(Erasure::Incomplete { tombstone, deleted }) => {
            line["outcome"] = "incomplete".into();
            line["reason"] = "the store refused to delete some versions (see refused); nothing else is left".into();
            (tombstone, deleted, false)
        }
    };
    let (tombstone, deleted, mut done) = erased;
    line["objects"] = tombstone.objects.len().into();
    line["deleted"] = deleted.deleted.into();
    line["uploads_aborted"] = deleted.uploads_aborted.into();
    line["versioned"] = deleted.versioned.into();
    line["refused"] = deleted
        .refused
        .iter()
        .map(|refused| json!({ "key": refused.key, "version_id": refused.version_id, "reason": refused.reason }))
        .collect::<Vec<_>>()
        .into();
    let record = AuditRecord {
        action: AuditAction::Erase,
        tenant: tenant.to_string(),
        session_id: session_id.to_string(),
        key: tombstone_key,
        by: request.by.clone(),
        reason: Some(request.reason.clone()),
        at: OffsetDateTime::now_utc(),
    };
    match archiver.append_audit(&record).await {
        Ok(key) => line["audit_key"] = key.into(),
        Err(err) => {
            done = false;
            line["outcome"] = "failed".into();
            line["reason"] = format!("erased, but the audit record was not written: {err}").into();
        }
    }
    (line.to_string(), done)
}

/// Who acts: `ARCHIVER_OPERATOR`, else the access key id of the store credentials. The
/// chain is asked only when its keys are static (`AWS_ACCESS_KEY_ID`), which it answers
/// from memory: a chain that would fetch credentials over the network (web identity,
/// instance metadata) is not asked, and the operator must be named.
pub(crate) async fn operator(settings: &Settings, archiver: &Archiver) -> Result<String, CommandError> {
    if let Some(operator) = settings
        .operator
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        return Ok(operator.to_string());
    }
    let static_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some_and(|id| !id.is_empty());
    let found = if static_keys {
        archiver.access_key_id().await
    } else {
        None
    };
    found.ok_or_else(|| {
        CommandError::usage(
            "set ARCHIVER_OPERATOR (who is recorded as acting): the store credentials have no static access key id",
        )
    })
}
