"""Small commands around the notification service.

    python ctl.py setup                 create the topics, set the worker groups' queue policy
    python ctl.py events [-n 40]        publish the demo's events (order placed / shipped)
    python ctl.py provider sms down     make a fake provider fail (transiently) ...
    python ctl.py provider sms up       ... and recover
    python ctl.py report                per channel: delivered, duplicates, dead letters

Every command takes --bootstrap-server (or $SLUICE_BOOTSTRAP_SERVER, default 127.0.0.1:9092) and
--state-dir (or $NOTIFY_STATE_DIR, default ./state beside this file)."""

import argparse
import json
import sys
from pathlib import Path

from confluent_kafka import Producer

from common import (CHANNELS, EVENTS_TOPIC, WORKER_GROUP_CONFIG, channel_stats, default_bootstrap,
                    default_state_dir, dlq_topic, expected_by_channel, load_events, make_events,
                    read_topic, save_events, set_provider, setup, worker_group)


def publish_events(bootstrap, state_dir, n):
    """Publishes n demo events to `events` (keyed by user), and keeps a copy in the state dir
    for the report. Returns the events."""
    events = make_events(n)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    save_events(state_dir, events)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    errors = []
    for e in events:
        p.produce(EVENTS_TOPIC, key=e["user"]["id"], value=json.dumps(e),
                  on_delivery=lambda err, _m: err and errors.append(err))
    left = p.flush(30)
    if left or errors:
        raise RuntimeError(f"publishing events failed: {left} unsent, errors {errors[:3]}")
    return events


def dead_letters(bootstrap, channel):
    """{reason: count} of the records in the channel's DLQ topic."""
    out = {}
    for r in read_topic(bootstrap, dlq_topic(channel)):
        reason = r["headers"].get("__dlq.errors.reason", "?")
        out[reason] = out.get(reason, 0) + 1
    return out


def report(bootstrap, state_dir):
    expected = expected_by_channel(load_events(state_dir))
    rows = []
    for ch in CHANNELS:
        s = channel_stats(state_dir, ch, expected[ch])
        dl = dead_letters(bootstrap, ch)
        rows.append((ch, s["expected"], s["delivered"], s["duplicate_sends"],
                     s["outcomes"].get("deduped", 0), s["outcomes"].get("released", 0),
                     ", ".join(f"{n} {r}" for r, n in sorted(dl.items())) or "0",
                     s["redriven_done"]))
    head = ("channel", "wanted", "delivered", "dup-sends", "deduped", "retried", "dead-lettered",
            "redriven")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())


def main(argv=None):
    ap = argparse.ArgumentParser(description="Notification service: setup and inspection.")
    ap.add_argument("--bootstrap-server", default=default_bootstrap())
    ap.add_argument("--state-dir", default=str(default_state_dir()))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", help="create the topics and set the worker groups' configs")
    ev = sub.add_parser("events", help="publish the demo's events")
    ev.add_argument("-n", "--count", type=int, default=40)
    pv = sub.add_parser("provider", help="take a fake provider down or bring it back")
    pv.add_argument("channel", choices=CHANNELS)
    pv.add_argument("state", choices=("up", "down"))
    sub.add_parser("report", help="what every channel delivered, deduped and dead-lettered")
    args = ap.parse_args(argv)

    if args.cmd == "setup":
        topics = setup(args.bootstrap_server)
        print(f"topics: {', '.join(topics)}")
        for ch in CHANNELS:
            print(f"group {worker_group(ch)}: " +
                  ", ".join(f"{k}={v}" for k, v in WORKER_GROUP_CONFIG.items()))
    elif args.cmd == "events":
        events = publish_events(args.bootstrap_server, args.state_dir, args.count)
        print(f"published {len(events)} events to {EVENTS_TOPIC}")
    elif args.cmd == "provider":
        set_provider(args.state_dir, args.channel, up=args.state == "up")
        print(f"{args.channel} provider is {args.state}")
    elif args.cmd == "report":
        report(args.bootstrap_server, args.state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
