"""Kafka's transaction protocol version 2 (KIP-890 part 2) over the raw protocol, the requests a
Java 4.x client sends once the broker finalizes `transaction.version=2`: Produce v12 adds its
partition to the transaction implicitly, TxnOffsetCommit v5 its group, EndTxn v5 bumps the epoch
per transaction (the markers carry the bumped epoch) and returns it, a retry of EndTxn is
recognised by `epoch + 1`, a late batch of the previous transaction is refused, and abort is
allowed with no transaction open. The Java client's own flow is in test_java_txn.py and
test_java_streams_eos.py.
"""

import struct

from conftest import wait_until
from kutil import create_topic, recv_exact
from test_txn_coordinator import (
    CONCURRENT_TRANSACTIONS,
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    NONE,
    PRODUCER_FENCED,
    Conn,
    compact_str,
    describe,
    uvarint,
)
from test_txn_partition import batch
from txnutil import RC, RU, read_to_end, values

TRANSACTIONAL = 0x10
PRODUCE, API_VERSIONS, END_TXN, TXN_OFFSET_COMMIT = 0, 18, 26, 28


def read_uvarint(buf, pos):
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def api_versions_v3(conn):
    """ApiVersions v3 -> ({api_key: (min, max)}, {finalized feature: level})."""
    conn.corr += 1
    header = struct.pack(">hhi", API_VERSIONS, 3, conn.corr) + struct.pack(">h", 4) + b"test\x00"
    body = compact_str("sluice-test") + compact_str("1") + b"\x00"
    payload = header + body
    conn.s.sendall(struct.pack(">i", len(payload)) + payload)
    (n,) = struct.unpack(">i", recv_exact(conn.s, 4))
    r = recv_exact(conn.s, n)[4:]  # the ApiVersions response header is v0 (no tagged fields)
    (err,) = struct.unpack_from(">h", r, 0)
    assert err == NONE
    count, pos = read_uvarint(r, 2)
    apis = {}
    for _ in range(count - 1):
        key, lo, hi = struct.unpack_from(">hhh", r, pos)
        pos += 6
        assert r[pos] == 0
        pos += 1
        apis[key] = (lo, hi)
    pos += 4  # throttle
    tags, pos = read_uvarint(r, pos)
    finalized = {}
    for _ in range(tags):
        tag, pos = read_uvarint(r, pos)
        size, pos = read_uvarint(r, pos)
        if tag == 2:  # FinalizedFeatures
            p = pos
            nf, p = read_uvarint(r, p)
            for _ in range(nf - 1):
                ln, p = read_uvarint(r, p)
                name = r[p:p + ln - 1].decode()
                p += ln - 1
                hi, lo = struct.unpack_from(">hh", r, p)
                p += 5
                finalized[name] = (lo, hi)
        pos += size
    return apis, finalized


def produce_v12(conn, txn_id, topic, records):
    """Produce v12 (flexible) of one batch to partition 0 -> (error, base_offset)."""
    body = (compact_str(txn_id) + struct.pack(">hi", -1, 10_000) + uvarint(2) + compact_str(topic)
            + uvarint(2) + struct.pack(">i", 0) + uvarint(len(records) + 1) + records
            + b"\x00" + b"\x00" + b"\x00")
    r = conn.call(PRODUCE, 12, body, flexible=True)
    pos = 0
    _, pos = read_uvarint(r, pos)  # topics
    ln, pos = read_uvarint(r, pos)
    pos += ln - 1
    _, pos = read_uvarint(r, pos)  # partitions
    _idx, err, base = struct.unpack_from(">ihq", r, pos)
    return err, base


def end_txn_v5(conn, txn_id, pid, epoch, commit):
    """EndTxn v5 -> (error, producer_id, producer_epoch)."""
    body = compact_str(txn_id) + struct.pack(">qhb", pid, epoch, 1 if commit else 0) + b"\x00"
    r = conn.call(END_TXN, 5, body, flexible=True)
    _throttle, err, pid, epoch = struct.unpack_from(">ihqh", r, 0)
    return err, pid, epoch


def txn_offset_commit_v5(conn, txn_id, group, pid, epoch, topic, offset):
    """TxnOffsetCommit v5 (no member: a standalone group) of partition 0 -> error."""
    body = (compact_str(txn_id) + compact_str(group) + struct.pack(">qh", pid, epoch)
            + struct.pack(">i", -1) + compact_str("") + compact_str(None)
            + uvarint(2) + compact_str(topic) + uvarint(2)
            + struct.pack(">iqi", 0, offset, -1) + compact_str(None) + b"\x00" + b"\x00" + b"\x00")
    r = conn.call(TXN_OFFSET_COMMIT, 5, body, flexible=True)
    pos = 4  # throttle
    _, pos = read_uvarint(r, pos)
    ln, pos = read_uvarint(r, pos)
    pos += ln - 1
    _, pos = read_uvarint(r, pos)
    _idx, err = struct.unpack_from(">ih", r, pos)
    return err


def txn_batch(values_, pid, epoch, seq):
    return batch([v.encode() for v in values_], producer_id=pid, epoch=epoch, seq=seq,
                 attributes=TRANSACTIONAL)


def test_transaction_version_2_is_finalized(broker):
    c = Conn(broker)
    try:
        apis, finalized = api_versions_v3(c)
    finally:
        c.close()
    assert finalized.get("transaction.version") == (2, 2)
    assert apis[PRODUCE][1] >= 12
    assert apis[END_TXN] == (0, 5)
    assert apis[TXN_OFFSET_COMMIT] == (0, 5)


