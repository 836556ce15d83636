//! Goal: every error a transaction can fail with leaves the store exactly as it was; a full
//! device fails cleanly and works again after deletes; large fragmented objects shard their
//! extent maps so small writes stay small; many threads submit at once with per-collection
//! order kept and commits grouped.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bstore::format::keys::{self, KeySpace};
use bstore::kv::{Batch, Durability, Kv};
use bstore::{Error, FormatOptions, Store, Transaction};
use common::{SimPair, pattern};

/// Data and xattrs of every object, by `collection/object`.
type ObjectContents = BTreeMap<Vec<u8>, (Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>)>;

/// Everything observable about the store, to show a failed transaction changed nothing.
fn snapshot(store: &Store) -> (Vec<u8>, ObjectContents, bstore::Statfs) {
    let mut objects = BTreeMap::new();
    for collection in store.list_collections().unwrap() {
        for name in store.list_objects(&collection, None, 1000).unwrap() {
            let data = store.get(&collection, &name).unwrap();
            let attrs = store.getattrs(&collection, &name).unwrap();
            let mut key = collection.clone();
            key.push(b'/');
            key.extend_from_slice(&name);
            objects.insert(key, (data, attrs));
        }
    }
    let collections = store.list_collections().unwrap().concat();
    (collections, objects, store.statfs().unwrap())
}

fn populated() -> (SimPair, Store) {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.create_collection("d").unwrap();
    store.put("c", "existing", &pattern(1, 50_000)).unwrap();
    store.put("c", "other", b"other").unwrap();
    (pair, store)
}

fn assert_fails_unchanged(store: &Store, txn: &Transaction, expected: fn(&Error) -> bool) {
    let before = snapshot(store);
    let error = store.apply(txn).expect_err("the transaction must fail");
    assert!(expected(&error), "unexpected error {error}");
    assert_eq!(
        snapshot(store),
        before,
        "a failed transaction changed the store ({error})"
    );
}

#[test]
fn each_error_leaves_the_store_unchanged() {
    let (pair, store) = populated();
    let mut txn = Transaction::new();
    txn.write("c", "new", 0, b"x".to_vec())
        .setattr("c", "missing", "a", b"b".to_vec());
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::NotFound(_)));

    let mut txn = Transaction::new();
    txn.write("c", "new", 0, b"x".to_vec())
        .create_collection("d");
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::AlreadyExists(_)));

    let mut txn = Transaction::new();
    txn.truncate("c", "existing", 10)
        .rename("c", "existing", "other");
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::AlreadyExists(_)));

    let mut txn = Transaction::new();
    txn.create_collection("e").remove_collection("c");
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::NotEmpty(_)));

    let mut txn = Transaction::new();
    txn.remove("c", "other")
        .write("c", "existing", (1 << 32) - 1, vec![1, 2]);
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::TooBig { .. }));

    let free = store.statfs().unwrap().available_bytes;
    let mut txn = Transaction::new();
    txn.write("c", "small", 0, vec![1; 4096])
        .write("c", "huge", 0, vec![2; free as usize + 4096]);
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::NoSpace { .. }));

    let invalid: [fn(&mut Transaction) -> &mut Transaction; 6] = [
        |t| t.write("c", vec![b'n'; 2049], 0, b"x".to_vec()),
        |t| t.write(vec![b'c'; 257], "o", 0, b"x".to_vec()),
        |t| t.omap_rmkeyrange("c", "existing", "z", "a"),
        |t| t.setattr("c", "existing", "", b"v".to_vec()),
        |t| t.setattr("c", "existing", "big", vec![0; 70_000]),
        |t| t.rename("c", "existing", ""),
    ];
    for build in invalid {
        let mut txn = Transaction::new();
        txn.write("c", "existing", 0, b"changed".to_vec());
        build(&mut txn);
        assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::InvalidArgument(_)));
    }
    let mut txn = Transaction::new();
    for i in 0..40 {
        txn.setattr("c", "existing", format!("attr{i}"), vec![0; 2000]);
    }
    assert_fails_unchanged(&store, &txn, |e| matches!(e, Error::InvalidArgument(_)));
    store.close().unwrap();
    assert!(
        Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref())
            .unwrap()
            .is_clean()
    );
}

