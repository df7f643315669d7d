//! Server-side encryption on every S3 request: the SSE-C headers on reads and writes, the
//! `aws:kms`/`AES256` request on writes. A trait on the SDK's request builders, so that
//! each call site says `.sse_c(sse)` or `.sse_write(sse)` like any other builder method.

use aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::operation::head_object::builders::HeadObjectFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::config::Sse;

/// A request that carries SSE-C headers (every request on an SSE-C object).
pub(crate) trait SseC: Sized {
    fn sse_c_headers(self, algorithm: &str, key: &str, md5: &str) -> Self;

    /// Adds the SSE-C headers (algorithm, key, key MD5) when the mode is `sse-c`.
    fn sse_c(self, sse: &Sse) -> Self {
        match sse {
            Sse::CustomerKey(key) => self.sse_c_headers("AES256", key.key_base64(), key.md5_base64()),
            _ => self,
        }
    }
}

/// A request that writes an object and so asks for its encryption.
pub(crate) trait SseWrite: SseC {
    fn server_side(self, sse: ServerSideEncryption, kms_key_id: Option<String>) -> Self;

    /// Adds the encryption request of the configured mode.
    fn sse_write(self, sse: &Sse) -> Self {
        match sse {
            Sse::CustomerKey(_) => self.sse_c(sse),
            Sse::Kms { key_id } => self.server_side(ServerSideEncryption::AwsKms, key_id.clone()),
            Sse::Aes256 => self.server_side(ServerSideEncryption::Aes256, None),
        }
    }
}

// The SDK's builders share these methods by name but not by trait; a macro local to this
// file writes the six identical impls.
macro_rules! impl_sse_c {
    ($($builder:ty),*) => {$(
        impl SseC for $builder {
            fn sse_c_headers(self, algorithm: &str, key: &str, md5: &str) -> Self {
                self.sse_customer_algorithm(algorithm).sse_customer_key(key).sse_customer_key_md5(md5)
            }
        }
    )*};
}

impl_sse_c!(
    PutObjectFluentBuilder,
    CreateMultipartUploadFluentBuilder,
    UploadPartFluentBuilder,
    CompleteMultipartUploadFluentBuilder,
    HeadObjectFluentBuilder,
    GetObjectFluentBuilder
);

macro_rules! impl_sse_write {
    ($($builder:ty),*) => {$(
        impl SseWrite for $builder {
            fn server_side(self, sse: ServerSideEncryption, kms_key_id: Option<String>) -> Self {
                self.server_side_encryption(sse).set_ssekms_key_id(kms_key_id)
            }
        }
    )*};
}

impl_sse_write!(PutObjectFluentBuilder, CreateMultipartUploadFluentBuilder);
