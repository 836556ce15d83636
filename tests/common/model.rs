//! A reference model of the object store and a checker that compares a store with it.
//!
//! The model is plain maps and byte vectors, applying the same op semantics the store promises:
//! validation of every op first, then the ops in order, and on the first error the whole
//! transaction is rejected with nothing changed.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bstore::format::onode::AllocHint;
use bstore::format::{
    COLLECTION_NAME_LENGTH_MAX, OBJECT_NAME_LENGTH_MAX, OBJECT_SIZE_MAX, OMAP_KEY_LENGTH_MAX,
    OMAP_VALUE_LENGTH_MAX, XATTR_NAME_LENGTH_MAX, XATTR_VALUE_LENGTH_MAX, XATTRS_BYTES_MAX,
    XATTRS_COUNT_MAX,
};
use bstore::txn::{ObjectOp, Op};
use bstore::{Error, Store};

/// The kinds of error a transaction may fail with, as the model predicts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    AlreadyExists,
    NotEmpty,
    InvalidArgument,
    TooBig,
}

impl Failure {
    /// The failure an error from the store represents, if it is one the model predicts.
    pub fn of(error: &Error) -> Option<Failure> {
        match error {
            Error::NotFound(_) => Some(Failure::NotFound),
            Error::AlreadyExists(_) => Some(Failure::AlreadyExists),
            Error::NotEmpty(_) => Some(Failure::NotEmpty),
            Error::InvalidArgument(_) => Some(Failure::InvalidArgument),
            Error::TooBig { .. } => Some(Failure::TooBig),
            _ => None,
        }
    }
}

/// One object of the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelObject {
    pub data: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub omap_header: Option<Vec<u8>>,
    pub omap: BTreeMap<Vec<u8>, Vec<u8>>,
    pub alloc_hint: AllocHint,
}

/// The whole store, as the model sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub collections: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, ModelObject>>,
}

impl Model {
    /// Applies a transaction; on failure the model is unchanged.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), Failure> {
        ops.iter().try_for_each(validate)?;
        // Without collection creates or removes, every named collection must exist up front.
        if !ops.iter().any(Op::changes_namespace)
            && ops
                .iter()
                .flat_map(Op::collections)
                .any(|name| !self.collections.contains_key(name))
        {
            return Err(Failure::NotFound);
        }
        let mut next = self.clone();
        for op in ops {
            next.apply_op(op)?;
        }
        *self = next;
        Ok(())
    }

    /// Moves the objects of `from` that `select` picks into `into` (a split or merge).
    fn move_objects(
        &mut self,
        from: &[u8],
        into: &[u8],
        select: impl Fn(&[u8]) -> bool,
    ) -> Result<(), Failure> {
        if !self.collections.contains_key(from) || !self.collections.contains_key(into) {
            return Err(Failure::NotFound);
        }
        let source = self.collections.get_mut(from).expect("checked above");
        let picked: Vec<Vec<u8>> = source.keys().filter(|n| select(n)).cloned().collect();
        let moved: Vec<_> = picked
            .into_iter()
            .map(|name| {
                let object = source.remove(&name).expect("listed");
                (name, object)
            })
            .collect();
        let target = self.collections.get_mut(into).expect("checked above");
        for (name, object) in moved {
            if target.insert(name, object).is_some() {
                return Err(Failure::AlreadyExists);
            }
        }
        Ok(())
    }

    /// Object count.
    pub fn object_count(&self) -> usize {
        self.collections.values().map(BTreeMap::len).sum()
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), Failure> {
        match op {
            Op::CreateCollection { collection } => {
                if self.collections.contains_key(collection) {
                    return Err(Failure::AlreadyExists);
                }
                self.collections.insert(collection.clone(), BTreeMap::new());
                Ok(())
            }
            Op::RemoveCollection { collection } => {
                let objects = self.collections.get(collection).ok_or(Failure::NotFound)?;
                if !objects.is_empty() {
                    return Err(Failure::NotEmpty);
                }
                self.collections.remove(collection);
                Ok(())
            }
            Op::RenameCollection {
                collection,
                new_name,
            } => {
                if !self.collections.contains_key(collection) {
                    return Err(Failure::NotFound);
                }
                if collection == new_name {
                    return Ok(());
                }
                if self.collections.contains_key(new_name) {
                    return Err(Failure::AlreadyExists);
                }
                let objects = self.collections.remove(collection).expect("checked above");
                self.collections.insert(new_name.clone(), objects);
                Ok(())
            }
            Op::Object {
                collection,
                object,
                op,
            } => {
                let objects = self
                    .collections
                    .get_mut(collection)
                    .ok_or(Failure::NotFound)?;
                if !objects.contains_key(object) {
                    if !op.creates() {
                        return Err(Failure::NotFound);
                    }
                    objects.insert(object.clone(), ModelObject::default());
                }
                apply_object_op(objects, object, op)
            }
            Op::SplitCollection {
                collection,
                into,
                bits,
                rem,
                hash,
            } => self.move_objects(collection, into, |name| hash.selects(name, *bits, *rem)),
            Op::MergeCollection { collection, into } => {
                self.move_objects(collection, into, |_| true)?;
                self.collections.remove(collection);
                Ok(())
            }
            // A new op must be taught to the model before the tests can generate it.
            other => panic!("the model does not know {other:?}"),
        }
    }
}

