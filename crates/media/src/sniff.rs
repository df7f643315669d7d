//! Names what a file looks like from its first bytes, so that a rejection can say
//! "not a jpeg: looks like png" instead of only "not a jpeg".

/// How many leading bytes [`sniff`] looks at; the scanners collect this many before
/// deciding whether the format is the one they need.
pub(crate) const SNIFF_LEN: usize = 16;

/// A short description of the format the leading bytes of a file suggest: `jpeg`, `png`,
/// `webp`, `gif`, `mp4/iso-bmff`, `quicktime`, `webm/matroska`, `pdf`, `empty` or `unknown`.
/// Only the first 16 bytes matter.
pub fn sniff(bytes: &[u8]) -> &'static str {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if bytes.is_empty() {
        "empty"
    } else if at(0, &[0xFF, 0xD8, 0xFF]) {
        "jpeg"
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "webp"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "gif"
    } else if at(4, b"ftyp") {
        "mp4/iso-bmff"
    } else if [b"moov", b"mdat", b"wide", b"free", b"skip"].iter().any(|t| at(4, *t)) {
        // Old QuickTime files start with a movie box and no `ftyp`.
        "quicktime"
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        "webm/matroska"
    } else if at(0, b"%PDF-") {
        "pdf"
    } else {
        "unknown"
    }
}

/// The `found` text of a `WrongFormat` error for these leading bytes.
pub(crate) fn describe(bytes: &[u8]) -> String {
    match sniff(bytes) {
        "unknown" => {
            let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("unrecognised bytes (starting {})", head.join(" "))
        }
        what => format!("looks like {what}"),
    }
}

/// The first [`SNIFF_LEN`] bytes of a stream, collected across chunks of any size.
#[derive(Debug, Default)]
pub(crate) struct Prefix {
    bytes: [u8; SNIFF_LEN],
    len: usize,
}

impl Prefix {
    /// Takes as many bytes from `chunk` as the prefix still misses; returns how many.
    pub(crate) fn fill(&mut self, chunk: &[u8]) -> usize {
        let take = (SNIFF_LEN - self.len).min(chunk.len());
        self.bytes[self.len..self.len + take].copy_from_slice(&chunk[..take]);
        self.len += take;
        take
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == SNIFF_LEN
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_formats() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"\xFF\xD8\xFF\xE0\x00\x10JFIF", "jpeg"),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "png"),
            (b"RIFF\x10\0\0\0WEBPVP8 ", "webp"),
            (b"GIF89a\x01\0\x01\0", "gif"),
            (b"\0\0\0\x20ftypisom\0\0\x02\0", "mp4/iso-bmff"),
            (b"\0\0\0\x08wide\0\0\0\0mdat", "quicktime"),
            (b"\x1A\x45\xDF\xA3\x9f\x42\x86\x81", "webm/matroska"),
            (b"%PDF-1.7\n", "pdf"),
            (b"hello world", "unknown"),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes), *want, "{bytes:?}");
        }
        assert_eq!(
            describe(b"\x01\x02\x03\x04\x05"),
            "unrecognised bytes (starting 01 02 03 04)"
        );
        assert_eq!(describe(b"%PDF-1.7"), "looks like pdf");
    }
}
