#!/usr/bin/env python3
"""The cost of broker-side schema validation (docs/SCHEMAS.md), measured.

Starts `sluice serve` ($SLUICE_BIN, default target/release/sluice) on free ports with a fresh
data dir, registers an Avro schema, and produces the same framed records (magic 0, schema id,
Avro binary) with librdkafka (confluent-kafka) to three topics: no validation, id validation
(`confluent.value.schema.validation=true`), and id + payload validation
(`sluice.schema.validation.parse=true`). For each it reports client-side throughput and the
broker's CPU time per million records (utime + stime from /proc, so it measures the broker's
work, not the client's speed). Usage:

    SLUICE_BIN=target/release/sluice bench/validation.py [--records N] [--batch-bytes B]

Run it with the venv from scripts/test (~/.cache/sluice-venv) or any with confluent-kafka.
"""

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

SCHEMA = {
    "type": "record",
    "name": "Reading",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "value", "type": "double"},
        {"name": "note", "type": "string"},
    ],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(s):
    b = s.encode()
    return zigzag(len(b)) + b


def record(schema_id, seq):
    body = (avro_string("sensor-%03d" % (seq % 500)) + zigzag(seq) + struct.pack("<d", seq * 0.5)
            + avro_string("x" * 60))
    return b"\x00" + struct.pack(">i", schema_id) + body


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_http(url, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.05)
    raise SystemExit("broker did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch-bytes", type=int, default=1_000_000)
    ap.add_argument("--client-log-level", type=int, default=3)
    args = ap.parse_args()
    binary = os.environ.get("SLUICE_BIN", "target/release/sluice")
    data = tempfile.mkdtemp(prefix="sluice-validation-")
    kport, hport = free_port(), free_port()
    broker = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--kafka-addr", "127.0.0.1:%d" % kport,
         "--http-addr", "127.0.0.1:%d" % hport, "--flush", "os"],
        stderr=subprocess.DEVNULL)
    try:
        wait_http("http://127.0.0.1:%d/health" % hport)
        bootstrap = "127.0.0.1:%d" % kport
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = {
            "v-none": {},
            "v-id": {"confluent.value.schema.validation": "true"},
            "v-parse": {"confluent.value.schema.validation": "true",
                        "sluice.schema.validation.parse": "true"},
        }
        for f in admin.create_topics([NewTopic(t, 1, 1, config=c) for t, c in topics.items()]).values():
            f.result()
        ids = {}
        for t in topics:
            req = urllib.request.Request(
                "http://127.0.0.1:%d/subjects/%s-value/versions" % (hport, t),
                data=json.dumps({"schema": json.dumps(SCHEMA)}).encode(),
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
            ids[t] = json.loads(urllib.request.urlopen(req).read())["id"]
        rows = []
        for t in topics:
            payloads = [record(ids[t], i) for i in range(10_000)]
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                          "batch.size": args.batch_bytes, "acks": 1,
                          "queue.buffering.max.messages": 2_000_000,
                          "log_level": args.client_log_level})
            failed = []
            cpu0, t0 = cpu_seconds(broker.pid), time.monotonic()
            for i in range(args.records):
                while True:
                    try:
                        p.produce(t, payloads[i % len(payloads)],
                                  on_delivery=lambda e, m: e and failed.append(e))
                        break
                    except BufferError:
                        p.poll(0.01)
            p.flush(120)
            secs = time.monotonic() - t0
            cpu = cpu_seconds(broker.pid) - cpu0
            if failed:
                raise SystemExit("%s: %d records refused, e.g. %s" % (t, len(failed), failed[0]))
            rows.append((t, topics[t], args.records / secs, cpu * 1e6 / args.records))
            del p
        base = rows[0][3]
        print("| topic | validation | records/s (client) | broker CPU s per 1M records | vs none |")
        print("|---|---|---:|---:|---:|")
        for t, cfg, rate, cpu in rows:
            what = "none" if not cfg else ("id + payload" if "sluice.schema.validation.parse" in cfg else "id")
            print("| %s | %s | %s | %.2f | %.1f× |" % (t, what, format(int(rate), ","), cpu, cpu / base))
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
