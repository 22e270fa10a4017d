"""Issue #8 items 6 and 16: decompression is bounded by the topic's `max.message.bytes`
(decompression bombs sent raw to a schema-validated topic, read by ListOffsets and dead-lettered by a
share consumer leave the broker's memory flat), and `compression.type` takes Kafka's values: a
batch in another codec is recompressed on append, records unchanged.

Bombs are built without materialising them: gzip from one full-flushed deflate block of zeros
repeated (identical bytes, valid stream), zstd streamed. Memory is read from /proc/<pid>/status
(VmHWM, the peak resident set): the old code peaked at about the inflated size."""

import struct
import time
import zlib

import lz4.frame
import pytest
import snappy
import zstandard
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, OffsetSpec, ResourceType
from kafka.record.util import calc_crc32c

from conftest import _new_broker, wait_until
from kutil import (OP_TIMEOUT_S, admin, consume_n, consumer, create_topic, kafka_error, produce_all,
                   producer, set_group_configs, share_consume, share_consumer)
from test_hostile import connect, kstr, parse_produce_v7, produce_v7, read_response, request, zigzag_varint

GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4
INVALID_RECORD = 87
MB = 1 << 20
# The old code held the whole inflated batch (800 MiB); bounded, the broker stays near its idle size.
RSS_LIMIT_KB = 200 * 1024


@pytest.fixture
def broker(tmp_root):
    """A fresh broker per test: its peak RSS belongs to this test alone."""
    b = _new_broker(tmp_root).start()
    yield b
    alive = b.alive()
    b.kill9()
    assert alive, f"sluice died during the test:\n{b.log_tail()}"


def status_kb(broker, field):
    for line in open(f"/proc/{broker.proc.pid}/status"):
        if line.startswith(field + ":"):
            kb = int(line.split()[1])
            print(f"{field} of sluice: {kb} kB")
            return kb
    raise AssertionError(f"{field} not in /proc status")


# ---------------------------------------------------------------- batches

def record(i, value, ts_delta=0, key=None, headers=()):
    body = b"\x00" + zigzag_varint(ts_delta) + zigzag_varint(i)
    body += zigzag_varint(-1) if key is None else zigzag_varint(len(key)) + key
    body += zigzag_varint(len(value)) + value + zigzag_varint(len(headers))
    for k, v in headers:
        body += zigzag_varint(len(k)) + k + zigzag_varint(len(v)) + v
    return zigzag_varint(len(body)) + body


