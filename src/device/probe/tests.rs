//! Unit tests of the probe: exact magic bytes at the right offsets are found, blank and random
//! bytes are not, and no input makes it panic.

use std::collections::BTreeMap;

use super::filesystems::*;
use super::volumes::*;
use super::*;
use crate::device::SimDevice;
use crate::format::FORMAT_VERSION;
use crate::rng::SplitMix64;

/// Size of the images below: larger than head and tail together, so a signature found at
/// the end really came from the tail.
const IMAGE_BYTES: usize = 4 << 20;

fn image() -> Vec<u8> {
    vec![0u8; IMAGE_BYTES]
}

fn put(image: &mut [u8], device_offset: usize, bytes: &[u8]) {
    image[device_offset..device_offset + bytes.len()].copy_from_slice(bytes);
}

/// What `probe` would hand `find_signatures` for this image.
fn scan(image: &[u8]) -> Vec<Signature> {
    let head = &image[..image.len().min(PROBE_HEAD_BYTES)];
    let tail = &image[image.len().saturating_sub(PROBE_TAIL_BYTES)..];
    find_signatures(head, tail, image.len() as u64)
}

fn names_and_offsets(image: &[u8]) -> Vec<(&'static str, u64)> {
    scan(image)
        .into_iter()
        .map(|found| (found.name, found.device_offset))
        .collect()
}

fn ext_image(compat: u32, incompat: u32, ro_compat: u32) -> Vec<u8> {
    let mut image = image();
    let sb = 1024;
    put(&mut image, sb, &8192u32.to_le_bytes()); // inodes
    put(&mut image, sb + 0x18, &2u32.to_le_bytes()); // 4 KiB blocks
    put(&mut image, sb + 0x20, &32768u32.to_le_bytes()); // blocks per group
    put(&mut image, sb + 0x28, &8192u32.to_le_bytes()); // inodes per group
    put(&mut image, sb + 0x38, &[0x53, 0xEF]);
    put(&mut image, sb + 0x4C, &1u32.to_le_bytes()); // dynamic revision
    put(&mut image, sb + 0x5C, &compat.to_le_bytes());
    put(&mut image, sb + 0x60, &incompat.to_le_bytes());
    put(&mut image, sb + 0x64, &ro_compat.to_le_bytes());
    put(&mut image, sb + 0x68, &[0x11; 16]);
    put(&mut image, sb + 0x78, b"rootfs");
    image
}

#[test]
fn a_blank_device_holds_nothing() {
    // Goal: zeroes, of any size, are never mistaken for a signature.
    assert_eq!(scan(&image()), vec![]);
    assert_eq!(find_signatures(&[], &[], 0), vec![]);
    assert_eq!(
        find_signatures(&[0; 20 << 10], &[0; 20 << 10], 20 << 10),
        vec![]
    );
}

#[test]
fn random_bytes_hold_nothing() {
    // Goal: random data (a fixed seed, so the result is stable) matches no signature: the
    // sanity checks behind two-byte magics such as ext's 53 EF and DOS's 55 AA hold.
    for seed in [0x5EED_0001u64, 0x5EED_0002, 0x5EED_0003] {
        let mut rng = SplitMix64::new(seed);
        let bytes: Vec<u8> = (0..IMAGE_BYTES / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect();
        assert_eq!(scan(&bytes), vec![], "seed {seed:#x}");
    }
}

fn sample_label() -> Label {
    Label {
        format_version: FORMAT_VERSION,
        store_uuid: [0xAB; 16],
        device_size: 1 << 30,
        min_alloc_size: 4096,
        created_secs: 1_700_000_000,
        created_nanos: 0,
        meta: BTreeMap::new(),
    }
}

#[test]
fn a_bstore_label_is_found_with_its_uuid() {
    // Goal: a label made by the real encoder is recognised, and the detail names the store.
    let mut image = image();
    put(&mut image, 0, &sample_label().encode());
    let found = scan(&image);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].name, found[0].device_offset), ("bstore", 0));
    assert!(
        found[0].detail.contains("abababab-abab"),
        "{}",
        found[0].detail
    );
}

#[test]
fn a_damaged_bstore_label_is_still_bstore() {
    // Goal: a label that no longer decodes is reported all the same (mkfs must still stop).
    let mut image = image();
    put(&mut image, 0, LABEL_MAGIC);
    put(&mut image, 16, &[0xFF; 8]);
    let found = scan(&image);
    assert_eq!(found[0].name, "bstore");
    assert!(
        found[0].detail.contains("does not decode"),
        "{}",
        found[0].detail
    );
}

