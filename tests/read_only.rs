//! Goal: a store opened read-only shows exactly what is committed — deferred writes not yet
//! applied included — writes nothing to the device or the KV store, refuses every change with
//! `ReadOnly`, and works beside a process that has the store open for writing. Also the small
//! things an operator trips on when opening: a device still held by a process that just died is
//! waited for a bounded moment, and a poisoned store says why once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bstore::device::{Access, BlockDevice, CrashMode, SimDevice, SimFaults};
use bstore::kv::{KeySpace, Kv};
use bstore::{Error, OpenOptions, Store, Transaction};
use common::{RealStore, SimPair, manual_options, pattern};

#[test]
fn a_read_only_mount_overlays_pending_deferred_writes_and_writes_nothing() {
    let pair = SimPair::new(32 << 20);
    let options = manual_options(64 << 10);
    let store = Store::open_on(pair.device.clone(), pair.kv.clone(), &options).unwrap();
    store.create_collection("c").unwrap();
    let mut expected = pattern(1, 64 << 10);
    store.put("c", "o", &expected).unwrap();
    let overwrite = pattern(2, 4096);
    store
        .apply(Transaction::new().write("c", "o", 8192, overwrite.clone()))
        .unwrap();
    expected[8192..8192 + 4096].copy_from_slice(&overwrite);
    assert_eq!(store.counters().deferred_queued_records, 1);
    // A crash leaves the record in the journal (the KV store lost it with its memtables) and
    // the old bytes on the device.
    let pair = crashed(&pair);
    drop(store);
    let device_writes = pair.device.counters().writes;
    let kv_bytes = pair.kv.bytes_written();
    let kv_records = pair.kv.key_count(KeySpace::Deferred);

    let inspector = Store::open_read_only_on(pair.device.clone(), pair.kv.clone(), &options)
        .expect("read-only mount");
    assert_eq!(inspector.access(), Access::ReadOnly);
    assert_eq!(
        inspector.get("c", "o").unwrap(),
        expected,
        "the committed bytes, from the overlay"
    );
    assert_eq!(inspector.stat("c", "o").unwrap().deferred_bytes, 4096);
    assert_eq!(inspector.counters().deferred_queued_records, 1);
    assert!(matches!(
        inspector.put("c", "p", b"no"),
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(
        inspector.flush_deferred(),
        Err(Error::ReadOnly(_))
    ));
    inspector.close().unwrap();
    assert_eq!(
        pair.device.counters().writes,
        device_writes,
        "no device write"
    );
    assert_eq!(pair.kv.bytes_written(), kv_bytes, "no KV write");
    assert_eq!(
        pair.kv.key_count(KeySpace::Deferred),
        kv_records,
        "nothing replayed into the KV store"
    );

    // A read-write mount still finds the record to replay, and the same bytes.
    let store = Store::open_on(pair.device.clone(), pair.kv.clone(), &options).unwrap();
    assert_eq!(store.counters().deferred_records_replayed, 1);
    assert_eq!(store.get("c", "o").unwrap(), expected);
    store.close().unwrap();
}

/// The pair as a power cut would leave it: unflushed device writes and unsynced batches lost.
fn crashed(pair: &SimPair) -> SimPair {
    let size = pair.device.info().size_bytes;
    SimPair {
        device: Arc::new(SimDevice::from_image(
            pair.device.crash(CrashMode::DropUnflushed),
            size,
            512,
            false,
        )),
        kv: Arc::new(pair.kv.crash(CrashMode::DropUnflushed)),
        options: pair.options.clone(),
    }
}

#[test]
fn a_read_only_open_works_beside_the_writer_and_shows_the_state_it_opened() {
    let real = RealStore::new(128 << 20);
    let writer = real.open();
    writer.create_collection("pg").unwrap();
    writer.put("pg", "first", &pattern(3, 100_000)).unwrap();
    writer
        .apply(Transaction::new().setattr("pg", "first", "_", b"info".to_vec()))
        .unwrap();

    let inspector = Store::open_read_only(real.path(), &OpenOptions::default())
        .expect("a read-only open beside the writer");
    assert_eq!(inspector.get("pg", "first").unwrap(), pattern(3, 100_000));
    assert_eq!(
        inspector.getattr("pg", "first", "_").unwrap(),
        Some(b"info".to_vec())
    );
    assert_eq!(inspector.statfs().unwrap().object_count, 1);
    assert_eq!(inspector.label(), writer.label());

    writer.put("pg", "second", b"later").unwrap();
    assert!(
        matches!(inspector.get("pg", "second"), Err(Error::NotFound(_))),
        "the inspector keeps the state of the moment it opened"
    );
    assert!(matches!(
        inspector.put("pg", "third", b"x"),
        Err(Error::ReadOnly(_))
    ));
    drop(inspector);
    writer.close().unwrap();
    let store = real.open();
    assert_eq!(store.get("pg", "second").unwrap(), b"later");
    store.close().unwrap();
}

#[test]
fn fsck_refuses_a_live_store_plainly_and_checks_a_stopped_one() {
    let real = RealStore::new(64 << 20);
    let writer = real.open();
    match Store::fsck(real.path()) {
        Err(Error::Busy(message)) => {
            assert!(message.contains("stopped store"), "{message}")
        }
        other => panic!("fsck of a live store should be Busy, got {other:?}"),
    }
    writer.close().unwrap();
    assert!(Store::fsck(real.path()).unwrap().is_clean());
}

#[test]
fn a_writable_open_waits_a_moment_for_a_holder_that_lets_go() {
    // A process killed a moment ago keeps its io_uring files (and their locks) for up to a few
    // hundred milliseconds; a lock on the block file alone stands in for that here.
    let real = RealStore::new(64 << 20);
    let holder = std::fs::File::open(real.block()).unwrap();
    holder.lock().unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(holder);
    });
    let began = Instant::now();
    let store = real.open();
    let waited = began.elapsed();
    released.join().unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "it waited for the lock: {waited:?}"
    );
    store.close().unwrap();

    let holder = std::fs::File::open(real.block()).unwrap();
    holder.lock().unwrap();
    let began = Instant::now();
    match Store::open(real.path(), &OpenOptions::default()) {
        Err(Error::Busy(_)) => {}
        other => panic!("a holder that stays is Busy, got {other:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "the wait is bounded"
    );
}

