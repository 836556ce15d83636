//! The export stream (FORMAT.md §12): a store's collections, objects, data, xattrs and omap as
//! one self-checking byte stream, for backup and restore through the store's own mechanism.
//!
//! A stream is a magic, then frames. Each frame carries its kind, its index in the stream and a
//! crc32c, so a flipped byte, a lost frame or two frames swapped is found at the frame it
//! touches; a trailer closes the stream with counts and a crc32c of every byte before it, so a
//! stream cut short (even at a frame boundary) is never taken for a whole one. Frames are small
//! (at most [`FRAME_BODY_MAX`] bytes of body), so both sides stream in bounded memory.
//!
//! [`StreamWriter`] writes a stream; [`StreamReader`] reads one and checks, frame by frame,
//! everything the format promises: the order of frames (collections, objects and omap keys
//! ascending, an object's data and shared ranges ascending and within its size), that each
//! shared range names a shared extent already in the stream, and the trailer's counts and
//! digest. What the reader yields has passed those checks; only the trailer says the stream is
//! whole, so an importer commits nothing it cannot undo before [`Frame::Trailer`] arrives.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::codec::{DecodeError, Decoder, Encoder};
use super::{
    COLLECTION_NAME_LENGTH_MAX, OBJECT_NAME_LENGTH_MAX, OBJECT_SIZE_MAX, OMAP_KEY_LENGTH_MAX,
    OMAP_VALUE_LENGTH_MAX, XATTR_NAME_LENGTH_MAX, XATTR_VALUE_LENGTH_MAX, XATTRS_COUNT_MAX,
};
use crate::device::{AlignedBuf, DataBuf};

/// First bytes of every export stream.
pub const STREAM_MAGIC: &[u8; 16] = b"bstore export\n\0\0";
/// Layout version this build writes.
pub const STREAM_VERSION: u32 = 1;
/// Largest frame body: a data frame of [`DATA_FRAME_BYTES_MAX`] or an omap frame holding one
/// value of the largest size, with room for their fields.
pub const FRAME_BODY_MAX: usize = 8 << 20;
/// Largest run of object or shared bytes in one frame.
pub const DATA_FRAME_BYTES_MAX: usize = 4 << 20;
/// Omap entries the writer puts in one frame before starting another (also bounded by bytes).
pub const OMAP_FRAME_ENTRIES_MAX: usize = 4096;
/// Bytes of frame head: kind, index, body length.
pub const FRAME_HEAD_LENGTH: usize = 1 + 8 + 4;
/// The buffer to wrap a [`StreamReader`]'s source in (a `BufReader` of this capacity): enough
/// that small frames take few reads, small enough that the run of a data frame is mostly read
/// straight into its own buffer (a buffered reader passes on what it holds first, a second
/// copy of up to its capacity per frame).
pub const READ_BUFFER_BYTES: usize = 64 << 10;

const KIND_HEADER: u8 = 1;
const KIND_COLLECTION: u8 = 2;
const KIND_OBJECT: u8 = 3;
const KIND_DATA: u8 = 4;
const KIND_OMAP: u8 = 5;
const KIND_SHARED: u8 = 6;
const KIND_SHARED_REF: u8 = 7;
const KIND_TRAILER: u8 = 8;

const RECORD: &str = "export stream";
/// Fields of a data or shared frame before its run of bytes: position (offset or id), length.
const RUN_FIELDS_LENGTH: usize = 8 + 4;
/// Bytes of the run buffers a reader keeps after handing them out, to read into again once
/// their users let go: more than an import keeps in flight, so its buffers go round.
const LENT_RUN_BYTES_MAX: usize = 96 << 20;

/// Where the stream came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Layout of the stream (1).
    pub version: u32,
    /// The source store's identity.
    pub source_uuid: [u8; 16],
    /// The commit the stream shows: the last journal record (or commit) it includes.
    pub commit_point: u64,
    /// When the export began, seconds since the Unix epoch.
    pub created_secs: u64,
}

/// An object's metadata; its data, shared ranges and omap keys follow in their own frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Name within its collection.
    pub name: Vec<u8>,
    /// Logical size in bytes (holes included).
    pub size: u64,
    /// Extended attributes, in ascending name order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The omap header, when the object has one.
    pub omap_header: Option<Vec<u8>>,
}

/// Closes the stream: what it carried, and a crc32c of every byte before this frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTrailer {
    /// Frames before the trailer (header included).
    pub frames: u64,
    /// Collection frames.
    pub collections: u64,
    /// Object frames.
    pub objects: u64,
    /// Bytes in data frames.
    pub data_bytes: u64,
    /// Bytes in shared frames (each shared extent once, however many objects map it).
    pub shared_bytes: u64,
    /// Omap entries in omap frames.
    pub omap_entries: u64,
    /// crc32c of the magic and every frame before the trailer.
    pub digest: u32,
}

