//! The queue worker (CONTRACT.md section 4): takes report events from RabbitMQ, hands each
//! to a [`Handler`] (the archive pipeline), and settles the message (acknowledge,
//! dead-letter or return it) only once its outcome is durable.
//!
//! Invariants:
//! - nothing is acknowledged before its outcome is durable: the manifest written by the
//!   pipeline, and the result event (and, for a dead-letter, the copy in the dead-letter
//!   queue) confirmed by the broker;
//! - work in flight is bounded twice: by the channel's prefetch and by a semaphore;
//! - a message this process could not settle is left to the broker, which redelivers it.

mod broker;
pub mod config;
mod consumer;
mod pipeline;
mod publisher;
mod result;
mod settle;
pub mod shutdown;
mod topology;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::EventMetrics;

pub use broker::{bounded, connect, BrokerError};
pub use consumer::run;
pub use pipeline::Pipeline;
pub use publisher::{Message, Publisher};
pub use result::ResultEvent;
pub use topology::{Topology, REASON_HEADER, RESULTS_EXCHANGE};

/// What the worker needs besides the pipeline.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub amqp_url: String,
    pub topology: Topology,
    /// Events in flight in this process: the prefetch and the semaphore's size.
    pub concurrency: u16,
    /// How long events in flight may run after SIGTERM before they are returned to the queue.
    pub drain: Duration,
}

/// One message as the handler sees it.
pub struct Incoming<'a> {
    pub body: &'a [u8],
    /// The AMQP `timestamp` property (seconds since the epoch), when the producer set one.
    pub amqp_timestamp: Option<u64>,
}

/// What should become of a message: the one decision the handler makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Archived: publish the result event, then acknowledge.
    Done { result: ResultEvent },
    /// Permanently failed: copy to the dead-letter queue with the reason, publish the
    /// result event, then acknowledge.
    DeadLetter { reason: String, result: ResultEvent },
    /// Transiently failed: return it to the queue, whose delivery limit ends a message
    /// that never succeeds in the dead-letter queue. `result` is what to publish if this
    /// was the last delivery allowed.
    Retry { reason: String, result: ResultEvent },
}

/// What the handler decided, with the event's metrics, finished once the message is settled.
pub struct Handled {
    pub settlement: Settlement,
    pub metrics: Arc<EventMetrics>,
}

/// Turns one message into a [`Settlement`]. It never fails: every failure is a settlement.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, incoming: Incoming<'_>) -> impl Future<Output = Handled> + Send;
}
