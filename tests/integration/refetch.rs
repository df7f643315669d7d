//! `archiver refetch` and the worker's automatic refresh against the real stack, with a
//! fake vendor API served by the test's HTTPS server: fresh URLs for sessions whose first
//! URLs expired, `--dry-run`, `--enqueue`, `--from-dlq`, and the vendor's 401/404/429.

use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::support::archive_kit::printed;
use crate::support::{run_with_timeout, Behaviour, Stack, SECRET_QUERY_MARKER, SECRET_SIGNATURE};
use crate::worker_harness::{eventually, session_id, WorkerTest};

const API_KEY: &str = "vendor-test-key";

fn decision_path(session: &str) -> String {
    format!("/v3/session/{session}/decision/")
}

/// The vendor's answer: the session's verdicts and fresh URLs to the good media.
fn vendor_answer(test: &WorkerTest, session: &str) -> Behaviour {
    let mut event = test.good_event(session);
    let face = event["face"].take();
    Behaviour::ok(serde_json::to_vec(&json!({ "session_id": session, "face": face })).unwrap())
}

/// Runs `archiver refetch ARGS` with the test's settings and the fake vendor API.
async fn refetch(test: &WorkerTest, args: &[&str]) -> Output {
    let mut command = test.command("refetch");
    command
        .args(args)
        .env(
            "ARCHIVER_PROVIDER_API_URL",
            format!("https://localhost:{}", test.media.port()),
        )
        .env("ARCHIVER_PROVIDER_API_KEY", API_KEY)
        .env("NO_COLOR", "1");
    let output = tokio::task::spawn_blocking(move || run_with_timeout(command, None, Duration::from_secs(120)))
        .await
        .unwrap();
    let text = printed(&output);
    assert!(
        !text.contains(SECRET_QUERY_MARKER) && !text.contains(SECRET_SIGNATURE),
        "a URL query leaked:\n{text}"
    );
    assert!(!text.contains(API_KEY), "the vendor api key leaked:\n{text}");
    output
}

