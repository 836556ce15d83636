#!/usr/bin/env bash
# Builds everything with the oldest Rust the workspace declares (`rust-version` in Cargo.toml),
# so the declaration stays true. It needs that toolchain installed (`rustup toolchain install
# 1.95.0`, say) and refuses to pass without it rather than checking nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
if [ -z "$msrv" ]; then
  echo "check-msrv: no rust-version in Cargo.toml" >&2
  exit 1
fi
# rust-version "1.95" is met by toolchain 1.95.0: take the newest installed 1.95.x.
toolchain=$(rustup toolchain list | sed 's/ .*//' | grep -E "^${msrv//./\\.}(\.[0-9]+)?-" | sort -V | tail -1 || true)
if [ -z "$toolchain" ]; then
  echo "check-msrv: Rust $msrv is not installed: rustup toolchain install $msrv" >&2
  exit 1
fi
echo "check-msrv: building with $toolchain (rust-version $msrv)"
cargo "+$toolchain" check --workspace --all-targets
