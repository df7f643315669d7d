//! `archiver refetch`: asks the vendor API (docs/contract.md section 6) for a fresh report of
//! each session and archives it now, publishes it to the queue (`--enqueue`), or only
//! shows what would be fetched (`--dry-run`). `--from-dlq` takes the sessions from the
//! dead-letter queue instead, and acknowledges each dead-lettered message only once its
//! session is archived.
//!
//! Stdout carries one JSON line per session (what a script reads); stderr carries the
//! progress display and the summary (what a person reads).

mod display;
mod dlq;

use std::collections::BTreeMap;

use archive::{Archiver, CancellationToken, Disposition, Manifest, MediaStatus, Received, ReportEvent};
use lapin::BasicProperties;
use serde::Serialize;

use crate::broker::{bounded, connect, BrokerError, Message, Publisher, Topology};
use crate::cli::Settings;
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::tenants::VendorClients;
use display::Progress;

/// What `archiver refetch` was asked to do, as the command line gave it.
pub use crate::cli::RefetchOptions as Options;

/// What became of one session, as the `outcome` word scripts match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefetchOutcome {
    /// Archived now, every media stored or absent.
    Archived,
    /// Archived now, but a media was rejected.
    Incomplete,
    /// Finished before: nothing asked, nothing fetched.
    AlreadyArchived,
    /// The fresh report was published to the queue.
    Enqueued,
    /// `--dry-run`: what would be fetched.
    WouldFetch,
    /// The vendor, the store or a media failed; `reason` says why.
    Failed,
    /// The session was erased: nothing asked, nothing fetched or stored, ever again.
    Erased,
}

impl RefetchOutcome {
    pub const ALL: [RefetchOutcome; 7] = [
        RefetchOutcome::Archived,
        RefetchOutcome::AlreadyArchived,
        RefetchOutcome::Enqueued,
        RefetchOutcome::WouldFetch,
        RefetchOutcome::Incomplete,
        RefetchOutcome::Failed,
        RefetchOutcome::Erased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefetchOutcome::Archived => "archived",
            RefetchOutcome::Incomplete => "incomplete",
            RefetchOutcome::AlreadyArchived => "already-archived",
            RefetchOutcome::Enqueued => "enqueued",
            RefetchOutcome::WouldFetch => "would-fetch",
            RefetchOutcome::Failed => "failed",
            RefetchOutcome::Erased => "erased",
        }
    }

    /// Whether the session needs nothing more from anyone.
    pub fn is_settled(self) -> bool {
        !matches!(self, RefetchOutcome::Incomplete | RefetchOutcome::Failed)
    }
}

/// What became of one session; `outcome` is what scripts match on.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub session_id: String,
    pub tenant: String,
    pub outcome: RefetchOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    /// Each media's status (`stored`, `absent`, `rejected`, `failed`), or for
    /// `would-fetch` the host and path that would be fetched (never the query string).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub media: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SessionReport {
    fn new(session_id: &str, tenant: &str, outcome: RefetchOutcome) -> Self {
        SessionReport {
            session_id: session_id.to_string(),
            tenant: tenant.to_string(),
            outcome,
            manifest_key: None,
            media: BTreeMap::new(),
            reason: None,
        }
    }

    fn failed(session_id: &str, tenant: &str, reason: impl Into<String>) -> Self {
        SessionReport {
            reason: Some(reason.into()),
            ..SessionReport::new(session_id, tenant, RefetchOutcome::Failed)
        }
    }

    fn is_settled(&self) -> bool {
        self.outcome.is_settled()
    }
}

/// Everything the sessions share: the vendor client, the pipeline, the broker.
struct Context {
    /// One client per vendor key; a session is asked about with its tenant's key only.
    vendor: VendorClients,
    archiver: Archiver,
    topology: Topology,
    amqp_url: String,
    broker_tls: crate::broker::BrokerTls,
    publisher: Option<Publisher>,
    options: Options,
    progress: Progress,
}

