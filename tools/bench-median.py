#!/usr/bin/env python3
"""Medians of several `bstool bench --json` runs, as the Markdown table in README.md.

Usage: tools/bench-median.py RUN1.json RUN2.json RUN3.json

Each figure (and each ratio to fio) is taken in its own run, then the median across runs is
printed, so one noisy run does not decide a row. Skipped workloads are left out."""

import json
import statistics
import sys

runs = [json.load(open(f)) for f in sys.argv[1:]]
rows = {}
for run in runs:
    for r in run['results']:
        if r.get('skipped'): continue
        rows.setdefault((r['workload'], r['engine']), []).append(r)
def med(vals):
    vals=[v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
order = ['seq-write','seq-read','rand-write','rand-write-unaligned','rand-write-64k','rand-read',
         'write-latency','osd-bench','small-objects','omap','clone','aging']
print("| workload | engine | ops/s | MiB/s | p50 us | p99 us | CPU us/op | data WA | meta WA | txn/group | vs fio | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for engine in ['bstore','rocksdb','files']:
    for w in order:
        rs = rows.get((w, engine))
        if not rs: continue
        f = lambda k: med([r[k] for r in rs])
        ratio = med([r['fio_ratio'] for r in rs])
        dwa = med([r['data_write_amplification'] for r in rs]); mwa = med([r['metadata_write_amplification'] for r in rs])
        fmt = lambda v, d=0: '-' if v is None else f"{v:.{d}f}"
        lat = lambda p: med([r['latency_us'][p] for r in rs])
        tpg = med([r.get('transactions_per_group') for r in rs])
        print(f"| {w} | {engine} | {fmt(f('ops_per_sec'))} | {fmt(f('mib_per_sec'),1)} | {fmt(lat('p50'))} | {fmt(lat('p99'))} | {fmt(f('cpu_us_per_op'),1)} | {fmt(dwa,2)} | {fmt(mwa,2)} | {fmt(tpg,1)} | {fmt(ratio,2)} | {len(rs)} |")
