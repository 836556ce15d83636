//! Fuzz target: `bstore::format::fuzzing::shared_blob_sealed` (see that module for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bstore::format::fuzzing::shared_blob_sealed(data));
