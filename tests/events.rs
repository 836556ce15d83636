//! What an operator sees through `tracing`: mount and its phases, poisoning and why, slow
//! transactions, deferred backpressure. The subscriber is global and sees every thread, so the
//! tests take turns, each whole.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bstore::Transaction;
use bstore::device::SimFaults;
use common::{SimPair, pattern};

/// Everything the subscriber has written since the last [`capture`].
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Held for the whole of a test: no other test's store emits events meanwhile.
fn turn() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work` and returns the events (debug and above) emitted while it ran, on any thread.
/// The caller holds its [`turn`].
fn capture(_turn: &MutexGuard<'static, ()>, work: impl FnOnce()) -> String {
    static SUBSCRIBED: OnceLock<Captured> = OnceLock::new();
    let captured = SUBSCRIBED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    });
    captured.0.lock().unwrap().clear();
    work();
    String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned()
}

#[test]
fn mount_says_each_phase_and_what_it_replayed() {
    let turn = turn();
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "o", &pattern(1, 8192)).unwrap();
    store.close().unwrap();
    let log = capture(&turn, || pair.open().close().unwrap());
    for phase in [
        "label and superblock",
        "journal replay",
        "freelist",
        "collections",
        "deferred replay",
    ] {
        assert!(
            log.contains(&format!("phase=\"{phase}\"")),
            "no {phase} phase in:\n{log}"
        );
    }
    assert!(log.contains("bstore_mount"), "no mount span in:\n{log}");
    let mounted = log
        .lines()
        .find(|line| line.contains("mounted"))
        .unwrap_or_else(|| panic!("no mounted event in:\n{log}"));
    assert!(mounted.contains("INFO"), "{mounted}");
    assert!(mounted.contains("collections=1"), "{mounted}");
}

#[test]
fn a_store_that_poisons_itself_says_why_once() {
    let turn = turn();
    let pair = SimPair::new(64 << 20);
    let store = pair.open();
    store.create_collection("c").unwrap();
    let log = capture(&turn, || {
        let writes = pair.device.counters().writes;
        pair.device.set_faults(SimFaults {
            fail_write_number: Some(writes + 1),
            ..SimFaults::default()
        });
        let mut txn = Transaction::new();
        txn.write("c", "doomed", 0, vec![3; 64 << 10]);
        assert!(store.apply(&txn).is_err());
        assert!(store.apply(&txn).is_err(), "the poisoned store refuses");
    });
    let poisoned: Vec<&str> = log.lines().filter(|l| l.contains("poisoned")).collect();
    assert_eq!(poisoned.len(), 1, "reported once:\n{log}");
    assert!(poisoned[0].contains("ERROR"), "{}", poisoned[0]);
    assert!(
        poisoned[0].contains("I/O error while") && poisoned[0].contains("injected"),
        "the reason and its cause: {}",
        poisoned[0]
    );
}

#[test]
fn transactions_slower_than_the_threshold_are_reported() {
    let turn = turn();
    let mut pair = SimPair::new(64 << 20);
    pair.options = pair.options.clone().with_slow_transaction(Duration::ZERO);
    let slow = pair.open();
    let log = capture(&turn, || {
        slow.create_collection("c").unwrap();
        slow.put("c", "o", &pattern(2, 4096)).unwrap();
    });
    let reports = log
        .lines()
        .filter(|l| l.contains("slow transaction"))
        .count();
    assert_eq!(
        reports, 2,
        "both transactions passed a zero threshold:\n{log}"
    );
    slow.close().unwrap();

    pair.options.slow_transaction = Duration::from_secs(60);
    let store = pair.open();
    let log = capture(&turn, || store.put("c", "o", &pattern(3, 4096)).unwrap());
    assert!(!log.contains("slow transaction"), "{log}");
    store.close().unwrap();
}

#[test]
fn commits_waiting_on_a_full_deferred_queue_are_reported() {
    let turn = turn();
    let mut pair = SimPair::new(64 << 20);
    pair.options.deferred = pair.options.deferred.with_queued_bytes_max(8 << 10);
    let store = pair.open();
    store.create_collection("c").unwrap();
    store.put("c", "o", &pattern(4, 256 << 10)).unwrap();
    let log = capture(&turn, || {
        for i in 0..16u64 {
            let mut txn = Transaction::new();
            txn.write("c", "o", i * 8192, pattern(i, 4096));
            store.apply(&txn).unwrap();
        }
    });
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("deferred queue full"))
        .collect();
    assert_eq!(
        reports.len(),
        1,
        "reported once, however many commits waited:\n{log}"
    );
    assert!(reports[0].contains("WARN"), "{}", reports[0]);
    store.close().unwrap();
}
