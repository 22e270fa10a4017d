"""Compacted topics (cleanup.policy=compact / compact,delete) against the real binary, with
librdkafka: the latest value per key survives, offsets never change, tombstones go after
delete.retention.ms, keyless records are refused, retention still applies to compact,delete,
and neither a restart nor a kill -9 in the middle of cleaning loses anything.

T11/T14 of the research test plan; T12 (transactions) needs the transaction branches."""

import random
import time

from confluent_kafka import KafkaError, TopicPartition

from conftest import wait_until
from kutil import consumer, create_topic, metric, produce_all, producer, scrape_metrics

# The cleaner looks for work every 200 ms; segments roll (by segment.ms) at the retention check.
FAST = ["--initial-rebalance-delay-ms", "300", "--log-cleaner-backoff-ms", "200",
        "--retention-check-interval-ms", "200"]

COMPACT = {
    "cleanup.policy": "compact",
    "segment.ms": "300",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "8000",
}


def scan(bootstrap, topic, isolation="read_uncommitted"):
    """Every record of partition 0 from offset 0 to the end: [(offset, key, value)]."""
    c = consumer(bootstrap, enable_partition_eof=True, isolation_level=isolation)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, f"no end of partition after {len(out)} records"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consumer error: {m.error()}")
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()


def latest(records):
    """key -> value of the last record per key (None for a tombstone)."""
    out = {}
    for _, k, v in records:
        out[k] = v
    return out


def assert_strictly_increasing(records):
    offsets = [o for o, _, _ in records]
    assert all(a < b for a, b in zip(offsets, offsets[1:])), "offsets must strictly increase"


def cleaner_rounds(b):
    return metric(scrape_metrics(b.http), "sluice_log_cleaner_rounds_total") or 0


def produce_versions(b, topic, keys, versions, tombstone_every=10):
    """`versions` rounds over `keys` keys; the last round deletes every `tombstone_every`-th key.
    Returns the expected final state (tombstoned keys absent)."""
    p = producer(b.bootstrap, linger_ms=20)
    expect = {}
    for v in range(versions):
        recs = []
        for k in range(keys):
            key = f"k{k:05d}".encode()
            if v == versions - 1 and k % tombstone_every == 0:
                recs.append((key, None))
                expect.pop(key, None)
            else:
                val = f"{key.decode()}-v{v}".encode()
                recs.append((key, val))
                expect[key] = val
        produce_all(p, topic, recs)
    return expect


def test_t11_latest_per_key_tombstones_and_offsets(broker_factory, unique):
    b = broker_factory(FAST)
    topic = create_topic(b.bootstrap, unique("compact"), config=COMPACT)
    keys, versions = 1000, 20
    expect = produce_versions(b, topic, keys, versions)
    old_end = keys * versions

    # Before any cleaning the log holds every version.
    # Cleaning: once the active segment rolled (segment.ms) and the cleaner ran, only the
    # latest record per key is left, tombstones included (delete.retention.ms not passed yet).
    def compacted():
        recs = scan(b.bootstrap, topic)
        return recs if len(recs) == keys else None

    recs = wait_until(compacted, 30, "the cleaner to keep one record per key", interval=0.3)
    assert_strictly_increasing(recs)
    tombstones = [r for r in recs if r[2] is None]
    assert len(tombstones) == keys // 10
    state = latest(recs)
    assert {k: v for k, v in state.items() if v is not None} == expect
    # Offsets never change: each record is where it was produced (the last round's offsets).
    for o, k, _ in recs:
        assert o == (versions - 1) * keys + int(k[1:])
    assert cleaner_rounds(b) >= 1

    # After delete.retention.ms the tombstones go too.
    def tombstones_gone():
        recs = scan(b.bootstrap, topic)
        return recs if len(recs) == keys - keys // 10 else None

    recs = wait_until(tombstones_gone, 40, "tombstones to be removed after delete.retention.ms",
                      interval=0.5)
    assert latest(recs) == expect
    assert_strictly_increasing(recs)

    # New records get offsets past the old log end; reading at a removed offset gives the next.
    p = producer(b.bootstrap)
    (res,) = produce_all(p, topic, [(b"k00001", b"new")])
    assert res[1] == old_end
    c = consumer(b.bootstrap)
    c.assign([TopicPartition(topic, 0, 5)])
    m = None
    deadline = time.monotonic() + 15
    while m is None or m.error():
        assert time.monotonic() < deadline
        m = c.poll(0.2)
    assert m.offset() > 5
    c.close()