fn apply_object_op(
    objects: &mut BTreeMap<Vec<u8>, ModelObject>,
    name: &[u8],
    op: &ObjectOp,
) -> Result<(), Failure> {
    let object = objects.get_mut(name).expect("checked by the caller");
    match op {
        ObjectOp::Touch => {}
        ObjectOp::Write { offset, data } => {
            check_end(*offset, data.len() as u64)?;
            if !data.is_empty() {
                let end = *offset as usize + data.len();
                if object.data.len() < end {
                    object.data.resize(end, 0);
                }
                object.data[*offset as usize..end].copy_from_slice(data);
            }
        }
        ObjectOp::Zero { offset, length } => {
            check_end(*offset, *length)?;
            if *length > 0 {
                let end = (*offset + *length) as usize;
                if object.data.len() < end {
                    object.data.resize(end, 0);
                }
                object.data[*offset as usize..end].fill(0);
            }
        }
        ObjectOp::Truncate { size } => {
            check_end(*size, 0)?;
            object.data.resize(*size as usize, 0);
        }
        ObjectOp::Remove => {
            objects.remove(name);
        }
        ObjectOp::SetAttrs { attrs } => {
            let mut updated = object.xattrs.clone();
            updated.extend(attrs.iter().cloned());
            let bytes: usize = updated.iter().map(|(k, v)| k.len() + v.len()).sum();
            if updated.len() > XATTRS_COUNT_MAX || bytes > XATTRS_BYTES_MAX {
                return Err(Failure::InvalidArgument);
            }
            object.xattrs = updated;
        }
        ObjectOp::RmAttr { name } => {
            object.xattrs.remove(name);
        }
        ObjectOp::RmAttrs => object.xattrs.clear(),
        ObjectOp::OmapSetKeys { pairs } => object.omap.extend(pairs.iter().cloned()),
        ObjectOp::OmapRmKeys { keys } => keys.iter().for_each(|k| {
            object.omap.remove(k);
        }),
        ObjectOp::OmapRmKeyRange { first, last } => {
            object.omap.retain(|k, _| k < first || k >= last);
        }
        ObjectOp::OmapClear => {
            object.omap.clear();
            object.omap_header = None;
        }
        ObjectOp::OmapSetHeader { header } => object.omap_header = Some(header.clone()),
        ObjectOp::Rename { new_name } => {
            if new_name.as_slice() != name {
                if objects.contains_key(new_name) {
                    return Err(Failure::AlreadyExists);
                }
                let moved = objects.remove(name).expect("exists");
                objects.insert(new_name.clone(), moved);
            }
        }
        ObjectOp::SetAllocHint(hint) => object.alloc_hint = *hint,
        ObjectOp::Clone { target } => {
            if target.as_slice() != name {
                let copy = object.clone();
                objects.insert(target.clone(), copy);
            }
        }
        ObjectOp::CloneRange {
            offset,
            length,
            target,
            target_offset,
        } => {
            check_end(*offset, *length)?;
            check_end(*target_offset, *length)?;
            let start = (*offset as usize).min(object.data.len());
            let end = (*offset as usize + *length as usize).min(object.data.len());
            let mut bytes = object.data[start..end].to_vec();
            bytes.resize(*length as usize, 0);
            let copy = objects.entry(target.clone()).or_default();
            if *length > 0 {
                let end = *target_offset as usize + bytes.len();
                if copy.data.len() < end {
                    copy.data.resize(end, 0);
                }
                copy.data[*target_offset as usize..end].copy_from_slice(&bytes);
            }
        }
        other => panic!("the model does not know {other:?}"),
    }
    Ok(())
}

