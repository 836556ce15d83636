//! crc32c throughput per checksum chunk size (every read verifies, every write computes).
//!
//! Run: `cargo bench --no-default-features --bench crc32c`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for size in [512usize, 4096, 65536, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| bstore::csum::chunk_crc(std::hint::black_box(&data)))
        });
    }
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
