"""The workload: producers and consumers (confluent-kafka, librdkafka) recording a history for
checker.py, and the final drain.

- `History(path)`: thread-safe; every event gets `t` (seconds since the history began) and is
  appended, in order, to memory and to a JSONL file (kept with a failed test's run dir).
- `Writer`: one idempotent producer (`enable.idempotence`, `acks=all`) per thread sending unique
  values `w<thread>-<seq>` round-robin over the partitions (the partition is chosen by the writer,
  so each invoke names it). It records `invoke` before `produce()`, then from the delivery report
  `ok` (partition, offset), `fail` (an error that means the record was never written) or `info`
  (any other error: the outcome is unknown), and `info` for records still without a report when
  it stops. No application code handles broker failures: librdkafka retries.
- `Reader`: one consumer session, `assign` mode (every partition from the beginning; optionally a
  seek back every `seek_every` records) or `group` mode (subscribe; rebalance callbacks recorded;
  synchronous commits every `commit_every` records: `commit-invoke`, `commit`, then a
  `watermark` event per partition with the high watermark read right after it). Every record read is a `poll` event; the end is a `close` event.
- `drain(...)`: after the run, reads every partition from its log start offset to its high
  watermark (`drain` events, then `drain-end` with low and high).
- `Workload`: writers and readers together (`start`, `wait_progress`, `stop`, `drain`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

# Delivery errors that mean the record was never written (anything else is "unknown").
DEFINITE_FAILURES = {
    KafkaError._PURGE_QUEUE,  # purged before it was sent
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
}
# How long a record may wait for its acknowledgement (librdkafka retries inside it).
MESSAGE_TIMEOUT_MS = 60_000
# Longest wait for the writers' last delivery reports when they stop.
FLUSH_TIMEOUT_S = 60.0
# Longest wait for an admin operation or a watermark query.
OP_TIMEOUT_S = 15.0
# Longest time the drain may take.
DRAIN_TIMEOUT_S = 60.0

# Client settings that keep recovery quick after a fault (all Kafka/librdkafka names).
COMMON_CONF = {
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 1000,
    "socket.connection.setup.timeout.ms": 5000,
    "topic.metadata.refresh.interval.ms": 5000,
    "log_level": 3,
    # librdkafka's own log goes to Python logging (pytest shows it with a failed test).
    "logger": logging.getLogger("rdkafka"),
}


class History:
    """Events in the order they happened, in memory and as JSONL."""

    def __init__(self, path: Path | None = None):
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.path = Path(path) if path else None
        self.file = open(self.path, "w", buffering=1) if self.path else None

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def record(self, type: str, **fields) -> dict:
        with self.lock:
            e = {"type": type, "t": self.now(), **fields}
            self.events.append(e)
            if self.file:
                self.file.write(json.dumps(e) + "\n")
            return e

    def count(self, type: str, since: float = 0.0, **match) -> int:
        with self.lock:
            return sum(1 for e in self.events if e["type"] == type and e["t"] >= since
                       and all(e.get(k) == v for k, v in match.items()))

    def close(self):
        if self.file:
            self.file.close()
            self.file = None


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1,
                 config: dict | None = None):
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON_CONF})
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                                   config=config or {})],
                         operation_timeout=OP_TIMEOUT_S, request_timeout=OP_TIMEOUT_S)
    fs[topic].result(OP_TIMEOUT_S)


def _err_name(err: KafkaError) -> str:
    return err.name() or str(err.code())


class Writer(threading.Thread):
    def __init__(self, index: int, bootstrap: str, topic: str, partitions: int, history: History,
                 rate: float = 100.0, conf: dict | None = None):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.process = f"w{index}"
        self.topic = topic
        self.partitions = partitions
        self.history = history
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.conf = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 1000,
            **COMMON_CONF,
            "error_cb": self._on_error,
            **(conf or {}),
        }
        self.stop_event = threading.Event()
        self.pending: set[str] = set()
        self.acked = 0
        self.fatal: str | None = None
        self.exc: BaseException | None = None

    def _on_error(self, err: KafkaError):
        if err.fatal():
            self.fatal = str(err)
        self.history.record("client-error", process=self.process, error=_err_name(err), fatal=err.fatal())

    def _on_delivery(self, err, msg):
        value = msg.value().decode()
        self.pending.discard(value)
        if err is None:
            self.acked += 1
            self.history.record("ok", process=self.process, value=value, topic=msg.topic(),
                                partition=msg.partition(), offset=msg.offset())
        elif err.code() in DEFINITE_FAILURES:
            self.history.record("fail", process=self.process, value=value, error=_err_name(err))
        else:
            self.history.record("info", process=self.process, value=value, error=_err_name(err))

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by Workload.stop
            self.exc = e

    def _run(self):
        p = Producer(self.conf)
        seq = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            value = f"{self.process}-{seq}"
            partition = (seq + self.index) % self.partitions
            seq += 1
            self.history.record("invoke", process=self.process, value=value, topic=self.topic,
                                partition=partition)
            self.pending.add(value)
            while True:
                try:
                    p.produce(self.topic, value=value.encode(), partition=partition,
                              on_delivery=self._on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
                except KafkaException as e:  # refused by the client: never sent
                    self.pending.discard(value)
                    self.history.record("fail", process=self.process, value=value,
                                        error=_err_name(e.args[0]))
                    break
            p.poll(0)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                # Serve delivery reports while pacing.
                p.poll(delay)
            else:
                next_at = time.monotonic()
        p.flush(FLUSH_TIMEOUT_S)
        for value in sorted(self.pending):
            self.history.record("info", process=self.process, value=value, error="no-report")
        self.pending.clear()


class Reader(threading.Thread):
    def __init__(self, name: str, bootstrap: str, topic: str, partitions: int, history: History,
                 mode: str = "assign", group: str | None = None, commit_every: int = 50,
                 seek_every: int = 0, conf: dict | None = None):
        super().__init__(name=f"reader-{name}", daemon=True)
        assert mode in ("assign", "group")
        self.process = name
        self.topic = topic
        self.partitions = partitions
        self.history = history
        self.mode = mode
        self.group = group if mode == "group" else None
        self.commit_every = commit_every
        self.seek_every = seek_every
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": self.group or f"assign-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": True,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 200,
            **COMMON_CONF,
            **(conf or {}),
        }
        self.stop_event = threading.Event()
        self.polled = 0
        self.exc: BaseException | None = None
        self.consumer: Consumer | None = None

    def _rebalance(self, kind):
        def cb(consumer, partitions):
            self.history.record("rebalance", process=self.process, group=self.group, kind=kind,
                                partitions=[[tp.topic, tp.partition] for tp in partitions])
        return cb

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by Workload.stop
            self.exc = e

    def _commit(self, c: Consumer):
        # commit-invoke / commit bracket the call: a commit may block across a fault and be
        # applied long after it was made, so the checker orders commits by both times.
        self.history.record("commit-invoke", process=self.process, group=self.group)
        try:
            done = c.commit(asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            self.history.record("commit", process=self.process, group=self.group, offsets=[],
                                error=_err_name(err))
            return
        offsets = [[tp.topic, tp.partition, tp.offset] for tp in done or []
                   if tp.error is None and tp.offset >= 0]
        self.history.record("commit", process=self.process, group=self.group, offsets=offsets, error=None)
        for topic, p, _off in offsets:
            try:
                _low, hw = c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S, cached=False)
            except KafkaException:
                continue
            self.history.record("watermark", process=self.process, topic=topic, partition=p, high=hw)

    def _run(self):
        c = Consumer(self.conf)
        self.consumer = c
        if self.mode == "assign":
            tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)]
            c.assign(tps)
            self.history.record("rebalance", process=self.process, group=None, kind="assign",
                                partitions=[[self.topic, p] for p in range(self.partitions)])
        else:
            c.subscribe([self.topic], on_assign=self._rebalance("assign"),
                        on_revoke=self._rebalance("revoke"), on_lost=self._rebalance("lost"))
        since_commit = 0
        try:
            while not self.stop_event.is_set():
                msg = c.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    self.history.record("client-error", process=self.process,
                                        error=_err_name(msg.error()), fatal=msg.error().fatal())
                    continue
                self.polled += 1
                self.history.record("poll", process=self.process, group=self.group, topic=msg.topic(),
                                    partition=msg.partition(), offset=msg.offset(),
                                    value=msg.value().decode())
                if self.mode == "group":
                    since_commit += 1
                    if since_commit >= self.commit_every:
                        since_commit = 0
                        self._commit(c)
                elif self.seek_every and self.polled % self.seek_every == 0:
                    back = max(0, msg.offset() - 5)
                    tp = TopicPartition(msg.topic(), msg.partition(), back)
                    self.history.record("seek", process=self.process, group=None, topic=msg.topic(),
                                        partition=msg.partition(), offset=back)
                    c.seek(tp)
            if self.mode == "group":
                self._commit(c)
        finally:
            c.close()
            self.history.record("close", process=self.process)


def drain(bootstrap: str, topic: str, partitions: int, history: History,
          timeout: float = DRAIN_TIMEOUT_S) -> dict:
    """Reads every partition from log start to high watermark. Returns {partition: (low, high)}."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drain-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True, **COMMON_CONF})
    try:
        marks = {}
        for p in range(partitions):
            marks[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S, cached=False)
        c.assign([TopicPartition(topic, p, low) for p, (low, _high) in marks.items()])
        done = {p for p, (low, high) in marks.items() if high <= low}
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            if time.monotonic() > deadline:
                raise AssertionError(f"drain of {topic} not done within {timeout}s: partitions left "
                                     f"{sorted(set(marks) - done)}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            p = msg.partition()
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= marks[p][1]:
                        done.add(p)
                    continue
                raise AssertionError(f"drain of {topic}/{p}: {msg.error()}")
            if msg.offset() >= marks[p][1]:
                done.add(p)
                continue
            history.record("drain", process="drain", topic=topic, partition=p, offset=msg.offset(),
                           value=msg.value().decode())
            if msg.offset() + 1 >= marks[p][1]:
                done.add(p)
        for p, (low, high) in marks.items():
            history.record("drain-end", process="drain", topic=topic, partition=p, low=low, high=high)
        return marks
    finally:
        c.close()


class Workload:
    """`writers` producers, `assign_readers` assign-mode and `group_readers` group-mode sessions
    (one group) on one topic."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, history: History,
                 writers: int = 2, rate: float = 100.0, assign_readers: int = 1,
                 group_readers: int = 2, seek_every: int = 0, commit_every: int = 50):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.history = history
        self.group = f"g-{topic}"
        self.writers = [Writer(i, bootstrap, topic, partitions, history, rate) for i in range(writers)]
        self.readers = [Reader(f"a{i}", bootstrap, topic, partitions, history, "assign",
                               seek_every=seek_every) for i in range(assign_readers)]
        self.readers += [Reader(f"g{i}", bootstrap, topic, partitions, history, "group", self.group,
                                commit_every=commit_every) for i in range(group_readers)]

    def start(self) -> "Workload":
        for t in self.writers + self.readers:
            t.start()
        return self

    def acked(self) -> int:
        return sum(w.acked for w in self.writers)

    def polled(self) -> int:
        return sum(r.polled for r in self.readers)

    def wait_progress(self, acks: int, polls: int, timeout: float, what: str = "progress"):
        """Waits until `acks` more acknowledgements and `polls` more reads than now."""
        a0, p0 = self.acked(), self.polled()
        deadline = time.monotonic() + timeout
        while self.acked() < a0 + acks or self.polled() < p0 + polls:
            self.raise_errors()
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {self.acked() - a0}/{acks} acks and {self.polled() - p0}/{polls} "
                                     f"reads within {timeout}s")
            time.sleep(0.05)

    def raise_errors(self):
        for t in self.writers + self.readers:
            if t.exc is not None:
                raise AssertionError(f"{t.name} died: {t.exc!r}") from t.exc

    def stop_writers(self, timeout: float = FLUSH_TIMEOUT_S + 15):
        for w in self.writers:
            w.stop_event.set()
        for w in self.writers:
            w.join(timeout)
            assert not w.is_alive(), f"{w.name} did not stop within {timeout}s"

    def wait_readers_caught_up(self, timeout: float) -> bool:
        """Waits until every acknowledged record was read by some session; False after `timeout`
        (the checker then tells which records are missing and why)."""
        def caught_up():
            with self.history.lock:
                acked = {e["value"] for e in self.history.events if e["type"] == "ok"}
                read = {e["value"] for e in self.history.events if e["type"] == "poll"}
            return acked <= read
        deadline = time.monotonic() + timeout
        while not caught_up():
            self.raise_errors()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def stop_readers(self, timeout: float = 30.0):
        for r in self.readers:
            r.stop_event.set()
        for r in self.readers:
            r.join(timeout)
            assert not r.is_alive(), f"{r.name} did not stop within {timeout}s"

    def stop(self, catch_up_timeout: float = 60.0) -> list[str]:
        """Stops the writers (last reports), lets readers read everything acked, stops them.
        Returns the problems seen (readers that never caught up)."""
        problems = []
        self.stop_writers()
        if not self.wait_readers_caught_up(catch_up_timeout):
            problems.append(f"readers did not read every acknowledged record within {catch_up_timeout}s")
        self.stop_readers()
        self.raise_errors()
        return problems

    def drain(self) -> dict:
        return drain(self.bootstrap, self.topic, self.partitions, self.history)

    def fatal_errors(self) -> list[str]:
        return [f"{w.name}: {w.fatal}" for w in self.writers if w.fatal]
