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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::Onode;
use crate::completion::Waiting;

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
    /// Bytes this slot is charged in its cache's budget.
    cost: AtomicUsize,
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
    pub fn wait_settled(&self, waiting: Waiting<'_>) {
        let mut state = self.state.lock();
        let target = state.submitted;
        while state.finished < target {
            waiting.wait(&self.finished_changed, &mut state);
        }
    }
}

/// The onode slots of one collection, within a byte budget.
#[derive(Debug)]
pub struct OnodeCache {
    slots: Mutex<HashMap<Vec<u8>, Arc<OnodeSlot>>>,
    budget_bytes: usize,
    /// Bytes charged by all slots.
    bytes: AtomicUsize,
    clock: AtomicU64,
}

/// Fixed in-memory cost of a slot beyond its name and onode.
const SLOT_OVERHEAD_BYTES: usize = 256;

impl OnodeCache {
    /// A cache holding about `budget_bytes` of onodes.
    pub fn new(budget_bytes: usize) -> Self {
        OnodeCache {
            slots: Mutex::new(HashMap::new()),
            budget_bytes,
            bytes: AtomicUsize::new(0),
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
                let cost = name.len() + SLOT_OVERHEAD_BYTES;
                slot.cost.store(cost, Ordering::Relaxed);
                self.bytes.fetch_add(cost, Ordering::Relaxed);
                slots.insert(name.to_vec(), Arc::clone(&slot));
                slot
            }
        };
        slot.last_used.store(tick, Ordering::Relaxed);
        if self.bytes.load(Ordering::Relaxed) > self.budget_bytes {
            self.evict(&mut slots);
        }
        slot
    }

    /// Sets the slot's onode (the caller holds its lock) and charges its size to the budget.
    pub fn store(
        &self,
        slot: &OnodeSlot,
        state: &mut SlotState,
        name: &[u8],
        onode: Option<Arc<Onode>>,
    ) {
        let cost = name.len() + SLOT_OVERHEAD_BYTES + onode.as_deref().map_or(0, estimate_bytes);
        state.onode = onode;
        state.loaded = true;
        let old = slot.cost.swap(cost, Ordering::Relaxed);
        if cost >= old {
            self.bytes.fetch_add(cost - old, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(old - cost, Ordering::Relaxed);
        }
        // Eviction only try-locks slot states, so holding this slot's lock here is safe.
        if self.bytes.load(Ordering::Relaxed) > self.budget_bytes {
            self.evict(&mut self.slots.lock());
        }
    }

    /// Slots currently held.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// True when no slot is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged by all slots.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Drops idle slots, least recently used first, until the cache fits in three quarters of
    /// its budget (so eviction runs rarely). A slot is idle when only the cache holds it and no
    /// transaction touching it is in flight; busy slots are never dropped.
    fn evict(&self, slots: &mut HashMap<Vec<u8>, Arc<OnodeSlot>>) {
        let mut idle: Vec<(u64, Vec<u8>)> = slots
            .iter()
            .filter(|(_, slot)| Arc::strong_count(slot) == 1)
            .filter(|(_, slot)| {
                slot.state
                    .try_lock()
                    .is_some_and(|state| state.finished == state.submitted)
            })
            .map(|(name, slot)| (slot.last_used.load(Ordering::Relaxed), name.clone()))
            .collect();
        idle.sort_unstable_by_key(|(last_used, _)| *last_used);
        let target = self.budget_bytes / 4 * 3;
        for (_, name) in idle {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            if let Some(slot) = slots.remove(&name) {
                self.bytes
                    .fetch_sub(slot.cost.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }
}

/// In-memory size of an onode: xattrs plus about twice the encoded extent map (the decoded
/// form keeps per-unit counts and tree nodes besides the encoded fields).
fn estimate_bytes(onode: &Onode) -> usize {
    let xattrs: usize = onode.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    xattrs + 2 * onode.extent_map.encoded_bytes()
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
        let cache = OnodeCache::new((SLOT_OVERHEAD_BYTES + 4) * 8);
        let held = cache.slot(b"held");
        let pending = cache.slot(b"pending");
        pending.lock().submitted = 1;
        drop(pending);
        for i in 0..100u32 {
            drop(cache.slot(&i.to_le_bytes()));
        }
        assert!(cache.len() <= 9, "{} slots", cache.len());
        assert!(
            cache.bytes() <= (SLOT_OVERHEAD_BYTES + 8) * 9,
            "{} bytes",
            cache.bytes()
        );
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
            std::thread::spawn(move || slot.wait_settled(Waiting::Park))
        };
        slot.finish_one();
        slot.finish_one();
        waiter.join().unwrap();
    }
}
