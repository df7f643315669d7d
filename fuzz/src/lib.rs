//! What every fuzz target checks: a file fed whole and fed in chunks gets the same
//! verdict, and neither way panics, hangs or allocates without bound.

pub mod movie;

use media::{Limits, MediaError, MediaKind, Validator, Verdict};

/// The first byte of the fuzzer's input picks the chunk size (1 to 256 bytes); the rest
/// is the file.
pub fn check(kind: MediaKind, data: &[u8]) {
    let Some((&seed, file)) = data.split_first() else {
        return;
    };
    let _ = verdict_in_any_chunking(kind, seed, file);
}

/// Validates `file` whole and in chunks of `seed + 1` bytes, asserts that both agree,
/// and returns the verdict.
fn verdict_in_any_chunking(kind: MediaKind, seed: u8, file: &[u8]) -> Result<Verdict, MediaError> {
    let limits = Limits::default();
    let whole = media::validate_bytes(kind, &limits, file);
    let mut validator = Validator::new(kind, &limits);
    for chunk in file.chunks(usize::from(seed) + 1) {
        if validator.feed(chunk).is_err() {
            break;
        }
    }
    let chunked = validator.finish();
    assert_eq!(
        whole,
        chunked,
        "chunks of {} bytes disagree with the whole file",
        usize::from(seed) + 1
    );
    whole
}

/// Issue 13's promise, on movies built from the input (see [`movie`]): an accepted
/// movie is within the limit, and none of its tracks' sample tables (in the `moov`) last
/// more than 0.5 s beyond the duration reported, whatever its headers say. Fragments
/// only add to a track's samples, so this holds with or without them.
pub fn check_sample_tables(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let movie = movie::build(rest);
    let Ok(verdict) = verdict_in_any_chunking(MediaKind::Video, seed, &movie.file) else {
        return;
    };
    let duration = verdict.duration_secs.expect("a video verdict has a duration");
    assert!(duration <= 15.0 + 1e-6, "accepted {duration} s");
    for (index, secs) in movie.track_secs.iter().enumerate() {
        assert!(
            *secs <= duration + 0.5 + 1e-6,
            "track {} has {secs} s of samples, but {duration} s was reported",
            index + 1
        );
    }
}
