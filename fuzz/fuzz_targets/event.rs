//! Fuzzes report-event parsing (crates/archive/src/event/): no input may panic, and an
//! accepted event must meet every rule of CONTRACT.md section 1.
//!
//! The module is compiled here from its source file rather than through the `archive`
//! crate: that crate pulls in aws-sdk-s3 and reqwest, which would take the sanitizer build
//! many minutes and add nothing to what is fuzzed. It uses no other module of the crate.
#![no_main]

#[path = "../../crates/archive/src/event/mod.rs"]
#[allow(dead_code)]
mod event;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = event::parse_event(data) else { return };
    assert!(data.len() <= event::MAX_EVENT_BYTES);
    assert_eq!(parsed.session_id.len(), 36);
    assert_eq!(parsed.session_id, parsed.session_id.to_ascii_lowercase());
    assert!(event::is_valid_tenant(&parsed.tenant));
    for score in [parsed.face.face_match_similarity, parsed.face.liveness_confidence] {
        assert!((0.0..=100.0).contains(&score), "score {score}");
    }
    for url in [
        &parsed.face.source_image,
        &parsed.face.target_image,
        &parsed.face.video_url,
    ]
    .into_iter()
    .flatten()
    {
        assert_eq!(url.scheme(), "https");
        assert!(url.username().is_empty() && url.password().is_none());
        assert!(url.host_str().is_some_and(|host| !host.is_empty()));
    }
    // The expiry arithmetic saturates rather than overflowing on any accepted event.
    let received = event::Received {
        amqp_timestamp: None,
        received_at: time::OffsetDateTime::now_utc(),
    };
    let expiry = event::event_expiry(&parsed, &received, std::time::Duration::from_secs(u64::MAX));
    for url in [
        &parsed.face.source_image,
        &parsed.face.target_image,
        &parsed.face.video_url,
    ]
    .into_iter()
    .flatten()
    {
        let _ = event::media_expiry(expiry, url);
    }
});
