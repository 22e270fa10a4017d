"""Produce and consume with librdkafka (confluent-kafka): keys, acks, ordering, offsets,
timestamps, compression, idempotence, size limits."""

import os
import time

import pytest
from confluent_kafka import OFFSET_END, KafkaError, TopicPartition

from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic, produce_all, producer


def test_same_key_same_partition(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=4)
    p = producer(broker.bootstrap)
    recs = [(b"key-%d" % (i % 13), b"value-%d" % i) for i in range(400)]
    got = produce_all(p, t, recs)
    part_of_key = {}
    for part, off, key, val in got:
        assert part_of_key.setdefault(key, part) == part, f"key {key} went to two partitions"
    assert len(set(part_of_key.values())) > 1, "13 keys all landed on one of 4 partitions"
    # Offsets per partition are dense 0..n-1, in send order.
    by_part = {}
    for part, off, key, val in got:
        by_part.setdefault(part, []).append(off)
    for part, offs in by_part.items():
        assert offs == list(range(len(offs))), f"partition {part} offsets {offs[:10]}..."

    # Consume every partition back, in order, keys where they were sent.
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, i, 0) for i in range(4)])
        msgs = consume_n(c, 400, idle_after=0.3)
        assert len(msgs) == 400
        seen = {}
        for m in msgs:
            assert part_of_key[m.key()] == m.partition()
            seen.setdefault(m.partition(), []).append(m.offset())
        for part, offs in seen.items():
            assert offs == sorted(offs) == list(range(len(offs)))
        sent_vals = {(part, off): val for part, off, key, val in got}
        assert {(m.partition(), m.offset()): m.value() for m in msgs} == sent_vals
    finally:
        c.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, unique, acks):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    p = producer(broker.bootstrap, acks=acks)
    got = produce_all(p, t, [(None, b"%s-%d" % (acks.encode(), i)) for i in range(100)])
    if acks != "0":
        assert [off for _, off, _, _ in got] == list(range(100))
    c = consumer(broker.bootstrap)
    try:
        # acks=0 has no acknowledgement to wait on: wait until the log end shows every record.
        deadline = time.monotonic() + 10
        while c.get_watermark_offsets(TopicPartition(t, 0), timeout=5)[1] < 100:
            assert time.monotonic() < deadline, "acks=0 records did not all arrive"
            time.sleep(0.05)
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=5) == (0, 100)
        c.assign([TopicPartition(t, 0, 0)])
        msgs = consume_n(c, 100, idle_after=0.3)
        assert [m.value() for m in msgs] == [b"%s-%d" % (acks.encode(), i) for i in range(100)]
        assert [m.offset() for m in msgs] == list(range(100))
    finally:
        c.close()


def test_offsets_for_times_and_watermarks(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    base = int(time.time() * 1000) - 3_600_000
    p = producer(broker.bootstrap)
    produce_all(p, t, [(None, b"r%d" % i, base + i * 1000) for i in range(10)])
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S) == (0, 10)
        # Exact hit, between two records, before the first, after the last.
        queries = [base + 3000, base + 5500, base - 10_000, base + 60_000]
        res = c.offsets_for_times([TopicPartition(t, 0, q) for q in queries[:1]], timeout=OP_TIMEOUT_S)
        assert res[0].offset == 3
        res = c.offsets_for_times([TopicPartition(t, 0, queries[1])], timeout=OP_TIMEOUT_S)
        assert res[0].offset == 6
        res = c.offsets_for_times([TopicPartition(t, 0, queries[2])], timeout=OP_TIMEOUT_S)
        assert res[0].offset == 0
        res = c.offsets_for_times([TopicPartition(t, 0, queries[3])], timeout=OP_TIMEOUT_S)
        assert res[0].offset in (OFFSET_END, -1)  # no such record: Kafka answers offset -1
        assert res[0].error is None

        # The record timestamps are the producer's (CreateTime).
        c.assign([TopicPartition(t, 0, 6)])
        msgs = consume_n(c, 4)
        assert [m.timestamp()[1] for m in msgs] == [base + i * 1000 for i in range(6, 10)]
    finally:
        c.close()


