//! A one-shot completion: one thread waits, another delivers the result.
//!
//! Used where a caller blocks on work another thread finishes (a device batch, a commit). It
//! parks the waiter at once instead of spinning as channel receivers do, which matters on a
//! machine with few cores: a spinning waiter takes the core the completing thread needs.

use parking_lot::{Condvar, Mutex};

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
        let mut slot = self.slot.lock();
        loop {
            if let Some(value) = slot.take() {
                return value;
            }
            self.ready.wait(&mut slot);
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
