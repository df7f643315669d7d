//! The broker topology of docs/contract.md section 4, declared idempotently by `archiver worker`
//! and `archiver topology`.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use super::version::BrokerVersion;
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
    pub async fn declare(&self, connection: &Connection) -> Result<DeadLetterQueue, BrokerError> {
        self.declare_for(connection, super::version::last_seen()).await
    }

    /// [`declare`](Self::declare) for a broker of `version` (`None`: unknown), on channels
    /// of its own; says which dead-letter queue it found or made.
    pub async fn declare_for(
        &self,
        connection: &Connection,
        version: Option<BrokerVersion>,
    ) -> Result<DeadLetterQueue, BrokerError> {
        let channel = bounded("open a channel", connection.create_channel()).await?;
        let declared = self.declare_on(connection, &channel, version).await;
        if channel.status().connected() {
            let _ = bounded("close a channel", channel.close(200, "declared".into())).await;
        }
        declared
    }

    async fn declare_on(
        &self,
        connection: &Connection,
        channel: &Channel,
        version: Option<BrokerVersion>,
    ) -> Result<DeadLetterQueue, BrokerError> {
        let dlx = self.dead_letter_exchange();
        let dlq = self.dead_letter_queue();
        bounded(
            "declare the dead-letter exchange",
            channel.exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange(),
                FieldTable::default(),
            ),
        )
        .await?;
        let shape = DeadLetterShape::for_version(version);
        if shape == DeadLetterShape::Parking {
            self.declare_parking(channel).await?;
        }
        let found = self.declare_dead_letter_queue(connection, channel, shape).await?;
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
            channel.queue_declare(self.queue.as_str().into(), durable_queue(), self.queue_arguments()),
        )
        .await
        .map_err(|err| err.explain_inequivalent(&self.queue))?;
        bounded(
            "declare the results exchange",
            channel.exchange_declare(
                RESULTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable_exchange(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(found)
    }

    /// The dead-letter queue keeps what it holds (docs/contract.md section 4). One that
    /// exists is never declared anew with other arguments: it is looked up passively, and
    /// compared with what this version would declare on a channel of its own (a refused
    /// comparison closes only that channel and changes nothing). When it differs, the log
    /// names the operator step of docs/operations.md and the worker keeps running.
    async fn declare_dead_letter_queue(
        &self,
        connection: &Connection,
        channel: &Channel,
        shape: DeadLetterShape,
    ) -> Result<DeadLetterQueue, BrokerError> {
        let dlq = self.dead_letter_queue();
        let arguments = self.dead_letter_arguments(shape);
        let scratch = bounded("open a channel", connection.create_channel()).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let exists = bounded(
            "look up the dead-letter queue",
            scratch.queue_declare(dlq.as_str().into(), passive, FieldTable::default()),
        )
        .await;
        match exists {
            Err(err) if err.reply_code() == Some(404) => {
                bounded(
                    "declare the dead-letter queue",
                    channel.queue_declare(dlq.as_str().into(), durable_queue(), arguments),
                )
                .await?;
                return Ok(DeadLetterQueue::Declared(shape));
            }
            Err(err) => return Err(err),
            Ok(_) => {}
        }
        let scratch = if scratch.status().connected() {
            scratch
        } else {
            bounded("open a channel", connection.create_channel()).await?
        };
        let same = bounded(
            "compare the dead-letter queue",
            scratch.queue_declare(dlq.as_str().into(), durable_queue(), arguments),
        )
        .await;
        if scratch.status().connected() {
            let _ = bounded("close a channel", scratch.close(200, "compared".into())).await;
        }
        match same {
            Ok(_) => Ok(DeadLetterQueue::Declared(shape)),
            Err(err) if err.reply_code() == Some(406) => {
                tracing::warn!(
                    dead_letter_queue = %dlq,
                    broker_error = %err,
                    operator_step = %shape.operator_step(&dlq),
                    "the dead-letter queue exists with other arguments (declared by an earlier version); it is kept as it is. \
                     Until the operator step is applied, a delivery limit may still apply to it (see docs/operations.md, \
                     \"The dead-letter queue\")"
                );
                Ok(DeadLetterQueue::KeptAsItWas)
            }
            Err(err) => Err(err),
        }
    }

    /// Where a dead-letter queue of the parking shape moves what its delivery limit would
    /// drop: a fanout exchange and a classic queue (a classic queue has no delivery limit
    /// on any version), both `{queue}.parking`.
    async fn declare_parking(&self, channel: &Channel) -> Result<(), BrokerError> {
        let parking = self.parking();
        bounded(
            "declare the parking exchange",
            channel.exchange_declare(
                parking.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange(),
                FieldTable::default(),
            ),
        )
        .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), text("classic"));
        bounded(
            "declare the parking queue",
            channel.queue_declare(parking.as_str().into(), durable_queue(), arguments),
        )
        .await
        .map_err(|err| err.explain_inequivalent(&parking))?;
        bounded(
            "bind the parking queue",
            channel.queue_bind(
                parking.as_str().into(),
                parking.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(())
    }

    /// The parking exchange and queue, `{queue}.parking`.
    pub fn parking(&self) -> String {
        format!("{}.parking", self.queue)
    }

    /// The dead-letter queue's arguments. It is a quorum queue like the main one: what
    /// lands there is evidence still to be archived, so it gets the same replication.
    fn dead_letter_arguments(&self, shape: DeadLetterShape) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), text("quorum"));
        match shape {
            DeadLetterShape::Unlimited => {
                arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(-1));
            }
            DeadLetterShape::Parking => {
                arguments.insert("x-dead-letter-exchange".into(), text(&self.parking()));
                arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
                arguments.insert("x-overflow".into(), text("reject-publish"));
            }
        }
        arguments
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

