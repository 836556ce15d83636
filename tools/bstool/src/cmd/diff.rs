//! `bstool diff`: compare the store at `--path` with another store, or with an export stream,
//! object by object: names, sizes, bytes, xattrs, omap header and entries. The first
//! difference of each object is reported; both stores are only read.
//!
//! A stream is compared by importing it into a temporary store (a sparse file under the
//! system's temporary directory, removed afterwards), so a stream is checked exactly as an
//! import would see it, and memory stays bounded however large its objects are.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use bstore::{BlockSource, ImportOptions, MkfsOptions, OpenOptions, Store};
use serde_json::{Value, json};

use crate::output::{Format, Out, error_text, escape};
use crate::{Cli, CmdResult};

/// Objects listed per call.
const LIST_BATCH: usize = 1024;
/// Bytes of an object compared per read.
const READ_BYTES: u64 = 4 << 20;
/// Differences listed in the output at most (all are counted).
const LISTED_MAX: usize = 1000;

/// `bstool diff` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The other side: a store directory, or an export stream file.
    other: PathBuf,
    /// No spinner (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// Compares and prints the differences; exit 0 when there are none, 1 when there are.
pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let ours = cli.inspect_store()?;
    let spinner = crate::cmd::fsck::spinner(!args.quiet, "diff: comparing objects");
    let _temporary;
    let theirs = if args.other.is_dir() {
        Store::open_read_only(&args.other, &cli.open_options()).map_err(|e| {
            format!(
                "opening {} read-only: {}",
                args.other.display(),
                error_text(e)
            )
        })?
    } else {
        let (dir, store) = import_to_temporary(&args.other, &cli.open_options())?;
        _temporary = dir;
        store
    };
    let mut diff = Diff::default();
    let result = diff.stores(&ours, &theirs);
    spinner.finish_and_clear();
    result.map_err(|e| format!("diff: {}", error_text(e)))?;
    let equal = diff.count == 0;
    let value = json!({
        "equal": equal,
        "objects_compared": diff.compared,
        "difference_count": diff.count,
        "differences": diff.listed,
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(if equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Imports the stream at `path` into a new store in a temporary directory.
fn import_to_temporary(
    path: &std::path::Path,
    options: &OpenOptions,
) -> Result<(tempfile::TempDir, Store), String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("opening {}: {}", path.display(), error_text(e)))?;
    let length = file.metadata().map_or(0, |m| m.len());
    let dir = tempfile::Builder::new()
        .prefix("bstool-diff-")
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| format!("making a temporary store: {}", error_text(e)))?;
    // Sparse: only what the import writes takes space. Room for the stream's bytes, the
    // allocation units they round up to, and the journal.
    let size_bytes = (length + length / 4 + (1 << 30)).next_multiple_of(1 << 20);
    let store_dir = dir.path().join("store");
    Store::mkfs(&MkfsOptions::new(
        &store_dir,
        BlockSource::File { size_bytes },
    ))
    .map_err(|e| format!("making a temporary store: {}", error_text(e)))?;
    let store = Store::open(&store_dir, options)
        .map_err(|e| format!("opening the temporary store: {}", error_text(e)))?;
    let source = std::io::BufReader::with_capacity(bstore::stream::READ_BUFFER_BYTES, file);
    store
        .import(source, ImportOptions::default())
        .map_err(|e| format!("reading {}: {}", path.display(), error_text(e)))?;
    Ok((dir, store))
}

#[derive(Default)]
struct Diff {
    compared: u64,
    count: u64,
    listed: Vec<Value>,
}

impl Diff {
    fn differ(&mut self, collection: &[u8], object: Option<&[u8]>, what: String) {
        self.count += 1;
        if self.listed.len() < LISTED_MAX {
            let name = match object {
                Some(object) => format!("{}/{}", escape(collection), escape(object)),
                None => escape(collection),
            };
            self.listed
                .push(json!({"object": name, "difference": what}));
        }
    }

    fn stores(&mut self, ours: &Store, theirs: &Store) -> bstore::Result<()> {
        let (a, b): (BTreeSet<_>, BTreeSet<_>) = (
            ours.list_collections()?.into_iter().collect(),
            theirs.list_collections()?.into_iter().collect(),
        );
        for collection in a.union(&b) {
            match (a.contains(collection), b.contains(collection)) {
                (true, true) => self.collection(ours, theirs, collection)?,
                (true, false) => self.differ(collection, None, "collection only here".into()),
                _ => self.differ(collection, None, "collection only in the other".into()),
            }
        }
        Ok(())
    }

