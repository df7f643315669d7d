//! After every write, what the store itself reports: the checksum it verified, the length
//! and the encryption. Only then is a media stored. The one delete the archiver ever makes
//! is here: an object this writer has just written (its own ETag) that the store reports
//! without the requested encryption.

use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};

use super::error::request_error;
use super::sse::SseC;
use super::{Store, StoreError};
use crate::config::Sse;

impl Store {
    /// Checks the object this writer has just written (`own_etag`): the store must report
    /// the requested encryption, `bytes` and the SHA-256 checksum `expected` (base64, with
    /// `-N` for a multipart object's composite).
    pub(crate) async fn verify_written(
        &self,
        key: &str,
        bytes: u64,
        expected: &str,
        own_etag: &str,
    ) -> Result<(), StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .sse_c(&self.sse)
            .send()
            .await
            .map_err(|err| request_error("HeadObject", err))?;
        // Another writer replaced the object between our write and this read (a store that
        // ignores write conditions, as Garage does): what is there is theirs to answer for,
        // and the caller reads, merges or takes it as a lost race.
        if !own_etag.is_empty() && head.e_tag().is_some_and(|seen| seen != own_etag) {
            return Err(StoreError::Conflict { key: key.to_string() });
        }
        let encrypted = match &self.sse {
            Sse::CustomerKey(customer) => {
                head.sse_customer_algorithm() == Some("AES256")
                    && head.sse_customer_key_md5() == Some(customer.md5_base64())
            }
            Sse::Kms { key_id } => {
                head.server_side_encryption() == Some(&ServerSideEncryption::AwsKms)
                    && super::is_kms_key(head.ssekms_key_id(), key_id.as_deref())
            }
            Sse::Aes256 => head.server_side_encryption() == Some(&ServerSideEncryption::Aes256),
        };
        if !encrypted {
            self.delete_own(key, own_etag, head.e_tag()).await;
            return Err(StoreError::EncryptionNotReported { mode: self.sse.mode() });
        }
        let reported = head.checksum_sha256().unwrap_or_default();
        if head.content_length() != Some(bytes as i64) || reported != expected {
            return Err(StoreError::Mismatch(format!(
                "{key}: the store reports {:?} bytes and checksum {reported:?}, expected {bytes} and {expected:?}",
                head.content_length(),
            )));
        }
        Ok(())
    }

    /// Deletes what this writer has just written, only while the store still shows it
    /// (same ETag, and `If-Match` where the store honours it): never another writer's object.
    async fn delete_own(&self, key: &str, own_etag: &str, seen_etag: Option<&str>) {
        if own_etag.is_empty() || seen_etag != Some(own_etag) {
            tracing::error!(
                key,
                mode = self.sse.mode(),
                "store did not report the requested encryption; the object is not ours to delete"
            );
            return;
        }
        tracing::error!(
            key,
            mode = self.sse.mode(),
            "store did not report the requested encryption; deleting what was just written"
        );
        let deleted = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(own_etag)
            .send()
            .await;
        if let Err(err) = deleted {
            tracing::error!(key, error = %request_error("DeleteObject", err), "could not delete the unencrypted object");
        }
    }
}
