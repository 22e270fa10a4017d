"""The group side of transactions: TxnOffsetCommit (pending offsets, durable across restart and
kill -9, visible only once the transaction commits, dropped on abort), OffsetFetch RequireStable
(UNSTABLE_OFFSET_COMMIT while offsets are pending), the KIP-447 member checks, and share groups
that read committed data only (`share.isolation.level`, default read_committed in Sluice).

Which tests need which branch of issue #9:
- `test_txn_offset_commit_advertised`, `test_require_stable_without_pending_offsets`,
  `test_txn_offset_commit_outside_a_transaction_is_refused`: pass on their own.
- every test using a transactional producer needs the transaction coordinator (InitProducerId
  with a transactional.id, AddOffsetsToTxn, EndTxn, markers); they are skipped while the broker
  does not advertise EndTxn.
- the share-group tests also need the partition side (last stable offset, aborted-transaction
  index, markers in the log)."""

import struct
import time

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition

from conftest import wait_until
from kutil import (OP_TIMEOUT_S, consumer, create_topic, kafka_conn, metric, produce_all,
                   producer, recv_exact, scrape_metrics, set_group_configs, share_consume,
                   share_consumer, share_poll, wait_assignment)

UNSTABLE_OFFSET_COMMIT = 88
TXN_OFFSET_COMMIT = 28
END_TXN = 26

# ---------------------------------------------------------------------------------------------
# Raw protocol (requests no client sends on demand)


