//! The store directory, laid out like a Ceph OSD directory (FORMAT.md §10):
//!
//! ```text
//! STORE_DIR/
//!   block  the data device: a symlink to a block device or file, or a regular file
//!   db/    RocksDB (a directory, or a symlink to one on a faster device)
//!   wal/   optional: RocksDB's WAL (a directory, or a symlink to one)
//!   .mkfs/ only while mkfs runs: the store being made, moved into place at the end
//! ```
//!
//! The directory is locked with `flock` while a store is open for writing or being made, so two
//! processes (or two opens in one process) never change the same store; a read-only open takes
//! no lock, so inspection works beside a running daemon.
//!
//! What may be deleted is decided here, by rules an operator can rely on: only the parts a store
//! consists of (its `block` link or file, RocksDB's own files in `db/` and `wal/`), never a file
//! RocksDB did not make, and never anything behind a symlink unless the caller has shown that
//! the target belongs to the store in question.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use super::mkfs::{format_uuid, parse_uuid};
use crate::error::{Error, Result};

/// Name of the staging directory mkfs builds a store in.
pub const STAGING_NAME: &str = ".mkfs";

/// Name of the file by which mkfs claims a `--db-dir`/`--wal-dir` before it puts anything
/// there: the uuid of the store being made (FORMAT.md §10). Only a directory carrying the
/// claim of the very store a retry is making may be cleared by that retry.
pub const CLAIM_NAME: &str = ".bstore-mkfs";

/// Paths of a store directory, and the lock on it when held.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
    _lock: Option<File>,
}