/// One frame of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Always the first frame.
    Header(StreamHeader),
    /// Starts a collection; the objects that follow belong to it.
    Collection {
        /// Its name.
        name: Vec<u8>,
    },
    /// Starts an object of the current collection.
    Object(ObjectHead),
    /// Bytes of the current object at `offset`.
    Data {
        /// Object offset of the first byte.
        offset: u64,
        /// The bytes (1 to [`DATA_FRAME_BYTES_MAX`]).
        bytes: DataBuf,
    },
    /// Omap entries of the current object, in ascending key order.
    Omap(Vec<(Vec<u8>, Vec<u8>)>),
    /// Bytes that several objects share (a clone's extents), given once; `id`s ascend from 1.
    Shared {
        /// Stream-local id the [`Frame::SharedRef`]s name.
        id: u64,
        /// The bytes (1 to [`DATA_FRAME_BYTES_MAX`]).
        bytes: DataBuf,
    },
    /// `length` bytes of shared extent `id` from `shared_offset` on, at object `offset`.
    SharedRef {
        /// Object offset.
        offset: u64,
        /// The shared extent.
        id: u64,
        /// Offset within the shared extent.
        shared_offset: u32,
        /// Bytes mapped.
        length: u32,
    },
    /// Always the last frame.
    Trailer(StreamTrailer),
}

/// The body of `frame` as its kind, its encoded fields and the run of bytes that ends the body
/// of a data or shared frame (empty for the others): the run is borrowed, not copied, as it
/// holds nearly every byte of a stream.
fn encode_body(frame: &Frame) -> (u8, Vec<u8>, &[u8]) {
    let mut e = Encoder::new();
    let mut run: &[u8] = &[];
    let kind = match frame {
        Frame::Header(header) => {
            e.u32(header.version);
            e.u32(1); // compat version: the oldest layout a reader must know
            e.raw(&header.source_uuid);
            e.u64(header.commit_point);
            e.u64(header.created_secs);
            KIND_HEADER
        }
        Frame::Collection { name } => {
            e.bytes16(name);
            KIND_COLLECTION
        }
        Frame::Object(head) => {
            e.bytes16(&head.name);
            e.u64(head.size);
            e.u32(head.xattrs.len() as u32);
            for (name, value) in &head.xattrs {
                e.bytes16(name);
                e.bytes32(value);
            }
            match &head.omap_header {
                Some(header) => {
                    e.u8(1);
                    e.bytes32(header);
                }
                None => e.u8(0),
            }
            KIND_OBJECT
        }
        Frame::Data { offset, bytes } => {
            e.u64(*offset);
            e.u32(run_length(bytes));
            run = &bytes[..];
            KIND_DATA
        }
        Frame::Omap(entries) => {
            e.u32(entries.len() as u32);
            for (key, value) in entries {
                e.bytes16(key);
                e.bytes32(value);
            }
            KIND_OMAP
        }
        Frame::Shared { id, bytes } => {
            e.u64(*id);
            e.u32(run_length(bytes));
            run = &bytes[..];
            KIND_SHARED
        }
        Frame::SharedRef {
            offset,
            id,
            shared_offset,
            length,
        } => {
            e.u64(*offset);
            e.u64(*id);
            e.u32(*shared_offset);
            e.u32(*length);
            KIND_SHARED_REF
        }
        Frame::Trailer(trailer) => {
            e.u64(trailer.frames);
            e.u64(trailer.collections);
            e.u64(trailer.objects);
            e.u64(trailer.data_bytes);
            e.u64(trailer.shared_bytes);
            e.u64(trailer.omap_entries);
            e.u32(trailer.digest);
            KIND_TRAILER
        }
    };
    (kind, e.finish(), run)
}

fn run_length(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("callers bound runs to DATA_FRAME_BYTES_MAX")
}

/// A frame in the order its bytes go out, with its run of bytes borrowed from the frame.
struct EncodedFrame<'a> {
    /// Kind, index, body length, then the body's fields.
    head: Vec<u8>,
    /// The run of bytes that ends a data or shared frame's body (empty for the others).
    run: &'a [u8],
    /// crc32c of `head` then `run`.
    crc: u32,
}

impl<'a> EncodedFrame<'a> {
    fn new(index: u64, frame: &'a Frame) -> Self {
        let (kind, fields, run) = encode_body(frame);
        let body_length = fields.len() + run.len();
        assert!(body_length <= FRAME_BODY_MAX, "frames are kept small");
        let mut e = Encoder::with_capacity(FRAME_HEAD_LENGTH + fields.len());
        e.u8(kind);
        e.u64(index);
        e.u32(body_length as u32);
        e.raw(&fields);
        let head = e.finish();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head), run);
        EncodedFrame { head, run, crc }
    }

    /// Bytes the crc covers.
    fn covered_length(&self) -> usize {
        self.head.len() + self.run.len()
    }
}

/// The bytes of frame number `index`: kind, index, body length, body, crc32c of all of those.
pub fn encode_frame(index: u64, frame: &Frame) -> Vec<u8> {
    let encoded = EncodedFrame::new(index, frame);
    let mut bytes = Vec::with_capacity(encoded.covered_length() + 4);
    bytes.extend_from_slice(&encoded.head);
    bytes.extend_from_slice(encoded.run);
    bytes.extend_from_slice(&encoded.crc.to_le_bytes());
    bytes
}

