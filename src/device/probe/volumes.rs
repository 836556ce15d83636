//! Volume managers, RAID members, encrypted volumes, ZFS pool members and partition tables the
//! probe recognises: LVM2, MD RAID, LUKS, ZFS, GPT and DOS (offsets and sources in the table of
//! the parent module).

use super::filesystems::{bitlocker, exfat, ntfs, vfat};
use super::{Record, Signature, View, describe, guid_text, quoted, signature, text, uuid_text};

// ---- LVM2 ----

pub(super) const LVM2_LABEL_SECTORS: [u64; 4] = [0, 1, 2, 3];

pub(super) fn lvm2(view: &View<'_>) -> Vec<Signature> {
    LVM2_LABEL_SECTORS
        .iter()
        .filter_map(|sector| lvm2_label(view, *sector))
        .collect()
}

fn lvm2_label(view: &View<'_>, sector: u64) -> Option<Signature> {
    let label = view.record(sector.checked_mul(512)?, 64)?;
    // The label names the sector it sits in; the pv_header with the PV uuid follows at 32.
    if !label.has(0, b"LABELONE") || !label.has(24, b"LVM2 001") || label.le64(8)? != sector {
        return None;
    }
    let detail = describe(&[("pv uuid", lvm_uuid_text(label.get(32, 32)?))]);
    Some(signature("LVM2_member", label.offset_of(24), detail))
}

/// LVM prints its 32-character ids in groups of 6-4-4-4-4-4-6.
fn lvm_uuid_text(id: &[u8]) -> String {
    if !id.iter().all(u8::is_ascii_alphanumeric) {
        return String::new();
    }
    let mut text = String::new();
    for (index, byte) in id.iter().enumerate() {
        if matches!(index, 6 | 10 | 14 | 18 | 22 | 26) {
            text.push('-');
        }
        text.push(char::from(*byte));
    }
    text
}

// ---- MD RAID ----

pub(super) const MD_MAGIC: u32 = 0xa92b_4efc;
/// MD keeps its end-of-device superblocks within the last 64 KiB.
pub(super) const MD_RESERVED_BYTES: u64 = 0x1_0000;

pub(super) fn md_raid(view: &View<'_>) -> Vec<Signature> {
    let size = view.device_size;
    let at_end = size > MD_RESERVED_BYTES;
    let v1_offsets = [
        ("1.1", Some(0)),
        ("1.2", Some(0x1000)),
        (
            "1.0",
            (size & !0xFFF).checked_sub(0x2000).filter(|_| at_end),
        ),
    ];
    let mut found: Vec<Signature> = v1_offsets
        .into_iter()
        .filter_map(|(version, offset)| md_v1(view, offset?, version))
        .collect();
    let v0_offset = (size & !(MD_RESERVED_BYTES - 1)).checked_sub(MD_RESERVED_BYTES);
    found.extend(
        v0_offset
            .filter(|_| at_end)
            .and_then(|offset| md_v0_90(view, offset)),
    );
    found
}

fn md_v1(view: &View<'_>, device_offset: u64, version: &str) -> Option<Signature> {
    let sb = view.record(device_offset, 152)?;
    // A 1.x superblock is little-endian and names its own sector in `super_offset`.
    if sb.le32(0)? != MD_MAGIC || sb.le32(4)? != 1 || sb.le64(144)? != device_offset / 512 {
        return None;
    }
    let detail = describe(&[
        ("metadata", version.to_owned()),
        ("array uuid", uuid_text(&sb.array(16)?)),
        ("name", quoted(sb.get(32, 32)?)),
    ]);
    Some(signature("linux_raid_member", device_offset, detail))
}

fn md_v0_90(view: &View<'_>, device_offset: u64) -> Option<Signature> {
    let sb = view.record(device_offset, 8)?;
    // 0.90 is written in the host's endianness.
    let major_version = if sb.le32(0)? == MD_MAGIC {
        sb.le32(4)?
    } else if sb.be32(0)? == MD_MAGIC {
        sb.be32(4)?
    } else {
        return None;
    };
    if major_version != 0 {
        return None;
    }
    let detail = describe(&[("metadata", "0.90".to_owned())]);
    Some(signature("linux_raid_member", device_offset, detail))
}

