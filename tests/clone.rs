//! Goal: clones cost metadata only, the two objects never see each other's later writes, and
//! shared space comes back exactly when its last reference goes — with fsck checking every
//! shared blob's reference counts.

mod common;

use bstore::{Store, Transaction};
use common::{SimPair, manual_options, pattern};

const DEVICE: u64 = 64 << 20;
const OBJECT: usize = 4 << 20;

fn setup() -> (SimPair, Store, Vec<u8>) {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let data = pattern(1, OBJECT);
    store.put("c", "src", &data).unwrap();
    (pair, store, data)
}

fn clone(store: &Store, source: &str, target: &str) {
    store
        .apply(Transaction::new().clone_object("c", source, target))
        .unwrap();
}

fn write(store: &Store, object: &str, offset: usize, bytes: &[u8], expected: &mut [u8]) {
    store
        .apply(Transaction::new().write("c", object, offset as u64, bytes.to_vec()))
        .unwrap();
    expected[offset..offset + bytes.len()].copy_from_slice(bytes);
}

fn assert_fsck_clean(pair: &SimPair, store: Store) {
    store.close().unwrap();
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn a_clone_costs_metadata_only_and_statfs_shows_the_saving() {
    let (pair, store, data) = setup();
    let before = store.statfs().unwrap();
    let written = store.counters().data_bytes_written;
    clone(&store, "src", "dst");
    assert_eq!(store.get("c", "dst").unwrap(), data);
    assert_eq!(
        store.counters().data_bytes_written,
        written,
        "no data copied"
    );
    let after = store.statfs().unwrap();
    assert_eq!(
        after.allocated_bytes, before.allocated_bytes,
        "no space allocated"
    );
    assert_eq!(after.stored_bytes, before.stored_bytes + OBJECT as u64);
    let extents = store.fiemap("c", "dst").unwrap();
    assert!(extents.iter().all(|e| e.shared));
    assert_fsck_clean(&pair, store);
}

#[test]
fn writes_after_a_clone_stay_on_their_own_side() {
    let (pair, store, data) = setup();
    clone(&store, "src", "dst");
    let (mut source, mut copy) = (data.clone(), data);
    write(&store, "src", 4096, &pattern(2, 4096), &mut source);
    write(&store, "src", 100, &pattern(3, 10), &mut source); // small: never in place on shared
    write(&store, "dst", 1 << 20, &pattern(4, 70_000), &mut copy);
    write(&store, "dst", 5, &pattern(5, 1), &mut copy);
    store
        .apply(Transaction::new().zero("c", "dst", 2 << 20, 8192))
        .unwrap();
    copy[2 << 20..(2 << 20) + 8192].fill(0);
    store
        .apply(Transaction::new().truncate("c", "src", 3 << 20))
        .unwrap();
    source.truncate(3 << 20);
    assert_eq!(store.get("c", "src").unwrap(), source);
    assert_eq!(store.get("c", "dst").unwrap(), copy);
    store.flush_deferred().unwrap();
    assert_eq!(store.get("c", "src").unwrap(), source);
    assert_eq!(store.get("c", "dst").unwrap(), copy);
    let store = {
        store.close().unwrap();
        pair.open()
    };
    assert_eq!(store.get("c", "src").unwrap(), source);
    assert_eq!(store.get("c", "dst").unwrap(), copy);
    assert_fsck_clean(&pair, store);
}

#[test]
fn a_clone_of_a_clone_then_removing_all_frees_exactly_the_original_space() {
    let (pair, store, data) = setup();
    let empty = {
        let statfs = store.statfs().unwrap();
        statfs.available_bytes + statfs.allocated_bytes
    };
    clone(&store, "src", "a");
    clone(&store, "a", "b");
    assert_eq!(store.get("c", "b").unwrap(), data);
    let held = store.statfs().unwrap().allocated_bytes;
    store.remove("c", "src").unwrap();
    assert_eq!(
        store.statfs().unwrap().allocated_bytes,
        held,
        "still shared"
    );
    store.remove("c", "a").unwrap();
    assert_eq!(
        store.statfs().unwrap().allocated_bytes,
        held,
        "still shared"
    );
    assert_eq!(store.get("c", "b").unwrap(), data);
    store.remove("c", "b").unwrap();
    store.flush_deferred().unwrap();
    let statfs = store.statfs().unwrap();
    assert_eq!(statfs.allocated_bytes, 0);
    assert_eq!(statfs.available_bytes, empty, "every shared unit came back");
    assert_eq!(pair.kv.key_count(bstore::kv::KeySpace::SharedBlobs), 0);
    assert_fsck_clean(&pair, store);
}

#[test]
fn clone_range_into_the_middle_of_an_existing_object() {
    let (pair, store, data) = setup();
    let mut target = pattern(6, 300_000);
    store.put("c", "t", &target).unwrap();
    let txn = Transaction::new()
        .clone_range("c", "src", 10_000, 50_000, "t", 123_456)
        .clone();
    store.apply(&txn).unwrap();
    target[123_456..173_456].copy_from_slice(&data[10_000..60_000]);
    assert_eq!(store.get("c", "t").unwrap(), target);
    // Past the end of the target: the target grows; past the source's end copies zeros.
    let txn = Transaction::new()
        .clone_range("c", "src", OBJECT as u64 - 1000, 5000, "t", 400_000)
        .clone();
    store.apply(&txn).unwrap();
    target.resize(405_000, 0);
    target[400_000..401_000].copy_from_slice(&data[OBJECT - 1000..]);
    assert_eq!(store.get("c", "t").unwrap(), target);
    // Within one object, overlapping.
    let txn = Transaction::new()
        .clone_range("c", "t", 0, 200_000, "t", 100_000)
        .clone();
    store.apply(&txn).unwrap();
    let moved = target[..200_000].to_vec();
    target[100_000..300_000].copy_from_slice(&moved);
    assert_eq!(store.get("c", "t").unwrap(), target);
    assert_fsck_clean(&pair, store);
}

#[test]
fn a_clone_with_deferred_writes_pending_on_the_source() {
    let pair = SimPair::new(DEVICE);
    let options = manual_options(64 << 10);
    let store = Store::open_on(pair.device.clone(), pair.kv.clone(), &options).unwrap();
    store.create_collection("c").unwrap();
    let mut data = pattern(7, 256 << 10);
    store.put("c", "src", &data).unwrap();
    write(&store, "src", 8192, &pattern(8, 4096), &mut data);
    write(&store, "src", 77, &pattern(9, 100), &mut data);
    assert_eq!(store.counters().deferred_queued_records, 2);
    clone(&store, "src", "dst");
    assert_eq!(
        store.get("c", "dst").unwrap(),
        data,
        "the clone sees pending bytes"
    );
    let mut source = data.clone();
    write(&store, "src", 8192, &pattern(10, 4096), &mut source);
    assert_eq!(
        store.counters().writes_deferred,
        2,
        "no in-place write to a shared blob"
    );
    store.flush_deferred().unwrap();
    assert_eq!(store.get("c", "dst").unwrap(), data);
    assert_eq!(store.get("c", "src").unwrap(), source);
    assert_fsck_clean(&pair, store);
}

#[test]
fn clone_replaces_an_existing_target_with_xattrs_and_omap() {
    let (pair, store, data) = setup();
    let txn = Transaction::new()
        .setattr("c", "src", "a", b"1".to_vec())
        .omap_setkeys("c", "src", [(b"k".to_vec(), b"v".to_vec())])
        .omap_setheader("c", "src", b"h".to_vec())
        .clone();
    store.apply(&txn).unwrap();
    store.put("c", "dst", &pattern(11, 5000)).unwrap();
    let txn = Transaction::new()
        .setattr("c", "dst", "old", b"x".to_vec())
        .omap_setkeys("c", "dst", [(b"old".to_vec(), b"y".to_vec())])
        .clone();
    store.apply(&txn).unwrap();
    // An omap change to the source in the same transaction is part of the copy.
    let txn = Transaction::new()
        .omap_setkeys("c", "src", [(b"k2".to_vec(), b"v2".to_vec())])
        .clone_object("c", "src", "dst")
        .clone();
    store.apply(&txn).unwrap();
    assert_eq!(store.get("c", "dst").unwrap(), data);
    let attrs = store.getattrs("c", "dst").unwrap();
    assert_eq!(attrs.keys().collect::<Vec<_>>(), [b"a"]);
    let omap: Vec<_> = store
        .omap_iter("c", "dst", b"", None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        omap,
        [
            (b"k".to_vec(), b"v".to_vec()),
            (b"k2".to_vec(), b"v2".to_vec())
        ]
    );
    assert_eq!(
        store.omap_get_header("c", "dst").unwrap(),
        Some(b"h".to_vec())
    );
    assert_fsck_clean(&pair, store);
}

#[test]
fn a_thousand_clones_with_small_overwrites_keep_every_record_bounded() {
    let pair = SimPair::new(256 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "base", &pattern(12, 1 << 20)).unwrap();
    for i in 0..1000u64 {
        let name = format!("clone{i}");
        let offset = (i * 7919) % ((1 << 20) - 100);
        let txn = Transaction::new()
            .clone_object("c", "base", &name)
            .write("c", &name, offset, vec![i as u8; 100])
            .write("c", "base", (offset * 3) % ((1 << 20) - 10), vec![1; 10])
            .clone();
        store.apply(&txn).unwrap();
    }
    store.close().unwrap();
    let largest = |space| {
        let mut largest = 0;
        bstore::kv::Kv::scan(pair.kv.as_ref(), space, &[], None, &mut |_, value| {
            largest = largest.max(value.len());
            Ok(true)
        })
        .unwrap();
        largest
    };
    let onode = largest(bstore::kv::KeySpace::Onodes);
    let shard = largest(bstore::kv::KeySpace::ExtentShards);
    let shared = largest(bstore::kv::KeySpace::SharedBlobs);
    println!("largest onode {onode} B, shard {shard} B, shared-blob record {shared} B");
    assert!(onode <= 16 << 10, "onode of {onode} bytes");
    assert!(shard <= 16 << 10, "shard of {shard} bytes");
    assert!(shared <= 4 << 10, "shared-blob record of {shared} bytes");
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn fsck_reports_leaked_and_over_referenced_shared_units() {
    use bstore::format::shared::SharedBlobRecord;
    use bstore::kv::{Batch, Durability, KeySpace, Kv};
    let (pair, store, _) = setup();
    clone(&store, "src", "dst");
    store.close().unwrap();
    let mut records = Vec::new();
    pair.kv
        .scan(KeySpace::SharedBlobs, &[], None, &mut |key, value| {
            records.push((key.to_vec(), SharedBlobRecord::decode(value).unwrap()));
            Ok(true)
        })
        .unwrap();
    let (key, mut record) = records.swap_remove(0);
    record.refs[0] += 1; // a leaked reference
    record.refs[1] -= 1; // an over-referenced unit
    let mut batch = Batch::new();
    batch.put(KeySpace::SharedBlobs, key, record.encode());
    pair.kv.write(batch, Durability::Sync).unwrap();
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    let details: Vec<&str> = report
        .errors
        .iter()
        .filter(|e| e.check == "shared.refs")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(details.len(), 2, "{:?}", report.errors);
    assert!(details[0].contains("leaked") && details[1].contains("over-referenced"));
}
