#!/usr/bin/env python3
"""Log cleaner throughput: fills a compacted topic (KEYS keys x VERSIONS versions of VALUE_BYTES
values, uncompressed), lets the active segment roll, and times the cleaner's first round from
its own log line (`cleaned log ... bytes_read=... mb_per_s=...`). Prints the MB/s read by the round
(bytes read / its duration) and MB/s of log compacted (half that: the first round reads the
whole log twice, once for the offset map and once for the recopy).

Usage: SLUICE_BIN=path/to/sluice bench/compaction.py [KEYS VERSIONS VALUE_BYTES]
Needs confluent-kafka (tests/python/requirements.txt)."""

import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

import tempfile  # noqa: E402

from conftest import Broker, wait_until  # noqa: E402
from kutil import create_topic, producer  # noqa: E402


def main():
    keys, versions, value_bytes = (int(a) for a in (sys.argv[1:4] or (50_000, 4, 500)))
    root = Path(tempfile.mkdtemp(prefix="sluice-cbench-"))
    b = Broker(root / "data", root, ["--log-cleaner-backoff-ms", "100",
                                     "--retention-check-interval-ms", "500", "--flush", "interval:1000"])
    b.start()
    try:
        topic = create_topic(b.bootstrap, "cbench", config={
            "cleanup.policy": "compact", "segment.ms": "2000",
            "min.cleanable.dirty.ratio": "0.01"})
        p = producer(b.bootstrap, linger_ms=50, batch_size=1_000_000, compression_type="none")
        value = b"v" * value_bytes
        t0 = time.monotonic()
        for _ in range(versions):
            for k in range(keys):
                while True:
                    try:
                        p.produce(topic, key=f"key-{k:08d}".encode(), value=value)
                        break
                    except BufferError:
                        p.poll(0.05)
            p.poll(0)
        assert p.flush(120) == 0
        produced = keys * versions * (value_bytes + 12)
        print(f"produced {keys * versions} records (~{produced / 1e6:.0f} MB of keys+values) "
              f"in {time.monotonic() - t0:.1f}s")

        def round_line():
            text = "".join(Path(p).read_text() for p in b.log_paths)
            return re.search(r"cleaned log .*", text)

        line = wait_until(round_line, 300, "the first cleaning round", interval=0.5).group(0)
        fields = dict(re.findall(r"(\w+)=([\w.]+)", line))
        print(line)
        print(f"cleaner: {int(fields['bytes_read']) / 1e6:.1f} MB read, "
              f"{int(fields['bytes_written']) / 1e6:.1f} MB written, "
              f"{float(fields['mb_per_s']):.0f} MB/s read (both passes), "
              f"{float(fields['mb_per_s']) / 2:.0f} MB/s of log compacted, "
              f"records removed {fields['records_removed']}, cpus {os.cpu_count()}")
    finally:
        b.stop()


if __name__ == "__main__":
    main()
