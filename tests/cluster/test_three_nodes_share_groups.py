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

import os
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from collections import defaultdict

from confluent_kafka import AcknowledgeType, Consumer, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)

from cluster import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
import jvm  # noqa: E402

EXTRA = ["--broker-session-timeout-ms", "3000", "--broker-heartbeat-interval-ms", "500",
         "--initial-rebalance-delay-ms", "300"]
PARTITIONS = 3
PER_PHASE = 150
PROGRESS_S = 90.0
PROCESS_S = 0.02


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
        self.acks_committed = 0  # acknowledgements (any type) whose commit succeeded
        self.errors = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(n)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait_delivered_from(self, first: int):
        """Waits until a record numbered `first` or above was delivered (a kill then finds
        records of that phase acquired and not yet acknowledged: each takes PROCESS_S)."""
        def seen():
            with self.lock:
                return any(v >= first for v, *_ in self.deliveries)
        wait_until(seen, PROGRESS_S, f"a delivery of record {first} or above", interval=0.05)

    def run(self, k: int):
        c = ShareConsumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                           "share.acknowledgement.mode": "explicit", "log_level": 3,
                           "client.id": f"worker-{k}", **({"debug": os.environ["SHARE_DEBUG"]} if os.environ.get("SHARE_DEBUG") else {})})
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
                    time.sleep(PROCESS_S)  # the work, so that kills find records in flight
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
                    self.acks_committed += sum(1 for _, p, _ in acks if p not in bad)
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


def share_config(admin, group: str):
    """The group starts at the earliest record (records produced before it first reads)."""
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


def create_queue(c, topic: str, group: str, partitions: int = PARTITIONS, config=None):
    """An RF 3 topic with every replica in sync, read by `group` from its earliest record."""
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 3,
                                           config=config or {})]).values():
        f.result(30)
    share_config(admin, group)
    c.wait_full_isr(topic)


def wait_all_accepted(cluster, workers: Workers, produced: int, what: str):
    """Waits until every record produced so far that is not to be rejected was accepted.

    An absolute target: records produced after a kill can only be accepted after it, and the
    workers may have accepted some of them before this is called."""
    want = {v for v in range(produced) if kind_of(v) != "reject"}
    try:
        wait_until(lambda: want <= set(workers.accepted_ok), PROGRESS_S, what, interval=0.2)
    except AssertionError as e:
        with workers.lock:
            missing = sorted(want - set(workers.accepted_ok))
            raise AssertionError(f"{e}; {len(missing)} never accepted (first: {missing[:20]}), "
                                 f"{len(workers.deliveries)} deliveries; last client errors: "
                                 f"{workers.errors[-15:]}\n{share_metrics(cluster)}") from None


def test_share_group_survives_leader_and_share_coordinator_kills(cluster_factory):
    c = cluster_factory(3, extra_args=EXTRA).start()
    topic, group = f"q-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create_queue(c, topic, group, config={"min.insync.replicas": "2"})

    workers = Workers(c.bootstrap, group, topic).start()
    try:
        produce(c.bootstrap, topic, range(0, PER_PHASE))
        wait_all_accepted(c, workers, PER_PHASE, "the share group accepting records")

        # 1. kill -9 the leader of a user partition that is not the share coordinator, while
        # the workers hold records of the next phase.
        coordinator = c.leader_of("__share_group_state", 0)
        victim = next(n for n in (c.leader_of(topic, p) for p in range(PARTITIONS))
                      if n.node_id != coordinator.node_id)
        produce(c.bootstrap, topic, range(PER_PHASE, 2 * PER_PHASE))
        workers.wait_delivered_from(PER_PHASE)
        victim.kill9()
        wait_all_accepted(c, workers, 2 * PER_PHASE, "progress after the partition leader was killed")
        victim.start()
        c.wait_ready()

        # 2. kill -9 the share coordinator's node the same way.
        coordinator = c.leader_of("__share_group_state", 0)
        produce(c.bootstrap, topic, range(2 * PER_PHASE, 3 * PER_PHASE))
        workers.wait_delivered_from(2 * PER_PHASE)
        coordinator.kill9()
        wait_all_accepted(c, workers, 3 * PER_PHASE, "progress after the share coordinator was killed")
        coordinator.start()
        c.wait_ready()

        total = 3 * PER_PHASE
        must_accept = {v for v in range(total) if kind_of(v) != "reject"}
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


def metric(node, name: str) -> float:
    """The sum of a metric's samples on one node (0 when absent)."""
    with urllib.request.urlopen(node.http + "/metrics", timeout=5) as r:
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in r.read().decode().splitlines()
                   if ln.startswith(name) and not ln.startswith("#"))