/// A frame of any `kind` and `body`, with a valid crc (the fuzz targets' way past it).
pub(crate) fn frame_bytes(kind: u8, index: u64, body: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(FRAME_HEAD_LENGTH + body.len() + 4);
    e.u8(kind);
    e.u64(index);
    e.u32(body.len() as u32);
    e.raw(body);
    let mut bytes = e.finish();
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes the body of a frame of `kind`.
fn decode_body(kind: u8, body: &[u8]) -> Result<Frame, DecodeError> {
    let mut d = Decoder::new(RECORD, body);
    let frame = match kind {
        KIND_HEADER => {
            let version = d.u32("stream version")?;
            let compat = d.u32("stream compat version")?;
            if compat > STREAM_VERSION {
                return Err(DecodeError::newer(RECORD, compat, STREAM_VERSION));
            }
            let header = StreamHeader {
                version,
                source_uuid: d.array("source uuid")?,
                commit_point: d.u64("commit point")?,
                created_secs: d.u64("created")?,
            };
            if version < STREAM_VERSION {
                return Err(d.error(format!("stream version {version} was never written")));
            }
            // A newer writer may append header fields a reader of this layout skips.
            return Ok(Frame::Header(header));
        }
        KIND_COLLECTION => Frame::Collection {
            name: nonempty16(&mut d, "collection name", COLLECTION_NAME_LENGTH_MAX)?,
        },
        KIND_OBJECT => {
            let name = nonempty16(&mut d, "object name", OBJECT_NAME_LENGTH_MAX)?;
            let size = d.u64("object size")?;
            if size > OBJECT_SIZE_MAX {
                return Err(d.error(format!("object size {size} exceeds {OBJECT_SIZE_MAX}")));
            }
            let count = d.count32("xattr count", XATTRS_COUNT_MAX)?;
            let mut xattrs = Vec::with_capacity(count);
            for _ in 0..count {
                let name = d.bytes16("xattr name", XATTR_NAME_LENGTH_MAX)?.to_vec();
                let value = d.bytes32("xattr value", XATTR_VALUE_LENGTH_MAX)?.to_vec();
                xattrs.push((name, value));
            }
            ascending(&d, xattrs.iter().map(|(name, _)| name), "xattr names")?;
            let omap_header = match d.u8("omap header present")? {
                0 => None,
                1 => Some(d.bytes32("omap header", OMAP_VALUE_LENGTH_MAX)?.to_vec()),
                other => return Err(d.error(format!("omap header flag {other}"))),
            };
            Frame::Object(ObjectHead {
                name,
                size,
                xattrs,
                omap_header,
            })
        }
        KIND_DATA => Frame::Data {
            offset: d.u64("data offset")?,
            bytes: nonempty32(&mut d, "data", DATA_FRAME_BYTES_MAX)?.into(),
        },
        KIND_OMAP => {
            let count = d.count32("omap entry count", OMAP_FRAME_ENTRIES_MAX)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let key = d.bytes16("omap key", OMAP_KEY_LENGTH_MAX)?.to_vec();
                let value = d.bytes32("omap value", OMAP_VALUE_LENGTH_MAX)?.to_vec();
                entries.push((key, value));
            }
            if entries.is_empty() {
                return Err(d.error("an omap frame without entries"));
            }
            ascending(&d, entries.iter().map(|(key, _)| key), "omap keys")?;
            Frame::Omap(entries)
        }
        KIND_SHARED => Frame::Shared {
            id: d.u64("shared id")?,
            bytes: nonempty32(&mut d, "shared data", DATA_FRAME_BYTES_MAX)?.into(),
        },
        KIND_SHARED_REF => Frame::SharedRef {
            offset: d.u64("shared range offset")?,
            id: d.u64("shared range id")?,
            shared_offset: d.u32("shared range start")?,
            length: d.u32("shared range length")?,
        },
        KIND_TRAILER => Frame::Trailer(StreamTrailer {
            frames: d.u64("trailer frames")?,
            collections: d.u64("trailer collections")?,
            objects: d.u64("trailer objects")?,
            data_bytes: d.u64("trailer data bytes")?,
            shared_bytes: d.u64("trailer shared bytes")?,
            omap_entries: d.u64("trailer omap entries")?,
            digest: d.u32("trailer digest")?,
        }),
        other => return Err(d.error(format!("unknown frame kind {other}"))),
    };
    d.finish()?;
    Ok(frame)
}

/// A u16-prefixed byte string that must not be empty (a name).
fn nonempty16(d: &mut Decoder<'_>, field: &str, length_max: usize) -> Result<Vec<u8>, DecodeError> {
    let bytes = d.bytes16(field, length_max)?.to_vec();
    nonempty(d, field, bytes)
}

/// A u32-prefixed byte string that must not be empty (a run of data).
fn nonempty32(d: &mut Decoder<'_>, field: &str, length_max: usize) -> Result<Vec<u8>, DecodeError> {
    let bytes = d.bytes32(field, length_max)?.to_vec();
    nonempty(d, field, bytes)
}

fn nonempty(d: &Decoder<'_>, field: &str, bytes: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    if bytes.is_empty() {
        return Err(d.error(format!("empty {field}")));
    }
    Ok(bytes)
}

