//! `osd-bench`: what `ceph tell osd.N bench 204800000 4096 4194304 100` does, on bstore.
//!
//! Ceph's OSD bench writes its objects whole first, then issues 50,000 4 KiB writes at random
//! 4 KiB-aligned offsets of 100 objects of 4 MiB straight into the object store: one client
//! submitting without waiting for each commit, held back only by BlueStore's throttle on bytes
//! in flight (64 MiB), and done when every commit has arrived. The same here: one submitting
//! thread, a byte throttle, a histogram of submit-to-commit latencies.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bstore::rng::SplitMix64;
use bstore::{Error, Store, Transaction};
use hdrhistogram::Histogram;

use super::metrics::{latency_histogram, record};
use super::workload::{Measured, OBJECT_SIZE};
use crate::output::error_text;

/// The collection the bench objects live in (one, like one PG of Ceph's OSD bench).
pub const COLLECTION: &str = "bstool-osd-bench";
const OBJECTS: u64 = 100;
const WRITES: u64 = 50_000;
const WRITE_BYTES: u64 = 4096;
/// BlueStore's default `bluestore_throttle_bytes`.
const THROTTLE_BYTES: u64 = 64 << 20;

/// Makes the collection and writes the 100 objects whole (not timed).
pub fn prepare(store: &Store, data: &[u8]) -> Result<(), String> {
    match store.create_collection(COLLECTION) {
        Ok(()) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(error_text(e)),
    }
    for index in 0..OBJECTS {
        store
            .put(COLLECTION, object(index), &data[..OBJECT_SIZE as usize])
            .map_err(error_text)?;
    }
    Ok(())
}

fn object(index: u64) -> String {
    format!("benchmark_data_{index}")
}

/// Bytes in flight and what the commits reported.
struct Flight {
    bytes: u64,
    committed: u64,
    histogram: Histogram<u64>,
    error: Option<String>,
}

/// Submits the 50,000 writes under the throttle and waits for every commit.
pub fn run(store: &Store, seed: u64) -> Result<Measured, String> {
    let flight = Arc::new((
        Mutex::new(Flight {
            bytes: 0,
            committed: 0,
            histogram: latency_histogram(),
            error: None,
        }),
        Condvar::new(),
    ));
    let mut rng = SplitMix64::new(seed);
    let payload = vec![0x5a; WRITE_BYTES as usize];
    let start = Instant::now();
    for _ in 0..WRITES {
        {
            let (state, changed) = &*flight;
            let mut state = state.lock().map_err(|_| "a commit callback panicked")?;
            while state.bytes + WRITE_BYTES > THROTTLE_BYTES {
                state = changed
                    .wait(state)
                    .map_err(|_| "a commit callback panicked")?;
            }
            state.bytes += WRITE_BYTES;
        }
        let offset = rng.below(OBJECT_SIZE / WRITE_BYTES) * WRITE_BYTES;
        let mut txn = Transaction::new();
        txn.write(
            COLLECTION,
            object(rng.below(OBJECTS)),
            offset,
            payload.clone(),
        );
        let done = Arc::clone(&flight);
        let submitted = Instant::now();
        store
            .submit(&txn, move |result| {
                let (state, changed) = &*done;
                let Ok(mut state) = state.lock() else { return };
                record(&mut state.histogram, submitted.elapsed());
                state.bytes -= WRITE_BYTES;
                state.committed += 1;
                if let Err(e) = result {
                    state.error.get_or_insert(error_text(e));
                }
                changed.notify_all();
            })
            .map_err(error_text)?;
    }
    let (state, changed) = &*flight;
    let mut state = state.lock().map_err(|_| "a commit callback panicked")?;
    while state.committed < WRITES {
        state = changed
            .wait(state)
            .map_err(|_| "a commit callback panicked")?;
    }
    if let Some(error) = state.error.take() {
        return Err(error);
    }
    Ok(Measured {
        ops: WRITES,
        bytes: WRITES * WRITE_BYTES,
        elapsed: start.elapsed(),
        histogram: state.histogram.clone(),
        rounds: Vec::new(),
    })
}

/// Removes the bench objects and their collection.
pub fn clean_up(store: &Store) -> Result<(), String> {
    if store
        .list_collections()
        .map_err(error_text)?
        .iter()
        .all(|c| c != COLLECTION.as_bytes())
    {
        return Ok(());
    }
    let mut txn = Transaction::new();
    for index in 0..OBJECTS {
        if store
            .exists(COLLECTION, object(index))
            .map_err(error_text)?
        {
            txn.remove(COLLECTION, object(index));
        }
    }
    txn.remove_collection(COLLECTION);
    store.apply(&txn).map_err(error_text)
}
