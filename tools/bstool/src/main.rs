//! bstool: make, inspect and use bstore stores from the command line.
//!
//! A thin layer over bstore's public API: one file per group of subcommands under `cmd/`.
//! Commands that only look at a store open it read-only (nothing written, no lock taken, so they
//! work beside a running daemon); commands that change it open it exclusively. Every command
//! exits 0 on success; on failure it prints one line `bstool: error: ...` on stderr and exits 2
//! (`fsck` exits 1 when it completed and found errors). A closed stdout ends a command quietly
//! with its own status; bstool never panics.

mod bench;
mod cmd;
mod output;
mod size;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The library leaves the allocator to the program that links it (Ceph's daemons use tcmalloc);
/// bstool picks mimalloc: glibc's malloc was a seventh of the CPU of a small durable write,
/// half of it in consolidating free lists (docs/design.md, "Allocation").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use output::{Format, error_text, warn};

/// Make, inspect and use bstore object stores.
#[derive(Debug, Parser)]
#[command(name = "bstool", version, about)]
struct Cli {
    /// The store directory.
    #[arg(long, global = true)]
    path: Option<PathBuf>,
    /// Output format of results (default: JSON for records, lines for listings).
    #[arg(long, global = true, value_enum)]
    format: Option<Format>,
    /// Device I/O: io_uring when the kernel allows it, else pread/pwrite (auto); or insist.
    #[arg(long, global = true, value_enum, default_value_t = IoChoice::Auto)]
    io_backend: IoChoice,
    /// Print the store's events at this level and above to stderr (mount phases, replay,
    /// poisoning, slow transactions, deferred backpressure). Also read from BSTORE_LOG.
    #[arg(long, global = true, value_enum, env = "BSTORE_LOG")]
    log: Option<LogLevel>,
    #[command(subcommand)]
    command: Command,
}

/// The `--log` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Sends the store's events at this level and above to stderr.
    fn install(self) {
        let level = match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        };
        // A closed stderr loses the events, never the command.
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// The `--io-backend` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IoChoice {
    /// io_uring, falling back to pread/pwrite (with a warning) where it cannot be set up.
    Auto,
    /// io_uring or fail.
    Uring,
    /// pread/pwrite.
    Sync,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new store (refuses to overwrite a store, file system or partition table unless --force).
    Mkfs(cmd::mkfs::Args),
    /// Wipe a store (its label and its files), or the bstore label of a device.
    Zap(cmd::mkfs::ZapArgs),
    /// Print the device label (works on a live store, or on a device with --dev).
    ShowLabel(cmd::info::ShowLabelArgs),
    /// Print space accounting.
    Statfs,
    /// Print the free-space fragmentation score, as ceph-bluestore-tool does.
    FreeScore(cmd::free::ScoreArgs),
    /// List every free extent, as ceph-bluestore-tool does.
    FreeDump(cmd::free::DumpArgs),
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
    /// Set an extended attribute (value from the argument, a file or stdin).
    #[command(visible_alias = "set-attr")]
    Setattr(cmd::attrs::SetArgs),
    /// Write an extended attribute's value, verbatim, to stdout or a file.
    #[command(visible_alias = "get-attr")]
    Getattr(cmd::attrs::GetArgs),
    /// List an object's extended attributes (name and length).
    ListAttrs(cmd::objects::ObjectArgs),
    /// Remove an extended attribute.
    RmAttr(cmd::attrs::NameArgs),
    /// Set an omap key (creates collection and object; value from the argument, a file or stdin).
    #[command(visible_alias = "set-omap")]
    OmapSet(cmd::attrs::SetArgs),
    /// Write an omap value, verbatim, to stdout or a file.
    #[command(visible_alias = "get-omap")]
    OmapGet(cmd::attrs::GetArgs),
    /// Remove an omap key.
    #[command(visible_alias = "rm-omap")]
    OmapRm(cmd::attrs::NameArgs),
    /// List omap keys and values, escaped, one per line (`key<TAB>value`).
    #[command(visible_alias = "list-omap")]
    OmapList(cmd::objects::ObjectArgs),
    /// Write the omap header, verbatim, to stdout or a file.
    #[command(visible_alias = "get-omaphdr")]
    OmapHeader(cmd::attrs::HeaderGetArgs),
    /// Set the omap header (creates collection and object).
    #[command(visible_alias = "set-omaphdr")]
    OmapSetHeader(cmd::attrs::HeaderSetArgs),
    /// Check the store offline (read-only; the store must be stopped); exit 0 when clean, 1
    /// when errors were found. --deep also reads every referenced byte and verifies it.
    Fsck(cmd::fsck::Args),
    /// Repair a stopped store from its object metadata: rebuild the freelist, statistics,
    /// shared-blob counts and id counters, remove keys no object owns; exit 0 when clean after.
    Repair(cmd::repair::Args),
    /// Verify every referenced byte of a stopped store against its checksums (fsck --deep,
    /// reporting the data only); exit 0 when clean, 1 when bad chunks were found.
    Scrub(cmd::fsck::ScrubArgs),
    /// Check an export stream without importing it (no store needed); exit 0 when it is
    /// whole and valid, 1 when it is not.
    VerifyExport(cmd::export::VerifyArgs),
    /// Write a consistent stream of the store's collections (the store is only read), for
    /// backup or to move collections to another store.
    Export(cmd::export::ExportArgs),
    /// Import an export stream: each collection appears whole once the stream has verified,
    /// or the store is left as it was.
    Import(cmd::export::ImportArgs),
    /// Compare this store with another store or an export stream, object by object (names,
    /// sizes, bytes, xattrs, omap); exit 0 when equal, 1 when not.
    Diff(cmd::diff::Args),
    /// Benchmark bstore end to end (with no --path or --device: a temporary 8 GiB store).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version land here too; printing them must not panic on a closed pipe.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    if let Some(level) = cli.log {
        level.install();
    }
    match run(&cli) {
        Ok(code) => code,
        Err(message) => {
            warn(&format!("error: {message}"));
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> CmdResult {
    match &cli.command {
        Command::Mkfs(args) => cmd::mkfs::run(cli, args),
        Command::Zap(args) => cmd::mkfs::zap(cli, args),
        Command::ShowLabel(args) => cmd::info::show_label(cli, args),
        Command::Statfs => cmd::info::statfs(cli),
        Command::FreeScore(args) => cmd::free::score(cli, args),
        Command::FreeDump(args) => cmd::free::dump(cli, args),
        Command::Put(args) => cmd::objects::put(cli, args),
        Command::Get(args) => cmd::objects::get(cli, args),
        Command::Rm(args) => cmd::objects::rm(cli, args),
        Command::Ls(args) => cmd::objects::ls(cli, args),
        Command::Write(args) => cmd::objects::write(cli, args),
        Command::Read(args) => cmd::objects::read(cli, args),
        Command::Stat(args) => cmd::objects::stat(cli, args),
        Command::Clone(args) => cmd::clone::clone(cli, args),
        Command::CloneRange(args) => cmd::clone::clone_range(cli, args),
        Command::Setattr(args) => cmd::attrs::setattr(cli, args),
        Command::Getattr(args) => cmd::attrs::getattr(cli, args),
        Command::ListAttrs(args) => cmd::attrs::list_attrs(cli, args),
        Command::RmAttr(args) => cmd::attrs::rm_attr(cli, args),
        Command::OmapSet(args) => cmd::attrs::omap_set(cli, args),
        Command::OmapGet(args) => cmd::attrs::omap_get(cli, args),
        Command::OmapRm(args) => cmd::attrs::omap_rm(cli, args),
        Command::OmapList(args) => cmd::attrs::omap_list(cli, args),
        Command::OmapHeader(args) => cmd::attrs::omap_header(cli, args),
        Command::OmapSetHeader(args) => cmd::attrs::omap_set_header(cli, args),
        Command::Fsck(args) => cmd::fsck::run(cli, args),
        Command::Repair(args) => cmd::repair::run(cli, args),
        Command::Scrub(args) => cmd::fsck::run_scrub(cli, args),
        Command::VerifyExport(args) => cmd::export::verify(cli, args),
        Command::Export(args) => cmd::export::export(cli, args),
        Command::Import(args) => cmd::export::import(cli, args),
        Command::Diff(args) => cmd::diff::run(cli, args),
        Command::Bench(args) => bench::run(cli, args),
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

    /// The output format: `--format`, else the command's own default.
    fn format_or(&self, default: Format) -> Format {
        self.format.unwrap_or(default)
    }

    /// Open options with the chosen I/O backend.
    fn open_options(&self) -> bstore::OpenOptions {
        bstore::OpenOptions::default().with_io_backend(self.io_backend())
    }

    /// The `--io-backend` choice as the library's.
    fn io_backend(&self) -> bstore::device::IoBackend {
        use bstore::device::{IoBackend, QUEUE_DEPTH_DEFAULT};
        match self.io_backend {
            IoChoice::Auto => IoBackend::Auto {
                queue_depth: QUEUE_DEPTH_DEFAULT,
            },
            IoChoice::Uring => IoBackend::IoUring {
                queue_depth: QUEUE_DEPTH_DEFAULT,
            },
            IoChoice::Sync => IoBackend::Sync,
        }
    }

    /// Opens the store at `--path` to change it (exclusively).
    fn open_store(&self) -> Result<bstore::Store, String> {
        let path = self.store_path()?;
        let store = bstore::Store::open(path, &self.open_options())
            .map_err(|e| format!("opening {}: {}", path.display(), error_text(e)))?;
        warn_fallback(&store);
        Ok(store)
    }

    /// Opens the store at `--path` only to look at it: nothing is written and no lock is
    /// taken, so this works beside a daemon that has the store open.
    fn inspect_store(&self) -> Result<bstore::Store, String> {
        let path = self.store_path()?;
        let store = bstore::Store::open_read_only(path, &self.open_options())
            .map_err(|e| format!("opening {} read-only: {}", path.display(), error_text(e)))?;
        warn_fallback(&store);
        Ok(store)
    }
}

fn warn_fallback(store: &bstore::Store) {
    if let Some(why) = store.io_fallback() {
        warn(&format!("warning: {why}"));
    }
}

/// A command-line argument as the bytes it is (names and keys need not be UTF-8).
fn arg_bytes(arg: &OsString) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    arg.as_bytes()
}
