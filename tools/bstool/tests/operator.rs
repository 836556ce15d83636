//! Goal: bstool is safe in an operator's hands. mkfs never destroys what it did not make (file
//! systems, partition tables, Ceph OSDs, other stores, unrelated files behind `--db-dir`), and a
//! killed mkfs never blocks a plain retry; inspection commands write nothing and work beside a
//! daemon that has the store open; every command survives a closed stdout with its own exit
//! status; values are binary-safe; and where io_uring is forbidden the store still opens.
//!
//! The real binary runs on real files, with the file systems and partition tables made by the
//! real tools (tools/setup-debian.sh installs them). Tests that need a helper process re-run
//! this test binary with `BSTOOL_TEST_CHILD` set.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bstore::Label;
use bstore::{DeferredPolicy, OpenOptions, Store, Transaction};

const CHILD_ENV: &str = "BSTOOL_TEST_CHILD";
const CHILD_STORE_ENV: &str = "BSTOOL_TEST_CHILD_STORE";

fn bstool(store: &Path, args: &[&str]) -> Output {
    bstool_with(store, args, None)
}

fn bstool_with(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bstool"));
    command.arg("--path").arg(store).args(args);
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "bstool failed ({:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn text(output: Output) -> String {
    String::from_utf8(ok(output)).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").unwrap()
}

/// A file's contents, hashed.
fn digest(path: &Path) -> u64 {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hasher.finish();
        }
        hasher.write(&buf[..n]);
    }
}

/// Every entry under `dir` (symlinks not followed): name -> what it is and holds.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            let what = if metadata.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if metadata.is_dir() {
                pending.push(path.clone());
                "dir".to_string()
            } else {
                format!("file {} bytes, {:016x}", metadata.len(), digest(&path))
            };
            entries.insert(path.strip_prefix(dir).unwrap().to_path_buf(), what);
        }
    }
    entries
}

/// Where a system tool lives: on the PATH, or in the sbin directories a non-login PATH lacks.
fn program_path(program: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Runs an external tool, or fails naming the Debian package that provides it.
fn tool(program: &str, package: &str, args: &[&str], stdin: Option<&str>) {
    let mut command = Command::new(program_path(program));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("{program} is needed ({e}): install {package} (tools/setup-debian.sh does)")
    });
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        stderr(&output)
    );
}

