//! The consuming loop: connect, declare, subscribe, hand each delivery to a bounded task;
//! reconnect when the broker goes away; drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::outage::{Gate, StoreProbe};
use super::outbox::Outbox;
use super::settle::{settle, Context, WIND_DOWN};
use super::{Handler, WorkerConfig};
use crate::broker::{bounded, connect, BrokerError, Publisher, BROKER_CALL_TIMEOUT};
use crate::metrics::Readiness;

/// The longest wait between two attempts to reach a broker that is gone. The worker never
/// gives up on its own: it stays alive and unready (`/readyz` 503) until the broker is
/// back or SIGTERM comes, so that a long broker outage does not end with every worker
/// exiting together into a crash-loop back-off that would delay the recovery.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
/// What the shutdown may spend besides the drain: returning what was not started, the
/// last moment of the runs still going ([`WIND_DOWN`]) and the closes. The drain plus
/// this is the worker's whole shutdown, below the pod's grace period (deploy/kubernetes).
pub const SHUTDOWN_OVERHEAD: Duration = Duration::from_secs(10);

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
/// the broker refuses the topology for good (a queue declared with other arguments).
/// `readiness` learns whether the broker is connected, whether the store and the
/// publisher answer (`store_probe` is asked while the store is out), and the drain.
pub async fn run<H: Handler>(
    config: WorkerConfig,
    handler: Arc<H>,
    readiness: Readiness,
    store_probe: StoreProbe,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let publisher = Arc::new(Publisher::new(&config.amqp_url, &config.broker_tls));
    let gate = Gate::new(readiness.clone());
    let prober = tokio::spawn(gate.clone().probe_store(store_probe, shutdown.clone()));
    let (outbox, outbox_task) = Outbox::start(publisher.clone(), gate.clone(), shutdown.clone());
    let context = Arc::new(Context {
        handler,
        publisher: publisher.clone(),
        topology: config.topology.clone(),
        gate,
        outbox,
        shutdown: shutdown.clone(),
        panic_on_session: config.panic_on_session.clone(),
    });
    let semaphore = Arc::new(Semaphore::new(usize::from(config.concurrency)));
    let mut tasks = JoinSet::new();
    // Fires when the current session is lost (or at shutdown's last moment): its tasks
    // stop before their next side effect.
    let mut lost = CancellationToken::new();

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
        let end = consume(
            &mut session,
            &config,
            &context,
            &semaphore,
            &mut tasks,
            &shutdown,
            &lost,
        )
        .await;
        readiness.set_broker(false);
        match end {
            SessionEnd::Shutdown => break Ok(Some(session)),
            SessionEnd::Lost(why) => {
                // The broker redelivers the lost session's events; its tasks write nothing
                // more (no manifest, no publish), so a stale writer cannot race the new one.
                lost.cancel();
                lost = CancellationToken::new();
                tracing::warn!(reason = %why, "lost the broker; reconnecting");
            }
        }
    };

    readiness.set_draining(true);
    let session = match outcome {
        Ok(session) => session,
        Err(err) => {
            lost.cancel();
            tasks.abort_all();
            publisher.close().await;
            return Err(err.into());
        }
    };
    // One deadline for the whole shutdown, below the pod's grace period.
    let stop_by = Instant::now() + config.drain + SHUTDOWN_OVERHEAD;
    drain(session, &mut tasks, config.drain, &lost, stop_by).await;
    prober.abort();
    let _ = tokio::time::timeout_at(stop_by, outbox_task).await;
    let _ = tokio::time::timeout_at(stop_by, publisher.close()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens a session, retrying with exponential backoff (at most [`MAX_RECONNECT_DELAY`]
/// apart) for as long as it takes. `None` when shutdown was asked for meanwhile.
async fn open_with_backoff(
    config: &WorkerConfig,
    shutdown: &CancellationToken,
) -> Option<Result<Session, BrokerError>> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_RECONNECT_DELAY)
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
        let delay = delays.next().unwrap_or(MAX_RECONNECT_DELAY);
        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker unavailable");
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn open(config: &WorkerConfig) -> Result<Session, BrokerError> {
    let connection = connect(&config.amqp_url, &config.broker_tls, "consumer").await?;
    config.topology.declare(&connection).await?;
    let channel = bounded("open a channel", connection.create_channel()).await?;
    bounded(
        "set the prefetch",
        channel.basic_qos(config.concurrency, BasicQosOptions::default()),
    )
    .await?;
    let consumer = subscribe(&channel, config).await?;
    Ok(Session {
        connection,
        channel,
        consumer,
    })
}

async fn subscribe(channel: &Channel, config: &WorkerConfig) -> Result<Consumer, BrokerError> {
    bounded(
        "subscribe to the queue",
        channel.basic_consume(
            config.topology.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

/// Takes deliveries while a permit is free, one task each, until the session is lost or
/// shutdown is asked for. A subscription the broker cancels (`basic.cancel`: the queue
/// was deleted, its leader moved) is taken up again on the same channel, so the events in
/// flight keep their channel and can still be acknowledged.
async fn consume<H: Handler>(
    session: &mut Session,
    config: &WorkerConfig,
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
            None => {
                if !session.channel.status().connected() {
                    return SessionEnd::Lost("the channel closed".to_owned());
                }
                tracing::warn!("the broker cancelled the subscription; subscribing again");
                match subscribe(&session.channel, config).await {
                    Ok(consumer) => {
                        session.consumer = consumer;
                        continue;
                    }
                    Err(err) => return SessionEnd::Lost(format!("cannot subscribe again: {err}")),
                }
            }
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

/// Stops the subscription and returns at once what was prefetched but not started (the
/// tasks not started return theirs on the shutdown signal); gives the events in flight
/// the drain period; then tells the rest to stop (a multipart upload under way is
/// aborted) and closes the channel, which returns every unacknowledged event. Everything
/// ends by `stop_by`.
async fn drain(
    session: Option<Session>,
    tasks: &mut JoinSet<()>,
    period: Duration,
    lost: &CancellationToken,
    stop_by: Instant,
) {
    if let Some(session) = session.as_ref() {
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
    let mut session = session;
    if let Some(session) = session.as_mut() {
        return_prefetched(&mut session.consumer).await;
    }
    while let Some(finished) = tasks.try_join_next() {
        report_task_end(finished);
    }
    tracing::info!(in_flight = tasks.len(), drain_secs = period.as_secs(), "draining");
    let drained_by = (Instant::now() + period).min(stop_by);
    let all_finished = tokio::time::timeout_at(drained_by, join_all(tasks)).await;
    if all_finished.is_err() {
        tracing::warn!(
            unfinished = tasks.len(),
            "drain period over; stopping unfinished events and returning them to the queue"
        );
        // Their runs stop before the next side effect and abort what they began.
        lost.cancel();
        let _ = tokio::time::timeout_at((Instant::now() + WIND_DOWN).min(stop_by), join_all(tasks)).await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    if let Some(session) = session {
        let close_by = |now: Instant| stop_by.saturating_duration_since(now).min(BROKER_CALL_TIMEOUT);
        let _ = tokio::time::timeout(
            close_by(Instant::now()),
            session.channel.close(200, "shutting down".into()),
        )
        .await;
        let _ = tokio::time::timeout(
            close_by(Instant::now()),
            session.connection.close(200, "shutting down".into()),
        )
        .await;
    }
}

/// Returns (`nack` with requeue: not the event's fault) the deliveries the broker had
/// already sent that no task took, until the cancelled subscription has none left.
async fn return_prefetched(consumer: &mut Consumer) {
    let mut returned = 0u32;
    // The prefetch bounds how many there can be; each wait is short.
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        let _ = bounded("return a prefetched event", delivery.acker.nack(options)).await;
        returned += 1;
    }
    if returned > 0 {
        tracing::info!(returned, "returned prefetched events not started");
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(finished) = tasks.join_next().await {
        report_task_end(finished);
    }
}

fn report_task_end(finished: Result<(), tokio::task::JoinError>) {
    if let Err(err) = finished {
        if err.is_panic() {
            // Handler panics are caught in `settle`; this is a panic outside of them.
            tracing::error!(error = %err, "an event task panicked");
        }
    }
}
