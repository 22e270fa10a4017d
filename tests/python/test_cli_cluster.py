"""`sluice cluster ...` and the replica side of `sluice topic ...` against a 3-node cluster.

The tools speak only the Kafka protocol, so they are proven here against Apache Kafka 4.x as a
3-node KRaft cluster (tests/python/kafka_ref.py, `KafkaRefCluster`). The tests see the cluster
only through the `cluster` fixture (`ClusterUnderTest`: a bootstrap list, node ids, and
`kill9(id)` / `stop(id)` / `start(id)`), so the same tests run against a Sluice cluster by adding
a target to `_make_cluster` (SLUICE_CLUSTER_TARGET=sluice, once Sluice serves clusters).

Needs `java` 17+ and the Kafka jars (fetched with mvn on first use); skipped without java.
The drain test runs last: draining a node of a 3-node cluster works only once no topic has
replication factor 3, so it deletes the topics the earlier tests made.

Run: SLUICE_BIN=<release sluice> ~/.cache/sluice-venv/bin/python -m pytest -q tests/python/test_cli_cluster.py
"""

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import sluice_bin, wait_until

TARGET = os.environ.get("SLUICE_CLUSTER_TARGET", "kafka")
CLI_TIMEOUT_S = 120
# Kafka fences a killed broker after broker.session.timeout.ms (4 s in KafkaRefCluster), then
# shrinks the ISRs; a restarted broker catches up and rejoins them within seconds.
ISR_CHANGE_TIMEOUT_S = 60
NODE_IDS = [1, 2, 3]

pytestmark = pytest.mark.skipif(
    TARGET == "kafka" and shutil.which(os.environ.get("SLUICE_KAFKA_JAVA", "java")) is None,
    reason="needs java for the Apache Kafka reference cluster")


class ClusterUnderTest:
    """What the tests may know about the cluster: where to connect and how to stop/start a node."""

    def __init__(self, bootstrap, node_ids, kill9, stop, start, log_tail, racks=None):
        self._bootstrap = bootstrap
        self.node_ids = list(node_ids)
        self.racks = racks  # node id -> rack, or None
        self.kill9 = kill9
        self.stop = stop
        self.start = start
        self.log_tail = log_tail

    @property
    def bootstrap(self) -> str:
        return self._bootstrap()


def _make_cluster(tmp_root: Path):
    if TARGET == "kafka":
        from kafka_ref import KafkaRefCluster

        # No automatic preferred-leader rebalance: the elect-leaders test decides when.
        racks = {n: f"rack-{n}" for n in NODE_IDS}
        c = KafkaRefCluster(tmp_root / f"kafka-cluster-{uuid.uuid4().hex[:6]}", brokers=len(NODE_IDS),
                            config={"auto.leader.rebalance.enable": "false"},
                            racks=[racks[n] for n in NODE_IDS])
        c.start()
        return c, ClusterUnderTest(
            bootstrap=lambda: c.bootstrap,
            node_ids=NODE_IDS,
            kill9=c.kill9,
            stop=c.stop,
            start=c.start_node,
            log_tail=c.log_tail,
            racks=racks,
        ), c.kill_all
    raise AssertionError(f"unknown SLUICE_CLUSTER_TARGET={TARGET}")


@pytest.fixture(scope="module")
def cluster(tmp_root):
    c, handle, teardown = _make_cluster(tmp_root)
    try:
        yield handle
    finally:
        teardown()


