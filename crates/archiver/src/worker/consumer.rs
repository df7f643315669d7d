//! The consuming loop: connect, declare, subscribe, hand each delivery to a bounded task;
//! reconnect when the broker goes away; drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::settle::{settle, Context};
use super::{Handler, WorkerConfig};
use crate::broker::{bounded, connect, BrokerError, Publisher};
use crate::metrics::Readiness;

/// How long the worker keeps trying to reach a broker that is gone before it gives up and
/// exits 1, leaving the restart to its supervisor (and the alert to its operator).
const RECONNECT_DEADLINE: Duration = Duration::from_secs(300);

/// One subscription on one connection.
struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Runs the worker until `shutdown` is cancelled, then drains. Returns an error only when
/// the broker stayed unreachable past [`RECONNECT_DEADLINE`].
/// `readiness` learns whether the broker is connected and when the drain starts.
pub async fn run<H: Handler>(
    config: WorkerConfig,
    handler: Arc<H>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let publisher = Arc::new(Publisher::new(&config.amqp_url));
    let context = Arc::new(Context {
        handler,
        publisher: publisher.clone(),
        topology: config.topology.clone(),
    });
    let semaphore = Arc::new(Semaphore::new(usize::from(config.concurrency)));
    let mut tasks = JoinSet::new();

    let outcome = loop {
        let Some(session) = open_with_backoff(&config, &shutdown).await else {
            break Ok(None);
        };
        let mut session = match session {
            Ok(session) => session,
            Err(err) => break Err(err),
        };
        tracing::info!(queue = %config.topology.queue, concurrency = config.concurrency, "consuming");
        readiness.set_broker(true);
        // Fires when this session is lost: its tasks stop before their next side effect.
        let lost = CancellationToken::new();
        let end = consume(&mut session, &context, &semaphore, &mut tasks, &shutdown, &lost).await;
        readiness.set_broker(false);
        match end {
            SessionEnd::Shutdown => break Ok(Some(session)),
            SessionEnd::Lost(why) => {
                // The broker redelivers the lost session's events; its tasks write nothing
                // more (no manifest, no publish), so a stale writer cannot race the new one.
                lost.cancel();
                tracing::warn!(reason = %why, "lost the broker; reconnecting");
            }
        }
    };

    readiness.set_draining(true);
    let session = match outcome {
        Ok(session) => session,
        Err(err) => {
            tasks.abort_all();
            publisher.close().await;
            return Err(err.into());
        }
    };
    drain(session, &mut tasks, config.drain).await;
    publisher.close().await;
    Ok(())
}

/// Opens a session, retrying with exponential backoff until [`RECONNECT_DEADLINE`].
/// `None` when shutdown was asked for meanwhile.
async fn open_with_backoff(
    config: &WorkerConfig,
    shutdown: &CancellationToken,
) -> Option<Result<Session, BrokerError>> {
    let deadline = tokio::time::Instant::now() + RECONNECT_DEADLINE;
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            attempt = open(config) => attempt,
        };
        let err = match attempt {
            Ok(session) => return Some(Ok(session)),
            // A queue declared with other arguments will not change by waiting.
            Err(err @ BrokerError::Inequivalent { .. }) => return Some(Err(err)),
            Err(err) => err,
        };
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        if tokio::time::Instant::now() + delay > deadline {
            return Some(Err(err));
        }
        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker unavailable");
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn open(config: &WorkerConfig) -> Result<Session, BrokerError> {
    let connection = connect(&config.amqp_url, "consumer").await?;
    let channel = bounded("open a channel", connection.create_channel()).await?;
    config.topology.declare(&channel).await?;
    bounded(
        "set the prefetch",
        channel.basic_qos(config.concurrency, BasicQosOptions::default()),
    )
    .await?;
    let consumer = bounded(
        "subscribe to the queue",
        channel.basic_consume(
            config.topology.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    Ok(Session {
        connection,
        channel,
        consumer,
    })
}

/// Takes deliveries while a permit is free, one task each, until the session is lost or
/// shutdown is asked for.
async fn consume<H: Handler>(
    session: &mut Session,
    context: &Arc<Context<H>>,
    semaphore: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
    lost: &CancellationToken,
) -> SessionEnd {
    loop {
        while let Some(finished) = tasks.try_join_next() {
            report_task_end(finished);
        }
        // The permit is taken before the next delivery, so a delivery is never held
        // waiting inside this process while all tasks are busy; the broker keeps it.
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return SessionEnd::Shutdown,
            },
        };
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            next = session.consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(err)) => return SessionEnd::Lost(err.to_string()),
            None => return SessionEnd::Lost("the broker cancelled the subscription".to_owned()),
        };
        let context = context.clone();
        let lost = lost.clone();
        let span = tracing::info_span!(
            "event",
            delivery_tag = delivery.delivery_tag,
            redelivered = delivery.redelivered,
            session_id = tracing::field::Empty
        );
        tasks.spawn(
            async move {
                let _permit = permit;
                settle(delivery, &context, &lost).await;
            }
            .instrument(span),
        );
    }
}

/// Stops the subscription, gives the events in flight the drain period, then closes the
/// channel, which returns every unacknowledged event (unfinished or not yet started) to
/// the queue.
async fn drain(session: Option<Session>, tasks: &mut JoinSet<()>, period: Duration) {
    if let Some(session) = &session {
        let tag = session.consumer.tag();
        if let Err(err) = bounded(
            "cancel the subscription",
            session.channel.basic_cancel(tag, BasicCancelOptions::default()),
        )
        .await
        {
            tracing::warn!(error = %err, "could not cancel the subscription; closing the channel returns its events");
        }
    }
    while let Some(finished) = tasks.try_join_next() {
        report_task_end(finished);
    }
    tracing::info!(in_flight = tasks.len(), drain_secs = period.as_secs(), "draining");
    let all_finished = tokio::time::timeout(period, async {
        while let Some(finished) = tasks.join_next().await {
            report_task_end(finished);
        }
    })
    .await;
    if all_finished.is_err() {
        tracing::warn!(
            unfinished = tasks.len(),
            "drain period over; returning unfinished events to the queue"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    if let Some(session) = session {
        let _ = bounded("close the channel", session.channel.close(200, "shutting down".into())).await;
        let _ = bounded(
            "close the connection",
            session.connection.close(200, "shutting down".into()),
        )
        .await;
    }
    tracing::info!("stopped");
}

fn report_task_end(finished: Result<(), tokio::task::JoinError>) {
    if let Err(err) = finished {
        if err.is_panic() {
            // The event stays unacknowledged and is redelivered; the panic is a bug to fix.
            tracing::error!(error = %err, "an event task panicked");
        }
    }
}