fn check_end(offset: u64, length: u64) -> Result<(), Failure> {
    if offset.saturating_add(length) > OBJECT_SIZE_MAX {
        return Err(Failure::TooBig);
    }
    Ok(())
}

fn validate(op: &Op) -> Result<(), Failure> {
    let collection = op.collection();
    if collection.is_empty() || collection.len() > COLLECTION_NAME_LENGTH_MAX {
        return Err(Failure::InvalidArgument);
    }
    match op {
        Op::SplitCollection {
            collection,
            into,
            bits,
            rem,
            ..
        } => {
            let fits = *bits == 32 || (*bits < 32 && u64::from(*rem) >> bits == 0);
            let bad_into = into.is_empty() || into.len() > COLLECTION_NAME_LENGTH_MAX;
            return if bad_into || collection == into || !fits {
                Err(Failure::InvalidArgument)
            } else {
                Ok(())
            };
        }
        Op::MergeCollection { collection, into } => {
            let bad_into = into.is_empty() || into.len() > COLLECTION_NAME_LENGTH_MAX;
            return if bad_into || collection == into {
                Err(Failure::InvalidArgument)
            } else {
                Ok(())
            };
        }
        _ => {}
    }
    let Op::Object { object, op, .. } = op else {
        return Ok(());
    };
    let bad_name = |name: &[u8]| name.is_empty() || name.len() > OBJECT_NAME_LENGTH_MAX;
    let too_long = |bytes: &[u8], max: usize| bytes.len() > max;
    let invalid = bad_name(object)
        || match op {
            ObjectOp::Rename { new_name: other }
            | ObjectOp::Clone { target: other }
            | ObjectOp::CloneRange { target: other, .. } => bad_name(other),
            ObjectOp::SetAttrs { attrs } => attrs.iter().any(|(n, v)| {
                n.is_empty()
                    || too_long(n, XATTR_NAME_LENGTH_MAX)
                    || too_long(v, XATTR_VALUE_LENGTH_MAX)
            }),
            ObjectOp::RmAttr { name } => too_long(name, XATTR_NAME_LENGTH_MAX),
            ObjectOp::OmapSetKeys { pairs } => pairs.iter().any(|(k, v)| {
                too_long(k, OMAP_KEY_LENGTH_MAX) || too_long(v, OMAP_VALUE_LENGTH_MAX)
            }),
            ObjectOp::OmapRmKeys { keys } => keys.iter().any(|k| too_long(k, OMAP_KEY_LENGTH_MAX)),
            ObjectOp::OmapRmKeyRange { first, last } => {
                too_long(first, OMAP_KEY_LENGTH_MAX)
                    || too_long(last, OMAP_KEY_LENGTH_MAX)
                    || first > last
            }
            ObjectOp::OmapSetHeader { header } => too_long(header, OMAP_VALUE_LENGTH_MAX),
            _ => false,
        };
    if invalid {
        return Err(Failure::InvalidArgument);
    }
    Ok(())
}

