//! Settling one delivery: ask the handler what became of it, make that durable on the
//! broker (result event, dead-letter copy), and only then acknowledge.
//!
//! How a message goes back is chosen for RabbitMQ 4.3's rules and is also correct before
//! them: `basic.reject` with requeue for an event whose own media failed (4.3 counts it
//! toward the delivery limit, as earlier versions count every return), `basic.nack` with
//! requeue only where the event is not at fault (a store outage, a lost channel), which
//! 4.3 does not count.

use std::sync::Arc;
use std::time::Duration;

use archive::{Cause, Disposition, Failure};
use futures::FutureExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use tokio::time::Instant;

use super::outage::{backoff, Gate, Waited};
use super::outbox::{self, Outbox, PendingResult};
use super::{Handled, Handler, Incoming, ResultEvent, Topology};
use crate::broker::{bounded, dead_letter_copy, BrokerError, Message, Publisher};
use crate::metrics::{EventMetrics, EventOutcome};
use archive::CancellationToken;

/// How long one delivery may stay with this process, held through outages included: well
/// below RabbitMQ's consumer timeout (30 minutes), past which the broker closes the channel
/// and returns every unacknowledged event of it.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// How long a run told to stop (deadline, shutdown) has to abort what it began.
pub const WIND_DOWN: Duration = Duration::from_secs(3);

/// What every delivery task shares.
pub struct Context<H> {
    pub handler: Arc<H>,
    pub publisher: Arc<Publisher>,
    pub topology: Topology,
    pub gate: Gate,
    pub outbox: Outbox,
    /// SIGTERM: an event not started yet is returned at once.
    pub shutdown: CancellationToken,
    /// Test builds only: the session id whose handler panics (`ARCHIVER_TEST_PANIC_SESSION_ID`).
    pub panic_on_session: Option<String>,
}

/// How a handler run ended.
enum Ran {
    Handled(Handled),
    /// The handler panicked (a bug): the event goes back, counted toward its limit.
    Panicked,
}

