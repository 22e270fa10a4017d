"""Groups in a three-node cluster: what the group coordinator (the leader of
`__consumer_offsets-0`) keeps when things happen elsewhere, and when it moves.

- A topic deleted through a node that is not the group coordinator: the coordinator drops the
  topic's committed offsets too (it learns of the deletion from the metadata image, as Kafka's
  does), so a group describes no offsets of a topic that is gone.
- A classic group whose coordinator is killed: the new coordinator loads the group's membership
  with its offsets, and the members go on in their generation (no rebalance)."""

import socket
import struct
import time
import uuid

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import wait_until
from kutil import recv_exact

TIMEOUT_S = 60
EXTRA = ["--initial-rebalance-delay-ms", "300", "--broker-session-timeout-ms", "3000",
         "--broker-heartbeat-interval-ms", "500"]


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def create(bootstrap, topic, partitions=2, rf=3):
    a = admin(bootstrap)
    for f in a.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=30).values():
        f.result(timeout=30)


def committed(bootstrap, group, topic, partitions):
    """{partition: offset} the coordinator has for `group` (-1001 = none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def delete_topic_on(node, topic):
    """DeleteTopics v3 sent to this node itself (clients send it to the controller)."""
    name = topic.encode()
    body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name + struct.pack(">i", 30000)
    client = b"test"
    header = struct.pack(">hhih", 20, 3, 7, len(client)) + client
    frame = header + body
    host, port = node.kafka_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=35) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        resp = recv_exact(s, size)
    # correlation id, throttle, [name, error]
    _, _, count = struct.unpack(">iii", resp[:12])
    assert count == 1, resp
    n = struct.unpack(">h", resp[12:14])[0]
    err = struct.unpack(">h", resp[14 + n:16 + n])[0]
    assert err == 0, f"DeleteTopics on n{node.node_id}: error {err}"


def test_deleted_topic_offsets_dropped_by_the_coordinator(cluster_factory):
    c = cluster_factory(3, extra_args=EXTRA).start()
    boot = c.bootstrap
    t = f"gone-{uuid.uuid4().hex[:6]}"
    keep = f"kept-{uuid.uuid4().hex[:6]}"
    g = f"g-{uuid.uuid4().hex[:6]}"
    create(boot, t)
    create(boot, keep)
    # Offsets committed for both topics (a simple commit: no membership needed).
    cons = Consumer({"bootstrap.servers": boot, "group.id": g, "log_level": 0,
                     "enable.auto.commit": False})
    try:
        offsets = [TopicPartition(t, 0, 5), TopicPartition(t, 1, 7), TopicPartition(keep, 0, 3)]
        wait_until(lambda: cons.commit(offsets=offsets, asynchronous=False) or True, TIMEOUT_S,
                   "the commit", interval=0.5)
    finally:
        cons.close()
    assert committed(boot, g, t, 2) == {0: 5, 1: 7}
    coordinator = c.leader_of("__consumer_offsets", 0)
    other = next(n for n in c.nodes if n.node_id != coordinator.node_id)
    delete_topic_on(other, t)
    wait_until(lambda: committed(boot, g, t, 2) == {0: -1001, 1: -1001}, TIMEOUT_S,
               f"the coordinator (n{coordinator.node_id}) dropping the offsets of {t}", interval=0.5)
    assert committed(boot, g, keep, 1) == {0: 3}


def poll_n(cons, n, what):
    """The next `n` records (bounded by TIMEOUT_S; `what` names the moment in the failure)."""
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} records {what}"
        m = cons.poll(0.2)
        if m is not None and not m.error():
            got.append(m)
    return got


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_group_keeps_its_generation_across_a_coordinator_kill(cluster_factory, protocol):
    """A classic group keeps its generation, a KIP-848 group its member epochs and assignment,
    when the coordinator is killed: the consumer sees no revoke or assign, and its commits are
    accepted by the new coordinator."""
    c = cluster_factory(3, extra_args=EXTRA).start()
    boot = c.bootstrap
    t = f"t-{uuid.uuid4().hex[:6]}"
    g = f"g-{uuid.uuid4().hex[:6]}"
    create(boot, t)
    p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "log_level": 0})
    for i in range(20):
        p.produce(t, value=b"before-%d" % i, partition=i % 2)
    assert p.flush(30) == 0
    events = []
    conf = {"bootstrap.servers": boot, "group.id": g, "log_level": 0,
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if protocol == "classic":
        conf.update({"session.timeout.ms": 20000, "heartbeat.interval.ms": 500})
    else:  # KIP-848: the session belongs to the broker
        conf["group.protocol"] = "consumer"
    cons = Consumer(conf)
    cons.subscribe([t], on_assign=lambda _c, ps: events.append(("assign", len(ps))),
                   on_revoke=lambda _c, ps: events.append(("revoke", len(ps))))
    try:
        poll_n(cons, 20, f"before the kill: {events}")
        cons.commit(asynchronous=False)
        seen = list(events)
        # The membership record was committed before the SyncGroup answer: the group is in
        # the replicated log by now.
        coordinator = c.leader_of("__consumer_offsets", 0)
        coordinator.kill9()
        for i in range(20):
            p.produce(t, value=b"after-%d" % i, partition=i % 2)
        assert p.flush(60) == 0
        after = poll_n(cons, 20, f"after the kill: {events}")
        assert sorted(m.value() for m in after) == sorted(b"after-%d" % i for i in range(20))

        def commit_ok():
            try:
                cons.commit(asynchronous=False)
                return True
            except Exception:  # noqa: BLE001 - the new coordinator may still be loading
                return False
        wait_until(commit_ok, TIMEOUT_S, "a commit on the new coordinator", interval=0.5)
        assert events == seen, f"the coordinator kill caused a rebalance: {events[len(seen):]}"
        assert committed(boot, g, t, 2) == {0: 20, 1: 20}
    finally:
        cons.close()


def test_lag_history_is_read_through_any_node(cluster_factory):
    """The group coordinator samples lag; a node that is not the coordinator forwards
    `/v1/groups/{g}/lag-history` there and answers with its samples."""
    import json
    import urllib.request
    c = cluster_factory(3, extra_args=EXTRA).start()
    topic, group = f"t-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create(c.bootstrap, topic, partitions=1)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
    for i in range(4):
        p.produce(topic, b"v%d" % i, partition=0)
    assert p.flush(30) == 0
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group, "log_level": 0})
    try:
        cons.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        cons.close()
    coordinator = c.leader_of("__consumer_offsets", 0)
    other = next(n for n in c.nodes if n.node_id != coordinator.node_id)

    def sampled():
        with urllib.request.urlopen(other.http + f"/v1/groups/{group}/lag-history", timeout=30) as r:
            h = json.loads(r.read())
        return bool(h["samples"]) and h["samples"][-1]["lag"] == 3

    wait_until(sampled, 40, "a lag sample of 3 read through a node that does not coordinate")
