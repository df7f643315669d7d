//! Fuzzes the JPEG scanner (through the validator for target images).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| media_fuzz::check(media::MediaKind::Target, data));
