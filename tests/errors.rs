//! Errors a daemon can act on without parsing text: every failure a transaction op or a read
//! can return carries the errno Ceph's `ObjectStore` returns for it, and `NotFound` says which
//! of collection and object is missing and names it, op by op. Runs on the simulated pair.

mod common;

use bstore::device::SimFaults;
use bstore::kv::MemKv;
use bstore::{Error, Missing, OpenOptions, Store, Transaction};
use common::SimPair;

const OBJECT_SIZE_MAX: u64 = bstore::format::OBJECT_SIZE_MAX;

/// A store with collections `c` and `d`; `c` holds `o` (with an xattr and an omap key) and `p`.
fn populated() -> (SimPair, Store) {
    let pair = SimPair::new(16 << 20);
    let store = pair.open();
    let mut txn = Transaction::new();
    txn.create_collection("c")
        .create_collection("d")
        .write("c", "o", 0, vec![7; 8192])
        .setattr("c", "o", "a", b"1".to_vec())
        .omap_setkeys("c", "o", [(b"k".to_vec(), b"v".to_vec())])
        .touch("c", "p");
    store.apply(&txn).unwrap();
    (pair, store)
}

/// Applies a transaction of the one op `build` adds, which must fail, and returns the error.
fn failure(store: &Store, op: &str, build: impl FnOnce(&mut Transaction)) -> Error {
    let mut txn = Transaction::new();
    build(&mut txn);
    match store.apply(&txn) {
        Ok(()) => panic!("{op}: the transaction succeeded"),
        Err(error) => error,
    }
}

fn assert_missing(error: &Error, expected: &Missing, op: &str) {
    match error {
        Error::NotFound(missing) => assert_eq!(missing, expected, "{op}: names the wrong thing"),
        other => panic!("{op}: expected NotFound({expected}), got {other}"),
    }
    assert_eq!(error.errno(), libc::ENOENT, "{op}: errno");
    assert!(
        error.to_string().contains(&expected.to_string()),
        "{op}: the message `{error}` does not name {expected}"
    );
}

