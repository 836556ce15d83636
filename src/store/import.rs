//! Import: an export stream (FORMAT.md §12) into a store, whole collections or none.
//!
//! Each collection is built under a hidden name (`\0bstore.import.…`) that no listing shows and
//! no client may name. Only when the trailer has verified the whole stream does one
//! transaction rename every built collection into place (and, with `force`, the collections
//! they replace out of the way, to hidden `\0bstore.replaced.…` names removed afterwards). So a
//! bad frame, a cut stream or a crash leaves the target as it was: hidden collections a failed
//! import leaves are removed by the import itself, or at the next mount.
//!
//! Space and statistics come from the writes themselves, never from the source. A shared
//! extent is written once into a hidden staging object of its collection and cloned from
//! there into every object that maps it, so clones stay clones and the import allocates what
//! the source did; the staging objects are removed before the rename.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::Store;
use crate::device::DataBuf;
use crate::error::{Error, Result};
use crate::format::export::{Frame, ObjectHead, StreamError, StreamReader};
use crate::txn::engine::{Engine, display_bytes};
use crate::txn::{ObjectOp, Op, Transaction};

/// Collection names starting with this are reserved for the store: no client may give one to
/// a new collection (collections made before the reservation keep working).
pub const RESERVED_COLLECTION_PREFIX: &[u8] = b"\0bstore.";
/// Collections being imported, and collections an import replaced: hidden from listings and
/// exports, and removed by the next read-write mount.
const IMPORTING: &str = "\0bstore.import.";
const REPLACED: &str = "\0bstore.replaced.";
/// Object names of shared extents inside a collection being imported (with a per-import nonce
/// after it, so no object of the stream can be mistaken for one).
const STAGING_PREFIX: &str = "\0bstore.shared.";

/// Object bytes gathered into one transaction before it is submitted.
const TXN_BYTES: usize = 4 << 20;
/// Ops gathered into one transaction at most.
const TXN_OPS: usize = 512;
/// Bytes of submitted transactions not yet durable at most (bounds the import's memory).
const IN_FLIGHT_BYTES_MAX: u64 = 64 << 20;
/// Frames read ahead of the importer at most (each at most 4 MiB of data).
const FRAMES_AHEAD: usize = 8;
/// Objects removed per transaction when a hidden collection is cleared.
const REMOVE_BATCH: usize = 256;

/// Whether `name` is one of the store's hidden collections.
pub fn is_hidden_collection(name: &[u8]) -> bool {
    name.starts_with(IMPORTING.as_bytes()) || name.starts_with(REPLACED.as_bytes())
}

/// Whether a client may not give a collection this name.
pub fn is_reserved_collection_name(name: &[u8]) -> bool {
    name.starts_with(RESERVED_COLLECTION_PREFIX)
}

/// What to import, and whom to tell how far it got.
#[derive(Default)]
#[non_exhaustive]
pub struct ImportOptions<'a> {
    /// The collections of the stream to import; empty: every collection.
    pub collections: Vec<Vec<u8>>,
    /// Replace collections of the same name (otherwise an existing one is an error, before
    /// anything is written).
    pub force: bool,
    /// Called after each object.
    pub progress: Option<&'a mut dyn FnMut(ImportProgress)>,
}

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl<'a> ImportOptions<'a> {
    /// Sets `collections`.
    pub fn with_collections(mut self, collections: Vec<Vec<u8>>) -> Self {
        self.collections = collections;
        self
    }

    /// Sets `force`.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets `progress`.
    pub fn with_progress(mut self, progress: Option<&'a mut dyn FnMut(ImportProgress)>) -> Self {
        self.progress = progress;
        self
    }
}

/// How far an import has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportProgress {
    /// Objects imported so far.
    pub objects: u64,
    /// Object and shared bytes imported so far.
    pub bytes: u64,
    /// Bytes of the stream read so far.
    pub stream_bytes: u64,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Collections imported.
    pub collections: u64,
    /// Existing collections replaced by imported ones (`force`).
    pub replaced: u64,
    /// Objects imported.
    pub objects: u64,
    /// Object bytes written from data frames.
    pub data_bytes: u64,
    /// Bytes of shared extents written (each once).
    pub shared_bytes: u64,
    /// Omap entries imported.
    pub omap_entries: u64,
    /// Bytes of the stream.
    pub stream_bytes: u64,
    /// The exporting store's uuid.
    pub source_uuid: [u8; 16],
    /// The stream's commit point.
    pub commit_point: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Store {
    /// Imports the collections of an export stream. Nothing becomes visible until the
    /// stream's trailer has verified; then every imported collection appears at once. On any
    /// error (a bad or cut stream, an existing collection without `force`, no space) the
    /// store is left as it was.
    pub fn import<R: Read + Send>(
        &self,
        source: R,
        options: ImportOptions<'_>,
    ) -> Result<ImportReport> {
        self.pipeline()?;
        self.engine.check_poison()?;
        let mut import = Importer::new(self, options);
        let result = import.run(source);
        if result.is_err() {
            import.discard();
        }
        result
    }

    /// Removes the hidden collections an import interrupted by a crash left (at mount). A
    /// leftover that cannot be removed now (an object in it unreadable) stays hidden for the
    /// next mount to try again: it must not keep the store from mounting.
    pub(super) fn remove_leftover_imports(&self) {
        let leftovers: Vec<Vec<u8>> = self
            .engine
            .collections
            .read()
            .keys()
            .filter(|name| is_hidden_collection(name))
            .cloned()
            .collect();
        for name in &leftovers {
            let _ = remove_collection_whole(self, name);
        }
    }
}

