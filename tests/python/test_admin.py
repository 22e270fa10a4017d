"""AdminClient (librdkafka through confluent-kafka) against sluice: topics, partitions, configs,
DeleteRecords."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, ResourceType)

from conftest import wait_until
from kutil import OP_TIMEOUT_S, admin, consume_n, consumer, create_topic, kafka_error, produce_all, producer


def topic_configs(bootstrap, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(bootstrap)
    fs = a.describe_configs([res], request_timeout=OP_TIMEOUT_S)
    return {k: v for k, v in fs[res].result(OP_TIMEOUT_S).items()}


def test_create_list_describe_delete_topic(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=3, config={"retention.ms": "3600000"})
    a = admin(broker.bootstrap)
    md = a.list_topics(timeout=OP_TIMEOUT_S)
    assert t in md.topics
    assert sorted(md.topics[t].partitions) == [0, 1, 2]
    for p in md.topics[t].partitions.values():
        assert p.leader == md.brokers[p.leader].id
        assert p.error is None

    desc = a.describe_topics(TopicCollection([t]), request_timeout=OP_TIMEOUT_S)[t].result(OP_TIMEOUT_S)
    assert desc.name == t
    assert [p.id for p in desc.partitions] == [0, 1, 2]

    cfg = topic_configs(broker.bootstrap, t)
    assert cfg["retention.ms"].value == "3600000"
    assert not cfg["retention.ms"].is_default
    # Kafka's names and defaults for the rest.
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["max.message.bytes"].value == "1048588"

    a.delete_topics([t], operation_timeout=OP_TIMEOUT_S)[t].result(OP_TIMEOUT_S)
    wait_until(lambda: t not in admin(broker.bootstrap).list_topics(timeout=OP_TIMEOUT_S).topics,
               10, "deleted topic to disappear from metadata")


def test_duplicate_create_is_topic_already_exists(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    with pytest.raises(KafkaException) as ei:
        create_topic(broker.bootstrap, t)
    assert kafka_error(ei.value).code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_bad_config_value_is_invalid_config(broker, unique):
    t = unique()
    with pytest.raises(KafkaException) as ei:
        create_topic(broker.bootstrap, t, config={"retention.ms": "not-a-number"})
    assert kafka_error(ei.value).code() == KafkaError.INVALID_CONFIG
    assert t not in admin(broker.bootstrap).list_topics(timeout=OP_TIMEOUT_S).topics


def test_unknown_cleanup_policy_is_invalid_config(broker, unique):
    with pytest.raises(KafkaException) as ei:
        create_topic(broker.bootstrap, unique(), config={"cleanup.policy": "shred"})
    assert kafka_error(ei.value).code() == KafkaError.INVALID_CONFIG


@pytest.mark.parametrize("name", ["bad name!", "a" * 250, "..", "slash/name"])
def test_bad_topic_name_is_invalid_topic(broker, name):
    with pytest.raises(KafkaException) as ei:
        create_topic(broker.bootstrap, name)
    assert kafka_error(ei.value).code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)


def test_delete_unknown_topic(broker, unique):
    t = unique()
    with pytest.raises(KafkaException) as ei:
        a = admin(broker.bootstrap)
        a.delete_topics([t], operation_timeout=OP_TIMEOUT_S)[t].result(OP_TIMEOUT_S)
    assert kafka_error(ei.value).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions(t, 5)], operation_timeout=OP_TIMEOUT_S)[t].result(OP_TIMEOUT_S)
    wait_until(lambda: len(admin(broker.bootstrap).list_topics(t, timeout=5).topics[t].partitions) == 5,
               10, "5 partitions in metadata")
    # The new partitions take writes.
    p = producer(broker.bootstrap)
    got = produce_all(p, t, [(None, b"x")], partition=4)
    assert got[0][:2] == (4, 0)
    # Shrinking is refused.
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(t, 3)], operation_timeout=OP_TIMEOUT_S)[t].result(OP_TIMEOUT_S)
    assert kafka_error(ei.value).code() == KafkaError.INVALID_PARTITIONS


def test_delete_records_then_consume_from_new_low_watermark(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    p = producer(broker.bootstrap)
    produce_all(p, t, [(None, b"v%d" % i) for i in range(20)])
    a = admin(broker.bootstrap)
    fs = a.delete_records([TopicPartition(t, 0, 12)], request_timeout=OP_TIMEOUT_S,
                          operation_timeout=OP_TIMEOUT_S)
    res = list(fs.values())[0].result(OP_TIMEOUT_S)
    assert res.low_watermark == 12

    c = consumer(broker.bootstrap, unique("g"))
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S)
        assert (lo, hi) == (12, 20)
        c.assign([TopicPartition(t, 0, 0)])  # offset 0 is out of range now: auto.offset.reset=earliest
        msgs = consume_n(c, 8, idle_after=0.5)
        assert [m.offset() for m in msgs] == list(range(12, 20))
        assert [m.value() for m in msgs] == [b"v%d" % i for i in range(12, 20)]
    finally:
        c.close()


def test_incremental_alter_configs_and_read_back(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "65536", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(OP_TIMEOUT_S)
    cfg = topic_configs(broker.bootstrap, t)
    assert cfg["retention.ms"].value == "120000"
    assert cfg["max.message.bytes"].value == "65536"

    # DELETE goes back to the default.
    res2 = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    a.incremental_alter_configs([res2], request_timeout=OP_TIMEOUT_S)[res2].result(OP_TIMEOUT_S)
    cfg = topic_configs(broker.bootstrap, t)
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].value == "65536"

    # A bad value is refused and changes nothing.
    res3 = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("max.message.bytes", "-5x", incremental_operation=AlterConfigOpType.SET),
    ])
    with pytest.raises(KafkaException) as ei:
        a.incremental_alter_configs([res3], request_timeout=OP_TIMEOUT_S)[res3].result(OP_TIMEOUT_S)
    assert kafka_error(ei.value).code() == KafkaError.INVALID_CONFIG
    assert topic_configs(broker.bootstrap, t)["max.message.bytes"].value == "65536"


def test_legacy_alter_configs_replaces_the_whole_set(broker, unique):
    """AlterConfigs (non-incremental) sets exactly the given configs; the rest go back to defaults."""
    t = create_topic(broker.bootstrap, unique(), config={"retention.ms": "1000000"})
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"segment.bytes": "1048576"})
    a.alter_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(OP_TIMEOUT_S)
    cfg = topic_configs(broker.bootstrap, t)
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["retention.ms"].value == "604800000"


def test_auto_create_on_produce(broker, unique):
    t = unique()
    got = produce_all(producer(broker.bootstrap), t, [(None, b"auto")])
    assert got[0][:2] == (0, 0)
    md = admin(broker.bootstrap).list_topics(t, timeout=OP_TIMEOUT_S)
    assert len(md.topics[t].partitions) == 1