def test_tv2_epoch_bump_implicit_add_late_batch_and_retry(broker, unique):
    topic, tid = unique("tv2"), unique("txn")
    create_topic(broker.bootstrap, topic)
    c = Conn(broker)
    try:
        err, pid, e0 = c.init_pid_v4(tid)
        assert err == NONE

        # Produce v12 adds the partition to the transaction: no AddPartitionsToTxn.
        assert produce_v12(c, tid, topic, txn_batch(["a1", "a2"], pid, e0, 0))[0] == NONE
        d = describe(broker, tid)
        assert d["state"] == "Ongoing" and d["partitions"] == [f"{topic}-0"]
        assert produce_v12(c, tid, topic, txn_batch(["a3"], pid, e0, 2))[0] == NONE

        # EndTxn v5 bumps the epoch and returns it.
        assert end_txn_v5(c, tid, pid, e0, True) == (NONE, pid, e0 + 1)
        wait_until(lambda: describe(broker, tid)["state"] == "CompleteCommit", 15,
                   "the commit markers are written")
        assert describe(broker, tid)["producer_epoch"] == e0 + 1
        # A retry of that EndTxn (the previous epoch) is recognised: the same answer.
        assert end_txn_v5(c, tid, pid, e0, True) == (NONE, pid, e0 + 1)
        # A retry with the opposite result, or an epoch two behind, is not.
        assert end_txn_v5(c, tid, pid, e0, False)[0] == INVALID_TXN_STATE
        assert end_txn_v5(c, tid, pid, e0 - 1, True)[0] == PRODUCER_FENCED
        # Commit with no transaction open (not a retry) is a wrong state.
        assert end_txn_v5(c, tid, pid, e0 + 1, True)[0] == INVALID_TXN_STATE

        # A late batch of the committed transaction (the previous epoch) is refused: it can
        # neither reopen the partition's transaction nor land in the next one.
        assert produce_v12(c, tid, topic, txn_batch(["late"], pid, e0, 3))[0] == INVALID_PRODUCER_EPOCH
        assert describe(broker, tid)["state"] == "CompleteCommit"

        # The next transaction runs at the bumped epoch, its sequences from 0; it is aborted.
        e1 = e0 + 1
        assert produce_v12(c, tid, topic, txn_batch(["b1"], pid, e1, 0))[0] == NONE
        assert produce_v12(c, tid, topic, txn_batch(["late"], pid, e0, 4))[0] == INVALID_PRODUCER_EPOCH
        assert end_txn_v5(c, tid, pid, e1, False) == (NONE, pid, e1 + 1)
        wait_until(lambda: describe(broker, tid)["state"] == "CompleteAbort", 15,
                   "the abort markers are written")

        # Abort with no transaction open is allowed under TV2 (the client may not know the
        # server's state) and bumps the epoch too.
        e2 = e1 + 1
        assert end_txn_v5(c, tid, pid, e2, False) == (NONE, pid, e2 + 1)
        wait_until(lambda: describe(broker, tid)["state"] == "CompleteAbort", 15, "empty abort completes")
        e3 = e2 + 1
        assert end_txn_v5(c, tid, pid, e2, False) == (NONE, pid, e3)

        # A third transaction commits after the aborted ones.
        assert produce_v12(c, tid, topic, txn_batch(["c1"], pid, e3, 0))[0] == NONE
        assert end_txn_v5(c, tid, pid, e3, True) == (NONE, pid, e3 + 1)
        wait_until(lambda: describe(broker, tid)["state"] == "CompleteCommit", 15, "third commit")
    finally:
        c.close()

    assert values(read_to_end(broker.bootstrap, topic, 1, RC)) == {0: ["a1", "a2", "a3", "c1"]}
    assert values(read_to_end(broker.bootstrap, topic, 1, RU)) == {0: ["a1", "a2", "a3", "b1", "c1"]}


def test_tv2_txn_offset_commit_adds_the_group(broker, unique):
    topic, tid, group = unique("tv2"), unique("txn"), unique("group")
    create_topic(broker.bootstrap, topic)
    c = Conn(broker)
    try:
        err, pid, e0 = c.init_pid_v4(tid)
        assert err == NONE
        assert produce_v12(c, tid, topic, txn_batch(["x"], pid, e0, 0))[0] == NONE
        # TxnOffsetCommit v5 adds the group: no AddOffsetsToTxn.
        assert txn_offset_commit_v5(c, tid, group, pid, e0, topic, 1) == NONE
        # At an old epoch it is fenced.
        assert txn_offset_commit_v5(c, tid, group, pid, e0 - 1, topic, 1) in (
            INVALID_PRODUCER_EPOCH, PRODUCER_FENCED)
        err, _, e1 = end_txn_v5(c, tid, pid, e0, True)
        assert err == NONE and e1 == e0 + 1
        wait_until(lambda: describe(broker, tid)["state"] == "CompleteCommit", 15, "commit markers")
        # After the commit a TxnOffsetCommit at the old epoch cannot reopen the transaction.
        assert txn_offset_commit_v5(c, tid, group, pid, e0, topic, 5) in (
            INVALID_PRODUCER_EPOCH, PRODUCER_FENCED)
        # While the markers are still written, a retry answers CONCURRENT_TRANSACTIONS or the result.
        assert end_txn_v5(c, tid, pid, e0, True)[0] in (NONE, CONCURRENT_TRANSACTIONS)
    finally:
        c.close()
    from confluent_kafka import TopicPartition

    from kutil import admin
    a = admin(broker.bootstrap)
    from confluent_kafka import ConsumerGroupTopicPartitions
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    tps = res[group].result().topic_partitions
    assert [(tp.topic, tp.partition, tp.offset) for tp in tps] == [(topic, 0, 1)]