/// Every op of the transaction API, on collection `collection` and object `object`.
type OpBuilder = (&'static str, fn(&mut Transaction, &str, &str));

const OBJECT_OPS: &[OpBuilder] = &[
    ("truncate", |t, c, o| {
        t.truncate(c, o, 10);
    }),
    ("remove", |t, c, o| {
        t.remove(c, o);
    }),
    ("setattr", |t, c, o| {
        t.setattr(c, o, "a", b"2".to_vec());
    }),
    ("setattrs", |t, c, o| {
        t.setattrs(c, o, [(b"a".to_vec(), b"2".to_vec())]);
    }),
    ("rmattr", |t, c, o| {
        t.rmattr(c, o, "a");
    }),
    ("rmattrs", |t, c, o| {
        t.rmattrs(c, o);
    }),
    ("omap_setkeys", |t, c, o| {
        t.omap_setkeys(c, o, [(b"k".to_vec(), b"w".to_vec())]);
    }),
    ("omap_rmkeys", |t, c, o| {
        t.omap_rmkeys(c, o, [b"k".to_vec()]);
    }),
    ("omap_rmkeyrange", |t, c, o| {
        t.omap_rmkeyrange(c, o, b"a", b"z");
    }),
    ("omap_clear", |t, c, o| {
        t.omap_clear(c, o);
    }),
    ("omap_setheader", |t, c, o| {
        t.omap_setheader(c, o, b"h".to_vec());
    }),
    ("rename", |t, c, o| {
        t.rename(c, o, "renamed");
    }),
    ("move_rename", |t, c, o| {
        t.move_rename(c, o, c, "moved");
    }),
    ("clone_object", |t, c, o| {
        t.clone_object(c, o, "copy");
    }),
    ("clone_range", |t, c, o| {
        t.clone_range(c, o, 0, 4096, "copy", 0);
    }),
    ("set_alloc_hint", |t, c, o| {
        t.set_alloc_hint(c, o, bstore::format::onode::AllocHint::default());
    }),
];

/// Ops that create a missing object: they fail only when the collection is missing.
const CREATING_OPS: &[OpBuilder] = &[
    ("touch", |t, c, o| {
        t.touch(c, o);
    }),
    ("write", |t, c, o| {
        t.write(c, o, 0, b"x".to_vec());
    }),
    ("zero", |t, c, o| {
        t.zero(c, o, 0, 4096);
    }),
];

#[test]
fn every_op_on_a_missing_collection_names_the_collection() {
    let (_pair, store) = populated();
    let expected = Missing::Collection {
        collection: b"gone".to_vec(),
    };
    for (op, build) in OBJECT_OPS.iter().chain(CREATING_OPS) {
        let error = failure(&store, op, |t| build(t, "gone", "o"));
        assert_missing(&error, &expected, op);
    }
    let collection_ops: &[OpBuilder] = &[
        ("remove_collection", |t, c, _| {
            t.remove_collection(c);
        }),
        ("rename_collection", |t, c, _| {
            t.rename_collection(c, "elsewhere");
        }),
    ];
    for (op, build) in collection_ops {
        let error = failure(&store, op, |t| build(t, "gone", "o"));
        assert_missing(&error, &expected, op);
    }
    let reads: [(&str, bstore::Result<()>); 4] = [
        ("read", store.read("gone", "o", 0, 10).map(drop)),
        (
            "list_objects",
            store.list_objects("gone", None, 10).map(drop),
        ),
        (
            "list_objects_range",
            store.list_objects_range("gone", None, None, 10).map(drop),
        ),
        ("exists", store.exists("gone", "o").map(drop)),
    ];
    for (op, result) in reads {
        assert_missing(&result.unwrap_err(), &expected, op);
    }
}

#[test]
fn every_op_that_needs_its_object_names_the_object() {
    let (_pair, store) = populated();
    let expected = Missing::Object {
        collection: b"c".to_vec(),
        object: b"missing\xff".to_vec(),
    };
    for (op, build) in OBJECT_OPS {
        // The builders above take &str, and this name is not UTF-8: it is put in afterwards.
        let mut txn = Transaction::new();
        build(&mut txn, "c", "placeholder");
        let txn = rename_object(&txn, b"missing\xff");
        let error = store.apply(&txn).expect_err(op);
        assert_missing(&error, &expected, op);
    }
    let name: &[u8] = b"missing\xff";
    let reads: [(&str, bstore::Result<()>); 9] = [
        ("read", store.read("c", name, 0, 10).map(drop)),
        ("get", store.get("c", name).map(drop)),
        ("stat", store.stat("c", name).map(drop)),
        ("fiemap", store.fiemap("c", name).map(drop)),
        ("getattr", store.getattr("c", name, "a").map(drop)),
        ("getattrs", store.getattrs("c", name).map(drop)),
        (
            "omap_get_header",
            store.omap_get_header("c", name).map(drop),
        ),
        (
            "omap_get_values",
            store.omap_get_values("c", name, [b"k"]).map(drop),
        ),
        ("omap_iter", store.omap_iter("c", name, b"", None).map(drop)),
    ];
    for (op, result) in reads {
        assert_missing(&result.unwrap_err(), &expected, op);
    }
    assert!(!store.exists("c", name).unwrap(), "exists is Ok(false)");
}

/// The one op of `txn` with its object renamed to `object`.
fn rename_object(txn: &Transaction, object: &[u8]) -> Transaction {
    let mut renamed = Transaction::new();
    for op in txn.ops() {
        let mut op = op.clone();
        if let bstore::txn::Op::Object { object: name, .. } = &mut op {
            *name = object.to_vec();
        }
        renamed.push(op);
    }
    renamed
}

#[test]
fn conflicts_limits_and_bad_arguments_have_their_errno() {
    let (_pair, store) = populated();
    let cases: Vec<(&str, i32, Error)> = vec![
        (
            "create_collection of an existing one",
            libc::EEXIST,
            failure(&store, "create", |t| {
                t.create_collection("c");
            }),
        ),
        (
            "rename onto an existing object",
            libc::EEXIST,
            failure(&store, "rename", |t| {
                t.rename("c", "o", "p");
            }),
        ),
        (
            "rename_collection onto an existing one",
            libc::EEXIST,
            failure(&store, "rename_collection", |t| {
                t.rename_collection("c", "d");
            }),
        ),
        (
            "remove_collection of one that holds objects",
            libc::ENOTEMPTY,
            failure(&store, "remove_collection", |t| {
                t.remove_collection("c");
            }),
        ),
        (
            "write past the largest object size",
            libc::E2BIG,
            failure(&store, "write", |t| {
                t.write("c", "o", OBJECT_SIZE_MAX, b"x".to_vec());
            }),
        ),
        (
            "write larger than the device",
            libc::ENOSPC,
            failure(&store, "write", |t| {
                t.write("c", "big", 0, vec![1; 32 << 20]);
            }),
        ),
        (
            "an empty object name",
            libc::EINVAL,
            failure(&store, "touch", |t| {
                t.touch("c", "");
            }),
        ),
        (
            "an object name too long",
            libc::EINVAL,
            failure(&store, "touch", |t| {
                t.touch("c", "x".repeat(5000));
            }),
        ),
    ];
    for (case, errno, error) in cases {
        assert_eq!(error.errno(), errno, "{case}: {error}");
    }
}

#[test]
fn a_read_only_store_refuses_with_erofs_and_a_poisoned_one_with_eio() {
    let (pair, store) = populated();
    store.close().unwrap();
    let inspector = Store::open_read_only_on(
        pair.device.clone(),
        pair.kv.clone(),
        &OpenOptions::default(),
    )
    .unwrap();
    let error = failure(&inspector, "touch", |t| {
        t.touch("c", "new");
    });
    assert!(matches!(error, Error::ReadOnly(_)), "{error}");
    assert_eq!(error.errno(), libc::EROFS);
    drop(inspector);

    let store = pair.open();
    let writes = pair.device.counters().writes;
    pair.device.set_faults(SimFaults {
        fail_write_number: Some(writes + 1),
        ..SimFaults::default()
    });
    let failed = failure(&store, "write", |t| {
        t.write("c", "doomed", 0, vec![3; 64 << 10]);
    });
    assert_eq!(failed.errno(), libc::EIO, "the failed write: {failed}");
    let poisoned = store.get("c", "o").unwrap_err();
    assert!(matches!(poisoned, Error::Poisoned(_)), "{poisoned}");
    assert_eq!(poisoned.errno(), libc::EIO);
}

#[test]
fn an_io_error_keeps_its_os_errno_and_says_its_cause_once() {
    use std::error::Error as _;
    let cause = std::io::Error::from_raw_os_error(libc::ENOSPC);
    let error = Error::io("writing the label", cause);
    assert_eq!(error.errno(), libc::ENOSPC);
    let cause_text = error.source().expect("the cause is the source").to_string();
    assert!(
        !error.to_string().contains(&cause_text),
        "`{error}` repeats its source `{cause_text}`"
    );
    let without_errno = Error::io("reading", std::io::Error::other("no errno"));
    assert_eq!(without_errno.errno(), libc::EIO);
}

#[test]
fn mount_refusals_have_their_errno() {
    let blank = std::sync::Arc::new(bstore::device::SimDevice::new(16 << 20, 512, false));
    let kv = std::sync::Arc::new(MemKv::new());
    let Err(error) = Store::open_on(blank, kv, &OpenOptions::default()) else {
        panic!("a blank device mounted");
    };
    assert!(matches!(error, Error::NotFormatted(_)), "{error}");
    assert_eq!(error.errno(), libc::ENOENT);
}