def test_t14_keyless_refused_with_invalid_record(broker_factory, unique):
    b = broker_factory(FAST)
    topic = create_topic(b.bootstrap, unique("compact"), config={"cleanup.policy": "compact"})
    p = producer(b.bootstrap, retries=0)
    errors = []
    p.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD  # 87
    # Keyed records are fine, and the topic keeps working.
    produce_all(p, topic, [(b"k", b"v")])
    # compact,delete: also refuses keyless records.
    both = create_topic(b.bootstrap, unique("both"), config={"cleanup.policy": "compact,delete"})
    errors.clear()
    p.produce(both, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD


def test_t14_compact_delete_still_applies_retention(broker_factory, unique):
    b = broker_factory(FAST)
    conf = {"segment.ms": "200", "retention.ms": "1000"}
    both = create_topic(b.bootstrap, unique("both"), config={**conf, "cleanup.policy": "compact,delete"})
    only = create_topic(b.bootstrap, unique("only"), config={**conf, "cleanup.policy": "compact"})
    p = producer(b.bootstrap)
    old = int(time.time() * 1000) - 10_000
    for t in (both, only):
        produce_all(p, t, [(f"k{i}".encode(), b"v", old) for i in range(20)])
    c = consumer(b.bootstrap)

    def start_of(t):
        return c.get_watermark_offsets(TopicPartition(t, 0), timeout=5)[0]

    wait_until(lambda: start_of(both) > 0, 30, "retention to delete compact,delete segments")
    # The compact-only topic has the same old timestamps, yet keeps its records.
    assert start_of(only) == 0
    assert len(scan(b.bootstrap, only)) == 20
    c.close()


def test_restart_and_kill9_mid_clean_lose_nothing(broker_factory, unique):
    b = broker_factory(FAST)
    topic = create_topic(b.bootstrap, unique("compact"), config={**COMPACT, "delete.retention.ms": "86400000"})
    rng = random.Random(7)
    p = producer(b.bootstrap, linger_ms=20)
    expect = {}
    keys = 3000
    # Several rounds, each followed by a kill -9 at a random moment while the cleaner works.
    for round_ in range(4):
        recs = []
        for k in range(keys):
            key = f"k{k:05d}".encode()
            val = f"{key.decode()}-r{round_}-".encode() + b"x" * rng.randint(50, 400)
            recs.append((key, val))
            expect[key] = val
        produce_all(p, topic, recs)
        before = cleaner_rounds(b)
        # Let the segment roll and cleaning start, then kill at a random moment.
        wait_until(lambda: cleaner_rounds(b) > before or rng.random() < 0.02, 20,
                   "the cleaner to be at work", interval=0.05)
        b.kill9()
        b.start()
        p = producer(b.bootstrap, linger_ms=20)
    # Graceful restart too.
    assert b.stop() == 0
    b.start()
    recs = wait_until(lambda: (lambda r: r if len(r) == keys else None)(scan(b.bootstrap, topic)),
                      40, "cleaning to finish after the restarts", interval=0.5)
    assert_strictly_increasing(recs)
    assert latest(recs) == expect
    leftovers = [f.name for f in b.data_dir.rglob("*") if f.name.endswith((".cleaned", ".swap"))]
    assert not leftovers, leftovers


def test_t12_transactions_and_compaction(broker_factory, unique):
    """Needs the transaction coordinator and partition-side transactions (txn/ptxn branches):
    commit v1, abort v2 (same key), leave v3 open. The cleaner drops the aborted v2, cleans
    nothing at or past v3's first offset (the LSO). Markers: test_t12_markers_go_after_delete_retention."""
    from confluent_kafka import Producer

    b = broker_factory(FAST)
    topic = create_topic(b.bootstrap, unique("txn"), config=COMPACT)

    def txp(tid):
        tp = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": tid,
                       "transaction.timeout.ms": 60000})
        tp.init_transactions(15)
        return tp

    tp = txp(unique("tid"))
    tp.begin_transaction()
    tp.produce(topic, key=b"k", value=b"v1")
    tp.commit_transaction(15)
    tp.begin_transaction()
    tp.produce(topic, key=b"k", value=b"v2")
    tp.abort_transaction(15)

    def aborted_gone():
        recs = scan(b.bootstrap, topic)
        return recs if recs and all(v != b"v2" for _, _, v in recs) else None

    # The segment rolls by segment.ms at the retention check; the cleaner then drops v2.
    wait_until(aborted_gone, 30, "the cleaner to drop the aborted v2", interval=0.5)
    open_tp = txp(unique("tid"))
    open_tp.begin_transaction()
    open_tp.produce(topic, key=b"k", value=b"v3")
    open_tp.flush(15)
    recs = scan(b.bootstrap, topic)
    # v3 is past the LSO: still there, uncleaned.
    assert [v for _, k, v in recs if k == b"k"][-1] == b"v3"
    committed = scan(b.bootstrap, topic, isolation="read_committed")
    assert latest(committed)[b"k"] == b"v1"
    open_tp.abort_transaction(15)


def skip_varint(data, at):
    while data[at] & 0x80:
        at += 1
    return at + 1