/// The JSON line printed for each session, in order.
fn session_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}\n{}", printed(output)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn refetch_archives_a_session_whose_first_urls_expired_and_then_leaves_it_alone() {
    let test = WorkerTest::new("refetch-expired").await;
    let session = session_id(1);
    // The vendor's first URLs were signed two hours ago for one hour: expired.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let mut event = test.good_event(&session);
    for (field, path) in [
        ("source_image", "/source.jpg"),
        ("target_image", "/target.jpg"),
        ("video_url", "/video.mp4"),
    ] {
        event["face"][field] = json!(test.media.url_signed_at(path, two_hours_ago, 3600));
    }
    let mut archive = test.command("archive");
    archive.arg("-");
    let body = serde_json::to_vec(&event).unwrap();
    let first = tokio::task::spawn_blocking(move || run_with_timeout(archive, Some(&body), Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", printed(&first));
    assert_eq!(
        test.media.hits("/source.jpg"),
        0,
        "no request is made for an expired URL"
    );
    assert_eq!(test.manifest(&session).await["media"]["video"]["status"], "failed");

    test.media
        .route(&decision_path(&session), vendor_answer(&test, &session));
    let output = refetch(&test, &["--tenant", &test.tenant, &session.to_ascii_uppercase()]).await;
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let lines = session_lines(&output);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["outcome"], "archived", "{}", lines[0]);
    assert_eq!(lines[0]["session_id"], session);
    assert_eq!(lines[0]["manifest_key"], test.key(&session, "manifest.json"));
    assert_eq!(
        lines[0]["media"],
        json!({"source_image": "stored", "target_image": "stored", "video": "stored"})
    );
    test.assert_media_stored(&session).await;
    let manifest = test.manifest(&session).await;
    assert_eq!(manifest["media"]["video"]["status"], "stored");
    let request = test
        .media
        .requests()
        .into_iter()
        .find(|request| request.path == decision_path(&session))
        .unwrap();
    assert_eq!(request.header("x-api-key"), Some(API_KEY));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 session(s): 1 archived"),
        "summary missing:\n{stderr}"
    );
    // Not a terminal: the progress display is one plain line per media as it ends.
    for media in ["source_image", "target_image", "video"] {
        let line = format!("{session}: {media} stored (");
        assert!(
            stderr
                .lines()
                .any(|text| text.starts_with(&line) && text.ends_with(" MB/s)")),
            "no {line:?} in:\n{stderr}"
        );
    }

    // Finished: a second refetch does not ask the vendor again and changes nothing.
    let asked = test.media.hits(&decision_path(&session));
    let again = refetch(&test, &["--tenant", &test.tenant, &session]).await;
    assert_eq!(again.status.code(), Some(0), "{}", printed(&again));
    assert_eq!(session_lines(&again)[0]["outcome"], "already-archived");
    assert_eq!(test.media.hits(&decision_path(&session)), asked);
    assert_eq!(test.manifest(&session).await["archived_at"], manifest["archived_at"]);

    // --force archives again.
    let forced = refetch(&test, &["--force", "--tenant", &test.tenant, &session]).await;
    assert_eq!(session_lines(&forced)[0]["outcome"], "archived", "{}", printed(&forced));
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_what_would_be_fetched_and_writes_nothing() {
    let test = WorkerTest::new("refetch-dry").await;
    let session = session_id(2);
    test.media
        .route(&decision_path(&session), vendor_answer(&test, &session));

    let output = refetch(&test, &["--dry-run", "--tenant", &test.tenant, &session]).await;

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let line = &session_lines(&output)[0];
    assert_eq!(line["outcome"], "would-fetch");
    let port = test.media.port();
    assert_eq!(
        line["media"],
        json!({"source_image": format!("https://localhost:{port}/source.jpg"),
               "target_image": format!("https://localhost:{port}/target.jpg"),
               "video": format!("https://localhost:{port}/video.mp4")})
    );
    for path in ["/source.jpg", "/target.jpg", "/video.mp4"] {
        assert_eq!(test.media.hits(path), 0, "{path} was fetched in a dry run");
    }
    assert_eq!(test.keys().await, Vec::<String>::new(), "a dry run wrote to S3");
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_errors_are_reported_per_session_and_429_is_retried() {
    let test = WorkerTest::new("refetch-vendor").await;
    let (unauthorized, missing, throttled) = (session_id(3), session_id(4), session_id(5));
    test.media.route(&decision_path(&unauthorized), Behaviour::Status(401));
    test.media.route(&decision_path(&missing), Behaviour::Status(404));
    test.media.route(
        &decision_path(&throttled),
        Behaviour::Sequence(vec![
            Behaviour::StatusWithRetryAfter(429, 1),
            vendor_answer(&test, &throttled),
        ]),
    );

    let output = refetch(&test, &["--tenant", &test.tenant, &unauthorized, &missing, &throttled]).await;

    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed session makes exit 1: {}",
        printed(&output)
    );
    let lines = session_lines(&output);
    let cases = [
        (&unauthorized, "failed", Some("401")),
        (&missing, "failed", Some("404")),
        (&throttled, "archived", None),
    ];
    assert_eq!(lines.len(), cases.len());
    for (line, (session, outcome, status)) in lines.iter().zip(cases) {
        assert_eq!(line["session_id"], *session);
        assert_eq!(line["outcome"], outcome, "{line}");
        if let Some(status) = status {
            let reason = line["reason"].as_str().unwrap();
            assert!(reason.contains(status) && reason.contains(session.as_str()), "{reason}");
        }
    }
    assert_eq!(
        test.media.hits(&decision_path(&throttled)),
        2,
        "429 is retried once it passes"
    );
    assert_eq!(test.media.hits(&decision_path(&unauthorized)), 1, "401 is not retried");
    test.assert_media_stored(&throttled).await;
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_lands_a_fresh_event_that_the_worker_archives() {
    let test = WorkerTest::new("refetch-enqueue").await;
    let session = session_id(6);
    test.media
        .route(&decision_path(&session), vendor_answer(&test, &session));

    let output = refetch(&test, &["--enqueue", "--tenant", &test.tenant, &session]).await;
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_eq!(session_lines(&output)[0]["outcome"], "enqueued");
    assert_eq!(
        test.keys().await,
        Vec::<String>::new(),
        "--enqueue archives nothing itself"
    );
    assert_eq!(test.queue_depth().await, 1);

    let mut worker = test.start_worker(&[]);
    // The enqueued event carries no message id of the test's, so watch S3 for its manifest.
    let manifest_key = test.key(&session, "manifest.json");
    eventually("the enqueued session's manifest", Duration::from_secs(60), || async {
        Stack::load()
            .s3()
            .list_keys(&manifest_key)
            .await
            .contains(&manifest_key)
    })
    .await;
    test.assert_media_stored(&session).await;
    assert_eq!(test.queue_depth().await, 0);
    worker.terminate();
    assert!(
        worker.wait_timeout(Duration::from_secs(30)).is_some(),
        "the worker did not stop on SIGTERM"
    );
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn from_dlq_recovers_what_it_can_and_keeps_the_rest_with_a_reason() {
    let test = WorkerTest::new("refetch-dlq").await;
    let (recoverable, unknown) = (session_id(7), session_id(8));
    test.media
        .route(&decision_path(&recoverable), vendor_answer(&test, &recoverable));
    test.media.route(&decision_path(&unknown), Behaviour::Status(404));
    let dlq = format!("{}.dlq", test.queue);
    for (session, path) in [(&recoverable, "/expired.jpg"), (&unknown, "/expired.jpg")] {
        let event = test.event(session, [Some(path), None, None]);
        test.amqp
            .publish_event(&dlq, &serde_json::to_vec(&event).unwrap())
            .await;
    }
    test.amqp.publish_event(&dlq, b"{not json").await;
    assert_eq!(test.dead_letter_depth().await, 3);

    let output = refetch(&test, &["--from-dlq"]).await;

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let outcomes: Vec<(String, String)> = session_lines(&output)
        .iter()
        .map(|line| {
            (
                line["session_id"].as_str().unwrap().to_string(),
                line["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (recoverable.clone(), "archived".into()),
            (unknown.clone(), "failed".into()),
            (String::new(), "failed".into())
        ]
    );
    test.assert_media_stored(&recoverable).await;
    let letters = test.dead_letters(2, Duration::from_secs(10)).await;
    assert_eq!(test.dead_letter_depth().await, 0);
    let reasons: Vec<&str> = letters.iter().map(|(_, _, reason)| reason.as_str()).collect();
    assert!(
        reasons[0].starts_with("refetch failed") && reasons[0].contains("404"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("not JSON"), "{reasons:?}");
    assert_eq!(
        Stack::load().s3().list_keys(&test.key(&unknown, "")).await,
        Vec::<String>::new()
    );
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_refreshes_expired_urls_through_the_vendor_api() {
    let test = WorkerTest::new("refetch-auto").await;
    let session = session_id(9);
    test.media
        .route(&decision_path(&session), vendor_answer(&test, &session));
    let expired = SystemTime::now() - Duration::from_secs(7200);
    let mut event = test.good_event(&session);
    event["face"]["video_url"] = json!(test.media.url_signed_at("/video.mp4", expired, 3600));
    test.publish(&event).await;

    let port = test.media.port().to_string();
    let mut worker = test.start_worker(&[
        ("ARCHIVER_PROVIDER_API_URL", &format!("https://localhost:{port}")),
        ("ARCHIVER_PROVIDER_API_KEY", API_KEY),
    ]);
    let archived = test.archived_sessions(1, Duration::from_secs(60)).await;
    assert!(archived.contains(&session));
    test.assert_media_stored(&session).await;
    assert_eq!(
        test.media.hits(&decision_path(&session)),
        1,
        "asked the vendor exactly once"
    );
    assert_eq!(test.dead_letter_depth().await, 0);
    worker.terminate();
    assert!(worker.wait_timeout(Duration::from_secs(30)).is_some());
    test.clean_up().await;
}
