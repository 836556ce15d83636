//! Export and import: a live store's consistent stream, restored whole or not at all.
//!
//! A round trip gives back every byte, attribute and omap entry, with clones still sharing
//! their space; an export taken while four threads write, clone and remove is the state after
//! one transaction of each and before the next; a damaged stream (any byte flipped, cut
//! anywhere, frames swapped) is refused with the target unchanged; and a power cut anywhere in
//! an import leaves the collection whole or absent.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bstore::device::{CrashMode, PowerCut, SimDevice};
use bstore::rng::SplitMix64;
use bstore::txn::Op;
use bstore::{Error, ExportOptions, ExportProgress, ImportOptions, Store, Transaction};
use common::crash::read_everything;
use common::model::{Failure, Model};
use common::{SimPair, manual_options, pattern};

const DEVICE: u64 = 256 << 20;

fn export(store: &Store) -> Vec<u8> {
    let mut stream = Vec::new();
    store
        .export(&mut stream, ExportOptions::default())
        .expect("export");
    stream
}

fn import(store: &Store, stream: &[u8]) -> bstore::Result<bstore::ImportReport> {
    store.import(stream, ImportOptions::default())
}

fn assert_clean(pair: &SimPair, context: &str) {
    let report = Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{context}: {:?}", report.errors);
}

/// Objects of every shape: large (several frames), sparse, empty, with xattrs and an omap
/// header and more omap keys than one frame holds, overwritten in place with the deferred
/// write still pending, cloned whole and by range.
fn populate(store: &Store) {
    store.create_collection("a").unwrap();
    store.create_collection("b").unwrap();
    store.put("a", "big", &pattern(1, 9 << 20)).unwrap();
    let mut txn = Transaction::new();
    txn.write("a", "sparse", 0, pattern(2, 10_000))
        .write("a", "sparse", 5 << 20, pattern(3, 70_000))
        .touch("a", "empty")
        .touch("a", "hole-at-end")
        .truncate("a", "hole-at-end", 3 << 20)
        .touch("a", "meta")
        .setattr("a", "meta", "user.k", "v")
        .setattr("a", "meta", "user.empty", "")
        .omap_setheader("a", "meta", b"header".to_vec());
    store.apply(&txn).unwrap();
    let mut txn = Transaction::new();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..5000u32)
        .map(|i| (format!("key{i:05}").into_bytes(), pattern(u64::from(i), 40)))
        .collect();
    txn.omap_setkeys("a", "meta", pairs);
    store.apply(&txn).unwrap();
    store.put("a", "small", &pattern(4, 300_000)).unwrap();
    let mut txn = Transaction::new();
    txn.write("a", "small", 1000, pattern(5, 100))
        .clone_object("a", "big", "big-clone")
        .clone_range("a", "small", 65536, 131072, "ranged", 4096)
        .write("a", "big-clone", 1 << 20, pattern(6, 200_000));
    store.apply(&txn).unwrap();
    store.put("b", "only", &pattern(7, 5000)).unwrap();
}

#[test]
fn a_round_trip_gives_back_every_byte_and_clones_still_share_their_space() {
    let source = SimPair::new(DEVICE);
    let source_store = Store::open_on(
        source.device.clone(),
        source.kv.clone(),
        &manual_options(64 << 10),
    )
    .unwrap();
    populate(&source_store);
    assert!(
        source_store.stat("a", "small").unwrap().deferred_bytes > 0,
        "the overwrite is still a pending deferred write"
    );
    let mut stream = Vec::new();
    let exported = source_store
        .export(&mut stream, ExportOptions::default())
        .unwrap();
    assert_eq!(exported.stream_bytes, stream.len() as u64);
    assert_eq!((exported.collections, exported.objects), (2, 9));
    assert!(exported.shared_bytes >= 9 << 20, "{exported:?}");
    assert_eq!(exported.omap_entries, 5000);

    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    let imported = import(&target_store, &stream).unwrap();
    assert_eq!(imported.objects, 9);
    assert_eq!(imported.shared_bytes, exported.shared_bytes);
    assert_eq!(imported.stream_bytes, stream.len() as u64);
    let expected = read_everything(&source_store).unwrap();
    assert_eq!(read_everything(&target_store).unwrap(), expected);
    let (before, after) = (
        source_store.statfs().unwrap(),
        target_store.statfs().unwrap(),
    );
    assert_eq!(
        after.allocated_bytes, before.allocated_bytes,
        "clones share"
    );
    assert_eq!(after.stored_bytes, before.stored_bytes);
    assert_eq!(after.object_count, before.object_count, "no staging left");
    assert!(
        target_store
            .fiemap("a", "big")
            .unwrap()
            .iter()
            .all(|e| e.shared)
    );
    assert_eq!(target_store.stat("a", "hole-at-end").unwrap().size, 3 << 20);
    assert_eq!(
        target_store
            .stat("a", "hole-at-end")
            .unwrap()
            .allocated_bytes,
        0
    );
    target_store.close().unwrap();
    source_store.close().unwrap();
    assert_clean(&target, "target");
    // Reopened, the import is all there (it was durable when import returned).
    let again = target.open();
    assert_eq!(read_everything(&again).unwrap(), expected);
}

