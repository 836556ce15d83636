//! Transactions: the ops a client submits, how they are prepared, and how they commit.
//!
//! A [`Transaction`] is a list of ops applied all-or-nothing. Submitting one prepares it against
//! working copies of the objects it touches ([`context`]), turning each write into a plan and
//! its execution ([`write`]) and each attribute or omap change into KV updates ([`metadata`]);
//! if any op fails, nothing changes. A prepared transaction becomes visible at once and durable
//! through the commit [`pipeline`], whose states are in [`state`].

pub mod background;
pub mod clone;
pub mod context;
pub mod deferred;
pub mod engine;
pub mod inflight;
pub mod metadata;
pub mod pipeline;
pub mod reclaim;
pub mod segments;
pub mod state;
pub mod submit;
pub mod write;

pub use engine::{Collection, Engine, EngineConfig};

use std::sync::Arc;

use crate::device::{AlignedBuf, DataBuf};
use crate::format::onode::AllocHint;

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Create a collection (error if it exists).
    CreateCollection {
        /// Collection name.
        collection: Vec<u8>,
    },
    /// Remove an empty collection.
    RemoveCollection {
        /// Collection name.
        collection: Vec<u8>,
    },
    /// Give a collection a new name, with every object in it (metadata only: one key moves).
    /// Fails with `AlreadyExists` if the new name is taken. An import builds a collection under
    /// a hidden name and renames it into place, so it appears whole or not at all.
    RenameCollection {
        /// Collection name.
        collection: Vec<u8>,
        /// Its new name.
        new_name: Vec<u8>,
    },
    /// Move the objects of `collection` whose hash ends in `rem` (its low `bits` bits) into
    /// `into`, which must exist (Ceph's `split_collection`, for a PG split). Metadata only:
    /// each moved object's onode key changes; its data, xattrs and omap stay where they are.
    SplitCollection {
        /// The collection split.
        collection: Vec<u8>,
        /// Where the selected objects go.
        into: Vec<u8>,
        /// How many low bits of the hash select (0 to 32; 0 selects every object).
        bits: u32,
        /// The value those bits must have.
        rem: u32,
        /// Which hash of an object's name.
        hash: ObjectHash,
    },
    /// Move every object of `collection` into `into` and remove `collection` (Ceph's
    /// `merge_collection`, for a PG merge). Metadata only, like a split. Fails with
    /// `AlreadyExists` if a name is in both.
    MergeCollection {
        /// The collection merged away.
        collection: Vec<u8>,
        /// The collection that receives its objects.
        into: Vec<u8>,
    },
    /// An operation on one object of a collection.
    Object {
        /// Collection name.
        collection: Vec<u8>,
        /// Object name.
        object: Vec<u8>,
        /// What to do.
        op: ObjectOp,
    },
}

