//! The blobs of an extent map, by id: shared between versions of an onode, changed cheaply.
//!
//! A transaction changes a working copy of an onode while readers still see the installed
//! version. Kept in one persistent vector of `Arc`s, the first change to a blob copied the
//! vector's chunk around it: 64 entries, each an `Arc` whose count lives beside its blob, so
//! one change to a 4 KiB overwrite touched 64 cold cache lines (a fifth of the CPU a small
//! write spent planning). Here a version's changes sit in a small map over the shared vector
//! instead, and [`BlobTable::settle`] folds them in once the version is installed and the one
//! it replaces is gone: the vector is then no longer shared, so nothing is copied.

use std::sync::Arc;

use imbl::Vector;

use super::id_map::IdMap;

/// Blob ids to entries (`None`: a free id).
#[derive(Debug, Clone)]
pub struct BlobTable<T: Clone> {
    /// Shared with other versions of the map.
    base: Vector<Option<Arc<T>>>,
    /// This version's changes over `base`; ids from `base.len()` on are new.
    changes: IdMap<Option<Arc<T>>>,
    /// Ids in use or free: `base.len()` plus the new ones.
    len: usize,
}

impl<T: Clone> Default for BlobTable<T> {
    fn default() -> Self {
        BlobTable {
            base: Vector::new(),
            changes: IdMap::default(),
            len: 0,
        }
    }
}

impl<T: Clone> BlobTable<T> {
    /// The entry with `id`, if live.
    pub fn get(&self, id: u32) -> Option<&T> {
        if !self.changes.is_empty()
            && let Some(changed) = self.changes.get(&id)
        {
            return changed.as_deref();
        }
        self.base
            .get(id as usize)
            .and_then(|entry| entry.as_deref())
    }

    /// The entry with `id` to change, if live: copied for this version the first time.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        if id as usize >= self.len {
            return None;
        }
        let base = &self.base;
        let entry = self
            .changes
            .entry(id)
            .or_insert_with(|| base.get(id as usize).cloned().flatten());
        entry.as_mut().map(Arc::make_mut)
    }

    /// Sets the entry with `id` (an id in use or free); returns the one it replaces.
    pub fn set(&mut self, id: u32, entry: Option<T>) -> Option<Arc<T>> {
        debug_assert!((id as usize) < self.len, "blob id {id} past the table");
        let old = self.get_arc(id);
        self.changes.insert(id, entry.map(Arc::new));
        old
    }

    /// Adds an entry under a new id, which it returns.
    pub fn push(&mut self, entry: T) -> u32 {
        let id = self.len as u32;
        self.changes.insert(id, Some(Arc::new(entry)));
        self.len += 1;
        id
    }

    /// Every id with its entry, if live, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Option<&T>)> + '_ {
        (0..self.len as u32).map(|id| (id, self.get(id)))
    }

    fn get_arc(&self, id: u32) -> Option<Arc<T>> {
        match self.changes.get(&id) {
            Some(changed) => changed.clone(),
            None => self.base.get(id as usize).cloned().flatten(),
        }
    }

    /// Folds this version's changes into the shared vector. Cheap once no other version
    /// shares it (the vector's nodes are then changed in place); correct, copying what is
    /// still shared, when one does.
    pub fn settle(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        let mut changes: Vec<(u32, Option<Arc<T>>)> = self.changes.drain().collect();
        changes.sort_unstable_by_key(|(id, _)| *id);
        for (id, entry) in changes {
            let id = id as usize;
            if id < self.base.len() {
                self.base.set(id, entry);
            } else {
                debug_assert_eq!(id, self.base.len(), "new ids are consecutive");
                self.base.push_back(entry);
            }
        }
        debug_assert_eq!(self.base.len(), self.len);
    }
}

impl<T: Clone + PartialEq> PartialEq for BlobTable<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl<T: Clone + Eq> Eq for BlobTable<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_stay_in_their_version_until_settled_and_after() {
        let mut installed: BlobTable<u32> = BlobTable::default();
        let a = installed.push(10);
        let b = installed.push(20);
        installed.settle();
        let mut working = installed.clone();
        *working.get_mut(a).unwrap() += 1;
        working.set(b, None);
        let c = working.push(30);
        assert_eq!(
            installed.get(a),
            Some(&10),
            "the installed version is untouched"
        );
        assert_eq!(installed.get(b), Some(&20));
        assert_eq!(installed.iter().count(), 2);
        assert_eq!(working.get(a), Some(&11));
        assert_eq!(working.get(b), None);
        assert_eq!(working.get(c), Some(&30));
        assert_eq!(working.get_mut(99), None, "no entry past the table");
        let before = working.clone();
        working.settle();
        assert_eq!(working, before, "settling changes nothing visible");
        assert_eq!(
            installed.get(a),
            Some(&10),
            "nor the version it shared with"
        );
        assert_eq!(
            working.iter().collect::<Vec<_>>(),
            vec![(0, Some(&11)), (1, None), (2, Some(&30))]
        );
        drop(installed);
        let mut next = working.clone();
        next.set(1, Some(21));
        drop(working);
        next.settle();
        assert_eq!(next.get(1), Some(&21));
    }

    #[test]
    fn settling_copies_only_what_another_version_still_shares() {
        let mut table: BlobTable<Vec<u8>> = BlobTable::default();
        for i in 0..200u8 {
            table.push(vec![i]);
        }
        table.settle();
        let count_of = |table: &BlobTable<Vec<u8>>, id: usize| {
            Arc::strong_count(table.base.get(id).unwrap().as_ref().unwrap())
        };
        // Another version alive: the chunk holding the change is copied (its neighbours are
        // then held by both versions), the rest stays shared.
        let mut working = table.clone();
        working.get_mut(150).unwrap().push(1);
        working.settle();
        assert_eq!(count_of(&working, 151), 2);
        assert_eq!(table.get(150), Some(&vec![150]));
        // None: changed in place, nothing is held twice.
        drop(table);
        assert_eq!(count_of(&working, 151), 1);
        working.get_mut(10).unwrap().push(2);
        working.settle();
        assert_eq!(count_of(&working, 11), 1);
        assert_eq!(working.get(10), Some(&vec![10, 2]));
        assert_eq!(working.get(150), Some(&vec![150, 1]));
    }
}
