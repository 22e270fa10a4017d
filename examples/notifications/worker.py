"""The workers of one channel: members of the share group `workers.<channel>` reading
`notify.<channel>` as a queue. Each notification goes to one worker at a time under a lock; the
worker acknowledges it

- ACCEPT  when it was sent (or had been sent already: a duplicate),
- RELEASE when the provider failed in a way that may pass (it is down, rate-limits us): the
          broker hands the record out again after the group's backoff, and after
          `share.delivery.count.limit` deliveries moves it to `dlq.workers.<channel>`,
- REJECT  when it can never be sent (a malformed address): dead-lettered at once.

Idempotent handling. The queue is at least once: a record comes back when a worker dies or
stalls after sending but before its acknowledgement reached the broker (lock expiry, session
timeout, a closed consumer), the router may have written the same event twice, and a redrive can
bring back a dead letter whose duplicate was sent. So every worker dedupes on the event id in a
small store shared by the channel's workers (SQLite here; any store with an atomic
insert-if-absent does): it *claims* the event id before sending, marks it *done* after, and
treats a record whose event id is done as a duplicate (ACCEPT without sending). A claim older
than the record lock is stale (its worker is gone) and may be taken over.

    python worker.py --channel sms [--workers 3] [--state-dir DIR] [--bootstrap-server HOST:PORT]
"""

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
import time

from confluent_kafka import AcknowledgeType, KafkaError, KafkaException, ShareConsumer

from common import (CHANNELS, CLAIM_LEASE_S, REQUEUED_HEADER, default_bootstrap, default_state_dir,
                    down_flag, outbox_path, sqlite, store_path, work_topic, worker_group)

ACCEPT, RELEASE, REJECT = AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT
# How long a worker waits for another worker's send of the same event before releasing its copy.
BUSY_WAIT_S = 1.0


class TransientError(Exception):
    """The provider may succeed later: release the record for another attempt."""


class PermanentError(Exception):
    """The provider will never accept this notification: reject it (dead letter)."""


class SimulatedCrash(Exception):
    """--crash-once: the worker dies after sending, before acknowledging."""


# ---------------------------------------------------------------------------------------------
# The fake provider (SMTP relay, push service, SMS gateway): every accepted send is a row in its
# outbox, so duplicates would show. It is "down" while the flag file <state>/<channel>.down exists.


class Provider:
    def __init__(self, state_dir, channel):
        self.channel = channel
        self.flag = down_flag(state_dir, channel)
        self.db = sqlite(outbox_path(state_dir, channel))
        self.db.execute("CREATE TABLE IF NOT EXISTS outbox (event_id TEXT, recipient TEXT, "
                        "text TEXT, worker TEXT, sent_at REAL)")

    def send(self, note, worker):
        if self.flag.exists():
            raise TransientError(f"{self.channel} gateway unavailable (503)")
        if self.channel == "email" and "@" not in note["to"]:
            raise PermanentError(f"invalid email address {note['to']!r}")
        time.sleep(0.005)  # a network round trip
        self.db.execute("INSERT INTO outbox VALUES (?, ?, ?, ?, ?)",
                        (note["event_id"], note["to"], note["text"], worker, time.time()))


# ---------------------------------------------------------------------------------------------
# The dedupe store, plus a journal of what every delivery came to (for the demo's report)


