//! Salvage: a store whose RocksDB has a table it cannot read (every scan fails, so fsck, ls
//! and repair cannot run) is made usable again on a copy, with an account of what survived.

mod common;

use bstore::{
    BlockSource, JournalSize, MkfsOptions, OpenOptions, SalvageTarget, Store, Transaction,
};
use common::{RealStore, cp, pattern, scratch_dir};

/// The RocksDB table holding the onode record of `name`, found by its bytes (no compression).
fn table_holding(db: &std::path::Path, name: &[u8]) -> std::path::PathBuf {
    std::fs::read_dir(db)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sst"))
        .find(|path| {
            let bytes = std::fs::read(path).unwrap();
            bytes.windows(name.len()).any(|w| w == name)
        })
        .expect("a table holds the name")
}

fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn salvage_of_a_store_with_a_corrupted_table_names_survivors_and_losses() {
    let real = RealStore::new(64 << 20);
    // Two sessions, so the onodes of each live in a table of their own.
    let store = real.open();
    store.create_collection("c").unwrap();
    for i in 0..10u64 {
        store
            .put("c", format!("early-{i}"), &pattern(i, 30_000))
            .unwrap();
    }
    store.close().unwrap();
    let store = real.open();
    for i in 0..10u64 {
        store
            .put("c", format!("late-{i}"), &pattern(100 + i, 30_000))
            .unwrap();
    }
    store.close().unwrap();

    let db = real.path().join("db");
    let table = table_holding(&db, b"late-0");
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes.windows(6).position(|w| w == b"late-0").unwrap();
    bytes[at + 1] ^= 0x20;
    std::fs::write(&table, &bytes).unwrap();
    assert!(
        Store::fsck(real.path()).is_err(),
        "the damaged table stops fsck"
    );
    let original = snapshot(&db);

    let copy = real.dir.path().join("salvaged");
    let report = Store::salvage(real.path(), &SalvageTarget::Copy(copy.clone())).unwrap();
    assert_eq!(report.store, copy);
    assert_eq!(report.tables_lost.len(), 1, "{:?}", report.tables_lost);
    let early: Vec<String> = (0..10).map(|i| format!("c/early-{i}")).collect();
    for name in &early {
        assert!(
            report.survivors.contains(name),
            "{name}: {:?}",
            report.survivors
        );
    }
    assert!(
        report
            .survivors
            .iter()
            .all(|name| name.starts_with("c/early-"))
    );
    assert_eq!(
        report.vanished,
        Some(10),
        "the late objects' records went with the table"
    );
    assert!(
        report.repair.after.is_clean(),
        "{:?}",
        report.repair.after.errors
    );
    assert_eq!(snapshot(&db), original, "the original is left as it was");

    assert!(Store::fsck(&copy).unwrap().is_clean());
    let salvaged = Store::open(&copy, &bstore::OpenOptions::default()).unwrap();
    for i in 0..10u64 {
        assert_eq!(
            salvaged.get("c", format!("early-{i}")).unwrap(),
            pattern(i, 30_000)
        );
    }
    salvaged
        .put("c", "after", b"the salvaged store takes writes")
        .unwrap();
    salvaged.close().unwrap();
    assert!(Store::fsck(&copy).unwrap().is_clean());

    let again = Store::salvage(real.path(), &SalvageTarget::Copy(copy.clone()));
    assert!(
        again.is_err(),
        "salvage never writes into an existing directory"
    );
}

/// RocksDB's repair alone turns its log into tables without the freelist's merge operator and
/// only for column families some table names, and moves aside a log it cannot convert: a
/// crashed store (its log holding acknowledged commits) lost them. Salvage empties the log
/// first (found by review).
#[test]
fn salvage_of_a_crashed_format_1_store_keeps_what_the_log_held() {
    let dir = scratch_dir();
    let path = dir.path().join("store");
    let mut mkfs = MkfsOptions::new(
        &path,
        BlockSource::File {
            size_bytes: 64 << 20,
        },
    );
    mkfs.format.journal = JournalSize::Disabled;
    Store::mkfs(&mkfs).unwrap();
    let store = Store::open(&path, &OpenOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    store.put("c", "flushed", &pattern(1, 10_000)).unwrap();
    store.put("c", "gone", &pattern(3, 10_000)).unwrap();
    store.close().unwrap();
    let store = Store::open(&path, &OpenOptions::default()).unwrap();
    store
        .apply(Transaction::new().omap_setkeys("c", "flushed", [(b"k".to_vec(), b"v".to_vec())]))
        .unwrap();
    store.remove("c", "gone").unwrap();
    store.create_collection("d").unwrap();
    store.put("d", "x", b"in d").unwrap();
    for i in 0..5u64 {
        store
            .put("c", format!("logged-{i}"), &pattern(10 + i, 10_000))
            .unwrap();
    }
    // A crash image: the store directory as the power cut would leave it.
    let crash_a = dir.path().join("crash-a");
    let crash_b = dir.path().join("crash-b");
    cp(&["-a", "--sparse=always"], &path, &crash_a);
    cp(&["-a", "--sparse=always"], &path, &crash_b);
    store.close().unwrap();

    // A plain mount of the crash image has every acknowledged object.
    let mounted = Store::open(&crash_a, &OpenOptions::default()).unwrap();
    for i in 0..5u64 {
        assert_eq!(
            mounted.get("c", format!("logged-{i}")).unwrap(),
            pattern(10 + i, 10_000)
        );
    }
    mounted.close().unwrap();

    let copy = dir.path().join("salvaged");
    let report = Store::salvage(&crash_b, &SalvageTarget::Copy(copy.clone())).unwrap();
    assert_eq!(report.log_warning, None);
    assert!(report.tables_lost.is_empty(), "{:?}", report.tables_lost);
    assert!(
        report.repair.after.is_clean(),
        "{:?}",
        report.repair.after.errors
    );
    for i in 0..5u64 {
        let name = format!("c/logged-{i}");
        assert!(
            report.survivors.contains(&name),
            "{name}: {:?}",
            report.survivors
        );
    }
    let salvaged = Store::open(&copy, &OpenOptions::default()).unwrap();
    let omap = salvaged.omap_get_values("c", "flushed", [b"k"]).unwrap();
    assert!(
        omap.contains_key(b"k".as_slice()),
        "an acknowledged omap write survives"
    );
    assert!(!salvaged.exists("c", "gone").unwrap(), "so does a removal");
    assert_eq!(salvaged.get("d", "x").unwrap(), b"in d");
    salvaged.close().unwrap();
}
