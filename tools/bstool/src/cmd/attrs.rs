//! `bstool setattr`, `getattr`, `omap-set` and `omap-list`.

use std::io::Write;
use std::process::ExitCode;

use bstore::Transaction;

use super::objects::{ObjectArgs, ensure_collection};
use crate::{Cli, CmdResult};

/// Arguments of `setattr` and `omap-set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Attribute name or omap key.
    name: String,
    /// Value.
    value: String,
}

/// Arguments of `getattr`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: ObjectArgs,
    /// Attribute name.
    name: String,
}

/// Sets an extended attribute (the object must exist).
pub fn setattr(cli: &Cli, args: &SetArgs) -> CmdResult {
    let store = cli.open_store()?;
    let mut txn = Transaction::new();
    txn.setattr(
        &args.target.collection,
        &args.target.object,
        &args.name,
        args.value.as_bytes(),
    );
    store.apply(&txn).map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints an extended attribute's value.
pub fn getattr(cli: &Cli, args: &GetArgs) -> CmdResult {
    let store = cli.open_store()?;
    let value = store
        .getattr(&args.target.collection, &args.target.object, &args.name)
        .map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    let value = value.ok_or_else(|| format!("not found: xattr {:?}", args.name))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&value)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| format!("writing stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Sets an omap key, creating the collection and object if missing.
pub fn omap_set(cli: &Cli, args: &SetArgs) -> CmdResult {
    let store = cli.open_store()?;
    ensure_collection(&store, &args.target.collection)?;
    let (collection, object) = (&args.target.collection, &args.target.object);
    let mut txn = Transaction::new();
    txn.touch(collection, object).omap_setkeys(
        collection,
        object,
        [(
            args.name.as_bytes().to_vec(),
            args.value.as_bytes().to_vec(),
        )],
    );
    store.apply(&txn).map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints every omap key and value, `key<TAB>value` per line, in key order.
pub fn omap_list(cli: &Cli, args: &ObjectArgs) -> CmdResult {
    let store = cli.open_store()?;
    let mut out = std::io::stdout().lock();
    for entry in store
        .omap_iter(&args.collection, &args.object, b"", None)
        .map_err(|e| e.to_string())?
    {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        out.write_all(&key)
            .and_then(|()| out.write_all(b"\t"))
            .and_then(|()| out.write_all(&value))
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| format!("writing stdout: {e}"))?;
    }
    drop(out);
    store.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
