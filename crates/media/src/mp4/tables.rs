//! A track's sample tables (`minf/stbl`): the length of its media as the sum of the
//! `stts` sample durations, which the header durations (`mvhd`, `tkhd`, `mdhd`) are
//! checked against, and the check that `stts` times every sample `stsz` lists.
//!
//! The `stts` is read from the buffered `moov` in place, entry by entry: nothing is
//! allocated per entry, however many the box claims, and the loop is bounded by the bytes
//! the box really holds (the `moov` cap bounds those). The sum is kept in a `u128`: each
//! entry (32-bit count times 32-bit duration) fits in 64 bits, and fewer than 2^61
//! entries can fit in any box, so it cannot overflow.

use super::boxes::{children, Fields};
use super::malformed;
use crate::MediaError;

/// The summed sample durations of the `stts` in a media information box (`minf`), in
/// the track's timescale. A track without an `stbl` has no samples in the `moov`: 0,
/// which its headers must then agree with (or, in a fragmented movie, its fragments add
/// to).
pub(super) fn sample_ticks(track_id: u32, payload: &[u8]) -> Result<u128, MediaError> {
    let mut ticks = 0;
    for child in children("minf", payload) {
        let (kind, body) = child?;
        if &kind == b"stbl" {
            ticks = parse_stbl(track_id, body)?;
        }
    }
    Ok(ticks)
}

/// What an `stts` adds up to.
#[derive(Debug, Clone, Copy, Default)]
struct TimeToSample {
    samples: u64,
    ticks: u128,
}

/// The `stts` sum, once its sample count is found to match the sample-size table's.
///
/// Why the counts must match: the samples are listed in `stsz` and timed in `stts`, and
/// a file whose `stts` leaves samples out has no defined length. A 30 s capture of 300
/// frames whose `stts` covers only 100 sums to 10 s; ffmpeg 5.1 plays those 10 s and
/// drops the rest, a player that gives the rest the last duration (as a player may)
/// plays 30 s. Either way 20 s of frames would be stored unaccounted for.
fn parse_stbl(track_id: u32, payload: &[u8]) -> Result<u128, MediaError> {
    let mut stts: Option<TimeToSample> = None;
    let mut sizes: Option<u32> = None;
    for child in children("stbl", payload) {
        let (kind, body) = child?;
        match &kind {
            b"stts" => {
                // Two tables could each be read as the truth; neither is trusted.
                if stts.is_some() {
                    return Err(malformed(format!(
                        "track {track_id} has two time-to-sample boxes (stts)"
                    )));
                }
                stts = Some(sum_stts(body)?);
            }
            b"stsz" | b"stz2" => {
                if sizes.is_some() {
                    return Err(malformed(format!("track {track_id} has two sample-size boxes (stsz)")));
                }
                // stsz: sample_size, then sample_count; stz2: reserved and field_size,
                // then sample_count. Either way the count follows 4 bytes.
                let mut f = Fields::new("stsz", body);
                f.version_and_flags()?;
                f.skip(4)?;
                sizes = Some(f.u32()?);
            }
            _ => {}
        }
    }
    let stts = stts.unwrap_or_default();
    let sized = u64::from(sizes.unwrap_or(0));
    if stts.samples != sized {
        return Err(malformed(format!(
            "track {track_id}: the time-to-sample box (stts) gives durations for {} samples, but the sample-size box (stsz) lists {sized}",
            stts.samples
        )));
    }
    Ok(stts.ticks)
}

/// Sums a time-to-sample box: `entry_count` pairs of (sample_count, sample_delta).
fn sum_stts(body: &[u8]) -> Result<TimeToSample, MediaError> {
    let mut f = Fields::new("stts", body);
    f.version_and_flags()?;
    let entry_count = f.u32()?;
    // Check the claim against the bytes before looping, so that a forged count fails at
    // once instead of after reading what there is.
    if u64::from(entry_count) * 8 > f.remaining() as u64 {
        return Err(malformed(format!(
            "the time-to-sample box (stts) declares {entry_count} entries but holds {} bytes of entries",
            f.remaining()
        )));
    }
    let mut sum = TimeToSample::default();
    for _ in 0..entry_count {
        let sample_count = f.u32()?;
        let sample_delta = f.u32()?;
        // Neither can overflow (see the module documentation; fewer than 2^61 entries of
        // fewer than 2^32 samples each); saturating all the same, so that no input can
        // make this panic in a debug build.
        sum.samples = sum.samples.saturating_add(u64::from(sample_count));
        sum.ticks = sum
            .ticks
            .saturating_add(u128::from(sample_count) * u128::from(sample_delta));
    }
    Ok(sum)
}
