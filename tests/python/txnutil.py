"""Helpers for the transaction suites (test_transactions.py, test_txn_chaos.py): transactional
producers, reading a topic to its end under an isolation level, LSO/high-watermark queries, and
running txn_copier.py as a separate process."""

import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import IsolationLevel, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from kutil import OP_TIMEOUT_S, admin, consumer

HERE = Path(__file__).resolve().parent
RC = "read_committed"
RU = "read_uncommitted"


def txn_producer(bootstrap, txn_id, init=True, **conf):
    c = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    p = Producer(c)
    if init:
        p.init_transactions(30)
    return p


def produce(p, topic, values, partition=None, flush=True, headers=None):
    """Produces str values (key = value) and, if `flush`, waits until every one is acknowledged."""
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    for v in values:
        kw = {"key": v.encode(), "value": v.encode(), "on_delivery": cb}
        if partition is not None:
            kw["partition"] = partition
        if headers:
            kw["headers"] = headers
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if flush:
        assert p.flush(OP_TIMEOUT_S) == 0, "messages not delivered"
        assert not errors, f"delivery errors: {errors[:3]}"


def read_to_end(bootstrap, topic, partitions, isolation, timeout=30.0):
    """Reads every partition from the beginning to its end under `isolation` (the LSO for
    read_committed, the high watermark otherwise). Returns {partition: [Message]} in offset order."""
    c = consumer(bootstrap, isolation_level=isolation, enable_partition_eof=True)
    try:
        c.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
        out = {p: [] for p in range(partitions)}
        eof = set()
        deadline = time.monotonic() + timeout
        while len(eof) < partitions:
            assert time.monotonic() < deadline, f"{topic} ({isolation}): no end of partitions {set(range(partitions)) - eof}"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            eof.discard(m.partition())
            out[m.partition()].append(m)
        return out
    finally:
        c.close()


def values(msgs_by_partition):
    """{partition: [value str]}"""
    return {p: [m.value().decode() for m in ms] for p, ms in msgs_by_partition.items()}


def all_values(msgs_by_partition):
    return [m.value().decode() for ms in msgs_by_partition.values() for m in ms]


def watermarks(bootstrap, topic, partition, isolation):
    """(low, high) from a consumer of that isolation level: high is the LSO for read_committed."""
    c = consumer(bootstrap, isolation_level=isolation)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S, cached=False)
    finally:
        c.close()


def list_latest(bootstrap, topic, partition, isolation):
    """ListOffsets(latest) with the isolation level: the LSO for read_committed."""
    a = admin(bootstrap)
    tp = TopicPartition(topic, partition)
    level = IsolationLevel.READ_COMMITTED if isolation == RC else IsolationLevel.READ_UNCOMMITTED
    fs = a.list_offsets({tp: OffsetSpec.latest()}, isolation_level=level, request_timeout=OP_TIMEOUT_S)
    return fs[tp].result(OP_TIMEOUT_S).offset


def end_offsets(bootstrap, topic, partition):
    """{"rc": LSO, "ru": high watermark} by both ListOffsets and the consumer's watermark query;
    asserts the two agree."""
    rc = list_latest(bootstrap, topic, partition, RC)
    ru = list_latest(bootstrap, topic, partition, RU)
    assert watermarks(bootstrap, topic, partition, RC)[1] == rc
    assert watermarks(bootstrap, topic, partition, RU)[1] == ru
    return {"rc": rc, "ru": ru}


def header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode()
    return None


def start_copier(bootstrap, in_topic, out_topic, partition, group, txn_id, log, output=None, **opts):
    """Starts txn_copier.py; returns the Popen. Its stdout (one line per state, and librdkafka's
    log) is piped, or appended to the file `output`."""
    cmd = [sys.executable, str(HERE / "txn_copier.py"), "--bootstrap", bootstrap,
           "--in-topic", in_topic, "--out-topic", out_topic, "--partition", str(partition),
           "--group", group, "--txn-id", txn_id, "--log", str(log)]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    out = subprocess.PIPE if output is None else open(output, "a")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL)
    finally:
        if output is not None:
            out.close()


def read_line(proc, prefix, timeout):
    """Reads the process's stdout until a line starting with `prefix` (bounded)."""
    import select

    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if not r:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        if line.startswith(prefix):
            return line.rstrip()
    raise AssertionError(f"no {prefix!r} line within {timeout}s (exit {proc.poll()}); output: {seen[-20:]}")


# ---- Transaction admin APIs no installed Python client sends (hand-built flexible frames) -------

def _conn(bootstrap):
    from kproto_share import Conn

    return Conn(int(bootstrap.rsplit(":", 1)[1]))


def describe_producers(bootstrap, topic, partition):
    """DescribeProducers v0 for one partition: (error_code, [{producer_id, producer_epoch,
    last_sequence, coordinator_epoch, current_txn_start_offset}])."""
    import struct

    from kproto_share import TAGS, carr, cstr

    c = _conn(bootstrap)
    try:
        body = carr([cstr(topic) + carr([struct.pack(">i", partition)]) + TAGS]) + TAGS
        r = c.call(61, 0, body)
    finally:
        c.close()
    r.i32()
    out = None

    def prod():
        p = {"producer_id": r.i64(), "producer_epoch": r.i32(), "last_sequence": r.i32(),
             "last_timestamp": r.i64(), "coordinator_epoch": r.i32(),
             "current_txn_start_offset": r.i64()}
        r.tags()
        return p

    def part():
        nonlocal out
        idx, code = r.i32(), r.i16()
        r.cstr()
        producers = r.carr(prod)
        r.tags()
        if idx == partition:
            out = (code, producers)

    def top():
        r.cstr()
        r.carr(part)
        r.tags()

    r.carr(top)
    assert out is not None, "partition missing from DescribeProducers response"
    return out


def describe_transaction(bootstrap, txn_id):
    """DescribeTransactions v0 for one id: {error_code, state, timeout_ms, producer_id,
    producer_epoch, partitions: {(topic, partition)}}."""
    from kproto_share import TAGS, carr, cstr

    c = _conn(bootstrap)
    try:
        r = c.call(65, 0, carr([cstr(txn_id)]) + TAGS)
    finally:
        c.close()
    r.i32()

    def topic():
        name = r.cstr()
        parts = r.carr(r.i32)
        r.tags()
        return [(name, p) for p in parts]

    def state():
        s = {"error_code": r.i16(), "txn_id": r.cstr(), "state": r.cstr(), "timeout_ms": r.i32(),
             "start_ms": r.i64(), "producer_id": r.i64(), "producer_epoch": r.i16()}
        s["partitions"] = {tp for t in r.carr(topic) for tp in t}
        r.tags()
        return s

    states = r.carr(state)
    assert len(states) == 1 and states[0]["txn_id"] == txn_id, states
    return states[0]


def list_transactions(bootstrap, states=()):
    """ListTransactions v0: (error_code, {txn_id: state})."""
    from kproto_share import TAGS, carr, cstr

    c = _conn(bootstrap)
    try:
        r = c.call(66, 0, carr([cstr(s) for s in states]) + carr([]) + TAGS)
    finally:
        c.close()
    r.i32()
    code = r.i16()
    r.carr(r.cstr)

    def item():
        tid = r.cstr()
        r.i64()  # producer id
        state = r.cstr()
        r.tags()
        return tid, state

    return code, dict(r.carr(item))