#[test]
fn a_corrupt_onode_is_a_corruption_error_and_fsck_finds_it() {
    let (pair, store) = populated();
    store.close().unwrap();
    let kv: &dyn Kv = pair.kv.as_ref();
    let collection_id = {
        let value = kv.get(KeySpace::Collections, b"c").unwrap().unwrap();
        bstore::format::records::CollectionRecord::decode(&value)
            .unwrap()
            .collection_id
    };
    let key = keys::onode_key(collection_id, b"existing");
    let mut value = kv.get(KeySpace::Onodes, &key).unwrap().unwrap();
    value[20] ^= 0xff;
    let mut batch = Batch::new();
    batch.put(KeySpace::Onodes, key, value);
    kv.write(batch, Durability::Sync).unwrap();

    let report = Store::fsck_on(pair.device.as_ref(), kv).unwrap();
    assert!(
        report.errors.iter().any(|e| e.check == "onode.decode"),
        "{:?}",
        report.errors
    );
    let store = pair.open();
    assert!(matches!(
        store.get("c", "existing"),
        Err(Error::Corruption(_))
    ));
    assert!(matches!(
        store.stat("c", "existing"),
        Err(Error::Corruption(_))
    ));
    assert_eq!(
        store.get("c", "other").unwrap(),
        b"other",
        "other objects still read"
    );
    store.close().unwrap();
}

