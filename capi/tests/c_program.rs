//! The C ABI from a C program: `tests/c/capi_test.c` is compiled with the system C compiler
//! against the checked-in header, linked with the shared library Cargo built beside this test,
//! and run on a fresh directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `libbstore_capi.so`: Cargo's output directory for this profile
/// (this test runs from its `deps` subdirectory).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.parent().unwrap(), deps]
        .into_iter()
        .find(|dir| dir.join("libbstore_capi.so").exists())
        .unwrap_or_else(|| panic!("no libbstore_capi.so near {}", exe.display()))
        .to_path_buf()
}

#[test]
fn the_c_program_round_trips_submits_from_threads_and_gets_errno_on_failure() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("capi_test");
    let lib = library_dir();
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = Command::new(&compiler)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&program)
        .arg(crate_dir.join("tests/c/capi_test.c"))
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lbstore_capi")
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler {compiler}: {e}"));
    assert!(
        compiled.status.success(),
        "compiling capi_test.c failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let ran = Command::new(&program).arg(work.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "capi_test failed ({}):\n{stdout}\n{}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr)
    );
    for part in [
        "round trip: ok",
        "concurrent submit: ok",
        "failure paths: ok",
    ] {
        assert!(stdout.contains(part), "{part} missing from:\n{stdout}");
    }
}
