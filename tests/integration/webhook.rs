//! `archiver webhook` (issue 14, docs/contract.md section 8) with a real HTTP client, the
//! real broker, a real worker and the real store: a signed decided webhook ends archived;
//! a replay is one archive; every refusal has its status; an invalid signed body is
//! dead-lettered with its reason; a stopped broker gives 503 until it is back; SIGTERM
//! exits 0; no secret, signature or URL query reaches the log.

use std::io::{Read as _, Write as _};
use std::process::Output;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::archive_kit::printed;
use crate::support::{unique_name, Running, Stack, SECRET_QUERY_MARKER, SECRET_SIGNATURE};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest};
use crate::worker_resilience::PrivateBroker;

const SECRET: &str = "current-webhook-secret";
const PREVIOUS_SECRET: &str = "previous-webhook-secret";
const OTHER_SECRET: &str = "other-tenant-secret";

/// A running `archiver webhook` for one test's tenant (plus a second tenant, and a third
/// with only a vendor key), on ports of its own.
struct Webhook {
    process: Option<Running>,
    port: u16,
    metrics_port: u16,
    tenant: String,
    other: String,
    keyless: String,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Webhook {
    async fn start(test: &WorkerTest) -> Webhook {
        let (other, keyless) = (unique_name("other"), unique_name("keyless"));
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[tenants.{}]\nwebhook_secret = \"{SECRET}\"\nprevious_webhook_secret = \"{PREVIOUS_SECRET}\"\n\n\
             [tenants.{other}]\nwebhook_secret = \"{OTHER_SECRET}\"\n\n\
             [tenants.{keyless}]\nprovider_api_key = \"vendor-key\"\n",
            test.tenant
        );
        let file = dir.path().join("tenants.toml");
        std::fs::write(&file, text).unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let mut command = test.command("webhook");
        command
            .env("ARCHIVER_TENANTS_FILE", &file)
            .env("ARCHIVER_WEBHOOK_ADDR", format!("127.0.0.1:{port}"))
            .env("ARCHIVER_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("ARCHIVER_LOG_FORMAT", "text")
            .env("RUST_LOG", "debug");
        let webhook = Webhook {
            process: Some(Running::spawn(command, None)),
            port,
            metrics_port,
            tenant: test.tenant.clone(),
            other,
            keyless,
            _dir: dir,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let url = format!("http://127.0.0.1:{metrics_port}/readyz");
        eventually("the webhook's /readyz", Duration::from_secs(30), || async {
            matches!(webhook.client.get(&url).send().await, Ok(response) if response.status() == 200)
        })
        .await;
        webhook
    }

    /// POSTs `body` to `/webhooks/{tenant}` with these headers; (status, JSON answer).
    async fn post(&self, tenant: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("http://127.0.0.1:{}/webhooks/{tenant}", self.port))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the webhook answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("an answer body");
        let answer = serde_json::from_str(&text).unwrap_or_else(|_| panic!("answer is not JSON: {text}"));
        (status, answer)
    }

    /// POSTs `body` signed with `secret` now, as the vendor does.
    async fn post_signed(&self, tenant: &str, secret: &str, body: &[u8]) -> (u16, Value) {
        self.post(tenant, body, &signed(secret, body, now())).await
    }

    async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        self.client.get(url).send().await.unwrap().text().await.unwrap()
    }

