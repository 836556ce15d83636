#!/usr/bin/env python3
"""Writes a synthetic export stream (FORMAT.md §12) to stdout, written from the spec alone.

For benchmarks: `bstool import` of it fills a store fast (one process, group commits), where
a shell loop of `bstool put` would mount the store once per object.

  make-export-stream.py large  COUNT SIZE   # COUNT objects of SIZE bytes, random data
  make-export-stream.py small  COUNT SIZE KEYS   # COUNT objects of SIZE bytes with KEYS omap keys

Needs the `crc32c` package from PyPI (`pip install crc32c`).
"""

import os
import struct
import sys

import crc32c

MAGIC = b"bstore export\n\0\0"
HEADER, COLLECTION, OBJECT, DATA, OMAP, TRAILER = 1, 2, 3, 4, 5, 8
FRAME_BYTES = 4 << 20


class Stream:
    def __init__(self, out):
        self.out = out
        self.index = 0
        self.digest = crc32c.crc32c(MAGIC)
        self.counts = dict(collections=0, objects=0, data_bytes=0, omap_entries=0)
        out.write(MAGIC)

    def frame(self, kind, body):
        head = struct.pack("<BQI", kind, self.index, len(body))
        crc = crc32c.crc32c(body, crc32c.crc32c(head))
        frame = head + body + struct.pack("<I", crc)
        if kind != TRAILER:
            self.digest = crc32c.crc32c(frame, self.digest)
            self.index += 1
        self.out.write(frame)

    def header(self):
        body = struct.pack("<II", 1, 1) + bytes(16) + struct.pack("<QQ", 0, 0)
        self.frame(HEADER, body)

    def collection(self, name):
        self.counts["collections"] += 1
        self.frame(COLLECTION, bytes16(name))

    def object(self, name, size):
        self.counts["objects"] += 1
        body = bytes16(name) + struct.pack("<QI", size, 0) + b"\0"
        self.frame(OBJECT, body)

    def data(self, offset, data):
        self.counts["data_bytes"] += len(data)
        self.frame(DATA, struct.pack("<Q", offset) + bytes32(data))

    def omap(self, entries):
        self.counts["omap_entries"] += len(entries)
        body = struct.pack("<I", len(entries))
        for key, value in entries:
            body += bytes16(key) + bytes32(value)
        self.frame(OMAP, body)

    def trailer(self):
        c = self.counts
        body = struct.pack(
            "<QQQQQQI",
            self.index,
            c["collections"],
            c["objects"],
            c["data_bytes"],
            0,
            c["omap_entries"],
            self.digest,
        )
        self.frame(TRAILER, body)


def bytes16(b):
    return struct.pack("<H", len(b)) + b


def bytes32(b):
    return struct.pack("<I", len(b)) + b


def main():
    kind, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keys = int(sys.argv[4]) if kind == "small" else 0
    out = sys.stdout.buffer
    stream = Stream(out)
    stream.header()
    stream.collection(b"bench")
    # Object names ascend in byte order: zero-padded numbers.
    for i in range(count):
        stream.object(b"obj%08d" % i, size)
        for offset in range(0, size, FRAME_BYTES):
            stream.data(offset, os.urandom(min(FRAME_BYTES, size - offset)))
        if keys:
            stream.omap([(b"key%04d" % k, os.urandom(64)) for k in range(keys)])
    stream.trailer()
    out.flush()


if __name__ == "__main__":
    main()