/// Removes every object of a collection, then the collection.
fn remove_collection_whole(store: &Store, name: &[u8]) -> Result<()> {
    loop {
        let objects = store.list_objects(name, None, REMOVE_BATCH)?;
        if objects.is_empty() {
            break;
        }
        let mut txn = Transaction::new().internal();
        for object in &objects {
            txn.remove(name, object);
        }
        store.apply(&txn)?;
    }
    store.apply(Transaction::new().internal().remove_collection(name))
}

/// A hidden name no other import uses.
fn hidden_name(prefix: &str) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}.{now:x}.{n}", std::process::id()).into_bytes()
}

/// Transactions submitted and not yet durable, and the first failure among them.
#[derive(Default)]
struct InFlight {
    state: Mutex<(u64, Option<Error>)>,
    changed: Condvar,
}

impl InFlight {
    /// Waits (helping a stepped store along) until at most `bytes` are in flight.
    fn wait_below(&self, bytes: u64, engine: &Engine) {
        let mut state = self.state.lock();
        while state.0 > bytes {
            engine.waiting().wait(&self.changed, &mut state);
        }
    }

    fn failure(&self) -> Result<()> {
        match &self.state.lock().1 {
            Some(error) => Err(Error::Poisoned(format!("an import write failed: {error}"))),
            None => Ok(()),
        }
    }
}

/// The collection being imported.
struct Current {
    /// Its hidden name.
    hidden: Vec<u8>,
    /// The object the frames now belong to.
    object: Vec<u8>,
    /// Staging objects of its shared extents, by stream id.
    staging: HashMap<u64, Vec<u8>>,
}

struct Importer<'s, 'o> {
    store: &'s Store,
    options: ImportOptions<'o>,
    /// This import's prefix of staging object names.
    staging_prefix: Vec<u8>,
    /// Collections built so far: (name, hidden name).
    built: Vec<(Vec<u8>, Vec<u8>)>,
    /// `None` while a collection the caller did not choose is skipped.
    current: Option<Current>,
    txn: Transaction,
    txn_bytes: usize,
    in_flight: Arc<InFlight>,
    report: ImportReport,
}

impl<'s, 'o> Importer<'s, 'o> {
    fn new(store: &'s Store, options: ImportOptions<'o>) -> Self {
        Importer {
            store,
            options,
            staging_prefix: hidden_name(STAGING_PREFIX),
            built: Vec::new(),
            current: None,
            txn: Transaction::new().internal(),
            txn_bytes: 0,
            in_flight: Arc::default(),
            report: ImportReport::default(),
        }
    }

    fn run<R: Read + Send>(&mut self, source: R) -> Result<ImportReport> {
        let started = Instant::now();
        // The stream is read and checked on one thread while this one submits what it read
        // before: the two overlap.
        let (to_importer, frames) = crossbeam::channel::bounded(FRAMES_AHEAD);
        std::thread::scope(|scope| {
            scope.spawn(move || read_frames(StreamReader::new(source), &to_importer));
            let taken = self.take_frames(&frames);
            // Gone, so a reader blocked on a full channel stops.
            drop(frames);
            taken
        })?;
        self.settle()?;
        self.remove_staging()?;
        self.rename_into_place()?;
        self.report.elapsed = started.elapsed();
        Ok(self.report.clone())
    }

    /// Imports the frames up to the trailer.
    fn take_frames(&mut self, frames: &Receiver<Result<(Frame, u64)>>) -> Result<()> {
        loop {
            let Ok(read) = frames.recv() else {
                return Err(Error::Corruption(
                    "export stream: ends before its trailer".into(),
                ));
            };
            let (frame, position) = read?;
            self.report.stream_bytes = position;
            if let Frame::Trailer(_) = frame {
                // Nothing may follow the trailer: the reader says so if something does.
                return frames.recv().unwrap_or(Ok((frame, position))).map(|_| ());
            }
            self.frame(frame)?;
        }
    }

