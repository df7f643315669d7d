//! Server-side request forgery, end to end through `archiver archive -` (issue 7): media
//! URLs aimed at loopback traps the archiver is not allowed to reach, in every spelling of
//! a loopback address, through redirects from an allowed host, with user info or plain
//! http; plus a source that trickles one byte a second and bodies over the cap.
//!
//! Every trap listens on loopback only and counts the TCP connections it accepts: each
//! refusal case asserts the count stayed 0, so a refusal after connecting would fail.
//! Addresses that are not loopback (10.0.0.1, 169.254.169.254, ...) are never connected
//! to by any test: the address classifier's unit table (crates/archive/src/address.rs)
//! covers them.

use std::net::{TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::archive_kit::{
    event_json, new_session_id, printed, serve_good_media, tenant_prefix, TestMedia, Urls,
};
use crate::support::{
    archiver, run_with_timeout, unique_name, ArchiverEnv, Behaviour, MediaServer, Stack, SECRET_QUERY_MARKER,
    SECRET_SIGNATURE,
};

/// A TCP listener on 127.0.0.1 (and on [::1] with the same port when the machine has
/// IPv6 loopback) that accepts, counts and drops connections. Stops when dropped.
pub(crate) struct Trap {
    pub(crate) port: u16,
    has_v6: bool,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Trap {
    pub(crate) fn start() -> Trap {
        // Retry a few ports until [::1] has the same one free as 127.0.0.1.
        for _ in 0..20 {
            let v4 = TcpListener::bind("127.0.0.1:0").expect("bind trap on 127.0.0.1");
            let port = v4.local_addr().expect("trap address").port();
            let v6 = match TcpListener::bind(("::1", port)) {
                Ok(v6) => Some(v6),
                Err(_) if !ipv6_loopback() => None,
                Err(_) => continue,
            };
            let accepted = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let has_v6 = v6.is_some();
            let threads = std::iter::once(v4)
                .chain(v6)
                .map(|listener| {
                    listener.set_nonblocking(true).expect("nonblocking trap");
                    let (accepted, stop) = (accepted.clone(), stop.clone());
                    std::thread::spawn(move || {
                        // A server loop, not a test waiting: poll the listener until stopped.
                        while !stop.load(Ordering::Relaxed) {
                            match listener.accept() {
                                Ok(_) => {
                                    accepted.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(_) => std::thread::sleep(Duration::from_millis(5)),
                            }
                        }
                    })
                })
                .collect();
            return Trap {
                port,
                has_v6,
                accepted,
                stop,
                threads,
            };
        }
        panic!("no port free on both 127.0.0.1 and ::1");
    }

    pub(crate) fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Whether this machine has IPv6 loopback (binding `[::1]:0` works).
fn ipv6_loopback() -> bool {
    TcpListener::bind(("::1", 0)).is_ok()
}

/// Names other than `localhost` that the system resolver maps to loopback only (such as
/// the machine's own host name in /etc/hosts). Resolving is not connecting; a name that
/// also resolves elsewhere is not used, so no test can reach past loopback.
pub(crate) fn names_resolving_to_loopback() -> Vec<String> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    [
        hostname.trim(),
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
    ]
    .into_iter()
    .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("localhost"))
    .filter(|name| {
        let addresses: Vec<_> = (*name, 443)
            .to_socket_addrs()
            .map(|found| found.collect())
            .unwrap_or_default();
        !addresses.is_empty()
            && addresses
                .iter()
                .all(|address: &std::net::SocketAddr| address.ip().is_loopback())
    })
    .map(str::to_string)
    .collect()
}

/// What should come of the case.
#[derive(Debug, Clone)]
enum Expect {
    /// Manifest printed, source `failed` with a reason containing each text; exit 1.
    Failed(Vec<String>),
    /// The event itself is refused: exit 2, this text on stderr, no manifest.
    InvalidEvent(&'static str),
    /// A transient failure outlasted the retries: exit 1, no manifest, this on stderr,
    /// within this many seconds.
    NotFinished { reason: &'static str, within_secs: u64 },
    /// The control: the trap is allowed, so the archiver must reach it (proving the trap
    /// counts what reaches it); its TLS never answers, so the media is not finished.
    ReachesTrap,
}

struct Case {
    name: String,
    /// The source URL without its query (the secret query is appended).
    url: String,
    /// `ARCHIVER_ALLOWED_HOSTS`; the allowed media server's `localhost:PORT` when `None`.
    allowed: Option<&'static str>,
    /// Routes for the allowed media server.
    routes: Vec<(&'static str, Behaviour)>,
    env: Vec<(&'static str, &'static str)>,
    expect: Expect,
}

fn refusal(name: &str, url: String, allowed: Option<&'static str>, reason: Vec<&str>) -> Case {
    let reason = reason.into_iter().map(str::to_string).collect();
    Case {
        name: name.to_string(),
        url,
        allowed,
        routes: vec![],
        env: vec![],
        expect: Expect::Failed(reason),
    }
}

fn cases(trap: &Trap, media: &MediaServer) -> Vec<Case> {
    let t = trap.port;
    let m = media.port();
    let elsewhere = Some("media.vendor.example");
    // No list: the address classifier decides (a list, when set, refuses every unlisted
    // host before any lookup; security_allowlist tests that).
    let open = Some("");
    let mut cases = vec![
        Case {
            expect: Expect::ReachesTrap,
            ..refusal(
                "control: the trap allowed",
                format!("https://127.0.0.1:{t}/s.jpg"),
                Some("127.0.0.1"),
                vec![],
            )
        },
        refusal(
            "ipv4 loopback literal",
            format!("https://127.0.0.1:{t}/s.jpg"),
            open,
            vec!["host not allowed: 127.0.0.1", "a loopback address"],
        ),
        refusal(
            "another loopback literal",
            format!("https://127.8.9.10:{t}/s.jpg"),
            open,
            vec!["host not allowed: 127.8.9.10", "a loopback address"],
        ),
        refusal(
            "localhost, another host allowed",
            format!("https://localhost:{t}/s.jpg"),
            elsewhere,
            vec![&format!(
                "host not allowed: localhost:{t} is not in ARCHIVER_ALLOWED_HOSTS"
            )],
        ),
        refusal(
            "localhost, no list",
            format!("https://localhost:{t}/s.jpg"),
            open,
            vec!["host not allowed: localhost resolves to", "a loopback address"],
        ),
        refusal(
            "localhost, allowed on another port",
            format!("https://localhost:{t}/s.jpg"),
            None,
            vec![&format!(
                "host not allowed: localhost:{t} is listed in ARCHIVER_ALLOWED_HOSTS only with other ports"
            )],
        ),
        refusal(
            "upper-case LOCALHOST",
            format!("https://LocalHost:{t}/s.jpg"),
            open,
            vec!["host not allowed: localhost", "loopback"],
        ),
        refusal(
            "percent-encoded localhost",
            format!("https://%6cocalhost:{t}/s.jpg"),
            open,
            vec!["host not allowed: localhost", "loopback"],
        ),
        refusal(
            "ipv4-mapped ipv6",
            format!("https://[::ffff:127.0.0.1]:{t}/s.jpg"),
            open,
            vec!["host not allowed: ::ffff:127.0.0.1", "a loopback address"],
        ),
        refusal(
            "ipv4-compatible ipv6",
            format!("https://[::127.0.0.1]:{t}/s.jpg"),
            open,
            vec!["host not allowed: ::7f00:1", "a loopback address"],
        ),
        refusal(
            "decimal 127.0.0.1",
            format!("https://2130706433:{t}/s.jpg"),
            open,
            vec!["host not allowed: 127.0.0.1", "a loopback address"],
        ),
        refusal(
            "short 127.1",
            format!("https://127.1:{t}/s.jpg"),
            open,
            vec!["host not allowed: 127.0.0.1", "a loopback address"],
        ),
        refusal(
            "hex 0x7f.1",
            format!("https://0x7f.1:{t}/s.jpg"),
            open,
            vec!["host not allowed: 127.0.0.1", "a loopback address"],
        ),
        refusal(
            "octal 0177.0.0.1",
            format!("https://0177.0.0.1:{t}/s.jpg"),
            open,
            vec!["host not allowed: 127.0.0.1", "a loopback address"],
        ),
        // Linux connects 0.0.0.0 to the local host: the trap would see it.
        refusal(
            "unspecified 0.0.0.0",
            format!("https://0.0.0.0:{t}/s.jpg"),
            open,
            vec!["host not allowed: 0.0.0.0", "unspecified"],
        ),
        Case {
            routes: vec![("/s.jpg", Behaviour::Redirect(format!("https://127.0.0.1:{t}/x.jpg")))],
            ..refusal(
                "allowed host redirects to a loopback trap",
                media.url_with_query("/s.jpg", ""),
                None,
                vec![&format!(
                    "host not allowed: 127.0.0.1:{t} is not in ARCHIVER_ALLOWED_HOSTS"
                )],
            )
        },
        Case {
            routes: vec![("/s.jpg", Behaviour::Redirect(format!("https://localhost:{t}/x.jpg")))],
            ..refusal(
                "allowed host redirects to its name on a trap port",
                media.url_with_query("/s.jpg", ""),
                None,
                vec!["host not allowed: localhost:", "only with other ports"],
            )
        },
        Case {
            routes: vec![(
                "/s.jpg",
                Behaviour::Redirect(format!("https://[::ffff:7f00:1]:{t}/x.jpg")),
            )],
            ..refusal(
                "allowed host redirects to a mapped ipv6 trap",
                media.url_with_query("/s.jpg", ""),
                None,
                vec![&format!(
                    "host not allowed: [::ffff:127.0.0.1]:{t} is not in ARCHIVER_ALLOWED_HOSTS"
                )],
            )
        },
        Case {
            routes: vec![("/s.jpg", Behaviour::Redirect(format!("http://localhost:{m}/s2.jpg")))],
            ..refusal(
                "allowed host redirects to plain http",
                media.url_with_query("/s.jpg", ""),
                None,
                vec!["url is not https (scheme http)"],
            )
        },
        Case {
            routes: vec![(
                "/s.jpg",
                Behaviour::Redirect(format!("https://user:pw@localhost:{m}/s2.jpg")),
            )],
            ..refusal(
                "allowed host redirects to a url with user info",
                media.url_with_query("/s.jpg", ""),
                None,
                vec!["url carries user info"],
            )
        },
        Case {
            expect: Expect::InvalidEvent("face.source_image: must be an https URL, got scheme http"),
            ..refusal(
                "http to an allowed host",
                format!("http://localhost:{m}/s.jpg"),
                None,
                vec![],
            )
        },
        Case {
            expect: Expect::InvalidEvent("face.source_image: must be an https URL without user info"),
            ..refusal(
                "user info to an allowed host",
                format!("https://user:pw@localhost:{m}/s.jpg"),
                None,
                vec![],
            )
        },
        Case {
            expect: Expect::InvalidEvent("face.source_image: must be an https URL"),
            ..refusal("malformed host", format!("https://[127.0.0.1]:{t}/s.jpg"), None, vec![])
        },
        Case {
            routes: vec![(
                "/s.jpg",
                Behaviour::Trickle {
                    body: TestMedia::get().source.clone(),
                    bytes_per_sec: 1,
                },
            )],
            // A long attempt deadline: the minimum transfer rate must end it, not the deadline.
            env: vec![("ARCHIVER_FETCH_TIMEOUT_SECS", "120")],
            expect: Expect::NotFinished {
                reason: "source sent less than the minimum transfer rate over the low-speed window",
                within_secs: 60,
            },
            ..refusal(
                "a source sending 1 byte per second",
                media.url_with_query("/s.jpg", ""),
                None,
                vec![],
            )
        },
        Case {
            routes: vec![(
                "/s.jpg",
                Behaviour::Chunked(
                    TestMedia::get()
                        .source
                        .iter()
                        .copied()
                        .cycle()
                        .take(200_000)
                        .collect::<Vec<u8>>()
                        .into(),
                ),
            )],
            env: vec![("ARCHIVER_MAX_MEDIA_BYTES", "150000")],
            ..refusal(
                "chunked body over the cap",
                media.url_with_query("/s.jpg", ""),
                None,
                vec!["media is larger than the cap of 150000 bytes"],
            )
        },
    ];
    if trap.has_v6 {
        cases.push(refusal(
            "ipv6 loopback",
            format!("https://[::1]:{t}/s.jpg"),
            open,
            vec!["host not allowed: ::1", "a loopback address"],
        ));
    }
    for name in names_resolving_to_loopback() {
        cases.push(refusal(
            &format!("{name} resolves to loopback"),
            format!("https://{name}:{t}/s.jpg"),
            open,
            vec!["host not allowed:", "resolves to", "loopback"],
        ));
    }
    cases
}

#[test]
fn no_request_reaches_a_host_that_is_not_allowed() {
    if names_resolving_to_loopback().is_empty() {
        eprintln!("note: no host name other than localhost resolves to loopback only here; that case is left out");
    }
    let trap = Trap::start();
    let probe = MediaServer::start();
    let count = cases(&trap, &probe).len();
    drop(probe);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count).map(|index| scope.spawn(move || run_case(index))).collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().err())
            .map(|payload| {
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "(panic)".into())
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Runs case `index` with its own trap, media server and tenant.
fn run_case(index: usize) {
    let trap = Trap::start();
    let media = MediaServer::start();
    serve_good_media(&media);
    let case = cases(&trap, &media).into_iter().nth(index).expect("case");
    for (path, behaviour) in &case.routes {
        media.route(path, behaviour.clone());
    }
    let tenant = unique_name("ssrf");
    let session = new_session_id().to_ascii_lowercase();
    let source = format!(
        "{}?X-Amz-Credential={SECRET_QUERY_MARKER}&X-Amz-Signature={SECRET_SIGNATURE}",
        case.url
    );
    let urls = Urls {
        source: Some(source),
        target: None,
        video: None,
    };
    let event = event_json(&session, &tenant, None, &urls);

    let mut command = archiver();
    command
        .args(["archive", "-"])
        .source_ca(media.ca_file())
        .allowed_hosts(case.allowed.map_or_else(|| media.authority(), str::to_string).as_str())
        .env("ARCHIVER_FETCH_TIMEOUT_SECS", "5")
        .env("ARCHIVER_FETCH_ATTEMPTS", "2")
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1");
    command.envs(case.env.iter().copied());
    let started = Instant::now();
    let output = run_with_timeout(command, Some(&event), Duration::from_secs(120));
    let took = started.elapsed();

    let shown = format!("case {:?} ({}): {}", case.name, case.url, printed(&output));
    if !matches!(case.expect, Expect::ReachesTrap) {
        assert_eq!(trap.connections(), 0, "the trap was connected to; {shown}");
    }
    assert!(
        !shown.contains(SECRET_QUERY_MARKER) && !shown.contains(SECRET_SIGNATURE),
        "a URL query leaked; {shown}"
    );
    // What reached the allowed host asks for no compressed body (no decompression bombs)
    // and carries no credentials of ours.
    for request in media.requests() {
        for header in [
            "accept-encoding",
            "authorization",
            "proxy-authorization",
            "cookie",
            "referer",
        ] {
            assert_eq!(
                request.header(header),
                None,
                "{header} sent to {}; {shown}",
                request.path
            );
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    match case.expect {
        Expect::Failed(reasons) => {
            assert_eq!(output.status.code(), Some(1), "{shown}");
            let manifest: Value = serde_json::from_slice(&output.stdout).expect(&shown);
            let entry = &manifest["media"]["source_image"];
            assert_eq!(entry["status"], "failed", "{shown}");
            let reason = entry["reason"].as_str().unwrap_or_default();
            for expected in &reasons {
                assert!(
                    reason.contains(expected.as_str()),
                    "reason {reason:?} lacks {expected:?}; {shown}"
                );
            }
        }
        Expect::InvalidEvent(reason) => {
            assert_eq!(output.status.code(), Some(2), "{shown}");
            assert!(output.stdout.is_empty(), "{shown}");
            assert!(stderr.contains(reason), "{shown}");
            assert_eq!(media.connections(), 0, "an invalid event still fetched; {shown}");
        }
        Expect::ReachesTrap => {
            assert!(trap.connections() >= 1, "the allowed trap saw no connection; {shown}");
            assert_eq!(output.status.code(), Some(1), "{shown}");
        }
        Expect::NotFinished { reason, within_secs } => {
            assert_eq!(output.status.code(), Some(1), "{shown}");
            assert!(output.stdout.is_empty(), "{shown}");
            assert!(stderr.contains(reason), "{shown}");
            assert!(took < Duration::from_secs(within_secs), "took {took:?}; {shown}");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = Stack::load().s3();
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    let keys = runtime.block_on(s3.list_keys(&prefix));
    assert!(
        keys.iter().all(|key| key.ends_with("manifest.json")),
        "only a manifest may be stored: {keys:?}; {shown}"
    );
    runtime.block_on(s3.delete_prefix(&prefix));
}
