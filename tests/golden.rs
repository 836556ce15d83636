//! Goal: the on-disk bytes of every record are exactly what FORMAT.md describes, and stay so.
//! Each sample record is written three ways that must agree: by the encoder; by [`Spec`], an
//! independent writer that follows FORMAT.md's tables field by field (so the golden bytes are
//! derived from the specification, not blessed from the encoder); and as its golden file under
//! `tests/golden/`, which is decoded back to the sample, so a change of bytes (or a decoder
//! that no longer reads old files) fails here. To add a golden file for a new record or
//! version, write its `Spec` from FORMAT.md, run with `BSTORE_BLESS=1`, and commit it with the
//! spec change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bstore::format::deferred::{DeferredRecord, DeferredWrite};
use bstore::format::freelist::encode_operand;
use bstore::format::journal::{
    DataCheck, JOURNAL_BLOCK, OpKind, OpRef, decode_commit, decode_header, encode_commit,
    encode_record, payload_of,
};
use bstore::format::label::Label;
use bstore::format::onode::{
    AllocHint, Blob, CsumType, Extent, ExtentMapBody, ExtentMapLayout, OnodeRecord, ShardInfo,
    decode_shard, encode_shard,
};
use bstore::format::records::{
    CollectionRecord, JournalPosition, JournalRegion, StatfsRecord, Superblock, decode_counter,
    encode_counter,
};
use bstore::format::shared::SharedBlobRecord;

/// FORMAT.md's byte layouts, written from the tables: little-endian fields in table order
/// (§1), records sealed in the envelope of §2.
#[derive(Default)]
struct Spec(Vec<u8>);

impl Spec {
    fn u8(mut self, value: u8) -> Spec {
        self.0.push(value);
        self
    }
    fn u16(mut self, value: u16) -> Spec {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u32(mut self, value: u32) -> Spec {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u64(mut self, value: u64) -> Spec {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Spec {
        self.0.extend_from_slice(bytes);
        self
    }
    /// §2: struct and compat version, payload length, payload, crc32c of all before it.
    fn sealed(self, struct_version: u8, compat_version: u8) -> Vec<u8> {
        let mut bytes = vec![struct_version, compat_version];
        bytes.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.0);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }
}

/// §5.2: the extent-map body of `sample_body`.
fn spec_body(spec: Spec) -> Spec {
    let first_csums = [0x1111_1111u32, 0x2222_2222, 0x3333_3333, 0x4444_4444];
    let mut spec = spec
        .u32(2) // blob_count
        .u8(0) // flags: not shared, no unused bitmap
        .u64(0x20_0000)
        .u32(0x4000)
        .u8(1) // crc32c
        .u8(12);
    for csum in first_csums {
        spec = spec.u32(csum);
    }
    spec = spec
        .u8(0b11) // shared, with an unused bitmap
        .u64(0x40_0000)
        .u32(0x10000)
        .u64(9) // shared_blob_id
        .u8(1)
        .u8(13);
    for csum in 1..=8u32 {
        spec = spec.u32(csum); // k = 0x10000 >> 13 = 8 chunks
    }
    spec.u8(0xc0) // ceil(8 / 8) bytes of unused bitmap
        .u32(2) // extent_count
        .u64(0)
        .u32(0x3000)
        .u32(0)
        .u32(0x1000)
        .u64(0x8000)
        .u32(0x2000)
        .u32(1)
        .u32(0)
}

/// §5.1: the fields of `sample_onode` before its extent map.
fn spec_onode_head() -> Spec {
    Spec::default()
        .u64(0x0102_0304) // nid
        .u64(0xa000) // size
        .u32(1) // flags
        .u64(4 << 20)
        .u64(4096)
        .u32(2)
        .u32(2) // xattr_count; names in byte order
        .u16(1)
        .raw(b"_")
        .u32(11)
        .raw(b"object info")
        .u16(7)
        .raw(b"snapset")
        .u32(3)
        .raw(&[0, 1, 2])
}

/// Checks that the encoder wrote what FORMAT.md says.
fn assert_spec(name: &str, encoded: &[u8], spec: &[u8]) {
    assert!(
        encoded == spec,
        "{name}: the encoder and FORMAT.md disagree\nencoder: {encoded:02x?}\nspec:    {spec:02x?}"
    );
}

fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = PathBuf::from("tests/golden").join(format!("{name}.bin"));
    if std::env::var_os("BSTORE_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with BSTORE_BLESS=1, review, commit",
            path.display()
        )
    });
    assert!(
        bytes == expected.as_slice(),
        "the encoding of {name} changed: this changes the on-disk format. Update FORMAT.md, \
         bump the record version if old readers could misread it, and re-bless the golden file."
    );
    expected
}

