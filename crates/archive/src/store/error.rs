//! What can go wrong with the store, and whose fault it is: the store's (an outage, or its
//! configuration), the moment's (retry), or this media's. Decided from the S3 error code
//! and HTTP status, never from an error's text.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An S3 request failed (unreachable, refused, timed out); `fault` says whose fault.
    #[error("s3 {operation} failed: {detail}")]
    Request {
        operation: &'static str,
        detail: String,
        fault: StoreFault,
    },
    /// The object does not exist.
    #[error("no object at {key}")]
    NotFound { key: String },
    /// After writing, the store did not report the requested encryption; what this writer
    /// had just written has been deleted. The store or its configuration must change.
    #[error("store did not report the requested encryption {mode}; object deleted")]
    EncryptionNotReported { mode: &'static str },
    /// The object read back does not match what was written.
    #[error("stored object does not match what was written: {0}")]
    Mismatch(String),
    /// The store cannot be set up as configured.
    #[error("{0}")]
    Config(String),
    /// A manifest read back is not valid schema 1 JSON.
    #[error("manifest at {key} is not valid: {detail}")]
    BadManifest { key: String, detail: String },
    /// Writing to the local sink failed.
    #[error("cannot write the object out: {0}")]
    Sink(String),
    /// The store refused to read an SSE-C object with any key given: the object was
    /// written under another key (S3 answers AccessDenied, Garage InvalidRequest).
    #[error("the store refused the SSE-C key ({code}: {message})")]
    WrongKey { code: String, message: String },
    /// A conditional write lost: another writer changed the object since it was read.
    #[error("{key} was changed by another writer")]
    Conflict { key: String },
    /// The writer lost its delivery and stopped before this write.
    #[error("stopped before writing {key}: the delivery was lost")]
    Cancelled { key: String },
    /// A media key holds an object that is not the archiver's (no verified checksum, or
    /// not our metadata): it is not written over, and no retry can write there; an
    /// operator must look.
    #[error("{key} holds an object the archiver did not write (no verified checksum or not its metadata); it is left untouched: move it away, then refetch the session")]
    Occupied { key: String },
}

/// Whose fault a store error is, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// The store is unreachable, overloaded or failing (5xx, SlowDown, timeouts): hold the
    /// events until it answers; not the media's fault.
    Outage,
    /// The store refuses because of how it or the archiver is configured (AccessDenied,
    /// NoSuchBucket, a disabled KMS key, a refused header): an outage until fixed.
    Configuration,
    /// A moment's trouble that another request fixes (RequestTimeout, ExpiredToken,
    /// RequestTimeTooSkewed, a lost conditional write).
    Retryable,
    /// The store ignored the requested encryption.
    EncryptionNotHonoured,
    /// The bytes the store holds or received differ from what was sent.
    Mismatch,
    /// The store will not take an object this large.
    TooLarge,
    /// The writer stopped (its delivery was lost).
    Cancelled,
    /// Another object, not the archiver's, holds the key.
    Occupied,
}

impl StoreError {
    pub fn fault(&self) -> StoreFault {
        match self {
            StoreError::Request { fault, .. } => *fault,
            StoreError::NotFound { .. } | StoreError::Conflict { .. } => StoreFault::Retryable,
            StoreError::EncryptionNotReported { .. } => StoreFault::EncryptionNotHonoured,
            StoreError::Mismatch(_) => StoreFault::Mismatch,
            StoreError::Config(_) | StoreError::BadManifest { .. } | StoreError::WrongKey { .. } => {
                StoreFault::Configuration
            }
            StoreError::Sink(_) => StoreFault::Outage,
            StoreError::Cancelled { .. } => StoreFault::Cancelled,
            StoreError::Occupied { .. } => StoreFault::Occupied,
        }
    }

    /// Whether the same media may be tried again at once (a fresh download included).
    pub fn is_retryable(&self) -> bool {
        matches!(self.fault(), StoreFault::Retryable | StoreFault::Mismatch)
    }
}

/// The fault of an S3 error: by its code where it has one, else by its HTTP status, else
/// (no answer at all) an outage.
pub(crate) fn fault_of(code: Option<&str>, status: Option<u16>) -> StoreFault {
    match code {
        Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "503" | "500") => return StoreFault::Outage,
        Some(
            "RequestTimeout"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "RequestTimeTooSkewed"
            | "OperationAborted"
            | "ConditionalRequestConflict"
            | "PreconditionFailed",
        ) => return StoreFault::Retryable,
        Some("EntityTooLarge") => return StoreFault::TooLarge,
        Some("BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch" | "InvalidChecksum") => {
            return StoreFault::Mismatch
        }
        Some(code) if code.starts_with("KMS.") => return StoreFault::Configuration,
        _ => {}
    }
    match status {
        Some(408 | 409 | 412) => StoreFault::Retryable,
        Some(413) => StoreFault::TooLarge,
        Some(400..=499) => StoreFault::Configuration,
        _ => StoreFault::Outage,
    }
}

pub(crate) fn request_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|response| response.status().as_u16());
    let fault = match &err {
        SdkError::ConstructionFailure(_) => StoreFault::Configuration,
        SdkError::ServiceError(_) => fault_of(err.code(), status),
        _ => StoreFault::Outage,
    };
    StoreError::Request {
        operation,
        detail: DisplayErrorContext(&err).to_string(),
        fault,
    }
}

/// The codes a store answers a read whose SSE-C key is not the object's.
pub(crate) fn is_key_refusal(code: Option<&str>) -> bool {
    matches!(code, Some("AccessDenied" | "InvalidRequest" | "InvalidArgument"))
}

pub(crate) fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err.code(), Some("NoSuchKey" | "NotFound"))
        || err
            .raw_response()
            .is_some_and(|response| response.status().as_u16() == 404)
}

/// Whether a conditional write was refused because the object changed or exists.
pub(crate) fn is_condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err.code(), Some("PreconditionFailed" | "ConditionalRequestConflict"))
        || err
            .raw_response()
            .is_some_and(|response| matches!(response.status().as_u16(), 409 | 412))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_code_then_the_status() {
        let cases = [
            (Some("SlowDown"), Some(503), StoreFault::Outage),
            (None, Some(502), StoreFault::Outage),
            (None, None, StoreFault::Outage),
            (Some("AccessDenied"), Some(403), StoreFault::Configuration),
            (Some("NoSuchBucket"), Some(404), StoreFault::Configuration),
            (Some("KMS.DisabledException"), Some(400), StoreFault::Configuration),
            (Some("InvalidRequest"), Some(400), StoreFault::Configuration),
            (Some("RequestTimeout"), Some(400), StoreFault::Retryable),
            (Some("ExpiredToken"), Some(400), StoreFault::Retryable),
            (Some("RequestTimeTooSkewed"), Some(403), StoreFault::Retryable),
            (None, Some(412), StoreFault::Retryable),
            (None, Some(409), StoreFault::Retryable),
            (Some("EntityTooLarge"), Some(400), StoreFault::TooLarge),
            (Some("BadDigest"), Some(400), StoreFault::Mismatch),
            (Some("InvalidDigest"), Some(400), StoreFault::Mismatch),
        ];
        for (code, status, expected) in cases {
            assert_eq!(fault_of(code, status), expected, "{code:?} {status:?}");
        }
    }
}
