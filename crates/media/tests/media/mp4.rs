//! MP4 edge cases built box by box: sizes (32-bit, 64-bit, 0, lying), box order,
//! fragment durations from each of their sources, and the limit to the millisecond.

use media::{Limits, MediaKind};

use crate::mp4_boxes::*;
use crate::support::{run_table, validate_chunked, Chunking, Expect};

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn duration_limit_to_the_millisecond() {
    run_table(
        MediaKind::Video,
        &limits(),
        &[
            ("10 s", plain(1000, 10_000), Expect::Secs(10.0)),
            ("exactly 15.0 s", plain(1000, 15_000), Expect::Secs(15.0)),
            ("exactly 15.0 s at 90 kHz", plain(90_000, 1_350_000), Expect::Secs(15.0)),
            ("14.999 s", plain(1000, 14_999), Expect::Secs(14.999)),
            (
                "15.001 s",
                plain(1000, 15_001),
                Expect::Reject("duration 15.001 s exceeds the maximum of 15 s"),
            ),
            (
                "15.1 s",
                plain(1000, 15_100),
                Expect::Reject("duration 15.100 s exceeds the maximum of 15 s"),
            ),
            (
                "one tick over 15 s at 30 kHz",
                plain(30_000, 450_001),
                Expect::Reject("exceeds the maximum of 15 s"),
            ),
        ],
    );
    let tight = Limits {
        video_max_secs: 0.5,
        ..Limits::default()
    };
    run_table(
        MediaKind::Video,
        &tight,
        &[
            ("0.5 s", plain(1000, 500), Expect::Secs(0.5)),
            (
                "0.6 s",
                plain(1000, 600),
                Expect::Reject("duration 0.600 s exceeds the maximum of 0.5 s"),
            ),
        ],
    );
}

