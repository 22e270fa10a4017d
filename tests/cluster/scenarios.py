"""Fault scenarios: a workload on a running Cluster, faults from a schedule, heal, recovery,
drain, check.

`run(cluster, run_dir, faults, ...)` creates a topic, starts a `Workload`, waits for progress,
runs every fault in `faults` (each a function `fault(nemesis, cluster, topic)` that injects a
fault, holds it, and heals), waits for progress again after the last heal (bounded by the
liveness window), stops writers and readers, drains every partition, and returns the checker's
`Report` (the history is in `run_dir/history.jsonl`). When the workload made no progress after a
heal, or readers never read everything acknowledged, it still heals, drains and checks, then
raises with those problems and the report.

The faults below name their target by role: `leader` is the node Metadata names leader of
partition 0 when the fault starts (on one node, that node). Those marked *cluster* need several
nodes in namespaces (`Cluster(n=3, netns=True)`); the others run on one node today.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from checker import LIVENESS_S, Report, check
from cluster import Cluster, wait_until
from nemesis import Nemesis
from workload import History, Workload, create_topic

# How long a fault is held before heal (it is the fault's duration, not a wait for a condition).
HOLD_S = 3.0


def _hold(seconds: float):
    time.sleep(seconds)


def kill_leader(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = HOLD_S):
    """kill -9 the leader of partition 0; restart it on its data dir after `hold_s`."""
    leader = cluster.leader_of(topic, 0)
    nemesis.kill(leader.node_id)
    _hold(hold_s)
    nemesis.heal()


def group_committed(cluster: Cluster, topic: str, partitions: int = 3) -> dict[int, int]:
    """The workload group's committed offsets of `topic` (partition -> offset; absent: none),
    read with OffsetFetch (a consumer that never joins the group)."""
    from confluent_kafka import Consumer, TopicPartition
    from workload import COMMON_CONF
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{topic}",
                  "enable.auto.commit": False, **COMMON_CONF})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=5.0)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got if tp.error is None and tp.offset >= 0}


def kill_group_coordinator(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = HOLD_S):
    """*cluster*: once the workload's group has committed, kill -9 the group coordinator (the
    leader of `__consumer_offsets-0`) while the group commits; restart it after `hold_s`. The
    offsets committed before the kill must be on the new coordinator (none went back; the
    checker's `group-offsets` checks every later commit)."""
    def committed_enough():
        try:
            got = group_committed(cluster, topic)
        except Exception:  # noqa: BLE001 - the coordinator may be moving: ask again
            return None
        return got if len(got) >= 2 else None
    before = wait_until(committed_enough, LIVENESS_S, f"the group of {topic} committing", interval=0.5)
    coordinator = cluster.leader_of("__consumer_offsets", 0)
    nemesis.kill(coordinator.node_id)
    _hold(hold_s)
    nemesis.heal()

    def kept():
        try:
            got = group_committed(cluster, topic)
        except Exception:  # noqa: BLE001 - the new coordinator may still be loading
            return None
        kept_all = all(got.get(p, -1) >= off for p, off in before.items())
        moved_on = any(got.get(p, -1) > off for p, off in before.items())
        return got if kept_all and moved_on else None
    # The offsets committed before the kill are on the new coordinator, and the group commits
    # on from there.
    wait_until(kept, LIVENESS_S, f"the offsets committed before the kill ({before}) on the new coordinator",
               interval=0.5)


def pause_leader(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = HOLD_S):
    """SIGSTOP the leader of partition 0 for `hold_s`, then SIGCONT (a zombie leader: in a
    cluster it must be fenced by the new leader's epoch before it may answer again)."""
    leader = cluster.leader_of(topic, 0)
    nemesis.pause(leader.node_id)
    _hold(hold_s)
    nemesis.heal()


def restart_leader(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = 0.0):
    """Clean restart (SIGTERM, exit 0, start) of the leader of partition 0."""
    leader = cluster.leader_of(topic, 0)
    nemesis.restart(leader.node_id)
    nemesis.heal()


def cut_clients_from_leader(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = HOLD_S):
    """Clients cannot reach the leader of partition 0 (nor it them); its peers still can."""
    leader = cluster.leader_of(topic, 0)
    nemesis.cut_clients(leader.node_id)
    _hold(hold_s)
    nemesis.heal()


def isolate_leader(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = 10.0):
    """*cluster*: the leader of partition 0 loses its peers (clients still reach it). Its ISR
    must shrink or it must lose leadership; acks=all writes to it must not be acknowledged by a
    minority."""
    leader = cluster.leader_of(topic, 0)
    nemesis.isolate(leader.node_id)
    _hold(hold_s)
    nemesis.heal()


def kill_follower(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = HOLD_S):
    """*cluster*: kill -9 a node that is not the leader of partition 0, restart it."""
    leader = cluster.leader_of(topic, 0)
    other = next(n for n in cluster.nodes if n.node_id != leader.node_id)
    nemesis.kill(other.node_id)
    _hold(hold_s)
    nemesis.heal()


def cut_leader_from_one_peer(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = 10.0):
    """*cluster*: a bridge partition: the leader and one peer cannot talk; the third sees both."""
    leader = cluster.leader_of(topic, 0)
    other = next(n for n in cluster.nodes if n.node_id != leader.node_id)
    nemesis.cut(leader.node_id, other.node_id)
    _hold(hold_s)
    nemesis.heal()


def one_way_from_leader(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = 10.0):
    """*cluster*: packets from the leader of partition 0 to every peer are lost; the other way
    passes."""
    leader = cluster.leader_of(topic, 0)
    for n in cluster.nodes:
        if n.node_id != leader.node_id:
            nemesis.cut_one_way(leader.node_id, n.node_id)
    _hold(hold_s)
    nemesis.heal()


def rolling_restart(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = 0.0):
    """Clean restart of every node, one after the other, each back (and the cluster ready)
    before the next."""
    for n in cluster.nodes:
        nemesis.restart(n.node_id)
        cluster.wait_ready()
    nemesis.heal()


def held(fault, hold_s: float):
    """`fault` with another hold time (keeps its name for reports)."""
    def f(nemesis, cluster, topic):
        return fault(nemesis, cluster, topic, hold_s=hold_s)
    f.__name__ = f"{fault.__name__}[{hold_s:g}s]"
    return f


def kill_all(nemesis: Nemesis, cluster: Cluster, topic: str, hold_s: float = 1.0):
    """kill -9 every node at once (a power cut of the whole cluster), then restart them all."""
    for n in cluster.nodes:
        nemesis.kill(n.node_id)
    _hold(hold_s)
    nemesis.heal()


def run(cluster: Cluster, run_dir: Path, faults, partitions: int = 3, replication_factor: int | None = None,
        topic_config: dict | None = None, writers: int = 2, rate: float = 100.0,
        assign_readers: int = 1, group_readers: int = 2, seek_every: int = 0,
        liveness_s: float = LIVENESS_S, progress: int = 100) -> tuple[Report, History]:
    """Workload + faults + heal + drain + check on a started cluster; returns (report, history)."""
    rf = replication_factor or min(3, cluster.n)
    topic = f"chk-{uuid.uuid4().hex[:8]}"
    history = History(Path(run_dir) / "history.jsonl")
    create_topic(cluster.bootstrap, topic, partitions, rf, topic_config)
    wl = Workload(cluster.bootstrap, topic, partitions, history, writers=writers, rate=rate,
                  assign_readers=assign_readers, group_readers=group_readers, seek_every=seek_every)
    nemesis = Nemesis(cluster, history)
    problems = []
    try:
        wl.start()
        try:
            wl.wait_progress(progress, progress, liveness_s, "before the first fault")
            for fault in faults:
                fault(nemesis, cluster, topic)
                # After each heal the workload must move again (no client restarted).
                wl.wait_progress(progress, progress, liveness_s, f"after {fault.__name__}")
        except AssertionError as e:
            # Stop injecting, heal, and still drain and check: the report says more.
            problems.append(str(e))
            nemesis.heal()
        problems += wl.stop()
    finally:
        for t in wl.writers + wl.readers:
            t.stop_event.set()
    try:
        cluster.wait_full_isr(topic)
    except AssertionError as e:
        problems.append(str(e))
    wl.drain()
    history.close()
    problems += [f"fatal producer error: {f}" for f in wl.fatal_errors()]
    problems += [f"node {n} exited on its own with {code}" for n, code in nemesis.crashes]
    problems += [f"node {n.node_id} exited on its own with {n.proc.returncode}"
                 for n in cluster.nodes if n.proc is not None and n.proc.poll() is not None]
    report = check(history.events, idempotent=True, liveness_s=liveness_s)
    if problems:
        raise AssertionError("\n".join(problems) + f"\n{report}\nhistory: {history.path}")
    return report, history
