//! File systems, swap and encrypted-volume boot records the probe recognises: ext2/3/4, xfs,
//! btrfs, swap, FAT, exFAT, NTFS, BitLocker, ISO 9660, squashfs, f2fs, bcache, JFS and
//! reiserfs (offsets and sources in the table of the parent module).

use super::{Record, Signature, View, describe, quoted, signature, utf16_ascii, uuid_text};

// ---- ext2/3/4 ----

pub(super) const EXT_SUPERBLOCK_OFFSET: u64 = 0x400;
pub(super) const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
pub(super) const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
/// Features ext2 understands: filetype, meta_bg.
pub(super) const EXT2_INCOMPAT_KNOWN: u32 = 0x0002 | 0x0010;
/// Features ext3 understands: filetype, recover, meta_bg.
pub(super) const EXT3_INCOMPAT_KNOWN: u32 = 0x0002 | 0x0004 | 0x0010;
/// Read-only features ext2 and ext3 understand: sparse_super, large_file, btree_dir.
pub(super) const EXT23_RO_COMPAT_KNOWN: u32 = 0x0001 | 0x0002 | 0x0004;

pub(super) fn ext(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(EXT_SUPERBLOCK_OFFSET, 0x100)?;
    if !sb.has(0x38, &[0x53, 0xEF]) || !ext_superblock_sane(&sb)? {
        return None;
    }
    let name = ext_flavour(sb.le32(0x5C)?, sb.le32(0x60)?, sb.le32(0x64)?);
    let detail = describe(&[
        ("uuid", uuid_text(&sb.array(0x68)?)),
        ("label", quoted(sb.get(0x78, 16)?)),
    ]);
    Some(signature(name, sb.offset_of(0x38), detail))
}

/// The magic is two bytes; these fields of every ext superblock rule out most chance matches.
fn ext_superblock_sane(sb: &Record<'_>) -> Option<bool> {
    let inodes_count = sb.le32(0x00)?;
    let first_data_block = sb.le32(0x14)?;
    let log_block_size = sb.le32(0x18)?;
    let blocks_per_group = sb.le32(0x20)?;
    let inodes_per_group = sb.le32(0x28)?;
    let rev_level = sb.le32(0x4C)?;
    Some(
        inodes_count != 0
            && first_data_block <= 1
            && log_block_size <= 6
            && blocks_per_group != 0
            && inodes_per_group != 0
            && inodes_per_group <= inodes_count
            && rev_level <= 1,
    )
}

/// The name blkid gives, from the feature flags: a journal device, ext2 (no journal, nothing
/// ext2 lacks), ext3 (journal, nothing ext3 lacks), else ext4.
fn ext_flavour(compat: u32, incompat: u32, ro_compat: u32) -> &'static str {
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        return "jbd";
    }
    let journal = compat & EXT_COMPAT_HAS_JOURNAL != 0;
    let incompat_known = if journal {
        EXT3_INCOMPAT_KNOWN
    } else {
        EXT2_INCOMPAT_KNOWN
    };
    if incompat & !incompat_known != 0 || ro_compat & !EXT23_RO_COMPAT_KNOWN != 0 {
        "ext4"
    } else if journal {
        "ext3"
    } else {
        "ext2"
    }
}

// ---- xfs, btrfs ----

pub(super) fn xfs(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(0, 0x80)?;
    if !sb.has(0, b"XFSB") || !xfs_superblock_sane(&sb)? {
        return None;
    }
    let detail = describe(&[
        ("uuid", uuid_text(&sb.array(0x20)?)),
        ("label", quoted(sb.get(0x6C, 12)?)),
    ]);
    Some(signature("xfs", 0, detail))
}

/// The size fields and their logs must agree (xfs.c `xfs_verify_sb`, in part); big-endian.
fn xfs_superblock_sane(sb: &Record<'_>) -> Option<bool> {
    let block_size = sb.be32(0x04)?;
    let ag_blocks = sb.be32(0x54)?;
    let ag_count = sb.be32(0x58)?;
    let sector_size = u32::from(sb.be16(0x66)?);
    let inode_size = u32::from(sb.be16(0x68)?);
    Some(
        ag_count != 0
            && ag_blocks != 0
            && is_power(block_size, sb.u8(0x78)?, 9..=16)
            && is_power(sector_size, sb.u8(0x79)?, 9..=15)
            && is_power(inode_size, sb.u8(0x7A)?, 8..=11),
    )
}

