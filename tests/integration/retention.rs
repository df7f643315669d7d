//! Retention, erasure and audit (docs/contract.md section 9) against the real stack:
//! `archiver list`, `erase` (tombstone, deletes, refusals, a rerun that finishes), erased
//! sessions staying erased (`archive`, the worker), `get --reason` and the audit trail, and
//! the Object Lock headers (Garage has no Object Lock: they are checked at a recording
//! proxy in front of it).

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::archive_kit::{
    archive_event, event_json, new_session_id, printed, serve_good_media, sha256_hex, tenant_prefix, TestMedia, Urls,
};
use crate::support::{archiver, run_with_timeout, unique_name, Behaviour, MediaServer, Rule, S3Fault, S3Proxy, Stack};

const WAIT: Duration = Duration::from_secs(90);

/// Runs `archiver ARGS...` against the stack (plus `env`).
fn cli(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = archiver();
    command.args(args).env("NO_COLOR", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    run_with_timeout(command, None, WAIT)
}

/// Stdout's JSON lines.
fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}\n{}", printed(output))))
        .collect()
}

/// Archives a session with the good media (or a missing video); returns its lower-case id.
fn archive_session(server: &MediaServer, tenant: &str, video: &str) -> String {
    let session = new_session_id();
    let urls = Urls {
        video: Some(server.url(video)),
        ..Urls::of(server)
    };
    let output = tokio::task::block_in_place(|| archive_event(server, &event_json(&session, tenant, None, &urls), &[]));
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", printed(&output));
    session.to_ascii_lowercase()
}

