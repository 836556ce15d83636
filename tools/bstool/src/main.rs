//! bstool: make, inspect and use bstore stores from the command line.
//!
//! A thin layer over bstore's public API: one file per subcommand under `cmd/`. Every command
//! exits 0 on success; on failure it prints one line `bstool: error: ...` on stderr and exits 2
//! (`fsck` exits 1 when it completed and found errors).

mod bench;
mod cmd;
mod output;
mod size;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Format;

/// Make, inspect and use bstore object stores.
#[derive(Debug, Parser)]
#[command(name = "bstool", version, about)]
struct Cli {
    /// The store directory.
    #[arg(long, global = true)]
    path: Option<PathBuf>,
    /// Output format of structured results.
    #[arg(long, global = true, value_enum, default_value_t = Format::Json)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new store.
    Mkfs(cmd::mkfs::Args),
    /// Print the device label (JSON).
    ShowLabel,
    /// Print space accounting.
    Statfs,
    /// Print the free-space fragmentation score, as ceph-bluestore-tool does.
    FreeScore(cmd::free::ScoreArgs),
    /// List every free extent, as ceph-bluestore-tool does.
    FreeDump,
    /// Store an object from a file or stdin (creates the collection if missing).
    Put(cmd::objects::PutArgs),
    /// Write an object to a file or stdout.
    Get(cmd::objects::GetArgs),
    /// Remove an object.
    Rm(cmd::objects::ObjectArgs),
    /// List collections, or the objects of one collection.
    Ls(cmd::objects::LsArgs),
    /// Write a file or stdin into an object at an offset (creates collection and object).
    Write(cmd::objects::WriteArgs),
    /// Read part of an object to a file or stdout.
    Read(cmd::objects::ReadArgs),
    /// Print an object's size, space and extents.
    Stat(cmd::objects::ObjectArgs),
    /// Make TARGET a copy-on-write copy of SOURCE (data shared, xattrs and omap copied).
    Clone(cmd::clone::CloneArgs),
    /// Copy a range of SOURCE into TARGET copy-on-write (TARGET created if missing).
    CloneRange(cmd::clone::CloneRangeArgs),
    /// Set an extended attribute.
    Setattr(cmd::attrs::SetArgs),
    /// Print an extended attribute.
    Getattr(cmd::attrs::GetArgs),
    /// Set an omap key (creates collection and object).
    OmapSet(cmd::attrs::SetArgs),
    /// Print every omap key and value, tab-separated, one per line.
    OmapList(cmd::objects::ObjectArgs),
    /// Check the store offline; exit 0 when clean, 1 when errors were found.
    Fsck,
    /// Benchmark bstore end to end (with no --path or --device: a temporary 8 GiB store).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Mkfs(args) => cmd::mkfs::run(&cli, args),
        Command::ShowLabel => cmd::info::show_label(&cli),
        Command::Statfs => cmd::info::statfs(&cli),
        Command::FreeScore(args) => cmd::free::score(&cli, args),
        Command::FreeDump => cmd::free::dump(&cli),
        Command::Put(args) => cmd::objects::put(&cli, args),
        Command::Get(args) => cmd::objects::get(&cli, args),
        Command::Rm(args) => cmd::objects::rm(&cli, args),
        Command::Ls(args) => cmd::objects::ls(&cli, args),
        Command::Write(args) => cmd::objects::write(&cli, args),
        Command::Read(args) => cmd::objects::read(&cli, args),
        Command::Stat(args) => cmd::objects::stat(&cli, args),
        Command::Clone(args) => cmd::clone::clone(&cli, args),
        Command::CloneRange(args) => cmd::clone::clone_range(&cli, args),
        Command::Setattr(args) => cmd::attrs::setattr(&cli, args),
        Command::Getattr(args) => cmd::attrs::getattr(&cli, args),
        Command::OmapSet(args) => cmd::attrs::omap_set(&cli, args),
        Command::OmapList(args) => cmd::attrs::omap_list(&cli, args),
        Command::Fsck => cmd::fsck::run(&cli),
        Command::Bench(args) => bench::run(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("bstool: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// What a command returns: an exit code, or a one-line error.
type CmdResult = Result<ExitCode, String>;

impl Cli {
    /// The `--path` argument, required by every command that works on a store.
    fn store_path(&self) -> Result<&PathBuf, String> {
        self.path
            .as_ref()
            .ok_or_else(|| "--path STORE_DIR is required for this command".to_string())
    }

    /// Opens the store at `--path`.
    fn open_store(&self) -> Result<bstore::Store, String> {
        let path = self.store_path()?;
        bstore::Store::open(path, &bstore::OpenOptions::default())
            .map_err(|e| format!("opening {}: {e}", path.display()))
    }
}
