//! Goal: mkfs and zap never destroy what they did not make, and nothing blocks a plain retry,
//! in the corners a review of the first version found (each test tells the story of one
//! hazard it had): a zap or a retried mkfs destroying another store, a retry blocked by what an
//! earlier attempt left, a `--wal-dir` landing inside another store, a check made only after
//! the destruction, and a "read-only" open that created directories. States a killed mkfs
//! leaves are built by hand, entry by entry as mkfs makes them (see `src/store/mkfs_dir.rs`),
//! so each test is deterministic; tools/bstool/tests/operator.rs kills real mkfs processes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bstore::{BlockSource, Error, MkfsOptions, OpenOptions, Store};
use common::{pattern, scratch_dir};

const STORE_BYTES: u64 = 64 << 20;

/// A sparse image file of `STORE_BYTES`, outside any store directory.
fn image(path: &Path) -> PathBuf {
    fs::File::create(path)
        .unwrap()
        .set_len(STORE_BYTES)
        .unwrap();
    path.to_path_buf()
}

fn on_file(path: &Path) -> MkfsOptions {
    MkfsOptions::new(
        path,
        BlockSource::File {
            size_bytes: STORE_BYTES,
        },
    )
}

fn on_device(path: &Path, device: &Path) -> MkfsOptions {
    MkfsOptions::new(path, BlockSource::Device(device.to_path_buf()))
}

/// Puts one object in the store at `path` and closes it.
fn fill(path: &Path, seed: u64) {
    let store = Store::open(path, &OpenOptions::default()).unwrap();
    store.create_collection("pg").unwrap();
    store.put("pg", "obj", &pattern(seed, 100_000)).unwrap();
    store.close().unwrap();
}

/// Opens the store at `path` and checks the object `fill` put there.
fn still_intact(path: &Path, seed: u64) -> Result<(), String> {
    let store = Store::open(path, &OpenOptions::default()).map_err(|e| e.to_string())?;
    let data = store.get("pg", "obj").map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    if data == pattern(seed, 100_000) {
        Ok(())
    } else {
        Err("the object's bytes changed".into())
    }
}

fn uuid_text(uuid: &[u8; 16]) -> String {
    bstore::store::mkfs::format_uuid(uuid)
}

/// `.mkfs/` as mkfs leaves it when killed after it made the staging directory and its block,
/// with `.mkfs/store_uuid` naming `uuid`.
fn staging_with_uuid(store: &Path, uuid: &[u8; 16]) -> PathBuf {
    let staging = store.join(".mkfs");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("store_uuid"), format!("{}\n", uuid_text(uuid))).unwrap();
    staging
}

// ---- zap ----

#[test]
fn zap_of_a_stale_store_directory_leaves_the_label_of_the_store_now_on_its_device() {
    // s2 was made on an image; later s1 was made on the same image with --force (s2 is gone,
    // only its directory remains, `block` still pointing at the image). Cleaning up the stale
    // directory with zap reads the image's label (s1's), finds it "a label", and zeroes it:
    // s1, a store zap was never asked about, no longer opens. zap must only wipe a label whose
    // uuid is the one of the store being zapped (its superblock's).
    let dir = scratch_dir();
    let img = image(&dir.path().join("img"));
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    Store::mkfs(&on_device(&s2, &img)).unwrap();
    let mut replace = on_device(&s1, &img);
    replace.force = true;
    Store::mkfs(&replace).unwrap();
    fill(&s1, 1);

    let zapped = Store::zap(&s2);
    println!("zap of the stale s2: {zapped:?}");
    assert_eq!(
        still_intact(&s1, 1),
        Ok(()),
        "zap of the stale s2 destroyed s1's label"
    );
}

// ---- mkfs after an interrupted mkfs ----

