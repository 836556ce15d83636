//! Fuzz target: `bstore::format::fuzzing::onode_sealed` (see that module for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bstore::format::fuzzing::onode_sealed(data));
