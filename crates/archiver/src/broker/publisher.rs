//! Publishing with publisher confirms, on a connection of its own.
//!
//! The publisher never shares the consumer's connection: under a resource alarm RabbitMQ
//! stops reading from connections that publish, and a consumer blocked that way could
//! not acknowledge anything either. A publish counts as done only when the broker has
//! confirmed it; anything else is an error and the caller leaves the message unsettled.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use super::{bounded, connect, BrokerError, BrokerTls};

/// A confirmed-publish channel, (re)opened on first use after any failure.
pub struct Publisher {
    amqp_url: String,
    tls: BrokerTls,
    open: Mutex<Option<(Connection, Channel)>>,
}

/// One message to publish.
pub struct Message<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
    /// Ask the broker to report a message that no queue receives, instead of dropping it.
    pub mandatory: bool,
}

impl Publisher {
    pub fn new(amqp_url: &str, tls: &BrokerTls) -> Self {
        Publisher {
            amqp_url: amqp_url.to_owned(),
            tls: tls.clone(),
            open: Mutex::new(None),
        }
    }

    /// Publishes and waits for the broker's confirm.
    pub async fn publish(&self, action: &'static str, message: Message<'_>) -> Result<(), BrokerError> {
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: message.mandatory,
            ..BasicPublishOptions::default()
        };
        let confirm = bounded(action, async {
            channel
                .basic_publish(
                    message.exchange.into(),
                    message.routing_key.into(),
                    options,
                    message.body,
                    message.properties,
                )
                .await?
                .await
        })
        .await;
        match confirm {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_returned))) => Err(BrokerError::Unroutable { action }),
            // `NotRequested` cannot happen on a channel in confirm mode; unconfirmed is not done.
            Ok(Confirmation::Nack(_) | Confirmation::NotRequested) => Err(BrokerError::Refused { action }),
            Err(err) => {
                // The channel may be broken or stalled: open a fresh one next time.
                self.open.lock().await.take();
                Err(err)
            }
        }
    }

    async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut open = self.open.lock().await;
        if let Some((connection, channel)) = open.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        open.take();
        let connection = connect(&self.amqp_url, &self.tls, "publisher").await?;
        let channel = bounded("open a publishing channel", connection.create_channel()).await?;
        bounded(
            "enable publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Closes the connection politely, if one is open.
    pub async fn close(&self) {
        if let Some((connection, _)) = self.open.lock().await.take() {
            let _ = bounded(
                "close the publishing connection",
                connection.close(200, "shutting down".into()),
            )
            .await;
        }
    }
}