#[test]
fn a_ceph_bluestore_label_is_found_with_its_osd_uuid() {
    // Goal: Ceph's label, magic then the OSD uuid in text, is named like blkid names it.
    let mut image = image();
    put(&mut image, 0, b"bluestore block device\n");
    put(&mut image, 23, b"4fb2ad3c-6c2e-4a5b-8e3f-0123456789ab\n");
    let found = scan(&image);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].name, found[0].device_offset),
        ("ceph_bluestore", 0)
    );
    assert_eq!(
        found[0].detail,
        "osd uuid 4fb2ad3c-6c2e-4a5b-8e3f-0123456789ab"
    );
}

#[test]
fn ext_flavours_follow_the_feature_flags() {
    // Goal: ext2/3/4 and journal devices get blkid's names, and a superblock with an
    // impossible block size is not ext at all.
    let extents_flex_bg = 0x0040 | 0x0200;
    let cases = [
        (ext_image(0x4, 0x2, 0x1), "ext3"),
        (ext_image(0x0, 0x2, 0x1), "ext2"),
        (ext_image(0x4, 0x2 | extents_flex_bg, 0x1), "ext4"),
        (ext_image(0x0, 0x2, 0x1 | 0x8), "ext4"),
        (ext_image(0x0, 0x8, 0x0), "jbd"),
    ];
    for (image, name) in cases {
        assert_eq!(names_and_offsets(&image), vec![(name, 0x438)]);
    }
    let found = scan(&ext_image(0x4, 0x2 | extents_flex_bg, 0x1));
    assert_eq!(
        found[0].detail,
        "uuid 11111111-1111-1111-1111-111111111111, label \"rootfs\""
    );
    let mut insane = ext_image(0x4, 0x2, 0x1);
    put(&mut insane, 1024 + 0x18, &20u32.to_le_bytes());
    assert_eq!(scan(&insane), vec![]);
}

#[test]
fn xfs_is_found_and_checked() {
    // Goal: "XFSB" with consistent geometry is xfs; the magic alone is not.
    let mut image = image();
    put(&mut image, 0, b"XFSB");
    put(&mut image, 0x04, &4096u32.to_be_bytes());
    put(&mut image, 0x20, &[0x22; 16]);
    put(&mut image, 0x54, &16384u32.to_be_bytes());
    put(&mut image, 0x58, &4u32.to_be_bytes());
    put(&mut image, 0x66, &512u16.to_be_bytes());
    put(&mut image, 0x68, &512u16.to_be_bytes());
    put(&mut image, 0x6C, b"data");
    put(&mut image, 0x78, &[12, 9, 9]);
    assert_eq!(names_and_offsets(&image), vec![("xfs", 0)]);
    put(&mut image, 0x78, &[13]);
    assert_eq!(scan(&image), vec![]);
}

#[test]
fn btrfs_is_found_at_64_kib() {
    // Goal: the btrfs magic at 0x10040 in a superblock that names its own offset.
    let mut image = image();
    put(&mut image, 0x10030, &0x10000u64.to_le_bytes());
    put(&mut image, 0x10040, b"_BHRfS_M");
    assert_eq!(names_and_offsets(&image), vec![("btrfs", 0x10040)]);
}

#[test]
fn swap_is_found_for_every_page_size() {
    // Goal: a swap header ends the first page whatever the page size; v1 needs its version.
    for page_size in SWAP_PAGE_SIZES {
        let mut image = image();
        let magic_offset = page_size as usize - 10;
        put(&mut image, magic_offset, b"SWAPSPACE2");
        put(&mut image, 1024, &1u32.to_le_bytes());
        put(&mut image, 1028, &1000u32.to_le_bytes());
        assert_eq!(
            names_and_offsets(&image),
            vec![("swap", magic_offset as u64)]
        );
        put(&mut image, 1024, &7u32.to_le_bytes());
        assert_eq!(scan(&image), vec![], "page size {page_size}");
    }
    let mut old = image();
    put(&mut old, 0xFF6, b"SWAP-SPACE");
    assert_eq!(names_and_offsets(&old), vec![("swap", 0xFF6)]);
    let mut hibernated = image();
    put(&mut hibernated, 0x1FF6, b"S1SUSPEND");
    assert_eq!(names_and_offsets(&hibernated), vec![("swsuspend", 0x1FF6)]);
}

