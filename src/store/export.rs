//! Export: a consistent stream (FORMAT.md §12) of a store that keeps serving writes.
//!
//! An export reads one commit point: a KV snapshot taken after every transaction submitted
//! before it has finished, and the device bytes that snapshot references. Three things keep
//! those bytes in place while writers go on:
//!
//! 1. Space freed after the export began is held back from reuse (a `Reclaimer` read guard
//!    taken first, so even space a journaled commit releases before its KV batch lands is
//!    held: that commit was submitted after the guard, and the snapshot is taken later still).
//! 2. While any export is pinned no write goes in place (no deferred overwrite, no fill of
//!    unused chunks): every write takes new space, as writes to clones always do. The pin is
//!    set with the collection namespace held exclusively, so every transaction is planned
//!    either before it (and is waited for) or after it (and sees it).
//! 3. Deferred writes the snapshot holds but the device may not yet have are patched over
//!    what the device returns, as a mount would apply them first.
//!
//! Every byte read is verified against its checksum. Objects that share blobs (clones) give
//! the shared bytes once, as shared extents: each maximal run of a shared blob's referenced
//! allocation units (cut at 4 MiB), which an import writes once and clones from.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Store;
use super::import::is_hidden_collection;
use crate::device::DataBuf;
use crate::error::{Error, Result};
use crate::format::export::{
    DATA_FRAME_BYTES_MAX, Frame, OMAP_FRAME_ENTRIES_MAX, ObjectHead, STREAM_VERSION, StreamHeader,
    StreamWriter,
};
use crate::format::keys::{self, KeySpace, STATFS_KEY};
use crate::format::onode::Blob;
use crate::format::records::{CollectionRecord, StatfsRecord};
use crate::format::shared::SharedBlobRecord;
use crate::fsck::PendingWrites;
use crate::kv::Kv;
use crate::onode::read::{read_object_buf, read_pieces};
use crate::onode::{Onode, Piece};
use crate::txn::engine::{Engine, display_bytes};

/// Objects read from the snapshot per KV scan.
const LIST_BATCH: usize = 256;
/// Objects up to this size are read ahead, several at a time (larger ones keep the device busy
/// on their own: a 4 MiB window is eight blob reads at once).
const SMALL_OBJECT_BYTES: u64 = 64 << 10;
/// Threads reading small objects ahead.
const SMALL_OBJECT_READERS: usize = 16;
/// Frames read ahead of the writer at most (each at most 4 MiB of data).
const FRAMES_IN_FLIGHT: usize = 8;
/// Bytes of omap keys and values the writer puts in one frame at most.
const OMAP_FRAME_BYTES_MAX: usize = 4 << 20;

/// What to export, and whom to tell how far it got.
#[derive(Default)]
#[non_exhaustive]
pub struct ExportOptions<'a> {
    /// The collections to export; empty: every collection.
    pub collections: Vec<Vec<u8>>,
    /// Called after each object.
    pub progress: Option<&'a mut dyn FnMut(ExportProgress)>,
}

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl<'a> ExportOptions<'a> {
    /// Sets `collections`.
    pub fn with_collections(mut self, collections: Vec<Vec<u8>>) -> Self {
        self.collections = collections;
        self
    }

    /// Sets `progress`.
    pub fn with_progress(mut self, progress: Option<&'a mut dyn FnMut(ExportProgress)>) -> Self {
        self.progress = progress;
        self
    }
}

