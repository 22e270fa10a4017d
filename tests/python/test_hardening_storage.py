"""Hardening of the storage engine against the real binary (issue #8, items 3, 10 and 15b).

- Item 3: an index file is a hint; a bogus one never shortens a segment.
- Item 10: a batch claiming more records than it can hold is refused (INVALID_RECORD, as
  Kafka's LogValidator) and the log end does not move.
- Item 15b: a graceful shutdown leaves `.kafka_cleanshutdown`; a start removes it before
  serving and skips the CRC pass only when it was there; a crash (no marker) still recovers a
  torn tail.

Item 4 (directory fsyncs) has no outcome a test can observe without a power cut; it is covered
by unit tests in `crates/sluice-storage` (`directories_are_fsynced_at_each_change`).
"""

import struct

import pytest
from confluent_kafka import TopicPartition

from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic, produce_all, producer
from test_hostile import connect, crc32c, parse_produce_v7, produce_v7, read_response, record_batch, request

MARKER = ".kafka_cleanshutdown"
INVALID_RECORD = 87


def partition_dir(broker, topic, partition=0):
    """The directory of one partition's log under the data dir."""
    found = [d for d in broker.data_dir.rglob("*")
             if d.is_dir() and d.name.startswith(topic) and d.name.endswith(f"-{partition}")
             and any(d.glob("*.log"))]
    assert len(found) == 1, f"partition dir of {topic}-{partition}: {found}"
    return found[0]


def segments(d):
    return sorted(d.glob("*.log"))


def watermarks(bootstrap, topic, partition=0):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S)
    finally:
        c.close()


def read_all(bootstrap, topic, n):
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        return [m.value() for m in consume_n(c, n, idle_after=0.5)]
    finally:
        c.close()


def log_text(broker):
    return broker.log_paths[-1].read_text(errors="replace")


# ---------------------------------------------------------------- item 3


def test_bogus_index_never_cuts_an_older_segment(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), config={"segment.bytes": str(1 << 20)})
    values = [b"%06d" % i + b"v" * 4000 for i in range(400)]  # ~1.6 MiB: at least two segments
    produce_all(producer(b.bootstrap), t, [(None, v) for v in values], partition=0)
    d = partition_dir(b, t)
    segs = segments(d)
    assert len(segs) >= 2, segs
    oldest = segs[0]
    size = oldest.stat().st_size
    b.kill9()
    # The reported case: one index entry (relative offset 0 at byte 30) on an older segment.
    oldest.with_suffix(".index").write_bytes(struct.pack(">II", 0, 30))
    b.start()
    assert oldest.stat().st_size == size, "the segment was cut because of its index"
    assert watermarks(b.bootstrap, t) == (0, len(values))
    assert read_all(b.bootstrap, t, len(values)) == values
    # The index was rebuilt from the segment: its first entry is the first batch.
    assert oldest.with_suffix(".index").read_bytes()[:8] == struct.pack(">II", 0, 0)


# ---------------------------------------------------------------- item 10


def batch_claiming(count, last_offset_delta, attributes=0, values=(b"x",)):
    """A hand-built batch (valid CRC) whose header claims `count` records."""
    b = bytearray(record_batch(list(values)))
    struct.pack_into(">h", b, 21, attributes)
    struct.pack_into(">i", b, 23, last_offset_delta)
    struct.pack_into(">i", b, 57, count)
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


@pytest.mark.parametrize("what,count,delta,attributes", [
    ("2^31-1 records, uncompressed", 2**31 - 1, 2**31 - 2, 0),
    ("2^31-1 records, flagged gzip", 2**31 - 1, 2**31 - 2, 1),
    ("more records than 7-byte minimum allows", 10, 9, 0),
    ("delta disagrees with count", 1, 5, 0),
    ("negative count", -1, -2, 0),
])
def test_batch_with_impossible_record_count_is_refused(broker_factory, unique, what, count, delta, attributes):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique())
    s = connect(b)
    try:
        s.sendall(request(0, 7, 1, produce_v7(t, 0, record_batch([b"first"]))))
        assert parse_produce_v7(read_response(s)) == [(t, 0, 0, 0)]
        s.sendall(request(0, 7, 2, produce_v7(t, 0, batch_claiming(count, delta, attributes))))
        res = parse_produce_v7(read_response(s))
        assert [(r[0], r[1], r[2]) for r in res] == [(t, 0, INVALID_RECORD)], f"{what}: {res}"
        # The log end did not move, and the next batch gets the next offset.
        s.sendall(request(0, 7, 3, produce_v7(t, 0, record_batch([b"second"]))))
        assert parse_produce_v7(read_response(s)) == [(t, 0, 0, 1)]
    finally:
        s.close()
    assert watermarks(b.bootstrap, t) == (0, 2)
    assert read_all(b.bootstrap, t, 2) == [b"first", b"second"]


# ---------------------------------------------------------------- item 15b


def test_clean_shutdown_marker_round_trip(broker_factory, unique):
    b = broker_factory()
    marker = b.data_dir / MARKER
    assert not marker.exists()
    t = create_topic(b.bootstrap, unique())
    values = [b"v%d" % i for i in range(50)]
    produce_all(producer(b.bootstrap, acks="all"), t, [(None, v) for v in values], partition=0)
    assert b.stop() == 0
    assert marker.exists(), "a graceful shutdown writes the marker"
    assert "clean-shutdown marker written" in log_text(b)
    b.start()
    assert not marker.exists(), "the marker is removed before writes are served"
    assert "the last run shut down cleanly" in log_text(b)
    assert watermarks(b.bootstrap, t) == (0, len(values))
    assert read_all(b.bootstrap, t, len(values)) == values
    # Writes after a clean start work and survive a crash (no marker then).
    produce_all(producer(b.bootstrap, acks="all"), t, [(None, b"after")], partition=0)
    b.kill9()
    assert not marker.exists()
    b.start()
    assert "no clean-shutdown marker" in log_text(b)
    assert read_all(b.bootstrap, t, len(values) + 1) == values + [b"after"]


def test_crash_without_marker_still_truncates_a_torn_tail(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique())
    values = [b"v%d" % i for i in range(20)]
    produce_all(producer(b.bootstrap, acks="all"), t, [(None, v) for v in values], partition=0)
    seg = segments(partition_dir(b, t))[-1]
    b.kill9()
    assert not (b.data_dir / MARKER).exists()
    good = seg.stat().st_size
    # A torn write: the first half of one more batch, what a crash mid-write leaves.
    torn = record_batch([b"torn-1", b"torn-2"])
    with open(seg, "ab") as f:
        f.write(torn[: len(torn) // 2])
    b.start()
    assert seg.stat().st_size == good, "recovery cuts the torn tail before serving"
    assert watermarks(b.bootstrap, t) == (0, len(values))
    produce_all(producer(b.bootstrap, acks="all"), t, [(None, b"next")], partition=0)
    assert read_all(b.bootstrap, t, len(values) + 1) == values + [b"next"]
