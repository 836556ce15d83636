//! End-to-end cost of small transactions on the in-memory pair (simulated device, in-memory KV):
//! everything bstore does per write except the real device and RocksDB.
//!
//! Run: `cargo bench -p bstore --no-default-features --bench transaction`

use std::sync::Arc;

use bstore::device::SimDevice;
use bstore::kv::MemKv;
use bstore::{FormatOptions, OpenOptions, Store, Transaction};
use criterion::{Criterion, criterion_group, criterion_main};

fn store() -> Store {
    let device = Arc::new(SimDevice::new(4 << 30, 512, false));
    let kv = Arc::new(MemKv::new());
    Store::mkfs_on(device.as_ref(), kv.as_ref(), &FormatOptions::default()).unwrap();
    let store = Store::open_on(device, kv, &OpenOptions::default()).unwrap();
    store.create_collection("c").unwrap();
    for i in 0..64 {
        store
            .put("c", format!("object-{i}"), &vec![7u8; 4 << 20])
            .unwrap();
    }
    store
}

fn benches(c: &mut Criterion) {
    let store = store();
    let data = vec![9u8; 4096];
    let mut i = 0u64;
    c.bench_function("transaction/overwrite_4KiB_of_4MiB_object", |b| {
        b.iter(|| {
            i += 1;
            let object = format!("object-{}", i % 64);
            let offset = (i * 7919) % 1024 * 4096;
            store
                .apply(Transaction::new().write("c", object, offset, data.clone()))
                .unwrap();
        })
    });
    c.bench_function("transaction/read_4KiB_of_4MiB_object", |b| {
        b.iter(|| {
            i += 1;
            let object = format!("object-{}", i % 64);
            store
                .read("c", object, (i * 7919) % 1024 * 4096, 4096)
                .unwrap()
        })
    });
    let mut n = 0u64;
    c.bench_function("transaction/create_4KiB_object", |b| {
        b.iter(|| {
            n += 1;
            store
                .apply(Transaction::new().write("c", format!("small-{n}"), 0, data.clone()))
                .unwrap();
        })
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(50);
    targets = benches
}
criterion_main!(group);
