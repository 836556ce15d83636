//! Clones: copy-on-write copies of whole objects and of ranges, through shared blobs.
//!
//! Cloning copies metadata only. Every blob the copy will share is first made a *shared blob*:
//! it gets an id and a record counting, per allocation unit, the blob instances (in all
//! objects) that reference it (FORMAT.md §6.6). The copy gets its own instances of those blobs,
//! and the counts go up. Shared blobs are immutable: the write planner never writes one in place
//! (no deferred overwrite, no fill of unused chunks), so a later write to either object goes to
//! new space and punches its own instance; a unit returns to the allocator only when the last
//! instance lets go of it (`TxnContext::release`).

use std::collections::BTreeMap;

use super::context::{ObjectKey, TxnContext};
use crate::error::Result;
use crate::format::keys::{self, KeySpace};
use crate::format::onode::Blob;
use crate::format::shared::SharedBlobRecord;
use crate::kv::BatchOp;
use crate::onode::{BlobId, Onode, Piece};

/// Makes `target` a copy of the object `source`: data (shared), size, xattrs, allocation hint
/// and omap. An existing target is removed first; a clone onto itself changes nothing.
pub fn clone_object(ctx: &mut TxnContext<'_>, source: &ObjectKey, target: &[u8]) -> Result<()> {
    if source.1 == target {
        return Ok(());
    }
    let collection = ctx.collection_name(source);
    let target = ctx.load(&collection, target)?;
    if ctx.exists(&target) {
        ctx.remove_object(&target)?;
    }
    let whole_object = (0, u64::MAX);
    let unshared: Vec<BlobId> = ctx
        .onode(source)
        .extent_map
        .blobs()
        .filter(|(_, blob)| blob.shared_blob_id.is_none())
        .map(|(id, _)| id)
        .collect();
    for id in unshared {
        share(ctx, source, id, whole_object);
    }
    let nid = ctx.new_nid();
    let original = ctx.onode(source);
    let copy = Onode {
        nid,
        size: original.size,
        flags: original.flags,
        alloc_hint: original.alloc_hint,
        xattrs: original.xattrs.clone(),
        extent_map: original.extent_map.clone(),
        shards: None,
    };
    for (id, blob) in copy.extent_map.blobs() {
        let sbid = blob.shared_blob_id.expect("every blob was shared above");
        let units = copy.extent_map.held_units(id);
        add_references(ctx, sbid, units)?;
    }
    ctx.stats.stored_bytes += copy.extent_map.stored_bytes() as i64;
    let (source_nid, target_nid) = (ctx.onode(source).nid, copy.nid);
    ctx.put_onode(&target, copy);
    copy_omap(ctx, source, source_nid, target_nid)
}

/// Copies `[offset, offset + length)` of `source` to `target_offset` of `target` (created if
/// missing, grown to cover the range). Bytes past the source's end copy as a hole.
pub fn clone_range(
    ctx: &mut TxnContext<'_>,
    source: &ObjectKey,
    (offset, length, target_offset): (u64, u64, u64),
    target: &[u8],
) -> Result<()> {
    let collection = ctx.collection_name(source);
    let target = ctx.object_or_create(&collection, target)?;
    if length == 0 {
        return Ok(());
    }
    let pieces = source_pieces(ctx, source, offset, length, (&target, target_offset));
    // Share and count first: when source and target are one object, the punch below could
    // otherwise free units that the copy is about to reference.
    let mut copies = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let blob = ctx.onode(source).extent_map.blob(piece.blob);
        if blob.shared_blob_id.is_none() {
            // An unshared blob maps at one place: from its anchor over its length.
            let anchor = piece.logical_offset - u64::from(piece.blob_offset);
            let blob_end = anchor + u64::from(blob.length);
            share(ctx, source, piece.blob, (anchor, blob_end));
        }
        let blob = ctx.onode(source).extent_map.blob(piece.blob).clone();
        let sbid = blob.shared_blob_id.expect("shared above");
        let au = u64::from(ctx.onode(source).extent_map.au_bytes());
        let first = u64::from(piece.blob_offset) / au;
        let last = (u64::from(piece.blob_offset) + piece.length).div_ceil(au);
        add_references(ctx, sbid, (first as usize..last as usize).collect())?;
        let target_start = target_offset + (piece.logical_offset - offset);
        copies.push((target_start, piece, blob));
    }
    let onode = ctx.onode_mut(&target);
    let punched = onode.extent_map.punch(target_offset, length);
    onode.size = onode.size.max(target_offset + length);
    ctx.release(punched)?;
    // The range was punched whole, so every copied piece adds its bytes to the stored total.
    let onode = ctx.onode_mut(&target);
    let mut copied = 0;
    for (target_start, piece, blob) in copies {
        let id = onode.extent_map.add_blob(blob);
        onode
            .extent_map
            .map(target_start, piece.length as u32, id, piece.blob_offset);
        copied += piece.length as i64;
    }
    ctx.stats.stored_bytes += copied;
    Ok(())
}

