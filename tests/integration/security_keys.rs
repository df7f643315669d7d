//! SSE-C key rotation (issue 7): objects written under a previous key stay readable with
//! `archiver get` given that key; the wrong key is refused with a message saying so; the
//! key id in use is recorded in each manifest; the key may come from a file; and no key
//! is shown by `--help`.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::support::archive_kit::{
    archive_event, event_json, new_session_id, printed, serve_good_media, tenant_prefix, TestMedia, Urls,
};
use crate::support::{archiver, run_with_timeout, unique_name, ArchiverEnv, MediaServer, Stack};

/// A fresh 32-byte key: the SHA-256 of a unique name (a test key, not a secret).
fn new_key() -> String {
    use sha2::Digest as _;
    let bytes = sha2::Sha256::digest(unique_name("key").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn get(key: &str, sse_c_key: &str) -> std::process::Output {
    let mut command = archiver();
    command
        .args(["get", key, "--reason", "integration test"])
        .env("ARCHIVER_SSE_C_KEY", sse_c_key);
    run_with_timeout(command, None, Duration::from_secs(60))
}

#[test]
fn objects_stay_readable_under_their_own_key_after_rotation() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("rotation");
    let old_key = Stack::load().sse_c_key().to_string();
    let new_key = new_key();
    let dir = tempfile::tempdir().unwrap();
    let new_key_file = dir.path().join("sse-c-key");
    std::fs::write(&new_key_file, format!("{new_key}\n")).unwrap();

    // Before the rotation: key k1 (the stack's). After: k2, read from a file.
    let before = new_session_id().to_ascii_lowercase();
    let output = archive_event(
        &server,
        &event_json(&before, &tenant, None, &Urls::of(&server)),
        &[("ARCHIVER_SSE_KEY_ID", "k1")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let after = new_session_id().to_ascii_lowercase();
    let mut command = archiver();
    command
        .args(["archive", "-"])
        .env_remove("ARCHIVER_SSE_C_KEY")
        .env("ARCHIVER_SSE_C_KEY_FILE", &new_key_file)
        .env("ARCHIVER_SSE_KEY_ID", "k2")
        .source_ca(server.ca_file())
        .allowed_hosts(&server.authority());
    let output = run_with_timeout(
        command,
        Some(&event_json(&after, &tenant, None, &Urls::of(&server))),
        Duration::from_secs(90),
    );
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        manifest["encryption"],
        serde_json::json!({"mode": "sse-c", "key_id": "k2"}),
        "{manifest}"
    );

    let source = TestMedia::get().source.to_vec();
    let old_object = format!("{}{before}/source.jpg", tenant_prefix(&tenant));
    let new_object = format!("{}{after}/source.jpg", tenant_prefix(&tenant));
    for (object, right, wrong) in [(&old_object, &old_key, &new_key), (&new_object, &new_key, &old_key)] {
        let good = get(object, right);
        assert_eq!(good.status.code(), Some(0), "{object} with its key: {}", printed(&good));
        assert!(good.stdout == source, "{object}: decrypted bytes differ");
        let bad = get(object, wrong);
        let shown = printed(&bad);
        assert_eq!(bad.status.code(), Some(1), "{object} with the other key: {shown}");
        assert!(bad.stdout.is_empty(), "{shown}");
        let stderr = String::from_utf8_lossy(&bad.stderr).to_lowercase();
        assert!(
            stderr.contains("the store refused the sse-c key") && stderr.contains("key_id"),
            "the refusal should say the key is wrong: {shown}"
        );
        assert!(
            stderr.lines().count() == 1 && stderr.len() < 600,
            "one short line expected: {shown}"
        );
        assert!(
            !stderr.contains(right.as_str()) && !stderr.contains(wrong.as_str()),
            "a key was printed: {shown}"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(Stack::load().s3().delete_prefix(&tenant_prefix(&tenant)));
}

#[test]
fn help_and_errors_show_no_secret() {
    let key = Stack::load().sse_c_key().to_string();
    let amqp = "amqp://someone:PASSWORD-IN-URL@127.0.0.1:5672/%2f";
    for args in [
        &["worker", "--help"][..],
        &["archive", "--help"],
        &["get", "--help"],
        &["--help"],
    ] {
        let mut command = archiver();
        command
            .args(args)
            .env("ARCHIVER_SSE_C_KEY", &key)
            .env("ARCHIVER_AMQP_URL", amqp)
            .env("ARCHIVER_PROVIDER_API_KEY", "API-KEY-SECRET");
        let output = run_with_timeout(command, None, Duration::from_secs(30));
        let shown = printed(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {shown}");
        for secret in [key.as_str(), "PASSWORD-IN-URL", "API-KEY-SECRET"] {
            assert!(!shown.contains(secret), "{args:?} shows a secret: {shown}");
        }
    }
    // A configuration error next to a secret: the secret is not echoed back.
    let mut command = archiver();
    command
        .args(["get", "some/key"])
        .env("ARCHIVER_SSE_C_KEY", &key)
        .env("ARCHIVER_SSE", "nonsense")
        .env("ARCHIVER_AMQP_URL", amqp);
    let output = run_with_timeout(command, None, Duration::from_secs(30));
    let shown = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{shown}");
    assert!(!shown.contains(&key) && !shown.contains("PASSWORD-IN-URL"), "{shown}");
    // A key file that cannot be read is named, exit 2.
    let mut command = archiver();
    command
        .args(["get", "some/key"])
        .env_remove("ARCHIVER_SSE_C_KEY")
        .env("ARCHIVER_SSE_C_KEY_FILE", "/nonexistent/sse-c-key");
    let output = run_with_timeout(command, None, Duration::from_secs(30));
    let shown = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("ARCHIVER_SSE_C_KEY_FILE: cannot read /nonexistent/sse-c-key"),
        "{shown}"
    );
}
