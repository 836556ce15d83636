//! The checked-in header is what cbindgen makes of the crate today: a changed signature
//! without a refreshed header fails here (and so in CI).

use std::path::Path;

#[test]
fn the_checked_in_header_matches_the_crate() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = crate_dir.join("include/bstore.h");
    if std::env::var_os("BSTORE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with capi/src: refresh it with \
         `BSTORE_BLESS=1 cargo test -p bstore-capi --test header` and commit it",
        path.display()
    );
}
