//! Evidence is never downgraded and stored media are immutable (docs/contract.md section 3,
//! contract 1.1), against the real stack: later deliveries of a finished session fetch
//! nothing, partial records are completed media by media, decisions change while media do
//! not, media found without a manifest are recovered, S3 verifies every checksum, slow
//! sources and store faults (through the S3 fault proxy), and a writer that lost its channel.

use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::support::archive_kit::{
    archive_event, event_json, new_session_id, printed, s3_sha256_checksum, serve_good_media, sha256_hex,
    tenant_prefix, TestMedia, Urls,
};
use crate::support::{
    archiver, eventually, run_with_timeout, unique_name, wait_until, ArchiverEnv, Behaviour, MediaServer, Rule,
    S3Fault, S3Proxy, Stack,
};
use crate::worker_harness::{assert_exit_0, stop, WorkerTest};

const MEDIA_NAMES: [&str; 3] = ["source_image", "target_image", "video"];

/// URLs for the three usual routes that expire `secs_left` from now by their own
/// `X-Amz-Date`/`X-Amz-Expires`.
fn expiring_urls(server: &MediaServer, secs_left: u64) -> Urls {
    let signed_at = SystemTime::now() - Duration::from_secs(3600 - secs_left);
    let url = |path: &str| Some(server.url_signed_at(path, signed_at, 3600));
    Urls {
        source: url("/source.jpg"),
        target: url("/target.jpg"),
        video: url("/video.mp4"),
    }
}

fn no_urls() -> Urls {
    Urls {
        source: None,
        target: None,
        video: None,
    }
}

/// Requests the media server received for the three usual routes.
fn media_hits(server: &MediaServer) -> [usize; 3] {
    ["/source.jpg", "/target.jpg", "/video.mp4"].map(|path| server.hits(path))
}

/// Waits (polling the clock, bounded) until `at` has passed.
fn wait_past(at: &str) {
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    wait_until("the URLs' expiry", Duration::from_secs(90), || {
        (time::OffsetDateTime::now_utc() > at + time::Duration::seconds(1)).then_some(())
    });
}

/// What S3 reports of every object under `prefix`: (key, ETag, last modified, bytes).
async fn objects(prefix: &str) -> Vec<(String, String, String, Vec<u8>)> {
    let s3 = Stack::load().s3();
    let mut objects = Vec::new();
    for key in s3.list_keys(prefix).await {
        let head = s3.head_object_sse_c(&key).await.expect("head");
        let bytes = s3.get_object_sse_c(&key).await.expect("get");
        objects.push((
            key,
            head.e_tag().unwrap_or_default().to_string(),
            format!("{:?}", head.last_modified()),
            bytes,
        ));
    }
    objects
}

fn session_prefix(tenant: &str, session: &str) -> String {
    format!("{}{}/", tenant_prefix(tenant), session.to_ascii_lowercase())
}

fn manifest_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("stdout is the manifest: {}", printed(output)))
}

fn assert_all_stored(manifest: &Value, context: &str) {
    for name in MEDIA_NAMES {
        assert_eq!(
            manifest["media"][name]["status"],
            json!("stored"),
            "{context}: {name} in {manifest}"
        );
    }
}

