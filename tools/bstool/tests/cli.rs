//! Goal: bstool works end to end as an operator uses it: the real binary on a file-backed store
//! (io_uring + RocksDB), exit codes, one-line errors, and ceph-bluestore-tool-shaped output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir_in("/var/tmp").unwrap(),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bstool(&self, args: &[&str]) -> Output {
        bstool_at(&self.store(), args, None)
    }
}

fn bstool_at(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bstool"));
    command.arg("--path").arg(store).args(args);
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        // A command that fails early stops reading: a closed pipe here is its answer.
        let written = child.stdin.take().unwrap().write_all(input);
        if let Err(error) = written {
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "bstool failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn mkfs_put_get_ls_rm_round_trip() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "256M"]));
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    std::fs::write(s.file("input"), &data).unwrap();
    ok(s.bstool(&["put", "pg.1", "big", s.file("input").to_str().unwrap()]));
    ok(bstool_at(
        &s.store(),
        &["put", "pg.1", "small", "-"],
        Some(b"from stdin"),
    ));
    ok(s.bstool(&["get", "pg.1", "big", s.file("output").to_str().unwrap()]));
    assert_eq!(std::fs::read(s.file("output")).unwrap(), data);
    assert_eq!(ok(s.bstool(&["get", "pg.1", "small"])), "from stdin");
    assert_eq!(ok(s.bstool(&["ls"])), "pg.1\n");
    assert_eq!(ok(s.bstool(&["ls", "pg.1"])), "big\nsmall\n");
    ok(s.bstool(&["rm", "pg.1", "big"]));
    assert_eq!(ok(s.bstool(&["ls", "pg.1"])), "small\n");
}

#[test]
fn log_prints_the_stores_events_to_stderr_and_leaves_stdout_alone() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "64M"]));
    let quiet = s.bstool(&["statfs"]);
    assert!(quiet.stderr.is_empty(), "silent without --log");
    let logged = s.bstool(&["--log", "debug", "statfs"]);
    let events = String::from_utf8_lossy(&logged.stderr).into_owned();
    assert_eq!(ok(logged), ok(quiet), "the same result on stdout");
    assert!(events.contains("phase=\"freelist\""), "{events}");
    assert!(
        events.contains(" INFO ") && events.contains("mounted"),
        "{events}"
    );
    let mut from_env = Command::new(env!("CARGO_BIN_EXE_bstool"));
    from_env
        .env("BSTORE_LOG", "warn")
        .arg("--path")
        .arg(s.store())
        .arg("statfs");
    let warned = from_env.output().unwrap();
    assert!(warned.status.success());
    assert!(
        warned.stderr.is_empty(),
        "nothing at warn on a healthy store"
    );
    let mut bad = Command::new(env!("CARGO_BIN_EXE_bstool"));
    bad.env("BSTORE_LOG", "loud")
        .arg("--path")
        .arg(s.store())
        .arg("statfs");
    let refused = bad.output().unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "an unknown level is refused"
    );
}

#[test]
fn show_label_and_statfs_print_json() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "128M", "--min-alloc-size", "8K"]));
    let label = json(&ok(s.bstool(&["show-label"])));
    assert_eq!(label["format_version"], 2);
    assert_eq!(label["device_size"], 128u64 << 20);
    assert_eq!(label["min_alloc_size"], 8192);
    assert_eq!(label["store_uuid"].as_str().unwrap().len(), 36);
    ok(bstool_at(
        &s.store(),
        &["put", "c", "o", "-"],
        Some(&[1u8; 20_000]),
    ));
    let statfs = json(&ok(s.bstool(&["statfs"])));
    assert_eq!(statfs["object_count"], 1);
    assert_eq!(statfs["stored_bytes"], 20_000);
    assert_eq!(statfs["allocated_bytes"], 24_576);
    let text = ok(s.bstool(&["statfs", "--format", "text"]));
    assert!(text.contains("object_count: 1\n"), "{text}");
    // The journal: a 32nd of the device by default, after the label; a clean close leaves
    // nothing to replay.
    let label = json(&ok(s.bstool(&["show-label"])));
    let journal = &label["journal"];
    assert_eq!(journal["size"], 4u64 << 20, "{label}");
    assert_eq!(journal["device_offset"], 8192);
    assert_eq!(journal["pending_records"], 0);
    assert_eq!(journal["head"], journal["tail"]);
    let fsck = json(&ok(s.bstool(&["fsck"])));
    assert_eq!(fsck["journal"]["size"], 4u64 << 20);
    assert_eq!(statfs["reserved_bytes"], 8192 + (4u64 << 20));
}

