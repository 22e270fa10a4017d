"""Client quotas (producer_byte_rate, consumer_byte_rate, request_percentage): set with
`sluice quota` and with the Java AdminClient, enforced on real librdkafka clients — a client over
its quota is held to it, others are not touched (docs/BACKPRESSURE.md)."""

import json
import subprocess
import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer

import jvm
from conftest import sluice_bin, sluice_only, wait_until
from kutil import OP_TIMEOUT_S, create_topic, producer

pytestmark = sluice_only

QUOTA = 512_000  # bytes per second
VALUE = b"v" * 4096


def quota(broker, *args, check=True):
    r = subprocess.run([sluice_bin(), "quota", *args, "--bootstrap-server", broker.bootstrap],
                       capture_output=True, text=True, timeout=OP_TIMEOUT_S)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def described(broker, *entity):
    return json.loads(quota(broker, "describe", *entity, "--output", "json").stdout)


def metric_sum(broker, name, **labels):
    with urllib.request.urlopen(broker.http + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


class Throttles:
    """The largest throttle librdkafka reported (its statistics: the brokers' `throttle` window)."""

    def __init__(self):
        self.max_ms = 0

    def __call__(self, stats_json):
        for b in json.loads(stats_json).get("brokers", {}).values():
            self.max_ms = max(self.max_ms, b.get("throttle", {}).get("max", 0))


def test_cli_sets_describes_and_removes_quotas(broker, unique):
    c = unique("c")
    quota(broker, "alter", "--client-id", c, "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048")
    quota(broker, "alter", "--user", "ANONYMOUS", "--client-id", c, "--add-config", "request_percentage=50.5")
    assert described(broker, "--client-id", c) == [
        {"entity": {"client-id": c}, "quotas": {"consumer_byte_rate": 2048.0, "producer_byte_rate": 1024.0}}]
    assert described(broker, "--user", "ANONYMOUS", "--client-id", c) == [
        {"entity": {"client-id": c, "user": "ANONYMOUS"}, "quotas": {"request_percentage": 50.5}}]
    text = quota(broker, "describe", "--client-id", c).stdout
    assert f"client-id={c}" in text and "producer_byte_rate" in text

    # Kafka's checks: byte rates are whole numbers, values above zero, known keys only.
    for bad, why in [("producer_byte_rate=1.5", "cannot be a fractional value"),
                     ("consumer_byte_rate=0", "must be greater than 0"),
                     ("producer_bytes=5", "Invalid configuration key")]:
        r = quota(broker, "alter", "--client-id", c, "--add-config", bad, check=False)
        assert r.returncode != 0 and why in r.stderr, r.stderr
    # A dry run changes nothing.
    quota(broker, "alter", "--client-id", c, "--add-config", "producer_byte_rate=9", "--dry-run")
    assert described(broker, "--client-id", c)[0]["quotas"]["producer_byte_rate"] == 1024.0

    quota(broker, "alter", "--client-id", c, "--delete-config", "producer_byte_rate,consumer_byte_rate")
    quota(broker, "alter", "--user", "ANONYMOUS", "--client-id", c, "--delete-config", "request_percentage")
    assert described(broker, "--client-id", c) == []
    assert described(broker, "--user", "ANONYMOUS", "--client-id", c) == []


def test_quotas_survive_a_restart(broker_factory, unique):
    b = broker_factory()
    quota(b, "alter", "--client-id-default", "--add-config", "consumer_byte_rate=4096")
    b.restart()
    assert described(b, "--client-id-default") == [
        {"entity": {"client-id": None}, "quotas": {"consumer_byte_rate": 4096.0}}]


def test_java_admin_client_alters_and_describes_quotas(broker_factory, unique):
    # Its own broker: the scenario ends by checking that no entity has quotas left.
    b = broker_factory()
    cp = jvm.java_classpath()
    r = jvm.run(cp, "quotas", b.bootstrap, unique("j"), timeout=120)
    assert r.returncode == 0 and "CHECK ok" in r.stdout, r.stdout[-4000:]


def paced_producer(bootstrap, topic, client_id, rate, seconds, delivered, throttles):
    """Produces VALUE records at `rate` bytes/s (None: as fast as the client may) for `seconds`;
    appends (ack time, bytes) to `delivered`."""
    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
                  "batch.size": 65536, "queue.buffering.max.kbytes": 1024,
                  "statistics.interval.ms": 500, "stats_cb": throttles})

    def on_delivery(err, msg):
        if err is None:
            delivered.append((time.monotonic(), len(msg.value())))

    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        if rate is not None and sent >= rate * (now - start):
            p.poll(0.005)
            continue
        try:
            p.produce(topic, VALUE, on_delivery=on_delivery)
            sent += len(VALUE)
            p.poll(0)
        except BufferError:
            p.poll(0.01)
    p.flush(OP_TIMEOUT_S)
    return start


