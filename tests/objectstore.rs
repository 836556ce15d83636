//! The parts of Ceph's ObjectStore interface a daemon built on it relies on: listing a
//! collection in ranges with a cursor, reading several ranges of one version of an object,
//! fiemap over a range.

mod common;

use bstore::{ObjectHash, ObjectListing, Transaction};
use common::{SimPair, pattern};

fn name(i: usize) -> Vec<u8> {
    format!("obj-{i:04}").into_bytes()
}

/// A collection holding `obj-0000` .. `obj-{n-1}`.
fn listed_store(n: usize) -> (SimPair, bstore::Store) {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut txn = Transaction::new();
    for i in 0..n {
        txn.touch("c", name(i));
    }
    store.apply(&txn).unwrap();
    (pair, store)
}

#[test]
fn pages_with_the_returned_cursor_list_every_object_once_in_order() {
    let (_pair, store) = listed_store(100);
    let mut seen = Vec::new();
    let mut start: Option<Vec<u8>> = None;
    loop {
        let page = store
            .list_objects_range("c", start.as_deref(), None, 7)
            .unwrap();
        assert!(page.objects.len() <= 7);
        seen.extend(page.objects);
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..100).map(name).collect::<Vec<_>>());
}

#[test]
fn the_start_is_inclusive_the_end_exclusive_and_next_is_the_first_left_out() {
    let (_pair, store) = listed_store(20);
    let page = store
        .list_objects_range("c", Some(&name(5)), Some(&name(9)), 100)
        .unwrap();
    assert_eq!(page.objects, (5..9).map(name).collect::<Vec<_>>());
    assert_eq!(page.next, None, "the range is done");

    let page = store
        .list_objects_range("c", Some(&name(5)), Some(&name(9)), 2)
        .unwrap();
    assert_eq!(page.objects, vec![name(5), name(6)]);
    assert_eq!(page.next, Some(name(7)));

    // Bounds need not be names of objects.
    let page = store
        .list_objects_range("c", Some(b"obj-0017x"), None, 100)
        .unwrap();
    assert_eq!(page.objects, vec![name(18), name(19)]);

    let none = store
        .list_objects_range("c", Some(&name(9)), Some(&name(5)), 100)
        .unwrap();
    assert_eq!(
        none,
        ObjectListing::default(),
        "an empty range lists nothing"
    );
    let limited = store.list_objects_range("c", None, None, 0).unwrap();
    assert!(limited.objects.is_empty());
    assert_eq!(
        limited.next,
        Some(name(0)),
        "a limit of 0 still says where to go on"
    );
}

#[test]
fn listing_sees_objects_created_and_removed_by_transactions_just_submitted() {
    let (_pair, store) = listed_store(3);
    let mut txn = Transaction::new();
    txn.remove("c", name(1)).touch("c", name(7));
    store.submit(&txn, |_| {}).unwrap();
    let page = store.list_objects_range("c", None, None, 10).unwrap();
    assert_eq!(page.objects, vec![name(0), name(2), name(7)]);
}

#[test]
fn read_ranges_gives_each_range_as_read_would() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let data = pattern(11, 300_000);
    store.put("c", "o", &data).unwrap();
    store
        .apply(Transaction::new().zero("c", "o", 100_000, 50_000))
        .unwrap();
    let mut expected = data.clone();
    expected[100_000..150_000].fill(0);
    let ranges = [
        (0, 4096),
        (5, 10),
        (90_000, 70_000),
        (299_990, 100),
        (400_000, 10),
        (8192, 0),
    ];
    let read = store.read_ranges("c", "o", &ranges).unwrap();
    assert_eq!(read.len(), ranges.len());
    for (&(offset, length), bytes) in ranges.iter().zip(&read) {
        assert_eq!(
            bytes,
            &store.read("c", "o", offset, length).unwrap(),
            "range {offset}+{length}"
        );
        let end = (offset + length).min(expected.len() as u64) as usize;
        let start = (offset as usize).min(end);
        assert_eq!(&bytes[..], &expected[start..end], "range {offset}+{length}");
    }
    assert!(store.read_ranges("c", "o", &[]).unwrap().is_empty());
}