    fn collection(
        &mut self,
        ours: &Store,
        theirs: &Store,
        collection: &[u8],
    ) -> bstore::Result<()> {
        let mut ours_page = Page::new(ours, collection);
        let mut theirs_page = Page::new(theirs, collection);
        loop {
            match (ours_page.peek()?, theirs_page.peek()?) {
                (None, None) => return Ok(()),
                (Some(a), Some(b)) if a == b => {
                    let name = ours_page.take();
                    theirs_page.take();
                    self.compared += 1;
                    if let Some(what) = first_difference(ours, theirs, collection, &name)? {
                        self.differ(collection, Some(&name), what);
                    }
                }
                (Some(a), b) if b.is_none_or(|b| a < b) => {
                    let name = ours_page.take();
                    self.differ(collection, Some(&name), "only here".into());
                }
                _ => {
                    let name = theirs_page.take();
                    self.differ(collection, Some(&name), "only in the other".into());
                }
            }
        }
    }
}

/// Object names of one collection, listed a page at a time.
struct Page<'s> {
    store: &'s Store,
    collection: &'s [u8],
    names: std::collections::VecDeque<Vec<u8>>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl<'s> Page<'s> {
    fn new(store: &'s Store, collection: &'s [u8]) -> Self {
        Page {
            store,
            collection,
            names: Default::default(),
            after: None,
            done: false,
        }
    }

    fn peek(&mut self) -> bstore::Result<Option<&[u8]>> {
        if self.names.is_empty() && !self.done {
            let names =
                self.store
                    .list_objects(self.collection, self.after.as_deref(), LIST_BATCH)?;
            self.done = names.len() < LIST_BATCH;
            self.after = names.last().cloned();
            self.names = names.into();
        }
        Ok(self.names.front().map(Vec::as_slice))
    }

    fn take(&mut self) -> Vec<u8> {
        self.names.pop_front().unwrap_or_default()
    }
}

/// What first differs between the two copies of an object, if anything.
fn first_difference(
    ours: &Store,
    theirs: &Store,
    collection: &[u8],
    object: &[u8],
) -> bstore::Result<Option<String>> {
    let (a, b) = (
        ours.stat(collection, object)?,
        theirs.stat(collection, object)?,
    );
    if a.size != b.size {
        return Ok(Some(format!(
            "size {} here, {} in the other",
            a.size, b.size
        )));
    }
    let mut offset = 0;
    while offset < a.size {
        let here = ours.read(collection, object, offset, READ_BYTES)?;
        let there = theirs.read(collection, object, offset, READ_BYTES)?;
        if let Some(at) = here.iter().zip(&there).position(|(x, y)| x != y) {
            return Ok(Some(format!(
                "bytes differ at offset {}",
                offset + at as u64
            )));
        }
        offset += READ_BYTES;
    }
    let (a, b) = (
        ours.getattrs(collection, object)?,
        theirs.getattrs(collection, object)?,
    );
    if a != b {
        let names: BTreeSet<_> = a.keys().chain(b.keys()).collect();
        let name = names.into_iter().find(|n| a.get(*n) != b.get(*n));
        let name = name.map(|n| escape(n)).unwrap_or_default();
        return Ok(Some(format!("xattr {name} differs")));
    }
    if ours.omap_get_header(collection, object)? != theirs.omap_get_header(collection, object)? {
        return Ok(Some("omap header differs".into()));
    }
    let mut here = ours.omap_iter(collection, object, b"", None)?;
    let mut there = theirs.omap_iter(collection, object, b"", None)?;
    loop {
        match (here.next().transpose()?, there.next().transpose()?) {
            (None, None) => return Ok(None),
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                let key = match (&a, &b) {
                    (Some((x, _)), Some((y, _))) => x.min(y).clone(),
                    (Some((x, _)), None) | (None, Some((x, _))) => x.clone(),
                    (None, None) => Vec::new(),
                };
                return Ok(Some(format!("omap key {} differs", escape(&key))));
            }
        }
    }
}
