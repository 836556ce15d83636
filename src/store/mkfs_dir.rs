//! Making a store in a directory, and wiping one, without destroying what the store did not make.
//!
//! mkfs is careful in three ways an operator relies on:
//! - **Foreign data is refused.** A device (or image) that holds a file system, a partition
//!   table, an LVM or MD member, a Ceph OSD or another bstore store is refused, naming what was
//!   found, unless `force`; with `force` those signatures are wiped, so no tool mistakes the
//!   device for its old self afterwards.
//! - **It minds its own business.** A `--db-dir`/`--wal-dir` must be new or empty, outside any
//!   store directory, or (with `force`) the directory of the very store being replaced: the
//!   target of its own link, holding no database of another store. Replacing a store removes
//!   only its parts (see [`super::layout`]): RocksDB's own files, the `block` link or file;
//!   never an unrelated file, never what a symlink points to unless shown to be the store's.
//! - **Nothing is destroyed before every check passed, and a kill never blocks a plain retry.**
//!   The new store is built in `STORE_DIR/.mkfs/`, which first records the new store's uuid:
//!   that is the whole of what happens before the checks (the geometry, the device's
//!   signatures, the directories), which need the new block file or link to look at. Only
//!   then are an old store's parts removed (`block` last) and the new parts made, each
//!   `--db-dir`/`--wal-dir` claimed with the uuid before RocksDB writes there; the store is
//!   moved into place with `block` last (the entry whose presence makes a directory a store).
//!   A retry reuses the recorded uuid, knows the label the interrupted run may have written
//!   for its own, and clears a directory only if it carries that run's claim.

use std::path::{Path, PathBuf};

use super::layout::{
    CLAIM_NAME, Part, StoreDir, enclosing_store, entries, foreign_entries, is_empty_dir,
    read_claim, read_uuid_file, remove_claim, remove_kv_part, remove_link_or_file,
    remove_rocksdb_files, sync_dir, write_claim, write_uuid_file,
};
use super::mkfs::{format_uuid, mkfs_on, plan_superblock, random_uuid};
use super::open::{open_device, open_device_waiting};
use super::options::{BlockSource, MkfsOptions};
use crate::device::probe::{Signature, probe};
use crate::device::{Access, AlignedBuf, BlockDevice, IoBackend};
use crate::error::{Error, Result};
use crate::format::LABEL_LENGTH;
use crate::format::keys::{KeySpace, SUPERBLOCK_KEY};
use crate::format::label::{Label, LabelError};
use crate::format::records::Superblock;
use crate::kv::{Kv, KvOpenMode, RocksKv};

/// Rounds of probe-and-wipe with `force`: a format that repeats its magic (ZFS keeps four
/// labels) is found again until every copy is gone.
const WIPE_ROUNDS_MAX: usize = 8;

/// Name of the file in the staging directory that holds the uuid of the store being made.
const STAGING_UUID_NAME: &str = "store_uuid";

/// Makes a store in a directory (see [`MkfsOptions`] and the module comment).
pub fn mkfs(options: &MkfsOptions) -> Result<()> {
    let dir = StoreDir::create_and_lock(&options.path)?;
    let existing = Existing::inspect(&dir)?;
    if let Some(existing) = &existing {
        if !options.force {
            return Err(Error::AlreadyExists(format!(
                "{} already holds {} (use --force to replace it)",
                options.path.display(),
                existing.describe()
            )));
        }
        existing.check_removable(&dir)?;
    }
    let staging = Staging::prepare(&dir, options.format.store_uuid)?;
    let made = staging.build(&dir, options, existing);
    if made.is_err() {
        staging.abandon();
    }
    made
}