/// How far an export has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportProgress {
    /// Objects written so far.
    pub objects: u64,
    /// Object and shared bytes written so far.
    pub bytes: u64,
    /// Bytes the exported objects hold, when known (every collection exported), else 0.
    pub bytes_total: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Collections.
    pub collections: u64,
    /// Objects.
    pub objects: u64,
    /// Object bytes given as data (holes and shared ranges excluded).
    pub data_bytes: u64,
    /// Bytes of shared extents (each once, however many objects map it).
    pub shared_bytes: u64,
    /// Omap entries.
    pub omap_entries: u64,
    /// Bytes of the stream.
    pub stream_bytes: u64,
    /// The header's `commit_point`: the newest journal record just before the snapshot
    /// (FORMAT.md §12; informational).
    pub commit_point: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Store {
    /// Writes a stream of the chosen collections as of one commit point to `sink`, while the
    /// store keeps serving: the stream holds exactly the state after the transactions that
    /// finished before the call and none submitted after the snapshot it takes. Writes during
    /// the export take new space (no in-place overwrites) and space they free is reused only
    /// after it. A read-only store exports the state it was opened with.
    ///
    /// On error the stream is left without its trailer, so no importer takes it for whole.
    pub fn export<W: Write>(&self, sink: W, options: ExportOptions<'_>) -> Result<ExportReport> {
        let started = Instant::now();
        let engine = &self.engine;
        engine.check_poison()?;
        let _space = engine.reclaimer.begin_read(&engine.allocator);
        let _pin = ExportPin::new(engine);
        engine.transactions.wait_settled(engine.waiting());
        engine.check_poison()?;
        let commit_point = self
            .journal_status()
            .map_or(0, |status| status.head.sequence.saturating_sub(1));
        let snapshot = engine.kv.snapshot()?;
        let collections = chosen_collections(snapshot.as_ref(), &options.collections)?;
        let bytes_total = if options.collections.is_empty() {
            stored_bytes(snapshot.as_ref())?
        } else {
            0
        };
        let header = StreamHeader {
            version: STREAM_VERSION,
            source_uuid: engine.label.store_uuid,
            commit_point,
            created_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        };
        let sink = Counted { sink, bytes: 0 };
        let writer = StreamWriter::new(sink, &header).map_err(write_error)?;
        // The device is read (and its checksums verified) on one thread while this one encodes
        // and writes what was read before: the two overlap, as fio's queue keeps a device busy.
        let (to_writer, from_reader) = crossbeam::channel::bounded(FRAMES_IN_FLIGHT);
        let mut exporter = Exporter {
            engine,
            kv: snapshot.as_ref(),
            pending: PendingWrites::load(snapshot.as_ref())?,
            out: to_writer,
            shared: HashMap::new(),
            shared_next: 1,
            bytes_total,
            objects: 0,
            bytes: 0,
        };
        let (read, written) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                collections
                    .iter()
                    .try_for_each(|(name, id)| exporter.collection(name, *id))
            });
            let written = write_frames(writer, &from_reader, options.progress);
            drop(from_reader);
            let read = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (read, written)
        });
        // A write failure also stops the reader; its own error then only says so.
        let writer = written?;
        read?;
        let (sink, trailer) = writer.finish().map_err(write_error)?;
        Ok(ExportReport {
            collections: trailer.collections,
            objects: trailer.objects,
            data_bytes: trailer.data_bytes,
            shared_bytes: trailer.shared_bytes,
            omap_entries: trailer.omap_entries,
            stream_bytes: sink.bytes,
            commit_point,
            elapsed: started.elapsed(),
        })
    }
}

/// While it lives, writes take new space (see the module comment).
struct ExportPin<'e> {
    engine: &'e Engine,
}

impl<'e> ExportPin<'e> {
    fn new(engine: &'e Engine) -> Self {
        // Every submission prepares and queues under the namespace lock (shared, or exclusive
        // for collection changes): holding it exclusively here puts each transaction wholly
        // before the pin or wholly after it.
        let _namespace = engine.collections.write();
        engine.exports_pinned.fetch_add(1, Ordering::SeqCst);
        ExportPin { engine }
    }
}

impl Drop for ExportPin<'_> {
    fn drop(&mut self) {
        self.engine.exports_pinned.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A sink that counts what it is given.
struct Counted<W> {
    sink: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.sink.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }
}

/// What the reading thread hands the writing one.
enum Output {
    Frame(Frame),
    Progress(ExportProgress),
}

/// Writes the frames the reader sends until it is done; reports progress.
fn write_frames<W: Write>(
    mut writer: StreamWriter<W>,
    frames: &crossbeam::channel::Receiver<Output>,
    mut progress: Option<&mut dyn FnMut(ExportProgress)>,
) -> Result<StreamWriter<W>> {
    for output in frames {
        match output {
            Output::Frame(frame) => writer.frame(&frame).map_err(write_error)?,
            Output::Progress(now) => {
                if let Some(progress) = progress.as_mut() {
                    progress(now);
                }
            }
        }
    }
    Ok(writer)
}

