//! No secret leaks (issues 6 and 7): events whose media URLs carry signed-looking query
//! strings go through `archiver archive` and `archiver worker` with debug JSON logs, on
//! the good path and the failure paths (403, reset, a host that is not allowed, an invalid
//! event), and every output is searched for the URL credential, the signature, the SSE-C
//! key and the broker's password: stdout, stderr, the manifests in S3, the result events,
//! the dead letters' properties and headers, and `/metrics`.
//!
//! A dead letter's body is the event itself and so holds the URLs: it is the vendor's
//! message kept for replay, not an output of ours, and is not searched.

use std::process::Output;
use std::time::Duration;

use crate::support::archive_kit::{archive_event, event_json, new_session_id, tenant_prefix, Urls};
use crate::support::{Behaviour, MediaServer, Running, Stack, SECRET_QUERY_MARKER, SECRET_SIGNATURE};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest};

/// The texts no output may contain.
fn secrets() -> Vec<String> {
    let stack = Stack::load();
    let mut secrets = vec![
        SECRET_QUERY_MARKER.to_string(),
        SECRET_SIGNATURE.to_string(),
        stack.sse_c_key().to_string(),
    ];
    // The broker URL's user info (`user:password@`), when it has one.
    if let Some((userinfo, _)) = stack
        .amqp_url()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
    {
        secrets.push(format!("{userinfo}@"));
    }
    if let Some(secret) = stack.vars().get("AWS_SECRET_ACCESS_KEY") {
        secrets.push(secret.clone());
    }
    secrets
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in secrets() {
        // The secret is not quoted in the message: the message itself would leak it.
        let at = text.find(&secret);
        assert!(
            at.is_none(),
            "{what} holds a secret at byte {at:?} ({} chars of it)",
            secret.len()
        );
    }
    assert!(
        !text.contains("X-Amz-Credential") && !text.contains("X-Amz-Signature"),
        "{what} holds a URL query:\n{text}"
    );
}

