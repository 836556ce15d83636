//! The onode cache: the newest version of each object, including transactions not yet durable.
//!
//! A transaction's changes become visible when it is submitted: its new onodes are installed in
//! their slots before the data and KV writes are done. Each slot counts transactions submitted
//! and finished (committed or failed) that touched it, so a reader that needs the bytes on disk
//! or in the KV store (data reads, omap reads) waits until every transaction submitted before it
//! looked has finished, while metadata (size, xattrs) is served from the slot at once.
//!
//! The caches of all collections share one byte budget: slots of objects with no transaction in
//! flight and no user are evicted, least recently used first across every collection, when the
//! estimated size passes the budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

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

/// The slots of one collection, by object name.
type SlotMap = Mutex<HashMap<Vec<u8>, Arc<OnodeSlot>>>;

/// The one byte budget all collections' onode caches share, and how often lookups hit.
///
/// A store holds one; each collection's cache registers its slot map with it. When the bytes
/// charged by every cache pass the budget, the least recently used idle slots of all of them
/// are dropped, so a store with many collections is bounded by the budget, not by the budget
/// times the number of collections.
#[derive(Debug)]
pub struct OnodeBudget {
    budget_bytes: usize,
    /// Bytes charged by the slots of every cache.
    bytes: AtomicUsize,
    /// Hands out last-use ticks, one order across all caches.
    clock: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The slot maps of the live caches (a dropped cache's entry is pruned when seen).
    caches: Mutex<Vec<Weak<SlotMap>>>,
    /// Held by the one thread evicting; others go on rather than queue behind it.
    evicting: Mutex<()>,
}

impl OnodeBudget {
    /// A budget of about `budget_bytes` of onodes for a whole store.
    pub fn new(budget_bytes: usize) -> Arc<Self> {
        Arc::new(OnodeBudget {
            budget_bytes,
            bytes: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            caches: Mutex::new(Vec::new()),
            evicting: Mutex::new(()),
        })
    }

    /// The budget.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Bytes charged by all caches.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Lookups served by a loaded slot, and lookups that read the KV store.
    pub fn lookups(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn charge(&self, old: usize, new: usize) {
        if new >= old {
            self.bytes.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(old - new, Ordering::Relaxed);
        }
    }

    fn live_caches(&self) -> Vec<Arc<SlotMap>> {
        let mut caches = self.caches.lock();
        caches.retain(|cache| cache.strong_count() > 0);
        caches.iter().filter_map(Weak::upgrade).collect()
    }

    /// Drops idle slots of every cache, least recently used first, until the caches fit in
    /// three quarters of the budget (so eviction runs rarely). A slot is idle when only its
    /// cache holds it and no transaction touching it is in flight; busy slots are never
    /// dropped.
    ///
    /// Locks one slot map at a time and only try-locks slot states, so a caller may hold one
    /// slot's state lock (but no slot map) when it calls this.
    fn evict_if_over(&self) {
        if self.bytes() <= self.budget_bytes {
            return;
        }
        let Some(_evicting) = self.evicting.try_lock() else {
            return;
        };
        let caches = self.live_caches();
        let mut idle: Vec<(u64, usize)> = Vec::new();
        for slots in &caches {
            let slots = slots.lock();
            idle.extend(slots.values().filter(|slot| is_idle(slot)).map(|slot| {
                (
                    slot.last_used.load(Ordering::Relaxed),
                    slot.cost.load(Ordering::Relaxed),
                )
            }));
        }
        idle.sort_unstable_by_key(|(last_used, _)| *last_used);
        let excess = self.bytes().saturating_sub(self.budget_bytes / 4 * 3);
        let mut freed = 0;
        let mut cutoff = None;
        for (last_used, cost) in idle {
            if freed >= excess {
                break;
            }
            freed += cost;
            cutoff = Some(last_used);
        }
        let Some(cutoff) = cutoff else {
            return;
        };
        for slots in &caches {
            slots.lock().retain(|_, slot| {
                let evict = slot.last_used.load(Ordering::Relaxed) <= cutoff && is_idle(slot);
                if evict {
                    self.charge(slot.cost.load(Ordering::Relaxed), 0);
                }
                !evict
            });
        }
    }
}

/// Whether only the cache holds the slot and no transaction touching it is in flight (the
/// caller holds the slot's map, so no new holder can appear).
fn is_idle(slot: &Arc<OnodeSlot>) -> bool {
    Arc::strong_count(slot) == 1
        && slot
            .state
            .try_lock()
            .is_some_and(|state| state.finished == state.submitted)
}

/// The onode slots of one collection, charged to the store's [`OnodeBudget`].
#[derive(Debug)]
pub struct OnodeCache {
    slots: Arc<SlotMap>,
    budget: Arc<OnodeBudget>,
}

/// Fixed in-memory cost of a slot beyond its name and onode.
const SLOT_OVERHEAD_BYTES: usize = 256;

impl OnodeCache {
    /// An empty cache charging `budget`.
    pub fn new(budget: &Arc<OnodeBudget>) -> Self {
        let slots = Arc::new(Mutex::new(HashMap::new()));
        budget.caches.lock().push(Arc::downgrade(&slots));
        OnodeCache {
            slots,
            budget: Arc::clone(budget),
        }
    }

