//! `bstool put`, `get`, `rm` and `ls`: whole objects through the public API.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bstore::{Error, Store};

use crate::{Cli, CmdResult};

/// A collection and an object.
#[derive(Debug, clap::Args)]
pub struct ObjectArgs {
    /// Collection name.
    collection: String,
    /// Object name.
    object: String,
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

/// Arguments of `ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// List the objects of this collection (default: list collections).
    collection: Option<String>,
}

/// Stores a file (or stdin) as an object, creating the collection if missing.
pub fn put(cli: &Cli, args: &PutArgs) -> CmdResult {
    let data = read_input(args.file.as_ref())?;
    let store = cli.open_store()?;
    ensure_collection(&store, &args.target.collection)?;
    store
        .put(&args.target.collection, &args.target.object, &data)
        .map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes an object to a file (or stdout).
pub fn get(cli: &Cli, args: &GetArgs) -> CmdResult {
    let store = cli.open_store()?;
    let data = store
        .get(&args.target.collection, &args.target.object)
        .map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    write_output(args.file.as_ref(), &data)?;
    Ok(ExitCode::SUCCESS)
}

/// Removes an object.
pub fn rm(cli: &Cli, args: &ObjectArgs) -> CmdResult {
    let store = cli.open_store()?;
    store
        .remove(&args.collection, &args.object)
        .map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Lists collections, or the objects of one, one per line.
pub fn ls(cli: &Cli, args: &LsArgs) -> CmdResult {
    let store = cli.open_store()?;
    let mut out = std::io::stdout().lock();
    let mut emit = |name: &[u8]| {
        out.write_all(name)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| format!("writing to stdout: {e}"))
    };
    match &args.collection {
        None => {
            for name in store.list_collections().map_err(|e| e.to_string())? {
                emit(&name)?;
            }
        }
        Some(collection) => {
            const PAGE: usize = 1000;
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = store
                    .list_objects(collection, after.as_deref(), PAGE)
                    .map_err(|e| e.to_string())?;
                for name in &page {
                    emit(name)?;
                }
                if page.len() < PAGE {
                    break;
                }
                after = page.last().cloned();
            }
        }
    }
    store.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn ensure_collection(store: &Store, collection: &str) -> Result<(), String> {
    match store.create_collection(collection) {
        Ok(()) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn read_input(file: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display())),
        None => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| format!("reading stdin: {e}"))?;
            Ok(data)
        }
    }
}

fn write_output(file: Option<&PathBuf>, data: &[u8]) -> Result<(), String> {
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
        }
        None => std::io::stdout()
            .write_all(data)
            .map_err(|e| format!("writing stdout: {e}")),
    }
}
