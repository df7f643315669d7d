//! `archiver refetch`: asks the vendor API (CONTRACT.md section 6) for a fresh report of
//! each session and archives it now, publishes it to the queue (`--enqueue`), or only
//! shows what would be fetched (`--dry-run`). `--from-dlq` takes the sessions from the
//! dead-letter queue instead, and acknowledges each dead-lettered message only once its
//! session is archived.
//!
//! Stdout carries one JSON line per session (what a script reads); stderr carries the
//! progress display and the summary (what a person reads).

use std::collections::BTreeMap;

use archive::{Archiver, Disposition, Manifest, MediaEntry, Received, ReportEvent, VendorClient};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use serde::Serialize;

use crate::cli::Settings;
use crate::config::{self, Problems};
use crate::exit::{CommandError, Outcome};
use crate::progress::Progress;
use crate::worker::{self, bounded, connect, Message, Publisher, Topology, REASON_HEADER};

/// What `archiver refetch` was asked to do, as the command line gave it.
pub use crate::cli::RefetchOptions as Options;

/// What became of one session; the `outcome` word is what scripts match on.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub session_id: String,
    pub tenant: String,
    /// `archived`, `incomplete` (archived, but a media was rejected or failed),
    /// `already-archived`, `enqueued`, `would-fetch` or `failed`.
    pub outcome: &'static str,
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
    fn new(session_id: &str, tenant: &str, outcome: &'static str) -> Self {
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
            ..SessionReport::new(session_id, tenant, "failed")
        }
    }

    /// Whether the session needs nothing more from anyone.
    fn is_settled(&self) -> bool {
        matches!(
            self.outcome,
            "archived" | "already-archived" | "enqueued" | "would-fetch"
        )
    }
}

/// Everything the sessions share: the vendor client, the pipeline, the broker.
struct Context {
    vendor: VendorClient,
    archiver: Archiver,
    topology: Topology,
    amqp_url: String,
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
    let vendor = config::vendor_config(settings, &mut problems);
    let topology = worker::config::topology(settings, &mut problems);
    problems.finish()?;
    let Some(vendor) = vendor else {
        return Err(CommandError::usage("invalid configuration: vendor api"));
    };
    let vendor = VendorClient::new(vendor).map_err(|err| CommandError::usage(err.to_string()))?;
    let archiver = Archiver::new(config::archive_config(settings)?)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let publisher = (options.enqueue || options.from_dlq).then(|| Publisher::new(&settings.amqp_url));
    let mut context = Context {
        vendor,
        archiver,
        topology,
        amqp_url: settings.amqp_url.clone(),
        publisher,
        options,
        progress,
    };

