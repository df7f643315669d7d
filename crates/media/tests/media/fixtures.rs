//! The committed fixtures, driven by fixtures/media/EXPECTED.tsv, and the JPEG
//! dimensions cross-checked against the `image` crate.

use std::path::PathBuf;

use media::{Limits, MediaKind};

use crate::support::{check, validate_every_way, Expect};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/media")
}

struct Row {
    file: String,
    kind: MediaKind,
    expect: Expect,
}

fn parse_kind(word: &str) -> MediaKind {
    match word {
        "source" => MediaKind::Source,
        "target" => MediaKind::Target,
        "video" => MediaKind::Video,
        other => panic!("EXPECTED.tsv: unknown kind {other:?}"),
    }
}

fn parse_expect(verdict: &str, figure: &str) -> Expect {
    match verdict {
        "reject" => Expect::Reject(Box::leak(figure.to_string().into_boxed_str())),
        "ok" => match figure.split_once('x') {
            Some((w, h)) => Expect::Dims(w.parse().expect("width"), h.parse().expect("height")),
            None => Expect::Secs(figure.parse().expect("seconds")),
        },
        other => panic!("EXPECTED.tsv: expected ok or reject, got {other:?}"),
    }
}

fn rows() -> Vec<Row> {
    let table = std::fs::read_to_string(fixtures_dir().join("EXPECTED.tsv")).expect("read EXPECTED.tsv");
    table
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [file, kind, verdict, figure] = fields[..] else {
                panic!("EXPECTED.tsv: expected 4 tab-separated fields in {line:?}");
            };
            Row {
                file: file.to_string(),
                kind: parse_kind(kind),
                expect: parse_expect(verdict, figure),
            }
        })
        .collect()
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(file)).unwrap_or_else(|err| panic!("read fixture {file}: {err}"))
}

#[test]
fn every_fixture_gets_its_expected_verdict_whole_and_in_chunks() {
    let rows = rows();
    let limits = Limits::default();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let bytes = read(&row.file);
            let outcome =
                validate_every_way(row.kind, &limits, &bytes).and_then(|verdict| check(&verdict, &row.expect));
            outcome
                .err()
                .map(|why| format!("{} as {}: {why}", row.file, row.kind.as_str()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    // The table must cover what issue 2 asks for; a shrunken table would pass vacuously.
    assert!(rows.len() >= 35, "EXPECTED.tsv has only {} rows", rows.len());
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let listed: Vec<String> = rows().into_iter().map(|row| row.file).collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("list fixtures") {
        let name = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
        if name != "EXPECTED.tsv" && !listed.contains(&name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "fixtures without an expected verdict: {missing:?}");
}

/// The dimensions our scanner reads agree with those the `image` crate reads from the
/// same header, on every fixture that is a structurally valid JPEG.
#[test]
fn jpeg_dimensions_match_the_image_crate() {
    // No bounds of ours apply here: every structurally valid JPEG is accepted.
    let limits = Limits {
        target_min_short_side: 0,
        ..Limits::default()
    };
    let mut compared = 0;
    let mut seen = std::collections::HashSet::new();
    for row in rows() {
        if !seen.insert(row.file.clone()) {
            continue;
        }
        let bytes = read(&row.file);
        let Ok(verdict) = media::validate_bytes(MediaKind::Target, &limits, &bytes) else {
            continue;
        };
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), image::ImageFormat::Jpeg);
        reader.limits(image::Limits::default());
        let theirs = reader
            .into_dimensions()
            .unwrap_or_else(|err| panic!("image crate on {}: {err}", row.file));
        assert_eq!(
            (verdict.width, verdict.height),
            (Some(theirs.0), Some(theirs.1)),
            "{}",
            row.file
        );
        compared += 1;
    }
    assert!(compared >= 12, "only {compared} JPEG fixtures compared");
}
