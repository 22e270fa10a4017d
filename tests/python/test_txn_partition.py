"""The partition side of transactions and the read side (issue #9): producer state across
restarts, refusal of client control batches, the last stable offset in Fetch and ListOffsets,
DescribeProducers.

Raw-protocol tests run on any build. The tests that call `require_coordinator` open transactions
with a real client (confluent-kafka), so they need the transaction coordinator (InitProducerId
with a transactional.id, AddPartitionsToTxn, EndTxn and the markers it writes); they are
skipped while the broker does not advertise AddPartitionsToTxn.
"""

import struct
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import wait_until
from kutil import OP_TIMEOUT_S, create_topic, kafka_conn, recv_exact
from test_hostile import crc32c, kstr, zigzag_varint

SEGMENT_BYTES = 1024 * 1024  # the smallest segment.bytes a topic accepts
PID = 424242

# ---------------------------------------------------------------- raw protocol


def batch(values, producer_id=-1, epoch=-1, seq=-1, attributes=0, base_ts=None) -> bytes:
    """A magic-2 uncompressed record batch with a correct CRC-32C."""
    base_ts = int(time.time() * 1000) if base_ts is None else base_ts
    recs = b""
    for i, v in enumerate(values):
        body = (b"\x00" + zigzag_varint(0) + zigzag_varint(i) + zigzag_varint(-1)
                + zigzag_varint(len(v)) + v + zigzag_varint(0))
        recs += zigzag_varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", attributes, len(values) - 1, base_ts, base_ts,
                            producer_id, epoch, seq, len(values)) + recs
    after_len = struct.pack(">ibI", -1, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def request(api_key, version, corr, body, flexible=False) -> bytes:
    header = struct.pack(">hhi", api_key, version, corr) + kstr("txn-partition-test")
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def call(s, api_key, version, body, flexible=False) -> bytes:
    s.sendall(request(api_key, version, 7, body, flexible))
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    resp = recv_exact(s, size)
    assert struct.unpack_from(">i", resp, 0)[0] == 7
    return resp[5:] if flexible else resp[4:]


def produce(s, topic, records, txn_id=None):
    """Produce v7 of one batch to partition 0: (error_code, base_offset)."""
    body = (kstr(txn_id) + struct.pack(">hi", -1, 10_000) + struct.pack(">i", 1) + kstr(topic)
            + struct.pack(">ii", 1, 0) + struct.pack(">i", len(records)) + records)
    resp = call(s, 0, 7, body)
    pos = 4
    (ln,) = struct.unpack_from(">h", resp, pos); pos += 2 + ln
    pos += 4  # partition count
    _idx, err, base = struct.unpack_from(">ihq", resp, pos)
    return err, base


def list_offset(s, topic, timestamp=-1, isolation=0):
    """ListOffsets v2 for partition 0: (error_code, offset)."""
    body = (struct.pack(">ib", -1, isolation) + struct.pack(">i", 1) + kstr(topic)
            + struct.pack(">iiq", 1, 0, timestamp))
    resp = call(s, 2, 2, body)
    pos = 4  # throttle
    pos += 4
    (ln,) = struct.unpack_from(">h", resp, pos); pos += 2 + ln
    pos += 4
    _idx, err, _ts, offset = struct.unpack_from(">ihqq", resp, pos)
    return err, offset


def uvarint(n):
    out = bytearray()
    while True:
        if n & ~0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        else:
            out.append(n)
            return bytes(out)


def read_uvarint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]; pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def describe_producers(s, topic):
    """DescribeProducers v0 (flexible) for partition 0: (error_code, [producer dicts])."""
    name = topic.encode()
    body = (uvarint(2) + uvarint(len(name) + 1) + name + uvarint(2) + struct.pack(">i", 0)
            + b"\x00" + b"\x00")
    resp = call(s, 61, 0, body, flexible=True)
    pos = 4  # throttle
    _nt, pos = read_uvarint(resp, pos)
    ln, pos = read_uvarint(resp, pos); pos += ln - 1
    _np, pos = read_uvarint(resp, pos)
    _idx, err = struct.unpack_from(">ih", resp, pos); pos += 6
    ln, pos = read_uvarint(resp, pos)
    if ln:
        pos += ln - 1
    n, pos = read_uvarint(resp, pos)
    out = []
    for _ in range(n - 1):
        pid, epoch, last_seq, last_ts, coord, txn_start = struct.unpack_from(">qiiqiq", resp, pos)
        pos += 36
        _tags, pos = read_uvarint(resp, pos)
        out.append(dict(producer_id=pid, producer_epoch=epoch, last_sequence=last_seq,
                        last_timestamp=last_ts, coordinator_epoch=coord,
                        current_txn_start_offset=txn_start))
    return err, out


