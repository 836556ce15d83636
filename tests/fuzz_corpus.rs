//! Goal: every input the fuzzers ever kept (fuzz/corpus/<target>/) still decodes without a
//! panic and round-trips, on stable Rust, in every `cargo test` run.

use std::path::Path;

use bstore::format::fuzzing::TARGETS;

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = Path::new("fuzz/corpus").join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {name} panicked on {}",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len(), "every target has a corpus");
    println!("replayed {replayed} corpus inputs");
}