    fn frame(&mut self, frame: Frame) -> Result<()> {
        match frame {
            Frame::Header(header) => {
                self.report.source_uuid = header.source_uuid;
                self.report.commit_point = header.commit_point;
                Ok(())
            }
            Frame::Collection { name } => self.collection(name),
            Frame::Object(head) => self.object(head),
            Frame::Data { offset, bytes } => {
                let Some(current) = &self.current else {
                    return Ok(());
                };
                self.report.data_bytes += bytes.len() as u64;
                let (collection, object) = (current.hidden.clone(), current.object.clone());
                self.write(collection, object, offset, bytes)
            }
            Frame::Omap(entries) => {
                let Some(current) = &self.current else {
                    return Ok(());
                };
                self.report.omap_entries += entries.len() as u64;
                let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
                let op = Op::Object {
                    collection: current.hidden.clone(),
                    object: current.object.clone(),
                    op: ObjectOp::OmapSetKeys { pairs: entries },
                };
                self.push(op, bytes)
            }
            Frame::Shared { id, bytes } => {
                let Some(current) = &mut self.current else {
                    return Ok(());
                };
                let mut staging = self.staging_prefix.clone();
                staging.extend_from_slice(format!(".{id}").as_bytes());
                current.staging.insert(id, staging.clone());
                let collection = current.hidden.clone();
                self.report.shared_bytes += bytes.len() as u64;
                self.write(collection, staging, 0, bytes)
            }
            Frame::SharedRef {
                offset,
                id,
                shared_offset,
                length,
            } => {
                let Some(current) = &self.current else {
                    return Ok(());
                };
                let Some(staging) = current.staging.get(&id) else {
                    return Err(Error::Corruption(format!(
                        "export stream: object {} maps shared extent {id}, given in another collection",
                        display_bytes(&current.object)
                    )));
                };
                let op = Op::Object {
                    collection: current.hidden.clone(),
                    object: staging.clone(),
                    op: ObjectOp::CloneRange {
                        offset: u64::from(shared_offset),
                        length: u64::from(length),
                        target: current.object.clone(),
                        target_offset: offset,
                    },
                };
                self.push(op, 0)
            }
            Frame::Trailer(_) => Ok(()),
        }
    }

    fn collection(&mut self, name: Vec<u8>) -> Result<()> {
        self.current = None;
        let chosen = &self.options.collections;
        if !chosen.is_empty() && !chosen.contains(&name) {
            return Ok(());
        }
        if is_hidden_collection(&name) {
            return Err(Error::Corruption(format!(
                "export stream: collection {} has a reserved name",
                display_bytes(&name)
            )));
        }
        let exists = self.store.engine.collections.read().contains_key(&name);
        if exists && !self.options.force {
            return Err(Error::AlreadyExists(format!(
                "collection {} (import with force to replace it)",
                display_bytes(&name)
            )));
        }
        self.flush()?;
        let hidden = hidden_name(IMPORTING);
        self.store
            .apply(Transaction::new().internal().create_collection(&hidden))?;
        self.built.push((name, hidden.clone()));
        self.report.collections += 1;
        self.current = Some(Current {
            hidden,
            object: Vec::new(),
            staging: HashMap::new(),
        });
        Ok(())
    }

