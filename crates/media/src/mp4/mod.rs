//! Streaming ISO-BMFF (MP4) walk: checks the brand and the box structure and finds the
//! presentation duration, for `moov` before or after `mdat` and for fragmented files,
//! keeping only the movie header and one fragment header in memory.
//!
//! Why hand-written: `mp4parse` reads from a blocking `Read` (the pipeline feeds chunks
//! from an async stream), rejects a top-level `mdat` of size 0 and does not expose the
//! `mvhd` duration; the `mp4` crate needs `Read + Seek` and holds every fragment in
//! memory. The walk below skips `mdat` and unknown boxes by counting their bytes and
//! buffers only `ftyp`, `moov` and each `moof`, each under a cap (see `caps`).
//!
//! Choices where the standard leaves room:
//! - The `ftyp` must carry an MP4 brand, as major or compatible brand: `isom`,
//!   `iso2`..`iso9`, `mp41`, `mp42`, `mp71`, `avc1`, `dash`, `msdh`, `msix`, `M4V `,
//!   `M4VH`, `M4VP`, `f4v `, `mmp4`. A QuickTime file (`qt  ` only) or a HEIF/AVIF
//!   image is not an MP4 and is rejected as the wrong format.
//! - Header durations are claims; the sample tables are what a player plays. Each
//!   track's media lasts the sum of its `stts` sample durations over its `mdhd`
//!   timescale. A movie without fragments whose `mvhd` duration differs from its
//!   longest track's by more than 0.5 s, or one of whose tracks has a `tkhd` or `mdhd`
//!   duration that differs from its own by more than 0.5 s, is malformed (issue 13: a
//!   30 s capture with all three headers rewritten to 10 s). The tolerance lets
//!   through the few milliseconds by which audio legitimately outruns video. Edit lists
//!   (`elst`) are not applied: a movie whose edits cut or stretch it by more than 0.5 s
//!   is rejected too, which a raw capture never needs. A zero `mvhd` or `tkhd`
//!   duration is no claim; a zero `mdhd` is one. The `stts` must time exactly the
//!   samples the `stsz` lists (see `tables`).
//! - Duration of an unfragmented movie, once its headers agree with its samples: the
//!   `mvhd` duration / timescale, or when that is zero the longest track (its `mdhd`
//!   duration or its samples, whichever is longer, over the track timescale).
//! - Duration of a fragmented movie (any `moof`): the longest of the `mvhd` duration,
//!   the `mehd` fragment duration (both over the movie timescale) and, for each track,
//!   its `mdhd` duration (or its `stts` sum if longer) plus the durations of its
//!   samples in all fragments (`trun` per-sample durations, else the `tfhd` default,
//!   else the `trex` default) over the track's timescale. Not "mvhd when non-zero":
//!   ffmpeg's `frag_keyframe` without `empty_moov` writes the first fragment's 2 s in
//!   `mvhd` for a 10 s file. And not "mehd when present": it is a claim that the
//!   fragments can contradict, and the longest figure is the one that must be under
//!   the limit. At the end of the file, a `mehd` more than 0.5 s from the longest
//!   track's samples (in the `moov` and the fragments) is malformed; `mvhd`, `tkhd` and
//!   `mdhd` are not checked there, as writers disagree on whether they cover the
//!   fragments.
//! - Every figure only grows as boxes arrive, so a movie already over the limit is
//!   rejected at once, before the rest is downloaded; so is a movie without `mvex`
//!   whose headers disagree with its samples, as nothing can follow to change them.
//! - A movie for which all of these are zero is malformed: a zero-length video cannot
//!   be evidence, and it must not slip under the limit.

mod boxes;
mod caps;
mod duration;
mod fragments;
mod moov;
mod tables;

use boxes::{check_brands, fourcc, read_box_size, BoxSize};
use fragments::{parse_moof, FragmentTrack};
use moov::{parse_moov, Movie};

use crate::sniff::{describe, Prefix};
use crate::walk::Walker;
use crate::{Limits, MediaError};

const FORMAT: &str = "mp4";

/// A top-level box whose payload is buffered and parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Ftyp,
    Moov,
    Moof,
}

impl Held {
    fn name(self) -> &'static str {
        match self {
            Held::Ftyp => "ftyp",
            Held::Moov => "moov",
            Held::Moof => "moof",
        }
    }
}

#[derive(Debug)]
enum State {
    /// Collecting the first bytes to decide whether this is an ISO-BMFF file at all.
    Prefix,
    /// Reading a top-level box header; `have` bytes of it are in `buf`.
    Header { buf: [u8; 16], have: usize },
    /// Counting past the rest of a box we do not need.
    Skip { remaining: u64 },
    /// Counting past a last box of size 0, which extends to the end of the file.
    SkipToEnd,
    /// Collecting a box payload; `remaining` is `None` for a box of size 0.
    Hold {
        held: Held,
        remaining: Option<u64>,
        buf: Vec<u8>,
    },
}

