//! Which figure is a movie's duration, and the check that the durations its headers
//! claim agree with what its samples add up to (the rules are in the documentation of
//! `mp4`).

use super::fragments::FragmentTrack;
use super::malformed;
use super::moov::{Movie, Track};
use crate::MediaError;

/// How far a header's duration may be from the sum of the sample durations before the
/// file counts as lying. Headers and samples legitimately differ by a few frames or
/// audio packets: an edit list that hides the encoder delay of AAC (1024 samples, about
/// 21 ms), or audio that runs a few milliseconds past the video. Half a second is far
/// above those and far below the 5 s or more a forged header needs to matter.
pub(super) const HEADER_TOLERANCE_SECS: f64 = 0.5;

/// Rejects a movie whose header durations disagree with its samples by more than
/// [`HEADER_TOLERANCE_SECS`]: without fragments, `mvhd` (and `mehd` if any) against
/// the longest track's sample tables and each track's `tkhd` and `mdhd` against its
/// own; with fragments, `mehd` against the sample tables plus the fragments.
pub(super) fn check_headers(movie: &Movie, fragments: &[FragmentTrack]) -> Result<(), MediaError> {
    if !fragments.is_empty() {
        return check_mehd_against_fragments(movie, fragments);
    }
    let tables_secs = movie
        .tracks
        .iter()
        .map(|track| seconds(track.sample_ticks, track.timescale))
        .fold(0.0, f64::max);
    // A zero mvhd or tkhd gives no figure: the duration then rests on the tracks' mdhd,
    // each of which is checked, zero or not.
    if movie.duration > 0 {
        let mvhd_secs = seconds(movie.duration.into(), movie.timescale);
        agree("mvhd says", mvhd_secs, "the sample tables say", tables_secs)?;
    }
    if movie.fragment_duration > 0 {
        let mehd_secs = seconds(movie.fragment_duration.into(), movie.timescale);
        agree("mehd says", mehd_secs, "the sample tables say", tables_secs)?;
    }
    for track in &movie.tracks {
        let track_secs = seconds(track.sample_ticks, track.timescale);
        let id = track.id;
        if track.header_duration > 0 {
            let tkhd_secs = seconds(track.header_duration.into(), movie.timescale);
            let claim = format!("the tkhd of track {id} says");
            agree(&claim, tkhd_secs, "its sample tables say", track_secs)?;
        }
        let mdhd_secs = seconds(track.duration.into(), track.timescale);
        let claim = format!("the mdhd of track {id} says");
        agree(&claim, mdhd_secs, "its sample tables say", track_secs)?;
    }
    Ok(())
}

/// In a fragmented movie `mvhd`, `tkhd` and `mdhd` may cover the samples in the `moov`
/// only (ffmpeg) or the whole movie (GPAC), so only `mehd`, which always means the whole
/// movie, has a sum to be held to. Called once all the fragments are in.
fn check_mehd_against_fragments(movie: &Movie, fragments: &[FragmentTrack]) -> Result<(), MediaError> {
    if movie.fragment_duration == 0 {
        return Ok(());
    }
    let mut samples_secs: f64 = 0.0;
    for track in &movie.tracks {
        let ticks = track
            .sample_ticks
            .saturating_add(fragment_ticks(movie, track, fragments)?);
        samples_secs = samples_secs.max(seconds(ticks, track.timescale));
    }
    let mehd_secs = seconds(movie.fragment_duration.into(), movie.timescale);
    agree("mehd says", mehd_secs, "the fragments say", samples_secs)
}

fn agree(claim: &str, claimed_secs: f64, measure: &str, measured_secs: f64) -> Result<(), MediaError> {
    if (claimed_secs - measured_secs).abs() > HEADER_TOLERANCE_SECS {
        return Err(malformed(format!(
            "{claim} {claimed_secs:.3} s but {measure} {measured_secs:.3} s"
        )));
    }
    Ok(())
}

/// The presentation duration in seconds: without fragments the `mvhd` duration, or when
/// that is zero the longest track; with fragments the longest of every figure.
pub(super) fn duration(movie: &Movie, fragments: &[FragmentTrack]) -> Result<f64, MediaError> {
    let movie_secs = seconds(movie.duration.into(), movie.timescale);
    if fragments.is_empty() && movie.duration > 0 {
        return Ok(movie_secs);
    }
    // A fragmented movie's `mvhd` covers only the samples in the `moov` itself
    // (ffmpeg's `frag_keyframe` writes 2 s there for a 10 s file), and `mehd` is a
    // claim the fragments may contradict: take the longest of all the figures.
    let mut longest = movie_secs.max(seconds(movie.fragment_duration.into(), movie.timescale));
    for track in &movie.tracks {
        // The samples in the `moov` count even where the `mdhd` understates them.
        let in_moov = u128::from(track.duration).max(track.sample_ticks);
        let ticks = in_moov.saturating_add(fragment_ticks(movie, track, fragments)?);
        longest = longest.max(seconds(ticks, track.timescale));
    }
    if let Some(orphan) = fragments.iter().find(|f| !movie.tracks.iter().any(|t| t.id == f.id)) {
        return Err(malformed(format!(
            "a fragment of track {}, which the movie does not declare",
            orphan.id
        )));
    }
    if longest == 0.0 {
        return Err(malformed(
            "the movie declares no duration, in 'mvhd', 'mehd' or its samples".to_string(),
        ));
    }
    Ok(longest)
}

/// The summed sample durations of a track's fragments, in the track's timescale.
fn fragment_ticks(movie: &Movie, track: &Track, fragments: &[FragmentTrack]) -> Result<u128, MediaError> {
    let Some(sums) = fragments.iter().find(|f| f.id == track.id) else {
        return Ok(0);
    };
    let mut ticks = u128::from(sums.ticks);
    if sums.trex_samples > 0 {
        let default = movie.trex.iter().find(|(id, _)| *id == track.id).map(|(_, d)| *d);
        let Some(default) = default.filter(|d| *d > 0) else {
            return Err(malformed(format!(
                "the fragments of track {} give no sample durations (no default in 'tfhd' or 'trex')",
                track.id
            )));
        };
        ticks = ticks.saturating_add(u128::from(sums.trex_samples) * u128::from(default));
    }
    Ok(ticks)
}

fn seconds(ticks: u128, timescale: u32) -> f64 {
    // Timescales of 0 are rejected while parsing; the guard keeps this total anyway.
    ticks as f64 / f64::from(timescale.max(1))
}
