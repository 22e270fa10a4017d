"""Workload + checker against one real `sluice` (`--flush always`) under faults, with producers
and consumers that never restart: every acknowledged record present exactly once, in order,
nothing phantom, group offsets sane, and progress after each heal."""

import os

import scenarios
from checker import check
from workload import History, Workload, create_topic, drain


def test_kill9_and_restart_mid_run(cluster_factory, run_dir):
    c = cluster_factory(1).start()
    report, history = scenarios.run(c, run_dir, [scenarios.kill_leader, scenarios.kill_leader],
                                    seek_every=40)
    print(report)
    assert report.ok, str(report)
    assert report.stats["acked"] > 0 and report.stats["drained"] >= report.stats["acked"]


def test_faults_in_a_namespace(cluster_factory, run_dir):
    # One node in its own network namespace, clients in the root namespace: the network fault
    # (clients cut from the leader) and the process faults, one after the other.
    c = cluster_factory(1, netns=True).start()
    report, history = scenarios.run(
        c, run_dir,
        [scenarios.cut_clients_from_leader, scenarios.pause_leader, scenarios.kill_leader,
         scenarios.restart_leader])
    print(report)
    assert report.ok, str(report)
    actions = [e["action"] for e in history.events if e["type"] == "nemesis"]
    assert actions == ["cut-clients", "heal", "pause", "heal", "kill", "heal", "restart", "started", "heal"]


def test_the_checker_sees_a_real_loss(cluster_factory, run_dir):
    # The pipeline can fail: acknowledged records cut from the log behind the broker's back (as a
    # write that never reached the disk would be) are reported as lost writes, and only those.
    c = cluster_factory(1).start()
    node = c.node(1)
    topic = "loss"
    history = History(run_dir / "history.jsonl")
    create_topic(c.bootstrap, topic, 1)
    wl = Workload(c.bootstrap, topic, 1, history, writers=1, assign_readers=1, group_readers=0).start()
    wl.wait_progress(200, 200, 30)
    assert wl.stop() == []
    node.kill9()
    segment = sorted((node.data_dir / f"{topic}-0").glob("*.log"))[-1]
    os.truncate(segment, segment.stat().st_size - 300)  # a torn tail: the last batches are gone
    node.start()
    marks = drain(c.bootstrap, topic, 1, history)
    high = marks[0][1]
    cut = sorted(e["offset"] for e in history.events if e["type"] == "ok" and e["offset"] >= high)
    assert cut, "the truncation removed no acknowledged record"
    report = check(history.events)
    print(report)
    assert report.violations["lost-write"] == len(cut), str(report)
    assert report.failed() == ["lost-write"], str(report)
    assert "FAILED lost-write" in str(report)
