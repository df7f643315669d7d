//! MP4 files built box by box for the tests: box headers of every size form, the
//! movie, track and fragment boxes with the figures a test needs, and whole movies.

/// A box with a 32-bit size.
pub fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len() + 8)
        .expect("box size")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

/// A box with size 1 and a 64-bit largesize.
pub fn large_bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(&(payload.len() as u64 + 16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A box with size 0: it runs to the end of the file.
pub fn open_bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

pub fn full(version: u8, flags: u32, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = (u32::from(version) << 24 | flags).to_be_bytes().to_vec();
    for field in fields {
        out.extend_from_slice(field);
    }
    out
}

pub fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

pub fn be64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

pub fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
    let mut payload = major.to_vec();
    payload.extend_from_slice(&be32(0x200));
    for brand in compatible {
        payload.extend_from_slice(*brand);
    }
    bx(b"ftyp", &payload)
}

pub fn isom() -> Vec<u8> {
    ftyp(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"])
}

pub fn mvhd(timescale: u32, duration: u32) -> Vec<u8> {
    bx(
        b"mvhd",
        &full(0, 0, &[&be32(0), &be32(0), &be32(timescale), &be32(duration), &[0; 80]]),
    )
}

pub fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
    bx(
        b"mvhd",
        &full(1, 0, &[&be64(0), &be64(0), &be32(timescale), &be64(duration), &[0; 80]]),
    )
}

/// A track whose `mdhd` and sample tables agree on `duration` ticks at `timescale`,
/// with no `tkhd` duration.
pub fn trak(id: u32, timescale: u32, duration: u32) -> Vec<u8> {
    let samples: &[(u32, u32)] = if duration == 0 { &[] } else { &[(1, duration)] };
    track(id, 0, timescale, duration, samples)
}

/// A track with these figures: the `tkhd` duration (in the movie timescale), the `mdhd`
/// timescale and duration, and the `stts` entries (sample count, sample duration).
pub fn track(id: u32, tkhd_duration: u32, timescale: u32, mdhd_duration: u32, stts_entries: &[(u32, u32)]) -> Vec<u8> {
    let tkhd = bx(
        b"tkhd",
        &full(
            0,
            3,
            &[&be32(0), &be32(0), &be32(id), &be32(0), &be32(tkhd_duration), &[0; 60]],
        ),
    );
    let mdhd = bx(
        b"mdhd",
        &full(
            0,
            0,
            &[&be32(0), &be32(0), &be32(timescale), &be32(mdhd_duration), &[0; 4]],
        ),
    );
    let hdlr = bx(b"hdlr", &full(0, 0, &[&[0; 4], b"vide", &[0; 13]]));
    let samples: u64 = stts_entries.iter().map(|(count, _)| u64::from(*count)).sum();
    // A sample-size table with as many samples as the stts (as far as 32 bits go).
    let stbl = cat(&[stts(stts_entries), stsz(samples as u32)]);
    let minf = bx(b"minf", &bx(b"stbl", &stbl));
    bx(b"trak", &cat(&[tkhd, bx(b"mdia", &cat(&[mdhd, hdlr, minf]))]))
}

/// A sample-size table of `count` samples of one size.
pub fn stsz(count: u32) -> Vec<u8> {
    bx(b"stsz", &full(0, 0, &[&be32(100), &be32(count)]))
}

pub fn stts(entries: &[(u32, u32)]) -> Vec<u8> {
    let mut fields = be32(entries.len() as u32).to_vec();
    for (count, delta) in entries {
        fields.extend_from_slice(&be32(*count));
        fields.extend_from_slice(&be32(*delta));
    }
    bx(b"stts", &full(0, 0, &[&fields]))
}

pub fn mehd(duration: u32) -> Vec<u8> {
    bx(b"mehd", &full(0, 0, &[&be32(duration)]))
}

pub fn trex(id: u32, default_duration: u32) -> Vec<u8> {
    bx(
        b"trex",
        &full(
            0,
            0,
            &[&be32(id), &be32(1), &be32(default_duration), &be32(0), &be32(0)],
        ),
    )
}

pub fn moov(children: &[Vec<u8>]) -> Vec<u8> {
    bx(b"moov", &cat(children))
}

/// The per-sample durations of a track run, or only a sample count.
pub enum Run {
    Durations(Vec<u32>),
    Count(u32),
    /// A sample count and no per-sample fields at all: every sample takes the default.
    Bare(u32),
}

/// A track fragment: tfhd (with a default duration if given), tfdt, and the runs.
pub fn traf(id: u32, tfhd_default: Option<u32>, runs: &[Run]) -> Vec<u8> {
    let tfhd = match tfhd_default {
        Some(d) => bx(b"tfhd", &full(0, 0x02_0008, &[&be32(id), &be32(d)])),
        None => bx(b"tfhd", &full(0, 0x02_0000, &[&be32(id)])),
    };
    let mut parts = vec![tfhd, bx(b"tfdt", &full(1, 0, &[&be64(0)]))];
    for run in runs {
        parts.push(match run {
            // Duration and size per sample, and a data offset.
            Run::Durations(durations) => {
                let mut fields = be32(durations.len() as u32).to_vec();
                fields.extend_from_slice(&be32(8));
                for d in durations {
                    fields.extend_from_slice(&be32(*d));
                    fields.extend_from_slice(&be32(100));
                }
                bx(b"trun", &full(0, 0x301, &[&fields]))
            }
            // Size per sample only, and first-sample flags.
            Run::Count(count) => {
                let mut fields = be32(*count).to_vec();
                fields.extend_from_slice(&be32(0x0200_0000));
                for _ in 0..*count {
                    fields.extend_from_slice(&be32(100));
                }
                bx(b"trun", &full(0, 0x204, &[&fields]))
            }
            Run::Bare(count) => bx(b"trun", &full(0, 0, &[&be32(*count)])),
        });
    }
    bx(b"traf", &cat(&parts))
}

pub fn moof(trafs: &[Vec<u8>]) -> Vec<u8> {
    let mfhd = bx(b"mfhd", &full(0, 0, &[&be32(1)]));
    bx(b"moof", &cat(&[vec![mfhd], trafs.to_vec()].concat()))
}

pub fn mdat(len: usize) -> Vec<u8> {
    bx(b"mdat", &vec![0xAB; len])
}

/// An mvhd whose size field claims one byte more than it has.
pub fn overrunning_mvhd() -> Vec<u8> {
    let mut header = mvhd(1000, 10_000);
    let size = u32::try_from(header.len() + 1).expect("size");
    header[..4].copy_from_slice(&be32(size));
    header
}

/// A plain movie of `duration` ticks at `timescale`, moov first.
pub fn plain(timescale: u32, duration: u32) -> Vec<u8> {
    cat(&[
        isom(),
        moov(&[mvhd(timescale, duration), trak(1, timescale, duration)]),
        mdat(1000),
    ])
}

/// An empty-moov fragmented movie (mvhd duration 0) with these extra mvex children and
/// fragments.
pub fn fragmented(mvex: &[Vec<u8>], fragments: &[Vec<u8>]) -> Vec<u8> {
    let movie = moov(&[
        mvhd(1000, 0),
        trak(1, 90000, 0),
        trak(2, 48000, 0),
        bx(b"mvex", &cat(mvex)),
    ]);
    cat(&[vec![isom(), movie], fragments.to_vec()].concat())
}
