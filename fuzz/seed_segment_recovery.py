"""Seeds for the segment_recovery target: small valid segments (1 to 6 batches) with exact
indexes, in each open mode, whole, torn, with a bogus index and with no index. The target's
input layout: [mode, index_len/2, timeindex_len/3, index interval, base flag] + index +
timeindex + segment.

    /root/.cache/sluice-venv/bin/python fuzz/seed_segment_recovery.py fuzz/corpus/segment_recovery
"""
import os
import struct
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from test_hostile import record_batch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def batches(counts, ts0=1000):
    seg = b""; idx = b""; tix = b""; off = 0
    for i, n in enumerate(counts):
        b = bytearray(record_batch([b"v%d" % j for j in range(n)], base_ts=ts0 + i))
        struct.pack_into(">q", b, 0, off)
        idx += struct.pack(">II", off, len(seg))
        tix += struct.pack(">qI", ts0 + i, off)
        seg += bytes(b)
        off += n
    return seg, idx, tix

k = 0
for counts in ([1], [2, 3], [1, 1, 1, 4], [5] * 6):
    seg, idx, tix = batches(counts)
    for mode in range(3):
        for variant in ("good", "torn", "bogus", "noidx"):
            s, i, t = seg, idx, tix
            if variant == "torn":
                s = seg[:-7]
            elif variant == "bogus":
                i = struct.pack(">II", 0, 30)
            elif variant == "noidx":
                i = b""; t = b""
            il = min(len(i) // 2, 255); tl = min(len(t) // 3, 255)
            i = i[: il * 2]; t = t[: tl * 3]
            data = bytes([mode, il, tl, 0, 0]) + i + t + s
            open(os.path.join(out, f"seed-{k}"), "wb").write(data); k += 1
print(k, "seeds")
