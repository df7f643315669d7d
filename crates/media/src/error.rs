//! Why a media file breaks the contract, in words an operator understands.

/// A media file that breaks CONTRACT.md section 2. The `Display` text is the `reason`
/// recorded in manifests and printed by `archiver validate`: a lowercase fragment.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MediaError {
    /// No bytes at all.
    #[error("file is empty")]
    Empty,
    /// The bytes are not the required format; `found` names what they look like.
    #[error("not {} {expected}: {found}", article(expected))]
    WrongFormat { expected: &'static str, found: String },
    /// The file ended before its structure was complete.
    #[error("truncated {format}: {detail}")]
    Truncated { format: &'static str, detail: String },
    /// The structure is damaged or self-contradictory (box sizes that lie, bad markers).
    #[error("malformed {format}: {detail}")]
    Malformed { format: &'static str, detail: String },
    /// A source image above the bound.
    #[error("{width}x{height} exceeds the maximum of {max_long}x{max_short}")]
    TooLarge {
        width: u32,
        height: u32,
        max_long: u32,
        max_short: u32,
    },
    /// A target image below the minimum.
    #[error("short side {short_side} is below {min_short}")]
    TooSmall { short_side: u32, min_short: u32 },
    /// A video longer than allowed.
    #[error("duration {duration_secs:.3} s exceeds the maximum of {max_secs} s")]
    TooLong { duration_secs: f64, max_secs: f64 },
    /// A fragmented video found too long before its end: the rest was not read, so its
    /// whole duration is unknown, but it is at least `duration_secs`.
    #[error("duration exceeds the maximum of {max_secs} s: the part read lasts {duration_secs:.3} s already")]
    TooLongSoFar { duration_secs: f64, max_secs: f64 },
}

/// "a jpeg", but "an mp4": the article goes by how the format's name is spoken.
fn article(format: &str) -> &'static str {
    if format.starts_with(['a', 'e', 'i', 'o', 'm']) {
        "an"
    } else {
        "a"
    }
}
