//! Helpers shared by the integration tests: stores on the simulated pair (SimDevice + MemKv)
//! and on the real pair (io_uring file device + RocksDB) in a temporary directory.

#![allow(dead_code)]

pub mod crash;
pub mod model;
pub mod workload;

use std::path::Path;
use std::sync::Arc;

use bstore::device::SimDevice;
use bstore::kv::MemKv;
use bstore::{DeferredPolicy, FormatOptions, OpenOptions, Store};

/// Options that never apply deferred records on their own (only `flush_deferred` and close
/// do), so tests control when records reach the device.
pub fn manual_options(prefer_deferred_size: u32) -> OpenOptions {
    OpenOptions::default()
        .with_prefer_deferred_size(Some(prefer_deferred_size))
        .with_deferred(
            DeferredPolicy::default()
                .with_batch_records(usize::MAX)
                .with_batch_bytes(u64::MAX)
                .with_max_delay(std::time::Duration::from_secs(3600)),
        )
}

/// A simulated device and in-memory KV, formatted.
pub struct SimPair {
    pub device: Arc<SimDevice>,
    pub kv: Arc<MemKv>,
    pub options: OpenOptions,
}

/// Options of the simulated pair: writes under 64 KiB over live data are deferred (as on a
/// rotational device), and records are applied in small batches, so tests cross every stage of
/// the deferred path, not just the commit.
pub fn sim_options() -> OpenOptions {
    OpenOptions::default()
        .with_prefer_deferred_size(Some(64 << 10))
        .with_deferred(DeferredPolicy::default().with_batch_records(4))
}

impl SimPair {
    /// A freshly formatted pair with a device of `size_bytes` and 512-byte sectors.
    pub fn new(size_bytes: u64) -> SimPair {
        Self::with_format(size_bytes, &FormatOptions::default())
    }

    pub fn with_format(size_bytes: u64, format: &FormatOptions) -> SimPair {
        let device = Arc::new(SimDevice::new(size_bytes, 512, false));
        let kv = Arc::new(MemKv::new());
        Store::mkfs_on(device.as_ref(), kv.as_ref(), format).expect("mkfs on the simulated pair");
        SimPair {
            device,
            kv,
            options: sim_options(),
        }
    }

    /// Mounts the pair.
    pub fn open(&self) -> Store {
        Store::open_on(self.device.clone(), self.kv.clone(), &self.options)
            .expect("mount the simulated pair")
    }
}

/// A store directory on the real pair under /var/tmp (ext4: O_DIRECT works there). It needs
/// RocksDB, so tests on the real pair build only with the `rocksdb` feature.
#[cfg(feature = "rocksdb")]
pub struct RealStore {
    pub dir: tempfile::TempDir,
}

#[cfg(feature = "rocksdb")]
impl RealStore {
    /// Makes a store with a sparse block file of `size_bytes`.
    pub fn new(size_bytes: u64) -> RealStore {
        let dir = scratch_dir();
        let options = bstore::MkfsOptions::new(
            dir.path().join("store"),
            bstore::BlockSource::File { size_bytes },
        );
        Store::mkfs(&options).expect("mkfs on a file");
        RealStore { dir }
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    pub fn open(&self) -> Store {
        Store::open(self.path(), &OpenOptions::default()).expect("open the real store")
    }

    pub fn block(&self) -> std::path::PathBuf {
        self.path().join("block")
    }
}

/// A temporary directory on a file system that supports O_DIRECT.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").expect("temporary directory under /var/tmp")
}

/// Overwrites bytes of a file at `offset` (the store must be closed).
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file.sync_all().unwrap();
}

/// Reads bytes of a file at `offset`.
pub fn peek(path: &Path, offset: u64, length: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap();
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, offset).unwrap();
    bytes
}

/// Runs `cp ARGS FROM TO` (`-a` for a directory, `--sparse=always` for a block file).
pub fn cp(args: &[&str], from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(args)
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp {args:?} {} {}",
        from.display(),
        to.display()
    );
}

/// Deterministic bytes for object contents.
pub fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut rng = bstore::rng::SplitMix64::new(seed);
    (0..length).map(|_| rng.next_u64() as u8).collect()
}