impl StoreDir {
    /// Locks an existing store directory exclusively (to open it for writing, check or make it).
    pub fn lock(path: &Path) -> Result<StoreDir> {
        let dir = open_dir(path)?;
        match dir.try_lock() {
            Ok(()) => Ok(StoreDir {
                path: path.to_path_buf(),
                _lock: Some(dir),
            }),
            Err(TryLockError::WouldBlock) => Err(Error::Busy(format!(
                "store {} (another process has it open)",
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// Creates the directory if needed and locks it.
    pub fn create_and_lock(path: &Path) -> Result<StoreDir> {
        fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Self::lock(path)
    }

    /// An existing store directory, not locked: for read-only opens, which must work while a
    /// daemon holds the lock and must never keep a daemon from starting.
    pub fn unlocked(path: &Path) -> Result<StoreDir> {
        open_dir(path)?;
        Ok(StoreDir {
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// `STORE_DIR/.mkfs`, where mkfs builds.
    pub fn staging(&self) -> PathBuf {
        self.path.join(STAGING_NAME)
    }

    /// `STORE_DIR/wal` when the store has a separate WAL directory.
    pub fn wal_if_present(&self) -> Option<PathBuf> {
        let wal = self.wal();
        fs::symlink_metadata(&wal).is_ok().then_some(wal)
    }

    /// Fails unless the directory holds a store made to the end: `block` is what mkfs moves
    /// into place last.
    pub fn require_store(&self) -> Result<()> {
        if fs::symlink_metadata(self.block()).is_ok() {
            return Ok(());
        }
        if fs::symlink_metadata(self.staging()).is_ok() {
            return Err(Error::NotFormatted(format!(
                "{}: mkfs did not finish (run mkfs again; it cleans up after itself)",
                self.path.display()
            )));
        }
        Err(Error::NotFormatted(format!(
            "{}: no store here (no block)",
            self.path.display()
        )))
    }

    /// Makes the directory's entries (renames, removals) durable.
    pub fn sync(&self) -> Result<()> {
        sync_dir(&self.path)
    }
}

fn open_dir(path: &Path) -> Result<File> {
    let dir = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let is_dir = dir
        .metadata()
        .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?
        .is_dir();
    if !is_dir {
        return Err(Error::invalid(format!(
            "{} is not a store directory",
            path.display()
        )));
    }
    Ok(dir)
}

/// fsync of a directory: makes the entries created, renamed or removed in it durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", path.display()), e))
}

/// What stands at one path of a store directory, without following a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Nothing.
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink, and where it points (resolved when it resolves).
    Symlink {
        /// The target, canonical when it exists, else as written in the link.
        target: PathBuf,
    },
    /// A device node, socket or fifo.
    Other,
}

impl Part {
    /// Looks at `path`.
    pub fn at(path: &Path) -> Result<Part> {
        let metadata = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Part::Missing),
            Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
        };
        let file_type = metadata.file_type();
        Ok(if file_type.is_symlink() {
            let written = fs::read_link(path)
                .map_err(|e| Error::io(format!("reading link {}", path.display()), e))?;
            Part::Symlink {
                target: fs::canonicalize(path).unwrap_or(written),
            }
        } else if file_type.is_dir() {
            Part::Dir
        } else if file_type.is_file() {
            Part::File
        } else {
            Part::Other
        })
    }

    /// True unless nothing is there.
    pub fn exists(&self) -> bool {
        *self != Part::Missing
    }

    /// The directory holding the part's files: itself, or a symlink's target.
    pub fn directory(&self, path: &Path) -> Option<PathBuf> {
        match self {
            Part::Dir => Some(path.to_path_buf()),
            Part::Symlink { target } => Some(target.clone()),
            _ => None,
        }
    }
}

/// True for the names of files RocksDB makes in its database or WAL directory.
pub fn is_rocksdb_file(name: &str) -> bool {
    const EXACT: [&str; 5] = ["CURRENT", "IDENTITY", "LOCK", "LOG", "CURRENT.dbtmp"];
    const PREFIXES: [&str; 3] = ["LOG.old.", "MANIFEST-", "OPTIONS-"];
    const NUMBERED: [&str; 5] = [".sst", ".log", ".blob", ".dbtmp", ".ldb"];
    if EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p)) {
        return true;
    }
    NUMBERED.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Names in `dir` that neither RocksDB nor mkfs (its claim) made, subdirectories included,
/// in name order.
pub fn foreign_entries(dir: &Path) -> Result<Vec<String>> {
    let mut foreign: Vec<String> = entries(dir)?
        .into_iter()
        .filter(|(name, is_file)| !(*is_file && (is_rocksdb_file(name) || name == CLAIM_NAME)))
        .map(|(name, _)| name)
        .collect();
    foreign.sort();
    Ok(foreign)
}

/// Claims `dir` for the store `store_uuid` mkfs is making (durably, before it is used).
pub fn write_claim(dir: &Path, store_uuid: &[u8; 16]) -> Result<()> {
    write_uuid_file(&dir.join(CLAIM_NAME), store_uuid)?;
    sync_dir(dir)
}

/// The uuid `dir` is claimed for, if it carries a readable claim.
pub fn read_claim(dir: &Path) -> Option<[u8; 16]> {
    read_uuid_file(&dir.join(CLAIM_NAME))
}

/// Removes the claim on `dir` (the store is in place, or the directory given up).
pub fn remove_claim(dir: &Path) -> Result<()> {
    remove_link_or_file(&dir.join(CLAIM_NAME))
}

/// Writes a uuid as one line of text, durably.
pub fn write_uuid_file(path: &Path, uuid: &[u8; 16]) -> Result<()> {
    fs::write(path, format!("{}\n", format_uuid(uuid)))
        .and_then(|()| File::open(path)?.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Reads a uuid written by [`write_uuid_file`].
pub fn read_uuid_file(path: &Path) -> Option<[u8; 16]> {
    fs::read_to_string(path)
        .ok()
        .and_then(|text| parse_uuid(text.trim()))
}

/// The store directory `path` is or lies inside, if any: a directory holding `block` and
/// `db`, or a `.mkfs` staging directory.
pub fn enclosing_store(path: &Path) -> Option<PathBuf> {
    let has = |dir: &Path, name: &str| fs::symlink_metadata(dir.join(name)).is_ok();
    path.ancestors()
        .find(|dir| (has(dir, "block") && has(dir, "db")) || has(dir, STAGING_NAME))
        .map(Path::to_path_buf)
}

/// True when `dir` has no entries at all.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(entries(dir)?.is_empty())
}

/// Removes the files RocksDB made in `dir`, and nothing else. `CURRENT` goes first: once it
/// is gone the directory holds no database, so an interrupted removal leaves debris, never a
/// half-deleted database that still opens.
pub fn remove_rocksdb_files(dir: &Path) -> Result<()> {
    let mut names = entries(dir)?;
    names.sort_by_key(|(name, _)| name != "CURRENT");
    for (name, is_file) in names {
        if is_file && is_rocksdb_file(&name) {
            let path = dir.join(&name);
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
    }
    Ok(())
}

/// Removes a store's `db` or `wal` part: RocksDB's files in a directory of the store's own
/// (then the directory, which must be left empty), or only the link when it is a symlink;
/// the link's target is cleared only when `clear_target` (the caller has shown it belongs to
/// the store being removed).
pub fn remove_kv_part(path: &Path, part: &Part, clear_target: bool) -> Result<()> {
    match part {
        Part::Missing => Ok(()),
        Part::Dir => {
            remove_rocksdb_files(path)?;
            fs::remove_dir(path).map_err(|e| Error::io(format!("removing {}", path.display()), e))
        }
        Part::Symlink { target } => {
            if clear_target {
                remove_rocksdb_files(target)?;
            }
            remove_link_or_file(path)
        }
        Part::File | Part::Other => Err(Error::invalid(format!(
            "{} is not a directory: it is not part of a store; move it away",
            path.display()
        ))),
    }
}

/// Unlinks a symlink or a regular file (never what a symlink points to).
pub fn remove_link_or_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Every entry of `dir`: its name (lossy UTF-8) and whether it is a regular file.
pub fn entries(dir: &Path) -> Result<Vec<(String, bool)>> {
    let listing = |e| Error::io(format!("listing {}", dir.display()), e);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let is_file = entry.file_type().map_err(listing)?.is_file();
        found.push((entry.file_name().to_string_lossy().into_owned(), is_file));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_file_names_are_recognised_and_nothing_else() {
        for name in [
            "CURRENT",
            "IDENTITY",
            "LOCK",
            "LOG",
            "LOG.old.1700000000000000",
            "MANIFEST-000005",
            "OPTIONS-000007",
            "OPTIONS-000007.dbtmp",
            "000004.log",
            "000012.sst",
            "000001.dbtmp",
        ] {
            assert!(is_rocksdb_file(name), "{name}");
        }
        for name in [
            "notes.txt",
            ".sst",
            "a1.sst",
            "CURRENT2",
            "photos",
            "block",
            "12.sst.bak",
        ] {
            assert!(!is_rocksdb_file(name), "{name}");
        }
    }

    #[test]
    fn removing_a_kv_part_leaves_unrelated_files_and_link_targets_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("000004.log"), b"wal").unwrap();
        fs::write(target.join("notes.txt"), b"keep me").unwrap();
        let link = dir.path().join("db");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let part = Part::at(&link).unwrap();
        remove_kv_part(&link, &part, false).unwrap();
        assert!(!link.exists(), "the link goes");
        assert!(
            target.join("000004.log").exists(),
            "the target is untouched"
        );
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_kv_part(&link, &Part::at(&link).unwrap(), true).unwrap();
        assert!(
            !target.join("000004.log").exists(),
            "cleared when shown ours"
        );
        assert!(
            target.join("notes.txt").exists(),
            "unrelated files always stay"
        );
        assert_eq!(foreign_entries(&target).unwrap(), vec!["notes.txt"]);
    }
}