def advertised(broker, api_key) -> bool:
    with kafka_conn(broker) as s:
        resp = call(s, 18, 0, b"")
    (err, n) = struct.unpack_from(">hi", resp, 0)
    keys = {struct.unpack_from(">h", resp, 6 + 6 * i)[0] for i in range(n)}
    return err == 0 and api_key in keys


def fill_segments(s, topic, nbytes):
    """Non-idempotent filler of `nbytes` in 64 KiB batches (rolls segments)."""
    chunk = b"f" * (64 * 1024)
    for _ in range(nbytes // len(chunk) + 1):
        err, _ = produce(s, topic, batch([chunk]))
        assert err == 0


# ---------------------------------------------------------------- raw-protocol tests


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "kill9"])
def test_idempotent_duplicate_after_restart_gets_original_offsets(broker_factory, unique, crash):
    """The producer's last batch sits in an older segment; after a restart (clean, or kill -9)
    its retry is still recognised as a duplicate, from the snapshot written at the roll."""
    b = broker_factory()
    topic = create_topic(b.bootstrap, unique(), config={"segment.bytes": str(SEGMENT_BYTES)})
    first = batch([b"a", b"b"], producer_id=PID, epoch=0, seq=0)
    second = batch([b"c"], producer_id=PID, epoch=0, seq=2)
    with kafka_conn(b) as s:
        assert produce(s, topic, first) == (0, 0)
        assert produce(s, topic, second) == (0, 2)
        fill_segments(s, topic, 2 * SEGMENT_BYTES)
        _, end = list_offset(s, topic)
    assert len(list((b.data_dir).glob(f"{topic}-0/*.log"))) >= 3
    if crash:
        b.kill9()
        b.start()
    else:
        b.restart()
    with kafka_conn(b) as s:
        # Both retries answer with their original offsets and append nothing.
        assert produce(s, topic, second) == (0, 2)
        assert produce(s, topic, first) == (0, 0)
        assert list_offset(s, topic) == (0, end)
        # The next sequence is accepted, a gap is not.
        assert produce(s, topic, batch([b"d"], producer_id=PID, epoch=0, seq=3)) == (0, end)
        err, _ = produce(s, topic, batch([b"e"], producer_id=PID, epoch=0, seq=9))
        assert err == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        # An older epoch is fenced once a newer one wrote.
        assert produce(s, topic, batch([b"f"], producer_id=PID, epoch=1, seq=0))[0] == 0
        assert produce(s, topic, batch([b"g"], producer_id=PID, epoch=0, seq=4))[0] == 47


def test_control_batches_from_clients_are_refused(broker, unique):
    topic = create_topic(broker.bootstrap, unique())
    with kafka_conn(broker) as s:
        for attributes in (0x20, 0x30):
            ctl = batch([b"x"], producer_id=PID, epoch=0, seq=-1, attributes=attributes)
            err, _ = produce(s, topic, ctl)
            assert err == 87, f"attributes {attributes:#x}: got {err}"  # INVALID_RECORD
        # A transactional batch without the request's transactional_id is refused too.
        err, _ = produce(s, topic, batch([b"x"], producer_id=PID, epoch=0, seq=0, attributes=0x10))
        assert err == 48  # INVALID_TXN_STATE
        assert list_offset(s, topic) == (0, 0)


def test_lso_equals_high_watermark_without_transactions(broker, unique):
    """read_committed is librdkafka's and kafkajs' default: with no transactions it must see
    everything, in Fetch and in ListOffsets."""
    topic = create_topic(broker.bootstrap, unique())
    with kafka_conn(broker) as s:
        for i in range(3):
            assert produce(s, topic, batch([b"v%d" % i]))[0] == 0
        assert list_offset(s, topic, isolation=1) == (0, 3)
        assert list_offset(s, topic, isolation=0) == (0, 3)
    for level in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique(),
                      "isolation.level": level, "auto.offset.reset": "earliest"})
        try:
            assert c.get_watermark_offsets(TopicPartition(topic, 0), OP_TIMEOUT_S) == (0, 3)
            c.assign([TopicPartition(topic, 0, 0)])
            got = []
            deadline = time.monotonic() + OP_TIMEOUT_S
            while len(got) < 3 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    got.append(m.value())
            assert got == [b"v0", b"v1", b"v2"]
        finally:
            c.close()


