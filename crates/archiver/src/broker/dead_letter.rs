//! The dead-letter copy: the original message, body as it came, with why it failed.
//!
//! The worker (and `refetch --from-dlq`, putting back what it could not recover) publish
//! the copy themselves rather than rejecting the message into the queue's dead-letter
//! exchange, because a broker-side dead-letter cannot carry the reason. The copy must keep
//! what it holds: it carries no `expiration` (a producer's short per-message TTL must not
//! expire the evidence of a failure; the broker strips it only when it dead-letters
//! itself) and no `user_id` (the broker refuses a publish whose `user_id` is not the
//! publisher's own). What they said travels as headers.

use archive::Cause;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

/// Header that names why the message was dead-lettered, for people.
pub const REASON_HEADER: &str = "x-archiver-reason";
/// Header with the machine-readable cause code (`url-expired`, `source-not-found`, ...).
pub const CAUSE_HEADER: &str = "x-archiver-cause";
/// Headers keeping the original `expiration` and `user_id`.
const ORIGINAL_EXPIRATION_HEADER: &str = "x-archiver-original-expiration";
const ORIGINAL_USER_ID_HEADER: &str = "x-archiver-original-user-id";

/// The properties of a dead-letter copy of a message that had `original`.
pub fn dead_letter_copy(original: &BasicProperties, reason: &str, cause: Cause) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(LongString::from(reason)));
    headers.insert(
        CAUSE_HEADER.into(),
        AMQPValue::LongString(LongString::from(cause.as_str())),
    );
    keep_as_header(&mut headers, ORIGINAL_EXPIRATION_HEADER, original.expiration().as_ref());
    keep_as_header(&mut headers, ORIGINAL_USER_ID_HEADER, original.user_id().as_ref());
    let mut copy = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
    if let Some(content_type) = original.content_type() {
        copy = copy.with_content_type(content_type.clone());
    }
    if let Some(content_encoding) = original.content_encoding() {
        copy = copy.with_content_encoding(content_encoding.clone());
    }
    if let Some(message_id) = original.message_id() {
        copy = copy.with_message_id(message_id.clone());
    }
    if let Some(correlation_id) = original.correlation_id() {
        copy = copy.with_correlation_id(correlation_id.clone());
    }
    if let Some(timestamp) = original.timestamp() {
        copy = copy.with_timestamp(*timestamp);
    }
    if let Some(kind) = original.kind() {
        copy = copy.with_type(kind.clone());
    }
    if let Some(app_id) = original.app_id() {
        copy = copy.with_app_id(app_id.clone());
    }
    copy
}

fn keep_as_header(headers: &mut FieldTable, name: &str, value: Option<&lapin::types::ShortString>) {
    if let Some(value) = value {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value.as_str())));
    }
}

/// The cause a dead-letter copy names, if it names a known one.
pub fn cause_of(properties: &BasicProperties) -> Option<Cause> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(CAUSE_HEADER)? {
        AMQPValue::LongString(code) => Cause::from_code(&String::from_utf8_lossy(code.as_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_keeps_what_matters_and_nothing_that_expires() {
        let original = BasicProperties::default()
            .with_expiration("3000".into())
            .with_user_id("producer".into())
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_content_type("application/json".into());
        let copy = dead_letter_copy(&original, "video: source answered 404", Cause::SourceNotFound);
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.user_id(), &None);
        assert_eq!(copy.message_id().as_ref().map(|id| id.as_str()), Some("m-1"));
        assert_eq!(copy.timestamp(), &Some(1_700_000_000));
        assert_eq!(copy.delivery_mode(), &Some(2));
        let headers = copy.headers().clone().unwrap_or_default();
        let text = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(value)) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(text(REASON_HEADER), "video: source answered 404");
        assert_eq!(text(CAUSE_HEADER), "source-not-found");
        assert_eq!(text(ORIGINAL_EXPIRATION_HEADER), "3000");
        assert_eq!(text(ORIGINAL_USER_ID_HEADER), "producer");
        assert_eq!(cause_of(&copy), Some(Cause::SourceNotFound));
    }
}
