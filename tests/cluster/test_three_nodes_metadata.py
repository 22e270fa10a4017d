"""Three real nodes on loopback with --voters: the metadata level of a cluster (issue #10, wave 2).
No data replication is checked here (the replica fetcher is separate work): only what every node's
Metadata says, failover of the controller, fencing of a dead broker, and its return."""

import json
import subprocess
import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, wait_until

SESSION_MS = 3000
EXTRA = ["--initial-rebalance-delay-ms", "300", "--broker-session-timeout-ms", str(SESSION_MS),
         "--broker-heartbeat-interval-ms", "500"]
TIMEOUT_S = 60


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def create(bootstrap, topic, partitions=3, rf=3):
    a = admin(bootstrap)  # kept alive until the futures resolve
    fs = a.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=30)
    for f in fs.values():
        f.result(timeout=30)


def view(node, topic):
    """{partition: (leader, replicas, isr)} from one node's Metadata (None if unknown there)."""
    t = metadata(node.kafka_addr, timeout=3.0).topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p: (m.leader, sorted(m.replicas), sorted(m.isrs)) for p, m in t.partitions.items()}


def epochs(node, topic):
    """{partition: (leader, leader epoch)} from DescribeTopicPartitions-free Metadata v9+ via the
    sluice CLI (`topic describe` prints the leader epoch)."""
    r = subprocess.run([node.binary, "topic", "describe", topic, "--bootstrap-server", node.kafka_addr,
                        "--output", "json"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return {p["partition"]: (p["leader"], p.get("leader_epoch")) for p in json.loads(r.stdout)["partitions"]}


def alive(c):
    return [n for n in c.nodes if n.alive()]


def same_everywhere(c, topic, check):
    def ok():
        views = []
        for n in alive(c):
            try:
                v = view(n, topic)
            except Exception:  # noqa: BLE001 - not answering yet
                return False
            if v is None or not check(v):
                return False
            views.append(v)
        return all(v == views[0] for v in views)
    wait_until(ok, TIMEOUT_S, f"every node agreeing on {topic}", interval=0.2)
    return view(alive(c)[0], topic)


def status(c):
    n = alive(c)[0]
    r = subprocess.run([n.binary, "cluster", "status", "--bootstrap-server", n.kafka_addr,
                        "--output", "json"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def controller(c):
    md = metadata(alive(c)[0].kafka_addr, timeout=3.0)
    return md.controller_id


def test_three_nodes_metadata(cluster_factory):
    c = cluster_factory(3, extra_args=EXTRA).start()
    # Every node lists the three brokers.
    for n in c.nodes:
        wait_until(lambda n=n: sorted(metadata(n.kafka_addr).brokers) == [1, 2, 3], TIMEOUT_S,
                   f"n{n.node_id} listing 3 brokers")
    s = status(c)
    assert [b["id"] for b in s["brokers"]] == [1, 2, 3]
    # One cluster id, whichever node is asked (each node's meta.properties has its own; the
    # image keeps the first node's).
    ids = {n.node_id: metadata(n.kafka_addr).cluster_id for n in c.nodes}
    assert len(set(ids.values())) == 1 and None not in ids.values(), ids

    # RF 3 created on any node: the same assignment everywhere, leaders spread, ISR = replicas.
    t = f"t-{uuid.uuid4().hex[:6]}"
    create(c.node(2).kafka_addr, t)
    full = same_everywhere(c, t, lambda v: all(l >= 1 and r == [1, 2, 3] and i == r for l, r, i in v.values()))
    assert sorted(l for l, _, _ in full.values()) == [1, 2, 3], full

    # kill -9 the controller (the quorum leader): a new controller, and creation works.
    old = controller(c)
    assert old in (1, 2, 3)
    c.node(old).kill9()
    wait_until(lambda: controller(c) not in (old, -1), TIMEOUT_S, "a new controller", interval=0.2)
    u = f"u-{uuid.uuid4().hex[:6]}"
    create(alive(c)[0].kafka_addr, u, partitions=2, rf=2)
    same_everywhere(c, u, lambda v: len(v) == 2 and all(l >= 1 for l, _, _ in v.values()))

    # After the session timeout, the dead broker's partitions of t have new leaders with bumped
    # epochs, on every live node, and it is no longer listed.
    def moved(v):
        return all(l not in (old, -1) and old not in i for l, _, i in v.values())
    same_everywhere(c, t, moved)
    for n in alive(c):
        wait_until(lambda n=n: old not in metadata(n.kafka_addr).brokers, TIMEOUT_S,
                   f"n{n.node_id} no longer listing n{old}")
    after = epochs(alive(c)[0], t)
    led_by_old = [p for p, (l, _, _) in full.items() if l == old]
    assert led_by_old
    for p in led_by_old:
        _, epoch = after[p]
        assert epoch is None or epoch > 0, after

    # Restart: it registers again and is unfenced; status shows all three.
    c.node(old).start(wait=False)
    c.wait_ready(TIMEOUT_S)
    for n in c.nodes:
        wait_until(lambda n=n: sorted(metadata(n.kafka_addr).brokers) == [1, 2, 3], TIMEOUT_S,
                   f"n{n.node_id} listing 3 brokers again")
    s = status(c)
    assert [b["id"] for b in s["brokers"]] == [1, 2, 3]
    assert s["controller"] in (1, 2, 3)
    c.stop()