#[test]
fn filling_the_device_to_the_last_unit_then_deleting_lets_writes_succeed() {
    let pair = SimPair::new(2 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut count = 0;
    loop {
        match store.put("c", format!("o{count}"), &pattern(count, 4096)) {
            Ok(()) => count += 1,
            Err(Error::NoSpace {
                available_bytes, ..
            }) => {
                assert_eq!(available_bytes, 0, "NoSpace only once every unit is used");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(store.statfs().unwrap().available_bytes, 0);
    assert!(matches!(
        store.put("c", "one-more", b"x"),
        Err(Error::NoSpace { .. })
    ));
    store.remove("c", "o7").unwrap();
    store.put("c", "one-more", b"fits now").unwrap();
    for i in (0..count).filter(|i| *i != 7) {
        assert_eq!(store.get("c", format!("o{i}")).unwrap(), pattern(i, 4096));
    }
    store.close().unwrap();
    let pair_store = pair.open();
    assert_eq!(pair_store.get("c", "one-more").unwrap(), b"fits now");
    pair_store.close().unwrap();
    assert!(
        Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref())
            .unwrap()
            .is_clean()
    );
}

#[test]
fn a_fragmented_object_is_sharded_and_a_small_write_rewrites_one_shard() {
    let pair = SimPair::new(256 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut expected = vec![0u8; 8 << 20];
    let mut txn = Transaction::new();
    for i in 0..2000u64 {
        let offset = i * 4096;
        let data = pattern(i, 3000);
        expected[offset as usize..offset as usize + 3000].copy_from_slice(&data);
        txn.write("c", "big", offset, data);
    }
    store.apply(&txn).unwrap();
    expected.truncate(1999 * 4096 + 3000);
    let before = store.counters().kv_bytes_written;
    let mut small = Transaction::new();
    small.write("c", "big", 4_000_000, vec![9; 4096]);
    store.apply(&small).unwrap();
    expected[4_000_000..4_004_096].fill(9);
    let written = store.counters().kv_bytes_written - before;
    // One or two shards (at most 4 KiB each), the onode with its shard list, stats, freelist.
    assert!(
        written < 16 << 10,
        "a 4 KiB write to a sharded object wrote {written} KV bytes"
    );
    assert_eq!(store.get("c", "big").unwrap(), expected);
    store.close().unwrap();
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    assert!(report.extent_shards > 20, "{} shards", report.extent_shards);
    let store = pair.open();
    assert_eq!(
        store.get("c", "big").unwrap(),
        expected,
        "shards read back after remount"
    );
    store
        .apply(Transaction::new().truncate("c", "big", 10_000))
        .unwrap();
    store.close().unwrap();
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(report.extent_shards, 0, "a small map moves back inline");
}

/// A store whose one object, c/big, is fragmented into 2,000 extents: a sharded extent map.
fn store_with_a_sharded_object() -> (SimPair, Store) {
    let pair = SimPair::new(256 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut fragmented = Transaction::new();
    for i in 0..2000u64 {
        fragmented.write("c", "big", i * 4096, pattern(i, 3000));
    }
    store.apply(&fragmented).unwrap();
    (pair, store)
}

/// The one onode record of a single-object store, as the KV store holds it.
fn only_onode_record(kv: &dyn Kv) -> Vec<u8> {
    let records = kv.scan_collect(KeySpace::Onodes, &[], None, 10).unwrap();
    assert_eq!(records.len(), 1, "one object");
    records[0].1.clone()
}

#[test]
fn a_small_overwrite_of_a_sharded_object_writes_its_shards_but_not_its_onode_record() {
    let (pair, store) = store_with_a_sharded_object();
    let mut expected = store.get("c", "big").unwrap();
    store.close().unwrap();
    let record = only_onode_record(pair.kv.as_ref());

    let store = pair.open();
    for (i, offset) in [40_960u64, 4_000_000, 409_600].into_iter().enumerate() {
        let data = pattern(100 + i as u64, 4096);
        expected[offset as usize..][..4096].copy_from_slice(&data);
        store
            .apply(Transaction::new().write("c", "big", offset, data))
            .unwrap();
    }
    assert_eq!(store.get("c", "big").unwrap(), expected);
    store.close().unwrap();
    assert_eq!(
        only_onode_record(pair.kv.as_ref()),
        record,
        "overwrites inside the object changed its shards only"
    );
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    let store = pair.open();
    assert_eq!(store.get("c", "big").unwrap(), expected, "after remount");

    // What the record carries still reaches it: a new size, an attribute.
    let end = expected.len() as u64;
    store
        .apply(Transaction::new().write("c", "big", end, vec![7; 10]))
        .unwrap();
    store
        .apply(Transaction::new().setattr("c", "big", "a", b"v".to_vec()))
        .unwrap();
    store.close().unwrap();
    assert_ne!(only_onode_record(pair.kv.as_ref()), record);
    let store = pair.open();
    assert_eq!(store.stat("c", "big").unwrap().size, end + 10);
    assert_eq!(store.getattr("c", "big", "a").unwrap(), Some(b"v".to_vec()));
    store.close().unwrap();
}

#[test]
fn renaming_a_sharded_object_away_and_back_in_one_transaction_keeps_its_record() {
    let (pair, store) = store_with_a_sharded_object();
    let expected = store.get("c", "big").unwrap();
    store
        .apply(
            Transaction::new()
                .rename("c", "big", "tmp")
                .rename("c", "tmp", "big"),
        )
        .unwrap();
    store.close().unwrap();
    only_onode_record(pair.kv.as_ref());
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    let store = pair.open();
    assert_eq!(store.get("c", "big").unwrap(), expected, "after remount");
    store.close().unwrap();
}

#[test]
fn the_onode_cache_stays_within_its_byte_budget() {
    let pair = SimPair::new(256 << 20);
    let options = bstore::OpenOptions::default().with_onode_cache_bytes(256 << 10);
    let store = Store::open_on(pair.device.clone(), pair.kv.clone(), &options).unwrap();
    store.create_collection("c").unwrap();
    for i in 0..3000u64 {
        let mut txn = Transaction::new();
        txn.write("c", format!("object-{i}"), 0, pattern(i, 100))
            .setattr("c", format!("object-{i}"), "_", vec![0; 200]);
        store.apply(&txn).unwrap();
        assert!(
            store.onode_cache_bytes() <= 256 << 10,
            "cache at {} bytes",
            store.onode_cache_bytes()
        );
    }
    for i in (0..3000u64).step_by(97) {
        assert_eq!(
            store.get("c", format!("object-{i}")).unwrap(),
            pattern(i, 100),
            "evicted objects reload"
        );
    }
    store.close().unwrap();
}

#[test]
fn one_onode_cache_budget_holds_across_two_hundred_collections() {
    let pair = SimPair::new(256 << 20);
    let budget = 512 << 10;
    let options = bstore::OpenOptions::default().with_onode_cache_bytes(budget);
    let store = Store::open_on(pair.device.clone(), pair.kv.clone(), &options).unwrap();
    let collections: Vec<String> = (0..200).map(|c| format!("pg-{c}")).collect();
    for name in &collections {
        store.create_collection(name).unwrap();
    }
    // Each object costs about 600 bytes of cache: 8,000 of them would hold 4.8 MB, nine times
    // the budget, and a budget per collection would have allowed 200 times it.
    for i in 0..40u64 {
        for (c, name) in collections.iter().enumerate() {
            let mut txn = Transaction::new();
            txn.write(name, format!("object-{i}"), 0, pattern(i + c as u64, 100))
                .setattr(name, format!("object-{i}"), "_", vec![0; 200]);
            store.apply(&txn).unwrap();
            assert!(
                store.onode_cache_bytes() <= budget,
                "cache at {} bytes after object {i} of {name}",
                store.onode_cache_bytes()
            );
        }
    }
    let before = store.counters();
    assert_eq!(before.onode_cache_budget_bytes, budget as u64);
    assert_eq!(before.onode_cache_bytes, store.onode_cache_bytes() as u64);
    // The first objects of every collection were evicted long ago: reading them reads the KV
    // store; reading one again at once is served from the cache.
    for (c, name) in collections.iter().enumerate().step_by(7) {
        assert_eq!(store.get(name, "object-0").unwrap(), pattern(c as u64, 100));
        assert_eq!(store.get(name, "object-0").unwrap(), pattern(c as u64, 100));
    }
    let after = store.counters();
    let reads = collections.iter().step_by(7).count() as u64;
    assert_eq!(after.onode_cache_misses - before.onode_cache_misses, reads);
    assert_eq!(after.onode_cache_hits - before.onode_cache_hits, reads);
    assert!(after.onode_cache_bytes <= budget as u64);
    for name in &collections[..100] {
        let mut txn = Transaction::new();
        for i in 0..40u64 {
            txn.remove(name, format!("object-{i}"));
        }
        txn.remove_collection(name);
        store.apply(&txn).unwrap();
    }
    assert!(store.onode_cache_bytes() <= budget);
    store.close().unwrap();
}

#[test]
fn small_appends_fill_unused_space_when_the_allocation_unit_is_large() {
    let format = FormatOptions::default().with_min_alloc_size(64 << 10);
    let pair = SimPair::with_format(64 << 20, &format);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut expected = Vec::new();
    for i in 0..16u64 {
        let chunk = pattern(i, 4096);
        store
            .apply(Transaction::new().write("c", "log", i * 4096, chunk.clone()))
            .unwrap();
        expected.extend_from_slice(&chunk);
    }
    let counters = store.counters();
    assert_eq!(
        counters.writes_new_space, 1,
        "only the first append allocates"
    );
    assert_eq!(counters.writes_fill_unused, 15);
    assert_eq!(store.stat("c", "log").unwrap().allocated_bytes, 64 << 10);
    assert_eq!(store.get("c", "log").unwrap(), expected);
    store.close().unwrap();
    assert!(
        Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref())
            .unwrap()
            .is_clean()
    );
    let store = pair.open();
    assert_eq!(store.get("c", "log").unwrap(), expected);
    store.close().unwrap();
}

#[test]
fn eight_threads_keep_per_collection_order_on_the_simulated_pair() {
    let pair = SimPair::new(256 << 20);
    let store = Arc::new(pair.open());
    let per_sync = concurrent_writers(&store);
    eprintln!("simulated pair: {per_sync:.1} transactions per KV sync");
    Arc::try_unwrap(store).unwrap().close().unwrap();
    assert!(
        Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref())
            .unwrap()
            .is_clean()
    );
}

#[cfg(feature = "rocksdb")]
#[test]
fn eight_threads_share_group_commits_on_the_real_pair() {
    let real = common::RealStore::new(256 << 20);
    let store = Arc::new(real.open());
    let per_sync = concurrent_writers(&store);
    eprintln!("real pair (io_uring + RocksDB): {per_sync:.1} transactions per KV sync");
    assert!(
        per_sync > 1.5,
        "8 concurrent writers should share syncs, got {per_sync:.2} per sync"
    );
    Arc::try_unwrap(store).unwrap().close().unwrap();
    assert!(Store::fsck(real.path()).unwrap().is_clean());
}

/// Eight threads each submit a stream of transactions (without waiting) to their own collection
/// and to a shared one; checks per-thread commit order and the final state. Returns the
/// average number of transactions per KV sync.
fn concurrent_writers(store: &Arc<Store>) -> f64 {
    const THREADS: usize = 8;
    const TRANSACTIONS: u64 = 60;
    store.create_collection("shared").unwrap();
    for t in 0..THREADS {
        store.create_collection(format!("own{t}")).unwrap();
    }
    let before = store.counters();
    let commit_order: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(store);
            let commit_order = Arc::clone(&commit_order);
            std::thread::spawn(move || submit_stream(&store, t, TRANSACTIONS, &commit_order))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let order = commit_order.lock().unwrap().clone();
    for t in 0..THREADS {
        let mine: Vec<u64> = order
            .iter()
            .filter(|(who, _)| *who == t)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            mine,
            (0..TRANSACTIONS).collect::<Vec<_>>(),
            "thread {t} committed out of order"
        );
        let log = store.get(format!("own{t}"), "log").unwrap();
        let expected: Vec<u8> = (0..TRANSACTIONS).flat_map(u64::to_le_bytes).collect();
        assert_eq!(log, expected, "thread {t}'s log");
        let last = store
            .omap_get_values("shared", format!("from{t}"), [b"last"])
            .unwrap();
        assert_eq!(last[&b"last"[..]], (TRANSACTIONS - 1).to_le_bytes());
    }
    let after = store.counters();
    let transactions = after.transactions_committed - before.transactions_committed;
    let syncs = after.group_commits - before.group_commits;
    assert_eq!(transactions, THREADS as u64 * TRANSACTIONS);
    transactions as f64 / syncs as f64
}

fn submit_stream(
    store: &Store,
    t: usize,
    count: u64,
    commit_order: &Arc<Mutex<Vec<(usize, u64)>>>,
) {
    let (sender, receiver) = crossbeam::channel::unbounded();
    for sequence in 0..count {
        let mut txn = Transaction::new();
        let value = sequence.to_le_bytes().to_vec();
        txn.write(format!("own{t}"), "log", sequence * 8, value.clone())
            .omap_setkeys(
                format!("own{t}"),
                "log",
                [(b"last".to_vec(), value.clone())],
            )
            .touch("shared", format!("from{t}"))
            .omap_setkeys("shared", format!("from{t}"), [(b"last".to_vec(), value)]);
        let commit_order = Arc::clone(commit_order);
        let sender = sender.clone();
        store
            .submit(&txn, move |result| {
                result.unwrap();
                commit_order.lock().unwrap().push((t, sequence));
                sender.send(()).unwrap();
            })
            .unwrap();
    }
    for _ in 0..count {
        receiver.recv().unwrap();
    }
}

#[test]
fn a_commit_callback_may_ask_for_statfs_and_counters() {
    // Callbacks run on a commit thread; statfs and counters wait for the commits under way,
    // which would wait for the callback itself.
    let pair = SimPair::new(64 << 20);
    let store =
        Arc::new(Store::open_on(pair.device.clone(), pair.kv.clone(), &pair.options).unwrap());
    store.create_collection("c").unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    for i in 0..50u64 {
        let inside = Arc::clone(&store);
        let sender = sender.clone();
        let txn = Transaction::new()
            .write("c", format!("o{}", i % 5), i * 4096, pattern(i, 4096))
            .clone();
        store
            .submit(&txn, move |result| {
                result.unwrap();
                let statfs = inside.statfs().unwrap();
                let committed = inside.counters().transactions_committed;
                sender.send((statfs.stored_bytes, committed)).unwrap();
            })
            .unwrap();
    }
    for _ in 0..50 {
        receiver
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a callback calling statfs stalled the commits");
    }
    assert!(store.statfs().unwrap().stored_bytes > 0);
    assert_eq!(store.counters().transactions_committed, 50 + 1);
}
