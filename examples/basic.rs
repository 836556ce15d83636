//! Basic use: make a store on a file, write in transactions, read back, close.
//!
//! `cargo run --example basic [DIR]` (DIR: where the store goes, default a temporary directory;
//! it needs a file system with O_DIRECT, such as ext4 or XFS).

use bstore::{BlockSource, MkfsOptions, OpenOptions, Store, Transaction};

fn main() -> bstore::Result<()> {
    let scratch = tempfile::tempdir_in("/var/tmp")
        .map_err(|e| bstore::Error::io("a temporary directory", e))?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| scratch.path().join("store"));

    // 256 MiB of object data in `DIR/block`, metadata in `DIR/db` (RocksDB).
    Store::mkfs(&MkfsOptions::new(
        &dir,
        BlockSource::File {
            size_bytes: 256 << 20,
        },
    ))?;
    let store = Store::open(&dir, &OpenOptions::default())?;
    store.create_collection("pg.1")?;

    // One transaction: all of it is durable, or none.
    let mut txn = Transaction::new();
    txn.write("pg.1", "log", 0, b"entry 1\n".to_vec())
        .setattr("pg.1", "log", "_", b"object info".to_vec())
        .omap_setkeys("pg.1", "log", [(b"seq".to_vec(), b"1".to_vec())]);
    store.apply(&txn)?; // waits until durable

    // `submit` returns once the changes are visible; the callback says when they are durable.
    let (durable, committed) = std::sync::mpsc::channel();
    let mut txn = Transaction::new();
    txn.write("pg.1", "log", 8, b"entry 2\n".to_vec());
    store.submit(&txn, move |result| {
        let _ = durable.send(result);
    })?;
    assert_eq!(store.read("pg.1", "log", 0, 16)?, b"entry 1\nentry 2\n");
    committed
        .recv()
        .map_err(|_| bstore::Error::invalid("the store dropped the callback"))??;

    let statfs = store.statfs()?;
    println!(
        "{} object(s), {} bytes stored, {} allocated, {} free",
        statfs.object_count, statfs.stored_bytes, statfs.allocated_bytes, statfs.available_bytes
    );
    store.close()
}
