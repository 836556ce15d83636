//! Embedding bstore on a device of your own: anything that implements `device::BlockDevice`
//! (here, memory) can hold the object data, beside any `kv::Kv` for the metadata (here the
//! in-memory one of the `testing` feature; `Store::open` uses RocksDB).
//!
//! `cargo run --example own_device`

use std::path::PathBuf;
use std::sync::Arc;

use bstore::device::{Access, BlockDevice, DeviceInfo, DeviceKind, IoDone, IoKind, IoOutcome};
use bstore::device::{IoRequest, check_batch};
use bstore::kv::MemKv;
use bstore::{FormatOptions, OpenOptions, Store};
use parking_lot::Mutex;

/// A device in memory: reads and writes complete at once, and everything written is durable.
struct MemoryDevice {
    info: DeviceInfo,
    bytes: Mutex<Vec<u8>>,
}

impl MemoryDevice {
    fn new(size_bytes: u64) -> MemoryDevice {
        MemoryDevice {
            info: DeviceInfo {
                path: PathBuf::from("<memory>"),
                kind: DeviceKind::Simulated,
                size_bytes,
                logical_block_size: 4096,
                rotational: false,
                access: Access::ReadWrite,
            },
            bytes: Mutex::new(vec![0; size_bytes as usize]),
        }
    }
}

impl BlockDevice for MemoryDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&self, mut batch: Vec<IoRequest>, done: IoDone) {
        // Requests must be aligned and within the device; `check_batch` says so for any device.
        if let Err(error) = check_batch(&self.info, &batch) {
            return done(IoOutcome {
                requests: batch,
                result: Err(error),
            });
        }
        let mut bytes = self.bytes.lock();
        for request in &mut batch {
            let start = request.device_offset as usize;
            let end = start + request.buf.len();
            match request.kind {
                IoKind::Write => bytes[start..end].copy_from_slice(&request.buf),
                // A read's buffer is its own, so it can be filled.
                IoKind::Read => {
                    if let Some(target) = request.buf.as_mut_slice() {
                        target.copy_from_slice(&bytes[start..end]);
                    }
                }
            }
        }
        drop(bytes);
        done(IoOutcome {
            requests: batch,
            result: Ok(()),
        });
    }

    fn flush(&self) -> bstore::Result<()> {
        Ok(()) // memory: nothing to make durable
    }
}

fn main() -> bstore::Result<()> {
    let device = Arc::new(MemoryDevice::new(64 << 20));
    let kv = Arc::new(MemKv::new());
    Store::mkfs_on(device.as_ref(), kv.as_ref(), &FormatOptions::default())?;
    let store = Store::open_on(device.clone(), kv.clone(), &OpenOptions::default())?;
    store.create_collection("c")?;
    store.put("c", "hello", b"from a device of my own")?;
    store.close()?;

    // The same device and metadata mount again, and every byte is checksummed on the way.
    let store = Store::open_on(device, kv, &OpenOptions::default())?;
    let bytes = store.get("c", "hello")?;
    println!("{}", String::from_utf8_lossy(&bytes));
    store.close()
}
