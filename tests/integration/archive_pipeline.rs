//! `archiver archive` and `archiver get` end to end against the real stack: what lands in
//! Garage (decrypted and compared byte for byte), the printed manifest, idempotency, and
//! the encryption check that refuses a store which ignores `aws:kms`.

use serde_json::{json, Value};

use crate::support::archive_kit::{
    archive_event, event_json, new_session_id, printed, s3_sha256_checksum, serve_good_media, sha256_hex,
    tenant_prefix, TestMedia, Urls,
};
use crate::support::{
    archiver, run, unique_name, Behaviour, MediaServer, Stack, SECRET_QUERY_MARKER, SECRET_SIGNATURE,
};

/// Asserts that nothing the archiver printed holds a media URL's query string.
fn assert_no_secret(output: &std::process::Output) {
    let text = printed(output);
    assert!(
        !text.contains(SECRET_QUERY_MARKER) && !text.contains(SECRET_SIGNATURE),
        "a URL query leaked:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_every_media_encrypted_and_prints_the_contract_manifest() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // More than one 5 MiB part: exercises the multipart path.
    server.route("/video.mp4", Behaviour::Ok(media.large_video.clone()));
    let tenant = unique_name("acme");
    let session = new_session_id();
    let session_lower = session.to_ascii_lowercase();
    let issued_at = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let issued_text = issued_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let event = event_json(&session, &tenant, Some(&issued_text), &Urls::of(&server));

    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_no_secret(&output);
    let manifest: Value = serde_json::from_slice(&output.stdout).expect("stdout is the manifest JSON");
    let prefix = format!("{}{session_lower}/", tenant_prefix(&tenant));
    let expires = (issued_at + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(manifest["schema"], json!(1));
    assert_eq!(manifest["session_id"], json!(session_lower));
    assert_eq!(manifest["tenant"], json!(tenant));
    assert_eq!(manifest["urls_expire_at"], json!(expires));
    assert!(time::OffsetDateTime::parse(
        manifest["archived_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    assert_eq!(
        manifest["face"],
        json!({"status": "In Review", "face_match_status": "Approved", "liveness_status": "In Review",
               "face_match_similarity": 95.43, "liveness_confidence": 65.0})
    );
    assert_eq!(manifest["encryption"], json!({"mode": "sse-c", "key_id": "k1"}));
    // The fields come in the contract's order (serde_json's Value sorts them, so look at the text).
    let text = String::from_utf8_lossy(&output.stdout);
    let order = [
        "schema",
        "session_id",
        "tenant",
        "archived_at",
        "urls_expire_at",
        "face",
        "face_received_at",
        "encryption",
        "media",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|field| text.find(&format!("\"{field}\"")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "field order: {text}"
    );
    assert_eq!(manifest.as_object().unwrap().len(), order.len());

    let expected = [
        (
            "source_image",
            "source.jpg",
            &media.source,
            json!({"width": 600, "height": 800}),
        ),
        (
            "target_image",
            "target.jpg",
            &media.target,
            json!({"width": 1280, "height": 720}),
        ),
        ("video", "video.mp4", &media.large_video, json!({"duration_secs": 1.2})),
    ];
    let s3 = Stack::load().s3();
    for (name, file, bytes, figures) in &expected {
        let entry = &manifest["media"][name];
        let key = format!("{prefix}{file}");
        assert_eq!(entry["status"], json!("stored"), "{name}: {entry}");
        assert_eq!(entry["key"], json!(key));
        assert_eq!(entry["bytes"], json!(bytes.len()));
        assert_eq!(entry["sha256"], json!(sha256_hex(bytes)));
        assert_eq!(entry["attempts"], json!(1));
        assert!(entry["fetched_at"].is_string());
        for (figure, value) in figures.as_object().unwrap() {
            assert_eq!(&entry[figure], value, "{name}.{figure}");
        }
        // The evidence is exactly the served bytes, readable only with the key.
        assert_eq!(
            s3.get_object_sse_c(&key).await.expect("read back with the key"),
            bytes.to_vec(),
            "{name}"
        );
        let refused = s3
            .get_object_plain(&key)
            .await
            .expect_err("a GET without the SSE-C key must fail");
        assert_eq!(refused.status, Some(400), "{name}: {}", refused.message);
        // The checksum the store itself verified on receipt (single PUT and multipart).
        let head = s3.head_object_sse_c(&key).await.expect("head");
        assert_eq!(head.sse_customer_algorithm(), Some("AES256"));
        assert_eq!(
            head.checksum_sha256(),
            Some(s3_sha256_checksum(bytes).as_str()),
            "{name}"
        );
        let metadata = head.metadata().expect("user metadata");
        assert_eq!(metadata.get("key-id").map(String::as_str), Some("k1"), "{name}");
    }
    let mut keys = s3.list_keys(&prefix).await;
    keys.sort();
    let want: Vec<String> = ["manifest.json", "source.jpg", "target.jpg", "video.mp4"]
        .iter()
        .map(|f| format!("{prefix}{f}"))
        .collect();
    assert_eq!(keys, want);
    let stored_manifest: Value =
        serde_json::from_slice(&s3.get_object_sse_c(&format!("{prefix}manifest.json")).await.unwrap()).unwrap();
    assert_eq!(stored_manifest, manifest, "the stored manifest is the printed one");
    let text = String::from_utf8(s3.get_object_sse_c(&format!("{prefix}manifest.json")).await.unwrap()).unwrap();
    assert!(
        !text.contains("https://") && !text.contains(SECRET_QUERY_MARKER),
        "the manifest holds a URL: {text}"
    );

    // `archiver get` decrypts to a file and to stdout.
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("video.mp4");
    let video_key = format!("{prefix}video.mp4");
    let mut to_file = archiver();
    to_file
        .args(["get", &video_key, "--reason", "integration test", "-o"])
        .arg(&out_file);
    let mut to_stdout = archiver();
    to_stdout.args(["get", &format!("{prefix}source.jpg"), "--reason", "integration test"]);
    let (file_run, stdout_run) = tokio::task::block_in_place(|| (run(to_file, None), run(to_stdout, None)));
    assert_eq!(file_run.status.code(), Some(0), "{}", printed(&file_run));
    assert_eq!(std::fs::read(&out_file).unwrap(), media.large_video.to_vec());
    assert_eq!(stdout_run.status.code(), Some(0), "{}", printed(&stdout_run));
    assert_eq!(stdout_run.stdout, media.source.to_vec());

    assert_eq!(s3.delete_prefix(&prefix).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_twice_leaves_the_same_objects_and_one_manifest() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("twice");
    let session = new_session_id();
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    let prefix = format!("{}{}/", tenant_prefix(&tenant), session.to_ascii_lowercase());
    let s3 = Stack::load().s3();

    let mut snapshots = Vec::new();
    for run_number in 1..=2 {
        let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));
        assert_eq!(output.status.code(), Some(0), "run {run_number}: {}", printed(&output));
        let keys = s3.list_keys(&prefix).await;
        let mut objects = Vec::new();
        for key in &keys {
            objects.push((key.clone(), s3.get_object_sse_c(key).await.unwrap()));
        }
        snapshots.push(objects);
    }
    let names = |objects: &Vec<(String, Vec<u8>)>| objects.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(&snapshots[0]), names(&snapshots[1]));
    assert_eq!(
        names(&snapshots[1])
            .iter()
            .filter(|k| k.ends_with("manifest.json"))
            .count(),
        1
    );
    for ((key, first), (_, second)) in snapshots[0].iter().zip(&snapshots[1]) {
        if key.ends_with("manifest.json") {
            // Only the times may differ between the two manifests.
            let strip = |bytes: &[u8]| {
                let mut value: Value = serde_json::from_slice(bytes).unwrap();
                value["archived_at"] = Value::Null;
                value["urls_expire_at"] = Value::Null;
                for media in ["source_image", "target_image", "video"] {
                    value["media"][media]["fetched_at"] = Value::Null;
                }
                value
            };
            assert_eq!(strip(first), strip(second));
        } else {
            assert_eq!(first, second, "{key} changed between runs");
        }
    }
    assert_eq!(
        snapshots[1].iter().find(|(k, _)| k.ends_with("video.mp4")).unwrap().1,
        media.video.to_vec()
    );
    assert_eq!(s3.delete_prefix(&prefix).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_kms_without_a_key_id_needs_a_bucket_default_key() {
    // Without a key id S3 would use the account's aws/s3 key; the archiver reads the
    // bucket's default key instead, and Garage has none: a configuration error, exit 2.
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("kms-default");
    let event = event_json(&new_session_id(), &tenant, None, &Urls::of(&server));
    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[("ARCHIVER_SSE", "aws:kms")]));
    assert_eq!(output.status.code(), Some(2), "{}", printed(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("set ARCHIVER_SSE_KMS_KEY_ID"), "{stderr}");
    assert!(
        server.requests().is_empty(),
        "nothing may be fetched before the store is usable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn encryption_a_store_ignores_is_refused_and_nothing_stays() {
    // Garage stores SSE-KMS and SSE-S3 requests in plaintext: the read-back must catch it.
    for mode in ["aws:kms", "AES256"] {
        let server = MediaServer::start();
        serve_good_media(&server);
        let tenant = unique_name("ignored-sse");
        let event = event_json(&new_session_id(), &tenant, None, &Urls::of(&server));

        // A key id, as Garage has no bucket default to read (and ignores the key anyway).
        let env = [
            ("ARCHIVER_SSE", mode),
            ("ARCHIVER_SSE_KMS_KEY_ID", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ];
        let output = tokio::task::block_in_place(|| archive_event(&server, &event, &env));

        assert_eq!(output.status.code(), Some(1), "{mode}: {}", printed(&output));
        assert!(
            output.stdout.is_empty(),
            "{mode}: no manifest may be reported: {}",
            printed(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!("store did not report the requested encryption {mode}; object deleted");
        assert!(stderr.contains(&expected), "{mode}: {stderr}");
        assert_eq!(
            Stack::load().s3().list_keys(&tenant_prefix(&tenant)).await,
            Vec::<String>::new(),
            "{mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_media_are_not_stored_and_null_media_are_absent() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    server.route("/target.jpg", Behaviour::Ok(media.small_target.clone()));
    let tenant = unique_name("reject");
    let session = new_session_id();
    let urls = Urls {
        video: None,
        ..Urls::of(&server)
    };
    let event = event_json(&session, &tenant, None, &urls);

    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let manifest: Value = serde_json::from_slice(&output.stdout).expect("the manifest is printed");
    assert_eq!(manifest["media"]["source_image"]["status"], json!("stored"));
    assert_eq!(
        manifest["media"]["target_image"],
        json!({"status": "rejected", "reason": "short side 480 is below 720"})
    );
    assert_eq!(manifest["media"]["video"], json!({"status": "absent"}));
    assert_eq!(server.hits("/video.mp4"), 0);
    let prefix = format!("{}{}/", tenant_prefix(&tenant), session.to_ascii_lowercase());
    let s3 = Stack::load().s3();
    assert_eq!(
        s3.list_keys(&prefix).await,
        vec![format!("{prefix}manifest.json"), format!("{prefix}source.jpg")]
    );
    assert_eq!(s3.delete_prefix(&prefix).await, 2);
}

#[test]
fn bad_events_and_bad_settings_exit_2_with_one_line() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let good = String::from_utf8(event_json(&new_session_id(), "acme", None, &Urls::of(&server))).unwrap();
    // (name, event, settings, what stderr says)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "score out of range",
            good.replace("65.0", "140"),
            vec![],
            "face.liveness_confidence: must be a number from 0 to 100, got 140",
        ),
        ("not json", "{".to_string(), vec![], "event is not a JSON object"),
        (
            "plain http url",
            good.replacen("https://", "http://", 1),
            vec![],
            "face.source_image: must be an https URL",
        ),
        (
            "no sse",
            good.clone(),
            vec![("ARCHIVER_SSE", "")],
            "ARCHIVER_SSE is required",
        ),
        (
            "short sse-c key",
            good.clone(),
            vec![("ARCHIVER_SSE_C_KEY", "c2hvcnQ=")],
            "ARCHIVER_SSE_C_KEY must be base64 of a 32-byte key",
        ),
        (
            "bad allowed host",
            good.clone(),
            vec![("ARCHIVER_ALLOWED_HOSTS", "a/b")],
            "ARCHIVER_ALLOWED_HOSTS",
        ),
    ];
    for (name, event, env, expected) in cases {
        let output = archive_event(&server, event.as_bytes(), &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", printed(&output));
        assert!(output.stdout.is_empty(), "{name}: {}", printed(&output));
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line on stderr: {stderr}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains(SECRET_QUERY_MARKER), "{name}: {stderr}");
    }
    assert_eq!(
        server.connections(),
        0,
        "no request for an event or a configuration that is refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_video_broken_mid_part_is_fetched_again_and_leaves_no_upload_behind() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // The first answer breaks inside the second 5 MiB part of a multipart upload.
    let broken = Behaviour::ResetAfter {
        body: media.large_video.clone(),
        after_bytes: 9_000_000,
    };
    server.route(
        "/video.mp4",
        Behaviour::Sequence(vec![broken, Behaviour::Ok(media.large_video.clone())]),
    );
    let tenant = unique_name("broken");
    let session = new_session_id().to_ascii_lowercase();
    let event = event_json(&session, &tenant, None, &Urls::of(&server));

    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["media"]["video"]["attempts"], json!(2));
    assert_eq!(server.hits("/video.mp4"), 2);
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let s3 = Stack::load().s3();
    assert_eq!(
        s3.get_object_sse_c(&format!("{prefix}video.mp4")).await.unwrap(),
        media.large_video.to_vec()
    );
    let uploads = s3
        .client()
        .list_multipart_uploads()
        .bucket(s3.bucket())
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "the broken attempt's upload was not aborted: {:?}",
        uploads.uploads()
    );
    assert_eq!(s3.delete_prefix(&prefix).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_video_of_unknown_length_goes_up_in_buffered_parts() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // Chunked transfer: no Content-Length, so the object cannot be streamed part by part.
    server.route("/video.mp4", Behaviour::Chunked(media.large_video.clone()));
    let tenant = unique_name("chunked");
    let session = new_session_id().to_ascii_lowercase();
    let event = event_json(&session, &tenant, None, &Urls::of(&server));

    let output = tokio::task::block_in_place(|| archive_event(&server, &event, &[]));

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        manifest["media"]["video"]["sha256"],
        json!(sha256_hex(&media.large_video))
    );
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let s3 = Stack::load().s3();
    assert_eq!(
        s3.get_object_sse_c(&format!("{prefix}video.mp4")).await.unwrap(),
        media.large_video.to_vec()
    );
    // Multipart: the composite of the parts' SHA-256 checksums, as the store verified them.
    let head = s3.head_object_sse_c(&format!("{prefix}video.mp4")).await.unwrap();
    let checksum = head.checksum_sha256().unwrap_or_default();
    assert!(checksum.ends_with("-3"), "{checksum}");
    assert_eq!(checksum, s3_sha256_checksum(&media.large_video));
    assert_eq!(s3.delete_prefix(&prefix).await, 4);
}
