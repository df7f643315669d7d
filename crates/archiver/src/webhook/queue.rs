//! The webhook's side of the broker: report events published persistent and `mandatory`
//! with a confirm awaited at most [`CONFIRM_TIMEOUT`], invalid deliveries dead-lettered
//! with their reason, and a probe that keeps `/readyz` told whether confirms work.

use std::time::Duration;

use archive::Cause;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

use crate::broker::{dead_letter_copy, BrokerError, Message, Publisher, Topology};
use crate::metrics::Readiness;

/// The longest the webhook waits for the broker before answering 503 (the vendor retries).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// A routing key no queue is bound to: the probe's publish is confirmed and dropped.
const PROBE_ROUTING_KEY: &str = "archiver.webhook.readiness-probe";

/// Header naming the tenant of the webhook a dead-letter copy came from.
const TENANT_HEADER: &str = "x-archiver-tenant";

/// Why a publish was not confirmed (answered 503).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("no confirm from the broker within {}s", CONFIRM_TIMEOUT.as_secs())]
    NoConfirm,
}

/// Publishing for the webhook, on its own confirmed channel (reopened after any failure).
pub struct Queue {
    publisher: Publisher,
    topology: Topology,
    readiness: Readiness,
}

impl Queue {
    pub fn new(publisher: Publisher, topology: Topology, readiness: Readiness) -> Queue {
        Queue {
            publisher,
            topology,
            readiness,
        }
    }

    /// Publishes a report event to `ARCHIVER_QUEUE` and waits for the confirm.
    pub async fn publish_event(&self, message_id: &str, event: &[u8]) -> Result<(), Unavailable> {
        let message = Message {
            exchange: "",
            routing_key: &self.topology.queue,
            body: event,
            properties: properties(message_id),
            mandatory: true,
        };
        self.confirmed("publish the webhook's event", message).await
    }

    /// Puts a signed delivery that breaks the contract into the dead-letter queue, as it
    /// came, with the reason (the vendor does not retry a 4xx: the decision must not be lost).
    pub async fn dead_letter(
        &self,
        tenant: &str,
        message_id: &str,
        body: &[u8],
        reason: &str,
    ) -> Result<(), Unavailable> {
        let mut headers = FieldTable::default();
        headers.insert(TENANT_HEADER.into(), AMQPValue::LongString(LongString::from(tenant)));
        let original = properties(message_id).with_headers(headers);
        let exchange = self.topology.dead_letter_exchange();
        let message = Message {
            exchange: &exchange,
            routing_key: &self.topology.queue,
            body,
            properties: dead_letter_copy(&original, reason, Cause::InvalidEvent),
            mandatory: true,
        };
        self.confirmed("dead-letter the webhook's delivery", message).await
    }

    /// Whether the broker confirms a publish now; `/readyz` follows the answer.
    pub async fn probe(&self) -> bool {
        let message = Message {
            exchange: "",
            routing_key: PROBE_ROUTING_KEY,
            body: b"",
            properties: BasicProperties::default(),
            mandatory: false,
        };
        match self.confirmed("probe publisher confirms", message).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "the broker does not confirm publishes");
                false
            }
        }
    }

    async fn confirmed(&self, action: &'static str, message: Message<'_>) -> Result<(), Unavailable> {
        let result = match tokio::time::timeout(CONFIRM_TIMEOUT, self.publisher.publish(action, message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(Unavailable::Broker(err)),
            Err(_) => Err(Unavailable::NoConfirm),
        };
        // An unroutable message says nothing about the broker's health.
        let healthy = matches!(
            result,
            Ok(()) | Err(Unavailable::Broker(BrokerError::Unroutable { .. }))
        );
        self.readiness.set_broker(healthy);
        result
    }

    pub async fn close(&self) {
        self.publisher.close().await;
    }
}

/// A persistent JSON message with the delivery's id, stamped now.
fn properties(message_id: &str) -> BasicProperties {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_app_id("archiver-webhook".into())
        .with_timestamp(now)
}
