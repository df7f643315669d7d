//! Fuzzes the MP4 duration checks on movies built from the input (`media_fuzz::movie`):
//! header durations against sample tables, `mehd` against fragments.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| media_fuzz::check_sample_tables(data));
