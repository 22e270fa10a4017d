"""Hostile input at the socket level, hand-built Kafka frames: the offender's connection is
refused or closed, everyone else keeps being served (BRIEF section 3)."""

import os
import socket
import struct
import time

import pytest
from confluent_kafka import TopicPartition

from conftest import _new_broker
from kutil import OP_TIMEOUT_S, consumer, create_topic, kafka_conn, recv_exact


@pytest.fixture
def broker(tmp_root):
    """A broker per test here: one request that brings the broker down must fail only its test."""
    b = _new_broker(tmp_root).start()
    yield b
    alive = b.alive()
    b.kill9()
    assert alive, f"sluice died during the test:\n{b.log_tail()}"

# ---------------------------------------------------------------- encoding helpers

_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vector():
    # RFC 3720 / the standard check value of CRC-32C.
    assert crc32c(b"123456789") == 0xE3069283


def kstr(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z & ~0x7F:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        else:
            out.append(z)
            return bytes(out)


def record_batch(values, base_ts=None) -> bytes:
    """A magic-2 record batch, uncompressed, no producer id, with a correct CRC-32C."""
    base_ts = int(time.time() * 1000) if base_ts is None else base_ts
    recs = b""
    for i, v in enumerate(values):
        body = (b"\x00" + zigzag_varint(0) + zigzag_varint(i) + zigzag_varint(-1)
                + zigzag_varint(len(v)) + v + zigzag_varint(0))
        recs += zigzag_varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, base_ts, base_ts, -1, -1, -1, len(values)) + recs
    crc = crc32c(after_crc)
    after_len = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def request(api_key, version, corr, body, client_id="hostile-test", flexible=False) -> bytes:
    header = struct.pack(">hhi", api_key, version, corr) + kstr(client_id)
    if flexible:
        header += b"\x00"  # no tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def produce_v7(topic, partition, batch, acks=-1) -> bytes:
    return (kstr(None) + struct.pack(">hi", acks, 10_000) + struct.pack(">i", 1) + kstr(topic)
            + struct.pack(">i", 1) + struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch)


def parse_produce_v7(resp: bytes):
    """Returns [(topic, partition, error_code, base_offset)]."""
    pos = 4  # correlation id
    out = []
    (ntopics,) = struct.unpack_from(">i", resp, pos); pos += 4
    for _ in range(ntopics):
        (ln,) = struct.unpack_from(">h", resp, pos); pos += 2
        name = resp[pos:pos + ln].decode(); pos += ln
        (nparts,) = struct.unpack_from(">i", resp, pos); pos += 4
        for _ in range(nparts):
            idx, err, base, _lat, _lso = struct.unpack_from(">ihqqq", resp, pos); pos += 30
            out.append((name, idx, err, base))
    return out


# ---------------------------------------------------------------- socket helpers

def connect(broker):
    return kafka_conn(broker)


def read_response(s) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, size)


