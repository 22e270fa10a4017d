"""The transaction coordinator follows `__transaction_state-0` (issue #10): three real nodes, a
transactional confluent-kafka producer writing transactions (records and its consumer group's
offsets) to a topic with three partitions, replication factor 3 and min.insync.replicas=2, and a
kill -9 of the node that leads `__transaction_state-0` (the transaction coordinator) while a
transaction is open.

Then:
- a producer with the same transactional.id initializes against the new coordinator (which
  loaded the replicated transaction log: the open transaction is known there), fencing the
  first producer (whose commit now fails) and aborting its open transaction;
- it commits more transactions, also after the killed node is back;
- a read_committed consumer reads every committed record exactly once and none of the aborted
  ones, through the records written after the kill on every partition: the last stable offset
  did not stay behind the dead coordinator's open transaction; in the end the last stable
  offset of every partition equals its high watermark (no transaction left open);
- the group offsets committed inside the transactions are the last transaction's.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, IsolationLevel, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

from cluster import metadata, wait_until
from workload import COMMON_CONF, create_topic

EXTRA = ["--broker-session-timeout-ms", "3000", "--broker-heartbeat-interval-ms", "500",
         "--initial-rebalance-delay-ms", "300"]
PARTITIONS = 3
RECORDS_PER_TXN = 6
TXNS_BEFORE = 5
TXNS_AFTER = 5
# Bounds (s).
OP_S = 30.0
FAILOVER_S = 60.0
READ_S = 60.0


def producer(bootstrap: str, txn_id: str) -> Producer:
    return Producer({**COMMON_CONF, "bootstrap.servers": bootstrap, "transactional.id": txn_id,
                     "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                     "transaction.timeout.ms": 60000, "message.timeout.ms": 55000})


def produce_txn(p: Producer, topic: str, values: list[str], group_consumer: Consumer | None = None,
                group_offset: int = 0):
    """One transaction with `values` spread over the partitions (and the group's offsets)."""
    p.begin_transaction()
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % PARTITIONS)
    if group_consumer is not None:
        offsets = [TopicPartition(topic, part, group_offset) for part in range(PARTITIONS)]
        p.send_offsets_to_transaction(offsets, group_consumer.consumer_group_metadata(), OP_S)
    p.commit_transaction(OP_S)


