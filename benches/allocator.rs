//! Allocator throughput on a 1 TiB device of 4 KiB units (2^28 units): empty, and fragmented so
//! that every other unit is free (the worst case for a bitmap: no run longer than one unit).
//!
//! Run: `cargo bench --no-default-features --bench allocator`

use bstore::alloc::{BitmapAllocator, DeviceExtent};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const UNIT: u64 = 4096;
const DEVICE: u64 = 1 << 40;

fn empty() -> BitmapAllocator {
    let mut allocator = BitmapAllocator::new(DEVICE, UNIT);
    allocator.mark_free(DeviceExtent::new(0, DEVICE));
    allocator
}

/// Every other unit free, across the whole device.
fn fragmented() -> BitmapAllocator {
    let mut allocator = BitmapAllocator::new(DEVICE, UNIT);
    for unit in (0..DEVICE / UNIT).step_by(2) {
        allocator.mark_free(DeviceExtent::new(unit * UNIT, UNIT));
    }
    allocator
}

fn allocate_release(c: &mut Criterion, name: &str, allocator: &mut BitmapAllocator, bytes: u64) {
    c.bench_function(name, |b| {
        b.iter(|| {
            let extents = allocator.allocate(bytes).expect("space");
            allocator.release(&extents);
        })
    });
}

fn benches(c: &mut Criterion) {
    let mut allocator = empty();
    allocate_release(c, "empty_1TiB/allocate_release_4KiB", &mut allocator, 4096);
    allocate_release(
        c,
        "empty_1TiB/allocate_release_64KiB",
        &mut allocator,
        64 << 10,
    );
    allocate_release(
        c,
        "empty_1TiB/allocate_release_4MiB",
        &mut allocator,
        4 << 20,
    );

    let mut allocator = fragmented();
    allocate_release(
        c,
        "fragmented_1TiB/allocate_release_4KiB",
        &mut allocator,
        4096,
    );
    allocate_release(
        c,
        "fragmented_1TiB/allocate_release_64KiB",
        &mut allocator,
        64 << 10,
    );

    // Filling: allocate 4 KiB units one after another without releasing (sequential writes).
    c.bench_function("empty_1TiB/allocate_4KiB_sequential", |b| {
        b.iter_batched_ref(
            || {
                let mut a = BitmapAllocator::new(1 << 30, UNIT);
                a.mark_free(DeviceExtent::new(0, 1 << 30));
                a
            },
            |a| {
                for _ in 0..1024 {
                    a.allocate(UNIT).expect("space");
                }
            },
            BatchSize::LargeInput,
        )
    });
    let allocator = fragmented();
    c.bench_function("fragmented_1TiB/free_extents_first_100k", |b| {
        b.iter(|| allocator.free_extents().take(100_000).count())
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(group);
