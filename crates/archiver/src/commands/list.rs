//! `archiver list --tenant T [--since RFC3339] [--incomplete]`: one JSON line per archived
//! session of a tenant, from the store's listing (docs/contract.md section 9). Each
//! session's manifest and tombstone are read; no media is ever downloaded.

use std::collections::BTreeMap;

use anyhow::anyhow;
use archive::{Archiver, SessionSummary};
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::{ListOptions, Settings};
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(options: &ListOptions, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let mut problems = Problems::default();
    let archive_config = config::archive_config(settings, &mut problems);
    check_tenant(&options.tenant, &mut problems);
    let since = since(options.since.as_deref(), &mut problems);
    let archive_config = problems.finish_with(archive_config)?;
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let started = std::time::Instant::now();
    let sessions = archiver
        .sessions(&options.tenant)
        .await
        .map_err(|err| CommandError::Failed(anyhow!("cannot list tenant {}: {err}", options.tenant)))?;
    let mut shown = 0usize;
    for session in &sessions {
        if !wanted(session, since, options.incomplete) {
            continue;
        }
        println!("{}", line(&options.tenant, session));
        shown += 1;
    }
    tracing::info!(
        tenant = %options.tenant,
        sessions = sessions.len(),
        shown,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "listed"
    );
    Ok(Outcome::Done)
}

/// `--since` keeps sessions archived at or after it; `--incomplete` keeps sessions not
/// finished (no manifest yet, or a media `failed`) and not erased.
fn wanted(session: &SessionSummary, since: Option<OffsetDateTime>, incomplete: bool) -> bool {
    let archived_at = session.manifest.as_ref().map(|manifest| manifest.archived_at);
    if since.is_some_and(|since| archived_at.is_none_or(|at| at < since)) {
        return false;
    }
    !incomplete || (!session.erased && !session.manifest.as_ref().is_some_and(|manifest| manifest.is_finished()))
}

fn line(tenant: &str, session: &SessionSummary) -> serde_json::Value {
    let media: Option<BTreeMap<&str, String>> = session.manifest.as_ref().map(|manifest| {
        manifest
            .media
            .entries()
            .iter()
            .map(|(kind, entry)| (archive::manifest_name(*kind), entry.status().to_string()))
            .collect()
    });
    json!({
        "session_id": session.session_id,
        "tenant": tenant,
        "archived_at": session.manifest.as_ref().map(|manifest| rfc3339(manifest.archived_at)),
        "finished": session.manifest.as_ref().is_some_and(|manifest| manifest.is_finished()),
        "media": media,
        "manifest_key": session.manifest_key,
        "erased": session.erased,
    })
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A tenant name as events carry it (lower-case letters, digits, `-`).
pub(crate) fn check_tenant(tenant: &str, problems: &mut Problems) {
    if !archive::is_valid_tenant(tenant) {
        problems.push(format!(
            "--tenant must be a tenant name (lower-case letters, digits and `-`), got {tenant:?}"
        ));
    }
}

/// `--since`, an RFC 3339 time.
pub(crate) fn since(text: Option<&str>, problems: &mut Problems) -> Option<OffsetDateTime> {
    let text = text?;
    match OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339) {
        Ok(at) => Some(at),
        Err(_) => {
            problems.push(format!(
                "--since must be an RFC 3339 time such as 2026-11-25T10:00:00Z, got {text:?}"
            ));
            None
        }
    }
}
