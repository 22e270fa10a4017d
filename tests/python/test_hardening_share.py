"""Hardening of share groups and queues (issue #8): hostile DLQ bookkeeping commits (item 7),
ShareFetch's `max_bytes` (item 9) and share state fsynced before it is acted on, whatever the
flush policy (item 5). Raw frames where no client sends the request we need."""

import os
import re
import shutil
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import TopicCollection

from conftest import DEFAULT_EXTRA_ARGS, wait_until
from kproto_share import Conn, ack_batch, batches, heartbeat, share_acknowledge, share_fetch
from kutil import OP_TIMEOUT_S, admin, create_topic, metric, producer, produce_all, scrape_metrics

I64_MIN, I64_MAX = -(2 ** 63), 2 ** 63 - 1


def topic_id(bootstrap, name) -> uuid.UUID:
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    (f,) = a.describe_topics(TopicCollection([name]), request_timeout=OP_TIMEOUT_S).values()
    tid = f.result(OP_TIMEOUT_S).topic_id
    return uuid.UUID(bytes=struct.pack(">qq", tid.get_most_significant_bits(),
                                       tid.get_least_significant_bits()))


def cpu_seconds(pid) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def commit_dlq_handled(bootstrap, topic, offset, metadata):
    """What `sluice dlq` commits, sent by anyone: group sluice-dlq, offset plus metadata.
    kafka-python, because librdkafka appends a NUL byte to commit metadata."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition
    from kafka.structs import OffsetAndMetadata

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id="sluice-dlq",
                      enable_auto_commit=False)
    try:
        c.commit({KTopicPartition(topic, 0): OffsetAndMetadata(offset, metadata, -1)})
        got = c.committed(KTopicPartition(topic, 0), metadata=True)
        assert (got.offset, got.metadata) == (offset, metadata), got
    finally:
        c.close()


# ---------------------------------------------------------------- item 7: hostile DLQ metadata

def test_hostile_dlq_commit_metadata_costs_nothing(broker_factory, unique):
    """A 1 KB commit for the DLQ bookkeeping group made the depth timer loop ~2^63 times (two
    cores busy, 1.2 GB RSS, after every restart too). Now the depth is computed from ranges:
    the metric gets the right value and the broker stays idle and small."""
    b = broker_factory()
    hostile = {
        # The commit: `last - first` overflowed.
        "dlq." + unique("h"): (0, f'{{"handled":[[{I64_MIN},0]]}}', 9),
        # Everything handled, in one range.
        "dlq." + unique("h"): (5, f'{{"handled":[[{I64_MIN},{I64_MAX}]]}}', 0),
        # Reversed, huge and overlapping ranges: 2, 5, 6 and 7 are left.
        "dlq." + unique("h"): (2, f'{{"handled":[[9,8],[3,4],[8,{I64_MAX}],[{I64_MAX},{I64_MAX}]]}}',
                               4),
    }
    p = producer(b.bootstrap)
    for topic in hostile:
        create_topic(b.bootstrap, topic)
        produce_all(p, topic, [(None, b"dead letter %d" % i) for i in range(10)])
    for topic, (offset, meta, _) in hostile.items():
        commit_dlq_handled(b.bootstrap, topic, offset, meta)

    for round_ in ("running", "after restart"):
        # The metric is refreshed once a second by the same timer that used to spin.
        seen = {}

        def depths_right():
            samples = scrape_metrics(b.http)
            seen.update({t: metric(samples, "sluice_dlq_depth", topic=t) for t in hostile})
            return all(seen[t] == want for t, (_, _, want) in hostile.items())
        wait_until(depths_right, 20, f"DLQ depths from hostile commits ({round_}): {seen}",
                   interval=0.2)
        pid = b.proc.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(3)  # three timer passes
        used, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        assert used < 0.25 * wall, f"broker used {used:.2f}s CPU in {wall:.2f}s ({round_})"
        assert rss_mb(pid) < 300, f"broker RSS {rss_mb(pid):.0f} MB ({round_})"
        # Still serving: a full produce/consume round trip.
        t = unique("t")
        create_topic(b.bootstrap, t)
        produce_all(producer(b.bootstrap), t, [(None, b"ok")])
        b.restart()


# ---------------------------------------------------------------- item 9: ShareFetch max_bytes

def join(conn, group, topic, member):
    code, _ = heartbeat(conn, group, member, [topic])
    assert code == 0, f"ShareGroupHeartbeat error {code}"


def set_earliest(bootstrap, group):
    from kutil import set_group_configs
    set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest"})


def test_share_fetch_honours_max_bytes(broker, unique):
    """ShareFetch ignored max_bytes (1 MiB asked, 120 MB returned). Now the response holds whole
    batches up to max_bytes (at least one, KIP-74), exactly the records of those batches are
    acquired, and records that did not fit are not counted as delivered."""
    topic, group, member = unique("t"), unique("g"), uuid.uuid4().hex
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, linger_ms=0, batch_num_messages=1)
    value = b"v" * 10_000
    for i in range(20):  # 20 batches of one 10 kB record each
        produce_all(p, topic, [(None, value)])
    set_earliest(broker.bootstrap, group)
    tid = topic_id(broker.bootstrap, topic)
    conn = Conn(broker.kafka_port)
    join(conn, group, topic, member)

    code, parts = share_fetch(conn, group, member, 0, tid, [0], max_bytes=25_000, max_wait_ms=2000)
    assert code == 0
    got = parts[0]
    sent = batches(got["records"])
    assert len(got["records"]) <= 25_000 and len(sent) == 2, sent
    assert got["acquired"] == [(0, 1, 1)], "exactly the records sent are acquired"

    # max_bytes smaller than one batch: that one batch still goes out (KIP-74).
    code, parts = share_fetch(conn, group, member, 1, tid, [0], max_bytes=1, max_wait_ms=2000)
    got = parts[0]
    assert [b[:2] for b in batches(got["records"])] == [(2, 2)]
    assert got["acquired"] == [(2, 2, 1)]

    # The rest in one go: every record delivered once (none was counted for the cut fetches).
    code, parts = share_fetch(conn, group, member, 2, tid, [0], max_bytes=10 << 20,
                              max_wait_ms=2000)
    got = parts[0]
    assert got["acquired"] == [(3, 19, 1)]
    assert len(batches(got["records"])) == 17
    conn.close()


def test_share_fetch_hands_out_whole_batches(broker, unique):
    """MaxRecords is soft, as in Kafka ("can be exceeded for alignment of batch boundaries"):
    a fetch for 10 records of a 100-record batch acquires all 100, so the batch is not sent
    whole to ten consumers for ten records each. Records released below the cursor are handed
    out exactly, and the next fetch starts at the next batch."""
    topic, group, member = unique("t"), unique("g"), uuid.uuid4().hex
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, linger_ms=50, batch_num_messages=100)
    for _ in range(2):  # two batches: 0..99 and 100..199
        produce_all(p, topic, [(None, b"v%d" % i) for i in range(100)])
    set_earliest(broker.bootstrap, group)
    tid = topic_id(broker.bootstrap, topic)
    conn = Conn(broker.kafka_port)
    join(conn, group, topic, member)

    _, parts = share_fetch(conn, group, member, 0, tid, [0], max_records=10, max_wait_ms=2000)
    assert [b[:2] for b in batches(parts[0]["records"])] == [(0, 99)]
    assert parts[0]["acquired"] == [(0, 99, 1)]
    # Release 5..9: the next fetch gets exactly those (released records are not extended),
    # then five new records, which start the next batch: that batch goes whole.
    _, parts = share_fetch(conn, group, member, 1, tid, [0], max_records=10, max_wait_ms=2000,
                           acks={0: [ack_batch(5, 9, [2])]})
    assert parts[0]["ack_error"] == 0
    assert parts[0]["acquired"] == [(5, 9, 2), (100, 199, 1)]
    assert [b[:2] for b in batches(parts[0]["records"])] == [(0, 99), (100, 199)]
    conn.close()


def test_share_fetch_max_bytes_spans_partitions(broker, unique):
    """max_bytes bounds the whole response: partitions take turns, none gets records acquired
    that the response does not carry, and nothing is lost or counted twice."""
    topic, group, member = unique("t"), unique("g"), uuid.uuid4().hex
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, linger_ms=0, batch_num_messages=1)
    for i in range(6):
        for part in (0, 1):
            produce_all(p, topic, [(None, b"w" * 10_000)], partition=part)
    set_earliest(broker.bootstrap, group)
    tid = topic_id(broker.bootstrap, topic)
    conn = Conn(broker.kafka_port)
    join(conn, group, topic, member)
    seen = {0: [], 1: []}
    for epoch in range(12):
        code, parts = share_fetch(conn, group, member, epoch, tid, [0, 1], max_bytes=25_000,
                                  max_wait_ms=500)
        assert code == 0
        total = sum(len(x["records"]) for x in parts.values())
        assert total <= 25_000, total
        for part, x in parts.items():
            sent = [(b0, b1) for b0, b1, _ in batches(x["records"])]
            acquired = [(a, b) for a, b, _ in x["acquired"]]
            assert [o for a, b in acquired for o in range(a, b + 1)] == \
                [o for a, b in sent for o in range(a, b + 1)], (part, sent, acquired)
            assert all(c == 1 for _, _, c in x["acquired"])
            seen[part] += [o for a, b in acquired for o in range(a, b + 1)]
        if len(seen[0]) + len(seen[1]) == 12:
            break
    assert seen == {0: list(range(6)), 1: list(range(6))}
    conn.close()


def test_share_ack_batches_must_ascend_and_not_overlap(broker, unique):
    """Kafka refuses a partition's acknowledgement list whose batches overlap or go backwards
    (INVALID_REQUEST, nothing applied), which also bounds the work one request can cause."""
    topic, group, member = unique("t"), unique("g"), uuid.uuid4().hex
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), topic, [(None, b"x%d" % i) for i in range(10)])
    set_earliest(broker.bootstrap, group)
    tid = topic_id(broker.bootstrap, topic)
    conn = Conn(broker.kafka_port)
    join(conn, group, topic, member)
    _, parts = share_fetch(conn, group, member, 0, tid, [0], max_wait_ms=2000)
    assert parts[0]["acquired"] == [(0, 9, 1)]
    renew_storm = [ack_batch(0, 9, [4])] * 10_000  # the same range renewed 10,000 times
    for epoch, bad in [(1, renew_storm), (2, [ack_batch(5, 9, [1]), ack_batch(0, 4, [1])]),
                       (3, [ack_batch(0, 5, [1]), ack_batch(5, 9, [1])])]:
        code, res = share_acknowledge(conn, group, member, epoch, tid, {0: bad})
        assert (code, res) == (0, {0: 42}), "INVALID_REQUEST"
    code, res = share_acknowledge(conn, group, member, 4, tid,
                                  {0: [ack_batch(0, 4, [1]), ack_batch(5, 9, [1])]})
    assert (code, res) == (0, {0: 0}), "nothing of the refused lists was applied"
    conn.close()


# ---------------------------------------------------------------- item 5: durable before answered

def test_share_state_is_fsynced_before_the_ack_is_answered_under_flush_os(broker_factory, unique):
    """`--flush os` relaxes topic data only: an acknowledgement is answered after the share state
    log (`__share_group_state-0`) is fsynced. Watched with strace: an fdatasync of that log must
    happen between the request and its answer."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    b = broker_factory(extra_args=[*DEFAULT_EXTRA_ARGS, "--flush", "os"])
    topic, group, member = unique("t"), unique("g"), uuid.uuid4().hex
    create_topic(b.bootstrap, topic)
    produce_all(producer(b.bootstrap), topic, [(None, b"job %d" % i) for i in range(4)])
    set_earliest(b.bootstrap, group)
    tid = topic_id(b.bootstrap, topic)
    conn = Conn(b.kafka_port)
    join(conn, group, topic, member)
    _, parts = share_fetch(conn, group, member, 0, tid, [0], max_wait_ms=2000)
    assert parts[0]["acquired"] == [(0, 3, 1)]

    out = b.log_dir / f"strace-{b.kafka_port}.txt"
    tracer = subprocess.Popen(["strace", "-f", "-y", "-ttt", "-e", "trace=fdatasync,fsync",
                               "-o", str(out), "-p", str(b.proc.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # strace prints nothing until attached; wait for its "attached" notice on stderr.
        line = tracer.stderr.readline().decode()
        if "attached" not in line:
            pytest.skip(f"cannot trace the broker: {line.strip()}")
        time.sleep(0.5)  # let it attach to every thread
        sent_at = time.time()
        code, res = share_acknowledge(conn, group, member, 1, tid, {0: [ack_batch(0, 3, [1])]})
        answered_at = time.time()
        assert (code, res) == (0, {0: 0})

        def synced():
            text = out.read_text() if out.exists() else ""
            return [float(m.group(1)) for m in re.finditer(
                r"^\d+\s+(\d+\.\d+) f(?:data)?sync\(\d+<[^>]*__share_group_state-0",
                text, re.M)]
        times = wait_until(synced, 10, "an fsync of the share state log")
        assert any(sent_at <= t <= answered_at for t in times), (
            f"share state fsynced at {times}, ack sent at {sent_at}, answered at {answered_at}")
    finally:
        tracer.terminate()
        tracer.wait(10)
        conn.close()
