//! Pure media checks for the three evidence files of a face report: format sniffing,
//! JPEG frame dimensions, MP4 duration and the contract's limits (CONTRACT.md section 2).
//!
//! Nothing here does I/O or async. A [`Validator`] is fed the bytes as they arrive
//! (from the network, a file, a fuzzer) in chunks of any size, keeps only a bounded
//! amount of state, and gives its verdict in [`Validator::finish`].
#![forbid(unsafe_code)]

mod error;
mod jpeg;
mod limits;
mod mp4;
mod sniff;
mod walk;

pub use error::MediaError;
pub use limits::{Dimensions, Limits, ParseLimitsError, MAX_IMAGE_SIDE};
pub use sniff::sniff;

use serde::Serialize;

/// Which of the three media of a face report a file is; each has its own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// The portrait extracted from the ID document: JPEG, at most 1920x1080.
    Source,
    /// The best frame of the live capture: JPEG, short side at least 720.
    Target,
    /// The liveness video: MP4, at most 15 s.
    Video,
}

impl MediaKind {
    /// The lowercase word used on the command line and in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Source => "source",
            MediaKind::Target => "target",
            MediaKind::Video => "video",
        }
    }

    /// The format this kind of media must have.
    pub fn required_format(self) -> Format {
        match self {
            MediaKind::Source | MediaKind::Target => Format::Jpeg,
            MediaKind::Video => Format::Mp4,
        }
    }
}

/// A media format, as decided by the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Mp4,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Mp4 => "mp4",
        }
    }
}

/// What a validator learned about a file it accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: MediaKind,
    pub format: Format,
    /// Set for images: pixel width from the JPEG frame header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Set for images: pixel height from the JPEG frame header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Set for videos: the presentation duration in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// How many bytes were fed.
    pub bytes: u64,
}

/// Checks one media file, fed incrementally. Memory stays bounded whatever the input.
///
/// `feed` may reject early (for example, on the first bytes when they are not a JPEG);
/// once it has returned an error, further calls return the same error.
pub struct Validator {
    kind: MediaKind,
    limits: Limits,
    inner: Inner,
    bytes: u64,
    failed: Option<MediaError>,
}

enum Inner {
    Jpeg(jpeg::JpegScanner),
    Mp4(mp4::Mp4Scanner),
}

impl Validator {
    pub fn new(kind: MediaKind, limits: &Limits) -> Self {
        let inner = match kind.required_format() {
            Format::Jpeg => Inner::Jpeg(jpeg::JpegScanner::new(limits)),
            Format::Mp4 => Inner::Mp4(mp4::Mp4Scanner::new(limits)),
        };
        Validator {
            kind,
            limits: limits.clone(),
            inner,
            bytes: 0,
            failed: None,
        }
    }

    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// Feeds the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), MediaError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        let result = match &mut self.inner {
            Inner::Jpeg(scanner) => scanner.feed(chunk),
            Inner::Mp4(scanner) => scanner.feed(chunk),
        };
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Ends the input and gives the verdict: the format and figures, or why the file
    /// breaks the contract.
    pub fn finish(self) -> Result<Verdict, MediaError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if self.bytes == 0 {
            return Err(MediaError::Empty);
        }
        match self.inner {
            Inner::Jpeg(scanner) => {
                let dims = scanner.finish()?;
                limits::check_image(self.kind, dims, &self.limits)?;
                Ok(Verdict {
                    kind: self.kind,
                    format: Format::Jpeg,
                    width: Some(dims.width),
                    height: Some(dims.height),
                    duration_secs: None,
                    bytes: self.bytes,
                })
            }
            Inner::Mp4(scanner) => {
                let duration_secs = scanner.finish()?;
                limits::check_video(duration_secs, &self.limits)?;
                Ok(Verdict {
                    kind: self.kind,
                    format: Format::Mp4,
                    width: None,
                    height: None,
                    duration_secs: Some(duration_secs),
                    bytes: self.bytes,
                })
            }
        }
    }
}

/// Validates a whole file held in memory (a convenience for the CLI and tests).
pub fn validate_bytes(kind: MediaKind, limits: &Limits, bytes: &[u8]) -> Result<Verdict, MediaError> {
    let mut validator = Validator::new(kind, limits);
    validator.feed(bytes)?;
    validator.finish()
}
