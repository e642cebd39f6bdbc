//! The libFuzzer entry of `palaver_fuzz_targets::stream_frame` (its module doc states the properties).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzz_targets::stream_frame::run(data));
