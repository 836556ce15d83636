//! Goal: the device probe that keeps `mkfs` from overwriting foreign data recognises what the
//! real tools make, not only the magic numbers its unit tests write by hand. Each test makes a
//! sparse 300 MiB file under /var/tmp (xfs needs 300 MiB), formats it with the real tool, opens
//! it read-only as a bstore device and checks that `probe` names exactly what the tool made, at
//! the offsets libblkid itself reports (`wipefs --no-act`), with the same UUID and label in the
//! detail. A missing tool fails the test and names its Debian package: a test that passed
//! without its tool would prove nothing. `tools/setup-debian.sh` installs them all.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bstore::device::{Access, Signature, SyncDevice, probe};

/// Large enough for every tool's minimum (mkfs.xfs refuses less than 300 MiB).
const IMAGE_BYTES: u64 = 300 << 20;

/// A program and the Debian package that provides it.
struct Tool {
    program: &'static str,
    package: &'static str,
}

const fn tool(program: &'static str, package: &'static str) -> Tool {
    Tool { program, package }
}

const MKFS_EXT2: Tool = tool("mkfs.ext2", "e2fsprogs");
const MKFS_EXT3: Tool = tool("mkfs.ext3", "e2fsprogs");
const MKFS_EXT4: Tool = tool("mkfs.ext4", "e2fsprogs");
const MKFS_XFS: Tool = tool("mkfs.xfs", "xfsprogs");
const MKFS_BTRFS: Tool = tool("mkfs.btrfs", "btrfs-progs");
const MKSWAP: Tool = tool("mkswap", "util-linux");
const SFDISK: Tool = tool("sfdisk", "fdisk");
const MKFS_VFAT: Tool = tool("mkfs.vfat", "dosfstools");
const WIPEFS: Tool = tool("wipefs", "util-linux");

/// Where the tool is installed. Looks in the sbin directories too, which a non-root PATH
/// often lacks although the tools run fine on a regular file.
fn installed(tool: &Tool) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(tool.program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: install {} (tools/setup-debian.sh does)",
                tool.program, tool.package
            )
        })
}

/// Runs `tool` with `args` and then the image path, feeding `stdin`; returns its stdout.
fn run(tool: &Tool, args: &[&str], image: &Path, stdin: &str) -> String {
    let mut child = Command::new(installed(tool))
        .args(args)
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", tool.program));
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.as_bytes())
        .expect("writing the tool's input");
    drop(input);
    let output = child.wait_with_output().expect("waiting for the tool");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        tool.program,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A sparse file of [`IMAGE_BYTES`], removed with its directory when dropped.
struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn blank_image() -> Image {
    let dir = tempfile::Builder::new()
        .prefix("bstore-probe-")
        .tempdir_in("/var/tmp")
        .expect("a scratch directory under /var/tmp");
    let path = dir.path().join("image");
    File::create(&path)
        .and_then(|file| file.set_len(IMAGE_BYTES))
        .expect("a sparse image file");
    Image { _dir: dir, path }
}

/// What bstore's probe finds on the image, opened the way `mkfs` would look at it.
fn probed(image: &Image) -> Vec<Signature> {
    let device = SyncDevice::open(&image.path, Access::ReadOnly).expect("opening the image");
    probe(&device).expect("probing the image")
}

/// One signature as libblkid reports it.
#[derive(Debug)]
struct Reported {
    offset: u64,
    name: String,
    uuid: String,
    label: String,
}

/// Every signature libblkid finds on the image (`wipefs` only lists them with `--no-act`).
fn reported_by_libblkid(image: &Image) -> Vec<Reported> {
    let args = [
        "--no-act",
        "--parsable",
        "--noheadings",
        "--output",
        "OFFSET,TYPE,UUID,LABEL",
    ];
    run(&WIPEFS, &args, &image.path, "")
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, ',').collect();
            let [offset, name, uuid, label] = fields[..] else {
                panic!("unexpected wipefs line {line:?}");
            };
            Reported {
                offset: u64::from_str_radix(offset.trim_start_matches("0x"), 16)
                    .unwrap_or_else(|_| panic!("wipefs offset {offset:?}")),
                name: name.to_owned(),
                uuid: uuid.to_owned(),
                label: label.to_owned(),
            }
        })
        .collect()
}

