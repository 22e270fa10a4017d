"""Conditional append (docs/EVENT_SOURCING.md) against the real broker.

On a topic with `sluice.conditional.append.enable=true`, the record headers
`sluice.expected.offset` and `sluice.expected.key.offset` make an append conditional; a mismatch
refuses the whole batch with INVALID_RECORD (87) and a message naming the actual offset, with a
RecordErrors entry from Produce v8. librdkafka's delivery report keeps only the code (its text is
"Broker: Broker failed to validate record"), so the messages are checked over the raw protocol.

Producers are non-idempotent (`enable.idempotence=false`, `acks=all`, `retries=0`): a refused
batch would leave an idempotent producer a sequence gap (see test_idempotent_producer_*).
"""

import struct
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import wait_until
from kutil import OP_TIMEOUT_S, admin, consume_n, consumer, create_topic, kafka_conn, producer, recv_exact

COND = {"sluice.conditional.append.enable": "true"}
EXP = "sluice.expected.offset"
EXPK = "sluice.expected.key.offset"
INVALID_RECORD = 87
POLICY_VIOLATION = 44


def plain_producer(bootstrap, **conf):
    return producer(bootstrap, enable_idempotence=False, acks="all", retries=0, linger_ms=0,
                    **conf)


def send(p, topic, value, key=None, headers=None, partition=0):
    """Produces one message and waits for its report: (offset, None) or (None, KafkaError)."""
    out = {}

    def cb(err, msg):
        out["r"] = (None, err) if err is not None else (msg.offset(), None)

    p.produce(topic, value=value, key=key, headers=headers or [], partition=partition,
              on_delivery=cb)
    assert p.flush(OP_TIMEOUT_S) == 0
    return out["r"]


# ------------------------------------------------------------------ raw protocol helpers

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(n):
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z & ~0x7F:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        else:
            out.append(z)
            return bytes(out)


def vbytes(b):
    return varint(-1) if b is None else varint(len(b)) + b


