//! Export and import at their edges: long blobs and units larger than checksum chunks, writes
//! in place racing an export, stepped stores, bad records from disk, reserved names, and
//! scrubs of collections that a rename or a forced import moves away under them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bstore::format::keys::{self, KeySpace};
use bstore::format::shared::SharedBlobRecord;
use bstore::kv::{Batch, Durability, Kv};
use bstore::{ExportOptions, ImportOptions, ScrubOptions, ScrubReport, Store, Transaction};
use common::crash::read_everything;
use common::{SimPair, pattern};

const DEVICE: u64 = 256 << 20;

fn export(store: &Store) -> Vec<u8> {
    let mut stream = Vec::new();
    store
        .export(&mut stream, ExportOptions::default())
        .expect("export");
    stream
}

/// Adds to `batch` what moves collection `from`'s record to the name `to` (as an older build,
/// or an interrupted import, would have left it); returns the collection's id.
fn move_collection_record(pair: &SimPair, from: &[u8], to: &[u8], batch: &mut Batch) -> u64 {
    let value = pair.kv.get(KeySpace::Collections, from).unwrap().unwrap();
    let id = bstore::format::records::CollectionRecord::decode(&value)
        .unwrap()
        .collection_id;
    batch.delete(KeySpace::Collections, from.to_vec());
    batch.put(KeySpace::Collections, to.to_vec(), value);
    id
}

/// A collection named with the reserved prefix, as earlier builds let a client create: a mount
/// must not take it for an import's leftover.
#[test]
fn a_collection_named_with_the_reserved_prefix_before_it_was_reserved_survives_a_mount() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    store.create_collection("mine").unwrap();
    store.put("mine", "precious", &pattern(1, 100_000)).unwrap();
    store.close().unwrap();
    // What the previous build wrote for `create_collection("\0bstore.mine")` (no check then):
    // the same collection record under that name.
    let mut batch = Batch::new();
    move_collection_record(&pair, b"mine", b"\0bstore.mine", &mut batch);
    pair.kv.write(batch, Durability::Sync).unwrap();
    let before = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(before.is_clean(), "{:?}", before.errors);

    let store = pair.open();
    let statfs = store.statfs().unwrap();
    println!("after mount: object_count {}", statfs.object_count);
    let got = store.get(&b"\0bstore.mine"[..], "precious");
    println!("get after mount: {:?}", got.as_ref().map(Vec::len));
    assert!(
        got.is_ok(),
        "the mount deleted a user collection: {got:?} (object_count {})",
        statfs.object_count
    );
}

/// A client may name an object `\0bstore.shared.…`: an import must not take it for one of its
/// staging objects.
#[test]
fn an_object_named_like_a_staging_object_round_trips() {
    let source = SimPair::new(DEVICE);
    let store = source.open();
    store.create_collection("c").unwrap();
    store
        .put("c", &b"\0bstore.shared.1"[..], b"user data")
        .unwrap();
    let stream = export(&store);
    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    let imported = target_store.import(&stream[..], ImportOptions::default());
    assert!(
        imported.is_ok(),
        "a valid export of a valid store: {imported:?}"
    );
}

/// A stepped store (simulations) has no threads: the import must step it while it waits.
#[test]
fn an_import_into_a_stepped_store_finishes() {
    let source = SimPair::new(DEVICE);
    let source_store = source.open();
    source_store.create_collection("c").unwrap();
    source_store.put("c", "o", &pattern(1, 10_000)).unwrap();
    let stream = export(&source_store);

    let mut target = SimPair::new(DEVICE);
    target.options.background = bstore::Background::Stepped;
    let store: &'static Store = Box::leak(Box::new(target.open()));
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = store.import(&stream[..], ImportOptions::default());
        let _ = send.send(result.map(|r| r.objects));
    });
    match receive.recv_timeout(Duration::from_secs(20)) {
        Ok(result) => {
            result.unwrap();
        }
        Err(_) => panic!("the import into a stepped store hung for 20 s"),
    }
}

