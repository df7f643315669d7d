//! A RabbitMQ client for tests: publish report events, look at queues (message counts,
//! dead-lettered messages and their headers), clean up. Every broker call has a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use super::stack::Stack;

/// How long one broker call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

async fn bounded<T>(what: &str, call: impl Future<Output = lapin::Result<T>>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("amqp {what}: {error}"),
        Err(_) => panic!("amqp {what}: no answer within {CALL_TIMEOUT:?}"),
    }
}

/// One connection and channel to the stack's broker.
pub struct Amqp {
    connection: Connection,
    channel: Channel,
}

impl Amqp {
    pub async fn connect() -> Amqp {
        Amqp::connect_to(Stack::load().amqp_url()).await
    }

    /// Connects to another broker than the stack's (a test's private node).
    pub async fn connect_to(url: &str) -> Amqp {
        let connection = bounded("connect", Connection::connect(url, ConnectionProperties::default())).await;
        let channel = bounded("open channel", connection.create_channel()).await;
        bounded("confirm select", channel.confirm_select(Default::default())).await;
        Amqp { connection, channel }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `body` to `exchange` (`""`: the default exchange, routing to the queue
    /// named `routing_key`) and waits for the broker's confirm.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8], properties: BasicProperties) {
        let confirm = bounded(
            "publish",
            self.channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            ),
        )
        .await;
        let confirmation = bounded("publisher confirm", confirm).await;
        assert!(
            confirmation.is_ack(),
            "broker did not confirm the publish to {routing_key}: {confirmation:?}"
        );
    }

    /// Publishes a JSON report event to `queue` through the default exchange, persistent.
    pub async fn publish_event(&self, queue: &str, body: &[u8]) {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        self.publish("", queue, body, properties).await;
    }

    /// Declares a durable queue for a test to collect messages in (e.g. bound to
    /// `archiver.results`), and deletes it when the test calls `delete_queue`.
    pub async fn declare_queue(&self, queue: &str, arguments: FieldTable) {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        bounded(
            "queue declare",
            self.channel.queue_declare(queue.into(), options, arguments),
        )
        .await;
    }

    /// Binds `queue` to `exchange` with `routing_key`.
    pub async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) {
        bounded(
            "queue bind",
            self.channel.queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                Default::default(),
                FieldTable::default(),
            ),
        )
        .await;
    }

    /// Messages ready in `queue`, or `None` if it does not exist (on a channel of its own,
    /// because a failed passive declare closes the channel).
    pub async fn message_count(&self, queue: &str) -> Option<u32> {
        let channel = bounded("open channel", self.connection.create_channel()).await;
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = tokio::time::timeout(
            CALL_TIMEOUT,
            channel.queue_declare(queue.into(), options, FieldTable::default()),
        )
        .await
        .expect("passive queue declare timed out");
        let count = declared.ok().map(|queue| queue.message_count());
        let _ = channel.close(200, "done".into()).await;
        count
    }

    /// Takes one message from `queue` (acknowledged), polling until `timeout`.
    pub async fn get(&self, queue: &str, timeout: Duration) -> Option<lapin::message::BasicGetMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let message = bounded(
                "basic.get",
                self.channel.basic_get(queue.into(), BasicGetOptions::default()),
            )
            .await;
            if let Some(message) = message {
                bounded("ack", message.delivery.acker.ack(BasicAckOptions::default())).await;
                return Some(message);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes a queue if it exists.
    pub async fn delete_queue(&self, queue: &str) {
        let channel = bounded("open channel", self.connection.create_channel()).await;
        let _ = tokio::time::timeout(
            CALL_TIMEOUT,
            channel.queue_delete(queue.into(), QueueDeleteOptions::default()),
        )
        .await;
        let _ = channel.close(200, "done".into()).await;
    }
}