/// How the dead-letter queue is kept from dropping what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterShape {
    /// RabbitMQ 4.0 and later: `x-delivery-limit: -1`, no limit at all.
    Unlimited,
    /// RabbitMQ 3.x, or a version that could not be read: no `x-delivery-limit` (3.x has
    /// no default one; 4.x's default of 20 would apply) and a dead-letter route to the
    /// parking queue, so a message past any limit moves there instead of being dropped.
    Parking,
}

impl DeadLetterShape {
    /// The shape that keeps everything on a broker of `version`.
    pub fn for_version(version: Option<BrokerVersion>) -> DeadLetterShape {
        match version {
            Some(version) if version.negative_delivery_limit_is_unlimited() => DeadLetterShape::Unlimited,
            _ => DeadLetterShape::Parking,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterShape::Unlimited => "unlimited",
            DeadLetterShape::Parking => "parking",
        }
    }

    /// The operator step that gives an existing dead-letter queue this shape's guarantee
    /// without deleting it (docs/operations.md).
    pub fn operator_step(self, dlq: &str) -> String {
        let pattern = format!("^{}$", dlq.replace('.', "\\."));
        match self {
            DeadLetterShape::Unlimited => format!(
                "rabbitmqctl set_policy --apply-to quorum_queues archiver-dlq '{pattern}' '{{\"delivery-limit\": -1}}'"
            ),
            DeadLetterShape::Parking => format!(
                "rabbitmqctl set_policy --apply-to quorum_queues archiver-dlq '{pattern}' '{{\"dead-letter-exchange\": \"{}.parking\"}}'",
                dlq.trim_end_matches(".dlq")
            ),
        }
    }
}

/// What [`Topology::declare_for`] found or made of the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterQueue {
    /// Declared (or already there) with this shape's arguments.
    Declared(DeadLetterShape),
    /// It existed with other arguments and was kept; the log names the operator step.
    KeptAsItWas,
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_queue_shape_follows_the_broker_version() {
        let cases = [
            (Some("4.0.5"), DeadLetterShape::Unlimited),
            (Some("4.3.0"), DeadLetterShape::Unlimited),
            (Some("3.13.7"), DeadLetterShape::Parking),
            (Some("3.10.8"), DeadLetterShape::Parking),
            (None, DeadLetterShape::Parking),
        ];
        let topology = Topology {
            queue: "face-reports".to_owned(),
            delivery_limit: 5,
        };
        for (version, shape) in cases {
            let version = version.and_then(BrokerVersion::parse);
            assert_eq!(DeadLetterShape::for_version(version), shape, "{version:?}");
            let arguments = topology.dead_letter_arguments(shape);
            let limit = arguments.inner().get("x-delivery-limit");
            match shape {
                // -1 means unlimited only from 4.0; on 3.x it would drop after one delivery.
                DeadLetterShape::Unlimited => assert_eq!(limit, Some(&AMQPValue::LongLongInt(-1))),
                DeadLetterShape::Parking => {
                    assert_eq!(limit, None);
                    assert_eq!(
                        arguments.inner().get("x-dead-letter-exchange"),
                        Some(&text("face-reports.parking"))
                    );
                }
            }
        }
        assert_eq!(
            DeadLetterShape::Unlimited.operator_step("face-reports.dlq"),
            r#"rabbitmqctl set_policy --apply-to quorum_queues archiver-dlq '^face-reports\.dlq$' '{"delivery-limit": -1}'"#
        );
    }
}