fn sample_body() -> ExtentMapBody {
    ExtentMapBody {
        blobs: vec![
            Blob {
                device_offset: 0x20_0000,
                length: 0x4000,
                shared_blob_id: None,
                csum_type: CsumType::Crc32c,
                csum_chunk_order: 12,
                csums: vec![0x1111_1111, 0x2222_2222, 0x3333_3333, 0x4444_4444],
                unused: None,
            },
            Blob {
                device_offset: 0x40_0000,
                length: 0x10000,
                shared_blob_id: Some(9),
                csum_type: CsumType::Crc32c,
                csum_chunk_order: 13,
                csums: (1..=8).collect(),
                unused: Some(vec![0xc0]),
            },
        ],
        extents: vec![
            Extent {
                logical_offset: 0,
                length: 0x3000,
                blob: 0,
                blob_offset: 0x1000,
            },
            Extent {
                logical_offset: 0x8000,
                length: 0x2000,
                blob: 1,
                blob_offset: 0,
            },
        ],
    }
}

fn sample_onode(extent_map: ExtentMapLayout) -> OnodeRecord {
    OnodeRecord {
        nid: 0x0102_0304,
        size: 0xa000,
        flags: 1,
        alloc_hint: AllocHint {
            expected_object_size: 4 << 20,
            expected_write_size: 4096,
            flags: 2,
        },
        xattrs: BTreeMap::from([
            (b"_".to_vec(), b"object info".to_vec()),
            (b"snapset".to_vec(), vec![0, 1, 2]),
        ]),
        extent_map,
    }
}

#[test]
fn label_bytes_are_stable() {
    let label = Label {
        format_version: 1,
        store_uuid: *b"\x01\x23\x45\x67\x89\xab\x4d\xef\x81\x23\x45\x67\x89\xab\xcd\xef",
        device_size: 1 << 30,
        min_alloc_size: 4096,
        created_secs: 1_763_700_000,
        created_nanos: 123,
        meta: BTreeMap::from([
            ("created_by".to_string(), "bstore 0.1.0".to_string()),
            ("description".to_string(), "main".to_string()),
        ]),
    };
    let mut spec = b"bstore blockdev\n".to_vec();
    spec.extend(
        Spec::default()
            .u32(1)
            .raw(&label.store_uuid)
            .u64(1 << 30)
            .u32(4096)
            .u64(1_763_700_000)
            .u32(123)
            .u16(2)
            .u16(10)
            .raw(b"created_by")
            .u16(12)
            .raw(b"bstore 0.1.0")
            .u16(11)
            .raw(b"description")
            .u16(4)
            .raw(b"main")
            .sealed(1, 1),
    );
    spec.resize(4096, 0); // zero padding to 4096 (§3)
    assert_spec("label", &label.encode(), &spec);
    let bytes = golden("label-v1", &label.encode());
    assert_eq!(bytes.len(), 4096);
    assert_eq!(Label::decode(&bytes), Ok(label));
}

#[test]
fn onode_bytes_are_stable() {
    let inline = sample_onode(ExtentMapLayout::Inline(sample_body()));
    let spec = spec_body(spec_onode_head().u8(0)).sealed(1, 1);
    assert_spec("inline onode", &inline.encode(), &spec);
    let bytes = golden("onode-inline-v1", &inline.encode());
    assert_eq!(OnodeRecord::decode(&bytes), Ok(inline));

    let sharded = sample_onode(ExtentMapLayout::Sharded(vec![
        ShardInfo {
            logical_offset: 0,
            encoded_length: 180,
        },
        ShardInfo {
            logical_offset: 0x8000,
            encoded_length: 120,
        },
    ]));
    let spec = spec_onode_head()
        .u8(1) // sharded
        .u32(2)
        .u64(0)
        .u32(180)
        .u64(0x8000)
        .u32(120)
        .sealed(1, 1);
    assert_spec("sharded onode", &sharded.encode(), &spec);
    let bytes = golden("onode-sharded-v1", &sharded.encode());
    assert_eq!(OnodeRecord::decode(&bytes), Ok(sharded));
}

