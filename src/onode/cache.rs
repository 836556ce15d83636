//! The onode cache: the newest version of each object, including transactions not yet durable.
//!
//! A transaction's changes become visible when it is submitted: its new onodes are installed in
//! their slots before the data and KV writes are done. Each slot counts transactions submitted
//! and finished (committed or failed) that touched it, so a reader that needs the bytes on disk
//! or in the KV store (data reads, omap reads) waits until every transaction submitted before it
//! looked has finished, while metadata (size, xattrs) is served from the slot at once.
//!
//! The cache is bounded by a byte budget: slots of objects with no transaction in flight and no
//! user are evicted, least recently used first, when the estimated size passes the budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::Onode;

/// What a slot knows about one object name.
#[derive(Debug, Default)]
pub struct SlotState {
    /// False until the KV store has been consulted.
    pub loaded: bool,
    /// The newest version: `None` when the object does not exist.
    pub onode: Option<Arc<Onode>>,
    /// Transactions that touched the object, counted at submission.
    pub submitted: u64,
    /// Of those, the ones that have finished (durable, or failed).
    pub finished: u64,
}

/// One object's cache slot.
#[derive(Debug, Default)]
pub struct OnodeSlot {
    state: Mutex<SlotState>,
    finished_changed: Condvar,
    last_used: AtomicU64,
}

impl OnodeSlot {
    /// Locks the slot's state.
    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock()
    }

    /// Records that a transaction touching this object finished and wakes readers.
    pub fn finish_one(&self) {
        let mut state = self.state.lock();
        state.finished += 1;
        debug_assert!(state.finished <= state.submitted);
        self.finished_changed.notify_all();
    }

    /// Waits until every transaction submitted before this call has finished.
    pub fn wait_settled(&self) {
        let mut state = self.state.lock();
        let target = state.submitted;
        while state.finished < target {
            self.finished_changed.wait(&mut state);
        }
    }
}

/// The onode slots of one collection.
#[derive(Debug)]
pub struct OnodeCache {
    slots: Mutex<HashMap<Vec<u8>, Arc<OnodeSlot>>>,
    budget_bytes: usize,
    clock: AtomicU64,
}

/// Rough in-memory cost of a slot, for the byte budget: the key plus a fixed overhead plus the
/// onode's encoded-size estimate, refreshed only at eviction time to keep lookups cheap.
const SLOT_OVERHEAD_BYTES: usize = 256;

impl OnodeCache {
    /// A cache holding about `budget_bytes` of onodes.
    pub fn new(budget_bytes: usize) -> Self {
        OnodeCache {
            slots: Mutex::new(HashMap::new()),
            budget_bytes,
            clock: AtomicU64::new(0),
        }
    }

    /// The slot for `name`, created empty (not loaded) if absent.
    pub fn slot(&self, name: &[u8]) -> Arc<OnodeSlot> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.slots.lock();
        let slot = match slots.get(name) {
            Some(slot) => Arc::clone(slot),
            None => {
                let slot = Arc::new(OnodeSlot::default());
                slots.insert(name.to_vec(), Arc::clone(&slot));
                slot
            }
        };
        slot.last_used.store(tick, Ordering::Relaxed);
        if slots.len() * SLOT_OVERHEAD_BYTES > self.budget_bytes {
            Self::evict(&mut slots, self.budget_bytes);
        }
        slot
    }

    /// Slots currently held.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// True when no slot is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops idle slots, least recently used first, until the estimate fits in three quarters
    /// of the budget (so eviction runs rarely). A slot is idle when only the cache holds it and
    /// no transaction touching it is in flight.
    fn evict(slots: &mut HashMap<Vec<u8>, Arc<OnodeSlot>>, budget_bytes: usize) {
        let mut idle: Vec<(u64, Vec<u8>, usize)> = slots
            .iter()
            .filter(|(_, slot)| Arc::strong_count(slot) == 1)
            .filter_map(|(name, slot)| {
                let state = slot.state.try_lock()?;
                let settled = state.finished == state.submitted;
                let bytes = name.len()
                    + SLOT_OVERHEAD_BYTES
                    + state.onode.as_ref().map_or(0, |o| estimate_bytes(o));
                settled.then(|| (slot.last_used.load(Ordering::Relaxed), name.clone(), bytes))
            })
            .collect();
        idle.sort_unstable_by_key(|(last_used, _, _)| *last_used);
        let mut total: usize = slots.len() * SLOT_OVERHEAD_BYTES;
        let target = budget_bytes / 4 * 3;
        for (_, name, bytes) in idle {
            if total <= target {
                break;
            }
            slots.remove(&name);
            total = total.saturating_sub(bytes);
        }
    }
}

fn estimate_bytes(onode: &Onode) -> usize {
    let xattrs: usize = onode.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let extents = onode.extent_map.extents().count();
    xattrs + extents * 96
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_gets_the_same_slot() {
        let cache = OnodeCache::new(1 << 20);
        let a = cache.slot(b"x");
        let b = cache.slot(b"x");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn busy_slots_survive_eviction_and_idle_ones_go() {
        let cache = OnodeCache::new(SLOT_OVERHEAD_BYTES * 8);
        let held = cache.slot(b"held");
        let pending = cache.slot(b"pending");
        pending.lock().submitted = 1;
        drop(pending);
        for i in 0..100u32 {
            drop(cache.slot(&i.to_le_bytes()));
        }
        assert!(cache.len() <= 9, "{} slots", cache.len());
        assert!(Arc::ptr_eq(&held, &cache.slot(b"held")));
        assert_eq!(
            cache.slot(b"pending").lock().submitted,
            1,
            "in-flight slot kept"
        );
    }

    #[test]
    fn readers_wait_for_transactions_submitted_before_them() {
        let slot = Arc::new(OnodeSlot::default());
        slot.lock().submitted = 2;
        let waiter = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || slot.wait_settled())
        };
        slot.finish_one();
        slot.finish_one();
        waiter.join().unwrap();
    }
}