def rate_between(delivered, start, a, b):
    got = sum(n for t, n in delivered if start + a <= t < start + b)
    return got / (b - a)


def test_a_producer_over_its_byte_rate_is_held_to_it_and_others_are_not(broker, unique):
    t = create_topic(broker.bootstrap, unique("q"))
    slow, fast = unique("slow"), unique("fast")
    quota(broker, "alter", "--client-id", slow, "--add-config", f"producer_byte_rate={QUOTA}")
    results = {}

    def run(name, client_id, rate):
        delivered, throttles = [], Throttles()
        start = paced_producer(broker.bootstrap, t, client_id, rate, 16, delivered, throttles)
        results[name] = (start, delivered, throttles)

    threads = [threading.Thread(target=run, args=("slow", slow, None)),
               threading.Thread(target=run, args=("fast", fast, 4 * QUOTA))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert set(results) == {"slow", "fast"}

    # After the first seconds (a client may spend one second of quota at once), the throttled
    # producer gets its quota within 10 %.
    start, delivered, throttles = results["slow"]
    slow_rate = rate_between(delivered, start, 4, 15)
    print(f"throttled producer: {slow_rate:.0f} B/s (quota {QUOTA}), max throttle {throttles.max_ms} ms")
    assert abs(slow_rate / QUOTA - 1) < 0.10, f"throttled producer ran at {slow_rate:.0f} B/s, quota {QUOTA}"
    assert throttles.max_ms > 0, "the throttled producer never saw throttle_time_ms"
    # The other producer, at four times that quota, gets its full rate and no throttle.
    start, delivered, throttles = results["fast"]
    fast_rate = rate_between(delivered, start, 4, 15)
    print(f"unthrottled producer: {fast_rate:.0f} B/s (paced at {4 * QUOTA})")
    assert fast_rate > 0.9 * 4 * QUOTA, f"unthrottled producer ran at {fast_rate:.0f} B/s"
    assert throttles.max_ms == 0, f"unthrottled producer was throttled {throttles.max_ms} ms"
    assert metric_sum(broker, "sluice_quota_throttled_responses_total", quota="produce") > 0
    quota(broker, "alter", "--client-id", slow, "--delete-config", "producer_byte_rate")


def test_a_consumer_over_its_byte_rate_is_held_to_it(broker, unique):
    t = create_topic(broker.bootstrap, unique("q"))
    # 8 MB, unthrottled.
    p = producer(broker.bootstrap, linger_ms=20)
    for _ in range(2048):
        while True:
            try:
                p.produce(t, VALUE)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(OP_TIMEOUT_S) == 0
    reader = unique("reader")
    quota(broker, "alter", "--client-id", reader, "--add-config", f"consumer_byte_rate={QUOTA}")
    throttles = Throttles()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": reader, "client.id": reader,
                  "auto.offset.reset": "earliest", "max.partition.fetch.bytes": 65536,
                  "statistics.interval.ms": 500, "stats_cb": throttles})
    c.subscribe([t])
    got = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < 14:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got.append((time.monotonic(), len(m.value())))
    finally:
        c.close()
    assert got, "the consumer read nothing"
    # Measured from its first record (the group join comes first), past the one-second burst.
    first = got[0][0]
    rate = rate_between(got, first, 3, 11)
    print(f"throttled consumer: {rate:.0f} B/s (quota {QUOTA})")
    assert abs(rate / QUOTA - 1) < 0.10, f"throttled consumer read {rate:.0f} B/s, quota {QUOTA}"
    assert throttles.max_ms > 0
    quota(broker, "alter", "--client-id", reader, "--delete-config", "consumer_byte_rate")


def test_request_percentage_throttles_a_busy_client(broker, unique):
    t = create_topic(broker.bootstrap, unique("q"))
    busy = unique("busy")
    # 0.01 % of a core: 0.1 ms of handler time per second.
    quota(broker, "alter", "--client-id", busy, "--add-config", "request_percentage=0.01")
    throttles = Throttles()
    p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": busy, "linger.ms": 0,
                  "statistics.interval.ms": 200, "stats_cb": throttles})
    before = metric_sum(broker, "sluice_quota_throttled_responses_total", quota="request")
    deadline = time.monotonic() + 20
    while throttles.max_ms == 0 and time.monotonic() < deadline:
        for _ in range(50):
            p.produce(t, b"x")
        p.flush(OP_TIMEOUT_S)
        p.poll(0.2)
    assert throttles.max_ms > 0, "a client over its request percentage was never throttled"
    # A request throttle is at most one second (Kafka's bound).
    assert throttles.max_ms <= 1000
    wait_until(lambda: metric_sum(broker, "sluice_quota_throttled_responses_total", quota="request") > before,
               10, "the request throttle to be counted")
    quota(broker, "alter", "--client-id", busy, "--delete-config", "request_percentage")
