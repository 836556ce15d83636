//! `bstool free-score` and `bstool free-dump`, in ceph-bluestore-tool's output format.

use std::process::ExitCode;

use bstore::ScoreVariant;
use bstore::alloc::format_g17;
use serde_json::json;

use crate::output::pretty;
use crate::{Cli, CmdResult};

/// Which form of Ceph's formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// Reef and later (Ceph PR #49885).
    Reef,
    /// Pacific and earlier.
    Pacific,
}

/// Arguments of `free-score`.
#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Which form of Ceph's fragmentation formula to use.
    #[arg(long, value_enum, default_value_t = Variant::Reef)]
    variant: Variant,
}

/// Prints `block:` then `{"fragmentation_rating": <score>}`.
pub fn score(cli: &Cli, args: &ScoreArgs) -> CmdResult {
    let store = cli.open_store()?;
    let variant = match args.variant {
        Variant::Reef => ScoreVariant::Reef,
        Variant::Pacific => ScoreVariant::Pacific,
    };
    let rating = store.fragmentation_score(variant);
    store.close().map_err(|e| e.to_string())?;
    println!("block:");
    println!(
        "{{\n    \"fragmentation_rating\": {}\n}}",
        format_g17(rating)
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints `block:` then the allocator dump: capacity, unit, type, name and every free extent.
pub fn dump(cli: &Cli) -> CmdResult {
    let store = cli.open_store()?;
    let extents: Vec<_> = store
        .free_extents()
        .iter()
        .map(
            |e| json!({"offset": format!("{:#x}", e.offset), "length": format!("{:#x}", e.length)}),
        )
        .collect();
    let value = json!({
        "capacity": store.statfs().map_err(|e| e.to_string())?.total_bytes,
        "alloc_unit": store.label().min_alloc_size,
        "alloc_type": "bitmap",
        "alloc_name": "block",
        "extents": extents,
    });
    store.close().map_err(|e| e.to_string())?;
    println!("block:");
    println!("{}", pretty(&value));
    Ok(ExitCode::SUCCESS)
}