fn write_error(error: std::io::Error) -> Error {
    Error::io("writing the export stream", error)
}

/// The collections to export, by name (ascending, as the stream wants), with their ids.
fn chosen_collections(kv: &dyn Kv, chosen: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, u64)>> {
    let mut all = Vec::new();
    kv.scan(KeySpace::Collections, &[], None, &mut |name, value| {
        if !is_hidden_collection(name) {
            all.push((
                name.to_vec(),
                CollectionRecord::decode(value)?.collection_id,
            ));
        }
        Ok(true)
    })?;
    if chosen.is_empty() {
        return Ok(all);
    }
    if let Some(missing) = chosen
        .iter()
        .find(|name| !all.iter().any(|(n, _)| n == *name))
    {
        return Err(Error::collection_not_found(missing));
    }
    all.retain(|(name, _)| chosen.contains(name));
    Ok(all)
}

fn stored_bytes(kv: &dyn Kv) -> Result<u64> {
    Ok(match kv.get(KeySpace::Stats, STATFS_KEY)? {
        Some(value) => StatfsRecord::decode(&value)?.stored_bytes,
        None => 0,
    })
}

/// One shared extent the stream has given: blob bytes `[start, start + length)`.
#[derive(Debug, Clone, Copy)]
struct SharedExtent {
    start: u32,
    length: u32,
    id: u64,
}

/// The reading side of an export: walks the snapshot and reads the device.
struct Exporter<'a> {
    engine: &'a Engine,
    /// The snapshot: the commit point.
    kv: &'a dyn Kv,
    /// Deferred writes of the snapshot, patched over the device.
    pending: PendingWrites,
    /// To the writing thread.
    out: crossbeam::channel::Sender<Output>,
    /// Shared extents given so far, by shared blob id (shared blobs never cross collections,
    /// but ids are stream-wide).
    shared: HashMap<u64, Vec<SharedExtent>>,
    shared_next: u64,
    bytes_total: u64,
    objects: u64,
    bytes: u64,
}

