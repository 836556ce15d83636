//! Salvage: a store whose RocksDB has a table it cannot read (every scan fails, so fsck, ls
//! and repair cannot run) is made usable again on a copy, with an account of what survived.

mod common;

use bstore::{SalvageTarget, Store};
use common::{RealStore, pattern};

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
