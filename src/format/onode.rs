//! Onode and extent-map records (FORMAT.md §5).
//!
//! An onode is one object's metadata: its id (`nid`), size, inline xattrs, allocation hint and
//! extent map. The extent map is a list of *blobs* (a contiguous, checksummed run of device space)
//! and *extents* (a logical range of the object mapped into a blob). It is stored inline in the
//! onode while small, and split into separate shard records (keyed by nid and logical offset) when
//! it grows, so that a small write to a large object rewrites one small shard.
//!
//! Decoding checks every structural invariant that later code relies on (extents sorted and
//! disjoint, blob references in range, checksum counts matching blob lengths), so a corrupt record
//! is reported here, by name, instead of surfacing as a panic deep in the read path.

use std::collections::BTreeMap;

use super::codec::{DecodeError, Decoder, Encoder};
use super::envelope;
use super::{
    BLOB_LENGTH_MAX, CSUM_CHUNK_ORDER_MAX, CSUM_CHUNK_ORDER_MIN, EXTENTS_PER_MAP_MAX,
    OBJECT_SIZE_MAX, SHARDS_PER_ONODE_MAX, XATTR_NAME_LENGTH_MAX, XATTR_VALUE_LENGTH_MAX,
    XATTRS_BYTES_MAX, XATTRS_COUNT_MAX,
};

const ONODE_STRUCT_VERSION: u8 = 1;
const ONODE_COMPAT_VERSION: u8 = 1;
const SHARD_STRUCT_VERSION: u8 = 1;
const SHARD_COMPAT_VERSION: u8 = 1;

/// Onode flag: the object has omap entries (header or keys).
pub const ONODE_FLAG_OMAP: u32 = 1;

const BLOB_FLAG_SHARED: u8 = 1;
const BLOB_FLAG_UNUSED: u8 = 2;
const BLOB_FLAGS_KNOWN: u8 = BLOB_FLAG_SHARED | BLOB_FLAG_UNUSED;

const EXTENT_MAP_INLINE: u8 = 0;
const EXTENT_MAP_SHARDED: u8 = 1;

/// Checksum algorithm of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsumType {
    /// No checksums (allowed, not the default).
    None = 0,
    /// crc32c, 4 bytes per checksum chunk.
    Crc32c = 1,
}

impl CsumType {
    fn decode(byte: u8, d: &Decoder<'_>) -> Result<CsumType, DecodeError> {
        match byte {
            0 => Ok(CsumType::None),
            1 => Ok(CsumType::Crc32c),
            other => Err(d.error(format!("unknown csum type {other}"))),
        }
    }
}

/// Allocation hint a client set on an object (kept, reported, used to pick blob sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocHint {
    /// Expected final object size in bytes, 0 if unknown.
    pub expected_object_size: u64,
    /// Expected write size in bytes, 0 if unknown.
    pub expected_write_size: u64,
    /// Ceph-compatible hint flags (sequential/random write, immutable, ...).
    pub flags: u32,
}

/// A contiguous run of device space holding object data, checksummed per chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// First byte on the data device.
    pub device_offset: u64,
    /// Allocated bytes, a multiple of the allocation unit and of the checksum chunk.
    pub length: u32,
    /// Shared-blob id when the blob is shared by clones (then it is immutable).
    pub shared_blob_id: Option<u64>,
    /// Checksum algorithm.
    pub csum_type: CsumType,
    /// log2 of the checksum chunk size.
    pub csum_chunk_order: u8,
    /// One checksum per chunk (`length >> csum_chunk_order` of them), empty for `CsumType::None`.
    pub csums: Vec<u32>,
    /// Chunks never written since allocation (bit set = unused), `None` when all are used.
    pub unused: Option<Vec<u8>>,
}

/// Encoded bytes of one extent in a body.
pub const EXTENT_ENCODED_LENGTH: usize = 20;
/// Encoded bytes of a body's two counts.
pub const BODY_HEADER_LENGTH: usize = 8;

