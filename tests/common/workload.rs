//! Generators of random transactions for model-based tests, and proptest configuration that
//! prints its seed and replays it from `BSTORE_SEED`.

#![allow(dead_code)]

use bstore::ObjectHash;
use bstore::device::AlignedBuf;
use bstore::format::onode::AllocHint;
use bstore::txn::{ObjectOp, Op};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Collections the generator names (a small pool, so ops collide).
pub const COLLECTIONS: [&str; 3] = ["c0", "c1", "c2"];
/// Objects the generator names.
pub const OBJECTS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// A proptest configuration with `cases` (overridden by the environment variable `cases_env`)
/// and a seed taken from `BSTORE_SEED` or chosen and printed, so a failure can be replayed.
pub fn config(cases_env: &str, default_cases: u32) -> Config {
    let cases = std::env::var(cases_env)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let seed = bstore::rng::test_seed();
    eprintln!(
        "proptest seed {seed} ({cases} cases): rerun with BSTORE_SEED={seed} {cases_env}={cases}"
    );
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

fn name(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        80 => proptest::sample::select(pool).prop_map(|n| n.as_bytes().to_vec()),
        1 => Just(Vec::new()),
        1 => Just(vec![b'x'; 2049]),
    ]
}

/// Collection names, mostly the two created at the start.
fn collection_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => proptest::sample::select(&COLLECTIONS[..2]).prop_map(|n| n.as_bytes().to_vec()),
        1 => name(&COLLECTIONS),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=max, any::<u8>()).prop_map(|(length, seed)| {
        (0..length)
            .map(|i| seed.wrapping_add((i * 7 + i / 251) as u8))
            .collect()
    })
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..300_000,
        2 => (0u64..80).prop_map(|chunk| chunk * 4096),
    ]
}

/// Writes of whole 4 KiB units at a unit boundary, in aligned buffers: new space the device
/// writes from the op's own buffer.
fn aligned_write() -> impl Strategy<Value = ObjectOp> {
    ((0u64..80), (1usize..=24), any::<u8>()).prop_map(|(unit, units, seed)| {
        let bytes: Vec<u8> = (0..units * 4096)
            .map(|i| seed.wrapping_add((i * 11 + i / 509) as u8))
            .collect();
        ObjectOp::Write {
            offset: unit * 4096,
            data: AlignedBuf::copy_from(&bytes).into(),
        }
    })
}

/// Ops that end past the maximum object size (always rejected with `TooBig`).
fn too_big_op() -> impl Strategy<Value = ObjectOp> {
    let max = bstore::format::OBJECT_SIZE_MAX;
    prop_oneof![
        Just(ObjectOp::Write {
            offset: max - 10,
            data: vec![1; 11].into()
        }),
        Just(ObjectOp::Zero {
            offset: max,
            length: 1
        }),
        Just(ObjectOp::Truncate { size: max + 1 }),
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    (0u8..10).prop_map(|k| format!("k{k}").into_bytes())
}

fn object_op() -> impl Strategy<Value = ObjectOp> {
    prop_oneof![
        2 => Just(ObjectOp::Touch),
        10 => (offset(), bytes(70_000)).prop_map(|(offset, data)| ObjectOp::Write { offset, data: data.into() }),
        2 => aligned_write(),
        2 => (offset(), 0u64..200_000).prop_map(|(offset, length)| ObjectOp::Zero { offset, length }),
        1 => too_big_op(),
        3 => offset().prop_map(|size| ObjectOp::Truncate { size }),
        2 => Just(ObjectOp::Remove),
        3 => proptest::collection::vec((key(), bytes(100)), 1..3)
            .prop_map(|attrs| ObjectOp::SetAttrs { attrs }),
        1 => bytes(70_000).prop_map(|value| ObjectOp::SetAttrs { attrs: vec![(b"big".to_vec(), value)] }),
        1 => key().prop_map(|name| ObjectOp::RmAttr { name }),
        1 => Just(ObjectOp::RmAttrs),
        4 => proptest::collection::vec((key(), bytes(300)), 1..4)
            .prop_map(|pairs| ObjectOp::OmapSetKeys { pairs }),
        2 => proptest::collection::vec(key(), 1..3).prop_map(|keys| ObjectOp::OmapRmKeys { keys }),
        1 => (key(), key()).prop_map(|(first, last)| ObjectOp::OmapRmKeyRange { first, last }),
        1 => Just(ObjectOp::OmapClear),
        2 => bytes(200).prop_map(|header| ObjectOp::OmapSetHeader { header }),
        2 => name(&OBJECTS).prop_map(|new_name| ObjectOp::Rename { new_name }),
        3 => name(&OBJECTS).prop_map(|target| ObjectOp::Clone { target }),
        3 => (offset(), 0u64..150_000, name(&OBJECTS), offset()).prop_map(
            |(offset, length, target, target_offset)| ObjectOp::CloneRange {
                offset,
                length,
                target,
                target_offset,
            }
        ),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(size, flags)| ObjectOp::SetAllocHint(AllocHint {
            expected_object_size: u64::from(size),
            expected_write_size: 4096,
            flags,
        })),
    ]
}

