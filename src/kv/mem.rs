//! The in-memory KV store for tests, with RocksDB's crash semantics.
//!
//! Every batch is visible at once. A synced write makes it and every earlier batch durable (one
//! WAL, written in order). [`MemKv::crash`] returns the store a power cut would leave: the durable
//! state plus a prefix of the unsynced batches (none, all, or a random prefix: a WAL tail is lost
//! from some point on, never from the middle). A failed synced write is not acknowledged, but its
//! batch may still survive a crash, as with a real fsync failure; so may the batch of the write
//! the power failed during: in random mode it survives half the time (behind every unsynced
//! batch), as when the log reached the disk but the sync never returned.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Batch, BatchOp, Durability, KeySpace, Kv, ScanVisitor};
use crate::device::{CrashMode, PowerCut, PowerEvent};
use crate::error::{Error, Result};
use crate::format::freelist;
use crate::rng::SplitMix64;

type Space = BTreeMap<Vec<u8>, Vec<u8>>;

/// Fault injection: the n-th (1-based) synced write fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemKvFaults {
    /// The n-th synced write returns an I/O error.
    pub fail_sync_number: Option<u64>,
}

/// What the last simulated power cut did to the batches that were not yet durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemCrashCounts {
    /// Unsynced batches that survived.
    pub unsynced_kept: u64,
    /// Unsynced batches lost.
    pub unsynced_lost: u64,
    /// The batch of the write the power failed during, when it survived (0 or 1).
    pub cut_batch_kept: u64,
    /// The batch of the write the power failed during, when it was lost (0 or 1).
    pub cut_batch_lost: u64,
}

#[derive(Debug, Default)]
struct MemState {
    visible: Vec<Space>,
    durable: Vec<Space>,
    unsynced: Vec<Batch>,
    /// The batch of the write the power failed during: it may have reached the log.
    cut_batch: Option<Batch>,
    faults: MemKvFaults,
    synced_writes: u64,
    crashed: bool,
    power: Option<Arc<PowerCut>>,
    last_crash: MemCrashCounts,
}

/// In-memory [`Kv`].
#[derive(Debug)]
pub struct MemKv {
    state: Mutex<MemState>,
    bytes_written: AtomicU64,
}

impl Default for MemKv {
    fn default() -> Self {
        MemKv::new()
    }
}

impl MemKv {
    /// An empty store.
    pub fn new() -> MemKv {
        let empty = vec![Space::new(); KeySpace::ALL.len()];
        MemKv {
            state: Mutex::new(MemState {
                visible: empty.clone(),
                durable: empty,
                ..MemState::default()
            }),
            bytes_written: AtomicU64::new(0),
        }
    }

    /// Arms fault injection.
    pub fn set_faults(&self, faults: MemKvFaults) {
        self.state.lock().faults = faults;
    }

    /// Counts writes on `power`; once it is off they fail with EIO and change nothing.
    pub fn set_power(&self, power: Arc<PowerCut>) {
        self.state.lock().power = Some(power);
    }

    /// Synced writes so far.
    pub fn synced_writes(&self) -> u64 {
        self.state.lock().synced_writes
    }

    /// Simulates a power cut: returns the store that survives; this one refuses further writes.
    pub fn crash(&self, mode: CrashMode) -> MemKv {
        let (survivor, counts) = self.survivor_with_counts(mode);
        let mut state = self.state.lock();
        state.crashed = true;
        state.last_crash = counts;
        survivor
    }

    /// What the last [`MemKv::crash`] did to the batches not yet durable.
    pub fn last_crash(&self) -> MemCrashCounts {
        self.state.lock().last_crash
    }

    /// The store a power cut now would leave, without cutting the power.
    pub fn survivor(&self, mode: CrashMode) -> MemKv {
        self.survivor_with_counts(mode).0
    }

