//! `archiver validate` as a user runs it: the verdict, the figures and the exit code for
//! every fixture of `fixtures/media/EXPECTED.tsv`, stdin, configurable limits, and the
//! one-line errors of bad usage. Needs no stack.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::{repo_root, run_with_timeout};

/// The archiver with none of the caller's `ARCHIVER_*` settings.
fn validate(kind: &str, file: &str, env: &[(&str, &str)], stdin: Option<&[u8]>) -> (Output, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_archiver"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ARCHIVER_") {
            command.env_remove(name);
        }
    }
    command
        .args(["validate", "--kind", kind, file])
        .envs(env.iter().copied());
    let output = run_with_timeout(command, stdin, Duration::from_secs(30));
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, json)
}

#[test]
fn every_fixture_gets_its_verdict_figures_and_exit_code() {
    let dir = repo_root().join("fixtures/media");
    let table = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("fixtures/media/EXPECTED.tsv");
    let mut checked = 0;
    for line in table.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        let [file, kind, expect, figure] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("EXPECTED.tsv: 4 fields expected in {line:?}");
        };
        let path = dir.join(file);
        let (output, json) = validate(kind, path.to_str().unwrap(), &[], None);
        let context = format!(
            "{file} as {kind}: {json} (stderr {})",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(json["kind"], kind, "{context}");
        match expect {
            "ok" => {
                assert_eq!(output.status.code(), Some(0), "{context}");
                assert_eq!(json["ok"], true, "{context}");
                if let Some((width, height)) = figure.split_once('x') {
                    assert_eq!(json["format"], "jpeg", "{context}");
                    assert_eq!(json["width"], width.parse::<u64>().unwrap(), "{context}");
                    assert_eq!(json["height"], height.parse::<u64>().unwrap(), "{context}");
                } else {
                    assert_eq!(json["format"], "mp4", "{context}");
                    let expected: f64 = figure.parse().unwrap();
                    let duration = json["duration_secs"].as_f64().expect("duration_secs");
                    assert!((duration - expected).abs() < 0.001, "{context}");
                }
            }
            "reject" => {
                assert_eq!(output.status.code(), Some(1), "{context}");
                assert_eq!(json["ok"], false, "{context}");
                let reason = json["reason"].as_str().expect("a reason");
                assert!(reason.contains(figure), "{context}: reason should contain {figure:?}");
            }
            other => panic!("EXPECTED.tsv: ok or reject, got {other:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixtures checked");
}

#[test]
fn stdin_and_configured_limits_are_honoured() {
    let video = std::fs::read(repo_root().join("fixtures/media/video-10s-moov-last.mp4")).unwrap();
    let (output, json) = validate("video", "-", &[], Some(&video));
    assert_eq!(output.status.code(), Some(0), "{json}");
    assert_eq!(json["duration_secs"], 10.0);

    let (output, json) = validate("video", "-", &[("ARCHIVER_VIDEO_MAX_SECS", "5")], Some(&video));
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert!(
        json["reason"].as_str().unwrap().contains("exceeds the maximum of 5 s"),
        "{json}"
    );

    let target = repo_root().join("fixtures/media/target-1280x719.jpg");
    let (output, json) = validate(
        "target",
        target.to_str().unwrap(),
        &[("ARCHIVER_TARGET_MIN_SHORT_SIDE", "700")],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{json}");
}

/// A `validate` run that must be refused: kind, file, settings, and what stderr must name.
type UsageCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_usage_exits_2_with_one_line_that_says_what() {
    let cases: &[UsageCase] = &[
        (
            "source",
            "/nonexistent/portrait.jpg",
            &[],
            "cannot read /nonexistent/portrait.jpg",
        ),
        ("source", "-", &[("ARCHIVER_SOURCE_MAX", "big")], "ARCHIVER_SOURCE_MAX"),
        (
            "video",
            "-",
            &[("ARCHIVER_VIDEO_MAX_SECS", "-3")],
            "ARCHIVER_VIDEO_MAX_SECS",
        ),
        ("portrait", "-", &[], "portrait"),
    ];
    for (kind, file, env, expected) in cases {
        let (output, _) = validate(kind, file, env, Some(b""));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{kind} {file} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{stderr:?} should name {expected:?}");
        assert!(output.stdout.is_empty(), "nothing on stdout for bad usage");
        if !expected.contains("portrait") {
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        }
    }
}
