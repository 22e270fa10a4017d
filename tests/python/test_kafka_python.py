"""kafka-python 3.x (pure Python client, its own protocol code and codecs) against sluice."""

import json
import time
import urllib.request

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.errors import TopicAlreadyExistsError

from conftest import wait_until
from kutil import consume_n, consumer, create_topic, produce_all, producer
from confluent_kafka import TopicPartition as CTopicPartition


@pytest.fixture
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    yield a
    a.close()


def kp_produce(broker, topic, records, **conf):
    """Produces (key, value[, partition[, ts]]) with kafka-python; returns [(partition, offset)]."""
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, **conf)
    try:
        futs = []
        for r in records:
            kw = {"key": r[0], "value": r[1]}
            if len(r) > 2 and r[2] is not None:
                kw["partition"] = r[2]
            if len(r) > 3:
                kw["timestamp_ms"] = r[3]
            futs.append(p.send(topic, **kw))
        p.flush(timeout=15)
        out = []
        for f in futs:
            md = f.get(timeout=15)
            out.append((md.partition, md.offset))
        return out
    finally:
        p.close(timeout=5)


def kp_consume(consumer_, n, timeout=20.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"kafka-python got {len(out)} of {n} within {timeout}s"
        for recs in consumer_.poll(timeout_ms=200).values():
            out.extend(recs)
    return out


def test_admin_create_list_delete_topics(broker, kadmin, unique):
    t = unique()
    kadmin.create_topics({t: {"num_partitions": 3, "replication_factor": 1,
                              "configs": {"retention.ms": "86400000"}}})
    assert t in kadmin.list_topics()
    desc = [d for d in kadmin.describe_topics([t])]
    assert len(desc) == 1 and sorted(p["partition_index"] for p in desc[0]["partitions"]) == [0, 1, 2]
    with pytest.raises(TopicAlreadyExistsError):
        kadmin.create_topics({t: {"num_partitions": 1, "replication_factor": 1}})
    kadmin.delete_topics([t])
    wait_until(lambda: t not in kadmin.list_topics(), 10, "topic to disappear")


def test_round_trip_with_group_and_commit(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    sent = kp_produce(broker, t, [(b"k%d" % i, b"v%d" % i) for i in range(60)])
    assert len(set(sent)) == 60
    g = unique("g")
    c = KafkaConsumer(t, bootstrap_servers=broker.bootstrap, group_id=g,
                      auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        recs = kp_consume(c, 60)
        assert sorted((r.partition, r.offset) for r in recs) == sorted(sent)
        by_val = {r.value: r.key for r in recs}
        assert by_val == {b"v%d" % i: b"k%d" % i for i in range(60)}
        c.commit()
        for part in (0, 1):
            committed = c.committed(TopicPartition(t, part))
            assert committed == sum(1 for p, _ in sent if p == part)
    finally:
        c.close()
    # The other client sees kafka-python's commits.
    cc = consumer(broker.bootstrap, g)
    try:
        got = cc.committed([CTopicPartition(t, 0), CTopicPartition(t, 1)], timeout=15)
        assert sum(tp.offset for tp in got) == 60
    finally:
        cc.close()


def test_list_offsets(broker, kadmin, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    base = int(time.time() * 1000) - 600_000
    kp_produce(broker, t, [(None, b"x%d" % i, 0, base + i * 10) for i in range(10)])
    tp = TopicPartition(t, 0)
    res = kadmin.list_partition_offsets({tp: OffsetSpec.EARLIEST})
    assert res[tp].offset == 0
    res = kadmin.list_partition_offsets({tp: OffsetSpec.LATEST})
    assert res[tp].offset == 10
    res = kadmin.list_partition_offsets({tp: OffsetSpec.MAX_TIMESTAMP})
    assert (res[tp].offset, res[tp].timestamp) == (9, base + 90)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 10}
        found = c.offsets_for_times({tp: base + 35})
        assert (found[tp].offset, found[tp].timestamp) == (4, base + 40)
    finally:
        c.close()


CODECS = ["gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compression_read_by_librdkafka(broker, unique, codec):
    """kafka-python writes (its snappy is xerial-framed), librdkafka and kafka-python read."""
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    vals = [(b"kp-%s-%d-" % (codec.encode(), i)) * 15 for i in range(200)]
    sent = kp_produce(broker, t, [(None, v) for v in vals], compression_type=codec, batch_size=64 * 1024)
    assert [o for _, o in sent] == list(range(200))
    c = consumer(broker.bootstrap)
    try:
        c.assign([CTopicPartition(t, 0, 0)])
        msgs = consume_n(c, 200, idle_after=0.3)
        assert [m.value() for m in msgs] == vals
    finally:
        c.close()
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    try:
        kc.assign([TopicPartition(t, 0)])
        recs = kp_consume(kc, 200)
        assert [r.value for r in recs] == vals
        assert [r.offset for r in recs] == list(range(200))
    finally:
        kc.close()


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_compression_read_by_kafka_python(broker, unique, codec):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    vals = [(b"rd-%s-%d-" % (codec.encode(), i)) * 15 for i in range(200)]
    produce_all(producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 20}),
                t, [(None, v) for v in vals])
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    try:
        kc.assign([TopicPartition(t, 0)])
        recs = kp_consume(kc, 200)
        assert [r.value for r in recs] == vals
    finally:
        kc.close()


def test_create_topic_with_a_manual_assignment(broker, kadmin, unique):
    """A manual replica assignment with replication factor -1: the partition count may be -1 or
    (as librdkafka and kafka-python send it) the number of assignments; another count is
    INVALID_REPLICA_ASSIGNMENT, a replication factor beside it INVALID_REQUEST."""
    from kafka.admin import NewTopic
    from kafka.errors import InvalidReplicationAssignmentError, InvalidRequestError
    t = unique()
    kadmin.create_topics([NewTopic(t, 2, -1, replica_assignments={0: [1], 1: [1]})])
    desc = kadmin.describe_topics([t])
    assert sorted((p["partition_index"], p["replica_nodes"]) for p in desc[0]["partitions"]) == \
        [(0, [1]), (1, [1])]
    with pytest.raises(InvalidReplicationAssignmentError):
        kadmin.create_topics([NewTopic(unique(), 3, -1, replica_assignments={0: [1], 1: [1]})])
    with pytest.raises(InvalidRequestError):
        kadmin.create_topics([NewTopic(unique(), -1, 1, replica_assignments={0: [1]})])


def test_describe_log_dirs_reports_partition_sizes(broker, kadmin, unique):
    """DescribeLogDirs (what kafka-log-dirs.sh, AKHQ and Kafbat read): each partition replica's
    bytes on disk, growing with its records; the data directory's total and usable bytes."""
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    produce_all(producer(broker.bootstrap), t, [(None, b"x" * 1000)] * 20, partition=1)
    (node,) = kadmin.describe_log_dirs(topic_partitions={t: [0, 1]})
    (logdir,) = node["log_dirs"]
    assert logdir["error_code"] == 0
    assert logdir["total_bytes"] >= logdir["usable_bytes"] > 0
    (topic,) = [x for x in logdir["topics"] if x["name"] == t]
    sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
    assert sizes[0] == 0
    assert sizes[1] >= 20 * 1000, sizes
    # The HTTP API (and the console) show the leader's size per partition.
    with urllib.request.urlopen(f"{broker.http}/v1/topics/{t}", timeout=15) as r:
        doc = json.loads(r.read())
    assert [p["size_bytes"] for p in doc["partitions"]] == [sizes[0], sizes[1]]
