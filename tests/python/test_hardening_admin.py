"""Hardening (issue #8): admin operations and internal state must never lose acknowledged data,
brick the broker, or grow without bound.

- a recreated topic keeps its data across restarts (deletion addresses an incarnation);
- a refused config is never logged, so it cannot keep the broker from starting;
- `segment.bytes` has Kafka's 1 MiB floor; `--max-partitions` bounds creation (POLICY_VIOLATION);
- the offsets log stays proportional to the live offsets (snapshots), and restart reads it back;
- offsets of groups without members expire (offsets.retention.minutes).
"""

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   ResourceType)

from conftest import wait_until
from kutil import OP_TIMEOUT_S, admin, consume_n, consumer, create_topic, kafka_error, produce_all, producer


def read_all(bootstrap, topic, partition=0):
    c = consumer(bootstrap)
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S)
        if hi == lo:
            return []
        c.assign([TopicPartition(topic, partition, lo)])
        return [(m.offset(), m.value()) for m in consume_n(c, hi - lo, timeout=30)]
    finally:
        c.close()


def delete_topic(bootstrap, name):
    a = admin(bootstrap)
    a.delete_topics([name], operation_timeout=OP_TIMEOUT_S)[name].result(OP_TIMEOUT_S)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_recreated_topic_keeps_its_data_across_restart(broker_factory, unique, stop):
    b = broker_factory()
    t = unique("recreated")
    create_topic(b.bootstrap, t)
    p = producer(b.bootstrap, acks="all")
    produce_all(p, t, [(None, b"old-%d" % i) for i in range(5)])
    delete_topic(b.bootstrap, t)
    wait_until(lambda: t not in admin(b.bootstrap).list_topics(timeout=5).topics, 10, "topic gone")
    create_topic(b.bootstrap, t)
    p = producer(b.bootstrap, acks="all")
    produce_all(p, t, [(None, b"new-%d" % i) for i in range(10)])
    if stop == "sigterm":
        b.restart()
    else:
        b.kill9()
        b.start()
    got = read_all(b.bootstrap, t)
    assert got == [(i, b"new-%d" % i) for i in range(10)]
    # And once more: the replay of the old deletion must not strike on a second start either.
    b.restart()
    assert len(read_all(b.bootstrap, t)) == 10


def test_deleted_topic_files_are_removed_and_stay_removed(broker_factory, unique):
    b = broker_factory()
    t = unique("gone")
    create_topic(b.bootstrap, t, partitions=2)
    produce_all(producer(b.bootstrap), t, [(None, b"x")])
    assert (b.data_dir / f"{t}-0").is_dir()
    delete_topic(b.bootstrap, t)
    assert not (b.data_dir / f"{t}-0").exists()
    assert not (b.data_dir / f"{t}-1").exists()
    b.restart()
    assert t not in admin(b.bootstrap).list_topics(timeout=5).topics