impl Exporter<'_> {
    fn send(&self, output: Output) -> Result<()> {
        self.out
            .send(output)
            .map_err(|_| Error::invalid("the export stream's writer stopped"))
    }

    fn frame(&mut self, frame: Frame) -> Result<()> {
        self.send(Output::Frame(frame))
    }

    fn collection(&mut self, name: &[u8], id: u64) -> Result<()> {
        self.frame(Frame::Collection {
            name: name.to_vec(),
        })?;
        let end = keys::onode_key_end(id);
        let mut start = keys::onode_key_first(id);
        loop {
            let batch = self
                .kv
                .scan_collect(KeySpace::Onodes, &start, Some(&end), LIST_BATCH)?;
            let mut objects = Vec::with_capacity(batch.len());
            for (key, value) in &batch {
                let (_, object) = keys::split_onode_key(key)?;
                let shown = format!("{}/{}", display_bytes(name), display_bytes(object));
                let onode = Onode::decode(self.kv, value, self.engine.superblock.min_alloc_size)
                    .map_err(|e| Error::Corruption(format!("object {shown}: {e}")))?;
                objects.push((object, onode, shown));
            }
            let mut read_ahead = self.read_small_objects(&objects).into_iter();
            for (object, onode, shown) in &objects {
                let bytes = read_ahead.next().flatten().transpose()?;
                self.object(object, onode, shown, bytes)?;
            }
            match batch.last() {
                Some((last, _)) if batch.len() == LIST_BATCH => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// The bytes of the batch's small objects (one window, no shared blobs), read at once by
    /// several threads: one at a time, each would wait out a device round trip on its own.
    fn read_small_objects(
        &self,
        objects: &[(&[u8], Onode, String)],
    ) -> Vec<Option<Result<DataBuf>>> {
        let small = |onode: &Onode| {
            onode.size > 0
                && onode.size <= SMALL_OBJECT_BYTES
                && onode
                    .extent_map
                    .blobs()
                    .all(|(_, blob)| blob.shared_blob_id.is_none())
        };
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<DataBuf>>>> =
            objects.iter().map(|_| Mutex::new(None)).collect();
        let device = self.engine.device.as_ref();
        let readers = SMALL_OBJECT_READERS.min(objects.len());
        std::thread::scope(|scope| {
            for _ in 0..readers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((_, onode, shown)) = objects.get(i) else {
                            return;
                        };
                        if small(onode) {
                            let read =
                                read_object_buf(device, onode, 0, onode.size, shown, &self.pending);
                            *results[i].lock() = Some(read);
                        }
                    }
                });
            }
        });
        results.into_iter().map(Mutex::into_inner).collect()
    }

    /// Writes an object's frames; `read` holds its bytes when they were read ahead.
    fn object(
        &mut self,
        name: &[u8],
        onode: &Onode,
        shown: &str,
        mut read: Option<DataBuf>,
    ) -> Result<()> {
        let omap_header = self
            .kv
            .get(KeySpace::Omap, &keys::omap_header_key(onode.nid))?;
        self.frame(Frame::Object(ObjectHead {
            name: name.to_vec(),
            size: onode.size,
            xattrs: onode
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            omap_header,
        }))?;
        let window = DATA_FRAME_BYTES_MAX as u64;
        let mut offset = 0;
        while offset < onode.size {
            let length = window.min(onode.size - offset);
            self.window(onode, offset, length, shown, read.take())?;
            offset += length;
        }
        self.omap(onode.nid)?;
        self.objects += 1;
        self.send(Output::Progress(ExportProgress {
            objects: self.objects,
            bytes: self.bytes,
            bytes_total: self.bytes_total,
        }))
    }

    /// Object bytes `[offset, offset + length)`: data frames for its own blobs' bytes, shared
    /// ranges for its clones' (holes are left out).
    fn window(
        &mut self,
        onode: &Onode,
        offset: u64,
        length: u64,
        shown: &str,
        read: Option<DataBuf>,
    ) -> Result<()> {
        let pieces = onode.extent_map.pieces(offset, length);
        let own: Vec<(u64, u64)> = pieces
            .iter()
            .filter_map(|piece| match *piece {
                Piece::Data {
                    logical_offset,
                    length,
                    blob,
                    ..
                } if onode.extent_map.blob(blob).shared_blob_id.is_none() => {
                    Some((logical_offset, length))
                }
                _ => None,
            })
            .collect();
        let own_bytes = match read {
            Some(whole) => split_window(whole, offset, &own),
            None if own.is_empty() => Vec::new(),
            None => {
                let device = self.engine.device.as_ref();
                read_pieces(device, onode, &own, shown, &self.pending)?
            }
        };
        let mut own_bytes = own_bytes.into_iter();
        // A run of the object's own bytes, written as one data frame when something else
        // (a hole, a shared range, a large piece of its own, the window's end) ends it.
        let mut run: Option<(u64, DataBuf)> = None;
        for piece in pieces {
            let Piece::Data {
                logical_offset,
                length,
                blob,
                blob_offset,
            } = piece
            else {
                self.data(run.take())?;
                continue;
            };
            let record = onode.extent_map.blob(blob);
            match record.shared_blob_id {
                None => {
                    let bytes = own_bytes.next().ok_or_else(|| {
                        Error::corruption(format!("object {shown}: a piece was not read"))
                    })?;
                    run = self.extend_run(run.take(), logical_offset, bytes)?;
                }
                Some(sbid) => {
                    self.data(run.take())?;
                    let place = (logical_offset, blob_offset, length);
                    self.shared_ranges(sbid, record, place, shown)?;
                }
            }
        }
        self.data(run.take())
    }

    /// Adds the piece of own bytes at `logical_offset` to the run, or writes the run and starts
    /// another. A large piece read into a buffer of its own goes out as a frame of its own,
    /// so that its bytes are never copied on the way to the stream.
    fn extend_run(
        &mut self,
        run: Option<(u64, DataBuf)>,
        logical_offset: u64,
        piece: DataBuf,
    ) -> Result<Option<(u64, DataBuf)>> {
        let alone = piece.aligned().is_some() && piece.len() >= FRAME_OF_ITS_OWN_BYTES;
        match run {
            Some((start, bytes)) if !alone && start + bytes.len() as u64 == logical_offset => {
                let mut joined = bytes.into_vec();
                joined.extend_from_slice(&piece);
                Ok(Some((start, DataBuf::Vec(joined))))
            }
            run => {
                self.data(run)?;
                if alone {
                    self.data(Some((logical_offset, piece)))?;
                    return Ok(None);
                }
                Ok(Some((logical_offset, piece)))
            }
        }
    }

    /// Writes the run of object bytes `(object offset, bytes)` as a data frame, if there is one.
    fn data(&mut self, run: Option<(u64, DataBuf)>) -> Result<()> {
        let Some((offset, bytes)) = run else {
            return Ok(());
        };
        self.bytes += bytes.len() as u64;
        self.frame(Frame::Data { offset, bytes })
    }

    /// Shared ranges for `length` bytes at object offset `logical_offset`, blob offset
    /// `blob_offset` of shared blob `sbid`, giving the shared extents they fall in first.
    fn shared_ranges(
        &mut self,
        sbid: u64,
        blob: &Blob,
        (mut logical_offset, mut blob_offset, length): (u64, u32, u64),
        shown: &str,
    ) -> Result<()> {
        let end = u64::from(blob_offset) + length;
        while u64::from(blob_offset) < end {
            let extent = self.shared_extent(sbid, blob, blob_offset, shown)?;
            let extent_end = u64::from(extent.start) + u64::from(extent.length);
            let here = extent_end.min(end) - u64::from(blob_offset);
            self.frame(Frame::SharedRef {
                offset: logical_offset,
                id: extent.id,
                shared_offset: blob_offset - extent.start,
                length: here as u32,
            })?;
            logical_offset += here;
            blob_offset += here as u32;
        }
        Ok(())
    }

    /// The shared extent holding blob offset `position` of shared blob `sbid`, given now if
    /// the stream has not given it yet.
    fn shared_extent(
        &mut self,
        sbid: u64,
        blob: &Blob,
        position: u32,
        shown: &str,
    ) -> Result<SharedExtent> {
        let known = self.shared.get(&sbid).and_then(|extents| {
            extents
                .iter()
                .find(|e| e.start <= position && position - e.start < e.length)
        });
        if let Some(extent) = known {
            return Ok(*extent);
        }
        let record = match self
            .kv
            .get(KeySpace::SharedBlobs, &keys::shared_blob_key(sbid))?
        {
            Some(value) => SharedBlobRecord::decode(&value)?,
            None => {
                return Err(Error::Corruption(format!(
                    "object {shown}: shared blob {sbid} has no record"
                )));
            }
        };
        if record.device_offset != blob.device_offset || record.length != blob.length {
            return Err(Error::Corruption(format!(
                "object {shown}: shared blob {sbid}'s record describes {} bytes at {:#x}, its blob {} at {:#x}",
                record.length, record.device_offset, blob.length, blob.device_offset
            )));
        }
        let (start, length) = referenced_run(&record, position).ok_or_else(|| {
            Error::Corruption(format!(
                "object {shown}: maps byte {position} of shared blob {sbid}, which no reference holds"
            ))
        })?;
        let bytes = self.read_blob(blob, start, length, shown)?;
        let extent = SharedExtent {
            start,
            length,
            id: self.shared_next,
        };
        self.shared_next += 1;
        self.bytes += bytes.len() as u64;
        self.frame(Frame::Shared {
            id: extent.id,
            bytes,
        })?;
        self.shared.entry(sbid).or_default().push(extent);
        Ok(extent)
    }

    /// Blob bytes `[start, start + length)`, verified; chunks never written read as zeros.
    fn read_blob(&self, blob: &Blob, start: u32, length: u32, shown: &str) -> Result<DataBuf> {
        let mut view = Onode::new(0, self.engine.superblock.min_alloc_size);
        view.size = u64::from(length);
        let id = view.extent_map.add_blob(blob.clone());
        let chunk = blob.csum_chunk();
        let mut used: Option<(u32, u32)> = None;
        let mut position = start;
        while position < start + length {
            let next = (position / chunk + 1) * chunk;
            let stop = next.min(start + length);
            if blob.chunk_unused(u64::from(position / chunk)) {
                if let Some((from, to)) = used.take() {
                    view.extent_map
                        .map(u64::from(from - start), to - from, id, from);
                }
            } else {
                match &mut used {
                    Some((_, to)) => *to = stop,
                    None => used = Some((position, stop)),
                }
            }
            position = stop;
        }
        if let Some((from, to)) = used {
            view.extent_map
                .map(u64::from(from - start), to - from, id, from);
        }
        let device = self.engine.device.as_ref();
        read_object_buf(device, &view, 0, u64::from(length), shown, &self.pending)
    }

    /// The object's omap entries, in frames bounded by entries and bytes.
    fn omap(&mut self, nid: u64) -> Result<()> {
        let end = keys::omap_values_end(nid);
        let mut start = keys::omap_value_key(nid, &[]);
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        loop {
            let page = self
                .kv
                .scan_collect(KeySpace::Omap, &start, Some(&end), LIST_BATCH)?;
            for (key, value) in &page {
                let user_key = keys::split_omap_key(key)?.2.to_vec();
                let size = user_key.len() + value.len();
                if !entries.is_empty()
                    && (entries.len() == OMAP_FRAME_ENTRIES_MAX
                        || bytes + size > OMAP_FRAME_BYTES_MAX)
                {
                    self.frame(Frame::Omap(std::mem::take(&mut entries)))?;
                    bytes = 0;
                }
                bytes += size;
                entries.push((user_key, value.clone()));
            }
            match page.last() {
                Some((last, _)) if page.len() == LIST_BATCH => {
                    start = last.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        if !entries.is_empty() {
            self.frame(Frame::Omap(entries))?;
        }
        Ok(())
    }
}

/// Own-blob pieces at least this long, read into buffers of their own, go out as frames of
/// their own rather than joining their neighbours' (which would copy them).
const FRAME_OF_ITS_OWN_BYTES: usize = 64 << 10;

/// The bytes of each of `own` (object offset, length) out of `whole`, the window read at
/// object `offset`: `whole` itself when it is exactly the one piece.
fn split_window(whole: DataBuf, offset: u64, own: &[(u64, u64)]) -> Vec<DataBuf> {
    if let [(start, length)] = *own
        && start == offset
        && length == whole.len() as u64
    {
        return vec![whole];
    }
    own.iter()
        .map(|&(start, length)| {
            let from = (start - offset) as usize;
            DataBuf::Vec(whole[from..from + length as usize].to_vec())
        })
        .collect()
}

/// The maximal run of referenced allocation units of `record` holding blob offset
/// `position`, cut at [`DATA_FRAME_BYTES_MAX`] from its start: `(start, length)`.
fn referenced_run(record: &SharedBlobRecord, position: u32) -> Option<(u32, u32)> {
    let unit = record.unit_bytes();
    if unit == 0 {
        return None;
    }
    let at = (position / unit) as usize;
    if record.refs.get(at).is_none_or(|refs| *refs == 0) {
        return None;
    }
    let first = (0..=at)
        .rev()
        .take_while(|i| record.refs[*i] > 0)
        .last()
        .unwrap_or(at);
    let last = (at..record.refs.len())
        .take_while(|i| record.refs[*i] > 0)
        .last()
        .unwrap_or(at);
    let (run_start, run_end) = (first as u32 * unit, (last as u32 + 1) * unit);
    let piece = DATA_FRAME_BYTES_MAX as u32;
    let start = run_start + (position - run_start) / piece * piece;
    Some((start, (run_end - start).min(piece)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_extent_is_the_referenced_run_around_a_position_cut_at_the_frame_limit() {
        let unit = 1 << 20;
        let record = SharedBlobRecord {
            device_offset: 0,
            length: 10 * unit,
            refs: vec![0, 1, 2, 1, 1, 1, 1, 0, 3, 0],
        };
        assert_eq!(referenced_run(&record, 0), None, "unit 0 is free");
        assert_eq!(referenced_run(&record, unit + 5), Some((unit, 4 * unit)));
        assert_eq!(
            referenced_run(&record, 5 * unit + 1),
            Some((5 * unit, 2 * unit)),
            "the run [1, 7) cut at 4 MiB from its start"
        );
        assert_eq!(referenced_run(&record, 8 * unit), Some((8 * unit, unit)));
        assert_eq!(referenced_run(&record, 10 * unit), None, "past the blob");
    }
}
