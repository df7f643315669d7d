//! `ARCHIVER_TENANTS_FILE` and per-tenant vendor keys (issue 13): an event naming tenant
//! `eve` and another tenant's session, with URLs that expired, gets no refresh with anyone
//! else's key and stores nothing under eve's prefix; the owner's own event is refreshed
//! with the owner's key. A malformed file is a configuration error that shows no secret.

use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::support::archive_kit::printed;
use crate::support::{run_with_timeout, unique_name, Behaviour, Stack};
use crate::worker_harness::{session_id, stop, WorkerTest};

const OWNER_KEY: &str = "owner-vendor-key";
const GLOBAL_KEY: &str = "global-vendor-key";
const EVE_WEBHOOK_SECRET: &str = "eve-webhook-secret";

fn decision_path(session: &str) -> String {
    format!("/v3/session/{session}/decision/")
}

/// A tenants file in a folder of its own: the owner has a vendor key, eve only a webhook secret.
fn tenants_file(owner: &str, eve: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("owner-key"), format!("{OWNER_KEY}\n")).unwrap();
    let text = format!(
        "[tenants.{owner}]\nprovider_api_key_file = \"owner-key\"\n\n[tenants.{eve}]\nwebhook_secret = \"{EVE_WEBHOOK_SECRET}\"\n"
    );
    std::fs::write(dir.path().join("tenants.toml"), text).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_without_a_key_of_its_own_gets_no_refresh_with_another_tenants_key() {
    let test = WorkerTest::new("tenant-keys").await;
    let eve = unique_name("eve");
    let dir = tenants_file(&test.tenant, &eve);
    let session = session_id(1);
    // A vendor that would answer anyone (one key that reads every session is the risk).
    let mut fresh = test.good_event(&session);
    let face = fresh["face"].take();
    test.media.route(
        &decision_path(&session),
        Behaviour::ok(serde_json::to_vec(&json!({ "session_id": session, "face": face })).unwrap()),
    );
    let expired = SystemTime::now() - Duration::from_secs(7200);
    let expired_event = |tenant: &str| {
        let mut event = test.good_event(&session);
        event["tenant"] = json!(tenant);
        for (field, path) in [
            ("source_image", "/source.jpg"),
            ("target_image", "/target.jpg"),
            ("video_url", "/video.mp4"),
        ] {
            event["face"][field] = json!(test.media.url_signed_at(path, expired, 3600));
        }
        event
    };
    let api = format!("https://localhost:{}", test.media.port());
    let tenants = dir.path().join("tenants.toml");
    let env = [
        ("ARCHIVER_PROVIDER_API_URL", api.as_str()),
        ("ARCHIVER_PROVIDER_API_KEY", GLOBAL_KEY),
        ("ARCHIVER_TENANTS_FILE", tenants.to_str().unwrap()),
    ];
    let worker = test.start_worker(&env);

    // Eve names the owner's session: dead-lettered with the reason, the vendor never asked.
    test.publish(&expired_event(&eve)).await;
    let letters = test.dead_letters(1, Duration::from_secs(60)).await;
    let reason = &letters[0].2;
    assert!(
        reason.contains("no refresh") && reason.contains(&eve) && reason.contains("provider_api_key"),
        "{reason}"
    );
    assert_eq!(
        test.media.hits(&decision_path(&session)),
        0,
        "the vendor was asked for eve"
    );
    let eve_prefix = format!("face-reports/{eve}/");
    let eve_keys = Stack::load().s3().list_keys(&eve_prefix).await;
    // At most a manifest that records the failed media; no media.
    assert!(
        eve_keys.iter().all(|key| key.ends_with("/manifest.json")),
        "eve got the owner's media: {eve_keys:?}"
    );

    // The owner's own event is refreshed with the owner's key and archived.
    test.publish(&expired_event(&test.tenant)).await;
    let results = test.results(2, Duration::from_secs(60)).await;
    assert_eq!(results[0]["outcome"], "dead-lettered", "eve's: {}", results[0]);
    assert_eq!(results[0]["tenant"], json!(eve));
    assert_eq!(results[1]["outcome"], "archived", "the owner's: {}", results[1]);
    assert_eq!(results[1]["tenant"], json!(test.tenant));
    test.assert_media_stored(&session).await;
    let asked: Vec<_> = test
        .media
        .requests()
        .into_iter()
        .filter(|request| request.path == decision_path(&session))
        .collect();
    assert_eq!(asked.len(), 1, "asked the vendor once, for the owner");
    assert_eq!(asked[0].header("x-api-key"), Some(OWNER_KEY));

    // `archiver refetch` keeps the same rule.
    let mut refetch = test.command("refetch");
    refetch.envs(env).args(["--tenant", &eve, &session]);
    let output = tokio::task::spawn_blocking(move || run_with_timeout(refetch, None, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(line["outcome"], "failed", "{line}");
    assert!(
        line["reason"].as_str().unwrap().contains("has no provider_api_key"),
        "{line}"
    );
    assert_eq!(
        test.media.hits(&decision_path(&session)),
        1,
        "refetch asked the vendor for eve"
    );

    let output = stop(worker, Duration::from_secs(30));
    let log = printed(&output);
    for secret in [OWNER_KEY, GLOBAL_KEY, EVE_WEBHOOK_SECRET] {
        assert!(!log.contains(secret), "{secret} in the worker's log");
    }
    Stack::load().s3().delete_prefix(&eve_prefix).await;
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_tenants_file_is_a_configuration_error_that_names_every_problem_and_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tenants.toml");
    let text = "[tenants.Acme]\nwebhook_secret = \"SECRET-ONE\"\n\n[tenants.beta]\nprovider_api_key = \"SECRET-TWO\"\nprovider_api_key_file = \"/nonexistent\"\n\n[tenants.gamma]\nwebhok_secret = \"SECRET-THREE\"\n";
    std::fs::write(&file, text).unwrap();
    for command in ["worker", "refetch", "webhook"] {
        let mut archiver = crate::support::archiver();
        archiver
            .arg(command)
            .env("ARCHIVER_TENANTS_FILE", &file)
            .env("ARCHIVER_PROVIDER_API_URL", "https://localhost:1")
            .env("ARCHIVER_METRICS_ADDR", "127.0.0.1:0");
        if command == "refetch" {
            archiver.arg(session_id(1));
        }
        let output = tokio::task::spawn_blocking(move || run_with_timeout(archiver, None, Duration::from_secs(30)))
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {}", printed(&output));
        assert_eq!(stderr.trim().lines().count(), 1, "{command}: one line: {stderr}");
        for problem in [
            "tenant name \"Acme\"",
            "tenants.beta: give provider_api_key or provider_api_key_file, not both",
            "tenants.gamma: unknown key \"webhok_secret\"",
        ] {
            assert!(stderr.contains(problem), "{command}: {problem:?} missing: {stderr}");
        }
        for secret in ["SECRET-ONE", "SECRET-TWO", "SECRET-THREE"] {
            assert!(!stderr.contains(secret), "{command}: {secret} shown: {stderr}");
        }
    }
}
