//! `bstool free-score` and `bstool free-dump`, in ceph-bluestore-tool's output format.
//!
//! Both accept Ceph's `--allocator block` (operators' scripts pass it); bstore has only the
//! block device's allocator (RocksDB lives on a file system, not on BlueFS), so any other name
//! is refused. The score's formula is named in the output (`fragmentation_formula`, a field
//! Ceph's parsers ignore), because Reef's form and Pacific's differ by orders of magnitude on
//! the same free space. The default is Reef's: it is the formula of every Ceph release since 18
//! (Ceph PR #49885), and the one whose 0..1 range means what its name says.

use std::process::ExitCode;

use bstore::ScoreVariant;
use bstore::format_g17;
use serde_json::json;

use crate::output::{Format, Out, error_text, human_bytes, pretty};
use crate::{Cli, CmdResult};

/// Which form of Ceph's formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// Reef and later (Ceph 18+, PR #49885): the default.
    Reef,
    /// Pacific and earlier (Ceph 16 and older): for comparing with older fleets.
    Pacific,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Reef => "reef",
            Variant::Pacific => "pacific",
        }
    }
}

/// Ceph's `--allocator` names; bstore has one allocator, the block device's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Allocator {
    /// The data device's allocator.
    Block,
    /// BlueFS's WAL allocator (Ceph only).
    BluefsWal,
    /// BlueFS's DB allocator (Ceph only).
    BluefsDb,
    /// BlueFS's slow allocator (Ceph only).
    BluefsSlow,
}

/// Arguments of `free-score`.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Which form of Ceph's fragmentation formula to use.
    #[arg(long, value_enum, default_value_t = Variant::Reef)]
    variant: Variant,
    /// Which allocator (as ceph-bluestore-tool; only `block` exists in bstore).
    #[arg(long, value_enum, default_value_t = Allocator::Block)]
    allocator: Allocator,
}

/// Arguments of `free-dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Which allocator (as ceph-bluestore-tool; only `block` exists in bstore).
    #[arg(long, value_enum, default_value_t = Allocator::Block)]
    allocator: Allocator,
}

fn check_allocator(allocator: Allocator) -> Result<(), String> {
    match allocator {
        Allocator::Block => Ok(()),
        _ => Err(
            "bstore has only the block allocator (its RocksDB lives on a file system, not on \
             BlueFS): use --allocator block"
                .to_string(),
        ),
    }
}

/// Prints `block:` then `{"fragmentation_rating": <score>, "fragmentation_formula": ...}`.
pub fn score(cli: &Cli, args: &ScoreArgs) -> CmdResult {
    check_allocator(args.allocator)?;
    let store = cli.inspect_store()?;
    let variant = match args.variant {
        Variant::Reef => ScoreVariant::Reef,
        Variant::Pacific => ScoreVariant::Pacific,
    };
    let rating = format_g17(store.fragmentation_score(variant));
    let mut out = Out::new();
    match cli.format_or(Format::Json) {
        Format::Json => {
            out.line("block:")?;
            out.line(&format!(
                "{{\n    \"fragmentation_rating\": {rating},\n    \"fragmentation_formula\": \"{}\"\n}}",
                args.variant.name()
            ))?;
        }
        Format::Text => out.line(&format!(
            "block: fragmentation_rating {rating} ({} formula)",
            args.variant.name()
        ))?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `block:` then the allocator dump: capacity, unit, type, name and every free extent
/// (text: one extent per line, `offset length (size)`).
pub fn dump(cli: &Cli, args: &DumpArgs) -> CmdResult {
    check_allocator(args.allocator)?;
    let store = cli.inspect_store()?;
    let capacity = store.statfs().map_err(error_text)?.total_bytes;
    let alloc_unit = store.label().min_alloc_size;
    let extents = store.free_extents();
    let mut out = Out::new();
    match cli.format_or(Format::Json) {
        Format::Json => {
            let listed: Vec<_> = extents
                .iter()
                .map(|e| json!({"offset": format!("{:#x}", e.offset), "length": format!("{:#x}", e.length)}))
                .collect();
            let value = json!({
                "capacity": capacity,
                "alloc_unit": alloc_unit,
                "alloc_type": "bitmap",
                "alloc_name": "block",
                "extents": listed,
            });
            out.line("block:")?;
            out.line(&pretty(&value))?;
        }
        Format::Text => {
            out.line(&format!("capacity: {capacity} ({})", human_bytes(capacity)))?;
            out.line(&format!(
                "alloc_unit: {alloc_unit} ({})",
                human_bytes(u64::from(alloc_unit))
            ))?;
            out.line("alloc_type: bitmap")?;
            out.line("alloc_name: block")?;
            for extent in &extents {
                if out.is_closed() {
                    break;
                }
                out.line(&format!(
                    "{:#x} {:#x} ({})",
                    extent.offset,
                    extent.length,
                    human_bytes(extent.length)
                ))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
