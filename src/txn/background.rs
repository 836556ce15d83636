//! Where a store's background work runs: on threads of its own (the default), or step by step
//! when the caller asks, for deterministic simulation.
//!
//! The background work of a mounted store comes in four units: completing a device request,
//! selecting a group of ready transactions and flushing the device for it, committing a flushed
//! group in one synced KV write, and applying a batch of deferred writes. With
//! [`Background::Threads`] a flush thread, a KV-sync thread and a deferred applier do them as
//! soon as they can (the device completes its own requests). With [`Background::Stepped`] there
//! are no threads: a unit runs only when the caller asks for it (`Store::step`), or when a call
//! must wait for work, which then runs the pending units itself in [`Work::ALL`] order. On the
//! simulated pair, whose I/O is deterministic too, the same calls then perform the same I/O
//! events in the same order every time, so a crash test can number every crash point and a
//! seed replays a failure exactly; and the caller can interleave the units as it likes (flush a
//! group while the previous one commits, complete writes out of order) to reach every state the
//! threads could.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// How a store runs its background work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Background {
    /// On threads of its own.
    #[default]
    Threads,
    /// Only when asked (`Store::step`), or by a call that must wait for it.
    Stepped,
}

/// One unit of background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Work {
    /// Complete one device request (on a device whose completions the caller drives).
    CompleteIo,
    /// Select the next group of ready transactions and flush the device for it (at most two
    /// flushed groups wait for their commit, as with the threads).
    FlushGroup,
    /// Commit the oldest flushed group in one synced KV write and acknowledge it.
    CommitGroup,
    /// Apply the queued deferred writes: device writes, a flush, the records' deletion.
    ApplyDeferred,
}

impl Work {
    /// Every unit, in the order a waiting call runs them.
    pub const ALL: [Work; 4] = [
        Work::CompleteIo,
        Work::FlushGroup,
        Work::CommitGroup,
        Work::ApplyDeferred,
    ];
}

/// What performs the units of a stepped store (its commit pipeline).
pub trait Steps: Send + Sync {
    /// Runs one unit of `work` if there is any: `Some(n)` with the transactions (or records)
    /// it took, `None` when there was nothing of that kind to do.
    fn step(&self, work: Work) -> Option<usize>;
}

/// The engine's handle on its stepped pipeline (set once the pipeline exists).
#[derive(Default)]
pub struct Stepper {
    steps: Mutex<Option<Weak<dyn Steps>>>,
}

impl Stepper {
    /// Registers the pipeline.
    pub fn set(&self, steps: Weak<dyn Steps>) {
        *self.steps.lock() = Some(steps);
    }

    fn steps(&self) -> Option<Arc<dyn Steps>> {
        self.steps.lock().as_ref().and_then(Weak::upgrade)
    }

    /// Runs one unit of `work`.
    pub fn step(&self, work: Work) -> Option<usize> {
        self.steps()?.step(work)
    }

    /// Runs the first unit of work pending, in [`Work::ALL`] order; false when none is.
    pub fn any(&self) -> bool {
        let Some(steps) = self.steps() else {
            return false;
        };
        Work::ALL.iter().any(|work| steps.step(*work).is_some())
    }
}
