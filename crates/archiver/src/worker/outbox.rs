//! A small in-process outbox for result events the broker did not confirm at once.
//!
//! A result event is a notification; the evidence is the manifest, already durable when
//! the result is published. So an event whose result cannot be confirmed (the publisher
//! blocked by a resource alarm, a broker that does not answer) is acknowledged anyway, and
//! its result is retried from here instead of archiving the event again. While a result
//! waits, the [`Gate`] stays closed, so the outbox holds at most about one result per
//! event in flight; it is bounded all the same. Results still waiting when the process
//! stops are logged with their session, never silently dropped.

use std::sync::Arc;
use std::time::Duration;

use lapin::BasicProperties;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::outage::{backoff, Gate};
use crate::broker::{BrokerError, Message, Publisher, RESULTS_EXCHANGE};

/// Results waiting at most; past it an event is returned to the queue instead.
const CAPACITY: usize = 256;
/// How long the outbox keeps trying after shutdown before it gives up.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_secs(3);

/// One result event to publish.
pub struct PendingResult {
    pub routing_key: &'static str,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// For the log, should it never be published.
    pub session_id: Option<String>,
}

/// Where results wait; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::Sender<PendingResult>,
}

impl Outbox {
    /// Starts the task that publishes what waits, until `shutdown` (plus a short flush).
    pub fn start(
        publisher: Arc<Publisher>,
        gate: Gate,
        shutdown: CancellationToken,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let (queue, waiting) = mpsc::channel(CAPACITY);
        let task = tokio::spawn(run(waiting, publisher, gate, shutdown));
        (Outbox { queue }, task)
    }

    /// Leaves a result to be published later; `false` when the outbox is full (or stopped).
    pub fn offer(&self, result: PendingResult) -> bool {
        self.queue.try_send(result).is_ok()
    }
}

async fn run(
    mut waiting: mpsc::Receiver<PendingResult>,
    publisher: Arc<Publisher>,
    gate: Gate,
    shutdown: CancellationToken,
) {
    let mut stop_at = None;
    loop {
        let next = tokio::select! {
            next = waiting.recv() => next,
            _ = shutdown.cancelled(), if stop_at.is_none() => {
                stop_at = Some(tokio::time::Instant::now() + FLUSH_ON_SHUTDOWN);
                waiting.close();
                continue;
            }
        };
        let Some(result) = next else { return };
        let mut delays = backoff();
        loop {
            if stop_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                tracing::error!(
                    session_id = result.session_id.as_deref(),
                    outcome = result.routing_key,
                    "shutting down with a result event never confirmed by the broker"
                );
                break;
            }
            match publish(&publisher, &result).await {
                Ok(()) => {
                    gate.publisher(true);
                    break;
                }
                Err(BrokerError::Unroutable { .. }) => {
                    gate.publisher(true);
                    unroutable(result.routing_key, result.session_id.as_deref());
                    break;
                }
                Err(err) => {
                    gate.publisher(false);
                    let delay = delays.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "result event not confirmed yet");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        if waiting.is_empty() && stop_at.is_none() {
            // Nothing waits any more: publishing is not what holds the gate.
            gate.publisher(true);
        }
    }
}

pub async fn publish(publisher: &Publisher, result: &PendingResult) -> Result<(), BrokerError> {
    let message = Message {
        exchange: RESULTS_EXCHANGE,
        routing_key: result.routing_key,
        body: &result.body,
        properties: result.properties.clone(),
        mandatory: true,
    };
    publisher.publish("publish the result event", message).await
}

/// A result that no queue bound to `archiver.results` took: counted and logged (a
/// consumer of results that is not set up yet loses it, which its operator must know).
pub fn unroutable(outcome: &'static str, session_id: Option<&str>) {
    crate::metrics::result_unroutable();
    tracing::warn!(
        session_id,
        outcome,
        exchange = RESULTS_EXCHANGE,
        "no queue took the result event (nothing is bound to the results exchange for it)"
    );
}