    /// SIGTERM; the exit within 30 s; what it printed.
    fn stop(&mut self) -> Output {
        stop(self.process.take().expect("running"), Duration::from_secs(30))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn signed(secret: &str, body: &[u8], timestamp: i64) -> Vec<(&'static str, String)> {
    vec![
        ("x-timestamp", timestamp.to_string()),
        ("x-signature", sign(secret, body)),
    ]
}

/// The vendor's webhook for a decided session whose media are the test's good media.
fn decided(test: &WorkerTest, session: &str) -> Vec<u8> {
    let mut event = test.good_event(session);
    let face = event["face"].take();
    serde_json::to_vec(&json!({
        "session_id": session, "status": "Approved", "webhook_type": "status.updated",
        "created_at": 1_800_000_000, "decision": { "session_id": session, "face": face }
    }))
    .unwrap()
}

/// The log must hold none of these.
fn assert_no_secret_in(log: &str, extra: &[String]) {
    for secret in [
        SECRET,
        PREVIOUS_SECRET,
        OTHER_SECRET,
        SECRET_QUERY_MARKER,
        SECRET_SIGNATURE,
        "X-Amz-",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(extra.iter().cloned())
    {
        assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_decided_webhook_is_archived_once_and_every_refusal_says_why() {
    let test = WorkerTest::new("webhook").await;
    let mut webhook = Webhook::start(&test).await;
    let session = session_id(1);
    let body = decided(&test, &session);
    let mut signatures = vec![sign(SECRET, &body)];

    // The same delivery twice (a vendor's retry): two messages with one id.
    for _ in 0..2 {
        let (status, answer) = webhook.post_signed(&webhook.tenant, SECRET, &body).await;
        assert_eq!((status, &answer), (200, &json!({"queued": true})));
    }
    let mut queued = Vec::new();
    for _ in 0..2 {
        let message = test
            .amqp
            .get(&test.queue, Duration::from_secs(10))
            .await
            .expect("a queued event");
        queued.push(message.delivery);
    }
    let ids: Vec<String> = queued
        .iter()
        .map(|delivery| delivery.properties.message_id().as_ref().unwrap().to_string())
        .collect();
    assert_eq!(ids[0], ids[1], "a replay is the same message");
    assert_eq!(ids[0].len(), 64);
    assert_eq!(queued[0].properties.delivery_mode(), &Some(2), "persistent");
    let event: Value = serde_json::from_slice(&queued[0].data).unwrap();
    assert_eq!(event["tenant"], json!(test.tenant), "the path names the tenant");
    assert_eq!(event["session_id"], json!(session));
    assert!(event["issued_at"].is_string());

    // Put both back as they were, and let a worker archive them one after the other: one
    // archive, and the second delivery fetches nothing.
    for delivery in &queued {
        test.amqp
            .publish("", &test.queue, &delivery.data, delivery.properties.clone())
            .await;
    }
    let worker = test.start_worker(&[("ARCHIVER_CONCURRENCY", "1")]);
    let manifest_key = test.key(&session, "manifest.json");
    eventually("the webhook's session archived", Duration::from_secs(60), || async {
        Stack::load()
            .s3()
            .list_keys(&manifest_key)
            .await
            .contains(&manifest_key)
    })
    .await;
    eventually("both deliveries settled", Duration::from_secs(60), || async {
        test.queue_depth().await == 0
    })
    .await;
    test.assert_media_stored(&session).await;
    let mut expected: Vec<String> = ["manifest.json", "source.jpg", "target.jpg", "video.mp4"]
        .iter()
        .map(|name| test.key(&session, name))
        .collect();
    expected.sort();
    assert_eq!(test.keys().await, expected, "one archive");
    assert_eq!(test.media.hits("/video.mp4"), 1, "the replay fetched nothing");
    assert_exit_0(&stop(worker, Duration::from_secs(30)));

    // The previous secret still signs during a rotation.
    let rotated = decided(&test, &session_id(2));
    signatures.push(sign(PREVIOUS_SECRET, &rotated));
    let (status, _) = webhook.post_signed(&webhook.tenant, PREVIOUS_SECRET, &rotated).await;
    assert_eq!(status, 200, "signed with the previous secret");
    assert_eq!(test.queue_depth().await, 1);

    // Refusals: nothing published for any of them.
    let tenant = webhook.tenant.clone();
    let mut too_large = body.clone();
    too_large.resize(2 * 1024 * 1024, b' ');
    let wrong = sign("not-the-secret", &body);
    // (what, tenant, body, headers, status, reason)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong signature",
            &tenant,
            body.clone(),
            vec![("x-timestamp", now().to_string()), ("x-signature", wrong.clone())],
            401,
            "X-Signature does not match",
        ),
        (
            "stale timestamp",
            &tenant,
            body.clone(),
            signed(SECRET, &body, now() - 330),
            401,
            "X-Timestamp is more than 300 s",
        ),
        (
            "future timestamp",
            &tenant,
            body.clone(),
            // Well past the 300 s window: at 301 a second's tick between signing and the
            // server's check made it exactly 300, which is inside.
            signed(SECRET, &body, now() + 330),
            401,
            "X-Timestamp is more than 300 s",
        ),
        (
            "no timestamp",
            &tenant,
            body.clone(),
            vec![("x-signature", sign(SECRET, &body))],
            401,
            "X-Timestamp is missing",
        ),
        (
            "no signature",
            &tenant,
            body.clone(),
            vec![("x-timestamp", now().to_string())],
            401,
            "X-Signature is missing",
        ),
        (
            "no headers",
            &tenant,
            body.clone(),
            vec![],
            401,
            "X-Timestamp is missing",
        ),
        (
            "another tenant's secret",
            &tenant,
            body.clone(),
            signed(OTHER_SECRET, &body, now()),
            401,
            "X-Signature does not match",
        ),
        (
            "this tenant's secret on another tenant",
            &webhook.other,
            body.clone(),
            signed(SECRET, &body, now()),
            401,
            "X-Signature does not match",
        ),
        (
            "unknown tenant",
            "nobody-here",
            body.clone(),
            signed(SECRET, &body, now()),
            404,
            "no webhook for this tenant",
        ),
        (
            "tenant without a webhook secret",
            &webhook.keyless,
            body.clone(),
            signed(SECRET, &body, now()),
            404,
            "no webhook for this tenant",
        ),
        (
            "2 MiB body",
            &tenant,
            too_large.clone(),
            signed(SECRET, &too_large, now()),
            413,
            "over 1 MiB",
        ),
    ];
    for (what, tenant, body, headers, expected_status, expected_reason) in cases {
        let (status, answer) = webhook.post(tenant, &body, &headers).await;
        assert_eq!(status, expected_status, "{what}: {answer}");
        assert_eq!(answer["queued"], json!(false), "{what}: {answer}");
        let reason = answer["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(expected_reason), "{what}: {answer}");
        for (_, value) in &headers {
            assert!(
                !answer.to_string().contains(value.as_str()),
                "{what}: the answer echoes a header"
            );
        }
    }
    signatures.push(wrong);

    // Undecided: 200, nothing queued.
    let undecided = serde_json::to_vec(&json!({"session_id": session_id(3), "status": "In Progress",
        "webhook_type": "status.updated"}))
    .unwrap();
    let (status, answer) = webhook.post_signed(&webhook.tenant, SECRET, &undecided).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["queued"], json!(false));
    assert!(answer["reason"].as_str().unwrap().contains("no decision"), "{answer}");

    // Signed but invalid: 400 naming the field, and dead-lettered with the reason.
    let mut hundred_fifty: Value = serde_json::from_slice(&decided(&test, &session_id(4))).unwrap();
    hundred_fifty["decision"]["face"]["face_match_similarity"] = json!(150);
    let hundred_fifty = serde_json::to_vec(&hundred_fifty).unwrap();
    let invalid: [(&[u8], &str); 2] = [
        (b"this is not json", "body is not a JSON object"),
        (
            &hundred_fifty,
            "decision.face.face_match_similarity: must be a number from 0 to 100, got 150",
        ),
    ];
    for (body, reason) in invalid {
        signatures.push(sign(SECRET, body));
        let (status, answer) = webhook.post_signed(&webhook.tenant, SECRET, body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["reason"].as_str().unwrap().contains(reason), "{answer}");
        assert!(
            !answer.to_string().contains(SECRET_QUERY_MARKER),
            "the answer echoes a URL: {answer}"
        );
    }
    let letters = test.dead_letters(2, Duration::from_secs(10)).await;
    for ((_, body, reason), (expected_body, expected_reason)) in letters.iter().zip(invalid) {
        assert_eq!(
            body.as_slice(),
            expected_body,
            "the dead letter is the delivery as it came"
        );
        assert!(reason.contains(expected_reason), "{reason}");
    }
    assert_eq!(
        test.queue_depth().await,
        1,
        "only the rotated-secret delivery is queued"
    );

    let metrics = webhook.metrics().await;
    for outcome in ["queued", "ignored", "unauthorized", "invalid"] {
        assert!(
            metrics.contains(&format!(
                "archiver_webhook_requests_total{{tenant=\"{tenant}\",outcome=\"{outcome}\"}}"
            )) || metrics.contains(&format!(
                "archiver_webhook_requests_total{{outcome=\"{outcome}\",tenant=\"{tenant}\"}}"
            )),
            "no {outcome} count for {tenant}:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("archiver_webhook_timestamp_to_confirm_seconds"),
        "{metrics}"
    );

    let output = webhook.stop();
    assert_exit_0(&output);
    let log = printed(&output);
    assert!(log.contains("webhook answered") && log.contains(&session), "{log}");
    assert_no_secret_in(&log, &signatures);
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_finish_its_body_gets_408() {
    let test = WorkerTest::new("webhook-slow").await;
    let mut webhook = Webhook::start(&test).await;
    let body = decided(&test, &session_id(1));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", webhook.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /webhooks/{} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-timestamp: {}\r\nx-signature: {}\r\n\r\n",
        webhook.tenant,
        body.len(),
        now(),
        sign(SECRET, &body)
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(test.queue_depth().await, 0);
    assert_exit_0(&webhook.stop());
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_gives_503_and_the_vendors_retry_is_archived_once_it_is_back() {
    let broker = tokio::task::spawn_blocking(PrivateBroker::start)
        .await
        .expect("private broker");
    let mut test = WorkerTest::on_broker("webhook-outage", &broker.url()).await;
    let mut webhook = Webhook::start(&test).await;
    let session = session_id(1);
    let body = decided(&test, &session);

    let stopped = tokio::task::spawn_blocking(move || {
        assert!(broker.ctl(&["stop_app"]), "rabbitmqctl stop_app");
        broker
    });
    let broker = stopped.await.unwrap();
    let started = Instant::now();
    let (status, answer) = webhook.post_signed(&webhook.tenant, SECRET, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 took {:?}",
        started.elapsed()
    );
    let readyz = format!("http://127.0.0.1:{}/readyz", webhook.metrics_port);
    eventually("/readyz says not ready", Duration::from_secs(20), || async {
        matches!(webhook.client.get(&readyz).send().await, Ok(response) if response.status() == 503)
    })
    .await;

    let restarted = tokio::task::spawn_blocking(move || {
        assert!(broker.ctl(&["start_app"]), "rabbitmqctl start_app");
        broker
    });
    let broker = restarted.await.unwrap();
    test.amqp = crate::support::Amqp::connect_to(&broker.url()).await;
    // The vendor retries until it gets a 200.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = webhook.post_signed(&webhook.tenant, SECRET, &body).await;
        if status == 200 {
            assert_eq!(answer, json!({"queued": true}));
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(Instant::now() < deadline, "the retry was never accepted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let worker = test.start_worker(&[]);
    let manifest_key = test.key(&session, "manifest.json");
    eventually("the retried session archived", Duration::from_secs(60), || async {
        Stack::load()
            .s3()
            .list_keys(&manifest_key)
            .await
            .contains(&manifest_key)
    })
    .await;
    test.assert_media_stored(&session).await;
    assert_exit_0(&stop(worker, Duration::from_secs(30)));
    assert_exit_0(&webhook.stop());
    test.clean_up().await;
    drop(broker);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let test = WorkerTest::new("webhook-term").await;
    let mut webhook = Webhook::start(&test).await;
    let body = decided(&test, &session_id(1));
    // A request whose body is still on its way when SIGTERM arrives.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", webhook.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /webhooks/{} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nx-timestamp: {}\r\nx-signature: {}\r\n\r\n",
        webhook.tenant,
        body.len(),
        now(),
        sign(SECRET, &body)
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    eventually("the request in flight", Duration::from_secs(10), || async {
        webhook
            .metrics()
            .await
            .contains("archiver_webhook_requests_in_flight 1")
    })
    .await;
    webhook.process.as_ref().unwrap().terminate();
    let readyz = format!("http://127.0.0.1:{}/readyz", webhook.metrics_port);
    eventually("/readyz says draining", Duration::from_secs(10), || async {
        matches!(webhook.client.get(&readyz).send().await, Ok(response) if response.status() == 503)
    })
    .await;
    stream.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"queued":true}"#), "{answer}");
    let output = webhook.stop();
    assert_exit_0(&output);
    assert_eq!(test.queue_depth().await, 1, "the request in flight was queued");
    test.clean_up().await;
}