def batch(records, pid=-1, epoch=-1, seq=-1):
    """An uncompressed magic-2 batch of (key, value, [(header, value)]) records."""
    ts = int(time.time() * 1000)
    body = b""
    for i, (k, v, hs) in enumerate(records):
        r = (b"\x00" + varint(0) + varint(i) + vbytes(k) + vbytes(v) + varint(len(hs))
             + b"".join(vbytes(hk.encode()) + vbytes(hv.encode()) for hk, hv in hs))
        body += varint(len(r)) + r
    after_crc = struct.pack(">hiqqqhii", 0, len(records) - 1, ts, ts, pid, epoch, seq,
                            len(records)) + body
    after_len = struct.pack(">ibI", -1, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def kstr(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def call(sock, api_key, version, body, corr=7):
    header = struct.pack(">hhi", api_key, version, corr) + kstr("cond-test")
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    resp = recv_exact(sock, size)
    assert struct.unpack_from(">i", resp)[0] == corr
    return resp[4:]


def produce(sock, topic, records_bytes, version=8, partition=0):
    """Produce v3..v8 (non-flexible) of one partition; returns a dict of the answer."""
    body = (kstr(None) + struct.pack(">hi", -1, 10_000) + struct.pack(">i", 1) + kstr(topic)
            + struct.pack(">ii", 1, partition) + struct.pack(">i", len(records_bytes))
            + records_bytes)
    r = call(sock, 0, version, body)
    pos = 0
    (nt,) = struct.unpack_from(">i", r, pos); pos += 4
    assert nt == 1
    (ln,) = struct.unpack_from(">h", r, pos); pos += 2 + ln
    (np_,) = struct.unpack_from(">i", r, pos); pos += 4
    assert np_ == 1
    idx, err, base = struct.unpack_from(">ihq", r, pos); pos += 14
    pos += 8  # log append time
    if version >= 5:
        pos += 8  # log start offset
    out = {"error": err, "base_offset": base, "record_errors": None, "message": None}
    if version >= 8:
        (nre,) = struct.unpack_from(">i", r, pos); pos += 4
        errs = []
        for _ in range(max(nre, 0)):
            (bi,) = struct.unpack_from(">i", r, pos); pos += 4
            (ml,) = struct.unpack_from(">h", r, pos); pos += 2
            msg = None
            if ml >= 0:
                msg = r[pos:pos + ml].decode(); pos += ml
            errs.append((bi, msg))
        out["record_errors"] = errs
        (ml,) = struct.unpack_from(">h", r, pos); pos += 2
        if ml >= 0:
            out["message"] = r[pos:pos + ml].decode()
    return out


def init_producer_id(sock):
    r = call(sock, 22, 0, kstr(None) + struct.pack(">i", 60_000))
    _throttle, err, pid, epoch = struct.unpack_from(">ihqh", r, 0)
    assert err == 0
    return pid, epoch


def raw_message(broker, topic, key, header, value, partition=0):
    """The error message a (refused) one-record produce with one condition gets."""
    s = kafka_conn(broker)
    try:
        r = produce(s, topic, batch([(key, b"probe", [(header, value)])]), partition=partition)
    finally:
        s.close()
    assert r["error"] != 0, f"the probe was appended: {r}"
    return r["message"]


# ------------------------------------------------------------------ tests

def test_expected_offset_hit_and_miss(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config=COND)
    p = plain_producer(broker.bootstrap)
    assert send(p, t, b"a", headers=[(EXP, b"0")]) == (0, None)
    assert send(p, t, b"b") == (1, None)
    off, err = send(p, t, b"c", headers=[(EXP, b"1")])
    assert off is None and err.code() == KafkaError.INVALID_RECORD, err
    assert send(p, t, b"c", headers=[(EXP, b"2")]) == (2, None)
    # Malformed values are refused the same way, with a message saying why.
    off, err = send(p, t, b"d", headers=[(EXP, b"3x")])
    assert err.code() == KafkaError.INVALID_RECORD
    s = kafka_conn(broker)
    try:
        r = produce(s, t, batch([(None, b"d", [(EXP, "3x")])]))
        assert r["error"] == INVALID_RECORD and "decimal" in r["message"], r
        r = produce(s, t, batch([(None, b"d", [(EXP, "2")])]))
        assert r["message"] == "sluice: expected offset 2, log end 3", r
    finally:
        s.close()


def test_record_errors_over_produce_v8_and_code_only_before(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config=COND)
    s = kafka_conn(broker)
    try:
        ok = produce(s, t, batch([(b"k", b"v", [(EXP, "0")])]))
        assert (ok["error"], ok["base_offset"], ok["record_errors"]) == (0, 0, [])
        # The second record of a batch carries the failing condition: its index is named.
        r = produce(s, t, batch([(b"k", b"v", []), (b"k", b"w", [(EXPK, "0")])]))
        assert r["error"] == INVALID_RECORD
        want = 'sluice: expected key offset 0 for key "k", actual 1'
        assert r["record_errors"] == [(1, want)], r
        assert r["message"] == want
        r = produce(s, t, batch([(b"k", b"v", [(EXP, "41")])]))
        assert r["record_errors"] == [(0, "sluice: expected offset 41, log end 1")], r
        # Produce v7 has no RecordErrors nor ErrorMessage: the code alone.
        r = produce(s, t, batch([(b"k", b"v", [(EXP, "41")])]), version=7)
        assert r["error"] == INVALID_RECORD and r["base_offset"] == -1
        # Nothing of the refused batches was appended.
        ok = produce(s, t, batch([(b"k", b"x", [(EXP, "1"), (EXPK, "0")])]))
        assert (ok["error"], ok["base_offset"]) == (0, 1), ok
    finally:
        s.close()


def test_key_offset_hit_miss_and_none(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config=COND)
    p = plain_producer(broker.bootstrap)
    assert send(p, t, b"created", key=b"order-1", headers=[(EXPK, b"-1")]) == (0, None)
    assert send(p, t, b"created", key=b"order-2", headers=[(EXPK, b"-1")]) == (1, None)
    _, err = send(p, t, b"created again", key=b"order-1", headers=[(EXPK, b"-1")])
    assert err.code() == KafkaError.INVALID_RECORD
    assert raw_message(broker, t, b"order-1", EXPK, "-1") == \
        'sluice: expected key offset -1 for key "order-1", actual 0'
    assert send(p, t, b"paid", key=b"order-1", headers=[(EXPK, b"0")]) == (2, None)
    # A stale writer (still at 0) loses; one that re-read wins.
    _, err = send(p, t, b"paid twice", key=b"order-1", headers=[(EXPK, b"0")])
    assert err.code() == KafkaError.INVALID_RECORD
    assert raw_message(broker, t, b"order-1", EXPK, "0").endswith("actual 2")
    assert send(p, t, b"shipped", key=b"order-1", headers=[(EXPK, b"2")]) == (3, None)
    # A key condition needs a key.
    _, err = send(p, t, b"x", headers=[(EXPK, b"-1")])
    assert err.code() == KafkaError.INVALID_RECORD
    assert "without a key" in raw_message(broker, t, None, EXPK, "-1")
    # A tombstone: the key reads as never written.
    assert send(p, t, None, key=b"order-2") == (4, None)
    assert send(p, t, b"reborn", key=b"order-2", headers=[(EXPK, b"-1")]) == (5, None)


def test_topics_without_the_config_ignore_the_headers(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    p = plain_producer(broker.bootstrap)
    assert send(p, t, b"a", key=b"k", headers=[(EXP, b"99"), (EXPK, b"7")]) == (0, None)
    assert send(p, t, b"b", key=b"k", headers=[(EXP, b"not a number")]) == (1, None)


def _alter(bootstrap, topic, enable):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("sluice.conditional.append.enable", "true" if enable else "false",
                    incremental_operation=AlterConfigOpType.SET)])
    a = admin(bootstrap)  # keep the handle alive until the futures resolve
    for f in a.incremental_alter_configs([res]).values():
        f.result(OP_TIMEOUT_S)


def test_enabling_the_config_on_an_existing_topic_builds_the_index(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    p = plain_producer(broker.bootstrap)
    for i in range(5):
        assert send(p, t, b"e%d" % i, key=b"agg-%d" % (i % 2))[1] is None
    _alter(broker.bootstrap, t, True)
    _, err = send(p, t, b"x", key=b"agg-0", headers=[(EXPK, b"-1")])
    assert err.code() == KafkaError.INVALID_RECORD
    assert raw_message(broker, t, b"agg-0", EXPK, "-1").endswith("actual 4")
    assert send(p, t, b"x", key=b"agg-1", headers=[(EXPK, b"3")]) == (5, None)
    assert send(p, t, b"y", key=b"new", headers=[(EXPK, b"-1"), (EXP, b"6")]) == (6, None)
    _alter(broker.bootstrap, t, False)
    assert send(p, t, b"z", key=b"new", headers=[(EXPK, b"-1")]) == (7, None)


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_the_index_survives_a_restart(broker_factory, unique, how):
    b = broker_factory()  # --flush always (the default): kill -9 loses nothing acknowledged
    t = create_topic(b.bootstrap, unique(), partitions=2, config=COND)
    p = plain_producer(b.bootstrap)
    last = {}
    for i in range(40):
        key = b"agg-%d" % (i % 7)
        off, err = send(p, t, b"%d" % i, key=key, partition=i % 2,
                        headers=[(EXPK, str(last.get((i % 2, key), -1)).encode())])
        assert err is None, err
        last[(i % 2, key)] = off
    p.flush(OP_TIMEOUT_S)
    del p
    if how == "restart":
        b.restart()
    else:
        b.kill9()
        b.start()
    p = plain_producer(b.bootstrap)
    for (part, key), off in sorted(last.items()):
        _, err = send(p, t, b"stale", key=key, partition=part, headers=[(EXPK, b"-1")])
        assert err.code() == KafkaError.INVALID_RECORD, (part, key, err)
        msg = raw_message(b, t, key, EXPK, "-1", partition=part)
        assert msg.endswith(f"actual {off}"), (part, key, msg)
        new, err = send(p, t, b"next", key=key, partition=part,
                        headers=[(EXPK, str(off).encode())])
        assert err is None, (part, key, err)
        last[(part, key)] = new
    assert send(p, t, b"fresh", key=b"never", partition=0, headers=[(EXPK, b"-1")])[1] is None


def test_concurrent_writers_to_one_key_exactly_one_wins_each_round(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config=COND)
    writers, rounds = 4, 12
    producers = [plain_producer(broker.bootstrap) for _ in range(writers)]
    for p in producers:  # connect before racing
        p.list_topics(t, timeout=OP_TIMEOUT_S)
    expected = -1
    winners = []
    for rnd in range(rounds):
        barrier = threading.Barrier(writers)
        results = [None] * writers

        def race(w, expected=expected, barrier=barrier, results=results, rnd=rnd):
            barrier.wait(timeout=OP_TIMEOUT_S)
            results[w] = send(producers[w], t, b"round %d writer %d" % (rnd, w), key=b"agg",
                              headers=[(EXPK, str(expected).encode())])

        threads = [threading.Thread(target=race, args=(w,)) for w in range(writers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(OP_TIMEOUT_S * 2)
        won = [(w, off) for w, (off, err) in enumerate(results) if err is None]
        lost = [err for off, err in results if err is not None]
        assert len(won) == 1, (rnd, results)
        assert all(e.code() == KafkaError.INVALID_RECORD for e in lost), lost
        winners.append(won[0])
        expected = won[0][1]
    # The log holds exactly the winners, in order.
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(t, 0, 0)])
        msgs = consume_n(c, rounds, idle_after=0.3)
    finally:
        c.close()
    assert [m.offset() for m in msgs] == [off for _, off in winners] == list(range(rounds))
    assert [m.value() for m in msgs] == [b"round %d writer %d" % (r, w)
                                         for r, (w, _) in enumerate(winners)]


def test_idempotent_retry_returns_the_original_offsets(broker, unique):
    """A retried duplicate of a conditional batch gets its first answer, not a conflict."""
    t = create_topic(broker.bootstrap, unique(), config=COND)
    s = kafka_conn(broker)
    try:
        pid, epoch = init_producer_id(s)
        first = batch([(b"k", b"v", [(EXPK, "-1"), (EXP, "0")])], pid, epoch, 0)
        assert produce(s, t, first)["base_offset"] == 0
        again = produce(s, t, first)
        assert (again["error"], again["base_offset"]) == (0, 0), again
        # The next sequence with a stale condition is a conflict.
        r = produce(s, t, batch([(b"k", b"w", [(EXPK, "-1")])], pid, epoch, 1))
        assert r["error"] == INVALID_RECORD, r
        # Its sequence was not taken: the same sequence with the right condition goes in.
        r = produce(s, t, batch([(b"k", b"w", [(EXPK, "0")])], pid, epoch, 1))
        assert (r["error"], r["base_offset"]) == (0, 1), r
    finally:
        s.close()


def test_idempotent_producer_sees_the_conflict(broker, unique):
    """What librdkafka's idempotent producer does with a refused batch (documented in
    docs/EVENT_SOURCING.md): the message fails with INVALID_RECORD and the producer goes on."""
    t = create_topic(broker.bootstrap, unique(), config=COND)
    p = producer(broker.bootstrap, enable_idempotence=True, linger_ms=0)
    assert send(p, t, b"a", key=b"k", headers=[(EXPK, b"-1")]) == (0, None)
    _, err = send(p, t, b"b", key=b"k", headers=[(EXPK, b"-1")])
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    assert not err.fatal(), err
    # The producer keeps working after the refusal.
    off, err = send(p, t, b"c", key=b"k", headers=[(EXPK, b"0")])
    assert (off, err) == (1, None), err


def test_transactional_batches_with_conditions_are_refused(broker, unique):
    t = create_topic(broker.bootstrap, unique(), config=COND)
    s = kafka_conn(broker)
    try:
        pid, epoch = init_producer_id(s)
        b = bytearray(batch([(b"k", b"v", [(EXPK, "-1")])], pid, epoch, 0))
        b[21:23] = struct.pack(">h", 0x10)  # transactional
        b[17:21] = struct.pack(">I", crc32c(bytes(b[21:])))
        r = produce(s, t, bytes(b))
        # Refused: either by the conditional check or, until transactions are merged, earlier.
        assert r["error"] != 0, r
        if r["error"] == INVALID_RECORD:
            assert "transaction" in (r["message"] or ""), r
    finally:
        s.close()


def test_transactional_producers_are_refused_and_leave_the_index_alone(broker, unique):
    from confluent_kafka import Producer
    t = create_topic(broker.bootstrap, unique(), config=COND)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("txn")})
    p.init_transactions(OP_TIMEOUT_S)
    p.begin_transaction()
    errs = []
    p.produce(t, key=b"k", value=b"v", on_delivery=lambda e, m: errs.append(e))
    p.flush(OP_TIMEOUT_S)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() == KafkaError.INVALID_RECORD, errs[0]
    p.abort_transaction(OP_TIMEOUT_S)
    # The refused record never reached the key index: the key is still unwritten.
    off, err = send(plain_producer(broker.bootstrap), t, b"w", key=b"k", headers=[(EXPK, b"-1")])
    assert err is None and off >= 0, err


