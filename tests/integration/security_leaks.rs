//! No secret leaks (issues 6, 7 and 13): events whose media URLs carry signed-looking query
//! strings go through `archiver archive`, `archiver worker`, `archiver refetch` and
//! `archiver get` with every log at `RUST_LOG=trace` (JSON), on the good path and the
//! failure paths (403, reset, a host that is not allowed, an invalid event), and every
//! output is searched for the URL credential, the signature, the SSE-C key (base64) and
//! its MD5, the S3 secret key, the vendor API key and the broker's password: stdout,
//! stderr, the manifests in S3, the result events, the dead letters' properties and
//! headers, and `/metrics`.
//!
//! Regression (issue 13): at `RUST_LOG=trace`, aws-sigv4 and aws-smithy-runtime printed
//! every request header, the SSE-C key among them.
//!
//! A dead letter's body is the event itself and so holds the URLs: it is the vendor's
//! message kept for replay, not an output of ours, and is not searched.

use std::process::Output;
use std::time::Duration;

use crate::support::archive_kit::{archive_event, event_json, new_session_id, tenant_prefix, Urls};
use crate::support::{
    archiver, run_with_timeout, ArchiverEnv, Behaviour, MediaServer, Running, Stack, SECRET_QUERY_MARKER,
    SECRET_SIGNATURE,
};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest};

/// The vendor API key `refetch` is given here.
const VENDOR_KEY: &str = "VENDOR-API-KEY-SECRET";

/// Every log, of every crate: what an operator debugging the worker would ask for; plus
/// directives more specific than the caps' own, which only the cap filter holds back.
const TRACE: (&str, &str) = (
    "RUST_LOG",
    "trace,aws_sigv4::http_request=trace,aws_smithy_runtime::client::orchestrator=trace,lapin::channels=trace",
);

/// The texts no output may contain.
fn secrets() -> Vec<String> {
    use base64::Engine as _;
    use md5::Digest as _;
    let stack = Stack::load();
    let base64 = base64::engine::general_purpose::STANDARD;
    // The key's MD5 travels in its own header (`x-amz-server-side-encryption-customer-key-MD5`).
    let key_md5 = base64.encode(md5::Md5::digest(
        base64
            .decode(stack.sse_c_key())
            .expect("the stack's SSE-C key is base64"),
    ));
    let mut secrets = vec![
        SECRET_QUERY_MARKER.to_string(),
        SECRET_SIGNATURE.to_string(),
        stack.sse_c_key().to_string(),
        key_md5,
        VENDOR_KEY.to_string(),
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

/// The output holds debug logs of the S3 client: the search is not vacuous. (Nothing that
/// may log at trace does so on these paths; what did is what the caps now hold back.)
fn assert_traced(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"level\":\"DEBUG\"") && stderr.contains("\"target\":\"aws_"),
        "{what}: debug JSON logs expected, the S3 client's among them:\n{}",
        stderr.chars().take(4000).collect::<String>()
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
    let env = [("ARCHIVER_LOG_FORMAT", "json"), TRACE];
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
        assert_traced(&format!("archive {path}"), &output);
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

/// `archiver refetch` (which holds the vendor API key and fetches fresh URLs) and
/// `archiver get` (which sends the SSE-C key to read objects back), at `RUST_LOG=trace`.
#[test]
fn refetch_and_get_print_no_secret() {
    let server = MediaServer::start();
    crate::support::archive_kit::serve_good_media(&server);
    let tenant = crate::support::unique_name("leaks-refetch");
    let session = new_session_id().to_ascii_lowercase();
    // The vendor API, served by the same test server: the session's fresh signed URLs.
    let event: serde_json::Value =
        serde_json::from_slice(&event_json(&session, &tenant, None, &Urls::of(&server))).unwrap();
    let answer = serde_json::json!({ "session_id": session, "face": event["face"] });
    server.route(
        &format!("/v3/session/{session}/decision/"),
        Behaviour::ok(serde_json::to_vec(&answer).unwrap()),
    );
    let traced = |args: &[&str]| {
        let mut command = archiver();
        command
            .args(args)
            .media_server(&server)
            .env(
                "ARCHIVER_PROVIDER_API_URL",
                format!("https://localhost:{}", server.port()),
            )
            .env("ARCHIVER_PROVIDER_API_KEY", VENDOR_KEY)
            .env("ARCHIVER_LOG_FORMAT", "json")
            .env(TRACE.0, TRACE.1);
        run_with_timeout(command, None, Duration::from_secs(120))
    };

    let output = traced(&["refetch", &session, "--tenant", &tenant]);
    assert_eq!(output.status.code(), Some(0), "{}", outputs(&output));
    let asked = server
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/v3/session/"))
        .count();
    assert_eq!(asked, 1, "the vendor API was not asked");
    assert_traced("refetch", &output);
    assert_no_secret("refetch output", &outputs(&output));

    let prefix = tenant_prefix(&tenant);
    let output = traced(&["get", &format!("{prefix}{session}/manifest.json")]);
    assert_eq!(output.status.code(), Some(0), "{}", outputs(&output));
    assert_traced("get", &output);
    assert_no_secret("get output", &outputs(&output));
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("source.jpg");
    let output = traced(&[
        "get",
        &format!("{prefix}{session}/source.jpg"),
        "--reason",
        "integration test",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", outputs(&output));
    assert_traced("get -o", &output);
    assert_no_secret("get -o output", &outputs(&output));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(Stack::load().s3().delete_prefix(&prefix));
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
        .env(TRACE.0, TRACE.1)
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
    assert_traced("the worker", &output);
    assert_no_secret("the worker's logs", &outputs(&output));
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
