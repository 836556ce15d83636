//! Where a benchmark runs: a temporary file-backed store, a store made on a device, or an
//! existing store; plus a scratch directory on the same file system for the other engines.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::output::error_text;
use bstore::{BlockSource, JournalSize, MkfsOptions, Store};

/// A prepared benchmark location.
pub struct Target {
    /// The bstore store directory.
    pub store_dir: PathBuf,
    /// The store's data device or file (fio runs in its free space).
    pub block: PathBuf,
    /// Scratch space for the other engines (removed on drop).
    pub scratch: tempfile::TempDir,
    /// Human description, for the report.
    pub description: String,
}

/// Chooses and prepares the location.
/// `device` comes with whether to overwrite what it holds (`--force`).
pub fn prepare(
    existing: Option<&Path>,
    device: Option<(&Path, bool)>,
    size: u64,
    journal: JournalSize,
    scratch_parent: &Path,
) -> Result<Target, String> {
    let scratch = tempfile::Builder::new()
        .prefix("bstool-bench.")
        .tempdir_in(scratch_parent)
        .map_err(|e| {
            format!(
                "making a scratch directory in {}: {e}",
                scratch_parent.display()
            )
        })?;
    match (existing, device) {
        (Some(path), _) => Ok(Target {
            store_dir: path.to_path_buf(),
            block: std::fs::canonicalize(path.join("block")).map_err(error_text)?,
            description: format!("existing store {}", path.display()),
            scratch,
        }),
        (None, Some((device, force))) => {
            let store_dir = scratch.path().join("store");
            let mut options =
                MkfsOptions::new(&store_dir, BlockSource::Device(device.to_path_buf()));
            options.force = force;
            options.format.journal = journal;
            Store::mkfs(&options)
                .map_err(|e| format!("mkfs on {}: {}", device.display(), error_text(e)))?;
            Ok(Target {
                store_dir,
                block: device.to_path_buf(),
                description: format!(
                    "new store on {} ({})",
                    device.display(),
                    journal_note(journal)
                ),
                scratch,
            })
        }
        (None, None) => {
            let block = scratch.path().join("block.img");
            allocate_file(&block, size)?;
            let store_dir = scratch.path().join("store");
            let mut options = MkfsOptions::new(&store_dir, BlockSource::Device(block.clone()));
            options.format.journal = journal;
            Store::mkfs(&options)
                .map_err(|e| format!("mkfs on {}: {}", block.display(), error_text(e)))?;
            Ok(Target {
                store_dir,
                description: format!(
                    "temporary {} GiB file {} ({})",
                    size >> 30,
                    block.display(),
                    journal_note(journal)
                ),
                block,
                scratch,
            })
        }
    }
}

fn journal_note(journal: JournalSize) -> String {
    match journal {
        JournalSize::Auto => "commit journal: default size".into(),
        JournalSize::Bytes(bytes) => format!("commit journal: {bytes} bytes"),
        JournalSize::Disabled => "no commit journal: format 1".into(),
        other => format!("commit journal: {other:?}"),
    }
}

/// Creates a file of `size` bytes with its blocks allocated (fallocate), so the benchmark does
/// not measure the file system allocating a sparse file on first write (which halves figures).
fn allocate_file(path: &Path, size: u64) -> Result<(), String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("creating {}: {}", path.display(), error_text(e)))?;
    let length = libc::off_t::try_from(size).map_err(|_| "size too large".to_string())?;
    // SAFETY: the descriptor is open for writing; fallocate only allocates blocks.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "allocating {} bytes for {}: {error}",
            size,
            path.display()
        ));
    }
    Ok(())
}
