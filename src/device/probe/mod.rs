//! Recognising what a device already holds, so that `mkfs` can refuse to overwrite foreign data.
//!
//! An operator's typo in a device path must never wipe a disk. Before formatting, `mkfs` reads
//! the first [`PROBE_HEAD_BYTES`] and the last [`PROBE_TAIL_BYTES`] of the device and looks for
//! the magic numbers of what is commonly found on block devices: file systems, swap, volume
//! managers, RAID members, encryption headers, partition tables, and BlueStore or bstore labels.
//! This is a small, documented subset of util-linux's libblkid at the offsets libblkid uses; it
//! does not link libblkid, so it behaves the same on a regular file, in a test and on any host.
//!
//! [`find_signatures`] is pure and total: every byte it reads goes through one bounds-checked
//! accessor that answers `None` outside the bytes given, every loop runs over a constant table,
//! and all arithmetic on offsets taken from the input is checked. Beyond each magic number a few
//! cheap sanity checks keep random bytes from matching, but where in doubt the probe reports: a
//! false alarm costs the operator a `--force`, a miss costs a disk. `device_offset` is where the
//! magic bytes lie, the offset `wipefs --no-act` prints for the same signature; a signature found
//! in several copies (GPT, MD, ZFS labels, LUKS2 headers) is reported once per copy.
//!
//! | name | device offset of the magic | magic | further checks | source |
//! |---|---|---|---|---|
//! | `bstore` | 0 | `"bstore blockdev\n"` | label decoded for the detail only | `src/format/label.rs` |
//! | `ceph_bluestore` | 0 | `"bluestore block device\n"`, then the OSD uuid and `"\n"` | none | Ceph `bluestore_types.cc`, `bluestore_bdev_label_t::encode` |
//! | `ext4`, `ext3`, `ext2`, `jbd` | 0x438 (superblock at 1024 + 0x38) | `53 EF` | inode, group and block-size fields sane; flavour from the feature flags | libblkid `superblocks/ext.c` |
//! | `xfs` | 0 | `"XFSB"` | block, sector and inode sizes match their logs; AG count and size non-zero | `superblocks/xfs.c` |
//! | `btrfs` | 0x10040 (superblock at 64 KiB + 0x40) | `"_BHRfS_M"` | `bytenr` names 64 KiB | `superblocks/btrfs.c` |
//! | `swap` | page size - 10, pages of 4 to 64 KiB | `"SWAPSPACE2"` (v1), `"SWAP-SPACE"` (v0) | v1: version 1 (either endianness), last page non-zero | `superblocks/swap.c` |
//! | `swsuspend` | page size - 10 | `"S1SUSPEND"`, `"S2SUSPEND"`, `"ULSUSPEND"`, `"LINHIB0001"` | none | `superblocks/swap.c` |
//! | `LVM2_member` | 512 s + 24, sector s in 0..4 | `"LABELONE"` at 512 s, `"LVM2 001"` at + 24 | `sector_xl` equals s | `superblocks/lvm.c` |
//! | `linux_raid_member` | 1.1: 0; 1.2: 4096; 1.0: (size & !(4K-1)) - 8K; 0.90: (size & !(64K-1)) - 64K | `0xa92b4efc` little-endian (0.90: either) | 1.x: major version 1, `super_offset` names its own sector; 0.90: major version 0; end copies need size > 64 KiB | `superblocks/linux_raid.c` |
//! | `gpt` | LBA 1 (512 or 4096); backup in the last LBA | `"EFI PART"` | `my_lba` names its own LBA | libblkid `partitions/gpt.c` |
//! | `dos` | 0x1FE | `55 AA` | boot flags 0 or 0x80; no 0xEE (GPT) entry; one entry with type, start and size; not a FAT, exFAT, NTFS or BitLocker boot sector | `partitions/dos.c` |
//! | `vfat` | 0x52 or 0x36 (type string); 0 without one | `"FAT32   "`, `"MSWIN"` at 0x52; `"FAT16   "`, `"FAT12   "`, `"FAT     "`, `"MSDOS"` at 0x36; else a jump (EB/E9) plus `55 AA` | BPB: FATs, reserved sectors, media byte, power-of-two sector and cluster sizes | `superblocks/vfat.c` |
//! | `exfat` | 3 | `"EXFAT   "` | none | `superblocks/exfat.c` |
//! | `ntfs` | 3 | `"NTFS    "` | sector size 256..=4096, a power of two | `superblocks/ntfs.c` |
//! | `BitLocker` | 0 | `EB 52 90 "-FVE-FS-"` (Vista), `EB 58 90 "-FVE-FS-"` (7) | none | `superblocks/bitlocker.c` |
//! | `crypto_LUKS` | 0; LUKS2 second header at 16 KiB .. 4 MiB (powers of two) | `"LUKS" BA BE`; `"SKUL" BA BE` | LUKS2: `hdr_offset` names its own offset | `superblocks/luks.c` |
//! | `zfs_member` | first uberblock in the ring at 128 KiB of each 256 KiB label: 0, 256 KiB, end - 512 KiB, end - 256 KiB (end rounded down to 256 KiB) | `0x00bab10c` as u64, either endianness, at 1 KiB steps | device of at least 1 MiB | `superblocks/zfs.c` |
//! | `iso9660` | 0x8001 | `"CD001"` | none | `superblocks/iso9660.c` |
//! | `squashfs`, `squashfs3` | 0 | `"hsqs"` (major version 4+ is `squashfs`), `"sqsh"` | none | `superblocks/squashfs.c` |
//! | `f2fs` | 0x400 | `10 20 F5 F2` | none | `superblocks/f2fs.c` |
//! | `bcache` | 0x1018 (superblock at 4 KiB + 24) | `c6 85 73 f6 4e 1a 45 ca 82 65 f5 7f 48 ba 6d 81` | none | `superblocks/bcache.c` |
//! | `jfs` | 0x8000 | `"JFS1"` | block sizes match their logs | `superblocks/jfs.c` |
//! | `reiserfs`, `reiser4` | 0x10034 (3.6, JR, 3.5), 0x2034 (old 3.5); reiser4 0x10000 | `"ReIsEr2Fs"`, `"ReIsEr3Fs"`, `"ReIsErFs"`; `"ReIsEr4"` | block size at least 512 | `superblocks/reiserfs.c` |
//!
//! Not seen: anything whose only magic lies beyond the first and the last MiB (Ceph's further
//! BlueStore label copies at 1, 10, 100 and 1000 GiB, LUKS2 second headers at 1 MiB and beyond
//! while the first header is intact anyway, ext backup superblocks), a file system inside a
//! partition (the partition table is reported instead), and what libblkid knows but this table
//! does not (UDF, HFS+, APFS, hardware RAID metadata, ...).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod filesystems;
#[cfg(test)]
mod tests;
mod volumes;

