"""The notification service end to end against a running broker, with the sms provider down,
then fixed and its dead letters redriven. Prints a timeline and a report; exits 0 when every
check held, 1 when one failed, 2 when the demo could not run (no broker, not a fresh broker, a
`sluice` without `dlq`).

    python run_demo.py --bootstrap-server 127.0.0.1:9092 --sluice /path/to/sluice

The broker must be fresh (no `events` topic yet): the demo checks exact counts."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (CHANNELS, EVENTS_TOPIC, ROUTER_GROUP, WORKER_GROUP_CONFIG, channel_stats,
                    committed_offsets, dlq_topic, end_offsets, expected_by_channel, poison_by_channel,
                    read_topic, set_provider, setup, topic_names, work_topic, worker_group)
from ctl import publish_events

HERE = Path(__file__).resolve().parent
DLQ_TOOL_GROUP = "sluice-dlq"  # where `sluice dlq` records which dead letters it handled
FAILING = "sms"
CRASHING = "push"  # one of its workers dies once between a send and its acknowledgement
LIMIT = int(WORKER_GROUP_CONFIG["share.delivery.count.limit"])


class Fatal(Exception):
    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code


class Demo:
    def __init__(self, args):
        self.a = args
        self.bs = args.bootstrap_server
        self.state = Path(args.state_dir)
        self.procs = {}
        self.problems = []
        self.t0 = time.time()
        self.facts = {"channels": {c: {} for c in CHANNELS}, "timing": {}, "cli": {}}
        self.events = []

    # -- helpers ------------------------------------------------------------------------------

    def log(self, msg):
        print(f"[{time.time() - self.t0:6.2f}s] {msg}", flush=True)

    def check(self, ok, what):
        if not ok:
            self.problems.append(what)
            self.log(f"CHECK FAILED: {what}")
        return ok

    def wait(self, cond, what, timeout=None):
        """Polls cond() (bounded) until it returns a truthy value."""
        timeout = timeout or self.a.wait
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            v = cond()
            if v:
                return v
            last = v
            time.sleep(0.1)
        raise Fatal(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    def sluice(self, *argv, show=True):
        cmd = [self.a.sluice, *argv, "--bootstrap-server", self.bs]
        self.log("$ sluice " + " ".join(argv))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if show:
            for line in (p.stdout + p.stderr).splitlines()[:40]:
                print(f"    {line}", flush=True)
        if p.returncode != 0:
            raise Fatal(f"`sluice {' '.join(argv)}` exited with {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def spawn(self, name, script, *argv):
        log = open(self.state / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, str(HERE / script), "--bootstrap-server", self.bs, *argv],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(HERE))
        log.close()

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait(timeout=10)
                self.problems.append(f"{name} ignored SIGTERM for 20s")
        self.procs.clear()
        return codes

    def assert_running(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise Fatal(f"{name} exited with {p.returncode}; see {self.state / (name + '.log')}")

    def stats(self, channel):
        return channel_stats(self.state, channel, self.expected[channel])

    def records(self, topic):
        return sum(end_offsets(self.bs, topic).values())

    # -- the scenario -------------------------------------------------------------------------

    def preflight(self):
        try:
            p = subprocess.run([self.a.sluice, "dlq", "--help"], capture_output=True, timeout=30)
        except OSError as e:
            raise Fatal(f"cannot run the sluice CLI {self.a.sluice!r}: {e}", 2)
        if p.returncode != 0:
            raise Fatal(f"{self.a.sluice} has no `dlq` subcommand (the redrive needs it)", 2)
        try:
            existing = topic_names(self.bs)
        except Exception as e:  # noqa: BLE001 - any client error: no broker
            raise Fatal(f"no broker at {self.bs}: {e}", 2)
        if EVENTS_TOPIC in existing:
            raise Fatal(f"topic {EVENTS_TOPIC!r} exists already: the demo needs a fresh broker "
                        f"(start `sluice serve` with an empty --data-dir)", 2)

    def run(self):
        self.preflight()
        self.state.mkdir(parents=True, exist_ok=True)
        setup(self.bs)
        self.log(f"topics {EVENTS_TOPIC}, " + ", ".join(work_topic(c) for c in CHANNELS) +
                 f" created; worker groups: delivery limit {LIMIT}, release backoff "
                 f"{WORKER_GROUP_CONFIG['share.release.backoff.ms']} ms")
        set_provider(self.state, FAILING, up=False)
        self.log(f"the {FAILING} provider is DOWN")

        self.events = publish_events(self.bs, self.state, self.a.events)
        self.expected = expected_by_channel(self.events)
        self.poison = poison_by_channel(self.events)
        self.log(f"published {len(self.events)} events to {EVENTS_TOPIC} (" +
                 ", ".join(f"{c}: {len(self.expected[c]) + len(self.poison[c])}" for c in CHANNELS) +
                 f" notifications; {sum(map(len, self.poison.values()))} with a bad address)")

        # A router that dies after fanning out some events, before committing: its successor
        # routes them again, so the work topics hold duplicates.
        r = subprocess.run([sys.executable, str(HERE / "router.py"), "--bootstrap-server", self.bs,
                            "--crash-after", str(self.a.crash_after)], cwd=str(HERE),
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Fatal(f"router --crash-after failed ({r.returncode}): {r.stdout}{r.stderr}")
        self.log(f"router #1 fanned out {self.a.crash_after} events and died before committing")
        self.spawn("router", "router.py")
        ends = end_offsets(self.bs, EVENTS_TOPIC)

        def routed():
            self.assert_running()
            done = committed_offsets(self.bs, ROUTER_GROUP, EVENTS_TOPIC, ends)
            return all(done.get(p, -1) >= e for p, e in ends.items())

        self.wait(routed, "the router to commit every event")
        counts = {c: self.records(work_topic(c)) for c in CHANNELS}
        for c in CHANNELS:
            self.facts["channels"][c]["records"] = counts[c]
        self.log("router #2 routed every event; work topic records (with the replayed ones): " +
                 ", ".join(f"{c} {counts[c]}" for c in CHANNELS))

        # The workers start on the backlog together, so every channel's clock starts at once.
        self.t_work = time.time()
        for ch in CHANNELS:
            extra = ["--crash-once"] if ch == CRASHING else []
            self.spawn(f"workers-{ch}", "worker.py", "--channel", ch, "--workers",
                       str(self.a.workers), "--state-dir", str(self.state), *extra)
        self.log(f"{self.a.workers} workers per channel started (share groups " +
                 ", ".join(worker_group(c) for c in CHANNELS) + f"); one {CRASHING} worker "
                 "will die once between a send and its acknowledgement")

        # Email and push finish while every sms notification is retried and dead-lettered.
        for c in CHANNELS:
            if c == FAILING:
                continue

            def finished(c=c):
                self.assert_running()
                return self.stats(c)["done"] >= counts[c]

            self.wait(finished, f"{c} to finish its {counts[c]} records")
            s = self.stats(c)
            self.facts["timing"][f"{c}_finished_at"] = s["finished_at"]
            self.log(f"{c} finished: {s['delivered']}/{s['expected']} delivered, "
                     f"{s['outcomes'].get('deduped', 0)} duplicates deduped, "
                     f"{s['outcomes'].get('rejected', 0)} rejected")

        def sms_dead():
            self.assert_running()
            return self.records(dlq_topic(FAILING)) >= counts[FAILING]

        self.wait(sms_dead, f"all {counts[FAILING]} {FAILING} records in {dlq_topic(FAILING)}")
        letters = read_topic(self.bs, dlq_topic(FAILING))
        first_dl = min(int(r["headers"]["__dlq.errors.timestamp"]) for r in letters) / 1000
        self.facts["timing"]["sms_first_dead_letter_at"] = first_dl
        self.facts["timing"]["sms_last_dead_letter_at"] = max(
            int(r["headers"]["__dlq.errors.timestamp"]) for r in letters) / 1000
        self.log(f"{len(letters)} {FAILING} records dead-lettered after {LIMIT} deliveries each")
        self.check(len(letters) == counts[FAILING],
                   f"{dlq_topic(FAILING)} has {len(letters)} records, expected {counts[FAILING]}")
        for r in letters:
            h = r["headers"]
            self.check(h.get("__dlq.errors.reason") == "delivery_limit"
                       and h.get("__dlq.errors.delivery.count") == str(LIMIT)
                       and h.get("__dlq.errors.group") == worker_group(FAILING)
                       and h.get("__dlq.errors.topic") == work_topic(FAILING),
                       f"unexpected dead letter headers {h}")
        self.check(self.stats(FAILING)["delivered"] == 0,
                   f"{FAILING} sent something while its provider was down")
        for c in CHANNELS:
            if c == FAILING:
                continue
            done_at = self.facts["timing"][f"{c}_finished_at"]
            self.check(done_at is not None and done_at < first_dl,
                       f"{c} finished at +{(done_at or 0) - self.t_work:.2f}s, not before the "
                       f"first {FAILING} dead letter at +{first_dl - self.t_work:.2f}s")

        # The bad addresses were rejected at once: dead letters of email, reason `rejected`.
        poison_records = sum(1 for r in read_topic(self.bs, work_topic("email"))
                             if json.loads(r["value"])["event_id"] in self.poison["email"])
        self.wait(lambda: self.records(dlq_topic("email")) >= poison_records,
                  f"{poison_records} rejected email records in {dlq_topic('email')}")
        rejected = read_topic(self.bs, dlq_topic("email"))
        self.check(len(rejected) == poison_records
                   and all(r["headers"].get("__dlq.errors.reason") == "rejected" for r in rejected),
                   f"{dlq_topic('email')}: expected {poison_records} rejected records")

        self.sluice("dlq", "list")

        # The provider is fixed: redrive the sms dead letters.
        set_provider(self.state, FAILING, up=True)
        self.log(f"the {FAILING} provider is UP again")
        self.facts["timing"]["redrive_at"] = time.time()
        self.facts["cli"]["requeue"] = self.sluice("dlq", "requeue", "--group",
                                                   worker_group(FAILING), "--all")
        requeued = [r for r in read_topic(self.bs, work_topic(FAILING))
                    if "__dlq.requeued.from" in r["headers"]]
        self.facts["channels"][FAILING]["requeued_records"] = len(requeued)
        self.check(len(requeued) == len(letters),
                   f"{len(requeued)} records requeued to {work_topic(FAILING)}, "
                   f"expected {len(letters)}")

        def sms_delivered():
            self.assert_running()
            s = self.stats(FAILING)
            return s["redriven_done"] >= len(requeued) and s["delivered"] == s["expected"]

        self.wait(sms_delivered, f"the {len(requeued)} redriven {FAILING} records to be handled")
        s = self.stats(FAILING)
        self.facts["timing"]["sms_finished_at"] = s["finished_at"]
        self.log(f"{FAILING} after the redrive: {s['delivered']}/{s['expected']} delivered, "
                 f"{s['outcomes'].get('deduped', 0)} duplicates deduped")

        # The bad addresses cannot be redriven: mark them handled.
        self.facts["cli"]["discard"] = self.sluice("dlq", "discard", "--group",
                                                   worker_group("email"), "--all")
        for c in ("email", FAILING):
            t = dlq_topic(c)
            ends = end_offsets(self.bs, t)
            handled = committed_offsets(self.bs, DLQ_TOOL_GROUP, t, ends)
            depth = sum(max(0, e - max(handled.get(p, 0), 0)) for p, e in ends.items())
            self.facts["channels"][c]["dlq_depth_after"] = depth
            self.check(depth == 0, f"{t}: {depth} dead letters left unhandled")
        self.sluice("dlq", "list")

    def finish(self):
        codes = self.stop_all()
        for name, code in codes.items():
            self.check(code == 0, f"{name} exited with {code} (see {self.state / (name + '.log')})")
        if not self.events:
            return
        redrive_at = self.facts["timing"].get("redrive_at")
        for c in CHANNELS:
            s = self.stats(c)
            dl = {}
            try:
                for r in read_topic(self.bs, dlq_topic(c)):
                    reason = r["headers"].get("__dlq.errors.reason", "?")
                    dl[reason] = dl.get(reason, 0) + 1
            except Exception as e:  # noqa: BLE001 - reported
                self.problems.append(f"reading {dlq_topic(c)}: {e}")
            f = self.facts["channels"][c]
            f.update({
                "wanted": s["expected"],
                "delivered": s["delivered"],
                "missing": s["missing"],
                "duplicate_sends": s["duplicate_sends"],
                "deduped": s["outcomes"].get("deduped", 0),
                "released": s["outcomes"].get("released", 0) + s["outcomes"].get("busy", 0),
                "rejected": s["outcomes"].get("rejected", 0),
                "crashed": s["outcomes"].get("crashed", 0),
                "dead_lettered": dl,
                "redriven": s["redriven_done"],
                "outcomes": s["outcomes"],
            })
            self.check(not s["missing"], f"{c}: never delivered {s['missing'][:10]}")
            self.check(s["duplicate_sends"] == 0, f"{c}: {s['duplicate_sends']} duplicate sends")
            self.check(not s["unexpected_sends"], f"{c}: sent {s['unexpected_sends'][:10]}")
        self.check(self.facts["channels"][CRASHING].get("crashed") == 1,
                   f"the {CRASHING} worker crash did not happen")
        self.check(sum(self.facts["channels"][c].get("deduped", 0) for c in CHANNELS) > 0,
                   "no duplicate was deduped (the router replay should have made some)")
        if redrive_at:
            early = [eid for eid, at in _sends(self.state, FAILING) if at < redrive_at]
            self.check(not early, f"{FAILING} sent before the redrive: {early[:5]}")

    def print_report(self):
        base = getattr(self, "t_work", self.t0)
        print("\nchannel  wanted  delivered  dup-sends  deduped  retried  dead-lettered"
              "                redriven")
        for c in CHANNELS:
            f = self.facts["channels"][c]
            if "wanted" not in f:
                continue
            dl = ", ".join(f"{n} {r}" for r, n in sorted(f["dead_lettered"].items())) or "0"
            print(f"{c:<8} {f['wanted']:>6}  {f['delivered']:>9}  {f['duplicate_sends']:>9}  "
                  f"{f['deduped']:>7}  {f['released']:>7}  {dl:<27}  {f['redriven']:>8}")
        t = self.facts["timing"]
        rel = {k: f"+{v - base:.2f}s" for k, v in t.items() if isinstance(v, (int, float))}
        if rel:
            print("timing (from starting the workers): " +
                  ", ".join(f"{k.replace('_at', '')} {v}" for k, v in rel.items()))
        if self.problems:
            print(f"\nFAILED ({len(self.problems)} problems):")
            for p in self.problems:
                print(f"  - {p}")
        else:
            print("\nOK: email and push delivered exactly once while sms was down; every sms "
                  "delivered exactly once after the redrive")


def _sends(state_dir, channel):
    from common import outbox_path, read_rows
    return read_rows(outbox_path(state_dir, channel), "SELECT event_id, sent_at FROM outbox")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap-server",
                    default=os.environ.get("SLUICE_BOOTSTRAP_SERVER", "127.0.0.1:9092"))
    ap.add_argument("--sluice", default=os.environ.get("SLUICE_BIN") or shutil.which("sluice")
                    or "sluice", help="the sluice binary (for `sluice dlq`); default $SLUICE_BIN")
    ap.add_argument("--state-dir", help="outboxes, dedupe stores, logs (default: a new temp dir)")
    ap.add_argument("--events", type=int, default=40, help="events to publish (even)")
    ap.add_argument("--workers", type=int, default=3, help="workers per channel")
    ap.add_argument("--crash-after", type=int, default=10,
                    help="events the first router fans out before it dies uncommitted")
    ap.add_argument("--wait", type=float, default=30.0, help="bound on each wait, in seconds")
    ap.add_argument("--report-json", help="also write the facts and problems here")
    args = ap.parse_args(argv)
    args.state_dir = args.state_dir or tempfile.mkdtemp(prefix="notify-demo-")

    demo = Demo(args)
    demo.log(f"state in {args.state_dir}; broker {args.bootstrap_server}; CLI {args.sluice}")
    code = 0
    try:
        demo.run()
    except Fatal as e:
        demo.problems.append(str(e))
        demo.log(f"ABORTED: {e}")
        code = e.code
    except Exception as e:  # noqa: BLE001 - reported, then non-zero
        demo.problems.append(f"{type(e).__name__}: {e}")
        demo.log(f"ABORTED: {type(e).__name__}: {e}")
        code = 1
    finally:
        try:
            demo.finish()
        except Exception as e:  # noqa: BLE001
            demo.problems.append(f"final checks: {type(e).__name__}: {e}")
    demo.print_report()
    if args.report_json:
        demo.facts.update({"ok": not demo.problems, "problems": demo.problems,
                           "state_dir": args.state_dir, "workers_started_at":
                           getattr(demo, "t_work", None)})
        Path(args.report_json).write_text(json.dumps(demo.facts, indent=2, default=str))
    if demo.problems and code == 0:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