fn sparse_file(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// The 4 KiB label a Ceph BlueStore OSD puts at offset 0 of its block device: the magic line,
/// the OSD uuid line, then the encoded `bluestore_bdev_label_t`.
fn ceph_bluestore_label() -> Vec<u8> {
    let mut label = b"bluestore block device\n".to_vec();
    label.extend_from_slice(b"5d0dbbb4-3b5f-4f4e-9d0e-4d6c0c8a1f21\n");
    label.extend_from_slice(&[2, 1, 0x8a, 0, 0, 0]);
    label.resize(4096, 0);
    label
}

#[test]
fn mkfs_refuses_foreign_data_unless_forced_and_then_wipes_its_signatures() {
    let dir = scratch();
    let other = dir.path().join("other");
    ok(bstool(&other, &["mkfs", "--size", "64M"]));
    type Make = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, u64, &str, Make)> = vec![
        (
            "ext4",
            64 << 20,
            "ext4",
            Box::new(|p| {
                tool(
                    "mkfs.ext4",
                    "e2fsprogs",
                    &["-q", "-F", p.to_str().unwrap()],
                    None,
                )
            }),
        ),
        (
            "xfs",
            320 << 20,
            "xfs",
            Box::new(|p| {
                tool(
                    "mkfs.xfs",
                    "xfsprogs",
                    &["-q", "-f", p.to_str().unwrap()],
                    None,
                )
            }),
        ),
        (
            "gpt",
            64 << 20,
            "gpt",
            Box::new(|p| {
                tool(
                    "sfdisk",
                    "fdisk",
                    &["-q", p.to_str().unwrap()],
                    Some("label: gpt\n,\n"),
                )
            }),
        ),
        (
            "swap",
            64 << 20,
            "swap",
            Box::new(|p| tool("mkswap", "util-linux", &[p.to_str().unwrap()], None)),
        ),
        (
            "ceph",
            64 << 20,
            "ceph_bluestore",
            Box::new(|p| {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                file.write_all_at(&ceph_bluestore_label(), 0).unwrap();
            }),
        ),
    ];
    for (name, size, signature, make) in &cases {
        let image = dir.path().join(format!("{name}.img"));
        sparse_file(&image, *size);
        make(&image);
        let before = digest(&image);
        let store = dir.path().join(format!("store-{name}"));
        let refused = bstool(&store, &["mkfs", "--block", image.to_str().unwrap()]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{name}: {}",
            stderr(&refused)
        );
        let message = stderr(&refused);
        assert!(
            message.contains(signature) && message.contains("--force"),
            "{name}: the refusal names what was found: {message}"
        );
        assert_eq!(digest(&image), before, "{name}: the image is untouched");
        assert!(
            snapshot(&store).is_empty(),
            "{name}: nothing left behind: {:?}",
            snapshot(&store)
        );
        ok(bstool(
            &store,
            &["mkfs", "--block", image.to_str().unwrap(), "--force"],
        ));
        assert_ne!(digest(&image), before, "{name}: forced, it is overwritten");
        let blkid = Command::new(program_path("blkid"))
            .args(["-p", "-o", "export"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&blkid.stdout).contains("TYPE="),
            "{name}: blkid no longer recognises the old contents: {}",
            String::from_utf8_lossy(&blkid.stdout)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&ok(bstool(&store, &["fsck"]))).unwrap();
        assert_eq!(report["clean"], true, "{name}");
    }
    // Another store's block: refused as a store, the other store still opens.
    let block = other.join("block");
    let before = digest(&block);
    let refused = bstool(
        &dir.path().join("thief"),
        &["mkfs", "--block", block.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("bstore"), "{}", stderr(&refused));
    assert_eq!(digest(&block), before);
    ok(bstool(&other, &["statfs"]));
}

#[test]
fn mkfs_never_destroys_another_store_through_db_or_wal_dirs() {
    let dir = scratch();
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    ok(bstool(&s1, &["mkfs", "--size", "64M"]));
    ok(bstool_with(&s1, &["put", "c", "o", "-"], Some(b"s1 data")));
    let s1_db = s1.join("db");
    let s1_before = snapshot(&s1);

    let refused = bstool(
        &s2,
        &["mkfs", "--size", "64M", "--db-dir", s1_db.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("inside the store directory")
            || stderr(&refused).contains("metadata of store"),
        "{}",
        stderr(&refused)
    );
    assert!(snapshot(&s2).is_empty(), "no db link into s1 left behind");
    ok(bstool(&s2, &["mkfs", "--size", "64M"]));

    // A db link into s1 (as an older mkfs could leave): --force replaces s2 and leaves s1 be.
    std::fs::remove_dir_all(s2.join("db")).unwrap();
    std::os::unix::fs::symlink(&s1_db, s2.join("db")).unwrap();
    let reuse = bstool(
        &s2,
        &[
            "mkfs",
            "--size",
            "64M",
            "--force",
            "--db-dir",
            s1_db.to_str().unwrap(),
        ],
    );
    assert_eq!(reuse.status.code(), Some(2), "s1's db is not s2's to reuse");
    ok(bstool(&s2, &["mkfs", "--size", "64M", "--force"]));
    assert_eq!(snapshot(&s1), s1_before, "s1 is byte for byte what it was");
    assert_eq!(ok(bstool(&s1, &["get", "c", "o"])), b"s1 data");

    // A store with its own --db-dir and --wal-dir can be replaced in place with --force.
    let (db3, wal3) = (dir.path().join("db3"), dir.path().join("wal3"));
    let s3 = dir.path().join("s3");
    let linked = [
        "mkfs",
        "--size",
        "64M",
        "--db-dir",
        db3.to_str().unwrap(),
        "--wal-dir",
        wal3.to_str().unwrap(),
    ];
    ok(bstool(&s3, &linked));
    ok(bstool_with(&s3, &["put", "c", "o", "-"], Some(b"old")));
    let mut forced = linked.to_vec();
    forced.push("--force");
    ok(bstool(&s3, &forced));
    assert_eq!(
        bstool(&s3, &["get", "c", "o"]).status.code(),
        Some(2),
        "a new store"
    );
    ok(bstool(&s3, &["fsck"]));
}

#[test]
fn a_non_empty_db_dir_is_refused_and_unrelated_files_survive_force() {
    let dir = scratch();
    let (store, db) = (dir.path().join("store"), dir.path().join("fast-ssd"));
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("notes.txt"), b"an operator's notes").unwrap();
    for flags in [&["--db-dir"][..], &["--wal-dir"][..]] {
        for force in [false, true] {
            let mut args = vec!["mkfs", "--size", "64M", flags[0], db.to_str().unwrap()];
            if force {
                args.push("--force");
            }
            let refused = bstool(&store, &args);
            assert_eq!(refused.status.code(), Some(2), "{args:?}");
            assert!(
                stderr(&refused).contains("not empty"),
                "{}",
                stderr(&refused)
            );
        }
    }
    assert_eq!(
        std::fs::read(db.join("notes.txt")).unwrap(),
        b"an operator's notes"
    );

    // A file the store did not make, inside its own db/: --force refuses to take it along.
    ok(bstool(&store, &["mkfs", "--size", "64M"]));
    std::fs::write(store.join("db").join("notes.txt"), b"keep").unwrap();
    let refused = bstool(&store, &["mkfs", "--size", "64M", "--force"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("notes.txt"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read(store.join("db").join("notes.txt")).unwrap(),
        b"keep"
    );
    ok(bstool(&store, &["statfs"]));
}

#[test]
fn a_killed_mkfs_never_blocks_a_plain_retry() {
    let seed = bstore::rng::test_seed();
    println!("seed {seed} (BSTORE_SEED replays)");
    let mut rng = bstore::rng::SplitMix64::new(seed);
    let dir = scratch();
    // How long a whole mkfs takes here, to spread the kills over all of it.
    let began = Instant::now();
    ok(bstool(
        &dir.path().join("timing"),
        &["mkfs", "--size", "256M"],
    ));
    let mut window_us = (began.elapsed().as_micros() as u64).max(1000);
    // A first mkfs runs cold and slower than the rest, so kills spread over its time can all
    // land after the later ones finished. Each kill that came too late narrows the window,
    // and rounds go on (within a bound) until enough kills landed inside mkfs.
    const KILLED_MID_WAY_MIN: u64 = 6;
    let mut killed_mid_way = 0;
    let mut round = 0u64;
    while round < 24 || (killed_mid_way < KILLED_MID_WAY_MIN && round < 96) {
        let store = dir.path().join(format!("s{round}"));
        let db = dir.path().join(format!("db{round}"));
        let image = dir.path().join(format!("img{round}"));
        let mut args = vec!["mkfs".to_string()];
        if round.is_multiple_of(2) {
            args.extend(["--size".into(), "256M".into()]);
        } else {
            sparse_file(&image, 256 << 20);
            args.extend(["--block".into(), image.display().to_string()]);
        }
        if round % 4 < 2 {
            args.extend(["--db-dir".into(), db.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bstool"))
            .arg("--path")
            .arg(&store)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(window_us)));
        let _ = child.kill();
        child.wait().unwrap();
        if store.join("block").exists() {
            // The kill came after mkfs moved the store into place: it is complete, and a
            // retry is rightly refused as overwriting it. (A kill between that move and the
            // removal of the staging directory leaves `.mkfs/`; the next mkfs removes it.)
            assert_eq!(
                bstool(&store, &args).status.code(),
                Some(2),
                "round {round}"
            );
            window_us = (window_us * 3 / 4).max(1000);
        } else {
            killed_mid_way += 1;
            let retry = bstool(&store, &args);
            assert!(
                retry.status.success(),
                "round {round} (seed {seed}): a plain retry after the kill failed: {}",
                stderr(&retry)
            );
            assert!(!store.join(".mkfs").exists(), "round {round}");
        }
        let report: serde_json::Value =
            serde_json::from_slice(&ok(bstool(&store, &["fsck"]))).unwrap();
        assert_eq!(report["clean"], true, "round {round}");
        round += 1;
    }
    println!("{killed_mid_way} of {round} mkfs runs were killed before they finished");
    assert!(
        killed_mid_way >= KILLED_MID_WAY_MIN,
        "the kills must land inside mkfs (seed {seed})"
    );
}

/// Options under which deferred records are never applied by time or size: they stay pending
/// until close (which the pending child never reaches).
fn never_apply() -> OpenOptions {
    OpenOptions::default()
        .with_prefer_deferred_size(Some(64 << 10))
        .with_deferred(
            DeferredPolicy::default()
                .with_batch_records(usize::MAX)
                .with_batch_bytes(u64::MAX)
                .with_max_delay(Duration::from_secs(3600)),
        )
}

/// The content every child writes, and what inspection must show of it.
const OBJECT_BYTES: usize = 64 << 10;
const OVERWRITE_OFFSET: usize = 8192;

fn expected_object() -> Vec<u8> {
    let mut data: Vec<u8> = (0..OBJECT_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    data[OVERWRITE_OFFSET..OVERWRITE_OFFSET + 4096].fill(0xd5);
    data
}

/// Child: fills the store, leaves an applied-nowhere deferred overwrite, and then either
/// exits at once without closing (`pending`: a crash) or holds the store until stdin closes.
fn child(role: &str, path: &Path) -> ! {
    let store = Store::open(path, &never_apply()).expect("child opens the store");
    store.create_collection("pg").unwrap();
    let mut data = expected_object();
    data[OVERWRITE_OFFSET..OVERWRITE_OFFSET + 4096].fill(0);
    store.put("pg", "obj", &data).unwrap();
    let mut txn = Transaction::new();
    txn.write("pg", "obj", OVERWRITE_OFFSET as u64, vec![0xd5u8; 4096])
        .setattr("pg", "obj", "owner", b"\x00binary\n".to_vec())
        .omap_setkeys("pg", "obj", [(b"k1".to_vec(), b"v\t1".to_vec())])
        .omap_setheader("pg", "obj", b"hdr".to_vec());
    store.apply(&txn).unwrap();
    assert_eq!(store.counters().deferred_queued_records, 1);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"READY\n").and_then(|()| out.flush());
    if role == "holder" {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        store.close().unwrap();
    }
    std::process::exit(0);
}

fn spawn_child(role: &str, path: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "--nocapture", test_name_for(role)])
        .env(CHILD_ENV, role)
        .env(CHILD_STORE_ENV, path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.any(|line| line.is_ok_and(|l| l.ends_with("READY")));
    assert!(ready, "the {role} child got ready");
    child
}

fn test_name_for(role: &str) -> &'static str {
    match role {
        "pending" => "inspection_writes_nothing_to_a_closed_store_with_pending_deferred_writes",
        _ => "inspection_works_beside_a_daemon_that_has_the_store_open",
    }
}

fn run_child_if_asked() {
    if let (Ok(role), Ok(path)) = (std::env::var(CHILD_ENV), std::env::var(CHILD_STORE_ENV)) {
        child(&role, Path::new(&path));
    }
}

/// Every inspection command, with what its output must show of the child's store.
fn check_inspection_commands(store: &Path, out_file: &Path) {
    let expected = expected_object();
    let mut label: serde_json::Value =
        serde_json::from_slice(&ok(bstool(store, &["show-label"]))).unwrap();
    assert_eq!(label["format_version"], 2);
    // The journal holds what the daemon (or the crash) left unflushed in RocksDB.
    let journal = label.as_object_mut().unwrap().remove("journal").unwrap();
    assert!(
        journal["pending_records"].as_u64().unwrap() >= 1,
        "{journal}"
    );
    let by_dev: serde_json::Value = serde_json::from_slice(&ok(bstool(
        store,
        &["show-label", "--dev", store.join("block").to_str().unwrap()],
    )))
    .unwrap();
    assert_eq!(by_dev, label, "show-label --dev reads the same label");
    let statfs: serde_json::Value =
        serde_json::from_slice(&ok(bstool(store, &["statfs"]))).unwrap();
    assert_eq!(statfs["object_count"], 1);
    ok(bstool(store, &["free-dump"]));
    ok(bstool(store, &["free-score"]));
    assert_eq!(text(bstool(store, &["ls"])), "pg\n");
    assert_eq!(text(bstool(store, &["ls", "pg"])), "obj\n");
    let stat: serde_json::Value =
        serde_json::from_slice(&ok(bstool(store, &["stat", "pg", "obj"]))).unwrap();
    assert_eq!(stat["size"], OBJECT_BYTES);
    assert_eq!(stat["deferred_bytes"], 4096, "the pending record is shown");
    assert_eq!(
        ok(bstool(store, &["get", "pg", "obj"])),
        expected,
        "deferred bytes overlaid"
    );
    ok(bstool(
        store,
        &["get", "pg", "obj", out_file.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(out_file).unwrap(), expected);
    let range = ok(bstool(
        store,
        &["read", "pg", "obj", "--offset", "8K", "--length", "4K"],
    ));
    assert_eq!(range, vec![0xd5u8; 4096]);
    assert_eq!(
        ok(bstool(store, &["getattr", "pg", "obj", "owner"])),
        b"\x00binary\n"
    );
    assert_eq!(
        text(bstool(store, &["list-attrs", "pg", "obj"])),
        "owner\t8\n"
    );
    assert_eq!(
        text(bstool(store, &["omap-list", "pg", "obj"])),
        "k1\tv\\x091\n"
    );
    assert_eq!(ok(bstool(store, &["omap-get", "pg", "obj", "k1"])), b"v\t1");
    assert_eq!(ok(bstool(store, &["get-omaphdr", "pg", "obj"])), b"hdr");
}

#[test]
fn inspection_writes_nothing_to_a_closed_store_with_pending_deferred_writes() {
    run_child_if_asked();
    let dir = scratch();
    let store = dir.path().join("store");
    ok(bstool(&store, &["mkfs", "--size", "128M"]));
    let mut child = spawn_child("pending", &store);
    assert!(child.wait().unwrap().success());
    let before = snapshot(&store);
    check_inspection_commands(&store, &dir.path().join("out"));
    let report: serde_json::Value = serde_json::from_slice(&ok(bstool(&store, &["fsck"]))).unwrap();
    assert_eq!(
        report["deferred_records"], 1,
        "fsck sees the record, leaves it"
    );
    assert_eq!(
        snapshot(&store),
        before,
        "not one byte of the store changed"
    );
    // A mount for writing then replays the record, and the bytes are the same.
    ok(bstool_with(
        &store,
        &["put", "pg", "other", "-"],
        Some(b"x"),
    ));
    assert_eq!(ok(bstool(&store, &["get", "pg", "obj"])), expected_object());
    assert_ne!(snapshot(&store), before);
}

#[test]
fn inspection_works_beside_a_daemon_that_has_the_store_open() {
    run_child_if_asked();
    let dir = scratch();
    let store = dir.path().join("store");
    ok(bstool(&store, &["mkfs", "--size", "128M"]));
    let mut child = spawn_child("holder", &store);
    check_inspection_commands(&store, &dir.path().join("out"));
    let fsck = bstool(&store, &["fsck"]);
    assert_eq!(fsck.status.code(), Some(2), "fsck needs the store stopped");
    assert!(stderr(&fsck).contains("stopped store"), "{}", stderr(&fsck));
    let put = bstool_with(&store, &["put", "pg", "x", "-"], Some(b"x"));
    assert_eq!(put.status.code(), Some(2));
    assert!(stderr(&put).contains("busy"), "{}", stderr(&put));
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    ok(bstool(&store, &["fsck"]));
}

/// Runs a command whose stdout is closed before it writes anything.
fn with_closed_stdout(store: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bstool"))
        .arg("--path")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn every_command_survives_a_closed_stdout_with_its_own_exit_status() {
    let dir = scratch();
    let store = dir.path().join("store");
    ok(bstool(&store, &["mkfs", "--size", "256M"]));
    {
        let s = Store::open(&store, &OpenOptions::default()).unwrap();
        s.create_collection("pg").unwrap();
        s.put("pg", "big", &vec![7u8; 4 << 20]).unwrap();
        let mut txn = Transaction::new();
        for i in 0..3000 {
            txn.touch("pg", format!("o{i:05}"));
        }
        txn.setattr("pg", "big", "a", b"1".to_vec())
            .omap_setkeys(
                "pg",
                "big",
                (0..500).map(|i| (format!("k{i}").into_bytes(), vec![1; 64])),
            )
            .omap_setheader("pg", "big", b"h".to_vec());
        s.apply(&txn).unwrap();
        for i in (0..3000).step_by(2) {
            s.remove("pg", format!("o{i:05}")).unwrap();
        }
        s.close().unwrap();
    }
    let input = dir.path().join("input");
    std::fs::write(&input, b"data").unwrap();
    let input = input.to_str().unwrap();
    let bench_dir = dir.path().to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["--version"],
        vec!["show-label"],
        vec!["statfs"],
        vec!["statfs", "--format", "text"],
        vec!["free-score"],
        vec!["free-dump"],
        vec!["free-dump", "--format", "text"],
        vec!["ls"],
        vec!["ls", "pg"],
        vec!["ls", "pg", "--format", "json"],
        vec!["stat", "pg", "big"],
        vec!["get", "pg", "big"],
        vec!["read", "pg", "big", "--length", "1M"],
        vec!["getattr", "pg", "big", "a"],
        vec!["list-attrs", "pg", "big"],
        vec!["omap-list", "pg", "big"],
        vec!["omap-get", "pg", "big", "k1"],
        vec!["omap-header", "pg", "big"],
        vec!["fsck"],
        vec!["fsck", "--format", "text"],
        vec!["put", "pg", "new", input],
        vec!["write", "pg", "new", "--offset", "4K", input],
        vec!["setattr", "pg", "new", "b", "2"],
        vec!["rm-attr", "pg", "new", "b"],
        vec!["omap-set", "pg", "new", "k", "v"],
        vec!["omap-rm", "pg", "new", "k"],
        vec!["omap-set-header", "pg", "new", "h"],
        vec!["clone", "pg", "big", "copy"],
        vec![
            "clone-range",
            "pg",
            "big",
            "part",
            "--src-offset",
            "0",
            "--length",
            "4K",
            "--dst-offset",
            "0",
        ],
        vec!["rm", "pg", "copy"],
        vec![
            "bench",
            "--workload",
            "small-objects",
            "--duration",
            "1",
            "--size",
            "256M",
            "--dataset",
            "8M",
            "--queue-depth",
            "2",
            "--dir",
            bench_dir,
        ],
    ];
    for args in &commands {
        let output = with_closed_stdout(&store, args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {message}");
        assert!(!message.contains("panicked"), "{args:?}: {message}");
    }
    // fsck keeps its own status (1: errors found) through the closed pipe.
    {
        let kv =
            bstore::kv::RocksKv::open(&store.join("db"), None, bstore::kv::KvOpenMode::ReadWrite)
                .unwrap();
        let mut batch = bstore::kv::Batch::new();
        batch.put(
            bstore::kv::KeySpace::Freelist,
            0u64.to_be_bytes().to_vec(),
            vec![0b0000_0011],
        );
        bstore::kv::Kv::write(&kv, batch, bstore::kv::Durability::Sync).unwrap();
    }
    let fsck = with_closed_stdout(&store, &["fsck"]);
    assert_eq!(fsck.status.code(), Some(1), "{}", stderr(&fsck));
    assert!(!stderr(&fsck).contains("panicked"));
}

#[test]
fn text_format_prints_one_line_per_item_with_sizes_for_people() {
    let dir = scratch();
    let store = dir.path().join("store");
    ok(bstool(&store, &["mkfs", "--size", "64M"]));
    let statfs = text(bstool(&store, &["statfs", "--format", "text"]));
    assert!(
        statfs.contains("total_bytes: 67108864 (64.0 MiB)\n"),
        "{statfs}"
    );
    ok(bstool_with(
        &store,
        &["put", "c", "o", "-"],
        Some(&[1u8; 10_000]),
    ));
    {
        // Thirty objects whose onodes no longer decode: thirty fsck errors.
        let kv =
            bstore::kv::RocksKv::open(&store.join("db"), None, bstore::kv::KvOpenMode::ReadWrite)
                .unwrap();
        let mut batch = bstore::kv::Batch::new();
        for i in 0..30u8 {
            let mut key = 1u64.to_be_bytes().to_vec();
            key.extend_from_slice(format!("broken{i:02}").as_bytes());
            batch.put(bstore::kv::KeySpace::Onodes, key, vec![0xff; 8]);
        }
        bstore::kv::Kv::write(&kv, batch, bstore::kv::Durability::Sync).unwrap();
    }
    let output = bstool(&store, &["fsck", "--format", "text"]);
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8(output.stdout).unwrap();
    let error_lines: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("errors["))
        .collect();
    assert!(error_lines.len() >= 30, "one line per error: {report}");
    assert!(error_lines.iter().all(|l| l.len() < 400), "{report}");
    assert!(report.contains("referenced_bytes: "), "{report}");
}

#[test]
fn attribute_and_omap_values_are_binary_safe() {
    let dir = scratch();
    let store = dir.path().join("store");
    ok(bstool(&store, &["mkfs", "--size", "64M"]));
    let value: Vec<u8> = (0..=255u8).chain([b'\n', 0, b'\t']).collect();
    ok(bstool_with(&store, &["put", "c", "o", "-"], Some(b"x")));
    ok(bstool_with(
        &store,
        &["setattr", "c", "o", "blob", "-i", "-"],
        Some(&value),
    ));
    assert_eq!(ok(bstool(&store, &["getattr", "c", "o", "blob"])), value);
    let file = dir.path().join("attr.out");
    ok(bstool(
        &store,
        &["get-attr", "c", "o", "blob", "-o", file.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(&file).unwrap(), value);
    assert_eq!(
        text(bstool(&store, &["list-attrs", "c", "o"])),
        "blob\t259\n"
    );
    ok(bstool(&store, &["rm-attr", "c", "o", "blob"]));
    assert_eq!(text(bstool(&store, &["list-attrs", "c", "o"])), "");
    assert_eq!(
        bstool(&store, &["getattr", "c", "o", "blob"]).status.code(),
        Some(2)
    );

    let input = dir.path().join("omap.in");
    std::fs::write(&input, &value).unwrap();
    ok(bstool(
        &store,
        &[
            "omap-set",
            "c",
            "o",
            "key one",
            "-i",
            input.to_str().unwrap(),
        ],
    ));
    ok(bstool(&store, &["set-omap", "c", "o", "k2", "plain"]));
    assert_eq!(
        ok(bstool(&store, &["get-omap", "c", "o", "key one"])),
        value
    );
    let listing = text(bstool(&store, &["omap-list", "c", "o"]));
    assert_eq!(
        listing.lines().count(),
        2,
        "escaped: one entry per line: {listing}"
    );
    assert!(
        listing.starts_with("k2\tplain\n"),
        "keys in byte order: {listing}"
    );
    ok(bstool(&store, &["rm-omap", "c", "o", "key one"]));
    assert_eq!(
        text(bstool(&store, &["list-omap", "c", "o"])),
        "k2\tplain\n"
    );
    ok(bstool_with(
        &store,
        &["set-omaphdr", "c", "o", "-i", "-"],
        Some(&value),
    ));
    assert_eq!(ok(bstool(&store, &["omap-header", "c", "o"])), value);
    let neither = bstool(&store, &["setattr", "c", "o", "name"]);
    assert_eq!(neither.status.code(), Some(2), "a value or -i is required");
}

#[test]
fn zap_needs_confirmation_and_wipes_only_what_the_store_made() {
    let dir = scratch();
    let (store, db) = (dir.path().join("store"), dir.path().join("db"));
    ok(bstool(
        &store,
        &["mkfs", "--size", "64M", "--db-dir", db.to_str().unwrap()],
    ));
    std::fs::write(store.join("README.operator"), b"mine").unwrap();
    let unconfirmed = bstool(&store, &["zap"]);
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(stderr(&unconfirmed).contains("--yes-i-really-mean-it"));
    ok(bstool(&store, &["statfs"]));
    ok(bstool(&store, &["zap", "--yes-i-really-mean-it"]));
    assert_eq!(
        snapshot(&store).keys().collect::<Vec<_>>(),
        vec![Path::new("README.operator")],
        "only the operator's own file is left"
    );
    assert!(
        snapshot(&db).is_empty(),
        "the store's RocksDB files are gone"
    );
    ok(bstool(&store, &["mkfs", "--size", "64M"]));

    let image = dir.path().join("image");
    sparse_file(&image, 64 << 20);
    tool(
        "mkfs.ext4",
        "e2fsprogs",
        &["-q", "-F", image.to_str().unwrap()],
        None,
    );
    let before = digest(&image);
    let foreign = bstool(
        &store,
        &[
            "zap",
            "--dev",
            image.to_str().unwrap(),
            "--yes-i-really-mean-it",
        ],
    );
    assert_eq!(
        foreign.status.code(),
        Some(2),
        "zap wipes only bstore labels"
    );
    assert_eq!(digest(&image), before);
}

#[test]
#[ignore = "needs root (a read-only bind mount): .ci/run runs it as root with --ignored"]
fn a_read_only_mount_is_inspected_and_checked() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "a read-only bind mount needs root"
    );
    let dir = scratch();
    let (store, view) = (dir.path().join("store"), dir.path().join("view"));
    ok(bstool(&store, &["mkfs", "--size", "64M"]));
    ok(bstool_with(
        &store,
        &["put", "c", "o", "-"],
        Some(b"on a read-only mount"),
    ));
    std::fs::create_dir(&view).unwrap();
    let mount = |args: &[&str]| {
        let status = Command::new(program_path("mount"))
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "mount {args:?}");
    };
    mount(&["--bind", store.to_str().unwrap(), view.to_str().unwrap()]);
    mount(&["-o", "remount,bind,ro", view.to_str().unwrap()]);
    let results = (
        bstool(&view, &["show-label"]),
        bstool(&view, &["fsck"]),
        bstool(&view, &["get", "c", "o"]),
    );
    let _ = Command::new(program_path("umount")).arg(&view).status();
    ok(results.0);
    ok(results.1);
    assert_eq!(ok(results.2), b"on a read-only mount");
}

/// The BPF program for seccomp: `io_uring_setup` fails with EPERM, everything else is allowed
/// (what a container runtime's default profile does).
fn forbid_io_uring() -> std::io::Result<()> {
    const IO_URING_SETUP: u32 = 425; // the same number on every architecture (Linux 5.1+)
    let filter = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0, // seccomp_data.nr
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp are given valid arguments; `program` and `filter` outlive the
    // call (the kernel copies the filter).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn bstool_without_io_uring(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_bstool"));
    command.arg("--path").arg(store).args(args);
    // SAFETY: the closure runs in the child between fork and exec and only makes system calls.
    unsafe { command.pre_exec(forbid_io_uring) };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn where_io_uring_is_forbidden_the_store_falls_back_to_pread_and_pwrite() {
    let dir = scratch();
    let store = dir.path().join("store");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let steps: [(&[&str], Option<&[u8]>); 4] = [
        (&["mkfs", "--size", "64M"], None),
        (&["put", "c", "o", "-"], Some(&data)),
        (&["get", "c", "o"], None),
        (&["fsck"], None),
    ];
    let mut outputs = Vec::new();
    for (args, stdin) in steps {
        let output = bstool_without_io_uring(&store, args, stdin);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        outputs.push(output);
    }
    assert_eq!(outputs[2].stdout, data);
    assert!(
        stderr(&outputs[1]).contains("warning: io_uring could not be set up"),
        "the fallback is reported: {}",
        stderr(&outputs[1])
    );
    let insisted = bstool_without_io_uring(&store, &["--io-backend", "uring", "statfs"], None);
    assert_eq!(
        insisted.status.code(),
        Some(2),
        "--io-backend uring does not fall back"
    );
    assert!(
        stderr(&insisted).contains("io_uring"),
        "{}",
        stderr(&insisted)
    );
    let chosen = bstool_without_io_uring(&store, &["--io-backend", "sync", "statfs"], None);
    assert!(chosen.status.success());
    assert!(
        !stderr(&chosen).contains("warning"),
        "sync was asked for: no warning"
    );
}

fn bstool_plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bstool"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// An image whose first 4 KiB are a crc-valid label with `meta`.
fn image_with_label(path: &Path, meta: BTreeMap<String, String>) {
    let label = Label {
        format_version: bstore::format::FORMAT_VERSION,
        store_uuid: [0x42; 16],
        device_size: 64 << 20,
        min_alloc_size: 4096,
        created_secs: 1_700_000_000,
        created_nanos: 0,
        meta,
    };
    let mut bytes = label.encode();
    bytes.resize(64 << 20, 0);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn show_label_in_text_prints_one_line_per_item_whatever_the_label_holds() {
    // A label's meta values are any UTF-8 the decoder accepts (a damaged or foreign-made
    // label: the very case an operator runs show-label --dev for). In JSON they are escaped;
    // `--format text` prints them raw, so a newline splits one item over two lines and an
    // escape sequence reaches the operator's terminal. The value must be escaped as names are.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = dir.path().join("img");
    image_with_label(
        &img,
        BTreeMap::from([(
            "description".to_string(),
            "osd.1\nstore_uuid: forged\x1b[2J".to_string(),
        )]),
    );
    let output = bstool_plain(&[
        "show-label",
        "--dev",
        img.to_str().unwrap(),
        "--format",
        "text",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    println!("{text}");
    let items = [
        "format_version",
        "store_uuid",
        "device_size",
        "min_alloc_size",
        "created",
        "created_secs",
        "meta.description",
    ];
    assert_eq!(
        text.lines().count(),
        items.len(),
        "one line per item:\n{text}"
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "control bytes reach the terminal: {text:?}"
    );
}
