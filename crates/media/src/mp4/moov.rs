//! The movie box (`moov`): the movie header (`mvhd`), each track's header (`tkhd`),
//! media header (`mdhd`) and sample tables, and the fragment defaults of `mvex`.

use super::boxes::{children, known_duration, Fields};
use super::{malformed, tables};
use crate::MediaError;

/// More tracks than this in one movie is not a capture from a phone or a browser.
pub(super) const MAX_TRACKS: usize = 64;

/// What the `moov` box says about durations.
#[derive(Debug, Default)]
pub(super) struct Movie {
    /// The `mvhd` timescale, which `mvhd`, `mehd` and `tkhd` durations count in.
    pub(super) timescale: u32,
    /// The `mvhd` duration; 0 when absent or "unknown".
    pub(super) duration: u64,
    /// The `mehd` fragment duration; 0 when absent or "unknown".
    pub(super) fragment_duration: u64,
    /// Whether the movie has a `mvex`, so fragments may follow.
    pub(super) fragmented: bool,
    pub(super) tracks: Vec<Track>,
    /// (track_ID, default_sample_duration) from each `trex`.
    pub(super) trex: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Track {
    pub(super) id: u32,
    /// The `mdhd` timescale, which `duration` and `sample_ticks` count in.
    pub(super) timescale: u32,
    /// The `mdhd` duration; 0 when absent or "unknown".
    pub(super) duration: u64,
    /// The `tkhd` duration, in the movie's timescale; 0 when absent or "unknown".
    pub(super) header_duration: u64,
    /// The sum of the sample durations in the `stts` (see `tables`).
    pub(super) sample_ticks: u128,
}

pub(super) fn parse_moov(payload: &[u8]) -> Result<Movie, MediaError> {
    let mut movie = Movie::default();
    let mut seen_mvhd = false;
    for child in children("moov", payload) {
        let (kind, body) = child?;
        match &kind {
            b"mvhd" => {
                let mut f = Fields::new("mvhd", body);
                let (version, _) = f.version_and_flags()?;
                f.skip_times(version)?;
                movie.timescale = f.u32()?;
                movie.duration = known_duration(f.u32_or_u64(version)?, version);
                if movie.timescale == 0 {
                    return Err(malformed("the movie header (mvhd) has a timescale of 0".to_string()));
                }
                seen_mvhd = true;
            }
            b"trak" => {
                if movie.tracks.len() >= MAX_TRACKS {
                    return Err(malformed(format!("the movie has more than {MAX_TRACKS} tracks")));
                }
                movie.tracks.push(parse_trak(body)?);
            }
            b"mvex" => {
                movie.fragmented = true;
                parse_mvex(body, &mut movie)?;
            }
            _ => {}
        }
    }
    if !seen_mvhd {
        return Err(malformed("the movie box (moov) has no movie header (mvhd)".to_string()));
    }
    Ok(movie)
}

/// The figures of one track's media (`mdia`): (timescale, duration) from the `mdhd`,
/// and the summed sample durations of the sample tables.
struct Media {
    header: Option<(u32, u64)>,
    sample_ticks: u128,
}

fn parse_trak(payload: &[u8]) -> Result<Track, MediaError> {
    let mut header = None;
    // The `mdia` usually follows the `tkhd`; the sample tables are read once the track
    // ID is known, for messages that name the track.
    let mut mdia = None;
    for child in children("trak", payload) {
        let (kind, body) = child?;
        match &kind {
            b"tkhd" => {
                let mut f = Fields::new("tkhd", body);
                let (version, _) = f.version_and_flags()?;
                f.skip_times(version)?;
                let id = f.u32()?;
                f.skip(4)?; // reserved
                let duration = known_duration(f.u32_or_u64(version)?, version);
                header = Some((id, duration));
            }
            b"mdia" => mdia = Some(body),
            _ => {}
        }
    }
    let Some((id, header_duration)) = header else {
        return Err(malformed("a track (trak) without a track header (tkhd)".to_string()));
    };
    let media = match mdia {
        Some(body) => parse_mdia(id, body)?,
        None => Media {
            header: None,
            sample_ticks: 0,
        },
    };
    let Some((timescale, duration)) = media.header else {
        return Err(malformed(format!("track {id} has no media header (mdhd)")));
    };
    if timescale == 0 {
        return Err(malformed(format!("track {id} has a timescale of 0")));
    }
    Ok(Track {
        id,
        timescale,
        duration,
        header_duration,
        sample_ticks: media.sample_ticks,
    })
}

fn parse_mdia(id: u32, payload: &[u8]) -> Result<Media, MediaError> {
    let mut media = Media {
        header: None,
        sample_ticks: 0,
    };
    for child in children("mdia", payload) {
        let (kind, body) = child?;
        match &kind {
            b"mdhd" => {
                let mut f = Fields::new("mdhd", body);
                let (version, _) = f.version_and_flags()?;
                f.skip_times(version)?;
                let timescale = f.u32()?;
                let duration = known_duration(f.u32_or_u64(version)?, version);
                media.header = Some((timescale, duration));
            }
            b"minf" => media.sample_ticks = tables::sample_ticks(id, body)?,
            _ => {}
        }
    }
    Ok(media)
}

fn parse_mvex(payload: &[u8], movie: &mut Movie) -> Result<(), MediaError> {
    for child in children("mvex", payload) {
        let (kind, body) = child?;
        match &kind {
            b"mehd" => {
                let mut f = Fields::new("mehd", body);
                let (version, _) = f.version_and_flags()?;
                movie.fragment_duration = known_duration(f.u32_or_u64(version)?, version);
            }
            b"trex" => {
                let mut f = Fields::new("trex", body);
                f.version_and_flags()?;
                let track_id = f.u32()?;
                f.skip(4)?; // default_sample_description_index
                let default_duration = f.u32()?;
                if movie.trex.len() >= MAX_TRACKS {
                    return Err(malformed(format!(
                        "the movie has more than {MAX_TRACKS} track defaults (trex)"
                    )));
                }
                movie.trex.push((track_id, default_duration));
            }
            _ => {}
        }
    }
    Ok(())
}
