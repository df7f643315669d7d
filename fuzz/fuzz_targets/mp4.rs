//! Fuzzes the MP4 scanner (through the validator for videos).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| media_fuzz::check(media::MediaKind::Video, data));