def _str(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _cstr(s):
    if s is None:
        return b"\x00"
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def _read_uvarint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def _read_cstr(buf, pos):
    n, pos = _read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    return buf[pos:pos + n - 1].decode(), pos + n - 1


def _skip_tags(buf, pos):
    n, pos = _read_uvarint(buf, pos)
    for _ in range(n):
        _tag, pos = _read_uvarint(buf, pos)
        size, pos = _read_uvarint(buf, pos)
        pos += size
    return pos


def _call(broker, api_key, version, body, flexible):
    header = struct.pack(">hhi", api_key, version, 7) + _str("txn-groups-test")
    if flexible:
        header += b"\x00"
    payload = header + body
    s = kafka_conn(broker)
    try:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    finally:
        s.close()
    pos = 4  # correlation id
    if flexible:
        pos = _skip_tags(resp, pos)
    return resp, pos


def offset_fetch_v7(broker, group, topic, partitions, require_stable=True):
    """OffsetFetch v7 for one topic: {partition: (offset, error_code)} and the top-level error."""
    body = (_cstr(group) + _uvarint(2) + _cstr(topic) + _uvarint(len(partitions) + 1)
            + b"".join(struct.pack(">i", p) for p in partitions) + b"\x00"
            + struct.pack(">b", 1 if require_stable else 0) + b"\x00")
    resp, pos = _call(broker, 9, 7, body, flexible=True)
    pos += 4  # throttle
    out = {}
    ntopics, pos = _read_uvarint(resp, pos)
    for _ in range(ntopics - 1):
        _name, pos = _read_cstr(resp, pos)
        nparts, pos = _read_uvarint(resp, pos)
        for _ in range(nparts - 1):
            p, off, _epoch = struct.unpack_from(">iqi", resp, pos)
            pos += 16
            _meta, pos = _read_cstr(resp, pos)
            (err,) = struct.unpack_from(">h", resp, pos)
            pos += 2
            pos = _skip_tags(resp, pos)
            out[p] = (off, err)
        pos = _skip_tags(resp, pos)
    (top,) = struct.unpack_from(">h", resp, pos)
    return out, top


def txn_offset_commit_v0(broker, txn_id, group, producer_id, epoch, topic, offsets):
    """TxnOffsetCommit v0 (kafkajs's version: no member fields); returns {partition: error}."""
    body = (_str(txn_id) + _str(group) + struct.pack(">qh", producer_id, epoch)
            + struct.pack(">i", 1) + _str(topic) + struct.pack(">i", len(offsets))
            + b"".join(struct.pack(">iq", p, o) + _str("") for p, o in offsets.items()))
    resp, pos = _call(broker, TXN_OFFSET_COMMIT, 0, body, flexible=False)
    pos += 4
    (ntopics,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    out = {}
    for _ in range(ntopics):
        (ln,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + ln
        (nparts,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        for _ in range(nparts):
            p, err = struct.unpack_from(">ih", resp, pos)
            pos += 6
            out[p] = err
    return out


def txn_offset_commit_v3(broker, txn_id, group, producer_id, epoch, topic, offsets,
                         generation=-1, member="", instance=None):
    """TxnOffsetCommit v3 (librdkafka's version, flexible, KIP-447 fields); {partition: error}."""
    body = (_cstr(txn_id) + _cstr(group) + struct.pack(">qhi", producer_id, epoch, generation)
            + _cstr(member) + _cstr(instance) + _uvarint(2) + _cstr(topic)
            + _uvarint(len(offsets) + 1)
            + b"".join(struct.pack(">iqi", p, o, -1) + _cstr("") + b"\x00"
                       for p, o in offsets.items())
            + b"\x00" + b"\x00")
    resp, pos = _call(broker, TXN_OFFSET_COMMIT, 3, body, flexible=True)
    pos += 4
    out = {}
    ntopics, pos = _read_uvarint(resp, pos)
    for _ in range(ntopics - 1):
        _name, pos = _read_cstr(resp, pos)
        nparts, pos = _read_uvarint(resp, pos)
        for _ in range(nparts - 1):
            p, err = struct.unpack_from(">ih", resp, pos)
            pos += 6
            pos = _skip_tags(resp, pos)
            out[p] = err
        pos = _skip_tags(resp, pos)
    return out


def api_ranges(broker):
    """ApiVersions v0: {api_key: (min, max)}."""
    resp, pos = _call(broker, 18, 0, b"", flexible=False)
    (err,) = struct.unpack_from(">h", resp, pos)
    assert err == 0
    (n,) = struct.unpack_from(">i", resp, pos + 2)
    out = {}
    for i in range(n):
        k, lo, hi = struct.unpack_from(">hhh", resp, pos + 6 + 6 * i)
        out[k] = (lo, hi)
    return out


def needs_transactions(broker):
    if END_TXN not in api_ranges(broker):
        pytest.skip("needs the transaction coordinator (EndTxn not advertised): the txn branch")


# ---------------------------------------------------------------------------------------------
# Helpers


def commit_plain(bootstrap, group, topic, partition, offset):
    c = consumer(bootstrap, group)
    try:
        c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        c.close()


def txn_producer(bootstrap, txn_id, **conf):
    c = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
         "transaction.timeout.ms": 60000}
    c.update(conf)
    p = Producer(c)
    p.init_transactions(OP_TIMEOUT_S)
    return p


def retry(fn, timeout=30.0):
    """Runs fn until it stops raising a retriable KafkaException (a broker restart in between)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            if time.monotonic() > deadline or not err.retriable():
                raise
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# On their own


def test_txn_offset_commit_advertised(broker):
    # v5 is transaction.version=2 (the group is added implicitly, no AddOffsetsToTxn): test_txn_tv2.py.
    assert api_ranges(broker)[TXN_OFFSET_COMMIT] == (0, 5)


def test_require_stable_without_pending_offsets(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    g = unique("g")
    commit_plain(broker.bootstrap, g, t, 0, 17)
    got, top = offset_fetch_v7(broker, g, t, [0, 1], require_stable=True)
    assert top == 0
    assert got == {0: (17, 0), 1: (-1, 0)}


@pytest.mark.parametrize("version", [0, 3])
def test_txn_offset_commit_outside_a_transaction_is_refused(broker, unique, version):
    t = create_topic(broker.bootstrap, unique())
    g = unique("g")
    commit_plain(broker.bootstrap, g, t, 0, 3)
    send = txn_offset_commit_v0 if version == 0 else txn_offset_commit_v3
    errs = send(broker, unique("txn"), g, 123456, 0, t, {0: 99})
    assert set(errs) == {0}
    assert errs[0] != 0, "a TxnOffsetCommit outside any transaction must be refused"
    got, _ = offset_fetch_v7(broker, g, t, [0])
    assert got == {0: (3, 0)}, "nothing pending, nothing changed"


# ---------------------------------------------------------------------------------------------
# With the transaction coordinator


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_pending_offsets_until_the_transaction_ends(broker, unique, outcome):
    needs_transactions(broker)
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    g = unique("g")
    commit_plain(broker.bootstrap, g, t, 0, 5)
    c = consumer(broker.bootstrap, g)
    p = txn_producer(broker.bootstrap, unique("txn"))
    try:
        p.begin_transaction()
        p.send_offsets_to_transaction(
            [TopicPartition(t, 0, 42), TopicPartition(t, 1, 7)], c.consumer_group_metadata(),
            OP_TIMEOUT_S)
        # Pending: RequireStable says so per partition; a plain fetch sees the old offsets.
        got, top = offset_fetch_v7(broker, g, t, [0, 1], require_stable=True)
        assert top == 0
        assert got == {0: (-1, UNSTABLE_OFFSET_COMMIT), 1: (-1, UNSTABLE_OFFSET_COMMIT)}
        got, _ = offset_fetch_v7(broker, g, t, [0, 1], require_stable=False)
        assert got == {0: (5, 0), 1: (-1, 0)}
        if outcome == "commit":
            p.commit_transaction(OP_TIMEOUT_S)
            want = {0: (42, 0), 1: (7, 0)}
        else:
            p.abort_transaction(OP_TIMEOUT_S)
            want = {0: (5, 0), 1: (-1, 0)}
        wait_until(lambda: offset_fetch_v7(broker, g, t, [0, 1])[0] == want, 10,
                   f"offsets {want} after {outcome}")
    finally:
        c.close()


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "kill9"])
def test_pending_offsets_survive_restart(broker_factory, unique, crash):
    b = broker_factory()
    needs_transactions(b)
    t = create_topic(b.bootstrap, unique())
    g = unique("g")
    commit_plain(b.bootstrap, g, t, 0, 5)
    c = consumer(b.bootstrap, g)
    p = txn_producer(b.bootstrap, unique("txn"))
    try:
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition(t, 0, 42)], c.consumer_group_metadata(),
                                      OP_TIMEOUT_S)
        if crash:
            b.kill9()
            b.start()
        else:
            b.restart()
        # Still pending after the restart: written and fsynced before TxnOffsetCommit answered.
        got, _ = offset_fetch_v7(b, g, t, [0], require_stable=True)
        assert got == {0: (-1, UNSTABLE_OFFSET_COMMIT)}
        got, _ = offset_fetch_v7(b, g, t, [0], require_stable=False)
        assert got == {0: (5, 0)}
        retry(lambda: p.commit_transaction(OP_TIMEOUT_S))
        wait_until(lambda: offset_fetch_v7(b, g, t, [0])[0] == {0: (42, 0)}, 10,
                   "the committed transaction's offset")
        # And the committed offset survives the next crash too.
        b.kill9()
        b.start()
        assert offset_fetch_v7(b, g, t, [0])[0] == {0: (42, 0)}
    finally:
        c.close()


def test_stale_member_is_refused(broker, unique):
    """KIP-447: TxnOffsetCommit v3 carries the consumer's member id and generation; a member that
    has left the group is refused (UNKNOWN_MEMBER_ID, abortable), the offsets stay unchanged."""
    needs_transactions(broker)
    t = create_topic(broker.bootstrap, unique())
    g = unique("g")
    c = consumer(broker.bootstrap, g)
    c.subscribe([t])
    wait_assignment(c)
    stale = c.consumer_group_metadata()
    c.close()
    p = txn_producer(broker.bootstrap, unique("txn"))
    p.begin_transaction()
    with pytest.raises(KafkaException) as e:
        p.send_offsets_to_transaction([TopicPartition(t, 0, 9)], stale, OP_TIMEOUT_S)
    err = e.value.args[0]
    assert err.txn_requires_abort(), err
    assert "UNKNOWN_MEMBER_ID" in err.name() or "ILLEGAL_GENERATION" in err.name() or \
        "UNKNOWN_MEMBER_ID" in err.str() or "ILLEGAL_GENERATION" in err.str(), err
    p.abort_transaction(OP_TIMEOUT_S)
    assert offset_fetch_v7(broker, g, t, [0])[0] == {0: (-1, 0)}


def test_current_member_commits(broker, unique):
    """The consume-transform-produce loop of a group member: offsets commit with the
    transaction, and a new consumer of the group starts after them."""
    needs_transactions(broker)
    src = create_topic(broker.bootstrap, unique("in"))
    dst = create_topic(broker.bootstrap, unique("out"))
    g = unique("g")
    produce_all(producer(broker.bootstrap), src, [(b"k", b"v%d" % i) for i in range(10)])
    c = consumer(broker.bootstrap, g, isolation_level="read_committed", enable_auto_commit=False,
                 auto_offset_reset="earliest")
    c.subscribe([src])
    p = txn_producer(broker.bootstrap, unique("txn"))
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 10:
            assert time.monotonic() < deadline
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            got.append(m)
        p.begin_transaction()
        for m in got:
            p.produce(dst, key=m.key(), value=m.value())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(),
                                      OP_TIMEOUT_S)
        p.commit_transaction(OP_TIMEOUT_S)
    finally:
        c.close()
    # EndTxn answers before the markers (and so the offsets) are complete, in Kafka as in
    # Sluice: RequireStable may still say UNSTABLE_OFFSET_COMMIT for a moment.
    want = {0: (10, 0)}
    wait_until(lambda: offset_fetch_v7(broker, g, src, [0])[0] == want, 10,
               f"the transaction's offsets {want} to become stable")


# ---------------------------------------------------------------------------------------------
# Share groups read committed data only


def queue_group(bootstrap, group, **configs):
    conf = {"share.auto.offset.reset": "earliest"}
    conf.update({k.replace("_", "."): str(v) for k, v in configs.items()})
    set_group_configs(bootstrap, group, conf)
    return group


def txn_batch(p, topic, values, commit):
    """One transaction of `values`: committed (True), aborted (False) or left open (None). The
    records are flushed to the log first: librdkafka's abort_transaction purges what it has
    not sent yet, which would leave an aborted transaction with no records in the log."""
    p.begin_transaction()
    for v in values:
        p.produce(topic, key=b"k", value=v)
    assert p.flush(OP_TIMEOUT_S) == 0, "every record of the transaction is in the log"
    if commit:
        p.commit_transaction(OP_TIMEOUT_S)
    elif commit is not None:
        p.abort_transaction(OP_TIMEOUT_S)


def values(msgs):
    return [m.value() for m in msgs]


def test_share_group_reads_committed_only(broker, unique):
    """Default read_committed: aborted records and markers are never handed to a worker, and an
    open transaction holds the queue at its first record until it commits."""
    needs_transactions(broker)
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    p = txn_producer(broker.bootstrap, unique("txn"))
    committed = [b"c1-%d" % i for i in range(5)]
    aborted = [b"ab-%d" % i for i in range(5)]
    later = [b"c2-%d" % i for i in range(5)]
    txn_batch(p, t, committed, True)
    txn_batch(p, t, aborted, False)
    txn_batch(p, t, later, True)
    opened = [b"open-%d" % i for i in range(3)]
    txn_batch(p, t, opened, None)  # left open
    after = [b"after-%d" % i for i in range(2)]
    produce_all(producer(broker.bootstrap), t, [(b"k", v) for v in after])
    sc = share_consumer(broker.bootstrap, g)
    try:
        sc.subscribe([t])
        got = share_consume(sc, 10, idle_after=1.5)
        assert values(got) == committed + later, "committed records only, in order, no markers"
        p.commit_transaction(OP_TIMEOUT_S)
        more = share_consume(sc, 5, idle_after=1.0)
        assert values(more) == opened + after
    finally:
        sc.close()


def wait_share_metric(broker, name, value, **labels):
    """Waits until the /metrics sample `name{labels}` equals `value` (refreshed once a second)."""
    wait_until(lambda: metric(scrape_metrics(broker.http), name, **labels) == value, 10,
               f"{name}{labels} == {value}", interval=0.2)


def test_share_group_read_uncommitted_gets_aborted_records_but_no_markers(broker, unique):
    """read_uncommitted: the aborted transaction's records are delivered like any others; the
    two markers are archived unseen. Acquired = delivered = 8 records, and the lag (up to the
    high watermark, markers included) drops to 0 once they are acknowledged."""
    needs_transactions(broker)
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_isolation_level="read_uncommitted")
    p = txn_producer(broker.bootstrap, unique("txn"))
    committed = [b"c-%d" % i for i in range(4)]
    aborted = [b"a-%d" % i for i in range(4)]
    txn_batch(p, t, committed, True)
    txn_batch(p, t, aborted, False)
    sc = share_consumer(broker.bootstrap, g)
    try:
        sc.subscribe([t])
        got = share_consume(sc, 8, idle_after=1.5)
        assert values(got) == committed + aborted, "data of both, never the two markers"
        assert [m.offset() for m in got] == [0, 1, 2, 3, 5, 6, 7, 8], "markers at 4 and 9"
        wait_share_metric(broker, "sluice_share_group_lag", 0, group=g, topic=t)
        assert metric(scrape_metrics(broker.http), "sluice_share_group_acquired_records_total",
                      group=g, topic=t) == 8, "markers are archived, never counted as acquired"
    finally:
        sc.close()


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_share_group_never_dead_letters_markers(broker, unique, isolation):
    """Every record is rejected at once (delivery limit 1): the dead-letter topic receives what
    was delivered, never a marker; under read_committed never an aborted record either."""
    needs_transactions(broker)
    from confluent_kafka import AcknowledgeType

    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_isolation_level=isolation)
    p = txn_producer(broker.bootstrap, unique("txn"))
    xs = [b"x-%d" % i for i in range(3)]
    ys = [b"y-%d" % i for i in range(3)]
    zs = [b"z-%d" % i for i in range(3)]
    txn_batch(p, t, xs, True)
    txn_batch(p, t, ys, False)
    txn_batch(p, t, zs, True)
    want = xs + zs if isolation == "read_committed" else xs + ys + zs
    sc = share_consumer(broker.bootstrap, g)
    try:
        sc.subscribe([t])
        got = share_consume(sc, len(want), ack=lambda m: AcknowledgeType.REJECT, idle_after=1.0)
        assert values(got) == want
        wait_share_metric(broker, "sluice_share_group_lag", 0, group=g, topic=t)
        wait_share_metric(broker, "sluice_dlq_depth", len(want), topic="dlq." + g)
        assert metric(scrape_metrics(broker.http), "sluice_share_group_acquired_records_total",
                      group=g, topic=t) == len(want)
    finally:
        sc.close()
    dlq = "dlq." + g
    c = consumer(broker.bootstrap)
    try:
        wait_until(lambda: dlq in c.list_topics(timeout=OP_TIMEOUT_S).topics, 10, "the DLQ topic")
        c.assign([TopicPartition(dlq, 0, 0)])
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < len(want) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.value())
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = c.poll(0.1)
            if m is not None and not m.error():
                seen.append(m.value())
    finally:
        c.close()
    assert sorted(seen) == sorted(want)