def test_a_dead_letter_written_with_an_unknown_outcome_is_not_copied_twice(cluster_factory):
    """The DLQ partition's follower stops (SIGSTOP) while a dead letter is copied: the leader
    appends the copy but cannot get it committed in time, so the writer cannot know whether it
    was written. Its retries look for the copy first instead of appending another (before the
    fix, every retry appended one more), and once the follower is back the dead letter is in the
    DLQ exactly once."""
    c = cluster_factory(3, extra_args=["--broker-session-timeout-ms", "60000",
                                       "--initial-rebalance-delay-ms", "300"]).start()
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    group = f"g-{uuid.uuid4().hex[:6]}"
    topic, dlq = f"q-{uuid.uuid4().hex[:6]}", f"dlq.{group}"

    # Warm up on another topic and group, so that the internal topics exist and have leaders.
    warm = f"w-{uuid.uuid4().hex[:6]}"
    create_queue(c, warm, f"{group}-warm", partitions=1)
    produce(c.bootstrap, warm, [0])
    w = Workers(c.bootstrap, f"{group}-warm", warm, n=1).start()
    try:
        wait_all_accepted(c, w, 1, "the warm-up record accepted")
    finally:
        w.stop.set()
        w.threads[0].join(30)

    # a leads the work topic and the DLQ partition; b, the DLQ partition's follower, is not the
    # controller (the config change below goes there while b is stopped) and, where the cluster
    # allows, leads no internal partition: nothing is written to them while b is stopped.
    controller = admin.list_topics(timeout=30).controller_id
    busy = {c.leader_of("__share_group_state", 0).node_id,
            c.leader_of("__consumer_offsets", 0).node_id}
    candidates = [n for n in c.nodes if n.node_id != controller]
    b = next((n for n in candidates if n.node_id not in busy), candidates[0])
    a = next(n for n in c.nodes if n.node_id != b.node_id)
    # min.insync.replicas=3 on two replicas: every copy is refused (before it is appended)
    # until the config is lowered, below.
    for f in admin.create_topics([
            NewTopic(topic, num_partitions=1, replication_factor=-1, replica_assignment=[[a.node_id]]),
            NewTopic(dlq, num_partitions=1, replication_factor=-1, replica_assignment=[[a.node_id, b.node_id]],
                     config={"min.insync.replicas": "3"})]).values():
        f.result(30)
    c.wait_full_isr(dlq)
    share_config(admin, group)
    produce(c.bootstrap, topic, [3])  # kind_of(3) == "reject"
    workers = Workers(c.bootstrap, group, topic, n=1).start()
    try:
        # The rejection is recorded (its dead-lettering committed in the share state, whose
        # partition b also replicates) before b stops; only the DLQ copy is left to do.
        wait_until(lambda: workers.acks_committed >= 1, PROGRESS_S, "the rejection committed",
                   interval=0.1)
        b.pause()
        try:
            res = ConfigResource(ResourceType.TOPIC, dlq, incremental_configs=[
                ConfigEntry("min.insync.replicas", "2",
                            incremental_operation=AlterConfigOpType.SET)])
            for f in admin.incremental_alter_configs([res]).values():
                f.result(30)
            # The copy is appended on a, and waits for b: each attempt ends unknown after 5 s.
            time.sleep(12)
        finally:
            b.resume()
        wait_until(lambda: metric(a, "sluice_dlq_already_copied_total") >= 1, PROGRESS_S,
                   "the retry finding the copy the first attempt made", interval=0.5)
    finally:
        workers.stop.set()
        workers.threads[0].join(30)
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"read-{group}",
                     "enable.auto.commit": False})
    try:
        low, high = cons.get_watermark_offsets(TopicPartition(dlq, 0), timeout=30)
    finally:
        cons.close()
    assert (low, high) == (0, 1), f"the DLQ holds {high - low} copies of one dead letter"