#[test]
fn mkfs_takes_a_journal_size_or_none() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "128M", "--journal-size", "256K"]));
    let label = json(&ok(s.bstool(&["show-label"])));
    assert_eq!(label["journal"]["size"], 256 << 10);
    let t = Scratch::new();
    ok(t.bstool(&["mkfs", "--size", "128M", "--journal-size", "none"]));
    let label = json(&ok(t.bstool(&["show-label"])));
    assert_eq!(label["format_version"], 1, "no journal: format 1");
    assert!(label["journal"].is_null());
    let bad = Scratch::new();
    let refused = bad.bstool(&["mkfs", "--size", "128M", "--journal-size", "10K"]);
    assert_ne!(
        refused.status.code(),
        Some(0),
        "too small a journal is refused"
    );
}

#[test]
fn free_score_and_free_dump_look_like_ceph_bluestore_tool() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "64M"]));
    let score = ok(s.bstool(&["free-score"]));
    assert_eq!(
        score,
        "block:\n{\n    \"fragmentation_rating\": 0,\n    \"fragmentation_formula\": \"reef\"\n}\n",
        "one free run; the formula named in a field Ceph's parsers ignore"
    );
    assert_eq!(
        ok(s.bstool(&["free-score", "--allocator", "block", "--variant", "pacific"])),
        "block:\n{\n    \"fragmentation_rating\": 0,\n    \"fragmentation_formula\": \"pacific\"\n}\n",
        "Ceph's --allocator block is accepted"
    );
    let bluefs = s.bstool(&["free-dump", "--allocator", "bluefs-db"]);
    assert_eq!(
        bluefs.status.code(),
        Some(2),
        "bstore has no BlueFS allocator"
    );
    for i in 0..6 {
        ok(bstool_at(
            &s.store(),
            &["put", "c", &format!("o{i}"), "-"],
            Some(&[7u8; 8192]),
        ));
    }
    for i in [1, 3] {
        ok(s.bstool(&["rm", "c", &format!("o{i}")]));
    }
    let dump = ok(s.bstool(&["free-dump"]));
    let (label, body) = dump.split_once('\n').unwrap();
    assert_eq!(label, "block:");
    assert!(
        body.contains("\n    \"capacity\": 67108864,\n"),
        "4-space JSON: {body}"
    );
    let dump = json(body);
    assert_eq!(dump["alloc_unit"], 4096);
    assert_eq!(dump["alloc_type"], "bitmap");
    let extents = dump["extents"].as_array().unwrap();
    assert_eq!(extents.len(), 3, "two holes and the tail: {extents:?}");
    assert!(
        extents
            .iter()
            .all(|e| e["offset"].as_str().unwrap().starts_with("0x"))
    );
    for variant in ["reef", "pacific"] {
        let text = ok(s.bstool(&["free-score", "--variant", variant]));
        let score = json(text.split_once('\n').unwrap().1);
        let rating = score["fragmentation_rating"].as_f64().unwrap();
        assert!(rating > 0.0 && rating < 1.0, "{variant}: {rating}");
        assert_eq!(score["fragmentation_formula"], variant);
    }
    let text = ok(s.bstool(&["free-dump", "--format", "text", "--allocator", "block"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "capacity: 67108864 (64.0 MiB)", "{text}");
    assert_eq!(
        lines.len(),
        4 + 3,
        "four header lines, one line per extent: {text}"
    );
    assert!(
        lines[4].starts_with("0x") && lines[4].ends_with(" KiB)"),
        "{text}"
    );
}

#[test]
fn errors_exit_non_zero_with_one_line() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "64M"]));
    let missing = s.bstool(&["get", "c", "nothing"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("bstool: error: ") && stderr.contains("not found"),
        "{stderr}"
    );

    let again = s.bstool(&["mkfs", "--size", "64M"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "mkfs refuses an existing store"
    );
    ok(s.bstool(&["mkfs", "--size", "64M", "--force"]));

    let bad_size = s.bstool(&["mkfs", "--size", "lots"]);
    assert!(!bad_size.status.success());
    let no_store = bstool_at(&s.dir.path().join("absent"), &["statfs"], None);
    assert_eq!(no_store.status.code(), Some(2));
}

#[test]
fn write_read_stat_attrs_omap_and_fsck() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "128M"]));
    ok(bstool_at(
        &s.store(),
        &["write", "pg", "obj", "--offset", "8K", "-"],
        Some(b"hello"),
    ));
    ok(bstool_at(
        &s.store(),
        &["write", "pg", "obj", "--offset", "2", "-"],
        Some(b"xy"),
    ));
    let bytes = ok(s.bstool(&["read", "pg", "obj", "--offset", "0", "--length", "16K"]));
    let mut expected = vec![0u8; 8192 + 5];
    expected[2..4].copy_from_slice(b"xy");
    expected[8192..].copy_from_slice(b"hello");
    assert_eq!(
        bytes.as_bytes(),
        expected.as_slice(),
        "holes read as zeros, short at the end"
    );
    let stat = json(&ok(s.bstool(&["stat", "pg", "obj"])));
    assert_eq!(stat["size"], 8197);
    assert_eq!(stat["extent_count"], 2);

    ok(s.bstool(&["setattr", "pg", "obj", "owner", "alice"]));
    assert_eq!(
        ok(s.bstool(&["getattr", "pg", "obj", "owner"])),
        "alice",
        "the value verbatim, no newline added"
    );
    let missing = s.bstool(&["getattr", "pg", "obj", "nothing"]);
    assert_eq!(missing.status.code(), Some(2));
    let no_object = s.bstool(&["setattr", "pg", "ghost", "a", "b"]);
    assert_eq!(
        no_object.status.code(),
        Some(2),
        "setattr needs an existing object"
    );

    ok(s.bstool(&["omap-set", "pg", "index", "k2", "two"]));
    ok(s.bstool(&["omap-set", "pg", "index", "k1", "one"]));
    assert_eq!(
        ok(s.bstool(&["omap-list", "pg", "index"])),
        "k1\tone\nk2\ttwo\n"
    );

    let report = json(&ok(s.bstool(&["fsck"])));
    assert_eq!(report["clean"], true);
    assert_eq!(report["objects"], 2);
    assert_eq!(report["omap_keys"], 2);
    let text = ok(s.bstool(&["fsck", "--format", "text"]));
    assert!(text.contains("clean: true"), "{text}");
}