#[test]
fn box_sizes_and_box_order() {
    let movie = || moov(&[mvhd(1000, 10_000), trak(1, 1000, 10_000)]);
    let mut deep = bx(b"zzzz", b"core");
    for _ in 0..2000 {
        deep = bx(b"zzzz", &deep);
    }
    let mut padded_trak = trak(1, 1000, 10_000);
    padded_trak.extend_from_slice(&[0, 0, 0, 0]);
    let size = u32::try_from(padded_trak.len()).expect("size");
    padded_trak[..4].copy_from_slice(&be32(size));
    let cases = vec![
        (
            "moov before mdat",
            cat(&[isom(), movie(), mdat(5000)]),
            Expect::Secs(10.0),
        ),
        (
            "moov after mdat",
            cat(&[isom(), mdat(5000), bx(b"free", &[]), movie()]),
            Expect::Secs(10.0),
        ),
        (
            "64-bit largesize mdat",
            cat(&[isom(), large_bx(b"mdat", &[1; 3000]), movie()]),
            Expect::Secs(10.0),
        ),
        (
            "64-bit largesize moov",
            cat(&[
                isom(),
                large_bx(b"moov", &cat(&[mvhd(1000, 10_000), trak(1, 1000, 10_000)])),
            ]),
            Expect::Secs(10.0),
        ),
        (
            "size 0 mdat at the end",
            cat(&[isom(), movie(), open_bx(b"mdat", &[7; 3000])]),
            Expect::Secs(10.0),
        ),
        (
            "size 0 moov at the end",
            cat(&[
                isom(),
                mdat(100),
                open_bx(b"moov", &cat(&[mvhd(1000, 10_000), trak(1, 1000, 10_000)])),
            ]),
            Expect::Secs(10.0),
        ),
        (
            "unknown and uuid boxes",
            cat(&[
                isom(),
                bx(b"uuid", &[9; 40]),
                bx(b"wide", &[]),
                movie(),
                bx(b"skip", &[0; 10]),
            ]),
            Expect::Secs(10.0),
        ),
        (
            "deeply nested unknown boxes inside moov",
            cat(&[isom(), moov(&[deep, mvhd(1000, 10_000), trak(1, 1000, 10_000)])]),
            Expect::Secs(10.0),
        ),
        (
            "zero padding at the end of a container",
            cat(&[isom(), moov(&[mvhd(1000, 10_000), padded_trak])]),
            Expect::Secs(10.0),
        ),
        (
            "mvhd version 1 with a 64-bit duration",
            cat(&[isom(), moov(&[mvhd_v1(1000, 12_000), trak(1, 1000, 12_000)])]),
            Expect::Secs(12.0),
        ),
        (
            "mvhd version 1 beyond 32 bits",
            cat(&[isom(), moov(&[mvhd_v1(1000, 1 << 40), trak(1, 1000, 10_000)])]),
            Expect::Reject("mvhd says 1099511627.776 s but the sample tables say 10.000 s"),
        ),
        (
            "mvhd duration 0: the longest track",
            cat(&[
                isom(),
                moov(&[mvhd(1000, 0), trak(1, 600, 6000), trak(2, 44100, 441_000 + 4410)]),
            ]),
            Expect::Secs(10.1),
        ),
        (
            "a box smaller than its header",
            cat(&[isom(), movie(), vec![0, 0, 0, 4], b"mdat".to_vec()]),
            Expect::Reject("declares 4 bytes, less than its own 8-byte header"),
        ),
        (
            "a largesize smaller than its header",
            cat(&[isom(), movie(), be32(1).to_vec(), b"mdat".to_vec(), be64(15).to_vec()]),
            Expect::Reject("declares 15 bytes, less than its own 16-byte header"),
        ),
        (
            "a child overrunning its parent",
            cat(&[isom(), moov(&[overrunning_mvhd()])]),
            Expect::Reject("box 'mvhd' at offset 0 of 'moov' declares 109 bytes, but only 108 remain"),
        ),
        (
            "a child smaller than its header",
            cat(&[
                isom(),
                moov(&[mvhd(1000, 10_000), vec![0, 0, 0, 3, b't', b'r', b'a', b'k']]),
            ]),
            Expect::Reject("box 'trak' inside 'moov' declares 3 bytes"),
        ),
        (
            "a child of size 0",
            cat(&[isom(), moov(&[mvhd(1000, 10_000), open_bx(b"trak", &[])])]),
            Expect::Reject("declares size 0"),
        ),
        (
            "stray bytes at the end of a container",
            cat(&[isom(), moov(&[mvhd(1000, 10_000), vec![1, 2, 3]])]),
            Expect::Reject("3 stray bytes at the end of the 'moov' box"),
        ),
        (
            "an mvhd too short for its fields",
            cat(&[
                isom(),
                moov(&[bx(b"mvhd", &full(0, 0, &[&be32(0), &be32(0), &be32(1000)]))]),
            ]),
            Expect::Reject("the 'mvhd' box is too short for its fields"),
        ),
        (
            "movie timescale 0",
            cat(&[isom(), moov(&[mvhd(0, 10_000)])]),
            Expect::Reject("the movie header (mvhd) has a timescale of 0"),
        ),
        (
            "track timescale 0",
            cat(&[isom(), moov(&[mvhd(1000, 10_000), trak(7, 0, 10)])]),
            Expect::Reject("track 7 has a timescale of 0"),
        ),
        (
            "no duration anywhere",
            cat(&[isom(), moov(&[mvhd(1000, 0), trak(1, 1000, 0)])]),
            Expect::Reject("the movie declares no duration"),
        ),
        (
            "moov without mvhd",
            cat(&[isom(), moov(&[trak(1, 1000, 10_000)])]),
            Expect::Reject("no movie header (mvhd)"),
        ),
        (
            "two moov boxes",
            cat(&[isom(), movie(), movie()]),
            Expect::Reject("a second 'moov' box"),
        ),
        (
            "no moov",
            cat(&[isom(), mdat(100)]),
            Expect::Reject("truncated mp4: the file has no movie box (moov)"),
        ),
        (
            "ends inside mdat",
            {
                let file = cat(&[isom(), movie(), mdat(100)]);
                file[..file.len() - 50].to_vec()
            },
            Expect::Reject("truncated mp4: the file ends inside the 'mdat' box"),
        ),
        (
            "ends inside moov",
            cat(&[isom(), movie()])[..100].to_vec(),
            Expect::Reject("truncated mp4: the file ends inside the 'moov' box at byte 32"),
        ),
        (
            "ends inside a box header",
            cat(&[isom(), movie(), vec![0, 0, 1]]),
            Expect::Reject("truncated mp4: the file ends inside a box header"),
        ),
        (
            "ends inside ftyp",
            isom()[..20].to_vec(),
            Expect::Reject("truncated mp4: the file ends inside the 'ftyp' box"),
        ),
        (
            "ends inside the first header",
            isom()[..3].to_vec(),
            Expect::Reject("truncated mp4"),
        ),
        (
            "moov larger than the cap",
            cat(&[isom(), be32(40 << 20).to_vec(), b"moov".to_vec()]),
            Expect::Reject("the 'moov' box is larger than the 4980736 bytes this check reads"),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
}

#[test]
fn brands_and_foreign_formats() {
    let movie = || moov(&[mvhd(1000, 10_000), trak(1, 1000, 10_000)]);
    let cases = vec![
        ("major isom", cat(&[ftyp(b"isom", &[]), movie()]), Expect::Secs(10.0)),
        (
            "major mp42",
            cat(&[ftyp(b"mp42", &[b"mp42"]), movie()]),
            Expect::Secs(10.0),
        ),
        ("dash", cat(&[ftyp(b"dash", &[b"iso6"]), movie()]), Expect::Secs(10.0)),
        (
            "M4V",
            cat(&[ftyp(b"M4V ", &[b"M4V ", b"M4A "]), movie()]),
            Expect::Secs(10.0),
        ),
        (
            "3gp compatible with isom",
            cat(&[ftyp(b"3gp4", &[b"3gp4", b"isom"]), movie()]),
            Expect::Secs(10.0),
        ),
        ("iso9", cat(&[ftyp(b"iso9", &[]), movie()]), Expect::Secs(10.0)),
        (
            "quicktime only",
            cat(&[ftyp(b"qt  ", &[b"qt  "]), movie()]),
            Expect::Reject("not an mp4: a quicktime movie with brands 'qt  ', none of them an mp4 brand"),
        ),
        (
            "heif image",
            cat(&[ftyp(b"heic", &[b"mif1", b"heic"]), bx(b"meta", &[0; 20])]),
            Expect::Reject("not an mp4: an iso-bmff file with brands 'heic', 'mif1', none of them"),
        ),
        (
            "isoa is not iso2..iso9",
            cat(&[ftyp(b"isoa", &[]), movie()]),
            Expect::Reject("none of them an mp4 brand"),
        ),
        (
            "ftyp too short",
            cat(&[bx(b"ftyp", b"isom"), movie()]),
            Expect::Reject("the file-type box (ftyp) has 4 bytes, fewer than 8"),
        ),
        (
            "ftyp larger than the cap",
            cat(&[be32(5000).to_vec(), b"ftyp".to_vec(), vec![0; 8]]),
            Expect::Reject("the 'ftyp' box is larger than the 4096 bytes"),
        ),
        (
            "moov first, no ftyp",
            cat(&[movie(), mdat(10)]),
            Expect::Reject("not an mp4: looks like quicktime"),
        ),
        (
            "webm",
            b"\x1A\x45\xDF\xA3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81".to_vec(),
            Expect::Reject("not an mp4: looks like webm/matroska"),
        ),
        (
            "jpeg",
            b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01".to_vec(),
            Expect::Reject("not an mp4: looks like jpeg"),
        ),
        (
            "riff webp",
            b"RIFF\x10\0\0\0WEBPVP8 \0\0\0\0".to_vec(),
            Expect::Reject("not an mp4: looks like webp"),
        ),
        ("empty", Vec::new(), Expect::Reject("file is empty")),
        (
            "a few bytes of text",
            b"hello".to_vec(),
            Expect::Reject("not an mp4: unrecognised bytes (starting 68 65 6c 6c)"),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
}

#[test]
fn fragment_durations_from_trun_tfhd_and_trex() {
    // Track 1 at 90 kHz, track 2 at 48 kHz; the movie timescale is 1000.
    let cases = vec![
        (
            "per-sample durations in trun",
            fragmented(
                &[trex(1, 0), trex(2, 0)],
                &[
                    moof(&[traf(1, None, &[Run::Durations(vec![9000; 50])])]),
                    mdat(10),
                    moof(&[traf(1, None, &[Run::Durations(vec![9000; 50])])]),
                    mdat(10),
                ],
            ),
            Expect::Secs(10.0),
        ),
        (
            "tfhd default duration",
            fragmented(
                &[trex(1, 1)],
                &[
                    moof(&[traf(1, Some(3000), &[Run::Count(150), Run::Count(150)])]),
                    mdat(10),
                ],
            ),
            Expect::Secs(10.0),
        ),
        (
            "trex default duration",
            fragmented(
                &[trex(1, 4500)],
                &[moof(&[traf(1, None, &[Run::Count(200)])]), mdat(10)],
            ),
            Expect::Secs(10.0),
        ),
        (
            "per-sample durations win over the defaults",
            fragmented(
                &[trex(1, 90_000)],
                &[moof(&[traf(1, Some(90_000), &[Run::Durations(vec![900; 10])])])],
            ),
            Expect::Secs(0.1),
        ),
        (
            "the longest track wins",
            fragmented(
                &[trex(1, 3000), trex(2, 1024)],
                &[moof(&[
                    traf(1, None, &[Run::Count(300)]),
                    traf(2, None, &[Run::Count(600)]),
                ])],
            ),
            Expect::Secs(12.8),
        ),
        (
            "summed over many fragments: 15.0 s",
            fragmented(
                &[trex(1, 9000)],
                &(0..15)
                    .map(|_| moof(&[traf(1, None, &[Run::Count(10)])]))
                    .collect::<Vec<_>>(),
            ),
            Expect::Secs(15.0),
        ),
        (
            "summed over many fragments: 15.1 s",
            fragmented(
                &[trex(1, 9000)],
                &(0..151)
                    .map(|_| moof(&[traf(1, None, &[Run::Count(1)])]))
                    .collect::<Vec<_>>(),
            ),
            Expect::Reject("the part read lasts 15.100 s already"),
        ),
        (
            "mehd",
            fragmented(
                &[mehd(10_000), trex(1, 0)],
                &[moof(&[traf(1, None, &[Run::Durations(vec![90_000; 10])])])],
            ),
            Expect::Secs(10.0),
        ),
        (
            "mehd claiming less than the fragments hold",
            fragmented(
                &[mehd(10_000), trex(1, 0)],
                &[moof(&[traf(1, None, &[Run::Durations(vec![90_000; 20])])])],
            ),
            Expect::Reject("the part read lasts 20.000 s already"),
        ),
        (
            // Without fragments the sample tables of the moov are all there is.
            "mehd alone, no samples anywhere",
            fragmented(&[mehd(10_000)], &[]),
            Expect::Reject("mehd says 10.000 s but the sample tables say 0.000 s"),
        ),
        (
            "mehd over the limit",
            fragmented(&[mehd(16_000)], &[]),
            Expect::Reject("duration exceeds the maximum of 15 s: the part read lasts 16.000 s already"),
        ),
        (
            "fragments before the moov",
            cat(&[
                isom(),
                moof(&[traf(1, None, &[Run::Count(100)])]),
                moov(&[mvhd(1000, 0), trak(1, 1000, 0), bx(b"mvex", &trex(1, 100))]),
            ]),
            Expect::Secs(10.0),
        ),
        (
            "mvhd of the first fragment only",
            cat(&[
                isom(),
                moov(&[mvhd(1000, 2000), trak(1, 1000, 2000), bx(b"mvex", &trex(1, 1000))]),
                moof(&[traf(1, None, &[Run::Count(18)])]),
            ]),
            Expect::Reject("the part read lasts 20.000 s already"),
        ),
        (
            "no default duration anywhere",
            fragmented(&[], &[moof(&[traf(1, None, &[Run::Count(10)])])]),
            Expect::Reject("the fragments of track 1 give no sample durations"),
        ),
        (
            "a fragment of an undeclared track",
            fragmented(&[trex(1, 10)], &[moof(&[traf(9, Some(10), &[Run::Count(10)])])]),
            Expect::Reject("a fragment of track 9, which the movie does not declare"),
        ),
        (
            "trun before tfhd",
            fragmented(
                &[trex(1, 10)],
                &[moof(&[bx(b"traf", &bx(b"trun", &full(0, 0, &[&be32(1)])))])],
            ),
            Expect::Reject("a track run (trun) before its fragment header (tfhd)"),
        ),
        (
            "a trun that claims more samples than it holds",
            fragmented(
                &[trex(1, 10)],
                &[moof(&[bx(
                    b"traf",
                    &cat(&[
                        bx(b"tfhd", &full(0, 0, &[&be32(1)])),
                        bx(b"trun", &full(0, 0x100, &[&be32(1_000_000), &be32(5)])),
                    ]),
                )])],
            ),
            Expect::Reject("a track run (trun) declares 1000000 samples but holds 4 bytes of sample fields"),
        ),
        (
            "sample durations that would overflow",
            fragmented(
                &[trex(1, u32::MAX)],
                &(0..4)
                    .map(|_| moof(&[traf(1, Some(u32::MAX), &[Run::Bare(u32::MAX), Run::Bare(u32::MAX)])]))
                    .collect::<Vec<_>>(),
            ),
            Expect::Reject("exceeds the maximum of 15 s"),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
}

/// When the moov already shows the video is too long, feeding stops there: the
/// pipeline need not download the rest.
#[test]
fn a_movie_known_too_long_is_rejected_before_its_end() {
    let head = cat(&[isom(), moov(&[mvhd(1000, 60_000), trak(1, 1000, 60_000)])]);
    let mut validator = media::Validator::new(MediaKind::Video, &limits());
    let err = validator.feed(&head).expect_err("rejected once the moov is read");
    assert_eq!(err.to_string(), "duration 60.000 s exceeds the maximum of 15 s");
    // Further chunks keep the same answer.
    assert_eq!(validator.feed(&mdat(100)).expect_err("still rejected"), err);
    assert_eq!(validator.finish().expect_err("still rejected"), err);

    // The same for fragments: the sum only grows.
    let head = fragmented(&[trex(1, 90_000)], &[moof(&[traf(1, None, &[Run::Count(16)])])]);
    let err = validate_chunked(MediaKind::Video, &limits(), &head[..head.len()], Chunking::Fixed(4096))
        .expect_err("too long");
    assert_eq!(
        err.to_string(),
        "duration exceeds the maximum of 15 s: the part read lasts 16.000 s already"
    );
}
