//! Helpers shared by the tests: feeding a file in chunks, and a seeded generator.

use media::{Limits, MediaError, MediaKind, Validator, Verdict};

/// A small deterministic generator (xorshift64*), so that every run feeds the same
/// "random" chunk sizes and bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// How a file is cut into chunks before it is fed.
#[derive(Debug, Clone, Copy)]
pub enum Chunking {
    Fixed(usize),
    /// Sizes from 1 to 5000, drawn from a generator with this seed.
    Random(u64),
}

/// The chunkings every file is fed with: single bytes, odd small sizes, a typical
/// network read, and two random mixes.
pub const CHUNKINGS: &[Chunking] = &[
    Chunking::Fixed(1),
    Chunking::Fixed(2),
    Chunking::Fixed(7),
    Chunking::Fixed(4096),
    Chunking::Random(1),
    Chunking::Random(0x5eed),
];

/// Feeds `bytes` in chunks, stopping at the first rejection as the pipeline does.
pub fn validate_chunked(
    kind: MediaKind,
    limits: &Limits,
    bytes: &[u8],
    chunking: Chunking,
) -> Result<Verdict, MediaError> {
    let mut validator = Validator::new(kind, limits);
    let mut rng = match chunking {
        Chunking::Random(seed) => Some(Rng::new(seed)),
        Chunking::Fixed(_) => None,
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let size = match (&mut rng, chunking) {
            (Some(rng), _) => 1 + rng.below(5000),
            (None, Chunking::Fixed(size)) => size,
            (None, Chunking::Random(_)) => unreachable!("a random chunking has a generator"),
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        validator.feed(chunk)?;
        rest = tail;
    }
    validator.finish()
}

/// Validates `bytes` whole, then in every chunking; returns the whole-file verdict, or
/// a description of the first chunking that disagreed with it.
pub fn validate_every_way(
    kind: MediaKind,
    limits: &Limits,
    bytes: &[u8],
) -> Result<Result<Verdict, MediaError>, String> {
    let whole = media::validate_bytes(kind, limits, bytes);
    for &chunking in CHUNKINGS {
        let chunked = validate_chunked(kind, limits, bytes, chunking);
        if chunked != whole {
            return Err(format!("fed in {chunking:?} chunks: {chunked:?}, but whole: {whole:?}"));
        }
    }
    Ok(whole)
}

/// What a test expects of a file: accepted with these figures, or rejected with a
/// reason containing this text.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Width and height of an image.
    Dims(u32, u32),
    /// Duration of a video, in seconds (compared to the millisecond).
    Secs(f64),
    Reject(&'static str),
}

/// Checks one verdict against an expectation; `Err` says how they differ.
pub fn check(verdict: &Result<Verdict, MediaError>, expect: &Expect) -> Result<(), String> {
    match (verdict, expect) {
        (Ok(v), Expect::Dims(w, h)) if v.width == Some(*w) && v.height == Some(*h) => Ok(()),
        (Ok(v), Expect::Secs(s)) if v.duration_secs.is_some_and(|d| (d - s).abs() < 0.0005) => Ok(()),
        (Err(err), Expect::Reject(reason)) if err.to_string().contains(reason) => Ok(()),
        (Ok(v), _) => Err(format!("accepted {v:?}, expected {expect:?}")),
        (Err(err), _) => Err(format!("rejected with \"{err}\", expected {expect:?}")),
    }
}

/// Runs a table of cases through [`validate_every_way`] and [`check`], and fails once
/// with every case that went wrong.
pub fn run_table(kind: MediaKind, limits: &Limits, cases: &[(&str, Vec<u8>, Expect)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, bytes, expect)| {
            let outcome = validate_every_way(kind, limits, bytes).and_then(|verdict| check(&verdict, expect));
            outcome.err().map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