use super::{AlignedBuf, BlockDevice};
use crate::error::Result;
use crate::format::label::{Label, LabelError};
use crate::format::{LABEL_LENGTH, LABEL_MAGIC};
use filesystems::{
    bcache, bitlocker, btrfs, exfat, ext, f2fs, iso9660, jfs, ntfs, reiser4, reiserfs, squashfs,
    swap, vfat, xfs,
};
use volumes::{dos, gpt, luks, lvm2, md_raid, zfs};

/// One thing recognised on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Short name as blkid would say it: "bstore", "ceph_bluestore", "ext4", "xfs", "gpt", ...
    pub name: &'static str,
    /// Byte offset on the device where the magic was found.
    pub device_offset: u64,
    /// Human detail for the error message when there is something cheap to say (a UUID, a
    /// label, which copy), else empty.
    pub detail: String,
}

/// Bytes read from the start of the device (or all of it when smaller).
pub const PROBE_HEAD_BYTES: usize = 1 << 20;
/// Bytes read from the end of the device (MD 0.90/1.0 superblocks, GPT backup header, ZFS
/// labels 2 and 3).
pub const PROBE_TAIL_BYTES: usize = 1 << 20;

/// Pure and total: finds every known signature given the first bytes of a device (`head`,
/// starting at offset 0) and its last bytes (`tail`, ending at `device_size`), ordered by device
/// offset. Never panics or indexes out of range for any input, including short slices.
pub fn find_signatures(head: &[u8], tail: &[u8], device_size: u64) -> Vec<Signature> {
    let view = View {
        head,
        tail,
        device_size,
    };
    let mut found = Vec::new();
    for detector in DETECTORS {
        match detector {
            Detector::One(detect) => found.extend(detect(&view)),
            Detector::Many(detect) => found.extend(detect(&view)),
        }
    }
    found.sort_by(|a, b| (a.device_offset, a.name).cmp(&(b.device_offset, b.name)));
    // On a small device the head and the tail are the same bytes, and two places a format may
    // use can coincide: one magic is one signature.
    found.dedup_by(|a, b| a.device_offset == b.device_offset && a.name == b.name);
    found
}

