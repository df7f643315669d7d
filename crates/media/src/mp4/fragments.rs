//! Movie fragments (`moof`): the sample durations of each track run (`trun`), summed
//! per track over all fragments, one fragment in memory at a time.

use super::boxes::{children, Fields};
use super::malformed;
use super::moov::MAX_TRACKS;
use crate::MediaError;

/// The sample durations of one track, summed over all fragments seen so far.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FragmentTrack {
    pub(super) id: u32,
    /// Durations given by `trun` or `tfhd`, in the track's timescale.
    pub(super) ticks: u64,
    /// Samples whose duration is the `trex` default, resolved once the `moov` is known.
    pub(super) trex_samples: u64,
}

/// Adds the sample durations of one movie fragment to the per-track sums.
pub(super) fn parse_moof(payload: &[u8], fragments: &mut Vec<FragmentTrack>) -> Result<(), MediaError> {
    for child in children("moof", payload) {
        let (kind, body) = child?;
        if &kind == b"traf" {
            parse_traf(body, fragments)?;
        }
    }
    Ok(())
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_SAMPLE_DURATION: u32 = 0x08;
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_SAMPLE_DURATION: u32 = 0x100;
/// Per-sample fields: duration, size, flags, composition time offset; 4 bytes each.
const TRUN_PER_SAMPLE_FIELDS: u32 = 0xF00;

fn parse_traf(payload: &[u8], fragments: &mut Vec<FragmentTrack>) -> Result<(), MediaError> {
    // (track_ID, tfhd default sample duration)
    let mut header: Option<(u32, Option<u32>)> = None;
    for child in children("traf", payload) {
        let (kind, body) = child?;
        match &kind {
            b"tfhd" => {
                let mut f = Fields::new("tfhd", body);
                let (_, flags) = f.version_and_flags()?;
                let track_id = f.u32()?;
                if flags & TFHD_BASE_DATA_OFFSET != 0 {
                    f.skip(8)?;
                }
                if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
                    f.skip(4)?;
                }
                let default = if flags & TFHD_DEFAULT_SAMPLE_DURATION != 0 {
                    Some(f.u32()?)
                } else {
                    None
                };
                header = Some((track_id, default));
            }
            b"trun" => {
                let Some((track_id, default)) = header else {
                    return Err(malformed(
                        "a track run (trun) before its fragment header (tfhd)".to_string(),
                    ));
                };
                let sums = fragment_track(fragments, track_id)?;
                add_trun(body, default, sums)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn fragment_track(fragments: &mut Vec<FragmentTrack>, id: u32) -> Result<&mut FragmentTrack, MediaError> {
    let index = match fragments.iter().position(|f| f.id == id) {
        Some(index) => index,
        None if fragments.len() >= MAX_TRACKS => {
            return Err(malformed(format!("fragments for more than {MAX_TRACKS} tracks")));
        }
        None => {
            fragments.push(FragmentTrack {
                id,
                ..FragmentTrack::default()
            });
            fragments.len() - 1
        }
    };
    Ok(&mut fragments[index])
}

fn add_trun(body: &[u8], tfhd_default: Option<u32>, sums: &mut FragmentTrack) -> Result<(), MediaError> {
    let mut f = Fields::new("trun", body);
    let (_, flags) = f.version_and_flags()?;
    let sample_count = f.u32()?;
    if flags & TRUN_DATA_OFFSET != 0 {
        f.skip(4)?;
    }
    if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
        f.skip(4)?;
    }
    let per_sample = 4 * (flags & TRUN_PER_SAMPLE_FIELDS).count_ones() as usize;
    let needed = u64::from(sample_count) * per_sample as u64;
    if needed > f.remaining() as u64 {
        return Err(malformed(format!(
            "a track run (trun) declares {sample_count} samples but holds {} bytes of sample fields",
            f.remaining()
        )));
    }
    if flags & TRUN_SAMPLE_DURATION != 0 {
        for _ in 0..sample_count {
            // The duration is the first of the per-sample fields.
            let duration = f.u32()?;
            f.skip(per_sample - 4)?;
            sums.ticks = sums.ticks.saturating_add(u64::from(duration));
        }
    } else if let Some(default) = tfhd_default {
        sums.ticks = sums.ticks.saturating_add(u64::from(sample_count) * u64::from(default));
    } else {
        sums.trex_samples = sums.trex_samples.saturating_add(u64::from(sample_count));
    }
    Ok(())
}