/// What the current top-level box is, for messages about a file that ends inside it.
#[derive(Debug, Clone, Copy)]
struct BoxInfo {
    kind: [u8; 4],
    start: u64,
    size: u64,
}

/// Walks an MP4 fed in chunks of any size; see the module documentation.
#[derive(Debug)]
pub struct Mp4Scanner {
    max_secs: f64,
    /// How many bytes of each held box this scanner buffers (see `caps`).
    caps: caps::Caps,
    prefix: Prefix,
    state: State,
    /// Offset in the file of the next byte to be consumed.
    offset: u64,
    current: Option<BoxInfo>,
    seen_ftyp: bool,
    movie: Option<Movie>,
    fragments: Vec<FragmentTrack>,
}

impl Mp4Scanner {
    /// A scanner that rejects early, before the end of the file, when the movie header
    /// already says the video is longer than `limits.video_max_secs`.
    pub fn new(limits: &Limits) -> Self {
        Mp4Scanner {
            max_secs: limits.video_max_secs,
            caps: caps::Caps::for_limits(limits),
            prefix: Prefix::default(),
            state: State::Prefix,
            offset: 0,
            current: None,
            seen_ftyp: false,
            movie: None,
            fragments: Vec::new(),
        }
    }

    /// Consumes the next chunk. Fails as soon as the bytes cannot be a valid MP4 within
    /// the limit.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), MediaError> {
        self.feed_chunk(chunk)
    }

    /// Ends the input: the duration in seconds if the file was a complete MP4.
    pub fn finish(mut self) -> Result<f64, MediaError> {
        self.start_if_still_collecting()?;
        match std::mem::replace(&mut self.state, State::SkipToEnd) {
            State::Header { have: 0, .. } | State::SkipToEnd => {}
            State::Hold {
                held,
                remaining: None,
                buf,
            } => self.parse_held(held, &buf)?,
            State::Header { .. } => {
                return Err(truncated(format!(
                    "the file ends inside a box header at byte {}",
                    self.offset
                )));
            }
            State::Skip { .. } | State::Hold { .. } | State::Prefix => {
                let detail = match self.current {
                    Some(info) => format!(
                        "the file ends inside the '{}' box at byte {} ({} of its {} bytes missing)",
                        fourcc(&info.kind),
                        info.start,
                        info.start.saturating_add(info.size).saturating_sub(self.offset),
                        info.size
                    ),
                    None => "the file ends inside a box".to_string(),
                };
                return Err(truncated(detail));
            }
        }
        if !self.seen_ftyp {
            return Err(truncated("the file ends before its file-type box (ftyp)".to_string()));
        }
        self.duration()
    }

    /// Checks the collected prefix for a leading `ftyp`, then walks it.
    fn judge_prefix(&mut self) -> Result<(), MediaError> {
        let prefix = std::mem::take(&mut self.prefix);
        let head = prefix.as_slice();
        // A prefix cut short by the end of the file is judged on what there is.
        let kind = head.get(4..).unwrap_or_default();
        let looks_right = b"ftyp".starts_with(&kind[..kind.len().min(4)]);
        if !looks_right {
            return Err(MediaError::WrongFormat {
                expected: FORMAT,
                found: describe(head),
            });
        }
        self.state = State::Header { buf: [0; 16], have: 0 };
        self.walk(head)
    }

    /// One step of the walk: see [`Walker::step`].
    fn step_state(&mut self, bytes: &[u8]) -> Result<usize, MediaError> {
        match &mut self.state {
            State::Prefix => Err(malformed("internal: scanner used before its start".to_string())),
            State::Header { buf, have } => {
                let header_start = self.offset.saturating_sub(*have as u64);
                let want = if *have >= 4 && buf[..4] == [0, 0, 0, 1] { 16 } else { 8 };
                let take = (want - *have).min(bytes.len());
                buf[*have..*have + take].copy_from_slice(&bytes[..take]);
                *have += take;
                let (buf, have) = (*buf, *have);
                // A size of 1 means a 64-bit size follows the type: read 8 more bytes.
                let needs_largesize = have == 8 && buf[..4] == [0, 0, 0, 1];
                if have < want || needs_largesize {
                    return Ok(take);
                }
                self.on_header(header_start, &buf[..have])?;
                Ok(take)
            }
            State::Skip { remaining } => {
                let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(bytes.len());
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.state = State::Header { buf: [0; 16], have: 0 };
                }
                Ok(take)
            }
            State::SkipToEnd => Ok(bytes.len()),
            State::Hold { held, remaining, buf } => {
                let held = *held;
                let take = match remaining {
                    Some(left) => usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len()),
                    None => {
                        let cap = self.caps.bytes(held);
                        if (buf.len() as u64).saturating_add(bytes.len() as u64) > cap {
                            return Err(too_big_to_hold(held, cap));
                        }
                        bytes.len()
                    }
                };
                buf.extend_from_slice(&bytes[..take]);
                if let Some(left) = remaining {
                    *left -= take as u64;
                    if *left == 0 {
                        let buf = std::mem::take(buf);
                        self.state = State::Header { buf: [0; 16], have: 0 };
                        self.parse_held(held, &buf)?;
                    }
                }
                Ok(take)
            }
        }
    }

    /// Acts on a complete top-level box header that starts at byte `start`.
    fn on_header(&mut self, start: u64, header: &[u8]) -> Result<(), MediaError> {
        let header_len = header.len() as u64;
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let size = match read_box_size(header) {
            BoxSize::ToEnd => None,
            BoxSize::Bytes(size) if size < header_len => {
                return Err(malformed(format!(
                    "box '{}' at byte {start} declares {size} bytes, less than its own {header_len}-byte header",
                    fourcc(&kind)
                )));
            }
            BoxSize::Bytes(size) => Some(size),
        };
        self.current = Some(BoxInfo {
            kind,
            start,
            size: size.unwrap_or(0),
        });
        let payload = size.map(|s| s - header_len);
        let held = match &kind {
            b"ftyp" if !self.seen_ftyp => Some(Held::Ftyp),
            b"moov" if self.movie.is_some() => return Err(malformed(format!("a second 'moov' box at byte {start}"))),
            b"moov" => Some(Held::Moov),
            b"moof" => Some(Held::Moof),
            _ if !self.seen_ftyp => {
                return Err(MediaError::WrongFormat {
                    expected: FORMAT,
                    found: format!("its first box is '{}', not a file-type box (ftyp)", fourcc(&kind)),
                })
            }
            _ => None,
        };
        self.state = match (held, payload) {
            (None, None) => State::SkipToEnd,
            (None, Some(remaining)) => State::Skip { remaining },
            (Some(held), payload) => {
                let cap = self.caps.bytes(held);
                if payload.is_some_and(|p| p > cap) {
                    return Err(too_big_to_hold(held, cap));
                }
                State::Hold {
                    held,
                    remaining: payload,
                    buf: Vec::new(),
                }
            }
        };
        match (&self.state, payload) {
            (State::Skip { .. }, Some(0)) => self.state = State::Header { buf: [0; 16], have: 0 },
            (State::Hold { held, .. }, Some(0)) => {
                let held = *held;
                self.state = State::Header { buf: [0; 16], have: 0 };
                self.parse_held(held, &[])?;
            }
            _ => {}
        }
        Ok(())
    }

    fn parse_held(&mut self, held: Held, payload: &[u8]) -> Result<(), MediaError> {
        match held {
            Held::Ftyp => {
                check_brands(payload)?;
                self.seen_ftyp = true;
                return Ok(());
            }
            Held::Moov => self.movie = Some(parse_moov(payload)?),
            Held::Moof => parse_moof(payload, &mut self.fragments)?,
        }
        let Some(movie) = &self.movie else {
            return Ok(());
        };
        // Without `mvex` no fragment can follow (a stray one is only ever added to the
        // samples), so what the headers claim can be held to the samples now.
        if !movie.fragmented && self.fragments.is_empty() {
            duration::check_headers(movie, &self.fragments)?;
        }
        // Durations only grow as fragments arrive, so a movie already too long can be
        // rejected now, without reading (or downloading) the rest. Errors in working the
        // duration out are left for `finish`: a later box may still resolve them.
        if let Ok(duration_secs) = duration::duration(movie, &self.fragments) {
            if duration_secs > self.max_secs + crate::limits::DURATION_TOLERANCE_SECS {
                let max_secs = self.max_secs;
                // Without fragments the figure is final; with them, later ones add to it.
                return Err(if movie.fragmented || !self.fragments.is_empty() {
                    MediaError::TooLongSoFar {
                        duration_secs,
                        max_secs,
                    }
                } else {
                    MediaError::TooLong {
                        duration_secs,
                        max_secs,
                    }
                });
            }
        }
        Ok(())
    }

    /// At the end of the file: the headers checked against the samples, then the
    /// presentation duration in seconds, by the rules of the module documentation.
    fn duration(&self) -> Result<f64, MediaError> {
        let Some(movie) = &self.movie else {
            return Err(truncated("the file has no movie box (moov)".to_string()));
        };
        duration::check_headers(movie, &self.fragments)?;
        duration::duration(movie, &self.fragments)
    }
}

impl Walker for Mp4Scanner {
    fn collecting(&mut self) -> Option<&mut Prefix> {
        matches!(self.state, State::Prefix).then_some(&mut self.prefix)
    }

    fn start(&mut self) -> Result<(), MediaError> {
        self.judge_prefix()
    }

    fn step(&mut self, bytes: &[u8]) -> Result<usize, MediaError> {
        self.step_state(bytes)
    }

    fn offset_mut(&mut self) -> &mut u64 {
        &mut self.offset
    }
}

fn too_big_to_hold(held: Held, cap: u64) -> MediaError {
    let name = held.name();
    malformed(format!(
        "the '{name}' box is larger than the {cap} bytes this check reads"
    ))
}

fn malformed(detail: String) -> MediaError {
    MediaError::Malformed { format: FORMAT, detail }
}

fn truncated(detail: String) -> MediaError {
    MediaError::Truncated { format: FORMAT, detail }
}
