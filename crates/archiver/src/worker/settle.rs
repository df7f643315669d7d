//! Settling one delivery: ask the handler what became of it, make that durable on the
//! broker (result event, dead-letter copy), and only then acknowledge.
//!
//! How a message goes back is chosen for RabbitMQ 4.3's rules and is also correct before
//! them: `basic.reject` with requeue for an event whose own media failed (4.3 counts it
//! toward the delivery limit, as earlier versions count every return), `basic.nack` with
//! requeue only where the event is not at fault (a store outage, a lost channel), which
//! 4.3 does not count.

use std::sync::Arc;

use archive::{Cause, Disposition, Failure};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use super::{Handled, Handler, Incoming, ResultEvent, Topology};
use crate::broker::{bounded, dead_letter_copy, Message, Publisher, RESULTS_EXCHANGE};
use crate::metrics::{EventMetrics, EventOutcome};
use archive::CancellationToken;

/// What every delivery task shares.
pub struct Context<H> {
    pub handler: Arc<H>,
    pub publisher: Arc<Publisher>,
    pub topology: Topology,
}

/// Handles one delivery to the end. Every path either settles the message or leaves it
/// unacknowledged, which the broker redelivers: nothing here can lose it. Once `lost`
/// fires (the delivery's channel is gone), nothing more is published.
pub async fn settle<H: Handler>(delivery: Delivery, context: &Context<H>, lost: &CancellationToken) {
    let Handled {
        disposition,
        result,
        metrics,
    } = match content_type_problem(&delivery.properties) {
        Some(reason) => Handled {
            result: ResultEvent::unparsed(&delivery.data, &reason),
            disposition: Disposition::DeadLetter(Failure::new(Cause::InvalidEvent, reason)),
            metrics: EventMetrics::for_unparsed(),
        },
        None => {
            let incoming = Incoming {
                body: &delivery.data,
                amqp_timestamp: *delivery.properties.timestamp(),
                lost,
            };
            context.handler.handle(incoming).await
        }
    };
    let attempt = previous_deliveries(&delivery.properties) + 1;
    let disposition = give_up_when_exhausted(disposition, attempt, context.topology.delivery_limit);
    if lost.is_cancelled() {
        tracing::warn!("the delivery was lost while it was handled; the broker redelivers the event");
        metrics.finish(EventOutcome::Requeued);
        return;
    }
    let durable = match &disposition {
        Disposition::Done => publish_result(context, &delivery, &result, &disposition).await && ack(&delivery).await,
        Disposition::DeadLetter(failure) => {
            let result = ResultEvent {
                reason: Some(failure.reason.clone()),
                ..result.clone()
            };
            dead_letter(context, &delivery, failure).await
                && !lost.is_cancelled()
                && publish_result(context, &delivery, &result, &disposition).await
                && ack(&delivery).await
        }
        Disposition::Retry(failure) => {
            tracing::warn!(reason = %failure.reason, cause = %failure.cause, attempt, delivery_limit = context.topology.delivery_limit, "returning event to the queue to try again");
            give_back(&delivery, !failure.cause.is_store_outage()).await;
            false
        }
    };
    let outcome = EventOutcome::settled(&disposition, durable);
    match (&disposition, durable) {
        (Disposition::Done, true) => tracing::info!(
            outcome = "archived",
            manifest_key = result.manifest_key.as_deref(),
            "event settled"
        ),
        (Disposition::DeadLetter(failure), true) => {
            tracing::warn!(outcome = "dead-lettered", reason = %failure.reason, cause = %failure.cause, dead_letter_queue = %context.topology.dead_letter_queue(), "event settled")
        }
        (Disposition::Retry(_), _) => {}
        // Not made durable: the broker redelivers it (the archive is idempotent).
        (_, false) => give_back(&delivery, false).await,
    }
    metrics.finish(outcome);
}

/// The event is JSON: a message that declares another content type is dead-lettered
/// unread. Parameters (`; charset=utf-8`) and case do not matter, an absent type is
/// accepted (docs/contract.md section 1).
pub fn content_type_problem(properties: &BasicProperties) -> Option<String> {
    let declared = properties.content_type().as_ref()?.as_str();
    let media_type = declared.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        None
    } else {
        Some(format!("content_type {declared:?} is not application/json"))
    }
}

/// How often this message failed before: the quorum queue's `x-delivery-count`, which
/// before 4.3 counts every return and from 4.3 only rejects, that is the deliveries where
/// the event's own media failed (this worker rejects exactly those). 4.3's
/// `x-acquired-count` also counts returns that were not the event's fault (a store
/// outage), so it is not what the give-up reads. Absent on a first delivery.
pub fn previous_deliveries(properties: &BasicProperties) -> u64 {
    let Some(headers) = properties.headers().as_ref() else {
        return 0;
    };
    let read = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortShortUInt(n)) => u64::from(*n),
        _ => 0,
    };
    read("x-delivery-count")
}