fn outputs(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Routes for the failure paths: a 403, a reset every time, and a redirect to a loopback
/// address that is not allowed (the good media are served by the caller).
fn serve_faults(server: &MediaServer) {
    let jpeg = crate::support::archive_kit::TestMedia::get().source.clone();
    server
        .route("/forbidden.jpg", Behaviour::Status(403))
        .route(
            "/reset.jpg",
            Behaviour::ResetAfter {
                body: jpeg,
                after_bytes: 1000,
            },
        )
        .route(
            "/redirect.jpg",
            Behaviour::Redirect(format!(
                "https://127.0.0.1:{}/source.jpg?{SECRET_QUERY_MARKER}=1",
                server.port()
            )),
        );
}

#[test]
fn archive_prints_no_secret() {
    let server = MediaServer::start();
    crate::support::archive_kit::serve_good_media(&server);
    serve_faults(&server);
    let tenant = crate::support::unique_name("leaks");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = Stack::load().s3();
    let env = [("ARCHIVER_LOG_FORMAT", "json"), ("RUST_LOG", "debug")];
    let mut searched = 0;
    for (path, exit) in [
        ("/source.jpg", 0),
        ("/forbidden.jpg", 1),
        ("/reset.jpg", 1),
        ("/redirect.jpg", 1),
    ] {
        let session = new_session_id().to_ascii_lowercase();
        let urls = Urls {
            source: Some(server.url(path)),
            ..Urls::of(&server)
        };
        let output = archive_event(&server, &event_json(&session, &tenant, None, &urls), &env);
        assert_eq!(output.status.code(), Some(exit), "{path}: {}", outputs(&output));
        assert!(!output.stderr.is_empty(), "{path}: debug logs expected on stderr");
        assert_no_secret(&format!("archive {path} output"), &outputs(&output));
        let manifest_key = format!("{}{session}/manifest.json", tenant_prefix(&tenant));
        if let Ok(manifest) = runtime.block_on(s3.get_object_sse_c(&manifest_key)) {
            assert_no_secret(&format!("{path} manifest"), &String::from_utf8_lossy(&manifest));
            searched += 1;
        }
    }
    assert!(searched >= 3, "manifests searched: {searched}");
    // An invalid event that quotes a URL (exit 2 path).
    let mut bad = server.url("/source.jpg").replacen("https://", "http://", 1);
    bad.push_str("&more=1");
    let urls = Urls {
        source: Some(bad),
        ..Urls::of(&server)
    };
    let output = archive_event(&server, &event_json(&new_session_id(), &tenant, None, &urls), &env);
    assert_eq!(output.status.code(), Some(2), "{}", outputs(&output));
    assert_no_secret("archive of an invalid event", &outputs(&output));
    runtime.block_on(s3.delete_prefix(&tenant_prefix(&tenant)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_outputs_no_secret() {
    let test = WorkerTest::new("leaks").await;
    serve_faults(&test.media);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The secrets come from files here, as from a mounted Kubernetes Secret.
    let dir = tempfile::tempdir().unwrap();
    let (key_file, amqp_file) = (dir.path().join("sse-c-key"), dir.path().join("amqp-url"));
    std::fs::write(&key_file, format!("{}\n", Stack::load().sse_c_key())).unwrap();
    std::fs::write(&amqp_file, format!("{}\n", test.amqp_url)).unwrap();
    let mut command = test.command("worker");
    command
        .env_remove("ARCHIVER_SSE_C_KEY")
        .env_remove("ARCHIVER_AMQP_URL")
        .env("ARCHIVER_SSE_C_KEY_FILE", &key_file)
        .env("ARCHIVER_AMQP_URL_FILE", &amqp_file)
        .env("ARCHIVER_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("ARCHIVER_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"));
    let worker = Running::spawn(command, None);

    let paths = ["/source.jpg", "/forbidden.jpg", "/reset.jpg", "/redirect.jpg"];
    for (n, path) in paths.iter().enumerate() {
        test.publish(&test.event(&session_id(n), [Some(path), Some("/target.jpg"), Some("/video.mp4")]))
            .await;
    }
    let mut invalid = test.good_event(&session_id(9));
    invalid["face"]["source_image"] =
        serde_json::json!(test.media.url("/source.jpg").replacen("https://", "http://", 1));
    test.publish(&invalid).await;

    // The good event's media were stored with the key read from the file.
    eventually("the good event archived", Duration::from_secs(60), || async {
        test.keys().await.contains(&test.key(&session_id(0), "manifest.json"))
    })
    .await;
    test.assert_media_stored(&session_id(0)).await;

    // Every property and header of the dead letters (the body is the event: not ours).
    let dlq = format!("{}.dlq", test.queue);
    for n in 0..4 {
        let Some(letter) = test.amqp.get(&dlq, Duration::from_secs(90)).await else {
            panic!("{n} of 4 dead letters arrived");
        };
        let properties = format!("{:?}", letter.delivery.properties);
        assert!(properties.contains("x-archiver-reason"), "{properties}");
        assert_no_secret("a dead letter's properties", &properties);
    }
    let results = test.results(4, Duration::from_secs(60)).await;
    for result in &results {
        assert_no_secret("a result event", &result.to_string());
    }
    for n in 0..paths.len() {
        if let Ok(manifest) = Stack::load()
            .s3()
            .get_object_sse_c(&test.key(&session_id(n), "manifest.json"))
            .await
        {
            assert_no_secret("a manifest", &String::from_utf8_lossy(&manifest));
        }
    }
    let metrics = fetch_metrics(metrics_port).await;
    assert_no_secret("/metrics", &metrics);

    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    let logs = outputs(&output);
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "debug JSON logs expected:\n{logs}"
    );
    assert_no_secret("the worker's logs", &logs);
    test.clean_up().await;
}

/// `/metrics` as text (the worker serves it while running).
async fn fetch_metrics(port: u16) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut last = String::new();
    for _ in 0..50 {
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => return response.text().await.unwrap_or_default(),
            Ok(response) => last = format!("status {}", response.status()),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no /metrics on port {port}: {last}");
}