/// True when `log` lies in `logs` and `value` is two to the `log`.
fn is_power(value: u32, log: u8, logs: std::ops::RangeInclusive<u8>) -> bool {
    logs.contains(&log) && 1u32.checked_shl(u32::from(log)) == Some(value)
}

pub(super) const BTRFS_SUPERBLOCK_OFFSET: u64 = 0x10000;

pub(super) fn btrfs(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(BTRFS_SUPERBLOCK_OFFSET, 0x12B + 256)?;
    // The primary superblock records its own offset in `bytenr`.
    if !sb.has(0x40, b"_BHRfS_M") || sb.le64(0x30)? != BTRFS_SUPERBLOCK_OFFSET {
        return None;
    }
    let detail = describe(&[
        ("uuid", uuid_text(&sb.array(0x20)?)),
        ("label", quoted(sb.get(0x12B, 256)?)),
    ]);
    Some(signature("btrfs", sb.offset_of(0x40), detail))
}

// ---- swap ----

/// Linux page sizes a swap header may end: the magic fills the last 10 bytes of the first page.
pub(super) const SWAP_PAGE_SIZES: [u64; 5] = [0x1000, 0x2000, 0x4000, 0x8000, 0x10000];
pub(super) const SWAP_MAGIC_BYTES: usize = 10;
/// Magic (left-aligned in the last 10 bytes of the page), name, and whether it is swap v1.
pub(super) const SWAP_MAGICS: [(&[u8], &str, bool); 6] = [
    (b"SWAPSPACE2", "swap", true),
    (b"SWAP-SPACE", "swap", false),
    (b"S1SUSPEND", "swsuspend", false),
    (b"S2SUSPEND", "swsuspend", false),
    (b"ULSUSPEND", "swsuspend", false),
    (b"LINHIB0001", "swsuspend", false),
];
/// The v1 header (version, last page, bad pages, uuid, label) follows 1 KiB of boot bits.
pub(super) const SWAP_HEADER_OFFSET: u64 = 1024;

pub(super) fn swap(view: &View<'_>) -> Vec<Signature> {
    SWAP_PAGE_SIZES
        .iter()
        .filter_map(|page_size| swap_in_page(view, *page_size))
        .collect()
}

fn swap_in_page(view: &View<'_>, page_size: u64) -> Option<Signature> {
    let magic_offset = page_size.checked_sub(SWAP_MAGIC_BYTES as u64)?;
    let magic_area = view.record(magic_offset, SWAP_MAGIC_BYTES)?;
    let (_, name, version_1) = SWAP_MAGICS
        .iter()
        .find(|(magic, _, _)| magic_area.has(0, magic))?;
    let header = view.record(SWAP_HEADER_OFFSET, 44)?;
    let detail = if *version_1 {
        // A v1 header names version 1 in the writer's endianness and a last page.
        let version = header.le32(0)?;
        if (version != 1 && version.swap_bytes() != 1) || header.le32(4)? == 0 {
            return None;
        }
        describe(&[
            ("uuid", uuid_text(&header.array(12)?)),
            ("label", quoted(header.get(28, 16)?)),
            ("page size", page_size.to_string()),
        ])
    } else {
        describe(&[("page size", page_size.to_string())])
    };
    Some(signature(name, magic_offset, detail))
}

// ---- FAT, exFAT, NTFS, BitLocker ----

/// FAT type strings and where they lie: 0x52 in a FAT32 boot sector, 0x36 in FAT12/16.
pub(super) const FAT_MAGICS: [(usize, &[u8]); 6] = [
    (0x52, b"MSWIN"),
    (0x52, b"FAT32   "),
    (0x36, b"MSDOS"),
    (0x36, b"FAT16   "),
    (0x36, b"FAT12   "),
    (0x36, b"FAT     "),
];

