//! Extended attributes and omap: set, get, list and remove, binary-safe.
//!
//! Values come from the argument, or with `-i FILE` (`-` for stdin) byte for byte; `getattr`,
//! `omap-get` and `omap-header` write the value verbatim (no newline) to stdout or `-o FILE`.
//! Listings print names and values escaped, one per line. The names follow bstool's own style
//! with ceph-objectstore-tool's as aliases (`get-attr`, `set-omap`, `get-omaphdr`, ...).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use bstore::Transaction;
use serde_json::json;

use super::objects::{ObjectArgs, ensure_collection, read_input, write_output};
use crate::output::{Format, Out, error_text, escape};
use crate::{Cli, CmdResult, arg_bytes};

/// Arguments of `setattr` and `omap-set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Attribute name or omap key.
    name: OsString,
    /// Value (or use -i).
    #[arg(required_unless_present = "input", conflicts_with = "input")]
    value: Option<OsString>,
    /// Read the value from this file, byte for byte (`-`: standard input).
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
}

impl SetArgs {
    fn value(&self) -> Result<Vec<u8>, String> {
        match &self.value {
            Some(value) => Ok(arg_bytes(value).to_vec()),
            None => read_input(self.input.as_ref()),
        }
    }
}

/// Arguments of `getattr` and `omap-get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Attribute name or omap key.
    name: OsString,
    /// Write the value to this file instead of standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

/// Arguments of `rm-attr` and `omap-rm`.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Attribute name or omap key.
    name: OsString,
}

/// Arguments of `omap-header`.
#[derive(Debug, clap::Args)]
pub struct HeaderGetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Write the header to this file instead of standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

/// Arguments of `omap-set-header`.
#[derive(Debug, clap::Args)]
pub struct HeaderSetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Header value (or use -i).
    #[arg(required_unless_present = "input", conflicts_with = "input")]
    value: Option<OsString>,
    /// Read the header from this file, byte for byte (`-`: standard input).
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
}

/// Sets an extended attribute (the object must exist).
pub fn setattr(cli: &Cli, args: &SetArgs) -> CmdResult {
    let value = args.value()?;
    let mut txn = Transaction::new();
    let (collection, object) = (args.target.collection(), args.target.object());
    txn.setattr(collection, object, arg_bytes(&args.name), value);
    apply(cli, &txn, None)
}

/// Writes an extended attribute's value verbatim.
pub fn getattr(cli: &Cli, args: &GetArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let value = store
        .getattr(
            args.target.collection(),
            args.target.object(),
            arg_bytes(&args.name),
        )
        .map_err(error_text)?
        .ok_or_else(|| format!("not found: xattr {}", escape(arg_bytes(&args.name))))?;
    write_output(args.output.as_ref(), &value)?;
    Ok(ExitCode::SUCCESS)
}

/// Lists an object's extended attributes: `name<TAB>length` lines, or JSON.
pub fn list_attrs(cli: &Cli, args: &ObjectArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let attrs = store
        .getattrs(args.collection(), args.object())
        .map_err(error_text)?;
    let mut out = Out::new();
    match cli.format_or(Format::Text) {
        Format::Text => {
            for (name, value) in &attrs {
                out.line(&format!("{}\t{}", escape(name), value.len()))?;
            }
        }
        Format::Json => {
            let listed: Vec<_> = attrs
                .iter()
                .map(|(name, value)| json!({"name": escape(name), "length": value.len()}))
                .collect();
            out.value(Format::Json, &json!(listed))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Removes an extended attribute.
pub fn rm_attr(cli: &Cli, args: &NameArgs) -> CmdResult {
    let mut txn = Transaction::new();
    let (collection, object) = (args.target.collection(), args.target.object());
    txn.rmattr(collection, object, arg_bytes(&args.name));
    apply(cli, &txn, None)
}

/// Sets an omap key, creating the collection and object if missing.
pub fn omap_set(cli: &Cli, args: &SetArgs) -> CmdResult {
    let value = args.value()?;
    let (collection, object) = (args.target.collection(), args.target.object());
    let mut txn = Transaction::new();
    txn.touch(collection, object).omap_setkeys(
        collection,
        object,
        [(arg_bytes(&args.name).to_vec(), value)],
    );
    apply(cli, &txn, Some(collection))
}

/// Writes an omap value verbatim.
pub fn omap_get(cli: &Cli, args: &GetArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let key = arg_bytes(&args.name);
    let mut values = store
        .omap_get_values(args.target.collection(), args.target.object(), [key])
        .map_err(error_text)?;
    let value = values
        .remove(key)
        .ok_or_else(|| format!("not found: omap key {}", escape(key)))?;
    write_output(args.output.as_ref(), &value)?;
    Ok(ExitCode::SUCCESS)
}

/// Removes an omap key.
pub fn omap_rm(cli: &Cli, args: &NameArgs) -> CmdResult {
    let mut txn = Transaction::new();
    let (collection, object) = (args.target.collection(), args.target.object());
    txn.omap_rmkeys(collection, object, [arg_bytes(&args.name).to_vec()]);
    apply(cli, &txn, None)
}

/// Lists omap entries in key order: `key<TAB>value` lines (both escaped), or JSON.
pub fn omap_list(cli: &Cli, args: &ObjectArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let format = cli.format_or(Format::Text);
    let mut out = Out::new();
    let mut listed = Vec::new();
    for entry in store
        .omap_iter(args.collection(), args.object(), b"", None)
        .map_err(error_text)?
    {
        if out.is_closed() {
            break;
        }
        let (key, value) = entry.map_err(error_text)?;
        match format {
            Format::Text => out.line(&format!("{}\t{}", escape(&key), escape(&value)))?,
            Format::Json => listed.push(json!({
                "key": escape(&key),
                "value": escape(&value),
                "value_length": value.len(),
            })),
        }
    }
    if format == Format::Json {
        out.value(Format::Json, &json!(listed))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the omap header verbatim (nothing when the object has none).
pub fn omap_header(cli: &Cli, args: &HeaderGetArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let header = store
        .omap_get_header(args.target.collection(), args.target.object())
        .map_err(error_text)?
        .unwrap_or_default();
    write_output(args.output.as_ref(), &header)?;
    Ok(ExitCode::SUCCESS)
}

/// Sets the omap header, creating the collection and object if missing.
pub fn omap_set_header(cli: &Cli, args: &HeaderSetArgs) -> CmdResult {
    let header = match &args.value {
        Some(value) => arg_bytes(value).to_vec(),
        None => read_input(args.input.as_ref())?,
    };
    let (collection, object) = (args.target.collection(), args.target.object());
    let mut txn = Transaction::new();
    txn.touch(collection, object)
        .omap_setheader(collection, object, header);
    apply(cli, &txn, Some(collection))
}

/// Applies a transaction (creating `create_collection` first when given) and closes the store.
fn apply(cli: &Cli, txn: &Transaction, create_collection: Option<&[u8]>) -> CmdResult {
    let store = cli.open_store()?;
    if let Some(collection) = create_collection {
        ensure_collection(&store, collection)?;
    }
    store.apply(txn).map_err(error_text)?;
    store.close().map_err(error_text)?;
    Ok(ExitCode::SUCCESS)
}