fn ascending<'a>(
    d: &Decoder<'_>,
    mut keys: impl Iterator<Item = &'a Vec<u8>>,
    what: &str,
) -> Result<(), DecodeError> {
    let Some(mut previous) = keys.next() else {
        return Ok(());
    };
    for key in keys {
        if key <= previous {
            return Err(d.error(format!("{what} not in ascending order")));
        }
        previous = key;
    }
    Ok(())
}

/// Checks the frames of a stream in order: everything [`StreamReader`] promises.
#[derive(Debug, Default)]
struct StreamCheck {
    /// crc32c of every byte so far.
    digest: u32,
    counts: StreamTrailer,
    started: bool,
    ended: bool,
    collection: Option<Vec<u8>>,
    object: Option<ObjectCursor>,
    /// Lengths of the shared extents so far, by id (ids are 1, 2, ...).
    shared_lengths: Vec<u32>,
}

/// Where the current object's frames have got to.
#[derive(Debug)]
struct ObjectCursor {
    name: Vec<u8>,
    size: u64,
    /// Object bytes below this offset are covered (data and shared ranges ascend).
    mapped_to: u64,
    last_omap_key: Option<Vec<u8>>,
}

fn order_error(detail: impl Into<String>) -> DecodeError {
    DecodeError::new(RECORD, detail)
}

impl StreamCheck {
    fn new() -> Self {
        StreamCheck {
            digest: crc32c::crc32c(STREAM_MAGIC),
            ..StreamCheck::default()
        }
    }

    /// Accepts frame `index` or says what is wrong with it. `crc` is the frame's crc32c of its
    /// first `covered` bytes (all but the crc itself): the digest extends by the frame's bytes
    /// without reading them again.
    fn accept(
        &mut self,
        index: u64,
        frame: &Frame,
        (crc, covered): (u32, usize),
    ) -> Result<(), DecodeError> {
        if self.ended {
            return Err(order_error("bytes after the trailer"));
        }
        if index != self.counts.frames {
            return Err(order_error(format!(
                "frame {index} where frame {} belongs: frames lost, repeated or reordered",
                self.counts.frames
            )));
        }
        match frame {
            Frame::Header(_) if !self.started => self.started = true,
            _ if !self.started => {
                return Err(order_error("the stream does not start with a header"));
            }
            Frame::Header(_) => return Err(order_error("a second header")),
            Frame::Collection { name } => self.collection(name)?,
            Frame::Object(head) => self.object(head)?,
            Frame::Data { offset, bytes } => {
                self.map(*offset, bytes.len() as u64)?;
                self.counts.data_bytes += bytes.len() as u64;
            }
            Frame::Omap(entries) => self.omap(entries)?,
            Frame::Shared { id, bytes } => {
                if *id != self.shared_lengths.len() as u64 + 1 {
                    return Err(order_error(format!("shared extent {id} out of sequence")));
                }
                self.shared_lengths.push(bytes.len() as u32);
                self.counts.shared_bytes += bytes.len() as u64;
            }
            Frame::SharedRef {
                offset,
                id,
                shared_offset,
                length,
            } => {
                let known = id
                    .checked_sub(1)
                    .and_then(|slot| self.shared_lengths.get(slot as usize));
                let Some(&shared_length) = known else {
                    return Err(order_error(format!(
                        "a range of unknown shared extent {id}"
                    )));
                };
                let end = u64::from(*shared_offset) + u64::from(*length);
                if *length == 0 || end > u64::from(shared_length) {
                    return Err(order_error(format!(
                        "a range [{shared_offset}, {end}) of shared extent {id} of {shared_length} bytes"
                    )));
                }
                self.map(*offset, u64::from(*length))?;
            }
            Frame::Trailer(trailer) => return self.trailer(trailer),
        }
        self.counts.frames += 1;
        let digest = crc32c::crc32c_combine(self.digest, crc, covered);
        self.digest = crc32c::crc32c_append(digest, &crc.to_le_bytes());
        Ok(())
    }

    fn collection(&mut self, name: &[u8]) -> Result<(), DecodeError> {
        if self.collection.as_deref().is_some_and(|last| name <= last) {
            return Err(order_error("collections not in ascending order"));
        }
        self.collection = Some(name.to_vec());
        self.object = None;
        self.counts.collections += 1;
        Ok(())
    }

    fn object(&mut self, head: &ObjectHead) -> Result<(), DecodeError> {
        if self.collection.is_none() {
            return Err(order_error("an object before any collection"));
        }
        if self
            .object
            .as_ref()
            .is_some_and(|last| head.name <= last.name)
        {
            return Err(order_error("objects not in ascending order"));
        }
        self.object = Some(ObjectCursor {
            name: head.name.clone(),
            size: head.size,
            mapped_to: 0,
            last_omap_key: None,
        });
        self.counts.objects += 1;
        Ok(())
    }

    fn current(&mut self) -> Result<&mut ObjectCursor, DecodeError> {
        self.object
            .as_mut()
            .ok_or_else(|| order_error("object data before any object"))
    }

    /// Maps `[offset, offset + length)` of the current object.
    fn map(&mut self, offset: u64, length: u64) -> Result<(), DecodeError> {
        let object = self.current()?;
        let end = offset.saturating_add(length);
        if offset < object.mapped_to || end > object.size {
            return Err(order_error(format!(
                "object bytes [{offset}, {end}) overlap earlier ones or pass its size {}",
                object.size
            )));
        }
        object.mapped_to = end;
        Ok(())
    }

