"""Seeds for the replica_log target: a valid leader-epoch checkpoint, and leader batches that
follow the target's log (one marker at offset 0 in epoch 3): two batches at offsets 1 and 3 in
epochs 3 and 4, as a follower would fetch them.

    /root/.cache/sluice-venv/bin/python fuzz/seed_replica_log.py fuzz/corpus/replica_log
"""
import os
import struct
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def batch(base, epoch, count, tag):
    recs = b""
    for i in range(count):
        rec = bytes([0, 0, i << 1, 1, 2, tag, 0])
        recs += bytes([len(rec) * 2]) + rec
    body = struct.pack(">hiqqqhii", 0, count - 1, 1000, 1000, -1, -1, -1, count) + recs
    return struct.pack(">qiibI", base, 49 + len(recs), epoch, 2, crc32c(body)) + body


with open(os.path.join(out, "batches"), "wb") as f:
    f.write(batch(1, 3, 2, 65) + batch(3, 4, 3, 66))
with open(os.path.join(out, "checkpoint"), "wb") as f:
    f.write(b"0\n2\n1 0\n3 5\n")