/// Reads head and tail of `device` and calls [`find_signatures`].
///
/// Reads are whole logical blocks (O_DIRECT), so a regular file whose size is not a multiple of
/// the block size is probed as if it ended at its last whole block.
pub fn probe(device: &dyn BlockDevice) -> Result<Vec<Signature>> {
    let info = device.info();
    let block_bytes = u64::from(info.logical_block_size.max(1));
    let readable_bytes = round_down(info.size_bytes, block_bytes);
    let head_length = whole_blocks(readable_bytes, PROBE_HEAD_BYTES, block_bytes);
    let tail_length = whole_blocks(readable_bytes, PROBE_TAIL_BYTES, block_bytes);
    // `whole_blocks` never returns more than the readable bytes, so this never saturates.
    let tail_offset = readable_bytes.saturating_sub(tail_length as u64);
    let head = read_region(device, 0, head_length)?;
    let tail = read_region(device, tail_offset, tail_length)?;
    Ok(find_signatures(&head, &tail, readable_bytes))
}

/// The largest multiple of `block_bytes` no longer than `wanted` nor the device.
fn whole_blocks(readable_bytes: u64, wanted: usize, block_bytes: u64) -> usize {
    let length = round_down(readable_bytes.min(wanted as u64), block_bytes);
    usize::try_from(length).unwrap_or_default()
}

/// `value` rounded down to a multiple of `unit` (0 for a zero unit).
fn round_down(value: u64, unit: u64) -> u64 {
    value
        .checked_rem(unit)
        .map_or(0, |rest| value.saturating_sub(rest))
}

/// `length` bytes at `device_offset`; nothing for an empty region, which a device refuses.
fn read_region(device: &dyn BlockDevice, device_offset: u64, length: usize) -> Result<AlignedBuf> {
    if length == 0 {
        return Ok(AlignedBuf::zeroed(0));
    }
    device.read_at(device_offset, length)
}

/// What the probe was given: the head and the tail of a device, addressed by device offset.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    head: &'a [u8],
    tail: &'a [u8],
    device_size: u64,
}

impl<'a> View<'a> {
    /// `length` bytes at `device_offset`, when the head or the tail holds all of them.
    fn bytes(&self, device_offset: u64, length: usize) -> Option<&'a [u8]> {
        if let Some(bytes) = slice_at(self.head, device_offset, length) {
            return Some(bytes);
        }
        let tail_offset = self.device_size.checked_sub(self.tail.len() as u64)?;
        slice_at(self.tail, device_offset.checked_sub(tail_offset)?, length)
    }

    /// A structure of `length` bytes at `device_offset`, read by field offset.
    fn record(&self, device_offset: u64, length: usize) -> Option<Record<'a>> {
        let bytes = self.bytes(device_offset, length)?;
        Some(Record {
            device_offset,
            bytes,
        })
    }

    /// True when `magic` lies at `device_offset`.
    fn has(&self, device_offset: u64, magic: &[u8]) -> bool {
        self.bytes(device_offset, magic.len()) == Some(magic)
    }
}

fn slice_at(bytes: &[u8], offset: u64, length: usize) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    bytes.get(start..start.checked_add(length)?)
}

/// An on-disk structure: bytes at a known device offset, read field by field. Every accessor
/// answers `None` past the end, so a short read can never index out of range.
#[derive(Debug, Clone, Copy)]
struct Record<'a> {
    device_offset: u64,
    bytes: &'a [u8],
}

impl<'a> Record<'a> {
    fn get(&self, at: usize, length: usize) -> Option<&'a [u8]> {
        self.bytes.get(at..at.checked_add(length)?)
    }

    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.get(at, N)?.try_into().ok()
    }

    fn has(&self, at: usize, magic: &[u8]) -> bool {
        self.get(at, magic.len()) == Some(magic)
    }

    fn u8(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn le16(&self, at: usize) -> Option<u16> {
        self.array(at).map(u16::from_le_bytes)
    }

    fn le32(&self, at: usize) -> Option<u32> {
        self.array(at).map(u32::from_le_bytes)
    }

    fn le64(&self, at: usize) -> Option<u64> {
        self.array(at).map(u64::from_le_bytes)
    }

    fn be16(&self, at: usize) -> Option<u16> {
        self.array(at).map(u16::from_be_bytes)
    }

    fn be32(&self, at: usize) -> Option<u32> {
        self.array(at).map(u32::from_be_bytes)
    }

    fn be64(&self, at: usize) -> Option<u64> {
        self.array(at).map(u64::from_be_bytes)
    }

    /// The device offset of field `at`.
    fn offset_of(&self, at: usize) -> u64 {
        self.device_offset.saturating_add(at as u64)
    }
}

