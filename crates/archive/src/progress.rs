//! An optional observer of one event's progress (per media: attempts, bytes, outcome),
//! for the progress display of `archiver refetch`.
//!
//! The observer travels in a task-local rather than through every function signature:
//! the three media of an event run in one task (`tokio::join!`), and the worker, which
//! needs no display, pays nothing for it.

use std::sync::Arc;

use media::MediaKind;

use crate::manifest::MediaStatus;

/// Told what happens to each media of one event. Calls come from the event's task; keep
/// them cheap (the bytes callback runs once per network chunk).
pub trait ProgressObserver: Send + Sync {
    /// An attempt at `kind` starts; a retry starts again from zero bytes.
    fn attempt_started(&self, _kind: MediaKind) {}
    /// `bytes` more bytes of `kind` went through the validator into the store.
    fn bytes(&self, _kind: MediaKind, _bytes: u64) {}
    /// `kind` ended with `status`.
    fn finished(&self, _kind: MediaKind, _status: MediaStatus) {}
    /// An attempt at `kind` ended (stored or not); where its time went.
    fn attempt_timings(&self, _kind: MediaKind, _timings: &StageTimings) {}
}

/// Where one attempt's time went. The stages interleave chunk by chunk (bytes flow from
/// the response through the validator into the upload), so each is the sum of its slices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    /// Waiting for the media host: the response headers and every body chunk.
    pub fetch: std::time::Duration,
    /// Validating and hashing the bytes.
    pub validate: std::time::Duration,
    /// Writing to S3: parts, completion, the encryption read-back.
    pub store: std::time::Duration,
}

tokio::task_local! {
    static OBSERVER: Arc<dyn ProgressObserver>;
}

/// Runs `work` with `observer` receiving its progress.
pub(crate) async fn scope<T>(observer: Arc<dyn ProgressObserver>, work: impl std::future::Future<Output = T>) -> T {
    OBSERVER.scope(observer, work).await
}

fn with(report: impl FnOnce(&dyn ProgressObserver)) {
    let _ = OBSERVER.try_with(|observer| report(observer.as_ref()));
}

pub(crate) fn attempt_started(kind: MediaKind) {
    with(|observer| observer.attempt_started(kind));
}

pub(crate) fn bytes(kind: MediaKind, bytes: u64) {
    with(|observer| observer.bytes(kind, bytes));
}

pub(crate) fn attempt_timings(kind: MediaKind, timings: &StageTimings) {
    with(|observer| observer.attempt_timings(kind, timings));
}

pub(crate) fn finished(kind: MediaKind, status: MediaStatus) {
    with(|observer| observer.finished(kind, status));
}
