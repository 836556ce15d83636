//! Crash-testing a workload of your own with the simulated pair (feature `testing`): run it,
//! cut the power at a chosen moment, mount what survived, and check that every acknowledged
//! write is there. Each seed replays exactly.
//!
//! `cargo run --example crash_test [SEED]`

use std::sync::Arc;

use bstore::device::{CrashMode, PowerCut, SimDevice};
use bstore::kv::MemKv;
use bstore::{FormatOptions, OpenOptions, Store, Transaction};

const OBJECTS: u64 = 64;

/// The workload: each transaction writes a versioned record to one object. Returns the
/// versions acknowledged (durable) before the power went.
fn workload(store: &Store, seed: u64, cut_after: usize) -> Vec<(u64, u64)> {
    let mut rng = bstore::rng::SplitMix64::new(seed);
    let mut acknowledged = Vec::new();
    for version in 0..cut_after as u64 {
        let object = rng.below(OBJECTS);
        let mut txn = Transaction::new();
        txn.write("c", object.to_string(), 0, record(object, version));
        if store.apply(&txn).is_ok() {
            acknowledged.push((object, version));
        }
    }
    acknowledged
}

fn record(object: u64, version: u64) -> Vec<u8> {
    format!("object {object} version {version:08}").into_bytes()
}

fn main() -> bstore::Result<()> {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    println!("seed {seed} (pass it to replay this run)");
    let device = Arc::new(SimDevice::new(64 << 20, 512, false));
    let kv = Arc::new(MemKv::new());
    Store::mkfs_on(device.as_ref(), kv.as_ref(), &FormatOptions::default())?;
    let store = Store::open_on(device.clone(), kv.clone(), &OpenOptions::default())?;
    store.create_collection("c")?;

    // The power goes at the device write, flush or KV write the seed picks (or never, if the
    // workload is done first); from then on every write fails and the store refuses work.
    let power = PowerCut::at(100 + seed % 2000);
    device.set_power(Arc::clone(&power));
    kv.set_power(power);
    let acknowledged = workload(&store, seed, 500);
    // The power goes: unflushed device writes and unsynced KV batches each survive, vanish or
    // tear as the seed decides.
    let image = device.crash(CrashMode::Random(seed));
    let survived_kv = kv.crash(CrashMode::Random(seed));
    drop(store);

    let device = Arc::new(SimDevice::from_image(image, 64 << 20, 512, false));
    let store = Store::open_on(device, Arc::new(survived_kv), &OpenOptions::default())?;
    let mut newest = std::collections::BTreeMap::new();
    for (object, version) in acknowledged {
        newest.insert(object, version);
    }
    for (object, version) in &newest {
        let bytes = store.get("c", object.to_string())?;
        assert_eq!(
            bytes,
            record(*object, *version),
            "object {object} lost its last write"
        );
    }
    println!(
        "{} objects checked after the power cut: all acknowledged writes survived",
        newest.len()
    );
    store.close()
}
