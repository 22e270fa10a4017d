"""The checker on synthetic histories: each check fires on a crafted bad history (and only that
check), and a good history passes every check."""

import json

from checker import check, load


class H:
    """Builds a history; time advances by 1 s per event unless `at` is given."""

    def __init__(self):
        self.events = []
        self.t = 0.0

    def add(self, type, at=None, **kw):
        self.t = self.t + 1.0 if at is None else at
        self.events.append({"type": type, "t": self.t, **kw})
        return self

    def invoke(self, v, p=0, proc="w0", at=None):
        return self.add("invoke", at=at, process=proc, value=v, topic="t", partition=p)

    def ok(self, v, off, p=0, proc="w0", at=None):
        return self.add("ok", at=at, process=proc, value=v, topic="t", partition=p, offset=off)

    def write(self, v, off, p=0, proc="w0"):
        return self.invoke(v, p, proc).ok(v, off, p, proc)

    def poll(self, session, v, off, p=0, group=None, at=None):
        return self.add("poll", at=at, process=session, value=v, topic="t", partition=p, offset=off, group=group)

    def drain(self, records, p=0, low=0, high=None):
        for off, v in records:
            self.add("drain", process="drain", value=v, topic="t", partition=p, offset=off)
        high = (records[-1][0] + 1 if records else low) if high is None else high
        return self.add("drain-end", process="drain", topic="t", partition=p, low=low, high=high)

    def commit(self, group, off, hw, p=0, proc="c1"):
        """A commit that returns before anything else happens, then its watermark read."""
        self.add("commit-invoke", process=proc, group=group)
        self.add("commit", process=proc, group=group, offsets=[["t", p, off]], error=None)
        return self.add("watermark", process=proc, topic="t", partition=p, high=hw)


def good():
    h = H()
    for i in range(3):
        h.write(f"w0-{i}", i)
    h.write("w1-0", 0, p=1, proc="w1")
    for i in range(3):
        h.poll("c1", f"w0-{i}", i)
    h.commit("g", 3, 3)
    h.add("nemesis", process="nemesis", action="kill", node=1)
    h.add("nemesis", process="nemesis", action="heal")
    h.write("w0-3", 3)
    h.poll("c1", "w0-3", 3)
    h.commit("g", 4, 4)
    h.add("close", process="c1")
    h.drain([(0, "w0-0"), (1, "w0-1"), (2, "w0-2"), (3, "w0-3")])
    h.drain([(0, "w1-0")], p=1)
    return h


def only(report, name):
    assert report.violations[name] > 0, f"{name} did not fire:\n{report}"
    others = {c: n for c, n in report.violations.items() if c != name and n}
    assert not others, f"other checks fired too: {others}\n{report}"


def test_good_history_passes_every_check():
    r = check(good().events)
    assert r.ok, str(r)
    assert r.stats["acked"] == 5 and r.stats["drained"] == 5 and r.stats["polled"] == 4
    assert "history check: OK" in str(r)


def test_good_history_survives_jsonl(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in good().events))
    assert check(load(path)).ok


def test_inconsistent_offset():
    h = H().invoke("x", proc="w1").write("a", 0).write("b", 1)
    h.add("info", process="w1", value="x", error="_MSG_TIMED_OUT")
    h.poll("c1", "a", 0).poll("c1", "x", 1)  # offset 1 read as another value
    h.drain([(0, "a"), (1, "b")])
    only(check(h.events), "inconsistent-offset")


def test_duplicate_value_at_two_offsets():
    h = H().write("a", 0)
    h.drain([(0, "a"), (1, "a")])
    r = check(h.events)
    only(r, "duplicate")
    assert "duplicate" in str(r) and "FAILED duplicate" in str(r)
    # Without idempotence a duplicate is allowed (counted, not a violation).
    r2 = check(h.events, idempotent=False)
    assert r2.ok and r2.stats["duplicates-allowed"] == 1


def test_lost_write_missing_from_drain():
    h = H().write("a", 0).write("b", 1).write("c", 2)
    h.drain([(0, "a"), (2, "c")], high=3)
    only(check(h.events), "lost-write")


def test_lost_write_above_final_high_watermark():
    h = H().write("a", 0).write("b", 1)
    h.drain([(0, "a")])  # HW 1: the acked offset 1 is gone (truncated)
    only(check(h.events), "lost-write")


def test_lost_write_partition_never_drained():
    h = H().write("a", 0, p=3)
    only(check(h.events), "lost-write")


