//! Fuzz target: `bstore::format::fuzzing::export_stream_sealed` (see that module for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bstore::format::fuzzing::export_stream_sealed(data));
