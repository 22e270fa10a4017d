"""Share groups (KIP-932 queues) survive failover on three real nodes (issue #10).

Two librdkafka ShareConsumers (confluent-kafka 2.16) of one share group work through an RF 3
topic of three partitions: they accept most records, release some once (so they come back with
a higher delivery count) and reject some (so they reach the DLQ topic `dlq.<group>`). Meanwhile
the leader of a user partition is killed with kill -9 (its share-partition moves to the new
leader, which loads the last committed state from the share coordinator), and then the share
coordinator's node itself (the leader of `__share_group_state-0`: a new one loads the replicated
state). Each killed node comes back afterwards. Checked over the whole run:

- no record is delivered again after its acceptance was acknowledged (commit_sync succeeded),
  and none is accepted successfully twice;
- every record that is not rejected is accepted (none lost), every rejected one is in the DLQ
  exactly once, with the headers naming its origin;
- a released record comes back with a delivery count above 1 (counts survive the moves);
- the queue makes progress after each kill.
"""

import threading
import time
import urllib.request
import uuid

import pytest
from collections import defaultdict

from confluent_kafka import AcknowledgeType, Consumer, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)

from cluster import wait_until

EXTRA = ["--broker-session-timeout-ms", "3000", "--broker-heartbeat-interval-ms", "500",
         "--initial-rebalance-delay-ms", "300"]
PARTITIONS = 3
PER_PHASE = 150
PROGRESS_S = 90.0


def kind_of(i: int) -> str:
    """What the workers do with record i: reject (to the DLQ), release once, or accept."""
    if i % 10 == 3:
        return "reject"
    if i % 10 == 7:
        return "release_once"
    return "accept"


class Workers:
    """Share consumers in threads; every delivery and acknowledgement outcome is recorded."""

    def __init__(self, bootstrap: str, group: str, topic: str, n: int = 2):
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.lock = threading.Lock()
        self.deliveries = []  # (value, delivery_count, partition, offset, time)
        self.accepted_ok = defaultdict(list)  # value -> times its ACCEPT was committed
        self.accept_tries = defaultdict(int)
        self.released = set()
        self.errors = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(n)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def accepted(self) -> int:
        with self.lock:
            return len(self.accepted_ok)

    def run(self, k: int):
        c = ShareConsumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                           "share.acknowledgement.mode": "explicit", "log_level": 3,
                           "client.id": f"worker-{k}"})
        c.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                try:
                    msgs = c.poll(0.3)
                except Exception as e:  # noqa: BLE001 - a moving leader: poll again
                    with self.lock:
                        self.errors.append(f"poll: {e}")
                    continue
                acks = []
                for m in msgs:
                    if m.error():
                        with self.lock:
                            self.errors.append(f"message: {m.error()}")
                        continue
                    v = int(m.value().decode())
                    with self.lock:
                        self.deliveries.append((v, m.delivery_count(), m.partition(), m.offset(),
                                                time.monotonic()))
                        kind = kind_of(v)
                        if kind == "release_once" and v not in self.released:
                            self.released.add(v)
                            ack = AcknowledgeType.RELEASE
                        elif kind == "reject":
                            ack = AcknowledgeType.REJECT
                        else:
                            ack = AcknowledgeType.ACCEPT
                            self.accept_tries[v] += 1
                    c.acknowledge(m, ack)
                    acks.append((v, m.partition(), ack))
                if not acks:
                    continue
                try:
                    res = c.commit_sync(15) or {}
                    bad = {tp.partition for tp, e in res.items() if e is not None}
                except Exception as e:  # noqa: BLE001 - the acknowledgement's outcome is unknown
                    with self.lock:
                        self.errors.append(f"commit: {e}")
                    continue
                now = time.monotonic()
                with self.lock:
                    for v, p, ack in acks:
                        if ack == AcknowledgeType.ACCEPT and p not in bad:
                            self.accepted_ok[v].append(now)
                    if bad:
                        self.errors.append(f"commit failed for partitions {sorted(bad)}")
        finally:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass


def produce(bootstrap: str, topic: str, values):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5})
    failed = []
    for v in values:
        p.produce(topic, str(v).encode(), partition=v % PARTITIONS,
                  on_delivery=lambda e, m: failed.append(e) if e else None)
    assert p.flush(60) == 0, "records left unsent"
    assert not failed, failed


def share_metrics(cluster) -> str:
    """The share-related request counters of every running node (for a failure's report)."""
    out = []
    for n in cluster.nodes:
        if not n.alive():
            continue
        try:
            with urllib.request.urlopen(n.http + "/metrics", timeout=5) as r:
                lines = [ln for ln in r.read().decode().splitlines()
                         if "Share" in ln and not ln.startswith("#")]
        except Exception as e:  # noqa: BLE001 - a report, best effort
            lines = [str(e)]
        out.append(f"n{n.node_id}: " + "; ".join(lines))
    return "\n".join(out)


