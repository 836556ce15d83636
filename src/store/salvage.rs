//! Salvage: a store whose RocksDB will not read (one flipped byte in a table stops every scan)
//! made usable again, with an account of what survived.
//!
//! RocksDB's own repair moves the tables it cannot read aside (`db/lost/`) and rebuilds its
//! manifest from the rest; whatever those tables held is gone. bstore's repair then makes the
//! store consistent again from what is left (objects whose onode no longer decodes are removed,
//! space nothing references any more is freed), and the report names every object that
//! survived, every object that was lost and why, and how many vanished without a trace (their
//! onode records were in a lost table: the statistics still counted them). Salvage works on a
//! copy of the database unless told to work in place: the copy is a new store directory whose
//! `block` links to the original's data device, which salvage does not write.

#![cfg(feature = "rocksdb")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::layout::StoreDir;
use super::open::{self as device_open};
use super::{Store, open_kv};
use crate::device::{Access, IoBackend};
use crate::error::{Error, Result};
use crate::format::keys::{self, KeySpace};
use crate::format::records::CollectionRecord;
use crate::fsck::{RepairOptions, RepairReport, repair_with};
use crate::kv::{Kv, KvOpenMode, RocksKv};

/// Where salvage works.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SalvageTarget {
    /// A new store directory (must not exist): a repaired copy of the database, and a `block`
    /// link to the original data device. The original store is left as it was.
    Copy(PathBuf),
    /// The store itself: its database is repaired where it is, and its device may be written.
    InPlace,
}

/// What salvage did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The salvaged store's directory.
    pub store: PathBuf,
    /// Table files RocksDB could not read and moved to `db/lost/`.
    pub tables_lost: Vec<String>,
    /// Set when RocksDB's log could not be emptied into tables first: what it held may be
    /// lost (its files are in `db/lost/` too).
    pub log_warning: Option<String>,
    /// Every object that survived, as `collection/object`.
    pub survivors: Vec<String>,
    /// Objects whose metadata survived only in part, with why they were lost.
    pub lost: Vec<String>,
    /// Objects the statistics counted that no onode record names any more (`None` when the
    /// statistics record was lost too).
    pub vanished: Option<u64>,
    /// bstore's repair of what RocksDB kept.
    pub repair: RepairReport,
}

impl Store {
    /// Salvages the stopped store in `path` (see the module documentation).
    pub fn salvage(path: impl AsRef<Path>, target: &SalvageTarget) -> Result<SalvageReport> {
        let path = path.as_ref();
        let dir = StoreDir::lock(path)?;
        dir.require_store()?;
        let (work, _copy_lock) = match target {
            SalvageTarget::InPlace => (dir.path().to_path_buf(), None),
            SalvageTarget::Copy(copy) => {
                let locked = copy_store(&dir, copy)?;
                (copy.clone(), Some(locked))
            }
        };
        let work_dir = StoreDir::unlocked(&work)?;
        let lost_before = lost_tables(&work_dir.db());
        let log_warning = RocksKv::salvage(&work_dir.db(), work_dir.wal_if_present().as_deref())?;
        let tables_lost = lost_tables(&work_dir.db())
            .into_iter()
            .filter(|name| !lost_before.contains(name))
            .collect();

        let in_place = *target == SalvageTarget::InPlace;
        let access = if in_place {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let device = device_open::open_device(&work_dir.block(), IoBackend::Sync, access)?;
        let kv = open_kv(&work_dir, KvOpenMode::ReadWrite)?;
        let options = RepairOptions {
            dry_run: false,
            drop_lost: true,
        };
        let repair = repair_with(device.device.as_ref(), kv.as_ref(), options, in_place)?;
        let lost: Vec<String> = repair
            .repairs
            .iter()
            .filter(|r| r.what == "onode.lost")
            .map(|r| r.detail.clone())
            .collect();
        let survivors = object_names(kv.as_ref())?;
        // The statistics as they stood after the journal's replay: objects they count that
        // neither survived nor were named lost went with a table.
        let counted = repair.recorded_stats.map(|stats| stats.object_count);
        let vanished =
            counted.map(|count| count.saturating_sub((survivors.len() + lost.len()) as u64));
        Ok(SalvageReport {
            store: work,
            tables_lost,
            log_warning,
            survivors,
            lost,
            vanished,
            repair,
        })
    }
}

/// Makes `copy` a store directory holding a copy of `dir`'s database (and separate log, if
/// any) and a link to its data device; returns the copy's lock.
fn copy_store(dir: &StoreDir, copy: &Path) -> Result<StoreDir> {
    if fs::symlink_metadata(copy).is_ok() {
        return Err(Error::invalid(format!(
            "{} exists: salvage makes its copy in a new directory",
            copy.display()
        )));
    }
    let locked = StoreDir::create_and_lock(copy)?;
    copy_tree(&dir.db(), &locked.db())?;
    if let Some(wal) = dir.wal_if_present() {
        copy_tree(&wal, &locked.wal())?;
    }
    let block = fs::canonicalize(dir.block())
        .map_err(|e| Error::io(format!("resolving {}", dir.block().display()), e))?;
    std::os::unix::fs::symlink(&block, locked.block())
        .map_err(|e| Error::io(format!("linking {}", locked.block().display()), e))?;
    locked.sync()?;
    Ok(locked)
}

/// Copies the directory `from` (following a link to it) into a new directory `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let entries =
        fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        if source.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            fs::copy(&source, &target)
                .map_err(|e| Error::io(format!("copying {}", source.display()), e))?;
        }
    }
    super::layout::sync_dir(to)
}

/// Names of the tables in `db/lost/` (RocksDB's repair also archives there the old manifest
/// and its logs; those lose nothing once the log was flushed first, see `log_warning`).
fn lost_tables(db: &Path) -> Vec<String> {
    fs::read_dir(db.join("lost"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".sst"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every object, as `collection/object`.
fn object_names(kv: &dyn Kv) -> Result<Vec<String>> {
    let mut collections = BTreeMap::new();
    kv.scan(KeySpace::Collections, &[], None, &mut |name, value| {
        if let Ok(record) = CollectionRecord::decode(value) {
            collections.insert(record.collection_id, name.escape_ascii().to_string());
        }
        Ok(true)
    })?;
    let mut names = Vec::new();
    kv.scan(KeySpace::Onodes, &[], None, &mut |key, _| {
        if let Ok((id, name)) = keys::split_onode_key(key) {
            let collection = collections
                .get(&id)
                .cloned()
                .unwrap_or_else(|| id.to_string());
            names.push(format!("{collection}/{}", name.escape_ascii()));
        }
        Ok(true)
    })?;
    Ok(names)
}