def test_acked_below_log_start_is_not_lost():
    h = H().write("a", 0).write("b", 1)
    h.drain([(1, "b")], low=1)
    assert check(h.events).ok


def test_real_time_order_of_acks():
    h = H().write("a", 5)  # acked at 5 before b was sent
    h.write("b", 3)
    h.drain([(3, "b"), (5, "a")], high=6)
    # offsets 4 absent from the drain is fine (gaps are allowed: control batches)
    only(check(h.events), "real-time-order")


def test_real_time_order_of_a_stale_read():
    h = H().write("a", 5)
    h.invoke("b").add("info", process="w0", value="b", error="_MSG_TIMED_OUT")
    h.drain([(4, "b"), (5, "a")], low=4)  # b, sent after a was acked, sits below a
    only(check(h.events), "real-time-order")


def test_concurrent_writes_may_land_in_any_order():
    h = H().invoke("a", proc="w0").invoke("b", proc="w1")
    h.ok("b", 0, proc="w1").ok("a", 1, proc="w0")
    h.drain([(0, "b"), (1, "a")])
    assert check(h.events).ok


def test_poll_nonmonotonic():
    h = H().write("a", 0).write("b", 1)
    h.poll("c1", "a", 0).poll("c1", "b", 1).poll("c1", "a", 0)
    h.drain([(0, "a"), (1, "b")])
    only(check(h.events), "poll-order")


def test_poll_skip():
    h = H().write("a", 0).write("b", 1).write("c", 2)
    h.poll("c1", "a", 0).poll("c1", "c", 2)
    h.drain([(0, "a"), (1, "b"), (2, "c")])
    r = check(h.events)
    only(r, "poll-order")
    assert "skip" in r.examples["poll-order"][0]


def test_poll_gap_the_drain_also_has_is_not_a_skip():
    h = H().write("a", 0).write("c", 2)  # offset 1: a control batch, say
    h.poll("c1", "a", 0).poll("c1", "c", 2)
    h.drain([(0, "a"), (2, "c")])
    assert check(h.events).ok


def test_seek_and_rebalance_reset_poll_order():
    h = H().write("a", 0).write("b", 1).write("c", 2)
    h.poll("c1", "a", 0).poll("c1", "b", 1)
    h.add("seek", process="c1", topic="t", partition=0, offset=0)
    h.poll("c1", "a", 0)
    h.add("rebalance", process="c1", group="g", kind="assign", partitions=[["t", 0]])
    h.poll("c1", "c", 2)
    h.drain([(0, "a"), (1, "b"), (2, "c")])
    assert check(h.events).ok


def test_read_after_seek_must_start_at_the_seek():
    h = H().write("a", 0).write("b", 1).write("c", 2)
    h.poll("c1", "a", 0)
    h.add("seek", process="c1", topic="t", partition=0, offset=1)
    h.poll("c1", "c", 2)  # skipped b at 1
    h.drain([(0, "a"), (1, "b"), (2, "c")])
    only(check(h.events), "poll-order")


def test_sessions_are_independent():
    h = H().write("a", 0).write("b", 1)
    h.poll("c1", "a", 0).poll("c2", "a", 0).poll("c1", "b", 1).poll("c2", "b", 1)
    h.drain([(0, "a"), (1, "b")])
    assert check(h.events).ok


def test_phantom_never_sent():
    h = H().write("a", 0)
    h.drain([(0, "a"), (1, "ghost")])
    only(check(h.events), "phantom-read")


def test_phantom_definitely_failed():
    h = H().write("a", 0)
    h.invoke("b").add("fail", process="w0", value="b", error="MSG_SIZE_TOO_LARGE")
    h.poll("c1", "a", 0).poll("c1", "b", 1)
    h.drain([(0, "a"), (1, "b")])
    only(check(h.events), "phantom-read")


def test_unknown_outcome_may_be_read():
    h = H().write("a", 0)
    h.invoke("b").add("info", process="w0", value="b", error="_MSG_TIMED_OUT")
    h.drain([(0, "a"), (1, "b")])
    r = check(h.events)
    assert r.ok and r.stats["unknown-but-written"] == 1


def test_commit_above_high_watermark():
    h = H().write("a", 0)
    h.commit("g", 5, 1)
    h.drain([(0, "a")])
    r = check(h.events)
    only(r, "group-offsets")
    # Both the HW at commit time and the final HW are exceeded.
    assert r.violations["group-offsets"] == 2


