//! Settling one delivery: ask the handler what became of it, make that durable on the
//! broker (result event, dead-letter copy), and only then acknowledge.

use std::sync::Arc;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

use super::broker::bounded;
use super::publisher::{Message, Publisher};
use super::{Handled, Handler, Incoming, ResultEvent, Settlement, Topology, REASON_HEADER, RESULTS_EXCHANGE};
use crate::metrics::{EventMetrics, EventOutcome};

/// What every delivery task shares.
pub struct Context<H> {
    pub handler: Arc<H>,
    pub publisher: Arc<Publisher>,
    pub topology: Topology,
}

/// Handles one delivery to the end. Every path either settles the message or leaves it
/// unacknowledged, which the broker redelivers: nothing here can lose it.
pub async fn settle<H: Handler>(delivery: Delivery, context: &Context<H>) {
    let Handled { settlement, metrics } = match content_type_problem(&delivery.properties) {
        Some(reason) => Handled {
            settlement: Settlement::DeadLetter {
                result: ResultEvent::unparsed(&delivery.data, &reason),
                reason,
            },
            metrics: EventMetrics::for_unparsed(),
        },
        None => {
            let incoming = Incoming {
                body: &delivery.data,
                amqp_timestamp: *delivery.properties.timestamp(),
            };
            context.handler.handle(incoming).await
        }
    };
    let attempt = previous_deliveries(&delivery.properties) + 1;
    let settlement = give_up_when_exhausted(settlement, attempt, context.topology.delivery_limit);
    let outcome = match settlement {
        Settlement::Done { result } => {
            if publish_result(context, &delivery, &result, "archived").await && ack(&delivery).await {
                tracing::info!(
                    outcome = "archived",
                    manifest_key = result.manifest_key.as_deref(),
                    "event settled"
                );
                EventOutcome::Archived
            } else {
                requeue(&delivery).await
            }
        }
        Settlement::DeadLetter { reason, result } => {
            let result = ResultEvent {
                reason: Some(reason.clone()),
                ..result
            };
            if dead_letter(context, &delivery, &reason).await
                && publish_result(context, &delivery, &result, "dead-lettered").await
                && ack(&delivery).await
            {
                tracing::warn!(outcome = "dead-lettered", %reason, dead_letter_queue = %context.topology.dead_letter_queue(), "event settled");
                EventOutcome::DeadLettered
            } else {
                requeue(&delivery).await
            }
        }
        Settlement::Retry { reason, .. } => {
            tracing::warn!(%reason, attempt, delivery_limit = context.topology.delivery_limit, "returning event to the queue to try again");
            requeue(&delivery).await
        }
    };
    metrics.finish(outcome);
}

/// The event is JSON: a message that declares another content type is dead-lettered
/// unread. Parameters (`; charset=utf-8`) and case do not matter, an absent type is
/// accepted (CONTRACT.md section 1).
pub fn content_type_problem(properties: &BasicProperties) -> Option<String> {
    let declared = properties.content_type().as_ref()?.as_str();
    let media_type = declared.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        None
    } else {
        Some(format!("content_type {declared:?} is not application/json"))
    }
}

/// How often the quorum queue delivered this message before (`x-delivery-count`, absent
/// on a first delivery).
pub fn previous_deliveries(properties: &BasicProperties) -> u64 {
    let count = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count"));
    match count {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortShortUInt(n)) => u64::from(*n),
        _ => 0,
    }
}

/// On its last allowed delivery, a message that would go back to the queue is
/// dead-lettered by the worker instead, so that it reaches the dead-letter queue with an
/// `x-archiver-reason` (the broker's own delivery limit, one delivery later, remains the
/// safety net for a worker that dies on every attempt).
pub fn give_up_when_exhausted(settlement: Settlement, attempt: u64, delivery_limit: u32) -> Settlement {
    match settlement {
        Settlement::Retry { reason, result } if attempt >= u64::from(delivery_limit) => {
            let reason = format!("still failing after {attempt} deliveries: {reason}");
            Settlement::DeadLetter {
                result: ResultEvent {
                    reason: Some(reason.clone()),
                    ..result
                },
                reason,
            }
        }
        other => other,
    }
}

/// Copies the original message, body and properties, to the dead-letter exchange with the
/// reason in a header; the broker must confirm it reached the dead-letter queue.
///
/// The worker publishes the copy itself rather than rejecting the message into the
/// queue's dead-letter exchange, because a broker-side dead-letter cannot carry
/// `x-archiver-reason`.
async fn dead_letter<H>(context: &Context<H>, delivery: &Delivery, reason: &str) -> bool {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(LongString::from(reason)));
    let properties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
    let exchange = context.topology.dead_letter_exchange();
    let message = Message {
        exchange: &exchange,
        routing_key: &context.topology.queue,
        body: &delivery.data,
        properties,
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

/// Publishes the result event. Its `correlation_id` is the event's `message_id`, when the
/// producer set one, so that a producer can match results even to events it sent broken.
async fn publish_result<H>(context: &Context<H>, delivery: &Delivery, result: &ResultEvent, outcome: &str) -> bool {
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

/// Returns the event to the queue (or leaves it to the broker when the channel is gone).
async fn requeue(delivery: &Delivery) -> EventOutcome {
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(err) = bounded("return the event to the queue", delivery.acker.nack(options)).await {
        tracing::warn!(error = %err, "could not return the event; the broker will redeliver it");
    }
    EventOutcome::Requeued
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
    fn retries_end_at_the_delivery_limit() {
        let retry = || Settlement::Retry {
            reason: "source image: 503".into(),
            result: ResultEvent::default(),
        };
        assert_eq!(give_up_when_exhausted(retry(), 1, 3), retry());
        assert_eq!(give_up_when_exhausted(retry(), 2, 3), retry());
        match give_up_when_exhausted(retry(), 3, 3) {
            Settlement::DeadLetter { reason, .. } => {
                assert_eq!(reason, "still failing after 3 deliveries: source image: 503")
            }
            other => panic!("expected a dead-letter, got {other:?}"),
        }
        let done = Settlement::Done {
            result: ResultEvent::default(),
        };
        assert_eq!(give_up_when_exhausted(done.clone(), 9, 3), done);
    }

    #[test]
    fn delivery_count_header() {
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(4));
        assert_eq!(
            previous_deliveries(&BasicProperties::default().with_headers(headers)),
            4
        );
        assert_eq!(previous_deliveries(&BasicProperties::default()), 0);
    }
}
