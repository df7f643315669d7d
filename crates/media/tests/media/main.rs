//! Tests of the media checks as a caller sees them: verdicts and reasons for the
//! committed fixtures, for synthetic edge cases built in memory, and for random bytes,
//! each also fed in chunks of many sizes.

mod fixtures;
mod jpeg;
mod mp4;
mod mp4_boxes;
mod mp4_headers;
mod robustness;
mod support;
