#!/usr/bin/env bash
# Times fsck on a fragmented store, against fio reading the same bytes the same way.
#
#   tools/fsck-bench.sh DEVICE [WRITTEN_BYTES] [RUNS]
#
# DESTROYS DEVICE: makes a store on it (mkfs --force), fills it like the fragmented BlueStore OSD
# of BENCHMARKING.md (4 MiB objects, every other 16 KiB punched; 14 GiB written by default,
# leaving 7 GiB allocated), then runs RUNS times (default 3): shallow fsck, deep fsck, and fio
# reading the same number of bytes in 16 KiB reads at queue depth 64 (deep fsck's), twice: in
# device order with 16 KiB skipped after each read (the layout the punching left: fio's best
# case), and at random offsets. Prints one line per run; the times are whole processes.
set -euo pipefail
cd "$(dirname "$0")/.."
device="$1"
written="${2:-15032385536}"
runs="${3:-3}"
cargo build --release -q -p bstool --bin bstool --example fragmented_store
target="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d /var/tmp/fsck-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
store="$work/store"

"$target/bstool" --path "$store" mkfs --block "$device" --force > /dev/null
"$target/examples/fragmented_store" "$store" "$written"
seconds() { python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["runtime"]/1000)'; }
for run in $(seq "$runs"); do
  sync; echo 3 > /proc/sys/vm/drop_caches
  start=$(date +%s.%N)
  "$target/bstool" --path "$store" fsck --quiet > "$work/shallow.json"
  shallow=$(echo "$(date +%s.%N) - $start" | bc)
  sync; echo 3 > /proc/sys/vm/drop_caches
  start=$(date +%s.%N)
  "$target/bstool" --path "$store" fsck --deep --quiet > "$work/deep.json"
  deep=$(echo "$(date +%s.%N) - $start" | bc)
  read -r bytes reads clean < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["deep"]["bytes_read"], r["deep"]["reads"], r["clean"])' "$work/deep.json")
  fio_job() {
    fio --name=fsck-compare --filename="$device" --readonly --direct=1 --ioengine=io_uring \
      --rw="$1" --bs=16k --iodepth=64 --io_size="$bytes" --output-format=json | seconds
  }
  ordered=$(fio_job read:16k)
  random=$(fio_job randread)
  ratio() { echo "scale=2; $deep / $1" | bc; }
  echo "run $run: shallow fsck ${shallow} s; deep fsck ${deep} s (${bytes} bytes in ${reads} reads, clean ${clean}); fio in order ${ordered} s (deep/fio $(ratio "$ordered")), fio random ${random} s (deep/fio $(ratio "$random"))"
done