#[test]
fn fiemap_range_clips_the_extents_to_the_range_and_leaves_holes_out() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "o", &pattern(12, 256 << 10)).unwrap();
    store
        .apply(Transaction::new().zero("c", "o", 64 << 10, 64 << 10))
        .unwrap();
    let whole = store.fiemap("c", "o").unwrap();
    let all = store.fiemap_range("c", "o", 0, u64::MAX).unwrap();
    assert_eq!(all, whole, "the whole range is fiemap");
    let part = store.fiemap_range("c", "o", 60 << 10, 80 << 10).unwrap();
    let covered: Vec<(u64, u64)> = part.iter().map(|e| (e.logical_offset, e.length)).collect();
    assert_eq!(covered, vec![(60 << 10, 4 << 10), (128 << 10, 12 << 10)]);
    let first = whole.iter().find(|e| e.logical_offset == 0).unwrap();
    assert_eq!(part[0].device_offset, first.device_offset + (60 << 10));
    assert!(
        store
            .fiemap_range("c", "o", 70 << 10, 10 << 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .fiemap_range("c", "o", 1 << 30, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn omap_iterators_seek_to_lower_and_upper_bounds() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let keys: Vec<Vec<u8>> = [b"a".as_slice(), b"b", b"bb", b"c", b"d"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    let mut txn = Transaction::new();
    txn.touch("c", "o")
        .omap_setkeys("c", "o", keys.iter().map(|k| (k.clone(), k.repeat(2))));
    store.apply(&txn).unwrap();
    let key_of = |entry: Option<bstore::Result<(Vec<u8>, Vec<u8>)>>| entry.map(|e| e.unwrap().0);

    let mut iter = store.omap_iter("c", "o", b"", Some(b"d")).unwrap();
    assert_eq!(key_of(iter.next()), Some(b"a".to_vec()));
    iter.lower_bound(b"b");
    assert_eq!(
        key_of(iter.next()),
        Some(b"b".to_vec()),
        "lower bound: the key itself"
    );
    iter.upper_bound(b"b");
    assert_eq!(
        key_of(iter.next()),
        Some(b"bb".to_vec()),
        "upper bound: after it"
    );
    iter.lower_bound(b"ba");
    assert_eq!(
        key_of(iter.next()),
        Some(b"bb".to_vec()),
        "lower bound of a missing key"
    );
    iter.upper_bound(b"c");
    assert_eq!(key_of(iter.next()), None, "the end bound stays");
    iter.lower_bound(b"a");
    let rest: Vec<Vec<u8>> = iter.map(|e| e.unwrap().0).collect();
    assert_eq!(rest, keys[..4].to_vec(), "seeking back works too");
}

#[test]
fn omap_get_reads_the_header_and_the_values_at_one_commit_point() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut txn = Transaction::new();
    txn.touch("c", "o").omap_setheader("c", "o", b"0".to_vec());
    store.apply(&txn).unwrap();
    let rounds = 300u32;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..=rounds {
                let version = n.to_string().into_bytes();
                let mut txn = Transaction::new();
                txn.omap_setheader("c", "o", version.clone())
                    .omap_setkeys("c", "o", [(b"version".to_vec(), version.clone())])
                    .omap_setkeys("c", "o", [(format!("key-{n}").into_bytes(), version)]);
                store.submit(&txn, |_| {}).unwrap();
            }
        });
        for _ in 0..100 {
            let bstore::OmapSnapshot { header, values, .. } = store.omap_get("c", "o").unwrap();
            let header = header.expect("the header is always set");
            if header == b"0" {
                assert!(values.is_empty(), "{values:?}");
                continue;
            }
            assert_eq!(values.get(b"version".as_slice()), Some(&header));
            let n: usize = String::from_utf8(header).unwrap().parse().unwrap();
            assert_eq!(
                values.len(),
                n + 1,
                "every key of every transaction up to the header's"
            );
        }
    });
    let omap = store.omap_get("c", "o").unwrap();
    let (header, values) = (omap.header, omap.values);
    assert_eq!(header, Some(rounds.to_string().into_bytes()));
    assert_eq!(values.len(), rounds as usize + 1);
}

