//! Unit tests of the event module: parsing, hostile bodies, expiry.

use super::*;
use time::macros::datetime;

const GOOD: &str = r#"{
    "session_id": "11111111-2222-3333-4444-55555555AAAA",
    "tenant": "acme",
    "issued_at": "2026-11-25T10:00:00Z",
    "extra": {"ignored": true},
    "face": {
        "status": "In Review", "face_match_status": "Approved", "liveness_status": "Not Finished",
        "face_match_similarity": 95.43, "liveness_confidence": 65,
        "source_image": "https://media.example/s.jpg?X-Amz-Date=20261125T100000Z&X-Amz-Expires=600",
        "target_image": null
    }
}"#;

#[test]
fn a_good_event_is_parsed_and_normalised() {
    let event = parse_event(GOOD.as_bytes()).unwrap();
    assert_eq!(event.session_id, "11111111-2222-3333-4444-55555555aaaa");
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.issued_at, Some(datetime!(2026-11-25 10:00:00 UTC)));
    assert_eq!(event.face.status, Status::InReview);
    assert_eq!(event.face.liveness_status, Status::NotFinished);
    assert_eq!(event.face.liveness_confidence, 65.0);
    assert!(event.face.target_image.is_none());
    assert!(event.face.video_url.is_none());
    let shown = format!("{event:?}");
    assert!(
        shown.contains("https://media.example/s.jpg") && !shown.contains("X-Amz"),
        "{shown}"
    );
}

#[test]
fn tenant_defaults_to_default() {
    let body = GOOD.replace(r#""tenant": "acme","#, "");
    assert_eq!(parse_event(body.as_bytes()).unwrap().tenant, "default");
}

#[test]
fn each_broken_rule_names_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#""session_id": "11111111-2222-3333-4444-55555555AAAA""#,
            r#""session_id": "nope""#,
            "session_id: must be a UUID, got \"nope\"",
        ),
        (
            r#""session_id": "11111111-2222-3333-4444-55555555AAAA","#,
            "",
            "session_id: is required",
        ),
        (r#""tenant": "acme""#, r#""tenant": "Acme""#, "tenant: must match"),
        (r#""tenant": "acme""#, r#""tenant": "-x""#, "tenant: must match"),
        (
            r#""issued_at": "2026-11-25T10:00:00Z""#,
            r#""issued_at": "yesterday""#,
            "issued_at: must be an RFC 3339 time",
        ),
        (
            r#""status": "In Review""#,
            r#""status": "Maybe""#,
            "face.status: must be one of",
        ),
        (
            r#""face_match_status": "Approved""#,
            r#""face_match_status": 3"#,
            "face.face_match_status: must be one of",
        ),
        (
            r#""liveness_confidence": 65"#,
            r#""liveness_confidence": 140"#,
            "face.liveness_confidence: must be a number from 0 to 100, got 140",
        ),
        (
            r#""face_match_similarity": 95.43"#,
            r#""face_match_similarity": -1"#,
            "face.face_match_similarity: must be a number from 0 to 100, got -1",
        ),
        (
            r#""face_match_similarity": 95.43"#,
            r#""face_match_similarity": "95""#,
            "face.face_match_similarity: must be a number",
        ),
        (
            r#""target_image": null"#,
            r#""target_image": "http://media.example/t.jpg?secret=1""#,
            "face.target_image: must be an https URL, got scheme http",
        ),
        (
            r#""target_image": null"#,
            r#""target_image": 7"#,
            "face.target_image: must be an https URL or null",
        ),
    ];
    for (from, to, expected) in cases {
        let body = GOOD.replace(from, to);
        assert_ne!(body, GOOD, "case {expected} did not change the event");
        let err = parse_event(body.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err:?} should start with {expected:?}");
        assert!(!err.contains("secret"), "an error leaked a URL query: {err}");
    }
}

