//! Streaming JPEG marker walk: checks the structure from SOI to EOI and reads the
//! dimensions from the frame header, without decoding and without buffering the file.
//!
//! Why hand-written: the `image` crate (and the decoders under it) wants the whole
//! header behind a `Read + Seek`, so it cannot be fed chunk by chunk as the bytes come
//! off the network, and reading only the headers it cannot tell a truncated file from a
//! whole one. The walk below is small: it keeps a few bytes of one segment header at a
//! time (at most [`HEAD_LEN`]), counts everything else, and never allocates.
//!
//! Choices where the JPEG standard leaves room:
//! - Bytes after EOI are tolerated and ignored: some cameras append data (MPF second
//!   images, vendor trailers), and the stored evidence must be the bytes as fetched.
//! - Any frame type is accepted (SOF0..SOF15 except DHT, JPG and DAC), including
//!   progressive and lossless; a second frame header is malformed (we would not know
//!   which dimensions to believe), as is a height of 0 (defined later by DNL).
//! - Bytes between segments must be markers (0xFF fill bytes allowed); libjpeg skips
//!   "extraneous bytes" there with a warning, we reject them as malformed.

use crate::sniff::{describe, Prefix};
use crate::walk::Walker;
use crate::{Dimensions, Limits, MediaError};

const FORMAT: &str = "jpeg";

/// The most bytes of a segment payload ever kept: a frame header's precision, height,
/// width and component count.
const HEAD_LEN: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Collecting the first bytes to decide whether this is a JPEG at all.
    Prefix,
    /// Between segments: the next byte must be 0xFF.
    Marker,
    /// After 0xFF between segments: the marker code follows (0xFF fill bytes allowed).
    MarkerCode,
    /// Reading the two-byte length of the segment whose marker is at byte `start`;
    /// `have` bytes of it are in `length`.
    Length {
        marker: u8,
        start: u64,
        have: u8,
        length: [u8; 2],
    },
    /// Inside a segment payload of `len` bytes, `read` of them consumed; the first
    /// [`HEAD_LEN`] are kept in `head`.
    Segment {
        marker: u8,
        start: u64,
        len: u16,
        read: u16,
        head: [u8; HEAD_LEN],
    },
    /// Inside entropy-coded scan data.
    Entropy,
    /// After 0xFF inside scan data.
    EntropyMarker,
    /// After EOI.
    Done,
}

/// Walks a JPEG fed in chunks of any size; see the module documentation.
#[derive(Debug)]
pub struct JpegScanner {
    prefix: Prefix,
    state: State,
    /// Offset in the file of the next byte to be consumed, for error messages.
    offset: u64,
    frame: Option<Dimensions>,
    seen_scan: bool,
}

impl JpegScanner {
    /// The scanner needs no limits: the dimensions are checked against them once known,
    /// by the caller; the parameter keeps the constructors of both scanners alike.
    pub fn new(_limits: &Limits) -> Self {
        JpegScanner {
            prefix: Prefix::default(),
            state: State::Prefix,
            offset: 0,
            frame: None,
            seen_scan: false,
        }
    }