#[test]
fn submit_all_commits_several_transactions_in_order_together_or_not_at_all() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let mut first = Transaction::new();
    first.write("c", "a", 0, b"one".to_vec());
    let mut second = Transaction::new();
    second.rename("c", "a", "b"); // sees the first's object
    let mut third = Transaction::new();
    third.write("c", "b", 3, b"two".to_vec());
    let calls = Arc::new(AtomicUsize::new(0));
    let (done, committed) = mpsc::channel();
    let counted = Arc::clone(&calls);
    store
        .submit_all([first, second, third], move |result| {
            counted.fetch_add(1, Ordering::SeqCst);
            done.send(result).unwrap();
        })
        .unwrap();
    assert_eq!(store.get("c", "b").unwrap(), b"onetwo", "visible at once");
    committed.recv().unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one callback for the lot");

    let mut fine = Transaction::new();
    fine.write("c", "x", 0, b"x".to_vec());
    let mut failing = Transaction::new();
    failing.rename("c", "x", "b"); // the target exists
    let refused = store.submit_all([fine, failing], |_| panic!("not called on Err"));
    assert!(
        matches!(refused, Err(bstore::Error::AlreadyExists(_))),
        "{refused:?}"
    );
    assert!(
        !store.exists("c", "x").unwrap(),
        "nothing of the batch applied"
    );
    assert_eq!(store.get("c", "b").unwrap(), b"onetwo");
}

#[test]
fn move_rename_carries_an_object_to_another_collection_whole() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("pg.1_head").unwrap();
    store.create_collection("pg.1_temp").unwrap();
    let data = pattern(21, 200_000);
    let mut txn = Transaction::new();
    txn.write("pg.1_temp", "obj", 0, data.clone())
        .setattr("pg.1_temp", "obj", "_", b"info".to_vec())
        .omap_setheader("pg.1_temp", "obj", b"header".to_vec())
        .omap_setkeys("pg.1_temp", "obj", [(b"k".to_vec(), b"v".to_vec())]);
    store.apply(&txn).unwrap();
    let before = store.statfs().unwrap();

    let mut txn = Transaction::new();
    txn.move_rename("pg.1_temp", "obj", "pg.1_head", "obj.final")
        .write("pg.1_head", "obj.final", 0, b"new".to_vec());
    store.apply(&txn).unwrap();
    let mut expected = data.clone();
    expected[..3].copy_from_slice(b"new");
    let check = |store: &bstore::Store| {
        assert!(
            !store.exists("pg.1_temp", "obj").unwrap(),
            "gone from the source"
        );
        assert_eq!(store.get("pg.1_head", "obj.final").unwrap(), expected);
        assert_eq!(
            store.getattr("pg.1_head", "obj.final", "_").unwrap(),
            Some(b"info".to_vec())
        );
        let omap = store.omap_get("pg.1_head", "obj.final").unwrap();
        assert_eq!(omap.header, Some(b"header".to_vec()));
        assert_eq!(omap.values.get(b"k".as_slice()), Some(&b"v".to_vec()));
        assert!(
            store
                .list_objects("pg.1_temp", None, 10)
                .unwrap()
                .is_empty()
        );
    };
    check(&store);
    let after = store.statfs().unwrap();
    assert_eq!(
        after.allocated_bytes, before.allocated_bytes,
        "nothing copied"
    );

    let mut taken = Transaction::new();
    taken
        .touch("pg.1_temp", "other")
        .move_rename("pg.1_temp", "other", "pg.1_head", "obj.final");
    assert!(matches!(
        store.apply(&taken),
        Err(bstore::Error::AlreadyExists(_))
    ));
    let mut nowhere = Transaction::new();
    nowhere.move_rename("pg.1_head", "obj.final", "missing", "x");
    assert!(matches!(
        store.apply(&nowhere),
        Err(bstore::Error::NotFound(_))
    ));
    store.close().unwrap();

    let store = pair.open();
    check(&store);
    store.close().unwrap();
    let report = bstore::Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn try_rename_renames_what_exists_and_passes_over_what_does_not() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "log.new", b"entries").unwrap();
    store.put("c", "taken", b"x").unwrap();
    let mut txn = Transaction::new();
    txn.try_rename("c", "missing", "anything")
        .try_rename("c", "log.new", "log");
    store.apply(&txn).unwrap();
    assert_eq!(store.get("c", "log").unwrap(), b"entries");
    assert!(!store.exists("c", "log.new").unwrap());
    assert!(
        !store.exists("c", "anything").unwrap(),
        "a missing source makes nothing"
    );
    let mut clash = Transaction::new();
    clash.try_rename("c", "log", "taken");
    assert!(matches!(
        store.apply(&clash),
        Err(bstore::Error::AlreadyExists(_))
    ));
    store.close().unwrap();
    let report = bstore::Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

