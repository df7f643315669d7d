//! The archive pipeline: one report event in, its evidence safely in encrypted S3 out.
//!
//! ```text
//! parse_event(body) -> ReportEvent                      docs/contract.md section 1
//! Archiver::new(ArchiveConfig)                          built by the binary; no env reading here
//! Archiver::archive(&event, &Received, &cancel) -> Archived   never panics; always classifies
//!     the session's manifest first: a finished session fetches nothing; else each media not
//!     yet stored: found at its key, or fetched (https, host policy, deadlines, backon retries
//!     until the URL expiry) -> media::Validator + SHA-256 -> S3 (one PUT below a part, else
//!     multipart, every write with a SHA-256 checksum the store verifies) -> HEAD: checksum,
//!     length and encryption as the store reports them
//!     then manifest.json last, under the store's write conditions, merged, never downgraded
//! Archived { manifest, manifest_key, disposition: Done | DeadLetter(Failure) | Retry(Failure) }
//! ```
//!
//! Invariants: only `fetch` talks to media hosts, only `vendor` to the vendor API and only
//! `store` to S3; no media URL is logged or stored with its query string; [`Disposition`]
//! and every [`Cause`] are decided in `outcome` alone, on types, never on an error's text.
#![forbid(unsafe_code)]

mod address;
mod archiver;
mod attempt;
mod audit;
mod config;
mod erasure;
mod event;
mod fetch;
mod hosts;
mod manifest;
mod outcome;
mod progress;
mod slot;
mod store;
mod vendor;

pub use address::{is_public, non_public_reason};
pub use archiver::Archiver;
pub use audit::{AuditAction, AuditRecord};
pub use config::{AllowedHost, ArchiveConfig, FetchConfig, LockMode, ObjectLock, Sse, SseCustomerKey, StoreConfig};
pub use erasure::{EraseRequest, ErasedObject, Erasure, SessionSummary, Tombstone, TOMBSTONE_FILE};
pub use event::{
    event_expiry, is_valid_tenant, media_expiry, parse_event, session_id, url_own_expiry, EventError, Face, Received,
    ReportEvent, Status,
};
pub use event::{plausible_timestamp, MAX_EVENT_BYTES};
pub use fetch::{redacted, FetchError};
pub use hosts::HostNotAllowed;
pub use manifest::{Encryption, FaceSummary, Manifest, MediaEntry, MediaSet, MediaStatus, PastDecision, StoredMedia};
pub use outcome::{wants_fresh_urls, Cause, Disposition, Failure};
pub use progress::{ProgressObserver, StageTimings};
pub use slot::{manifest_name, slot, url_of, Slot, MANIFEST_FILE, SLOTS};
pub use store::{Deleted, Lock, StoreError, StoreFault, Undeleted};
pub use tokio_util::sync::CancellationToken;
pub use vendor::{event_json, report_from_answer, VendorClient, VendorConfig, VendorError};

/// The manifest schema this crate writes.
pub const MANIFEST_SCHEMA: u32 = 1;

/// Why an [`Archiver`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store cannot be configured (bad CA, sse-c over http, bad part size).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The media client cannot be built (bad CA).
    #[error("{0}")]
    Fetch(String),
}

/// The result of archiving one event.
#[derive(Debug, Clone)]
pub struct Archived {
    /// The manifest, when one was written or was already finished (not for a retry).
    pub manifest: Option<Manifest>,
    /// Where the manifest is (or would be).
    pub manifest_key: String,
    pub disposition: Disposition,
    /// The session was already finished: nothing was fetched (a redelivery, a duplicate).
    pub fetched_nothing: bool,
}

impl Archived {
    /// Whether fresh URLs from the vendor could finish what this delivery could not.
    pub fn wants_fresh_urls(&self) -> bool {
        self.manifest
            .as_ref()
            .is_some_and(|manifest| wants_fresh_urls(&self.disposition, &manifest.media.entries()))
    }
}