pub(super) fn vfat(view: &View<'_>) -> Option<Signature> {
    let sector = view.record(0, 512)?;
    let magic_at = fat_magic_offset(&sector)?;
    if !fat_bpb_sane(&sector)? {
        return None;
    }
    // FAT32 has no 16-bit FAT length; its serial and label sit further on.
    let (serial_at, label_at) = if sector.le16(0x16)? == 0 {
        (0x43, 0x47)
    } else {
        (0x27, 0x2B)
    };
    let label = sector.get(label_at, 11)?;
    let label = if label == b"NO NAME    " {
        String::new()
    } else {
        quoted(label)
    };
    let detail = describe(&[
        ("serial", fat_serial_text(sector.le32(serial_at)?)),
        ("label", label),
    ]);
    Some(signature("vfat", sector.offset_of(magic_at), detail))
}

/// Where the FAT type string lies; old FATs without one are recognised by their jump
/// instruction and 55 AA (vfat.c), unless they carry the pseudo-FAT header of JFS or HPFS.
fn fat_magic_offset(sector: &Record<'_>) -> Option<usize> {
    if let Some((at, _)) = FAT_MAGICS.iter().find(|(at, magic)| sector.has(*at, magic)) {
        return Some(*at);
    }
    let jumps = matches!(sector.u8(0)?, 0xEB | 0xE9);
    let pseudo = sector.has(0x36, b"JFS     ") || sector.has(0x36, b"HPFS    ");
    (jumps && sector.has(510, &[0x55, 0xAA]) && !pseudo).then_some(0)
}

/// The BIOS parameter block checks of vfat.c `fat_valid_superblock`, without its cluster count.
fn fat_bpb_sane(sector: &Record<'_>) -> Option<bool> {
    let sector_size = sector.le16(0x0B)?;
    let cluster_sectors = sector.u8(0x0D)?;
    let reserved_sectors = sector.le16(0x0E)?;
    let fats = sector.u8(0x10)?;
    let media = sector.u8(0x15)?;
    Some(
        fats != 0
            && reserved_sectors != 0
            && (media >= 0xF8 || media == 0xF0)
            && cluster_sectors.is_power_of_two()
            && sector_size.is_power_of_two()
            && (512..=4096).contains(&sector_size),
    )
}

fn fat_serial_text(serial: u32) -> String {
    format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF)
}

pub(super) fn exfat(view: &View<'_>) -> Option<Signature> {
    let sector = view.record(0, 512)?;
    if !sector.has(3, b"EXFAT   ") {
        return None;
    }
    let detail = describe(&[("serial", fat_serial_text(sector.le32(100)?))]);
    Some(signature("exfat", 3, detail))
}

pub(super) fn ntfs(view: &View<'_>) -> Option<Signature> {
    let sector = view.record(0, 512)?;
    let sector_size = sector.le16(0x0B)?;
    if !sector.has(3, b"NTFS    ")
        || !sector_size.is_power_of_two()
        || !(256..=4096).contains(&sector_size)
    {
        return None;
    }
    let detail = describe(&[("serial", format!("{:016X}", sector.le64(0x48)?))]);
    Some(signature("ntfs", 3, detail))
}

pub(super) const BITLOCKER_MAGICS: [&[u8]; 2] = [b"\xEB\x52\x90-FVE-FS-", b"\xEB\x58\x90-FVE-FS-"];

pub(super) fn bitlocker(view: &View<'_>) -> Option<Signature> {
    BITLOCKER_MAGICS
        .iter()
        .any(|magic| view.has(0, magic))
        .then(|| signature("BitLocker", 0, String::new()))
}

// ---- Read-only images and less common file systems ----

pub(super) fn iso9660(view: &View<'_>) -> Option<Signature> {
    let descriptor = view.record(0x8000, 0x48)?;
    if !descriptor.has(1, b"CD001") {
        return None;
    }
    // Type 1 is the primary volume descriptor, which carries the volume id.
    let volume_id = if descriptor.u8(0)? == 1 {
        quoted(descriptor.get(0x28, 32)?)
    } else {
        String::new()
    };
    Some(signature(
        "iso9660",
        descriptor.offset_of(1),
        describe(&[("volume id", volume_id)]),
    ))
}

pub(super) fn squashfs(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(0, 32)?;
    let name = if sb.has(0, b"hsqs") {
        if sb.le16(28)? >= 4 {
            "squashfs"
        } else {
            "squashfs3"
        }
    } else if sb.has(0, b"sqsh") {
        "squashfs3"
    } else {
        return None;
    };
    Some(signature(name, 0, String::new()))
}

