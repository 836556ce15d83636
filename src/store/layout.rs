//! The store directory, laid out like a Ceph OSD directory:
//!
//! ```text
//! STORE_DIR/
//!   block  the data device: a symlink to a block device or file, or a regular file
//!   db/    RocksDB (a directory, or a symlink to one on a faster device)
//!   wal/   optional: RocksDB's WAL (a directory, or a symlink to one)
//! ```
//!
//! The directory is locked with `flock` while a store is open or being made, so two processes
//! (or two opens in one process) never use the same store.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Paths of a store directory, and the lock on it.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
    _lock: File,
}

impl StoreDir {
    /// Locks an existing store directory.
    pub fn lock(path: &Path) -> Result<StoreDir> {
        let dir =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match dir.try_lock() {
            Ok(()) => Ok(StoreDir {
                path: path.to_path_buf(),
                _lock: dir,
            }),
            Err(TryLockError::WouldBlock) => Err(Error::Busy(format!("store {}", path.display()))),
            Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// Creates the directory if needed and locks it.
    pub fn create_and_lock(path: &Path) -> Result<StoreDir> {
        fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Self::lock(path)
    }

    /// `STORE_DIR/block`.
    pub fn block(&self) -> PathBuf {
        self.path.join("block")
    }

    /// `STORE_DIR/db`.
    pub fn db(&self) -> PathBuf {
        self.path.join("db")
    }

    /// `STORE_DIR/wal`.
    pub fn wal(&self) -> PathBuf {
        self.path.join("wal")
    }

    /// `STORE_DIR/wal` when the store has a separate WAL directory.
    pub fn wal_if_present(&self) -> Option<PathBuf> {
        let wal = self.wal();
        wal.exists().then_some(wal)
    }

    /// True when something a store leaves behind is already here.
    pub fn holds_store(&self) -> bool {
        let db_has_files =
            fs::read_dir(self.db()).is_ok_and(|mut entries| entries.next().is_some());
        fs::symlink_metadata(self.block()).is_ok() || db_has_files
    }

    /// Removes what an earlier store left (for `--force`): the block link or file, and the
    /// contents of the database and WAL directories (following their symlinks).
    pub fn clear(&self) -> Result<()> {
        for dir in [self.db(), self.wal()] {
            if let Ok(target) = fs::canonicalize(&dir) {
                remove_dir_contents(&target)?;
            }
            remove_if_exists(&dir)?;
        }
        if let Ok(metadata) = fs::symlink_metadata(self.block()) {
            // A regular block file is ours to replace; a symlinked device is kept and relabelled.
            if metadata.file_type().is_symlink() || metadata.is_file() {
                remove_if_exists(&self.block())?;
            }
        }
        Ok(())
    }

    /// Creates `STORE_DIR/block`: a symlink to `device`, or a sparse file of `size_bytes`.
    pub fn create_block(&self, device: Option<&Path>, size_bytes: u64) -> Result<()> {
        let block = self.block();
        match device {
            Some(device) => {
                let target = fs::canonicalize(device)
                    .map_err(|e| Error::io(format!("resolving {}", device.display()), e))?;
                std::os::unix::fs::symlink(&target, &block)
                    .map_err(|e| Error::io(format!("linking {}", block.display()), e))
            }
            None => {
                let file = File::create_new(&block)
                    .map_err(|e| Error::io(format!("creating {}", block.display()), e))?;
                file.set_len(size_bytes)
                    .map_err(|e| Error::io(format!("sizing {}", block.display()), e))
            }
        }
    }

    /// Creates `STORE_DIR/<name>`: a directory, or a symlink to `target` (created if missing).
    pub fn create_subdir(&self, name: &str, target: Option<&Path>) -> Result<PathBuf> {
        let link = self.path.join(name);
        match target {
            Some(target) => {
                fs::create_dir_all(target)
                    .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
                let target = fs::canonicalize(target)
                    .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
                std::os::unix::fs::symlink(&target, &link)
                    .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
            }
            None => fs::create_dir_all(&link)
                .map_err(|e| Error::io(format!("creating {}", link.display()), e))?,
        }
        Ok(link)
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

fn remove_dir_contents(dir: &Path) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        remove_if_exists(&entry.path())?;
    }
    Ok(())
}
