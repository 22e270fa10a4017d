#!/usr/bin/env python3
"""Seeds for the `cleaner_rewrite` fuzz target: a mode byte, then a stored batch (keys, a
keyless record, tombstones, a batch with the delete-horizon bit, a producer's transactional
batch, a gzip batch). Usage: fuzz/seed_cleaner_rewrite.py fuzz/corpus/cleaner_rewrite"""

import gzip
import struct
import sys
from pathlib import Path


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def zz(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def record(i, k, v):
    body = (b"\x00" + zz(0) + zz(i) + (zz(-1) if k is None else zz(len(k)) + k)
            + (zz(-1) if v is None else zz(len(v)) + v) + zz(0))
    return zz(len(body)) + body


def batch(recs, attrs=0, pid=-1, compress=False):
    body = b"".join(record(i, k, v) for i, (k, v) in enumerate(recs))
    if compress:
        body, attrs = gzip.compress(body), attrs | 1
    seq = 0 if pid >= 0 else -1
    after = struct.pack(">hiqqqhii", attrs, len(recs) - 1, 1000, 1000, pid, seq, seq, len(recs)) + body
    after_len = struct.pack(">ibI", -1, 2, crc32c(after)) + after
    return struct.pack(">qi", 100, len(after_len)) + after_len


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus/cleaner_rewrite")
    out.mkdir(parents=True, exist_ok=True)
    seeds = [
        batch([(b"a", b"1"), (b"b", None), (None, b"x")]),
        batch([(b"a", b"1"), (b"b", None)], attrs=0x40),
        batch([(b"k%d" % i, b"v" * i) for i in range(20)], pid=7),
        batch([(b"a", None)], attrs=0x10, pid=3),
        batch([(b"a", b"1"), (b"a", None), (b"c", b"3")], compress=True),
    ]
    for n, s in enumerate(seeds):
        for mode in (0, 0x13, 0xFF):
            (out / f"seed{n}-{mode:02x}").write_bytes(bytes([mode]) + s)


if __name__ == "__main__":
    main()
