//! Online scrub: checksums of live objects verified while the store serves writers. A flipped
//! bit under a live object is found before any client reads it; a healthy store under writers
//! that overwrite, clone and remove reports nothing; the pace stays within its budget.

mod common;

#[cfg(feature = "rocksdb")]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "rocksdb")]
use bstore::Transaction;
use bstore::{ChunkProblem, Error, ScrubOptions};
#[cfg(feature = "rocksdb")]
use common::RealStore;
use common::{SimPair, pattern};

fn unlimited() -> ScrubOptions {
    ScrubOptions::default().with_bytes_per_second(0)
}

#[test]
fn scrub_finds_a_bit_flipped_under_a_live_object_before_any_client_read() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "victim", &pattern(1, 300_000)).unwrap();
    store.put("c", "bystander", &pattern(2, 300_000)).unwrap();
    store.flush_deferred().unwrap();
    let extent = store.fiemap("c", "victim").unwrap()[0];
    pair.device.corrupt_bit(extent.device_offset + 123_456, 2);

    let report = store.scrub(&unlimited()).unwrap();
    assert_eq!(report.objects, 2);
    assert!(report.bytes_read >= 600_000, "{report:?}");
    assert_eq!(report.bad_chunks.len(), 1, "{:?}", report.bad_chunks);
    let bad = &report.bad_chunks[0];
    assert_eq!(bad.object, "c/victim");
    assert!((bad.object_offset..bad.object_offset + bad.length).contains(&123_456));
    assert!(matches!(bad.problem, ChunkProblem::ChecksumMismatch { .. }));
    let counters = store.counters();
    assert_eq!(counters.scrub_bad_chunks, 1);
    assert_eq!(counters.scrub_bytes_read, report.bytes_read);
    // The client read that comes later fails rather than return the rotten bytes.
    assert!(matches!(
        store.get("c", "victim"),
        Err(Error::ChecksumMismatch { .. })
    ));
    assert_eq!(store.get("c", "bystander").unwrap(), pattern(2, 300_000));
    // One collection only.
    let one = unlimited().with_collection(Some(b"c".to_vec()));
    assert_eq!(store.scrub(&one).unwrap().bad_chunks.len(), 1);
    store.close().unwrap();
}

#[cfg(feature = "rocksdb")]
#[test]
fn scrub_beside_writers_finds_nothing_wrong_with_a_healthy_store() {
    // Deferred overwrites applied at once, so that one often lands on the device between a
    // scrub's snapshot and its read: the scrub must read again rather than report it.
    let real = RealStore::new(512 << 20);
    let options = bstore::OpenOptions::default()
        .with_prefer_deferred_size(Some(64 << 10))
        .with_deferred(
            bstore::DeferredPolicy::default()
                .with_batch_records(1)
                .with_max_delay(std::time::Duration::ZERO),
        );
    let store = bstore::Store::open(real.path(), &options).unwrap();
    store.create_collection("c").unwrap();
    for i in 0..16u64 {
        store
            .put("c", format!("o{i}"), &pattern(i, 1 << 20))
            .unwrap();
    }
    let done = AtomicBool::new(false);
    let seed = bstore::rng::test_seed();
    println!("seed {seed} (BSTORE_SEED replays)");
    std::thread::scope(|scope| {
        for writer in 0..2u64 {
            let (store, done) = (&store, &done);
            scope.spawn(move || {
                let mut rng = bstore::rng::SplitMix64::new(seed ^ writer);
                while !done.load(Ordering::Relaxed) {
                    let name = format!("o{}", rng.below(16));
                    let mut txn = Transaction::new();
                    match rng.below(8) {
                        // Small overwrites (in place, deferred), larger ones (new space).
                        0..=4 => txn.write("c", &name, rng.below(1 << 20), pattern(1, 4096)),
                        5 => txn.write("c", &name, rng.below(1 << 20), pattern(2, 200_000)),
                        6 => txn.clone_object("c", &name, format!("o{}", rng.below(16))),
                        _ => txn
                            .remove("c", &name)
                            .write("c", &name, 0, pattern(3, 1 << 20)),
                    };
                    let _ = store.apply(&txn);
                }
            });
        }
        let mut scrubbed = 0;
        for _ in 0..40 {
            let report = store.scrub(&unlimited()).unwrap();
            assert!(
                report.bad_chunks.is_empty(),
                "seed {seed}: {:?}",
                report.bad_chunks
            );
            scrubbed += report.bytes_read;
        }
        done.store(true, Ordering::Relaxed);
        assert!(scrubbed >= 40 << 20, "{scrubbed}");
    });
    assert_eq!(store.counters().scrub_bad_chunks, 0);
    store.close().unwrap();
}

#[test]
fn scrub_keeps_to_its_byte_budget() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "o", &pattern(1, 8 << 20)).unwrap();
    let paced = ScrubOptions::default().with_bytes_per_second(16 << 20);
    let report = store.scrub(&paced).unwrap();
    assert!(report.bytes_read >= 8 << 20);
    // 8 MiB at 16 MiB/s cannot take less than half a second (a lower bound: sleeping only
    // ever makes it longer).
    assert!(
        report.elapsed.as_secs_f64() >= 0.45,
        "{:?} for {} bytes",
        report.elapsed,
        report.bytes_read
    );
    store.close().unwrap();
}

#[test]
fn a_read_the_device_fails_is_a_finding_and_the_scrub_goes_on() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    for name in ["a", "b", "c"] {
        store.put("c", name, &pattern(1, 100_000)).unwrap();
    }
    store.flush_deferred().unwrap();
    // The scrub's second device read (object "b": objects are scrubbed in name order) fails.
    let reads = pair.device.counters().reads;
    pair.device.set_faults(bstore::device::SimFaults {
        fail_read_number: Some(reads + 2),
        ..Default::default()
    });
    let report = store.scrub(&unlimited()).unwrap();
    assert_eq!(report.objects, 3, "the scrub went on: {report:?}");
    assert_eq!(report.bad_chunks.len(), 1, "{:?}", report.bad_chunks);
    assert_eq!(report.bad_chunks[0].object, "c/b");
    assert!(matches!(
        report.bad_chunks[0].problem,
        ChunkProblem::ReadFailed(_)
    ));
    store.close().unwrap();
}
