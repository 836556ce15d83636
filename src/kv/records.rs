//! Reading the store-wide records every opener needs: the superblock and the id counters.

use super::{KeySpace, Kv};
use crate::error::{Error, Result};
use crate::format::keys::SUPERBLOCK_KEY;
use crate::format::label::Label;
use crate::format::records::{Superblock, decode_counter};

/// Reads the superblock and checks that it belongs to the device's label.
pub fn read_superblock(kv: &dyn Kv, label: &Label) -> Result<Superblock> {
    let value = kv.get(KeySpace::Super, SUPERBLOCK_KEY)?.ok_or_else(|| {
        Error::corruption(
            "no superblock in the KV store: not a bstore database, or mkfs was interrupted",
        )
    })?;
    let superblock = Superblock::decode(&value)?;
    if superblock.store_uuid != label.store_uuid {
        return Err(Error::corruption(
            "the KV store belongs to a different store than the device (uuid mismatch)",
        ));
    }
    if superblock.device_size != label.device_size
        || superblock.min_alloc_size != label.min_alloc_size
    {
        return Err(Error::corruption(
            "superblock and label disagree on device size or allocation unit",
        ));
    }
    Ok(superblock)
}

/// Reads a counter record of the super key space.
pub fn read_counter(kv: &dyn Kv, key: &[u8]) -> Result<u64> {
    let value = kv.get(KeySpace::Super, key)?.ok_or_else(|| {
        Error::corruption(format!("counter {} missing", String::from_utf8_lossy(key)))
    })?;
    Ok(decode_counter(&value)?)
}