#[test]
fn extent_shard_bytes_are_stable() {
    let body = sample_body();
    let spec = spec_body(Spec::default()).sealed(1, 1);
    assert_spec("extent shard", &encode_shard(&body), &spec);
    let bytes = golden("extent-shard-v1", &encode_shard(&body));
    assert_eq!(decode_shard(&bytes), Ok(body));
}

#[test]
fn store_records_bytes_are_stable() {
    let superblock = Superblock {
        format_version: 1,
        store_uuid: [7; 16],
        min_alloc_size: 4096,
        device_size: 1 << 30,
        csum_type: CsumType::Crc32c,
        csum_chunk_order: 12,
        blob_length_max: 512 << 10,
        freelist_blocks_per_key: 4096,
        journal: None,
    };
    let spec_head = |format_version: u32| {
        Spec::default()
            .u32(format_version)
            .raw(&[7; 16])
            .u32(4096)
            .u64(1 << 30)
            .u8(1)
            .u8(12)
            .u32(512 << 10)
            .u32(4096)
    };
    let spec = spec_head(1).sealed(1, 1);
    assert_spec("superblock", &superblock.encode(), &spec);
    let bytes = golden("superblock-v1", &superblock.encode());
    assert_eq!(Superblock::decode(&bytes), Ok(superblock.clone()));

    let with_journal = Superblock {
        format_version: 2,
        journal: Some(JournalRegion {
            device_offset: 8192,
            length: 32 << 20,
            salt: 0x0123_4567_89ab_cdef,
        }),
        ..superblock
    };
    let spec = spec_head(2)
        .u64(8192)
        .u64(32 << 20)
        .u64(0x0123_4567_89ab_cdef)
        .sealed(2, 2);
    assert_spec("superblock v2", &with_journal.encode(), &spec);
    let bytes = golden("superblock-v2", &with_journal.encode());
    assert_eq!(Superblock::decode(&bytes), Ok(with_journal));

    let position = JournalPosition {
        sequence: 77,
        ring_offset: 0x3000,
        previous_ring_offset: None,
    };
    let spec = Spec::default().u64(77).u64(0x3000).sealed(1, 1);
    assert_spec("journal position", &position.encode(), &spec);
    let bytes = golden("journal-position-v1", &position.encode());
    assert_eq!(JournalPosition::decode(&bytes), Ok(position));
    // Layout 2 appends where the record before starts; a layout-1 reader skips it.
    let after_a_record = JournalPosition {
        previous_ring_offset: Some(0x2000),
        ..position
    };
    let spec = Spec::default().u64(77).u64(0x3000).u64(0x2000).sealed(2, 1);
    assert_spec("journal position v2", &after_a_record.encode(), &spec);
    let bytes = golden("journal-position-v2", &after_a_record.encode());
    assert_eq!(JournalPosition::decode(&bytes), Ok(after_a_record));

    let spec = Spec::default().u64(0xdead_beef).sealed(1, 1);
    assert_spec("counter", &encode_counter(0xdead_beef), &spec);
    let bytes = golden("counter-v1", &encode_counter(0xdead_beef));
    assert_eq!(decode_counter(&bytes), Ok(0xdead_beef));

    let collection = CollectionRecord { collection_id: 42 };
    let spec = Spec::default().u64(42).sealed(1, 1);
    assert_spec("collection", &collection.encode(), &spec);
    let bytes = golden("collection-v1", &collection.encode());
    assert_eq!(CollectionRecord::decode(&bytes), Ok(collection));

    let statfs = StatfsRecord {
        allocated_bytes: 1 << 20,
        stored_bytes: 1000,
        object_count: 3,
    };
    let spec = Spec::default().u64(1 << 20).u64(1000).u64(3).sealed(1, 1);
    assert_spec("statfs", &statfs.encode(), &spec);
    let bytes = golden("statfs-v1", &statfs.encode());
    assert_eq!(StatfsRecord::decode(&bytes), Ok(statfs));
}

#[test]
fn freelist_operand_bytes_are_stable() {
    let bytes = golden(
        "freelist-operand-v1",
        &encode_operand(16, &[0x0f, 0xff, 0x01]),
    );
    assert_eq!(bytes, [16, 0, 0, 0, 0x0f, 0xff, 0x01]);
}

