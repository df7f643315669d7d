//! `ARCHIVER_ALLOWED_HOSTS`, when set, is the only list of media hosts (CONTRACT.md 1.1,
//! section 7; issue 13), end to end through `archiver archive -`.
//!
//! Regression: a set list still let any host through whose addresses were public. Each
//! unlisted host below must be refused by name, before any DNS lookup or connection,
//! also when a listed host redirects to it. Two things show that nothing was looked up or
//! connected to: names that resolve to a loopback trap leave its connection count at 0,
//! and names under the reserved `.invalid` (RFC 6761) are refused with the list's reason
//! rather than "does not resolve". No case can reach past loopback: the only names used
//! resolve to loopback or to nothing.

use serde_json::Value;

use crate::security_ssrf::{names_resolving_to_loopback, Trap};
use crate::support::archive_kit::{event_json, new_session_id, printed, serve_good_media, tenant_prefix, Urls};
use crate::support::{archiver, run_with_timeout, unique_name, ArchiverEnv, Behaviour, MediaServer, Stack};

/// What a case expects of the source image.
enum Expect {
    /// Fetched and stored: exit 0, the media `stored` in the printed manifest.
    Stored,
    /// Refused: exit 1, the media `failed` with exactly this reason.
    Refused(String),
}

struct Case {
    name: String,
    /// `ARCHIVER_ALLOWED_HOSTS`; `{m}` stands for the media server's port.
    list: &'static str,
    /// The source URL; `{m}` and `{t}` stand for the media server's and the trap's ports.
    url: String,
    /// A redirect the media server answers `/s.jpg` with (`{t}` as above).
    redirect: Option<String>,
    expect: Expect,
}

const NOT_LISTED: &str = "is not in ARCHIVER_ALLOWED_HOSTS, which when set is the only list of media hosts";

fn cases() -> Vec<Case> {
    let refused = |host: &str| Expect::Refused(format!("host not allowed: {host} {NOT_LISTED}"));
    let mut cases = vec![
        Case {
            name: "the listed host (loopback) is fetched".into(),
            list: "localhost:{m}",
            url: "https://localhost:{m}/source.jpg".into(),
            redirect: None,
            expect: Expect::Stored,
        },
        Case {
            name: "the listed host among others is fetched".into(),
            list: "cdn.vendor.invalid, localhost:{m}",
            url: "https://localhost:{m}/source.jpg".into(),
            redirect: None,
            expect: Expect::Stored,
        },
        Case {
            name: "an unlisted name is refused without a lookup".into(),
            list: "localhost:{m}",
            url: "https://media.vendor.invalid/source.jpg".into(),
            redirect: None,
            expect: refused("media.vendor.invalid:443"),
        },
        Case {
            name: "an unlisted name on the trap's port is refused without a lookup".into(),
            list: "localhost:{m}",
            url: "https://media.vendor.invalid:{t}/source.jpg".into(),
            redirect: None,
            expect: refused("media.vendor.invalid:{t}"),
        },
        Case {
            name: "a listed name's subdomain is refused".into(),
            list: "cdn.vendor.invalid,localhost:{m}",
            url: "https://x.cdn.vendor.invalid/source.jpg".into(),
            redirect: None,
            expect: refused("x.cdn.vendor.invalid:443"),
        },
        Case {
            name: "an unlisted loopback literal is refused".into(),
            list: "localhost:{m}",
            url: "https://127.0.0.1:{t}/source.jpg".into(),
            redirect: None,
            expect: refused("127.0.0.1:{t}"),
        },
        Case {
            name: "the listed host redirects to an unlisted name".into(),
            list: "localhost:{m}",
            url: "https://localhost:{m}/s.jpg".into(),
            redirect: Some("https://media.vendor.invalid:{t}/x.jpg".into()),
            expect: refused("media.vendor.invalid:{t}"),
        },
    ];
    for name in names_resolving_to_loopback() {
        cases.push(Case {
            name: format!("{name} (resolves to the trap) is refused"),
            list: "localhost:{m}",
            url: format!("https://{name}:{{t}}/source.jpg"),
            redirect: None,
            expect: refused(&format!("{}:{{t}}", name.to_ascii_lowercase())),
        });
        cases.push(Case {
            name: format!("the listed host redirects to {name} (resolves to the trap)"),
            list: "localhost:{m}",
            url: "https://localhost:{m}/s.jpg".into(),
            redirect: Some(format!("https://{name}:{{t}}/x.jpg")),
            expect: refused(&format!("{}:{{t}}", name.to_ascii_lowercase())),
        });
    }
    cases
}

#[test]
fn a_set_allow_list_is_the_only_list() {
    if names_resolving_to_loopback().is_empty() {
        eprintln!("note: no host name other than localhost resolves to loopback only here; those cases are left out");
    }
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases()
            .into_iter()
            .map(|case| scope.spawn(move || run_case(case)))
            .collect();
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

fn run_case(case: Case) {
    let trap = Trap::start();
    let media = MediaServer::start();
    serve_good_media(&media);
    let fill = |text: &str| {
        text.replace("{m}", &media.port().to_string())
            .replace("{t}", &trap.port.to_string())
    };
    if let Some(target) = &case.redirect {
        media.route("/s.jpg", Behaviour::Redirect(fill(target)));
    }
    let tenant = unique_name("allowlist");
    let session = new_session_id().to_ascii_lowercase();
    let urls = Urls {
        source: Some(fill(&case.url)),
        target: None,
        video: None,
    };
    let event = event_json(&session, &tenant, None, &urls);
    let mut command = archiver();
    command
        .args(["archive", "-"])
        .source_ca(media.ca_file())
        .allowed_hosts(&fill(case.list))
        .env("ARCHIVER_FETCH_TIMEOUT_SECS", "5")
        .env("ARCHIVER_FETCH_ATTEMPTS", "2")
        .env("NO_COLOR", "1");
    let output = run_with_timeout(command, Some(&event), std::time::Duration::from_secs(90));
    let shown = format!("case {:?}: {}", case.name, printed(&output));

    assert_eq!(trap.connections(), 0, "the trap was connected to; {shown}");
    let manifest: Value = serde_json::from_slice(&output.stdout).expect(&shown);
    let entry = &manifest["media"]["source_image"];
    match &case.expect {
        Expect::Stored => {
            assert_eq!(output.status.code(), Some(0), "{shown}");
            assert_eq!(entry["status"], "stored", "{shown}");
        }
        Expect::Refused(reason) => {
            assert_eq!(output.status.code(), Some(1), "{shown}");
            assert_eq!(entry["status"], "failed", "{shown}");
            let got = entry["reason"].as_str().unwrap_or_default();
            assert!(got.contains(&fill(reason)), "reason {got:?}; {shown}");
            if case.redirect.is_some() {
                // The listed host was reached; only the hop to the unlisted one was refused.
                assert!(media.hits("/s.jpg") >= 1, "the listed host was not fetched; {shown}");
            } else {
                assert_eq!(media.connections(), 0, "{shown}");
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = Stack::load().s3();
    let prefix = format!("{}{session}/", tenant_prefix(&tenant));
    runtime.block_on(s3.delete_prefix(&prefix));
}
