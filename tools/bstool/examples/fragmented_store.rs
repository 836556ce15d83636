//! Fills an existing store the way the fragmented BlueStore OSD of BENCHMARKING.md was filled,
//! for timing fsck on a comparable store: 4 MiB objects, then every other 16 KiB of each
//! zeroed (punched), so half the written space is freed again in 16 KiB holes.
//!
//! `cargo run --release -p bstool --example fragmented_store -- STORE_DIR WRITTEN_BYTES`
//! (tools/fsck-bench.sh runs it). Objects go to 16 collections, four writers at a time.

use std::path::PathBuf;

use bstore::{OpenOptions, Store, Transaction};

const OBJECT: u64 = 4 << 20;
const HOLE: u64 = 16 << 10;
const WRITERS: u64 = 4;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(bytes)) = (args.next(), args.next()) else {
        return Err("usage: fragmented_store STORE_DIR WRITTEN_BYTES".into());
    };
    let written: u64 = bytes.parse().map_err(|e| format!("WRITTEN_BYTES: {e}"))?;
    let store = Store::open(PathBuf::from(&dir), &OpenOptions::default())
        .map_err(|e| format!("open {dir}: {e}"))?;
    for collection in 0..16 {
        store
            .create_collection(format!("pg.{collection}"))
            .map_err(|e| e.to_string())?;
    }
    let objects = written / OBJECT;
    let mut rng = bstore::rng::SplitMix64::new(1);
    let data: Vec<u8> = (0..OBJECT).map(|_| rng.next_u64() as u8).collect();
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (store, data) = (&store, &data);
                scope.spawn(move || fill(store, data, (writer..objects).step_by(WRITERS as usize)))
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a writer panicked".to_string())?)
    })?;
    let statfs = store.statfs().map_err(|e| e.to_string())?;
    println!(
        "{objects} objects of 4 MiB, every other 16 KiB punched: {} bytes allocated",
        statfs.allocated_bytes
    );
    store.close().map_err(|e| e.to_string())
}

fn fill(store: &Store, data: &[u8], objects: impl Iterator<Item = u64>) -> Result<(), String> {
    for object in objects {
        let (collection, name) = (format!("pg.{}", object % 16), format!("obj.{object}"));
        store
            .put(&collection, &name, data)
            .map_err(|e| format!("put {name}: {e}"))?;
        let mut punch = Transaction::new();
        for hole in (HOLE..OBJECT).step_by(2 * HOLE as usize) {
            punch.zero(&collection, &name, hole, HOLE);
        }
        store
            .apply(&punch)
            .map_err(|e| format!("punch {name}: {e}"))?;
    }
    Ok(())
}
