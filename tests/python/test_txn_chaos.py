"""T6, the chaos copier (research test plan §5.5; Kafka's transactions_test.py on one node).

N ints are seeded into `in` (2 partitions) by an idempotent producer. Two copier processes
(txn_copier.py: read_committed, transactional ids copier-0 / copier-1, 100 records per
transaction, one transaction in 3 aborted on purpose after logging "aborting" with its attempt id)
copy partition i of `in` to partition i of `out`. Meanwhile a seeded schedule kills a copier with
kill -9 (restarted at once) or the broker with kill -9 (restarted after 1 s), and a concurrent
read_committed consumer reads `out`.

At the end:
- read_committed `out` holds exactly the input, each record once, in input order per partition;
- no record of a deliberately aborted attempt (or of an attempt aborted after an error) is visible,
  to the final reader or to the concurrent consumer; every visible attempt was being committed;
- the concurrent consumer saw no value twice;
- read_uncommitted `out` shows the aborted records exist.

A copier that exits on a fatal producer error is restarted, as an application would restart it:
against Apache Kafka this happens when a copier's transaction timed out while the broker was down
(EndTxn answers INVALID_TXN_STATE, or the producer finds itself fenced after the coordinator's
abort bumped the epoch). The checks above hold regardless.

CI runs one bounded run: 8 000 ints, up to 10 events (about 30 s against Sluice, a minute against
Apache Kafka, whose restarts are slower). Longer runs:

    SLUICE_TXN_CHAOS_SOAK=1 pytest -q tests/python/test_txn_chaos.py      # 50 000 ints, 60 events, ~2 min
    SLUICE_TXN_CHAOS_SEED=7 SLUICE_TXN_CHAOS_N=20000 pytest -q tests/python/test_txn_chaos.py

The seed and every chaos event are printed (shown when the test fails); rerun a failure with its
seed.
"""

import json
import os
import random
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

from kutil import consumer, create_topic, producer
from txnutil import RC, RU, header, produce, read_to_end, start_copier

SOAK = os.environ.get("SLUICE_TXN_CHAOS_SOAK") == "1"
SEED = int(os.environ.get("SLUICE_TXN_CHAOS_SEED", "1"))
N = int(os.environ.get("SLUICE_TXN_CHAOS_N", "50000" if SOAK else "8000"))
# Copiers sleep between transactions so the run lasts long enough for the chaos to hit them.
PACE_MS = int(os.environ.get("SLUICE_TXN_CHAOS_PACE_MS", "100"))
MAX_EVENTS = int(os.environ.get("SLUICE_TXN_CHAOS_EVENTS", "60" if SOAK else "10"))
BUDGET_S = 1500 if SOAK else 240

pytestmark = pytest.mark.timeout(BUDGET_S + 120)


@pytest.fixture(scope="module", autouse=True)
def fast_timeout_aborts():
    """Sluice checks for timed-out transactions every second instead of every 10 s (Kafka's
    transaction.abort.timed.out.transaction.cleanup.interval.ms, which the reference Kafka of
    tests/kafka-ref also sets to 1 s). Autouse, so set before the brokers of this module start."""
    old = os.environ.get("SLUICE_TRANSACTION_ABORT_INTERVAL_MS")
    os.environ["SLUICE_TRANSACTION_ABORT_INTERVAL_MS"] = "1000"
    yield
    if old is None:
        del os.environ["SLUICE_TRANSACTION_ABORT_INTERVAL_MS"]
    else:
        os.environ["SLUICE_TRANSACTION_ABORT_INTERVAL_MS"] = old