    fn survivor_with_counts(&self, mode: CrashMode) -> (MemKv, MemCrashCounts) {
        let state = self.state.lock();
        let unsynced = state.unsynced.len() as u64;
        let mut rng = match mode {
            CrashMode::Random(seed) => Some(SplitMix64::new(seed)),
            _ => None,
        };
        let keep = match (mode, &mut rng) {
            (CrashMode::DropUnflushed, _) => 0,
            (CrashMode::KeepUnflushed, _) => unsynced,
            (_, Some(rng)) => rng.below(unsynced + 1),
            (CrashMode::Random(_), None) => unreachable!("rng exists in random mode"),
        };
        // The log is written in order: the cut batch can survive only behind all the others.
        let keep_cut = state.cut_batch.is_some()
            && keep == unsynced
            && match (mode, &mut rng) {
                (CrashMode::KeepUnflushed, _) => true,
                (_, Some(rng)) => rng.chance(1, 2),
                _ => false,
            };
        let mut survivor = state.durable.clone();
        for batch in state.unsynced.iter().take(keep as usize) {
            apply(&mut survivor, batch);
        }
        if keep_cut && let Some(batch) = &state.cut_batch {
            apply(&mut survivor, batch);
        }
        let cut = u64::from(state.cut_batch.is_some());
        let counts = MemCrashCounts {
            unsynced_kept: keep,
            unsynced_lost: unsynced - keep,
            cut_batch_kept: u64::from(keep_cut),
            cut_batch_lost: cut - u64::from(keep_cut),
        };
        (Self::restored(survivor), counts)
    }

    /// A store whose durable state is `survivor`.
    fn restored(survivor: Vec<Space>) -> MemKv {
        MemKv {
            state: Mutex::new(MemState {
                visible: survivor.clone(),
                durable: survivor,
                ..MemState::default()
            }),
            bytes_written: AtomicU64::new(0),
        }
    }

    /// Number of keys in `space` (visible state).
    pub fn key_count(&self, space: KeySpace) -> usize {
        self.state.lock().visible[space.index()].len()
    }
}

