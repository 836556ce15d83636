//! A KV store seen through changes held in memory: what a read-only open or fsck needs when
//! the commit journal holds records the durable KV store does not have yet.
//!
//! Journal replay writes the records into the overlay instead of the base store, so nothing
//! reaches the disk. Reads see the overlay's puts and deletions over the base: a deletion (or a
//! deleted range, recorded key by key over what both layers hold) hides the base's key; a merge
//! (freelist XOR) is folded into the key's current value at once.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Batch, BatchOp, Durability, KeySpace, Kv, KvIoStats, ScanVisitor};
use crate::error::{Error, Result};
use crate::format::freelist;

/// `Some(value)`, or `None` for a key deleted in the overlay.
type Layer = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A base store with in-memory changes on top.
pub struct OverlayKv<'a> {
    base: Base<'a>,
    top: Mutex<Vec<Layer>>,
    /// A snapshot: writes are refused.
    frozen: bool,
}

/// The store under an overlay: owned by a mounted engine, borrowed by fsck.
enum Base<'a> {
    Shared(Arc<dyn Kv>),
    Borrowed(&'a dyn Kv),
    /// A snapshot of the base, under a snapshot of the overlay.
    Owned(Box<dyn Kv + 'a>),
}

impl std::fmt::Debug for OverlayKv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayKv").finish_non_exhaustive()
    }
}

impl OverlayKv<'static> {
    /// An empty overlay on `base`.
    pub fn new(base: Arc<dyn Kv>) -> OverlayKv<'static> {
        OverlayKv::with_base(Base::Shared(base))
    }
}

impl<'a> OverlayKv<'a> {
    /// An empty overlay on a borrowed `base`.
    pub fn over(base: &'a dyn Kv) -> OverlayKv<'a> {
        OverlayKv::with_base(Base::Borrowed(base))
    }

    fn with_base(base: Base<'a>) -> OverlayKv<'a> {
        OverlayKv {
            base,
            top: Mutex::new(vec![Layer::new(); KeySpace::ALL.len()]),
            frozen: false,
        }
    }

    fn base(&self) -> &dyn Kv {
        match &self.base {
            Base::Shared(kv) => kv.as_ref(),
            Base::Borrowed(kv) => *kv,
            Base::Owned(kv) => kv.as_ref(),
        }
    }

    fn apply(&self, op: &BatchOp) -> Result<()> {
        match op {
            BatchOp::Put { space, key, value } => {
                self.top.lock()[space.index()].insert(key.clone(), Some(value.clone()));
            }
            BatchOp::Delete { space, key } => {
                self.top.lock()[space.index()].insert(key.clone(), None);
            }
            BatchOp::DeleteRange { space, start, end } => {
                let mut doomed: Vec<Vec<u8>> = Vec::new();
                self.base().scan(*space, start, Some(end), &mut |key, _| {
                    doomed.push(key.to_vec());
                    Ok(true)
                })?;
                let mut top = self.top.lock();
                let layer = &mut top[space.index()];
                doomed.extend(
                    layer
                        .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
                        .map(|(k, _)| k.clone()),
                );
                for key in doomed {
                    layer.insert(key, None);
                }
            }
            BatchOp::Merge {
                space,
                key,
                operand,
            } => {
                let current = self.get(*space, key)?;
                let merged = freelist::full_merge(current.as_deref(), [&operand[..]])?;
                self.top.lock()[space.index()].insert(key.clone(), Some(merged));
            }
        }
        Ok(())
    }
}

impl Kv for OverlayKv<'_> {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(entry) = self.top.lock()[space.index()].get(key) {
            return Ok(entry.clone());
        }
        self.base().get(space, key)
    }

    /// Applies the batch to the overlay, whatever the durability asked (nothing here is
    /// durable; the base is never written).
    fn write(&self, batch: Batch, _durability: Durability) -> Result<()> {
        if self.frozen {
            return Err(super::snapshot_refuses_writes());
        }
        batch.ops().iter().try_for_each(|op| self.apply(op))
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let top: Vec<(Vec<u8>, Option<Vec<u8>>)> = self.top.lock()[space.index()]
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut merged = Merge {
            top: top.into_iter().peekable(),
            stopped: false,
        };
        self.base().scan(space, start, end, &mut |key, value| {
            let go_on = merged.base_entry(key, value, visit)?;
            Ok(go_on)
        })?;
        if !merged.stopped {
            merged.rest(visit)?;
        }
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        0
    }

    fn io_stats(&self) -> KvIoStats {
        self.base().io_stats()
    }

    fn flush(&self) -> Result<()> {
        Err(Error::ReadOnly(
            "the journal's records are held in memory only (a read-only view)".into(),
        ))
    }

    fn snapshot(&self) -> Result<Box<dyn Kv + '_>> {
        let top = self.top.lock().clone();
        Ok(Box::new(OverlayKv {
            base: Base::Owned(self.base().snapshot()?),
            top: Mutex::new(top),
            frozen: true,
        }))
    }
}