/// Frees a closed store's objects' space behind the metadata's back: the freelist key of
/// region 0 rewritten as all free but the reserved start, so the objects' units look free
/// (fsck: `space.false_free`).
fn free_region_zero_behind_the_metadata(store: &Path) {
    let kv = bstore::kv::RocksKv::open(&store.join("db"), None, bstore::kv::KvOpenMode::ReadWrite)
        .unwrap();
    let mut batch = bstore::kv::Batch::new();
    batch.put(
        bstore::kv::KeySpace::Freelist,
        0u64.to_be_bytes().to_vec(),
        vec![0b0000_0011],
    );
    bstore::kv::Kv::write(&kv, batch, bstore::kv::Durability::Sync).unwrap();
}

#[test]
fn fsck_exits_one_when_it_finds_damage() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "64M"]));
    ok(bstool_at(
        &s.store(),
        &["put", "c", "o", "-"],
        Some(&[5u8; 10_000]),
    ));
    free_region_zero_behind_the_metadata(&s.store());
    let output = s.bstool(&["fsck"]);
    assert_eq!(output.status.code(), Some(1), "fsck found errors");
    let report = json(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(report["clean"], false);
    let checks: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"space.false_free"), "{checks:?}");
}

#[test]
fn repair_puts_a_broken_freelist_right_and_a_dry_run_changes_nothing() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "64M"]));
    ok(bstool_at(
        &s.store(),
        &["put", "c", "o", "-"],
        Some(&[5u8; 10_000]),
    ));
    free_region_zero_behind_the_metadata(&s.store());
    let plan = json(&ok(s.bstool(&["repair", "--dry-run"])));
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["clean"], true, "the plan leaves a clean store: {plan}");
    assert_eq!(plan["repairs"][0]["what"], "freelist", "{plan}");
    assert_eq!(
        s.bstool(&["fsck"]).status.code(),
        Some(1),
        "a dry run writes nothing"
    );

    let done = json(&ok(s.bstool(&["repair"])));
    assert_eq!(done["before"]["clean"], false);
    assert_eq!(done["clean"], true, "{done}");
    assert_eq!(json(&ok(s.bstool(&["fsck"])))["clean"], true);
    assert_eq!(ok(s.bstool(&["get", "c", "o"])).as_bytes(), [5u8; 10_000]);
    let again = json(&ok(s.bstool(&["repair"])));
    assert_eq!(again["repair_count"], 0, "{again}");
}