pub async fn run(options: Options, settings: &Settings) -> Result<Outcome, CommandError> {
    let progress = Progress::new();
    // Under live bars, informational logs would tear the display: only warnings and
    // errors are shown there unless RUST_LOG asks for more.
    let default_level = if progress.is_live() { "warn" } else { "info" };
    crate::logging::init_with_default(&settings.log_format, default_level)?;
    let mut problems = Problems::default();
    check_options(&options, &mut problems);
    let tenants = config::tenants(settings, &mut problems);
    let vendor = config::vendor_clients(settings, tenants.as_ref(), true, &mut problems);
    let topology = crate::worker::config::topology(settings, &mut problems);
    let broker_tls = config::broker_tls(settings, &mut problems);
    // Every problem in one round: the options', the vendor API's and the pipeline's.
    let archive_config = config::archive_config(settings, &mut problems);
    let archive_config = problems.finish_with(archive_config)?;
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let publisher = (options.enqueue || options.from_dlq).then(|| Publisher::new(&settings.amqp_url, &broker_tls));
    let mut context = Context {
        vendor,
        archiver,
        topology,
        amqp_url: settings.amqp_url.clone(),
        broker_tls,
        publisher,
        options,
        progress,
    };

    let reports = if context.options.from_dlq {
        dlq::drain_dead_letters(&context)
            .await
            .map_err(|err| CommandError::Failed(err.into()))?
    } else {
        if context.options.enqueue && !context.options.dry_run {
            declare_topology(&context)
                .await
                .map_err(|err| CommandError::Failed(err.into()))?;
        }
        let mut reports = Vec::new();
        for session_id in std::mem::take(&mut context.options.session_ids) {
            let tenant = context.options.tenant.clone();
            let report = refetch_session(&context, &session_id, &tenant).await;
            print_report(&context, &report);
            reports.push(report);
        }
        reports
    };
    if let Some(publisher) = &context.publisher {
        publisher.close().await;
    }
    context.progress.summary(&summary(&reports));
    Ok(if reports.iter().all(SessionReport::is_settled) {
        Outcome::Done
    } else {
        Outcome::Partial
    })
}

fn check_options(options: &Options, problems: &mut Problems) {
    if options.from_dlq && !options.session_ids.is_empty() {
        problems.push("give either session ids or --from-dlq, not both");
    }
    if !options.from_dlq && options.session_ids.is_empty() {
        problems.push("give at least one session id, or --from-dlq");
    }
    if options.limit.is_some() && !options.from_dlq {
        problems.push("--limit applies to --from-dlq only");
    }
    if options.from_dlq && options.enqueue {
        problems.push("--from-dlq archives here; it cannot be combined with --enqueue");
    }
    for session_id in &options.session_ids {
        if archive::session_id(session_id).is_none() {
            problems.push(format!("session id must be a UUID, got {session_id:?}"));
        }
    }
    if !archive::is_valid_tenant(&options.tenant) {
        problems.push(format!(
            "--tenant must match [a-z0-9][a-z0-9-]{{0,62}}, got {:?}",
            options.tenant
        ));
    }
}