/// Handles one delivery to the end. Every path either settles the message or leaves it
/// unacknowledged, which the broker redelivers: nothing here can lose it. Once `lost`
/// fires (the delivery's channel is gone, or shutdown's last moment came), nothing more
/// is published.
pub async fn settle<H: Handler>(delivery: Delivery, context: &Context<H>, lost: &CancellationToken) {
    let deadline = Instant::now() + EVENT_DEADLINE;
    let Some(handled) = handle_holding_through_outages(&delivery, context, lost, deadline).await else {
        return;
    };
    let Handled {
        disposition,
        result,
        metrics,
    } = handled;
    let attempt = previous_deliveries(&delivery.properties) + 1;
    let disposition = give_up_when_exhausted(disposition, attempt, context.topology.delivery_limit);
    if lost.is_cancelled() {
        tracing::warn!("the delivery was lost while it was handled; the broker redelivers the event");
        metrics.finish(EventOutcome::Requeued);
        return;
    }
    let durable = match &disposition {
        Disposition::Done | Disposition::Erased => {
            publish_result(context, &delivery, &result, &disposition).await && ack(&delivery).await
        }
        Disposition::DeadLetter(failure) => {
            let result = ResultEvent {
                reason: Some(failure.reason.clone()),
                ..result.clone()
            };
            dead_letter(context, &delivery, failure, lost, deadline).await
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
        (Disposition::Erased, true) => tracing::info!(outcome = "erased", "event settled; the session was erased"),
        (Disposition::Retry(_), _) => {}
        // Not made durable: the broker redelivers it (the archive is idempotent).
        (_, false) if !lost.is_cancelled() => give_back(&delivery, false).await,
        (_, false) => {}
    }
    metrics.finish(outcome);
}

/// Runs the handler once the [`Gate`] is open, and again after every store outage it met,
/// until it decides, or the delivery must go back (shutdown, its deadline) or was lost.
/// `None`: the delivery was returned or lost, nothing more to do.
async fn handle_holding_through_outages<H: Handler>(
    delivery: &Delivery,
    context: &Context<H>,
    lost: &CancellationToken,
    deadline: Instant,
) -> Option<Handled> {
    if let Some(handled) = refused_unread(delivery) {
        return Some(handled);
    }
    let mut held = false;
    loop {
        match context.gate.wait_open(&context.shutdown, lost, deadline).await {
            Waited::Open => {}
            Waited::Lost => return None,
            Waited::Shutdown => {
                // Not started (or held): back to the queue at once, not its fault.
                tracing::info!(held, "shutting down: returning an event not started");
                give_back(delivery, false).await;
                return None;
            }
            Waited::Deadline => {
                tracing::warn!(
                    deadline_secs = EVENT_DEADLINE.as_secs(),
                    "held through an outage until the event's deadline; returning it to the queue"
                );
                give_back(delivery, false).await;
                return None;
            }
        }
        let handled = match run_handler(delivery, context, lost, deadline).await {
            Some(Ran::Handled(handled)) => handled,
            Some(Ran::Panicked) => {
                // The delivery is released instead of holding a prefetch slot until the
                // consumer timeout; a bug that panics on every delivery ends at the limit.
                give_back(delivery, true).await;
                return None;
            }
            None => {
                tracing::warn!(
                    deadline_secs = EVENT_DEADLINE.as_secs(),
                    "the event ran past its deadline; returning it to the queue"
                );
                if !lost.is_cancelled() {
                    give_back(delivery, true).await;
                }
                return None;
            }
        };
        match &handled.disposition {
            Disposition::Retry(failure) if failure.cause.is_store_outage() && !lost.is_cancelled() => {
                // Not the event's fault: held unacknowledged, not returned (before 4.3
                // every return spends a delivery), and run again when the store answers.
                tracing::warn!(reason = %failure.reason, cause = %failure.cause, "the store is out; holding the event until it answers");
                context.gate.store_down();
                held = true;
                handled.metrics.finish(EventOutcome::Held);
            }
            _ => return Some(handled),
        }
    }
}

/// What is refused before the handler reads a byte of the body: a body over the event
/// cap (it is not parsed at all) and a declared content type that is not JSON.
fn refused_unread(delivery: &Delivery) -> Option<Handled> {
    let reason = if delivery.data.len() > archive::MAX_EVENT_BYTES {
        format!(
            "invalid event: event is {} bytes, more than the limit of {} bytes",
            delivery.data.len(),
            archive::MAX_EVENT_BYTES
        )
    } else {
        let reason = content_type_problem(&delivery.properties)?;
        return Some(Handled {
            result: ResultEvent::unparsed(&delivery.data, &reason),
            disposition: Disposition::DeadLetter(Failure::new(Cause::InvalidEvent, reason)),
            metrics: EventMetrics::for_unparsed(),
        });
    };
    Some(Handled {
        result: ResultEvent {
            reason: Some(reason.clone()),
            ..ResultEvent::default()
        },
        disposition: Disposition::DeadLetter(Failure::new(Cause::InvalidEvent, reason)),
        metrics: EventMetrics::for_unparsed(),
    })
}

/// One run of the handler, with a panic caught and the event's deadline enforced. At the
/// deadline the run is told to stop (its own cancellation token: no new attempt, a
/// multipart upload under way is aborted) and given [`WIND_DOWN`] before it is dropped.
/// `None`: the deadline passed.
async fn run_handler<H: Handler>(
    delivery: &Delivery,
    context: &Context<H>,
    lost: &CancellationToken,
    deadline: Instant,
) -> Option<Ran> {
    let cancel = lost.child_token();
    let incoming = Incoming {
        body: &delivery.data,
        amqp_timestamp: *delivery.properties.timestamp(),
        lost: &cancel,
    };
    let run = async {
        test_panic_hook(context.panic_on_session.as_deref(), &delivery.data);
        context.handler.handle(incoming).await
    };
    let mut caught = std::pin::pin!(std::panic::AssertUnwindSafe(run).catch_unwind());
    let ended = match tokio::time::timeout_at(deadline, &mut caught).await {
        Ok(ended) => ended,
        Err(_) => {
            cancel.cancel();
            let _ = tokio::time::timeout(WIND_DOWN, &mut caught).await;
            return None;
        }
    };
    match ended {
        Ok(handled) => Some(Ran::Handled(handled)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %message, "the event's handler panicked; returning the event to the queue");
            Some(Ran::Panicked)
        }
    }
}