#[test]
fn fsck_deep_reads_the_data_and_names_a_rotten_chunk() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "64M"]));
    ok(bstool_at(
        &s.store(),
        &["put", "c", "o", "-"],
        Some(&[5u8; 100_000]),
    ));
    let clean = json(&ok(s.bstool(&["fsck", "--deep"])));
    assert_eq!(clean["clean"], true, "{clean}");
    assert_eq!(json(&ok(s.bstool(&["scrub"])))["clean"], true);
    assert!(
        clean["deep"]["bytes_read"].as_u64().unwrap() >= 100_000,
        "{clean}"
    );
    assert!(json(&ok(s.bstool(&["fsck"])))["deep"].is_null());

    // Flip a byte of the object's data in the block file, 70,000 bytes in.
    let stat = json(&ok(s.bstool(&["stat", "c", "o"])));
    let extent = &stat["extents"][0];
    let hex = extent["device_offset"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x");
    let device_offset = u64::from_str_radix(hex, 16).unwrap() + 70_000;
    {
        use std::os::unix::fs::FileExt;
        let block = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(s.store().join("block"))
            .unwrap();
        let mut byte = [0u8];
        block.read_exact_at(&mut byte, device_offset).unwrap();
        block.write_all_at(&[byte[0] ^ 1], device_offset).unwrap();
    }
    assert_eq!(
        json(&ok(s.bstool(&["fsck"])))["clean"],
        true,
        "shallow fsck reads no data"
    );
    let output = s.bstool(&["fsck", "--deep"]);
    assert_eq!(output.status.code(), Some(1), "deep fsck found the flip");
    let report = json(&String::from_utf8(output.stdout).unwrap());
    let bad = &report["deep"]["bad_chunks"];
    assert_eq!(bad.as_array().unwrap().len(), 1, "{report}");
    assert_eq!(bad[0]["object"], "c/o");
    let start = bad[0]["object_offset"].as_u64().unwrap();
    let length = bad[0]["length"].as_u64().unwrap();
    assert!((start..start + length).contains(&70_000), "{report}");
    assert_eq!(report["errors"][0]["check"], "data.checksum");
    // The offline scrub reads the same and reports only the data.
    let scrub = s.bstool(&["scrub"]);
    assert_eq!(scrub.status.code(), Some(1));
    let scrub = json(&String::from_utf8(scrub.stdout).unwrap());
    assert_eq!(scrub["deep"]["bad_chunks"][0]["object"], "c/o", "{scrub}");
    assert_eq!(scrub["error_count"], 1);
}