def sluice(cluster, *args, check=True, as_json=True):
    cmd = [sluice_bin(), *args, "--bootstrap-server", cluster.bootstrap]
    if as_json:
        cmd += ["--output", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                       stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    if not as_json or r.returncode != 0:
        return r
    return json.loads(r.stdout)


def produce(cluster, topic, lines):
    cmd = [sluice_bin(), "produce", topic, "--bootstrap-server", cluster.bootstrap]
    r = subprocess.run(cmd, input="".join(f"{x}\n" for x in lines), capture_output=True, text=True,
                       timeout=CLI_TIMEOUT_S)
    assert r.returncode == 0, r.stderr


def consume_all(cluster, topic, n):
    cmd = [sluice_bin(), "consume", topic, "--from-beginning", "--count", str(n),
           "--bootstrap-server", cluster.bootstrap]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def create_topic(cluster, topic, *args):
    """`topic create`, then waits until every partition's leader serves it (a leader learns of
    a new partition from the metadata log a moment after Metadata names it; `sluice produce`
    does not retry NOT_LEADER_OR_FOLLOWER)."""
    sluice(cluster, "topic", "create", topic, *args)

    def served():
        parts = describe(cluster, topic).values()
        return parts and all(p["leader"] >= 0 and p["log_end_offset"] >= 0 for p in parts)
    wait_until(served, ISR_CHANGE_TIMEOUT_S, f"leaders of {topic} serving it")


def describe(cluster, topic):
    return {p["partition"]: p for p in sluice(cluster, "topic", "describe", topic)["partitions"]}


def status(cluster):
    return sluice(cluster, "cluster", "status")


def name(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_status_lists_every_broker(cluster):
    s = status(cluster)
    assert s["cluster_id"]
    assert [b["id"] for b in s["brokers"]] == cluster.node_ids
    assert all(b["alive"] and not b["fenced"] and b["port"] > 0 for b in s["brokers"])
    assert s["controller"] in cluster.node_ids
    if cluster.racks:
        assert {b["id"]: b["rack"] for b in s["brokers"]} == cluster.racks
    assert s["offline"] == []
    # The metadata quorum, when the cluster reports one (DescribeQuorum).
    if "quorum" in s:
        q = s["quorum"]
        assert [v["id"] for v in q["voters"]] == cluster.node_ids
        assert q["leader"] in cluster.node_ids and q["leader_epoch"] >= 1
        assert q["high_watermark"] >= 0
    # Text output names each broker.
    text = sluice(cluster, "cluster", "status", as_json=False).stdout
    for b in s["brokers"]:
        assert f"127.0.0.1:{b['port']}" in text


def test_create_rf3_and_manual_assignment_and_describe(cluster):
    t = name()
    create_topic(cluster, t, "--partitions", "3", "--replication-factor", "3")
    parts = wait_until(lambda: (d := describe(cluster, t)) and
                       all(sorted(p["isr"]) == sorted(p["replicas"]) for p in d.values()) and d,
                       ISR_CHANGE_TIMEOUT_S, "full ISRs")
    assert sorted(parts) == [0, 1, 2]
    for p in parts.values():
        assert sorted(p["replicas"]) == cluster.node_ids
        assert p["leader"] in p["replicas"]
        assert p["leader_epoch"] >= 0
        assert p["offline_replicas"] == []
    # Kafka's placement spreads the preferred leaders.
    assert sorted(p["replicas"][0] for p in parts.values()) == cluster.node_ids

    m = name()
    create_topic(cluster, m, "--replica-assignment", "3:1,1:2")
    parts = describe(cluster, m)
    assert [parts[0]["replicas"], parts[1]["replicas"]] == [[3, 1], [1, 2]]
    sluice(cluster, "topic", "add-partitions", m, "--partitions", "3", "--replica-assignment", "2:3")
    assert describe(cluster, m)[2]["replicas"] == [2, 3]
    # A bad assignment is a usage error, before anything is sent.
    r = sluice(cluster, "topic", "create", name(), "--replica-assignment", "1:1", check=False)
    assert r.returncode == 2 and "twice" in r.stderr


def test_kill9_shows_shrunken_isr_and_restart_restores_it(cluster, tmp_path):
    t = name()
    victim = cluster.node_ids[-1]
    create_topic(cluster, t, "--partitions", "3", "--replication-factor", "3")
    lonely = name()  # one replica, on the victim: offline while it is down
    create_topic(cluster, lonely, "--replica-assignment", str(victim))
    produce(cluster, t, [f"before-{i}" for i in range(30)])
    cluster.kill9(victim)
    try:
        # Right away, before the cluster has noticed: the client retries (NOT_LEADER_OR_FOLLOWER,
        # a refused connection to the dead leader) until the failover, and acks=all completes
        # once the ISR has shrunk to the two live replicas (min.insync.replicas=2).
        produce(cluster, t, [f"during-{i}" for i in range(30)])

        def shrunk():
            s = status(cluster)
            under = {p["partition"]: p for p in s["under_replicated"] if p["topic"] == t}
            offline = [p for p in s["offline"] if p["topic"] == lonely]
            return len(under) == 3 and all(victim not in p["isr"] for p in under.values()) \
                and len(offline) == 1 and s
        s = wait_until(shrunk, ISR_CHANGE_TIMEOUT_S, f"under-replicated partitions after kill -9 of {victim}")
        brokers = {b["id"]: b for b in s["brokers"]}
        assert victim not in brokers or not brokers[victim]["alive"]
        # RF 3: two replicas left, every partition of t has a leader; the RF-1 topic has none.
        assert [p["topic"] for p in s["offline"]] == [lonely]
        assert s["offline"][0]["leader"] == -1 and s["offline"][0]["offline_replicas"] == [victim]
        parts = describe(cluster, t)
        for p in parts.values():
            assert sorted(p["isr"]) == sorted(set(cluster.node_ids) - {victim})
            assert p["offline_replicas"] == [victim]
            assert p["leader"] != victim
        # min.insync.replicas=2 of 3: writes go on with one node down.
        produce(cluster, t, [f"after-{i}" for i in range(30)])

        # A move onto the dead node cannot finish: it is listed as in progress, with its
        # target replica not in sync, until cancelled.
        a, b = [n for n in cluster.node_ids if n != victim]
        m = name()
        create_topic(cluster, m, "--replica-assignment", f"{a}:{b}")
        plan = tmp_path / "onto-dead.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": m, "partition": 0, "replicas": [a, victim]}]}))
        sluice(cluster, "cluster", "reassign", "--plan", str(plan), "--execute")
        ongoing = [o for o in sluice(cluster, "cluster", "reassignments") if o["topic"] == m]
        assert len(ongoing) == 1, ongoing
        o = ongoing[0]
        assert (o["adding"], o["removing"], o["adding_in_sync"]) == ([victim], [b], [])
        assert sorted(o["replicas"]) == sorted([a, b, victim])
        text = sluice(cluster, "cluster", "reassignments", as_json=False).stdout
        assert "0/1 new replicas in sync" in text
        sluice(cluster, "cluster", "reassign", "--plan", str(plan), "--cancel")
        assert [o for o in sluice(cluster, "cluster", "reassignments") if o["topic"] == m] == []
        assert describe(cluster, m)[0]["replicas"] == [a, b]
        sluice(cluster, "topic", "delete", m)
    finally:
        cluster.start(victim)

    def healed():
        parts = describe(cluster, t)
        return all(sorted(p["isr"]) == cluster.node_ids and p["offline_replicas"] == []
                   for p in parts.values()) and parts
    wait_until(healed, ISR_CHANGE_TIMEOUT_S, f"full ISRs after restarting {victim}")
    wait_until(lambda: not [p for p in status(cluster)["under_replicated"] if p["topic"] == t],
               ISR_CHANGE_TIMEOUT_S, "status without under-replicated partitions")
    wait_until(lambda: status(cluster)["offline"] == [], ISR_CHANGE_TIMEOUT_S, "no offline partition")
    assert describe(cluster, lonely)[0]["leader"] == victim
    sluice(cluster, "topic", "delete", lonely)
    got = consume_all(cluster, t, 90)
    assert sorted(got) == sorted([f"{w}-{i}" for w in ("before", "during", "after") for i in range(30)])

    # The victim led one partition before (its preferred replica); the failover moved it.
    # A preferred election gives it back.
    moved = [p for p in describe(cluster, t).values() if p["leader"] != p["replicas"][0]]
    assert moved, "the kill moved no leadership"
    res = sluice(cluster, "cluster", "elect-leaders", "--type", "preferred", "--topic", t)
    by_part = {r["partition"]: r["result"] for r in res}
    for p in moved:
        assert by_part[p["partition"]] == "elected", res
    after = wait_until(lambda: (a := describe(cluster, t)) and all(p["leader"] == p["replicas"][0] for p in a.values()) and a,
                       ISR_CHANGE_TIMEOUT_S, "preferred leaders in every broker's metadata")
    for p in moved:
        assert after[p["partition"]]["leader_epoch"] > p["leader_epoch"]