#[test]
fn deferred_record_bytes_are_stable() {
    let record = DeferredRecord {
        writes: vec![
            DeferredWrite {
                device_offset: 0x30_0000,
                data: (0..512u32).map(|i| i as u8).collect(),
            },
            DeferredWrite {
                device_offset: 0x1000,
                data: vec![0xab; 1024],
            },
        ],
    };
    let spec = Spec::default()
        .u32(2)
        .u64(0x30_0000)
        .u32(512)
        .raw(&(0..512u32).map(|i| i as u8).collect::<Vec<_>>())
        .u64(0x1000)
        .u32(1024)
        .raw(&[0xab; 1024])
        .sealed(1, 1);
    assert_spec("deferred record", &record.encode(), &spec);
    let bytes = golden("deferred-v1", &record.encode());
    assert_eq!(DeferredRecord::decode(&bytes), Ok(record));
    // count, then the first write's offset and length, as FORMAT.md §6.5 gives them.
    assert_eq!(bytes[6..18], [2, 0, 0, 0, 0, 0, 0x30, 0, 0, 0, 0, 0]);
    assert_eq!(bytes[18..22], [0, 2, 0, 0]);
}

#[test]
fn shared_blob_record_bytes_are_stable() {
    let record = SharedBlobRecord {
        device_offset: 0x50_0000,
        length: 0x4000,
        refs: vec![3, 0, 1, 2],
    };
    let spec = Spec::default()
        .u64(0x50_0000)
        .u32(0x4000)
        .u32(4)
        .u32(3)
        .u32(0)
        .u32(1)
        .u32(2)
        .sealed(1, 1);
    assert_spec("shared-blob record", &record.encode(), &spec);
    let bytes = golden("shared-blob-v1", &record.encode());
    assert_eq!(SharedBlobRecord::decode(&bytes), Ok(record));
    assert_eq!(
        bytes[6..22],
        [0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 4, 0, 0, 0]
    );
    assert_eq!(bytes[22..26], [3, 0, 0, 0]);
}

#[test]
fn journal_record_bytes_are_stable() {
    let checks = [DataCheck {
        device_offset: 0x20_0000,
        length: 4096,
        crc: 0x1234_5678,
    }];
    let ops = [
        OpRef {
            kind: OpKind::Put,
            space: 2,
            key: b"\0\0\0\0\0\0\0\x01obj",
            value: b"onode bytes",
        },
        OpRef {
            kind: OpKind::Delete,
            space: 5,
            key: b"\0\0\0\0\0\0\0\x09",
            value: b"",
        },
        OpRef {
            kind: OpKind::Merge,
            space: 6,
            key: b"\0\0\0\0\0\0\0\0",
            value: b"\x04\0\0\0\x0f",
        },
    ];
    let payload = encode_commit(&checks, ops.into_iter());
    let spec_payload = Spec::default()
        .u32(1)
        .u64(0x20_0000)
        .u32(4096)
        .u32(0x1234_5678)
        .u32(3)
        .u8(1)
        .u8(2)
        .u32(11)
        .raw(b"\0\0\0\0\0\0\0\x01obj")
        .u32(11)
        .raw(b"onode bytes")
        .u8(2)
        .u8(5)
        .u32(8)
        .raw(b"\0\0\0\0\0\0\0\x09")
        .u32(0)
        .u8(4)
        .u8(6)
        .u32(8)
        .raw(b"\0\0\0\0\0\0\0\0")
        .u32(5)
        .raw(b"\x04\0\0\0\x0f")
        .0;
    assert_spec("journal payload", &payload, &spec_payload);

    let uuid = [0x5a; 16];
    let salt = 0x0123_4567_89ab_cdef_u64;
    let record = encode_record(9, (&uuid, salt), &payload);
    // FORMAT.md §11.2: the 64-byte header, salted crc last, then the payload, zeros to 4 KiB.
    let mut spec = Spec::default()
        .raw(b"bstorejr")
        .u8(1)
        .u8(1)
        .u8(1)
        .u8(0)
        .u32(JOURNAL_BLOCK as u32)
        .u64(9)
        .raw(&uuid)
        .u32(payload.len() as u32)
        .u32(crc32c::crc32c(&payload))
        .raw(&[0; 12])
        .0;
    let header_crc = crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), &spec);
    spec.extend_from_slice(&header_crc.to_le_bytes());
    spec.extend_from_slice(&payload);
    spec.resize(JOURNAL_BLOCK as usize, 0);
    assert_spec("journal record", &record, &spec);
    let bytes = golden("journal-record-v1", &record);
    let header = decode_header(&bytes, salt).unwrap();
    assert_eq!((header.sequence, header.store_uuid), (9, uuid));
    let decoded = decode_commit(payload_of(&header, &bytes).unwrap(), 9).unwrap();
    assert_eq!(decoded.checks, checks);
    assert_eq!(decoded.ops.len(), 3);
    assert_eq!(decoded.ops[2].value, b"\x04\0\0\0\x0f");
}