#[test]
fn clone_and_clone_range_share_data_and_stat_shows_it() {
    let s = Scratch::new();
    ok(s.bstool(&["mkfs", "--size", "128M"]));
    let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    ok(bstool_at(
        &s.store(),
        &["put", "pg", "src", "-"],
        Some(&data),
    ));
    ok(s.bstool(&["clone", "pg", "src", "copy"]));
    assert_eq!(
        ok(s.bstool(&["get", "pg", "copy"])).as_bytes(),
        data.as_slice()
    );
    let stat = json(&ok(s.bstool(&["stat", "pg", "copy"])));
    assert_eq!(stat["shared_bytes"], 100_000);
    ok(s.bstool(&[
        "clone-range",
        "pg",
        "src",
        "part",
        "--src-offset",
        "4K",
        "--length",
        "8K",
        "--dst-offset",
        "1K",
    ]));
    let part = ok(s.bstool(&["get", "pg", "part"]));
    assert_eq!(part.len(), 1024 + 8192);
    assert_eq!(&part.as_bytes()[1024..], &data[4096..12288]);
    let statfs = json(&ok(s.bstool(&["statfs"])));
    assert!(
        statfs["stored_bytes"].as_u64().unwrap() > statfs["allocated_bytes"].as_u64().unwrap(),
        "the clones cost no space: {statfs}"
    );
    let report = json(&ok(s.bstool(&["fsck"])));
    assert_eq!(report["clean"], true, "{report}");
}

/// A small export stream: one collection, one object with data, xattrs and omap.
fn sample_export_stream() -> Vec<u8> {
    use bstore::format::export::{Frame, ObjectHead, STREAM_VERSION, StreamHeader, StreamWriter};
    let header = StreamHeader {
        version: STREAM_VERSION,
        source_uuid: [7; 16],
        commit_point: 3,
        created_secs: 1_800_000_000,
    };
    let mut writer = StreamWriter::new(Vec::new(), &header).unwrap();
    let frames = [
        Frame::Collection {
            name: b"c".to_vec(),
        },
        Frame::Object(ObjectHead {
            name: b"o".to_vec(),
            size: 10_000,
            xattrs: vec![(b"a".to_vec(), b"1".to_vec())],
            omap_header: None,
        }),
        Frame::Data {
            offset: 0,
            bytes: vec![9; 10_000].into(),
        },
        Frame::Omap(vec![(b"k".to_vec(), b"v".to_vec())]),
    ];
    for frame in &frames {
        writer.frame(frame).unwrap();
    }
    writer.finish().unwrap().0
}

