"""Checks a recorded history (workload.py) of producers, consumers, faults and the final drain.

The history is a list of events in the order they happened (`History` records them under one
lock, with `t` = seconds since its start). Each event is a dict with `type`, `t`, `process`, and:

| type | fields | meaning |
| --- | --- | --- |
| `invoke` | value, topic, partition | a producer is about to send `value` |
| `ok` | value, topic, partition, offset | its delivery report: acknowledged at `offset` |
| `fail` | value, error | definitely not written (e.g. refused before it was sent) |
| `info` | value, error | outcome unknown (timeout, fatal error, no report before the end) |
| `poll` | topic, partition, offset, value, group | one record a consumer session read |
| `seek` | topic, partition, offset | the session moved its position |
| `rebalance` | group, kind (assign, revoke, lost), partitions [[topic, p], …] | group membership changed |
| `commit-invoke` | group | a session is about to commit (synchronously) |
| `commit` | group, offsets [[topic, p, offset], …], error | the commit returned: what was committed |
| `watermark` | topic, partition, high | the high watermark the committing session read right after its commit |
| `drain` | topic, partition, offset, value | the final read of every partition, log start to HW |
| `drain-end` | topic, partition, low, high | that partition's log start offset and high watermark |
| `nemesis` | action (… `heal`) | a fault; the last `heal` starts the liveness window |
| `close` | — | a consumer session ended |

The checks, per partition, all in one pass plus a pass over what it collected (linear in the
history, a log factor only for seeks):

1. `inconsistent-offset`: one (topic, partition, offset) seen with two values (acks, polls, drain).
2. `duplicate`: one value at two offsets (with idempotent producers there must be none).
3. `lost-write`: an acknowledged value missing from the drain of its partition (above log start).
4. `real-time-order`: if a's ack came before b's invoke (same partition), offset(a) < offset(b);
   also no read of b at an offset at or below the highest offset acked before b was invoked.
5. `poll-order`: within a consumer session, without a seek or rebalance in between, offsets of a
   partition strictly increase (`nonmonotonic`) and no record that the drain holds is jumped over
   (`skip`); the drain itself is strictly increasing and gap-free against its own list.
6. `phantom-read`: a value read that was never sent, or whose send definitely failed.
7. `group-offsets`: a committed offset is at most the high watermark the session read right after
   the commit and at most the final high watermark; it never goes backward in a group: a commit
   below one that had returned before it was invoked, with no seek or rebalance in that group in
   between, is a violation (commits that overlap in time may be applied in either order).
8. `liveness`: after the last `heal`, every partition written to gets an acknowledgement within
   `liveness_s`, and every consumer session still open `liveness_s` after it has read a record in
   that window.

`check(events)` returns a `Report`: `ok`, per check the number of violations and the first
examples, statistics, and `str(report)` for one readable summary.
"""

from __future__ import annotations

import bisect
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CHECKS = ["inconsistent-offset", "duplicate", "lost-write", "real-time-order", "poll-order",
          "phantom-read", "group-offsets", "liveness"]
# Examples kept per check in a report.
MAX_EXAMPLES = 8
# Default liveness window after the last heal, in seconds.
LIVENESS_S = 20.0


@dataclass
class Report:
    violations: dict = field(default_factory=lambda: {c: 0 for c in CHECKS})
    examples: dict = field(default_factory=lambda: {c: [] for c in CHECKS})
    stats: dict = field(default_factory=dict)

    def add(self, check: str, msg: str):
        self.violations[check] += 1
        if len(self.examples[check]) < MAX_EXAMPLES:
            self.examples[check].append(msg)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def failed(self) -> list[str]:
        return [c for c in CHECKS if self.violations[c]]

    def __str__(self) -> str:
        lines = ["history check: " + ("OK" if self.ok else "FAILED " + ", ".join(self.failed()))]
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in self.stats.items()))
        for c in CHECKS:
            n = self.violations[c]
            lines.append(f"  {'FAIL' if n else 'ok  '} {c}: {n}")
            for ex in self.examples[c]:
                lines.append(f"         {ex}")
        return "\n".join(lines)


def load(path) -> list[dict]:
    with open(Path(path)) as f:
        return [json.loads(line) for line in f if line.strip()]


def _tp(e):
    return (e["topic"], e["partition"])


