//! The archive pipeline as the worker's [`Handler`]: parse, archive, refresh expired URLs
//! once through the vendor API, and hand the pipeline's [`Disposition`] (the one
//! classification) to the settlement as it is.

use std::collections::BTreeMap;
use std::time::Duration;

use archive::{Archived, Archiver, CancellationToken, Disposition, MediaEntry, Received};
use time::OffsetDateTime;

use super::result::MediaResult;
use super::{Handled, Handler, Incoming, ResultEvent};
use crate::metrics::EventMetrics;
use crate::tenants::{NoVendorKey, VendorClients};

/// Archives each event with one shared [`Archiver`].
pub struct Pipeline {
    archiver: Archiver,
    /// `ARCHIVER_URL_TTL_SECS`, for the metrics of time left before a URL expires.
    url_ttl: Duration,
    /// The vendor API, when configured: an event whose URLs expired (or were refused as
    /// expired) is archived again once with fresh URLs instead of being dead-lettered,
    /// asked with the event's tenant's own key only.
    vendor: VendorClients,
}

impl Pipeline {
    pub fn new(archiver: Archiver, url_ttl: Duration) -> Self {
        Pipeline {
            archiver,
            url_ttl,
            vendor: VendorClients::default(),
        }
    }

    pub fn with_vendor(self, vendor: VendorClients) -> Self {
        Pipeline { vendor, ..self }
    }

    /// Asks the vendor for fresh URLs once when that is what `archived` lacks (decided on
    /// the failures' causes, in `archive::outcome`).
    async fn refresh_if_expired(
        &self,
        event: &archive::ReportEvent,
        archived: Archived,
        lost: &CancellationToken,
    ) -> Archived {
        if !archived.wants_fresh_urls() {
            return archived;
        }
        let vendor = match self.vendor.for_tenant(&event.tenant) {
            Ok(vendor) => vendor,
            Err(NoVendorKey::NotConfigured) => return archived,
            Err(no_key) => {
                tracing::warn!(tenant = %event.tenant, "media urls expired; no refresh: {no_key}");
                let mut archived = archived;
                if let Disposition::DeadLetter(failure) = &mut archived.disposition {
                    failure.reason.push_str(&format!("; no refresh: {no_key}"));
                }
                return archived;
            }
        };
        match vendor.fresh_report(&event.session_id, &event.tenant).await {
            Ok(fresh) => {
                tracing::info!("media urls expired; archiving again with fresh urls from the vendor api");
                self.archiver.archive(&fresh, &Received::now(), lost).await
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot refresh expired urls from the vendor api");
                let mut archived = archived;
                if let Disposition::DeadLetter(failure) = &mut archived.disposition {
                    failure
                        .reason
                        .push_str(&format!("; refresh from the vendor api failed: {err}"));
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
                let disposition = Disposition::invalid_event(&err);
                let reason = disposition.failure().map(|f| f.reason.clone()).unwrap_or_default();
                return Handled {
                    result: ResultEvent::unparsed(incoming.body, &reason),
                    disposition,
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
            .archive_with_progress(&event, &received, incoming.lost, metrics.clone())
            .await;
        let archived = self.refresh_if_expired(&event, archived, incoming.lost).await;
        Handled {
            result: result_event(&event.session_id, &event.tenant, &archived),
            disposition: archived.disposition,
            metrics,
        }
    }
}

fn result_event(session_id: &str, tenant: &str, archived: &Archived) -> ResultEvent {
    let mut media = BTreeMap::new();
    if let Some(manifest) = &archived.manifest {
        for (kind, entry) in manifest.media.entries() {
            let (key, reason) = match entry {
                MediaEntry::Stored(stored) => (Some(stored.key.clone()), None),
                MediaEntry::Absent => (None, None),
                MediaEntry::Rejected { reason } | MediaEntry::Failed { reason, .. } => (None, Some(reason.clone())),
            };
            media.insert(
                archive::manifest_name(kind).to_owned(),
                MediaResult {
                    status: entry.status(),
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