/// Wipes the store in `path`: its label when the label is its own (the store's database names
/// the same uuid), then its parts by the rules of [`super::layout`]. The directory itself stays
/// (it may be a mount point). Says whose label it wiped, and whose it left.
pub fn zap(path: &Path) -> Result<ZapReport> {
    let dir = StoreDir::lock(path)?;
    dir.require_store()?;
    let existing = Existing::inspect(&dir)?
        .ok_or_else(|| Error::NotFormatted(format!("{}: no store here", path.display())))?;
    existing.check_removable(&dir)?;
    let owned = existing.owns_kv_dirs();
    let report = ZapReport {
        label_wiped: existing.label_uuid.filter(|_| owned),
        label_left: existing.label_uuid.filter(|_| !owned),
    };
    if owned {
        zap_device(&dir.block())?;
    }
    remove_kv_part(&dir.db(), &existing.db, owned)?;
    remove_kv_part(&dir.wal(), &existing.wal, owned)?;
    remove_link_or_file(&dir.block())?;
    dir.sync()?;
    Ok(report)
}

/// What [`zap`] did to the device's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZapReport {
    /// The store whose label was zeroed.
    pub label_wiped: Option<[u8; 16]>,
    /// A label left alone because the device now belongs to another store (its uuid differs
    /// from the one the directory's database names).
    pub label_left: Option<[u8; 16]>,
}

/// Zeroes the bstore label of the device or file at `path` (its data stays, unreachable).
/// Refuses a device that does not carry a bstore label: zap never wipes what bstore did not
/// write. Returns the uuid of the store the label belonged to, when it was readable.
pub fn zap_device(path: &Path) -> Result<Option<[u8; 16]>> {
    let device = open_device_waiting(path, IoBackend::Sync)?;
    let first = device.read_at(0, LABEL_LENGTH)?;
    let uuid = match Label::decode(&first) {
        Ok(label) => Some(label.store_uuid),
        Err(LabelError::Corrupt(_) | LabelError::Newer { .. }) => None,
        Err(LabelError::Blank) => {
            return Err(Error::NotFormatted(format!(
                "{}: no label to zap",
                path.display()
            )));
        }
        Err(LabelError::Foreign { found }) => {
            return Err(Error::ForeignDevice(format!(
                "{} starts with {found:?}, not a bstore label: zap wipes only bstore labels",
                path.display()
            )));
        }
    };
    device.write_at(0, AlignedBuf::zeroed(LABEL_LENGTH))?;
    // Durability point: once this flush returns the device no longer claims to be a store.
    device.flush()?;
    Ok(uuid)
}

/// The parts of a store found in its directory before mkfs replaces it (or zap removes it).
struct Existing {
    block: Part,
    db: Part,
    wal: Part,
    /// The uuid in the block's label, when it has a valid one.
    label_uuid: Option<[u8; 16]>,
    /// The uuid in the database's superblock, when it has one.
    db_uuid: Option<[u8; 16]>,
}

impl Existing {
    /// What stands in `dir`; `None` when nothing of a store does. Without `block` and with a
    /// staging directory, the directory holds an interrupted mkfs, whose parts are not a store
    /// (the retry removes them, see [`Staging::prepare`]). An empty `db/` directory, as an old
    /// failed mkfs left, is removed on the way: it holds nothing.
    fn inspect(dir: &StoreDir) -> Result<Option<Existing>> {
        let block = Part::at(&dir.block())?;
        if !block.exists() && Part::at(&dir.staging())?.exists() {
            return Ok(None);
        }
        let (mut db, wal) = (Part::at(&dir.db())?, Part::at(&dir.wal())?);
        if db == Part::Dir && is_empty_dir(&dir.db())? {
            std::fs::remove_dir(dir.db())
                .map_err(|e| Error::io(format!("removing {}", dir.db().display()), e))?;
            db = Part::Missing;
        }
        if !block.exists() && !db.exists() && !wal.exists() {
            return Ok(None);
        }
        let label_uuid = match block {
            Part::File | Part::Symlink { .. } => read_label_uuid(&dir.block()),
            _ => None,
        };
        let wal_dir = wal.directory(&dir.wal());
        let db_uuid = db
            .directory(&dir.db())
            .and_then(|db_dir| read_superblock_uuid(&db_dir, wal_dir.as_deref()));
        Ok(Some(Existing {
            block,
            db,
            wal,
            label_uuid,
            db_uuid,
        }))
    }

