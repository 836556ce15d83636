#!/usr/bin/env bash
# Runs bstore end to end on a file-backed store: mkfs, put, get, ls, statfs, free-score.
# The first run compiles RocksDB from source (about 15-30 minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-debian.sh
cargo build -q -p bstool
bstool() { cargo run -q -p bstool -- "$@"; }

work=$(mktemp -d /var/tmp/bstore-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
store="$work/store"

set -x
bstool --path "$store" mkfs --size 1G
head -c 5M /dev/urandom > "$work/input"
bstool --path "$store" put pg.1 demo-object "$work/input"
bstool --path "$store" get pg.1 demo-object "$work/output"
cmp "$work/input" "$work/output"
bstool --path "$store" ls pg.1
bstool --path "$store" statfs
bstool --path "$store" free-score
bstool --path "$store" show-label
