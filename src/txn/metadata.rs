//! Object metadata ops: inline xattrs (bounded, rewritten with the onode) and omap (its own key
//! space, keyed by the object's nid, changed without reading it).

use super::ObjectOp;
use super::engine::display_bytes;
use crate::error::{Error, Result};
use crate::format::keys::{self, KeySpace};
use crate::format::onode::ONODE_FLAG_OMAP;
use crate::format::{
    OMAP_KEY_LENGTH_MAX, OMAP_VALUE_LENGTH_MAX, XATTR_NAME_LENGTH_MAX, XATTR_VALUE_LENGTH_MAX,
    XATTRS_BYTES_MAX, XATTRS_COUNT_MAX,
};
use crate::kv::Batch;
use crate::onode::Onode;

/// Sets xattrs, failing (and changing nothing) if the object would exceed the inline limits.
pub fn set_attrs(onode: &mut Onode, attrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    let mut updated = onode.xattrs.clone();
    for (name, value) in attrs {
        updated.insert(name.clone(), value.clone());
    }
    let bytes: usize = updated.iter().map(|(k, v)| k.len() + v.len()).sum();
    if updated.len() > XATTRS_COUNT_MAX || bytes > XATTRS_BYTES_MAX {
        return Err(Error::invalid(format!(
            "xattrs would reach {} entries and {bytes} bytes; the limits are {XATTRS_COUNT_MAX} \
             entries and {XATTRS_BYTES_MAX} bytes per object",
            updated.len()
        )));
    }
    onode.xattrs = updated;
    Ok(())
}

/// Applies an omap op to the batch, and sets the object's omap flag when it gains entries.
pub fn apply_omap(batch: &mut Batch, onode: &mut Onode, op: &ObjectOp) -> Result<()> {
    let nid = onode.nid;
    match op {
        ObjectOp::OmapSetKeys { pairs } => {
            for (key, value) in pairs {
                batch.put(
                    KeySpace::Omap,
                    keys::omap_value_key(nid, key),
                    value.clone(),
                );
            }
            onode.flags |= ONODE_FLAG_OMAP;
        }
        ObjectOp::OmapRmKeys { keys: doomed } => {
            for key in doomed {
                batch.delete(KeySpace::Omap, keys::omap_value_key(nid, key));
            }
        }
        ObjectOp::OmapRmKeyRange { first, last } => {
            batch.delete_range(
                KeySpace::Omap,
                keys::omap_value_key(nid, first),
                keys::omap_value_key(nid, last),
            );
        }
        ObjectOp::OmapClear => {
            let (start, end) = keys::omap_object_range(nid);
            batch.delete_range(KeySpace::Omap, start, end);
            onode.flags &= !ONODE_FLAG_OMAP;
        }
        ObjectOp::OmapSetHeader { header } => {
            batch.put(KeySpace::Omap, keys::omap_header_key(nid), header.clone());
            onode.flags |= ONODE_FLAG_OMAP;
        }
        other => unreachable!("not an omap op: {other:?}"),
    }
    Ok(())
}

/// Checks the arguments of an object op before anything is touched.
pub fn validate(op: &ObjectOp) -> Result<()> {
    match op {
        ObjectOp::SetAttrs { attrs } => attrs
            .iter()
            .try_for_each(|(name, value)| check_attr(name, value)),
        ObjectOp::RmAttr { name } => check_length("xattr name", name, XATTR_NAME_LENGTH_MAX),
        ObjectOp::OmapSetKeys { pairs } => pairs.iter().try_for_each(|(key, value)| {
            check_length("omap key", key, OMAP_KEY_LENGTH_MAX)?;
            check_length("omap value", value, OMAP_VALUE_LENGTH_MAX)
        }),
        ObjectOp::OmapRmKeys { keys } => keys
            .iter()
            .try_for_each(|key| check_length("omap key", key, OMAP_KEY_LENGTH_MAX)),
        ObjectOp::OmapRmKeyRange { first, last } => {
            check_length("omap key", first, OMAP_KEY_LENGTH_MAX)?;
            check_length("omap key", last, OMAP_KEY_LENGTH_MAX)?;
            if first > last {
                return Err(Error::invalid(format!(
                    "omap key range starts at {} after its end {}",
                    display_bytes(first),
                    display_bytes(last)
                )));
            }
            Ok(())
        }
        ObjectOp::OmapSetHeader { header } => {
            check_length("omap header", header, OMAP_VALUE_LENGTH_MAX)
        }
        ObjectOp::Touch
        | ObjectOp::Write { .. }
        | ObjectOp::Zero { .. }
        | ObjectOp::Truncate { .. }
        | ObjectOp::Remove
        | ObjectOp::RmAttrs
        | ObjectOp::OmapClear
        | ObjectOp::Rename { .. }
        | ObjectOp::MoveTo { .. }
        | ObjectOp::TryRename { .. }
        | ObjectOp::Clone { .. }
        | ObjectOp::CloneRange { .. }
        | ObjectOp::SetAllocHint(_) => Ok(()),
    }
}

fn check_attr(name: &[u8], value: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("xattr name is empty"));
    }
    check_length("xattr name", name, XATTR_NAME_LENGTH_MAX)?;
    check_length("xattr value", value, XATTR_VALUE_LENGTH_MAX)
}

fn check_length(what: &str, bytes: &[u8], length_max: usize) -> Result<()> {
    if bytes.len() > length_max {
        return Err(Error::invalid(format!(
            "{what} of {} bytes exceeds the limit of {length_max}",
            bytes.len()
        )));
    }
    Ok(())
}
