"""Transactions end to end with confluent-kafka (librdkafka): the research test plan's T2, T3, T4,
T5, T9, T10 and a broker kill -9 in the middle of a transaction
(docs: /work/shared/research/transactions-compaction.md §5.5).

What every test checks in the end: read_committed consumers see committed data only, in offset
order; read_uncommitted consumers see aborted data too; the LSO (ListOffsets latest with
isolation read_committed, and the read_committed consumer's high watermark) stops at the first
offset of the oldest open transaction and moves once it is decided.
"""

import os
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from conftest import wait_until
from kutil import consumer, create_topic, producer
from txnutil import (RC, RU, all_values, describe_producers, describe_transaction, end_offsets,
                     list_latest, list_transactions, produce, read_line,
                     read_to_end, start_copier, txn_producer, values, watermarks)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", autouse=True)
def fast_timeout_aborts():
    """Sluice checks for timed-out transactions every second instead of every 10 s (Kafka's
    transaction.abort.timed.out.transaction.cleanup.interval.ms, which the reference Kafka of
    tests/kafka-ref also sets to 1 s). Autouse, so set before the brokers of this module start."""
    old = os.environ.get("SLUICE_TRANSACTION_ABORT_INTERVAL_MS")
    os.environ["SLUICE_TRANSACTION_ABORT_INTERVAL_MS"] = "1000"
    yield
    if old is None:
        del os.environ["SLUICE_TRANSACTION_ABORT_INTERVAL_MS"]
    else:
        os.environ["SLUICE_TRANSACTION_ABORT_INTERVAL_MS"] = old


def test_commit_and_abort_across_partitions(broker, unique):
    """T2: committed, aborted and committed transactions over 3 partitions."""
    b = broker.bootstrap
    topic = create_topic(b, unique("txn"), partitions=3)
    p = txn_producer(b, unique("tid"))
    sent = {"c1": [], "a": [], "c2": []}
    for name, commit in (("c1", True), ("a", False), ("c2", True)):
        p.begin_transaction()
        for part in range(3):
            vs = [f"{name}-{part}-{i}" for i in range(20)]
            produce(p, topic, vs, partition=part, flush=False)
            sent[name].append(vs)
        if commit:
            p.commit_transaction(30)
        else:
            assert p.flush(30) == 0  # the aborted records are in the log
            p.abort_transaction(30)

    rc = values(read_to_end(b, topic, 3, RC))
    ru = values(read_to_end(b, topic, 3, RU))
    for part in range(3):
        assert rc[part] == sent["c1"][part] + sent["c2"][part]
        assert ru[part] == sent["c1"][part] + sent["a"][part] + sent["c2"][part]
        # 60 records + 3 control records (one marker per transaction); all decided: LSO == HW
        ends = end_offsets(b, topic, part)
        assert ends == {"rc": 63, "ru": 63}, ends
        assert watermarks(b, topic, part, RC) == (0, 63)
    p.flush(5)


def test_empty_and_offsets_only_transactions(broker, unique):
    """Empty transactions commit and abort; a transaction with only offsets (send_offsets)
    commits them for read_committed and uncommitted OffsetFetch alike."""
    b = broker.bootstrap
    topic = create_topic(b, unique("txn"), partitions=1)
    group = unique("g")
    p = txn_producer(b, unique("tid"))
    p.begin_transaction()
    p.commit_transaction(30)
    p.begin_transaction()
    p.abort_transaction(30)
    c = consumer(b, group, isolation_level=RC)
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 7)], c.consumer_group_metadata(), 30)
    p.abort_transaction(30)
    got = c.committed([TopicPartition(topic, 0)], timeout=15)[0]
    assert got.error is None and got.offset < 0, got  # aborted: nothing committed
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 5)], c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    got = c.committed([TopicPartition(topic, 0)], timeout=15)[0]
    assert got.error is None and got.offset == 5, got
    c.close()
    assert end_offsets(b, topic, 0) == {"rc": 0, "ru": 0}


