//! Extent-map sharding: where to cut a large extent map into separately stored shards.
//!
//! A map whose encoding fits in [`INLINE_BYTES_MAX`] lives inside the onode. A larger one is cut
//! into shards of about [`SHARD_TARGET_BYTES`], each its own KV record, so that a small write to
//! a large, fragmented object rewrites one small shard (plus the onode), not the whole map. A
//! shard that grows past [`SHARD_BYTES_MAX`] is split again; a map that shrinks below half the
//! inline limit moves back into the onode.
//!
//! A cut may only go where no blob spans it: every blob's extents must lie in one shard, or the
//! blob would be stored twice and its space freed twice. Nor may it go through the logical
//! range a blob covers beyond its extents (its unused chunks): a later small write there must
//! find the blob in its own shard, or it would take a new allocation unit while the blob keeps
//! its own. Cuts also go only at offsets aligned to the unit new data is laid out in (checksum
//! chunk and allocation unit), so a write split at a shard boundary never shares a chunk or a
//! unit between its two pieces. Writes are split at the current boundaries, so new blobs never
//! span them either.

use crate::format::onode::{BODY_HEADER_LENGTH, EXTENT_ENCODED_LENGTH};

use super::ExtentMap;
use super::id_map::{IdMap, IdSet};

/// Largest extent map kept inline in the onode, in encoded bytes.
pub const INLINE_BYTES_MAX: usize = 1024;
/// Encoded size a new shard is filled to before a cut is sought.
pub const SHARD_TARGET_BYTES: usize = 512;
/// A shard larger than this is split when next written.
pub const SHARD_BYTES_MAX: usize = 1280;

/// Shard start offsets for the extents starting in `[start, end)`: `start` first, then a cut at
/// each safe, `chunk`-aligned (the write unit) extent start once the shard so far reaches the
/// target size.
pub fn choose_boundaries(map: &ExtentMap, start: u64, end: u64, chunk: u64) -> Vec<u64> {
    let extents: Vec<_> = map
        .extents()
        .filter(|(offset, _)| *offset >= start && *offset < end)
        .collect();
    let mut blob_end: IdMap<u64> = IdMap::default();
    for (offset, mapping) in &extents {
        let blob = map.blob(mapping.blob);
        let extent_end = offset + u64::from(mapping.length);
        // The logical end of what an unshared blob covers: its last byte where it is mapped
        // (unshared blobs are mapped at one place, at or after offset 0). A shared blob is
        // never written in place, and a clone may map it anywhere: only its extents count.
        let covered_end = match blob.shared_blob_id {
            Some(_) => extent_end,
            None => offset.saturating_sub(u64::from(mapping.blob_offset)) + u64::from(blob.length),
        };
        let reach = blob_end.entry(mapping.blob).or_insert(0);
        *reach = (*reach).max(extent_end).max(covered_end);
    }
    let mut boundaries = vec![start];
    let mut shard_bytes = BODY_HEADER_LENGTH;
    let mut blobs_in_shard = IdSet::default();
    let mut reach = 0u64;
    for (offset, mapping) in &extents {
        let safe = reach <= *offset && offset.is_multiple_of(chunk) && *offset > start;
        if shard_bytes >= SHARD_TARGET_BYTES && safe {
            boundaries.push(*offset);
            shard_bytes = BODY_HEADER_LENGTH;
            blobs_in_shard.clear();
        }
        shard_bytes += EXTENT_ENCODED_LENGTH;
        if blobs_in_shard.insert(mapping.blob) {
            shard_bytes += map.blob(mapping.blob).encoded_length();
        }
        reach = reach.max(blob_end[&mapping.blob]);
    }
    boundaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::onode::{Blob, CsumType};

    fn blob(device_offset: u64, length: u32) -> Blob {
        Blob {
            device_offset,
            length,
            shared_blob_id: None,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            csums: vec![0; (length / 4096) as usize],
            unused: None,
        }
    }

    /// `count` 4 KiB blobs mapped back to back.
    fn fragmented(count: u64) -> ExtentMap {
        let mut map = ExtentMap::new(4096);
        for i in 0..count {
            let id = map.add_blob(blob((i + 10) * 4096, 4096));
            map.map(i * 4096, 4096, id, 0);
        }
        map
    }

    #[test]
    fn a_large_map_is_cut_into_target_sized_shards() {
        let map = fragmented(500);
        let cuts = choose_boundaries(&map, 0, u64::MAX, 4096);
        assert!(cuts.len() > 5, "{cuts:?}");
        assert_eq!(cuts[0], 0);
        for pair in cuts.windows(2) {
            let body = map.to_body(pair[0], pair[1]);
            let bytes = crate::format::onode::encode_shard(&body).len();
            assert!(
                (SHARD_TARGET_BYTES..SHARD_BYTES_MAX).contains(&bytes),
                "{bytes}"
            );
        }
    }

    #[test]
    fn no_cut_falls_inside_a_blob_with_extents_on_both_sides() {
        let mut map = fragmented(200);
        // One big blob referenced at both ends of a wide range, with other blobs in between.
        let wide = map.add_blob(blob(1 << 30, 1 << 20));
        map.punch(0, 4096);
        map.map(0, 4096, wide, 0);
        map.punch(600 * 1024, 4096);
        map.map(600 * 1024, 4096, wide, 600 * 1024);
        let cuts = choose_boundaries(&map, 0, u64::MAX, 4096);
        assert!(cuts.iter().all(|c| *c == 0 || *c > 600 * 1024), "{cuts:?}");
    }

    #[test]
    fn cuts_are_chunk_aligned() {
        let mut map = ExtentMap::new(4096);
        for i in 0..400u64 {
            let id = map.add_blob(blob((i + 10) * 8192, 4096));
            map.map(i * 8192 + 100, 200, id, 100);
        }
        let cuts = choose_boundaries(&map, 0, u64::MAX, 4096);
        assert_eq!(
            cuts,
            vec![0],
            "no extent starts on a chunk boundary, so no cut is safe"
        );
    }
}
