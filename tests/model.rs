//! Goal: under random sequences of transactions using every op — with remounts, and readers
//! running while transactions commit — the store behaves exactly like a simple in-memory model:
//! every read, stat, xattr, omap and listing agrees after every step; failing transactions fail
//! with the predicted error and change nothing; deleting everything gives all space back (leak
//! check); fsck is clean. Runs on the simulated pair (many cases; `BSTORE_MODEL_CASES` for more)
//! and on the real pair, io_uring + RocksDB (fewer cases; `BSTORE_MODEL_REAL_CASES`).

mod common;

use bstore::{FsckReport, OpenOptions, Store, Transaction};
use common::model::{Failure, Model, check_store};
use common::workload::{self, Step};
use common::{RealStore, SimPair};
use proptest::prelude::*;

/// A store under test that can be remounted and finally checked offline.
trait Harness {
    fn store(&self) -> &Store;
    fn remount(&mut self);
    /// Closes the store and runs fsck on it.
    fn close_and_fsck(&mut self) -> FsckReport;
}

struct Simulated {
    pair: SimPair,
    store: Option<Store>,
}

impl Harness for Simulated {
    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    fn remount(&mut self) {
        let report = self.close_and_fsck();
        assert!(report.is_clean(), "fsck at remount: {:?}", report.errors);
        self.store = Some(self.pair.open());
    }

    fn close_and_fsck(&mut self) -> FsckReport {
        self.store.take().expect("open").close().unwrap();
        Store::fsck_on(self.pair.device.as_ref(), self.pair.kv.as_ref()).unwrap()
    }
}

struct Real {
    real: RealStore,
    store: Option<Store>,
}

impl Harness for Real {
    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    fn remount(&mut self) {
        let report = self.close_and_fsck();
        assert!(report.is_clean(), "fsck at remount: {:?}", report.errors);
        self.store = Some(self.real.open());
    }

    fn close_and_fsck(&mut self) -> FsckReport {
        self.store.take().expect("open").close().unwrap();
        Store::fsck(self.real.path()).unwrap()
    }
}

fn transaction(ops: &[bstore::txn::Op]) -> Transaction {
    let mut txn = Transaction::new();
    for op in ops {
        txn.push(op.clone());
    }
    txn
}

static COMMITTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static REJECTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Compares the store's verdict on a transaction with the model's.
fn compare_outcome(predicted: Result<(), Failure>, actual: bstore::Result<()>, context: &str) {
    let tally = if predicted.is_ok() {
        &COMMITTED
    } else {
        &REJECTED
    };
    tally.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match (predicted, actual) {
        (Ok(()), Ok(())) => {}
        (Err(failure), Err(error)) => {
            assert_eq!(
                Some(failure),
                Failure::of(&error),
                "{context}: wrong error {error}"
            );
        }
        (predicted, actual) => panic!("{context}: model says {predicted:?}, store says {actual:?}"),
    }
}

fn apply(store: &Store, model: &mut Model, ops: &[bstore::txn::Op], context: &str) {
    let predicted = model.apply(ops);
    compare_outcome(predicted, store.apply(&transaction(ops)), context);
}

/// Submits without waiting, compares from four reader threads while the commit is in flight,
/// then waits for the commit.
fn apply_while_reading(store: &Store, model: &mut Model, ops: &[bstore::txn::Op], context: &str) {
    let predicted = model.apply(ops);
    let (sender, receiver) = crossbeam::channel::bounded(1);
    let submitted = store.submit(&transaction(ops), move |result| {
        let _ = sender.send(result);
    });
    if let Err(error) = submitted {
        return compare_outcome(predicted, Err(error), context);
    }
    std::thread::scope(|scope| {
        for reader in 0..4 {
            let model = &*model;
            scope.spawn(move || check_store(store, model, &format!("{context} reader {reader}")));
        }
    });
    compare_outcome(predicted, receiver.recv().unwrap(), context);
}

fn run(harness: &mut impl Harness, steps: &[Step]) {
    let mut model = Model::default();
    let baseline = harness.store().statfs().unwrap();
    for (index, step) in steps.iter().enumerate() {
        let context = format!("step {index}");
        match step {
            Step::Apply(ops) => apply(harness.store(), &mut model, ops, &context),
            Step::ApplyWhileReading(ops) => {
                apply_while_reading(harness.store(), &mut model, ops, &context);
            }
            Step::Remount => harness.remount(),
        }
        check_store(harness.store(), &model, &context);
    }
    delete_everything(harness.store(), &mut model);
    // Space freed while deferred records are outstanding returns once they are applied.
    harness.store().flush_deferred().unwrap();
    let statfs = harness.store().statfs().unwrap();
    assert_eq!(
        (
            statfs.allocated_bytes,
            statfs.stored_bytes,
            statfs.object_count
        ),
        (0, 0, 0),
        "everything deleted"
    );
    assert_eq!(
        statfs.available_bytes, baseline.available_bytes,
        "leak: space not returned"
    );
    if std::env::var_os("BSTORE_MODEL_VERBOSE").is_some() {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{} steps; so far {} committed, {} rejected",
            steps.len(),
            load(&COMMITTED),
            load(&REJECTED)
        );
    }
    let report = harness.close_and_fsck();
    assert!(
        report.is_clean(),
        "fsck after deleting everything: {:?}",
        report.errors
    );
}

fn delete_everything(store: &Store, model: &mut Model) {
    let collections: Vec<_> = model.collections.keys().cloned().collect();
    for collection in collections {
        let mut ops = Vec::new();
        for object in model.collections[&collection].keys() {
            ops.push(bstore::txn::Op::Object {
                collection: collection.clone(),
                object: object.clone(),
                op: bstore::txn::ObjectOp::Remove,
            });
        }
        ops.push(bstore::txn::Op::RemoveCollection {
            collection: collection.clone(),
        });
        apply(store, model, &ops, "delete everything");
    }
}

proptest! {
    #![proptest_config(workload::config("BSTORE_MODEL_CASES", 300))]

    #[test]
    fn the_simulated_pair_behaves_like_the_model(steps in workload::steps(4..30)) {
        let pair = SimPair::new(512 << 20);
        let store = Some(pair.open());
        run(&mut Simulated { pair, store }, &steps);
    }
}

proptest! {
    #![proptest_config(workload::config("BSTORE_MODEL_REAL_CASES", 8))]

    #[test]
    fn the_real_pair_behaves_like_the_model(steps in workload::steps(4..16)) {
        let real = RealStore::new(512 << 20);
        let store = Some(Store::open(real.path(), &OpenOptions::default()).unwrap());
        run(&mut Real { real, store }, &steps);
    }
}
