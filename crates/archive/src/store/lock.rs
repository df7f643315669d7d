//! S3 Object Lock on writes: `x-amz-object-lock-mode` and
//! `x-amz-object-lock-retain-until-date` (the write time plus the retention period) on
//! every PUT and CreateMultipartUpload, when the operator configured a mode. S3 then refuses
//! to delete or overwrite the version before that date (COMPLIANCE: nobody; GOVERNANCE:
//! only with `s3:BypassGovernanceRetention`, which the archiver never sends).

use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::ObjectLockMode;
use time::OffsetDateTime;

use crate::config::{LockMode, ObjectLock};

/// A request that writes an object and so may carry its lock.
pub(crate) trait LockWrite: Sized {
    fn lock_headers(self, mode: ObjectLockMode, until: DateTime) -> Self;

    /// Adds the lock headers when a lock is configured: retained until now + the period.
    fn object_lock(self, lock: Option<&ObjectLock>) -> Self {
        match lock {
            Some(lock) => {
                let until = OffsetDateTime::now_utc() + lock.retain;
                let mode = match lock.mode {
                    LockMode::Governance => ObjectLockMode::Governance,
                    LockMode::Compliance => ObjectLockMode::Compliance,
                };
                self.lock_headers(mode, DateTime::from_secs(until.unix_timestamp()))
            }
            None => self,
        }
    }
}

macro_rules! impl_lock_write {
    ($($builder:ty),*) => {$(
        impl LockWrite for $builder {
            fn lock_headers(self, mode: ObjectLockMode, until: DateTime) -> Self {
                self.object_lock_mode(mode).object_lock_retain_until_date(until)
            }
        }
    )*};
}

impl_lock_write!(PutObjectFluentBuilder, CreateMultipartUploadFluentBuilder);