    fn omap(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DecodeError> {
        let object = self.current()?;
        let first = entries.first().map(|(key, _)| key);
        if let (Some(last), Some(first)) = (&object.last_omap_key, first)
            && first <= last
        {
            return Err(order_error(
                "omap keys not in ascending order across frames",
            ));
        }
        object.last_omap_key = entries.last().map(|(key, _)| key.clone());
        self.counts.omap_entries += entries.len() as u64;
        Ok(())
    }

    fn trailer(&mut self, trailer: &StreamTrailer) -> Result<(), DecodeError> {
        let expected = StreamTrailer {
            digest: self.digest,
            ..self.counts
        };
        if *trailer != expected {
            return Err(order_error(format!(
                "the trailer says {trailer:?}, the stream holds {expected:?}"
            )));
        }
        self.ended = true;
        Ok(())
    }
}

/// Why a stream could not be read: the source failed, or the bytes are not a whole stream.
#[derive(Debug)]
pub enum StreamError {
    /// Reading the source failed.
    Io(io::Error),
    /// The bytes are not a valid stream (or end before the trailer).
    Invalid(DecodeError),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Io(error) => write!(f, "reading the export stream: {error}"),
            StreamError::Invalid(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<DecodeError> for StreamError {
    fn from(error: DecodeError) -> Self {
        StreamError::Invalid(error)
    }
}

/// Which frame a reader's error is about.
#[derive(Clone, Copy)]
struct FramePlace {
    index: u64,
    /// Stream offset of its first byte.
    at: u64,
}

impl FramePlace {
    fn error(self, detail: impl std::fmt::Display) -> StreamError {
        let FramePlace { index, at } = self;
        order_error(format!("frame {index} at byte {at}: {detail}")).into()
    }
}

/// Reads and checks a stream frame by frame.
pub struct StreamReader<R> {
    source: R,
    check: StreamCheck,
    /// Stream bytes consumed so far (for error messages and progress).
    position: u64,
    magic_read: bool,
    /// The run buffers handed out lately, oldest first (see [`StreamReader::run_buffer`]).
    lent: VecDeque<Arc<AlignedBuf>>,
    lent_bytes: usize,
}

impl<R: Read> StreamReader<R> {
    /// A reader of the stream `source` holds.
    pub fn new(source: R) -> Self {
        StreamReader {
            source,
            check: StreamCheck::new(),
            position: 0,
            magic_read: false,
            lent: VecDeque::new(),
            lent_bytes: 0,
        }
    }

    /// Stream bytes read so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next frame, checked; `None` once the trailer was read and the source ended.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        if !self.magic_read {
            let mut magic = [0u8; 16];
            self.fill(&mut magic, "the magic")?;
            if &magic != STREAM_MAGIC {
                return Err(order_error("not a bstore export stream (bad magic)").into());
            }
            self.magic_read = true;
        }
        if self.check.ended {
            let mut probe = [0u8; 1];
            return match self.source.read(&mut probe).map_err(StreamError::Io)? {
                0 => Ok(None),
                _ => Err(order_error("bytes after the trailer").into()),
            };
        }
        let at = self.position;
        let mut head = [0u8; FRAME_HEAD_LENGTH];
        self.fill(&mut head, "a frame head")?;
        let mut d = Decoder::new(RECORD, &head);
        let kind = d.u8("frame kind")?;
        let index = d.u64("frame index")?;
        let length = d.u32("frame length")? as usize;
        if length > FRAME_BODY_MAX {
            return Err(order_error(format!(
                "frame at byte {at}: body of {length} bytes exceeds {FRAME_BODY_MAX}"
            ))
            .into());
        }
        let place = FramePlace { index, at };
        let (frame, crc) = self.body(&head, kind, length, place)?;
        self.check
            .accept(index, &frame, (crc, FRAME_HEAD_LENGTH + length))
            .map_err(|e| place.error(e.detail))?;
        Ok(Some(frame))
    }

