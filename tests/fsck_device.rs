//! fsck sees what the device really holds: a block file shorter than the store it carries (cut
//! short, or the wrong file behind the link) is reported, naming each object whose space lies
//! past its end, while the objects inside it are left unaccused.

mod common;

use bstore::Store;
use common::{RealStore, cp, pattern};

#[test]
fn a_truncated_block_file_is_reported_with_the_objects_it_cut_off() {
    let real = RealStore::new(64 << 20);
    let store = real.open();
    store.create_collection("c").unwrap();
    store.put("c", "early", &pattern(1, 100_000)).unwrap();
    store.put("c", "late", &pattern(2, 8 << 20)).unwrap();
    let early_end = store
        .fiemap("c", "early")
        .unwrap()
        .iter()
        .map(|e| e.device_offset + e.length)
        .max()
        .unwrap();
    let late_start = store.fiemap("c", "late").unwrap()[0].device_offset;
    assert!(early_end < late_start, "allocation goes forward");
    store.close().unwrap();
    assert!(Store::fsck(real.path()).unwrap().is_clean());

    // Cut at the end of the early object's last allocation unit.
    let cut = early_end.next_multiple_of(4096);
    assert!(cut <= late_start);
    let block = std::fs::OpenOptions::new()
        .write(true)
        .open(real.block())
        .unwrap();
    block.set_len(cut).unwrap();
    drop(block);
    let report = Store::fsck(real.path()).unwrap();
    let checks: Vec<(&str, &str)> = report
        .errors
        .iter()
        .map(|e| (e.check, e.detail.as_str()))
        .collect();
    assert!(
        checks
            .iter()
            .any(|(check, detail)| *check == "device.truncated"
                && detail.contains(&format!("has {cut} bytes"))),
        "{checks:?}"
    );
    let beyond: Vec<_> = checks
        .iter()
        .filter(|(check, _)| *check == "onode.beyond_device")
        .collect();
    assert_eq!(beyond.len(), 1, "{checks:?}");
    assert!(beyond[0].1.contains("late"), "{checks:?}");
    assert!(
        beyond[0]
            .1
            .contains(&format!("{} bytes of its space", 8 << 20)),
        "the whole object lies past the cut: {checks:?}"
    );

    // Deep fsck reads what is left and accuses nothing more.
    let options = bstore::FsckOptions::default().with_deep(true);
    let deep = Store::fsck_with(real.path(), options).unwrap();
    assert_eq!(deep.errors.len(), report.errors.len(), "{:?}", deep.errors);
    let data = deep.deep.unwrap();
    assert!(data.bad_chunks.is_empty(), "{:?}", data.bad_chunks);
    assert!(data.bytes_read >= 100_000);
}

#[test]
fn a_block_file_older_than_the_database_is_refused_and_fsck_says_why() {
    let real = RealStore::new(64 << 20);
    let store = real.open();
    store.create_collection("c").unwrap();
    store.put("c", "first", &pattern(1, 100_000)).unwrap();
    store.close().unwrap();
    let old_block = real.dir.path().join("block.old");
    cp(&["--sparse=always"], &real.block(), &old_block);
    let store = real.open();
    for i in 0..5u64 {
        store
            .put("c", format!("later-{i}"), &pattern(10 + i, 100_000))
            .unwrap();
    }
    store.close().unwrap();

    // The device restored from the copy: the database names records it never saw.
    cp(&["--sparse=always"], &old_block, &real.block());
    let refused = Store::open(real.path(), &bstore::OpenOptions::default());
    let Err(bstore::Error::Corruption(why)) = refused else {
        panic!("a stale device mounted: {:?}", refused.map(|_| ()));
    };
    assert!(why.contains("older than the KV store"), "{why}");
    let report = Store::fsck(real.path()).unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.errors[0].check, "journal", "{:?}", report.errors);
    assert!(report.errors[0].detail.contains("older than the KV store"));
    // Read-only inspection refuses it too rather than serve stale bytes.
    assert!(Store::open_read_only(real.path(), &bstore::OpenOptions::default()).is_err());
}