/// A data piece of the source to copy.
#[derive(Debug, Clone, Copy)]
struct SourcePiece {
    logical_offset: u64,
    length: u64,
    blob: BlobId,
    blob_offset: u32,
}

/// The source's data pieces in the range, cut where the target's extent shards begin, so that
/// no copied extent straddles a shard boundary of the target.
fn source_pieces(
    ctx: &TxnContext<'_>,
    source: &ObjectKey,
    offset: u64,
    length: u64,
    (target, target_offset): (&ObjectKey, u64),
) -> Vec<SourcePiece> {
    let to_target = |logical: u64| target_offset + (logical - offset);
    let mut pieces = Vec::new();
    for piece in ctx.onode(source).extent_map.pieces(offset, length) {
        let Piece::Data {
            logical_offset,
            length,
            blob,
            blob_offset,
        } = piece
        else {
            continue;
        };
        let (start, end) = (
            to_target(logical_offset),
            to_target(logical_offset + length),
        );
        let cuts = ctx.onode(target).shard_starts_within(start, end);
        let mut done = 0;
        for piece_end in cuts.into_iter().map(|cut| cut - start).chain([length]) {
            pieces.push(SourcePiece {
                logical_offset: logical_offset + done,
                length: piece_end - done,
                blob,
                blob_offset: blob_offset + done as u32,
            });
            done = piece_end;
        }
    }
    pieces
}

/// Makes blob `id` of the object shared: a new shared-blob record with one reference per
/// allocation unit the object holds.
fn share(ctx: &mut TxnContext<'_>, key: &ObjectKey, id: BlobId, logical: (u64, u64)) {
    let blob: Blob = ctx.onode(key).extent_map.blob(id).clone();
    let placeholder = SharedBlobRecord {
        device_offset: blob.device_offset,
        length: blob.length,
        refs: Vec::new(),
    };
    let sbid = ctx.new_shared_blob(placeholder);
    let refs = ctx.onode_mut(key).extent_map.share_blob(id, sbid, logical);
    ctx.shared_record(sbid).expect("registered above").refs = refs;
}

/// One more reference to each of `units` of shared blob `sbid`.
fn add_references(ctx: &mut TxnContext<'_>, sbid: u64, units: Vec<usize>) -> Result<()> {
    let record = ctx.shared_record(sbid)?;
    for unit in units {
        match record.refs.get_mut(unit) {
            Some(count) => *count += 1,
            None => {
                return Err(crate::Error::corruption(format!(
                    "shared blob {sbid} has no allocation unit {unit}"
                )));
            }
        }
    }
    Ok(())
}

/// Copies the source's omap (header and values) to the target's object id: what earlier
/// transactions committed, with this transaction's own changes so far applied on top.
fn copy_omap(
    ctx: &mut TxnContext<'_>,
    source: &ObjectKey,
    source_nid: u64,
    target_nid: u64,
) -> Result<()> {
    // Not just the source's slot: the object may have been renamed earlier in this transaction,
    // and transactions in flight under its old name carry omap changes for the same nid.
    ctx.wait_collection_settled(source);
    ctx.engine().check_poison()?;
    let (start, end) = keys::omap_object_range(source_nid);
    let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    ctx.engine()
        .kv
        .scan(KeySpace::Omap, &start, Some(&end), &mut |key, value| {
            entries.insert(key.to_vec(), value.to_vec());
            Ok(true)
        })?;
    let within = |key: &[u8]| key >= start.as_slice() && key < end.as_slice();
    for op in ctx.batch.ops() {
        match op {
            BatchOp::Put { space, key, value } if *space == KeySpace::Omap && within(key) => {
                entries.insert(key.clone(), value.clone());
            }
            BatchOp::Delete { space, key } if *space == KeySpace::Omap => {
                entries.remove(key);
            }
            BatchOp::DeleteRange {
                space,
                start: from,
                end: to,
            } if *space == KeySpace::Omap => {
                entries.retain(|key, _| key < from || key >= to);
            }
            _ => {}
        }
    }
    for (key, value) in entries {
        let mut copied = target_nid.to_be_bytes().to_vec();
        copied.extend_from_slice(&key[8..]);
        ctx.batch.put(KeySpace::Omap, copied, value);
    }
    Ok(())
}