def java_offsets(cp, bootstrap: str, group: str) -> dict:
    """(topic, partition) -> start offset, through the Java AdminClient."""
    r = jvm.run(cp, "share-offsets-list", bootstrap, group, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("OFFSET "):
            _, topic, partition, start = line.split()
            out[(topic, int(partition))] = int(start)
    return out


def test_share_offset_admin_reaches_every_partition_leader(cluster_factory):
    """The Java AdminClient lists, resets and deletes a share group's offsets on a topic whose
    three partitions have three different leaders: the group coordinator that answers reads the
    start offsets from the share coordinator and has each change made by the partition's leader
    (whose live share-partition would otherwise write its old state back)."""
    cp = jvm.java_classpath()  # skips without java/mvn (before any node starts)
    c = cluster_factory(3, extra_args=EXTRA).start()
    topic, group = f"q-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create_queue(c, topic, group)
    assert len({c.leader_of(topic, p).node_id for p in range(PARTITIONS)}) > 1
    values = [v for v in range(30) if kind_of(v) == "accept"]  # 8 per partition... and 7
    produce(c.bootstrap, topic, values)
    per_partition = {p: sum(1 for v in values if v % PARTITIONS == p) for p in range(PARTITIONS)}

    def work_through(what):
        w = Workers(c.bootstrap, group, topic, n=1).start()
        try:
            wait_until(lambda: set(values) <= {v for v, *_ in w.deliveries}
                       and set(values) <= set(w.accepted_ok), PROGRESS_S, what, interval=0.2)
        finally:
            w.stop.set()
            w.threads[0].join(30)  # closes the consumer: the group is empty again

    work_through("every record accepted")
    ends = {(topic, p): per_partition[p] for p in range(PARTITIONS)}
    # The start offsets move past the accepted records on every leader.
    wait_until(lambda: java_offsets(cp, c.bootstrap, group) == ends, PROGRESS_S,
               "start offsets at the end of every partition", interval=1.0)

    # Reset every partition to 0 (the group is empty): the records are delivered again.
    def altered():
        r = jvm.run(cp, "share-offsets-alter", c.bootstrap, group, topic, "0",
                    *[str(p) for p in range(PARTITIONS)], timeout=90)
        return r.returncode == 0 or print(r.stdout, r.stderr)  # a member may still be leaving
    wait_until(altered, PROGRESS_S, "the offsets altered", interval=1.0)
    assert java_offsets(cp, c.bootstrap, group) == {(topic, p): 0 for p in range(PARTITIONS)}
    work_through("every record delivered and accepted again after the reset")

    # Delete the group's state on the topic: nothing is listed any more.
    r = jvm.run(cp, "share-offsets-delete", c.bootstrap, group, topic, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert java_offsets(cp, c.bootstrap, group) == {}


def http_json(node, path, body):
    """POST `body` as JSON to `node`'s HTTP API: (status, parsed JSON or None)."""
    import json
    import urllib.error
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(node.http + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def test_queue_api_reaches_every_partition_leader(cluster_factory):
    """The HTTP queue API on one node takes records from partitions that three different nodes
    lead (each on its leader, over the share RPC), and a receipt settles on any node: the ack
    goes to the node holding the lock. A settled receipt is stale wherever it is sent again."""
    c = cluster_factory(3, extra_args=EXTRA).start()
    topic, group = f"q-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create_queue(c, topic, group)
    leaders = {c.leader_of(topic, p).node_id for p in range(PARTITIONS)}
    assert len(leaders) > 1, "placement spreads the leaders: some partitions are remote"
    produce(c.bootstrap, topic, range(30))
    a, b = c.node(1), c.node(2)
    got = []

    def take():
        status, body = http_json(a, f"/v1/queues/{group}/receive",
                                 {"topic": topic, "max_messages": 100, "wait_ms": 1000})
        assert status == 200, body
        got.extend(body["messages"])
        return len(got) >= 30

    wait_until(take, 60, "30 records received over HTTP")
    assert sorted(int(m["value"]) for m in got) == list(range(30))
    assert {m["partition"] for m in got} == set(range(PARTITIONS))
    # Any node shows every share-partition, each reported by the node holding it.
    with urllib.request.urlopen(c.node(3).http + f"/v1/share-groups/{group}", timeout=30) as r:
        import json
        view = json.loads(r.read())
    assert view["unreachable_nodes"] == []
    assert [(p["partition"], p["leader"], p["acquired"]) for p in view["partitions"]] == \
        [(p, c.leader_of(topic, p).node_id, 10) for p in range(PARTITIONS)]
    assert view["totals"]["acquired"] == 30
    for m in got:
        status, body = http_json(b, f"/v1/queues/{group}/messages/{m['receipt']}/accept", None)
        assert status == 204, body
    status, body = http_json(c.node(3), f"/v1/queues/{group}/messages/{got[0]['receipt']}/accept",
                             None)
    assert (status, body["error_code"]) == (409, 40903), body
    status, body = http_json(a, f"/v1/queues/{group}/receive",
                             {"topic": topic, "max_messages": 100})
    assert (status, body["messages"]) == (200, []), (leaders, body)