#[test]
fn a_retry_never_clears_a_db_dir_that_another_store_took_since_the_kill() {
    // `mkfs --path s2 --size .. --db-dir D` is killed right after it made `.mkfs/db -> D`,
    // before RocksDB wrote anything: D is empty. The operator then makes s1 with D as its
    // --db-dir (empty, so rightly accepted) and puts data in it. A plain mkfs of s2 later
    // "discards what the interrupted mkfs made" and clears every RocksDB file behind
    // `.mkfs/db`: s1's database. The target of a staged link must be shown to be the staged
    // store's (its superblock carries `.mkfs/store_uuid`, or it holds nothing) before clearing.
    let dir = scratch_dir();
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    let db = dir.path().join("D");
    fs::create_dir_all(&s2).unwrap();
    let staging = staging_with_uuid(&s2, &[0x22; 16]);
    fs::File::create(staging.join("block"))
        .unwrap()
        .set_len(STORE_BYTES)
        .unwrap();
    fs::create_dir(&db).unwrap();
    std::os::unix::fs::symlink(&db, staging.join("db")).unwrap();

    let mut make_s1 = on_file(&s1);
    make_s1.db_dir = Some(db.clone());
    Store::mkfs(&make_s1).expect("an empty --db-dir is accepted");
    fill(&s1, 2);

    let retry = Store::mkfs(&on_file(&s2));
    println!("plain retry of s2: {retry:?}");
    assert_eq!(
        still_intact(&s1, 2),
        Ok(()),
        "the retry of s2 cleared s1's database"
    );
}

/// The state of a mkfs on `img` killed after it wrote the label of store `uuid` and before it
/// moved the store into place: `.mkfs/{store_uuid, block -> img, db/}` with a formatted db.
fn killed_after_the_label(dir: &Path, store: &Path, img: &Path, uuid: [u8; 16]) {
    let built = dir.join("built-elsewhere");
    let mut options = on_device(&built, img);
    options.format.store_uuid = Some(uuid);
    Store::mkfs(&options).unwrap();
    fs::create_dir_all(store).unwrap();
    let staging = staging_with_uuid(store, &uuid);
    std::os::unix::fs::symlink(fs::canonicalize(img).unwrap(), staging.join("block")).unwrap();
    fs::rename(built.join("db"), staging.join("db")).unwrap();
    fs::remove_file(built.join("block")).unwrap();
    fs::remove_dir(&built).unwrap();
}

#[test]
fn a_retry_that_fails_a_check_does_not_forget_whose_label_the_device_holds() {
    // A mkfs on an image is killed after it wrote its label. The first retry has a typo (a
    // non-empty --db-dir) and is refused, rightly. But before checking anything it had
    // already removed `.mkfs/` and with it `.mkfs/store_uuid`, the only record that the label
    // on the image is the interrupted mkfs's own. The next, correct, plain retry finds "a
    // bstore signature" and demands --force: a killed mkfs blocked a plain retry.
    let dir = scratch_dir();
    let store = dir.path().join("s");
    let img = image(&dir.path().join("img"));
    killed_after_the_label(dir.path(), &store, &img, [0x11; 16]);

    let busy_dir = dir.path().join("not-empty");
    fs::create_dir(&busy_dir).unwrap();
    fs::write(busy_dir.join("notes.txt"), b"keep").unwrap();
    let mut typo = on_device(&store, &img);
    typo.db_dir = Some(busy_dir);
    assert!(
        Store::mkfs(&typo).is_err(),
        "a non-empty --db-dir is refused"
    );

    let retry = Store::mkfs(&on_device(&store, &img));
    assert!(
        retry.is_ok(),
        "the plain retry after a kill and a refused attempt: {retry:?}"
    );
}

#[test]
fn a_retry_killed_before_its_own_label_does_not_block_the_next() {
    // Kill one lands after the label of store A was written. The retry must make the same
    // store A (it reuses `.mkfs/store_uuid`): were it to pick a new uuid B and be killed before
    // writing B's label, the image would hold A's label while `.mkfs/` says B, and the third,
    // plain, mkfs would refuse the image as another store's (the first version did that).
    // Here the retry is killed after making its block link and an empty db.
    let dir = scratch_dir();
    let store = dir.path().join("s");
    let img = image(&dir.path().join("img"));
    killed_after_the_label(dir.path(), &store, &img, [0xaa; 16]);
    fs::remove_dir_all(store.join(".mkfs")).unwrap();
    let staging = staging_with_uuid(&store, &[0xaa; 16]);
    std::os::unix::fs::symlink(fs::canonicalize(&img).unwrap(), staging.join("block")).unwrap();
    fs::create_dir(staging.join("db")).unwrap();

    let retry = Store::mkfs(&on_device(&store, &img));
    assert!(retry.is_ok(), "the third, plain, mkfs: {retry:?}");
    let label = Store::read_label(&store).unwrap();
    assert_eq!(
        label.store_uuid, [0xaa; 16],
        "the store the first attempt began"
    );
}

