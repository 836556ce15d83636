//! Entry points for fuzzing the decoders, shared by the cargo-fuzz targets (`fuzz/`) and the
//! corpus replay test that plain `cargo test` runs.
//!
//! Each function feeds arbitrary bytes to one decoder. Decoding must never panic; when it
//! succeeds, encoding the result and decoding again must give the same value (the decoder
//! accepts only what the encoder can reproduce).

use super::deferred::DeferredRecord;
use super::freelist;
use super::journal::{
    OpRef, decode_commit, decode_header, encode_commit, encode_record, payload_of,
};
use super::label::Label;
use super::onode::{OnodeRecord, decode_shard, encode_shard};
use super::records::{
    CollectionRecord, JournalPosition, StatfsRecord, Superblock, decode_counter, encode_counter,
};
use super::shared::SharedBlobRecord;

/// A fuzz target: feeds arbitrary bytes to a decoder and checks what it returns.
pub type FuzzTarget = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [(&str, FuzzTarget); 18] = [
    ("label", label),
    ("onode", onode),
    ("extent_shard", extent_shard),
    ("superblock", superblock),
    ("small_records", small_records),
    ("freelist_merge", freelist_merge),
    ("envelope", envelope),
    ("deferred", deferred),
    ("shared_blob", shared_blob),
    ("journal", journal),
    ("onode_sealed", onode_sealed),
    ("extent_shard_sealed", extent_shard_sealed),
    ("superblock_sealed", superblock_sealed),
    ("small_records_sealed", small_records_sealed),
    ("deferred_sealed", deferred_sealed),
    ("shared_blob_sealed", shared_blob_sealed),
    ("export_stream", export_stream),
    ("export_stream_sealed", export_stream_sealed),
];

/// Wraps arbitrary bytes in a valid envelope: byte 0 is the struct version, byte 1 the compat
/// version (at most the struct version), the rest the payload. A mutated record almost never
/// passes the envelope's crc32c, so fuzzing the sealed record stops at the envelope; the
/// `*_sealed` twins hand the payload decoders arbitrary bytes behind a valid crc instead.
pub fn sealed(data: &[u8]) -> Vec<u8> {
    let struct_version = data.first().copied().unwrap_or(1);
    let compat_version = data.get(1).copied().unwrap_or(1).min(struct_version);
    super::envelope::seal(
        struct_version,
        compat_version,
        data.get(2..).unwrap_or_default(),
    )
}

/// [`onode`] behind a valid envelope.
pub fn onode_sealed(data: &[u8]) {
    onode(&sealed(data));
}

/// [`extent_shard`] behind a valid envelope.
pub fn extent_shard_sealed(data: &[u8]) {
    extent_shard(&sealed(data));
}

/// [`superblock`] behind a valid envelope.
pub fn superblock_sealed(data: &[u8]) {
    superblock(&sealed(data));
}

/// [`small_records`] behind a valid envelope.
pub fn small_records_sealed(data: &[u8]) {
    small_records(&sealed(data));
}

/// [`deferred`] behind a valid envelope.
pub fn deferred_sealed(data: &[u8]) {
    deferred(&sealed(data));
}

/// [`shared_blob`] behind a valid envelope.
pub fn shared_blob_sealed(data: &[u8]) {
    shared_blob(&sealed(data));
}

/// The device label.
pub fn label(data: &[u8]) {
    if let Ok(label) = Label::decode(data) {
        assert_eq!(Label::decode(&label.encode()), Ok(label));
    }
}

/// Onode records.
pub fn onode(data: &[u8]) {
    if let Ok(onode) = OnodeRecord::decode(data) {
        assert_eq!(OnodeRecord::decode(&onode.encode()), Ok(onode));
    }
}

/// Extent-map shards.
pub fn extent_shard(data: &[u8]) {
    if let Ok(body) = decode_shard(data) {
        assert_eq!(decode_shard(&encode_shard(&body)), Ok(body));
    }
}

/// The superblock.
pub fn superblock(data: &[u8]) {
    if let Ok(superblock) = Superblock::decode(data) {
        assert_eq!(Superblock::decode(&superblock.encode()), Ok(superblock));
    }
}

/// Counters, collection records and statistics (the same bytes fed to each).
pub fn small_records(data: &[u8]) {
    if let Ok(value) = decode_counter(data) {
        assert_eq!(decode_counter(&encode_counter(value)), Ok(value));
    }
    if let Ok(record) = CollectionRecord::decode(data) {
        assert_eq!(CollectionRecord::decode(&record.encode()), Ok(record));
    }
    if let Ok(record) = StatfsRecord::decode(data) {
        assert_eq!(StatfsRecord::decode(&record.encode()), Ok(record));
    }
}