def test_open_transaction_blocks_read_committed_at_its_first_offset(broker, unique):
    """T3: A opens a transaction; B keeps writing non-transactionally. read_committed stops at A's
    first offset (LSO); after A commits, everything appears in offset order."""
    b = broker.bootstrap
    topic = create_topic(b, unique("txn"), partitions=1)
    plain = producer(b, acks="all", enable_idempotence=True)
    produce(plain, topic, [f"pre-{i}" for i in range(10)], partition=0)
    tid = unique("tid")
    a = txn_producer(b, tid)
    a.begin_transaction()
    produce(a, topic, [f"a-{i}" for i in range(5)], partition=0)
    produce(plain, topic, [f"b-{i}" for i in range(5)], partition=0)

    ends = end_offsets(b, topic, 0)
    assert ends == {"rc": 10, "ru": 20}, ends
    # The admin view of the open transaction (what kafka-transactions.sh describe shows).
    d = describe_transaction(b, tid)
    assert d["error_code"] == 0 and d["state"] == "Ongoing", d
    assert d["partitions"] == {(topic, 0)}, d
    code, producers = describe_producers(b, topic, 0)
    assert code == 0
    open_txns = [p for p in producers if p["current_txn_start_offset"] >= 0]
    assert [(p["producer_id"], p["current_txn_start_offset"]) for p in open_txns] == [(d["producer_id"], 10)], producers
    # A read_committed consumer gets the 10 records before A's and nothing else.
    c = consumer(b, isolation_level=RC)
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.value().decode())
    assert got == [f"pre-{i}" for i in range(10)]
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        m = c.poll(0.1)
        assert m is None or m.error(), f"read_committed saw {m.value()!r} past the LSO"
    assert values(read_to_end(b, topic, 1, RU))[0] == (
        [f"pre-{i}" for i in range(10)] + [f"a-{i}" for i in range(5)] + [f"b-{i}" for i in range(5)])

    a.commit_transaction(30)
    wait_until(lambda: describe_transaction(b, tid)["state"] == "CompleteCommit", 15, "CompleteCommit")
    while len(got) < 20 and time.monotonic() < deadline + 20:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.value().decode())
    assert got == [f"pre-{i}" for i in range(10)] + [f"a-{i}" for i in range(5)] + [f"b-{i}" for i in range(5)]
    c.close()
    assert end_offsets(b, topic, 0) == {"rc": 21, "ru": 21}  # + the COMMIT marker


def test_coordinator_aborts_a_timed_out_transaction(broker, unique):
    """T4: transaction.timeout.ms=6000 and no commit: the coordinator aborts it (DescribeTransactions
    and ListTransactions show CompleteAbort), the LSO moves, the producer cannot commit it (fenced,
    or told to abort), and the data stays invisible. The timeout leaves the steps before the first
    LSO check seconds to spare on a loaded machine (with 2000 ms a slow CI run saw the abort land
    before that check)."""
    b = broker.bootstrap
    topic = create_topic(b, unique("txn"), partitions=1)
    tid = unique("tid")
    p = txn_producer(b, tid, transaction_timeout_ms=6000)
    p.begin_transaction()
    produce(p, topic, [f"x-{i}" for i in range(3)], partition=0)
    assert list_latest(b, topic, 0, RC) == 0
    # Kafka checks for timed-out transactions every 10 s (transaction.abort.timed.out.transaction.
    # cleanup.interval.ms), so this waits well past the timeout.
    wait_until(lambda: list_latest(b, topic, 0, RC) == 4, 40, "the coordinator to abort (LSO 0 -> 4)",
               interval=0.2)
    assert list_latest(b, topic, 0, RU) == 4
    d = describe_transaction(b, tid)
    assert d["state"] == "CompleteAbort", d
    code, listed = list_transactions(b)
    assert code == 0 and listed.get(tid) == "CompleteAbort", listed
    code, listed = list_transactions(b, ["Ongoing"])
    assert code == 0 and tid not in listed, listed
    with pytest.raises(KafkaException) as ei:
        p.commit_transaction(30)
    err = ei.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    assert err.code() in (KafkaError._FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                          KafkaError.PRODUCER_FENCED, KafkaError.INVALID_TXN_STATE), err
    assert values(read_to_end(b, topic, 1, RC))[0] == []
    assert values(read_to_end(b, topic, 1, RU))[0] == ["x-0", "x-1", "x-2"]
    # A new producer with the same id works.
    p2 = txn_producer(b, tid)
    p2.begin_transaction()
    produce(p2, topic, ["y-0"], partition=0)
    p2.commit_transaction(30)
    assert values(read_to_end(b, topic, 1, RC))[0] == ["y-0"]


