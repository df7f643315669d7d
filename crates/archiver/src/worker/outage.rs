//! Outages that are not the event's fault: the store (S3 unavailable or refusing for its
//! own configuration) and the publishing side of the broker (blocked by a resource alarm,
//! or not confirming).
//!
//! Before RabbitMQ 4.3 every return of a message counts toward its delivery limit, so an
//! event caught by an outage is not returned: it is held, unacknowledged, at the [`Gate`]
//! until the outage ends (or its deadline nears), and only then run again. While the gate
//! is closed no held event starts, the prefetch fills up with held events (so the broker
//! sends no more), and `/readyz` answers 503. The gate reopens on its own: the store is
//! probed with backoff, and the publisher is retried by whoever waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Readiness;

/// Asks the store whether it answers (`Archiver::check_ready` in the binary).
pub type StoreProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// How often a healthy store is probed, for `/readyz`.
const HEALTHY_PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// The longest wait between two probes of a store that is out.
const MAX_PROBE_DELAY: Duration = Duration::from_secs(10);

/// Whether held events may run: open while the store and the publisher both answer.
#[derive(Clone)]
pub struct Gate {
    store: Arc<watch::Sender<bool>>,
    publisher: Arc<watch::Sender<bool>>,
    readiness: Readiness,
}

/// Why [`Gate::wait_open`] returned without the gate opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Open,
    Shutdown,
    Lost,
    Deadline,
}

impl Gate {
    /// An open gate (the first probe corrects it); `readiness` follows the store.
    pub fn new(readiness: Readiness) -> Gate {
        Gate {
            store: Arc::new(watch::Sender::new(true)),
            publisher: Arc::new(watch::Sender::new(true)),
            readiness,
        }
    }

    /// The store failed for a reason of its own: close the gate until a probe succeeds.
    pub fn store_down(&self) {
        if self.store.send_replace(false) {
            tracing::warn!("the store is unavailable: holding events until it answers");
        }
        self.readiness.set_store(false);
    }

    fn store_up(&self) {
        if !self.store.send_replace(true) {
            tracing::info!("the store answers again: resuming held events");
        }
        self.readiness.set_store(true);
    }

    /// A publish was not confirmed (or the confirm came back): the gate follows.
    pub fn publisher(&self, confirmed: bool) {
        let was = self.publisher.send_replace(confirmed);
        if was && !confirmed {
            tracing::warn!("the broker does not confirm publishes: holding events until it does");
        } else if !was && confirmed {
            tracing::info!("the broker confirms publishes again: resuming held events");
        }
        self.readiness.set_publisher(confirmed);
    }

    /// Waits until the gate is open, or shutdown, the loss of the delivery, or `deadline`.
    pub async fn wait_open(
        &self,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
        deadline: tokio::time::Instant,
    ) -> Waited {
        let mut store = self.store.subscribe();
        let mut publisher = self.publisher.subscribe();
        let open = async {
            loop {
                if *store.borrow_and_update() && *publisher.borrow_and_update() {
                    return;
                }
                tokio::select! {
                    _ = store.changed() => {}
                    _ = publisher.changed() => {}
                }
            }
        };
        tokio::select! {
            biased;
            _ = lost.cancelled() => Waited::Lost,
            _ = shutdown.cancelled() => Waited::Shutdown,
            _ = open => Waited::Open,
            _ = tokio::time::sleep_until(deadline) => Waited::Deadline,
        }
    }

    /// Probes the store until shutdown: every [`HEALTHY_PROBE_INTERVAL`] while it answers,
    /// with backoff up to [`MAX_PROBE_DELAY`] as soon as anything reports it down. The
    /// backoff starts over only after a whole quiet interval, so that a store the probe
    /// finds answering but the events do not (writes refused, say) is tried again less
    /// and less often rather than in a loop.
    pub async fn probe_store(self, probe: StoreProbe, shutdown: CancellationToken) {
        let mut store = self.store.subscribe();
        let mut delays = backoff();
        loop {
            if probe().await {
                self.store_up();
                // Until the next interval, or until an event reports the store down.
                let reported_down = async {
                    loop {
                        if store.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        if !*store.borrow_and_update() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = reported_down => {}
                    _ = tokio::time::sleep(HEALTHY_PROBE_INTERVAL) => {
                        delays = backoff();
                        continue;
                    }
                }
            } else {
                self.store_down();
            }
            let delay = delays.next().unwrap_or(MAX_PROBE_DELAY);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// The delays between probes of a store that is out, and between retries of a publish.
pub fn backoff() -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(MAX_PROBE_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A probe that fails `failures` times, then answers; counts its calls.
    fn probe_failing(failures: usize) -> (StoreProbe, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let probe: StoreProbe = Arc::new(move || {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { call >= failures })
        });
        (probe, calls)
    }

    #[tokio::test]
    async fn held_events_wait_until_the_store_answers_or_their_deadline() {
        let readiness = Readiness::new();
        readiness.set_broker(true);
        let gate = Gate::new(readiness.clone());
        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        let soon = || tokio::time::Instant::now() + Duration::from_secs(30);

        // An event reports the store down: the gate closes and /readyz follows.
        gate.store_down();
        assert!(!readiness.is_ready());
        let (probe, calls) = probe_failing(2);
        let prober = tokio::spawn(gate.clone().probe_store(probe, shutdown.clone()));
        assert_eq!(gate.wait_open(&shutdown, &lost, soon()).await, Waited::Open);
        assert!(calls.load(Ordering::SeqCst) >= 3, "probed until it answered");
        assert!(readiness.is_ready());

        // A publisher that does not confirm closes it too; past the deadline, the event goes.
        gate.publisher(false);
        assert!(!readiness.is_ready());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(gate.wait_open(&shutdown, &lost, deadline).await, Waited::Deadline);
        shutdown.cancel();
        assert_eq!(gate.wait_open(&shutdown, &lost, soon()).await, Waited::Shutdown);
        gate.publisher(true);
        lost.cancel();
        assert_eq!(gate.wait_open(&shutdown, &lost, soon()).await, Waited::Lost);
        prober.await.unwrap();
    }
}
