#!/usr/bin/env python3
"""The cost of conditional append (docs/EVENT_SOURCING.md), measured.

Starts `sluice serve` ($SLUICE_BIN, default target/release/sluice) on free ports with a fresh
data dir (`--flush os`) and produces the same keyed 100-byte records with librdkafka
(confluent-kafka, not idempotent, acks=1) to three topics of one partition:

- `plain`: no config;
- `cond-index`: `sluice.conditional.append.enable=true`, records without condition headers
  (the broker walks every record and keeps the key index);
- `cond-key`: the same config, every record with `sluice.expected.key.offset: -1` on a key
  never written before (every record is checked and enters the index: the worst case).

Keys: `plain` and `cond-index` use 10,000 keys round robin; `cond-key` one new key per record.
For each it reports client-side throughput and the broker's CPU time per million records
(utime + stime from /proc). Usage:

    SLUICE_BIN=target/release/sluice bench/conditional.py [--records N]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from validation import cpu_seconds, free_port, wait_http  # noqa: E402

COND = {"sluice.conditional.append.enable": "true"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    binary = os.environ.get("SLUICE_BIN", "target/release/sluice")
    data = tempfile.mkdtemp(prefix="sluice-conditional-")
    kport, hport = free_port(), free_port()
    broker = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--kafka-addr", "127.0.0.1:%d" % kport,
         "--http-addr", "127.0.0.1:%d" % hport, "--flush", "os"],
        stderr=subprocess.DEVNULL)
    try:
        wait_http("http://127.0.0.1:%d/health" % hport)
        bootstrap = "127.0.0.1:%d" % kport
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = {"plain": {}, "cond-index": COND, "cond-key": COND}
        for f in admin.create_topics([NewTopic(t, 1, 1, config=c) for t, c in topics.items()]).values():
            f.result()
        value = b"v" * 100
        rows = []
        for t in topics:
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": 1,
                          "enable.idempotence": False, "batch.size": 1_000_000,
                          "queue.buffering.max.messages": 2_000_000, "log_level": 3})
            failed = []
            cpu0, t0 = cpu_seconds(broker.pid), time.monotonic()
            for i in range(args.records):
                if t == "cond-key":
                    key, headers = b"key-%d" % i, [("sluice.expected.key.offset", b"-1")]
                else:
                    key, headers = b"key-%d" % (i % 10_000), None
                while True:
                    try:
                        p.produce(t, value, key=key, headers=headers,
                                  on_delivery=lambda e, m: e and failed.append(e))
                        break
                    except BufferError:
                        p.poll(0.01)
            p.flush(300)
            secs = time.monotonic() - t0
            cpu = cpu_seconds(broker.pid) - cpu0
            if failed:
                raise SystemExit("%s: %d records refused, e.g. %s" % (t, len(failed), failed[0]))
            rows.append((t, args.records / secs, cpu * 1e6 / args.records))
            del p
        base = rows[0][2]
        print("| topic | records/s (client) | broker CPU s per 1M records | vs plain |")
        print("|---|---:|---:|---:|")
        for t, rate, cpu in rows:
            print("| %s | %s | %.2f | %.2f× |" % (t, format(int(rate), ","), cpu, cpu / base))
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
