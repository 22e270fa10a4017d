"""A tiny event store on a Sluice topic with conditional append (docs/EVENT_SOURCING.md).

One key per aggregate (the stream id); one record per command, holding the events it decided
(a JSON list), so a command's events are appended all or nothing. The writer appends with
`sluice.expected.key.offset` = the offset of the aggregate's last record it has read (-1 for a
new aggregate); if another writer got there first the broker refuses the record with
INVALID_RECORD and names the actual offset, and the writer catches up and decides again.

The topic must have `sluice.conditional.append.enable=true` (and, for an event store,
`retention.ms=-1`: a key whose records retention removed reads as never written).
"""

import json
import re
import zlib

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

EXPECTED_KEY_OFFSET = "sluice.expected.key.offset"
_ACTUAL = re.compile(r"actual (-?\d+)")


class Conflict(Exception):
    """Another writer appended to the stream since we read it."""

    def __init__(self, stream_id, expected, actual):
        # librdkafka reports only the error code, not the broker's message naming the actual
        # offset (clients that pass the message on, like the Java producer, give `actual`).
        got = "another writer appended first" if actual is None else f"actual {actual}"
        super().__init__(f"stream {stream_id}: expected last offset {expected}, {got}")
        self.expected, self.actual = expected, actual


class EventStore:
    def __init__(self, bootstrap, topic, partitions, timeout=15.0):
        self.topic, self.partitions, self.timeout = topic, partitions, timeout
        # Not idempotent, no retries: a refused record must not be retried by the client, and
        # an idempotent producer would be left a sequence gap by the refusal.
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                                  "acks": "all", "retries": 0, "linger.ms": 0})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "event-store-reader",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                                  "enable.partition.eof": False})

    def close(self):
        self.consumer.close()
        self.producer.flush(self.timeout)

    def partition_for(self, stream_id):
        """Where a stream lives: chosen here, so readers and writers agree on it."""
        return zlib.crc32(stream_id.encode()) % self.partitions

    def read(self, stream_id, after=-1):
        """The stream's records after offset `after`, up to the partition's end:
        [(offset, [event, ...])]."""
        tp = TopicPartition(self.topic, self.partition_for(stream_id))
        _, end = self.consumer.get_watermark_offsets(tp, timeout=self.timeout, cached=False)
        out = []
        if end <= after + 1:
            return out
        tp.offset = after + 1
        self.consumer.assign([tp])
        key = stream_id.encode()
        last = after
        while last < end - 1:
            msg = self.consumer.poll(self.timeout)
            if msg is None:
                raise TimeoutError(f"reading {stream_id}: stuck at offset {last} of {end}")
            if msg.error():
                raise RuntimeError(msg.error())
            last = msg.offset()
            if msg.key() == key and msg.value() is not None:
                out.append((msg.offset(), json.loads(msg.value())))
        return out

    def append(self, stream_id, events, expected):
        """Appends one record of `events` if the stream's last record is at `expected`
        (-1: the stream is new). Returns its offset; raises Conflict otherwise."""
        result = {}

        def done(err, msg):
            result["err"], result["offset"] = err, (msg.offset() if err is None else None)

        self.producer.produce(self.topic, key=stream_id.encode(), value=json.dumps(events).encode(),
                              partition=self.partition_for(stream_id), on_delivery=done,
                              headers=[(EXPECTED_KEY_OFFSET, str(expected).encode())])
        self.producer.flush(self.timeout)
        err = result.get("err")
        if err is None and "offset" in result:
            return result["offset"]
        if err is not None and err.code() == KafkaError.INVALID_RECORD:
            m = _ACTUAL.search(err.str())
            raise Conflict(stream_id, expected, int(m.group(1)) if m else None)
        raise RuntimeError(f"append to {stream_id} failed: {err}")


class Aggregate:
    """State folded from a stream's events, with the offset of the last record folded."""

    def __init__(self, store, stream_id):
        self.store, self.stream_id = store, stream_id
        self.version = -1  # offset of the last record applied; -1: nothing yet
        self.conflicts = 0

    def apply(self, event):
        raise NotImplementedError

    def catch_up(self):
        for offset, events in self.store.read(self.stream_id, after=self.version):
            for e in events:
                self.apply(e)
            self.version = offset

    def execute(self, decide, max_attempts=20):
        """Runs a command: `decide(self)` returns the events (or raises to refuse the command);
        they are appended conditionally; on a conflict the aggregate catches up and decides
        again. Returns the record's offset."""
        self.catch_up()
        for _ in range(max_attempts):
            events = decide(self)
            try:
                offset = self.store.append(self.stream_id, events, expected=self.version)
            except Conflict:
                self.conflicts += 1
                self.catch_up()
                continue
            for e in events:
                self.apply(e)
            self.version = offset
            return offset
        raise RuntimeError(f"{self.stream_id}: gave up after {max_attempts} conflicts")
