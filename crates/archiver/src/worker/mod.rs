//! The queue worker (docs/contract.md section 4): takes report events from RabbitMQ, hands each
//! to a [`Handler`] (the archive pipeline), and settles the message (acknowledge,
//! dead-letter or return it) only once its outcome is durable.
//!
//! Invariants:
//! - nothing is acknowledged before its outcome is durable: the manifest written by the
//!   pipeline, and the result event (and, for a dead-letter, the copy in the dead-letter
//!   queue) confirmed by the broker;
//! - work in flight is bounded twice: by the channel's prefetch and by a semaphore;
//! - a message this process could not settle is left to the broker, which redelivers it.

pub mod config;
mod consumer;
pub mod outage;
mod outbox;
mod pipeline;
mod result;
mod settle;
pub mod shutdown;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use archive::{CancellationToken, Disposition};

use crate::broker::Topology;
use crate::metrics::EventMetrics;

pub use consumer::run;
pub use outage::StoreProbe;
pub use pipeline::Pipeline;
pub use result::ResultEvent;

/// What the worker needs besides the pipeline.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub amqp_url: String,
    /// TLS for an `amqps://` broker (extra CA, client certificate).
    pub broker_tls: crate::broker::BrokerTls,
    pub topology: Topology,
    /// Events in flight in this process: the prefetch and the semaphore's size.
    pub concurrency: u16,
    /// How long events in flight may run after SIGTERM before they are returned to the
    /// queue; the whole shutdown takes at most this plus [`SHUTDOWN_OVERHEAD`].
    pub drain: Duration,
    /// Test builds only: an event naming this session id panics in its handler
    /// (`ARCHIVER_TEST_PANIC_SESSION_ID`; see `settle::test_panic_hook`).
    pub panic_on_session: Option<String>,
}

/// One message as the handler sees it.
pub struct Incoming<'a> {
    pub body: &'a [u8],
    /// The AMQP `timestamp` property (seconds since the epoch), when the producer set one.
    pub amqp_timestamp: Option<u64>,
    /// Fires when the delivery's channel or connection is lost: from then on the handler
    /// writes nothing more (another delivery of the same event will).
    pub lost: &'a CancellationToken,
}

/// What the handler decided, with the event's metrics, finished once the message is settled.
pub struct Handled {
    /// The pipeline's one classification, settled as it is.
    pub disposition: Disposition,
    /// What to publish to `archiver.results` once settled (its `outcome` is the disposition's).
    pub result: ResultEvent,
    pub metrics: Arc<EventMetrics>,
}

/// Turns one message into a [`Disposition`]. It never fails: every failure is one.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, incoming: Incoming<'_>) -> impl Future<Output = Handled> + Send;
}
