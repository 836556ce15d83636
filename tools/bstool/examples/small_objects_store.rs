//! Fills an existing store with many 4 KiB objects, for timing a mount of a store that holds a
//! million of them: `cargo run --release -p bstool --example small_objects_store -- STORE_DIR
//! COUNT`. Objects go to 16 collections, sixteen writers at a time.

use std::path::PathBuf;

use bstore::{OpenOptions, Store};

const WRITERS: u64 = 16;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (args.next(), args.next()) else {
        return Err("usage: small_objects_store STORE_DIR COUNT".into());
    };
    let count: u64 = count.parse().map_err(|e| format!("COUNT: {e}"))?;
    let store = Store::open(PathBuf::from(&dir), &OpenOptions::default())
        .map_err(|e| format!("open {dir}: {e}"))?;
    for collection in 0..16 {
        store
            .create_collection(format!("pg.{collection}"))
            .map_err(|e| e.to_string())?;
    }
    let data = vec![7u8; 4096];
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (store, data) = (&store, &data);
                scope.spawn(move || -> Result<(), String> {
                    for object in (writer..count).step_by(WRITERS as usize) {
                        let collection = format!("pg.{}", object % 16);
                        store
                            .put(&collection, format!("small.{object}"), data)
                            .map_err(|e| format!("put {object}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a writer panicked".to_string())?)
    })?;
    println!("{count} objects of 4 KiB");
    store.close().map_err(|e| e.to_string())
}