    /// Reads the body of length `length` and the crc of the frame whose head is `head`; the
    /// frame decoded and its crc. The run of a data or shared frame is read straight into the
    /// aligned buffer the frame hands on, which an import gives the device as it is (the
    /// stream's bytes are copied once, by the read).
    fn body(
        &mut self,
        head: &[u8; FRAME_HEAD_LENGTH],
        kind: u8,
        length: usize,
        place: FramePlace,
    ) -> Result<(Frame, u32), StreamError> {
        let mut covered = Vec::with_capacity(FRAME_HEAD_LENGTH + length.min(RUN_FIELDS_LENGTH));
        covered.extend_from_slice(head);
        if matches!(kind, KIND_DATA | KIND_SHARED) && length > RUN_FIELDS_LENGTH {
            self.fill_vec(&mut covered, RUN_FIELDS_LENGTH, "a frame body")?;
            let fields = covered.get(FRAME_HEAD_LENGTH..).unwrap_or_default();
            let mut d = Decoder::new(RECORD, fields);
            let position = d.u64("run position").map_err(|e| place.error(e.detail))?;
            let declared = d.u32("run length").map_err(|e| place.error(e.detail))? as usize;
            // A run that fills the rest of the body, within bounds, is the whole check
            // `decode_body` makes of these frames; anything else is decoded by it, and fails.
            if declared == length - RUN_FIELDS_LENGTH && declared <= DATA_FRAME_BYTES_MAX {
                let mut run = self.run_buffer(declared);
                self.fill(&mut run, "a frame body")?;
                let crc = crc32c::crc32c_append(crc32c::crc32c(&covered), &run);
                let run = DataBuf::Aligned(self.lend(run));
                self.check_crc(crc, place)?;
                let frame = match kind {
                    KIND_DATA => Frame::Data {
                        offset: position,
                        bytes: run,
                    },
                    _ => Frame::Shared {
                        id: position,
                        bytes: run,
                    },
                };
                return Ok((frame, crc));
            }
        }
        let rest = FRAME_HEAD_LENGTH + length - covered.len();
        self.fill_vec(&mut covered, rest, "a frame body")?;
        let crc = crc32c::crc32c(&covered);
        self.check_crc(crc, place)?;
        let body = covered.get(FRAME_HEAD_LENGTH..).unwrap_or_default();
        let frame = decode_body(kind, body).map_err(|e| place.error(e.detail))?;
        Ok((frame, crc))
    }

    /// A buffer of `length` bytes to read a run into: one handed out before that nobody holds
    /// any more, or a new one. Reusing them spares an import the zeroing of every new buffer
    /// and the page faults of memory freed and mapped again (together a quarter of its CPU).
    fn run_buffer(&mut self, length: usize) -> AlignedBuf {
        let free = self
            .lent
            .iter()
            .position(|buf| buf.len() == length && Arc::strong_count(buf) == 1);
        if let Some(buf) = free.and_then(|index| self.lent.remove(index)) {
            self.lent_bytes -= buf.len();
            if let Ok(buf) = Arc::try_unwrap(buf) {
                return buf;
            }
        }
        AlignedBuf::zeroed(length)
    }

    /// Hands out a run buffer, keeping it to reuse (the oldest go beyond a bound).
    fn lend(&mut self, buf: AlignedBuf) -> Arc<AlignedBuf> {
        let buf = Arc::new(buf);
        self.lent_bytes += buf.len();
        self.lent.push_back(Arc::clone(&buf));
        while self.lent_bytes > LENT_RUN_BYTES_MAX {
            let Some(oldest) = self.lent.pop_front() else {
                break;
            };
            self.lent_bytes -= oldest.len();
        }
        buf
    }

    /// Reads a frame's stored crc32c and compares it with `crc`, computed over its bytes.
    fn check_crc(&mut self, crc: u32, place: FramePlace) -> Result<(), StreamError> {
        let mut stored = [0u8; 4];
        self.fill(&mut stored, "a frame body")?;
        if u32::from_le_bytes(stored) != crc {
            return Err(place.error("crc32c mismatch"));
        }
        Ok(())
    }

    /// Appends exactly `length` bytes to `buf`, read straight into its spare capacity (no
    /// zeroing first); the stream ending first is a cut stream.
    fn fill_vec(
        &mut self,
        buf: &mut Vec<u8>,
        length: usize,
        what: &str,
    ) -> Result<(), StreamError> {
        buf.reserve_exact(length);
        let read = (&mut self.source)
            .take(length as u64)
            .read_to_end(buf)
            .map_err(StreamError::Io)?;
        if read < length {
            return Err(self.cut_short(read, what));
        }
        self.position += length as u64;
        Ok(())
    }

    /// The error of a stream that ends `read` bytes into `what`.
    fn cut_short(&self, read: usize, what: &str) -> StreamError {
        let at = self.position + read as u64;
        order_error(format!(
            "the stream ends at byte {at} inside {what}: cut short"
        ))
        .into()
    }

    /// Reads exactly `buf.len()` bytes; the stream ending first is a cut stream.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), StreamError> {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = buf.get_mut(filled..).unwrap_or_default();
            match self.source.read(rest) {
                Ok(0) => return Err(self.cut_short(filled, what)),
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(StreamError::Io(error)),
            }
        }
        self.position += buf.len() as u64;
        Ok(())
    }
}

/// Writes a stream: the magic, then the frames given, then the trailer at [`StreamWriter::finish`].
pub struct StreamWriter<W> {
    sink: W,
    check: StreamCheck,
    /// Stream bytes written so far.
    written: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Writes the magic and the header frame.
    pub fn new(mut sink: W, header: &StreamHeader) -> io::Result<Self> {
        sink.write_all(STREAM_MAGIC)?;
        let mut writer = StreamWriter {
            sink,
            check: StreamCheck::new(),
            written: STREAM_MAGIC.len() as u64,
        };
        writer.frame(&Frame::Header(header.clone()))?;
        Ok(writer)
    }

