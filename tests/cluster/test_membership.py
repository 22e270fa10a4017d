"""Changing the metadata quorum's membership under load (issue #10): three voters and an RF 3 topic
with min.insync.replicas=2 written by idempotent acks=all producers (and read by assigned and group
consumers); a fourth node starts broker-only (its id is not in --voters) and joins as an observer;
node 3 is drained onto it, removed as a voter, node 4 is made a voter, node 3 is stopped and
unregistered; then one of the two remaining original voters is killed with -9 and the quorum
{1, 2, 4} (two alive) still elects a leader and the topic still takes acks=all writes. The checker
verifies every acknowledged record is present exactly once, in order (see checker.py)."""

import json
import subprocess

import scenarios
from cluster import Node, free_port, wait_until
from workload import create_topic

SESSION_MS = 3000
EXTRA = ["--broker-session-timeout-ms", str(SESSION_MS), "--broker-heartbeat-interval-ms", "500",
         "--initial-rebalance-delay-ms", "300"]
MIN_ISR = {"min.insync.replicas": "2"}
TIMEOUT_S = 90


def cli(node, *args, timeout=TIMEOUT_S + 30, check=True):
    r = subprocess.run([node.binary, "cluster", *args, "--bootstrap-server", node.kafka_addr,
                        "--output", "json"], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"sluice cluster {' '.join(args)}: {r.stderr}{r.stdout}"
    return r


def status(node):
    return json.loads(cli(node, "status").stdout)


def quorum(node):
    """(leader, voters, observers) from DescribeQuorum as `cluster status` reports it."""
    q = status(node).get("quorum")
    assert q is not None, "cluster status reports no quorum"
    return q["leader"], sorted(v["id"] for v in q["voters"]), sorted(o["id"] for o in q["observers"])


def hosted_by(node, via):
    """How many partition replicas `node` hosts (Metadata, as `cluster status` asked of `via`)."""
    s = status(via)
    return next((b["replicas"] for b in s["brokers"] if b["id"] == node), 0)


def test_add_a_node_drain_and_remove_a_voter_under_load(cluster_factory, run_dir):
    c = cluster_factory(3, extra_args=EXTRA).start()
    n1 = c.node(1)
    assert quorum(n1)[1:] == ([1, 2, 3], [])

    def add_node_4_and_drain_3(nemesis, cluster, topic):
        # Broker-only: --voters names the three voters, not node 4.
        n4 = Node(4, run_dir, "127.0.0.1", free_port(), free_port(), free_port(),
                  voters=n1.voters, extra_args=EXTRA, binary=n1.binary)
        assert "4@" not in n4.voters
        cluster.nodes.append(n4)
        cluster.n = 4
        n4.start()
        n4.wait_ready(brokers=4)
        wait_until(lambda: quorum(n1)[1:] == ([1, 2, 3], [4]), TIMEOUT_S,
                   "node 4 an observer of the quorum", interval=0.5)
        # Node 4 is eligible, so the RF 3 topic (and every other replica) can leave node 3.
        r = cli(n1, "drain", "3", "--timeout-ms", str(TIMEOUT_S * 1000))
        assert hosted_by(3, n1) == 0, r.stdout
        assert hosted_by(4, n1) > 0

    def swap_voter_3_for_4_and_stop_3(nemesis, cluster, topic):
        out = json.loads(cli(n1, "remove-voter", "3").stdout)
        assert out["voter"] is False
        wait_until(lambda: quorum(n1)[1:] == ([1, 2], [3, 4]), TIMEOUT_S,
                   "voters {1,2}, observers {3,4}", interval=0.5)
        out = json.loads(cli(n1, "add-voter", "4").stdout)
        assert out["voter"] is True
        wait_until(lambda: quorum(n1)[1:] == ([1, 2, 4], [3]), TIMEOUT_S,
                   "voters {1,2,4}, observer 3", interval=0.5)
        # Refused: a voter cannot be unregistered; the last-voter and live-majority rules.
        r = cli(n1, "unregister", "4", check=False)
        assert r.returncode != 0 and "voter" in r.stderr, r.stderr
        n3 = cluster.node(3)
        assert n3.stop() == 0, n3.log_tail()
        # Stopped and drained: unregister it (once the controller has fenced it).
        wait_until(lambda: cli(n1, "unregister", "3", check=False).returncode == 0, TIMEOUT_S,
                   "node 3 unregistered", interval=1.0)
        s = status(n1)
        assert sorted(b["id"] for b in s["brokers"]) == [1, 2, 4], s["brokers"]
        assert sorted(o["id"] for o in s["quorum"]["observers"]) == []
        # The remaining voters all live: removing one of three would still leave a live majority,
        # but a voter that is down cannot be added back (node 3 is not a member any more).
        r = cli(n1, "add-voter", "3", "--timeout-ms", "1000", check=False)
        assert r.returncode != 0, r.stdout
        # A topic for the writes made while a voter is down (below), RF 3 on {1, 2, 4}.
        create_topic(n1.kafka_addr, f"{topic}-probe", 1, 3, MIN_ISR)

    def kill_an_original_voter(nemesis, cluster, topic):
        leader = quorum(n1)[0]
        victim = cluster.node(leader if leader in (1, 2) else 1)
        other = cluster.node(2 if victim.node_id == 1 else 1)
        nemesis.kill(victim.node_id)
        # {other, 4} are two of the three voters: a quorum leader among them.
        wait_until(lambda: quorum(other)[0] in (other.node_id, 4), TIMEOUT_S,
                   f"a quorum leader among nodes {other.node_id} and 4", interval=0.5)
        assert quorum(other)[1] == [1, 2, 4]
        # Writes go on with the killed voter down (scenarios.run waits for progress after this
        # step too, once it is back).
        wl_progress_while_down(cluster, topic, victim)
        # Once the controller has fenced it, removing a live voter would leave one live voter
        # of two: refused.
        wait_until(lambda: victim.node_id not in [b["id"] for b in status(other)["brokers"]
                                                  if b["alive"]],
                   TIMEOUT_S, f"node {victim.node_id} fenced", interval=0.5)
        r = cli(other, "remove-voter", "4", "--timeout-ms", "1000", check=False)
        assert r.returncode != 0 and "majority" in r.stderr, r.stderr
        nemesis.start(victim.node_id)

    report, _ = scenarios.run(c, run_dir, [add_node_4_and_drain_3, swap_voter_3_for_4_and_stop_3,
                                           kill_an_original_voter],
                              topic_config=MIN_ISR)
    print(report)
    assert report.ok, str(report)
    assert quorum(n1)[1:] == ([1, 2, 4], [])


def wl_progress_while_down(cluster, topic, down):
    """Acks=all writes complete while `down` is dead: a fresh idempotent producer writes a few
    records to every partition (outside the checked workload, on its own topic-partition keys)."""
    from confluent_kafka import Producer
    bootstrap = ",".join(n.kafka_addr for n in cluster.nodes if n.alive())
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "message.timeout.ms": TIMEOUT_S * 1000, "log_level": 0})
    errors = []
    probe = f"{topic}-probe"
    for i in range(10):
        p.produce(probe, value=f"v{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    left = p.flush(TIMEOUT_S)
    assert left == 0 and not errors, f"writes with node {down.node_id} down: {errors}, {left} left"