/// On its last allowed delivery, an event whose own media keep failing is dead-lettered
/// by the worker instead, so that it reaches the dead-letter queue with a reason (the
/// broker's own delivery limit, one delivery later, remains the safety net for a worker
/// that dies on every attempt). A store outage is not the event's fault and never ends it.
pub fn give_up_when_exhausted(disposition: Disposition, attempt: u64, delivery_limit: u32) -> Disposition {
    match disposition {
        Disposition::Retry(failure) if !failure.cause.is_store_outage() && attempt >= u64::from(delivery_limit) => {
            Disposition::DeadLetter(Failure {
                reason: format!("still failing after {attempt} deliveries: {}", failure.reason),
                cause: failure.cause,
            })
        }
        other => other,
    }
}

/// Copies the message to the dead-letter exchange with the reason and cause; the broker
/// must confirm it reached the dead-letter queue.
async fn dead_letter<H>(context: &Context<H>, delivery: &Delivery, failure: &Failure) -> bool {
    let exchange = context.topology.dead_letter_exchange();
    let message = Message {
        exchange: &exchange,
        routing_key: &context.topology.queue,
        body: &delivery.data,
        properties: dead_letter_copy(&delivery.properties, &failure.reason, failure.cause),
        mandatory: true,
    };
    match context
        .publisher
        .publish("copy the event to the dead-letter queue", message)
        .await
    {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(error = %err, "event returned to the queue: its dead-letter copy was not confirmed");
            false
        }
    }
}

/// Publishes the result event, routed by the disposition's outcome word. Its
/// `correlation_id` is the event's `message_id`, when the producer set one.
async fn publish_result<H>(
    context: &Context<H>,
    delivery: &Delivery,
    result: &ResultEvent,
    disposition: &Disposition,
) -> bool {
    let Some(outcome) = disposition.outcome() else {
        return false;
    };
    let body = result.body(outcome);
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(FieldTable::default());
    if let Some(message_id) = delivery.properties.message_id() {
        properties = properties.with_correlation_id(message_id.clone());
    }
    let message = Message {
        exchange: RESULTS_EXCHANGE,
        routing_key: outcome,
        body: &body,
        properties,
        mandatory: false,
    };
    match context.publisher.publish("publish the result event", message).await {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(error = %err, "event returned to the queue: its result event was not confirmed");
            false
        }
    }
}

/// Whether the acknowledgement was sent. One that was not is left to redelivery.
async fn ack(delivery: &Delivery) -> bool {
    match bounded("acknowledge the event", delivery.acker.ack(BasicAckOptions::default())).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!("could not acknowledge: the channel is gone; the broker will redeliver the event");
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not acknowledge; the broker will redeliver the event");
            false
        }
    }
}

/// Returns the event to the queue: `reject` when the event's own media failed (counted
/// toward its delivery limit on every version), `nack` when it is not at fault.
async fn give_back(delivery: &Delivery, event_at_fault: bool) {
    let returned = if event_at_fault {
        bounded(
            "return the event to the queue",
            delivery.acker.reject(BasicRejectOptions { requeue: true }),
        )
        .await
    } else {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        bounded("return the event to the queue", delivery.acker.nack(options)).await
    };
    if let Err(err) = returned {
        tracing::warn!(error = %err, "could not return the event; the broker will redeliver it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let cases = [
            (None, None),
            (Some("application/json"), None),
            (Some("Application/JSON; charset=utf-8"), None),
            (
                Some("text/plain"),
                Some(r#"content_type "text/plain" is not application/json"#),
            ),
            (Some(""), Some(r#"content_type "" is not application/json"#)),
        ];
        for (declared, problem) in cases {
            let mut properties = BasicProperties::default();
            if let Some(declared) = declared {
                properties = properties.with_content_type(declared.into());
            }
            assert_eq!(content_type_problem(&properties).as_deref(), problem, "{declared:?}");
        }
    }

    #[test]
    fn retries_end_at_the_delivery_limit_unless_the_store_is_out() {
        let retry = |cause| Disposition::Retry(Failure::new(cause, "source image: 503"));
        let busy = || retry(Cause::SourceUnavailable);
        assert_eq!(give_up_when_exhausted(busy(), 1, 3), busy());
        assert_eq!(give_up_when_exhausted(busy(), 2, 3), busy());
        assert_eq!(
            give_up_when_exhausted(busy(), 3, 3),
            Disposition::DeadLetter(Failure::new(
                Cause::SourceUnavailable,
                "still failing after 3 deliveries: source image: 503"
            ))
        );
        let outage = retry(Cause::StoreUnavailable);
        assert_eq!(give_up_when_exhausted(outage.clone(), 9, 3), outage);
        assert_eq!(give_up_when_exhausted(Disposition::Done, 9, 3), Disposition::Done);
    }

    #[test]
    fn delivery_count_headers() {
        let with = |pairs: &[(&str, i64)]| {
            let mut headers = FieldTable::default();
            for (name, value) in pairs {
                headers.insert((*name).into(), AMQPValue::LongLongInt(*value));
            }
            BasicProperties::default().with_headers(headers)
        };
        assert_eq!(previous_deliveries(&with(&[("x-delivery-count", 4)])), 4);
        // 4.3: returns that were not the event's fault are acquisitions, not failures.
        assert_eq!(
            previous_deliveries(&with(&[("x-delivery-count", 1), ("x-acquired-count", 6)])),
            1
        );
        assert_eq!(previous_deliveries(&BasicProperties::default()), 0);
    }
}