impl Blob {
    /// Bytes this blob takes in an encoded body.
    pub fn encoded_length(&self) -> usize {
        let shared = if self.shared_blob_id.is_some() { 8 } else { 0 };
        let unused = self.unused.as_ref().map_or(0, Vec::len);
        1 + 8 + 4 + shared + 2 + 4 * self.csums.len() + unused
    }

    /// Checksum chunk size in bytes.
    pub fn csum_chunk(&self) -> u32 {
        1 << self.csum_chunk_order
    }

    /// Number of checksum chunks.
    pub fn chunk_count(&self) -> usize {
        (self.length >> self.csum_chunk_order) as usize
    }

    /// Whether chunk `index` was never written since allocation.
    pub fn chunk_unused(&self, index: u64) -> bool {
        let bits = self.unused.as_deref().unwrap_or_default();
        bits.get((index / 8) as usize)
            .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }
}

/// A logical range of the object mapped into a blob of the same extent map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset within the object.
    pub logical_offset: u64,
    /// Bytes mapped.
    pub length: u32,
    /// Index of the blob in the extent map's blob list.
    pub blob: u32,
    /// Offset of the first mapped byte within the blob.
    pub blob_offset: u32,
}

impl Extent {
    /// One past the last logical byte.
    pub fn logical_end(&self) -> u64 {
        self.logical_offset + u64::from(self.length)
    }
}

/// Blobs and the extents that map into them: an inline extent map or one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentMapBody {
    /// Blobs referenced by `extents`.
    pub blobs: Vec<Blob>,
    /// Extents sorted by logical offset, disjoint.
    pub extents: Vec<Extent>,
}

/// Where a sharded extent map keeps a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    /// First logical offset the shard covers (up to the next shard's offset).
    pub logical_offset: u64,
    /// Encoded size of the shard record when last written (guides resharding).
    pub encoded_length: u32,
}

/// How the extent map of an onode is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentMapLayout {
    /// The whole map is inside the onode.
    Inline(ExtentMapBody),
    /// The map is split into shard records; the onode lists them.
    Sharded(Vec<ShardInfo>),
}

impl Default for ExtentMapLayout {
    fn default() -> Self {
        ExtentMapLayout::Inline(ExtentMapBody::default())
    }
}

/// One object's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnodeRecord {
    /// Object id, unique in the store, never reused; keys omap and extent shards.
    pub nid: u64,
    /// Logical size in bytes.
    pub size: u64,
    /// `ONODE_FLAG_*` bits.
    pub flags: u32,
    /// Allocation hint.
    pub alloc_hint: AllocHint,
    /// Extended attributes, inline.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The extent map, inline or sharded.
    pub extent_map: ExtentMapLayout,
}

impl OnodeRecord {
    /// Encodes the onode into its enveloped KV value.
    pub fn encode(&self) -> Vec<u8> {
        let header = OnodeHeader {
            nid: self.nid,
            size: self.size,
            flags: self.flags,
            alloc_hint: self.alloc_hint,
            xattrs: &self.xattrs,
        };
        let layout = match &self.extent_map {
            ExtentMapLayout::Inline(body) => LayoutView::Inline(BodyView::of(body)),
            ExtentMapLayout::Sharded(shards) => LayoutView::Sharded(shards),
        };
        encode_onode(&header, &layout)
    }

    /// Decodes an enveloped onode value.
    pub fn decode(bytes: &[u8]) -> Result<OnodeRecord, DecodeError> {
        let payload = envelope::open("onode", ONODE_STRUCT_VERSION, bytes)?;
        let mut d = Decoder::new("onode", payload.bytes);
        let nid = d.u64("nid")?;
        let size = d.u64("size")?;
        if size > OBJECT_SIZE_MAX {
            return Err(d.error(format!("size {size} exceeds {OBJECT_SIZE_MAX}")));
        }
        let flags = d.u32("flags")?;
        let alloc_hint = AllocHint {
            expected_object_size: d.u64("expected_object_size")?,
            expected_write_size: d.u64("expected_write_size")?,
            flags: d.u32("alloc_hint_flags")?,
        };
        let xattrs = decode_xattrs(&mut d)?;
        let extent_map = match d.u8("extent_map_layout")? {
            EXTENT_MAP_INLINE => ExtentMapLayout::Inline(decode_body(&mut d)?),
            EXTENT_MAP_SHARDED => ExtentMapLayout::Sharded(decode_shard_infos(&mut d)?),
            other => return Err(d.error(format!("unknown extent map layout {other}"))),
        };
        if payload.struct_version == ONODE_STRUCT_VERSION {
            d.finish()?;
        }
        let onode = OnodeRecord {
            nid,
            size,
            flags,
            alloc_hint,
            xattrs,
            extent_map,
        };
        if let ExtentMapLayout::Inline(body) = &onode.extent_map {
            check_extents_within(body, 0, size, "onode")?;
        }
        Ok(onode)
    }
}

