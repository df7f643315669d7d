//! JPEG edge cases built byte by byte: marker structure, frame types, and the limits
//! at one pixel either side.

use media::{Limits, MediaKind};

use crate::support::{run_table, Expect};

/// A segment: 0xFF, the marker code, a two-byte length, the payload.
fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 2).expect("segment length");
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame header (SOFn) for `components` components.
fn frame(marker: u8, width: u16, height: u16, components: u8) -> Vec<u8> {
    let mut payload = vec![8];
    payload.extend_from_slice(&height.to_be_bytes());
    payload.extend_from_slice(&width.to_be_bytes());
    payload.push(components);
    for id in 1..=components {
        payload.extend_from_slice(&[id, 0x11, 0]);
    }
    segment(marker, &payload)
}

/// A scan header for `components` components, then entropy-coded bytes with a stuffed
/// 0xFF00, a restart marker and fill bytes.
fn scan(components: u8) -> Vec<u8> {
    let mut payload = vec![components];
    for id in 1..=components {
        payload.extend_from_slice(&[id, 0x00]);
    }
    payload.extend_from_slice(&[0, 63, 0]);
    let mut out = segment(0xDA, &payload);
    out.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD0, 0x78, 0x9A, 0xFF, 0xFF]);
    out
}

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

fn app0() -> Vec<u8> {
    segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
}

/// SOI, APP0, DQT, the given middle, EOI.
fn jpeg(middle: &[Vec<u8>]) -> Vec<u8> {
    let mut out = SOI.to_vec();
    out.extend(app0());
    out.extend(segment(0xDB, &[0; 65]));
    for part in middle {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&EOI);
    out
}

/// A baseline image of this size: frame, Huffman table, one scan.
fn baseline(width: u16, height: u16) -> Vec<u8> {
    jpeg(&[frame(0xC0, width, height, 3), segment(0xC4, &[0; 20]), scan(3)])
}

fn without_eoi(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 2);
    bytes
}

#[test]
fn source_images_at_and_beyond_the_bound_in_both_orientations() {
    run_table(
        MediaKind::Source,
        &Limits::default(),
        &[
            ("1920x1080", baseline(1920, 1080), Expect::Dims(1920, 1080)),
            ("1080x1920", baseline(1080, 1920), Expect::Dims(1080, 1920)),
            (
                "1921x1080",
                baseline(1921, 1080),
                Expect::Reject("1921x1080 exceeds the maximum of 1920x1080"),
            ),
            (
                "1920x1081",
                baseline(1920, 1081),
                Expect::Reject("1920x1081 exceeds the maximum of 1920x1080"),
            ),
            ("1081x1920", baseline(1081, 1920), Expect::Reject("1081x1920 exceeds")),
            ("1080x1921", baseline(1080, 1921), Expect::Reject("1080x1921 exceeds")),
            ("1x1", baseline(1, 1), Expect::Dims(1, 1)),
            (
                "65535x65535",
                baseline(65535, 65535),
                Expect::Reject("65535x65535 exceeds the maximum of 1920x1080"),
            ),
        ],
    );
}

#[test]
fn target_images_at_and_below_the_minimum_in_both_orientations() {
    run_table(
        MediaKind::Target,
        &Limits::default(),
        &[
            ("1280x720", baseline(1280, 720), Expect::Dims(1280, 720)),
            ("720x1280", baseline(720, 1280), Expect::Dims(720, 1280)),
            (
                "1280x719",
                baseline(1280, 719),
                Expect::Reject("short side 719 is below 720"),
            ),
            (
                "719x1280",
                baseline(719, 1280),
                Expect::Reject("short side 719 is below 720"),
            ),
            ("16384x16384", baseline(16384, 16384), Expect::Dims(16384, 16384)),
            (
                "16385x720",
                baseline(16385, 720),
                Expect::Reject("16385x720 exceeds the maximum of 16384x16384"),
            ),
            (
                "65535x65535",
                baseline(65535, 65535),
                Expect::Reject("65535x65535 exceeds the maximum of 16384x16384"),
            ),
        ],
    );
}