    /// Consumes the next chunk. Fails as soon as the bytes cannot be a valid JPEG.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), MediaError> {
        self.feed_chunk(chunk)
    }

    /// Ends the input: the frame dimensions if the file was a complete JPEG.
    pub fn finish(mut self) -> Result<Dimensions, MediaError> {
        self.start_if_still_collecting()?;
        let detail = match (self.state, self.frame) {
            (State::Done, Some(dims)) => return Ok(dims),
            (_, None) => "the file ends before the frame header",
            (State::Entropy | State::EntropyMarker, Some(_)) => {
                "the file ends inside the scan data, without an end-of-image marker"
            }
            (State::Segment { .. } | State::Length { .. }, Some(_)) => "the file ends inside a segment",
            _ => "the file ends without an end-of-image marker",
        };
        Err(MediaError::Truncated {
            format: FORMAT,
            detail: detail.to_string(),
        })
    }

    /// Checks the collected prefix for SOI, then walks the rest of it.
    fn judge_prefix(&mut self) -> Result<(), MediaError> {
        let mut prefix = Prefix::default();
        std::mem::swap(&mut prefix, &mut self.prefix);
        let head = prefix.as_slice();
        // A prefix cut short by the end of the file is judged on what there is: a lone
        // 0xFF could still have been a JPEG, so it is truncated rather than wrong.
        let is_jpeg = head.starts_with(&[0xFF, 0xD8]) || head == [0xFF];
        if !is_jpeg {
            return Err(MediaError::WrongFormat {
                expected: FORMAT,
                found: describe(head),
            });
        }
        self.state = State::Marker;
        self.offset = 2.min(head.len() as u64);
        self.walk(head.get(2..).unwrap_or_default())
    }

    /// One step of the walk: see [`Walker::step`].
    fn step_state(&mut self, bytes: &[u8]) -> Result<usize, MediaError> {
        let byte = bytes[0];
        match self.state {
            State::Prefix => unreachable_state(),
            State::Marker => {
                if byte != 0xFF {
                    return Err(self.malformed(format!("expected a marker, found byte 0x{byte:02x}")));
                }
                self.state = State::MarkerCode;
                Ok(1)
            }
            State::MarkerCode => {
                self.on_marker(byte)?;
                Ok(1)
            }
            State::Length {
                marker,
                start,
                have,
                mut length,
            } => {
                length[usize::from(have)] = byte;
                if have == 0 {
                    self.state = State::Length {
                        marker,
                        start,
                        have: 1,
                        length,
                    };
                    return Ok(1);
                }
                let total = u16::from_be_bytes(length);
                if total < 2 {
                    return Err(self.malformed(format!("segment 0x{marker:02x} declares a length of {total}")));
                }
                self.state = State::Segment {
                    marker,
                    start,
                    len: total - 2,
                    read: 0,
                    head: [0; HEAD_LEN],
                };
                self.end_segment_if_complete()?;
                Ok(1)
            }
            State::Segment {
                marker,
                start,
                len,
                read,
                mut head,
            } => {
                let remaining = usize::from(len - read);
                let take = remaining.min(bytes.len());
                let read_usize = usize::from(read);
                if read_usize < HEAD_LEN {
                    let keep = take.min(HEAD_LEN - read_usize);
                    head[read_usize..read_usize + keep].copy_from_slice(&bytes[..keep]);
                }
                // `take` is at most `len - read`, so this stays within u16.
                let read = read + take as u16;
                self.state = State::Segment {
                    marker,
                    start,
                    len,
                    read,
                    head,
                };
                self.end_segment_if_complete()?;
                Ok(take)
            }
            State::Entropy => match bytes.iter().position(|&b| b == 0xFF) {
                Some(at) => {
                    self.state = State::EntropyMarker;
                    Ok(at + 1)
                }
                None => Ok(bytes.len()),
            },
            State::EntropyMarker => {
                match byte {
                    // Stuffed 0xFF data byte, or a restart marker: the scan goes on.
                    0x00 | 0xD0..=0xD7 => self.state = State::Entropy,
                    // Fill byte before a marker.
                    0xFF => {}
                    _ => self.on_marker(byte)?,
                }
                Ok(1)
            }
            // Trailing bytes after EOI are tolerated (see the module documentation).
            State::Done => Ok(bytes.len()),
        }
    }

    /// Handles the marker code that followed 0xFF, outside or at the end of scan data.
    fn on_marker(&mut self, code: u8) -> Result<(), MediaError> {
        self.state = match code {
            0xFF => State::MarkerCode,
            0x00 => return Err(self.malformed("stuffed byte 0xff00 outside scan data".to_string())),
            0xD8 => return Err(self.malformed("a second start-of-image marker".to_string())),
            0xD9 => {
                if self.frame.is_none() {
                    return Err(self.malformed("end-of-image marker before the frame header".to_string()));
                }
                if !self.seen_scan {
                    return Err(self.malformed("end-of-image marker before any scan".to_string()));
                }
                State::Done
            }
            // TEM and restart markers stand alone, without a length.
            0x01 | 0xD0..=0xD7 => State::Marker,
            // The offset is that of the code; the segment starts at the 0xFF before it.
            marker => State::Length {
                marker,
                start: self.offset.saturating_sub(1),
                have: 0,
                length: [0; 2],
            },
        };
        Ok(())
    }

    /// When the current segment's payload has been read, acts on its header.
    fn end_segment_if_complete(&mut self) -> Result<(), MediaError> {
        let State::Segment {
            marker,
            start,
            len,
            read,
            head,
        } = self.state
        else {
            return Ok(());
        };
        if read < len {
            return Ok(());
        }
        self.state = State::Marker;
        let head = &head[..usize::from(len).min(HEAD_LEN)];
        // Errors name the segment's start: where the segment's end falls in a chunk
        // depends on how the file was cut, and the verdict must not.
        if is_frame_header(marker) {
            self.on_frame_header(start, marker, len, head)?;
        } else if marker == 0xDA {
            self.on_scan_header(start, len, head)?;
            self.state = State::Entropy;
        }
        Ok(())
    }

    fn on_frame_header(&mut self, start: u64, marker: u8, len: u16, head: &[u8]) -> Result<(), MediaError> {
        if self.frame.is_some() {
            return Err(malformed_at(start, "a second frame header".to_string()));
        }
        let &[_precision, h1, h0, w1, w0, components] = head else {
            return Err(malformed_at(
                start,
                format!("frame header 0xff{marker:02x} is only {len} bytes long"),
            ));
        };
        let height = u16::from_be_bytes([h1, h0]);
        let width = u16::from_be_bytes([w1, w0]);
        if height == 0 {
            return Err(malformed_at(
                start,
                "frame height 0 (set later by a DNL marker) is not supported".to_string(),
            ));
        }
        if width == 0 {
            return Err(malformed_at(start, "frame width 0".to_string()));
        }
        let needed = 6 + 3 * u16::from(components);
        if components == 0 || len < needed {
            return Err(malformed_at(
                start,
                format!("frame header of {len} bytes for {components} components"),
            ));
        }
        self.frame = Some(Dimensions {
            width: u32::from(width),
            height: u32::from(height),
        });
        Ok(())
    }

    fn on_scan_header(&mut self, start: u64, len: u16, head: &[u8]) -> Result<(), MediaError> {
        if self.frame.is_none() {
            return Err(malformed_at(start, "scan before the frame header".to_string()));
        }
        let components = head.first().copied().unwrap_or(0);
        let needed = 1 + 2 * u16::from(components) + 3;
        if !(1..=4).contains(&components) || len < needed {
            return Err(malformed_at(
                start,
                format!("scan header of {len} bytes for {components} components"),
            ));
        }
        self.seen_scan = true;
        Ok(())
    }

    fn malformed(&self, what: String) -> MediaError {
        malformed_at(self.offset, what)
    }
}

impl Walker for JpegScanner {
    fn collecting(&mut self) -> Option<&mut Prefix> {
        (self.state == State::Prefix).then_some(&mut self.prefix)
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

fn malformed_at(offset: u64, what: String) -> MediaError {
    MediaError::Malformed {
        format: FORMAT,
        detail: format!("{what} at byte {offset}"),
    }
}

/// SOF0..SOF15, except the codes in that range that are not frame headers:
/// DHT (0xC4), JPG (0xC8) and DAC (0xCC).
fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// `step` is only called after `start` has left the prefix state.
fn unreachable_state() -> Result<usize, MediaError> {
    Err(MediaError::Malformed {
        format: FORMAT,
        detail: "internal: scanner used before its start".to_string(),
    })
}
