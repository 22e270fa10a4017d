"""Workload + checker against one real `sluice` (`--flush always`) under faults, with producers
and consumers that never restart: every acknowledged record present exactly once, in order,
nothing phantom, group offsets sane, and progress after each heal."""

import scenarios


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