fn erase(tenant: &str, sessions: &[&str], env: &[(&str, String)]) -> Output {
    let mut args = vec!["erase", "--tenant", tenant, "--reason", "data subject request DSR-1234"];
    args.extend_from_slice(sessions);
    tokio::task::block_in_place(|| cli(&args, env))
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_finished_incomplete_and_erased_sessions_and_erasure_is_final() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    server.route("/gone.mp4", Behaviour::Status(404));
    let tenant = unique_name("retention");
    let finished = archive_session(&server, &tenant, "/video.mp4");
    let incomplete = archive_session(&server, &tenant, "/gone.mp4");
    let erased = archive_session(&server, &tenant, "/video.mp4");
    let s3 = Stack::load().s3();
    let prefix = format!("{}{erased}/", tenant_prefix(&tenant));
    let manifest_bytes = s3.get_object_sse_c(&format!("{prefix}manifest.json")).await.unwrap();

    let output = erase(&tenant, &[&erased], &[("ARCHIVER_OPERATOR", "dpo@example.com".into())]);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let line = &lines(&output)[0];
    assert_eq!(line["outcome"], "erased", "{line}");
    assert_eq!(line["session_id"], erased.as_str());
    assert_eq!(line["refused"], serde_json::json!([]));
    // Garage keeps no versions (ListObjectVersions answers 501 NotImplemented): plain deletes.
    assert_eq!(line["versioned"], false, "{line}");
    // The objects are gone; only the tombstone stays, and it says what was there.
    assert_eq!(s3.list_keys(&prefix).await, vec![format!("{prefix}erased.json")]);
    let tombstone_bytes = s3.get_object_sse_c(&format!("{prefix}erased.json")).await.unwrap();
    let tombstone: Value = serde_json::from_slice(&tombstone_bytes).unwrap();
    assert_eq!(tombstone["schema"], 1);
    assert_eq!(tombstone["session_id"], erased.as_str());
    assert_eq!(tombstone["tenant"], tenant.as_str());
    assert_eq!(tombstone["by"], "dpo@example.com");
    assert_eq!(tombstone["reason"], "data subject request DSR-1234");
    let mut objects: Vec<(String, u64, String)> = tombstone["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().into(),
                o["bytes"].as_u64().unwrap(),
                o["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    objects.sort();
    let expected = |name: &str, bytes: &[u8]| (format!("{prefix}{name}"), bytes.len() as u64, sha256_hex(bytes));
    assert_eq!(
        objects,
        vec![
            expected("manifest.json", &manifest_bytes),
            expected("source.jpg", &media.source),
            expected("target.jpg", &media.target),
            expected("video.mp4", &media.video),
        ]
    );
    let text = String::from_utf8_lossy(&tombstone_bytes);
    assert!(!text.contains("https://") && !text.contains("face_match"), "{text}");

    // The audit trail has the erasure.
    let output = tokio::task::block_in_place(|| cli(&["audit", "--tenant", &tenant], &[]));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let records = lines(&output);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["action"], "erase");
    assert_eq!(records[0]["session_id"], erased.as_str());
    assert_eq!(records[0]["key"], format!("{prefix}erased.json"));
    assert_eq!(records[0]["by"], "dpo@example.com");
    assert_eq!(records[0]["reason"], "data subject request DSR-1234");

    // The listing: one line per session, from manifests and tombstones.
    let output = tokio::task::block_in_place(|| cli(&["list", "--tenant", &tenant], &[]));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let listed = lines(&output);
    let find = |session: &str| {
        listed
            .iter()
            .find(|line| line["session_id"] == session)
            .unwrap_or_else(|| panic!("{session} not listed: {listed:?}"))
            .clone()
    };
    assert_eq!(listed.len(), 3, "{listed:?}");
    let line = find(&finished);
    assert_eq!(line["erased"], false);
    assert_eq!(line["finished"], true);
    assert_eq!(line["media"]["video"], "stored");
    assert_eq!(
        line["manifest_key"],
        format!("{}{finished}/manifest.json", tenant_prefix(&tenant))
    );
    assert!(OffsetDateTime::parse(line["archived_at"].as_str().unwrap(), &Rfc3339).is_ok());
    let line = find(&incomplete);
    assert_eq!(
        (line["erased"].clone(), line["finished"].clone()),
        (false.into(), false.into())
    );
    assert_eq!(line["media"]["video"], "failed");
    assert_eq!(find(&erased)["erased"], true);
    let output = tokio::task::block_in_place(|| cli(&["list", "--tenant", &tenant, "--incomplete"], &[]));
    let listed = lines(&output);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["session_id"], incomplete.as_str());
    let future = (OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    let output = tokio::task::block_in_place(|| cli(&["list", "--tenant", &tenant, "--since", &future], &[]));
    assert_eq!(
        (output.status.code(), lines(&output).len()),
        (Some(0), 0),
        "{}",
        printed(&output)
    );

    // The same event again: nothing fetched, nothing stored, exit 0, one line on stderr.
    let hits = server.hits("/source.jpg");
    let event = event_json(&erased, &tenant, None, &Urls::of(&server));
    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert!(output.stdout.is_empty(), "{}", printed(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("was erased"),
        "{}",
        printed(&output)
    );
    assert_eq!(server.hits("/source.jpg"), hits);
    assert_eq!(s3.list_keys(&prefix).await, vec![format!("{prefix}erased.json")]);

    s3.delete_prefix(&tenant_prefix(&tenant)).await;
    s3.delete_prefix(&format!("face-reports/_audit/{tenant}/")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn erase_inside_the_retention_period_is_refused_and_changes_nothing() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("retained");
    let session = archive_session(&server, &tenant, "/video.mp4");
    let s3 = Stack::load().s3();
    let before = s3.list_keys(&tenant_prefix(&tenant)).await;

    let output = erase(&tenant, &[&session], &[("ARCHIVER_RETAIN_DAYS", "30".into())]);

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let line = &lines(&output)[0];
    assert_eq!(line["outcome"], "refused", "{line}");
    let until = OffsetDateTime::parse(line["until"].as_str().unwrap(), &Rfc3339).unwrap();
    let in_30_days = OffsetDateTime::now_utc() + time::Duration::days(30);
    assert!((until - in_30_days).abs() < time::Duration::minutes(5), "{line}");
    assert!(line["reason"].as_str().unwrap().contains("retention period"), "{line}");
    assert_eq!(s3.list_keys(&tenant_prefix(&tenant)).await, before);
    assert!(s3.list_keys(&format!("face-reports/_audit/{tenant}/")).await.is_empty());
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_finishes_an_erase_whose_deletes_were_refused() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("interrupted");
    let session = archive_session(&server, &tenant, "/video.mp4");
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let s3 = Stack::load().s3();
    let proxy = S3Proxy::start();
    let through_proxy: Vec<(&str, String)> = proxy.env().iter().map(|(k, v)| (*k, v.clone())).collect();
    // Interrupted between the tombstone and the deletes: the store refuses every delete.
    proxy.fail(S3Fault::AccessDenied, Rule::operation("DeleteObject"));

    let output = erase(&tenant, &[&session], &through_proxy);

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let line = &lines(&output)[0];
    assert_eq!(line["outcome"], "incomplete", "{line}");
    assert_eq!(line["refused"].as_array().unwrap().len(), 4, "{line}");
    assert_eq!(s3.list_keys(&prefix).await.len(), 5);

    // The session is already erased for the pipeline, and a rerun finishes the deletes.
    proxy.pass_through();
    let output = erase(&tenant, &[&session], &through_proxy);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let line = &lines(&output)[0];
    assert_eq!(
        (line["outcome"].as_str(), line["objects"].as_u64()),
        (Some("erased"), Some(4)),
        "{line}"
    );
    assert_eq!(s3.list_keys(&prefix).await, vec![format!("{prefix}erased.json")]);
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
    s3.delete_prefix(&format!("face-reports/_audit/{tenant}/")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_of_a_media_needs_a_reason_and_leaves_an_audit_record() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("audited");
    let session = archive_session(&server, &tenant, "/video.mp4");
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let source = format!("{prefix}source.jpg");
    let operator = [("ARCHIVER_OPERATOR", "auditor-7".to_string())];

    let output = tokio::task::block_in_place(|| cli(&["get", &source], &operator));
    assert_eq!(output.status.code(), Some(2), "{}", printed(&output));
    assert!(output.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--reason"),
        "{}",
        printed(&output)
    );

    let output = tokio::task::block_in_place(|| cli(&["get", &source, "--reason", "case 42 review"], &operator));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_eq!(output.stdout, TestMedia::get().source.to_vec());
    // The manifest holds no biometrics: no reason needed, still accounted for.
    let manifest = format!("{prefix}manifest.json");
    let output = tokio::task::block_in_place(|| cli(&["get", &manifest], &operator));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));

    let since = (OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    let output = tokio::task::block_in_place(|| cli(&["audit", "--tenant", &tenant, "--since", &since], &[]));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let records = lines(&output);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["action"], "get");
    assert_eq!(records[0]["key"], source.as_str());
    assert_eq!(records[0]["session_id"], session.as_str());
    assert_eq!(records[0]["tenant"], tenant.as_str());
    assert_eq!(records[0]["by"], "auditor-7");
    assert_eq!(records[0]["reason"], "case 42 review");
    assert_eq!(
        (records[1]["key"].as_str(), &records[1]["reason"]),
        (Some(manifest.as_str()), &Value::Null)
    );
    // Each record is an object of its own, under the tenant's audit prefix and the day.
    let day = OffsetDateTime::now_utc();
    let audit_keys = Stack::load()
        .s3()
        .list_keys(&format!("face-reports/_audit/{tenant}/"))
        .await;
    assert_eq!(audit_keys.len(), 2, "{audit_keys:?}");
    let folder = format!(
        "face-reports/_audit/{tenant}/{:04}/{:02}/",
        day.year(),
        u8::from(day.month())
    );
    assert!(
        audit_keys
            .iter()
            .all(|key| key.starts_with(&folder) && key.ends_with(".json")),
        "{audit_keys:?}"
    );
    let s3 = Stack::load().s3();
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
    s3.delete_prefix(&format!("face-reports/_audit/{tenant}/")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_media_and_manifest_write_carries_the_object_lock() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // Above one part: the multipart path too.
    server.route("/video.mp4", Behaviour::Ok(media.large_video.clone()));
    let tenant = unique_name("locked");
    let proxy = S3Proxy::start();
    let [(endpoint_name, endpoint), (ca_name, ca)] = proxy.env();
    let started = OffsetDateTime::now_utc();
    let event = event_json(&new_session_id(), &tenant, None, &Urls::of(&server));
    let env = [
        (endpoint_name, endpoint.as_str()),
        (ca_name, ca.as_str()),
        ("ARCHIVER_OBJECT_LOCK_MODE", "COMPLIANCE"),
        ("ARCHIVER_RETAIN_DAYS", "2555"),
    ];
    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &env));
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));

    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| matches!(r.operation(), "PutObject" | "CreateMultipartUpload"))
        .collect();
    let operations: Vec<&str> = writes.iter().map(|r| r.operation()).collect();
    assert_eq!(
        writes.len(),
        4,
        "source, target, the video's upload, manifest: {operations:?}"
    );
    assert!(operations.contains(&"CreateMultipartUpload"), "{operations:?}");
    for write in &writes {
        assert_eq!(
            write.header("x-amz-object-lock-mode"),
            Some("COMPLIANCE"),
            "{}",
            write.path
        );
        let until = write
            .header("x-amz-object-lock-retain-until-date")
            .expect("retain-until date");
        let until = OffsetDateTime::parse(until, &Rfc3339).unwrap_or_else(|err| panic!("{until}: {err}"));
        let expected = started + time::Duration::days(2555);
        assert!(until >= expected - time::Duration::seconds(1), "{until} {expected}");
        assert!(until < expected + time::Duration::minutes(5), "{until} {expected}");
    }
    // A mode without a retention period is a configuration error.
    let output = tokio::task::block_in_place(|| {
        cli(
            &["list", "--tenant", &tenant],
            &[("ARCHIVER_OBJECT_LOCK_MODE", "COMPLIANCE".into())],
        )
    });
    assert_eq!(output.status.code(), Some(2), "{}", printed(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ARCHIVER_RETAIN_DAYS"));
    Stack::load().s3().delete_prefix(&tenant_prefix(&tenant)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_stores_nothing_for_an_erased_session_and_publishes_erased() {
    use crate::worker_harness::{assert_exit_0, session_id, stop, WorkerTest};
    let test = WorkerTest::new("erased-worker").await;
    let worker = test.start_worker(&[]);
    let session = session_id(1);
    test.publish(&test.good_event(&session)).await;
    let first = test.results(1, WAIT).await;
    assert_eq!(first[0]["outcome"], "archived", "{first:?}");
    let output = tokio::task::block_in_place(|| {
        let mut command = test.command("erase");
        command.args(["--tenant", &test.tenant, "--reason", "DSR-77", &session]);
        run_with_timeout(command, None, WAIT)
    });
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let hits = test.media.hits("/source.jpg");

    // A replay (a DLQ replay): acknowledged, nothing fetched or stored.
    test.publish(&test.good_event(&session)).await;
    let again = test.results(1, WAIT).await;
    assert_eq!(again[0]["outcome"], "erased", "{again:?}");
    assert_eq!(again[0]["routing_key"], "erased", "{again:?}");
    assert_eq!(again[0]["session_id"], session.as_str());

    // The vendor's signed webhook for it again: queued, then erased at the worker (its
    // message id is the webhook's own, so its result is picked by routing key and session).
    let erased_results = format!("{}.erased", test.tenant);
    test.amqp.declare_queue(&erased_results, Default::default()).await;
    test.amqp.bind(&erased_results, "archiver.results", "erased").await;
    let webhook = signed_webhook(&test, &session).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let message = test
            .amqp
            .get(&erased_results, left)
            .await
            .expect("an erased result from the webhook's event");
        let result: Value = serde_json::from_slice(&message.delivery.data).unwrap();
        let from_webhook = message
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.to_string());
        if result["session_id"] == session.as_str() && from_webhook.is_some_and(|id| !id.starts_with(&test.queue)) {
            assert_eq!(result["outcome"], "erased", "{result}");
            break;
        }
    }
    test.amqp.delete_queue(&erased_results).await;
    assert_exit_0(&stop(webhook, WAIT));

    assert_eq!(test.media.hits("/source.jpg"), hits);
    assert_eq!(test.keys().await, vec![test.key(&session, "erased.json")]);
    assert_eq!(test.queue_depth().await, 0);
    assert_exit_0(&stop(worker, WAIT));
    test.clean_up().await;
    Stack::load()
        .s3()
        .delete_prefix(&format!("face-reports/_audit/{}/", test.tenant))
        .await;
}

/// `archiver list` over more sessions than one listing page (1,000 keys): every session
/// once, and how long it takes (printed; see README "Measured").
#[tokio::test(flavor = "multi_thread")]
async fn lists_more_sessions_than_one_listing_page() {
    use futures::stream::{self, StreamExt as _};
    const SESSIONS: usize = 1100;
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("many");
    let first = archive_session(&server, &tenant, "/video.mp4");
    let s3 = Stack::load().s3();
    let manifest = s3
        .get_object_sse_c(&format!("{}{first}/manifest.json", tenant_prefix(&tenant)))
        .await
        .unwrap();
    let manifest = String::from_utf8(manifest).unwrap();
    // Small manifests written directly: what the listing reads is only manifests.
    let started = std::time::Instant::now();
    stream::iter(1..SESSIONS)
        .map(|n| {
            let session = format!("00000000-0000-4000-8000-{n:012x}");
            let body = manifest.replace(&first, &session).into_bytes();
            let key = format!("{}{session}/manifest.json", tenant_prefix(&tenant));
            let s3 = &s3;
            async move { s3.put_object_sse_c(&key, body).await.expect("put manifest") }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    eprintln!("wrote {} manifests in {:?}", SESSIONS - 1, started.elapsed());

    let started = std::time::Instant::now();
    let output = tokio::task::block_in_place(|| cli(&["list", "--tenant", &tenant], &[]));
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let listed = lines(&output);
    let unique: std::collections::BTreeSet<&str> = listed.iter().map(|l| l["session_id"].as_str().unwrap()).collect();
    assert_eq!((listed.len(), unique.len()), (SESSIONS, SESSIONS));
    assert!(listed
        .iter()
        .all(|line| line["finished"] == true && line["erased"] == false));
    eprintln!("archiver list: {SESSIONS} sessions in {elapsed:?}");
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
}

/// Starts `archiver webhook` for the test's tenant and POSTs the vendor's signed webhook of a
/// decided session (the test's good media); returns the running webhook once it answered 200.
async fn signed_webhook(test: &crate::worker_harness::WorkerTest, session: &str) -> crate::support::Running {
    use hmac::{Hmac, Mac as _};
    const SECRET: &str = "retention-webhook-secret";
    let dir = tempfile::tempdir().expect("temp dir");
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        format!("[tenants.{}]\nwebhook_secret = \"{SECRET}\"\n", test.tenant),
    )
    .unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port")
    };
    let (port, metrics_port) = (free_port(), free_port());
    let mut command = test.command("webhook");
    command
        .env("ARCHIVER_TENANTS_FILE", &tenants)
        .env("ARCHIVER_WEBHOOK_ADDR", format!("127.0.0.1:{port}"))
        .env("ARCHIVER_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"));
    let running = crate::support::Running::spawn(command, None);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ready = format!("http://127.0.0.1:{metrics_port}/readyz");
    crate::worker_harness::eventually("the webhook's /readyz", Duration::from_secs(30), || async {
        matches!(client.get(&ready).send().await, Ok(response) if response.status() == 200)
    })
    .await;
    let mut event = test.good_event(session);
    let face = event["face"].take();
    let body = serde_json::to_vec(&serde_json::json!({
        "session_id": session, "status": "Approved", "webhook_type": "status.updated",
        "created_at": 1_800_000_000, "decision": { "session_id": session, "face": face }
    }))
    .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let response = client
        .post(format!("http://127.0.0.1:{port}/webhooks/{}", test.tenant))
        .header("content-type", "application/json")
        .header("x-timestamp", OffsetDateTime::now_utc().unix_timestamp().to_string())
        .header("x-signature", signature)
        .body(body)
        .send()
        .await
        .expect("the webhook answers");
    assert_eq!(response.status().as_u16(), 200);
    // The tenants file is read at start; the folder may go.
    drop(dir);
    running
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erase_that_stopped_after_its_tombstone_is_finished_by_a_rerun() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("stopped");
    let session = archive_session(&server, &tenant, "/video.mp4");
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let s3 = Stack::load().s3();
    // What an erase that died after its first write leaves: the tombstone, every object.
    let tombstone = serde_json::json!({
        "schema": 1, "session_id": session, "tenant": tenant, "erased_at": "2026-11-30T10:00:00Z",
        "reason": "DSR-1", "by": "dpo", "objects": [{"key": format!("{prefix}source.jpg"), "bytes": 1, "sha256": "00"}]
    });
    s3.put_object_sse_c(&format!("{prefix}erased.json"), serde_json::to_vec(&tombstone).unwrap())
        .await
        .unwrap();
    // Already final for the pipeline.
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));
    assert_eq!(
        (output.status.code(), output.stdout.is_empty()),
        (Some(0), true),
        "{}",
        printed(&output)
    );

    // A rerun (even inside a retention period: the decision was made) finishes the deletes
    // and keeps the first tombstone as the record.
    let output = erase(&tenant, &[&session], &[("ARCHIVER_RETAIN_DAYS", "30".into())]);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let line = &lines(&output)[0];
    assert_eq!(
        (line["outcome"].as_str(), line["deleted"].as_u64()),
        (Some("erased"), Some(4)),
        "{line}"
    );
    assert_eq!(s3.list_keys(&prefix).await, vec![format!("{prefix}erased.json")]);
    let kept: Value =
        serde_json::from_slice(&s3.get_object_sse_c(&format!("{prefix}erased.json")).await.unwrap()).unwrap();
    assert_eq!(kept, tombstone);
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
    s3.delete_prefix(&format!("face-reports/_audit/{tenant}/")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_in_flight_sees_the_tombstone_before_its_manifest_and_stops() {
    use crate::support::{ArchiverEnv as _, Running};
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // The video takes about two seconds: the erase lands while it is being fetched.
    let burst = media.video.len().saturating_sub(60_000);
    server.route(
        "/video.mp4",
        Behaviour::BurstThenTrickle {
            body: media.video.clone(),
            burst,
            bytes_per_sec: 30_000,
        },
    );
    let tenant = unique_name("inflight");
    let session = new_session_id();
    let lower = session.to_ascii_lowercase();
    let prefix = format!("{}{lower}/", tenant_prefix(&tenant));
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    let mut command = archiver();
    command
        .args(["archive", "-"])
        .media_server(&server)
        .env("NO_COLOR", "1");
    let mut running = Running::spawn(command, Some(&event));
    let s3 = Stack::load().s3();
    let source = format!("{prefix}source.jpg");
    crate::support::eventually("the source image stored", WAIT, || async {
        s3.list_keys(&source).await.contains(&source)
    })
    .await;
    assert!(running.is_running(), "the archive finished before the erase could land");
    let tombstone = serde_json::json!({
        "schema": 1, "session_id": lower, "tenant": tenant, "erased_at": "2026-11-30T10:00:00Z",
        "reason": "DSR-2", "by": "dpo", "objects": []
    });
    s3.put_object_sse_c(&format!("{prefix}erased.json"), serde_json::to_vec(&tombstone).unwrap())
        .await
        .unwrap();

    let output = tokio::task::block_in_place(|| running.wait_timeout(WAIT)).expect("the archive ends");
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert!(output.stdout.is_empty(), "{}", printed(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("was erased"),
        "{}",
        printed(&output)
    );
    let keys = s3.list_keys(&prefix).await;
    assert!(!keys.contains(&format!("{prefix}manifest.json")), "{keys:?}");
    // What it completed in between goes with a rerun of the erase.
    let output = erase(&tenant, &[&lower], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_eq!(s3.list_keys(&prefix).await, vec![format!("{prefix}erased.json")]);
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
    s3.delete_prefix(&format!("face-reports/_audit/{tenant}/")).await;
}

/// Garage has no Object Lock: the proxy adds to every HEAD what S3 reports of a locked
/// object, and `erase` must refuse, changing nothing, with the date (or the hold).
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_object_is_not_erased_before_its_date() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("lock-refused");
    let session = archive_session(&server, &tenant, "/video.mp4");
    let s3 = Stack::load().s3();
    let before = s3.list_keys(&tenant_prefix(&tenant)).await;
    let proxy = S3Proxy::start();
    let through_proxy: Vec<(&str, String)> = proxy.env().iter().map(|(k, v)| (*k, v.clone())).collect();
    // (headers added to every HEAD, the `until` expected, what the reason says)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
    let cases: [Case; 2] = [
        (
            &[
                ("x-amz-object-lock-mode", "COMPLIANCE"),
                ("x-amz-object-lock-retain-until-date", "2031-11-30T10:00:00.000Z"),
            ],
            Some("2031-11-30T10:00:00Z"),
            "S3 Object Lock (COMPLIANCE) until 2031-11-30T10:00:00Z",
        ),
        (&[("x-amz-object-lock-legal-hold", "ON")], None, "legal hold"),
    ];
    for (headers, until, says) in cases {
        proxy.pass_through();
        proxy.add_response_headers(Rule::operation("HeadObject"), headers);
        let output = erase(&tenant, &[&session], &through_proxy);
        assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
        let line = &lines(&output)[0];
        assert_eq!(line["outcome"], "refused", "{line}");
        assert_eq!(line["until"].as_str(), until, "{line}");
        assert!(line["reason"].as_str().unwrap().contains(says), "{line}");
        assert_eq!(s3.list_keys(&tenant_prefix(&tenant)).await, before);
    }
    assert!(s3.list_keys(&format!("face-reports/_audit/{tenant}/")).await.is_empty());
    s3.delete_prefix(&tenant_prefix(&tenant)).await;
}
