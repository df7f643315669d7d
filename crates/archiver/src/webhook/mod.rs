//! `archiver webhook` (docs/contract.md section 8): the vendor's signed webhooks in, report
//! events out, each answered 200 only once the broker has confirmed it.
//!
//! `auth` checks the timestamp and the signature over the raw body, `payload` reads a
//! signed body into an event (with the worker's own event rules), `queue` publishes with a
//! confirm or dead-letters, `handle` answers one request in the contract's order, and
//! `server` accepts connections and drains them on shutdown.
//!
//! Invariants: nothing in a body is parsed before its signature holds; nothing is answered
//! 200 `queued` before the broker confirmed the event; no answer or log carries a secret, a
//! signature, a body or a media URL.

mod auth;
mod handle;
mod payload;
mod queue;
mod server;

pub use queue::Queue;
pub use server::serve;

use crate::tenants::Tenants;

/// What every request needs.
pub struct Webhook {
    pub tenants: Tenants,
    pub queue: Queue,
}