def test_assign_and_seek(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    p = producer(broker.bootstrap)
    produce_all(p, t, [(None, b"p1-%d" % i) for i in range(30)], partition=1)
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 1, 25)])
        msgs = consume_n(c, 5, idle_after=0.3)
        assert [(m.partition(), m.offset(), m.value()) for m in msgs] == \
            [(1, i, b"p1-%d" % i) for i in range(25, 30)]
        c.seek(TopicPartition(t, 1, 3))
        msgs = consume_n(c, 4)
        assert [m.offset() for m in msgs] == [3, 4, 5, 6]
        assert c.position([TopicPartition(t, 1)])[0].offset >= 7
        # Partition 0 is empty.
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S) == (0, 0)
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs(broker, unique, codec):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 20})
    vals = [(b"compressible-%s-%d-" % (codec.encode(), i)) * 20 for i in range(300)]
    got = produce_all(p, t, [(b"k%d" % i, v) for i, v in enumerate(vals)])
    assert [off for _, off, _, _ in got] == list(range(300))
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, 0)])
        msgs = consume_n(c, 300, idle_after=0.3)
        assert [m.value() for m in msgs] == vals
        assert [m.key() for m in msgs] == [b"k%d" % i for i in range(300)]
        assert [m.offset() for m in msgs] == list(range(300))
        # Offsets inside a compressed batch are addressable individually.
        c.seek(TopicPartition(t, 0, 157))
        m = consume_n(c, 1)[0]
        assert (m.offset(), m.value()) == (157, vals[157])
    finally:
        c.close()


def test_idempotent_producer_exactly_once_in_order(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=3)
    p = producer(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                                      "max.in.flight.requests.per.connection": 5,
                                      "batch.num.messages": 50})
    n = 3000
    got = produce_all(p, t, [(b"k%d" % (i % 7), b"%06d" % i) for i in range(n)], timeout=60)
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, i, 0) for i in range(3)])
        msgs = consume_n(c, n, timeout=30, idle_after=0.5)
        assert len(msgs) == n, f"expected exactly {n}, got {len(msgs)}"
        assert sorted(m.value() for m in msgs) == [b"%06d" % i for i in range(n)]
        per_part = {}
        for m in msgs:
            per_part.setdefault(m.partition(), []).append(m)
        for part, ms in per_part.items():
            assert [m.offset() for m in ms] == list(range(len(ms)))
            vals = [int(m.value()) for m in ms]
            assert vals == sorted(vals), f"partition {part} out of order"
        hw = sum(c.get_watermark_offsets(TopicPartition(t, i), timeout=5)[1] for i in range(3))
        assert hw == n
        assert {(part, off) for part, off, _, _ in got} == {(m.partition(), m.offset()) for m in msgs}
    finally:
        c.close()


def test_too_large_record_is_refused_and_broker_keeps_serving(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1, config={"max.message.bytes": "2048"})
    errors, ok = [], []

    def cb(err, msg):
        (errors if err is not None else ok).append(err or msg.offset())

    big = producer(broker.bootstrap, **{"compression.type": "none", "retries": 0})
    big.produce(t, value=os.urandom(20_000), on_delivery=cb)
    assert big.flush(OP_TIMEOUT_S) == 0
    assert not ok, "a record larger than max.message.bytes was accepted"
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]

    # The broker is still up and the same topic takes small records.
    p = producer(broker.bootstrap)
    got = produce_all(p, t, [(None, b"small-%d" % i) for i in range(5)])
    assert [off for _, off, _, _ in got] == [0, 1, 2, 3, 4]
    assert broker.alive()
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, 0)])
        assert [m.value() for m in consume_n(c, 5, idle_after=0.3)] == [b"small-%d" % i for i in range(5)]
    finally:
        c.close()


def test_log_append_time_topic(broker, unique):
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    t = create_topic(broker.bootstrap, unique(), config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(broker.bootstrap), t, [(None, b"a", 1_000_000), (None, b"b", 2_000_000)])
    after = int(time.time() * 1000)
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, 0)])
        for m in consume_n(c, 2):
            ts_type, ts = m.timestamp()
            assert ts_type == TIMESTAMP_LOG_APPEND_TIME
            assert before - 1000 <= ts <= after + 1000, "LogAppendTime must replace the producer's timestamp"
    finally:
        c.close()
