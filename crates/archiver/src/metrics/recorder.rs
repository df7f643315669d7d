//! One event's metrics, recorded from the pipeline's progress reports and finished with
//! the event's settled outcome.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archive::MediaStatus;
use media::MediaKind;
use metrics::{counter, gauge, histogram};
use time::OffsetDateTime;

use super::{fetch_attempt, media_finished, stage_finished, EventOutcome, Stage};
use super::{EVENTS, EVENTS_IN_FLIGHT, EVENT_AGE, EVENT_DURATION};

/// One event's metrics, fed by the pipeline's progress reports: create it when the
/// event arrives, pass it to `Archiver::archive_with_progress`, and call
/// [`EventMetrics::finish`] with the outcome once the message is settled.
///
/// It records the event's age at receipt, and per media: fetch attempts and retries, the
/// time left before the URL expires at the first attempt, bytes stored, the final status
/// and the media's duration.
#[derive(Debug)]
pub struct EventMetrics {
    started: Instant,
    /// When each media's URL expires (docs/contract.md section 1), by [`slot`].
    expiry: [Option<OffsetDateTime>; 3],
    attempts: [AtomicU32; 3],
    /// Bytes of the current attempt (a retry starts again from zero).
    bytes: [AtomicU64; 3],
    first_attempt: [Mutex<Option<Instant>>; 3],
    finished: AtomicBool,
}

impl EventMetrics {
    /// A parsed event has arrived. `url_ttl` is `ARCHIVER_URL_TTL_SECS`.
    pub fn for_event(event: &archive::ReportEvent, received: &archive::Received, url_ttl: Duration) -> Arc<Self> {
        let issued = event.issued_at.or(received.amqp_timestamp);
        if issued.is_none() {
            counter!(super::EVENTS_WITHOUT_ISSUE_TIME).increment(1);
        }
        let age = issued.map(|issued| positive(received.received_at - issued));
        let expiry = archive::event_expiry(event, received, url_ttl);
        let media_expiry = |slot: &archive::Slot| {
            archive::url_of(&event.face, slot.kind).map(|url| archive::media_expiry(expiry, url))
        };
        Self::start(age, archive::SLOTS.each_ref().map(media_expiry))
    }

    /// An event that could not be parsed has arrived (it will be dead-lettered).
    pub fn for_unparsed() -> Arc<Self> {
        Self::start(None, [None, None, None])
    }

    fn start(age: Option<Duration>, expiry: [Option<OffsetDateTime>; 3]) -> Arc<Self> {
        gauge!(EVENTS_IN_FLIGHT).increment(1.0);
        if let Some(age) = age {
            histogram!(EVENT_AGE).record(age.as_secs_f64());
        }
        Arc::new(EventMetrics {
            started: Instant::now(),
            expiry,
            attempts: Default::default(),
            bytes: Default::default(),
            first_attempt: Default::default(),
            finished: AtomicBool::new(false),
        })
    }

    /// The message is settled with `outcome`. Only the first call counts.
    pub fn finish(&self, outcome: EventOutcome) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        gauge!(EVENTS_IN_FLIGHT).decrement(1.0);
        counter!(EVENTS, "outcome" => outcome.label()).increment(1);
        histogram!(EVENT_DURATION, "outcome" => outcome.label()).record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for EventMetrics {
    /// An event dropped without an outcome (its task was aborted) is no longer in flight.
    fn drop(&mut self) {
        if !self.finished.load(Ordering::Relaxed) {
            gauge!(EVENTS_IN_FLIGHT).decrement(1.0);
        }
    }
}

impl archive::ProgressObserver for EventMetrics {
    fn attempt_started(&self, kind: MediaKind) {
        let slot = slot(kind);
        let attempt = self.attempts[slot].fetch_add(1, Ordering::Relaxed) + 1;
        self.bytes[slot].store(0, Ordering::Relaxed);
        if attempt == 1 {
            if let Ok(mut first) = self.first_attempt[slot].lock() {
                *first = Some(Instant::now());
            }
        }
        let time_left = self.expiry[slot].map_or(Duration::ZERO, |expiry| positive(expiry - OffsetDateTime::now_utc()));
        fetch_attempt(kind, attempt, time_left);
    }

    fn bytes(&self, kind: MediaKind, bytes: u64) {
        self.bytes[slot(kind)].fetch_add(bytes, Ordering::Relaxed);
    }

    fn attempt_timings(&self, kind: MediaKind, timings: &archive::StageTimings) {
        stage_finished(Stage::Fetch, kind, timings.fetch);
        stage_finished(Stage::Validate, kind, timings.validate);
        stage_finished(Stage::Store, kind, timings.store);
    }

    fn finished(&self, kind: MediaKind, status: MediaStatus) {
        let slot = slot(kind);
        let stored = (status == MediaStatus::Stored).then(|| self.bytes[slot].load(Ordering::Relaxed));
        media_finished(kind, status, stored);
        let first = self.first_attempt[slot].lock().ok().and_then(|first| *first);
        if let Some(first) = first {
            stage_finished(Stage::Media, kind, first.elapsed());
        }
    }
}

/// The index of a kind of media in the per-media arrays (contract order).
fn slot(kind: MediaKind) -> usize {
    archive::SLOTS.iter().position(|slot| slot.kind == kind).unwrap_or(0)
}

/// A signed span as a duration, zero when negative (a clock ahead of the vendor's).
fn positive(span: time::Duration) -> Duration {
    Duration::try_from(span).unwrap_or(Duration::ZERO)
}