#[test]
fn chosen_collections_existing_names_and_force() {
    let source = SimPair::new(DEVICE);
    let store = source.open();
    populate(&store);
    let mut only_b = Vec::new();
    let options = ExportOptions::default().with_collections(vec![b"b".to_vec()]);
    assert_eq!(store.export(&mut only_b, options).unwrap().collections, 1);
    let missing = ExportOptions::default().with_collections(vec![b"nope".to_vec()]);
    assert!(matches!(
        store.export(Vec::new(), missing),
        Err(Error::NotFound(_))
    ));
    let whole = export(&store);

    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    target_store.create_collection("b").unwrap();
    target_store.put("b", "mine", b"keep me").unwrap();
    let before = read_everything(&target_store).unwrap();
    assert!(matches!(
        import(&target_store, &whole),
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(read_everything(&target_store).unwrap(), before, "unchanged");
    // Only `a`: beside the existing `b`.
    let only_a = ImportOptions::default().with_collections(vec![b"a".to_vec()]);
    assert_eq!(
        target_store.import(&whole[..], only_a).unwrap().collections,
        1
    );
    let expected = read_everything(&store).unwrap();
    let now = read_everything(&target_store).unwrap();
    assert_eq!(now.collections[&b"a"[..]], expected.collections[&b"a"[..]]);
    assert_eq!(now.collections[&b"b"[..]], before.collections[&b"b"[..]]);
    // With force, `b` is replaced whole.
    let force = ImportOptions::default().with_force(true);
    let report = target_store.import(&only_b[..], force).unwrap();
    assert_eq!(report.replaced, 1);
    assert_eq!(read_everything(&target_store).unwrap(), expected);
    assert_eq!(
        target_store.statfs().unwrap().object_count,
        9,
        "the replaced collection is gone"
    );
    target_store.close().unwrap();
    assert_clean(&target, "after force");
}

#[test]
fn clients_can_neither_see_nor_name_the_hidden_collections() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    for name in [&b"\0bstore.import.x"[..], b"\0bstore.anything"] {
        let created = store.create_collection(name);
        assert!(
            matches!(created, Err(Error::InvalidArgument(_))),
            "{created:?}"
        );
    }
    store.create_collection("c").unwrap();
    let renamed = store.apply(Transaction::new().rename_collection("c", "\0bstore.x"));
    assert!(matches!(renamed, Err(Error::InvalidArgument(_))));
    assert_eq!(store.list_collections().unwrap(), vec![b"c".to_vec()]);
}

#[test]
fn a_collection_renamed_keeps_its_objects_across_a_remount() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    store.create_collection("old").unwrap();
    store.create_collection("taken").unwrap();
    store.put("old", "o", &pattern(1, 100_000)).unwrap();
    let mut omap = Transaction::new();
    omap.omap_setkeys("old", "o", vec![(b"k".to_vec(), b"v".to_vec())]);
    store.apply(&omap).unwrap();
    let refused = store.apply(Transaction::new().rename_collection("old", "taken"));
    assert!(matches!(refused, Err(Error::AlreadyExists(_))));
    let mixed = store.apply(
        Transaction::new()
            .write("old", "o", 0, b"x".to_vec())
            .rename_collection("old", "new"),
    );
    assert!(matches!(mixed, Err(Error::InvalidArgument(_))), "{mixed:?}");
    store
        .apply(Transaction::new().rename_collection("old", "new"))
        .unwrap();
    assert!(matches!(store.get("old", "o"), Err(Error::NotFound(_))));
    assert_eq!(store.get("new", "o").unwrap(), pattern(1, 100_000));
    let omap = store.omap_get_values("new", "o", [b"k"]).unwrap();
    assert_eq!(omap[&b"k"[..]], b"v");
    store.put("new", "p", b"after").unwrap();
    store.close().unwrap();
    let store = pair.open();
    assert_eq!(
        store.list_collections().unwrap(),
        vec![b"new".to_vec(), b"taken".to_vec()]
    );
    assert_eq!(store.get("new", "o").unwrap(), pattern(1, 100_000));
    assert_eq!(store.get("new", "p").unwrap(), b"after");
    store.close().unwrap();
    assert_clean(&pair, "after rename");
}