/// A shared-blob record whose geometry disagrees with the blob (a bad record from disk): the
/// export must fail with an error, not panic.
#[test]
fn an_export_of_a_bad_shared_blob_record_is_an_error_not_a_panic() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "o", &pattern(1, 64 << 10)).unwrap();
    store
        .apply(Transaction::new().clone_object("c", "o", "o2"))
        .unwrap();
    store.close().unwrap();
    let mut records = Vec::new();
    pair.kv
        .scan(KeySpace::SharedBlobs, &[], None, &mut |key, value| {
            records.push((key.to_vec(), SharedBlobRecord::decode(value).unwrap()));
            Ok(true)
        })
        .unwrap();
    assert!(!records.is_empty());
    let mut batch = Batch::new();
    for (key, mut record) in records {
        // Twice the blob's length, same unit count: units twice as large.
        record.length *= 2;
        batch.put(KeySpace::SharedBlobs, key, record.encode());
    }
    pair.kv.write(batch, Durability::Sync).unwrap();
    let fsck = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    println!("fsck clean: {} {:?}", fsck.is_clean(), fsck.errors);
    let store =
        Store::open_read_only_on(pair.device.clone(), pair.kv.clone(), &pair.options).unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.export(Vec::new(), ExportOptions::default())
    }));
    match outcome {
        Ok(Err(error)) => println!("export error: {error}"),
        Ok(Ok(_)) => panic!("exported a store with a bad shared-blob record"),
        Err(_) => panic!("the export panicked on a bad shared-blob record"),
    }
}

/// A leftover hidden collection that cannot be removed (a bad onode in it) stays for a later
/// mount; this one still succeeds.
#[test]
fn a_leftover_import_that_cannot_be_removed_does_not_keep_the_store_from_mounting() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    store.create_collection("mine").unwrap();
    store.create_collection("keep").unwrap();
    store.put("keep", "o", b"keep").unwrap();
    store.put("mine", "o", b"x").unwrap();
    store.close().unwrap();
    let mut batch = Batch::new();
    let id = move_collection_record(&pair, b"mine", b"\0bstore.import.1.2.3", &mut batch);
    batch.put(KeySpace::Onodes, keys::onode_key(id, b"o"), vec![1, 2, 3]);
    pair.kv.write(batch, Durability::Sync).unwrap();
    let opened = Store::open_on(pair.device.clone(), pair.kv.clone(), &pair.options);
    match opened {
        Ok(store) => {
            println!("mounted: {:?}", store.list_collections().unwrap());
        }
        Err(error) => panic!("mount refused because of a leftover: {error}"),
    }
}

fn big_blob_pair() -> SimPair {
    let format = bstore::FormatOptions::default()
        .with_min_alloc_size(64 << 10)
        .with_csum_chunk(4096)
        .with_blob_length_max(16 << 20);
    SimPair::with_format(DEVICE, &format)
}