def test_refused_config_is_never_logged_and_broker_restarts(broker_factory, unique):
    b = broker_factory()
    t = unique("cfg")
    create_topic(b.bootstrap, t)
    a = admin(b.bootstrap)
    for bad in ("3000000000", "14", "1048575", "-1"):
        res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
            ConfigEntry("segment.bytes", bad, incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(Exception) as e:
            a.incremental_alter_configs([res])[res].result(OP_TIMEOUT_S)
        assert kafka_error(e.value).code() == KafkaError.INVALID_CONFIG, bad
    # Kafka's own floor is accepted.
    res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(OP_TIMEOUT_S)
    with pytest.raises(Exception) as e:
        create_topic(b.bootstrap, unique("tiny"), config={"segment.bytes": "14"})
    assert kafka_error(e.value).code() == KafkaError.INVALID_CONFIG
    b.restart()
    res = ConfigResource(ResourceType.TOPIC, t)
    a = admin(b.bootstrap)  # kept alive until the future resolves
    cfg = a.describe_configs([res])[res].result(OP_TIMEOUT_S)
    assert cfg["segment.bytes"].value == "1048576"


def test_max_partitions_bounds_creation(broker_factory, unique):
    b = broker_factory(["--initial-rebalance-delay-ms", "300", "--max-partitions", "12"])
    a = admin(b.bootstrap)
    t1 = create_topic(b.bootstrap, unique("a"), partitions=8)
    t2 = unique("b")
    with pytest.raises(Exception) as e:
        create_topic(b.bootstrap, t2, partitions=5)
    err = kafka_error(e.value)
    assert err.code() == KafkaError.POLICY_VIOLATION
    assert "max-partitions" in err.str()
    with pytest.raises(Exception) as e:
        a.create_partitions([NewPartitions(t1, 13)])[t1].result(OP_TIMEOUT_S)
    assert kafka_error(e.value).code() == KafkaError.POLICY_VIOLATION
    a.create_partitions([NewPartitions(t1, 12)])[t1].result(OP_TIMEOUT_S)
    # Auto-creation by Metadata is bounded the same way: the topic is not created.
    auto = unique("auto")
    md = a.list_topics(topic=auto, timeout=5)
    assert md.topics[auto].error is not None
    assert auto not in a.list_topics(timeout=5).topics
    # Deleting frees the budget.
    delete_topic(b.bootstrap, t1)
    create_topic(b.bootstrap, t2, partitions=5)


def test_bad_max_partitions_flag_is_a_clear_error(broker_factory):
    b = broker_factory(["--max-partitions", "0"], start=False)
    with pytest.raises(AssertionError, match="max-partitions"):
        b.start()


def test_offsets_log_stays_proportional_to_live_offsets(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique("off"), partitions=10)
    group = unique("g")
    meta = "m" * 3000
    c = consumer(b.bootstrap, group)
    try:
        last = {}
        # ~10 commits of 10 partitions x 3 KB each = 30 MB of history for 10 live keys.
        for i in range(1000):
            offsets = [TopicPartition(t, p, i * 10 + p, metadata=meta) for p in range(10)]
            res = c.commit(offsets=offsets, asynchronous=False)
            assert all(tp.error is None for tp in res)
            last = {p: i * 10 + p for p in range(10)}
    finally:
        c.close()
    size = dir_bytes(b.data_dir / "__consumer_offsets-0")
    # Without snapshots this log would hold ~30 MB; with them, about a segment and a snapshot.
    assert size < 16 * 1024 * 1024, size
    b.restart()
    c = consumer(b.bootstrap, group)
    try:
        got = c.committed([TopicPartition(t, p) for p in range(10)], timeout=OP_TIMEOUT_S)
        assert {tp.partition: tp.offset for tp in got} == last
        assert all(tp.metadata == meta for tp in got)
    finally:
        c.close()


def test_offsets_of_empty_groups_expire(broker_factory, unique):
    b = broker_factory(["--initial-rebalance-delay-ms", "300", "--offsets-retention-ms", "6000",
                        "--offsets-retention-check-interval-ms", "200"])
    t = create_topic(b.bootstrap, unique("exp"))
    produce_all(producer(b.bootstrap), t, [(None, b"v%d" % i) for i in range(3)])
    idle, active = unique("idle"), unique("active")
    # A group with a live member keeps its offsets however old they are.
    member = consumer(b.bootstrap, active, **{"enable.auto.commit": False})
    member.subscribe([t])
    consume_n(member, 3)
    member.commit(asynchronous=False)
    c = consumer(b.bootstrap, idle)
    c.commit(offsets=[TopicPartition(t, 0, 2)], asynchronous=False)
    c.close()

    def committed(group):
        k = consumer(b.bootstrap, group)
        try:
            return k.committed([TopicPartition(t, 0)], timeout=OP_TIMEOUT_S)[0].offset
        finally:
            k.close()

    assert committed(idle) == 2
    deadline = time.monotonic() + 30
    while committed(idle) != -1001:  # OFFSET_INVALID: nothing committed
        assert time.monotonic() < deadline, "the idle group's offsets did not expire"
        member.poll(0.2)
    # With neither members nor offsets, the group itself is forgotten (Kafka's Dead groups).
    a = admin(b.bootstrap)

    def listed():
        return {g.group_id for g in a.list_consumer_groups(request_timeout=OP_TIMEOUT_S)
                .result(OP_TIMEOUT_S).valid}

    wait_until(lambda: idle not in listed(), 10, "the idle group to be forgotten")
    assert active in listed()
    # Well past the retention, the member's group keeps its offsets.
    for _ in range(10):
        member.poll(0.2)
    assert committed(active) == 3
    member.close()