def test_delete_records_makes_a_key_read_as_never_written(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), config=COND)
    p = plain_producer(b.bootstrap)
    assert send(p, t, b"1", key=b"gone") == (0, None)
    assert send(p, t, b"1", key=b"kept") == (1, None)
    a = admin(b.bootstrap)
    for f in a.delete_records([TopicPartition(t, 0, 1)]).values():
        f.result(OP_TIMEOUT_S)
    for attempt in ("live", "after restart"):
        msg = raw_message(b, t, b"kept", EXPK, "-1")
        assert msg.endswith("actual 1"), (attempt, msg)
        msg = raw_message(b, t, b"gone", EXPK, "0")
        assert msg.endswith("actual -1"), (attempt, msg)
        if attempt == "live":
            b.restart()
            p = plain_producer(b.bootstrap)
    assert send(p, t, b"2", key=b"gone", headers=[(EXPK, b"-1")]) == (2, None)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_batches_are_checked_whole(broker, unique, codec):
    """A compressed batch of many conditional records: all in, or (one condition wrong) none."""
    t = create_topic(broker.bootstrap, unique(), config=COND)
    p = producer(broker.bootstrap, enable_idempotence=False, acks="all", retries=0,
                 linger_ms=200, compression_type=codec)
    reports = []

    def burst(n, wrong_at=None):
        reports.clear()
        for i in range(n):
            exp = b"5" if i == wrong_at else b"-1"
            p.produce(t, value=b"x" * 200, key=b"%s-%d" % (codec.encode(), i + len(seen)),
                      headers=[(EXPK, exp)], partition=0,
                      on_delivery=lambda e, m: reports.append((e, m.offset())))
        assert p.flush(OP_TIMEOUT_S) == 0
        return reports

    seen = []
    ok = burst(50)
    assert all(e is None for e, _ in ok), ok[:3]
    assert sorted(o for _, o in ok) == list(range(50))
    seen.extend(range(50))
    bad = burst(50, wrong_at=37)
    assert all(e is not None and e.code() == KafkaError.INVALID_RECORD for e, _ in bad), bad[:3]
    c = consumer(broker.bootstrap)
    try:
        _, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S)
    finally:
        c.close()
    assert hi == 50, "a refused batch appended nothing"