/// One session: skip it if finished (unless `--force`), else get a fresh report and
/// archive, enqueue or describe it.
async fn refetch_session(context: &Context, session_id: &str, tenant: &str) -> SessionReport {
    let session_id = session_id.to_ascii_lowercase();
    let options = &context.options;
    // Erased is final, `--force` or not: the vendor is not even asked.
    match context.archiver.is_erased(tenant, &session_id).await {
        Ok(true) => {
            let mut report = SessionReport::new(&session_id, tenant, RefetchOutcome::Erased);
            report.manifest_key = Some(context.archiver.manifest_key(tenant, &session_id));
            return report;
        }
        Ok(false) => {}
        Err(err) => return SessionReport::failed(&session_id, tenant, format!("cannot look for erased.json: {err}")),
    }
    if !options.force {
        match context.archiver.manifest(tenant, &session_id).await {
            Ok(Some(manifest)) if manifest.is_finished() => {
                let mut report = SessionReport::new(&session_id, tenant, RefetchOutcome::AlreadyArchived);
                report.manifest_key = Some(context.archiver.manifest_key(tenant, &session_id));
                report.media = media_statuses(&manifest);
                return report;
            }
            Ok(_) => {}
            Err(err) => return SessionReport::failed(&session_id, tenant, format!("cannot read the manifest: {err}")),
        }
    }
    context
        .progress
        .session_started(&session_id, "asking the vendor for a fresh report");
    let vendor = match context.vendor.for_tenant(tenant) {
        Ok(vendor) => vendor,
        Err(no_key) => return SessionReport::failed(&session_id, tenant, no_key.to_string()),
    };
    let event = match vendor.fresh_report(&session_id, tenant).await {
        Ok(event) => event,
        Err(err) => return SessionReport::failed(&session_id, tenant, err.to_string()),
    };
    if options.dry_run {
        let mut report = SessionReport::new(&session_id, tenant, RefetchOutcome::WouldFetch);
        report.manifest_key = Some(context.archiver.manifest_key(tenant, &session_id));
        for slot in archive::SLOTS {
            let url = archive::url_of(&event.face, slot.kind);
            report.media.insert(
                slot.manifest_name,
                url.map_or_else(|| MediaStatus::Absent.to_string(), archive::redacted),
            );
        }
        return report;
    }
    if options.enqueue {
        return match enqueue(context, &event).await {
            Ok(()) => SessionReport::new(&session_id, tenant, RefetchOutcome::Enqueued),
            Err(err) => SessionReport::failed(&session_id, tenant, err.to_string()),
        };
    }
    let observer = context.progress.observer(&session_id);
    let archived = context
        .archiver
        .archive_with_progress(&event, &Received::now(), &CancellationToken::new(), observer)
        .await;
    let mut report = SessionReport::new(&session_id, tenant, RefetchOutcome::Archived);
    report.manifest_key = Some(archived.manifest_key.clone());
    if let Some(manifest) = &archived.manifest {
        report.media = media_statuses(manifest);
    }
    match archived.disposition {
        Disposition::Done if archived.manifest.as_ref().is_some_and(Manifest::is_complete) => report,
        Disposition::Done => SessionReport {
            outcome: RefetchOutcome::Incomplete,
            reason: Some("a media was rejected".into()),
            ..report
        },
        // Erased while the vendor was asked: nothing stored.
        Disposition::Erased => SessionReport {
            outcome: RefetchOutcome::Erased,
            ..report
        },
        Disposition::DeadLetter(failure) | Disposition::Retry(failure) => SessionReport {
            outcome: RefetchOutcome::Failed,
            reason: Some(failure.reason),
            ..report
        },
    }
}

fn media_statuses(manifest: &Manifest) -> BTreeMap<&'static str, String> {
    manifest
        .media
        .entries()
        .iter()
        .map(|(kind, entry)| (archive::manifest_name(*kind), entry.status().to_string()))
        .collect()
}

async fn declare_topology(context: &Context) -> Result<(), BrokerError> {
    let connection = connect(&context.amqp_url, &context.broker_tls, "refetch").await?;
    context.topology.declare(&connection).await?;
    let _ = bounded("close the connection", connection.close(200, "declared".into())).await;
    Ok(())
}

/// Publishes the fresh event to the queue, persistent, and waits for the broker's confirm.
async fn enqueue(context: &Context, event: &ReportEvent) -> Result<(), BrokerError> {
    let Some(publisher) = &context.publisher else {
        return Ok(());
    };
    let body = archive::event_json(event).to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(now);
    let message = Message {
        exchange: "",
        routing_key: &context.topology.queue,
        body: body.as_bytes(),
        properties,
        mandatory: true,
    };
    publisher.publish("publish the fresh event", message).await
}

fn print_report(context: &Context, report: &SessionReport) {
    context.progress.session_finished(report);
    match serde_json::to_string(report) {
        Ok(line) => context.progress.stdout_line(&line),
        Err(err) => tracing::error!(error = %err, "cannot encode a session report"),
    }
}

fn summary(reports: &[SessionReport]) -> String {
    let counts: Vec<String> = RefetchOutcome::ALL
        .iter()
        .map(|outcome| {
            let count = reports.iter().filter(|report| report.outcome == *outcome).count();
            format!("{count} {}", outcome.as_str().replace('-', " "))
        })
        .collect();
    let mut text = format!("{} session(s): {}", reports.len(), counts.join(", "));
    for report in reports.iter().filter(|report| !report.is_settled()) {
        let who = if report.session_id.is_empty() {
            "(unreadable event)"
        } else {
            &report.session_id
        };
        text.push_str(&format!(
            "\n  {who}: {}",
            report.reason.as_deref().unwrap_or(report.outcome.as_str())
        ));
    }
    text
}
