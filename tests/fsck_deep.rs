//! Deep fsck: every referenced byte read back and checked against the checksums the metadata
//! records. Shallow fsck cannot see a flipped data byte or a flipped checksum; deep fsck must
//! name the object, its offset and the device offset of each bad chunk, and nothing else.

mod common;

use bstore::device::{CrashMode, SimDevice};
use bstore::format::keys::KeySpace;
use bstore::kv::{Batch, Durability, Kv};
use bstore::{ChunkProblem, FsckOptions, FsckReport, Store, Transaction};
use common::{SimPair, manual_options, pattern};

fn deep_fsck(device: &SimDevice, kv: &dyn Kv) -> FsckReport {
    let options = FsckOptions::default().with_deep(true);
    Store::fsck_on_with(device, kv, options).expect("deep fsck runs")
}

/// A closed store with a large object, a small one, an overwritten one and a clone.
fn populated() -> SimPair {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "large", &pattern(1, 3 << 20)).unwrap();
    store.put("c", "small", &pattern(2, 5000)).unwrap();
    store.put("c", "patched", &pattern(3, 256 << 10)).unwrap();
    let txn = Transaction::new()
        .write("c", "patched", 70_000, pattern(4, 9000))
        .clone_object("c", "large", "large-clone")
        .clone();
    store.apply(&txn).unwrap();
    store.close().unwrap();
    pair
}

/// The device offset of `object`'s byte at `object_offset`, found while the store is mounted.
fn device_offset_of(pair: &SimPair, object: &str, object_offset: u64) -> u64 {
    let store = pair.open();
    let extent = store
        .fiemap("c", object)
        .unwrap()
        .into_iter()
        .find(|e| (e.logical_offset..e.logical_offset + e.length).contains(&object_offset))
        .expect("the offset holds data");
    store.close().unwrap();
    extent.device_offset + (object_offset - extent.logical_offset)
}

#[test]
fn deep_fsck_of_a_healthy_store_reads_every_object_and_finds_nothing() {
    let pair = populated();
    let report = deep_fsck(&pair.device, pair.kv.as_ref());
    assert!(report.is_clean(), "{:?}", report.errors);
    let deep = report.deep.expect("a deep report");
    assert!(deep.bad_chunks.is_empty());
    // The clone shares the large object's blobs: read once, not twice.
    let stored = (3 << 20) + 5000 + (256 << 10);
    assert!(
        deep.bytes_read >= stored && deep.bytes_read < stored + (3 << 20),
        "{} bytes read for {stored} stored",
        deep.bytes_read
    );
    assert!(deep.chunks_verified >= deep.bytes_read / (64 << 10));
    assert!(
        deep.reads < deep.chunks_verified,
        "neighbouring chunks share reads"
    );
    let shallow = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(shallow.deep.is_none(), "a shallow fsck reads no data");
}

#[test]
fn deep_fsck_names_the_object_and_offsets_of_a_flipped_data_byte() {
    let pair = populated();
    let target = device_offset_of(&pair, "small", 4500);
    pair.device.corrupt_bit(target, 3);
    let shallow = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(shallow.is_clean(), "shallow fsck reads no data");

    let report = deep_fsck(&pair.device, pair.kv.as_ref());
    let deep = report.deep.as_ref().unwrap();
    assert_eq!(deep.bad_chunks.len(), 1, "{:?}", deep.bad_chunks);
    let bad = &deep.bad_chunks[0];
    assert_eq!(bad.object, "c/small");
    assert!(
        (bad.object_offset..bad.object_offset + bad.length).contains(&4500),
        "{bad}"
    );
    assert!(
        (bad.device_offset..bad.device_offset + bad.length).contains(&target),
        "{bad}"
    );
    assert_eq!(bad.device_offset - bad.object_offset, target - 4500);
    assert!(matches!(bad.problem, ChunkProblem::ChecksumMismatch { .. }));
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].check, "data.checksum");
    assert!(report.errors[0].detail.contains("c/small offset"));
}