/// Every object of `collection` with its data, xattrs and omap, by name.
fn contents(store: &bstore::Store, collection: &str) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let names = store.list_objects(collection, None, usize::MAX).unwrap();
    names
        .into_iter()
        .map(|name| {
            let data = store.get(collection, &name).unwrap();
            let attr = store.getattr(collection, &name, "_").unwrap().unwrap();
            let omap = store.omap_get(collection, &name).unwrap();
            assert_eq!(omap.values.len(), 1);
            (name, data, attr)
        })
        .collect()
}

/// A collection `pg.1` of 64 objects, each with data, an xattr and an omap key.
fn pg_store() -> (SimPair, bstore::Store) {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("pg.1").unwrap();
    let mut txn = Transaction::new();
    for i in 0..64 {
        txn.write("pg.1", name(i), 0, pattern(i as u64, 5_000 + i * 100))
            .setattr("pg.1", name(i), "_", format!("attr {i}").into_bytes())
            .omap_setkeys("pg.1", name(i), [(b"k".to_vec(), name(i))]);
    }
    store.apply(&txn).unwrap();
    (pair, store)
}

#[test]
fn split_moves_the_objects_whose_hash_ends_in_rem_and_merge_brings_them_back() {
    let (pair, store) = pg_store();
    let whole = contents(&store, "pg.1");
    let before = store.statfs().unwrap();

    let mut txn = Transaction::new();
    txn.create_collection("pg.1.s1")
        .split_collection("pg.1", "pg.1.s1", 1, 1, ObjectHash::Crc32c);
    store.apply(&txn).unwrap();

    let stayed = contents(&store, "pg.1");
    let moved = contents(&store, "pg.1.s1");
    let hash_ends_in = |objects: &[(Vec<u8>, Vec<u8>, Vec<u8>)], rem| {
        objects
            .iter()
            .all(|(name, ..)| ObjectHash::Crc32c.of(name) & 1 == rem)
    };
    assert!(hash_ends_in(&stayed, 0) && hash_ends_in(&moved, 1));
    assert!(
        !stayed.is_empty() && !moved.is_empty(),
        "64 names split both ways"
    );
    let mut rejoined = [stayed, moved].concat();
    rejoined.sort();
    assert_eq!(rejoined, whole, "every object moved whole, none lost");
    let after = store.statfs().unwrap();
    assert_eq!(
        after.allocated_bytes, before.allocated_bytes,
        "no data copied"
    );
    assert_eq!(after.object_count, before.object_count);

    store.close().unwrap();
    let store = pair.open();
    assert_eq!(
        contents(&store, "pg.1").len() + contents(&store, "pg.1.s1").len(),
        64
    );
    let mut txn = Transaction::new();
    txn.merge_collection("pg.1.s1", "pg.1");
    store.apply(&txn).unwrap();
    assert_eq!(contents(&store, "pg.1"), whole);
    assert_eq!(store.list_collections().unwrap(), vec![b"pg.1".to_vec()]);
    store.close().unwrap();
    let report = bstore::Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn a_split_sees_the_transactions_before_it_and_can_select_by_a_hash_held_in_the_name() {
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.create_collection("d").unwrap();
    // As a Ceph adapter would name them: a pool byte, then the daemon's own hash with its
    // bits reversed. Hashes 5 and 1 end in 01, hash 6 in 10.
    let named = |hash: u32, rest: &str| {
        let mut name = vec![7u8];
        name.extend(hash.reverse_bits().to_be_bytes());
        name.extend(rest.as_bytes());
        name
    };
    let mut txn = Transaction::new();
    txn.touch("c", named(5, "one")).touch("c", named(6, "two"));
    // Submitted, not waited for: the split must still see it.
    store.submit(&txn, |result| result.unwrap()).unwrap();
    let by_name = ObjectHash::InName {
        offset: 1,
        bit_reversed: true,
    };
    assert_eq!(by_name.of(&named(6, "x")), 6);
    let mut txn = Transaction::new();
    txn.touch("c", named(1, "three"))
        .remove("c", named(5, "one"))
        .split_collection("c", "d", 2, 1, by_name);
    store.apply(&txn).unwrap();
    assert_eq!(
        store.list_objects("d", None, 10).unwrap(),
        vec![named(1, "three")],
        "created in the same transaction, and the removed one is gone"
    );
    assert_eq!(
        store.list_objects("c", None, 10).unwrap(),
        vec![named(6, "two")]
    );
    store.close().unwrap();
    let report = bstore::Store::fsck_on(pair.device.as_ref(), pair.kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn a_split_or_merge_that_cannot_apply_changes_nothing() {
    let (_pair, store) = pg_store();
    store.create_collection("other").unwrap();
    let taken = store.list_objects("pg.1", None, 1).unwrap().remove(0);
    store.put("other", &taken, b"in the way").unwrap();
    let whole = contents(&store, "pg.1");

    let mut clash = Transaction::new();
    clash.merge_collection("pg.1", "other");
    assert!(matches!(
        store.apply(&clash),
        Err(bstore::Error::AlreadyExists(_))
    ));
    let mut split = Transaction::new();
    split.split_collection("pg.1", "other", 0, 0, ObjectHash::Crc32c);
    assert!(matches!(
        store.apply(&split),
        Err(bstore::Error::AlreadyExists(_))
    ));
    let invalid = [
        ("pg.1", "other", 33, 0),
        ("pg.1", "other", 2, 4),
        ("pg.1", "pg.1", 1, 0),
    ];
    for (from, into, bits, rem) in invalid {
        let mut txn = Transaction::new();
        txn.split_collection(from, into, bits, rem, ObjectHash::Crc32c);
        assert!(
            matches!(store.apply(&txn), Err(bstore::Error::InvalidArgument(_))),
            "{bits} bits, rem {rem}, {from} into {into}"
        );
    }
    let mut missing = Transaction::new();
    missing.split_collection("pg.1", "nowhere", 1, 0, ObjectHash::Crc32c);
    assert!(matches!(
        store.apply(&missing),
        Err(bstore::Error::NotFound(bstore::Missing::Collection { .. }))
    ));
    assert_eq!(contents(&store, "pg.1"), whole, "nothing moved");
    assert_eq!(store.get("other", &taken).unwrap(), b"in the way");
    assert_eq!(store.list_objects("other", None, 10).unwrap().len(), 1);
}

/// A collection's objects and space summed from `stat` of each object: what its statistics
/// must say.
fn counted(store: &bstore::Store, collection: &str) -> (u64, u64, u64) {
    let names = store.list_objects(collection, None, usize::MAX).unwrap();
    let stats: Vec<_> = names
        .iter()
        .map(|n| store.stat(collection, n).unwrap())
        .collect();
    (
        names.len() as u64,
        stats.iter().map(|s| s.stored_bytes).sum(),
        stats.iter().map(|s| s.allocated_bytes).sum(),
    )
}

fn assert_pool_statfs(store: &bstore::Store, step: &str) {
    let pools = [
        ("1.", ["1.0", "1.1"].as_slice()),
        ("2.", ["2.0"].as_slice()),
    ];
    for (prefix, collections) in pools {
        let mut expected = (0, 0, 0);
        for collection in collections {
            let one = counted(store, collection);
            let got = store.collection_statfs(collection).unwrap();
            let got = (got.object_count, got.stored_bytes, got.allocated_bytes);
            assert_eq!(got, one, "{step}: collection {collection}");
            expected = (expected.0 + one.0, expected.1 + one.1, expected.2 + one.2);
        }
        let pool = store
            .statfs_of(|name| name.starts_with(prefix.as_bytes()))
            .unwrap();
        assert_eq!(pool.collections, collections.len() as u64);
        let got = (pool.object_count, pool.stored_bytes, pool.allocated_bytes);
        assert_eq!(got, expected, "{step}: pool {prefix}");
    }
}

#[test]
fn pool_statfs_sums_its_collections_and_stays_exact_through_every_kind_of_change() {
    let pair = SimPair::new(256 << 20);
    let store = pair.open();
    let mut txn = Transaction::new();
    for collection in ["1.0", "1.1", "2.0"] {
        txn.create_collection(collection);
    }
    txn.write("1.0", "a", 0, pattern(1, 300_000))
        .write("1.1", "b", 0, pattern(2, 10_000))
        .write("2.0", "c", 0, pattern(3, 70_000));
    store.apply(&txn).unwrap();
    // The first query counts what is there; the changes after it are kept by transactions.
    assert_pool_statfs(&store, "counted");

    let steps: Vec<(&str, Transaction)> = vec![
        ("overwrite in place", {
            let mut t = Transaction::new();
            t.write("1.0", "a", 4096, pattern(4, 2_000)).write(
                "1.1",
                "b",
                200_000,
                pattern(5, 50_000),
            );
            t
        }),
        ("zero and truncate", {
            let mut t = Transaction::new();
            t.zero("1.0", "a", 65_536, 131_072)
                .truncate("2.0", "c", 5_000);
            t
        }),
        ("clones", {
            let mut t = Transaction::new();
            t.clone_object("1.0", "a", "a.clone")
                .clone_range("1.1", "b", 0, 8_192, "b.part", 4_096);
            t
        }),
        ("move to another pool", {
            let mut t = Transaction::new();
            t.move_rename("1.1", "b", "2.0", "b.moved");
            t
        }),
        ("split and remove", {
            let mut t = Transaction::new();
            t.split_collection("1.0", "1.1", 1, 0, ObjectHash::Crc32c)
                .remove("2.0", "c");
            t
        }),
        ("merge", {
            let mut t = Transaction::new();
            t.merge_collection("1.1", "1.0").create_collection("1.1");
            t
        }),
    ];
    for (step, txn) in steps {
        store.apply(&txn).unwrap();
        assert_pool_statfs(&store, step);
    }
    let before = store.statfs_of(|_| true).unwrap();
    store.close().unwrap();
    let store = pair.open();
    assert_eq!(
        store.statfs_of(|_| true).unwrap(),
        before,
        "counted again after a remount"
    );
    assert_eq!(
        store.statfs_of(|_| true).unwrap().object_count,
        store.statfs().unwrap().object_count
    );
    assert!(matches!(
        store.collection_statfs("missing"),
        Err(bstore::Error::NotFound(bstore::Missing::Collection { .. }))
    ));
    store.close().unwrap();
}

#[test]
fn pool_statfs_counted_while_writers_run_ends_exact() {
    let pair = SimPair::new(256 << 20);
    let store = std::sync::Arc::new(pair.open());
    for collection in ["1.0", "1.1", "2.0"] {
        store.create_collection(collection).unwrap();
    }
    let writers: Vec<_> = ["1.0", "1.1", "2.0"]
        .into_iter()
        .map(|collection| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..1_000u64 {
                    let mut txn = Transaction::new();
                    let object = format!("o{}", i % 17);
                    if i % 5 == 4 {
                        txn.remove(collection, &object);
                    } else {
                        let length = 1_000 + (i as usize * 997) % 20_000;
                        txn.write(collection, &object, i * 512, pattern(i, length));
                    }
                    // Removing a missing object fails whole and changes nothing.
                    let _ = store.submit(&txn, |_| {});
                }
            })
        })
        .collect();
    // The first queries land in the middle of the writes: counting must not miss or double
    // any transaction.
    for _ in 0..20 {
        store.statfs_of(|name| name.starts_with(b"1.")).unwrap();
        store.collection_statfs("2.0").unwrap();
    }
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert_pool_statfs(&store, "after the writers");
}