class Watcher(threading.Thread):
    """A read_committed consumer on `out` running throughout the chaos."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.c = consumer(bootstrap, isolation_level=RC)
        self.c.assign([TopicPartition(topic, p, -2) for p in range(2)])
        self.stop = threading.Event()
        self.seen = {}  # (partition, offset) -> (value, attempt)
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            m = self.c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(str(m.error()))  # transport errors while the broker is down
                continue
            self.seen[(m.partition(), m.offset())] = (m.value().decode(), header(m, "attempt"))
        self.c.close()


def read_log(path):
    events = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass  # a line cut by kill -9
    return events


def test_chaos_copier(broker_factory, unique, tmp_path):
    rng = random.Random(SEED)
    print(f"seed={SEED} n={N} pace_ms={PACE_MS} max_events={MAX_EVENTS}")
    br = broker_factory()
    b = br.bootstrap
    src = create_topic(b, unique("in"), partitions=2)
    dst = create_topic(b, unique("out"), partitions=2)
    group = unique("copy")
    inputs = {0: [], 1: []}
    for i in range(N):
        inputs[i % 2].append(str(i))
    seeder = producer(b, acks="all", enable_idempotence=True, linger_ms=20)
    for part in (0, 1):
        produce(seeder, src, inputs[part], partition=part)

    log = tmp_path / "copiers.jsonl"
    out = {k: tmp_path / f"copier-{k}.out" for k in (0, 1)}
    opts = dict(batch=100, abort_every=3, seed=SEED, txn_timeout_ms=10000, pace_ms=PACE_MS)

    def launch(k):
        return start_copier(b, src, dst, k, group, f"copier-{k}", log, output=out[k], **opts)

    copiers = {k: launch(k) for k in (0, 1)}
    done = set()
    crashes = []
    watcher = Watcher(b, dst)
    watcher.start()
    t0 = time.monotonic()
    events = []
    # The first two events are one of each kind, in a seeded order; then seeded random ones.
    kinds = ["copier", "broker"]
    rng.shuffle(kinds)

    def check_copiers():
        for k, proc in copiers.items():
            if k in done or proc.poll() is None:
                continue
            if proc.returncode == 0:
                done.add(k)
            else:  # a fatal error: recorded, restarted (the checks below decide)
                crashes.append((k, proc.returncode, round(time.monotonic() - t0, 1)))
                print(f"copier-{k} exited {proc.returncode}; restarting")
                copiers[k] = launch(k)

    try:
        while len(done) < 2:
            assert time.monotonic() - t0 < BUDGET_S, (
                f"copiers not done within {BUDGET_S}s (done: {done}); events {events}\n"
                + "".join(out[k].read_text(errors="replace")[-3000:] for k in (0, 1)))
            if len(events) >= MAX_EVENTS:
                check_copiers()
                time.sleep(0.2)
                continue
            wait = rng.uniform(1.0, 4.0)
            end = time.monotonic() + wait
            while time.monotonic() < end and len(done) < 2:
                check_copiers()
                time.sleep(0.1)
            if len(done) == 2:
                break
            kind = kinds.pop(0) if kinds else ("broker" if rng.random() < 0.3 else "copier")
            at = round(time.monotonic() - t0, 1)
            if kind == "copier":
                live = [k for k in (0, 1) if k not in done]
                k = rng.choice(live)
                copiers[k].kill()
                copiers[k].wait(10)
                copiers[k] = launch(k)
                events.append((at, f"kill -9 copier-{k}"))
            else:
                br.kill9()
                time.sleep(1)
                br.start()
                events.append((at, "kill -9 broker"))
            print(f"t={at}s event {events[-1][1]}")
        elapsed = round(time.monotonic() - t0, 1)
        print(f"copiers done in {elapsed}s; events: {events}; copier crashes: {crashes}")

        final = read_to_end(b, dst, 2, RC, timeout=60)
        ru = read_to_end(b, dst, 2, RU, timeout=60)
        # the concurrent consumer catches up
        deadline = time.monotonic() + 60
        while len(watcher.seen) < N and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watcher.stop.set()
        for proc in copiers.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    watcher.join(10)

    history = read_log(log)
    aborting = {e["attempt"] for e in history if e["event"] in ("aborting", "abortable")}
    committing = {e["attempt"] for e in history if e["event"] == "committing"}
    deliberate = {e["attempt"] for e in history if e["event"] == "aborting"}
    assert deliberate, "no transaction was aborted on purpose"

    # 1. exactly once, in order, per partition
    for part in (0, 1):
        got = [m.value().decode() for m in final[part]]
        if got != inputs[part]:
            dup = len(got) - len(set(got))
            missing = set(inputs[part]) - set(got)
            extra = set(got) - set(inputs[part])
            raise AssertionError(
                f"partition {part}: {len(got)} records for {len(inputs[part])} inputs; "
                f"{dup} duplicates, {len(missing)} missing (e.g. {sorted(missing)[:5]}), "
                f"{len(extra)} unexpected; events {events}")
    # 2. no aborted attempt visible; every visible attempt was being committed
    visible = {header(m, "attempt") for ms in final.values() for m in ms}
    assert not (visible & aborting), f"aborted attempts visible to read_committed: {visible & aborting}"
    assert visible <= committing, f"attempts visible that were never committed: {visible - committing}"
    # 3. the concurrent consumer: no duplicates, nothing aborted, everything
    vals = [v for v, _ in watcher.seen.values()]
    assert len(vals) == len(set(vals)), f"concurrent consumer saw {len(vals) - len(set(vals))} duplicates"
    assert not ({a for _, a in watcher.seen.values()} & aborting), "concurrent consumer saw aborted data"
    assert sorted(vals, key=int) == [str(i) for i in range(N)], (
        f"concurrent consumer saw {len(vals)} of {N} records")
    # 4. the aborted data exists
    ru_attempts = {header(m, "attempt") for ms in ru.values() for m in ms}
    assert ru_attempts & deliberate, "read_uncommitted shows none of the deliberately aborted records"
    assert sum(len(ms) for ms in ru.values()) > N
    print(f"ok: {N} records exactly once; {len(deliberate)} deliberate aborts, "
          f"{len(aborting) - len(deliberate)} aborts after errors, {len(committing)} commits attempted; "
          f"read_uncommitted {sum(len(ms) for ms in ru.values())} records; watcher errors {len(watcher.errors)}")