def test_reassign_from_plan_file_and_preferred_election_after_a_move(cluster, tmp_path):
    t = name()
    create_topic(cluster, t, "--replica-assignment", "1:2")
    produce(cluster, t, [f"r-{i}" for i in range(50)])
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": t, "partition": 0, "replicas": [2, 3]}]}))
    dry = sluice(cluster, "cluster", "reassign", "--plan", str(plan))
    assert dry["status"] == "planned"
    assert dry["plan"]["partitions"] == [{"topic": t, "partition": 0, "replicas": [2, 3]}]
    assert dry["rollback"]["partitions"] == [{"topic": t, "partition": 0, "replicas": [1, 2]}]
    assert describe(cluster, t)[0]["replicas"] == [1, 2]  # a dry run changes nothing

    sluice(cluster, "cluster", "reassign", "--plan", str(plan), "--execute", "--wait", "--timeout-ms", "60000")
    wait_until(lambda: (p := describe(cluster, t)[0])["replicas"] == [2, 3] and sorted(p["isr"]) == [2, 3],
               ISR_CHANGE_TIMEOUT_S, "the reassignment in the metadata")
    assert sluice(cluster, "cluster", "reassignments") == []
    assert consume_all(cluster, t, 50) == [f"r-{i}" for i in range(50)]

    # Reorder the replicas: the leader (2) stays, but 3 becomes the preferred replica.
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": t, "partition": 0, "replicas": [3, 2]}]}))
    sluice(cluster, "cluster", "reassign", "--plan", str(plan), "--execute", "--wait")
    before = wait_until(lambda: (p := describe(cluster, t)[0])["replicas"] == [3, 2] and p,
                        ISR_CHANGE_TIMEOUT_S, "the reordered replicas in the metadata")
    assert before["leader"] == 2
    res = sluice(cluster, "cluster", "elect-leaders", "--topic", t, "--partition", "0")
    assert res == [{"topic": t, "partition": 0, "result": "elected", "error": None, "message": None}]
    after = wait_until(lambda: (p := describe(cluster, t)[0])["leader"] == 3 and p,
                       ISR_CHANGE_TIMEOUT_S, "the elected leader in the metadata")
    assert after["leader_epoch"] > before["leader_epoch"]
    # Again: nothing to do.
    res = sluice(cluster, "cluster", "elect-leaders", "--topic", t, "--partition", "0")
    assert res[0]["result"] == "not-needed"


