//! The archive pipeline as the worker's [`Handler`]: parse, archive, and turn the
//! pipeline's [`Disposition`] (the one classification) into a [`Settlement`].

use std::collections::BTreeMap;
use std::time::Duration;

use archive::{Archived, Archiver, Disposition, MediaEntry, Received, VendorClient};
use time::OffsetDateTime;

use super::result::MediaResult;
use super::{Handled, Handler, Incoming, ResultEvent, Settlement};
use crate::metrics::EventMetrics;

/// Archives each event with one shared [`Archiver`].
pub struct Pipeline {
    archiver: Archiver,
    /// `ARCHIVER_URL_TTL_SECS`, for the metrics of time left before a URL expires.
    url_ttl: Duration,
    /// The vendor API, when configured: an event whose URLs expired (or were refused as
    /// expired) is archived again once with fresh URLs instead of being dead-lettered.
    vendor: Option<VendorClient>,
}

impl Pipeline {
    pub fn new(archiver: Archiver, url_ttl: Duration) -> Self {
        Pipeline {
            archiver,
            url_ttl,
            vendor: None,
        }
    }

    pub fn with_vendor(self, vendor: Option<VendorClient>) -> Self {
        Pipeline { vendor, ..self }
    }

    /// Asks the vendor for fresh URLs once when that is what `archived` lacks.
    async fn refresh_if_expired(&self, event: &archive::ReportEvent, archived: Archived) -> Archived {
        let Some(vendor) = &self.vendor else {
            return archived;
        };
        if !archive::wants_fresh_urls(&archived) {
            return archived;
        }
        match vendor.fresh_report(&event.session_id, &event.tenant).await {
            Ok(fresh) => {
                tracing::info!("media urls expired; archiving again with fresh urls from the vendor api");
                self.archiver
                    .archive(
                        &fresh,
                        &Received {
                            amqp_timestamp: None,
                            received_at: OffsetDateTime::now_utc(),
                        },
                    )
                    .await
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot refresh expired urls from the vendor api");
                let mut archived = archived;
                if let Disposition::DeadLetter { reason } = &mut archived.disposition {
                    reason.push_str(&format!("; refresh from the vendor api failed: {err}"));
                }
                archived
            }
        }
    }
}

impl Handler for Pipeline {
    async fn handle(&self, incoming: Incoming<'_>) -> Handled {
        let event = match archive::parse_event(incoming.body) {
            Ok(event) => event,
            Err(err) => {
                // The pipeline words the reason, so `archiver archive` and the worker agree.
                let reason = match Disposition::invalid_event(&err) {
                    Disposition::DeadLetter { reason } | Disposition::Retry { reason } => reason,
                    Disposition::Done => err.to_string(),
                };
                let settlement = Settlement::DeadLetter {
                    result: ResultEvent::unparsed(incoming.body, &reason),
                    reason,
                };
                return Handled {
                    settlement,
                    metrics: EventMetrics::for_unparsed(),
                };
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
        let metrics = EventMetrics::for_event(&event, &received, self.url_ttl);
        let archived = self
            .archiver
            .archive_with_progress(&event, &received, metrics.clone())
            .await;
        let archived = self.refresh_if_expired(&event, archived).await;
        let result = result_event(&event.session_id, &event.tenant, &archived);
        let settlement = match archived.disposition {
            Disposition::Done => Settlement::Done { result },
            Disposition::DeadLetter { reason } => Settlement::DeadLetter { reason, result },
            Disposition::Retry { reason } => Settlement::Retry { reason, result },
        };
        Handled { settlement, metrics }
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
            media.insert(
                name.to_owned(),
                MediaResult {
                    status: entry.status().to_owned(),
                    key,
                    reason,
                },
            );
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
