#!/usr/bin/env bash
# Benchmarks bstore on a file-backed loop device with direct I/O, compared with fio in the same
# run, then tears the device down. Needs root (losetup) and fio.
#
#   tools/loop-bench.sh [SIZE] [extra bstool bench arguments...]
#
# SIZE defaults to 16G. The backing file is written once in full before the loop device is made:
# a sparse or merely fallocated file is allocated by the host file system on first write, which
# halves every figure (see BENCHMARKING in the project notes).
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-16G}"
shift || true

tools/setup-debian.sh
cargo build --release -q -p bstool
bstool="${CARGO_TARGET_DIR:-target}/release/bstool"

work=$(mktemp -d /var/tmp/bstore-loop.XXXXXX)
backing="$work/backing.img"
loop=""
cleanup() {
  if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "prefilling $size backing file $backing"
fallocate -l "$size" "$backing"
dd if=/dev/zero of="$backing" bs=16M oflag=direct conv=notrunc status=none \
  count=$(( $(numfmt --from=iec "$size") / (16 * 1024 * 1024) ))
loop=$(losetup --direct-io=on -f --show "$backing")
echo "loop device $loop (rotational: $(cat /sys/block/$(basename "$loop")/queue/rotational))"

"$bstool" bench --device "$loop" --compare-fio "$@"