/// An operation on one object. `Touch`, `Write` and `Zero` create a missing object; the others
/// fail with `NotFound` when it does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectOp {
    /// Create the object if missing.
    Touch,
    /// Write bytes at an offset (extends the object).
    Write {
        /// Offset within the object.
        offset: u64,
        /// Bytes to write: an aligned buffer is handed to the device without a copy when the
        /// write is whole allocation units of new space (see [`Transaction::write_aligned`]).
        data: DataBuf,
    },
    /// Make a range read as zeros, freeing its space (extends the object; no data I/O).
    Zero {
        /// Offset within the object.
        offset: u64,
        /// Bytes.
        length: u64,
    },
    /// Set the size, discarding data past it.
    Truncate {
        /// New size.
        size: u64,
    },
    /// Remove the object with its data, xattrs and omap.
    Remove,
    /// Set extended attributes (replacing values of existing names).
    SetAttrs {
        /// Names and values.
        attrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Remove one extended attribute (no error if absent).
    RmAttr {
        /// Name.
        name: Vec<u8>,
    },
    /// Remove every extended attribute.
    RmAttrs,
    /// Set omap keys.
    OmapSetKeys {
        /// Keys and values.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Remove omap keys (absent keys are ignored).
    OmapRmKeys {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Remove the omap keys in `[first, last)`.
    OmapRmKeyRange {
        /// First key removed.
        first: Vec<u8>,
        /// First key kept.
        last: Vec<u8>,
    },
    /// Remove the omap header and every omap key.
    OmapClear,
    /// Set the omap header.
    OmapSetHeader {
        /// Header bytes.
        header: Vec<u8>,
    },
    /// Rename the object within its collection; fails with `AlreadyExists` if the new name is
    /// taken. Data, xattrs and omap move with it.
    Rename {
        /// New object name.
        new_name: Vec<u8>,
    },
    /// Rename the object if it exists, and do nothing if it does not (Ceph's `try_rename`);
    /// fails with `AlreadyExists` if it exists and the new name is taken.
    TryRename {
        /// New object name.
        new_name: Vec<u8>,
    },
    /// Move the object to `name` in `collection`, which may be another collection (Ceph's
    /// `collection_move_rename`); fails with `AlreadyExists` if that name is taken there.
    /// Data, xattrs and omap move with it; nothing is copied.
    MoveTo {
        /// The collection it moves to.
        collection: Vec<u8>,
        /// Its name there.
        name: Vec<u8>,
    },
    /// Record the expected object size, write size and access flags.
    SetAllocHint(AllocHint),
    /// Make `target` (in the same collection) a copy of this object: data, size, xattrs and
    /// omap. An existing target is replaced. Data is shared copy-on-write, not copied.
    Clone {
        /// The copy's name.
        target: Vec<u8>,
    },
    /// Copy `length` bytes at `offset` of this object to `target_offset` of `target` (created if
    /// missing, extended if shorter), sharing the data copy-on-write.
    CloneRange {
        /// First byte copied.
        offset: u64,
        /// Bytes copied.
        length: u64,
        /// The object copied into.
        target: Vec<u8>,
        /// Where the bytes land in the target.
        target_offset: u64,
    },
}

impl ObjectOp {
    /// True for ops that create a missing object.
    pub fn creates(&self) -> bool {
        matches!(
            self,
            ObjectOp::Touch | ObjectOp::Write { .. } | ObjectOp::Zero { .. }
        )
    }
}

impl Op {
    /// The collection the op works in.
    pub fn collection(&self) -> &[u8] {
        match self {
            Op::CreateCollection { collection }
            | Op::RemoveCollection { collection }
            | Op::RenameCollection { collection, .. }
            | Op::SplitCollection { collection, .. }
            | Op::MergeCollection { collection, .. }
            | Op::Object { collection, .. } => collection,
        }
    }

    /// Every collection the op names: its own, and a rename's new name or a move's target.
    pub fn collections(&self) -> impl Iterator<Item = &[u8]> {
        let new_name = match self {
            Op::RenameCollection { new_name, .. } => Some(new_name.as_slice()),
            Op::SplitCollection { into, .. } | Op::MergeCollection { into, .. } => {
                Some(into.as_slice())
            }
            Op::Object {
                op: ObjectOp::MoveTo { collection, .. },
                ..
            } => Some(collection.as_slice()),
            _ => None,
        };
        std::iter::once(self.collection()).chain(new_name)
    }

    /// The name a collection gets from this op: a create's, or a rename's new name.
    pub fn new_collection_name(&self) -> Option<&[u8]> {
        match self {
            Op::CreateCollection { collection } => Some(collection),
            Op::RenameCollection { new_name, .. } => Some(new_name),
            _ => None,
        }
    }

    /// True for ops that add or remove collections (they need the namespace exclusively).
    pub fn changes_namespace(&self) -> bool {
        matches!(
            self,
            Op::CreateCollection { .. }
                | Op::RemoveCollection { .. }
                | Op::RenameCollection { .. }
                | Op::MergeCollection { .. }
        )
    }
}

/// The hash of an object's name that a collection split selects by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ObjectHash {
    /// crc32c (Castagnoli) of the whole name: for names that carry no hash of their own.
    #[default]
    Crc32c,
    /// Four bytes of the name at `offset`, big-endian (bytes past the name's end count as
    /// zeros): for a daemon that places objects by a hash of its own and writes it into each
    /// name. `bit_reversed` when the name holds the hash with its bits reversed, as Ceph's keys
    /// do so that the objects of one placement group sort together.
    InName {
        /// Where the hash starts in the name.
        offset: usize,
        /// Whether the name holds the hash bit-reversed.
        bit_reversed: bool,
    },
}

impl ObjectHash {
    /// The hash of `name`.
    pub fn of(self, name: &[u8]) -> u32 {
        match self {
            ObjectHash::Crc32c => crc32c::crc32c(name),
            ObjectHash::InName {
                offset,
                bit_reversed,
            } => {
                let mut held = [0u8; 4];
                let bytes = name.get(offset..).unwrap_or_default();
                let n = bytes.len().min(4);
                held[..n].copy_from_slice(&bytes[..n]);
                let hash = u32::from_be_bytes(held);
                if bit_reversed {
                    hash.reverse_bits()
                } else {
                    hash
                }
            }
        }
    }

    /// Whether `name`'s hash ends in `rem` (its low `bits` bits; `bits` at most 32).
    pub fn selects(self, name: &[u8], bits: u32, rem: u32) -> bool {
        let mask = if bits >= 32 { u32::MAX } else { (1u32 << bits) - 1 };
        self.of(name) & mask == rem & mask
    }
}

/// Ops applied atomically, in order.
///
/// Builder methods take names as anything byte-like (`&str`, `&[u8]`, `Vec<u8>`).
///
/// A transaction that cannot be applied fails whole, with the first error found in this order:
/// argument checks of every op (`InvalidArgument`); then, unless the transaction creates or
/// removes collections, the existence of every collection it names (`NotFound`); then each op in
/// turn (`NotFound`, `AlreadyExists`, `NotEmpty`, `TooBig`, `NoSpace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    ops: Vec<Op>,
    /// The store's own (an import): may name its hidden collections.
    internal: bool,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Transaction::default()
    }

    /// A transaction of the store's own, which may name hidden collections.
    pub(crate) fn internal(mut self) -> Self {
        self.internal = true;
        self
    }

    /// Whether the store made it for itself.
    pub(crate) fn is_internal(&self) -> bool {
        self.internal
    }

    /// The ops, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends every op of `other`, after this transaction's own (Ceph's
    /// `Transaction::append`): one transaction doing both, in order, all or nothing.
    pub fn append(&mut self, other: Transaction) -> &mut Self {
        self.ops.extend(other.ops);
        self.internal |= other.internal;
        self
    }

    /// Appends an op.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    fn object(&mut self, collection: &[u8], object: &[u8], op: ObjectOp) -> &mut Self {
        self.push(Op::Object {
            collection: collection.to_vec(),
            object: object.to_vec(),
            op,
        })
    }

    /// Creates a collection; fails with `AlreadyExists` if it exists.
    pub fn create_collection(&mut self, collection: impl AsRef<[u8]>) -> &mut Self {
        self.push(Op::CreateCollection {
            collection: collection.as_ref().to_vec(),
        })
    }

    /// Removes a collection; fails with `NotEmpty` while it holds objects.
    pub fn remove_collection(&mut self, collection: impl AsRef<[u8]>) -> &mut Self {
        self.push(Op::RemoveCollection {
            collection: collection.as_ref().to_vec(),
        })
    }

    /// Renames a collection with everything in it; fails with `AlreadyExists` if `new_name`
    /// is taken. Objects of the collection may not be changed earlier in the same transaction.
    pub fn rename_collection(
        &mut self,
        collection: impl AsRef<[u8]>,
        new_name: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.push(Op::RenameCollection {
            collection: collection.as_ref().to_vec(),
            new_name: new_name.as_ref().to_vec(),
        })
    }

    /// Moves the objects of `collection` whose `hash` ends in `rem` (its low `bits` bits) into
    /// `into` (Ceph's `split_collection`). `into` must exist, or be created earlier in the
    /// transaction; a name already there fails the transaction with `AlreadyExists`.
    pub fn split_collection(
        &mut self,
        collection: impl AsRef<[u8]>,
        into: impl AsRef<[u8]>,
        bits: u32,
        rem: u32,
        hash: ObjectHash,
    ) -> &mut Self {
        self.push(Op::SplitCollection {
            collection: collection.as_ref().to_vec(),
            into: into.as_ref().to_vec(),
            bits,
            rem,
            hash,
        })
    }

    /// Moves every object of `collection` into `into` and removes `collection` (Ceph's
    /// `merge_collection`); a name in both fails the transaction with `AlreadyExists`.
    pub fn merge_collection(
        &mut self,
        collection: impl AsRef<[u8]>,
        into: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.push(Op::MergeCollection {
            collection: collection.as_ref().to_vec(),
            into: into.as_ref().to_vec(),
        })
    }

    /// Creates the object if it does not exist.
    pub fn touch(&mut self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> &mut Self {
        self.object(collection.as_ref(), object.as_ref(), ObjectOp::Touch)
    }

    /// Writes `data` at `offset`, creating the object if it does not exist.
    pub fn write(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let data = DataBuf::Vec(data.into());
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::Write { offset, data },
        )
    }

    /// Writes `buf` at `offset` as [`Transaction::write`] does, sharing the buffer instead of
    /// copying it: where the write lands in new space as whole allocation units (a large
    /// write at an aligned offset), the device writes this very buffer. Other writes copy from
    /// it as from any bytes.
    pub fn write_aligned(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        buf: impl Into<Arc<AlignedBuf>>,
    ) -> &mut Self {
        let data = DataBuf::Aligned(buf.into());
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::Write { offset, data },
        )
    }

    /// Makes `[offset, offset + length)` read as zeros (punching holes; no data is written).
    pub fn zero(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        length: u64,
    ) -> &mut Self {
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::Zero { offset, length },
        )
    }

    /// Sets the object's size; data past it is discarded, a larger size reads as zeros.
    pub fn truncate(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        size: u64,
    ) -> &mut Self {
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::Truncate { size },
        )
    }

    /// Removes the object.
    pub fn remove(&mut self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> &mut Self {
        self.object(collection.as_ref(), object.as_ref(), ObjectOp::Remove)
    }

    /// Sets one extended attribute.
    pub fn setattr(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        name: impl AsRef<[u8]>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let attrs = vec![(name.as_ref().to_vec(), value.into())];
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::SetAttrs { attrs },
        )
    }

    /// Sets several extended attributes.
    pub fn setattrs(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        attrs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> &mut Self {
        let attrs = attrs.into_iter().collect();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::SetAttrs { attrs },
        )
    }

    /// Removes one extended attribute.
    pub fn rmattr(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        name: impl AsRef<[u8]>,
    ) -> &mut Self {
        let name = name.as_ref().to_vec();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::RmAttr { name },
        )
    }

    /// Removes every extended attribute.
    pub fn rmattrs(&mut self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> &mut Self {
        self.object(collection.as_ref(), object.as_ref(), ObjectOp::RmAttrs)
    }

    /// Sets omap keys.
    pub fn omap_setkeys(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> &mut Self {
        let pairs = pairs.into_iter().collect();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::OmapSetKeys { pairs },
        )
    }

    /// Removes omap keys.
    pub fn omap_rmkeys(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        keys: impl IntoIterator<Item = Vec<u8>>,
    ) -> &mut Self {
        let keys = keys.into_iter().collect();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::OmapRmKeys { keys },
        )
    }

    /// Removes the omap keys in `[first, last)`.
    pub fn omap_rmkeyrange(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        first: impl AsRef<[u8]>,
        last: impl AsRef<[u8]>,
    ) -> &mut Self {
        let op = ObjectOp::OmapRmKeyRange {
            first: first.as_ref().to_vec(),
            last: last.as_ref().to_vec(),
        };
        self.object(collection.as_ref(), object.as_ref(), op)
    }

    /// Removes the omap header and every omap key.
    pub fn omap_clear(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.object(collection.as_ref(), object.as_ref(), ObjectOp::OmapClear)
    }

    /// Sets the omap header.
    pub fn omap_setheader(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        header: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let header = header.into();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::OmapSetHeader { header },
        )
    }

    /// Renames an object within its collection (`move_rename`); the new name must be free.
    pub fn rename(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        new_name: impl AsRef<[u8]>,
    ) -> &mut Self {
        let new_name = new_name.as_ref().to_vec();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::Rename { new_name },
        )
    }

    /// Renames an object within its collection if it exists; a missing object is no error
    /// (Ceph's `try_rename`, which the OSD uses for PG-log objects that may not exist yet).
    pub fn try_rename(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        new_name: impl AsRef<[u8]>,
    ) -> &mut Self {
        let new_name = new_name.as_ref().to_vec();
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::TryRename { new_name },
        )
    }

    /// Moves `object` of `collection` to `new_name` in `new_collection` (Ceph's
    /// `collection_move_rename`, which the OSD uses for every PG-log and temporary object): a
    /// change of metadata only. The new name must be free there.
    pub fn move_rename(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        new_collection: impl AsRef<[u8]>,
        new_name: impl AsRef<[u8]>,
    ) -> &mut Self {
        let op = ObjectOp::MoveTo {
            collection: new_collection.as_ref().to_vec(),
            name: new_name.as_ref().to_vec(),
        };
        self.object(collection.as_ref(), object.as_ref(), op)
    }

    /// Makes `target` a copy of `source` (data shared copy-on-write, xattrs, omap); an
    /// existing `target` is replaced.
    pub fn clone_object(
        &mut self,
        collection: impl AsRef<[u8]>,
        source: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> &mut Self {
        let target = target.as_ref().to_vec();
        self.object(
            collection.as_ref(),
            source.as_ref(),
            ObjectOp::Clone { target },
        )
    }

    /// Copies `length` bytes at `offset` of `source` to `target_offset` of `target`, sharing
    /// the data copy-on-write; `target` is created if missing.
    #[allow(clippy::too_many_arguments)]
    pub fn clone_range(
        &mut self,
        collection: impl AsRef<[u8]>,
        source: impl AsRef<[u8]>,
        offset: u64,
        length: u64,
        target: impl AsRef<[u8]>,
        target_offset: u64,
    ) -> &mut Self {
        let target = target.as_ref().to_vec();
        self.object(
            collection.as_ref(),
            source.as_ref(),
            ObjectOp::CloneRange {
                offset,
                length,
                target,
                target_offset,
            },
        )
    }

    /// Records the object's allocation hint.
    pub fn set_alloc_hint(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        hint: AllocHint,
    ) -> &mut Self {
        self.object(
            collection.as_ref(),
            object.as_ref(),
            ObjectOp::SetAllocHint(hint),
        )
    }
}