    let reports = if context.options.from_dlq {
        drain_dead_letters(&context)
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
        if uuid::Uuid::try_parse(session_id).is_err() || session_id.len() != 36 {
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
    if !options.force {
        match context.archiver.manifest(tenant, &session_id).await {
            Ok(Some(manifest)) if is_finished(&manifest) => {
                let mut report = SessionReport::new(&session_id, tenant, "already-archived");
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
    let event = match context.vendor.fresh_report(&session_id, tenant).await {
        Ok(event) => event,
        Err(err) => return SessionReport::failed(&session_id, tenant, err.to_string()),
    };
    if options.dry_run {
        let mut report = SessionReport::new(&session_id, tenant, "would-fetch");
        report.manifest_key = Some(context.archiver.manifest_key(tenant, &session_id));
        for (name, url) in media_urls(&event) {
            report
                .media
                .insert(name, url.map_or_else(|| "absent".to_string(), archive::redacted));
        }
        return report;
    }
    if options.enqueue {
        return match enqueue(context, &event).await {
            Ok(()) => SessionReport::new(&session_id, tenant, "enqueued"),
            Err(err) => SessionReport::failed(&session_id, tenant, err.to_string()),
        };
    }
    let observer = context.progress.observer(&session_id);
    let archived = context
        .archiver
        .archive_with_progress(&event, &Received::now(), observer)
        .await;
    let mut report = SessionReport::new(&session_id, tenant, "archived");
    report.manifest_key = Some(archived.manifest_key.clone());
    if let Some(manifest) = &archived.manifest {
        report.media = media_statuses(manifest);
    }
    match archived.disposition {
        Disposition::Done if archived.manifest.as_ref().is_some_and(all_kept) => report,
        Disposition::Done => SessionReport {
            outcome: "incomplete",
            reason: Some("a media was rejected".into()),
            ..report
        },
        Disposition::DeadLetter { reason } | Disposition::Retry { reason } => SessionReport {
            outcome: "failed",
            reason: Some(reason),
            ..report
        },
    }
}

fn media_urls(event: &ReportEvent) -> [(&'static str, Option<&url::Url>); 3] {
    let face = &event.face;
    [
        ("source_image", face.source_image.as_ref()),
        ("target_image", face.target_image.as_ref()),
        ("video", face.video_url.as_ref()),
    ]
}

/// A manifest with no `failed` media: nothing a refetch could add.
fn is_finished(manifest: &Manifest) -> bool {
    manifest
        .media
        .entries()
        .iter()
        .all(|(_, entry)| !matches!(entry, MediaEntry::Failed { .. }))
}

fn all_kept(manifest: &Manifest) -> bool {
    manifest
        .media
        .entries()
        .iter()
        .all(|(_, entry)| matches!(entry, MediaEntry::Stored(_) | MediaEntry::Absent))
}

fn media_statuses(manifest: &Manifest) -> BTreeMap<&'static str, String> {
    manifest
        .media
        .entries()
        .iter()
        .map(|(name, entry)| (*name, entry.status().to_string()))
        .collect()
}

async fn declare_topology(context: &Context) -> Result<(), worker::BrokerError> {
    let connection = connect(&context.amqp_url, "refetch").await?;
    let channel = bounded("open a channel", connection.create_channel()).await?;
    context.topology.declare(&channel).await?;
    let _ = bounded("close the connection", connection.close(200, "declared".into())).await;
    Ok(())
}

/// Publishes the fresh event to the queue, persistent, and waits for the broker's confirm.
async fn enqueue(context: &Context, event: &ReportEvent) -> Result<(), worker::BrokerError> {
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

/// Takes dead-lettered events one at a time. A recovered session's message is
/// acknowledged once its manifest is written; one that cannot be recovered goes back to
/// the dead-letter queue with an updated `x-archiver-reason` (the copy is confirmed before
/// the original is acknowledged, so an interruption at worst leaves a duplicate).
async fn drain_dead_letters(context: &Context) -> Result<Vec<SessionReport>, worker::BrokerError> {
    let connection = connect(&context.amqp_url, "refetch").await?;
    let channel = bounded("open a channel", connection.create_channel()).await?;
    context.topology.declare(&channel).await?;
    let dlq = context.topology.dead_letter_queue();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let waiting = bounded(
        "count the dead-letter queue",
        channel.queue_declare(dlq.as_str().into(), passive, FieldTable::default()),
    )
    .await?
    .message_count();
    // Each message is looked at once: those put back go to the end of the queue.
    let budget = context.options.limit.unwrap_or(u64::MAX).min(u64::from(waiting));
    let mut reports = Vec::new();
    let mut held = Vec::new();
    for _ in 0..budget {
        let Some(message) = bounded(
            "take a dead-lettered event",
            channel.basic_get(dlq.as_str().into(), BasicGetOptions::default()),
        )
        .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let report = match session_of(&delivery.data) {
            Ok((session_id, tenant)) => refetch_session(context, &session_id, &tenant).await,
            Err(reason) => SessionReport::failed("", "", reason),
        };
        print_report(context, &report);
        if context.options.dry_run {
            // Held unacknowledged until the end, so none is taken twice; then all go back.
            held.push(delivery);
        } else if report.is_settled() {
            if let Err(err) = bounded(
                "acknowledge the dead-lettered event",
                delivery.acker.ack(BasicAckOptions::default()),
            )
            .await
            {
                tracing::warn!(error = %err, "acknowledgement not sent; the message stays in the dead-letter queue");
            }
        } else {
            let reason = format!("refetch failed: {}", report.reason.as_deref().unwrap_or("unknown"));
            keep_dead_lettered(context, &dlq, &delivery, &reason).await;
        }
        reports.push(report);
    }
    for delivery in held {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        let _ = bounded("return the dead-lettered event", delivery.acker.nack(requeue)).await;
    }
    let _ = bounded("close the connection", connection.close(200, "done".into())).await;
    Ok(reports)
}

/// Puts a copy with the updated reason at the end of the dead-letter queue, then
/// acknowledges the original; if the copy is not confirmed the original is returned as is.
async fn keep_dead_lettered(context: &Context, dlq: &str, delivery: &lapin::message::Delivery, reason: &str) {
    let Some(publisher) = &context.publisher else {
        return;
    };
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(LongString::from(reason)));
    let properties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
    let message = Message {
        exchange: "",
        routing_key: dlq,
        body: &delivery.data,
        properties,
        mandatory: true,
    };
    match publisher
        .publish("keep the event in the dead-letter queue", message)
        .await
    {
        Ok(()) => {
            let _ = bounded(
                "acknowledge the replaced event",
                delivery.acker.ack(BasicAckOptions::default()),
            )
            .await;
        }
        Err(err) => {
            tracing::warn!(error = %err, "updated copy not confirmed; the event stays with its previous reason");
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            let _ = bounded("return the dead-lettered event", delivery.acker.nack(requeue)).await;
        }
    }
}

/// The session id and tenant of a dead-lettered body, even when the rest of the event is
/// broken (that is often why it was dead-lettered).
fn session_of(body: &[u8]) -> Result<(String, String), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| format!("cannot refetch: the event is not JSON: {err}"))?;
    let session_id = value
        .get("session_id")
        .and_then(|id| id.as_str())
        .filter(|id| id.len() == 36 && uuid::Uuid::try_parse(id).is_ok())
        .ok_or("cannot refetch: the event has no valid session_id")?;
    let tenant = match value.get("tenant") {
        None | Some(serde_json::Value::Null) => "default",
        Some(tenant) => tenant
            .as_str()
            .filter(|tenant| archive::is_valid_tenant(tenant))
            .ok_or("cannot refetch: the event's tenant is not valid")?,
    };
    Ok((session_id.to_ascii_lowercase(), tenant.to_string()))
}

fn print_report(context: &Context, report: &SessionReport) {
    context.progress.session_finished(report);
    match serde_json::to_string(report) {
        Ok(line) => context.progress.stdout_line(&line),
        Err(err) => tracing::error!(error = %err, "cannot encode a session report"),
    }
}

fn summary(reports: &[SessionReport]) -> String {
    let count = |outcome: &str| reports.iter().filter(|report| report.outcome == outcome).count();
    let mut text = format!(
        "{} session(s): {} archived, {} already archived, {} enqueued, {} would be fetched, {} incomplete, {} failed",
        reports.len(),
        count("archived"),
        count("already-archived"),
        count("enqueued"),
        count("would-fetch"),
        count("incomplete"),
        count("failed"),
    );
    for report in reports.iter().filter(|report| !report.is_settled()) {
        let who = if report.session_id.is_empty() {
            "(unreadable event)"
        } else {
            &report.session_id
        };
        text.push_str(&format!(
            "\n  {who}: {}",
            report.reason.as_deref().unwrap_or(report.outcome)
        ));
    }
    text
}
