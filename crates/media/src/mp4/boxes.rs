//! Reading boxes out of bytes: box headers and their sizes, the children of a buffered
//! container, the big-endian fields of a box payload, and the brands of the `ftyp`.

use super::{malformed, FORMAT};
use crate::MediaError;

/// The size field of a box header.
pub(super) enum BoxSize {
    Bytes(u64),
    /// Size 0: the box extends to the end of the file.
    ToEnd,
}

/// The size field of a box header of 8 bytes, or 16 when the 32-bit size is 1.
pub(super) fn read_box_size(header: &[u8]) -> BoxSize {
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

/// A box type for messages: printable ASCII as is, anything else as `?`.
pub(super) fn fourcc(kind: &[u8]) -> String {
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

/// Brands that make an ISO-BMFF file an MP4 (see the module documentation of `mp4`).
const MP4_BRANDS: &[&[u8; 4]] = &[
    b"isom", b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"msdh", b"msix", b"M4V ", b"M4VH", b"M4VP", b"f4v ", b"mmp4",
];

fn is_mp4_brand(brand: &[u8]) -> bool {
    let iso_n = brand.len() == 4 && brand.starts_with(b"iso") && (b'2'..=b'9').contains(&brand[3]);
    iso_n || MP4_BRANDS.iter().any(|b| b.as_slice() == brand)
}

/// Accepts an `ftyp` payload whose major or compatible brands include an MP4 brand.
pub(super) fn check_brands(payload: &[u8]) -> Result<(), MediaError> {
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
pub(super) struct Children<'a> {
    parent: &'static str,
    data: &'a [u8],
    pos: usize,
}

pub(super) fn children<'a>(parent: &'static str, data: &'a [u8]) -> Children<'a> {
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
pub(super) struct Fields<'a> {
    name: &'static str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn new(name: &'static str, data: &'a [u8]) -> Self {
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

    pub(super) fn skip(&mut self, n: usize) -> Result<(), MediaError> {
        self.take(n).map(|_| ())
    }

    pub(super) fn u32(&mut self) -> Result<u32, MediaError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, MediaError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A full box's version and 24-bit flags.
    pub(super) fn version_and_flags(&mut self) -> Result<(u8, u32), MediaError> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    /// A field that is 32 bits in version 0 and 64 bits in version 1.
    pub(super) fn u32_or_u64(&mut self, version: u8) -> Result<u64, MediaError> {
        if version == 1 {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    /// Skips the creation and modification times at the start of `mvhd`, `tkhd` and
    /// `mdhd`: 32 bits each in version 0, 64 bits each in version 1.
    pub(super) fn skip_times(&mut self, version: u8) -> Result<(), MediaError> {
        self.skip(if version == 1 { 16 } else { 8 })
    }

    pub(super) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// An all-ones duration means "unknown" (as written for fragmented movies): treat it as
/// absent, so the fragments decide.
pub(super) fn known_duration(duration: u64, version: u8) -> u64 {
    let unknown = if version == 1 { u64::MAX } else { u64::from(u32::MAX) };
    if duration == unknown {
        0
    } else {
        duration
    }
}