    /// Writes one frame. A frame out of the format's order is a bug in the caller: it fails
    /// with `InvalidInput` and writes nothing.
    pub fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        let index = self.check.counts.frames;
        let encoded = EncodedFrame::new(index, frame);
        let covered = encoded.covered_length();
        self.check
            .accept(index, frame, (encoded.crc, covered))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.sink.write_all(&encoded.head)?;
        self.sink.write_all(encoded.run)?;
        self.sink.write_all(&encoded.crc.to_le_bytes())?;
        self.written += covered as u64 + 4;
        Ok(())
    }

    /// Stream bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the trailer and returns the sink and what the stream carried.
    pub fn finish(mut self) -> io::Result<(W, StreamTrailer)> {
        let trailer = StreamTrailer {
            digest: self.check.digest,
            ..self.check.counts
        };
        self.frame(&Frame::Trailer(trailer))?;
        self.sink.flush()?;
        Ok((self.sink, trailer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Collection {
                name: b"pool.1".to_vec(),
            },
            Frame::Shared {
                id: 1,
                bytes: vec![7; 8192].into(),
            },
            Frame::Object(ObjectHead {
                name: b"clone".to_vec(),
                size: 16384,
                xattrs: vec![(b"_".to_vec(), b"attr".to_vec())],
                omap_header: None,
            }),
            Frame::SharedRef {
                offset: 4096,
                id: 1,
                shared_offset: 0,
                length: 8192,
            },
            Frame::Object(ObjectHead {
                name: b"original".to_vec(),
                size: 20000,
                xattrs: Vec::new(),
                omap_header: Some(b"hdr".to_vec()),
            }),
            Frame::Data {
                offset: 0,
                bytes: vec![1; 4096].into(),
            },
            Frame::SharedRef {
                offset: 4096,
                id: 1,
                shared_offset: 0,
                length: 8192,
            },
            Frame::Data {
                offset: 16384,
                bytes: vec![2; 3616].into(),
            },
            Frame::Omap(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), Vec::new()),
            ]),
            Frame::Omap(vec![(b"c".to_vec(), b"3".to_vec())]),
            Frame::Collection {
                name: b"pool.2".to_vec(),
            },
        ]
    }

    pub(super) fn sample_header() -> StreamHeader {
        StreamHeader {
            version: STREAM_VERSION,
            source_uuid: [0x5a; 16],
            commit_point: 42,
            created_secs: 1_800_000_000,
        }
    }

    fn sample_stream() -> Vec<u8> {
        let mut writer = StreamWriter::new(Vec::new(), &sample_header()).unwrap();
        for frame in sample_frames() {
            writer.frame(&frame).unwrap();
        }
        writer.finish().unwrap().0
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, StreamError> {
        let mut reader = StreamReader::new(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn a_stream_reads_back_as_written() {
        let frames = read_all(&sample_stream()).unwrap();
        assert_eq!(frames.first(), Some(&Frame::Header(sample_header())));
        assert_eq!(&frames[1..frames.len() - 1], sample_frames().as_slice());
        let Some(Frame::Trailer(trailer)) = frames.last() else {
            panic!("no trailer")
        };
        assert_eq!(trailer.collections, 2);
        assert_eq!(trailer.objects, 2);
        assert_eq!(trailer.data_bytes, 4096 + 3616);
        assert_eq!(trailer.shared_bytes, 8192);
        assert_eq!(trailer.omap_entries, 3);
    }

    /// A stream of one object with `runs` data frames of 4 KiB, each of its own byte.
    fn runs_stream(runs: u8) -> Vec<u8> {
        let mut writer = StreamWriter::new(Vec::new(), &sample_header()).unwrap();
        let mut frames = vec![
            Frame::Collection {
                name: b"c".to_vec(),
            },
            Frame::Object(ObjectHead {
                name: b"o".to_vec(),
                size: u64::from(runs) * 4096,
                xattrs: Vec::new(),
                omap_header: None,
            }),
        ];
        frames.extend((0..runs).map(|run| Frame::Data {
            offset: u64::from(run) * 4096,
            bytes: vec![run; 4096].into(),
        }));
        for frame in &frames {
            writer.frame(frame).unwrap();
        }
        writer.finish().unwrap().0
    }

    fn run_buffer(frame: &Frame) -> &Arc<AlignedBuf> {
        match frame {
            Frame::Data { bytes, .. } => {
                bytes.aligned().expect("runs are read into aligned buffers")
            }
            other => panic!("not a data frame: {other:?}"),
        }
    }

    #[test]
    fn run_buffers_let_go_of_are_read_into_again_and_held_ones_never() {
        let stream = runs_stream(4);
        let mut reader = StreamReader::new(&stream[..]);
        for _ in 0..3 {
            reader.next_frame().unwrap(); // header, collection, object
        }
        let first = reader.next_frame().unwrap().unwrap();
        let first_at = run_buffer(&first).as_ptr();
        let second = reader.next_frame().unwrap().unwrap();
        assert_ne!(
            run_buffer(&second).as_ptr(),
            first_at,
            "a held buffer was reused"
        );
        assert_eq!(
            &run_buffer(&first)[..],
            &[0; 4096][..],
            "a held buffer changed"
        );
        drop(first);
        let third = reader.next_frame().unwrap().unwrap();
        assert_eq!(
            run_buffer(&third).as_ptr(),
            first_at,
            "a free buffer was not reused"
        );
        assert_eq!(&run_buffer(&third)[..], &[2; 4096][..]);
        assert_eq!(&run_buffer(&second)[..], &[1; 4096][..]);
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let stream = sample_stream();
        for offset in 0..stream.len() {
            for bit in [0, 5] {
                let mut bad = stream.clone();
                bad[offset] ^= 1 << bit;
                assert!(
                    read_all(&bad).is_err(),
                    "flipped bit {bit} of byte {offset} passed"
                );
            }
        }
    }

    #[test]
    fn every_cut_is_an_error() {
        let stream = sample_stream();
        for length in 0..stream.len() {
            let error = read_all(&stream[..length]).unwrap_err();
            assert!(
                error.to_string().contains("cut short"),
                "cut at {length}: {error}"
            );
        }
    }

    /// The byte ranges of each frame of `stream` (the magic not included).
    fn frame_spans(stream: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut reader = StreamReader::new(stream);
        let mut spans = Vec::new();
        let mut at = STREAM_MAGIC.len() as u64;
        while reader.next_frame().unwrap().is_some() {
            spans.push(at as usize..reader.position() as usize);
            at = reader.position();
        }
        spans
    }

    #[test]
    fn swapped_dropped_or_repeated_frames_are_errors() {
        let stream = sample_stream();
        let spans = frame_spans(&stream);
        let assemble = |order: &[usize]| {
            let mut bytes = STREAM_MAGIC.to_vec();
            for &which in order {
                bytes.extend(&stream[spans[which].clone()]);
            }
            bytes
        };
        let whole: Vec<usize> = (0..spans.len()).collect();
        assert!(read_all(&assemble(&whole)).is_ok());
        for a in 0..spans.len() {
            for b in a + 1..spans.len() {
                let mut swapped = whole.clone();
                swapped.swap(a, b);
                let error = read_all(&assemble(&swapped)).unwrap_err();
                assert!(
                    error.to_string().contains("reordered"),
                    "swapped {a}, {b}: {error}"
                );
            }
            let mut dropped = whole.clone();
            dropped.remove(a);
            assert!(read_all(&assemble(&dropped)).is_err(), "dropped {a}");
            let mut repeated = whole.clone();
            repeated.insert(a, a);
            assert!(read_all(&assemble(&repeated)).is_err(), "repeated {a}");
        }
    }

    /// A stream of `frames` after the header, numbered in order and closed by a trailer that
    /// matches them, as a writer that skipped the order checks would make it.
    fn forged(frames: &[Frame]) -> Vec<u8> {
        let mut bytes = STREAM_MAGIC.to_vec();
        bytes.extend(encode_frame(0, &Frame::Header(sample_header())));
        let mut trailer = StreamTrailer {
            frames: 1,
            ..StreamTrailer::default()
        };
        for frame in frames {
            bytes.extend(encode_frame(trailer.frames, frame));
            trailer.frames += 1;
            match frame {
                Frame::Collection { .. } => trailer.collections += 1,
                Frame::Object(_) => trailer.objects += 1,
                Frame::Data { bytes, .. } => trailer.data_bytes += bytes.len() as u64,
                Frame::Shared { bytes, .. } => trailer.shared_bytes += bytes.len() as u64,
                Frame::Omap(entries) => trailer.omap_entries += entries.len() as u64,
                _ => {}
            }
        }
        trailer.digest = crc32c::crc32c(&bytes);
        bytes.extend(encode_frame(trailer.frames, &Frame::Trailer(trailer)));
        bytes
    }

    #[test]
    fn frames_out_of_the_formats_order_are_errors_even_numbered_and_counted() {
        assert!(
            read_all(&forged(&sample_frames())).is_ok(),
            "the forger is faithful"
        );
        let frames = sample_frames();
        let swap = |a: usize, b: usize| {
            let mut frames = frames.clone();
            frames.swap(a, b);
            forged(&frames)
        };
        let cases = [
            ("collections descending", swap(0, 10)),
            ("objects descending", {
                let mut frames = frames.clone();
                let original: Vec<Frame> = frames.drain(4..10).collect();
                frames.splice(2..2, original);
                forged(&frames)
            }),
            ("data before the shared range below it", swap(5, 6)),
            ("omap frames descending", swap(8, 9)),
            ("a range before its shared extent", swap(1, 3)),
            ("an object with no collection", forged(&frames[2..4])),
        ];
        for (what, stream) in cases {
            assert!(read_all(&stream).is_err(), "{what} passed");
        }
    }

    #[test]
    fn bytes_after_the_trailer_are_an_error() {
        let mut stream = sample_stream();
        stream.push(0);
        assert!(
            read_all(&stream)
                .unwrap_err()
                .to_string()
                .contains("after the trailer")
        );
    }

    #[test]
    fn the_writer_refuses_frames_out_of_order() {
        let mut writer = StreamWriter::new(Vec::new(), &sample_header()).unwrap();
        let object = Frame::Object(ObjectHead {
            name: b"o".to_vec(),
            size: 1,
            xattrs: Vec::new(),
            omap_header: None,
        });
        assert!(
            writer.frame(&object).is_err(),
            "an object before any collection"
        );
        let written = writer.written();
        writer
            .frame(&Frame::Collection {
                name: b"c".to_vec(),
            })
            .unwrap();
        assert!(writer.written() > written);
    }
}
