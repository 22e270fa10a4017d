"""Small helpers around confluent-kafka (librdkafka) used by several test modules."""

import socket
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

OP_TIMEOUT_S = 15


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, name, partitions=1, config=None):
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=OP_TIMEOUT_S, request_timeout=OP_TIMEOUT_S)
    fs[name].result(OP_TIMEOUT_S)
    return name


def kafka_error(exc_info_value) -> KafkaError:
    """The KafkaError inside a KafkaException (as raised by futures and client calls)."""
    assert isinstance(exc_info_value, KafkaException), repr(exc_info_value)
    return exc_info_value.args[0]


def producer(bootstrap, **conf):
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(c)


def produce_all(p, topic, records, timeout=OP_TIMEOUT_S, partition=None):
    """Produces `records` (iterable of (key, value) or (key, value, timestamp_ms)) and waits for
    every delivery report. Returns [(partition, offset, key, value)] in send order; fails on any
    delivery error."""
    results = []
    errors = []

    def make_cb(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results.append((i, msg.partition(), msg.offset(), msg.key(), msg.value()))
        return cb

    n = 0
    for i, rec in enumerate(records):
        kw = {"key": rec[0], "value": rec[1], "on_delivery": make_cb(i)}
        if len(rec) > 2 and rec[2] is not None:
            kw["timestamp"] = rec[2]
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        n += 1
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages not delivered within {timeout}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(results) == n
    results.sort()
    return [r[1:] for r in results]


def consumer(bootstrap, group=None, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group or "unused-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        "check.crcs": True,  # every consume also verifies the stored batches' CRC-32C
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(c)


def consume_n(c, n, timeout=20.0, idle_after=None):
    """Polls until `n` messages arrived (fails on timeout or on a consumer error). If `idle_after`
    is given, keeps polling that long after reaching n to catch unexpected extra messages."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} messages within {timeout}s"
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"consumer error: {m.error()}")
        out.append(m)
    if idle_after:
        end = time.monotonic() + idle_after
        while time.monotonic() < end:
            m = c.poll(0.1)
            if m is not None and not m.error():
                out.append(m)
    return out


def wait_assignment(c, timeout=20.0, min_partitions=1):
    """Polls (delivering no messages is fine) until the group assigned partitions."""
    deadline = time.monotonic() + timeout
    buffered = []
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and not m.error():
            buffered.append(m)
        if len(c.assignment()) >= min_partitions:
            return buffered
    raise AssertionError(f"no assignment within {timeout}s")


def tp_key(tp: TopicPartition):
    return (tp.topic, tp.partition)


def assert_split_between(c1, c2, partitions, produce, timeout=30.0):
    """With c1 and c2 subscribed to one topic of `partitions` partitions: waits until they own
    disjoint halves covering every partition, calls `produce()` (returning the sent
    (partition, offset, key, value) tuples), and checks each record reached exactly one member:
    the one that owns its partition."""
    from conftest import wait_until

    got = {1: [], 2: []}

    def poll_both():
        for i, c in ((1, c1), (2, c2)):
            m = c.poll(0.05)
            if m is not None and not m.error():
                got[i].append(m)

    def balanced():
        poll_both()
        a1 = {tp.partition for tp in c1.assignment()}
        a2 = {tp.partition for tp in c2.assignment()}
        return a1 and a2 and not (a1 & a2) and (a1 | a2) == set(range(partitions))

    wait_until(balanced, timeout, f"both members to share the {partitions} partitions", interval=0)
    a1 = {tp.partition for tp in c1.assignment()}
    a2 = {tp.partition for tp in c2.assignment()}
    assert len(a1) == len(a2) == partitions // 2
    sent = produce()
    deadline = time.monotonic() + 20
    while len(got[1]) + len(got[2]) < len(sent) and time.monotonic() < deadline:
        poll_both()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        poll_both()
    keys1 = {(m.partition(), m.offset()) for m in got[1]}
    keys2 = {(m.partition(), m.offset()) for m in got[2]}
    assert not (keys1 & keys2), "both members received the same records"
    assert keys1 | keys2 == {(p, o) for p, o, _, _ in sent}
    assert len(got[1]) + len(got[2]) == len(sent)
    assert {m.partition() for m in got[1]} == a1
    assert {m.partition() for m in got[2]} == a2


# ---- Share groups (KIP-932) -------------------------------------------------------------------

def share_consumer(bootstrap, group, explicit=True, **conf):
    """A librdkafka ShareConsumer. Explicit acknowledgement unless `explicit=False`: every record
    a poll returns must then be passed to `acknowledge` before the next poll."""
    from confluent_kafka import ShareConsumer

    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit" if explicit else "implicit",
        "log_level": 3,  # no "share consumer is in Preview" warning on every consumer
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return ShareConsumer(c)


def share_poll(c, timeout=0.2):
    """One ShareConsumer poll; returns the records as a list and fails on an error message."""
    out = []
    for m in c.poll(timeout):
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"share consumer error: {m.error()}")
        out.append(m)
    return out


def share_consume(c, n, timeout=20.0, ack=None, idle_after=None, commit=True):
    """Polls until `n` records arrived (fails on timeout). In explicit mode every polled record
    is acknowledged with `ack(msg)` (an AcknowledgeType; ACCEPT when `ack` is None) and, with
    `commit`, the acknowledgements are committed (commit_sync) after each poll. With
    `idle_after`, keeps polling that long after reaching n to catch unexpected extra records.
    `ack=False` acknowledges nothing (implicit-mode consumers). Returns the records."""
    from confluent_kafka import AcknowledgeType

    out = []

    def one_poll(t):
        ms = share_poll(c, t)
        for m in ms:
            if ack is not False:
                c.acknowledge(m, ack(m) if ack else AcknowledgeType.ACCEPT)
        if ms and commit and ack is not False:
            res = c.commit_sync(OP_TIMEOUT_S)
            bad = {tp: e for tp, e in (res or {}).items() if e is not None}
            assert not bad, f"commit_sync failed: {bad}"
        out.extend(ms)

    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} records within {timeout}s"
        one_poll(0.2)
    if idle_after:
        end = time.monotonic() + idle_after
        while time.monotonic() < end:
            one_poll(0.1)
    return out


def set_group_configs(bootstrap, group, configs, op=None):
    """IncrementalAlterConfigs on the GROUP resource: `configs` is {name: value} (SET unless `op`
    is another AlterConfigOpType). Raises the KafkaException of a failed resource."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    op = op or AlterConfigOpType.SET
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v in configs.items()])
    a = admin(bootstrap)
    for f in a.incremental_alter_configs([res], request_timeout=OP_TIMEOUT_S).values():
        f.result(OP_TIMEOUT_S)


def group_configs(bootstrap, group):
    """DescribeConfigs on the GROUP resource: {name: ConfigEntry}."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    a = admin(bootstrap)
    fs = a.describe_configs([ConfigResource(ResourceType.GROUP, group)], request_timeout=OP_TIMEOUT_S)
    (f,) = fs.values()
    return f.result(OP_TIMEOUT_S)


def scrape_metrics(http_base):
    """The broker's /metrics as {(name, frozenset(labels.items())): value} (samples only)."""
    import re
    import urllib.request

    with urllib.request.urlopen(http_base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    pat = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = pat.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    """The value of one sample from `scrape_metrics` (None when absent)."""
    return samples.get((name, frozenset(labels.items())))


def kafka_conn(broker, timeout=10):
    """A raw TCP connection to the broker's Kafka port (for requests no client can send)."""
    s = socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf
