//! `archiver get KEY [-o FILE]`: downloads an archived object, decrypted with the
//! configured SSE-C key, to FILE or stdout (CONTRACT.md section 5).

use std::path::Path;

use anyhow::anyhow;
use archive::{Archiver, StoreError};

use crate::cli::Settings;
use crate::config;
use crate::exit::{CommandError, Outcome};
use crate::logging;

pub async fn run(key: &str, output: Option<&Path>, settings: &Settings) -> Result<Outcome, CommandError> {
    logging::init(&settings.log_format)?;
    let archive_config = config::archive_config(settings)?;
    let sse_c = matches!(archive_config.store.sse, archive::Sse::CustomerKey(_));
    if key.is_empty() || key.starts_with('/') {
        return Err(CommandError::usage(format!("KEY must be an object key such as face-reports/acme/<session>/source.jpg, got {key:?}")));
    }
    let archiver = Archiver::new(archive_config)
        .await
        .map_err(|err| CommandError::usage(format!("cannot set up the archive: {err}")))?;
    let result = match output {
        None => archiver.get_object(key, tokio::io::stdout()).await,
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .map_err(|err| CommandError::usage(format!("cannot create {}: {err}", path.display())))?;
            let result = archiver.get_object(key, file).await;
            if result.is_err() {
                // A partial download must not pass for the object.
                tokio::fs::remove_file(path).await.ok();
            }
            result
        }
    };
    match result {
        Ok(bytes) => {
            tracing::debug!(key, bytes, "object written");
            Ok(Outcome::Done)
        }
        Err(err @ StoreError::NotFound { .. }) => Err(CommandError::Failed(anyhow!("{err}"))),
        Err(StoreError::Request { detail, .. }) if sse_c && key_refusal(&detail).is_some() => {
            let said = key_refusal(&detail).unwrap_or_default();
            Err(CommandError::Failed(anyhow!(
                "cannot get {key}: the store refused the SSE-C key ({said}); an object written before a key rotation needs \
                 its own key: pass it with ARCHIVER_SSE_C_KEY or ARCHIVER_SSE_C_KEY_FILE (the manifest's encryption.key_id names it)"
            )))
        }
        Err(err) => Err(CommandError::Failed(anyhow!("cannot get {key}: {err}"))),
    }
}

/// The store's code and message when it refused a read for its SSE-C key: S3 answers
/// AccessDenied (403), Garage InvalidRequest (400). Taken from the SDK's error text, as
/// `StoreError::Request` keeps only that; the full text is a page of SDK internals.
fn key_refusal(detail: &str) -> Option<String> {
    let field = |name: &str| {
        let open = format!("{name}: Some(\"");
        let start = detail.find(&open)? + open.len();
        let end = detail[start..].find('"')?;
        Some(&detail[start..start + end])
    };
    let code = field("code")?;
    matches!(code, "AccessDenied" | "InvalidRequest" | "InvalidArgument").then(|| format!("{code}: {}", field("message").unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::key_refusal;

    #[test]
    fn key_refusals_are_told_apart() {
        let garage = r#"service error: unhandled error (InvalidRequest): Error { code: "InvalidRequest", message: "Bad request: Invalid encryption key" } (ServiceError(ServiceError { source: Unhandled(Unhandled { source: ErrorMetadata { code: Some("InvalidRequest"), message: Some("Bad request: Invalid encryption key"), extras: None } }) }))"#;
        assert_eq!(key_refusal(garage).as_deref(), Some("InvalidRequest: Bad request: Invalid encryption key"));
        assert_eq!(key_refusal(r#"ErrorMetadata { code: Some("SlowDown"), message: Some("x") }"#), None);
        assert_eq!(key_refusal("dispatch failure: connection refused"), None);
    }
}