/// Hostile bodies: each refused with a reason that names the problem, none panics.
#[test]
fn hostile_bodies_are_refused_with_a_reason() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_in_event = GOOD.replacen("\"extra\": {\"ignored\": true}", &format!("\"extra\": {deep}"), 1);
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_EVENT_BYTES));
    let duplicate_session = GOOD.replacen(
        "\"tenant\": \"acme\",",
        "\"tenant\": \"acme\", \"session_id\": \"x\",",
        1,
    );
    // The same key spelt with an escape is the same key.
    let duplicate_escaped = GOOD.replacen(
        "\"tenant\": \"acme\",",
        "\"tenant\": \"acme\", \"session\\u005fid\": \"x\",",
        1,
    );
    let duplicate_nested = GOOD.replacen(
        "\"status\": \"In Review\",",
        "\"status\": \"In Review\", \"status\": \"Approved\",",
        1,
    );
    let mut invalid_utf8 = GOOD.as_bytes().to_vec();
    let at = GOOD.find("acme").unwrap();
    invalid_utf8[at] = 0xff;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (big.into_bytes(), "more than the limit of 1048576 bytes"),
        (deep.clone().into_bytes(), "recursion limit exceeded"),
        (deep_in_event.into_bytes(), "recursion limit exceeded"),
        (duplicate_session.into_bytes(), "duplicate key \"session_id\""),
        (duplicate_escaped.into_bytes(), "duplicate key \"session_id\""),
        (duplicate_nested.into_bytes(), "duplicate key \"status\""),
        (invalid_utf8, "invalid unicode code point"),
        (GOOD.replacen("95.43", "1e400", 1).into_bytes(), "number out of range"),
        (
            GOOD.replacen("95.43", "100.0000001", 1).into_bytes(),
            "face.face_match_similarity: must be a number from 0 to 100",
        ),
        (
            GOOD.replacen("65", "18446744073709551616", 1).into_bytes(),
            "face.liveness_confidence: must be a number from 0 to 100",
        ),
        (
            GOOD.replacen("\"Approved\"", "\"APPROVED\"", 1).into_bytes(),
            "face.face_match_status: must be one of",
        ),
        (
            GOOD.replacen("\"In Review\"", "\"In\\u0000Review\"", 1).into_bytes(),
            "face.status: must be one of",
        ),
        (
            GOOD.replacen("\"acme\"", "[\"acme\"]", 1).into_bytes(),
            "tenant: must be a string, got an array",
        ),
        (
            GOOD.replacen("\"target_image\": null", "\"target_image\": {\"url\": 1}", 1)
                .into_bytes(),
            "face.target_image: must be an https URL or null",
        ),
        (
            GOOD.replacen(
                "https://media.example/s.jpg",
                "https://user:SECRETPW@media.example/s.jpg",
                1,
            )
            .into_bytes(),
            "face.source_image: must be an https URL without user info",
        ),
        (
            GOOD.replacen("https://media.example/s.jpg", "https://[::1/s.jpg", 1)
                .into_bytes(),
            "face.source_image: must be an https URL",
        ),
        (
            GOOD.replacen("https://media.example/s.jpg", "file:///etc/passwd", 1)
                .into_bytes(),
            "face.source_image: must be an https URL, got scheme file",
        ),
        (
            b"\"a string\"".to_vec(),
            "event is not a JSON object: found \"a string\"",
        ),
        (b"{} trailing".to_vec(), "trailing characters"),
    ];
    for (body, expected) in cases {
        let err = parse_event(&body).expect_err(expected).to_string();
        assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        assert!(
            !err.contains("SECRETPW") && !err.contains("X-Amz"),
            "an error leaked a URL: {err}"
        );
    }
}

#[test]
fn non_json_and_non_objects_are_refused() {
    for body in [&b"\xff\xfe"[..], b"[1]", b"", b"{"] {
        assert!(matches!(parse_event(body), Err(EventError::NotJson(_))));
    }
}

#[test]
fn the_earliest_expiry_wins() {
    let event = parse_event(GOOD.as_bytes()).unwrap();
    let received = Received {
        amqp_timestamp: None,
        received_at: datetime!(2026-11-25 12:00:00 UTC),
    };
    let ttl = std::time::Duration::from_secs(3600);
    let expiry = event_expiry(&event, &received, ttl);
    assert_eq!(expiry, datetime!(2026-11-25 11:00:00 UTC));
    let source = event.face.source_image.as_ref().unwrap();
    assert_eq!(media_expiry(expiry, source), datetime!(2026-11-25 10:10:00 UTC));

    let mut no_issued = event.clone();
    no_issued.issued_at = None;
    assert_eq!(
        event_expiry(&no_issued, &received, ttl),
        datetime!(2026-11-25 13:00:00 UTC)
    );
    let stamped = Received {
        amqp_timestamp: Some(datetime!(2026-11-25 09:00:00 UTC)),
        ..received
    };
    assert_eq!(
        event_expiry(&no_issued, &stamped, ttl),
        datetime!(2026-11-25 10:00:00 UTC)
    );

    let unix = Url::parse("https://cdn.example/v.mp4?Expires=1795000000&Signature=x").unwrap();
    assert_eq!(
        url_own_expiry(&unix),
        OffsetDateTime::from_unix_timestamp(1_795_000_000).ok()
    );
    assert_eq!(url_own_expiry(&Url::parse("https://cdn.example/v.mp4").unwrap()), None);
}

/// Regression: an `issued_at` in the future was trusted, so its URLs counted as valid
/// until an hour after that future time.
#[test]
fn a_start_in_the_future_is_clamped_to_the_receipt() {
    let ttl = std::time::Duration::from_secs(3600);
    let received_at = datetime!(2026-11-25 12:00:00 UTC);
    let mut event = parse_event(GOOD.as_bytes()).unwrap();
    let cases = [
        // (issued_at, amqp_timestamp, expected expiry)
        (
            Some(datetime!(2100-01-01 00:00:00 UTC)),
            None,
            datetime!(2026-11-25 13:00:00 UTC),
        ),
        (
            Some(datetime!(2026-11-25 12:00:01 UTC)),
            None,
            datetime!(2026-11-25 13:00:00 UTC),
        ),
        (
            None,
            Some(datetime!(2030-01-01 00:00:00 UTC)),
            datetime!(2026-11-25 13:00:00 UTC),
        ),
        // The past and the present are kept as they are.
        (
            Some(datetime!(2026-11-25 11:30:00 UTC)),
            None,
            datetime!(2026-11-25 12:30:00 UTC),
        ),
        (Some(received_at), None, datetime!(2026-11-25 13:00:00 UTC)),
        // An AMQP timestamp of 0, or absurdly far in the past, counts as absent.
        (
            None,
            Some(datetime!(1970-01-01 00:00:00 UTC)),
            datetime!(2026-11-25 13:00:00 UTC),
        ),
        (
            None,
            Some(datetime!(2024-01-01 00:00:00 UTC)),
            datetime!(2026-11-25 13:00:00 UTC),
        ),
    ];
    for (issued_at, amqp_timestamp, expected) in cases {
        event.issued_at = issued_at;
        let received = Received {
            amqp_timestamp,
            received_at,
        };
        assert_eq!(
            event_expiry(&event, &received, ttl),
            expected,
            "issued_at {issued_at:?}, amqp timestamp {amqp_timestamp:?}"
        );
    }
}