    /// The slot for `name`, created empty (not loaded) if absent.
    pub fn slot(&self, name: &[u8]) -> Arc<OnodeSlot> {
        let tick = self.budget.clock.fetch_add(1, Ordering::Relaxed);
        let slot = {
            let mut slots = self.slots.lock();
            match slots.get(name) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Arc::new(OnodeSlot::default());
                    let cost = name.len() + SLOT_OVERHEAD_BYTES;
                    slot.cost.store(cost, Ordering::Relaxed);
                    self.budget.charge(0, cost);
                    slots.insert(name.to_vec(), Arc::clone(&slot));
                    slot
                }
            }
        };
        slot.last_used.store(tick, Ordering::Relaxed);
        self.budget.evict_if_over();
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
        self.budget.charge(old, cost);
        self.budget.evict_if_over();
    }

    /// Counts a lookup: `hit` when the slot was loaded, else it read the KV store.
    pub fn count_lookup(&self, hit: bool) {
        let counter = if hit {
            &self.budget.hits
        } else {
            &self.budget.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Slots currently held.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// True when no slot is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dropped cache (a collection removed, or the store closed) gives its bytes back.
impl Drop for OnodeCache {
    fn drop(&mut self) {
        for (_, slot) in self.slots.lock().drain() {
            self.budget.charge(slot.cost.load(Ordering::Relaxed), 0);
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
        let cache = OnodeCache::new(&OnodeBudget::new(1 << 20));
        let a = cache.slot(b"x");
        let b = cache.slot(b"x");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn busy_slots_survive_eviction_and_idle_ones_go() {
        let budget = OnodeBudget::new((SLOT_OVERHEAD_BYTES + 4) * 8);
        let cache = OnodeCache::new(&budget);
        let held = cache.slot(b"held");
        let pending = cache.slot(b"pending");
        pending.lock().submitted = 1;
        drop(pending);
        for i in 0..100u32 {
            drop(cache.slot(&i.to_le_bytes()));
        }
        assert!(cache.len() <= 9, "{} slots", cache.len());
        assert!(
            budget.bytes() <= (SLOT_OVERHEAD_BYTES + 8) * 9,
            "{} bytes",
            budget.bytes()
        );
        assert!(Arc::ptr_eq(&held, &cache.slot(b"held")));
        assert_eq!(
            cache.slot(b"pending").lock().submitted,
            1,
            "in-flight slot kept"
        );
    }

    #[test]
    fn caches_share_one_budget_and_the_least_recently_used_go_first_across_them() {
        let slot_bytes = SLOT_OVERHEAD_BYTES + 4;
        let budget = OnodeBudget::new(slot_bytes * 40);
        let old = OnodeCache::new(&budget);
        for i in 0..20u32 {
            drop(old.slot(&i.to_le_bytes()));
        }
        let kept = old.slot(b"kept");
        let caches: Vec<OnodeCache> = (0..10).map(|_| OnodeCache::new(&budget)).collect();
        for (n, cache) in caches.iter().enumerate() {
            for i in 0..10u32 {
                drop(cache.slot(&i.to_le_bytes()));
                assert!(
                    budget.bytes() <= budget.budget_bytes(),
                    "{} bytes over the budget of {} after slot {i} of cache {n}",
                    budget.bytes(),
                    budget.budget_bytes()
                );
            }
        }
        assert_eq!(old.len(), 1, "the oldest cache's idle slots went first");
        assert!(Arc::ptr_eq(&kept, &old.slot(b"kept")), "a held slot stays");
        drop(caches);
        assert_eq!(
            budget.bytes(),
            old.len() * slot_bytes,
            "dropped caches gave their bytes back"
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