    /// "a store (uuid ...)", or what little can be said of leftovers.
    fn describe(&self) -> String {
        match (self.label_uuid, self.db_uuid) {
            (Some(uuid), _) => format!("store {}", format_uuid(&uuid)),
            (None, Some(uuid)) => format!("the metadata of store {}", format_uuid(&uuid)),
            (None, None) => "the remains of a store".to_string(),
        }
    }

    /// True when the label and the database name the same store: then the directories behind
    /// `db` and `wal` links are this store's own and may be cleared.
    fn owns_kv_dirs(&self) -> bool {
        self.label_uuid.is_some() && self.label_uuid == self.db_uuid
    }

    /// True when a `db`/`wal` link's directory may be reused for the store replacing this one:
    /// nothing in it shows it to be another store's (no readable superblock, or the one of the
    /// store whose label is here).
    fn may_reuse_kv_dirs(&self) -> bool {
        match (self.label_uuid, self.db_uuid) {
            (_, None) => true,
            (Some(label), Some(db)) => label == db,
            (None, Some(_)) => false,
        }
    }

    /// Refuses, before anything is removed, parts that are not a store's to remove.
    fn check_removable(&self, dir: &StoreDir) -> Result<()> {
        if matches!(self.block, Part::Dir | Part::Other) {
            return Err(Error::invalid(format!(
                "{} is neither a file nor a symlink: not a store's block; move it away",
                dir.block().display()
            )));
        }
        for (path, part) in [(dir.db(), &self.db), (dir.wal(), &self.wal)] {
            match part {
                Part::Dir => refuse_foreign_entries(&path)?,
                Part::File | Part::Other => {
                    return Err(Error::invalid(format!(
                        "{} is not a directory: not a store's; move it away",
                        path.display()
                    )));
                }
                Part::Missing | Part::Symlink { .. } => {}
            }
        }
        Ok(())
    }

    /// The part at `which`.
    fn kv_part(&self, which: KvPart) -> &Part {
        match which {
            KvPart::Db => &self.db,
            KvPart::Wal => &self.wal,
        }
    }

    /// Removes the parts (after [`Existing::check_removable`]), `block` last. A linked
    /// directory is cleared only when the new store reuses it (which [`plan_kv_dir`] allowed
    /// only for this store's own); otherwise only the link goes.
    fn remove(
        self,
        dir: &StoreDir,
        db_plan: &Option<KvDir>,
        wal_plan: &Option<KvDir>,
    ) -> Result<()> {
        let reused = |plan: &Option<KvDir>| matches!(plan, Some(KvDir::Reuse(_)));
        remove_kv_part(&dir.db(), &self.db, reused(db_plan))?;
        remove_kv_part(&dir.wal(), &self.wal, reused(wal_plan))?;
        dir.sync()?;
        remove_link_or_file(&dir.block())?;
        dir.sync()
    }
}

fn refuse_foreign_entries(path: &Path) -> Result<()> {
    let foreign = foreign_entries(path)?;
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{} holds entries RocksDB did not make ({}): move them away first",
        path.display(),
        listing(&foreign)
    )))
}

/// Which RocksDB directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KvPart {
    Db,
    Wal,
}

impl KvPart {
    fn flag(self) -> &'static str {
        match self {
            KvPart::Db => "--db-dir",
            KvPart::Wal => "--wal-dir",
        }
    }

    fn name(self) -> &'static str {
        match self {
            KvPart::Db => "db",
            KvPart::Wal => "wal",
        }
    }
}

/// Where a linked `db` or `wal` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KvDir {
    /// A new or empty directory (or one carrying only this mkfs's own claim and debris).
    Fresh(PathBuf),
    /// The directory of the store being replaced (cleared of its RocksDB files first).
    Reuse(PathBuf),
}

impl KvDir {
    fn path(&self) -> &Path {
        match self {
            KvDir::Fresh(path) | KvDir::Reuse(path) => path,
        }
    }
}

