//! Goal: the bitmap allocator never hands out a unit twice, keeps exact accounting, reuses what
//! is released, and agrees with a reference model (a set of free units) under random
//! sequences of allocations and releases, including on a fragmented device.

use std::collections::BTreeSet;

use bstore::alloc::{BitmapAllocator, DeviceExtent};
use proptest::prelude::*;

const UNIT: u64 = 4096;

fn empty(units: u64) -> BitmapAllocator {
    let mut allocator = BitmapAllocator::new(units * UNIT, UNIT);
    allocator.mark_free(DeviceExtent::new(0, units * UNIT));
    allocator
}

#[derive(Debug, Clone)]
enum Step {
    Allocate(u64),
    /// Release the i-th live allocation (modulo their count).
    Release(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (1u64..=300).prop_map(Step::Allocate),
            2 => any::<usize>().prop_map(Step::Release),
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("BSTORE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
    ))]

    #[test]
    fn matches_a_reference_set(units in 600u64..3000, steps in steps()) {
        let mut allocator = empty(units);
        let mut free: BTreeSet<u64> = (0..units).collect();
        let mut live: Vec<Vec<DeviceExtent>> = Vec::new();
        for step in steps {
            match step {
                Step::Allocate(want) => match allocator.allocate(want * UNIT) {
                    Ok(extents) => {
                        prop_assert!(want <= free.len() as u64);
                        let total: u64 = extents.iter().map(|e| e.length).sum();
                        prop_assert_eq!(total, want * UNIT);
                        for extent in &extents {
                            for unit in extent.offset / UNIT..extent.end() / UNIT {
                                prop_assert!(free.remove(&unit), "unit {} handed out twice", unit);
                            }
                        }
                        live.push(extents);
                    }
                    Err(e) => {
                        prop_assert!(want > free.len() as u64, "NoSpace with {} units free", free.len());
                        prop_assert_eq!(e.available_bytes, free.len() as u64 * UNIT);
                    }
                },
                Step::Release(index) if !live.is_empty() => {
                    let extents = live.swap_remove(index % live.len());
                    allocator.release(&extents);
                    for extent in &extents {
                        for unit in extent.offset / UNIT..extent.end() / UNIT {
                            free.insert(unit);
                        }
                    }
                }
                Step::Release(_) => {}
            }
            prop_assert_eq!(allocator.free_bytes(), free.len() as u64 * UNIT);
        }
        let listed: BTreeSet<u64> = allocator
            .free_extents()
            .flat_map(|e| e.offset / UNIT..e.end() / UNIT)
            .collect();
        prop_assert_eq!(listed, free);
    }
}

#[test]
fn everything_released_comes_back_as_one_run() {
    let mut allocator = empty(10_000);
    let pieces: Vec<_> = (0..100)
        .map(|_| allocator.allocate(100 * UNIT).unwrap())
        .collect();
    assert!(allocator.allocate(UNIT).is_err(), "device is full");
    for piece in &pieces {
        allocator.release(piece);
    }
    let free: Vec<_> = allocator.free_extents().collect();
    assert_eq!(free, vec![DeviceExtent::new(0, 10_000 * UNIT)]);
}

#[test]
fn a_large_request_on_a_fragmented_device_is_satisfied_from_pieces() {
    let mut allocator = empty(4096);
    allocator.allocate(4096 * UNIT).unwrap();
    for unit in (0..4096).step_by(3) {
        allocator.release(&[DeviceExtent::new(unit * UNIT, UNIT)]);
    }
    let free_before = allocator.free_bytes();
    let got = allocator.allocate(1000 * UNIT).unwrap();
    assert_eq!(got.len(), 1000, "only single units are free");
    assert_eq!(allocator.free_bytes(), free_before - 1000 * UNIT);
}
