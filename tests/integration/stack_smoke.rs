//! The test stack itself works: S3 with SSE-C through the TLS front, RabbitMQ, and every
//! scripted behaviour of the HTTPS media server. If these fail, every other test would too.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::support::media_server::EXPIRED_BODY;
use crate::support::{unique_name, Amqp, Behaviour, MediaServer, Stack, TestCa, SECRET_QUERY_MARKER};

#[tokio::test]
async fn s3_sse_c_round_trip_through_tls_and_refuses_reads_without_the_key() {
    let s3 = Stack::load().s3();
    let prefix = format!("smoke/{}/", unique_name("s3"));
    let key = format!("{prefix}object.bin");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();

    s3.put_object_sse_c(&key, body.clone()).await.expect("put with SSE-C");

    assert_eq!(s3.get_object_sse_c(&key).await.expect("get with the key"), body);
    let refused = s3
        .get_object_plain(&key)
        .await
        .expect_err("a GET without the key must fail");
    assert_eq!(refused.status, Some(400), "GET without the key: {}", refused.message);
    let head = s3.head_object_sse_c(&key).await.expect("head with the key");
    assert_eq!(head.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(head.content_length(), Some(body.len() as i64));
    assert_eq!(s3.list_keys(&prefix).await, vec![key.clone()]);

    assert_eq!(s3.delete_prefix(&prefix).await, 1);
    assert!(s3.list_keys(&prefix).await.is_empty());
}

#[tokio::test]
async fn rabbitmq_takes_and_returns_a_message() {
    let amqp = Amqp::connect().await;
    let queue = unique_name("smoke-queue");
    amqp.declare_queue(&queue, Default::default()).await;

    amqp.publish_event(&queue, br#"{"hello":"stack"}"#).await;

    let message = amqp
        .get(&queue, Duration::from_secs(10))
        .await
        .expect("the message comes back");
    assert_eq!(message.delivery.data, br#"{"hello":"stack"}"#);
    assert_eq!(amqp.message_count(&queue).await, Some(0));
    amqp.delete_queue(&queue).await;
    assert_eq!(amqp.message_count(&queue).await, None);
}

/// A client that trusts only the CA in `ca_file` and never follows redirects.
fn client_trusting(ca_file: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca_file).expect("read CA file");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA pem")])
        .no_proxy()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// GETs `url` and returns the whole body (panics on any failure).
async fn fetch(client: &reqwest::Client, url: &str) -> Bytes {
    let response = client.get(url).send().await.expect("request");
    response.bytes().await.expect("body")
}

/// What one request to a route should produce, as a client sees it.
#[derive(Debug)]
enum Expect {
    /// This status and exactly this body.
    Body(u16, &'static [u8]),
    /// This status and a header with this value.
    Header(u16, &'static str, &'static str),
    /// Headers arrive, then reading the body fails (reset, truncation).
    BodyFails,
}

#[tokio::test]
async fn media_server_behaves_as_scripted() {
    const BODY: &[u8] = b"0123456789abcdefghij";
    let long: Bytes = Bytes::from(vec![b'x'; 40_000]);
    let past = SystemTime::now() - Duration::from_secs(1);
    let future = SystemTime::now() + Duration::from_secs(3600);
    let cases: Vec<(&str, Behaviour, Vec<Expect>)> = vec![
        (
            "ok",
            Behaviour::ok(BODY),
            vec![Expect::Body(200, BODY), Expect::Body(200, BODY)],
        ),
        (
            "status",
            Behaviour::Status(503),
            vec![Expect::Body(503, b"status 503\n")],
        ),
        (
            "retry-after",
            Behaviour::StatusWithRetryAfter(429, 7),
            vec![Expect::Header(429, "retry-after", "7")],
        ),
        (
            "sequence",
            Behaviour::Sequence(vec![
                Behaviour::Status(500),
                Behaviour::Status(404),
                Behaviour::ok(BODY),
            ]),
            vec![
                Expect::Body(500, b"status 500\n"),
                Expect::Body(404, b"status 404\n"),
                Expect::Body(200, BODY),
                Expect::Body(200, BODY),
            ],
        ),
        (
            "reset",
            Behaviour::ResetAfter {
                body: long.clone(),
                after_bytes: 1000,
            },
            vec![Expect::BodyFails],
        ),
        (
            "length-too-long",
            Behaviour::ContentLengthLie {
                body: Bytes::from_static(BODY),
                declared: 1000,
            },
            vec![Expect::BodyFails],
        ),
        (
            "length-too-short",
            Behaviour::ContentLengthLie {
                body: Bytes::from_static(BODY),
                declared: 5,
            },
            vec![Expect::Body(200, b"01234")],
        ),
        (
            "no-length",
            Behaviour::NoContentLength(Bytes::from_static(BODY)),
            vec![Expect::Body(200, BODY)],
        ),
        (
            "chunked",
            Behaviour::Chunked(Bytes::from_static(BODY)),
            vec![Expect::Body(200, BODY)],
        ),
        (
            "redirect",
            Behaviour::Redirect("/elsewhere".into()),
            vec![Expect::Header(302, "location", "/elsewhere")],
        ),
        (
            "expired",
            Behaviour::ExpiresAt {
                body: Bytes::from_static(BODY),
                at: past,
            },
            vec![Expect::Body(403, EXPIRED_BODY.as_bytes())],
        ),
        (
            "not-expired",
            Behaviour::ExpiresAt {
                body: Bytes::from_static(BODY),
                at: future,
            },
            vec![Expect::Body(200, BODY)],
        ),
    ];
    let server = MediaServer::start();
    let client = client_trusting(TestCa::shared().ca_file());
    for (name, behaviour, expectations) in cases {
        let path = format!("/{name}");
        server.route(&path, behaviour);
        for (index, expect) in expectations.iter().enumerate() {
            let response = client
                .get(server.url(&path))
                .send()
                .await
                .unwrap_or_else(|error| panic!("{name} #{index}: request failed: {error}"));
            let status = response.status().as_u16();
            match expect {
                Expect::Body(want_status, want_body) => {
                    assert_eq!(status, *want_status, "{name} #{index}: status");
                    let body = response
                        .bytes()
                        .await
                        .unwrap_or_else(|error| panic!("{name} #{index}: body: {error}"));
                    assert_eq!(&body[..], *want_body, "{name} #{index}: body");
                }
                Expect::Header(want_status, header, value) => {
                    assert_eq!(status, *want_status, "{name} #{index}: status");
                    assert_eq!(
                        response.headers().get(*header).and_then(|v| v.to_str().ok()),
                        Some(*value),
                        "{name} #{index}: header {header}"
                    );
                }
                Expect::BodyFails => {
                    assert_eq!(status, 200, "{name} #{index}: status");
                    assert!(response.bytes().await.is_err(), "{name} #{index}: the body should fail");
                }
            }
        }
        assert_eq!(server.hits(&path), expectations.len(), "{name}: hits");
    }
    let unknown = client.get(server.url("/unknown")).send().await.expect("request");
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn media_server_trickles_at_the_rate_asked_and_serves_ranges() {
    let server = MediaServer::start();
    let client = client_trusting(TestCa::shared().ca_file());
    server.route(
        "/slow",
        Behaviour::Trickle {
            body: Bytes::from(vec![7u8; 3000]),
            bytes_per_sec: 3000,
        },
    );
    let started = Instant::now();
    let body = fetch(&client, &server.url("/slow")).await;
    assert_eq!(body.len(), 3000);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "3000 bytes at 3000 B/s took {:?}",
        started.elapsed()
    );

    server.route("/ranged", Behaviour::ok(&b"0123456789"[..]));
    let partial = client
        .get(server.url("/ranged"))
        .header("range", "bytes=4-")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status().as_u16(), 206);
    assert_eq!(partial.headers()["content-range"], "bytes 4-9/10");
    assert_eq!(&partial.bytes().await.unwrap()[..], b"456789");

    // A stalled response: headers, then nothing; the client's own deadline ends it.
    server.route(
        "/stall",
        Behaviour::Trickle {
            body: Bytes::from(vec![1u8; 10]),
            bytes_per_sec: 0,
        },
    );
    let stalled = client
        .get(server.url("/stall"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    let outcome = match stalled {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(error) => Err(error),
    };
    assert!(outcome.expect_err("a stalled body must time out").is_timeout());
}

#[tokio::test]
async fn media_server_urls_look_presigned_and_requests_are_recorded() {
    let server = MediaServer::start();
    server.route("/media.jpg", Behaviour::ok(&b"jpeg"[..]));
    let url = server.url("/media.jpg");
    assert!(url.starts_with(&format!(
        "https://localhost:{}/media.jpg?X-Amz-Algorithm=",
        server.port()
    )));
    assert!(
        url.contains(SECRET_QUERY_MARKER) && url.contains("X-Amz-Expires=3600"),
        "{url}"
    );

    let client = client_trusting(TestCa::shared().ca_file());
    client
        .get(&url)
        .header("x-probe", "1")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/media.jpg");
    assert!(requests[0].query.as_deref().unwrap().contains(SECRET_QUERY_MARKER));
    assert_eq!(requests[0].header("X-Probe"), Some("1"));
    assert!(server.connections() >= 1);
}

#[tokio::test]
async fn a_server_from_an_untrusted_ca_is_refused_before_any_request() {
    let server = MediaServer::start_with_ca(TestCa::generate());
    server.route("/media.jpg", Behaviour::ok(&b"jpeg"[..]));

    let refused = client_trusting(TestCa::shared().ca_file())
        .get(server.url("/media.jpg"))
        .send()
        .await;
    assert!(refused.is_err(), "a certificate from another CA must be refused");
    assert_eq!(server.hits("/media.jpg"), 0);

    // The server's own CA file makes it trusted.
    let trusted = client_trusting(server.ca_file());
    let body = fetch(&trusted, &server.url("/media.jpg")).await;
    assert_eq!(&body[..], b"jpeg");
}

#[test]
fn commands_past_their_deadline_are_killed_and_reported() {
    use crate::support::{run_with_timeout, Running};
    use std::process::Command;

    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    let started = Instant::now();
    // The Command is not used again after a panic, so unwinding past it is harmless.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        run_with_timeout(sleeper, None, Duration::from_millis(300))
    }));
    let message = outcome.expect_err("a command past its deadline must fail the test");
    let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("did not finish within"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "killed late: {:?}",
        started.elapsed()
    );

    // stdin reaches the command, and its output and exit code come back.
    let output = run_with_timeout(Command::new("cat"), Some(b"evidence"), Duration::from_secs(10));
    assert!(output.status.success());
    assert_eq!(output.stdout, b"evidence");

    // SIGTERM reaches a background process.
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    let mut background = Running::spawn(sleeper, None);
    background.terminate();
    let ended = background
        .wait_timeout(Duration::from_secs(10))
        .expect("sleep ends on SIGTERM");
    assert!(!ended.status.success());
}
