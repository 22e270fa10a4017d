"""The worked example examples/notifications (a notification service on share groups) run end to
end against the real broker: `run_demo.py` publishes order events, a router fans them out to
notify.email / notify.push / notify.sms (and is killed once before committing, so the work topics
hold duplicates), share-group workers send them through fake providers with dedupe on the event
id, the sms provider is down until its records are dead-lettered, then it is fixed and
`sluice dlq requeue --group workers.sms --all` redrives them.

The demo checks itself and must exit 0; this test then checks the outcome again from the ground
truth, not from the demo's report: the providers' outboxes (one SQLite row per message sent), the
workers' journal, the DLQ and work topics read with a plain consumer, and the broker's metrics.

The redrive needs the `dlq` subcommand: the binary is $SLUICE_CLI_BIN, else the broker's."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from confluent_kafka import TopicPartition

from conftest import REPO, sluice_bin, wait_until
from kutil import OP_TIMEOUT_S, admin, consume_n, consumer, metric, scrape_metrics

EXAMPLE = REPO / "examples" / "notifications"
CHANNELS = ("email", "push", "sms")
DEMO_TIMEOUT_S = 90
LIMIT = 3  # share.delivery.count.limit the example sets on its worker groups


def cli_bin():
    return os.environ.get("SLUICE_CLI_BIN") or sluice_bin()


def read_topic(bootstrap, topic):
    """Every record of `topic` up to its current end: [(partition, offset, headers, value)]."""
    md = admin(bootstrap).list_topics(timeout=OP_TIMEOUT_S).topics
    if topic not in md:
        return []
    c = consumer(bootstrap)
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S)[1]
                for p in md[topic].partitions}
        total = sum(ends.values())
        if not total:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        msgs = consume_n(c, total, timeout=20, idle_after=0.2)
    finally:
        c.close()
    assert len(msgs) == total, f"{topic}: {len(msgs)} records read, {total} expected"
    return [(m.partition(), m.offset(),
             {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])},
             json.loads(m.value())) for m in msgs]


def rows(path, sql):
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_notification_service_example(broker, tmp_path):
    cli = cli_bin()
    p = subprocess.run([cli, "dlq", "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (f"{cli} has no `dlq` subcommand, which the example's redrive "
                               f"needs (set $SLUICE_CLI_BIN to a sluice that has it)")
    state = tmp_path / "state"
    report = tmp_path / "report.json"
    started = time.monotonic()
    demo = subprocess.run(
        [sys.executable, str(EXAMPLE / "run_demo.py"), "--bootstrap-server", broker.bootstrap,
         "--sluice", cli, "--state-dir", str(state), "--report-json", str(report)],
        cwd=str(EXAMPLE), capture_output=True, text=True, timeout=DEMO_TIMEOUT_S,
        stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    out = f"--- run_demo.py ({took:.1f}s) ---\n{demo.stdout}\n{demo.stderr}"
    assert demo.returncode == 0, out
    facts = json.loads(report.read_text())
    assert facts["ok"] and not facts["problems"], out
    print(out)

    # What the events asked for (the demo's copy of what it published).
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert len(events) == 40
    wanted = {c: {e["event_id"] for e in events if c in e["channels"]} for c in CHANNELS}
    bad_email = {e["event_id"] for e in events if "@" not in e["user"]["email"]}
    assert bad_email and bad_email <= wanted["email"]
    deliverable = dict(wanted, email=wanted["email"] - bad_email)

    # Every deliverable notification sent exactly once, on every channel; nothing else sent.
    sends = {c: rows(state / f"provider-{c}.sqlite", "SELECT event_id, sent_at FROM outbox")
             for c in CHANNELS}
    for c in CHANNELS:
        per_event = Counter(eid for eid, _ in sends[c])
        assert set(per_event) == deliverable[c], \
            f"{c}: missing {sorted(deliverable[c] - set(per_event))[:5]}, " \
            f"unexpected {sorted(set(per_event) - deliverable[c])[:5]}"
        dups = {eid: n for eid, n in per_event.items() if n > 1}
        assert not dups, f"{c}: sent more than once: {dups}"

    # The work topics held duplicates (the router died once before committing): the dedupe on
    # the event id is what kept the sends at one per event.
    topic = {c: read_topic(broker.bootstrap, f"notify.{c}") for c in CHANNELS}
    for c in CHANNELS:
        originals = [v["event_id"] for _, _, h, v in topic[c] if "__dlq.requeued.from" not in h]
        assert set(originals) == wanted[c]
        assert len(originals) > len(wanted[c]), f"notify.{c} holds no replayed duplicate"
    journal = {c: rows(state / f"dedupe-{c}.sqlite",
                       "SELECT event_id, outcome, redriven, delivery_count, at FROM journal")
               for c in CHANNELS}
    for c in CHANNELS:
        outcomes = Counter(o for _, o, _, _, _ in journal[c])
        # Every record of the topic ended in exactly one final outcome; the sms records that
        # were dead-lettered ended there, and their requeued copies count instead.
        final = outcomes["sent"] + outcomes["deduped"] + outcomes["rejected"]
        redriven = [r for r in topic[c] if "__dlq.requeued.from" in r[2]]
        assert final == (len(redriven) if c == "sms" else len(topic[c])), \
            (c, outcomes, len(topic[c]))
        assert outcomes["deduped"] > 0, f"{c}: no duplicate deduped ({outcomes})"

    # sms while its provider was down: every original record dead-lettered once, after exactly
    # LIMIT deliveries, reason delivery_limit, with its origin; not one sent before the redrive.
    sms_originals = {(p, o): v["event_id"] for p, o, h, v in topic["sms"]
                     if "__dlq.requeued.from" not in h}
    letters = read_topic(broker.bootstrap, "dlq.workers.sms")
    assert len(letters) == len(sms_originals)
    origins = set()
    for _, _, h, v in letters:
        assert h["__dlq.errors.reason"] == "delivery_limit", h
        assert h["__dlq.errors.delivery.count"] == str(LIMIT), h
        assert h["__dlq.errors.group"] == "workers.sms", h
        assert h["__dlq.errors.topic"] == "notify.sms", h
        origin = (int(h["__dlq.errors.partition"]), int(h["__dlq.errors.offset"]))
        assert sms_originals[origin] == v["event_id"], (origin, v)
        origins.add(origin)
    assert origins == set(sms_originals), "not every sms record was dead-lettered exactly once"
    attempts = Counter((eid, dc) for eid, o, red, dc, _ in journal["sms"]
                       if o == "released" and not red)
    assert max(dc for _, dc in attempts) == LIMIT
    dl_times = [int(h["__dlq.errors.timestamp"]) / 1000 for _, _, h, _ in letters]
    first_dead_letter, last_dead_letter = min(dl_times), max(dl_times)
    assert all(at > last_dead_letter for _, at in sends["sms"]), \
        "an sms was sent before the provider was fixed"

    # Email and push did not wait for sms's retries: all their work (sends, dedupes, rejects)
    # was finished before the first sms record had used up its deliveries.
    for c in ("email", "push"):
        finished = max(at for _, o, _, _, at in journal[c] if o in ("sent", "deduped", "rejected"))
        assert finished < first_dead_letter, \
            f"{c} finished {finished - first_dead_letter:+.2f}s after sms's first dead letter"
    assert not read_topic(broker.bootstrap, "dlq.workers.push")

    # The mistyped address was rejected at once (first delivery) and dead-lettered as such.
    rejected = read_topic(broker.bootstrap, "dlq.workers.email")
    assert rejected and {v["event_id"] for _, _, _, v in rejected} == bad_email
    assert all(h["__dlq.errors.reason"] == "rejected" and h["__dlq.errors.delivery.count"] == "1"
               for _, _, h, _ in rejected)

    # The redrive: each dead letter written back to notify.sms once, each handled, and the
    # duplicates among them deduped rather than sent again.
    requeued = [(h, v) for _, _, h, v in topic["sms"] if "__dlq.requeued.from" in h]
    assert len(requeued) == len(letters)
    assert {h["__dlq.requeued.from"] for h, _ in requeued} == \
        {f"dlq.workers.sms:{p}:{o}" for p, o, _, _ in letters}
    redriven = Counter(o for _, o, red, _, _ in journal["sms"] if red)
    assert redriven["sent"] == len(wanted["sms"])
    assert redriven["deduped"] == len(letters) - len(wanted["sms"]) > 0
    assert redriven["sent"] + redriven["deduped"] == len(requeued), redriven

    # Nothing left in the DLQs: the broker's own depth gauge agrees (refreshed once a second).
    for t in ("dlq.workers.sms", "dlq.workers.email"):
        wait_until(lambda t=t: metric(scrape_metrics(broker.http), "sluice_dlq_depth", topic=t)
                   == 0, 10, f"sluice_dlq_depth{{topic={t}}} == 0", interval=0.2)
    assert took < 60, f"the demo took {took:.1f}s"