/// A closed store holding `c/first`, and a copy of its `db/` taken then.
fn store_with_a_copy_of_its_database() -> (RealStore, std::path::PathBuf) {
    let real = RealStore::new(64 << 20);
    let store = real.open();
    store.create_collection("c").unwrap();
    store.put("c", "first", &pattern(1, 100_000)).unwrap();
    store.close().unwrap();
    let old_db = real.dir.path().join("db.old");
    cp(&["-a"], &real.path().join("db"), &old_db);
    (real, old_db)
}

/// Puts the copy of `db/` back in place of the current one, as an operator restoring it would.
fn restore_database(real: &RealStore, old_db: &std::path::Path) {
    std::fs::remove_dir_all(real.path().join("db")).unwrap();
    std::fs::rename(old_db, real.path().join("db")).unwrap();
}

#[test]
fn a_database_older_than_the_block_is_brought_forward_while_the_ring_holds_its_records() {
    let (real, old_db) = store_with_a_copy_of_its_database();
    let store = real.open();
    for i in 0..5u64 {
        store
            .put("c", format!("later-{i}"), &pattern(10 + i, 100_000))
            .unwrap();
    }
    store.close().unwrap();

    // Restoring the older database loses nothing: the journal still holds every record since.
    restore_database(&real, &old_db);
    assert!(Store::fsck(real.path()).unwrap().is_clean());
    let store = real.open();
    for i in 0..5u64 {
        assert_eq!(
            store.get("c", format!("later-{i}")).unwrap(),
            pattern(10 + i, 100_000)
        );
    }
    store.close().unwrap();
}

/// A transaction too large for a journal record: it commits outside the ring.
fn large_omap_commit(store: &Store) {
    let values: Vec<_> = (0..6u8)
        .map(|i| (vec![b'k', i], pattern(20 + u64::from(i), 4 << 20)))
        .collect();
    let txn = bstore::Transaction::new()
        .touch("c", "omap")
        .omap_setkeys("c", "omap", values)
        .clone();
    let before = store.counters().journal_bypasses;
    store.apply(&txn).unwrap();
    assert_eq!(store.counters().journal_bypasses, before + 1);
}

#[test]
fn a_database_older_than_a_commit_made_outside_the_ring_is_refused_and_fsck_says_why() {
    // The replay that brings an older database forward cannot bring back a commit the ring
    // never carried; the ring's marks around it must stop the mount instead. The large commit
    // is the last before close: nothing but those marks follows it.
    let (real, old_db) = store_with_a_copy_of_its_database();
    let store = real.open();
    store.put("c", "later", &pattern(2, 100_000)).unwrap();
    large_omap_commit(&store);
    store.close().unwrap();

    restore_database(&real, &old_db);
    let refused = Store::open(real.path(), &bstore::OpenOptions::default());
    let Err(bstore::Error::Corruption(why)) = refused else {
        panic!(
            "a database missing a commit mounted: {:?}",
            refused.map(|_| ())
        );
    };
    assert!(why.contains("older than the device"), "{why}");
    let report = Store::fsck(real.path()).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].check, "journal");
    assert!(report.errors[0].detail.contains("outside the ring"));
    assert!(Store::open_read_only(real.path(), &bstore::OpenOptions::default()).is_err());
}

#[test]
fn a_commit_made_outside_the_ring_leaves_a_store_that_mounts_again_and_again() {
    let real = RealStore::new(64 << 20);
    let store = real.open();
    store.create_collection("c").unwrap();
    large_omap_commit(&store);
    store.put("c", "after", &pattern(3, 100_000)).unwrap();
    store.close().unwrap();
    for _ in 0..2 {
        assert!(Store::fsck(real.path()).unwrap().is_clean());
        let store = real.open();
        assert_eq!(store.get("c", "after").unwrap(), pattern(3, 100_000));
        let values = store.omap_get_values("c", "omap", [b"k\x05"]).unwrap();
        assert!(values[&b"k\x05"[..]] == pattern(25, 4 << 20));
        store.close().unwrap();
    }
}