def partition_markers(b, topic):
    """(offset, producer id, is COMMIT) of every transaction marker in partition 0's segment
    files, read from disk (batch headers, format v2); None if the cleaner renamed a file while
    it was read."""
    import struct

    out = []
    try:
        for path in sorted((b.data_dir / f"{topic}-0").glob("*.log")):
            data = path.read_bytes()
            pos = 0
            while pos + 61 <= len(data):
                base, length = struct.unpack_from(">qi", data, pos)
                attributes = struct.unpack_from(">h", data, pos + 21)[0]
                if length < 49 or pos + 12 + length > len(data):
                    break
                if attributes & 0x20:
                    pid = struct.unpack_from(">q", data, pos + 43)[0]
                    # The control record: length, attributes, timestamp delta, offset delta,
                    # key length, then the key: version i16, type i16.
                    at = pos + 61
                    at = skip_varint(data, at) + 1
                    for _ in range(3):
                        at = skip_varint(data, at)
                    kind = struct.unpack_from(">h", data, at + 2)[0]
                    out.append((base, pid, kind == 1))
                pos += 12 + length
    except (FileNotFoundError, IndexError, struct.error):
        return None
    return out


def test_t12_markers_go_after_delete_retention(broker_factory, unique):
    """Kafka's rule for transaction markers: a COMMIT or ABORT marker goes once no batch of its
    transaction is left and delete.retention.ms has passed since a cleaning first found it so.
    One transactional producer: commit k=a1, abort k=a2, commit k=a3, commit j=x. a1 is
    shadowed by a3 and a2 aborted, so their markers go; a3's and x's stay (x is the producer's
    last batch, which keeps its transaction's marker, as Kafka keeps an active producer's)."""
    from confluent_kafka import Producer

    b = broker_factory(FAST)
    topic = create_topic(b.bootstrap, unique("txnm"),
                         config={**COMPACT, "delete.retention.ms": "3000"})
    tp = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": unique("tid"),
                   "transaction.timeout.ms": 60000})
    tp.init_transactions(15)
    for value, commit in [(b"a1", True), (b"a2", False), (b"a3", True)]:
        tp.begin_transaction()
        tp.produce(topic, key=b"k", value=value)
        tp.flush(15)  # an abort would purge a message not yet sent
        if commit:
            tp.commit_transaction(15)
        else:
            tp.abort_transaction(15)
    tp.begin_transaction()
    tp.produce(topic, key=b"j", value=b"x")
    tp.commit_transaction(15)
    # The coordinator writes a transaction's markers after it answers EndTxn: wait for all four.
    before = wait_until(lambda: (m := partition_markers(b, topic)) is not None and len(m) == 4 and m,
                        15, "the four transaction markers")
    assert [c for _, _, c in before] == [True, False, True, True], before
    commit_a3, commit_x = before[2][0], before[3][0]
    # A later record so the markers are all in closed (cleanable) segments.
    p = producer(b.bootstrap)
    produce_all(p, topic, [(b"z", b"1")])

    def markers_gone():
        m = partition_markers(b, topic)
        return m if m is not None and [o for o, _, _ in m] == [commit_a3, commit_x] else None

    wait_until(markers_gone, 60, "the markers of a1 and a2 to go", interval=0.5)
    expect = {b"k": b"a3", b"j": b"x", b"z": b"1"}
    for isolation in ("read_committed", "read_uncommitted"):
        recs = scan(b.bootstrap, topic, isolation=isolation)
        assert_strictly_increasing(recs)
        assert all(v not in (b"a1", b"a2") for _, _, v in recs), (isolation, recs)
        assert latest(recs) == expect, (isolation, recs)
    # A restart replays the cleaned log: the LSO is not held by a marker-less transaction.
    b.restart()
    committed = scan(b.bootstrap, topic, isolation="read_committed")
    assert latest(committed) == expect


def test_t14_keyless_message_and_record_error_over_produce_v8(broker_factory, unique):
    """Produce v8 carries Kafka's message and the record's index (librdkafka hides both)."""
    import struct

    from kutil import kafka_conn
    from test_hostile import produce_v7, read_response, record_batch, request

    b = broker_factory(FAST)
    topic = create_topic(b.bootstrap, unique("compact"), config={"cleanup.policy": "compact"})
    s = kafka_conn(b)
    # v8's request is v7's; record_batch writes keyless records.
    s.sendall(request(0, 8, 7, produce_v7(topic, 0, record_batch([b"a", b"b"]))))
    resp = read_response(s)
    pos = 4 + 4  # correlation id, topic count (1)
    (ln,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + ln + 4  # topic name, partition count (1)
    idx, err, base, _lat, _lso = struct.unpack_from(">ihqqq", resp, pos)
    pos += 30
    (nerr,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    batch_index, mlen = struct.unpack_from(">ih", resp, pos)
    pos += 6
    record_message = resp[pos:pos + mlen].decode()
    pos += mlen
    (elen,) = struct.unpack_from(">h", resp, pos)
    message = resp[pos + 2:pos + 2 + elen].decode()
    expected = f"Compacted topic cannot accept message without key in topic partition {topic}-0."
    assert (idx, err, base, nerr, batch_index) == (0, 87, -1, 1, 0)
    assert record_message == expected and message == expected
    s.close()
