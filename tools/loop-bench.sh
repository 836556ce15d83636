#!/usr/bin/env bash
# Benchmarks bstore on a file-backed loop device with direct I/O, compared with fio in the same
# run, then tears the device down. Needs root (losetup) and fio.
#
#   tools/loop-bench.sh [SIZE] [extra bstool bench arguments...]
#
# SIZE defaults to 16G. bstore (and fio) get a raw loop device; the rocksdb and files engines, if
# asked for with --engine, get an ext4 file system on a second loop device of the same size, so
# every engine runs on the same kind of device. Backing files are written once in full first: a
# sparse or merely fallocated file is allocated by the host file system on first write, which
# halves every figure (see BENCHMARKING in the project notes).
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-16G}"
shift || true

tools/setup-debian.sh
cargo build --release -q -p bstool
bstool="${CARGO_TARGET_DIR:-target}/release/bstool"

work=$(mktemp -d /var/tmp/bstore-loop.XXXXXX)
loops=()
cleanup() {
  if mountpoint -q "$work/fs" 2>/dev/null; then umount "$work/fs" || true; fi
  for l in "${loops[@]}"; do losetup -d "$l" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

make_loop() {
  local backing="$1"
  fallocate -l "$size" "$backing"
  dd if=/dev/zero of="$backing" bs=16M oflag=direct conv=notrunc status=none \
    count=$(( $(numfmt --from=iec "$size") / (16 * 1024 * 1024) ))
  losetup --direct-io=on -f --show "$backing"
}

echo "prefilling two $size backing files in $work"
raw=$(make_loop "$work/raw.img"); loops+=("$raw")
fsdev=$(make_loop "$work/fs.img"); loops+=("$fsdev")
mkfs.ext4 -q "$fsdev"
mkdir -p "$work/fs"
mount "$fsdev" "$work/fs"
echo "raw loop device $raw (rotational: $(cat /sys/block/$(basename "$raw")/queue/rotational)); ext4 on $fsdev"

"$bstool" bench --device "$raw" --dir "$work/fs" --compare-fio "$@"
