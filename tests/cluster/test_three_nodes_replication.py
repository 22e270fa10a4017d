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
