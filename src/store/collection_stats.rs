//! Statistics of one collection or a group of them (Ceph's `pool_statfs`, where a pool is the
//! collections of its placement groups).
//!
//! They are kept in memory, not on disk. The first query of a collection after the store opens
//! counts its objects (one read of each onode); from then on every transaction installed on it
//! keeps its totals current, and a query costs a lock. Collections never queried cost
//! transactions nothing.

use super::{CollectionStatfs, Store, import};
use crate::error::Result;
use crate::txn::context::{load_slot, stored_object_names};
use crate::txn::engine::{Collection, Engine, ObjectTotals};

impl Store {
    /// Objects and space of one collection, including every transaction submitted before the
    /// call. The first call for a collection after opening reads each of its onodes once.
    pub fn collection_statfs(&self, collection: impl AsRef<[u8]>) -> Result<CollectionStatfs> {
        self.engine.check_poison()?;
        let collection = self.engine.collection(collection.as_ref())?;
        Ok(summed(&[totals(&self.engine, &collection)?]))
    }

    /// Objects and space of the collections whose names `select` picks, summed (Ceph's
    /// `pool_statfs`: `|name| name.starts_with(b"3.")` for the collections of pool 3, if the
    /// daemon names them so).
    pub fn statfs_of(&self, select: impl Fn(&[u8]) -> bool) -> Result<CollectionStatfs> {
        self.engine.check_poison()?;
        let chosen: Vec<_> = {
            let namespace = self.engine.collections.read();
            namespace
                .iter()
                .filter(|(name, _)| !import::is_hidden_collection(name) && select(name))
                .map(|(_, collection)| collection.clone())
                .collect()
        };
        let totals = chosen
            .iter()
            .map(|collection| totals(&self.engine, collection))
            .collect::<Result<Vec<_>>>()?;
        Ok(summed(&totals))
    }
}

/// The figures of several collections, added up.
fn summed(totals: &[ObjectTotals]) -> CollectionStatfs {
    let mut sum = ObjectTotals::default();
    totals.iter().for_each(|t| sum.add(*t));
    CollectionStatfs {
        collections: totals.len() as u64,
        object_count: sum.objects,
        stored_bytes: sum.stored_bytes,
        allocated_bytes: sum.allocated_bytes,
    }
}

/// The collection's totals, counting its objects first if nothing has yet.
///
/// Counting holds the namespace shared and the collection's prepare lock, so no transaction on
/// it is being prepared (those hold one or the other exclusively) and none can straddle the
/// moment its totals start to be kept; transactions already queued are waited for, after
/// which the KV store holds every object.
fn totals(engine: &Engine, collection: &Collection) -> Result<ObjectTotals> {
    if let Some(totals) = *collection.totals.lock() {
        return Ok(totals);
    }
    let _namespace = engine.collections.read();
    let _prepare = collection.prepare_lock.lock();
    if let Some(totals) = *collection.totals.lock() {
        return Ok(totals);
    }
    collection.sequencer.wait_settled(engine.waiting());
    let mut sum = ObjectTotals::default();
    for name in stored_object_names(engine, collection)? {
        let slot = collection.onodes.slot(&name);
        if let Some(onode) = load_slot(engine, collection, &slot, &name)? {
            sum.add(ObjectTotals::of(&onode));
        }
    }
    *collection.totals.lock() = Some(sum);
    Ok(sum)
}