/// One entry of the probe table.
enum Detector {
    /// A format with one place to look.
    One(fn(&View<'_>) -> Option<Signature>),
    /// A format with several places or copies (page sizes, sectors, labels, backups).
    Many(fn(&View<'_>) -> Vec<Signature>),
}

/// Every format the probe knows, in the order of the table in the module comment.
const DETECTORS: [Detector; 23] = [
    Detector::One(bstore),
    Detector::One(ceph_bluestore),
    Detector::One(ext),
    Detector::One(xfs),
    Detector::One(btrfs),
    Detector::Many(swap),
    Detector::Many(lvm2),
    Detector::Many(md_raid),
    Detector::Many(gpt),
    Detector::One(dos),
    Detector::One(vfat),
    Detector::One(exfat),
    Detector::One(ntfs),
    Detector::One(bitlocker),
    Detector::Many(luks),
    Detector::Many(zfs),
    Detector::One(iso9660),
    Detector::One(squashfs),
    Detector::One(f2fs),
    Detector::One(bcache),
    Detector::One(jfs),
    Detector::Many(reiserfs),
    Detector::One(reiser4),
];

fn signature(name: &'static str, device_offset: u64, detail: String) -> Signature {
    Signature {
        name,
        device_offset,
        detail,
    }
}

// ---- BlueStore and bstore labels ----

fn bstore(view: &View<'_>) -> Option<Signature> {
    if !view.has(0, LABEL_MAGIC) {
        return None;
    }
    let bytes = view.bytes(0, LABEL_LENGTH).unwrap_or(view.head);
    let detail = match Label::decode(bytes) {
        Ok(label) => format!(
            "store uuid {}, device size {} bytes",
            uuid_text(&label.store_uuid),
            label.device_size
        ),
        Err(LabelError::Newer { found, supported }) => {
            format!("made by format version {found} (this build reads {supported})")
        }
        Err(LabelError::Corrupt(error)) => format!("label does not decode: {error}"),
        Err(LabelError::Blank | LabelError::Foreign { .. }) => String::new(),
    };
    Some(signature("bstore", 0, detail))
}

const CEPH_LABEL_MAGIC: &[u8] = b"bluestore block device\n";
const CEPH_UUID_TEXT_BYTES: usize = 36;

fn ceph_bluestore(view: &View<'_>) -> Option<Signature> {
    if !view.has(0, CEPH_LABEL_MAGIC) {
        return None;
    }
    // The uuid in text follows the magic, then a newline (bluestore_bdev_label_t::encode).
    let uuid = view
        .bytes(CEPH_LABEL_MAGIC.len() as u64, CEPH_UUID_TEXT_BYTES + 1)
        .and_then(|text| text.split_last())
        .filter(|(newline, uuid)| **newline == b'\n' && is_uuid_text(uuid))
        .map(|(_, uuid)| String::from_utf8_lossy(uuid).into_owned())
        .unwrap_or_default();
    Some(signature(
        "ceph_bluestore",
        0,
        describe(&[("osd uuid", uuid)]),
    ))
}

fn is_uuid_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|byte| byte.is_ascii_hexdigit() || *byte == b'-')
}

// ---- Detail text ----

/// "key value, key value", leaving out empty values.
fn describe(parts: &[(&str, String)]) -> String {
    parts
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key} {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A UUID as 8-4-4-4-12 hex digits; empty when all zero (none recorded).
fn uuid_text(uuid: &[u8; 16]) -> String {
    if uuid.iter().all(|byte| *byte == 0) {
        return String::new();
    }
    let mut text = String::with_capacity(36);
    for (index, byte) in uuid.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// A GPT GUID: its first three fields are little-endian on disk.
fn guid_text(guid: &[u8; 16]) -> String {
    let mut swapped = *guid;
    swapped[..4].reverse();
    swapped[4..6].reverse();
    swapped[6..8].reverse();
    uuid_text(&swapped)
}

/// A fixed-size text field: up to the first NUL, trailing spaces trimmed, unprintable bytes as
/// '.', so a corrupt label cannot garble an operator's terminal.
fn text(field: &[u8]) -> String {
    let end = field
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(field.len());
    let printable: String = field
        .iter()
        .take(end)
        .map(|byte| {
            if byte.is_ascii_graphic() || *byte == b' ' {
                char::from(*byte)
            } else {
                '.'
            }
        })
        .collect();
    printable.trim_end().to_owned()
}

/// The ASCII of a little-endian UTF-16 field; other characters become '.' (via [`text`]).
fn utf16_ascii(field: &[u8]) -> Vec<u8> {
    field
        .chunks_exact(2)
        .map(|unit| match unit {
            [low, 0] => *low,
            _ => b'.',
        })
        .collect()
}

/// [`text`] in quotes, or empty when the field is.
fn quoted(field: &[u8]) -> String {
    let text = text(field);
    if text.is_empty() {
        text
    } else {
        format!("\"{text}\"")
    }
}