    fn object(&mut self, head: ObjectHead) -> Result<()> {
        if let Some(progress) = self.options.progress.as_mut() {
            progress(ImportProgress {
                objects: self.report.objects,
                bytes: self.report.data_bytes + self.report.shared_bytes,
                stream_bytes: self.report.stream_bytes,
            });
        }
        let Some(current) = &mut self.current else {
            return Ok(());
        };
        if head.name.starts_with(&self.staging_prefix) {
            return Err(Error::InvalidArgument(format!(
                "object {} has a name import reserves for shared extents",
                display_bytes(&head.name)
            )));
        }
        current.object = head.name.clone();
        let collection = current.hidden.clone();
        self.report.objects += 1;
        let mut ops = vec![ObjectOp::Touch];
        if head.size > 0 {
            // Data frames and shared ranges end at or before the size; a trailing hole (or a
            // sparse object) keeps it.
            ops.push(ObjectOp::Truncate { size: head.size });
        }
        if !head.xattrs.is_empty() {
            ops.push(ObjectOp::SetAttrs { attrs: head.xattrs });
        }
        if let Some(header) = head.omap_header {
            ops.push(ObjectOp::OmapSetHeader { header });
        }
        for op in ops {
            let op = Op::Object {
                collection: collection.clone(),
                object: head.name.clone(),
                op,
            };
            self.push(op, 0)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        collection: Vec<u8>,
        object: Vec<u8>,
        offset: u64,
        data: DataBuf,
    ) -> Result<()> {
        let bytes = data.len();
        let op = Op::Object {
            collection,
            object,
            op: ObjectOp::Write { offset, data },
        };
        self.push(op, bytes)
    }

    /// Adds an op to the transaction being gathered; submits it when it is big enough.
    fn push(&mut self, op: Op, bytes: usize) -> Result<()> {
        self.txn.push(op);
        self.txn_bytes += bytes;
        if self.txn_bytes >= TXN_BYTES || self.txn.ops().len() >= TXN_OPS {
            self.flush()?;
        }
        Ok(())
    }

    /// Submits the gathered transaction, waiting while too much is in flight.
    fn flush(&mut self) -> Result<()> {
        if self.txn.is_empty() {
            return Ok(());
        }
        let txn = std::mem::replace(&mut self.txn, Transaction::new().internal());
        let bytes = std::mem::take(&mut self.txn_bytes) as u64;
        self.in_flight.wait_below(
            IN_FLIGHT_BYTES_MAX.saturating_sub(bytes),
            &self.store.engine,
        );
        self.in_flight.failure()?;
        self.in_flight.state.lock().0 += bytes;
        let in_flight = Arc::clone(&self.in_flight);
        let submitted = self.store.submit(&txn, move |result| {
            let mut state = in_flight.state.lock();
            state.0 -= bytes;
            if let Err(error) = result {
                state.1.get_or_insert(error);
            }
            in_flight.changed.notify_all();
        });
        if submitted.is_err() {
            self.in_flight.state.lock().0 -= bytes;
        }
        submitted
    }

    /// Submits what is gathered and waits until everything submitted is durable.
    fn settle(&mut self) -> Result<()> {
        self.flush()?;
        self.in_flight.wait_below(0, &self.store.engine);
        self.in_flight.failure()
    }

    fn remove_staging(&mut self) -> Result<()> {
        for (_, hidden) in &self.built {
            loop {
                // Names with the prefix follow it, all together, in byte order.
                let prefix = &self.staging_prefix;
                let staging = self
                    .store
                    .list_objects(hidden, Some(prefix), REMOVE_BATCH)?;
                let staging: Vec<Vec<u8>> = staging
                    .into_iter()
                    .take_while(|name| name.starts_with(prefix))
                    .collect();
                if staging.is_empty() {
                    break;
                }
                let mut txn = Transaction::new().internal();
                for object in &staging {
                    txn.remove(hidden, object);
                }
                self.store.apply(&txn)?;
            }
        }
        Ok(())
    }

    /// One transaction: the collections replaced out of the way, the built ones into place.
    fn rename_into_place(&mut self) -> Result<()> {
        let mut txn = Transaction::new().internal();
        let mut replaced = Vec::new();
        {
            let namespace = self.store.engine.collections.read();
            for (name, hidden) in &self.built {
                if namespace.contains_key(name) {
                    if !self.options.force {
                        return Err(Error::AlreadyExists(format!(
                            "collection {} was created during the import",
                            display_bytes(name)
                        )));
                    }
                    let out_of_the_way = hidden_name(REPLACED);
                    txn.rename_collection(name, &out_of_the_way);
                    replaced.push(out_of_the_way);
                }
                txn.rename_collection(hidden, name);
            }
        }
        if !txn.is_empty() {
            self.store.apply(&txn)?;
        }
        self.built.clear();
        self.report.replaced = replaced.len() as u64;
        // The import is done and durable: a replaced collection that cannot be removed now
        // stays hidden for the next mount to remove.
        for name in &replaced {
            let _ = remove_collection_whole(self.store, name);
        }
        Ok(())
    }

    /// After a failure: removes what was built (what cannot be removed now, the next mount
    /// removes).
    fn discard(&mut self) {
        self.txn = Transaction::new().internal();
        self.in_flight.wait_below(0, &self.store.engine);
        for (_, hidden) in std::mem::take(&mut self.built) {
            let _ = remove_collection_whole(self.store, &hidden);
        }
    }
}

/// Reads frames (each with the stream position after it) until the trailer and the end after
/// it, or the first error, or until the importer stops taking them.
fn read_frames<R: Read>(mut reader: StreamReader<R>, to: &Sender<Result<(Frame, u64)>>) {
    loop {
        let read = match reader.next_frame() {
            Ok(Some(frame)) => Ok((frame, reader.position())),
            Ok(None) => return,
            Err(error) => Err(stream_error(&reader, error)),
        };
        let last = read.is_err();
        if to.send(read).is_err() || last {
            return;
        }
    }
}

fn stream_error<R: Read>(reader: &StreamReader<R>, error: StreamError) -> Error {
    match error {
        StreamError::Io(error) => Error::io("reading the export stream", error),
        StreamError::Invalid(error) => Error::Corruption(format!(
            "export stream at byte {}: {error}",
            reader.position()
        )),
    }
}