#[test]
fn space_freed_during_an_export_is_not_reused_before_it_ends() {
    let pair = SimPair::new(32 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "a", &pattern(1, 1 << 20)).unwrap();
    store.put("c", "b", &pattern(2, 4 << 20)).unwrap();
    let expected = read_everything(&store).unwrap();
    let (mut first, mut fillers, mut refused) = (true, 0, false);
    // After `a`, before `b` is read: `b` is rewritten (its old space freed), then the device
    // filled. Were the old space handed out again, fillers would land where `b` is read from.
    let mut meddle = |_: ExportProgress| {
        if !std::mem::take(&mut first) {
            return;
        }
        store.put("c", "b", &pattern(3, 4 << 20)).unwrap();
        while fillers < 64 {
            match store.put("c", format!("filler{fillers}"), &pattern(4, 1 << 20)) {
                Ok(()) => fillers += 1,
                Err(Error::NoSpace { .. }) => {
                    refused = true;
                    break;
                }
                Err(other) => panic!("filler {fillers}: {other}"),
            }
        }
    };
    let mut stream = Vec::new();
    let options = ExportOptions::default().with_progress(Some(&mut meddle));
    store.export(&mut stream, options).unwrap();
    assert!(refused, "the device never filled ({fillers} fillers)");
    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    import(&target_store, &stream).unwrap();
    assert_eq!(read_everything(&target_store).unwrap(), expected);
    // Once the export is over, the space it held comes back.
    store.remove("c", "filler0").unwrap();
    store.put("c", "after", &pattern(5, 4 << 20)).unwrap();
}

/// A sink that fails once it has taken `left` bytes.
struct FailingSink {
    left: usize,
}

impl std::io::Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("the disk is full"));
        }
        let taken = buf.len().min(self.left);
        self.left -= taken;
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_export_whose_sink_fails_says_so_and_lets_go_of_its_pin() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    populate(&store);
    let failed = store.export(FailingSink { left: 1 << 20 }, ExportOptions::default());
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    // Writes go in place again: the pin went with the export.
    let before = store.counters().writes_deferred;
    store
        .apply(Transaction::new().write("b", "only", 100, pattern(8, 10)))
        .unwrap();
    assert_eq!(store.counters().writes_deferred, before + 1);
    let mut stream = Vec::new();
    store.export(&mut stream, ExportOptions::default()).unwrap();
}

/// One writer's work: transactions on its own collection, each also setting the `counter`
/// object's `seq` attribute to its number, and the log to replay them.
struct Writer {
    collection: Vec<u8>,
    log: std::sync::Mutex<Vec<Vec<Op>>>,
    done: AtomicU64,
}

fn writer_transaction(rng: &mut SplitMix64, collection: &[u8], model: &Model, seq: u64) -> Vec<Op> {
    let objects = model.collections.get(collection);
    let exists = |name: &str| objects.is_some_and(|o| o.contains_key(name.as_bytes()));
    let name = |rng: &mut SplitMix64| format!("o{}", rng.next_u64() % 16);
    let mut txn = Transaction::new();
    let object = name(rng);
    match rng.next_u64() % 10 {
        // Small overwrites: deferred in place, were no export pinned.
        0..=3 => {
            let offset = rng.next_u64() % (192 << 10);
            let length = 1 + rng.next_u64() % (16 << 10);
            txn.write(collection, &object, offset, pattern(seq, length as usize));
        }
        4 | 5 => {
            let length = 1 + rng.next_u64() % (256 << 10);
            txn.write(collection, &object, 0, pattern(seq, length as usize));
        }
        6 if exists(&object) => {
            txn.clone_object(collection, &object, name(rng));
        }
        7 if exists(&object) => {
            let offset = rng.next_u64() % (64 << 10);
            txn.clone_range(collection, &object, offset, 32 << 10, name(rng), offset / 2);
        }
        8 if exists(&object) => {
            txn.remove(collection, &object);
        }
        _ => {
            txn.omap_setkeys(
                collection,
                &object,
                vec![(pattern(seq, 8), pattern(seq + 1, 100))],
            );
        }
    }
    txn.touch(collection, "counter")
        .setattr(collection, "counter", "seq", seq.to_string());
    txn.ops().to_vec()
}

