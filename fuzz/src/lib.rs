//! What every fuzz target checks: a file fed whole and fed in chunks gets the same
//! verdict, and neither way panics, hangs or allocates without bound.

use media::{Limits, MediaKind, Validator};

/// The first byte of the fuzzer's input picks the chunk size (1 to 256 bytes); the rest
/// is the file.
pub fn check(kind: MediaKind, data: &[u8]) {
    let Some((&seed, file)) = data.split_first() else {
        return;
    };
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
}