#[test]
fn a_force_mkfs_killed_while_clearing_its_own_db_dir_can_be_retried() {
    // `mkfs --force --db-dir D` replacing the store whose db is D clears D's RocksDB files
    // one by one, then unlinks `db`. Killed between two files, it leaves the link to a D that
    // no longer opens: its superblock cannot be read, so D is no longer "shown to be the
    // store's", and the same `mkfs --force --db-dir D` is refused for a non-empty D forever.
    let dir = scratch_dir();
    let store = dir.path().join("s");
    let db = dir.path().join("D");
    let mut options = on_file(&store);
    options.db_dir = Some(db.clone());
    Store::mkfs(&options).unwrap();
    fill(&store, 3);
    fs::remove_file(db.join("CURRENT")).unwrap(); // the first file the kill let go

    options.force = true;
    let retry = Store::mkfs(&options);
    assert!(
        retry.is_ok(),
        "the same mkfs --force after the kill: {retry:?}"
    );
}

#[test]
fn a_mkfs_killed_while_it_wrote_its_claim_on_the_db_dir_can_be_retried() {
    // The claim is created empty, then written: a kill in between left `D/.bstore-mkfs`
    // empty, and the retry refused D as "not empty" (tools/bstool/tests/operator.rs hit it in
    // about one run of three). An empty claim alone is the attempt's own debris; beside
    // anything else it proves nothing, and D stays refused.
    let dir = scratch_dir();
    let db = dir.path().join("D");
    fs::create_dir(&db).unwrap();
    fs::write(db.join(".bstore-mkfs"), b"").unwrap();
    let mut options = on_file(&dir.path().join("s"));
    options.db_dir = Some(db.clone());
    let retry = Store::mkfs(&options);
    assert!(retry.is_ok(), "a retry after a torn claim: {retry:?}");

    let other = dir.path().join("E");
    fs::create_dir(&other).unwrap();
    fs::write(other.join(".bstore-mkfs"), b"").unwrap();
    fs::write(other.join("notes.txt"), b"keep me").unwrap();
    let mut options = on_file(&dir.path().join("t"));
    options.db_dir = Some(other.clone());
    assert!(matches!(
        Store::mkfs(&options),
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(fs::read(other.join("notes.txt")).unwrap(), b"keep me");
}

// ---- --db-dir / --wal-dir inside another store ----

#[test]
fn a_wal_dir_inside_another_store_directory_is_refused() {
    // `--wal-dir s1/wal` names a directory that does not exist yet, so it passes as "new".
    // But s1 opens `s1/wal` as its WAL directory whenever it exists: s1 now replays s2's WAL
    // and no longer finds its own. A --db-dir or --wal-dir inside another store's directory
    // must be refused.
    let dir = scratch_dir();
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    Store::mkfs(&on_file(&s1)).unwrap();
    fill(&s1, 4);
    // s1 stops without a clean close (a daemon killed): its last write is only in its WAL.
    let daemon = Store::open(&s1, &OpenOptions::default()).unwrap();
    daemon.put("pg", "last", b"acknowledged").unwrap();
    drop(daemon);

    let mut options = on_file(&s2);
    options.wal_dir = Some(s1.join("wal"));
    let made = Store::mkfs(&options);
    println!("mkfs s2 --wal-dir s1/wal: {made:?}");
    assert_eq!(
        still_intact(&s1, 4),
        Ok(()),
        "s1 after s2 put its WAL in s1/wal"
    );
    let store = Store::open(&s1, &OpenOptions::default()).unwrap();
    assert_eq!(
        store.get("pg", "last").map_err(|e| e.to_string()),
        Ok(b"acknowledged".to_vec()),
        "s1's acknowledged write, in its own WAL"
    );
    store.close().unwrap();
    assert!(!s1.join("wal").exists(), "s2's WAL directory is inside s1");
}

// ---- read-only opens ----

#[test]
fn a_read_only_open_of_a_store_without_its_db_creates_nothing() {
    // rust-rocksdb creates the database directory in every mode, read-only included
    // (`fs::create_dir_all` before `rocksdb_open_for_read_only`). A store whose `db` is gone
    // (moved away, or a link to a file system that is not mounted) gets an empty `db/`
    // made by an inspection that promised to write nothing; behind a dangling link the
    // directory is made outside the store (under the mount point of the missing disk).
    let dir = scratch_dir();
    let store = dir.path().join("s");
    Store::mkfs(&on_file(&store)).unwrap();
    fs::rename(store.join("db"), dir.path().join("db-moved")).unwrap();

    assert!(Store::open_read_only(&store, &OpenOptions::default()).is_err());
    assert!(
        !store.join("db").exists(),
        "the read-only open created STORE/db"
    );
    assert!(Store::fsck(&store).is_err());
    assert!(!store.join("db").exists(), "fsck created STORE/db");

    let unmounted = dir.path().join("fast-disk/osd-db");
    std::os::unix::fs::symlink(&unmounted, store.join("db")).unwrap();
    assert!(Store::open_read_only(&store, &OpenOptions::default()).is_err());
    assert!(
        !unmounted.exists(),
        "the read-only open created the dangling db link's target"
    );
}

#[test]
fn mkfs_looking_at_a_dangling_db_link_creates_nothing_behind_it() {
    // Existing::inspect reads the superblock behind `db` to learn whose it is; through a
    // dangling link that RocksDB open creates the target directory, outside the store, even
    // when mkfs then refuses (no --force).
    let dir = scratch_dir();
    let store = dir.path().join("s");
    Store::mkfs(&on_file(&store)).unwrap();
    fs::remove_dir_all(store.join("db")).unwrap();
    let unmounted = dir.path().join("fast-disk/osd-db");
    std::os::unix::fs::symlink(&unmounted, store.join("db")).unwrap();

    let refused = Store::mkfs(&on_file(&store));
    assert!(
        matches!(refused, Err(Error::AlreadyExists(_))),
        "{refused:?}"
    );
    assert!(
        !unmounted.exists(),
        "mkfs created the dangling db link's target"
    );
}

// ---- checks before changes ----

#[test]
fn mkfs_force_with_a_geometry_it_then_refuses_destroys_nothing() {
    // "Everything is checked before anything changes" is not true of the geometry: mkfs_on
    // validates min_alloc_size (and the device's size) only after the old store's parts were
    // removed and the device's signatures wiped. `mkfs --force --min-alloc-size 3000` fails
    // with "must be a power of two", and the store it was to replace is already gone; on a
    // device the label (or file system) it found is zeroed by a command that failed.
    let dir = scratch_dir();
    let store = dir.path().join("s");
    Store::mkfs(&on_file(&store)).unwrap();
    fill(&store, 5);
    let mut bad = on_file(&store);
    bad.force = true;
    bad.format.min_alloc_size = 3000;
    let refused = Store::mkfs(&bad);
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    assert_eq!(
        still_intact(&store, 5),
        Ok(()),
        "the refused mkfs --force removed the store"
    );
}

#[test]
fn mkfs_force_with_a_geometry_it_then_refuses_leaves_the_device_alone() {
    // The same on a device: the signature found (here another store's label; an ext4
    // superblock alike) is wiped before the geometry is refused.
    let dir = scratch_dir();
    let img = image(&dir.path().join("img"));
    let other = dir.path().join("other");
    Store::mkfs(&on_device(&other, &img)).unwrap();
    fill(&other, 6);
    let mut bad = on_device(&dir.path().join("new"), &img);
    bad.force = true;
    bad.format.min_alloc_size = 3000;
    assert!(Store::mkfs(&bad).is_err());
    assert_eq!(
        still_intact(&other, 6),
        Ok(()),
        "the refused mkfs --force wiped the device's label"
    );
}