/// Runs `archive` in a blocking section (the tests are async for the S3 client).
fn archive(server: &MediaServer, event: &[u8], env: &[(&str, &str)]) -> Output {
    tokio::task::block_in_place(|| archive_event(server, event, env))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_session_delivered_again_fetches_nothing_whatever_its_urls() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("finished-again");
    // (case, the later delivery's URLs: None = the very same event)
    let cases: [(&str, Option<Urls>); 3] = [
        ("the same event after its URLs expired", None),
        ("null URLs", Some(no_urls())),
        (
            "URLs the vendor no longer serves",
            Some(Urls {
                source: Some(server.url("/gone/source.jpg")),
                target: Some(server.url("/gone/target.jpg")),
                video: Some(server.url("/gone/video.mp4")),
            }),
        ),
    ];
    let mut firsts = Vec::new();
    for (case, _) in &cases {
        let session = new_session_id();
        // 30 s: enough for the three first runs on a loaded machine; the test then waits
        // for the expiry.
        let event = event_json(&session, &tenant, None, &expiring_urls(&server, 30));
        let output = archive(&server, &event, &[]);
        assert_eq!(output.status.code(), Some(0), "{case}: first run: {}", printed(&output));
        let manifest = manifest_of(&output);
        assert_all_stored(&manifest, case);
        let prefix = session_prefix(&tenant, &session);
        firsts.push((session, event, manifest, objects(&prefix).await, prefix));
    }
    let hits = server.requests().len();
    wait_past(firsts.last().unwrap().2["urls_expire_at"].as_str().unwrap());

    for ((case, later_urls), (session, first_event, first_manifest, first_objects, prefix)) in cases.iter().zip(&firsts)
    {
        let event = match later_urls {
            None => first_event.clone(),
            Some(urls) => event_json(session, &tenant, None, urls),
        };
        let output = archive(&server, &event, &[]);
        assert_eq!(output.status.code(), Some(0), "{case}: {}", printed(&output));
        assert_eq!(
            &manifest_of(&output),
            first_manifest,
            "{case}: the printed manifest changed"
        );
        assert_eq!(&objects(prefix).await, first_objects, "{case}: the objects changed");
        assert_eq!(first_objects.len(), 4, "{case}");
    }
    assert_eq!(
        server.requests().len(),
        hits,
        "a finished session fetched again: {:#?}",
        server.requests()
    );
    Stack::load().s3().delete_prefix(&tenant_prefix(&tenant)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_archives_a_finished_session_again_without_fetching() {
    let test = WorkerTest::new("worker-finished-again").await;
    let worker = test.start_worker(&[]);
    let (expired, nulled) = (
        "00000000-0000-4000-8000-00000000000a",
        "00000000-0000-4000-8000-00000000000b",
    );
    let expiring = event_json(expired, &test.tenant, None, &expiring_urls(&test.media, 30));
    let expiring: Value = serde_json::from_slice(&expiring).unwrap();
    test.publish(&expiring).await;
    test.publish(&test.good_event(nulled)).await;
    let first = test.results(2, Duration::from_secs(60)).await;
    assert!(first.iter().all(|r| r["outcome"] == "archived"), "{first:#?}");
    let manifests = [test.manifest(expired).await, test.manifest(nulled).await];
    let hits = test.media.requests().len();
    wait_past(manifests[0]["urls_expire_at"].as_str().unwrap());

    // The same event after its URLs expired, and one with null URLs.
    test.publish(&expiring).await;
    let nulls: Value = serde_json::from_slice(&event_json(nulled, &test.tenant, None, &no_urls())).unwrap();
    test.publish(&nulls).await;
    let second = test.results(2, Duration::from_secs(60)).await;
    for result in &second {
        assert_eq!(result["outcome"], "archived", "{result}");
        for name in MEDIA_NAMES {
            assert_eq!(result["media"][name]["status"], "stored", "{result}");
        }
    }
    assert_eq!(test.manifest(expired).await, manifests[0]);
    assert_eq!(test.manifest(nulled).await, manifests[1]);
    assert_eq!(
        test.media.requests().len(),
        hits,
        "fetched again: {:#?}",
        test.media.requests()
    );
    eventually("an empty queue", Duration::from_secs(30), || async {
        test.queue_depth().await == 0
    })
    .await;
    assert_eq!(test.dead_letter_depth().await, 0);
    assert_eq!(test.keys().await.len(), 8);
    assert_exit_0(&tokio::task::block_in_place(|| stop(worker, Duration::from_secs(30))));
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_record_is_completed_without_fetching_what_is_stored() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    server.route("/target.jpg", Behaviour::Status(404));
    // Through the recording proxy: Garage ignores write conditions, so check they are sent.
    let proxy = S3Proxy::start();
    let proxy_env = proxy.env();
    let env: Vec<(&str, &str)> = proxy_env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let tenant = unique_name("partial");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let manifest_key = format!("{prefix}manifest.json");
    let event = event_json(&session, &tenant, None, &Urls::of(&server));

    let output = archive(&server, &event, &env);

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let partial = manifest_of(&output);
    assert_eq!(partial["media"]["source_image"]["status"], json!("stored"));
    assert_eq!(partial["media"]["video"]["status"], json!("stored"));
    assert_eq!(partial["media"]["target_image"]["status"], json!("failed"), "{partial}");
    assert_eq!(
        partial["media"]["target_image"]["cause"],
        json!("source-not-found"),
        "{partial}"
    );
    let s3 = Stack::load().s3();
    let etag = s3
        .head_object_sse_c(&manifest_key)
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    let manifest_puts = |proxy: &S3Proxy| -> Vec<crate::support::S3Request> {
        proxy
            .requests()
            .into_iter()
            .filter(|r| r.operation() == "PutObject" && r.is_for_key(&manifest_key))
            .collect()
    };
    let first_puts = manifest_puts(&proxy);
    assert_eq!(first_puts.len(), 1, "{first_puts:#?}");
    assert_eq!(
        first_puts[0].header("if-none-match"),
        Some("*"),
        "a first manifest is written only if absent"
    );
    let source_object = objects(&prefix).await;

    server.route("/target.jpg", Behaviour::Ok(media.target.clone()));
    let output = archive(&server, &event, &env);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let complete = manifest_of(&output);
    assert_all_stored(&complete, "completed");
    assert_eq!(complete["archived_at"], partial["archived_at"]);
    assert_eq!(complete["media"]["source_image"], partial["media"]["source_image"]);
    assert_eq!(complete["media"]["video"], partial["media"]["video"]);
    assert_eq!(
        complete["media"]["target_image"]["sha256"],
        json!(sha256_hex(&media.target))
    );
    assert_eq!(media_hits(&server), [1, 2, 1], "only the failed media is fetched again");
    let puts = manifest_puts(&proxy);
    assert_eq!(puts.len(), 2, "{puts:#?}");
    assert_eq!(
        puts[1].header("if-match"),
        Some(etag.as_str()),
        "a rewrite names the ETag it read"
    );
    // The stored media objects were not written again.
    let after = objects(&prefix).await;
    for name in ["source.jpg", "video.mp4"] {
        let find = |set: &Vec<(String, String, String, Vec<u8>)>| set.iter().find(|o| o.0.ends_with(name)).cloned();
        assert_eq!(find(&after), find(&source_object), "{name}");
    }
    assert_eq!(after.len(), 4);
    s3.delete_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_decision_is_recorded_and_the_media_are_untouched() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let tenant = unique_name("decision");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let in_review = event_json(&session, &tenant, None, &Urls::of(&server));
    let first = archive(&server, &in_review, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", printed(&first));
    let first = manifest_of(&first);
    let media_before: Vec<_> = objects(&prefix)
        .await
        .into_iter()
        .filter(|o| !o.0.ends_with("manifest.json"))
        .collect();
    let hits = server.requests().len();

    let mut approved: Value = serde_json::from_slice(&in_review).unwrap();
    approved["face"]["status"] = json!("Approved");
    approved["face"]["liveness_status"] = json!("Approved");
    let output = archive(&server, &serde_json::to_vec(&approved).unwrap(), &[]);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let printed_manifest = manifest_of(&output);
    let stored: Value = serde_json::from_slice(
        &Stack::load()
            .s3()
            .get_object_sse_c(&format!("{prefix}manifest.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, printed_manifest);
    assert_eq!(stored["face"]["status"], json!("Approved"));
    assert_eq!(stored["face"]["liveness_status"], json!("Approved"));
    assert_eq!(
        stored["decisions"],
        json!([{"face": first["face"], "received_at": first["face_received_at"]}])
    );
    // Whole seconds: the new decision was received at or after the first.
    assert!(
        stored["face_received_at"].as_str() >= first["face_received_at"].as_str(),
        "{stored}"
    );
    assert_eq!(stored["archived_at"], first["archived_at"]);
    assert_eq!(stored["media"], first["media"]);
    assert_eq!(server.requests().len(), hits, "nothing fetched for a new decision");
    let media_after: Vec<_> = objects(&prefix)
        .await
        .into_iter()
        .filter(|o| !o.0.ends_with("manifest.json"))
        .collect();
    assert_eq!(media_after, media_before);

    // The same decision delivered again changes nothing.
    let again = archive(&server, &serde_json::to_vec(&approved).unwrap(), &[]);
    assert_eq!(again.status.code(), Some(0), "{}", printed(&again));
    assert_eq!(manifest_of(&again), stored);
    Stack::load().s3().delete_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn media_found_at_their_keys_without_a_manifest_are_recovered_without_fetching() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // The video goes up in two parts: recovered by reading it back, the images from metadata.
    server.route("/video.mp4", Behaviour::Ok(media.large_video.clone()));
    let tenant = unique_name("recover");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    let first = archive(&server, &event, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", printed(&first));
    let first = manifest_of(&first);
    let s3 = Stack::load().s3();
    // A first run that stored the media but died before its manifest.
    s3.client()
        .delete_object()
        .bucket(s3.bucket())
        .key(format!("{prefix}manifest.json"))
        .send()
        .await
        .unwrap();
    let media_before = objects(&prefix).await;
    assert_eq!(media_before.len(), 3);

    let output = archive(&server, &event, &[]);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let recovered = manifest_of(&output);
    assert_all_stored(&recovered, "recovered");
    for name in MEDIA_NAMES {
        for field in ["key", "bytes", "sha256", "width", "height", "duration_secs"] {
            assert_eq!(
                recovered["media"][name][field], first["media"][name][field],
                "{name}.{field}: {recovered}"
            );
        }
    }
    assert_eq!(media_hits(&server), [1, 1, 1], "a stored media was fetched again");
    let after: Vec<_> = objects(&prefix)
        .await
        .into_iter()
        .filter(|o| !o.0.ends_with("manifest.json"))
        .collect();
    assert_eq!(after, media_before);
    s3.delete_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_refuses_a_put_whose_sha256_checksum_is_wrong() {
    let s3 = Stack::load().s3();
    let key = format!("{}wrong-checksum/object.bin", tenant_prefix(&unique_name("digest")));
    let body = b"the bytes sent".to_vec();
    let wrong = crate::support::archive_kit::s3_sha256_checksum(b"other bytes");
    let refused = s3
        .client()
        .put_object()
        .bucket(s3.bucket())
        .key(&key)
        .checksum_sha256(&wrong)
        .body(body.clone().into())
        .send()
        .await;
    let err = refused.expect_err("a PUT with a wrong x-amz-checksum-sha256 must be refused");
    let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&err).map(str::to_string);
    assert!(
        matches!(code.as_deref(), Some("InvalidDigest" | "BadDigest")),
        "{code:?}: {}",
        aws_sdk_s3::error::DisplayErrorContext(&err)
    );
    assert!(s3.list_keys(&key).await.is_empty(), "a refused PUT left an object");
    // The right checksum is taken, and a HEAD with checksum mode returns it.
    let right = s3_sha256_checksum(&body);
    s3.client()
        .put_object()
        .bucket(s3.bucket())
        .key(&key)
        .checksum_sha256(&right)
        .body(body.into())
        .send()
        .await
        .expect("the right checksum is accepted");
    let head = s3
        .client()
        .head_object()
        .bucket(s3.bucket())
        .key(&key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(right.as_str()));
    s3.delete_prefix(&key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_source_is_stored_whole_with_the_right_checksum() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    // About 11 MB at 100 KB/s: close to two minutes for three 5 MiB parts.
    server.route(
        "/video.mp4",
        Behaviour::Trickle {
            body: media.large_video.clone(),
            bytes_per_sec: 100_000,
        },
    );
    let tenant = unique_name("slow");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    let mut command = archiver();
    command
        .args(["archive", "-"])
        .media_server(&server)
        .env("ARCHIVER_FETCH_TIMEOUT_SECS", "300")
        .env("ARCHIVER_FETCH_ATTEMPTS", "1")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");

    let output = tokio::task::block_in_place(|| run_with_timeout(command, Some(&event), Duration::from_secs(170)));

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let manifest = manifest_of(&output);
    assert_eq!(
        manifest["media"]["video"]["sha256"],
        json!(sha256_hex(&media.large_video))
    );
    assert_eq!(manifest["media"]["video"]["attempts"], json!(1));
    let s3 = Stack::load().s3();
    let key = format!("{prefix}video.mp4");
    assert_eq!(s3.get_object_sse_c(&key).await.unwrap(), media.large_video.to_vec());
    let head = s3.head_object_sse_c(&key).await.unwrap();
    assert_eq!(
        head.checksum_sha256(),
        Some(s3_sha256_checksum(&media.large_video).as_str())
    );
    assert_eq!(server.hits("/video.mp4"), 1);
    s3.delete_prefix(&prefix).await;
}

/// (case, fault, which requests, what stderr names, downloads per media)
type OutageCase = (&'static str, S3Fault, fn() -> Rule, &'static [&'static str], usize);

#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_writes_no_manifest_and_downloads_each_media_at_most_once() {
    let cases: [OutageCase; 3] = [
        (
            "503 on every request",
            S3Fault::SlowDown,
            Rule::every_request,
            &["s3 HeadObject failed", "StatusCode(503)"],
            0,
        ),
        (
            "503 on every write",
            S3Fault::SlowDown,
            Rule::writes,
            &["s3 PutObject failed", "cause=store-unavailable"],
            1,
        ),
        (
            "403 AccessDenied on every write",
            S3Fault::AccessDenied,
            Rule::writes,
            &["s3 PutObject failed", "AccessDenied", "cause=store-misconfigured"],
            1,
        ),
    ];
    for (case, fault, rule, names, downloads) in cases {
        let server = MediaServer::start();
        serve_good_media(&server);
        let proxy = S3Proxy::start();
        proxy.fail(fault, rule());
        let proxy_env = proxy.env();
        let env: Vec<(&str, &str)> = proxy_env.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let tenant = unique_name("outage");
        let event = event_json(&new_session_id(), &tenant, None, &Urls::of(&server));

        let output = archive(&server, &event, &env);

        assert_eq!(output.status.code(), Some(1), "{case}: {}", printed(&output));
        assert!(
            output.stdout.is_empty(),
            "{case}: no manifest may be printed: {}",
            printed(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for name in names {
            assert!(
                stderr.contains(name),
                "{case}: stderr does not name {name:?}:\n{stderr}"
            );
        }
        assert_eq!(media_hits(&server), [downloads; 3], "{case}");
        assert!(
            proxy.requests().iter().any(|r| r.faulted),
            "{case}: the proxy answered nothing itself"
        );
        assert_eq!(
            Stack::load().s3().list_keys(&tenant_prefix(&tenant)).await,
            Vec::<String>::new(),
            "{case}: nothing may be written"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_on_the_first_upload_part_is_retried_and_every_write_carries_its_sha256() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    server.route("/video.mp4", Behaviour::Ok(media.large_video.clone()));
    let proxy = S3Proxy::start();
    proxy.fail(S3Fault::SlowDown, Rule::operation("UploadPart").times(1));
    let proxy_env = proxy.env();
    let env: Vec<(&str, &str)> = proxy_env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let tenant = unique_name("part-503");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let event = event_json(&session, &tenant, None, &Urls::of(&server));

    let output = archive(&server, &event, &env);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_all_stored(&manifest_of(&output), "part 503");
    let s3 = Stack::load().s3();
    let video = format!("{prefix}video.mp4");
    assert_eq!(s3.get_object_sse_c(&video).await.unwrap(), media.large_video.to_vec());
    assert_eq!(
        s3.head_object_sse_c(&video).await.unwrap().checksum_sha256(),
        Some(s3_sha256_checksum(&media.large_video).as_str())
    );
    let requests = proxy.requests();
    let parts: Vec<_> = requests.iter().filter(|r| r.operation() == "UploadPart").collect();
    assert!(parts[0].faulted && parts[0].status == 503, "{parts:#?}");
    assert!(parts.iter().filter(|r| r.status == 200).count() >= 2, "{parts:#?}");
    assert!(server.hits("/video.mp4") <= 2);
    // What Garage does not enforce, checked on the wire: every write carries its SHA-256.
    for request in &requests {
        match request.operation() {
            "PutObject" | "UploadPart" => assert!(
                request.header("x-amz-checksum-sha256").is_some(),
                "{} {} without x-amz-checksum-sha256",
                request.operation(),
                request.path
            ),
            "CreateMultipartUpload" => {
                assert_eq!(
                    request.header("x-amz-checksum-algorithm"),
                    Some("SHA256"),
                    "{request:#?}"
                )
            }
            "CompleteMultipartUpload" => {
                assert_eq!(request.header("if-none-match"), Some("*"), "{request:#?}")
            }
            _ => {}
        }
    }
    s3.delete_prefix(&prefix).await;
}

/// The broker's ids of the connections `pid` opened (the worker names them after its pid).
fn connections_of(pid: u32) -> Vec<String> {
    let ctl = Stack::load().var("ARCHIVER_RABBITMQCTL").to_string();
    let output = std::process::Command::new(&ctl)
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("run rabbitmqctl");
    let marker = format!("(pid {pid})");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&marker))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_its_connection_mid_upload_leaves_one_complete_record() {
    let media = TestMedia::get();
    let test = WorkerTest::new("lost-mid-upload").await;
    // The first download trickles (a multipart upload is open while it does); the
    // redelivery's is fast.
    test.media.route(
        "/video.mp4",
        Behaviour::Sequence(vec![
            Behaviour::Trickle {
                body: media.large_video.clone(),
                bytes_per_sec: 1_000_000,
            },
            Behaviour::Ok(media.large_video.clone()),
        ]),
    );
    let worker = test.start_worker(&[("ARCHIVER_FETCH_TIMEOUT_SECS", "120")]);
    let session = "00000000-0000-4000-8000-0000000000c1";
    test.publish(&test.good_event(session)).await;
    let s3 = Stack::load().s3();
    let prefix = format!("face-reports/{}/{session}/", test.tenant);
    let open_uploads = || async {
        s3.client()
            .list_multipart_uploads()
            .bucket(s3.bucket())
            .prefix(&prefix)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    };
    eventually("a multipart upload in progress", Duration::from_secs(60), || async {
        open_uploads().await > 0
    })
    .await;

    let pid = worker.id();
    let connections = tokio::task::block_in_place(|| connections_of(pid));
    assert!(
        !connections.is_empty(),
        "no broker connection of the worker (pid {pid})"
    );
    let ctl = Stack::load().var("ARCHIVER_RABBITMQCTL").to_string();
    for connection in &connections {
        let status = std::process::Command::new(&ctl)
            .args(["close_connection", connection, "closed by archive_integrity test"])
            .status()
            .expect("run rabbitmqctl");
        assert!(status.success(), "close_connection {connection}");
    }

    let results = test.results(1, Duration::from_secs(90)).await;
    assert_eq!(results[0]["outcome"], "archived", "{results:#?}");
    let archived = objects(&prefix).await;
    // The writer that lost its delivery stops before completing and aborts its upload.
    eventually("no multipart upload left", Duration::from_secs(60), || async {
        open_uploads().await == 0
    })
    .await;
    let output = tokio::task::block_in_place(|| stop(worker, Duration::from_secs(60)));
    assert_exit_0(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("the delivery was lost"),
        "the first writer did not stop for its lost delivery:\n{log}"
    );
    assert_eq!(
        test.media.hits("/video.mp4"),
        2,
        "the redelivery fetched the video the first writer left"
    );
    assert_eq!(
        objects(&prefix).await,
        archived,
        "the stale writer changed the record after the result"
    );
    let results_queue = format!("{}.results", test.queue);
    assert_eq!(
        test.amqp.message_count(&results_queue).await,
        Some(0),
        "one result per session"
    );
    let keys = s3.list_keys(&prefix).await;
    let expected: Vec<String> = ["manifest.json", "source.jpg", "target.jpg", "video.mp4"]
        .iter()
        .map(|name| format!("{prefix}{name}"))
        .collect();
    assert_eq!(keys, expected);
    let manifest = test.manifest(session).await;
    assert_all_stored(&manifest, "after redelivery");
    assert_eq!(
        s3.get_object_sse_c(&format!("{prefix}video.mp4")).await.unwrap(),
        media.large_video.to_vec()
    );
    assert_eq!(test.media.hits("/source.jpg"), 1, "a stored image was fetched again");
    assert_eq!(test.dead_letter_depth().await, 0);
    test.clean_up().await;
}

/// The setting of the tests where another writer gets to a key first: the three good media
/// on a media server, the S3 fault proxy in front of the store, a new tenant's new session.
struct StoreRace {
    server: MediaServer,
    proxy: S3Proxy,
    proxy_env: [(&'static str, String); 2],
    tenant: String,
    session: String,
    prefix: String,
}

impl StoreRace {
    fn start(tenant: &str) -> StoreRace {
        let server = MediaServer::start();
        serve_good_media(&server);
        let proxy = S3Proxy::start();
        let proxy_env = proxy.env();
        let tenant = unique_name(tenant);
        let session = new_session_id();
        let prefix = session_prefix(&tenant, &session);
        StoreRace {
            server,
            proxy,
            proxy_env,
            tenant,
            session,
            prefix,
        }
    }

    /// What is at `key` shows only by the time of the write: the proxy hides it from the
    /// first look (404) and answers the write (`If-None-Match: *`) 412, as S3 does; Garage
    /// ignores the condition.
    fn appears_between_look_and_write(&self, key: &str) {
        self.proxy
            .fail(S3Fault::NoSuchKey, Rule::operation_on("HeadObject", key).times(1));
        self.proxy
            .fail(S3Fault::PreconditionFailed, Rule::operation_on("PutObject", key));
    }

    /// The archiver's settings that send its S3 requests through the proxy.
    fn env(&self) -> Vec<(&str, &str)> {
        self.proxy_env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_media_another_writer_completed_first_is_taken_as_stored_after_one_download() {
    let media = TestMedia::get();
    let race = StoreRace::start("lost-race");
    let (server, env) = (&race.server, race.env());
    let (tenant, session, prefix) = (&race.tenant, &race.session, &race.prefix);
    let event = event_json(session, tenant, None, &Urls::of(server));
    let first = archive(server, &event, &env);
    assert_eq!(first.status.code(), Some(0), "{}", printed(&first));
    let s3 = Stack::load().s3();
    s3.client()
        .delete_object()
        .bucket(s3.bucket())
        .key(format!("{prefix}manifest.json"))
        .send()
        .await
        .unwrap();
    let before = objects(prefix).await;
    // Another writer completes source.jpg between this writer's look and its write: the
    // look finds nothing, the write (If-None-Match: *) loses, as S3 answers it.
    let source_key = format!("{prefix}source.jpg");
    race.appears_between_look_and_write(&source_key);

    let output = archive(server, &event, &env);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let manifest = manifest_of(&output);
    assert_all_stored(&manifest, "lost race");
    assert_eq!(
        manifest["media"]["source_image"]["sha256"],
        json!(sha256_hex(&media.source))
    );
    assert_eq!(
        server.hits("/source.jpg"),
        2,
        "the lost write is followed by taking the other writer's object, not by downloading again"
    );
    let after: Vec<_> = objects(prefix)
        .await
        .into_iter()
        .filter(|o| !o.0.ends_with("manifest.json"))
        .collect();
    assert_eq!(after, before);
    s3.delete_prefix(prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_the_archiver_did_not_write_at_a_media_key_is_left_untouched_and_named_in_the_record() {
    let media = TestMedia::get();
    // Found when the archiver looks before fetching; or there only by the time it writes
    // (the proxy hides it from that look, and answers the write 412 as S3 does: Garage
    // ignores If-None-Match).
    for (case, appears_during_the_download, downloads) in [("found first", false, 0), ("found at the write", true, 1)] {
        let race = StoreRace::start("occupied");
        let (server, env) = (&race.server, race.env());
        let (tenant, session, prefix) = (&race.tenant, &race.session, &race.prefix);
        let source_key = format!("{prefix}source.jpg");
        // Someone else's object at the key: no verified checksum, none of the archiver's metadata.
        let foreign = format!("an object the archiver did not write ({case})").into_bytes();
        let s3 = Stack::load().s3();
        s3.put_object_sse_c(&source_key, foreign.clone()).await.unwrap();
        if appears_during_the_download {
            race.appears_between_look_and_write(&source_key);
        }
        let event = event_json(session, tenant, None, &Urls::of(server));

        let output = archive(server, &event, &env);

        // A failure no retry cures: exit 1 (dead-lettered through the worker), not a store
        // outage that would hold the event and download the media again on every lap.
        assert_eq!(output.status.code(), Some(1), "{case}: {}", printed(&output));
        let manifest = manifest_of(&output);
        let source = &manifest["media"]["source_image"];
        assert_eq!(source["status"], "failed", "{case}: {manifest}");
        assert_eq!(source["cause"], "key-occupied", "{case}: {manifest}");
        assert!(
            source["reason"].as_str().unwrap_or_default().contains(&source_key),
            "{case}: the reason names the key: {manifest}"
        );
        for name in ["target_image", "video"] {
            assert_eq!(manifest["media"][name]["status"], "stored", "{case}: {manifest}");
        }
        assert_eq!(
            manifest["media"]["target_image"]["sha256"],
            json!(sha256_hex(&media.target))
        );
        assert_eq!(server.hits("/source.jpg"), downloads, "{case}: downloads of source.jpg");
        assert_eq!(
            s3.get_object_sse_c(&source_key).await.unwrap(),
            foreign,
            "{case}: the other object is left as it was"
        );
        s3.delete_prefix(prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_write_that_loses_to_another_writer_is_read_merged_and_written_again() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    server.route("/target.jpg", Behaviour::Status(404));
    let proxy = S3Proxy::start();
    let proxy_env = proxy.env();
    let env: Vec<(&str, &str)> = proxy_env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let tenant = unique_name("manifest-race");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let manifest_key = format!("{prefix}manifest.json");
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    let partial = archive(&server, &event, &env);
    assert_eq!(partial.status.code(), Some(1), "{}", printed(&partial));
    let partial = manifest_of(&partial);
    server.route("/target.jpg", Behaviour::Ok(media.target.clone()));
    proxy.fail(
        S3Fault::PreconditionFailed,
        Rule::operation_on("PutObject", &manifest_key).times(1),
    );
    let seen = proxy.requests().len();

    let output = archive(&server, &event, &env);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let complete = manifest_of(&output);
    assert_all_stored(&complete, "merged");
    assert_eq!(complete["archived_at"], partial["archived_at"]);
    let s3 = Stack::load().s3();
    let stored: Value = serde_json::from_slice(&s3.get_object_sse_c(&manifest_key).await.unwrap()).unwrap();
    assert_eq!(stored, complete);
    let etag = s3
        .head_object_sse_c(&manifest_key)
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    let on_manifest: Vec<(String, u16)> = proxy.requests()[seen..]
        .iter()
        .filter(|r| r.is_for_key(&manifest_key))
        .map(|r| (r.operation().to_string(), r.status))
        .collect();
    let lost = on_manifest
        .iter()
        .position(|(op, status)| op == "PutObject" && *status == 412)
        .unwrap_or_else(|| panic!("{on_manifest:?}"));
    let after_loss: Vec<&str> = on_manifest[lost + 1..].iter().map(|(op, _)| op.as_str()).collect();
    assert!(
        after_loss.starts_with(&["HeadObject", "GetObject", "PutObject"]),
        "after a lost write: read again, then write: {on_manifest:?}"
    );
    let _ = etag;
    s3.delete_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_store_outage_the_next_delivery_fetches_only_what_was_not_stored() {
    let server = MediaServer::start();
    serve_good_media(&server);
    let proxy = S3Proxy::start();
    let proxy_env = proxy.env();
    let env: Vec<(&str, &str)> = proxy_env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let tenant = unique_name("outage-then");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let event = event_json(&session, &tenant, None, &Urls::of(&server));
    proxy.fail(
        S3Fault::SlowDown,
        Rule::operation_on("PutObject", format!("{prefix}video.mp4")),
    );

    let output = archive(&server, &event, &env);

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        output.stdout.is_empty(),
        "no manifest while the video is not stored: {}",
        printed(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cause=store-unavailable"), "{stderr}");
    let images = objects(&prefix).await;
    let names: Vec<&str> = images.iter().map(|o| o.0.rsplit('/').next().unwrap()).collect();
    assert_eq!(names, ["source.jpg", "target.jpg"]);

    proxy.pass_through();
    let output = archive(&server, &event, &env);

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_all_stored(&manifest_of(&output), "after the outage");
    assert_eq!(media_hits(&server), [1, 1, 2], "only the video is fetched again");
    let after = objects(&prefix).await;
    for image in &images {
        assert!(after.contains(image), "{} changed", image.0);
    }
    assert_eq!(after.len(), 4);
    Stack::load().s3().delete_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_session_with_a_rejected_media_exits_again_as_the_first_time() {
    let media = TestMedia::get();
    let server = MediaServer::start();
    serve_good_media(&server);
    server.route("/target.jpg", Behaviour::Ok(media.small_target.clone()));
    let tenant = unique_name("rejected-again");
    let session = new_session_id();
    let prefix = session_prefix(&tenant, &session);
    let urls = Urls {
        video: None,
        ..Urls::of(&server)
    };
    let event = event_json(&session, &tenant, None, &urls);
    let first = archive(&server, &event, &[]);
    assert_eq!(first.status.code(), Some(1), "{}", printed(&first));
    let manifest = manifest_of(&first);
    assert_eq!(manifest["media"]["target_image"]["status"], json!("rejected"));
    let hits = server.requests().len();
    let before = objects(&prefix).await;

    let again = archive(&server, &event, &[]);

    assert_eq!(
        again.status.code(),
        Some(1),
        "exits as the first archive did: {}",
        printed(&again)
    );
    assert_eq!(manifest_of(&again), manifest);
    assert_eq!(server.requests().len(), hits, "a finished session fetched again");
    assert_eq!(objects(&prefix).await, before);
    Stack::load().s3().delete_prefix(&prefix).await;
}
