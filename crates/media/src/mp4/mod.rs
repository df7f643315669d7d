//! Streaming ISO-BMFF (MP4) walk: checks the brand and the box structure and finds the
//! presentation duration, for `moov` before or after `mdat` and for fragmented files,
//! keeping only the movie header and one fragment header in memory.
//!
//! Why hand-written: `mp4parse` reads from a blocking `Read` (the pipeline feeds chunks
//! from an async stream), rejects a top-level `mdat` of size 0 and does not expose the
//! `mvhd` duration; the `mp4` crate needs `Read + Seek` and holds every fragment in
//! memory. The walk below skips `mdat` and unknown boxes by counting their bytes and
//! buffers only `ftyp`, `moov` and each `moof`, each under a cap.
//!
//! Choices where the standard leaves room:
//! - The `ftyp` must carry an MP4 brand, as major or compatible brand: `isom`,
//!   `iso2`..`iso9`, `mp41`, `mp42`, `mp71`, `avc1`, `dash`, `msdh`, `msix`, `M4V `,
//!   `M4VH`, `M4VP`, `f4v `, `mmp4`. A QuickTime file (`qt  ` only) or a HEIF/AVIF
//!   image is not an MP4 and is rejected as the wrong format.
//! - Duration of an unfragmented movie: the `mvhd` duration / timescale, or when that
//!   is zero the longest track (`mdhd` duration / track timescale).
//! - Duration of a fragmented movie (any `moof`): the longest of the `mvhd` duration,
//!   the `mehd` fragment duration (both over the movie timescale) and, for each track,
//!   its `mdhd` duration plus the durations of its samples in all fragments (`trun`
//!   per-sample durations, else the `tfhd` default, else the `trex` default) over the
//!   track's timescale. Not "mvhd when non-zero": ffmpeg's `frag_keyframe` without
//!   `empty_moov` writes the first fragment's 2 s in `mvhd` for a 10 s file. And not
//!   "mehd when present": it is a claim that the fragments can contradict, and the
//!   longest figure is the one that must be under the limit.
//! - Every figure only grows as boxes arrive, so a movie already over the limit is
//!   rejected at once, before the rest is downloaded.
//! - A movie for which all of these are zero is malformed: a zero-length video cannot
//!   be evidence, and it must not slip under the limit.
//! - A `moov` above 32 MiB or a `moof` above 16 MiB is rejected rather than buffered.

use crate::sniff::{describe, Prefix};
use crate::walk::Walker;
use crate::{Limits, MediaError};

const FORMAT: &str = "mp4";

const MAX_FTYP_BYTES: u64 = 4 * 1024;
const MAX_MOOV_BYTES: u64 = 32 * 1024 * 1024;
const MAX_MOOF_BYTES: u64 = 16 * 1024 * 1024;
/// More tracks than this in one movie is not a capture from a phone or a browser.
const MAX_TRACKS: usize = 64;

/// Brands that make an ISO-BMFF file an MP4 (see the module documentation).
const MP4_BRANDS: &[&[u8; 4]] = &[
    b"isom", b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"msdh", b"msix", b"M4V ", b"M4VH", b"M4VP", b"f4v ", b"mmp4",
];

fn is_mp4_brand(brand: &[u8]) -> bool {
    let iso_n = brand.len() == 4 && brand.starts_with(b"iso") && (b'2'..=b'9').contains(&brand[3]);
    iso_n || MP4_BRANDS.iter().any(|b| b.as_slice() == brand)
}

/// A top-level box whose payload is buffered and parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Ftyp,
    Moov,
    Moof,
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
    prefix: Prefix,
    state: State,
    /// Offset in the file of the next byte to be consumed.
    offset: u64,
    current: Option<BoxInfo>,
    seen_ftyp: bool,
    movie: Option<Movie>,
    fragments: Vec<FragmentTrack>,
}

