//! The broker adapter: connections, a timeout around every broker call (a broker that
//! stops answering must not stall the worker forever), the topology, confirmed publishes
//! and the dead-letter copy. The consume loop (`worker/`) and `refetch` use it; nothing
//! else talks to RabbitMQ.

mod dead_letter;
mod nodes;
mod publisher;
mod tls;
mod topology;
mod version;

pub use dead_letter::{cause_of, dead_letter_copy};
pub use publisher::{Message, Publisher};
pub use tls::BrokerTls;
pub use topology::{DeadLetterQueue, Topology, RESULTS_EXCHANGE};
pub use version::BrokerVersion;

use std::future::Future;
use std::time::Duration;

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

/// The longest any single broker call (connect, declare, publish and its confirm, ack) may take.
pub const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker call that failed or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker refused or lost the call.
    #[error("failed to {action}: {source}")]
    Call {
        action: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The broker did not answer within [`BROKER_CALL_TIMEOUT`].
    #[error("failed to {action}: no answer from the broker within {}s", BROKER_CALL_TIMEOUT.as_secs())]
    Timeout { action: &'static str },
    /// The broker negatively confirmed a publish: it did not take responsibility for it.
    #[error("failed to {action}: the broker refused the message (publisher confirm nack)")]
    Refused { action: &'static str },
    /// A mandatory publish matched no queue.
    #[error("failed to {action}: no queue is bound to receive it")]
    Unroutable { action: &'static str },
    /// A declaration clashed with what already exists on the broker.
    #[error("{source}; `{name}` already exists with other arguments: delete it (after moving its messages) or declare it as it was, e.g. with the previous ARCHIVER_DELIVERY_LIMIT")]
    Inequivalent {
        name: String,
        #[source]
        source: Box<BrokerError>,
    },
}

impl BrokerError {
    /// Adds the fix to a declaration refused because the existing queue differs: the
    /// broker closes the channel with reply code 406 (PRECONDITION_FAILED).
    pub fn explain_inequivalent(self, name: &str) -> BrokerError {
        if self.reply_code() == Some(406) {
            BrokerError::Inequivalent {
                name: name.to_owned(),
                source: Box::new(self),
            }
        } else {
            self
        }
    }
}

impl BrokerError {
    /// The AMQP reply code the broker closed the channel or connection with, if it did.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            BrokerError::Call { source, .. } => match source.kind() {
                lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
                _ => None,
            },
            BrokerError::Inequivalent { source, .. } => source.reply_code(),
            _ => None,
        }
    }
}

/// Runs one broker call under [`BROKER_CALL_TIMEOUT`].
pub async fn bounded<T>(action: &'static str, call: impl Future<Output = lapin::Result<T>>) -> Result<T, BrokerError> {
    match tokio::time::timeout(BROKER_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(BrokerError::Call { action, source }),
        Err(_) => Err(BrokerError::Timeout { action }),
    }
}

/// Opens a connection named after its role, so that `rabbitmqctl list_connections` shows
/// which connection of which worker is which. `tls` applies to `amqps://` URLs only.
/// `amqp_url` may list the nodes of a cluster (comma-separated): they are tried in turn,
/// starting after the node this role last connected to (`nodes.rs`).
pub async fn connect(amqp_url: &str, tls: &BrokerTls, role: &str) -> Result<Connection, BrokerError> {
    let nodes = nodes::nodes(amqp_url);
    let mut last_error = None;
    for index in nodes::order(role, nodes.len()) {
        match connect_node(nodes[index], tls, role).await {
            Ok(connection) => {
                if nodes.len() > 1 {
                    tracing::info!(role, node = index + 1, of = nodes.len(), "connected to a broker node");
                }
                nodes::connected(role, index);
                return Ok(connection);
            }
            Err(err) => {
                if nodes.len() > 1 {
                    tracing::warn!(role, node = index + 1, of = nodes.len(), error = %err, "broker node unavailable; trying the next");
                }
                last_error = Some(err);
            }
        }
    }
    Err(last_error.unwrap_or(BrokerError::Timeout {
        action: "connect to the broker (ARCHIVER_AMQP_URL names no node)",
    }))
}

async fn connect_node(amqp_url: &str, tls: &BrokerTls, role: &str) -> Result<Connection, BrokerError> {
    let name = format!("archiver {role} (pid {})", std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
    version::remember(amqp_url).await;
    let connecting = async {
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connect_with_config(amqp_url, properties, tls.lapin_config(), runtime).await
    };
    bounded("connect to the broker", connecting).await
}