/// Merges the overlay's entries of a scan into the base's, in key order.
struct Merge<I: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> {
    top: std::iter::Peekable<I>,
    stopped: bool,
}

impl<I: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> Merge<I> {
    /// Visits overlay entries before `key`, then the base's entry unless the overlay shadows
    /// it; false once the visitor asked to stop.
    fn base_entry(
        &mut self,
        key: &[u8],
        value: &[u8],
        visit: &mut ScanVisitor<'_>,
    ) -> Result<bool> {
        while let Some((top_key, _)) = self.top.peek() {
            if top_key.as_slice() >= key {
                break;
            }
            let (top_key, top_value) = self.top.next().expect("peeked");
            if !self.visit_top(&top_key, top_value, visit)? {
                return Ok(false);
            }
        }
        if self
            .top
            .peek()
            .is_some_and(|(top_key, _)| top_key.as_slice() == key)
        {
            let (top_key, top_value) = self.top.next().expect("peeked");
            return self.visit_top(&top_key, top_value, visit);
        }
        self.visit_entry(key, value, visit)
    }

    /// Visits the overlay's entries after the base's last.
    fn rest(&mut self, visit: &mut ScanVisitor<'_>) -> Result<()> {
        while let Some((top_key, top_value)) = self.top.next() {
            if !self.visit_top(&top_key, top_value, visit)? {
                break;
            }
        }
        Ok(())
    }

    fn visit_top(
        &mut self,
        key: &[u8],
        value: Option<Vec<u8>>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<bool> {
        match value {
            Some(value) => self.visit_entry(key, &value, visit),
            None => Ok(true), // deleted in the overlay
        }
    }

    fn visit_entry(
        &mut self,
        key: &[u8],
        value: &[u8],
        visit: &mut ScanVisitor<'_>,
    ) -> Result<bool> {
        let go_on = visit(key, value)?;
        self.stopped = !go_on;
        Ok(go_on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

    #[test]
    fn the_overlay_hides_shadows_and_merges_over_its_base() {
        let base = Arc::new(MemKv::new());
        let mut batch = Batch::new();
        for key in [b"a", b"b", b"c", b"d"] {
            batch.put(KeySpace::Omap, key.to_vec(), b"base".to_vec());
        }
        base.write(batch, Durability::Sync).unwrap();
        let overlay = OverlayKv::new(base.clone());
        let mut changes = Batch::new();
        changes.put(KeySpace::Omap, b"b".to_vec(), b"top".to_vec());
        changes.delete(KeySpace::Omap, b"c".to_vec());
        changes.put(KeySpace::Omap, b"e".to_vec(), b"new".to_vec());
        changes.delete_range(KeySpace::Omap, b"d".to_vec(), b"e".to_vec());
        overlay.write(changes, Durability::Journaled).unwrap();
        let kv: &dyn Kv = &overlay;
        let seen = kv.scan_collect(KeySpace::Omap, b"", None, 100).unwrap();
        let seen: Vec<(&[u8], &[u8])> = seen
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(
            seen,
            vec![(&b"a"[..], &b"base"[..]), (b"b", b"top"), (b"e", b"new")]
        );
        assert_eq!(kv.get(KeySpace::Omap, b"c").unwrap(), None);
        let first = kv.scan_collect(KeySpace::Omap, b"", None, 2).unwrap();
        assert_eq!(first.len(), 2, "a scan stops when asked");
        assert_eq!(
            base.get(KeySpace::Omap, b"b").unwrap(),
            Some(b"base".to_vec()),
            "the base is never written"
        );
    }

    #[test]
    fn a_snapshot_ignores_later_writes() {
        let base = MemKv::new();
        crate::kv::assert_snapshots_ignore_later_writes(&OverlayKv::over(&base));
        assert_eq!(
            base.get(KeySpace::Onodes, b"a").unwrap(),
            None,
            "the base is untouched"
        );
    }
}
