//! Submitting a transaction: validate, lock, prepare, install, queue.
//!
//! Locking keeps per-collection order without a global bottleneck. A transaction that creates or
//! removes collections holds the namespace exclusively while it is prepared and queued; every
//! other transaction holds the namespace shared and the prepare locks of its collections, taken
//! in collection-id order so that two transactions never wait on each other in a cycle. Queueing
//! happens under those locks, so the pipeline sees each collection's transactions in submission
//! order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::MutexGuard;

use super::context::TxnContext;
use super::engine::{Collection, Engine, display_bytes};
use super::pipeline::{CommitCallback, Pipeline};
use super::{ObjectOp, Op, Transaction, metadata};
use crate::error::{Error, Result};
use crate::format::{COLLECTION_NAME_LENGTH_MAX, OBJECT_NAME_LENGTH_MAX};
use crate::store::import::is_reserved_collection_name;

/// Prepares `txn` and queues it; `on_commit` runs once it is durable or has failed.
/// On error nothing was changed and `on_commit` is not called.
pub fn submit(
    engine: &Engine,
    pipeline: &Pipeline,
    txn: &Transaction,
    on_commit: CommitCallback,
) -> Result<()> {
    let submitted = Instant::now();
    engine.check_poison()?;
    txn.ops().iter().try_for_each(validate)?;
    if !txn.is_internal()
        && let Some(name) = txn
            .ops()
            .iter()
            .filter_map(Op::new_collection_name)
            .find(|name| is_reserved_collection_name(name))
    {
        return Err(Error::invalid(format!(
            "collection {}: names starting with \\0bstore. are the store's own",
            display_bytes(name)
        )));
    }
    let names: BTreeSet<&[u8]> = txn.ops().iter().flat_map(Op::collections).collect();
    if txn.ops().iter().any(Op::changes_namespace) {
        let mut namespace = engine.collections.write();
        let view = names
            .iter()
            .map(|name| (name.to_vec(), namespace.get(*name).cloned()))
            .collect();
        let mut prepared = prepare(engine, view, txn)?.install(Some(&mut namespace));
        prepared.on_commit = Some(on_commit);
        prepared.submitted = submitted;
        pipeline.enqueue(prepared);
        return Ok(());
    }
    let namespace = engine.collections.read();
    let mut collections: Vec<Arc<Collection>> = names
        .iter()
        .map(|name| {
            namespace
                .get(*name)
                .cloned()
                .ok_or_else(|| Error::collection_not_found(name))
        })
        .collect::<Result<_>>()?;
    collections.sort_by_key(|c| c.id);
    let _guards: Vec<MutexGuard<'_, ()>> =
        collections.iter().map(|c| c.prepare_lock.lock()).collect();
    let view = collections
        .iter()
        .map(|c| (c.name(), Some(Arc::clone(c))))
        .collect();
    let mut prepared = prepare(engine, view, txn)?.install(None);
    prepared.on_commit = Some(on_commit);
    prepared.submitted = submitted;
    pipeline.enqueue(prepared);
    Ok(())
}

/// Applies every op to a fresh context; on failure gives back what it took.
fn prepare<'e>(
    engine: &'e Engine,
    view: BTreeMap<Vec<u8>, Option<Arc<Collection>>>,
    txn: &Transaction,
) -> Result<TxnContext<'e>> {
    let mut ctx = TxnContext::new(engine, view);
    for op in txn.ops() {
        if let Err(error) = ctx.apply(op) {
            ctx.abandon();
            return Err(error);
        }
    }
    Ok(ctx)
}

/// Checks names, lengths and ranges before anything is touched.
fn validate(op: &Op) -> Result<()> {
    check_name("collection", op.collection(), COLLECTION_NAME_LENGTH_MAX)?;
    match op {
        Op::Object { object, op, .. } => {
            check_name("object", object, OBJECT_NAME_LENGTH_MAX)?;
            match op {
                ObjectOp::MoveTo { collection, name } => {
                    check_name("collection", collection, COLLECTION_NAME_LENGTH_MAX)?;
                    check_name("object", name, OBJECT_NAME_LENGTH_MAX)?;
                }
                ObjectOp::Rename { new_name: other }
                | ObjectOp::TryRename { new_name: other }
                | ObjectOp::Clone { target: other }
                | ObjectOp::CloneRange { target: other, .. } => {
                    check_name("object", other, OBJECT_NAME_LENGTH_MAX)?;
                }
                _ => {}
            }
            metadata::validate(op)
        }
        Op::CreateCollection { .. } | Op::RemoveCollection { .. } => Ok(()),
        Op::RenameCollection { new_name, .. } => {
            check_name("collection", new_name, COLLECTION_NAME_LENGTH_MAX)
        }
        Op::SplitCollection {
            collection,
            into,
            bits,
            rem,
            ..
        } => {
            check_into(collection, into)?;
            if *bits > 32 || (*bits < 32 && u64::from(*rem) >> bits != 0) {
                return Err(Error::invalid(format!(
                    "split by {bits} bits of hash {rem:#x}: the bits are at most 32, and the \
                     remainder must fit in them"
                )));
            }
            Ok(())
        }
        Op::MergeCollection { collection, into } => check_into(collection, into),
    }
}

/// Checks the collection a split or merge moves objects into.
fn check_into(collection: &[u8], into: &[u8]) -> Result<()> {
    check_name("collection", into, COLLECTION_NAME_LENGTH_MAX)?;
    if collection == into {
        return Err(Error::invalid(format!(
            "collection {}: a split or merge needs two collections",
            display_bytes(collection)
        )));
    }
    Ok(())
}

fn check_name(kind: &str, name: &[u8], length_max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{kind} name is empty")));
    }
    if name.len() > length_max {
        return Err(Error::invalid(format!(
            "{kind} name of {} bytes exceeds the limit of {length_max}",
            name.len()
        )));
    }
    Ok(())
}
