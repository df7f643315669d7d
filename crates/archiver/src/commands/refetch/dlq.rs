//! `archiver refetch --from-dlq`: sessions taken from the dead-letter queue, each message
//! acknowledged only once its session is archived, or put back with its new reason.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::{print_report, refetch_session, Context, SessionReport};
use crate::broker::{bounded, cause_of, connect, dead_letter_copy, BrokerError, Message};
use archive::Cause;

/// Takes dead-lettered events one at a time. A recovered session's message is
/// acknowledged once its manifest is written; one that cannot be recovered goes back to
/// the dead-letter queue with an updated `x-archiver-reason` (the copy is confirmed before
/// the original is acknowledged, so an interruption at worst leaves a duplicate).
pub(super) async fn drain_dead_letters(context: &Context) -> Result<Vec<SessionReport>, BrokerError> {
    let connection = connect(&context.amqp_url, &context.broker_tls, "refetch").await?;
    context.topology.declare(&connection).await?;
    let channel = bounded("open a channel", connection.create_channel()).await?;
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
    // The cause stays the one that dead-lettered it, unless nothing named one.
    let cause = cause_of(&delivery.properties).unwrap_or(Cause::SourceRefused);
    let properties = dead_letter_copy(&delivery.properties, reason, cause);
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
        .and_then(archive::session_id)
        .ok_or("cannot refetch: the event has no valid session_id")?;
    let tenant = match value.get("tenant") {
        None | Some(serde_json::Value::Null) => "default",
        Some(tenant) => tenant
            .as_str()
            .filter(|tenant| archive::is_valid_tenant(tenant))
            .ok_or("cannot refetch: the event's tenant is not valid")?,
    };
    Ok((session_id, tenant.to_string()))
}
