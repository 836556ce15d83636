//! Mounting: label -> KV superblock -> commit journal (replayed into the KV store, or into an
//! in-memory overlay of it when read-only) -> counters, statistics, collections -> freelist ->
//! deferred records (replayed, or overlaid when read-only) -> engine.
//!
//! Every step checks what it reads: the label must be ours and not newer than this build, the
//! superblock must carry the label's uuid and geometry, and the freelist must fit the device.
//! Mount never scans objects: free space comes from the freelist alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::options::{OpenOptions, PREFER_DEFERRED_SIZE_ROTATIONAL};
pub use crate::device::label::read_label;
pub use crate::kv::records::{read_counter, read_superblock};

use crate::alloc::load_freelist;
use crate::device::{Access, BlockDevice};
use crate::error::{Error, Result};
use crate::format::COLLECTION_NAME_LENGTH_MAX;
use crate::format::keys::{CID_MAX_KEY, KeySpace, NID_MAX_KEY, SBID_MAX_KEY, STATFS_KEY};
use crate::format::label::Label;
use crate::format::records::{CollectionRecord, StatfsRecord, Superblock};
use crate::journal::{self, Journal, JournalReplay, JournalSummary};
use crate::kv::{Kv, OverlayKv};
use crate::onode::OnodeBudget;
use crate::txn::deferred::{self, ReplaySummary};
use crate::txn::engine::{Collection, Engine, EngineConfig, EngineParts, IdCounters, Mutation};

/// Builds a mounted engine from an opened device and KV store. Read-write, deferred records
/// left by a crash are applied first; read-only, they are only overlaid in memory, so nothing
/// on the device or in the KV store changes.
pub fn mount(
    device: Arc<dyn BlockDevice>,
    kv: Arc<dyn Kv>,
    options: &OpenOptions,
    access: Access,
) -> Result<Engine> {
    let started = Instant::now();
    let path = device.info().path.display().to_string();
    let span = tracing::info_span!("bstore_mount", device = %path, ?access);
    let _entered = span.enter();
    let engine = mount_phases(device, kv, options, access);
    match &engine {
        Ok(engine) => tracing::info!(
            collections = engine.collections.read().len(),
            journal_records_replayed = engine.journal_at_mount.map_or(0, |j| j.replay.records),
            deferred_records_replayed = engine
                .counters
                .deferred_records_replayed
                .load(std::sync::atomic::Ordering::Relaxed),
            elapsed_us = micros(started),
            "mounted"
        ),
        Err(error) => tracing::warn!(
            error = %crate::error::Chain(error),
            elapsed_us = micros(started),
            "mount failed"
        ),
    }
    engine
}

