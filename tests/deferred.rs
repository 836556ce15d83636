//! Goal: small overwrites of live data take the deferred path exactly when the rules say so,
//! their bytes are readable at once, reach the device in batches, survive a crash through
//! replay, keep freed space from being reused too early, and an I/O error anywhere on the way
//! poisons the store without losing anything acknowledged.

mod common;

use std::sync::Arc;

use bstore::device::{CrashMode, SimDevice, SimFaults};
use bstore::kv::{KeySpace, MemKvFaults};
use bstore::{Error, OpenOptions, Store, Transaction};
use common::{SimPair, manual_options, pattern};

const DEVICE: u64 = 32 << 20;

fn open(pair: &SimPair, options: &OpenOptions) -> Store {
    Store::open_on(pair.device.clone(), pair.kv.clone(), options).unwrap()
}

/// A store with one 64 KiB object `c/o` holding `pattern(1, 64 KiB)`.
fn with_object(options: &OpenOptions) -> (SimPair, Store, Vec<u8>) {
    let pair = SimPair::new(DEVICE);
    let store = open(&pair, options);
    store.create_collection("c").unwrap();
    let data = pattern(1, 64 << 10);
    store.put("c", "o", &data).unwrap();
    (pair, store, data)
}

fn overwrite(store: &Store, expected: &mut [u8], offset: usize, bytes: &[u8]) {
    let txn = Transaction::new()
        .write("c", "o", offset as u64, bytes.to_vec())
        .clone();
    store.apply(&txn).unwrap();
    expected[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// The pair as a power cut would leave it: device writes not flushed are lost, the KV store
/// keeps what was synced.
fn crash(pair: &SimPair) -> SimPair {
    let image = pair.device.crash(CrashMode::DropUnflushed);
    SimPair {
        device: Arc::new(SimDevice::from_image(image, DEVICE, 512, false)),
        kv: Arc::new(pair.kv.crash(CrashMode::DropUnflushed)),
        options: pair.options.clone(),
    }
}

#[test]
fn the_decision_follows_size_alignment_and_threshold() {
    // SSD defaults: only sub-chunk overwrites are deferred.
    let (_pair, store, mut expected) = with_object(&manual_options(0));
    overwrite(&store, &mut expected, 8192, &[7; 4096]);
    assert_eq!(
        store.counters().writes_deferred,
        0,
        "aligned 4 KiB: new space"
    );
    overwrite(&store, &mut expected, 100, &[8; 1000]);
    assert_eq!(store.counters().writes_deferred, 1, "1000 bytes: deferred");
    overwrite(&store, &mut expected, 4000, &[9; 200]);
    assert_eq!(store.counters().writes_deferred, 2, "across two chunks");
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();

    // HDD threshold: anything under 64 KiB over live data is deferred; 64 KiB is not.
    let (_pair, store, mut expected) = with_object(&manual_options(64 << 10));
    overwrite(&store, &mut expected, 8192, &[7; 4096]);
    overwrite(&store, &mut expected, 0, &[6; 32 << 10]);
    assert_eq!(store.counters().writes_deferred, 2);
    overwrite(&store, &mut expected, 0, &[5; 64 << 10]);
    assert_eq!(store.counters().writes_deferred, 2, "64 KiB: new space");
    // A write into a hole is never deferred, whatever its size.
    store
        .apply(Transaction::new().write("c", "o", 1 << 20, vec![1; 100]))
        .unwrap();
    assert_eq!(store.counters().writes_deferred, 2, "a hole: new space");
    store.close().unwrap();
}

#[test]
fn deferred_bytes_are_readable_before_and_after_they_are_applied() {
    let (pair, store, mut expected) = with_object(&manual_options(64 << 10));
    overwrite(&store, &mut expected, 5000, &pattern(2, 3000));
    overwrite(&store, &mut expected, 6000, &pattern(3, 100)); // same chunk, read-modify-write
    let counters = store.counters();
    assert_eq!(counters.deferred_queued_records, 2);
    assert_eq!(
        store.stat("c", "o").unwrap().deferred_bytes,
        4096,
        "one chunk, twice"
    );
    assert_eq!(store.get("c", "o").unwrap(), expected, "from the overlay");

    let writes_before = pair.device.counters().writes;
    let records_before = store.counters().journal_records;
    store.flush_deferred().unwrap();
    let counters = store.counters();
    assert_eq!(counters.deferred_queued_records, 0);
    assert_eq!(counters.deferred_records_applied, 2);
    let journal_writes = counters.journal_records - records_before;
    assert!(journal_writes >= 1, "the records' deletion is journaled");
    assert_eq!(
        pair.device.counters().writes - writes_before - journal_writes,
        1,
        "coalesced into one device write"
    );
    assert_eq!(store.stat("c", "o").unwrap().deferred_bytes, 0);
    assert_eq!(pair.kv.key_count(KeySpace::Deferred), 0, "records deleted");
    assert_eq!(store.get("c", "o").unwrap(), expected, "from the device");
    store.close().unwrap();
    let store = open(&pair, &manual_options(64 << 10));
    assert_eq!(store.get("c", "o").unwrap(), expected, "after a remount");
    store.close().unwrap();
}

#[test]
fn a_crash_before_the_apply_is_repaired_by_replay_at_mount() {
    let (pair, store, mut expected) = with_object(&manual_options(64 << 10));
    overwrite(&store, &mut expected, 12288, &pattern(4, 4096));
    overwrite(&store, &mut expected, 777, &pattern(5, 10));
    let survivor = crash(&pair);
    drop(store);
    let report = Store::fsck_on(survivor.device.as_ref(), survivor.kv.as_ref()).unwrap();
    assert_eq!(
        report.deferred_records, 2,
        "fsck reports the pending records (from the journal: the KV store lost them)"
    );
    assert!(report.journal.unwrap().replay.records >= 2);

    let store = open(&survivor, &manual_options(64 << 10));
    assert_eq!(store.counters().deferred_records_replayed, 2);
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();
    // Replay is idempotent: the records are gone and the bytes stay.
    let store = open(&survivor, &manual_options(64 << 10));
    assert_eq!(store.counters().deferred_records_replayed, 0);
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();
    let report = Store::fsck_on(survivor.device.as_ref(), survivor.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn replaying_a_record_twice_leaves_the_same_bytes() {
    let (pair, store, mut expected) = with_object(&manual_options(64 << 10));
    overwrite(&store, &mut expected, 0, &pattern(6, 2048));
    let first = crash(&pair);
    drop(store);
    // Keep a copy of the KV state holding the record, replay it once, then replay the same
    // record again from the copy, onto the device the first replay wrote.
    let kv_with_record = Arc::new(first.kv.survivor(CrashMode::KeepUnflushed));
    let store = open(&first, &manual_options(64 << 10));
    assert_eq!(store.counters().deferred_records_replayed, 1);
    store.close().unwrap();
    let image = first.device.durable_image();
    let twice = SimPair {
        device: Arc::new(SimDevice::from_image(image, DEVICE, 512, false)),
        kv: kv_with_record,
        options: first.options.clone(),
    };
    let store = open(&twice, &manual_options(64 << 10));
    assert_eq!(store.counters().deferred_records_replayed, 1);
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();
}

#[test]
fn space_freed_under_a_pending_record_is_not_reused_until_it_is_applied() {
    let (_pair, store, mut expected) = with_object(&manual_options(64 << 10));
    let extents_before = store.fiemap("c", "o").unwrap();
    overwrite(&store, &mut expected, 4096, &pattern(7, 100));
    store.remove("c", "o").unwrap();
    // New data must not land where the pending record will write.
    store.put("c", "p", &pattern(8, 64 << 10)).unwrap();
    let reused = store.fiemap("c", "p").unwrap().iter().any(|e| {
        extents_before.iter().any(|old| {
            e.device_offset < old.device_offset + old.length
                && old.device_offset < e.device_offset + e.length
        })
    });
    assert!(
        !reused,
        "space under a pending deferred write was reallocated"
    );
    assert!(store.counters().freed_bytes_waiting >= 64 << 10);
    store.flush_deferred().unwrap();
    assert_eq!(store.counters().freed_bytes_waiting, 0);
    assert_eq!(store.get("c", "p").unwrap(), pattern(8, 64 << 10));
    store.close().unwrap();
}

#[test]
fn a_full_device_applies_pending_records_to_find_freed_space() {
    let pair = SimPair::new(4 << 20);
    let store = open(&pair, &manual_options(64 << 10));
    store.create_collection("c").unwrap();
    let available = store.statfs().unwrap().available_bytes;
    let big = pattern(9, available as usize);
    store.put("c", "big", &big).unwrap();
    store
        .apply(Transaction::new().write("c", "big", 100, vec![1; 10]))
        .unwrap();
    store.remove("c", "big").unwrap();
    assert_eq!(
        store.statfs().unwrap().available_bytes,
        0,
        "held for the record"
    );
    store.put("c", "again", &big).unwrap();
    assert_eq!(store.get("c", "again").unwrap(), big);
    store.close().unwrap();
}

#[test]
fn a_failed_deferred_apply_poisons_and_replay_recovers() {
    let (pair, store, mut expected) = with_object(&manual_options(64 << 10));
    overwrite(&store, &mut expected, 8192, &pattern(10, 4096));
    let writes = pair.device.counters().writes;
    pair.device.set_faults(SimFaults {
        fail_write_number: Some(writes + 1),
        ..SimFaults::default()
    });
    assert!(store.flush_deferred().is_err());
    assert!(matches!(store.get("c", "o"), Err(Error::Poisoned(_))));
    assert!(matches!(
        store.put("c", "later", b"x"),
        Err(Error::Poisoned(_))
    ));
    assert!(store.close().is_err());
    recover_and_check(&pair, &expected);
}

#[test]
fn a_failed_flush_of_a_deferred_batch_poisons_and_replay_recovers() {
    let (pair, store, mut expected) = with_object(&manual_options(64 << 10));
    overwrite(&store, &mut expected, 0, &pattern(11, 300));
    let flushes = pair.device.counters().flushes;
    pair.device.set_faults(SimFaults {
        fail_flush_number: Some(flushes + 1),
        ..SimFaults::default()
    });
    assert!(store.flush_deferred().is_err());
    assert!(
        matches!(store.stat("c", "o"), Err(Error::Poisoned(_))) || store.get("c", "o").is_err()
    );
    assert!(store.close().is_err());
    assert_eq!(pair.kv.key_count(KeySpace::Deferred), 1, "the record stays");
    recover_and_check(&pair, &expected);
}

#[test]
fn a_failed_journal_flush_poisons_and_nothing_unacknowledged_appears() {
    let (pair, store, expected) = with_object(&manual_options(64 << 10));
    let flushes = pair.device.counters().flushes;
    pair.device.set_faults(SimFaults {
        fail_flush_number: Some(flushes + 1),
        ..SimFaults::default()
    });
    let txn = Transaction::new()
        .write("c", "o", 0, vec![0xee; 100])
        .clone();
    assert!(store.apply(&txn).is_err());
    assert!(matches!(store.get("c", "o"), Err(Error::Poisoned(_))));
    drop(store);
    // The record may or may not have reached the media (the flush failed); a crash that keeps
    // it must show it whole, and one that drops it the acknowledged state: never a mix.
    let kept = |mode| {
        let image = pair.device.survivor(mode);
        let survivor = SimPair {
            device: Arc::new(SimDevice::from_image(image, DEVICE, 512, false)),
            kv: Arc::new(pair.kv.survivor(CrashMode::DropUnflushed)),
            options: pair.options.clone(),
        };
        let store = open(&survivor, &manual_options(64 << 10));
        let seen = store.get("c", "o").unwrap();
        store.close().unwrap();
        seen
    };
    assert_eq!(kept(CrashMode::DropUnflushed), expected);
    let mut with_write = expected.clone();
    with_write[..100].fill(0xee);
    assert_eq!(kept(CrashMode::KeepUnflushed), with_write);
}

#[test]
fn a_failed_kv_sync_of_a_store_without_a_journal_poisons_and_nothing_unacknowledged_appears() {
    let pair = SimPair::with_format(
        DEVICE,
        &bstore::FormatOptions::default().with_journal(bstore::JournalSize::Disabled),
    );
    let store = open(&pair, &manual_options(64 << 10));
    store.create_collection("c").unwrap();
    let expected = pattern(1, 64 << 10);
    store.put("c", "o", &expected).unwrap();
    let syncs = pair.kv.synced_writes();
    pair.kv.set_faults(MemKvFaults {
        fail_sync_number: Some(syncs + 1),
    });
    let txn = Transaction::new()
        .write("c", "o", 0, vec![0xee; 100])
        .clone();
    assert!(store.apply(&txn).is_err());
    assert!(matches!(store.get("c", "o"), Err(Error::Poisoned(_))));
    drop(store);
    // The failed sync's batch may or may not survive (as with a real failed fsync); a crash
    // that drops it must show the acknowledged state.
    let survivor = crash(&pair);
    let store = open(&survivor, &manual_options(64 << 10));
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();
}

/// Remounts what a crash would leave in each crash mode (the device with its unflushed writes
/// dropped, kept or torn; the KV store with none, all or some of its unsynced batches), and
/// checks the acknowledged bytes and fsck.
fn recover_and_check(pair: &SimPair, expected: &[u8]) {
    for mode in [
        CrashMode::DropUnflushed,
        CrashMode::KeepUnflushed,
        CrashMode::Random(7),
    ] {
        // Each mode leaves its own image: the failed write's torn or whole bytes, or none.
        let image = pair.device.survivor(mode);
        let device = Arc::new(SimDevice::from_image(image, DEVICE, 512, false));
        let kv = Arc::new(pair.kv.survivor(mode));
        let survivor = SimPair {
            device,
            kv,
            options: pair.options.clone(),
        };
        let store = open(&survivor, &manual_options(64 << 10));
        assert_eq!(store.get("c", "o").unwrap(), expected, "{mode:?}");
        store.close().unwrap();
        let report = Store::fsck_on(survivor.device.as_ref(), survivor.kv.as_ref()).unwrap();
        assert!(report.is_clean(), "{:?}", report.errors);
    }
}

#[test]
fn overlapping_writes_of_one_transaction_replay_in_order() {
    let (pair, store, mut expected) = with_object(&manual_options(64 << 10));
    let first = pattern(12, 1575);
    let second = pattern(13, 4096);
    let txn = Transaction::new()
        .write("c", "o", 20480, first.clone())
        .write("c", "o", 19628, second.clone())
        .clone();
    store.apply(&txn).unwrap();
    expected[20480..20480 + first.len()].copy_from_slice(&first);
    expected[19628..19628 + second.len()].copy_from_slice(&second);
    let survivor = crash(&pair);
    drop(store);
    let store = open(&survivor, &manual_options(64 << 10));
    assert_eq!(store.counters().deferred_records_replayed, 1);
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();
}

#[test]
fn racing_reads_see_whole_transactions_and_no_checksum_errors() {
    // Each transaction writes one value over [0, 4K) (in place, deferred) and over
    // [128K, 256K) (new space). A reader must see both halves from the same transaction, every
    // byte of them: never a mix, never a checksum error from data installed before its bytes
    // were readable. The writer keeps going until the reader has raced it many times.
    const READS_MIN: u64 = 200;
    let pair = SimPair::new(1 << 30);
    let store = Arc::new(open(&pair, &pair.options));
    store.create_collection("c").unwrap();
    store.put("c", "o", &vec![0u8; 256 << 10]).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (store, done, reads) = (Arc::clone(&store), Arc::clone(&done), Arc::clone(&reads));
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let data = store.get("c", "o").expect("a racing read fails");
                let value = data[0];
                let count = reads.load(std::sync::atomic::Ordering::Relaxed);
                assert!(
                    data[..4096].iter().all(|b| *b == value)
                        && data[4096..128 << 10].iter().all(|b| *b == 0)
                        && data[128 << 10..].iter().all(|b| *b == value),
                    "half a transaction after {count} reads"
                );
                reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let mut round = 0u32;
    while round < 600 || reads.load(std::sync::atomic::Ordering::Relaxed) < READS_MIN {
        round += 1;
        let value = (round % 250) as u8 + 1;
        let txn = Transaction::new()
            .write("c", "o", 0, vec![value; 4096])
            .write("c", "o", 128 << 10, vec![value; 128 << 10])
            .clone();
        store.submit(&txn, |result| result.unwrap()).unwrap();
        assert!(round < 1_000_000, "the reader made no progress");
    }
    store.flush_deferred().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(std::sync::atomic::Ordering::Relaxed) >= READS_MIN);
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

#[test]
fn a_full_deferred_queue_holds_commits_back_without_stalling_them() {
    // Room for about one record: almost every commit finds the queue full, and the committer
    // must wait for the applier (which needs the journal) before it takes the journal itself.
    let pair = SimPair::new(DEVICE);
    let options = OpenOptions::default()
        .with_prefer_deferred_size(Some(64 << 10))
        .with_deferred(
            bstore::DeferredPolicy::default()
                .with_batch_records(2)
                .with_queued_bytes_max(4096),
        );
    let store = Arc::new(open(&pair, &options));
    store.create_collection("c").unwrap();
    let objects = 4;
    for t in 0..objects {
        store
            .put("c", format!("o{t}"), &pattern(t, 64 << 10))
            .unwrap();
    }
    let (done, finished) = std::sync::mpsc::channel();
    let writers: Vec<_> = (0..objects)
        .map(|t| {
            let done = done.clone();
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut expected = pattern(t, 64 << 10);
                for i in 0..200u64 {
                    let offset = (i * 4096) % (64 << 10);
                    let bytes = pattern(t * 1000 + i, 4096);
                    expected[offset as usize..][..4096].copy_from_slice(&bytes);
                    let txn = Transaction::new()
                        .write("c", format!("o{t}"), offset, bytes)
                        .clone();
                    store.apply(&txn).unwrap();
                }
                done.send(()).unwrap();
                expected
            })
        })
        .collect();
    for _ in 0..objects {
        // A stall fails the test rather than hanging it.
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("commits stalled behind a full deferred queue");
    }
    for (t, writer) in writers.into_iter().enumerate() {
        let expected = writer.join().unwrap();
        assert_eq!(store.get("c", format!("o{t}")).unwrap(), expected);
    }
    assert!(store.counters().writes_deferred >= 800);
    Arc::into_inner(store).unwrap().close().unwrap();
}
