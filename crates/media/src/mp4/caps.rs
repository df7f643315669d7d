//! How many bytes of each top-level box the walk may buffer: the `moov` and `moof` caps
//! follow from the configured maximum duration, the `ftyp` cap is fixed.
//!
//! Why these figures. Nearly all of a `moov` is its sample tables, and those grow with
//! the number of samples. Counting the worst case per sample: `stts` 8 bytes (a run per
//! sample, as variable frame rate phones write), `ctts` 8, `stsz` 4, `stss` 4, and a
//! chunk per sample in `stco`/`co64` (8) and `stsc` (12), `sdtp` 1: 45 bytes, call it 48.
//! As for samples per second over all tracks: slow-motion capture at 240 fps, audio at
//! about 50 packets a second, and the three or four timed-metadata tracks a phone may
//! add at up to the frame rate stay under 1000. That is 48 KB per second of video; the
//! allowance is 256 KiB per second, five times as much. On top of that 1 MiB is allowed
//! for everything that does not grow with the duration (headers, codec configurations
//! in `stsd`, `udta` metadata), where a phone writes a few KB. For the contract's 15 s
//! the `moov` cap is 1 MiB + 15 x 256 KiB = 4.75 MiB (it was 32 MiB for any limit).
//!
//! A `moof` holds a part of the movie's samples with per-sample fields (`trun`: at most
//! 16 bytes a sample) no larger than the `moov`'s tables, so it gets the same cap.
//!
//! Whatever the configured limit, neither cap goes above the former 32 MiB, so that a
//! generous `ARCHIVER_VIDEO_MAX_SECS` cannot let one download pin hundreds of MiB.

use super::Held;
use crate::Limits;

const MAX_FTYP_BYTES: u64 = 4 * 1024;
/// What a `moov` may need besides the sample tables (see the module documentation).
const MOVIE_FIXED_BYTES: u64 = 1024 * 1024;
/// What the sample tables of one second of video may need, with a margin of five.
const MOVIE_BYTES_PER_SEC: u64 = 256 * 1024;
/// The most any configured limit can raise the `moov` and `moof` caps to.
const MOVIE_CEILING_BYTES: u64 = 32 * 1024 * 1024;

/// The caps for one scanner, worked out once from its limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    movie: u64,
}

impl Caps {
    pub(super) fn for_limits(limits: &Limits) -> Self {
        Caps {
            movie: movie_cap(limits.video_max_secs),
        }
    }

    /// The most bytes of a `held` box's payload that are buffered.
    pub(super) fn bytes(self, held: Held) -> u64 {
        match held {
            Held::Ftyp => MAX_FTYP_BYTES,
            Held::Moov | Held::Moof => self.movie,
        }
    }
}

/// The `moov` (and `moof`) cap for a video of at most `max_secs` seconds.
fn movie_cap(max_secs: f64) -> u64 {
    // `as` saturates: a negative or NaN limit counts as 0 s (`max` drops a NaN), an
    // infinite one hits the ceiling.
    let whole_secs = max_secs.max(0.0).ceil() as u64;
    MOVIE_FIXED_BYTES
        .saturating_add(whole_secs.saturating_mul(MOVIE_BYTES_PER_SEC))
        .min(MOVIE_CEILING_BYTES)
}

#[cfg(test)]
mod tests {
    use super::movie_cap;

    #[test]
    fn the_movie_cap_follows_the_limit_within_its_bounds() {
        assert_eq!(movie_cap(15.0), 4_980_736);
        assert_eq!(movie_cap(14.2), 4_980_736);
        assert_eq!(movie_cap(0.0), 1 << 20);
        assert_eq!(movie_cap(-3.0), 1 << 20);
        assert_eq!(movie_cap(f64::NAN), 1 << 20);
        assert_eq!(movie_cap(3600.0), 32 << 20);
        assert_eq!(movie_cap(f64::INFINITY), 32 << 20);
    }
}