def batch(section, count, codec=0, base_ts=None, max_ts=None):
    """A magic-2 batch around an (already compressed) records section, correct CRC-32C."""
    base_ts = int(time.time() * 1000) if base_ts is None else base_ts
    max_ts = base_ts if max_ts is None else max_ts
    after_crc = struct.pack(">hiqqqhii", codec, count - 1, base_ts, max_ts, -1, -1, -1, count) + section
    after_len = struct.pack(">ibI", -1, 2, calc_crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def gzip_zeros(mib):
    """A single gzip member that inflates to `mib` MiB of zeros (about 1 KiB per MiB)."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * MB
    co.compress(chunk)
    co.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor's state is reset: every further MiB is the same bytes.
    block = co.compress(chunk) + co.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + block * mib + b"\x03\x00"
            + struct.pack("<II", crc, (mib * MB) & 0xFFFFFFFF))


def zstd_zeros(mib):
    """A zstd frame without a content size that inflates to `mib` MiB of zeros."""
    co = zstandard.ZstdCompressor(level=1).compressobj()
    chunk = b"\0" * MB
    return b"".join(co.compress(chunk) for _ in range(mib)) + co.flush()


def produce_raw(broker, topic, data, corr=7):
    s = connect(broker)
    try:
        s.sendall(request(0, 7, corr, produce_v7(topic, 0, data)))
        ((_, _, err, base),) = parse_produce_v7(read_response(s))
        return err, base
    finally:
        s.close()


def fetch_batches(broker, topic, offset=0):
    """Raw Fetch v4 of partition 0: [(base_offset, attributes, record_count)] of the stored batches."""
    body = (struct.pack(">iiiib", -1, 100, 1, 50 * MB, 0) + struct.pack(">i", 1) + kstr(topic)
            + struct.pack(">i", 1) + struct.pack(">iqi", 0, offset, 50 * MB))
    s = connect(broker)
    try:
        s.sendall(request(1, 4, 9, body))
        resp = read_response(s)
    finally:
        s.close()
    pos = 4 + 4 + 4  # correlation id, throttle, topic count
    (ln,) = struct.unpack_from(">h", resp, pos); pos += 2 + ln
    pos += 4  # partition count (1)
    _part, err, _hw, _lso = struct.unpack_from(">ihqq", resp, pos); pos += 22
    assert err == 0, f"fetch error {err}"
    (naborted,) = struct.unpack_from(">i", resp, pos); pos += 4 + max(naborted, 0) * 16
    (size,) = struct.unpack_from(">i", resp, pos); pos += 4
    data = resp[pos:pos + size]
    out = []
    at = 0
    while at + 61 <= len(data):
        base, blen = struct.unpack_from(">qi", data, at)
        if at + 12 + blen > len(data):
            break
        (attrs,) = struct.unpack_from(">h", data, at + 21)
        (count,) = struct.unpack_from(">i", data, at + 57)
        out.append((base, attrs, count))
        at += 12 + blen
    return out


def assert_still_serves(broker, unique):
    t = create_topic(broker.bootstrap, unique("after"))
    p = producer(broker.bootstrap)
    produce_all(p, t, [(b"k", b"fine")])
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING)])
        (m,) = consume_n(c, 1)
        assert m.value() == b"fine"
    finally:
        c.close()
    assert broker.alive()


# ---------------------------------------------------------------- item 6: bombs

def test_bombs_to_a_schema_validated_topic_are_refused_with_flat_memory(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config={"confluent.value.schema.validation": "true"})
    for codec, body in ((GZIP, gzip_zeros(800)), (ZSTD, zstd_zeros(800))):
        bomb = batch(body, 800, codec)
        assert len(bomb) < 1048588, "the compressed bomb itself is within max.message.bytes"
        err, _ = produce_raw(broker, t, bomb)
        assert err == INVALID_RECORD, f"codec {codec}: error {err}"
        assert status_kb(broker, "VmHWM") < RSS_LIMIT_KB, f"codec {codec}: peak RSS {status_kb(broker, 'VmHWM')} kB"
    # A zstd frame declaring a 1 TiB content size: refused on its header, nothing allocated.
    rle_block = (1 | (1 << 1) | (300 << 3)).to_bytes(3, "little") + b"\0"  # last block, RLE, 300 zeros
    frame = struct.pack("<I", 0xFD2FB528) + bytes([0xC0, 0x00]) + struct.pack("<Q", 1 << 40) + rle_block
    err, _ = produce_raw(broker, t, batch(bytes(frame), 1, ZSTD))
    assert err == INVALID_RECORD
    assert status_kb(broker, "VmHWM") < RSS_LIMIT_KB
    assert_still_serves(broker, unique)


def test_reading_topics_check_framing_before_decoding(broker, unique):
    """On topics whose records the broker reads, a batch with a bad CRC is refused as the
    append would refuse it (CORRUPT_MESSAGE), before anything is decompressed."""
    for config in ({"confluent.value.schema.validation": "true"}, {"compression.type": "zstd"}):
        t = create_topic(broker.bootstrap, unique(), config=config)
        bad = bytearray(batch(gzip_zeros(800), 800, GZIP))
        bad[-1] ^= 0xFF
        assert produce_raw(broker, t, bytes(bad))[0] == 2, config
    assert status_kb(broker, "VmHWM") < RSS_LIMIT_KB


@pytest.mark.parametrize("codec", [GZIP, ZSTD])
def test_list_offsets_over_a_stored_bomb_does_not_inflate_it(broker, unique, codec):
    # Under the default compression.type=producer the bomb is stored as sent (nothing decoded).
    t = create_topic(broker.bootstrap, unique())
    t0 = int(time.time() * 1000) - 60_000
    err, base = produce_raw(broker, t, batch(record(0, b"before"), 1, 0, base_ts=t0 - 1000))
    assert (err, base) == (0, 0)
    body = gzip_zeros(800) if codec == GZIP else zstd_zeros(800)
    err, base = produce_raw(broker, t, batch(body, 800, codec, base_ts=t0, max_ts=t0 + 1000))
    assert (err, base) == (0, 1)
    a = admin(broker.bootstrap)
    tp = TopicPartition(t, 0)

    def list_one(spec):
        (res,) = a.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT_S).values()
        r = res.result(OP_TIMEOUT_S)
        return r.offset, r.timestamp

    specs = [OffsetSpec.for_timestamp(t0), OffsetSpec.for_timestamp(t0 - 5000),
             OffsetSpec.for_timestamp(t0 + 500), OffsetSpec.max_timestamp(),
             OffsetSpec.for_timestamp(t0 + 5000)]
    answers = [list_one(spec) for spec in specs]
    assert status_kb(broker, "VmHWM") < RSS_LIMIT_KB, f"peak RSS {status_kb(broker, 'VmHWM')} kB"
    # Answered from the header: the batch starts at or after the time.
    assert answers[0] == (1, t0)
    assert answers[1] == (0, t0 - 1000)
    # Inside the batch: its records cannot be read within max.message.bytes; the batch start.
    assert answers[2] == (1, t0 + 1000)
    assert answers[3] == (1, t0 + 1000)
    assert answers[4][0] == -1
    assert_still_serves(broker, unique)


def test_list_offsets_inside_compressed_batches_is_exact(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    t0 = int(time.time() * 1000) - 60_000
    deltas = [0, 30, 10, 50, 20, 50, 40]
    section = b"".join(record(i, b"v%d" % i, d) for i, d in enumerate(deltas))
    err, _ = produce_raw(broker, t, batch(zstandard.ZstdCompressor().compress(section), len(deltas), ZSTD,
                                          base_ts=t0, max_ts=t0 + 50))
    assert err == 0
    a = admin(broker.bootstrap)
    tp = TopicPartition(t, 0)

    def list_one(spec):
        (res,) = a.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT_S).values()
        r = res.result(OP_TIMEOUT_S)
        return r.offset, r.timestamp

    assert list_one(OffsetSpec.for_timestamp(t0 + 15)) == (1, t0 + 30)
    assert list_one(OffsetSpec.for_timestamp(t0 + 31)) == (3, t0 + 50)
    assert list_one(OffsetSpec.max_timestamp()) == (3, t0 + 50), "the first record with the max"


def test_a_dead_lettered_bomb_is_archived_without_inflating_it(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = unique("g")
    set_group_configs(broker.bootstrap, g, {"share.auto.offset.reset": "earliest"})
    # 48 records of 1 MiB zeros in one zstd batch of a few KiB: the client can read it, the
    # broker must not inflate it past max.message.bytes (1 MiB) to copy it to the DLQ.
    n = 48
    co = zstandard.ZstdCompressor(level=1, write_content_size=True)
    section = b"".join(record(i, b"\0" * MB) for i in range(n))
    bomb = batch(co.compress(section), n, ZSTD)
    del section
    assert len(bomb) < 64 * 1024
    assert produce_raw(broker, t, bomb) == (0, 0)
    before = status_kb(broker, "VmHWM")
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        from confluent_kafka import AcknowledgeType
        got = share_consume(c, n, ack=lambda m: AcknowledgeType.REJECT)
        assert all(len(m.value()) == MB for m in got)
        del got
        # Not offered again: archived.
        assert share_consume(c, 0, idle_after=1.0) == []
        # The DLQ writer is not stuck: a plain rejected record is dead-lettered after the bomb.
        produce_all(producer(broker.bootstrap), t, [(b"k", b"plain")])
        (m,) = share_consume(c, 1, ack=lambda m: AcknowledgeType.REJECT)
        assert m.value() == b"plain"
    finally:
        c.close()
    d = consumer(broker.bootstrap)
    try:
        wait_until(lambda: ("dlq." + g) in admin(broker.bootstrap).list_topics(timeout=OP_TIMEOUT_S).topics,
                   15, "the DLQ topic")
        d.assign([TopicPartition("dlq." + g, 0, OFFSET_BEGINNING)])
        letters = consume_n(d, 1, idle_after=0.5)
    finally:
        d.close()
    grown = status_kb(broker, "VmHWM") - before
    assert grown < 24 * 1024, f"peak RSS grew by {grown} kB dead-lettering a {n} MiB batch"
    # The bomb's records were archived without a copy, and the broker says why.
    assert [m.value() for m in letters] == [b"plain"]
    assert "cannot be read for dead-lettering" in broker.log_tail(400)


# ---------------------------------------------------------------- item 16: compression.type

def describe_topic(bootstrap, topic):
    a = admin(bootstrap)
    (f,) = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=OP_TIMEOUT_S).values()
    return f.result(OP_TIMEOUT_S)


TOPIC_CODECS = {"uncompressed": 0, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}


@pytest.mark.parametrize("topic_codec", list(TOPIC_CODECS))
def test_topic_compression_type_recompresses_on_append(broker, unique, topic_codec):
    t = create_topic(broker.bootstrap, unique(), config={"compression.type": topic_codec})
    conf = describe_topic(broker.bootstrap, t)
    assert conf["compression.type"].value == topic_codec
    assert not conf["compression.type"].is_default
    assert conf["compression.zstd.level"].value == "3"
    sent = []
    t0 = int(time.time() * 1000) - 10_000
    # One idempotent producer per client codec: recompression keeps producer id, epoch and
    # sequence, or the next batch would be refused as out of order.
    for i, client in enumerate(["none", "gzip", "snappy", "lz4", "zstd"]):
        p = producer(broker.bootstrap, compression_type=client, enable_idempotence=True,
                     linger_ms=20, batch_num_messages=25)
        recs = [(b"k%d-%d" % (i, j), (b"%s-%d " % (client.encode(), j)) * 20, t0 + 100 * i + j)
                for j in range(60)]
        for k, v, ts in recs:
            p.produce(t, key=k, value=v, timestamp=ts, headers=[("h", b"%d" % j) for j in range(2)])
        assert p.flush(OP_TIMEOUT_S) == 0
        sent += recs
    batches = fetch_batches(broker, t)
    assert sum(n for _, _, n in batches) == len(sent)
    assert {attrs & 7 for _, attrs, _ in batches} == {TOPIC_CODECS[topic_codec]}
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING)])
        got = consume_n(c, len(sent), idle_after=0.3)
    finally:
        c.close()
    assert [(m.key(), m.value(), m.timestamp()[1]) for m in got] == sent
    assert all(m.headers() == [("h", b"0"), ("h", b"1")] for m in got)
    assert [m.offset() for m in got] == list(range(len(sent)))


def test_producer_compression_type_keeps_batches_as_sent(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    assert describe_topic(broker.bootstrap, t)["compression.type"].value == "producer"
    for client in ("gzip", "lz4"):
        produce_all(producer(broker.bootstrap, compression_type=client), t, [(b"k", b"v" * 100)] * 5)
    assert [attrs & 7 for _, attrs, _ in fetch_batches(broker, t)] == [GZIP, LZ4]


def test_compression_levels_are_validated_and_described(broker, unique):
    for name, bad in (("compression.gzip.level", "10"), ("compression.gzip.level", "0"),
                      ("compression.lz4.level", "18"), ("compression.zstd.level", "23"),
                      ("compression.type", "brotli")):
        with pytest.raises(KafkaException) as e:
            create_topic(broker.bootstrap, unique(), config={name: bad})
        assert kafka_error(e.value).name() == "INVALID_CONFIG", (name, bad)
    t = create_topic(broker.bootstrap, unique(), config={
        "compression.type": "gzip", "compression.gzip.level": "9",
        "compression.lz4.level": "1", "compression.zstd.level": "-5"})
    conf = describe_topic(broker.bootstrap, t)
    assert (conf["compression.gzip.level"].value, conf["compression.zstd.level"].value) == ("9", "-5")
    produce_all(producer(broker.bootstrap), t, [(b"k", b"abc" * 1000)])
    assert [attrs & 7 for _, attrs, _ in fetch_batches(broker, t)] == [GZIP]


def test_recompression_of_a_bomb_is_bounded(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config={"compression.type": "lz4"})
    err, _ = produce_raw(broker, t, batch(gzip_zeros(800), 800, GZIP))
    assert err == INVALID_RECORD
    # A batch already in the topic's codec is stored as sent, like under `producer`.
    lz = lz4.frame.compress(record(0, b"x" * 100), block_size=lz4.frame.BLOCKSIZE_MAX64KB)
    assert produce_raw(broker, t, batch(lz, 1, LZ4)) == (0, 0)
    # Snappy in xerial framing from a raw client: recompressed to lz4, readable.
    sn = snappy.compress(record(0, b"y" * 100))
    xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01" + struct.pack(">I", len(sn)) + sn
    assert produce_raw(broker, t, batch(xerial, 1, SNAPPY)) == (0, 1)
    assert [attrs & 7 for _, attrs, _ in fetch_batches(broker, t)] == [LZ4, LZ4]
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING)])
        got = consume_n(c, 2, idle_after=0.3)
    finally:
        c.close()
    assert [m.value() for m in got] == [b"x" * 100, b"y" * 100]
    assert status_kb(broker, "VmHWM") < RSS_LIMIT_KB