/// Checks that the probe finds exactly `expected` (names in offset order), and that libblkid
/// reports each at the same offset, with a UUID and label the detail repeats.
fn assert_probe_finds(image: &Image, expected: &[&str]) {
    let found = probed(image);
    let names: Vec<&str> = found.iter().map(|signature| signature.name).collect();
    assert_eq!(names, expected, "probe found {found:#?}");
    let reported = reported_by_libblkid(image);
    for signature in &found {
        let same = reported
            .iter()
            .find(|r| r.name == signature.name && r.offset == signature.device_offset)
            .unwrap_or_else(|| panic!("libblkid reports {reported:#?}, probe {signature:?}"));
        let detail = signature.detail.to_lowercase();
        assert!(
            detail.contains(&same.uuid.to_lowercase()),
            "{same:?} vs {signature:?}"
        );
        assert!(
            detail.contains(&same.label.to_lowercase()),
            "{same:?} vs {signature:?}"
        );
    }
}

#[test]
fn ext4_made_by_mkfs_ext4() {
    // Goal: the commonest thing on a Linux disk is recognised, with its UUID and label.
    let image = blank_image();
    run(
        &MKFS_EXT4,
        &["-q", "-F", "-L", "probe-ext4"],
        &image.path,
        "",
    );
    assert_probe_finds(&image, &["ext4"]);
}

#[test]
fn ext3_and_ext2_made_by_their_mkfs() {
    // Goal: the feature flags tell ext3 (journal) and ext2 (none) from ext4, as blkid does.
    let image = blank_image();
    run(&MKFS_EXT3, &["-q", "-F"], &image.path, "");
    assert_probe_finds(&image, &["ext3"]);
    let image = blank_image();
    run(&MKFS_EXT2, &["-q", "-F"], &image.path, "");
    assert_probe_finds(&image, &["ext2"]);
}

#[test]
fn xfs_made_by_mkfs_xfs() {
    // Goal: xfs passes the geometry checks behind its magic.
    let image = blank_image();
    run(&MKFS_XFS, &["-q", "-f", "-L", "probe-xfs"], &image.path, "");
    assert_probe_finds(&image, &["xfs"]);
}

#[test]
fn btrfs_made_by_mkfs_btrfs() {
    // Goal: the btrfs superblock at 64 KiB names its own offset, as the probe requires.
    let image = blank_image();
    run(
        &MKFS_BTRFS,
        &["-q", "-f", "-L", "probe-btrfs"],
        &image.path,
        "",
    );
    assert_probe_finds(&image, &["btrfs"]);
}

#[test]
fn swap_made_by_mkswap() {
    // Goal: a swap area (4 KiB pages on this machine) is recognised with its UUID and label.
    let image = blank_image();
    run(&MKSWAP, &["-L", "probe-swap"], &image.path, "");
    assert_probe_finds(&image, &["swap"]);
}

#[test]
fn gpt_made_by_sfdisk() {
    // Goal: both GPT headers are found and the protective MBR is not also called "dos".
    let image = blank_image();
    let script = "label: gpt\n,100MiB,L\n,,L\n";
    run(&SFDISK, &["--quiet"], &image.path, script);
    assert_probe_finds(&image, &["gpt", "gpt"]);
    assert_details_name_the_label_id(&image);
}

#[test]
fn dos_partition_table_made_by_sfdisk() {
    // Goal: an MBR partition table with one partition is "dos".
    let image = blank_image();
    let script = "label: dos\n,100MiB,83\n";
    run(&SFDISK, &["--quiet"], &image.path, script);
    assert_probe_finds(&image, &["dos"]);
    assert_details_name_the_label_id(&image);
}

/// libblkid reports no id for a partition table, but sfdisk does: the GPT disk GUID (whose
/// first fields are little-endian on disk) or the MBR disk id. Every copy must name it.
fn assert_details_name_the_label_id(image: &Image) {
    let dump = run(&SFDISK, &["--dump"], &image.path, "");
    let label_id = dump
        .lines()
        .find_map(|line| line.strip_prefix("label-id: "))
        .unwrap_or_else(|| panic!("no label-id in {dump}"))
        .to_lowercase();
    for signature in probed(image) {
        assert!(
            signature.detail.contains(&label_id),
            "{label_id} vs {signature:?}"
        );
    }
}

#[test]
fn fat32_and_fat16_made_by_mkfs_vfat() {
    // Goal: FAT boot sectors are vfat, with blkid's serial and label, and their 55 AA does not
    // also count as a DOS partition table.
    for fat_bits in ["32", "16"] {
        let image = blank_image();
        run(
            &MKFS_VFAT,
            &["-F", fat_bits, "-n", "PROBEFAT"],
            &image.path,
            "",
        );
        assert_probe_finds(&image, &["vfat"]);
    }
}
