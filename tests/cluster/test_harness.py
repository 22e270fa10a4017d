"""The harness itself: command lines of cluster nodes (BRIEF §9 flags, checked with a stand-in
binary), and a real node's restart, kill -9, pause/resume, readiness and leader lookup."""

import os
import signal
import stat
import pytest

from cluster import Cluster, metadata, supports_cluster_flags, tcp_answers, wait_until
from workload import create_topic

FAKE_HELP_WITH_FLAGS = """Usage: sluice serve [OPTIONS]
      --node-id <NODE_ID>
      --cluster-addr <CLUSTER_ADDR>
      --voters <VOTERS>
"""


def fake_binary(path, help_text):
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{help_text}EOF\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_three_node_command_lines_on_loopback(tmp_path):
    binary = fake_binary(tmp_path / "sluice", FAKE_HELP_WITH_FLAGS)
    assert supports_cluster_flags(binary)
    c = Cluster(tmp_path / "run", n=3, binary=binary)
    c._make_nodes()
    voters = [f"{n.node_id}@127.0.0.1:{n.cluster_port}" for n in c.nodes]
    for n in c.nodes:
        argv = n.argv
        assert argv[:2] == [binary, "serve"]
        assert flag(argv, "--node-id") == str(n.node_id)
        assert flag(argv, "--cluster-addr") == f"127.0.0.1:{n.cluster_port}"
        assert flag(argv, "--voters") == ",".join(voters)  # the same on every node
        assert flag(argv, "--kafka-addr") == flag(argv, "--advertised-kafka-addr") == n.kafka_addr
        assert flag(argv, "--data-dir") == str(n.data_dir)
        assert flag(argv, "--flush") == "always"
    ports = [p for n in c.nodes for p in (n.kafka_port, n.http_port, n.cluster_port)]
    assert len(set(ports)) == 9
    assert c.bootstrap == ",".join(n.kafka_addr for n in c.nodes)


def test_three_node_command_lines_in_namespaces(tmp_path):
    from conftest import require_netadmin

    require_netadmin()
    binary = fake_binary(tmp_path / "sluice", FAKE_HELP_WITH_FLAGS)
    c = Cluster(tmp_path / "run", n=3, netns=True, binary=binary)
    try:
        c._make_nodes()
        for n in c.nodes:
            assert n.argv[:4] == ["ip", "netns", "exec", c.lab.ns(n.node_id)]
            assert n.host == c.lab.ip(n.node_id)
            assert flag(n.argv, "--cluster-addr") == f"{n.host}:9093"
            assert flag(n.argv, "--voters") == ",".join(f"{i}@{c.lab.ip(i)}:9093" for i in (1, 2, 3))
    finally:
        c.close()
    assert not c.lab.exists()


def test_a_binary_without_cluster_flags_is_refused_clearly(tmp_path):
    binary = fake_binary(tmp_path / "sluice", "Usage: sluice serve [OPTIONS]\n")
    with pytest.raises(RuntimeError, match="--cluster-addr"):
        Cluster(tmp_path / "run", n=3, binary=binary)._make_nodes()


def test_single_node_has_no_cluster_flags(cluster_factory):
    c = cluster_factory(1)
    c._make_nodes()
    assert "--voters" not in c.node(1).argv and "--cluster-addr" not in c.node(1).argv
    assert flag(c.node(1).argv, "--node-id") == "1"


def test_node_lifecycle(cluster_factory):
    c = cluster_factory(1).start()
    n = c.node(1)
    topic = "lifecycle"
    create_topic(c.bootstrap, topic, 2)
    assert c.leader_of(topic, 1) is n
    c.wait_full_isr(topic)
    assert sorted(metadata(n.kafka_addr).brokers) == [1]

    # Paused: the kernel still accepts connections, but the node answers nothing.
    n.pause()
    assert tcp_answers(n.host, n.kafka_port)
    with pytest.raises(Exception):
        metadata(n.kafka_addr, timeout=1.0)
    assert not n.ready()
    n.resume()
    n.wait_ready()

    # kill -9, then start on the same data dir and ports: the topic is still there.
    pid = n.pid
    n.kill9()
    assert not n.alive() and not os.path.exists(f"/proc/{pid}")  # killed and reaped
    wait_until(lambda: not tcp_answers(n.host, n.kafka_port, 0.2), 5, "port closed")
    n.start()
    assert topic in metadata(n.kafka_addr).topics

    # Clean restart: SIGTERM exits 0.
    n.restart()
    assert n.starts == 3 and len(n.log_paths) == 3
    assert all(p.exists() for p in n.log_paths)
    assert "n1-3.log" in n.log_tail()



def test_heal_reports_a_node_that_died_on_its_own(cluster_factory):
    from nemesis import Nemesis
    from workload import History

    c = cluster_factory(1).start()
    n = c.node(1)
    history = History()
    nemesis = Nemesis(c, history)
    os.kill(n.pid, signal.SIGKILL)  # not through the nemesis: to the harness, a crash
    wait_until(lambda: not n.alive(), 10, "the node to die")
    nemesis.heal()
    assert nemesis.crashes == [(1, -signal.SIGKILL)]
    assert [e["action"] for e in history.events] == ["crashed", "heal"]
    assert n.alive() and n.ready()


def test_network_faults_with_real_nodes_in_namespaces(cluster_factory):
    # Three independent one-node clusters (no --voters yet), each in its own namespace: the
    # multi-node namespace path with real brokers and Kafka clients in the root namespace.
    # isolate() leaves clients reaching the node; cut_clients() stops them; heal() restores.
    from confluent_kafka import Producer
    from nemesis import Nemesis

    c = cluster_factory(3, netns=True, voters=False).start()
    assert [sorted(metadata(n.kafka_addr).brokers) for n in c.nodes] == [[1], [2], [3]]

    def produce_ok(node, timeout=10.0):
        p = Producer({"bootstrap.servers": node.kafka_addr, "acks": "all", "message.timeout.ms": int(timeout * 1000),
                      "log_level": 0})
        got = []
        p.produce("nf", value=b"x", on_delivery=lambda err, msg: got.append(err))
        p.flush(timeout + 5)
        return len(got) == 1 and got[0] is None

    nemesis = Nemesis(c)
    nemesis.isolate(1)
    assert produce_ok(c.node(1)), "clients must still reach an isolated node"
    nemesis.heal()
    nemesis.cut_clients(2)
    assert not tcp_answers(c.node(2).host, c.node(2).kafka_port, timeout=1.0)
    assert not produce_ok(c.node(2), timeout=2.0)
    assert produce_ok(c.node(3))
    nemesis.heal()
    assert produce_ok(c.node(2))


def test_nemesis_stop_and_start(cluster_factory):
    from nemesis import Nemesis
    from workload import History

    c = cluster_factory(1).start()
    history = History()
    nemesis = Nemesis(c, history)
    nemesis.stop(1)
    assert not c.node(1).alive()
    nemesis.start(1)
    assert c.node(1).ready()
    nemesis.stop(1)
    nemesis.heal()  # a stopped node is started again, and not counted as a crash
    assert c.node(1).ready() and nemesis.crashes == []
    assert [e["action"] for e in history.events] == ["stop", "start", "started", "stop", "heal"]
