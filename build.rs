//! Intentionally empty: bstore's build dependencies exist only to unify host-side features with
//! those dev-dependencies enable, so RocksDB's C++ is compiled once for build, test and clippy
//! (see the comment in Cargo.toml).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