/// Test builds only (`debug_assertions`; release builds, such as the container image's,
/// compile nothing here): panics when the body names the configured session id, so that
/// the integration tests can see a panicking handler release its delivery.
fn test_panic_hook(session_id: Option<&str>, body: &[u8]) {
    #[cfg(debug_assertions)]
    if let Some(session_id) = session_id {
        let needle = session_id.as_bytes();
        if !needle.is_empty() && body.windows(needle.len()).any(|window| window == needle) {
            panic!("test hook: ARCHIVER_TEST_PANIC_SESSION_ID names this event's session");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (session_id, body);
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
/// must confirm it reached the dead-letter queue. While it does not, the event is held
/// (the publisher's outage is not its fault) and the copy retried, until its deadline.
async fn dead_letter<H>(
    context: &Context<H>,
    delivery: &Delivery,
    failure: &Failure,
    lost: &CancellationToken,
    deadline: Instant,
) -> bool {
    let exchange = context.topology.dead_letter_exchange();
    let mut delays = backoff();
    loop {
        let message = Message {
            exchange: &exchange,
            routing_key: &context.topology.queue,
            body: &delivery.data,
            properties: dead_letter_copy(&delivery.properties, &failure.reason, failure.cause),
            mandatory: true,
        };
        let err = match context
            .publisher
            .publish("copy the event to the dead-letter queue", message)
            .await
        {
            Ok(()) => {
                context.gate.publisher(true);
                return true;
            }
            Err(err) => err,
        };
        context.gate.publisher(false);
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        if Instant::now() + delay >= deadline || lost.is_cancelled() || context.shutdown.is_cancelled() {
            tracing::error!(error = %err, "event returned to the queue: its dead-letter copy was not confirmed");
            return false;
        }
        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "dead-letter copy not confirmed; holding the event and trying again");
        tokio::select! {
            _ = lost.cancelled() => return false,
            _ = context.shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Publishes the result event (`mandatory`), routed by the disposition's outcome word;
/// its `correlation_id` is the event's `message_id`, when the producer set one. Whether
/// the event may be acknowledged: yes once confirmed, once counted as unroutable, or once
/// left to the outbox when the broker did not confirm it at once.
async fn publish_result<H>(
    context: &Context<H>,
    delivery: &Delivery,
    result: &ResultEvent,
    disposition: &Disposition,
) -> bool {
    let Some(outcome) = disposition.outcome() else {
        return false;
    };
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(FieldTable::default());
    if let Some(message_id) = delivery.properties.message_id() {
        properties = properties.with_correlation_id(message_id.clone());
    }
    let pending = PendingResult {
        routing_key: outcome,
        body: result.body(outcome),
        properties,
        session_id: result.session_id.clone(),
    };
    match outbox::publish(&context.publisher, &pending).await {
        Ok(()) => {
            context.gate.publisher(true);
            true
        }
        Err(BrokerError::Unroutable { .. }) => {
            context.gate.publisher(true);
            outbox::unroutable(outcome, pending.session_id.as_deref());
            true
        }
        Err(err) => {
            context.gate.publisher(false);
            if context.outbox.offer(pending) {
                tracing::warn!(error = %err, "result event not confirmed; the event is acknowledged and its result retried from the outbox");
                true
            } else {
                tracing::error!(error = %err, "event returned to the queue: its result event was not confirmed and the outbox is full");
                false
            }
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
