"""A transactional consume-transform-produce copier (confluent-kafka), run as a separate process by
test_txn_chaos.py and test_transactions.py so that it can be killed with `kill -9`.

It copies one partition of the input topic to the same partition of the output topic, exactly once:
a read_committed consumer (assigned, not subscribed: group metadata with generation -1, like Kafka's
TransactionalMessageCopier) feeds a transactional producer; every transaction carries `--batch`
records and the consumer offsets (send_offsets_to_transaction). One transaction in `--abort-every`
is aborted on purpose: its records carry the header `attempt=<uuid>`, and the line
{"event": "aborting", "attempt": ...} is written to `--log` (and flushed) before abort_transaction,
so the test can check that no such record is ever visible to read_committed consumers.

Exit codes: 0 = copied up to the input's end (the read_committed high watermark at start);
3 = fatal producer error (printed); 4 = `--hold` reached (never exits by itself then).
`--hold N`: after N committed transactions, produce one more batch, send its offsets, print HOLD and
sleep without committing (the test kills the process there).
"""

import argparse
import json
import os
import random
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--in-topic", required=True)
    ap.add_argument("--out-topic", required=True)
    ap.add_argument("--partition", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--txn-id", required=True)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--abort-every", type=int, default=3, help="abort 1 in N transactions (0: never)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--txn-timeout-ms", type=int, default=10000)
    ap.add_argument("--pace-ms", type=int, default=0, help="sleep between transactions")
    ap.add_argument("--hold", type=int, default=-1)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()

    logf = open(a.log, "a", buffering=1)

    def log(event, **kw):
        kw.update(event=event, txn_id=a.txn_id, pid=os.getpid(), t=round(time.time(), 3))
        logf.write(json.dumps(kw) + "\n")
        logf.flush()

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    })
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "transactional.id": a.txn_id,
        "transaction.timeout.ms": a.txn_timeout_ms,
        "linger.ms": 5,
    })
    tp_in = TopicPartition(a.in_topic, a.partition)
    end = None
    while end is None:
        try:
            end = c.get_watermark_offsets(tp_in, timeout=10, cached=False)[1]
        except KafkaException as e:
            log("watermark-retry", error=str(e))
    while True:
        try:
            p.init_transactions(60)
            break
        except KafkaException as e:
            if not e.args[0].retriable():
                raise
            log("init-retry", error=str(e))
    # The committed position: OffsetFetch with RequireStable (librdkafka sets it when
    # read_committed), so a transaction of a killed predecessor still pending is waited out.
    committed = None
    while committed is None:
        try:
            got = c.committed([tp_in], timeout=30)[0]
            if got.error is None:
                committed = got.offset if got.offset >= 0 else 0
            else:
                log("committed-retry", error=str(got.error))
        except KafkaException as e:
            log("committed-retry", error=str(e))
    # Seeded by the run's seed, the copier and where it starts: a rerun with the same seed makes
    # the same abort choices as long as the kills land at the same places.
    rng = random.Random(f"{a.seed}-{a.txn_id}-{committed}")
    log("start", committed=committed, end=end)
    print(f"START committed={committed} end={end}", flush=True)
    c.assign([TopicPartition(a.in_topic, a.partition, committed)])
    n_committed = 0

    def rewind():
        c.assign([TopicPartition(a.in_topic, a.partition, committed)])

    while committed < end:
        msgs = []
        deadline = time.monotonic() + 5
        while len(msgs) < a.batch and committed + len(msgs) < end and time.monotonic() < deadline:
            for m in c.consume(num_messages=a.batch - len(msgs), timeout=0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        log("consume-error", error=str(m.error()))
                    continue
                msgs.append(m)
        if not msgs:
            continue
        attempt = uuid.uuid4().hex
        hold = a.hold >= 0 and n_committed >= a.hold
        abort = not hold and a.abort_every > 0 and rng.randrange(a.abort_every) == 0
        next_off = msgs[-1].offset() + 1
        try:
            p.begin_transaction()
            for m in msgs:
                while True:
                    try:
                        p.produce(a.out_topic, key=m.key(), value=m.value(), partition=a.partition,
                                  headers=[("attempt", attempt.encode()), ("src", str(m.offset()).encode())])
                        break
                    except BufferError:
                        p.poll(0.05)
                p.poll(0)
            if abort:
                # the records reach the log before the abort: read_uncommitted must show them
                remaining = p.flush(30)
                log("aborting", attempt=attempt, first=msgs[0].offset(), last=msgs[-1].offset(),
                    unflushed=remaining)
                p.abort_transaction(60)
                log("aborted", attempt=attempt)
                rewind()
                continue
            p.send_offsets_to_transaction([TopicPartition(a.in_topic, a.partition, next_off)],
                                          c.consumer_group_metadata(), 60)
            if hold:
                p.flush(30)
                log("hold", attempt=attempt, first=msgs[0].offset(), next=next_off)
                print(f"HOLD next={next_off} committed={committed}", flush=True)
                while True:
                    time.sleep(1)
            log("committing", attempt=attempt, first=msgs[0].offset(), next=next_off)
            while True:
                try:
                    p.commit_transaction(60)
                    break
                except KafkaException as e:
                    if e.args[0].retriable():
                        log("commit-retry", attempt=attempt, error=str(e))
                        continue
                    raise
            committed = next_off
            n_committed += 1
            log("committed", attempt=attempt, next=next_off)
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                log("fatal", attempt=attempt, error=str(err))
                print(f"FATAL {err}", flush=True)
                sys.exit(3)
            # Abortable (or anything else not fatal): abort, rewind to the last commit, go on.
            log("abortable", attempt=attempt, error=str(err))
            while True:
                try:
                    p.abort_transaction(60)
                    break
                except KafkaException as e2:
                    if e2.args[0].fatal():
                        log("fatal", attempt=attempt, error=str(e2))
                        print(f"FATAL {e2.args[0]}", flush=True)
                        sys.exit(3)
                    log("abort-retry", attempt=attempt, error=str(e2))
            log("aborted-after-error", attempt=attempt)
            rewind()
        if a.pace_ms:
            time.sleep(a.pace_ms / 1000)
    log("done", committed=committed)
    print(f"DONE committed={committed}", flush=True)
    c.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
