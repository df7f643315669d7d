//! Random and damaged input: no panic, no hang, the same verdict in any chunking.

use media::{Limits, MediaKind};

use crate::support::{validate_every_way, Rng};

const KINDS: [MediaKind; 3] = [MediaKind::Source, MediaKind::Target, MediaKind::Video];

/// Valid beginnings, so that random tails reach deep into both parsers.
const PREFIXES: &[&[u8]] = &[
    b"",
    b"\xFF\xD8",
    b"\xFF\xD8\xFF\xC0\x00\x11\x08\x02\xD0\x05\x00\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00\xFF\xDA\x00\x08\x01\x01\x00\x00\x3F\x00",
    b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isom",
    b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isom\x00\x00\x00\x80moov\x00\x00\x00\x6Cmvhd",
    b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isom\x00\x00\x00\x60moof\x00\x00\x00\x58traf",
];

fn check_no_disagreement(kind: MediaKind, bytes: &[u8], what: &str) {
    if let Err(why) = validate_every_way(kind, &Limits::default(), bytes) {
        panic!("{what} as {}: {why}", kind.as_str());
    }
}

#[test]
fn random_bytes_after_valid_prefixes() {
    let mut rng = Rng::new(2026);
    for case in 0..2000 {
        let prefix = PREFIXES[case % PREFIXES.len()];
        let len = rng.below(600);
        let mut bytes = prefix.to_vec();
        bytes.extend(rng.bytes(len));
        check_no_disagreement(KINDS[case % 3], &bytes, &format!("random case {case}"));
    }
}

/// The committed fixtures with a few bytes changed or cut short.
#[test]
fn damaged_fixtures() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/media");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("list fixtures")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jpg" || ext == "mp4"))
        .map(|path| (path.display().to_string(), std::fs::read(&path).expect("read fixture")))
        .filter(|(_, bytes)| !bytes.is_empty() && bytes.len() < 200_000)
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} fixtures found", files.len());
    let mut rng = Rng::new(7);
    for round in 0..400 {
        let (name, original) = &files[round % files.len()];
        let mut bytes = original.clone();
        // Damage mostly near the start, where the headers are.
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len().min(4096));
            bytes[at] = rng.next_u64() as u8;
        }
        if rng.below(3) == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        let kind = if name.ends_with(".mp4") {
            MediaKind::Video
        } else {
            KINDS[round % 2]
        };
        check_no_disagreement(kind, &bytes, &format!("damaged {name} (round {round})"));
    }
}