def check(events: list[dict], idempotent: bool = True, liveness_s: float = LIVENESS_S) -> Report:
    r = Report()
    at_offset = {}  # (topic, p, offset) -> (value, source)
    offsets_of = defaultdict(set)  # value -> {(topic, p, offset)}
    invoked = {}  # value -> (topic, p)
    failed = set()
    acked = {}  # value -> (topic, p, offset, t)
    maxack = defaultdict(lambda: -1)  # tp -> highest offset acked so far
    floor = {}  # value -> highest offset acked in its partition when it was invoked
    drained = defaultdict(list)  # tp -> [offsets] in drain order
    drain_end = {}  # tp -> (low, high)
    last_poll = {}  # (session, tp) -> offset, or ("seek", offset)
    polls_to_check = []  # (session, tp, prev, offset, kind) checked once the drain is known
    group_epoch = defaultdict(int)  # group -> rebalances/seeks seen
    session_group = {}
    last_commit = defaultdict(dict)  # group -> {tp: (offset, group epoch)} of returned commits
    commit_snapshot = {}  # session -> (group epoch, {tp: (offset, epoch)}) when it invoked a commit
    commits = []  # (process, group, tp, offset, hw)
    awaiting_hw = {}  # (session, tp) -> index in commits of its last commit
    heal_t = None
    reads = []  # (value, tp, offset, t)
    counts = defaultdict(int)
    sessions = {}  # session -> {"close": t or None, "polls": [t]}

    def see(tp, off, value, source):
        key = (tp[0], tp[1], off)
        prev = at_offset.get(key)
        if prev is None:
            at_offset[key] = (value, source)
        elif prev[0] != value:
            r.add("inconsistent-offset", f"{tp[0]}/{tp[1]}@{off}: {prev[0]!r} ({prev[1]}) vs {value!r} ({source})")
        offsets_of[value].add(key)

    for e in events:
        typ = e["type"]
        counts[typ] += 1
        t = e.get("t", 0.0)
        if typ == "invoke":
            tp = _tp(e)
            invoked[e["value"]] = tp
            floor[e["value"]] = maxack[tp]
        elif typ == "ok":
            tp, off, v = _tp(e), e["offset"], e["value"]
            acked[v] = (tp[0], tp[1], off, t)
            see(tp, off, v, f"ack by {e.get('process')}")
            f = floor.get(v, -1)
            if off <= f:
                r.add("real-time-order", f"{v!r} acked at {tp[0]}/{tp[1]}@{off}, but offset {f} was acked before it was sent")
            if off > maxack[tp]:
                maxack[tp] = off
        elif typ == "fail":
            failed.add(e["value"])
        elif typ in ("poll", "drain"):
            tp, off, v = _tp(e), e["offset"], e["value"]
            session = e.get("process") if typ == "poll" else "drain"
            see(tp, off, v, f"{typ} by {session}")
            reads.append((v, tp, off, t))
            if typ == "drain":
                drained[tp].append(off)
            else:
                s = sessions.setdefault(session, {"close": None, "polls": []})
                s["polls"].append(t)
                if e.get("group"):
                    session_group[session] = e["group"]
                prev = last_poll.get((session, tp))
                if prev is not None:
                    polls_to_check.append((session, tp, prev, off))
                last_poll[(session, tp)] = off
        elif typ == "drain-end":
            drain_end[_tp(e)] = (e["low"], e["high"])
        elif typ == "seek":
            tp = _tp(e)
            last_poll[(e["process"], tp)] = ("seek", e["offset"])
            g = session_group.get(e["process"]) or e.get("group")
            if g:
                group_epoch[g] += 1
        elif typ == "rebalance":
            g = e.get("group")
            if g:
                group_epoch[g] += 1
                session_group[e["process"]] = g
            for topic, p in e.get("partitions", []):
                last_poll.pop((e["process"], (topic, p)), None)
        elif typ == "commit-invoke":
            g = e["group"]
            commit_snapshot[e["process"]] = (group_epoch[g], dict(last_commit[g]))
        elif typ == "commit":
            g = e["group"]
            # Compare with the commits that had returned when this one was invoked.
            epoch, before = commit_snapshot.pop(e["process"], None) or (group_epoch[g], dict(last_commit[g]))
            if e.get("error"):
                continue
            for entry in e["offsets"]:
                topic, p, off = entry[0], entry[1], entry[2]
                hw = entry[3] if len(entry) > 3 else None
                tp = (topic, p)
                awaiting_hw[(e["process"], tp)] = len(commits)
                commits.append((e.get("process"), g, tp, off, hw))
                prev = before.get(tp)
                if prev is not None and off < prev[0] and prev[1] == epoch:
                    r.add("group-offsets", f"group {g} {topic}/{p}: commit went back {prev[0]} -> {off} without a seek or rebalance")
                else:
                    latest = last_commit[g].get(tp)
                    if latest is not None and off < latest[0]:
                        # Below a commit that returned while this one was in flight: allowed.
                        counts["commits-overlapping-backward"] += 1
                last_commit[g][tp] = (off, group_epoch[g])
        elif typ == "watermark":
            i = awaiting_hw.pop((e["process"], _tp(e)), None)
            if i is not None:
                process, g, tp, off, _hw = commits[i]
                commits[i] = (process, g, tp, off, e["high"])
        elif typ == "nemesis":
            if e.get("action") == "heal":
                heal_t = t
        elif typ == "close":
            sessions.setdefault(e["process"], {"close": None, "polls": []})["close"] = t

    # Reads: phantoms and stale reads (real-time order of the write that was read).
    for v, tp, off, _t in reads:
        if v not in invoked:
            r.add("phantom-read", f"{v!r} read at {tp[0]}/{tp[1]}@{off} was never sent")
        elif v in failed:
            r.add("phantom-read", f"{v!r} read at {tp[0]}/{tp[1]}@{off}, but its send definitely failed")
        elif invoked[v] == tp and off <= floor.get(v, -1):
            r.add("real-time-order", f"{v!r} read at {tp[0]}/{tp[1]}@{off}, but offset {floor[v]} was acked before it was sent")

    # Duplicates: a value at two offsets.
    for v, where in offsets_of.items():
        if len(where) > 1:
            if idempotent:
                r.add("duplicate", f"{v!r} at {sorted(where)}")
            else:
                counts["duplicates-allowed"] += 1

    # The drain: strictly increasing per partition; positions for the skip check.
    position = {}
    for tp, offs in drained.items():
        for i, off in enumerate(offs):
            if i and off <= offs[i - 1]:
                r.add("poll-order", f"drain of {tp[0]}/{tp[1]}: offset {off} after {offs[i - 1]}")
            position[(tp, off)] = i

    for session, tp, prev, off in polls_to_check:
        where = f"session {session} {tp[0]}/{tp[1]}"
        if isinstance(prev, tuple):  # first poll after a seek to prev[1]
            offs = drained.get(tp)
            if offs is None:
                continue
            i = bisect.bisect_left(offs, prev[1])
            if i < len(offs) and off > offs[i]:
                r.add("poll-order", f"{where}: after a seek to {prev[1]} read {off}, skipping {offs[i]}")
            elif off < prev[1]:
                r.add("poll-order", f"{where}: after a seek to {prev[1]} read {off}")
            continue
        if off <= prev:
            r.add("poll-order", f"{where}: nonmonotonic, {off} after {prev}")
            continue
        a, b = position.get((tp, prev)), position.get((tp, off))
        if a is not None and b is not None and b != a + 1:
            r.add("poll-order", f"{where}: skip, {off} after {prev} ({b - a - 1} drained record(s) between)")

    # Lost writes: acked, above log start, not in the drain at that offset.
    for v, (topic, p, off, _t) in acked.items():
        tp = (topic, p)
        if tp not in drain_end:
            r.add("lost-write", f"{v!r} acked at {topic}/{p}@{off}, but the partition was never drained")
            continue
        low, high = drain_end[tp]
        if off < low:
            continue
        if off >= high:
            r.add("lost-write", f"{v!r} acked at {topic}/{p}@{off}, at or above the final high watermark {high}")
        elif (tp, off) not in position:
            r.add("lost-write", f"{v!r} acked at {topic}/{p}@{off}, missing from the drain")
        elif at_offset.get((topic, p, off), (None,))[0] != v:
            r.add("lost-write", f"{v!r} acked at {topic}/{p}@{off}, the drain holds {at_offset[(topic, p, off)][0]!r}")

    # Committed group offsets against high watermarks.
    for process, g, tp, off, hw in commits:
        if hw is not None and off > hw:
            r.add("group-offsets", f"group {g} ({process}) committed {tp[0]}/{tp[1]}@{off} above the high watermark {hw}")
        if tp in drain_end and off > drain_end[tp][1]:
            r.add("group-offsets", f"group {g} committed {tp[0]}/{tp[1]}@{off} above the final high watermark {drain_end[tp][1]}")

    # Liveness after the last heal.
    if heal_t is not None:
        end = heal_t + liveness_s
        invoked_after = set()
        acked_in_window = set()
        for e in events:
            if e.get("t", 0.0) <= heal_t:
                continue
            if e["type"] == "invoke":
                invoked_after.add(_tp(e))
            elif e["type"] == "ok" and e["t"] <= end:
                acked_in_window.add(_tp(e))
        for tp in sorted(invoked_after - acked_in_window):
            r.add("liveness", f"{tp[0]}/{tp[1]}: written after the heal at {heal_t:.1f}s, no ack within {liveness_s}s")
        for s, info in sorted(sessions.items()):
            if info["close"] is not None and info["close"] < end:
                continue
            if not any(heal_t < pt <= end for pt in info["polls"]):
                r.add("liveness", f"session {s}: no record read within {liveness_s}s of the heal at {heal_t:.1f}s")

    lost_unknown = sum(1 for v in invoked if v not in acked and v not in failed and offsets_of.get(v))
    r.stats = {
        "invoked": counts["invoke"], "acked": len(acked), "failed": counts["fail"], "unknown": counts["info"],
        "unknown-but-written": lost_unknown, "polled": counts["poll"], "drained": counts["drain"],
        "commits": counts["commit"], "faults": counts["nemesis"], "client-errors": counts["client-error"],
    }
    if counts["commits-overlapping-backward"]:
        r.stats["commits-overlapping-backward"] = counts["commits-overlapping-backward"]
    if not idempotent:
        r.stats["duplicates-allowed"] = counts["duplicates-allowed"]
    return r


def _main(argv) -> int:
    """`python3 checker.py HISTORY.jsonl [--no-idempotence] [--liveness S]`: prints the report."""
    if len(argv) < 2:
        print(_main.__doc__, file=sys.stderr)
        return 2
    liveness = float(argv[argv.index("--liveness") + 1]) if "--liveness" in argv else LIVENESS_S
    report = check(load(argv[1]), idempotent="--no-idempotence" not in argv, liveness_s=liveness)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