#[test]
fn an_lvm2_label_is_found_in_any_of_the_first_four_sectors() {
    // Goal: LABELONE in sectors 0..4 that names its sector, reported at "LVM2 001".
    for sector in LVM2_LABEL_SECTORS {
        let mut image = image();
        let at = sector as usize * 512;
        put(&mut image, at, b"LABELONE");
        put(&mut image, at + 8, &sector.to_le_bytes());
        put(&mut image, at + 24, b"LVM2 001");
        put(&mut image, at + 32, b"abcdefghijklmnopqrstuvwxyz012345");
        let found = scan(&image);
        assert_eq!(
            names_and_offsets(&image),
            vec![("LVM2_member", at as u64 + 24)]
        );
        assert_eq!(
            found[0].detail,
            "pv uuid abcdef-ghij-klmn-opqr-stuv-wxyz-012345"
        );
        put(&mut image, at + 8, &(sector + 1).to_le_bytes());
        assert_eq!(scan(&image), vec![]);
    }
}

fn md_v1_superblock(image: &mut [u8], device_offset: usize) {
    put(image, device_offset, &MD_MAGIC.to_le_bytes());
    put(image, device_offset + 4, &1u32.to_le_bytes());
    put(image, device_offset + 32, b"host:0");
    put(
        image,
        device_offset + 144,
        &(device_offset as u64 / 512).to_le_bytes(),
    );
}

#[test]
fn md_superblocks_are_found_at_all_four_places() {
    // Goal: MD 1.1 (start), 1.2 (4 KiB), 1.0 (8 KiB before the 4K-aligned end) and 0.90
    // (64 KiB before the 64K-aligned end, either endianness).
    let end_1_0 = (IMAGE_BYTES & !0xFFF) - 0x2000;
    for (offset, version) in [(0, "1.1"), (0x1000, "1.2"), (end_1_0, "1.0")] {
        let mut image = image();
        md_v1_superblock(&mut image, offset);
        let found = scan(&image);
        assert_eq!(
            names_and_offsets(&image),
            vec![("linux_raid_member", offset as u64)]
        );
        assert!(found[0].detail.starts_with(&format!("metadata {version}")));
    }
    let end_0_90 = (IMAGE_BYTES & !0xFFFF) - 0x1_0000;
    for magic in [MD_MAGIC.to_le_bytes(), MD_MAGIC.to_be_bytes()] {
        let mut image = image();
        put(&mut image, end_0_90, &magic);
        assert_eq!(
            names_and_offsets(&image),
            vec![("linux_raid_member", end_0_90 as u64)]
        );
    }
    let mut misplaced = image();
    md_v1_superblock(&mut misplaced, 0x1000);
    put(&mut misplaced, 0x1000 + 144, &9u64.to_le_bytes());
    assert_eq!(scan(&misplaced), vec![]);
}

fn gpt_header(image: &mut [u8], sector_size: usize, lba: u64) {
    let at = lba as usize * sector_size;
    put(image, at, b"EFI PART");
    put(image, at + 24, &lba.to_le_bytes());
    put(image, at + 56, &[0x33; 16]);
}

#[test]
fn gpt_headers_are_found_primary_and_backup() {
    // Goal: "EFI PART" in LBA 1 and the last LBA, for 512- and 4096-byte sectors; a header
    // that names another LBA is not one.
    for sector_size in [512, 4096] {
        let mut image = image();
        let last_lba = (IMAGE_BYTES / sector_size) as u64 - 1;
        gpt_header(&mut image, sector_size, 1);
        gpt_header(&mut image, sector_size, last_lba);
        let backup_offset = (IMAGE_BYTES - sector_size) as u64;
        assert_eq!(
            names_and_offsets(&image),
            vec![("gpt", sector_size as u64), ("gpt", backup_offset)]
        );
        assert!(scan(&image)[1].detail.starts_with("copy backup header"));
    }
    let mut wrong_lba = image();
    gpt_header(&mut wrong_lba, 512, 1);
    put(&mut wrong_lba, 512 + 24, &2u64.to_le_bytes());
    assert_eq!(scan(&wrong_lba), vec![]);
}

fn mbr_with(boot_flag: u8, type_id: u8) -> Vec<u8> {
    let mut image = image();
    put(&mut image, 446, &[boot_flag, 0, 0, 0, type_id, 0, 0, 0]);
    put(&mut image, 446 + 8, &2048u32.to_le_bytes());
    put(&mut image, 446 + 12, &204_800u32.to_le_bytes());
    put(&mut image, 510, &[0x55, 0xAA]);
    image
}

