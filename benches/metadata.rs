//! Metadata hot paths: onode and extent-map encode/decode, and the write planner.
//!
//! Run: `cargo bench -p bstore --no-default-features --bench metadata`

use std::collections::BTreeMap;

use bstore::format::onode::{
    AllocHint, Blob, CsumType, ExtentMapLayout, OnodeRecord, decode_shard, encode_shard,
};
use bstore::onode::ExtentMap;
use bstore::txn::EngineConfig;
use bstore::txn::write::plan_write;
use criterion::{Criterion, criterion_group, criterion_main};

const AU: u32 = 4096;

/// A 4 MiB object written whole (8 blobs of 512 KiB), then overwritten in `holes` 4 KiB places.
fn object_map(holes: u64) -> ExtentMap {
    let mut map = ExtentMap::new(AU);
    for i in 0..8u64 {
        let blob = map.add_blob(Blob {
            device_offset: (1 << 30) + i * (512 << 10),
            length: 512 << 10,
            shared_blob_id: None,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            csums: vec![0x1234_5678; 128],
            unused: None,
        });
        map.map(i * (512 << 10), 512 << 10, blob, 0);
    }
    for hole in 0..holes {
        let offset = hole * 37 % 1024 * 4096;
        map.punch(offset, 4096);
        let blob = map.add_blob(Blob {
            device_offset: (2 << 30) + hole * 4096,
            length: 4096,
            shared_blob_id: None,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            csums: vec![1],
            unused: None,
        });
        map.map(offset, 4096, blob, 0);
    }
    map
}

fn config() -> EngineConfig {
    EngineConfig {
        min_alloc_size: AU,
        csum_type: CsumType::Crc32c,
        csum_chunk_order: 12,
        blob_length_max: 512 << 10,
        device_size: 1 << 40,
        reserved_bytes: 8192,
        prefer_deferred_size: 0,
        onode_cache_bytes: 64 << 20,
        queue_depth_max: 1024,
        slow_transaction: std::time::Duration::from_secs(5),
        deferred: Default::default(),
        background: Default::default(),
        #[cfg(debug_assertions)]
        mutation: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    let whole = object_map(0);
    let body = whole.to_body(0, u64::MAX);
    let record = OnodeRecord {
        nid: 7,
        size: 4 << 20,
        flags: 0,
        alloc_hint: AllocHint::default(),
        xattrs: BTreeMap::from([
            (b"_".to_vec(), vec![0u8; 250]),
            (b"snapset".to_vec(), vec![0u8; 30]),
        ]),
        extent_map: ExtentMapLayout::Inline(body.clone()),
    };
    let encoded = record.encode();
    c.bench_function("onode/encode_4MiB_object", |b| b.iter(|| record.encode()));
    c.bench_function("onode/decode_4MiB_object", |b| {
        b.iter(|| OnodeRecord::decode(&encoded).unwrap())
    });
    c.bench_function("extent_map/rebuild_from_body_8_blobs", |b| {
        b.iter(|| ExtentMap::from_bodies(AU, [&body]).unwrap())
    });

    let fragmented = object_map(200);
    let shard = fragmented.to_body(0, 1 << 20);
    let shard_bytes = encode_shard(&shard);
    c.bench_function("extent_shard/encode_1MiB_of_fragmented_map", |b| {
        b.iter(|| encode_shard(&shard))
    });
    c.bench_function("extent_shard/decode_1MiB_of_fragmented_map", |b| {
        b.iter(|| decode_shard(&shard_bytes).unwrap())
    });

    let config = config();
    c.bench_function("planner/aligned_4KiB_overwrite", |b| {
        b.iter(|| plan_write(&fragmented, 4 << 20, (123 * 4096, 4096), &[], &config))
    });
    c.bench_function("planner/unaligned_1KiB_overwrite", |b| {
        b.iter(|| {
            plan_write(
                &fragmented,
                4 << 20,
                (123 * 4096 + 1000, 1024),
                &[],
                &config,
            )
        })
    });
    c.bench_function("extent_map/punch_and_map_4KiB", |b| {
        b.iter_batched_ref(
            || fragmented.clone(),
            |map| {
                map.punch(500 * 4096, 4096);
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(group, benches);
criterion_main!(group);
