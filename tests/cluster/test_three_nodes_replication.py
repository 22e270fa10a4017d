"""Three real nodes replicating partition data (issue #10): RF 3 topics with
min.insync.replicas=2 under idempotent acks=all producers, assigned and group consumers, while
the nemesis kills, pauses, isolates and one-way-cuts the leader of partition 0. The checker
(checker.py) verifies every acknowledged record is present exactly once and in order, no offset
holds two different records, no reader saw a record that was never acknowledged (nothing above
the high watermark), committed group offsets never move back, and the workload made progress
after every heal. The long randomized version is `soak.py --nodes 3 --netns`."""

import scenarios

EXTRA = ["--broker-session-timeout-ms", "3000", "--broker-heartbeat-interval-ms", "500",
         "--initial-rebalance-delay-ms", "300"]
MIN_ISR = {"min.insync.replicas": "2"}


def test_leader_killed_and_follower_killed_on_loopback(cluster_factory, run_dir):
    """kill -9 of the leader (a new leader from the ISR, the old one truncates and catches up
    when it returns) and of a follower (the ISR shrinks to two; acks=all keeps working)."""
    c = cluster_factory(3, extra_args=EXTRA).start()
    report, _ = scenarios.run(c, run_dir, [scenarios.kill_leader, scenarios.kill_follower],
                              topic_config=MIN_ISR)
    print(report)
    assert report.ok, str(report)


def test_leader_network_faults_in_namespaces(cluster_factory, run_dir):
    """The leader of partition 0 paused (a zombie, fenced by the new epoch when it wakes), cut off
    from its peers (clients still reach it: a minority must not acknowledge), and losing every
    packet it sends to its peers (one-way)."""
    c = cluster_factory(3, netns=True, extra_args=EXTRA).start()
    report, _ = scenarios.run(c, run_dir, [scenarios.pause_leader, scenarios.isolate_leader,
                                           scenarios.one_way_from_leader],
                              topic_config=MIN_ISR)
    print(report)
    assert report.ok, str(report)


def test_group_coordinator_killed_while_committing(cluster_factory, run_dir):
    """kill -9 of the group coordinator (the leader of `__consumer_offsets-0`) while two group
    consumers commit, twice: the new coordinator loads the replicated offsets, so no commit
    goes back and the group resumes where it committed."""
    c = cluster_factory(3, extra_args=EXTRA).start()
    report, history = scenarios.run(c, run_dir, [scenarios.kill_group_coordinator,
                                                 scenarios.kill_group_coordinator],
                                    topic_config=MIN_ISR)
    print(report)
    assert report.ok, str(report)
    commits = [e for e in history.events if e["type"] == "commit" and e.get("offsets") and not e.get("error")]
    assert commits, "the group committed nothing"
