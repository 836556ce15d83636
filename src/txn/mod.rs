//! Transactions: the ops a client submits, how they are prepared, and how they commit.
//!
//! A [`Transaction`] is a list of ops applied all-or-nothing. Submitting one prepares it against
//! working copies of the objects it touches ([`context`]), turning each write into a plan and
//! its execution ([`write`]); if any op fails, nothing changes. A prepared transaction becomes
//! visible at once and durable through the commit [`pipeline`], whose states are in [`state`].

pub mod context;
pub mod engine;
pub mod pipeline;
pub mod reclaim;
pub mod state;
pub mod submit;
pub mod write;

pub use engine::{Collection, Engine, EngineConfig};

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Create the object if missing.
    Touch {
        /// Collection name.
        collection: Vec<u8>,
        /// Object name.
        object: Vec<u8>,
    },
    /// Write bytes at an offset, creating the object if missing.
    Write {
        /// Collection name.
        collection: Vec<u8>,
        /// Object name.
        object: Vec<u8>,
        /// Offset within the object.
        offset: u64,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Set the object's size, discarding data past it (object must exist).
    Truncate {
        /// Collection name.
        collection: Vec<u8>,
        /// Object name.
        object: Vec<u8>,
        /// New size.
        size: u64,
    },
    /// Remove the object with its data, xattrs and omap (object must exist).
    Remove {
        /// Collection name.
        collection: Vec<u8>,
        /// Object name.
        object: Vec<u8>,
    },
}

impl Op {
    /// The collection the op works in.
    pub fn collection(&self) -> &[u8] {
        match self {
            Op::CreateCollection { collection }
            | Op::RemoveCollection { collection }
            | Op::Touch { collection, .. }
            | Op::Write { collection, .. }
            | Op::Truncate { collection, .. }
            | Op::Remove { collection, .. } => collection,
        }
    }

    /// True for ops that add or remove collections (they need the namespace exclusively).
    pub fn changes_namespace(&self) -> bool {
        matches!(
            self,
            Op::CreateCollection { .. } | Op::RemoveCollection { .. }
        )
    }
}

/// Ops applied atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    ops: Vec<Op>,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Transaction::default()
    }

    /// The ops, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
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

    /// Creates the object if it does not exist.
    pub fn touch(&mut self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> &mut Self {
        self.push(Op::Touch {
            collection: collection.as_ref().to_vec(),
            object: object.as_ref().to_vec(),
        })
    }

    /// Writes `data` at `offset`, creating the object if it does not exist.
    pub fn write(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::Write {
            collection: collection.as_ref().to_vec(),
            object: object.as_ref().to_vec(),
            offset,
            data: data.into(),
        })
    }

    /// Sets the object's size; data past it is discarded, a larger size reads as zeros.
    pub fn truncate(
        &mut self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        size: u64,
    ) -> &mut Self {
        self.push(Op::Truncate {
            collection: collection.as_ref().to_vec(),
            object: object.as_ref().to_vec(),
            size,
        })
    }

    /// Removes the object.
    pub fn remove(&mut self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> &mut Self {
        self.push(Op::Remove {
            collection: collection.as_ref().to_vec(),
            object: object.as_ref().to_vec(),
        })
    }

    fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }
}