#[test]
fn verify_export_checks_a_stream_and_says_where_it_is_broken() {
    let scratch = Scratch::new();
    let stream = sample_export_stream();
    let file = scratch.file("export.bin");
    std::fs::write(&file, &stream).unwrap();
    let path = file.to_str().unwrap();

    let report = json(&ok(scratch.bstool(&["verify-export", path])));
    assert_eq!(report["valid"], true);
    assert_eq!(report["collections"], 1);
    assert_eq!(report["objects"], 1);
    assert_eq!(report["data_bytes"], 10_000);
    assert_eq!(report["omap_entries"], 1);
    assert_eq!(report["bytes"], stream.len());
    let piped = bstool_at(&scratch.store(), &["verify-export", "-"], Some(&stream));
    assert_eq!(json(&ok(piped))["valid"], true, "the stream on stdin");

    let mut flipped = stream.clone();
    flipped[200] ^= 0x10;
    std::fs::write(&file, &flipped).unwrap();
    let output = scratch.bstool(&["verify-export", path]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(report["valid"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("crc32c mismatch"),
        "{report}"
    );

    std::fs::write(&file, &stream[..stream.len() - 30]).unwrap();
    let output = scratch.bstool(&["verify-export", path]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&String::from_utf8(output.stdout).unwrap());
    assert!(
        report["error"].as_str().unwrap().contains("cut short"),
        "{report}"
    );

    let missing = scratch.bstool(&["verify-export", "/nonexistent/export.bin"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("opening /nonexistent"));
}

/// A store at `store` with a collection `c`: objects of data, a clone, xattrs and omap.
fn store_to_export(store: &Path, objects: usize, object_bytes: usize) {
    ok(bstool_at(store, &["mkfs", "--size", "1G"], None));
    for i in 0..objects {
        let data: Vec<u8> = (0..object_bytes).map(|b| (b * 7 + i) as u8).collect();
        let name = format!("o{i}");
        ok(bstool_at(store, &["put", "c", &name, "-"], Some(&data)));
    }
    ok(bstool_at(store, &["clone", "c", "o0", "o0-clone"], None));
    ok(bstool_at(
        store,
        &["setattr", "c", "o0", "user.a", "1"],
        None,
    ));
    ok(bstool_at(store, &["omap-set", "c", "o0", "k", "v"], None));
}

/// What `bstool get` returns for every object of `c` (empty when `c` does not exist).
fn contents(store: &Path) -> Vec<(String, Vec<u8>)> {
    let listed = bstool_at(store, &["ls", "c"], None);
    if !listed.status.success() {
        return Vec::new();
    }
    let names = String::from_utf8(listed.stdout).unwrap();
    names
        .lines()
        .map(|name| {
            let got = bstool_at(store, &["get", "c", name, "-"], None);
            assert!(got.status.success(), "get {name}");
            (name.to_string(), got.stdout)
        })
        .collect()
}

#[test]
fn export_and_import_move_a_store_through_a_file_or_a_pipe() {
    let scratch = Scratch::new();
    let source = scratch.store();
    store_to_export(&source, 3, 300_000);
    let file = scratch.file("backup.bstore");
    let file_arg = file.to_str().unwrap();
    let exported = json(&ok(scratch.bstool(&["export", "-o", file_arg])));
    assert_eq!(exported["objects"], 4);
    assert!(
        exported["shared_bytes"].as_u64().unwrap() >= 300_000,
        "{exported}"
    );
    assert_eq!(
        exported["stream_bytes"],
        std::fs::metadata(&file).unwrap().len()
    );
    let again = scratch.bstool(&["export", "-o", file_arg]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing file is not replaced"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        json(&ok(scratch.bstool(&["verify-export", file_arg])))["valid"],
        true
    );

    let target = scratch.file("target");
    ok(bstool_at(&target, &["mkfs", "--size", "1G"], None));
    let imported = json(&ok(bstool_at(&target, &["import", "-i", file_arg], None)));
    assert_eq!(imported["objects"], 4);
    let expected = contents(&source);
    assert_eq!(expected.len(), 4);
    assert_eq!(contents(&target), expected);
    let omap = ok(bstool_at(&target, &["omap-get", "c", "o0", "k"], None));
    assert_eq!(omap, "v");
    let target_arg = target.to_str().unwrap();
    let same = json(&ok(scratch.bstool(&["diff", target_arg])));
    assert_eq!(
        (same["equal"].clone(), same["objects_compared"].clone()),
        (true.into(), 4.into())
    );
    assert_eq!(
        json(&ok(scratch.bstool(&["diff", file_arg])))["equal"],
        true,
        "store and stream"
    );
    ok(bstool_at(
        &target,
        &["write", "c", "o1", "--offset", "1000", "-"],
        Some(b"!"),
    ));
    ok(bstool_at(&target, &["put", "c", "extra", "-"], Some(b"x")));
    let differ = scratch.bstool(&["diff", target_arg]);
    assert_eq!(differ.status.code(), Some(1));
    let report = json(&String::from_utf8(differ.stdout).unwrap());
    let found: Vec<String> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}: {}",
                d["object"].as_str().unwrap(),
                d["difference"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "c/extra: only in the other",
            "c/o1: bytes differ at offset 1000"
        ],
        "{report}"
    );
    // Back as it was, for what follows.
    ok(bstool_at(&target, &["rm", "c", "extra"], None));
    let original = &expected.iter().find(|(name, _)| name == "o1").unwrap().1;
    ok(bstool_at(&target, &["put", "c", "o1", "-"], Some(original)));
    // The collection exists now: refused, and the target is unchanged.
    let refused = bstool_at(&target, &["import", "-i", file_arg], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    assert_eq!(contents(&target), expected);
    // Through a pipe, replacing it.
    let stream = std::fs::read(&file).unwrap();
    let piped = bstool_at(&target, &["import", "-i", "-", "--force"], Some(&stream));
    assert_eq!(json(&ok(piped))["replaced"], 1);
    assert_eq!(contents(&target), expected);
    let statfs = json(&ok(bstool_at(&target, &["statfs"], None)));
    assert_eq!(statfs["object_count"], 4, "the replaced collection is gone");
    let fsck = json(&ok(bstool_at(&target, &["fsck"], None)));
    assert_eq!(fsck["clean"], true, "{fsck}");
    // A damaged stream changes nothing.
    let mut damaged = stream.clone();
    damaged[stream.len() / 2] ^= 1;
    let output = bstool_at(&target, &["import", "-i", "-", "--force"], Some(&damaged));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unchanged"));
    assert_eq!(contents(&target), expected);
}

#[test]
fn an_import_killed_at_any_moment_leaves_the_collection_whole_or_absent() {
    let seed = bstore::rng::test_seed();
    println!("seed {seed} (BSTORE_SEED={seed} replays it)");
    let mut rng = bstore::rng::SplitMix64::new(seed);
    let scratch = Scratch::new();
    store_to_export(&scratch.store(), 24, 1 << 20);
    let file = scratch.file("backup.bstore");
    let file_arg = file.to_str().unwrap();
    ok(scratch.bstool(&["export", "-o", file_arg]));
    let expected = contents(&scratch.store());
    // How long a whole import takes, to spread the kills over it.
    let timed = scratch.file("timed");
    ok(bstool_at(&timed, &["mkfs", "--size", "1G"], None));
    let started = std::time::Instant::now();
    ok(bstool_at(&timed, &["import", "-i", file_arg], None));
    let whole_run = started.elapsed();
    let (mut whole, mut absent) = (0, 0);
    for kill in 0..8 {
        let target = scratch.file(&format!("kill{kill}"));
        ok(bstool_at(&target, &["mkfs", "--size", "1G"], None));
        let delay = whole_run.mul_f64((rng.next_u64() % 1000) as f64 / 1000.0);
        let mut child = Command::new(env!("CARGO_BIN_EXE_bstool"))
            .arg("--path")
            .arg(&target)
            .args(["import", "-i", file_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let finished = child.wait().unwrap().success();
        // A read-write mount (this put's) removes what the killed import left hidden.
        ok(bstool_at(&target, &["put", "other", "x", "-"], Some(b"x")));
        let found = contents(&target);
        if found.is_empty() {
            assert!(
                !finished,
                "kill {kill} after {delay:?}: a finished import was lost"
            );
            absent += 1;
        } else {
            assert!(
                found == expected,
                "kill {kill} after {delay:?}: a partial collection"
            );
            whole += 1;
        }
        let statfs = json(&ok(bstool_at(&target, &["statfs"], None)));
        let visible = found.len() + 1;
        assert_eq!(
            statfs["object_count"], visible,
            "kill {kill}: hidden objects left"
        );
        let fsck = json(&ok(bstool_at(&target, &["fsck"], None)));
        assert_eq!(fsck["clean"], true, "kill {kill}: {fsck}");
    }
    println!("8 kills over a {whole_run:?} import: {whole} whole, {absent} absent");
    assert!(absent > 0, "no kill landed inside the import");
}