def with_retries(what: str, p: Producer, f, deadline_s: float):
    """Runs `f` until it succeeds: retriable errors (the coordinator moving) are retried, an
    abortable one aborts the transaction first (a retried transaction writes its values again;
    the aborted copies must stay invisible), a fatal one fails the test."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return f()
        except KafkaException as e:
            err = e.args[0]
            assert not err.fatal(), f"{what}: fatal error {err}"
            assert time.monotonic() < deadline, f"{what}: still failing after {deadline_s}s: {err}"
            print(f"{what}: {err}; retrying")
            if err.txn_requires_abort():
                p.abort_transaction(OP_S)
            time.sleep(0.2)


def lso_and_hw(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    a = AdminClient({**COMMON_CONF, "bootstrap.servers": bootstrap})
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    out = {}
    committed = a.list_offsets({tp: OffsetSpec.latest() for tp in parts},
                               isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=OP_S)
    uncommitted = a.list_offsets({tp: OffsetSpec.latest() for tp in parts},
                                 isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=OP_S)
    for tp in parts:
        out[tp.partition] = (committed[tp].result(OP_S).offset, uncommitted[tp].result(OP_S).offset)
    return out


def test_transaction_coordinator_killed_with_an_open_transaction(cluster_factory):
    c = cluster_factory(3, extra_args=EXTRA).start()
    bootstrap = c.bootstrap
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    group = f"txn-group-{uuid.uuid4().hex[:8]}"
    txn_id = f"txn-id-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
    c.wait_full_isr(topic)

    # A consumer only for its group metadata (sendOffsetsToTransaction); it never subscribes.
    group_consumer = Consumer({**COMMON_CONF, "bootstrap.servers": bootstrap, "group.id": group})
    committed: list[str] = []
    aborted: list[str] = []
    p1 = producer(bootstrap, txn_id)
    p1.init_transactions(OP_S)
    for t in range(TXNS_BEFORE):
        values = [f"before-{t}-{i}" for i in range(RECORDS_PER_TXN)]
        produce_txn(p1, topic, values, group_consumer, group_offset=t + 1)
        committed += values
    # One aborted transaction: never visible.
    p1.begin_transaction()
    values = [f"aborted-{i}" for i in range(RECORDS_PER_TXN)]
    for i, v in enumerate(values):
        p1.produce(topic, value=v.encode(), partition=i % PARTITIONS)
    p1.flush(OP_S)
    p1.abort_transaction(OP_S)
    aborted += values

    # The coordinator: the leader of __transaction_state-0, replicated on all three nodes.
    md = metadata(bootstrap)
    state = md.topics["__transaction_state"].partitions[0]
    assert sorted(state.replicas) == [1, 2, 3], f"__transaction_state-0 replicas {state.replicas}"
    coordinator = c.leader_of("__transaction_state", 0)

    # A transaction left open: its records are on every partition (acks=all), then the
    # coordinator dies.
    p1.begin_transaction()
    values = [f"open-{i}" for i in range(RECORDS_PER_TXN)]
    for i, v in enumerate(values):
        p1.produce(topic, value=v.encode(), partition=i % PARTITIONS)
    assert p1.flush(OP_S) == 0, "the open transaction's records were not all acknowledged"
    aborted += values
    coordinator.kill9()
    killed_at = time.monotonic()

    # A new producer of the same transactional.id initializes against the new coordinator: it
    # aborts the open transaction (and fences the first producer).
    p2 = producer(bootstrap, txn_id)
    with_retries("init_transactions on the new coordinator", p2, lambda: p2.init_transactions(OP_S), FAILOVER_S)
    new_coordinator = c.leader_of("__transaction_state", 0)
    assert new_coordinator.node_id != coordinator.node_id
    print(f"re-initialized {time.monotonic() - killed_at:.1f}s after the kill; "
          f"coordinator {coordinator.node_id} -> {new_coordinator.node_id}")
    try:
        p1.commit_transaction(OP_S)
        fenced = False
    except KafkaException:
        fenced = True
    assert fenced, "the first producer committed after a new producer of its id initialized"

    def commit_more(prefix: str, first_group_offset: int) -> int:
        """TXNS_AFTER transactions of p2; returns the group offset the last one committed."""
        for t in range(TXNS_AFTER):
            values = [f"{prefix}-{t}-{i}" for i in range(RECORDS_PER_TXN)]
            with_retries(f"transaction {prefix}-{t}", p2,
                         lambda: produce_txn(p2, topic, values, group_consumer,
                                             group_offset=first_group_offset + t),
                         FAILOVER_S)
            committed.extend(values)
        return first_group_offset + TXNS_AFTER - 1

    commit_more("after", 100)

    # The killed node returns; transactions go on.
    coordinator.start()
    c.wait_ready()
    c.wait_full_isr(topic)
    c.wait_full_isr("__transaction_state")
    offset_of_last = commit_more("back", 200)

    # read_committed: every committed record exactly once, no aborted one, through the end.
    reader = Consumer({**COMMON_CONF, "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                       "isolation.level": "read_committed", "enable.auto.commit": False,
                       "auto.offset.reset": "earliest"})
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: dict[str, int] = {}
    deadline = time.monotonic() + READ_S
    want = set(committed)
    while not want.issubset(seen) and time.monotonic() < deadline:
        m = reader.poll(0.5)
        if m is None or m.error():
            continue
        v = m.value().decode()
        seen[v] = seen.get(v, 0) + 1
    # A little more polling: nothing else must arrive.
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        m = reader.poll(0.2)
        if m is not None and not m.error():
            v = m.value().decode()
            seen[v] = seen.get(v, 0) + 1
    reader.close()
    missing = sorted(want - set(seen))
    assert not missing, f"{len(missing)} committed records never read (LSO stuck?): {missing[:10]}"
    twice = {v: n for v, n in seen.items() if n > 1}
    assert not twice, f"records read more than once: {twice}"
    leaked = sorted(set(seen) & set(aborted))
    assert not leaked, f"aborted records read: {leaked}"
    unknown = sorted(set(seen) - want)
    assert not unknown, f"records nobody committed: {unknown}"

    # No transaction is left open: the last stable offset is the high watermark everywhere.
    def settled():
        offsets = lso_and_hw(bootstrap, topic)
        return offsets if all(lso == hw for lso, hw in offsets.values()) else None
    wait_until(settled, OP_S, "LSO == HW on every partition", interval=0.5)

    # The group offsets of the last committed transaction, from the group coordinator.
    admin = AdminClient({**COMMON_CONF, "bootstrap.servers": bootstrap})
    expected = {p: offset_of_last for p in range(PARTITIONS)}

    def group_offsets():
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=OP_S)
        got = fut[group].result(OP_S)
        offsets = {tp.partition: tp.offset for tp in got.topic_partitions if tp.topic == topic}
        return offsets if offsets == expected else None
    got = wait_until(group_offsets, OP_S, f"the last transaction's group offsets {expected}", interval=0.5)

    # `sluice txn` asked of a node that does not coordinate finds the coordinator.
    other = next(n for n in c.nodes if n.node_id != c.leader_of("__transaction_state", 0).node_id)

    def cli(*args):
        out = subprocess.run([c.binary, "txn", *args, "--bootstrap-server", other.kafka_addr,
                              "--output", "json"], capture_output=True, text=True, timeout=OP_S)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    described = cli("describe", txn_id)
    assert described["state"] == "CompleteCommit", described
    listed = cli("list")
    assert txn_id in [t["transactional_id"] for t in listed], listed
    print(f"group offsets {got}; {len(committed)} committed records read once, {len(aborted)} aborted unseen")
    group_consumer.close()
