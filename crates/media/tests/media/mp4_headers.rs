//! Issue 13: header durations (`mvhd`, `tkhd`, `mdhd`, `mehd`) held to what the samples
//! add up to (`stts` in the moov, `trun` in the fragments), and the buffer caps that
//! follow from the configured maximum duration.

use media::{Limits, MediaKind};

use crate::mp4_boxes::{
    be32, bx, cat, fragmented, full, isom, mdat, mehd, moof, moov, mvhd, stsz, stts, track, traf, trak, trex, Run,
};
use crate::support::{run_table, validate_chunked, Chunking, Expect};

fn limits() -> Limits {
    Limits::default()
}

/// A movie, moov first: an mvhd of `mvhd_ms` milliseconds, these tracks, and an mdat.
fn movie(mvhd_ms: u32, tracks: &[Vec<u8>]) -> Vec<u8> {
    let mut children = vec![mvhd(1000, mvhd_ms)];
    children.extend_from_slice(tracks);
    cat(&[isom(), moov(&children), mdat(500)])
}

/// 300 frames of 100 ms: the sample tables of a 30 s video at 10 fps, timescale 1000.
const THIRTY_SECS: &[(u32, u32)] = &[(300, 100)];

#[test]
fn headers_that_disagree_with_the_sample_tables() {
    let cases = vec![
        (
            "a 30 s video whose mvhd alone says 10 s",
            movie(10_000, &[track(1, 30_000, 1000, 30_000, THIRTY_SECS)]),
            Expect::Reject("malformed mp4: mvhd says 10.000 s but the sample tables say 30.000 s"),
        ),
        (
            "a 30 s video whose mvhd, tkhd and mdhd all say 10 s",
            movie(10_000, &[track(1, 10_000, 1000, 10_000, THIRTY_SECS)]),
            Expect::Reject("malformed mp4: mvhd says 10.000 s but the sample tables say 30.000 s"),
        ),
        (
            "a tkhd that understates its track",
            movie(12_000, &[track(1, 5_000, 1000, 12_000, &[(120, 100)])]),
            Expect::Reject("the tkhd of track 1 says 5.000 s but its sample tables say 12.000 s"),
        ),
        (
            "an mdhd that understates its track, mvhd zero",
            movie(0, &[track(1, 0, 90_000, 900_000, &[(900, 3000)])]),
            Expect::Reject("the mdhd of track 1 says 10.000 s but its sample tables say 30.000 s"),
        ),
        (
            "a second track whose zero mdhd would hide 30 s",
            movie(0, &[trak(1, 1000, 10_000), track(2, 0, 48_000, 0, &[(1407, 1024)])]),
            Expect::Reject("the mdhd of track 2 says 0.000 s but its sample tables say 30.016 s"),
        ),
        (
            "headers that overstate the samples",
            movie(14_000, &[track(1, 14_000, 1000, 14_000, &[(100, 100)])]),
            Expect::Reject("mvhd says 14.000 s but the sample tables say 10.000 s"),
        ),
        (
            "a track without sample tables",
            movie(0, &[track_without_tables(1, 1000, 10_000)]),
            Expect::Reject("the mdhd of track 1 says 10.000 s but its sample tables say 0.000 s"),
        ),
        (
            "a movie without tracks",
            movie(10_000, &[]),
            Expect::Reject("mvhd says 10.000 s but the sample tables say 0.000 s"),
        ),
        (
            "a disagreement of exactly 0.5 s passes",
            movie(10_000, &[track(1, 10_000, 1000, 10_000, &[(105, 100)])]),
            Expect::Secs(10.0),
        ),
        (
            "a disagreement of 0.501 s does not",
            movie(10_000, &[track(1, 10_000, 1000, 10_000, &[(105, 100), (1, 1)])]),
            Expect::Reject("mvhd says 10.000 s but the sample tables say 10.501 s"),
        ),
        (
            // The tkhd (and mvhd) hide the 1024 priming samples by an edit list; the
            // mdhd and the sample tables count them: 15.021 s of audio media.
            "a 15.0 s video whose audio runs 21 ms longer",
            movie(
                15_000,
                &[
                    track(1, 15_000, 10_240, 153_600, &[(150, 1024)]),
                    track(2, 15_000, 48_000, 721_024, &[(704, 1024), (1, 128)]),
                ],
            ),
            Expect::Secs(15.0),
        ),
        (
            "variable frame rate: one stts entry per frame",
            movie(
                15_000,
                &[track(1, 15_000, 90_000, 1_350_000, &[(1, 2999), (1, 3001)].repeat(225))],
            ),
            Expect::Secs(15.0),
        ),
        (
            "mvhd zero: the longest track, samples and mdhd agreeing",
            movie(
                0,
                &[
                    trak(1, 600, 6000),
                    track(2, 0, 44_100, 445_410, &[(434, 1024), (1, 994)]),
                ],
            ),
            Expect::Secs(10.1),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
}

/// A track whose media has an `mdhd` and no `minf`.
fn track_without_tables(id: u32, timescale: u32, duration: u32) -> Vec<u8> {
    let tkhd = bx(b"tkhd", &full(0, 3, &[&be32(0), &be32(0), &be32(id), &[0; 68]]));
    let mdhd = bx(
        b"mdhd",
        &full(0, 0, &[&be32(0), &be32(0), &be32(timescale), &be32(duration), &[0; 4]]),
    );
    bx(b"trak", &cat(&[tkhd, bx(b"mdia", &mdhd)]))
}

/// A track whose sample table holds these boxes in place of one `stts`.
fn track_with_stbl(id: u32, timescale: u32, duration: u32, stbl: &[Vec<u8>]) -> Vec<u8> {
    let tkhd = bx(b"tkhd", &full(0, 3, &[&be32(0), &be32(0), &be32(id), &[0; 68]]));
    let mdhd = bx(
        b"mdhd",
        &full(0, 0, &[&be32(0), &be32(0), &be32(timescale), &be32(duration), &[0; 4]]),
    );
    let minf = bx(b"minf", &bx(b"stbl", &cat(stbl)));
    bx(b"trak", &cat(&[tkhd, bx(b"mdia", &cat(&[mdhd, minf]))]))
}

#[test]
fn sample_tables_that_are_damaged_or_huge() {
    // 100 000 entries (800 KB of stts): summed in place, no copy per entry.
    let many: Vec<(u32, u32)> = vec![(1, 9); 100_000];
    let cases = vec![
        (
            "an stts that claims more entries than it holds",
            movie(
                10_000,
                &[track_with_stbl(
                    1,
                    1000,
                    10_000,
                    &[bx(b"stts", &full(0, 0, &[&be32(0x4000_0000), &be32(100), &be32(100)]))],
                )],
            ),
            Expect::Reject("the time-to-sample box (stts) declares 1073741824 entries but holds 8 bytes of entries"),
        ),
        (
            "an stts too short for its entry count",
            movie(
                10_000,
                &[track_with_stbl(1, 1000, 10_000, &[bx(b"stts", &full(0, 0, &[]))])],
            ),
            Expect::Reject("the 'stts' box is too short for its fields"),
        ),
        (
            "two stts boxes in one track",
            movie(
                10_000,
                &[track_with_stbl(
                    1,
                    1000,
                    10_000,
                    &[stts(&[(100, 100)]), stts(&[(100, 100)])],
                )],
            ),
            Expect::Reject("track 1 has two time-to-sample boxes (stts)"),
        ),
        (
            "sample counts whose sum overflows 32 bits",
            movie(10_000, &[track(1, 0, 1000, 10_000, &[(u32::MAX, u32::MAX); 4])]),
            Expect::Reject("the time-to-sample box (stts) gives durations for 17179869180 samples, but the sample-size box (stsz) lists 4294967292"),
        ),
        (
            "the largest sample durations",
            movie(10_000, &[track(1, 0, 1000, 10_000, &[(u32::MAX, u32::MAX)])]),
            Expect::Reject("mvhd says 10.000 s but the sample tables say 18446744065119616.000 s"),
        ),
        (
            // 10 s of stts over 300 frames: 20 s of frames with no defined time.
            "an stts that covers fewer samples than the stsz lists",
            movie(
                10_000,
                &[track_with_stbl(1, 1000, 10_000, &[stts(&[(100, 100)]), stsz(300)])],
            ),
            Expect::Reject("track 1: the time-to-sample box (stts) gives durations for 100 samples, but the sample-size box (stsz) lists 300"),
        ),
        (
            "an stts without an stsz",
            movie(10_000, &[track_with_stbl(1, 1000, 10_000, &[stts(&[(100, 100)])])]),
            Expect::Reject("track 1: the time-to-sample box (stts) gives durations for 100 samples, but the sample-size box (stsz) lists 0"),
        ),
        (
            "compact sample sizes (stz2)",
            movie(
                10_000,
                &[track_with_stbl(1, 1000, 10_000, &[stts(&[(100, 100)]), bx(b"stz2", &full(0, 0, &[&[0, 0, 0, 8], &be32(100), &[0; 100]]))])],
            ),
            Expect::Secs(10.0),
        ),
        (
            "100 000 stts entries",
            movie(10_000, &[track(1, 10_000, 90_000, 900_000, &many)]),
            Expect::Secs(10.0),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
}

#[test]
fn mehd_held_to_the_fragments() {
    // Track 1 at 90 kHz, track 2 at 48 kHz; the movie timescale is 1000.
    let ten_secs = || moof(&[traf(1, None, &[Run::Durations(vec![9000; 100])])]);
    let cases = vec![
        (
            "mehd says 5 s, the fragments 10 s",
            fragmented(&[mehd(5_000), trex(1, 0)], &[ten_secs(), mdat(10)]),
            Expect::Reject("malformed mp4: mehd says 5.000 s but the fragments say 10.000 s"),
        ),
        (
            "mehd says 12 s, the fragments 10 s",
            fragmented(&[mehd(12_000), trex(1, 0)], &[ten_secs()]),
            Expect::Reject("malformed mp4: mehd says 12.000 s but the fragments say 10.000 s"),
        ),
        (
            "mehd within 0.5 s of the fragments: the longer figure",
            fragmented(&[mehd(10_300), trex(1, 0)], &[ten_secs()]),
            Expect::Secs(10.3),
        ),
        (
            "mehd counts the samples in the moov too",
            cat(&[
                isom(),
                moov(&[
                    mvhd(1000, 2000),
                    trak(1, 1000, 2000),
                    bx(b"mvex", &cat(&[mehd(10_000), trex(1, 1000)])),
                ]),
                moof(&[traf(1, None, &[Run::Count(8)])]),
            ]),
            Expect::Secs(10.0),
        ),
        (
            "samples in the moov count where its mdhd understates them",
            cat(&[
                isom(),
                moov(&[
                    mvhd(1000, 0),
                    track(1, 0, 1000, 0, &[(2, 1000)]),
                    bx(b"mvex", &trex(1, 1000)),
                ]),
                moof(&[traf(1, None, &[Run::Count(14)])]),
            ]),
            Expect::Reject("the part read lasts 16.000 s already"),
        ),
        (
            "mvex but no fragments: the moov's headers agree with its samples",
            cat(&[
                isom(),
                moov(&[mvhd(1000, 3000), trak(1, 1000, 3000), bx(b"mvex", &trex(1, 1000))]),
            ]),
            Expect::Secs(3.0),
        ),
        (
            "mvex but no fragments: an mvhd that lies",
            cat(&[
                isom(),
                moov(&[mvhd(1000, 3000), trak(1, 1000, 9000), bx(b"mvex", &trex(1, 1000))]),
            ]),
            Expect::Reject("mvhd says 3.000 s but the sample tables say 9.000 s"),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
}

/// A movie without `mvex` whose headers lie is rejected at its `moov`, before the
/// `mdat` that follows is downloaded.
#[test]
fn lying_headers_are_rejected_before_the_mdat() {
    let head = cat(&[
        isom(),
        moov(&[mvhd(1000, 10_000), track(1, 10_000, 1000, 10_000, THIRTY_SECS)]),
    ]);
    let mut validator = media::Validator::new(MediaKind::Video, &limits());
    let err = validator.feed(&head).expect_err("rejected once the moov is read");
    assert_eq!(
        err.to_string(),
        "malformed mp4: mvhd says 10.000 s but the sample tables say 30.000 s"
    );
}

/// The moov and moof caps follow from the configured maximum duration.
#[test]
fn buffer_caps_follow_the_limit() {
    let claim = |kind: &[u8; 4], size: u32| cat(&[isom(), be32(size).to_vec(), kind.to_vec(), vec![0; 64]]);
    let cases = vec![
        (
            "a moov over the cap for 15 s",
            claim(b"moov", 4_980_736 + 9),
            Expect::Reject("the 'moov' box is larger than the 4980736 bytes this check reads"),
        ),
        (
            "a moof over the cap for 15 s",
            claim(b"moof", 4_980_736 + 9),
            Expect::Reject("the 'moof' box is larger than the 4980736 bytes this check reads"),
        ),
        (
            "a moov at the cap for 15 s is read",
            claim(b"moov", 4_980_736 + 8),
            Expect::Reject("truncated mp4: the file ends inside the 'moov' box"),
        ),
    ];
    run_table(MediaKind::Video, &limits(), &cases);
    let tight = Limits {
        video_max_secs: 0.5,
        ..Limits::default()
    };
    let err = validate_chunked(
        MediaKind::Video,
        &tight,
        &claim(b"moov", 2 << 20),
        Chunking::Fixed(4096),
    )
    .expect_err("over the cap for 0.5 s");
    assert_eq!(
        err.to_string(),
        "malformed mp4: the 'moov' box is larger than the 1310720 bytes this check reads"
    );
}