/// What the `moov` box says about durations.
#[derive(Debug, Default)]
struct Movie {
    timescale: u32,
    duration: u64,
    fragment_duration: u64,
    /// Whether the movie has a `mvex`, so fragments may follow.
    fragmented: bool,
    tracks: Vec<Track>,
    /// (track_ID, default_sample_duration) from each `trex`.
    trex: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct Track {
    id: u32,
    timescale: u32,
    duration: u64,
}

/// The sample durations of one track, summed over all fragments seen so far.
#[derive(Debug, Default, Clone, Copy)]
struct FragmentTrack {
    id: u32,
    /// Durations given by `trun` or `tfhd`, in the track's timescale.
    ticks: u64,
    /// Samples whose duration is the `trex` default, resolved once the `moov` is known.
    trex_samples: u64,
}

impl Mp4Scanner {
    /// A scanner that rejects early, before the end of the file, when the movie header
    /// already says the video is longer than `limits.video_max_secs`.
    pub fn new(limits: &Limits) -> Self {
        Mp4Scanner {
            max_secs: limits.video_max_secs,
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
                        let cap = held_cap(held);
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
                let cap = held_cap(held);
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
        // Durations only grow as fragments arrive, so a movie already too long can be
        // rejected now, without reading (or downloading) the rest. Errors in working the
        // duration out are left for `finish`: a later box may still resolve them.
        if let Some(movie) = &self.movie {
            if let Ok(duration_secs) = self.duration() {
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
        }
        Ok(())
    }

    /// The presentation duration in seconds, by the rule of the module documentation.
    fn duration(&self) -> Result<f64, MediaError> {
        let Some(movie) = &self.movie else {
            return Err(truncated("the file has no movie box (moov)".to_string()));
        };
        let movie_secs = seconds(movie.duration, movie.timescale);
        if self.fragments.is_empty() && movie.duration > 0 {
            return Ok(movie_secs);
        }
        // A fragmented movie's `mvhd` covers only the samples in the `moov` itself
        // (ffmpeg's `frag_keyframe` writes 2 s there for a 10 s file), and `mehd` is a
        // claim the fragments may contradict: take the longest of all the figures.
        let mut longest = movie_secs.max(seconds(movie.fragment_duration, movie.timescale));
        for track in &movie.tracks {
            let mut ticks = track.duration;
            if let Some(fragments) = self.fragments.iter().find(|f| f.id == track.id) {
                ticks = ticks.saturating_add(fragments.ticks);
                if fragments.trex_samples > 0 {
                    let default = movie.trex.iter().find(|(id, _)| *id == track.id).map(|(_, d)| *d);
                    let Some(default) = default.filter(|d| *d > 0) else {
                        return Err(malformed(format!(
                            "the fragments of track {} give no sample durations (no default in 'tfhd' or 'trex')",
                            track.id
                        )));
                    };
                    ticks = ticks.saturating_add(fragments.trex_samples.saturating_mul(u64::from(default)));
                }
            }
            longest = longest.max(seconds(ticks, track.timescale));
        }
        if let Some(orphan) = self
            .fragments
            .iter()
            .find(|f| !movie.tracks.iter().any(|t| t.id == f.id))
        {
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

fn seconds(ticks: u64, timescale: u32) -> f64 {
    // Timescales of 0 are rejected while parsing; the guard keeps this total anyway.
    ticks as f64 / f64::from(timescale.max(1))
}

fn held_cap(held: Held) -> u64 {
    match held {
        Held::Ftyp => MAX_FTYP_BYTES,
        Held::Moov => MAX_MOOV_BYTES,
        Held::Moof => MAX_MOOF_BYTES,
    }
}

fn too_big_to_hold(held: Held, cap: u64) -> MediaError {
    let name = match held {
        Held::Ftyp => "ftyp",
        Held::Moov => "moov",
        Held::Moof => "moof",
    };
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

/// A box type for messages: printable ASCII as is, anything else as `?`.
fn fourcc(kind: &[u8]) -> String {
    kind.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

enum BoxSize {
    Bytes(u64),
    /// Size 0: the box extends to the end of the file.
    ToEnd,
}

/// The size field of a box header of 8 bytes, or 16 when the 32-bit size is 1.
fn read_box_size(header: &[u8]) -> BoxSize {
    let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    match size32 {
        0 => BoxSize::ToEnd,
        1 => BoxSize::Bytes(match header.get(8..16) {
            Some(large) => u64::from_be_bytes(large.try_into().unwrap_or([0; 8])),
            None => 0,
        }),
        size => BoxSize::Bytes(u64::from(size)),
    }
}

fn check_brands(payload: &[u8]) -> Result<(), MediaError> {
    if payload.len() < 8 {
        return Err(malformed(format!(
            "the file-type box (ftyp) has {} bytes, fewer than 8",
            payload.len()
        )));
    }
    // The major brand, then (after the 4-byte minor version) the compatible brands.
    let brands: Vec<&[u8]> = std::iter::once(&payload[..4]).chain(payload[8..].chunks(4)).collect();
    if brands.iter().any(|b| is_mp4_brand(b)) {
        return Ok(());
    }
    let mut names: Vec<String> = Vec::new();
    for brand in brands.iter().map(|b| format!("'{}'", fourcc(b))) {
        if !names.contains(&brand) && names.len() < 8 {
            names.push(brand);
        }
    }
    let what = if brands.iter().any(|b| *b == b"qt  ") {
        "a quicktime movie"
    } else {
        "an iso-bmff file"
    };
    Err(MediaError::WrongFormat {
        expected: FORMAT,
        found: format!("{what} with brands {}, none of them an mp4 brand", names.join(", ")),
    })
}

/// Child boxes of a buffered container payload, checked against the parent's bounds.
struct Children<'a> {
    parent: &'static str,
    data: &'a [u8],
    pos: usize,
}

fn children<'a>(parent: &'static str, data: &'a [u8]) -> Children<'a> {
    Children { parent, data, pos: 0 }
}

impl<'a> Iterator for Children<'a> {
    /// The child's type and payload.
    type Item = Result<([u8; 4], &'a [u8]), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        // QuickTime writers may end a container with a 32-bit zero terminator: a few
        // zero bytes too short to be a box are padding, anything else is damage.
        if rest.iter().all(|&b| b == 0) && rest.len() < 8 {
            return None;
        }
        let result = self.next_child(rest);
        if result.is_err() {
            self.pos = self.data.len();
        }
        Some(result)
    }
}

impl<'a> Children<'a> {
    fn next_child(&mut self, rest: &'a [u8]) -> Result<([u8; 4], &'a [u8]), MediaError> {
        let at = self.pos;
        let parent = self.parent;
        let Some(header) = rest.get(..8) else {
            return Err(malformed(format!(
                "{} stray bytes at the end of the '{parent}' box",
                rest.len()
            )));
        };
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let header_len: usize = if header[..4] == [0, 0, 0, 1] { 16 } else { 8 };
        let size = match rest.get(..header_len).map(read_box_size) {
            Some(BoxSize::Bytes(size)) => size,
            Some(BoxSize::ToEnd) => {
                return Err(malformed(format!(
                    "box '{}' inside '{parent}' declares size 0, which only a last top-level box may",
                    fourcc(&kind)
                )))
            }
            None => return Err(malformed(format!("the '{parent}' box ends inside a box header"))),
        };
        if size < header_len as u64 {
            return Err(malformed(format!(
                "box '{}' inside '{parent}' declares {size} bytes, less than its own {header_len}-byte header",
                fourcc(&kind)
            )));
        }
        if size > rest.len() as u64 {
            return Err(malformed(format!(
                "box '{}' at offset {at} of '{parent}' declares {size} bytes, but only {} remain in its parent",
                fourcc(&kind),
                rest.len()
            )));
        }
        // `size` fits in `rest`, so it fits in usize.
        let size = size as usize;
        self.pos = at + size;
        Ok((kind, &rest[header_len..size]))
    }
}

/// Reads big-endian fields from a box payload; running short is a malformed box.
struct Fields<'a> {
    name: &'static str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(name: &'static str, data: &'a [u8]) -> Self {
        Fields { name, data, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.data.len());
        let Some(end) = end else {
            return Err(malformed(format!(
                "the '{}' box is too short for its fields",
                self.name
            )));
        };
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), MediaError> {
        self.take(n).map(|_| ())
    }

    fn u32(&mut self) -> Result<u32, MediaError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, MediaError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A full box's version and 24-bit flags.
    fn version_and_flags(&mut self) -> Result<(u8, u32), MediaError> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    /// A field that is 32 bits in version 0 and 64 bits in version 1.
    fn u32_or_u64(&mut self, version: u8) -> Result<u64, MediaError> {
        if version == 1 {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// An all-ones duration means "unknown" (as written for fragmented movies): treat it as
/// absent, so the fragments decide.
fn known_duration(duration: u64, version: u8) -> u64 {
    let unknown = if version == 1 { u64::MAX } else { u64::from(u32::MAX) };
    if duration == unknown {
        0
    } else {
        duration
    }
}

fn parse_moov(payload: &[u8]) -> Result<Movie, MediaError> {
    let mut movie = Movie::default();
    let mut seen_mvhd = false;
    for child in children("moov", payload) {
        let (kind, body) = child?;
        match &kind {
            b"mvhd" => {
                let mut f = Fields::new("mvhd", body);
                let (version, _) = f.version_and_flags()?;
                f.skip(if version == 1 { 16 } else { 8 })?; // creation and modification times
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

fn parse_trak(payload: &[u8]) -> Result<Track, MediaError> {
    let mut id = None;
    let mut media = None;
    for child in children("trak", payload) {
        let (kind, body) = child?;
        match &kind {
            b"tkhd" => {
                let mut f = Fields::new("tkhd", body);
                let (version, _) = f.version_and_flags()?;
                f.skip(if version == 1 { 16 } else { 8 })?; // creation and modification times
                id = Some(f.u32()?);
            }
            b"mdia" => {
                for child in children("mdia", body) {
                    let (kind, body) = child?;
                    if &kind == b"mdhd" {
                        let mut f = Fields::new("mdhd", body);
                        let (version, _) = f.version_and_flags()?;
                        f.skip(if version == 1 { 16 } else { 8 })?;
                        let timescale = f.u32()?;
                        let duration = known_duration(f.u32_or_u64(version)?, version);
                        media = Some((timescale, duration));
                    }
                }
            }
            _ => {}
        }
    }
    let Some(id) = id else {
        return Err(malformed("a track (trak) without a track header (tkhd)".to_string()));
    };
    let Some((timescale, duration)) = media else {
        return Err(malformed(format!("track {id} has no media header (mdhd)")));
    };
    if timescale == 0 {
        return Err(malformed(format!("track {id} has a timescale of 0")));
    }
    Ok(Track {
        id,
        timescale,
        duration,
    })
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

/// Adds the sample durations of one movie fragment to the per-track sums.
fn parse_moof(payload: &[u8], fragments: &mut Vec<FragmentTrack>) -> Result<(), MediaError> {
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
