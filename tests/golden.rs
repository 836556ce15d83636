//! Goal: the on-disk bytes of every record stay exactly as FORMAT.md describes them. Each sample
//! record is encoded and compared with its golden file under `tests/golden/`, and the golden
//! file is decoded back to the sample, so a change of bytes (or a decoder that no longer reads
//! old files) fails here. To add a golden file for a new record or version, run with
//! `BSTORE_BLESS=1`, review the bytes against FORMAT.md, and commit them with the spec change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bstore::format::deferred::{DeferredRecord, DeferredWrite};
use bstore::format::freelist::encode_operand;
use bstore::format::label::Label;
use bstore::format::onode::{
    AllocHint, Blob, CsumType, Extent, ExtentMapBody, ExtentMapLayout, OnodeRecord, ShardInfo,
    decode_shard, encode_shard,
};
use bstore::format::records::{
    CollectionRecord, StatfsRecord, Superblock, decode_counter, encode_counter,
};
use bstore::format::shared::SharedBlobRecord;

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
    let bytes = golden("label-v1", &label.encode());
    assert_eq!(bytes.len(), 4096);
    assert_eq!(Label::decode(&bytes), Ok(label));
}

#[test]
fn onode_bytes_are_stable() {
    let inline = sample_onode(ExtentMapLayout::Inline(sample_body()));
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
    let bytes = golden("onode-sharded-v1", &sharded.encode());
    assert_eq!(OnodeRecord::decode(&bytes), Ok(sharded));
}

#[test]
fn extent_shard_bytes_are_stable() {
    let body = sample_body();
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
    };
    let bytes = golden("superblock-v1", &superblock.encode());
    assert_eq!(Superblock::decode(&bytes), Ok(superblock));

    let bytes = golden("counter-v1", &encode_counter(0xdead_beef));
    assert_eq!(decode_counter(&bytes), Ok(0xdead_beef));

    let collection = CollectionRecord { collection_id: 42 };
    let bytes = golden("collection-v1", &collection.encode());
    assert_eq!(CollectionRecord::decode(&bytes), Ok(collection));

    let statfs = StatfsRecord {
        allocated_bytes: 1 << 20,
        stored_bytes: 1000,
        object_count: 3,
    };
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
    let bytes = golden("shared-blob-v1", &record.encode());
    assert_eq!(SharedBlobRecord::decode(&bytes), Ok(record));
    assert_eq!(
        bytes[6..22],
        [0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 4, 0, 0, 0]
    );
    assert_eq!(bytes[22..26], [3, 0, 0, 0]);
}