def test_describe_producers(broker, unique):
    topic = create_topic(broker.bootstrap, unique())
    with kafka_conn(broker) as s:
        assert produce(s, topic, batch([b"a", b"b", b"c"], producer_id=PID, epoch=3, seq=0))[0] == 0
        err, producers = describe_producers(s, topic)
    assert err == 0
    assert len(producers) == 1
    p = producers[0]
    assert (p["producer_id"], p["producer_epoch"], p["last_sequence"]) == (PID, 3, 2)
    assert p["current_txn_start_offset"] == -1
    assert p["coordinator_epoch"] == -1
    assert p["last_timestamp"] > 0


# ---------------------------------------------------------------- with the coordinator

def require_coordinator(broker):
    if not advertised(broker, 24):  # AddPartitionsToTxn
        pytest.skip("needs the transaction coordinator (eos-txn branch)")


def consume_all(bootstrap, topic, level, group, expect, timeout=OP_TIMEOUT_S):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": level,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < expect:
            m = c.poll(0.3)
            if m is not None and m.error() is None:
                got.append(m.value())
        # A little more, to see nothing extra arrives.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value())
    finally:
        c.close()
    return got


def test_read_committed_stops_at_an_open_transaction(broker, unique):
    require_coordinator(broker)
    topic = create_topic(broker.bootstrap, unique())
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    plain.produce(topic, b"before", partition=0)
    plain.flush(OP_TIMEOUT_S)
    tx = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique()})
    tx.init_transactions(OP_TIMEOUT_S)
    tx.begin_transaction()
    tx.produce(topic, b"in-txn", partition=0)
    tx.flush(OP_TIMEOUT_S)
    plain.produce(topic, b"after", partition=0)
    plain.flush(OP_TIMEOUT_S)
    with kafka_conn(broker) as s:
        assert list_offset(s, topic, isolation=1) == (0, 1)  # the open txn's first offset
        assert list_offset(s, topic, isolation=0) == (0, 3)
        err, producers = describe_producers(s, topic)
        assert err == 0
        assert 1 in [p["current_txn_start_offset"] for p in producers]
    assert consume_all(broker.bootstrap, topic, "read_committed", unique(), 1) == [b"before"]
    assert consume_all(broker.bootstrap, topic, "read_uncommitted", unique(), 3) == [
        b"before", b"in-txn", b"after"]
    tx.commit_transaction(OP_TIMEOUT_S)
    with kafka_conn(broker) as s:
        wait_until(lambda: list_offset(s, topic, isolation=1) == (0, 4), OP_TIMEOUT_S,
                   "the LSO to pass the commit marker")
    assert consume_all(broker.bootstrap, topic, "read_committed", unique(), 3) == [
        b"before", b"in-txn", b"after"]


def test_aborted_data_is_hidden_from_read_committed_across_a_restart(broker_factory, unique):
    b = broker_factory()
    require_coordinator(b)
    topic = create_topic(b.bootstrap, unique())
    tx = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": unique()})
    tx.init_transactions(OP_TIMEOUT_S)
    tx.begin_transaction()
    tx.produce(topic, b"aborted-1", partition=0)
    tx.produce(topic, b"aborted-2", partition=0)
    tx.flush(OP_TIMEOUT_S)
    tx.abort_transaction(OP_TIMEOUT_S)
    tx.begin_transaction()
    tx.produce(topic, b"committed", partition=0)
    tx.commit_transaction(OP_TIMEOUT_S)
    tx = None
    for restart in (None, "kill9"):
        if restart:
            b.kill9()
            b.start()
        assert consume_all(b.bootstrap, topic, "read_committed", unique(), 1) == [b"committed"]
        assert consume_all(b.bootstrap, topic, "read_uncommitted", unique(), 3) == [
            b"aborted-1", b"aborted-2", b"committed"]