def wait_progress(cluster, workers: Workers, more: int, what: str):
    start = workers.accepted()
    try:
        wait_until(lambda: workers.accepted() >= start + more, PROGRESS_S, what, interval=0.2)
    except AssertionError as e:
        with workers.lock:
            raise AssertionError(f"{e}; accepted {len(workers.accepted_ok)} (from {start}), "
                                 f"{len(workers.deliveries)} deliveries; last client errors: "
                                 f"{workers.errors[-15:]}\n{share_metrics(cluster)}") from None


@pytest.mark.xfail(strict=False, reason="flaky (about half the runs, issue #10 repl-share): after a "
                   "kill, librdkafka 2.16's ShareConsumer sometimes stops fetching a partition "
                   "that moved (no client error, no requests to its new leader), and a dead letter "
                   "copied just before its share-partition moved is copied again by the new "
                   "leader (at-least-once into the DLQ)")
def test_share_group_survives_leader_and_share_coordinator_kills(cluster_factory):
    c = cluster_factory(3, extra_args=EXTRA).start()
    topic, group = f"q-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 3,
                                           config={"min.insync.replicas": "2"})]).values():
        f.result(30)
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)
    c.wait_full_isr(topic)

    produce(c.bootstrap, topic, range(0, PER_PHASE))
    workers = Workers(c.bootstrap, group, topic).start()
    try:
        wait_progress(c, workers, 40, "the share group accepting records")

        # 1. kill -9 the leader of a user partition that is not the share coordinator.
        coordinator = c.leader_of("__share_group_state", 0)
        victim = next(n for n in (c.leader_of(topic, p) for p in range(PARTITIONS))
                      if n.node_id != coordinator.node_id)
        victim.kill9()
        produce(c.bootstrap, topic, range(PER_PHASE, 2 * PER_PHASE))
        wait_progress(c, workers, 60, "progress after the partition leader was killed")
        victim.start()
        c.wait_ready()

        # 2. kill -9 the share coordinator's node.
        coordinator = c.leader_of("__share_group_state", 0)
        coordinator.kill9()
        produce(c.bootstrap, topic, range(2 * PER_PHASE, 3 * PER_PHASE))
        wait_progress(c, workers, 60, "progress after the share coordinator was killed")
        coordinator.start()
        c.wait_ready()

        total = 3 * PER_PHASE
        must_accept = {v for v in range(total) if kind_of(v) != "reject"}
        wait_until(lambda: must_accept <= set(workers.accepted_ok), 2 * PROGRESS_S,
                   "every record accepted", interval=0.5)
        time.sleep(3)  # a late redelivery would show up here (the checks below)
    finally:
        workers.stop.set()
        for t in workers.threads:
            t.join(30)

    with workers.lock:
        deliveries = list(workers.deliveries)
        accepted_ok = dict(workers.accepted_ok)
    # No record is delivered again after its acceptance was acknowledged.
    redelivered = [(v, dc, t) for v, dc, _, _, t in deliveries
                   if v in accepted_ok and t > min(accepted_ok[v])]
    assert not redelivered, f"acknowledged records delivered again: {redelivered[:10]}"
    twice = {v: ts for v, ts in accepted_ok.items() if len(ts) > 1}
    assert not twice, f"records accepted successfully twice: {twice}"
    # None lost; nothing rejected was accepted.
    assert set(accepted_ok) == must_accept
    # Released records came back with a higher delivery count.
    counts = defaultdict(int)
    for v, dc, *_ in deliveries:
        counts[v] = max(counts[v], dc)
    released = [v for v in must_accept if kind_of(v) == "release_once"]
    assert all(counts[v] >= 2 for v in released), \
        {v: counts[v] for v in released if counts[v] < 2}

    # The DLQ holds every rejected record exactly once, with its origin.
    rejected = sorted(v for v in range(total) if kind_of(v) == "reject")
    dlq = f"dlq.{group}"
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"read-{group}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed"})
    got = []
    try:
        meta = wait_until(lambda: cons.list_topics(dlq, timeout=5).topics.get(dlq), 30,
                          "the DLQ topic")
        cons.assign([TopicPartition(dlq, p, 0) for p in meta.partitions])

        def read_all():
            for m in cons.consume(500, 1.0):
                if m.error() is None:
                    got.append(m)
            return len(got) >= len(rejected)
        wait_until(read_all, 60, "every dead letter", interval=0)
        for m in cons.consume(500, 2.0):  # and nothing more
            if m.error() is None:
                got.append(m)
    finally:
        cons.close()
    values = sorted(int(m.value().decode()) for m in got)
    assert values == rejected, f"DLQ holds {len(values)} letters for {len(rejected)} rejections"
    for m in got:
        h = {k: v.decode() for k, v in (m.headers() or [])}
        v = int(m.value().decode())
        assert h["__dlq.errors.topic"] == topic
        assert h["__dlq.errors.partition"] == str(v % PARTITIONS)
        assert h["__dlq.errors.reason"] == "rejected"
        assert int(h["__dlq.errors.delivery.count"]) >= 1
