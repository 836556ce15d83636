//! When freed space may be reused: after its commit is durable *and* after every read that might
//! still be looking at it has finished.
//!
//! A reader takes a snapshot of an onode and then reads the device without holding any lock that
//! writers need. Meanwhile a later transaction may punch those extents and commit. If the space
//! went straight back to the allocator, a third transaction could write other data there before
//! the first read reaches the device, and the reader would see a checksum mismatch that is not
//! corruption. So releases are stamped with an epoch and held until every read that began at or
//! before that epoch is over (an RCU-style grace period); readers never block writers.

use std::collections::{BTreeMap, VecDeque};

use parking_lot::Mutex;

use crate::alloc::{BitmapAllocator, DeviceExtent};

#[derive(Debug, Default)]
struct ReclaimState {
    epoch: u64,
    /// Begin epoch -> readers still active from it.
    readers: BTreeMap<u64, usize>,
    /// Released space waiting for older readers, with the epoch it was released in.
    pending: VecDeque<(u64, Vec<DeviceExtent>)>,
    pending_bytes: u64,
}

/// Tracks active reads and the space they may still see.
#[derive(Debug, Default)]
pub struct Reclaimer {
    state: Mutex<ReclaimState>,
}

/// An active read; space released after it began stays allocated until it is dropped.
#[must_use = "the read is protected only while the guard lives"]
pub struct ReadGuard<'a> {
    reclaimer: &'a Reclaimer,
    allocator: &'a Mutex<BitmapAllocator>,
    epoch: u64,
}

impl Reclaimer {
    /// Registers a read.
    pub fn begin_read<'a>(&'a self, allocator: &'a Mutex<BitmapAllocator>) -> ReadGuard<'a> {
        let mut state = self.state.lock();
        let epoch = state.epoch;
        *state.readers.entry(epoch).or_insert(0) += 1;
        ReadGuard {
            reclaimer: self,
            allocator,
            epoch,
        }
    }

    /// Queues durable-freed space; gives back at once whatever no active read can see.
    pub fn release(&self, allocator: &Mutex<BitmapAllocator>, extents: Vec<DeviceExtent>) {
        if extents.is_empty() {
            return;
        }
        let ready = {
            let mut state = self.state.lock();
            let epoch = state.epoch;
            state.epoch += 1;
            state.pending_bytes += extents.iter().map(|e| e.length).sum::<u64>();
            state.pending.push_back((epoch, extents));
            take_reclaimable(&mut state)
        };
        give_back(allocator, ready);
    }

    /// Bytes freed but still held for active reads.
    pub fn pending_bytes(&self) -> u64 {
        self.state.lock().pending_bytes
    }

    fn end_read(&self, allocator: &Mutex<BitmapAllocator>, epoch: u64) {
        let ready = {
            let mut state = self.state.lock();
            let count = state
                .readers
                .get_mut(&epoch)
                .expect("a guard's epoch is registered");
            *count -= 1;
            if *count == 0 {
                state.readers.remove(&epoch);
            }
            take_reclaimable(&mut state)
        };
        give_back(allocator, ready);
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.reclaimer.end_read(self.allocator, self.epoch);
    }
}

/// Pending releases older than every active reader.
fn take_reclaimable(state: &mut ReclaimState) -> Vec<DeviceExtent> {
    let oldest_reader = state.readers.keys().next().copied().unwrap_or(u64::MAX);
    let mut ready = Vec::new();
    while state
        .pending
        .front()
        .is_some_and(|(epoch, _)| *epoch < oldest_reader)
    {
        let (_, extents) = state.pending.pop_front().expect("checked above");
        state.pending_bytes -= extents.iter().map(|e| e.length).sum::<u64>();
        ready.extend(extents);
    }
    ready
}

fn give_back(allocator: &Mutex<BitmapAllocator>, extents: Vec<DeviceExtent>) {
    if !extents.is_empty() {
        allocator.lock().release(&extents);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> Mutex<BitmapAllocator> {
        let mut a = BitmapAllocator::new(64 * 4096, 4096);
        a.mark_free(DeviceExtent::new(0, 64 * 4096));
        a.allocate(64 * 4096).unwrap();
        Mutex::new(a)
    }

    #[test]
    fn space_waits_for_reads_that_began_before_its_release() {
        let allocator = allocator();
        let reclaimer = Reclaimer::default();
        let read = reclaimer.begin_read(&allocator);
        reclaimer.release(&allocator, vec![DeviceExtent::new(0, 4096)]);
        assert_eq!(allocator.lock().free_bytes(), 0, "held for the active read");
        let later_read = reclaimer.begin_read(&allocator);
        drop(read);
        assert_eq!(
            allocator.lock().free_bytes(),
            4096,
            "the later read cannot see it"
        );
        drop(later_read);
        assert_eq!(reclaimer.pending_bytes(), 0);
    }

    #[test]
    fn without_readers_space_returns_at_once() {
        let allocator = allocator();
        let reclaimer = Reclaimer::default();
        reclaimer.release(&allocator, vec![DeviceExtent::new(4096, 8192)]);
        assert_eq!(allocator.lock().free_bytes(), 8192);
    }
}