def test_reassign_topic_to_brokers(cluster):
    t = name()
    create_topic(cluster, t, "--replica-assignment", "1:2,2:1,1:3")
    out = sluice(cluster, "cluster", "reassign", "--topic", t, "--to-brokers", "2,3", "--execute", "--wait")
    assert out["status"] == "started"
    parts = describe(cluster, t)
    for p in parts.values():
        assert sorted(p["replicas"]) == [2, 3] and sorted(p["isr"]) == [2, 3]
    # Replicas already on a target broker stayed.
    assert parts[0]["replicas"][1] == 2 and parts[1]["replicas"][0] == 2 and parts[2]["replicas"][1] == 3


def test_drain_moves_everything_off_a_node(cluster):
    node = 2
    # With replication factor 3 on 3 brokers there is nowhere to go: refused, nothing moved.
    full = name()
    create_topic(cluster, full, "--partitions", "1", "--replication-factor", "3")
    r = sluice(cluster, "cluster", "drain", str(node), "--dry-run", check=False)
    assert r.returncode == 1 and "replication factor" in r.stderr, r.stderr
    # Make the cluster drainable: only replication factor 2 left.
    for topic in sluice(cluster, "topic", "list"):
        if any(len(p["replicas"]) > 2 for p in describe(cluster, topic["name"]).values()):
            sluice(cluster, "topic", "delete", topic["name"])
    internal = [t["name"] for t in sluice(cluster, "topic", "list", "--internal") if t["internal"]]
    assert internal == [], f"internal topics with RF 3 would block the drain: {internal}"

    t = name()
    create_topic(cluster, t, "--partitions", "6", "--replication-factor", "2")
    produce(cluster, t, [f"d-{i}" for i in range(60)])
    before = describe(cluster, t)
    plan = sluice(cluster, "cluster", "drain", str(node), "--dry-run")
    assert plan["status"] == "planned"
    moved = {(p["topic"], p["partition"]) for p in plan["plan"]["partitions"]}
    on_node = {(t, i) for i, p in before.items() if node in p["replicas"]}
    assert on_node and on_node <= moved, (on_node, moved)

    start = time.monotonic()
    out = sluice(cluster, "cluster", "drain", str(node), "--timeout-ms", "90000")
    assert out["status"] == "drained" and out["node"] == node
    assert out["moved"] == len(moved)
    assert time.monotonic() - start < CLI_TIMEOUT_S

    def drained():
        s = status(cluster)
        b = next(b for b in s["brokers"] if b["id"] == node)
        return (b["leaders"], b["replicas"]) == (0, 0) and s["under_replicated"] == [] and s["offline"] == []
    wait_until(drained, ISR_CHANGE_TIMEOUT_S, f"node {node} drained in the metadata")
    after = wait_until(lambda: (a := describe(cluster, t)) and all(p["leader"] == p["replicas"][0] for p in a.values()) and a,
                       ISR_CHANGE_TIMEOUT_S, "preferred leaders after the drain")
    for i, p in after.items():
        assert node not in p["replicas"]
        assert len(p["replicas"]) == len(before[i]["replicas"]) == 2
        assert sorted(p["isr"]) == sorted(p["replicas"])
        assert p["leader"] == p["replicas"][0]  # preferred leaders elected
    # Balanced: 12 replicas (6 partitions x RF 2) of this topic on the 2 other brokers.
    on = {n: sum(n in p["replicas"] for p in after.values()) for n in cluster.node_ids if n != node}
    assert sorted(on.values()) == [6, 6], on
    assert sorted(consume_all(cluster, t, 60)) == sorted(f"d-{i}" for i in range(60))
    # Draining an empty node again is a no-op.
    again = sluice(cluster, "cluster", "drain", str(node))
    assert again["moved"] == 0