/// A borrowed extent-map body: blobs by reference, so encoding copies no checksums.
#[derive(Debug, Clone, Default)]
pub struct BodyView<'a> {
    /// Blobs referenced by `extents`.
    pub blobs: Vec<&'a Blob>,
    /// Extents sorted by logical offset, disjoint.
    pub extents: Vec<Extent>,
}

impl<'a> BodyView<'a> {
    /// A view of an owned body.
    pub fn of(body: &'a ExtentMapBody) -> Self {
        BodyView {
            blobs: body.blobs.iter().collect(),
            extents: body.extents.clone(),
        }
    }
}

/// A borrowed extent-map layout, for encoding an onode.
#[derive(Debug, Clone)]
pub enum LayoutView<'a> {
    /// The whole map, inline.
    Inline(BodyView<'a>),
    /// The shard list.
    Sharded(&'a [ShardInfo]),
}

/// The onode fields besides its extent map.
#[derive(Debug, Clone, Copy)]
pub struct OnodeHeader<'a> {
    /// Object id.
    pub nid: u64,
    /// Logical size.
    pub size: u64,
    /// `ONODE_FLAG_*` bits.
    pub flags: u32,
    /// Allocation hint.
    pub alloc_hint: AllocHint,
    /// Extended attributes.
    pub xattrs: &'a BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Encodes an onode from borrowed parts into its enveloped KV value.
pub fn encode_onode(header: &OnodeHeader<'_>, layout: &LayoutView<'_>) -> Vec<u8> {
    let mut e = Encoder::with_capacity(256);
    e.u64(header.nid);
    e.u64(header.size);
    e.u32(header.flags);
    e.u64(header.alloc_hint.expected_object_size);
    e.u64(header.alloc_hint.expected_write_size);
    e.u32(header.alloc_hint.flags);
    encode_xattrs(&mut e, header.xattrs);
    match layout {
        LayoutView::Inline(body) => {
            e.u8(EXTENT_MAP_INLINE);
            encode_body(&mut e, body);
        }
        LayoutView::Sharded(shards) => {
            e.u8(EXTENT_MAP_SHARDED);
            assert!(shards.len() <= SHARDS_PER_ONODE_MAX, "too many shards");
            e.u32(u32::try_from(shards.len()).expect("bounded above"));
            for shard in *shards {
                e.u64(shard.logical_offset);
                e.u32(shard.encoded_length);
            }
        }
    }
    envelope::seal(ONODE_STRUCT_VERSION, ONODE_COMPAT_VERSION, &e.finish())
}

/// Encodes one extent-map shard into its enveloped KV value.
pub fn encode_shard(body: &ExtentMapBody) -> Vec<u8> {
    encode_shard_view(&BodyView::of(body))
}

/// Encodes one extent-map shard from a borrowed body.
pub fn encode_shard_view(body: &BodyView<'_>) -> Vec<u8> {
    let mut e = Encoder::with_capacity(BODY_HEADER_LENGTH + body.extents.len() * 64);
    encode_body(&mut e, body);
    envelope::seal(SHARD_STRUCT_VERSION, SHARD_COMPAT_VERSION, &e.finish())
}

/// Decodes an enveloped extent-map shard.
pub fn decode_shard(bytes: &[u8]) -> Result<ExtentMapBody, DecodeError> {
    let payload = envelope::open("extent shard", SHARD_STRUCT_VERSION, bytes)?;
    let mut d = Decoder::new("extent shard", payload.bytes);
    let body = decode_body(&mut d)?;
    if payload.struct_version == SHARD_STRUCT_VERSION {
        d.finish()?;
    }
    Ok(body)
}

/// Checks that every extent of `body` lies in `[start, end)`.
pub fn check_extents_within(
    body: &ExtentMapBody,
    start: u64,
    end: u64,
    record: &'static str,
) -> Result<(), DecodeError> {
    for extent in &body.extents {
        if extent.logical_offset < start || extent.logical_end() > end {
            return Err(DecodeError::new(
                record,
                format!(
                    "extent {:#x}+{:#x} outside [{start:#x}, {end:#x})",
                    extent.logical_offset, extent.length
                ),
            ));
        }
    }
    Ok(())
}

fn encode_xattrs(e: &mut Encoder, xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) {
    assert!(
        xattrs.len() <= XATTRS_COUNT_MAX,
        "xattr count checked by the caller"
    );
    e.u32(u32::try_from(xattrs.len()).expect("bounded above"));
    for (name, value) in xattrs {
        assert!(name.len() <= XATTR_NAME_LENGTH_MAX && value.len() <= XATTR_VALUE_LENGTH_MAX);
        e.bytes16(name);
        e.bytes32(value);
    }
}

fn decode_xattrs(d: &mut Decoder<'_>) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, DecodeError> {
    let count = d.count32("xattr count", XATTRS_COUNT_MAX)?;
    let mut xattrs = BTreeMap::new();
    let mut bytes_total = 0usize;
    for _ in 0..count {
        let name = d.bytes16("xattr name", XATTR_NAME_LENGTH_MAX)?;
        let value = d.bytes32("xattr value", XATTR_VALUE_LENGTH_MAX)?;
        bytes_total += name.len() + value.len();
        if bytes_total > XATTRS_BYTES_MAX {
            return Err(d.error(format!("xattrs exceed {XATTRS_BYTES_MAX} bytes")));
        }
        if xattrs.insert(name.to_vec(), value.to_vec()).is_some() {
            return Err(d.error("duplicate xattr name"));
        }
    }
    Ok(xattrs)
}

fn encode_body(e: &mut Encoder, body: &BodyView<'_>) {
    assert!(body.blobs.len() <= EXTENTS_PER_MAP_MAX && body.extents.len() <= EXTENTS_PER_MAP_MAX);
    e.u32(u32::try_from(body.blobs.len()).expect("bounded above"));
    for blob in &body.blobs {
        encode_blob(e, blob);
    }
    e.u32(u32::try_from(body.extents.len()).expect("bounded above"));
    for extent in &body.extents {
        e.u64(extent.logical_offset);
        e.u32(extent.length);
        e.u32(extent.blob);
        e.u32(extent.blob_offset);
    }
}

fn encode_blob(e: &mut Encoder, blob: &Blob) {
    let mut flags = 0u8;
    if blob.shared_blob_id.is_some() {
        flags |= BLOB_FLAG_SHARED;
    }
    if blob.unused.is_some() {
        flags |= BLOB_FLAG_UNUSED;
    }
    e.u8(flags);
    e.u64(blob.device_offset);
    e.u32(blob.length);
    if let Some(sbid) = blob.shared_blob_id {
        e.u64(sbid);
    }
    e.u8(blob.csum_type as u8);
    e.u8(blob.csum_chunk_order);
    assert_eq!(
        blob.csums.len(),
        if blob.csum_type == CsumType::None {
            0
        } else {
            blob.chunk_count()
        },
        "checksum count must match the blob's chunks"
    );
    e.u32s(&blob.csums);
    if let Some(unused) = &blob.unused {
        assert_eq!(unused.len(), blob.chunk_count().div_ceil(8));
        e.raw(unused);
    }
}

fn decode_body(d: &mut Decoder<'_>) -> Result<ExtentMapBody, DecodeError> {
    let blob_count = d.count32("blob count", EXTENTS_PER_MAP_MAX)?;
    let mut blobs = Vec::with_capacity(blob_count);
    for _ in 0..blob_count {
        blobs.push(decode_blob(d)?);
    }
    let extent_count = d.count32("extent count", EXTENTS_PER_MAP_MAX)?;
    let mut extents = Vec::with_capacity(extent_count);
    let mut previous_end = 0u64;
    for index in 0..extent_count {
        let extent = Extent {
            logical_offset: d.u64("extent logical_offset")?,
            length: d.u32("extent length")?,
            blob: d.u32("extent blob")?,
            blob_offset: d.u32("extent blob_offset")?,
        };
        check_extent(d, &extent, &blobs, index, previous_end)?;
        previous_end = extent.logical_end();
        extents.push(extent);
    }
    Ok(ExtentMapBody { blobs, extents })
}

fn check_extent(
    d: &Decoder<'_>,
    extent: &Extent,
    blobs: &[Blob],
    index: usize,
    previous_end: u64,
) -> Result<(), DecodeError> {
    if extent.length == 0 {
        return Err(d.error(format!("extent {index} is empty")));
    }
    if index > 0 && extent.logical_offset < previous_end {
        return Err(d.error(format!(
            "extent {index} overlaps or precedes its predecessor"
        )));
    }
    if extent.logical_offset > OBJECT_SIZE_MAX - u64::from(extent.length) {
        return Err(d.error(format!("extent {index} ends past the maximum object size")));
    }
    let Some(blob) = blobs.get(extent.blob as usize) else {
        return Err(d.error(format!(
            "extent {index} references missing blob {}",
            extent.blob
        )));
    };
    let blob_end = u64::from(extent.blob_offset) + u64::from(extent.length);
    if blob_end > u64::from(blob.length) {
        return Err(d.error(format!("extent {index} runs past the end of its blob")));
    }
    Ok(())
}

fn decode_blob(d: &mut Decoder<'_>) -> Result<Blob, DecodeError> {
    let flags = d.u8("blob flags")?;
    if flags & !BLOB_FLAGS_KNOWN != 0 {
        return Err(d.error(format!("unknown blob flags {flags:#x}")));
    }
    let device_offset = d.u64("blob device_offset")?;
    let length = d.u32("blob length")?;
    let shared_blob_id = if flags & BLOB_FLAG_SHARED != 0 {
        Some(d.u64("blob shared_blob_id")?)
    } else {
        None
    };
    let csum_type = CsumType::decode(d.u8("blob csum_type")?, d)?;
    let csum_chunk_order = d.u8("blob csum_chunk_order")?;
    check_blob_geometry(d, device_offset, length, csum_chunk_order)?;
    let chunk_count = (length >> csum_chunk_order) as usize;
    let csums = match csum_type {
        CsumType::None => Vec::new(),
        CsumType::Crc32c => (0..chunk_count)
            .map(|_| d.u32("blob csum"))
            .collect::<Result<_, _>>()?,
    };
    let unused = if flags & BLOB_FLAG_UNUSED != 0 {
        Some(
            d.raw(chunk_count.div_ceil(8), "blob unused bitmap")?
                .to_vec(),
        )
    } else {
        None
    };
    Ok(Blob {
        device_offset,
        length,
        shared_blob_id,
        csum_type,
        csum_chunk_order,
        csums,
        unused,
    })
}

fn check_blob_geometry(
    d: &Decoder<'_>,
    device_offset: u64,
    length: u32,
    csum_chunk_order: u8,
) -> Result<(), DecodeError> {
    if !(CSUM_CHUNK_ORDER_MIN..=CSUM_CHUNK_ORDER_MAX).contains(&csum_chunk_order) {
        return Err(d.error(format!("csum chunk order {csum_chunk_order} out of range")));
    }
    let chunk = 1u32 << csum_chunk_order;
    if length == 0 || length > BLOB_LENGTH_MAX || !length.is_multiple_of(chunk) {
        return Err(d.error(format!(
            "blob length {length:#x} invalid for chunk {chunk:#x}"
        )));
    }
    if device_offset.checked_add(u64::from(length)).is_none() {
        return Err(d.error("blob device range overflows"));
    }
    Ok(())
}

fn decode_shard_infos(d: &mut Decoder<'_>) -> Result<Vec<ShardInfo>, DecodeError> {
    let count = d.count32("shard count", SHARDS_PER_ONODE_MAX)?;
    let mut shards: Vec<ShardInfo> = Vec::with_capacity(count);
    for index in 0..count {
        let shard = ShardInfo {
            logical_offset: d.u64("shard logical_offset")?,
            encoded_length: d.u32("shard encoded_length")?,
        };
        let ordered = match shards.last() {
            Some(previous) => previous.logical_offset < shard.logical_offset,
            None => shard.logical_offset == 0,
        };
        if !ordered {
            return Err(d.error(format!("shard {index} out of order")));
        }
        shards.push(shard);
    }
    if shards.is_empty() {
        return Err(d.error("sharded extent map without shards"));
    }
    Ok(shards)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_body() -> ExtentMapBody {
        ExtentMapBody {
            blobs: vec![
                Blob {
                    device_offset: 0x10_0000,
                    length: 0x2000,
                    shared_blob_id: None,
                    csum_type: CsumType::Crc32c,
                    csum_chunk_order: 12,
                    csums: vec![0xdead_beef, 0x1234_5678],
                    unused: None,
                },
                Blob {
                    device_offset: 0x20_0000,
                    length: 0x10000,
                    shared_blob_id: Some(7),
                    csum_type: CsumType::Crc32c,
                    csum_chunk_order: 12,
                    csums: (0..16).collect(),
                    unused: Some(vec![0xf0, 0xff]),
                },
            ],
            extents: vec![
                Extent {
                    logical_offset: 0,
                    length: 0x1800,
                    blob: 0,
                    blob_offset: 0x800,
                },
                Extent {
                    logical_offset: 0x4000,
                    length: 0x4000,
                    blob: 1,
                    blob_offset: 0,
                },
            ],
        }
    }

    pub(crate) fn sample_onode() -> OnodeRecord {
        OnodeRecord {
            nid: 42,
            size: 0x8000,
            flags: ONODE_FLAG_OMAP,
            alloc_hint: AllocHint {
                expected_object_size: 4 << 20,
                expected_write_size: 4096,
                flags: 2,
            },
            xattrs: BTreeMap::from([(b"_".to_vec(), b"object info".to_vec())]),
            extent_map: ExtentMapLayout::Inline(sample_body()),
        }
    }

    #[test]
    fn onode_round_trip_inline_and_sharded() {
        let onode = sample_onode();
        assert_eq!(OnodeRecord::decode(&onode.encode()).unwrap(), onode);
        let sharded = OnodeRecord {
            extent_map: ExtentMapLayout::Sharded(vec![
                ShardInfo {
                    logical_offset: 0,
                    encoded_length: 300,
                },
                ShardInfo {
                    logical_offset: 1 << 20,
                    encoded_length: 200,
                },
            ]),
            ..sample_onode()
        };
        assert_eq!(OnodeRecord::decode(&sharded.encode()).unwrap(), sharded);
    }

    #[test]
    fn encoded_lengths_match_the_encoder() {
        let body = sample_body();
        let mut e = Encoder::new();
        encode_body(&mut e, &BodyView::of(&body));
        let predicted: usize = BODY_HEADER_LENGTH
            + body.blobs.iter().map(Blob::encoded_length).sum::<usize>()
            + body.extents.len() * EXTENT_ENCODED_LENGTH;
        assert_eq!(e.len(), predicted);
    }

    #[test]
    fn shard_round_trip() {
        let body = sample_body();
        assert_eq!(decode_shard(&encode_shard(&body)).unwrap(), body);
    }

    #[test]
    fn overlapping_extents_are_corruption() {
        let mut body = sample_body();
        body.extents[1].logical_offset = 0x1000;
        assert!(decode_shard(&encode_shard(&body)).is_err());
    }

    #[test]
    fn extent_past_its_blob_is_corruption() {
        let mut body = sample_body();
        body.extents[0].blob_offset = 0x1000;
        assert!(decode_shard(&encode_shard(&body)).is_err());
    }

    #[test]
    fn extent_past_object_size_is_corruption() {
        let mut onode = sample_onode();
        onode.size = 0x1000;
        assert!(OnodeRecord::decode(&onode.encode()).is_err());
    }
}