fn run_writer(store: &Store, writer: &Writer, seed: u64, stop: &AtomicBool) {
    let mut rng = SplitMix64::new(seed);
    let mut model = Model::default();
    model
        .collections
        .insert(writer.collection.clone(), BTreeMap::new());
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let ops = writer_transaction(&mut rng, &writer.collection, &model, seq);
        match model.apply(&ops) {
            Ok(()) => {}
            Err(Failure::NotFound) => continue, // an omap set on a missing object
            Err(other) => panic!("writer {seq}: {other:?}"),
        }
        store
            .apply(&common::crash::transaction(&ops))
            .unwrap_or_else(|e| panic!("writer transaction {seq}: {e}"));
        writer.log.lock().unwrap().push(ops);
        seq += 1;
        writer.done.store(seq, Ordering::SeqCst);
    }
}

#[test]
fn an_export_beside_four_writers_is_the_state_after_one_transaction_of_each() {
    let seed = bstore::rng::test_seed();
    println!("seed {seed} (BSTORE_SEED={seed} replays it)");
    // A small device, so freed space is soon reused.
    let mut source = SimPair::new(48 << 20);
    // Deferred writes reach the device at once: an in-place overwrite after the export's
    // snapshot would change bytes it has yet to read.
    source.options.deferred.batch_records = 1;
    let store = Arc::new(source.open());
    let writers: Vec<Writer> = (0..4)
        .map(|i| Writer {
            collection: format!("w{i}").into_bytes(),
            log: Default::default(),
            done: AtomicU64::new(0),
        })
        .collect();
    for writer in &writers {
        store.create_collection(&writer.collection).unwrap();
    }
    let stop = AtomicBool::new(false);
    let exports = std::thread::scope(|scope| {
        // Set however this closure ends, so a failed export does not leave writers running.
        let _stop = StopOnDrop(&stop);
        for (i, writer) in writers.iter().enumerate() {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || run_writer(store, writer, seed ^ i as u64, stop));
        }
        let done = |w: &Writer| w.done.load(Ordering::SeqCst);
        let wait_for = |at_least: u64| {
            while writers.iter().any(|w| done(w) < at_least) {
                std::thread::yield_now();
            }
        };
        let mut exports = Vec::new();
        for round in 1..=3 {
            wait_for(60 * round);
            let before: Vec<u64> = writers.iter().map(done).collect();
            let stream = export(&store);
            let after: Vec<u64> = writers.iter().map(done).collect();
            exports.push((stream, before, after));
        }
        // Writers go on a little, freeing and reusing space the last export held back.
        wait_for(60 * 4);
        stop.store(true, Ordering::Relaxed);
        exports
    });
    let mut overlapped = 0;
    for (round, (stream, before, after)) in exports.iter().enumerate() {
        overlapped += before.iter().zip(after).filter(|(b, a)| a > b).count();
        check_export(&writers, stream, before, after, round);
    }
    println!(
        "{} exports, {overlapped} of {} writer spans had transactions acknowledged during an export",
        exports.len(),
        exports.len() * writers.len()
    );
    assert!(
        overlapped > 0,
        "no writer got anything done during an export"
    );
    Arc::try_unwrap(store).unwrap().close().unwrap();
    assert_clean(&source, "source after the writers");
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Imports `stream` into a fresh store and finds each writer's collection exactly as its log
/// leaves it after some transaction between `before` and `after` (its `counter` tells which).
fn check_export(writers: &[Writer], stream: &[u8], before: &[u64], after: &[u64], round: usize) {
    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    import(&target_store, stream).unwrap();
    let imported = read_everything(&target_store).unwrap();
    for (i, writer) in writers.iter().enumerate() {
        let objects = &imported.collections[&writer.collection];
        let seen = match objects.get(&b"counter"[..]) {
            Some(counter) => {
                let seq = &counter.xattrs[&b"seq"[..]];
                std::str::from_utf8(seq).unwrap().parse::<u64>().unwrap() + 1
            }
            None => 0,
        };
        let context = format!("export {round}, writer {i} after {seen} transactions");
        assert!(
            (before[i]..=after[i]).contains(&seen),
            "{context}: acknowledged {}..={} around the export",
            before[i],
            after[i]
        );
        let mut model = Model::default();
        model
            .collections
            .insert(writer.collection.clone(), BTreeMap::new());
        for ops in &writer.log.lock().unwrap()[..seen as usize] {
            model.apply(ops).unwrap();
        }
        let expected = &model.collections[&writer.collection];
        for (name, object) in expected {
            let shown = name.escape_ascii();
            let got = objects
                .get(name)
                .unwrap_or_else(|| panic!("{context}: {shown} missing"));
            assert!(got.data == object.data, "{context}: {shown} data");
            assert_eq!(got.xattrs, object.xattrs, "{context}: {shown}");
            assert_eq!(got.omap, object.omap, "{context}: {shown}");
        }
        assert_eq!(objects.len(), expected.len(), "{context}: objects");
    }
    target_store.close().unwrap();
    assert_clean(&target, &format!("export {round} imported"));
}