/// Checks a `--db-dir` or `--wal-dir` before anything is destroyed. `claimant` is the uuid of
/// the store being made: a directory an interrupted attempt claimed for it may be taken again.
fn plan_kv_dir(
    which: KvPart,
    given: Option<&Path>,
    dir: &StoreDir,
    existing: Option<&Existing>,
    claimant: &[u8; 16],
) -> Result<Option<KvDir>> {
    let Some(given) = given else { return Ok(None) };
    let flag = which.flag();
    let target = absolute(given)?;
    let store = std::fs::canonicalize(dir.path())
        .map_err(|e| Error::io(format!("resolving {}", dir.path().display()), e))?;
    if target.starts_with(&store) {
        return Err(Error::invalid(format!(
            "{flag} {} lies inside the store directory {}: give a directory elsewhere",
            given.display(),
            dir.path().display()
        )));
    }
    if let Some(other) = enclosing_store(&target) {
        return Err(Error::invalid(format!(
            "{flag} {} lies inside the store directory {}: give a directory outside any store",
            given.display(),
            other.display()
        )));
    }
    match Part::at(&target)? {
        Part::Missing => return Ok(Some(KvDir::Fresh(target))),
        Part::Dir | Part::Symlink { .. } if target.is_dir() => {}
        _ => {
            return Err(Error::invalid(format!(
                "{flag} {} is not a directory",
                given.display()
            )));
        }
    }
    if is_empty_dir(&target)? {
        return Ok(Some(KvDir::Fresh(target)));
    }
    if read_claim(&target) == Some(*claimant) {
        // An interrupted attempt at this same store claimed it: what is there is its own.
        refuse_foreign_entries(&target)?;
        return Ok(Some(KvDir::Fresh(target)));
    }
    if is_torn_claim_alone(&target)? {
        // An attempt killed while it wrote its claim (the file is created empty, then
        // written): nothing else was put there, and the claim names no store.
        return Ok(Some(KvDir::Fresh(target)));
    }
    let linked_here = existing.is_some_and(|e| {
        *e.kv_part(which)
            == Part::Symlink {
                target: target.clone(),
            }
            && e.may_reuse_kv_dirs()
    });
    if linked_here {
        refuse_foreign_entries(&target)?;
        return Ok(Some(KvDir::Reuse(target)));
    }
    Err(Error::AlreadyExists(format!(
        "{flag} {} {}: give a new or empty directory",
        given.display(),
        describe_non_empty(which, &target)?
    )))
}

/// True when `dir` holds nothing but a claim file that does not read as one.
fn is_torn_claim_alone(dir: &Path) -> Result<bool> {
    let names: Vec<String> = entries(dir)?.into_iter().map(|(name, _)| name).collect();
    Ok(names == [CLAIM_NAME] && read_claim(dir).is_none())
}

fn describe_non_empty(which: KvPart, target: &Path) -> Result<String> {
    if which == KvPart::Db
        && let Some(uuid) = read_superblock_uuid(target, None)
    {
        return Ok(format!(
            "holds the metadata of store {} (not of a store being replaced here)",
            format_uuid(&uuid)
        ));
    }
    let mut names: Vec<String> = std::fs::read_dir(target)
        .map_err(|e| Error::io(format!("listing {}", target.display()), e))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(format!("is not empty ({})", listing(&names)))
}

/// At most five names, then how many more.
fn listing(names: &[String]) -> String {
    let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    match names.len() {
        0..=5 => shown,
        n => format!("{shown} and {} more", n - 5),
    }
}

/// `path` made absolute without requiring it to exist (its parent chain is resolved where it
/// exists, so a symlinked parent cannot hide that the path lies in the store).
fn absolute(path: &Path) -> Result<PathBuf> {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return Ok(canonical);
    }
    let absolute = std::path::absolute(path)
        .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while let Some(parent) = existing.parent() {
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = parent;
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return Ok(rest
                .iter()
                .rev()
                .fold(canonical, |path, name| path.join(name)));
        }
    }
    Ok(absolute)
}