#[test]
fn the_applied_callback_comes_before_submit_returns_and_before_the_commit() {
    use std::sync::{Arc, Mutex};
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    for i in 0..200u32 {
        let mut txn = Transaction::new();
        txn.write("c", format!("o{}", i % 7), 0, pattern(u64::from(i), 100));
        let (applied, committed) = (Arc::clone(&events), Arc::clone(&events));
        store
            .submit_applied(
                &txn,
                || {
                    if i % 2 == 0 {
                        // Let the commit come first: it must still be delivered after this.
                        store.wait_for_commits();
                    }
                    applied.lock().unwrap().push(("applied", i))
                },
                move |result| {
                    result.unwrap();
                    committed.lock().unwrap().push(("committed", i));
                },
            )
            .unwrap();
        assert!(
            events.lock().unwrap().contains(&("applied", i)),
            "applied before submit_applied returned"
        );
    }
    store.wait_for_commits();
    let events = events.lock().unwrap();
    for i in 0..200u32 {
        let at = |what| events.iter().position(|e| *e == (what, i));
        let (applied, committed) = (at("applied").unwrap(), at("committed").unwrap());
        assert!(
            applied < committed,
            "transaction {i}: committed at {committed}, applied at {applied}"
        );
    }
    let mut failing = Transaction::new();
    failing.remove("c", "missing");
    let called = Arc::new(Mutex::new(false));
    let (a, b) = (Arc::clone(&called), Arc::clone(&called));
    assert!(
        store
            .submit_applied(
                &failing,
                || *a.lock().unwrap() = true,
                move |_| { *b.lock().unwrap() = true }
            )
            .is_err()
    );
    store.wait_for_commits();
    assert!(!*called.lock().unwrap(), "a failed submit calls neither");
}
