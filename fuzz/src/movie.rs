//! Builds a well-formed MP4 skeleton whose durations and sample tables come from the
//! fuzzer's bytes, so that mutations land in the figures the duration checks compare
//! (`mvhd`, `tkhd`, `mdhd`, `stts`, `mehd`, `trun`) instead of in box structure that
//! random bytes rarely get right.

/// Reads the fuzzer's bytes as numbers; past the end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// A duration-like figure: often small and plausible, sometimes any 32-bit value.
    fn figure(&mut self) -> u32 {
        match self.byte() % 4 {
            0 => self.u32(),
            _ => u32::from(self.byte()) << 8 | u32::from(self.byte()),
        }
    }
}

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len() + 8).unwrap_or(u32::MAX).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

fn full(version_flags: u32, fields: &[u32]) -> Vec<u8> {
    let mut out = version_flags.to_be_bytes().to_vec();
    for field in fields {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out
}

/// What the built movie is, for the checks that follow the verdict.
pub struct Movie {
    pub file: Vec<u8>,
    /// Each track's sample-table duration in seconds (`stts` sum / `mdhd` timescale).
    pub track_secs: Vec<f64>,
}

/// An `ftyp`, a `moov` of up to three tracks and, if the input says so, an `mvex`
/// (with a `mehd`) and one `moof`, then the rest of the input as further boxes.
pub fn build(data: &[u8]) -> Movie {
    let mut input = Input(data);
    let movie_scale = input.figure();
    let mut moov = vec![bx(b"mvhd", &full(0, &[0, 0, movie_scale, input.figure(), 0]))];
    let tracks = input.byte() % 4;
    let mut track_secs = Vec::new();
    for id in 1..=u32::from(tracks) {
        let tkhd = bx(b"tkhd", &full(3, &[0, 0, id, 0, input.figure(), 0, 0]));
        let timescale = input.figure();
        let mdhd = bx(b"mdhd", &full(0, &[0, 0, timescale, input.figure(), 0]));
        let entries = usize::from(input.byte() % 16);
        let mut stts = vec![u32::try_from(entries).unwrap_or(0)];
        for _ in 0..entries {
            stts.extend([input.figure(), input.figure()]);
        }
        // Now and then an entry count other than the entries there are.
        if input.byte() == 0xFF {
            stts[0] = input.u32();
        }
        // The scanner reads as many entries as the count says (or rejects the box).
        let read = usize::try_from(stts[0]).unwrap_or(usize::MAX).min(entries);
        let pairs = || stts[1..1 + 2 * read].chunks(2);
        let ticks: u128 = pairs().map(|p| u128::from(p[0]) * u128::from(p[1])).sum();
        let samples: u64 = pairs().map(|p| u64::from(p[0])).sum();
        track_secs.push(ticks as f64 / f64::from(timescale.max(1)));
        // A sample-size table of as many samples, or now and then of any count.
        let sizes = match input.byte() {
            0xFF => input.u32(),
            _ => samples as u32,
        };
        let stsz = bx(b"stsz", &full(0, &[100, sizes]));
        let stbl = bx(b"stbl", &[bx(b"stts", &full(0, &stts)), stsz].concat());
        let mdia = bx(b"mdia", &[mdhd, bx(b"minf", &stbl)].concat());
        moov.push(bx(b"trak", &[tkhd, mdia].concat()));
    }
    let shape = input.byte();
    if shape & 1 != 0 {
        let mehd = bx(b"mehd", &full(0, &[input.figure()]));
        let trex = bx(b"trex", &full(0, &[1, 1, input.figure(), 0, 0]));
        moov.push(bx(b"mvex", &[mehd, trex].concat()));
    }
    let mut file = bx(b"ftyp", b"isom\0\0\x02\0isomiso2");
    file.extend(bx(b"moov", &moov.concat()));
    if shape & 2 != 0 {
        // One run of per-sample durations for track 1.
        let samples = input.byte() % 8;
        let mut trun = vec![u32::from(samples)];
        for _ in 0..samples {
            trun.push(input.figure());
        }
        let tfhd = bx(b"tfhd", &full(0x02_0000, &[1]));
        let trun = bx(b"trun", &full(0x100, &trun));
        file.extend(bx(b"moof", &bx(b"traf", &[tfhd, trun].concat())));
    }
    file.extend_from_slice(input.0);
    Movie { file, track_secs }
}
