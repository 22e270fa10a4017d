"""Debian's kcat (librdkafka 2.0.2: an older client that negotiates older API versions)."""

import shutil
import subprocess

import pytest
from confluent_kafka import TopicPartition

from kutil import OP_TIMEOUT_S, consumer, create_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(broker, *args, stdin=None, timeout=30):
    assert KCAT, "kcat is not installed (apt-get install -y kcat)"
    r = subprocess.run([KCAT, "-b", broker.bootstrap, *args], input=stdin, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kcat {args} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r.stdout.decode()


def test_kcat_version_links_librdkafka():
    out = subprocess.run([KCAT or "kcat", "-V"], capture_output=True, timeout=10).stdout.decode()
    assert "librdkafka" in out


def test_kcat_metadata_lists_topics(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=3)
    out = kcat(broker, "-L")
    assert f'topic "{t}" with 3 partitions' in out
    assert "1 brokers" in out
    assert f"127.0.0.1:{broker.kafka_port}" in out


def test_kcat_produce_keys_and_consume(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    lines = "".join(f"key{i % 5}:value {i}\n" for i in range(100))
    kcat(broker, "-P", "-t", t, "-K:", "-z", "snappy", stdin=lines.encode())
    out = kcat(broker, "-C", "-t", t, "-o", "beginning", "-e", "-q", "-f", "%k|%s|%p|%o\n")
    rows = [line.split("|") for line in out.splitlines() if line]
    assert len(rows) == 100
    assert sorted(r[1] for r in rows) == sorted(f"value {i}" for i in range(100))
    part_of_key = {}
    for key, val, part, off in rows:
        assert int(val.split()[1]) % 5 == int(key[3:])
        assert part_of_key.setdefault(key, part) == part, "kcat: one key in two partitions"
    per_part = {}
    for key, val, part, off in rows:
        per_part.setdefault(part, []).append(int(off))
    for offs in per_part.values():
        assert offs == list(range(len(offs)))
    # librdkafka through confluent-kafka sees the same log end.
    c = consumer(broker.bootstrap)
    try:
        total = sum(c.get_watermark_offsets(TopicPartition(t, p), timeout=OP_TIMEOUT_S)[1] for p in (0, 1))
        assert total == 100
    finally:
        c.close()


def test_kcat_balanced_consumer_group(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=3)
    kcat(broker, "-P", "-t", t, "-K:", stdin="".join(f"k{i}:g{i}\n" for i in range(60)).encode())
    g = unique("g")
    out = kcat(broker, "-G", g, "-o", "beginning", "-e", "-q", "-f", "%s\n", t, timeout=60)
    assert sorted(out.split()) == sorted(f"g{i}" for i in range(60))
    # kcat committed its position: the group's committed offsets add up to everything.
    c = consumer(broker.bootstrap, g)
    try:
        got = c.committed([TopicPartition(t, p) for p in range(3)], timeout=OP_TIMEOUT_S)
        assert sum(max(tp.offset, 0) for tp in got) == 60
    finally:
        c.close()
    # A second run of the same group has nothing left to read.
    out = kcat(broker, "-G", g, "-e", "-q", "-f", "%s\n", t, timeout=60)
    assert out.split() == []