class DedupeStore:
    def __init__(self, path):
        self.db = sqlite(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS processed (event_id TEXT PRIMARY KEY, "
                        "state TEXT NOT NULL, owner TEXT, claimed_at REAL, done_at REAL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS journal (worker TEXT, event_id TEXT, "
                        "topic TEXT, partition INTEGER, offset INTEGER, delivery_count INTEGER, "
                        "redriven INTEGER, outcome TEXT, detail TEXT, at REAL)")

    def claim(self, event_id, owner):
        """"claimed" (go ahead and send), "done" (a duplicate) or "busy" (another worker is
        sending it right now)."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT state, claimed_at FROM processed WHERE event_id = ?",
                                  (event_id,)).fetchone()
            if row is None:
                self.db.execute("INSERT INTO processed VALUES (?, 'claimed', ?, ?, NULL)",
                                (event_id, owner, now))
                verdict = "claimed"
            elif row[0] == "done":
                verdict = "done"
            elif row[1] + CLAIM_LEASE_S < now:  # its worker died mid-send
                self.db.execute("UPDATE processed SET owner = ?, claimed_at = ? WHERE event_id = ?",
                                (owner, now, event_id))
                verdict = "claimed"
            else:
                verdict = "busy"
            self.db.execute("COMMIT")
            return verdict
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def done(self, event_id, owner):
        self.db.execute("UPDATE processed SET state = 'done', done_at = ? "
                        "WHERE event_id = ? AND owner = ?", (time.time(), event_id, owner))

    def unclaim(self, event_id, owner):
        self.db.execute("DELETE FROM processed WHERE event_id = ? AND owner = ? "
                        "AND state = 'claimed'", (event_id, owner))

    def journal(self, worker, msg, event_id, outcome, detail=""):
        redriven = any(k == REQUEUED_HEADER for k, _ in (msg.headers() or []))
        self.db.execute("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (worker, event_id, msg.topic(), msg.partition(), msg.offset(),
                         msg.delivery_count(), int(redriven), outcome, detail, time.time()))


# ---------------------------------------------------------------------------------------------
# One worker: a ShareConsumer in explicit acknowledgement mode


class Worker:
    def __init__(self, bootstrap, channel, name, state_dir, crash=None, log=print):
        self.bootstrap = bootstrap
        self.channel = channel
        self.name = name
        self.state_dir = state_dir
        # --crash-once: a lock shared by the process's workers; the first to send takes it
        # and crashes.
        self.crash = crash
        self.log = log

    def consumer(self):
        c = ShareConsumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": worker_group(self.channel),
            "client.id": self.name,
            "share.acknowledgement.mode": "explicit",
            # Small batches spread the work over the pool (a worker holds what it polled).
            "max.poll.records": 5,
            "log_level": 3,  # no "share consumer is in Preview" notice
        })
        c.subscribe([work_topic(self.channel)])
        return c

    def handle(self, msg, store, provider):
        """Sends one notification; returns how to acknowledge it."""
        try:
            note = json.loads(msg.value())
            event_id = note["event_id"]
        except (ValueError, KeyError, TypeError) as e:
            store.journal(self.name, msg, None, "rejected", f"unreadable: {e}")
            return REJECT
        verdict = store.claim(event_id, self.name)
        deadline = time.monotonic() + BUSY_WAIT_S
        while verdict == "busy" and time.monotonic() < deadline:
            time.sleep(0.05)  # another worker is sending it: its outcome is a moment away
            verdict = store.claim(event_id, self.name)
        if verdict == "done":
            store.journal(self.name, msg, event_id, "deduped")
            return ACCEPT
        if verdict == "busy":
            store.journal(self.name, msg, event_id, "busy")
            return RELEASE  # still busy: comes back after the backoff
        try:
            provider.send(note, self.name)
        except TransientError as e:
            store.unclaim(event_id, self.name)
            store.journal(self.name, msg, event_id, "released", str(e))
            return RELEASE
        except PermanentError as e:
            store.unclaim(event_id, self.name)
            store.journal(self.name, msg, event_id, "rejected", str(e))
            return REJECT
        store.done(event_id, self.name)
        if self.crash is not None and self.crash.acquire(blocking=False):
            store.journal(self.name, msg, event_id, "crashed", "after sending, before the ack")
            raise SimulatedCrash(event_id)
        store.journal(self.name, msg, event_id, "sent")
        return ACCEPT

    def run(self, stop: threading.Event):
        store = DedupeStore(store_path(self.state_dir, self.channel))
        provider = Provider(self.state_dir, self.channel)
        c = self.consumer()
        try:
            while not stop.is_set():
                msgs = c.poll(0.5)
                acked = 0
                for m in msgs:
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            self.log(f"{self.name}: {m.error()}")
                        continue
                    try:
                        c.acknowledge(m, self.handle(m, store, provider))
                    except SimulatedCrash as e:
                        # The process would be gone: the record (and the rest of this batch) is
                        # still acquired by us, unacknowledged. Closing the consumer releases them
                        # (available again after the release backoff); a real crash releases
                        # them when the lock or the member's session expires. Either way another
                        # worker gets them, and finds the sent one done: a duplicate.
                        self.log(f"{self.name}: crashed after sending {e} (not acknowledged)")
                        c.close()
                        c = self.consumer()
                        acked = 0
                        break
                    acked += 1
                if acked:
                    for tp, err in (c.commit_sync(15) or {}).items():
                        if err is not None:
                            # The lock was lost (e.g. expired): the broker will deliver the
                            # record again and the dedupe store catches it.
                            self.log(f"{self.name}: acknowledgement of {tp} failed: {err}")
        finally:
            c.close()  # commits pending acknowledgements, releases what it still holds


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run a channel's worker pool (share group members).")
    ap.add_argument("--channel", required=True, choices=CHANNELS)
    ap.add_argument("--workers", type=int, default=3, help="members of the share group (threads)")
    ap.add_argument("--bootstrap-server", default=default_bootstrap())
    ap.add_argument("--state-dir", default=str(default_state_dir()))
    ap.add_argument("--crash-once", action="store_true",
                    help="one worker dies once after a send, before acknowledging it")
    args = ap.parse_args(argv)
    os.makedirs(args.state_dir, exist_ok=True)
    # Create the SQLite schemas once before the threads race for them.
    DedupeStore(store_path(args.state_dir, args.channel))
    Provider(args.state_dir, args.channel)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    failures = []

    def run(w):
        try:
            w.run(stop)
        except (KafkaException, sqlite3.Error) as e:
            failures.append(e)
            print(f"{w.name}: stopped by {e!r}", flush=True)
            stop.set()

    pid = os.getpid()
    crash = threading.Lock() if args.crash_once else None
    threads = [threading.Thread(target=run, name=f"{args.channel}-{i}", args=(Worker(
        args.bootstrap_server, args.channel, f"{args.channel}-worker-{pid}-{i}", args.state_dir,
        crash=crash, log=lambda s: print(s, flush=True)),))
        for i in range(args.workers)]
    for t in threads:
        t.start()
    print(f"{args.channel}: {args.workers} workers in share group {worker_group(args.channel)}",
          flush=True)
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