def closed_by_peer(s, timeout=10.0) -> bool:
    """True once the broker closed the connection (EOF or reset); False if it still sent data
    or stayed open for `timeout` seconds."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return data == b""


def api_versions(s, corr=1, version=0):
    s.sendall(request(18, version, corr, b""))
    resp = read_response(s)
    corr_back, err = struct.unpack_from(">ih", resp, 0)
    assert corr_back == corr
    (n,) = struct.unpack_from(">i", resp, 6)
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack_from(">hhh", resp, 10 + 6 * i)
        apis[k] = (lo, hi)
    return err, apis


def assert_serves_others(broker):
    """A fresh connection still gets ApiVersions answered, and a real client still works."""
    s = connect(broker)
    try:
        err, apis = api_versions(s, corr=77)
        assert err == 0 and 0 in apis and 18 in apis
    finally:
        s.close()
    c = consumer(broker.bootstrap)
    try:
        md = c.list_topics(timeout=OP_TIMEOUT_S)
        assert md.brokers
    finally:
        c.close()
    assert broker.alive()


# ---------------------------------------------------------------- tests

def test_api_versions_v0_lists_apis(broker):
    s = connect(broker)
    try:
        err, apis = api_versions(s)
        assert err == 0
        for key in (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 20):
            assert key in apis, f"API {key} not advertised"
        lo, hi = apis[18]
        assert lo == 0 and hi >= 3
    finally:
        s.close()


def test_api_versions_too_new_version_kip511(broker):
    s = connect(broker)
    try:
        s.sendall(request(18, 99, 5, b"", flexible=True))
        resp = read_response(s)
        corr, err = struct.unpack_from(">ih", resp, 0)
        assert corr == 5
        assert err == 35, f"expected UNSUPPORTED_VERSION (35), got {err}"
        (n,) = struct.unpack_from(">i", resp, 6)
        apis = {}
        for i in range(n):
            k, lo, hi = struct.unpack_from(">hhh", resp, 10 + 6 * i)
            apis[k] = (lo, hi)
        assert 18 in apis and apis[18][1] >= 3, f"ApiVersions not in fallback list: {apis}"
        assert 0 in apis and 1 in apis
        # The connection stays usable: the client retries with a version it now knows.
        err, apis2 = api_versions(s, corr=6)
        assert err == 0 and apis2 == apis
    finally:
        s.close()
    assert_serves_others(broker)


def test_oversized_frame_is_refused(broker):
    bystander = connect(broker)
    s = connect(broker)
    try:
        s.sendall(struct.pack(">i", 100 * 1024 * 1024 + 1) + struct.pack(">hhi", 18, 0, 1))
        assert closed_by_peer(s), "a frame above socket.request.max.bytes did not close the connection"
        # The bystander's connection is untouched.
        err, _ = api_versions(bystander, corr=9)
        assert err == 0
    finally:
        s.close()
        bystander.close()
    assert_serves_others(broker)


def test_negative_frame_size_is_refused(broker):
    s = connect(broker)
    try:
        s.sendall(struct.pack(">i", -7) + b"\x00" * 16)
        assert closed_by_peer(s)
    finally:
        s.close()
    assert_serves_others(broker)


def test_unknown_api_key_closes_only_that_connection(broker):
    bystander = connect(broker)
    s = connect(broker)
    try:
        s.sendall(request(9999, 0, 1, b"\x00\x00\x00\x00"))
        assert closed_by_peer(s), "unknown API key: connection was not closed"
        err, _ = api_versions(bystander, corr=3)
        assert err == 0
    finally:
        s.close()
        bystander.close()
    assert_serves_others(broker)


def test_garbage_after_valid_header_closes_only_that_connection(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    bystander = connect(broker)
    s = connect(broker)
    try:
        # Produce v7 header, then a topic array claiming 2^31-1 entries and random bytes.
        body = kstr(None) + struct.pack(">hii", -1, 1000, 0x7FFFFFFF) + os.urandom(64)
        s.sendall(request(0, 7, 1, body))
        assert closed_by_peer(s), "undecodable Produce body: connection was not closed"
        err, _ = api_versions(bystander, corr=4)
        assert err == 0
    finally:
        s.close()
        bystander.close()
    assert_serves_others(broker)
    # Nothing was appended.
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S) == (0, 0)
    finally:
        c.close()


def test_produce_with_corrupted_crc_is_corrupt_message(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    s = connect(broker)
    try:
        # First a valid hand-built batch: proves the encoder is right.
        good = record_batch([b"hello", b"world"])
        s.sendall(request(0, 7, 1, produce_v7(t, 0, good)))
        assert parse_produce_v7(read_response(s)) == [(t, 0, 0, 0)]

        bad = bytearray(record_batch([b"evil", b"twin"]))
        bad[-3] ^= 0xFF  # flip a byte of the last record's value: the CRC no longer matches
        s.sendall(request(0, 7, 2, produce_v7(t, 0, bytes(bad))))
        res = parse_produce_v7(read_response(s))
        assert [(r[0], r[1], r[2]) for r in res] == [(t, 0, 2)], f"expected CORRUPT_MESSAGE (2): {res}"

        # The same connection still works, and only the good batch is in the log.
        third = record_batch([b"after"])
        s.sendall(request(0, 7, 3, produce_v7(t, 0, third)))
        assert parse_produce_v7(read_response(s)) == [(t, 0, 0, 2)]
    finally:
        s.close()
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S) == (0, 3)
        c.assign([TopicPartition(t, 0, 0)])
        from kutil import consume_n
        assert [m.value() for m in consume_n(c, 3, idle_after=0.3)] == [b"hello", b"world", b"after"]
    finally:
        c.close()


@pytest.mark.parametrize("version", [3, 5, 8])
def test_corrupt_crc_over_produce_versions(broker, unique, version):
    """CRC validation does not depend on the request version (v3..v8 share the v7 layout for
    what we read; v8 adds record errors after base offset fields, which we do not parse)."""
    t = create_topic(broker.bootstrap, unique())
    bad = bytearray(record_batch([b"x" * 10]))
    bad[30] ^= 0x01  # inside baseTimestamp, which the CRC covers
    s = connect(broker)
    try:
        s.sendall(request(0, version, 11, produce_v7(t, 0, bytes(bad))))
        resp = read_response(s)
        pos = 4 + 4
        (ln,) = struct.unpack_from(">h", resp, pos); pos += 2 + ln
        pos += 4  # partition count
        idx, err = struct.unpack_from(">ih", resp, pos)
        assert (idx, err) == (0, 2), f"Produce v{version}: expected CORRUPT_MESSAGE, got {err}"
    finally:
        s.close()


@pytest.mark.parametrize("version", [3, 7])
def test_produce_v3_plus_with_two_batches_is_invalid_record(broker, unique, version):
    """Kafka's ProduceRequest.validateRecords: from v3 on, exactly one record batch per
    partition; two well-formed batches are INVALID_RECORD (87) and nothing is appended."""
    t = create_topic(broker.bootstrap, unique())
    two = record_batch([b"one"]) + record_batch([b"two"])
    s = connect(broker)
    try:
        s.sendall(request(0, version, 21, produce_v7(t, 0, two)))
        resp = read_response(s)
        pos = 4 + 4
        (ln,) = struct.unpack_from(">h", resp, pos); pos += 2 + ln
        pos += 4  # partition count
        idx, err = struct.unpack_from(">ih", resp, pos)
        assert (idx, err) == (0, 87), f"Produce v{version}, two batches: expected INVALID_RECORD, got {err}"
        # One batch on the same connection is fine.
        s.sendall(request(0, 7, 22, produce_v7(t, 0, record_batch([b"one"]))))
        assert parse_produce_v7(read_response(s)) == [(t, 0, 0, 0)]
    finally:
        s.close()
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S) == (0, 1)
    finally:
        c.close()


def test_pipelined_requests_answered_in_order(broker):
    s = connect(broker)
    try:
        s.sendall(b"".join(request(18, 0, corr, b"") for corr in range(100, 120)))
        corrs = [struct.unpack_from(">i", read_response(s), 0)[0] for _ in range(20)]
        assert corrs == list(range(100, 120))
    finally:
        s.close()