/// Runs one phase of mount, saying at debug level how long it took.
fn phase<T>(name: &'static str, run: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = run();
    tracing::debug!(
        phase = name,
        elapsed_us = micros(started),
        ok = result.is_ok(),
        "mount phase"
    );
    result
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

fn mount_phases(
    device: Arc<dyn BlockDevice>,
    kv: Arc<dyn Kv>,
    options: &OpenOptions,
    access: Access,
) -> Result<Engine> {
    let (label, superblock) = phase("label and superblock", || {
        let label = read_label(device.as_ref())?;
        let superblock = read_superblock(kv.as_ref(), &label)?;
        Ok((label, superblock))
    })?;
    let info = device.info();
    if label.device_size > info.size_bytes {
        return Err(Error::corruption(format!(
            "label says the store uses {} bytes but {} has only {}",
            label.device_size,
            info.path.display(),
            info.size_bytes
        )));
    }
    let config = engine_config(&superblock, device.as_ref(), options);
    let store_uuid = label.store_uuid;
    let (kv, journal_mount) = phase("journal replay", || {
        replay_journal(device.as_ref(), kv, &label, &superblock, access, &config)
    })?;
    if let Some(journal) = &journal_mount {
        tracing::debug!(
            records = journal.replay.records,
            bytes = journal.replay.bytes,
            torn_tail = journal.replay.torn_tail,
            "journal replayed"
        );
    }
    let allocator = phase("freelist", || {
        load_freelist(kv.as_ref(), &config.freelist_geometry(&superblock))
    })?;
    let onode_budget = OnodeBudget::new(config.onode_cache_bytes);
    let collections = phase("collections", || {
        load_collections(kv.as_ref(), &onode_budget)
    })?;
    let ids = IdCounters {
        nid_last: read_counter(kv.as_ref(), NID_MAX_KEY)?,
        cid_last: read_counter(kv.as_ref(), CID_MAX_KEY)?,
        sbid_last: read_counter(kv.as_ref(), SBID_MAX_KEY)?,
    };
    let stats = match kv.get(KeySpace::Stats, STATFS_KEY)? {
        Some(value) => StatfsRecord::decode(&value)?,
        None => return Err(Error::corruption("statfs record missing")),
    };
    // Before anything can read object data: a record left by a crash may describe bytes the
    // device does not hold yet (or holds torn).
    let replayed = phase("deferred replay", || match access {
        Access::ReadWrite if !config.mutated(Mutation::SkipReplay) => {
            deferred::replay(device.as_ref(), kv.as_ref(), &config)
        }
        Access::ReadWrite | Access::ReadOnly => Ok(ReplaySummary::default()),
    })?;
    let engine = Engine::new(EngineParts {
        device,
        kv,
        label,
        superblock,
        config,
        allocator,
        collections,
        onode_budget,
        ids,
        stats,
        next_deferred_sequence: replayed.next_sequence,
        journal: journal_mount
            .filter(|_| access == Access::ReadWrite)
            .map(|mounted| Journal::new(mounted.region, store_uuid, mounted.replay.next)),
        journal_at_mount: journal_mount,
    });
    engine
        .counters
        .deferred_records_replayed
        .store(replayed.records, std::sync::atomic::Ordering::Relaxed);
    if access == Access::ReadOnly {
        deferred::overlay_pending(&engine.deferred, engine.kv.as_ref(), &engine.config)?;
    }
    Ok(engine)
}

/// Replays the commit journal of a format-2 store: read-write into the KV store itself (then
/// a checkpoint makes the records durable there, and a record replay dropped is invalidated);
/// read-only into an overlay in memory, which the returned KV store reads through.
fn replay_journal(
    device: &dyn BlockDevice,
    kv: Arc<dyn Kv>,
    label: &Label,
    superblock: &Superblock,
    access: Access,
    config: &EngineConfig,
) -> Result<(Arc<dyn Kv>, Option<JournalSummary>)> {
    let Some(region) = superblock.journal else {
        return Ok((kv, None));
    };
    let tail = journal::durable_position(kv.as_ref(), region)?;
    let target: Arc<dyn Kv> = match access {
        Access::ReadWrite => kv,
        Access::ReadOnly => Arc::new(OverlayKv::new(kv)),
    };
    let replay = if config.mutated(Mutation::SkipReplay) {
        JournalReplay {
            next: tail,
            ..JournalReplay::default()
        }
    } else {
        let verify_last = !config.mutated(Mutation::TrustLastRecord);
        journal::replay(
            device,
            target.as_ref(),
            region,
            &label.store_uuid,
            tail,
            verify_last,
        )?
    };
    if access == Access::ReadWrite {
        for unwanted in replay.dropped.into_iter().chain(replay.torn) {
            journal::invalidate(device, region, unwanted)?;
        }
        journal::settle(target.as_ref(), &replay)?;
    }
    Ok((
        target,
        Some(JournalSummary {
            region,
            tail,
            replay,
        }),
    ))
}

fn engine_config(
    superblock: &Superblock,
    device: &dyn BlockDevice,
    options: &OpenOptions,
) -> EngineConfig {
    let rotational_default = if device.info().rotational {
        PREFER_DEFERRED_SIZE_ROTATIONAL
    } else {
        0
    };
    EngineConfig {
        min_alloc_size: superblock.min_alloc_size,
        csum_type: superblock.csum_type,
        csum_chunk_order: superblock.csum_chunk_order,
        blob_length_max: superblock.blob_length_max,
        device_size: superblock.device_size,
        reserved_bytes: superblock.reserved_end(),
        prefer_deferred_size: options.prefer_deferred_size.unwrap_or(rotational_default),
        onode_cache_bytes: options.onode_cache_bytes,
        queue_depth_max: options.queue_depth_max.max(1),
        slow_transaction: options.slow_transaction,
        deferred: options.deferred,
        background: options.background,
        #[cfg(debug_assertions)]
        mutation: options.mutation,
    }
}

fn load_collections(
    kv: &dyn Kv,
    onode_budget: &Arc<OnodeBudget>,
) -> Result<BTreeMap<Vec<u8>, Arc<Collection>>> {
    let mut collections = BTreeMap::new();
    kv.scan(KeySpace::Collections, &[], None, &mut |name, value| {
        if name.is_empty() || name.len() > COLLECTION_NAME_LENGTH_MAX {
            return Err(Error::corruption(format!(
                "collection key of {} bytes",
                name.len()
            )));
        }
        let record = CollectionRecord::decode(value)?;
        let collection = Collection::new(record.collection_id, name.to_vec(), onode_budget);
        collections.insert(name.to_vec(), Arc::new(collection));
        Ok(true)
    })?;
    Ok(collections)
}