#[test]
fn a_dos_partition_table_needs_a_sane_entry() {
    // Goal: 55 AA with a used entry is "dos"; bad boot flags, a GPT protective entry or no
    // used entry are not.
    assert_eq!(
        names_and_offsets(&mbr_with(0x80, 0x83)),
        vec![("dos", 0x1FE)]
    );
    assert_eq!(scan(&mbr_with(0x12, 0x83)), vec![]);
    assert_eq!(scan(&mbr_with(0x00, DOS_TYPE_GPT_PROTECTIVE)), vec![]);
    let mut empty = image();
    put(&mut empty, 510, &[0x55, 0xAA]);
    assert_eq!(scan(&empty), vec![]);
}

fn fat_boot_sector(fat32: bool) -> Vec<u8> {
    let mut image = image();
    put(&mut image, 0, &[0xEB, 0x58, 0x90]);
    put(&mut image, 0x0B, &512u16.to_le_bytes());
    put(&mut image, 0x0D, &[8]);
    put(&mut image, 0x0E, &32u16.to_le_bytes());
    put(&mut image, 0x10, &[2]);
    put(&mut image, 0x15, &[0xF8]);
    if fat32 {
        put(&mut image, 0x43, &0x1234_ABCDu32.to_le_bytes());
        put(&mut image, 0x47, b"EFI        ");
        put(&mut image, 0x52, b"FAT32   ");
    } else {
        put(&mut image, 0x16, &200u16.to_le_bytes());
        put(&mut image, 0x2B, b"NO NAME    ");
        put(&mut image, 0x36, b"FAT16   ");
    }
    // A FAT boot sector ends in 55 AA too, and its code can look like partition entries.
    put(
        &mut image,
        446,
        &[0x80, 0, 0, 0, 0x0C, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
    );
    put(&mut image, 510, &[0x55, 0xAA]);
    image
}

#[test]
fn a_fat_boot_sector_is_vfat_and_not_a_partition_table() {
    // Goal: FAT32 and FAT16 are found at their type strings, and their 55 AA does not also
    // count as a DOS partition table.
    assert_eq!(
        names_and_offsets(&fat_boot_sector(true)),
        vec![("vfat", 0x52)]
    );
    assert_eq!(
        scan(&fat_boot_sector(true))[0].detail,
        "serial 1234-ABCD, label \"EFI\""
    );
    assert_eq!(
        names_and_offsets(&fat_boot_sector(false)),
        vec![("vfat", 0x36)]
    );
    let mut no_fats = fat_boot_sector(true);
    put(&mut no_fats, 0x10, &[0]);
    assert_eq!(names_and_offsets(&no_fats), vec![("dos", 0x1FE)]);
}

#[test]
fn exfat_ntfs_and_bitlocker_boot_sectors_are_found() {
    // Goal: the three OEM-id signatures at offset 3 (BitLocker with its jump at 0).
    let mut exfat = image();
    put(&mut exfat, 3, b"EXFAT   ");
    assert_eq!(names_and_offsets(&exfat), vec![("exfat", 3)]);
    let mut ntfs = image();
    put(&mut ntfs, 3, b"NTFS    ");
    put(&mut ntfs, 0x0B, &512u16.to_le_bytes());
    put(&mut ntfs, 510, &[0x55, 0xAA]);
    assert_eq!(names_and_offsets(&ntfs), vec![("ntfs", 3)]);
    let mut bitlocker = image();
    put(&mut bitlocker, 0, b"\xEB\x58\x90-FVE-FS-");
    assert_eq!(names_and_offsets(&bitlocker), vec![("BitLocker", 0)]);
}

fn luks2_header(image: &mut [u8], device_offset: usize, magic: &[u8]) {
    put(image, device_offset, magic);
    put(image, device_offset + 6, &2u16.to_be_bytes());
    put(image, device_offset + 24, b"secrets");
    put(
        image,
        device_offset + 168,
        b"0b7e8a0c-0000-4000-8000-000000000001",
    );
    put(
        image,
        device_offset + 256,
        &(device_offset as u64).to_be_bytes(),
    );
}

#[test]
fn luks_headers_are_found_primary_and_secondary() {
    // Goal: LUKS1 and LUKS2 at 0, and a LUKS2 second header alone (primary wiped).
    let mut luks1 = image();
    put(&mut luks1, 0, LUKS_MAGIC);
    put(&mut luks1, 6, &1u16.to_be_bytes());
    assert_eq!(names_and_offsets(&luks1), vec![("crypto_LUKS", 0)]);
    let mut luks2 = image();
    luks2_header(&mut luks2, 0, LUKS_MAGIC);
    luks2_header(&mut luks2, 0x4000, LUKS2_SECONDARY_MAGIC);
    assert_eq!(
        names_and_offsets(&luks2),
        vec![("crypto_LUKS", 0), ("crypto_LUKS", 0x4000)]
    );
    assert!(scan(&luks2)[0].detail.contains("label \"secrets\""));
    let mut wiped = image();
    luks2_header(&mut wiped, 0x8000, LUKS2_SECONDARY_MAGIC);
    assert_eq!(names_and_offsets(&wiped), vec![("crypto_LUKS", 0x8000)]);
    put(&mut wiped, 0x8000 + 256, &0u64.to_be_bytes());
    assert_eq!(scan(&wiped), vec![]);
}

#[test]
fn zfs_uberblocks_are_found_in_front_and_back_labels() {
    // Goal: an uberblock magic in label 0's ring (little-endian) and label 3's (big-endian).
    let mut image = image();
    let ring_0 = 128 << 10;
    put(
        &mut image,
        ring_0 + 3 * 1024,
        &ZFS_UBERBLOCK_MAGIC.to_le_bytes(),
    );
    let label_3 = IMAGE_BYTES - (256 << 10);
    put(
        &mut image,
        label_3 + ring_0,
        &ZFS_UBERBLOCK_MAGIC.to_be_bytes(),
    );
    let found = scan(&image);
    assert_eq!(
        names_and_offsets(&image),
        vec![
            ("zfs_member", ring_0 as u64 + 3 * 1024),
            ("zfs_member", (label_3 + ring_0) as u64)
        ]
    );
    assert_eq!(found[1].detail, "label 3, uberblocks 1");
}

#[test]
fn images_and_less_common_file_systems_are_found() {
    // Goal: iso9660, squashfs, f2fs, bcache, jfs, reiserfs and reiser4 at their offsets.
    let mut iso = image();
    put(&mut iso, 0x8000, b"\x01CD001");
    put(&mut iso, 0x8028, b"DEBIAN 12");
    assert_eq!(names_and_offsets(&iso), vec![("iso9660", 0x8001)]);
    assert_eq!(scan(&iso)[0].detail, "volume id \"DEBIAN 12\"");
    let mut squashfs = image();
    put(&mut squashfs, 0, b"hsqs");
    put(&mut squashfs, 28, &4u16.to_le_bytes());
    assert_eq!(names_and_offsets(&squashfs), vec![("squashfs", 0)]);
    let mut f2fs = image();
    put(&mut f2fs, 0x400, &[0x10, 0x20, 0xF5, 0xF2]);
    put(&mut f2fs, 0x47C, &[b'o', 0, b'k', 0]);
    assert_eq!(names_and_offsets(&f2fs), vec![("f2fs", 0x400)]);
    assert_eq!(scan(&f2fs)[0].detail, "label \"ok\"");
    let mut bcache = image();
    put(&mut bcache, 0x1018, &BCACHE_MAGIC);
    assert_eq!(names_and_offsets(&bcache), vec![("bcache", 0x1018)]);
    let mut jfs = image();
    put(&mut jfs, 0x8000, b"JFS1");
    put(&mut jfs, 0x8010, &4096u32.to_le_bytes());
    put(&mut jfs, 0x8014, &[12, 0, 3, 0]);
    put(&mut jfs, 0x8018, &512u32.to_le_bytes());
    put(&mut jfs, 0x801C, &9u16.to_le_bytes());
    assert_eq!(names_and_offsets(&jfs), vec![("jfs", 0x8000)]);
    let mut reiserfs = image();
    put(&mut reiserfs, 0x1_0000 + 0x2C, &4096u16.to_le_bytes());
    put(&mut reiserfs, 0x1_0034, b"ReIsEr2Fs");
    assert_eq!(names_and_offsets(&reiserfs), vec![("reiserfs", 0x1_0034)]);
    let mut reiser4 = image();
    put(&mut reiser4, 0x1_0000, b"ReIsEr4");
    assert_eq!(names_and_offsets(&reiser4), vec![("reiser4", 0x1_0000)]);
}

#[test]
fn signatures_are_ordered_by_device_offset() {
    // Goal: several signatures on one device come back sorted, whatever the table order.
    let mut image = ext_image(0x4, 0x2, 0x1);
    gpt_header(&mut image, 512, 1);
    gpt_header(&mut image, 512, (IMAGE_BYTES / 512) as u64 - 1);
    put(&mut image, 0, b"bluestore block device\n");
    let offsets: Vec<u64> = scan(&image)
        .iter()
        .map(|found| found.device_offset)
        .collect();
    assert_eq!(offsets, vec![0, 0x200, 0x438, IMAGE_BYTES as u64 - 512]);
}

#[test]
fn a_20_kib_device_whose_tail_overlaps_its_head_works() {
    // Goal: on a device smaller than head and tail, both are the whole device; signatures
    // at its start and its end are each found once.
    let size = 20 << 10;
    let mut device = ext_image(0x4, 0x2, 0x1);
    device.truncate(size);
    gpt_header(&mut device, 512, 1);
    gpt_header(&mut device, 512, (size / 512) as u64 - 1);
    let found: Vec<_> = find_signatures(&device, &device, size as u64)
        .into_iter()
        .map(|found| (found.name, found.device_offset))
        .collect();
    assert_eq!(
        found,
        vec![("gpt", 512), ("ext3", 0x438), ("gpt", size as u64 - 512)]
    );
}

/// Every image built above, for the truncation test.
fn every_signature() -> Vec<Vec<u8>> {
    let mut images = vec![
        ext_image(0x4, 0x2, 0x1),
        mbr_with(0x80, 0x83),
        fat_boot_sector(true),
        fat_boot_sector(false),
    ];
    let mut many = image();
    put(&mut many, 0, LUKS_MAGIC);
    luks2_header(&mut many, 0x4000, LUKS2_SECONDARY_MAGIC);
    md_v1_superblock(&mut many, 0x1000);
    put(&mut many, 0x1018, &BCACHE_MAGIC);
    put(&mut many, 0x8000, b"\x01CD001");
    put(&mut many, 0x10030, &0x10000u64.to_le_bytes());
    put(&mut many, 0x10040, b"_BHRfS_M");
    put(
        &mut many,
        (128 << 10) + 1024,
        &ZFS_UBERBLOCK_MAGIC.to_le_bytes(),
    );
    put(&mut many, 0xFF6, b"SWAPSPACE2");
    gpt_header(&mut many, 512, 1);
    images.push(many);
    images
}

#[test]
fn short_and_empty_slices_never_panic() {
    // Goal: totality. Every prefix of every image above, paired with tails of any length
    // and device sizes that contradict the slices, returns without panicking.
    let sizes = |length: usize| [0, 1, length as u64, IMAGE_BYTES as u64, u64::MAX];
    for image in every_signature() {
        let lengths = (0..=1100).chain((1100..(256 << 10) + 2048).step_by(509));
        for length in lengths {
            let prefix = &image[..length.min(image.len())];
            for device_size in sizes(length) {
                find_signatures(prefix, prefix, device_size);
                find_signatures(prefix, &[], device_size);
                find_signatures(&[], prefix, device_size);
            }
        }
    }
}

#[test]
fn probe_reads_a_device_through_its_block_interface() {
    // Goal: `probe` reads head and tail with aligned reads and finds what is on the device,
    // here a bstore label at the start and a backup GPT header at the end.
    let size_bytes: u64 = 8 << 20;
    let device = SimDevice::new(size_bytes, 4096, false);
    let device: &dyn BlockDevice = &device;
    let mut head = AlignedBuf::zeroed(4096);
    head.copy_from_slice(&sample_label().encode());
    device.write_at(0, head).unwrap();
    let mut tail = AlignedBuf::zeroed(4096);
    let last_lba = size_bytes / 512 - 1;
    tail[3584..3592].copy_from_slice(b"EFI PART");
    tail[3584 + 24..3584 + 32].copy_from_slice(&last_lba.to_le_bytes());
    device.write_at(size_bytes - 4096, tail).unwrap();
    let found: Vec<_> = probe(device)
        .unwrap()
        .into_iter()
        .map(|found| (found.name, found.device_offset))
        .collect();
    assert_eq!(found, vec![("bstore", 0), ("gpt", size_bytes - 512)]);
}

#[test]
fn probe_of_an_empty_device_reads_nothing() {
    // Goal: a device of zero bytes is probed without a (refused) zero-length read.
    let device = SimDevice::new(0, 512, false);
    assert_eq!(probe(&device).unwrap(), vec![]);
}
