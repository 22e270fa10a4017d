"""The broker metrics people chart (docs/BACKPRESSURE.md, the Grafana dashboard in
`deploy/grafana/`): consumer-group lag and committed offsets per partition, fsync latency,
request memory, resident memory, request latency by API — scraped from a broker serving real
librdkafka clients."""

import json
import subprocess
from pathlib import Path

from confluent_kafka import TopicPartition

from conftest import sluice_bin, sluice_only, wait_until
from kutil import (OP_TIMEOUT_S, consume_n, consumer, create_topic, metric, produce_all, producer,
                   scrape_metrics, set_group_configs, share_consume, share_consumer)

pytestmark = sluice_only

REPO = Path(__file__).resolve().parents[2]


def test_group_lag_per_partition_follows_commits(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    g = unique("g")
    p = producer(broker.bootstrap)
    produce_all(p, t, [(b"k", b"v%d" % i) for i in range(10)], partition=0)
    produce_all(p, t, [(b"k", b"w%d" % i) for i in range(4)], partition=1)
    c = consumer(broker.bootstrap, g)
    try:
        c.commit(offsets=[TopicPartition(t, 0, 3), TopicPartition(t, 1, 4)], asynchronous=False)
    finally:
        c.close()
    s = scrape_metrics(broker.http)
    assert metric(s, "sluice_consumer_group_lag", group=g, topic=t, partition="0") == 7
    assert metric(s, "sluice_consumer_group_lag", group=g, topic=t, partition="1") == 0
    assert metric(s, "sluice_consumer_group_committed_offset", group=g, topic=t, partition="0") == 3
    # New records raise the lag at the next scrape.
    produce_all(p, t, [(b"k", b"x")], partition=1)
    wait_until(lambda: metric(scrape_metrics(broker.http), "sluice_consumer_group_lag",
                              group=g, topic=t, partition="1") == 1, 10, "lag of 1 on partition 1")


def test_process_fsync_and_request_metrics(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    produce_all(producer(broker.bootstrap), t, [(None, b"v")] * 5)
    s = scrape_metrics(broker.http)
    # The default flush policy fsyncs before acknowledging.
    assert metric(s, "sluice_fsync_duration_seconds_count") >= 1
    assert metric(s, "sluice_process_resident_memory_bytes") > 1_000_000
    # Every request has been answered and its bytes returned to the pool.
    assert metric(s, "sluice_request_memory_bytes") is not None
    assert metric(s, "sluice_request_duration_seconds_count", api="Produce") >= 1


def test_the_grafana_dashboard_charts_metrics_the_broker_exports(broker, unique):
    """Every metric a panel of the dashboard queries exists on a broker that has served a
    producer, a consumer group and a share group."""
    import re

    from confluent_kafka import AcknowledgeType, Producer

    # Traffic of every kind the dashboard charts: produce, fetch, a share group that accepts
    # and rejects (a dead letter), and a client throttled by a quota.
    t = create_topic(broker.bootstrap, unique("t"))
    produce_all(producer(broker.bootstrap), t, [(None, b"v%d" % i) for i in range(4)])
    c = consumer(broker.bootstrap, unique("g"))
    c.subscribe([t])
    consume_n(c, 4)
    c.close()
    g = unique("sg")
    set_group_configs(broker.bootstrap, g, {"share.auto.offset.reset": "earliest"})
    sc = share_consumer(broker.bootstrap, g)
    try:
        sc.subscribe([t])
        share_consume(sc, 4, ack=lambda m: AcknowledgeType.REJECT if m.offset() == 0 else AcknowledgeType.ACCEPT)
    finally:
        sc.close()
    busy = unique("busy")
    r = subprocess.run([sluice_bin(), "quota", "alter", "--client-id", busy, "--add-config",
                        "request_percentage=0.001", "--bootstrap-server", broker.bootstrap],
                       capture_output=True, text=True, timeout=OP_TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    p = Producer({"bootstrap.servers": broker.bootstrap, "client.id": busy, "linger.ms": 0})
    for _ in range(20):
        p.produce(t, b"x")
        p.flush(OP_TIMEOUT_S)
    wait_until(lambda: metric(scrape_metrics(broker.http), "sluice_dlq_depth", topic="dlq." + g) == 1,
               15, "the dead letter to be counted")

    dashboard = json.loads((REPO / "deploy" / "grafana" / "sluice.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    names = set()
    for e in exprs:
        names.update(n for n in re.findall(r"\b(sluice_[a-z_]+)", e))
    with __import__("urllib.request").request.urlopen(broker.http + "/metrics", timeout=5) as r:
        text = r.read().decode()
    exported = set(re.findall(r"^# TYPE (sluice_[a-z_]+) ", text, re.M))
    # A counter's samples carry `_total`, a histogram's `_bucket`/`_sum`/`_count`.
    def known(n):
        return any(n == x or n in (x + "_total", x + "_bucket", x + "_sum", x + "_count") for x in exported)
    missing = sorted(n for n in names if not known(n))
    assert not missing, f"the dashboard queries metrics the broker does not export: {missing}"
