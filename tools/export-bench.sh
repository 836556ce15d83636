#!/usr/bin/env bash
# Export and import speed against fio on the same device, run after run.
#
#   tools/export-bench.sh DEVICE LARGE_STREAM SMALL_STREAM [RUNS]
#
# LARGE_STREAM and SMALL_STREAM come from tools/make-export-stream.py (for the figures:
# `large 1024 4194304`, 4 GiB of 4 MiB objects, and `small 100000 4096 4`, 100,000 objects of
# 4 KiB with 4 omap keys each). Each run makes a new store on DEVICE (DESTROYING what it holds),
# imports the large stream (timed), exports it to /dev/null (timed), then fio writes and reads
# the same number of bytes sequentially in 4 MiB blocks at queue depth 8; then a new store,
# the small stream imported, and exported (timed). Prints one line per measurement: seconds,
# MiB/s or objects/s, and peak RSS. Needs root (the device), fio and GNU time.
set -euo pipefail
device=$1
large=$2
small=$3
runs=${4:-3}
bstool=${BSTOOL:-${CARGO_TARGET_DIR:-target}/release/bstool}
dir=$(mktemp -d /var/tmp/export-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
store=$dir/store
bytes=$("$bstool" verify-export "$large" --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_bytes"])')
mib=$((bytes >> 20))
objects=$("$bstool" verify-export "$small" --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"])')

timed() { # LABEL UNITS COMMAND...: runs it, prints seconds, UNITS per second and peak RSS
  local label=$1 units=$2
  shift 2
  /usr/bin/time -f "%e %M" -o "$dir/time" "$@" >/dev/null 2>"$dir/err" || {
    cat "$dir/err" >&2
    exit 1
  }
  read -r seconds rss_kib <"$dir/time"
  python3 -c "print(f'$label: {$seconds:.2f} s, {$units / $seconds:,.0f}/s, peak RSS {$rss_kib / 1024:.0f} MiB')"
}

fio_bw() { # PATTERN: MiB/s of fio over the same bytes
  fio --name=ref --filename="$device" --rw="$1" --bs=4M --iodepth=8 --ioengine=io_uring \
    --direct=1 --size="$bytes" --offset=1G --output-format=json |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; k="write" if j["write"]["bw"] else "read"; print(round(j[k]["bw"]/1024))'
}

for run in $(seq "$runs"); do
  echo "run $run"
  "$bstool" --path "$store" mkfs --block "$device" --force >/dev/null
  timed "  import $mib MiB (MiB)" "$mib" "$bstool" --path "$store" import -i "$large" --quiet
  timed "  export $mib MiB (MiB)" "$mib" "$bstool" --path "$store" export -o /dev/null --force --quiet
  echo "  fio seq write 4M QD8: $(fio_bw write) MiB/s"
  echo "  fio seq read 4M QD8: $(fio_bw read) MiB/s"
  rm -rf "$store"
  "$bstool" --path "$store" mkfs --block "$device" --force >/dev/null
  timed "  import $objects small objects (objects)" "$objects" "$bstool" --path "$store" import -i "$small" --quiet
  timed "  export $objects small objects (objects)" "$objects" "$bstool" --path "$store" export -o /dev/null --force --quiet
  rm -rf "$store"
done