#[test]
fn deep_fsck_finds_flipped_bytes_read_into_reused_buffers() {
    // Enough objects of one shape for several batches: later batches read into the buffers of
    // verified ones, and a stale buffer must never pass for what the device holds.
    let pair = SimPair::new(160 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let objects = 28;
    for index in 0..objects {
        store
            .put("c", format!("o{index:02}"), &pattern(index, 4 << 20))
            .unwrap();
    }
    store.close().unwrap();
    let flipped = ["o01", "o20", "o27"];
    for object in flipped {
        let target = device_offset_of(&pair, object, 1 << 20);
        pair.device.corrupt_bit(target, 0);
    }

    let report = deep_fsck(&pair.device, pair.kv.as_ref());
    let deep = report.deep.as_ref().unwrap();
    assert_eq!(deep.bytes_read, objects * (4 << 20));
    let named: Vec<_> = deep
        .bad_chunks
        .iter()
        .map(|bad| bad.object.as_str())
        .collect();
    assert_eq!(named, ["c/o01", "c/o20", "c/o27"], "{:?}", deep.bad_chunks);
}

#[test]
fn deep_fsck_finds_a_flipped_checksum_in_the_metadata() {
    let pair = populated();
    // Flip one recorded crc32c of "small" (its extent map is inline in the onode record),
    // resealing the record so that it still decodes: only reading the data can tell.
    let data_start = device_offset_of(&pair, "small", 0);
    let mut chunk = vec![0u8; 4096];
    pair.device.durable_image().read(data_start, &mut chunk);
    let crc = bstore::csum::chunk_crc(&chunk).to_le_bytes();
    let key = bstore::format::keys::onode_key(collection_id(&pair), b"small");
    let record = pair.kv.get(KeySpace::Onodes, &key).unwrap().unwrap();
    let payload = &record[6..record.len() - 4];
    let at = payload
        .windows(4)
        .position(|w| w == crc)
        .expect("the chunk's crc is in the record");
    let mut changed = payload.to_vec();
    changed[at] ^= 0x40;
    let resealed = bstore::format::envelope::seal(record[0], record[1], &changed);
    let mut batch = Batch::new();
    batch.put(KeySpace::Onodes, key, resealed);
    pair.kv.write(batch, Durability::Sync).unwrap();
    assert!(
        Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref())
            .unwrap()
            .is_clean()
    );

    let report = deep_fsck(&pair.device, pair.kv.as_ref());
    let bad = &report.deep.as_ref().unwrap().bad_chunks;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(
        (bad[0].object.as_str(), bad[0].object_offset),
        ("c/small", 0)
    );
    let ChunkProblem::ChecksumMismatch { expected, actual } = bad[0].problem else {
        panic!("{:?}", bad[0].problem);
    };
    assert_eq!(actual.to_le_bytes(), crc);
    assert_eq!(expected, actual ^ 0x40);
}

#[test]
fn deep_fsck_checks_deferred_writes_not_yet_applied_as_a_mount_would_see_them() {
    // A crash after a deferred overwrite committed but before it reached its place: the device
    // holds the old bytes there, the metadata the new bytes' checksums.
    let mut pair = SimPair::new(64 << 20);
    pair.options = manual_options(64 << 10);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "o", &pattern(1, 128 << 10)).unwrap();
    store.flush_deferred().unwrap();
    store
        .apply(Transaction::new().write("c", "o", 8192, pattern(2, 4096)))
        .unwrap();
    let image = pair.device.crash(CrashMode::DropUnflushed);
    let device = SimDevice::from_image(image, 64 << 20, 512, false);
    let kv = pair.kv.survivor(CrashMode::DropUnflushed);
    drop(store);
    let pending = deep_fsck(&device, &kv);
    assert!(pending.is_clean(), "{:?}", pending.errors);
    assert!(
        pending.deferred_records > 0,
        "the overwrite is still pending"
    );
    assert!(pending.deep.unwrap().chunks_verified > 0);
}

fn collection_id(pair: &SimPair) -> u64 {
    let mut id = None;
    pair.kv
        .scan(KeySpace::Collections, b"c", None, &mut |name, value| {
            if name == b"c" {
                id = Some(
                    bstore::format::records::CollectionRecord::decode(value)
                        .unwrap()
                        .collection_id,
                );
            }
            Ok(false)
        })
        .unwrap();
    id.expect("collection c exists")
}

#[test]
fn a_batch_the_device_fails_once_is_read_again_run_by_run() {
    let pair = populated();
    // The first read of the data pass fails (a shallow fsck's reads come before it).
    let before = pair.device.counters().reads;
    Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    let shallow = pair.device.counters().reads - before;
    let reads = pair.device.counters().reads;
    pair.device.set_faults(bstore::device::SimFaults {
        fail_read_number: Some(reads + shallow + 1),
        ..Default::default()
    });
    let report = deep_fsck(&pair.device, pair.kv.as_ref());
    assert!(
        pair.device.counters().reads > reads + shallow + 1,
        "the fault was reached"
    );
    assert!(report.is_clean(), "{:?}", report.errors);
    let deep = report.deep.unwrap();
    assert!(deep.bad_chunks.is_empty(), "{:?}", deep.bad_chunks);
}