pub(super) const F2FS_SUPERBLOCK_OFFSET: u64 = 0x400;
/// The first 32 UTF-16 units of the 512-unit volume name: enough for an error message.
pub(super) const F2FS_LABEL_BYTES: usize = 64;

pub(super) fn f2fs(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(F2FS_SUPERBLOCK_OFFSET, 0x7C + F2FS_LABEL_BYTES)?;
    if !sb.has(0, &[0x10, 0x20, 0xF5, 0xF2]) {
        return None;
    }
    let detail = describe(&[
        ("uuid", uuid_text(&sb.array(0x6C)?)),
        (
            "label",
            quoted(&utf16_ascii(sb.get(0x7C, F2FS_LABEL_BYTES)?)),
        ),
    ]);
    Some(signature("f2fs", F2FS_SUPERBLOCK_OFFSET, detail))
}

pub(super) const BCACHE_SUPERBLOCK_OFFSET: u64 = 0x1000;
pub(super) const BCACHE_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d, 0x81,
];

pub(super) fn bcache(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(BCACHE_SUPERBLOCK_OFFSET, 56)?;
    if !sb.has(24, &BCACHE_MAGIC) {
        return None;
    }
    let detail = describe(&[("uuid", uuid_text(&sb.array(40)?))]);
    Some(signature("bcache", sb.offset_of(24), detail))
}

pub(super) const JFS_SUPERBLOCK_OFFSET: u64 = 0x8000;

pub(super) fn jfs(view: &View<'_>) -> Option<Signature> {
    let sb = view.record(JFS_SUPERBLOCK_OFFSET, 0xA8)?;
    if !sb.has(0, b"JFS1") || !jfs_superblock_sane(&sb)? {
        return None;
    }
    let detail = describe(&[
        ("uuid", uuid_text(&sb.array(0x88)?)),
        ("label", quoted(sb.get(0x98, 16)?)),
    ]);
    Some(signature("jfs", JFS_SUPERBLOCK_OFFSET, detail))
}

/// The aggregate and physical block sizes must match their logs (jfs.c).
fn jfs_superblock_sane(sb: &Record<'_>) -> Option<bool> {
    let block_log = sb.le16(20)?;
    let block_factor_log = sb.le16(22)?;
    let physical_log = sb.le16(28)?;
    let block_size = 1u32.checked_shl(u32::from(block_log));
    let physical_size = 1u32.checked_shl(u32::from(physical_log));
    Some(
        block_size == Some(sb.le32(16)?)
            && physical_size == Some(sb.le32(24)?)
            && block_log.checked_sub(physical_log) == Some(block_factor_log),
    )
}

/// ReiserFS 3 superblocks: superblock offset, magic (at 0x34 in the superblock), name.
pub(super) const REISERFS_SUPERBLOCKS: [(u64, &[u8]); 4] = [
    (0x1_0000, b"ReIsEr2Fs"),
    (0x1_0000, b"ReIsEr3Fs"),
    (0x1_0000, b"ReIsErFs"),
    (0x2000, b"ReIsErFs"),
];

pub(super) fn reiserfs(view: &View<'_>) -> Vec<Signature> {
    REISERFS_SUPERBLOCKS
        .iter()
        .filter_map(|(offset, magic)| reiserfs_superblock(view, *offset, magic))
        .collect()
}

fn reiserfs_superblock(view: &View<'_>, device_offset: u64, magic: &[u8]) -> Option<Signature> {
    let sb = view.record(device_offset, 0x74)?;
    if !sb.has(0x34, magic) || sb.le16(0x2C)? < 512 {
        return None;
    }
    // Only 3.6 and JR superblocks carry a uuid and label.
    let detail = if magic == b"ReIsErFs" {
        String::new()
    } else {
        describe(&[
            ("uuid", uuid_text(&sb.array(0x54)?)),
            ("label", quoted(sb.get(0x64, 16)?)),
        ])
    };
    Some(signature("reiserfs", sb.offset_of(0x34), detail))
}

pub(super) fn reiser4(view: &View<'_>) -> Option<Signature> {
    view.has(0x1_0000, b"ReIsEr4")
        .then(|| signature("reiser4", 0x1_0000, String::new()))
}
