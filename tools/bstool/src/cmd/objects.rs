//! `bstool put`, `get`, `write`, `read`, `stat`, `rm` and `ls`: whole objects and ranges.
//!
//! Names are taken as the bytes given (they need not be UTF-8) and printed escaped
//! ([`crate::output::escape`]) so that each stays on its own line. `get`, `read`, `stat` and
//! `ls` open the store read-only.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use bstore::{Error, Store, Transaction};
use serde_json::json;

use crate::output::{Format, Out, error_text, escape};
use crate::size::parse_size;
use crate::{Cli, CmdResult, arg_bytes};

/// A collection and an object.
#[derive(Debug, clap::Args)]
pub struct ObjectArgs {
    /// Collection name.
    pub collection: OsString,
    /// Object name.
    pub object: OsString,
}

impl ObjectArgs {
    /// The collection name's bytes.
    pub fn collection(&self) -> &[u8] {
        arg_bytes(&self.collection)
    }

    /// The object name's bytes.
    pub fn object(&self) -> &[u8] {
        arg_bytes(&self.object)
    }
}

/// Arguments of `put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// File to store; `-` or absent: standard input.
    file: Option<PathBuf>,
}

/// Arguments of `get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// File to write; `-` or absent: standard output.
    file: Option<PathBuf>,
}

/// Arguments of `write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Offset within the object.
    #[arg(long, value_parser = parse_size, default_value = "0")]
    offset: u64,
    /// File to write from; `-` or absent: standard input.
    file: Option<PathBuf>,
}

/// Arguments of `read`.
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Offset within the object.
    #[arg(long, value_parser = parse_size, default_value = "0")]
    offset: u64,
    /// Bytes to read (fewer at the end of the object).
    #[arg(long, value_parser = parse_size)]
    length: u64,
    /// File to write to; `-` or absent: standard output.
    file: Option<PathBuf>,
}

/// Arguments of `ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// List the objects of this collection (default: list collections).
    collection: Option<OsString>,
}

/// Stores a file (or stdin) as an object, creating the collection if missing.
pub fn put(cli: &Cli, args: &PutArgs) -> CmdResult {
    let data = read_input(args.file.as_ref())?;
    let store = cli.open_store()?;
    ensure_collection(&store, args.target.collection())?;
    store
        .put(args.target.collection(), args.target.object(), &data)
        .map_err(error_text)?;
    store.close().map_err(error_text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes an object to a file (or stdout).
pub fn get(cli: &Cli, args: &GetArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let data = store
        .get(args.target.collection(), args.target.object())
        .map_err(error_text)?;
    write_output(args.file.as_ref(), &data)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a file (or stdin) into an object at an offset, creating collection and object.
pub fn write(cli: &Cli, args: &WriteArgs) -> CmdResult {
    let data = read_input(args.file.as_ref())?;
    let store = cli.open_store()?;
    ensure_collection(&store, args.target.collection())?;
    let mut txn = Transaction::new();
    txn.write(
        args.target.collection(),
        args.target.object(),
        args.offset,
        data,
    );
    store.apply(&txn).map_err(error_text)?;
    store.close().map_err(error_text)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads part of an object to a file (or stdout).
pub fn read(cli: &Cli, args: &ReadArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let data = store
        .read(
            args.target.collection(),
            args.target.object(),
            args.offset,
            args.length,
        )
        .map_err(error_text)?;
    write_output(args.file.as_ref(), &data)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints an object's size, space and layout.
pub fn stat(cli: &Cli, args: &ObjectArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let (collection, object) = (args.collection(), args.object());
    let stat = store.stat(collection, object).map_err(error_text)?;
    let extents = store.fiemap(collection, object).map_err(error_text)?;
    let xattrs = store.getattrs(collection, object).map_err(error_text)?;
    let shared: u64 = extents.iter().filter(|e| e.shared).map(|e| e.length).sum();
    let value = json!({
        "size": stat.size,
        "allocated_bytes": stat.allocated_bytes,
        "stored_bytes": stat.stored_bytes,
        "shared_bytes": shared,
        "deferred_bytes": stat.deferred_bytes,
        "extent_count": extents.len(),
        "xattr_count": xattrs.len(),
        "extents": extents.iter().map(|e| json!({
            "logical_offset": e.logical_offset,
            "length": e.length,
            "device_offset": format!("{:#x}", e.device_offset),
            "shared": e.shared,
        })).collect::<Vec<_>>(),
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Removes an object.
pub fn rm(cli: &Cli, args: &ObjectArgs) -> CmdResult {
    let store = cli.open_store()?;
    store
        .remove(args.collection(), args.object())
        .map_err(error_text)?;
    store.close().map_err(error_text)?;
    Ok(ExitCode::SUCCESS)
}

/// Lists collections, or the objects of one: one escaped name per line, or a JSON array.
pub fn ls(cli: &Cli, args: &LsArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let mut out = Out::new();
    let format = cli.format_or(Format::Text);
    let mut names = Vec::new();
    let mut emit = |out: &mut Out, name: &[u8]| match format {
        Format::Text => out.line(&escape(name)),
        Format::Json => {
            names.push(escape(name));
            Ok(())
        }
    };
    match &args.collection {
        None => {
            for name in store.list_collections().map_err(error_text)? {
                emit(&mut out, &name)?;
            }
        }
        Some(collection) => {
            const PAGE: usize = 1000;
            let mut after: Option<Vec<u8>> = None;
            while !out.is_closed() {
                let page = store
                    .list_objects(arg_bytes(collection), after.as_deref(), PAGE)
                    .map_err(error_text)?;
                for name in &page {
                    emit(&mut out, name)?;
                }
                if page.len() < PAGE {
                    break;
                }
                after = page.last().cloned();
            }
        }
    }
    if format == Format::Json {
        out.value(Format::Json, &json!(names))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the collection unless it exists.
pub fn ensure_collection(store: &Store, collection: &[u8]) -> Result<(), String> {
    match store.create_collection(collection) {
        Ok(()) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(error_text(e)),
    }
}

/// The bytes of a file, or of stdin for `-` or no file.
pub fn read_input(file: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("reading {}: {}", path.display(), error_text(e))),
        None => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| format!("reading stdin: {}", error_text(e)))?;
            Ok(data)
        }
    }
}

/// Writes bytes verbatim to a file, or to stdout for `-` or no file.
pub fn write_output(file: Option<&PathBuf>, data: &[u8]) -> Result<(), String> {
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => std::fs::write(path, data)
            .map_err(|e| format!("writing {}: {}", path.display(), error_text(e))),
        None => {
            let mut out = Out::new();
            out.bytes(data)?;
            out.flush()
        }
    }
}
