//! `archiver worker` against the real broker, S3 and an HTTPS media server: what becomes
//! of good, bad, failing and duplicated events, and a graceful shutdown.

use std::time::{Duration, Instant};

use lapin::BasicProperties;
use serde_json::json;

use crate::support::{Behaviour, SECRET_QUERY_MARKER};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest, TARGET, VIDEO};

const SMALL_TARGET: &[u8] = include_bytes!("../../fixtures/media/target-1280x719.jpg");
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_events_and_publishes_a_result_for_each() {
    let test = WorkerTest::new("worker-archives").await;
    test.media.route("/small-target.jpg", Behaviour::ok(SMALL_TARGET));
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let worker = test.start_worker(&[("ARCHIVER_METRICS_ADDR", &metrics_addr)]);
    let get = |path: &str| {
        let url = format!("http://{metrics_addr}{path}");
        async move {
            match reqwest::get(&url).await {
                Ok(response) => Some((response.status().as_u16(), response.text().await.unwrap_or_default())),
                Err(_) => None,
            }
        }
    };
    eventually("/readyz answers 200", WAIT, || async {
        matches!(get("/readyz").await, Some((200, _)))
    })
    .await;

    let cases = [
        (
            session_id(1),
            [Some("/source.jpg"), Some("/target.jpg"), Some("/video.mp4")],
            ["stored", "stored", "stored"],
        ),
        (
            session_id(2),
            [Some("/source.jpg"), Some("/target.jpg"), None],
            ["stored", "stored", "absent"],
        ),
        (
            session_id(3),
            [Some("/source.jpg"), Some("/small-target.jpg"), Some("/video.mp4")],
            ["stored", "rejected", "stored"],
        ),
    ];
    let mut published = Vec::new();
    for (session, paths, _) in &cases {
        published.push(test.publish(&test.event(session, *paths)).await);
    }

    let results = test.results(cases.len(), WAIT).await;
    for ((session, _, statuses), message_id) in cases.iter().zip(&published) {
        let result = results
            .iter()
            .find(|r| &r["message_id"] == message_id)
            .expect("a result per event");
        assert_eq!(result["outcome"], "archived", "{result}");
        assert_eq!(result["routing_key"], "archived");
        assert_eq!(result["session_id"], json!(session));
        assert_eq!(result["tenant"], json!(test.tenant));
        assert_eq!(result["manifest_key"], json!(test.key(session, "manifest.json")));
        let manifest = test.manifest(session).await;
        assert_eq!(manifest["schema"], 1);
        for (name, status) in ["source_image", "target_image", "video"].iter().zip(statuses) {
            assert_eq!(result["media"][name]["status"], *status, "{session} {name} in {result}");
            assert_eq!(
                manifest["media"][name]["status"], *status,
                "{session} {name} in {manifest}"
            );
        }
    }
    test.assert_media_stored(&session_id(1)).await;
    eventually("an empty queue", WAIT, || async { test.queue_depth().await == 0 }).await;
    assert_eq!(test.dead_letter_depth().await, 0);
    let (_, metrics) = get("/metrics").await.expect("/metrics answers");
    let archived = metrics
        .lines()
        .find_map(|line| line.strip_prefix("archiver_events_total{outcome=\"archived\"} "))
        .unwrap_or_else(|| panic!("no archived count in /metrics:\n{metrics}"));
    assert_eq!(archived.trim(), "3");
    // Each stage of each fetched media was timed, once per attempt (one each here): every
    // case has a source and a target (the rejected one was fetched too), one has no video.
    for stage in ["fetch", "validate", "store", "media"] {
        let present = |kind: usize| {
            cases
                .iter()
                .filter(|(_, paths, _)| paths[kind].is_some())
                .count()
                .to_string()
        };
        for (index, kind) in ["source", "target", "video"].into_iter().enumerate() {
            let (stage_label, kind_label) = (format!("stage=\"{stage}\""), format!("kind=\"{kind}\""));
            let count = metrics
                .lines()
                .filter(|line| line.starts_with("archiver_stage_duration_seconds_count{"))
                .find(|line| line.contains(&stage_label) && line.contains(&kind_label))
                .and_then(|line| line.rsplit(' ').next());
            assert_eq!(
                count,
                Some(present(index).as_str()),
                "stage {stage} of {kind} in /metrics:\n{metrics}"
            );
        }
    }

    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !log.contains(SECRET_QUERY_MARKER),
        "the worker logged a media URL's query string"
    );
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_bad_events_at_once_with_the_reason() {
    let test = WorkerTest::new("worker-dead-letters").await;
    let worker = test.start_worker(&[]);
    let json_type = || BasicProperties::default().with_content_type("application/json".into());
    let with = |mutate: &dyn Fn(&mut serde_json::Value)| {
        let mut event = test.good_event(&session_id(9));
        mutate(&mut event);
        serde_json::to_vec(&event).unwrap()
    };

    // (what, body, properties, a fragment the reason must contain)
    let cases: Vec<(&str, Vec<u8>, BasicProperties, &str)> = vec![
        ("not JSON", b"{\"session_id\": ".to_vec(), json_type(), "invalid event"),
        (
            "bad tenant",
            with(&|e| e["tenant"] = json!("Acme Corp")),
            json_type(),
            "tenant",
        ),
        (
            "session id not a UUID",
            with(&|e| e["session_id"] = json!("12345")),
            json_type(),
            "session_id",
        ),
        (
            "similarity above 100",
            with(&|e| e["face"]["face_match_similarity"] = json!(100.5)),
            json_type(),
            "face_match_similarity",
        ),
        (
            "unknown status",
            with(&|e| e["face"]["status"] = json!("Maybe")),
            json_type(),
            "status",
        ),
        (
            "plain http URL",
            with(&|e| e["face"]["video_url"] = json!("http://localhost/video.mp4")),
            json_type(),
            "video_url",
        ),
        (
            "declared as text",
            with(&|_| {}),
            BasicProperties::default().with_content_type("text/plain".into()),
            "content_type",
        ),
    ];
    let mut expected = Vec::new();
    for (what, body, properties, fragment) in &cases {
        let message_id = test.publish_with(body, properties.clone()).await;
        expected.push((message_id, *what, body.clone(), *fragment));
    }

    let letters = test.dead_letters(cases.len(), WAIT).await;
    let results = test.results(cases.len(), WAIT).await;
    for (message_id, what, body, fragment) in &expected {
        let (_, stored_body, reason) = letters
            .iter()
            .find(|(id, _, _)| id == message_id)
            .unwrap_or_else(|| panic!("{what}: not dead-lettered"));
        assert_eq!(stored_body, body, "{what}: the dead letter is the original message");
        assert!(
            reason.contains(fragment),
            "{what}: reason {reason:?} does not name {fragment:?}"
        );
        let result = results
            .iter()
            .find(|r| &r["message_id"] == message_id)
            .expect("a result per event");
        assert_eq!(result["outcome"], "dead-lettered", "{what}: {result}");
        assert_eq!(
            result["manifest_key"],
            serde_json::Value::Null,
            "{what}: nothing was fetched"
        );
    }
    assert!(test.keys().await.is_empty(), "nothing of an invalid event is stored");
    assert_eq!(test.queue_depth().await, 0);
    assert_exit_0(&stop(worker, Duration::from_secs(30)));
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_fetch_failure_is_dead_lettered_with_a_manifest_of_what_was_stored() {
    let test = WorkerTest::new("worker-permanent").await;
    let worker = test.start_worker(&[]);
    let session = session_id(4);
    // No route: the media server answers 404, as a vendor does for a deleted capture.
    let message_id = test
        .publish(&test.event(&session, [Some("/gone.jpg"), Some("/target.jpg"), Some("/video.mp4")]))
        .await;

    let letters = test.dead_letters(1, WAIT).await;
    assert_eq!(letters[0].0, message_id);
    assert!(
        letters[0].2.contains("source_image") && letters[0].2.contains("404"),
        "reason: {}",
        letters[0].2
    );
    let result = &test.results(1, WAIT).await[0];
    assert_eq!(result["outcome"], "dead-lettered");
    assert_eq!(result["manifest_key"], json!(test.key(&session, "manifest.json")));

    let manifest = test.manifest(&session).await;
    assert_eq!(manifest["media"]["source_image"]["status"], "failed");
    assert_eq!(manifest["media"]["target_image"]["status"], "stored");
    assert_eq!(manifest["media"]["video"]["status"], "stored");
    let s3 = crate::support::Stack::load().s3();
    assert_eq!(
        s3.get_object_sse_c(&test.key(&session, "target.jpg")).await.unwrap(),
        TARGET
    );
    assert_eq!(
        s3.get_object_sse_c(&test.key(&session, "video.mp4")).await.unwrap(),
        VIDEO
    );
    assert_eq!(test.media.hits("/gone.jpg"), 1, "a 404 is not retried");
    assert_exit_0(&stop(worker, Duration::from_secs(30)));
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_ends_in_the_dead_letter_queue_after_the_delivery_limit() {
    let test = WorkerTest::new("worker-poison").await;
    test.media.route("/source.jpg", Behaviour::Status(503));
    // One fetch attempt per delivery and a delivery limit of 3 (the harness's): three
    // deliveries, then the dead-letter queue.
    let worker = test.start_worker(&[("ARCHIVER_FETCH_ATTEMPTS", "1")]);
    let message_id = test.publish(&test.good_event(&session_id(5))).await;

    let letters = test.dead_letters(1, WAIT).await;
    assert_eq!(letters[0].0, message_id);
    let reason = &letters[0].2;
    assert!(
        reason.starts_with("still failing after 3 deliveries"),
        "reason: {reason}"
    );
    assert!(reason.contains("503"), "reason: {reason}");
    assert_eq!(test.media.hits("/source.jpg"), 3);
    let result = &test.results(1, WAIT).await[0];
    assert_eq!(result["outcome"], "dead-lettered");
    assert_eq!(result["session_id"], json!(session_id(5)));
    assert_eq!(test.queue_depth().await, 0);
    assert_exit_0(&stop(worker, Duration::from_secs(30)));
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_leave_one_set_of_objects_and_one_manifest() {
    let test = WorkerTest::new("worker-duplicates").await;
    let worker = test.start_worker(&[("ARCHIVER_CONCURRENCY", "4")]);
    let session = session_id(6);
    let event = test.good_event(&session);
    for _ in 0..3 {
        test.publish(&event).await;
    }
    let results = test.results(3, WAIT).await;
    assert!(results.iter().all(|r| r["outcome"] == "archived"), "{results:#?}");
    let mut expected: Vec<String> = ["manifest.json", "source.jpg", "target.jpg", "video.mp4"]
        .iter()
        .map(|name| test.key(&session, name))
        .collect();
    expected.sort();
    assert_eq!(test.keys().await, expected);
    test.assert_media_stored(&session).await;
    assert_eq!(test.manifest(&session).await["session_id"], json!(session));
    assert_exit_0(&stop(worker, Duration::from_secs(30)));
    test.clean_up().await;
}

/// SIGTERM with two events in flight and two waiting: (drain seconds, video speed, whether
/// the two in flight finish before the exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_returns_events_in_flight_and_exits_0() {
    let cases = [
        ("finish within the drain", "20", 40_000, true),
        ("drain period too short", "1", 0, false),
    ];
    for (what, drain_secs, bytes_per_sec, finish) in cases {
        let test = WorkerTest::new("worker-sigterm").await;
        test.media.route(
            "/video.mp4",
            Behaviour::Trickle {
                body: VIDEO.into(),
                bytes_per_sec,
            },
        );
        let worker = test.start_worker(&[("ARCHIVER_CONCURRENCY", "2"), ("ARCHIVER_DRAIN_SECS", drain_secs)]);
        for n in 0..4 {
            test.publish(&test.good_event(&session_id(n))).await;
        }
        eventually("two events in flight", WAIT, || async {
            test.media.hits("/video.mp4") >= 2
        })
        .await;

        let signalled = Instant::now();
        let output = stop(worker, Duration::from_secs(40));
        assert_exit_0(&output);
        let took = signalled.elapsed();
        let returned = if finish {
            let results = test.results(2, Duration::from_secs(5)).await;
            assert!(
                results.iter().all(|r| r["outcome"] == "archived"),
                "{what}: {results:#?}"
            );
            2
        } else {
            assert!(took < Duration::from_secs(10), "{what}: the drain took {took:?}");
            4
        };
        eventually(
            &format!("{what}: {returned} events back in the queue"),
            WAIT,
            || async { test.queue_depth().await == returned },
        )
        .await;

        // A new worker, with a fast media host, archives what was returned.
        test.media.route("/video.mp4", Behaviour::ok(VIDEO));
        let worker = test.start_worker(&[]);
        let results = test.results(returned as usize, WAIT).await;
        assert!(
            results.iter().all(|r| r["outcome"] == "archived"),
            "{what}: {results:#?}"
        );
        for n in 0..4 {
            test.assert_media_stored(&session_id(n)).await;
        }
        assert_exit_0(&stop(worker, Duration::from_secs(30)));
        assert_eq!(test.dead_letter_depth().await, 0, "{what}");
        test.clean_up().await;
    }
}

/// `ARCHIVER_AMQP_URL` may list the nodes of a cluster (contract 1.1 section 7): a node that
/// is down costs a connect attempt, not the worker. The first node here is a closed port.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_list_goes_past_a_node_that_is_down() {
    let test = WorkerTest::new("worker-nodes").await;
    let down = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let nodes = format!("{down}, {}", test.amqp_url);
    let worker = test.start_worker(&[("ARCHIVER_AMQP_URL", &nodes)]);
    let session = session_id(1);
    test.publish(&test.good_event(&session)).await;

    let results = test.results(1, WAIT).await;
    assert_eq!(results[0]["outcome"], "archived", "{results:?}");
    test.assert_media_stored(&session).await;
    let output = stop(worker, WAIT);
    assert_exit_0(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("broker node unavailable; trying the next"),
        "the first node was not tried: {log}"
    );
    assert!(
        !log.contains("guest:guest"),
        "a node URL (with its credentials) was logged"
    );
    test.clean_up().await;
}
