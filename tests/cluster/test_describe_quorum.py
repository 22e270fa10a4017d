"""DescribeQuorum (API 55) on three real nodes: the Java AdminClient's describeMetadataQuorum
against every node, and `sluice cluster status` (human and --output json) showing the quorum
leader and each voter's log end and lag, before and after the quorum leader is killed."""

import json
import re
import subprocess
import sys
from pathlib import Path

from cluster import metadata, wait_until

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))
import jvm  # noqa: E402

EXTRA = ["--initial-rebalance-delay-ms", "300", "--broker-session-timeout-ms", "3000",
         "--broker-heartbeat-interval-ms", "500"]
TIMEOUT_S = 30


def cli_status(node, json_out: bool):
    argv = [node.binary, "cluster", "status", "--bootstrap-server", node.kafka_addr]
    if json_out:
        argv += ["--output", "json"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "cannot describe the metadata quorum" not in r.stderr, r.stderr
    return json.loads(r.stdout) if json_out else r.stdout


def java_quorum(cp, node):
    r = jvm.run(cp, "describe-quorum", node.kafka_addr, timeout=60)
    assert r.returncode == 0, r.stdout
    head = re.search(r"^QUORUM leader=(-?\d+) epoch=(-?\d+) hw=(-?\d+)$", r.stdout, re.M)
    assert head, r.stdout
    voters = {int(m[1]): int(m[2]) for m in re.finditer(r"^VOTER id=(\d+) leo=(-?\d+)", r.stdout, re.M)}
    nodes = {int(m[1]) for m in re.finditer(r"^NODE id=(\d+) ", r.stdout, re.M)}
    return int(head[1]), int(head[2]), int(head[3]), voters, nodes, r.stdout


def test_describe_quorum(cluster_factory):
    cp = jvm.java_classpath()  # skips without java/mvn (before any node starts)
    c = cluster_factory(3, extra_args=EXTRA).start()
    leader_id = metadata(c.bootstrap).controller_id
    assert leader_id in (1, 2, 3)

    # The Java AdminClient bootstrapped from each node (it sends DescribeQuorum to whichever
    # node it likes): every answer names the leader and the three voters with their cluster
    # addresses; the answering node knows at least its own log end (the leader: everyone's).
    for node in c.nodes:
        leader, epoch, hw, voters, nodes, out = java_quorum(cp, node)
        assert leader == leader_id and epoch >= 1 and hw > 0, out
        assert set(voters) == {1, 2, 3} and nodes == {1, 2, 3}, out
        assert any(leo > 0 for leo in voters.values()), out

    # The CLI asks the quorum leader: every voter with a log end and a lag (0 once caught up).
    def caught_up():
        q = cli_status(c.node(1), json_out=True)["quorum"]
        return q if q["leader"] == leader_id and all(v["lag"] == 0 for v in q["voters"]) else None
    q = wait_until(caught_up, TIMEOUT_S, "every voter caught up in `cluster status`", interval=0.2)
    assert sorted(v["id"] for v in q["voters"]) == [1, 2, 3] and q["observers"] == []
    assert q["leader_epoch"] >= 1 and q["high_watermark"] > 0
    text = cli_status(c.node(1), json_out=False)
    print(text)
    assert re.search(rf"^QUORUM\s+leader {leader_id} \(epoch \d+\)", text, re.M), text
    assert re.search(rf"^{leader_id}\s+leader\s+\d+\s+0\s*$", text, re.M), text

    # Kill the quorum leader: a new one is elected with a higher epoch; the dead voter's log end
    # stays where it was, so once the new leader commits more it shows a lag.
    old_epoch = q["leader_epoch"]
    c.node(leader_id).kill9()
    survivor = next(n for n in c.nodes if n.node_id != leader_id)

    def new_leader():
        q = cli_status(survivor, json_out=True)["quorum"]
        if q["leader"] in (-1, leader_id):
            return None
        dead = next(v for v in q["voters"] if v["id"] == leader_id)
        return q if dead["lag"] is None or dead["lag"] > 0 else None
    q = wait_until(new_leader, TIMEOUT_S, "a new quorum leader with the dead voter lagging", interval=0.3)
    assert q["leader_epoch"] > old_epoch, q
    leader, epoch, _hw, voters, _nodes, out = java_quorum(cp, survivor)
    assert leader == q["leader"] and epoch >= q["leader_epoch"], out

    # It returns and catches up.
    c.node(leader_id).start()

    def back():
        q = cli_status(survivor, json_out=True)["quorum"]
        return q if all(v["lag"] == 0 for v in q["voters"]) else None
    wait_until(back, TIMEOUT_S, "the restarted voter caught up", interval=0.3)


def test_single_node_is_its_own_quorum(cluster_factory):
    """Without --voters a node is a one-voter quorum: DescribeQuorum and `cluster status` say so."""
    c = cluster_factory(1).start()
    q = cli_status(c.node(1), json_out=True)["quorum"]
    assert q["leader"] == 1 and q["leader_epoch"] >= 1 and q["high_watermark"] > 0, q
    assert q["voters"] == [{"id": 1, "log_end_offset": q["voters"][0]["log_end_offset"], "lag": 0}], q
    assert q["observers"] == [], q