// ---- GPT and DOS partition tables ----

/// Logical sector sizes a GPT may be written for: its header is in LBA 1 and the last LBA.
pub(super) const GPT_SECTOR_SIZES: [u64; 2] = [512, 4096];

pub(super) fn gpt(view: &View<'_>) -> Vec<Signature> {
    let mut found = Vec::new();
    for sector_size in GPT_SECTOR_SIZES {
        found.extend(gpt_header(view, sector_size, 1, ""));
        let last_lba = view
            .device_size
            .checked_div(sector_size)
            .and_then(|lbas| lbas.checked_sub(1));
        found.extend(last_lba.and_then(|lba| gpt_header(view, sector_size, lba, "backup header")));
    }
    found
}

fn gpt_header(view: &View<'_>, sector_size: u64, lba: u64, copy: &str) -> Option<Signature> {
    let header = view.record(lba.checked_mul(sector_size)?, 92)?;
    // A header names its own LBA, so a backup is not mistaken for a primary and vice versa.
    if !header.has(0, b"EFI PART") || header.le64(24)? != lba {
        return None;
    }
    let detail = describe(&[
        ("copy", copy.to_owned()),
        ("disk guid", guid_text(&header.array(56)?)),
        ("sector size", sector_size.to_string()),
    ]);
    Some(signature("gpt", header.device_offset, detail))
}

pub(super) const DOS_ENTRIES_OFFSET: usize = 446;
pub(super) const DOS_ENTRY_BYTES: usize = 16;
pub(super) const DOS_ENTRIES: [usize; 4] = [0, 1, 2, 3];
pub(super) const DOS_TYPE_GPT_PROTECTIVE: u8 = 0xEE;

/// One primary partition entry of an MBR.
struct DosEntry {
    boot_flag: u8,
    type_id: u8,
    start_sector: u32,
    sectors: u32,
}

pub(super) fn dos(view: &View<'_>) -> Option<Signature> {
    let mbr = view.record(0, 512)?;
    // 55 AA also ends FAT, NTFS, exFAT and BitLocker boot sectors: those are file systems.
    if !mbr.has(510, &[0x55, 0xAA]) || is_boot_sector_of_a_file_system(view) {
        return None;
    }
    let entries = DOS_ENTRIES
        .iter()
        .map(|index| dos_entry(&mbr, *index))
        .collect::<Option<Vec<_>>>()?;
    let flags_sane = entries
        .iter()
        .all(|e| e.boot_flag == 0 || e.boot_flag == 0x80);
    // A protective MBR belongs to the GPT, which is reported on its own.
    let protective = entries.iter().any(|e| e.type_id == DOS_TYPE_GPT_PROTECTIVE);
    let used = entries
        .iter()
        .filter(|e| e.type_id != 0 && e.start_sector != 0 && e.sectors != 0)
        .count();
    if !flags_sane || protective || used == 0 {
        return None;
    }
    let detail = describe(&[
        ("disk id", format!("0x{:08x}", mbr.le32(440)?)),
        ("primary partitions", used.to_string()),
    ]);
    Some(signature("dos", mbr.offset_of(510), detail))
}

fn dos_entry(mbr: &Record<'_>, index: usize) -> Option<DosEntry> {
    let at = DOS_ENTRIES_OFFSET.checked_add(index.checked_mul(DOS_ENTRY_BYTES)?)?;
    let entry = Record {
        device_offset: mbr.offset_of(at),
        bytes: mbr.get(at, DOS_ENTRY_BYTES)?,
    };
    Some(DosEntry {
        boot_flag: entry.u8(0)?,
        type_id: entry.u8(4)?,
        start_sector: entry.le32(8)?,
        sectors: entry.le32(12)?,
    })
}

fn is_boot_sector_of_a_file_system(view: &View<'_>) -> bool {
    vfat(view).is_some()
        || exfat(view).is_some()
        || ntfs(view).is_some()
        || bitlocker(view).is_some()
}