def test_commit_backward_without_seek():
    h = H().write("a", 0).write("b", 1)
    h.commit("g", 2, 2).commit("g", 1, 2)
    h.drain([(0, "a"), (1, "b")])
    only(check(h.events), "group-offsets")


def test_commit_backward_after_rebalance_or_seek_is_fine():
    h = H().write("a", 0).write("b", 1)
    h.poll("c1", "a", 0, group="g")
    h.commit("g", 2, 2)
    h.add("rebalance", process="c2", group="g", kind="assign", partitions=[["t", 0]])
    h.commit("g", 1, 2, proc="c2")
    h.add("seek", process="c1", topic="t", partition=0, offset=0)
    h.commit("g", 0, 2)
    h.drain([(0, "a"), (1, "b")])
    assert check(h.events).ok


def test_overlapping_commits_may_apply_in_either_order():
    # c2 invoked its commit (offset 1) before c1's (offset 2) returned: either order is possible.
    h = H().write("a", 0).write("b", 1)
    h.add("commit-invoke", process="c2", group="g")
    h.commit("g", 2, 2, proc="c1")
    h.add("commit", process="c2", group="g", offsets=[["t", 0, 1]], error=None)
    h.add("watermark", process="c2", topic="t", partition=0, high=2)
    h.drain([(0, "a"), (1, "b")])
    r = check(h.events)
    assert r.ok and r.stats["commits-overlapping-backward"] == 1
    # Invoked after c1's returned: backward.
    h2 = H().write("a", 0).write("b", 1)
    h2.commit("g", 2, 2, proc="c1").commit("g", 1, 2, proc="c2")
    h2.drain([(0, "a"), (1, "b")])
    only(check(h2.events), "group-offsets")


def test_the_watermark_read_after_the_commit_bounds_it():
    h = H().write("a", 0).write("b", 1)
    h.add("commit-invoke", process="c1", group="g")
    h.add("commit", process="c1", group="g", offsets=[["t", 0, 2]], error=None)
    h.add("watermark", process="c1", topic="t", partition=0, high=1)  # HW 1 < committed 2
    h.drain([(0, "a"), (1, "b")])
    r = check(h.events)
    only(r, "group-offsets")
    assert "above the high watermark 1" in r.examples["group-offsets"][0]


def test_failed_commit_is_ignored():
    h = H().write("a", 0)
    h.add("commit-invoke", process="c1", group="g")
    h.add("commit", process="c1", group="g", offsets=[], error="REBALANCE_IN_PROGRESS")
    h.drain([(0, "a")])
    assert check(h.events).ok


def test_liveness_writes_after_heal():
    h = H().write("a", 0)
    h.add("nemesis", process="nemesis", action="heal", at=10.0)
    h.invoke("b", at=11.0).add("info", process="w0", value="b", error="_MSG_TIMED_OUT", at=50.0)
    h.drain([(0, "a")])
    r = check(h.events, liveness_s=20.0)
    only(r, "liveness")
    # An ack inside the window is live.
    h2 = H().write("a", 0)
    h2.add("nemesis", process="nemesis", action="heal", at=10.0)
    h2.invoke("b", at=11.0).ok("b", 1, at=29.0).drain([(0, "a"), (1, "b")])
    assert check(h2.events, liveness_s=20.0).ok


def test_liveness_reads_after_heal():
    h = H().write("a", 0).poll("c1", "a", 0)
    h.add("nemesis", process="nemesis", action="heal", at=10.0)
    h.invoke("b", at=11.0).ok("b", 1, at=12.0)
    h.poll("c1", "b", 1, at=45.0)  # too late
    h.drain([(0, "a"), (1, "b")])
    only(check(h.events, liveness_s=20.0), "liveness")


def test_liveness_ignores_sessions_closed_in_the_window():
    h = H().write("a", 0).poll("c1", "a", 0)
    h.add("nemesis", process="nemesis", action="heal", at=10.0)
    h.add("close", process="c1", at=12.0)
    h.drain([(0, "a")])
    assert check(h.events, liveness_s=20.0).ok


def test_drain_must_increase():
    h = H().write("a", 0).write("b", 1)
    h.drain([(1, "b"), (0, "a")], high=2)
    only(check(h.events), "poll-order")


def test_linear_on_a_large_history():
    h = H()
    n = 50_000
    for i in range(n):
        h.write(f"w0-{i}", i)
        h.poll("c1", f"w0-{i}", i)
    h.drain([(i, f"w0-{i}") for i in range(n)])
    r = check(h.events)
    assert r.ok and r.stats["acked"] == n