/// Refuses a `--block` inside the store directory (the store's own `block` file would be
/// deleted under it).
fn check_block_outside(path: &Path, dir: &StoreDir) -> Result<PathBuf> {
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
    let store = std::fs::canonicalize(dir.path())
        .map_err(|e| Error::io(format!("resolving {}", dir.path().display()), e))?;
    if resolved.starts_with(&store) {
        return Err(Error::invalid(format!(
            "--block {} lies inside the store directory: give a device or a file elsewhere \
             (or --size to make the store's own block file)",
            path.display()
        )));
    }
    Ok(resolved)
}

/// Every signature on `device` except a bstore label of `ours` (the store being made, whose
/// label an interrupted attempt may have written).
fn signatures_not_ours(device: &dyn BlockDevice, ours: &[u8; 16]) -> Result<Vec<Signature>> {
    let label_uuid = Label::decode(&device.read_at(0, LABEL_LENGTH)?)
        .ok()
        .map(|label| label.store_uuid);
    let ours_at_start = label_uuid == Some(*ours);
    Ok(probe(device)?
        .into_iter()
        .filter(|s| !(ours_at_start && s.name == "bstore" && s.device_offset == 0))
        .collect())
}

fn refusal(device: &dyn BlockDevice, found: &[Signature]) -> Error {
    let path = device.info().path.display();
    let what: Vec<String> = found.iter().map(describe_signature).collect();
    let message = format!(
        "{path} holds {}: mkfs refuses to overwrite it (use --force to destroy it)",
        what.join(" and ")
    );
    if found.iter().all(|s| s.name == "bstore") {
        Error::AlreadyExists(message)
    } else {
        Error::ForeignDevice(message)
    }
}

/// "a ext4 signature at offset 0x438 (UUID ...)"-style text for one signature.
fn describe_signature(signature: &Signature) -> String {
    let detail = if signature.detail.is_empty() {
        String::new()
    } else {
        format!(" ({})", signature.detail)
    };
    format!(
        "a {} signature at offset {:#x}{detail}",
        signature.name, signature.device_offset
    )
}

/// Zeroes the block holding each signature found (a label of `keep` aside, which mkfs
/// overwrites anyway), round after round until the probe finds nothing more.
fn wipe_signatures(device: &dyn BlockDevice, keep: &[u8; 16]) -> Result<()> {
    let sector = u64::from(device.info().logical_block_size);
    let block = sector.max(LABEL_LENGTH as u64);
    let size = device.info().size_bytes / sector * sector;
    for _ in 0..WIPE_ROUNDS_MAX {
        let found = signatures_not_ours(device, keep)?;
        if found.is_empty() {
            return Ok(());
        }
        for signature in found {
            let start = signature.device_offset / block * block;
            let length = block.min(size.saturating_sub(start)) / sector * sector;
            if length > 0 {
                device.write_at(start, AlignedBuf::zeroed(length as usize))?;
            }
        }
        device.flush()?;
    }
    Err(Error::ForeignDevice(format!(
        "{}: signatures remain after {WIPE_ROUNDS_MAX} rounds of wiping",
        device.info().path.display()
    )))
}

/// The label's store uuid of the block at `path`, read without locking or writing.
fn read_label_uuid(path: &Path) -> Option<[u8; 16]> {
    let device = open_device(path, IoBackend::Sync, Access::ReadOnly)
        .ok()?
        .device;
    let bytes = device.read_at(0, LABEL_LENGTH).ok()?;
    Label::decode(&bytes).ok().map(|label| label.store_uuid)
}

/// The store uuid in the superblock of the RocksDB in `db_dir`, read without writing.
fn read_superblock_uuid(db_dir: &Path, wal_dir: Option<&Path>) -> Option<[u8; 16]> {
    let kv = RocksKv::open(db_dir, wal_dir, KvOpenMode::ReadOnly).ok()?;
    let value = kv.get(KeySpace::Super, SUPERBLOCK_KEY).ok()??;
    Superblock::decode(&value).ok().map(|s| s.store_uuid)
}

/// The store mkfs is building: `STORE_DIR/.mkfs/`, named by the uuid it will carry.
struct Staging {
    path: PathBuf,
    store_uuid: [u8; 16],
    /// The uuid came from an interrupted attempt, whose label may be on the device.
    inherited: bool,
}