// ---- LUKS ----

pub(super) const LUKS_MAGIC: &[u8] = b"LUKS\xBA\xBE";
pub(super) const LUKS2_SECONDARY_MAGIC: &[u8] = b"SKUL\xBA\xBE";
/// Where LUKS2 may put its second header (luks.c); those past the head are seen only on a
/// device small enough for its tail to hold them.
pub(super) const LUKS2_SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];

pub(super) fn luks(view: &View<'_>) -> Vec<Signature> {
    let primary = luks_header(view, 0, LUKS_MAGIC);
    let secondary = LUKS2_SECONDARY_OFFSETS
        .iter()
        .filter_map(|offset| luks_header(view, *offset, LUKS2_SECONDARY_MAGIC));
    primary.into_iter().chain(secondary).collect()
}

fn luks_header(view: &View<'_>, device_offset: u64, magic: &[u8]) -> Option<Signature> {
    let header = view.record(device_offset, 264)?;
    if !header.has(0, magic) {
        return None;
    }
    let version = header.be16(6)?;
    // A LUKS2 header records its own offset; only LUKS2 has a second header.
    let misplaced = version == 2 && header.be64(256)? != device_offset;
    if misplaced || (device_offset != 0 && version != 2) {
        return None;
    }
    let label = if version == 2 {
        quoted(header.get(24, 48)?)
    } else {
        String::new()
    };
    let detail = describe(&[
        ("version", version.to_string()),
        ("uuid", text(header.get(168, 40)?)),
        ("label", label),
    ]);
    Some(signature("crypto_LUKS", device_offset, detail))
}

// ---- ZFS ----

pub(super) const ZFS_LABEL_BYTES: u64 = 256 << 10;
pub(super) const ZFS_UBERBLOCK_RING_OFFSET: u64 = 128 << 10;
pub(super) const ZFS_UBERBLOCK_RING_BYTES: usize = 128 << 10;
/// Uberblocks are at least 1 KiB (larger with a larger ashift, still 1 KiB-aligned).
pub(super) const ZFS_UBERBLOCK_STRIDE: usize = 1 << 10;
pub(super) const ZFS_UBERBLOCK_MAGIC: u64 = 0x00ba_b10c;

pub(super) fn zfs(view: &View<'_>) -> Vec<Signature> {
    let size = view.device_size;
    // Four labels need 1 MiB; on a smaller device they would overlap.
    if size < 4 * ZFS_LABEL_BYTES {
        return Vec::new();
    }
    let end = size.saturating_sub(size % ZFS_LABEL_BYTES);
    let labels = [
        Some(0),
        Some(ZFS_LABEL_BYTES),
        end.checked_sub(2 * ZFS_LABEL_BYTES),
        end.checked_sub(ZFS_LABEL_BYTES),
    ];
    labels
        .iter()
        .enumerate()
        .filter_map(|(number, offset)| zfs_label(view, number, (*offset)?))
        .collect()
}

fn zfs_label(view: &View<'_>, number: usize, label_offset: u64) -> Option<Signature> {
    let ring_offset = label_offset.checked_add(ZFS_UBERBLOCK_RING_OFFSET)?;
    let ring = view.record(ring_offset, ZFS_UBERBLOCK_RING_BYTES)?;
    // The pool writes uberblocks in the host's endianness.
    let is_uberblock = |at: &usize| {
        ring.le64(*at).is_some_and(|magic| {
            magic == ZFS_UBERBLOCK_MAGIC || magic.swap_bytes() == ZFS_UBERBLOCK_MAGIC
        })
    };
    let mut uberblocks = (0..ZFS_UBERBLOCK_RING_BYTES)
        .step_by(ZFS_UBERBLOCK_STRIDE)
        .filter(is_uberblock);
    let first = uberblocks.next()?;
    let count = uberblocks.count().saturating_add(1);
    let detail = describe(&[
        ("label", number.to_string()),
        ("uberblocks", count.to_string()),
    ]);
    Some(signature("zfs_member", ring.offset_of(first), detail))
}