/// One op, usually preceded by a `Touch` of its object when it needs the object to exist, so
/// that most transactions succeed and go on to change the store.
fn op() -> impl Strategy<Value = Vec<Op>> {
    prop_oneof![
        2 => name(&COLLECTIONS).prop_map(|collection| vec![Op::CreateCollection { collection }]),
        1 => name(&COLLECTIONS).prop_map(|collection| vec![Op::RemoveCollection { collection }]),
        30 => (collection_name(), name(&OBJECTS), object_op(), proptest::bool::weighted(0.7))
            .prop_map(|(collection, object, op, touch_first)| {
                let mut ops = Vec::new();
                if touch_first && !op.creates() {
                    ops.push(Op::Object {
                        collection: collection.clone(),
                        object: object.clone(),
                        op: ObjectOp::Touch,
                    });
                }
                ops.push(Op::Object { collection, object, op });
                ops
            }),
        // A placement-group split or merge: objects change collections, metadata only.
        1 => (name(&COLLECTIONS), name(&COLLECTIONS), 0u32..3, 0u32..4).prop_map(
            |(collection, into, bits, rem)| vec![Op::SplitCollection {
                collection,
                into,
                bits,
                rem,
                hash: ObjectHash::Crc32c,
            }]
        ),
        1 => (name(&COLLECTIONS), name(&COLLECTIONS))
            .prop_map(|(collection, into)| vec![Op::MergeCollection { collection, into }]),
        // Away and back within one transaction: the object ends as it began, under a key the
        // transaction deleted on the way.
        1 => (collection_name(), name(&OBJECTS), name(&OBJECTS)).prop_map(
            |(collection, object, other)| {
                let rename = |from: &Vec<u8>, to: &Vec<u8>| Op::Object {
                    collection: collection.clone(),
                    object: from.clone(),
                    op: ObjectOp::Rename { new_name: to.clone() },
                };
                vec![rename(&object, &other), rename(&other, &object)]
            }
        ),
    ]
}

/// Many small writes in one transaction: fragments an object so its extent map is sharded.
fn fragmenting_burst() -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::sample::select(&COLLECTIONS),
        proptest::sample::select(&OBJECTS),
        1u64..5,
        any::<u8>(),
    )
        .prop_map(|(collection, object, stride_chunks, fill)| {
            (0..120u64)
                .map(|i| Op::Object {
                    collection: collection.as_bytes().to_vec(),
                    object: object.as_bytes().to_vec(),
                    op: ObjectOp::Write {
                        offset: i * stride_chunks * 4096 + (i % 3) * 100,
                        data: vec![fill.wrapping_add(i as u8); 1000 + (i as usize % 5) * 900]
                            .into(),
                    },
                })
                .collect()
        })
}

/// A transaction: 1 to 4 random ops, or a burst of small writes.
pub fn transaction() -> impl Strategy<Value = Vec<Op>> {
    prop_oneof![
        12 => proptest::collection::vec(op(), 1..4).prop_map(|groups| groups.concat()),
        1 => fragmenting_burst(),
    ]
}

/// One step of a model-based run.
#[derive(Debug, Clone)]
pub enum Step {
    /// Submit and wait until durable, then compare.
    Apply(Vec<Op>),
    /// Submit, compare from several reader threads before the commit is known durable, then
    /// wait for it.
    ApplyWhileReading(Vec<Op>),
    /// Close and reopen the store, then compare everything.
    Remount,
}

/// A run: collections created first (so most ops find them), then random steps.
pub fn steps(length: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            10 => transaction().prop_map(Step::Apply),
            3 => transaction().prop_map(Step::ApplyWhileReading),
            1 => Just(Step::Remount),
        ],
        length,
    )
    .prop_map(|mut steps| {
        let create = COLLECTIONS
            .iter()
            .take(2)
            .map(|c| Op::CreateCollection {
                collection: c.as_bytes().to_vec(),
            })
            .collect();
        steps.insert(0, Step::Apply(create));
        steps
    })
}