/// Compares everything the store shows with the model; panics with a description on the
/// first difference.
pub fn check_store(store: &Store, model: &Model, context: &str) {
    let collections = store.list_collections().unwrap();
    let expected: Vec<&Vec<u8>> = model.collections.keys().collect();
    assert_eq!(
        collections.iter().collect::<Vec<_>>(),
        expected,
        "{context}: collections"
    );
    for (collection, objects) in &model.collections {
        check_listing(store, collection, objects, context);
        for (name, object) in objects {
            check_object(store, collection, name, object, context);
        }
    }
    let statfs = store.statfs().unwrap();
    assert_eq!(
        statfs.object_count,
        model.object_count() as u64,
        "{context}: statfs object count"
    );
}

fn check_listing(
    store: &Store,
    collection: &[u8],
    objects: &BTreeMap<Vec<u8>, ModelObject>,
    context: &str,
) {
    let mut listed = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.list_objects(collection, after.as_deref(), 3).unwrap();
        listed.extend(page.iter().cloned());
        if page.len() < 3 {
            break;
        }
        after = page.last().cloned();
    }
    let expected: Vec<Vec<u8>> = objects.keys().cloned().collect();
    assert_eq!(
        listed,
        expected,
        "{context}: objects of {}",
        collection.escape_ascii()
    );
}

/// Compares one object: data (whole and a slice), size, xattrs, omap header, keys and ranges.
pub fn check_object(
    store: &Store,
    collection: &[u8],
    name: &[u8],
    object: &ModelObject,
    context: &str,
) {
    let label = format!(
        "{context}: {}/{}",
        collection.escape_ascii(),
        name.escape_ascii()
    );
    let stat = store
        .stat(collection, name)
        .unwrap_or_else(|e| panic!("{label}: stat: {e}"));
    assert_eq!(stat.size, object.data.len() as u64, "{label}: size");
    let data = store
        .get(collection, name)
        .unwrap_or_else(|e| panic!("{label}: get: {e}"));
    assert!(
        data == object.data,
        "{label}: data differs ({} vs {} bytes)",
        data.len(),
        object.data.len()
    );
    let middle = object.data.len() as u64 / 3;
    let slice = store.read(collection, name, middle, 5000).unwrap();
    let end = (middle as usize + 5000).min(object.data.len());
    assert!(
        slice == object.data[middle as usize..end],
        "{label}: slice at {middle}"
    );
    assert_eq!(
        store.getattrs(collection, name).unwrap(),
        object.xattrs,
        "{label}: xattrs"
    );
    assert_eq!(
        store.omap_get_header(collection, name).unwrap(),
        object.omap_header,
        "{label}: omap header"
    );
    let omap: BTreeMap<Vec<u8>, Vec<u8>> = store
        .omap_iter(collection, name, b"", None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(omap, object.omap, "{label}: omap");
    let some_keys: Vec<Vec<u8>> = object
        .omap
        .keys()
        .step_by(2)
        .cloned()
        .chain([b"absent".to_vec()])
        .collect();
    let values = store.omap_get_values(collection, name, &some_keys).unwrap();
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = object
        .omap
        .iter()
        .step_by(2)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(values, expected, "{label}: omap values");
    let ranged: Vec<Vec<u8>> = store
        .omap_iter(collection, name, b"k2", Some(b"k6"))
        .unwrap()
        .map(|entry| entry.unwrap().0)
        .collect();
    let expected: Vec<Vec<u8>> = object
        .omap
        .range(b"k2".to_vec()..b"k6".to_vec())
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(ranged, expected, "{label}: omap range");
}
