//! The broker topology of docs/contract.md section 4, declared idempotently by `archiver worker`
//! and `archiver topology`.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::{bounded, BrokerError};

/// The durable topic exchange that result events go to.
pub const RESULTS_EXCHANGE: &str = "archiver.results";

/// The names and arguments that make up one worker queue's topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The quorum queue of report events (`ARCHIVER_QUEUE`).
    pub queue: String,
    /// Deliveries of one message before the queue dead-letters it (`x-delivery-limit`).
    pub delivery_limit: u32,
}

impl Topology {
    /// The dead-letter exchange, `{queue}.dlx`.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.queue)
    }

    /// The dead-letter queue, `{queue}.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    /// Declares every exchange, queue and binding. Declaring what already exists with the
    /// same arguments is a no-op, so every worker process does it on every (re)connect.
    ///
    /// The dead-letter exchange is a fanout: the broker dead-letters a message with its
    /// original routing key, which depends on how the producer published it, and every
    /// such message must still reach the dead-letter queue.
    pub async fn declare(&self, channel: &Channel) -> Result<(), BrokerError> {
        let dlx = self.dead_letter_exchange();
        let dlq = self.dead_letter_queue();
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };

        bounded(
            "declare the dead-letter exchange",
            channel.exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            ),
        )
        .await?;
        // The dead-letter queue is a quorum queue too: what lands there is evidence that
        // still has to be archived, so it gets the same replication as the main queue.
        let mut dlq_arguments = FieldTable::default();
        dlq_arguments.insert("x-queue-type".into(), text("quorum"));
        bounded(
            "declare the dead-letter queue",
            channel.queue_declare(dlq.as_str().into(), durable_queue, dlq_arguments),
        )
        .await
        .map_err(|err| err.explain_inequivalent(&dlq))?;
        bounded(
            "bind the dead-letter queue",
            channel.queue_bind(
                dlq.as_str().into(),
                dlx.as_str().into(),
                self.queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        bounded(
            "declare the queue",
            channel.queue_declare(self.queue.as_str().into(), durable_queue, self.queue_arguments()),
        )
        .await
        .map_err(|err| err.explain_inequivalent(&self.queue))?;
        bounded(
            "declare the results exchange",
            channel.exchange_declare(
                RESULTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable_exchange,
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(())
    }

    /// The main queue's arguments. At-least-once dead-lettering keeps a message in the
    /// queue until the dead-letter queue has confirmed it (the default, at-most-once,
    /// can drop it); RabbitMQ only honours it together with `reject-publish` overflow.
    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), text("quorum"));
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        arguments.insert("x-dead-letter-exchange".into(), text(&self.dead_letter_exchange()));
        arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        arguments.insert("x-overflow".into(), text("reject-publish"));
        arguments
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