/// Freelist merges: the first byte splits the input into an existing value and operands.
pub fn freelist_merge(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (existing, operands) = rest.split_at((split as usize).min(rest.len()));
    let operands: Vec<&[u8]> = operands.chunks(13).collect();
    let direct = freelist::full_merge(Some(existing), operands.iter().copied());
    let folded = freelist::partial_merge(operands.iter().copied())
        .and_then(|op| freelist::full_merge(Some(existing), [op.as_slice()]));
    if let (Ok(direct), Ok(folded)) = (direct, folded) {
        // A partial merge may only widen the value with zero bytes.
        let width = direct.len().max(folded.len());
        let pad = |mut v: Vec<u8>| {
            v.resize(width, 0);
            v
        };
        assert_eq!(pad(direct), pad(folded), "partial merge changed the result");
    }
}

/// Deferred-write records.
pub fn deferred(data: &[u8]) {
    if let Ok(record) = DeferredRecord::decode(data) {
        assert_eq!(DeferredRecord::decode(&record.encode()), Ok(record));
    }
}

/// Shared-blob records.
pub fn shared_blob(data: &[u8]) {
    if let Ok(record) = SharedBlobRecord::decode(data) {
        assert_eq!(SharedBlobRecord::decode(&record.encode()), Ok(record));
    }
}

/// The envelope alone.
pub fn envelope(data: &[u8]) {
    if let Ok(payload) = super::envelope::open("fuzz", 255, data) {
        let compat_version = data.get(1).copied().unwrap_or_default();
        let resealed = super::envelope::seal(payload.struct_version, compat_version, payload.bytes);
        assert_eq!(resealed, data);
    }
}

/// Journal records (header salted with the input's first 8 bytes, so the fuzzer can reach past
/// the header checksum), commit payloads, and journal positions.
pub fn journal(data: &[u8]) {
    let (salt, record) = match data.split_first_chunk::<8>() {
        Some((salt, record)) => (u64::from_le_bytes(*salt), record),
        None => return,
    };
    if let Ok(header) = decode_header(record, salt)
        && let Ok(payload) = payload_of(&header, record)
        && let Ok(commit) = decode_commit(payload, 9)
    {
        let reencoded = encode_payload(&commit);
        assert_eq!(
            reencoded, payload,
            "a commit payload re-encodes to its bytes"
        );
        let rebuilt = encode_record(header.sequence, (&header.store_uuid, salt), &reencoded);
        let again = decode_header(&rebuilt, salt).expect("an encoded record decodes");
        assert_eq!(
            (again.sequence, again.store_uuid, again.payload_crc),
            (header.sequence, header.store_uuid, header.payload_crc)
        );
    }
    if let Ok(commit) = decode_commit(data, 9) {
        assert_eq!(encode_payload(&commit), data);
    }
    if let Ok(position) = JournalPosition::decode(data) {
        assert_eq!(JournalPosition::decode(&position.encode()), Ok(position));
    }
}

fn encode_payload(commit: &super::journal::CommitPayload) -> Vec<u8> {
    let ops = commit.ops.iter().map(|op| OpRef {
        kind: op.kind,
        space: op.space,
        key: &op.key,
        value: &op.value,
    });
    encode_commit(&commit.checks, ops)
}

/// The export stream reader (§12). It never panics; a stream it reads whole is written again
/// by the writer, which must accept every frame in the order read, and reads back the same.
pub fn export_stream(data: &[u8]) {
    use super::export::{Frame, StreamWriter};
    let Some(frames) = read_stream(data) else {
        return;
    };
    let header = frames
        .first()
        .and_then(|frame| match frame {
            Frame::Header(header) => Some(header),
            _ => None,
        })
        .expect("a whole stream starts with its header");
    let (last, middle) = frames
        .get(1..)
        .and_then(<[Frame]>::split_last)
        .expect("a whole stream has a trailer");
    assert!(
        matches!(last, Frame::Trailer(_)),
        "a whole stream ends with its trailer"
    );
    let mut writer = StreamWriter::new(Vec::new(), header).expect("writing to memory");
    for frame in middle {
        writer
            .frame(frame)
            .expect("the writer accepts what the reader did");
    }
    let (bytes, _) = writer.finish().expect("writing to memory");
    let again = read_stream(&bytes).expect("a written stream reads back");
    assert_eq!(
        again.get(..middle.len() + 1),
        frames.get(..middle.len() + 1)
    );
}

/// [`export_stream`] behind valid frame crcs and indexes: the input is cut into pieces of
/// `u8 kind`, `u16 length` and that many body bytes, each framed as the next frame.
pub fn export_stream_sealed(data: &[u8]) {
    let mut stream = super::export::STREAM_MAGIC.to_vec();
    let mut rest = data;
    let mut index = 0;
    while let Some((&kind, after)) = rest.split_first() {
        let Some((length, after)) = after.split_first_chunk::<2>() else {
            break;
        };
        let length = (u16::from_le_bytes(*length) as usize).min(after.len());
        let (body, after) = after.split_at(length);
        stream.extend(super::export::frame_bytes(kind, index, body));
        index += 1;
        rest = after;
    }
    export_stream(&stream);
}

fn read_stream(data: &[u8]) -> Option<Vec<super::export::Frame>> {
    let mut reader = super::export::StreamReader::new(data);
    let mut frames = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return Some(frames),
            Err(_) => return None,
        }
    }
}
