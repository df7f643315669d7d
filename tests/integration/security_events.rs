//! Hostile events through the real broker (issue 7): oversized, deeply nested, wrongly
//! typed, duplicate keys, invalid UTF-8, numbers out of range, unknown statuses, URLs that
//! are not allowed. Each is dead-lettered at once with a reason naming the problem, the
//! worker keeps running, and a good event published after them is archived by it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::support::{SECRET_QUERY_MARKER, SECRET_SIGNATURE};
use crate::worker_harness::{assert_exit_0, session_id, stop, WorkerTest};

/// The hostile bodies and the text each dead letter's reason must contain.
fn hostile_events(test: &WorkerTest) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = serde_json::to_string(&test.good_event(&session_id(1))).expect("encode");
    let replace = |from: &str, to: &str| {
        let changed = good.replacen(from, to, 1);
        assert_ne!(changed, good, "{from:?} is not in the good event");
        changed.into_bytes()
    };
    let mut invalid_utf8 = good.clone().into_bytes();
    let at = good.find("In Review").expect("a status");
    invalid_utf8[at + 2] = 0xc3; // a lead byte followed by ASCII: not UTF-8
    let source = test.media.url("/source.jpg");
    let http_source = source.replacen("https://", "http://", 1);
    let userinfo_source = source.replacen("https://", "https://user:pw@", 1);
    vec![
        (
            "2 MiB body",
            format!(r#"{{"pad": "{}"}}"#, "x".repeat(2 * 1024 * 1024)).into_bytes(),
            "more than the limit of 1048576 bytes",
        ),
        (
            "deep nesting",
            "[".repeat(100_000).into_bytes(),
            "recursion limit exceeded",
        ),
        (
            "deep nesting inside the event",
            replace(
                r#""tenant""#,
                &format!(r#""x": {}{}, "tenant""#, "[".repeat(200), "]".repeat(200)),
            ),
            "recursion limit exceeded",
        ),
        (
            "session_id of the wrong type",
            replace(&format!(r#""{}""#, session_id(1)), "7"),
            "session_id: must be a UUID, got 7",
        ),
        (
            "face of the wrong type",
            replace(r#""face":{"#, r#""face":[],"unused":{"#),
            "face: must be an object, got an array",
        ),
        (
            "duplicate key",
            replace(
                r#""tenant""#,
                r#""session_id":"00000000-0000-4000-8000-00000000ffff","tenant""#,
            ),
            r#"duplicate key "session_id""#,
        ),
        ("invalid UTF-8", invalid_utf8, "invalid unicode code point"),
        ("number out of range", replace("95.43", "1e400"), "number out of range"),
        (
            "score out of range",
            replace("95.43", "100.5"),
            "face.face_match_similarity: must be a number from 0 to 100, got 100.5",
        ),
        (
            "unknown status",
            replace(r#""liveness_status":"In Review""#, r#""liveness_status":"Pending""#),
            r#"face.liveness_status: must be one of Approved, Rejected, In Review, Not Finished, got "Pending""#,
        ),
        (
            "plain http URL",
            replace(&source, &http_source),
            "face.source_image: must be an https URL, got scheme http",
        ),
        (
            "URL with user info",
            replace(&source, &userinfo_source),
            "face.source_image: must be an https URL without user info",
        ),
        ("empty body", Vec::new(), "EOF while parsing"),
        ("not an object", b"[1, 2, 3]".to_vec(), "event is not a JSON object"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_are_dead_lettered_and_the_worker_goes_on() {
    let test = WorkerTest::new("hostile").await;
    let mut worker = test.start_worker(&[]);
    let hostile = hostile_events(&test);
    let mut expected = BTreeMap::new();
    for (name, body, reason) in &hostile {
        let message_id = test.publish_bytes(body).await;
        expected.insert(message_id, (*name, *reason));
    }
    let good_id = test.publish(&test.good_event(&session_id(2))).await;

    let letters = test.dead_letters(hostile.len(), Duration::from_secs(60)).await;
    for (message_id, _body, reason) in &letters {
        let (name, wanted) = expected
            .remove(message_id)
            .unwrap_or_else(|| panic!("unexpected dead letter {message_id}: {reason}"));
        assert!(reason.starts_with("invalid event: "), "{name}: {reason}");
        assert!(
            reason.contains(wanted),
            "{name}: reason {reason:?} should contain {wanted:?}"
        );
        assert!(
            reason.len() < 400,
            "{name}: a reason must stay short, got {} bytes",
            reason.len()
        );
        assert!(
            !reason.contains(SECRET_QUERY_MARKER) && !reason.contains(SECRET_SIGNATURE),
            "{name}: {reason}"
        );
    }
    assert!(expected.is_empty(), "not dead-lettered: {expected:?}");

    // Hostile events may have result events of their own (when they name a session): skip them.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let good = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let result = test.results(1, left).await.remove(0);
        if result["message_id"] == json!(good_id) {
            break result;
        }
    };
    assert_eq!(good["outcome"], "archived", "{good}");
    test.assert_media_stored(&session_id(2)).await;
    assert!(worker.is_running(), "the worker stopped");
    assert_eq!(test.queue_depth().await, 0);

    assert_exit_0(&stop(worker, Duration::from_secs(30)));
    test.clean_up().await;
}