#[test]
fn configured_limits_replace_the_defaults() {
    let limits = Limits {
        source_max: "800x600".parse().expect("dims"),
        target_min_short_side: 1080,
        video_max_secs: 15.0,
    };
    run_table(
        MediaKind::Source,
        &limits,
        &[
            ("600x800", baseline(600, 800), Expect::Dims(600, 800)),
            (
                "801x600",
                baseline(801, 600),
                Expect::Reject("801x600 exceeds the maximum of 800x600"),
            ),
        ],
    );
    run_table(
        MediaKind::Target,
        &limits,
        &[
            ("1920x1080", baseline(1920, 1080), Expect::Dims(1920, 1080)),
            (
                "1280x720",
                baseline(1280, 720),
                Expect::Reject("short side 720 is below 1080"),
            ),
        ],
    );
}

#[test]
fn structure_of_the_marker_stream() {
    let progressive = jpeg(&[
        frame(0xC2, 640, 480, 3),
        segment(0xC4, &[0; 20]),
        scan(1),
        segment(0xC4, &[0; 20]),
        scan(3),
        segment(0xDD, &[0, 4]), // DRI between scans
        scan(1),
    ]);
    let mut trailing = baseline(640, 480);
    trailing.extend_from_slice(b"camera trailer \xFF\xD8 with markers");
    let mut fill_bytes = SOI.to_vec();
    fill_bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    fill_bytes.extend(&baseline(640, 480)[3..]);
    let dht_first = jpeg(&[
        segment(0xC4, &[0; 20]),
        segment(0xCC, &[0; 2]),
        frame(0xC1, 640, 480, 1),
        scan(1),
    ]);
    let cases = vec![
        ("baseline", baseline(640, 480), Expect::Dims(640, 480)),
        (
            "progressive with several scans and tables between them",
            progressive,
            Expect::Dims(640, 480),
        ),
        (
            "extended",
            jpeg(&[frame(0xC1, 640, 480, 3), scan(3)]),
            Expect::Dims(640, 480),
        ),
        (
            "lossless",
            jpeg(&[frame(0xC3, 640, 480, 3), scan(3)]),
            Expect::Dims(640, 480),
        ),
        (
            "arithmetic progressive",
            jpeg(&[frame(0xCA, 640, 480, 3), scan(3)]),
            Expect::Dims(640, 480),
        ),
        (
            "cmyk, four components",
            jpeg(&[frame(0xC0, 640, 480, 4), scan(4)]),
            Expect::Dims(640, 480),
        ),
        (
            "grayscale, one component",
            jpeg(&[frame(0xC0, 640, 480, 1), scan(1)]),
            Expect::Dims(640, 480),
        ),
        ("DHT and DAC are not frame headers", dht_first, Expect::Dims(640, 480)),
        ("bytes after the end-of-image marker", trailing, Expect::Dims(640, 480)),
        ("fill bytes before a marker", fill_bytes, Expect::Dims(640, 480)),
        (
            "a comment and a standalone restart marker",
            jpeg(&[segment(0xFE, b"hi"), vec![0xFF, 0xD3], frame(0xC0, 64, 64, 1), scan(1)]),
            Expect::Dims(64, 64),
        ),
        (
            "no end-of-image marker",
            without_eoi(baseline(640, 480)),
            Expect::Reject("truncated jpeg: the file ends inside the scan data"),
        ),
        (
            "ends inside a segment",
            baseline(640, 480)[..30].to_vec(),
            Expect::Reject("truncated jpeg: the file ends before the frame header"),
        ),
        (
            "ends inside the frame header",
            {
                let b = baseline(640, 480);
                let at = find(&b, &[0xFF, 0xC0]);
                b[..at + 6].to_vec()
            },
            Expect::Reject("truncated jpeg: the file ends before the frame header"),
        ),
        (
            "ends after the frame header",
            without_eoi(jpeg(&[frame(0xC0, 640, 480, 3)])),
            Expect::Reject("truncated jpeg: the file ends without an end-of-image marker"),
        ),
        ("only SOI", SOI.to_vec(), Expect::Reject("truncated jpeg")),
        ("one byte 0xff", vec![0xFF], Expect::Reject("truncated jpeg")),
        ("height 0 (DNL)", baseline(640, 0), Expect::Reject("frame height 0")),
        ("width 0", baseline(0, 480), Expect::Reject("frame width 0")),
        (
            "two frame headers",
            jpeg(&[frame(0xC0, 64, 64, 1), frame(0xC0, 65535, 65535, 1), scan(1)]),
            Expect::Reject("a second frame header"),
        ),
        (
            "scan before the frame header",
            jpeg(&[scan(1), frame(0xC0, 64, 64, 1)]),
            Expect::Reject("scan before the frame header"),
        ),
        (
            "end of image before any scan",
            jpeg(&[frame(0xC0, 64, 64, 1)]),
            Expect::Reject("end-of-image marker before any scan"),
        ),
        (
            "end of image before the frame",
            jpeg(&[]),
            Expect::Reject("end-of-image marker before the frame header"),
        ),
        (
            "frame header too short for its components",
            jpeg(&[segment(0xC0, &[8, 0, 64, 0, 64, 3, 1, 0x11, 0]), scan(1)]),
            Expect::Reject("frame header of 9 bytes for 3 components"),
        ),
        (
            "frame header of 3 bytes",
            jpeg(&[segment(0xC0, &[8, 0, 64]), scan(1)]),
            Expect::Reject("frame header 0xffc0 is only 3 bytes long"),
        ),
        (
            "scan of 0 components",
            jpeg(&[frame(0xC0, 64, 64, 1), segment(0xDA, &[0, 0, 63, 0])]),
            Expect::Reject("scan header of 4 bytes for 0 components"),
        ),
        (
            "segment length 1",
            jpeg(&[vec![0xFF, 0xE1, 0x00, 0x01]]),
            Expect::Reject("segment 0xe1 declares a length of 1"),
        ),
        (
            "garbage between segments",
            jpeg(&[vec![0x00, 0x01], frame(0xC0, 64, 64, 1), scan(1)]),
            Expect::Reject("expected a marker, found byte 0x00"),
        ),
        (
            "stuffing outside scan data",
            jpeg(&[vec![0xFF, 0x00], frame(0xC0, 64, 64, 1), scan(1)]),
            Expect::Reject("stuffed byte 0xff00 outside scan data"),
        ),
        (
            "a second start of image",
            jpeg(&[SOI.to_vec(), frame(0xC0, 64, 64, 1), scan(1)]),
            Expect::Reject("a second start-of-image marker"),
        ),
        (
            "not starting with SOI",
            baseline(64, 64)[2..].to_vec(),
            Expect::Reject("not a jpeg: unrecognised bytes (starting ff e0"),
        ),
        (
            "a png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10".to_vec(),
            Expect::Reject("not a jpeg: looks like png"),
        ),
        (
            "a gif",
            b"GIF89a\x10\0\x10\0\0\0\0".to_vec(),
            Expect::Reject("not a jpeg: looks like gif"),
        ),
        (
            "a pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec(),
            Expect::Reject("not a jpeg: looks like pdf"),
        ),
        (
            "an mp4",
            b"\0\0\0\x18ftypisom\0\0\x02\0isom".to_vec(),
            Expect::Reject("not a jpeg: looks like mp4/iso-bmff"),
        ),
        (
            "a short non-jpeg",
            b"hi".to_vec(),
            Expect::Reject("not a jpeg: unrecognised bytes (starting 68 69)"),
        ),
        ("empty", Vec::new(), Expect::Reject("file is empty")),
    ];
    run_table(
        MediaKind::Target,
        &Limits {
            target_min_short_side: 0,
            ..Limits::default()
        },
        &cases,
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// A segment may be as long as 65535 bytes; the scanner counts past it without
/// keeping it, and a huge APP segment (an EXIF thumbnail) is not confused with markers.
#[test]
fn long_segments_are_skipped_whole() {
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(std::iter::repeat_n([0xFF, 0xD9, 0xFF, 0xC0], 16_400).flatten());
    let bytes = jpeg(&[segment(0xE1, &exif[..65533]), frame(0xC0, 800, 600, 3), scan(3)]);
    run_table(
        MediaKind::Source,
        &Limits::default(),
        &[("65533-byte APP1", bytes, Expect::Dims(800, 600))],
    );
}
