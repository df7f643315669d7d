//! The audit trail (docs/contract.md section 9): one object per access or erasure under
//! `{prefix}_audit/{tenant}/{yyyy}/{mm}/{dd}/{uuid}.json`, a new key each time, written with
//! `If-None-Match: *`, never overwritten and never holding an object's contents. The tenant
//! rule (lower-case letters, digits, `-`) keeps `_audit` out of the tenants' own keys.

use futures::stream::{self, StreamExt as _};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{Condition, StoreError};
use crate::Archiver;

/// Audit records read at once by [`Archiver::audit_records`].
const READ_CONCURRENCY: usize = 16;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    /// `archiver get`: an object was read.
    Get,
    /// `archiver erase`: a session was erased.
    Erase,
}

/// One audit record: who did what to which object, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub action: AuditAction,
    pub tenant: String,
    pub session_id: String,
    pub key: String,
    pub by: String,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Archiver {
    /// Appends `record` to its tenant's audit trail; returns the new record's key.
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<String, StoreError> {
        let key = format!(
            "{}{}{}.json",
            self.audit_prefix(&record.tenant),
            day_folder(record.at),
            uuid::Uuid::new_v4()
        );
        let body = serde_json::to_vec_pretty(record).map_err(|err| StoreError::BadManifest {
            key: key.clone(),
            detail: format!("cannot encode: {err}"),
        })?;
        self.store()
            .put_object(&key, body.into(), "application/json", &[], &Condition::IfAbsent)
            .await?;
        Ok(key)
    }

    /// The tenant's audit records at or after `since` (all of them without), oldest first.
    /// Only the days from `since` on are listed.
    pub async fn audit_records(
        &self,
        tenant: &str,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let prefix = self.audit_prefix(tenant);
        let start_after = since.map(|since| format!("{prefix}{}", day_folder(since)));
        let objects = self.store().list_objects(&prefix, start_after.as_deref()).await?;
        let read = stream::iter(objects)
            .map(|object| async move {
                let mut body = Vec::new();
                self.store().get_object(&object.key, &mut body).await?;
                serde_json::from_slice::<AuditRecord>(&body).map_err(|err| StoreError::BadManifest {
                    key: object.key.clone(),
                    detail: err.to_string(),
                })
            })
            .buffered(READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut records = read.into_iter().collect::<Result<Vec<_>, _>>()?;
        records.retain(|record| since.is_none_or(|since| record.at >= since));
        records.sort_by_key(|record| record.at);
        Ok(records)
    }

    /// `{prefix}_audit/{tenant}/`.
    fn audit_prefix(&self, tenant: &str) -> String {
        format!("{}_audit/{tenant}/", self.store().prefix())
    }
}

/// `yyyy/mm/dd/` of a time, in UTC.
fn day_folder(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}/{:02}/{:02}/", at.year(), u8::from(at.month()), at.day())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn days_are_utc_folders_that_sort_in_time_order() {
        assert_eq!(super::day_folder(datetime!(2026-11-30 23:30:00 -02:00)), "2026/12/01/");
        assert_eq!(super::day_folder(datetime!(2026-01-05 00:00:00 UTC)), "2026/01/05/");
    }
}