impl Kv for MemKv {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.state.lock().visible[space.index()].get(key).cloned())
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<()> {
        let mut state = self.state.lock();
        let what = (batch.payload_bytes() as u64) | (1 << 63);
        let event = match &state.power {
            Some(power) if !state.crashed => power.next_event_of(what),
            _ => PowerEvent::On,
        };
        if state.crashed || event != PowerEvent::On {
            if event == PowerEvent::Cut {
                state.cut_batch = Some(batch);
            }
            return Err(Error::io(
                "KV write",
                io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        self.bytes_written
            .fetch_add(batch.payload_bytes() as u64, Ordering::Relaxed);
        apply(&mut state.visible, &batch);
        state.unsynced.push(batch);
        if durability == Durability::Sync {
            state.synced_writes += 1;
            if state.faults.fail_sync_number == Some(state.synced_writes) {
                return Err(Error::io(
                    "KV sync (injected error)",
                    io::Error::from_raw_os_error(libc::EIO),
                ));
            }
            let unsynced = std::mem::take(&mut state.unsynced);
            for batch in &unsynced {
                apply(&mut state.durable, batch);
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        // Copy entries out in pages so the visitor may call back into the store, and a scan
        // that stops early copies little.
        const PAGE_ENTRIES: usize = 256;
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut lower: Bound<Vec<u8>> = Bound::Included(start.to_vec());
        loop {
            let page: Vec<(Vec<u8>, Vec<u8>)> = {
                let state = self.state.lock();
                let lower_ref = match &lower {
                    Bound::Included(key) => Bound::Included(&key[..]),
                    Bound::Excluded(key) => Bound::Excluded(&key[..]),
                    Bound::Unbounded => Bound::Unbounded,
                };
                state.visible[space.index()]
                    .range::<[u8], _>((lower_ref, upper))
                    .take(PAGE_ENTRIES)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            for (key, value) in &page {
                if !visit(key, value)? {
                    return Ok(());
                }
            }
            match page.into_iter().last() {
                Some((key, _)) => lower = Bound::Excluded(key),
                None => return Ok(()),
            }
        }
    }

    fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Makes every batch durable, as RocksDB's flush of its memtables does (journaled writes
    /// are durable only after one).
    fn flush(&self) -> Result<()> {
        const FLUSH: u64 = 0xf1f1;
        let mut state = self.state.lock();
        let event = match &state.power {
            Some(power) if !state.crashed => power.next_event_of(FLUSH),
            _ => PowerEvent::On,
        };
        // A flush is atomic (RocksDB commits it with one manifest write): the power cut during
        // it leaves nothing of it.
        if state.crashed || event != PowerEvent::On {
            return Err(Error::io(
                "KV flush",
                io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        let unsynced = std::mem::take(&mut state.unsynced);
        for batch in &unsynced {
            apply(&mut state.durable, batch);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn Kv + '_>> {
        Ok(Box::new(FrozenKv {
            spaces: self.state.lock().visible.clone(),
        }))
    }
}

/// A copy of a [`MemKv`]'s key spaces: its snapshot.
struct FrozenKv {
    spaces: Vec<Space>,
}

impl Kv for FrozenKv {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.spaces[space.index()].get(key).cloned())
    }

    fn write(&self, _batch: Batch, _durability: Durability) -> Result<()> {
        Err(super::snapshot_refuses_writes())
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for (key, value) in
            self.spaces[space.index()].range::<[u8], _>((Bound::Included(start), upper))
        {
            if !visit(key, value)? {
                break;
            }
        }
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        0
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn Kv + '_>> {
        Ok(Box::new(super::Unchanging(self)))
    }
}

fn apply(spaces: &mut [Space], batch: &Batch) {
    for op in batch.ops() {
        match op {
            BatchOp::Put { space, key, value } => {
                spaces[space.index()].insert(key.clone(), value.clone());
            }
            BatchOp::Delete { space, key } => {
                spaces[space.index()].remove(key);
            }
            BatchOp::DeleteRange { space, start, end } => {
                let map = &mut spaces[space.index()];
                let doomed: Vec<Vec<u8>> = map
                    .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in doomed {
                    map.remove(&key);
                }
            }
            BatchOp::Merge {
                space,
                key,
                operand,
            } => {
                assert_eq!(
                    *space,
                    KeySpace::Freelist,
                    "only the freelist has a merge operator"
                );
                let map = &mut spaces[space.index()];
                let merged = freelist::full_merge(map.get(key).map(Vec::as_slice), [&operand[..]])
                    .expect("bstore only writes well-formed freelist operands");
                map.insert(key.clone(), merged);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(kv: &MemKv, key: &[u8], durability: Durability) {
        let mut batch = Batch::new();
        batch.put(KeySpace::Onodes, key, b"v".to_vec());
        kv.write(batch, durability).unwrap();
    }

    #[test]
    fn a_crash_keeps_synced_batches_and_drops_unsynced_ones() {
        let kv = MemKv::new();
        put(&kv, b"a", Durability::NoSync);
        put(&kv, b"b", Durability::Sync);
        put(&kv, b"c", Durability::NoSync);
        assert!(
            kv.get(KeySpace::Onodes, b"c").unwrap().is_some(),
            "visible before sync"
        );
        let after = kv.crash(CrashMode::DropUnflushed);
        assert!(
            after.get(KeySpace::Onodes, b"a").unwrap().is_some(),
            "synced by b's sync"
        );
        assert!(after.get(KeySpace::Onodes, b"b").unwrap().is_some());
        assert!(after.get(KeySpace::Onodes, b"c").unwrap().is_none());
        let mut batch = Batch::new();
        batch.delete(KeySpace::Onodes, b"a".to_vec());
        assert!(
            kv.write(batch, Durability::Sync).is_err(),
            "crashed store refuses writes"
        );
    }

    #[test]
    fn random_crashes_keep_a_prefix() {
        for seed in 0..50 {
            let kv = MemKv::new();
            for i in 0..5u8 {
                put(&kv, &[i], Durability::NoSync);
            }
            let after = kv.crash(CrashMode::Random(seed));
            let present: Vec<bool> = (0..5u8)
                .map(|i| after.get(KeySpace::Onodes, &[i]).unwrap().is_some())
                .collect();
            assert!(
                present.windows(2).all(|w| w[0] || !w[1]),
                "seed {seed}: {present:?}"
            );
        }
    }

    #[test]
    fn scans_are_ordered_and_bounded() {
        let kv = MemKv::new();
        for key in [b"b", b"a", b"d", b"c"] {
            put(&kv, key, Durability::NoSync);
        }
        let kv: &dyn Kv = &kv;
        let got = kv
            .scan_collect(KeySpace::Onodes, b"b", Some(b"d"), 10)
            .unwrap();
        let keys: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"b"[..], &b"c"[..]]);
    }

    #[test]
    fn a_snapshot_ignores_later_writes() {
        crate::kv::assert_snapshots_ignore_later_writes(&MemKv::new());
    }
}