/// The byte ranges of a stream's frames: `(start, end)` of each, after the 16-byte magic.
fn frames(stream: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 16;
    while at < stream.len() {
        let length = u32::from_le_bytes(stream[at + 9..at + 13].try_into().unwrap()) as usize;
        let end = at + 13 + length + 4;
        frames.push((at, end));
        at = end;
    }
    frames
}

#[test]
fn a_damaged_stream_is_refused_and_the_target_left_as_it_was() {
    let seed = bstore::rng::test_seed();
    println!("seed {seed} (BSTORE_SEED={seed} replays it)");
    let mut rng = SplitMix64::new(seed);
    let source = SimPair::new(DEVICE);
    let source_store = source.open();
    source_store.create_collection("a").unwrap();
    source_store.create_collection("z").unwrap();
    for i in 0..6 {
        source_store
            .put("a", format!("o{i}"), &pattern(i, 20_000))
            .unwrap();
    }
    let mut txn = Transaction::new();
    txn.clone_object("a", "o1", "o1-clone")
        .setattr("a", "o2", "x", "y")
        .omap_setkeys("z", "o", vec![(b"k".to_vec(), b"v".to_vec())]);
    txn.touch("z", "o");
    let mut first = Transaction::new();
    first.touch("z", "o");
    source_store.apply(&first).unwrap();
    source_store.apply(&txn).unwrap();
    let stream = export(&source_store);
    let frames = frames(&stream);
    assert_eq!(
        frames.last().unwrap().1,
        stream.len(),
        "frames tile the stream"
    );

    let target = SimPair::new(DEVICE);
    let store = target.open();
    store.create_collection("keep").unwrap();
    store.put("keep", "o", &pattern(99, 50_000)).unwrap();
    let before = read_everything(&store).unwrap();
    let refused = |damaged: &[u8], what: &str| {
        match import(&store, damaged) {
            Err(Error::Corruption(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(read_everything(&store).unwrap(), before, "{what}");
        assert_eq!(
            store.statfs().unwrap().object_count,
            1,
            "{what}: nothing left behind"
        );
    };
    let (trailer_start, _) = *frames.last().unwrap();
    let header_end = frames[0].1;
    let mut classes: Vec<(&str, Vec<usize>)> = vec![
        ("header", (0..header_end).collect()),
        ("trailer", (trailer_start..stream.len()).collect()),
    ];
    let middle = &frames[1..frames.len() - 1];
    classes.push((
        "frame head",
        middle.iter().flat_map(|(s, _)| *s..*s + 13).collect(),
    ));
    classes.push((
        "frame body",
        middle.iter().flat_map(|(s, e)| *s + 13..*e).collect(),
    ));
    let mut flips = 0;
    for (class, offsets) in &classes {
        for _ in 0..24 {
            let offset = offsets[(rng.next_u64() % offsets.len() as u64) as usize];
            let mut damaged = stream.clone();
            damaged[offset] ^= 1 << (rng.next_u64() % 8);
            refused(&damaged, &format!("{class} byte {offset} flipped"));
            flips += 1;
        }
    }
    for _ in 0..24 {
        let cut = (rng.next_u64() % stream.len() as u64) as usize;
        refused(&stream[..cut], &format!("cut at {cut}"));
    }
    for (start, _) in frames.iter().skip(1) {
        refused(
            &stream[..*start],
            &format!("cut at the frame boundary {start}"),
        );
    }
    for i in 1..frames.len() - 2 {
        let ((a, _), (_, c)) = (frames[i], frames[i + 1]);
        let b = frames[i].1;
        let mut swapped = stream[..a].to_vec();
        swapped.extend_from_slice(&stream[b..c]);
        swapped.extend_from_slice(&stream[a..b]);
        swapped.extend_from_slice(&stream[c..]);
        refused(&swapped, &format!("frames {i} and {} swapped", i + 1));
    }
    println!(
        "{flips} flips, 24 cuts, {} boundary cuts, {} swaps refused",
        frames.len() - 1,
        frames.len() - 3
    );
    // And the whole stream still imports.
    import(&store, &stream).unwrap();
    store.close().unwrap();
    assert_clean(&target, "after the refusals");
}

#[test]
fn a_power_cut_anywhere_in_an_import_leaves_the_collection_whole_or_absent() {
    let source = SimPair::new(DEVICE);
    let source_store = source.open();
    source_store.create_collection("a").unwrap();
    for i in 0..4 {
        source_store
            .put("a", format!("o{i}"), &pattern(i, 40_000))
            .unwrap();
    }
    let mut txn = Transaction::new();
    txn.clone_object("a", "o0", "o0-clone").omap_setkeys(
        "a",
        "o1",
        vec![(b"k".to_vec(), b"v".to_vec())],
    );
    source_store.apply(&txn).unwrap();
    let stream = export(&source_store);
    let expected = read_everything(&source_store).unwrap().collections[&b"a"[..]].clone();

    let (mut cuts, mut whole, mut absent) = (0, 0, 0);
    for event in 1.. {
        let target = SimPair::new(DEVICE);
        let store = target.open();
        store.create_collection("keep").unwrap();
        store.put("keep", "o", &pattern(99, 10_000)).unwrap();
        let power = PowerCut::at(event);
        target.device.set_power(power.clone());
        target.kv.set_power(power.clone());
        let imported = import(&store, &stream).is_ok();
        // A durable write after the import, so some cuts always fall after it was
        // acknowledged (how many events the background threads do after it varies).
        let _ = store.put("keep", "o", &pattern(98, 10_000));
        drop(store);
        if !power.is_off() {
            assert!(imported, "the import failed with the power on");
            break;
        }
        cuts += 1;
        let survivor = SimPair {
            device: Arc::new(SimDevice::from_image(
                target.device.survivor(CrashMode::DropUnflushed),
                DEVICE,
                512,
                false,
            )),
            kv: Arc::new(target.kv.survivor(CrashMode::DropUnflushed)),
            options: target.options.clone(),
        };
        let store = survivor.open();
        let model = read_everything(&store).unwrap();
        assert_eq!(model.collections[&b"keep"[..]].len(), 1, "cut at {event}");
        match model.collections.get(&b"a"[..]) {
            Some(objects) => {
                assert!(*objects == expected, "cut at {event}: a partial collection");
                whole += 1;
            }
            None => {
                assert!(!imported, "cut at {event}: an acknowledged import was lost");
                absent += 1;
            }
        }
        let visible = model.collections.values().map(BTreeMap::len).sum::<usize>();
        assert_eq!(
            store.statfs().unwrap().object_count,
            visible as u64,
            "cut at {event}: the mount removed what the import left hidden"
        );
        store.close().unwrap();
        assert_clean(&survivor, &format!("cut at {event}"));
    }
    assert!(whole > 0 && absent > 0, "{whole} whole, {absent} absent");
    println!("{cuts} power cuts: {whole} left the collection whole, {absent} absent");
}

#[test]
fn a_read_only_store_exports_but_refuses_imports() {
    let pair = SimPair::new(DEVICE);
    let store = pair.open();
    populate(&store);
    let expected = read_everything(&store).unwrap();
    store.close().unwrap();
    let read_only =
        Store::open_read_only_on(pair.device.clone(), pair.kv.clone(), &pair.options).unwrap();
    let stream = export(&read_only);
    assert!(matches!(
        import(&read_only, &stream),
        Err(Error::ReadOnly(_))
    ));
    let target = SimPair::new(DEVICE);
    let target_store = target.open();
    import(&target_store, &stream).unwrap();
    assert_eq!(read_everything(&target_store).unwrap(), expected);
}