impl Staging {
    /// The staging directory for a new attempt: an interrupted attempt's is cleared of what it
    /// made and its uuid kept (unless `explicit_uuid` names another); otherwise a new one
    /// records `explicit_uuid` or a random uuid. An interrupted attempt's parts already moved
    /// out (`db`, `wal`: no `block` made it) go too. Destroys only what such attempts made.
    fn prepare(dir: &StoreDir, explicit_uuid: Option<[u8; 16]>) -> Result<Staging> {
        let path = dir.staging();
        let leftover = match Part::at(&path)? {
            Part::Missing => None,
            Part::Dir => Some(read_uuid_file(&path.join(STAGING_UUID_NAME))),
            _ => {
                return Err(Error::invalid(format!(
                    "{} is not a directory mkfs made; move it away",
                    path.display()
                )));
            }
        };
        let finished = Part::at(&dir.block())?.exists();
        if let Some(Some(uuid)) = leftover {
            discard_attempt(&path, &uuid)?;
            if !finished {
                discard_attempt(dir.path(), &uuid)?;
            }
        }
        let inherited_uuid = leftover.flatten().filter(|_| !finished);
        let store_uuid = match explicit_uuid.or(inherited_uuid) {
            Some(uuid) => uuid,
            None => random_uuid()?,
        };
        if leftover.is_none() {
            std::fs::create_dir(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        write_uuid_file(&path.join(STAGING_UUID_NAME), &store_uuid)?;
        sync_dir(&path)?;
        dir.sync()?;
        Ok(Staging {
            path,
            store_uuid,
            inherited: inherited_uuid == Some(store_uuid),
        })
    }

    /// Checks, then (only then) removes what is replaced and makes the new store.
    fn build(
        &self,
        dir: &StoreDir,
        options: &MkfsOptions,
        existing: Option<Existing>,
    ) -> Result<()> {
        let plan = |which, given: &Option<PathBuf>| {
            plan_kv_dir(
                which,
                given.as_deref(),
                dir,
                existing.as_ref(),
                &self.store_uuid,
            )
        };
        let db_plan = plan(KvPart::Db, &options.db_dir)?;
        let wal_plan = plan(KvPart::Wal, &options.wal_dir)?;
        if let BlockSource::Device(device) = &options.block {
            check_block_outside(device, dir)?;
        }
        let block = self.make_block(&options.block)?;
        let device = open_device(&block, options.io_backend, Access::ReadWrite)?.device;
        plan_superblock(device.as_ref(), &self.format(options))?;
        let found = signatures_not_ours(device.as_ref(), &self.store_uuid)?;
        if !found.is_empty() && !options.force {
            return Err(refusal(device.as_ref(), &found));
        }
        // Every check passed: from here on, what is replaced is destroyed.
        if let Some(existing) = existing {
            existing.remove(dir, &db_plan, &wal_plan)?;
        }
        let db = self.make_kv_dir(KvPart::Db, db_plan.as_ref())?;
        let wal = match &wal_plan {
            Some(plan) => Some(self.make_kv_dir(KvPart::Wal, Some(plan))?),
            None => None,
        };
        wipe_signatures(device.as_ref(), &self.store_uuid)?;
        let kv = RocksKv::open(&db, wal.as_deref(), KvOpenMode::Create)?;
        mkfs_on(device.as_ref(), &kv, &self.format(options))?;
        drop(kv);
        drop(device);
        self.publish(dir, [&db_plan, &wal_plan])
    }

    fn format(&self, options: &MkfsOptions) -> super::options::FormatOptions {
        let mut format = options.format.clone();
        format.store_uuid = Some(self.store_uuid);
        format
    }

    /// `.mkfs/block`: a sparse file, or a symlink to the device.
    fn make_block(&self, source: &BlockSource) -> Result<PathBuf> {
        let block = self.path.join("block");
        let made = match source {
            BlockSource::File { size_bytes } => {
                std::fs::File::create_new(&block).and_then(|file| file.set_len(*size_bytes))
            }
            BlockSource::Device(device) => std::fs::canonicalize(device)
                .and_then(|target| std::os::unix::fs::symlink(target, &block)),
        };
        made.map_err(|e| Error::io(format!("creating {}", block.display()), e))?;
        Ok(block)
    }

    /// `.mkfs/<db|wal>`: a directory, or a symlink to the planned one, which is claimed for the
    /// new store first (and cleared, when it is the replaced store's or an earlier attempt's).
    fn make_kv_dir(&self, which: KvPart, plan: Option<&KvDir>) -> Result<PathBuf> {
        let link = self.path.join(which.name());
        let Some(plan) = plan else {
            std::fs::create_dir(&link)
                .map_err(|e| Error::io(format!("creating {}", link.display()), e))?;
            return Ok(link);
        };
        let target = plan.path();
        std::fs::create_dir_all(target)
            .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
        write_claim(target, &self.store_uuid)?;
        remove_rocksdb_files(target)?;
        std::os::unix::fs::symlink(target, &link)
            .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
        Ok(link)
    }

    /// Moves the new store into place, `block` last, then lets go of the claims and the
    /// staging directory.
    fn publish(&self, dir: &StoreDir, plans: [&Option<KvDir>; 2]) -> Result<()> {
        for name in ["db", "wal", "block"] {
            let from = self.path.join(name);
            if !Part::at(&from)?.exists() {
                continue;
            }
            let to = dir.path().join(name);
            std::fs::rename(&from, &to).map_err(|e| {
                Error::io(format!("moving {} to {}", from.display(), to.display()), e)
            })?;
        }
        // Durability point: after this sync the store is in place; a crash before it may leave
        // the staging directory and the claims, which the next mkfs removes.
        dir.sync()?;
        for plan in plans.into_iter().flatten() {
            remove_claim(plan.path())?;
        }
        remove_staging_dir(&self.path)?;
        dir.sync()
    }

    /// After a failed attempt: removes what it made, keeping the uuid record only when a
    /// label of that uuid may be on the device (an interrupted attempt wrote it).
    fn abandon(&self) {
        // Best effort: the attempt's own error is what the caller reports.
        let _ = discard_attempt(&self.path, &self.store_uuid);
        if !self.inherited {
            let _ = remove_staging_dir(&self.path);
        }
    }
}

/// Removes the parts an attempt at the store `uuid` made under `root` (the staging directory,
/// or the store directory for parts already moved out): its `block` file or link, and its
/// `db`/`wal`; a linked directory is cleared only if it carries the attempt's claim.
fn discard_attempt(root: &Path, uuid: &[u8; 16]) -> Result<()> {
    for name in ["db", "wal"] {
        let path = root.join(name);
        let part = Part::at(&path)?;
        if part == Part::Dir {
            refuse_foreign_entries(&path)?;
        }
        let claimed = match &part {
            Part::Symlink { target } => target.is_dir() && read_claim(target) == Some(*uuid),
            _ => false,
        };
        if claimed && let Part::Symlink { target } = &part {
            refuse_foreign_entries(target)?;
        }
        remove_kv_part(&path, &part, claimed)?;
        if claimed && let Part::Symlink { target } = &part {
            remove_claim(target)?;
        }
    }
    if root.ends_with(super::layout::STAGING_NAME) {
        remove_link_or_file(&root.join("block"))?;
    }
    sync_dir(root)
}

/// Removes the uuid file and the (then empty) staging directory.
fn remove_staging_dir(staging: &Path) -> Result<()> {
    remove_link_or_file(&staging.join(STAGING_UUID_NAME))?;
    std::fs::remove_dir(staging).map_err(|e| {
        Error::io(
            format!(
                "removing {} (it should hold nothing more)",
                staging.display()
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_does_not_exist_is_made_absolute_through_its_existing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let resolved = absolute(&link.join("new/db")).unwrap();
        assert_eq!(
            resolved,
            std::fs::canonicalize(&real).unwrap().join("new/db")
        );
    }

    #[test]
    fn listings_are_bounded() {
        let names: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        assert_eq!(listing(&names[..2]), "f0, f1");
        assert_eq!(listing(&names), "f0, f1, f2, f3, f4 and 3 more");
    }
}