def test_second_producer_with_same_id_fences_the_first(broker, unique):
    """T5: init_transactions by a second producer with the same transactional.id fences the first
    (fatal _FENCED) and aborts its open transaction."""
    b = broker.bootstrap
    topic = create_topic(b, unique("txn"), partitions=2)
    tid = unique("tid")
    p1 = txn_producer(b, tid)
    p1.begin_transaction()
    produce(p1, topic, ["p1-0", "p1-1"], partition=0)
    produce(p1, topic, ["p1-2"], partition=1)

    p2 = txn_producer(b, tid)  # init_transactions: aborts p1's transaction, bumps the epoch
    p2.begin_transaction()
    produce(p2, topic, ["p2-0"], partition=0)
    produce(p2, topic, ["p2-1"], partition=1)
    p2.commit_transaction(30)

    with pytest.raises(KafkaException) as ei:
        p1.commit_transaction(30)
    err = ei.value.args[0]
    assert err.fatal(), err
    assert err.code() == KafkaError._FENCED, err
    with pytest.raises(KafkaException):  # fatal: the producer stays unusable
        p1.begin_transaction()

    rc = values(read_to_end(b, topic, 2, RC))
    assert rc == {0: ["p2-0"], 1: ["p2-1"]}
    ru = values(read_to_end(b, topic, 2, RU))
    assert ru == {0: ["p1-0", "p1-1", "p2-0"], 1: ["p1-2", "p2-1"]}
    for part in range(2):
        e = end_offsets(b, topic, part)
        assert e["rc"] == e["ru"], e


HOLDER = r"""
import sys, time
from confluent_kafka import Producer
b, topic, tid = sys.argv[1:4]
p = Producer({"bootstrap.servers": b, "transactional.id": tid, "transaction.timeout.ms": 6000})
p.init_transactions(30)
p.begin_transaction()
for i in range(3):
    p.produce(topic, key=b"k", value=f"held-{i}".encode(), partition=0)
assert p.flush(30) == 0
print("READY", flush=True)
time.sleep(600)
"""