#[test]
fn a_poisoned_store_gives_its_reason_once() {
    let pair = SimPair::new(32 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let writes = pair.device.counters().writes;
    pair.device.set_faults(SimFaults {
        fail_write_number: Some(writes + 1),
        ..SimFaults::default()
    });
    let failed = store.put("c", "o", &pattern(4, 8192)).unwrap_err();
    let later = store.put("c", "p", b"x").unwrap_err();
    assert!(matches!(later, Error::Poisoned(_)), "{later:?}");
    for error in [failed, later] {
        let message = error.to_string();
        assert!(
            message.contains("injected"),
            "the cause is named: {message}"
        );
        assert!(
            message.matches("poisoned").count() <= 1,
            "no nesting: {message}"
        );
    }
    drop(store);
}

#[test]
fn a_read_only_rocksdb_refuses_writes() {
    let real = RealStore::new(64 << 20);
    let kv = bstore::kv::RocksKv::open(
        &real.path().join("db"),
        None,
        bstore::kv::KvOpenMode::ReadOnly,
    )
    .unwrap();
    let kv: Arc<dyn Kv> = Arc::new(kv);
    let mut batch = bstore::kv::Batch::new();
    batch.put(KeySpace::Super, b"x".to_vec(), b"y".to_vec());
    assert!(matches!(
        kv.write(batch, bstore::kv::Durability::Sync),
        Err(Error::ReadOnly(_))
    ));
}
