//! How `archiver archive` meets a misbehaving media host: one table of faults, each
//! asserting the media's status and reason, what is in S3, the exit code and how many
//! requests the host saw.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use crate::support::archive_kit::{
    archive_event, event_json, new_session_id, printed, serve_good_media, tenant_prefix, TestMedia, Urls,
};
use crate::support::{unique_name, Behaviour, MediaServer, Stack, SECRET_QUERY_MARKER};

/// What should become of the faulty source image.
#[derive(Debug)]
enum Expect {
    /// Stored after this many attempts; exit 0.
    Stored { attempts: u64 },
    /// In the manifest with this status and a reason containing this text; exit 1.
    Manifest { status: &'static str, reason: &'static str },
    /// A transient failure outlasted the retries: no manifest, the reason on stderr; exit 1.
    NotFinished { reason: &'static str },
}

struct Case {
    name: &'static str,
    /// What `/source.jpg` does; `None` when the URL is not served at all.
    behaviour: Option<Behaviour>,
    /// Extra routes (a redirect's destination), made once the server's port is known.
    extra_routes: fn(&MediaServer, &Bytes) -> Vec<(&'static str, Behaviour)>,
    /// The source URL; `None` for the usual presigned one.
    source_url: Option<fn(&MediaServer) -> String>,
    issued_at: Option<String>,
    env: Vec<(&'static str, &'static str)>,
    /// Whether the target image and the video are stored (not when the event itself expired).
    others_stored: bool,
    expect: Expect,
    /// Requests `/source.jpg` must have seen.
    hits: usize,
}

fn cases() -> Vec<Case> {
    let jpeg = TestMedia::get().source.clone();
    let len = jpeg.len() as u64;
    let two_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let base = |name, behaviour: Behaviour, expect, hits| Case {
        name,
        behaviour: Some(behaviour),
        extra_routes: |_, _| vec![],
        source_url: None,
        issued_at: None,
        env: vec![],
        others_stored: true,
        expect,
        hits,
    };
    vec![
        base(
            "503 then success",
            Behaviour::Sequence(vec![Behaviour::Status(503), Behaviour::Ok(jpeg.clone())]),
            Expect::Stored { attempts: 2 },
            2,
        ),
        base(
            "429 with Retry-After then success",
            Behaviour::Sequence(vec![
                Behaviour::StatusWithRetryAfter(429, 1),
                Behaviour::Ok(jpeg.clone()),
            ]),
            Expect::Stored { attempts: 2 },
            2,
        ),
        base(
            "reset mid-body then success",
            Behaviour::Sequence(vec![
                Behaviour::ResetAfter {
                    body: jpeg.clone(),
                    after_bytes: 10_000,
                },
                Behaviour::Ok(jpeg.clone()),
            ]),
            Expect::Stored { attempts: 2 },
            2,
        ),
        base(
            "reset mid-body every time",
            Behaviour::ResetAfter {
                body: jpeg.clone(),
                after_bytes: 10_000,
            },
            Expect::NotFinished {
                reason: "source_image: connection to source broke",
            },
            2,
        ),
        base(
            "trickle past the deadline",
            Behaviour::Trickle {
                body: jpeg.clone(),
                bytes_per_sec: 2_000,
            },
            Expect::NotFinished {
                reason: "source_image: download timed out",
            },
            2,
        ),
        Case {
            // 100 KB more than the JPEG at once (bytes after its end are allowed; the cap
            // here is 150 KB), then 10 bytes a second: the low-speed window ends the attempt
            // within two windows (10 s each); an average of 1 KiB/s would have let it run
            // past the 120 s attempt deadline.
            env: vec![("ARCHIVER_FETCH_TIMEOUT_SECS", "120"), ("ARCHIVER_FETCH_ATTEMPTS", "1")],
            ..base(
                "a burst, then a trickle",
                Behaviour::BurstThenTrickle {
                    body: [jpeg.as_ref(), &[0u8; 100_000][..]].concat().into(),
                    burst: jpeg.len() + 100_000 - 2_000,
                    bytes_per_sec: 10,
                },
                Expect::NotFinished {
                    reason: "source_image: download timed out (source sent less than the minimum transfer rate over the low-speed window)",
                },
                1,
            )
        },
        base(
            "content-length claims more than is sent",
            Behaviour::ContentLengthLie {
                body: jpeg.clone(),
                declared: len + 5_000,
            },
            Expect::NotFinished {
                reason: "source_image: connection to source broke",
            },
            2,
        ),
        base(
            "content-length claims less than is sent",
            Behaviour::ContentLengthLie {
                body: jpeg.clone(),
                declared: len - 5_000,
            },
            Expect::Manifest {
                status: "rejected",
                reason: "truncated jpeg",
            },
            1,
        ),
        base(
            "content-length above the cap is refused before reading",
            Behaviour::Ok(Bytes::from(vec![0u8; 200_000])),
            Expect::Manifest {
                status: "failed",
                reason: "media is larger than the cap of 150000 bytes",
            },
            1,
        ),
        base(
            "no content-length, more bytes than the cap",
            Behaviour::NoContentLength(jpeg.iter().copied().cycle().take(200_000).collect::<Vec<u8>>().into()),
            Expect::Manifest {
                status: "failed",
                reason: "media is larger than the cap of 150000 bytes",
            },
            1,
        ),
        base(
            "403 (expired)",
            Behaviour::Status(403),
            Expect::Manifest {
                status: "failed",
                reason: "source answered 403",
            },
            1,
        ),
        base(
            "404",
            Behaviour::Status(404),
            Expect::Manifest {
                status: "failed",
                reason: "source answered 404",
            },
            1,
        ),
        base(
            "410",
            Behaviour::Status(410),
            Expect::Manifest {
                status: "failed",
                reason: "source answered 410",
            },
            1,
        ),
        Case {
            extra_routes: |_, jpeg| vec![("/moved/source.jpg", Behaviour::Ok(jpeg.clone()))],
            ..base(
                "redirect on the same host",
                Behaviour::Redirect("/moved/source.jpg".into()),
                Expect::Stored { attempts: 1 },
                1,
            )
        },
        Case {
            source_url: Some(|server| server.url("/loop.jpg")),
            extra_routes: |_, _| vec![("/loop.jpg", Behaviour::Redirect("/loop.jpg".into()))],
            ..base(
                "redirect loop",
                Behaviour::Status(500),
                Expect::Manifest {
                    status: "failed",
                    reason: "more than 3 redirects",
                },
                0,
            )
        },
        Case {
            // 127.0.0.1 is the same server, but only localhost:PORT is allowed.
            source_url: Some(|server| server.url("/elsewhere.jpg")),
            extra_routes: |server, _| {
                vec![(
                    "/elsewhere.jpg",
                    Behaviour::Redirect(format!("https://127.0.0.1:{}/source.jpg", server.port())),
                )]
            },
            ..base(
                "redirect to a host not allowed",
                Behaviour::Ok(jpeg.clone()),
                Expect::Manifest {
                    status: "failed",
                    // A set allow list is the only list (contract 1.1): refused before any lookup.
                    reason: "is not in ARCHIVER_ALLOWED_HOSTS, which when set is the only list of media hosts",
                },
                0,
            )
        },
        Case {
            source_url: Some(|server| {
                server.url_signed_at("/source.jpg", SystemTime::now() - Duration::from_secs(7200), 3600)
            }),
            ..base(
                "url already expired by its own X-Amz-Date",
                Behaviour::Ok(jpeg.clone()),
                Expect::Manifest {
                    status: "failed",
                    reason: "url expired at",
                },
                0,
            )
        },
        Case {
            source_url: Some(|server| server.url_with_query("/source.jpg", "")),
            issued_at: Some(
                two_hours_ago
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            ),
            others_stored: false,
            ..base(
                "url already expired by issued_at",
                Behaviour::Ok(jpeg.clone()),
                Expect::Manifest {
                    status: "failed",
                    reason: "url expired at",
                },
                0,
            )
        },
    ]
}

#[test]
fn faults_of_the_media_host() {
    // Cases run in parallel, each with its own server, tenant and archiver process.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases()
            .into_iter()
            .map(|case| scope.spawn(move || run_case(case)))
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().err())
            .map(panic_text)
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(panic)".into())
}

fn run_case(case: Case) {
    let name = case.name;
    let server = MediaServer::start();
    serve_good_media(&server);
    if let Some(behaviour) = case.behaviour {
        server.route("/source.jpg", behaviour);
    }
    for (path, behaviour) in (case.extra_routes)(&server, &TestMedia::get().source) {
        server.route(path, behaviour);
    }
    let tenant = unique_name("fault");
    let session = new_session_id().to_ascii_lowercase();
    let source = case
        .source_url
        .map_or_else(|| server.url("/source.jpg"), |make| make(&server));
    let urls = Urls {
        source: Some(source),
        ..Urls::of(&server)
    };
    let event = event_json(&session, &tenant, case.issued_at.as_deref(), &urls);
    let mut env = case.env.clone();
    env.push(("ARCHIVER_MAX_MEDIA_BYTES", "150000"));

    let output = archive_event(&server, &event, &env);

    let shown = format!("case {name:?}: {}", printed(&output));
    assert!(!shown.contains(SECRET_QUERY_MARKER), "a URL query leaked: {shown}");
    assert_eq!(
        server.hits("/source.jpg"),
        case.hits,
        "requests to /source.jpg; {shown}"
    );
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = Stack::load().s3();
    let keys = runtime.block_on(s3.list_keys(&prefix));
    let names: Vec<&str> = keys
        .iter()
        .map(|key| key.strip_prefix(&prefix).unwrap_or(key))
        .collect();
    match case.expect {
        Expect::Stored { attempts } => {
            assert_eq!(output.status.code(), Some(0), "{shown}");
            let manifest: Value = serde_json::from_slice(&output.stdout).expect(&shown);
            let entry = &manifest["media"]["source_image"];
            assert_eq!(entry["status"], "stored", "{shown}");
            assert_eq!(entry["attempts"], attempts, "{shown}");
            assert_eq!(
                names,
                ["manifest.json", "source.jpg", "target.jpg", "video.mp4"],
                "{shown}"
            );
            let stored = runtime
                .block_on(s3.get_object_sse_c(&format!("{prefix}source.jpg")))
                .unwrap();
            assert_eq!(stored, TestMedia::get().source.to_vec(), "{shown}");
        }
        Expect::Manifest { status, reason } => {
            assert_eq!(output.status.code(), Some(1), "{shown}");
            let manifest: Value = serde_json::from_slice(&output.stdout).expect(&shown);
            let entry = &manifest["media"]["source_image"];
            assert_eq!(entry["status"], status, "{shown}");
            assert!(entry["reason"].as_str().unwrap_or("").contains(reason), "{shown}");
            let expected: &[&str] = if case.others_stored {
                &["manifest.json", "target.jpg", "video.mp4"]
            } else {
                &["manifest.json"]
            };
            assert_eq!(names, expected, "{shown}");
        }
        Expect::NotFinished { reason } => {
            assert_eq!(output.status.code(), Some(1), "{shown}");
            assert!(output.stdout.is_empty(), "no manifest for an unfinished event; {shown}");
            assert!(String::from_utf8_lossy(&output.stderr).contains(reason), "{shown}");
            assert_eq!(names, ["target.jpg", "video.mp4"], "{shown}");
        }
    }
    runtime.block_on(s3.delete_prefix(&prefix));
}