/// §12: frame `index` of `kind` with `body`, and its crc32c.
fn spec_frame(kind: u8, index: u64, body: Spec) -> Vec<u8> {
    let mut bytes = Spec::default()
        .u8(kind)
        .u64(index)
        .u32(body.0.len() as u32)
        .raw(&body.0)
        .0;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn the_export_stream_is_as_specified() {
    use bstore::format::export::{
        Frame, ObjectHead, STREAM_VERSION, StreamHeader, StreamReader, StreamWriter,
    };
    let header = StreamHeader {
        version: STREAM_VERSION,
        source_uuid: [0xab; 16],
        commit_point: 9,
        created_secs: 1_800_000_000,
    };
    let frames = [
        Frame::Collection {
            name: b"c".to_vec(),
        },
        Frame::Shared {
            id: 1,
            bytes: vec![0x55; 8].into(),
        },
        Frame::Object(ObjectHead {
            name: b"o".to_vec(),
            size: 64,
            xattrs: vec![(b"x".to_vec(), b"v".to_vec())],
            omap_header: Some(b"h".to_vec()),
        }),
        Frame::Data {
            offset: 0,
            bytes: vec![0xaa; 4].into(),
        },
        Frame::SharedRef {
            offset: 16,
            id: 1,
            shared_offset: 2,
            length: 6,
        },
        Frame::Omap(vec![(b"k".to_vec(), b"val".to_vec())]),
    ];
    let mut writer = StreamWriter::new(Vec::new(), &header).unwrap();
    for frame in &frames {
        writer.frame(frame).unwrap();
    }
    let (encoded, _) = writer.finish().unwrap();

    let mut spec = b"bstore export\n\0\0".to_vec();
    let bodies = [
        (
            1,
            Spec::default()
                .u32(1)
                .u32(1)
                .raw(&[0xab; 16])
                .u64(9)
                .u64(1_800_000_000),
        ),
        (2, Spec::default().u16(1).raw(b"c")),
        (6, Spec::default().u64(1).u32(8).raw(&[0x55; 8])),
        (
            3,
            Spec::default()
                .u16(1)
                .raw(b"o")
                .u64(64)
                .u32(1)
                .u16(1)
                .raw(b"x")
                .u32(1)
                .raw(b"v")
                .u8(1)
                .u32(1)
                .raw(b"h"),
        ),
        (4, Spec::default().u64(0).u32(4).raw(&[0xaa; 4])),
        (7, Spec::default().u64(16).u64(1).u32(2).u32(6)),
        (
            5,
            Spec::default().u32(1).u16(1).raw(b"k").u32(3).raw(b"val"),
        ),
    ];
    for (index, (kind, body)) in bodies.into_iter().enumerate() {
        spec.extend(spec_frame(kind, index as u64, body));
    }
    let digest = crc32c::crc32c(&spec);
    let trailer = Spec::default()
        .u64(7) // frames before the trailer
        .u64(1) // collections
        .u64(1) // objects
        .u64(4) // data bytes
        .u64(8) // shared bytes
        .u64(1) // omap entries
        .u32(digest);
    spec.extend(spec_frame(8, 7, trailer));
    assert_spec("export stream", &encoded, &spec);

    let bytes = golden("export-stream-v1", &encoded);
    let mut reader = StreamReader::new(bytes.as_slice());
    assert_eq!(reader.next_frame().unwrap(), Some(Frame::Header(header)));
    for frame in frames {
        assert_eq!(reader.next_frame().unwrap(), Some(frame));
    }
    assert!(matches!(
        reader.next_frame().unwrap(),
        Some(Frame::Trailer(_))
    ));
    assert_eq!(reader.next_frame().unwrap(), None);
}
