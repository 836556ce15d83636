//! A one-shot completion: one thread waits, another delivers the result; and [`Waiting`], how
//! any waiter in the engine gets what it waits for.
//!
//! Used where a caller blocks on work another thread finishes (a device batch, a commit). It
//! parks the waiter at once instead of spinning as channel receivers do, which matters on a
//! machine with few cores: a spinning waiter takes the core the completing thread needs.
//!
//! A store whose background work is stepped (no threads, see `txn::background`) has no one
//! else to do the work a waiter needs: there the waiter runs it itself, one unit at a time,
//! through [`Help`], until what it waits for holds.

use parking_lot::{Condvar, Mutex, MutexGuard};

/// Runs one unit of pending background work on the calling thread.
pub trait Help {
    /// Does the next unit of work; a caller that still waits calls again. Panics when nothing
    /// is pending, because then the wait could never end (an engine bug, not bad input).
    fn help(&self);
}

/// How a caller that must wait for the engine gets what it waits for.
#[derive(Clone, Copy)]
pub enum Waiting<'a> {
    /// Park until woken: background threads do the work.
    Park,
    /// Do the work: a stepped store has no threads of its own.
    Help(&'a dyn Help),
}

impl Waiting<'_> {
    /// Waits on `condvar` (parking) or helps with the lock released, once; the caller re-checks
    /// its condition.
    pub fn wait<T>(self, condvar: &Condvar, guard: &mut MutexGuard<'_, T>) {
        match self {
            Waiting::Park => condvar.wait(guard),
            Waiting::Help(helper) => MutexGuard::unlocked(guard, || helper.help()),
        }
    }
}

/// A result delivered once.
#[derive(Debug, Default)]
pub struct Completion<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Completion<T> {
    /// An empty completion.
    pub fn new() -> Self {
        Completion {
            slot: Mutex::new(None),
            ready: Condvar::new(),
        }
    }

    /// Delivers the result and wakes the waiter.
    pub fn complete(&self, value: T) {
        *self.slot.lock() = Some(value);
        self.ready.notify_one();
    }

    /// Waits for the result.
    pub fn wait(&self) -> T {
        self.wait_with(Waiting::Park)
    }

    /// Waits for the result, parking or helping.
    pub fn wait_with(&self, waiting: Waiting<'_>) -> T {
        let mut slot = self.slot.lock();
        loop {
            if let Some(value) = slot.take() {
                return value;
            }
            waiting.wait(&self.ready, &mut slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_waiter_gets_what_another_thread_delivers() {
        let completion = Arc::new(Completion::new());
        let deliverer = Arc::clone(&completion);
        let thread = std::thread::spawn(move || deliverer.complete(42));
        assert_eq!(completion.wait(), 42);
        thread.join().unwrap();
    }
}
