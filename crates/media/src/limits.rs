//! The configurable limits of CONTRACT.md section 2, and the checks against them.

use crate::{MediaError, MediaKind};

/// Pixel dimensions from a JPEG frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    pub width: u32,
    pub height: u32,
}

impl Dimensions {
    pub fn long_side(self) -> u32 {
        self.width.max(self.height)
    }
    pub fn short_side(self) -> u32 {
        self.width.min(self.height)
    }
}

/// The limits each media must meet. Defaults are the contract's.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Source image bound, either orientation: long side <= `source_max.long_side()`
    /// and short side <= `source_max.short_side()`.
    pub source_max: Dimensions,
    /// Target image minimum short side.
    pub target_min_short_side: u32,
    /// Video maximum duration in seconds (inclusive).
    pub video_max_secs: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            source_max: Dimensions {
                width: 1920,
                height: 1080,
            },
            target_min_short_side: 720,
            video_max_secs: 15.0,
        }
    }
}

/// A `WIDTHxHEIGHT` setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("expected WIDTHxHEIGHT with positive integers, such as 1920x1080, got {0:?}")]
pub struct ParseLimitsError(pub String);

impl std::str::FromStr for Dimensions {
    type Err = ParseLimitsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLimitsError(s.to_string());
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(err)?;
        let width: u32 = w.trim().parse().map_err(|_| err())?;
        let height: u32 = h.trim().parse().map_err(|_| err())?;
        if width == 0 || height == 0 {
            return Err(err());
        }
        Ok(Dimensions { width, height })
    }
}

/// No image of either kind may claim a side longer than this, whatever the configured
/// limits: the contract rejects a header that claims a huge frame (a forged 65535x65535
/// would otherwise pass as a target image, whose limit is only a minimum). 16384 is
/// above any phone camera's and any video frame's side.
pub const MAX_IMAGE_SIDE: u32 = 16384;

pub(crate) fn check_image(kind: MediaKind, dims: Dimensions, limits: &Limits) -> Result<(), MediaError> {
    match kind {
        MediaKind::Source => {
            let max = limits.source_max;
            if dims.long_side() > max.long_side() || dims.short_side() > max.short_side() {
                return Err(MediaError::TooLarge {
                    width: dims.width,
                    height: dims.height,
                    max_long: max.long_side(),
                    max_short: max.short_side(),
                });
            }
        }
        MediaKind::Target => {
            if dims.short_side() < limits.target_min_short_side {
                return Err(MediaError::TooSmall {
                    short_side: dims.short_side(),
                    min_short: limits.target_min_short_side,
                });
            }
        }
        MediaKind::Video => {}
    }
    if dims.long_side() > MAX_IMAGE_SIDE {
        return Err(MediaError::TooLarge {
            width: dims.width,
            height: dims.height,
            max_long: MAX_IMAGE_SIDE,
            max_short: MAX_IMAGE_SIDE,
        });
    }
    Ok(())
}

/// A tolerance of a microsecond keeps "exactly 15.0 s" accepted despite timescale rounding.
pub(crate) const DURATION_TOLERANCE_SECS: f64 = 1e-6;

pub(crate) fn check_video(duration_secs: f64, limits: &Limits) -> Result<(), MediaError> {
    if duration_secs > limits.video_max_secs + DURATION_TOLERANCE_SECS {
        return Err(MediaError::TooLong {
            duration_secs,
            max_secs: limits.video_max_secs,
        });
    }
    Ok(())
}