def test_killed_producer_holds_lso_until_timeout_abort(broker, unique, tmp_path):
    """T9: kill -9 a producer in the middle of a transaction (no restart): the LSO stays at the
    transaction's first offset (DescribeProducers shows it as CurrentTxnStartOffset), other writes
    stay invisible to read_committed, and the coordinator's timeout abort releases them."""
    import subprocess
    import sys

    b = broker.bootstrap
    topic = create_topic(b, unique("txn"), partitions=1)
    plain = producer(b, acks="all", enable_idempotence=True)
    produce(plain, topic, ["before"], partition=0)
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), b, topic, unique("tid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        read_line(proc, "READY", 30)
        proc.kill()
        proc.wait(10)
        produce(plain, topic, ["after-0", "after-1"], partition=0)
        # Within the 6 s timeout the transaction is open: LSO = its first offset.
        assert end_offsets(b, topic, 0) == {"rc": 1, "ru": 6}
        code, producers = describe_producers(b, topic, 0)
        assert code == 0 and [p["current_txn_start_offset"] for p in producers if p["current_txn_start_offset"] >= 0] == [1], producers
        wait_until(lambda: list_latest(b, topic, 0, RC) == 7, 40,
                   "the timeout abort to release the LSO", interval=0.2)
        code, producers = describe_producers(b, topic, 0)
        assert code == 0 and all(p["current_txn_start_offset"] == -1 for p in producers), producers
        assert list_latest(b, topic, 0, RU) == 7
        assert values(read_to_end(b, topic, 1, RC))[0] == ["before", "after-0", "after-1"]
        assert values(read_to_end(b, topic, 1, RU))[0] == [
            "before", "held-0", "held-1", "held-2", "after-0", "after-1"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_restarted_copier_never_reads_pending_offsets(broker, unique, tmp_path):
    """T10: a copier is killed after send_offsets_to_transaction, before its commit. While that
    transaction is undecided, a read_committed OffsetFetch (RequireStable) never returns its
    pending offset (UNSTABLE_OFFSET_COMMIT is retried); read_uncommitted gets the previous commit.
    After the timeout abort the restarted copier resumes from the previous commit and the output
    holds every input record exactly once."""
    b = broker.bootstrap
    src = create_topic(b, unique("in"), partitions=1)
    dst = create_topic(b, unique("out"), partitions=1)
    group = unique("g")
    tid = unique("copier")
    log = tmp_path / "copier.jsonl"
    plain = producer(b, acks="all", enable_idempotence=True)
    inputs = [str(i) for i in range(300)]
    produce(plain, src, inputs, partition=0)

    proc = start_copier(b, src, dst, 0, group, tid, log, batch=100, abort_every=0, hold=1,
                        txn_timeout_ms=6000)
    try:
        line = read_line(proc, "HOLD", 60)
        assert line == "HOLD next=200 committed=100", line
        proc.kill()
        proc.wait(10)
        tp = TopicPartition(src, 0)
        ru = consumer(b, group, isolation_level=RU)
        got = ru.committed([tp], timeout=15)[0]
        assert got.error is None and got.offset == 100, got
        ru.close()
        rc = consumer(b, group, isolation_level=RC)
        # RequireStable: UNSTABLE_OFFSET_COMMIT, which librdkafka retries until the timeout. No
        # offset at all while the transaction is undecided: not the pending 200, and not 100,
        # which the pending commit may be about to replace.
        try:
            got = rc.committed([tp], timeout=2)[0]
            assert got.error is not None, f"read_committed OffsetFetch answered {got} while offsets are pending"
        except KafkaException as e:
            assert kafka_code(e) in (KafkaError.UNSTABLE_OFFSET_COMMIT, KafkaError._TIMED_OUT), e
        # The coordinator aborts the transaction (timeout): the offset stays at 100.
        def stable():
            try:
                g = rc.committed([tp], timeout=2)[0]
            except KafkaException:
                return None
            return g if g.error is None else None
        got = wait_until(stable, 40, "the pending offsets to be aborted", interval=0.2)
        assert got.offset == 100, got
        rc.close()
        assert values(read_to_end(b, dst, 1, RC))[0] == inputs[:100]

        proc = start_copier(b, src, dst, 0, group, tid, log, batch=100, abort_every=0)
        assert read_line(proc, "START", 60) == "START committed=100 end=300"
        read_line(proc, "DONE", 60)
        assert proc.wait(10) == 0
        assert values(read_to_end(b, dst, 1, RC))[0] == inputs
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def kafka_code(exc):
    return exc.args[0].code()


@pytest.mark.parametrize("finish", ["commit", "abort"])
def test_broker_kill9_mid_transaction(broker_factory, unique, finish):
    """The broker is killed (-9) while a transaction is open, then restarted: the same producer can
    still finish it (commit, or abort when the broker lost it), aborted data is never visible, and
    the LSO ends at the log end."""
    br = broker_factory()
    b = br.bootstrap
    topic = create_topic(b, unique("txn"), partitions=2)
    p = txn_producer(b, unique("tid"), transaction_timeout_ms=60000)
    p.begin_transaction()
    produce(p, topic, ["c-0", "c-1"], partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    produce(p, topic, ["o-0", "o-1"], partition=0)
    produce(p, topic, ["o-2"], partition=1)
    br.kill9()
    br.start()
    committed = False
    if finish == "commit":
        try:
            p.commit_transaction(60)
            committed = True
        except KafkaException as e:
            err = e.args[0]
            assert err.txn_requires_abort() and not err.fatal(), err
            p.abort_transaction(60)
    else:
        p.abort_transaction(60)
    rc = values(read_to_end(b, topic, 2, RC))
    ru = values(read_to_end(b, topic, 2, RU))
    if committed:
        assert rc == {0: ["c-0", "c-1", "o-0", "o-1"], 1: ["o-2"]}
    else:
        assert rc == {0: ["c-0", "c-1"], 1: []}
    assert ru == {0: ["c-0", "c-1", "o-0", "o-1"], 1: ["o-2"]}
    for part in range(2):
        e = end_offsets(b, topic, part)
        assert e["rc"] == e["ru"], e
    # The producer goes on after the restart.
    p.begin_transaction()
    produce(p, topic, ["n-0"], partition=1)
    p.commit_transaction(30)
    assert values(read_to_end(b, topic, 2, RC))[1][-1] == "n-0"
    # After another restart nothing aborted shows up (markers and the LSO are recovered).
    br.kill9()
    br.start()
    rc2 = values(read_to_end(b, topic, 2, RC))
    assert rc2[0] == rc[0] and rc2[1] == rc[1] + ["n-0"]
    assert ("o-2" in all_values(read_to_end(b, topic, 2, RC))) == committed
