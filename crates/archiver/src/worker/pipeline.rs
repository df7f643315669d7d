//! The archive pipeline as the worker's [`Handler`]: parse, archive, and turn the
//! pipeline's [`Disposition`] (the one classification) into a [`Settlement`].

use std::collections::BTreeMap;

use archive::{Archived, Archiver, Disposition, MediaEntry, Received};
use time::OffsetDateTime;

use super::result::MediaResult;
use super::{Handler, Incoming, ResultEvent, Settlement};

/// Archives each event with one shared [`Archiver`].
pub struct Pipeline {
    archiver: Archiver,
}

impl Pipeline {
    pub fn new(archiver: Archiver) -> Self {
        Pipeline { archiver }
    }
}

impl Handler for Pipeline {
    async fn handle(&self, incoming: Incoming<'_>) -> Settlement {
        let event = match archive::parse_event(incoming.body) {
            Ok(event) => event,
            Err(err) => {
                // The pipeline words the reason, so `archiver archive` and the worker agree.
                let reason = match Disposition::invalid_event(&err) {
                    Disposition::DeadLetter { reason } | Disposition::Retry { reason } => reason,
                    Disposition::Done => err.to_string(),
                };
                return Settlement::DeadLetter { result: ResultEvent::unparsed(incoming.body, &reason), reason };
            }
        };
        tracing::Span::current().record("session_id", event.session_id.as_str());
        let received = Received {
            amqp_timestamp: incoming
                .amqp_timestamp
                .and_then(|secs| i64::try_from(secs).ok())
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok()),
            received_at: OffsetDateTime::now_utc(),
        };
        let archived = self.archiver.archive(&event, &received).await;
        let result = result_event(&event.session_id, &event.tenant, &archived);
        match archived.disposition {
            Disposition::Done => Settlement::Done { result },
            Disposition::DeadLetter { reason } => Settlement::DeadLetter { reason, result },
            Disposition::Retry { reason } => Settlement::Retry { reason, result },
        }
    }
}

fn result_event(session_id: &str, tenant: &str, archived: &Archived) -> ResultEvent {
    let mut media = BTreeMap::new();
    if let Some(manifest) = &archived.manifest {
        for (name, entry) in manifest.media.entries() {
            let (key, reason) = match entry {
                MediaEntry::Stored(stored) => (Some(stored.key.clone()), None),
                MediaEntry::Absent => (None, None),
                MediaEntry::Rejected { reason } | MediaEntry::Failed { reason } => (None, Some(reason.clone())),
            };
            media.insert(name.to_owned(), MediaResult { status: entry.status().to_owned(), key, reason });
        }
    }
    ResultEvent {
        session_id: Some(session_id.to_owned()),
        tenant: Some(tenant.to_owned()),
        manifest_key: archived.manifest.as_ref().map(|_| archived.manifest_key.clone()),
        media,
        reason: None,
    }
}