/// Blobs of 16 MiB, 64 KiB units of 4 KiB chunks (unused chunks), clones and ranged clones at
/// unaligned offsets across the 4 MiB cuts: a round trip gives every byte back.
#[test]
fn a_round_trip_with_long_blobs_units_larger_than_chunks_and_unaligned_clones() {
    let source = big_blob_pair();
    let store = source.open();
    store.create_collection("c").unwrap();
    store.put("c", "big", &pattern(1, 12 << 20)).unwrap();
    let mut txn = Transaction::new();
    // Small sparse writes: units with unused chunks.
    txn.write("c", "sparse", 4096, pattern(2, 100))
        .write("c", "sparse", 200_000, pattern(3, 5000))
        .write("c", "sparse", 9 << 20, pattern(4, 3000));
    store.apply(&txn).unwrap();
    let mut txn = Transaction::new();
    txn.clone_object("c", "big", "big-clone")
        .clone_object("c", "sparse", "sparse-clone")
        .clone_range(
            "c",
            "big",
            (4 << 20) - 12345,
            (4 << 20) + 777,
            "ranged",
            999,
        )
        .clone_range("c", "sparse", 4000, 300_000, "ranged2", 17)
        .write("c", "big", 5 << 20, pattern(5, 70_000))
        .write("c", "sparse", 4200, pattern(6, 10));
    store.apply(&txn).unwrap();
    // Free some units of the shared blob: runs of referenced units with gaps.
    let mut txn = Transaction::new();
    txn.write("c", "big-clone", 1 << 20, pattern(7, 3 << 20))
        .zero("c", "big", 8 << 20, 1 << 20)
        .zero("c", "big-clone", 8 << 20, 1 << 20);
    store.apply(&txn).unwrap();
    let expected = read_everything(&store).unwrap();
    let stream = export(&store);
    let target = big_blob_pair();
    let target_store = target.open();
    target_store
        .import(&stream[..], ImportOptions::default())
        .unwrap();
    assert_eq!(read_everything(&target_store).unwrap(), expected);
    let (a, b) = (store.statfs().unwrap(), target_store.statfs().unwrap());
    println!("source {a:?}\ntarget {b:?}");
    target_store.close().unwrap();
    let report = Store::fsck_on(target.device.as_ref(), target.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    // And to a store of default geometry.
    let other = SimPair::new(DEVICE);
    let other_store = other.open();
    other_store
        .import(&stream[..], ImportOptions::default())
        .unwrap();
    assert_eq!(read_everything(&other_store).unwrap(), expected);
}

/// During an export, writes that would go in place (deferred overwrites, fills of unused
/// chunks) and an apply of every deferred write: the stream still holds the state before.
#[test]
fn writes_in_place_during_an_export_do_not_reach_it() {
    let source = big_blob_pair();
    let mut options = common::manual_options(64 << 10);
    options.deferred.batch_records = usize::MAX;
    let store = Store::open_on(source.device.clone(), source.kv.clone(), &options).unwrap();
    store.create_collection("c").unwrap();
    store.put("c", "a", &pattern(1, 1000)).unwrap();
    for i in 0..8 {
        store
            .put("c", format!("b{i}"), &pattern(10 + i, 200_000))
            .unwrap();
        store
            .apply(Transaction::new().write("c", format!("s{i}"), 0, pattern(30 + i, 4096)))
            .unwrap();
    }
    // A deferred write pending at the snapshot.
    store
        .apply(Transaction::new().write("c", "b0", 5000, pattern(50, 3000)))
        .unwrap();
    let expected = read_everything(&store).unwrap();
    let mut first = true;
    let mut meddle = |_: bstore::ExportProgress| {
        if !std::mem::take(&mut first) {
            return;
        }
        for i in 0..8 {
            let mut txn = Transaction::new();
            txn.write("c", format!("b{i}"), 100 + i * 1000, pattern(60 + i, 2000))
                .write("c", format!("s{i}"), 8192, pattern(70 + i, 4096));
            store.apply(&txn).unwrap();
        }
        store.flush_deferred().unwrap();
    };
    let mut stream = Vec::new();
    store
        .export(
            &mut stream,
            ExportOptions::default().with_progress(Some(&mut meddle)),
        )
        .unwrap();
    let counters = store.counters();
    println!("{counters:?}");
    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    target_store
        .import(&stream[..], ImportOptions::default())
        .unwrap();
    assert_eq!(read_everything(&target_store).unwrap(), expected);
}

/// A store with 40 cached objects in `b`, and a slow scrub of `b` started in the background.
fn scrubbing_b() -> (
    SimPair,
    Arc<Store>,
    std::thread::JoinHandle<bstore::Result<ScrubReport>>,
) {
    let pair = SimPair::new(32 << 20);
    let store = Arc::new(pair.open());
    store.create_collection("b").unwrap();
    for i in 0..40 {
        let name = format!("o{i:02}");
        store.put("b", &name, &pattern(i, 128 << 10)).unwrap();
        store.get("b", &name).unwrap(); // cached
    }
    let scrubber = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.scrub(
                &ScrubOptions::default()
                    .with_collection(Some(b"b".to_vec()))
                    .with_bytes_per_second(2 << 20), // ~2.5 s for 5 MiB
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    (pair, store, scrubber)
}

/// Fills the device (reusing every freed unit), then finds the scrub reported nothing bad.
fn fill_and_expect_a_clean_scrub(
    store: &Store,
    scrubber: std::thread::JoinHandle<bstore::Result<ScrubReport>>,
) {
    store.create_collection("fill").unwrap();
    let mut fillers = 0;
    while store
        .put("fill", format!("f{fillers}"), &pattern(999, 128 << 10))
        .is_ok()
    {
        fillers += 1;
    }
    let report = scrubber.join().unwrap().unwrap();
    println!(
        "fillers {fillers}; scrub: {} objects, {} bad chunks",
        report.objects,
        report.bad_chunks.len()
    );
    assert!(
        report.bad_chunks.is_empty(),
        "false corruption: {:?}",
        &report.bad_chunks[..report.bad_chunks.len().min(2)]
    );
}

/// A scrub holds the collection (and its onode cache) across the whole collection; a rename
/// keeps that one in-memory state, so changes through the new name reach the scrub, which must
/// not verify stale onodes against space since freed and reused.
#[test]
fn a_scrub_across_a_rename_reports_nothing() {
    let (_pair, store, scrubber) = scrubbing_b();
    store
        .apply(Transaction::new().rename_collection("b", "c"))
        .unwrap();
    for i in 0..40 {
        store
            .put("c", format!("o{i:02}"), &pattern(100 + i, 128 << 10))
            .unwrap();
    }
    fill_and_expect_a_clean_scrub(&store, scrubber);
    for i in 0..40 {
        let got = store.get("c", format!("o{i:02}")).unwrap();
        assert!(got == pattern(100 + i, 128 << 10), "o{i:02}");
    }
}

/// The same through `import --force`: the replaced collection is renamed away and emptied.
#[test]
fn a_scrub_across_a_forced_import_reports_nothing() {
    let source = SimPair::new(DEVICE);
    let source_store = source.open();
    source_store.create_collection("b").unwrap();
    source_store.put("b", "new", b"imported").unwrap();
    let stream = export(&source_store);
    let (_pair, store, scrubber) = scrubbing_b();
    let options = ImportOptions::default().with_force(true);
    store.import(&stream[..], options).unwrap();
    fill_and_expect_a_clean_scrub(&store, scrubber);
}

/// The same churn without a rename (objects removed through the same collection).
#[test]
fn a_scrub_across_removals_reports_nothing() {
    let (_pair, store, scrubber) = scrubbing_b();
    for i in 0..40 {
        store.remove("b", format!("o{i:02}")).unwrap();
    }
    fill_and_expect_a_clean_scrub(&store, scrubber);
}

#[test]
fn a_stepped_mount_removes_leftovers() {
    let mut pair = SimPair::new(DEVICE);
    let store = pair.open();
    store.create_collection("mine").unwrap();
    for i in 0..300 {
        store.put("mine", format!("o{i}"), b"x").unwrap();
    }
    store.close().unwrap();
    let mut batch = Batch::new();
    move_collection_record(&pair, b"mine", b"\0bstore.import.1.2.3", &mut batch);
    pair.kv.write(batch, Durability::Sync).unwrap();
    pair.options.background = bstore::Background::Stepped;
    let store: &'static Store = Box::leak(Box::new(pair.open()));
    assert_eq!(store.statfs().unwrap().object_count, 0);
}

/// An import refused at its first collection, with far more of the stream unread than the
/// reader runs ahead: it returns (the reader stops), and the target is unchanged.
#[test]
fn an_import_refused_early_returns_with_the_stream_unread() {
    let source = SimPair::new(DEVICE);
    let store = source.open();
    store.create_collection("z").unwrap();
    for i in 0..64 {
        store
            .put("z", format!("o{i:02}"), &pattern(i, 5000))
            .unwrap();
    }
    let stream = export(&store);
    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    target_store.create_collection("z").unwrap();
    let refused = target_store.import(&stream[..], ImportOptions::default());
    assert!(
        matches!(refused, Err(bstore::Error::AlreadyExists(_))),
        "{refused:?}"
    );
    assert!(target_store.list_objects("z", None, 10).unwrap().is_empty());
}
