"""Classic consumer groups with librdkafka (confluent-kafka): membership, assignment, commits,
lag, offset admin, group admin."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions

from kutil import (OP_TIMEOUT_S, admin, assert_split_between, consume_n, consumer, create_topic,
                   kafka_error, produce_all, producer, wait_assignment)


def fill(broker, t, n, partitions=None, prefix=b"m"):
    p = producer(broker.bootstrap)
    recs = [(b"k%d" % i, prefix + b"-%d" % i) for i in range(n)]
    if partitions is None:
        return produce_all(p, t, recs)
    out = []
    for part in range(partitions):
        out += produce_all(p, t, [r for i, r in enumerate(recs) if i % partitions == part], partition=part)
    return out


def check_partition_order(msgs):
    per = {}
    for m in msgs:
        per.setdefault(m.partition(), []).append(m.offset())
    for part, offs in per.items():
        assert offs == list(range(len(offs))), f"partition {part}: {offs[:20]}"
    return per


def test_one_group_consumes_everything_in_order(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=3)
    sent = fill(broker, t, 150, partitions=3)
    c = consumer(broker.bootstrap, unique("g"))
    try:
        c.subscribe([t])
        msgs = consume_n(c, 150, idle_after=0.5)
        assert len(msgs) == 150
        check_partition_order(msgs)
        assert sorted((m.partition(), m.offset(), m.value()) for m in msgs) == \
            sorted((p, o, v) for p, o, _, v in sent)
        assert sorted(tp.partition for tp in c.assignment()) == [0, 1, 2]
    finally:
        c.close()


def test_commit_and_resume(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    fill(broker, t, 50)
    g = unique("g")
    c = consumer(broker.bootstrap, g)
    c.subscribe([t])
    msgs = consume_n(c, 30)
    assert [m.offset() for m in msgs] == list(range(30))
    res = c.commit(message=msgs[-1], asynchronous=False)
    assert [(tp.partition, tp.offset, tp.error) for tp in res] == [(0, 30, None)]
    assert c.committed([TopicPartition(t, 0)], timeout=OP_TIMEOUT_S)[0].offset == 30
    c.close()

    c2 = consumer(broker.bootstrap, g)
    try:
        c2.subscribe([t])
        msgs = consume_n(c2, 20, idle_after=0.5)
        assert [m.offset() for m in msgs] == list(range(30, 50))
        assert [m.value() for m in msgs] == [b"m-%d" % i for i in range(30, 50)]
    finally:
        c2.close()


def test_two_members_split_partitions(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=4)
    g = unique("g")
    c1 = consumer(broker.bootstrap, g)
    c2 = consumer(broker.bootstrap, g)
    try:
        c1.subscribe([t])
        wait_assignment(c1)
        c2.subscribe([t])
        assert_split_between(c1, c2, 4, lambda: fill(broker, t, 200, partitions=4), timeout=25)
    finally:
        c1.close()
        c2.close()


def test_two_groups_each_read_everything(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    sent = fill(broker, t, 80, partitions=2)
    want = sorted((p, o, v) for p, o, _, v in sent)
    for g in (unique("ga"), unique("gb")):
        c = consumer(broker.bootstrap, g)
        try:
            c.subscribe([t])
            msgs = consume_n(c, 80, idle_after=0.3)
            assert sorted((m.partition(), m.offset(), m.value()) for m in msgs) == want
        finally:
            c.close()


def test_lag_from_committed_and_watermarks(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    fill(broker, t, 40)
    g = unique("g")
    c = consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        msgs = consume_n(c, 25)
        c.commit(offsets=[TopicPartition(t, 0, 25)], asynchronous=False)
        committed = c.committed([TopicPartition(t, 0)], timeout=OP_TIMEOUT_S)[0].offset
        lo, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=OP_TIMEOUT_S)
        assert (committed, lo, hi) == (25, 0, 40)
        assert hi - committed == 15
        assert msgs[-1].offset() == 24

        a = admin(broker.bootstrap)
        fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g, [TopicPartition(t, 0)])],
                                           request_timeout=OP_TIMEOUT_S)
        res = fs[g].result(OP_TIMEOUT_S)
        assert [(tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions] == [(t, 0, 25)]
        # Without a partition list: every committed partition of the group.
        fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)], request_timeout=OP_TIMEOUT_S)
        res = fs[g].result(OP_TIMEOUT_S)
        assert [(tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions] == [(t, 0, 25)]
    finally:
        c.close()


def test_reset_to_earliest_and_replay(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    fill(broker, t, 60, partitions=2)
    g = unique("g")
    c = consumer(broker.bootstrap, g)
    c.subscribe([t])
    consume_n(c, 60)
    c.commit(asynchronous=False)
    assert sorted((tp.partition, tp.offset) for tp in c.committed(
        [TopicPartition(t, 0), TopicPartition(t, 1)], timeout=OP_TIMEOUT_S)) == [(0, 30), (1, 30)]
    c.close()  # the group is empty now

    a = admin(broker.bootstrap)
    req = ConsumerGroupTopicPartitions(g, [TopicPartition(t, 0, 0), TopicPartition(t, 1, 0)])
    res = a.alter_consumer_group_offsets([req], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
    assert sorted((tp.partition, tp.offset, tp.error) for tp in res.topic_partitions) == \
        [(0, 0, None), (1, 0, None)]

    c2 = consumer(broker.bootstrap, g, **{"auto.offset.reset": "latest"})
    try:
        c2.subscribe([t])
        msgs = consume_n(c2, 60, idle_after=0.3)
        assert len(msgs) == 60
        check_partition_order(msgs)
    finally:
        c2.close()


def test_list_describe_delete_groups(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    fill(broker, t, 10, partitions=2)
    g = unique("g")
    c = consumer(broker.bootstrap, g, **{"partition.assignment.strategy": "roundrobin"})
    a = admin(broker.bootstrap)
    try:
        c.subscribe([t])
        consume_n(c, 10)
        c.commit(asynchronous=False)

        listing = a.list_consumer_groups(request_timeout=OP_TIMEOUT_S).result(OP_TIMEOUT_S)
        assert not listing.errors
        ours = [x for x in listing.valid if x.group_id == g]
        assert len(ours) == 1
        assert not ours[0].is_simple_consumer_group
        assert ours[0].state.name == "STABLE"

        d = a.describe_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
        assert d.group_id == g
        assert d.state.name == "STABLE"
        assert d.partition_assignor == "roundrobin"
        assert len(d.members) == 1
        m = d.members[0]
        assert sorted(tp.partition for tp in m.assignment.topic_partitions) == [0, 1]
        assert {tp.topic for tp in m.assignment.topic_partitions} == {t}

        # A group with a member cannot be deleted.
        with pytest.raises(KafkaException) as ei:
            a.delete_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
        assert kafka_error(ei.value).code() == KafkaError.NON_EMPTY_GROUP
    finally:
        c.close()

    d = a.describe_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
    assert d.state.name == "EMPTY"
    assert d.members == []
    a.delete_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
    listing = a.list_consumer_groups(request_timeout=OP_TIMEOUT_S).result(OP_TIMEOUT_S)
    assert g not in [x.group_id for x in listing.valid]
    # Its committed offsets are gone with it.
    fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g, [TopicPartition(t, 0)])],
                                       request_timeout=OP_TIMEOUT_S)
    res = fs[g].result(OP_TIMEOUT_S)
    assert [tp.offset for tp in res.topic_partitions] == [-1001]  # OFFSET_INVALID: nothing committed
    with pytest.raises(KafkaException) as ei:
        a.delete_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
    assert kafka_error(ei.value).code() == KafkaError.GROUP_ID_NOT_FOUND


def _describe(bootstrap, group):
    a = admin(bootstrap)
    return a.describe_consumer_groups([group], request_timeout=OP_TIMEOUT_S)[group].result(OP_TIMEOUT_S)


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_group_members_survive_a_coordinator_restart(broker_factory, unique, how, protocol):
    """A group's membership is persisted with its offsets (Kafka's group metadata records; for
    KIP-848 groups its epochs and assignments): after the coordinator restarts, its members go on
    in their generation or member epoch — no rebalance, and commits keep working. A group that
    emptied comes back empty."""
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), partitions=2)
    g = unique("g")
    fill(b, t, 20, partitions=2)
    events = []

    def member(name):
        if protocol == "classic":
            c = consumer(b.bootstrap, g)
        else:  # the session belongs to the broker: librdkafka refuses the session settings
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": g,
                          "group.protocol": "consumer", "auto.offset.reset": "earliest",
                          "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        c.subscribe([t], on_assign=lambda _c, ps: events.append((name, "assign", len(ps))),
                     on_revoke=lambda _c, ps: events.append((name, "revoke", len(ps))))
        return c

    c1, c2 = member("c1"), member("c2")
    try:
        deadline = time.monotonic() + 30
        got = []
        while len(c1.assignment()) + len(c2.assignment()) < 2 or len(got) < 20:
            assert time.monotonic() < deadline, f"group not stable with all records: {events}"
            for c in (c1, c2):
                m = c.poll(0.1)
                if m is not None and not m.error():
                    got.append(m)
        # A KIP-848 group may still be reconciling its members' epochs: wait (bounded).
        before = _describe(b.bootstrap, g)
        while str(before.state) != "ConsumerGroupState.STABLE":
            assert time.monotonic() < deadline, f"group not stable: {before.state}"
            for c in (c1, c2):
                c.poll(0.1)
            before = _describe(b.bootstrap, g)
        members_before = sorted(m.member_id for m in before.members)
        assert len(members_before) == 2
        seen = list(events)

        b.kill9() if how == "kill9" else b.stop()
        b.start()
        fill(b, t, 20, partitions=2, prefix=b"after")
        deadline = time.monotonic() + 30
        after = []
        while len(after) < 20:
            assert time.monotonic() < deadline, f"got {len(after)} of 20 after the restart: {events}"
            for c in (c1, c2):
                m = c.poll(0.1)
                # Earlier records may still come: a KIP-848 partition that moved to the second
                # member before the restart is read from the start there (nothing was committed).
                # A rebalance caused by the restart shows in `events`, checked below.
                if m is not None and not m.error() and m.value().startswith(b"after-"):
                    after.append(m)
        assert sorted(m.value() for m in after) == sorted(b"after-%d" % i for i in range(20))
        # Commits in the old generation are accepted by the restarted coordinator.
        for c in (c1, c2):
            if c.assignment():
                c.commit(asynchronous=False)
        assert events == seen, f"the restart caused a rebalance: {events[len(seen):]}"
        now = _describe(b.bootstrap, g)
        assert sorted(m.member_id for m in now.members) == members_before
    finally:
        c1.close()
        c2.close()
    # Both left: the group is empty, and stays empty across another restart (no ghosts).
    wait_for_empty = time.monotonic() + 10
    while str(_describe(b.bootstrap, g).state) != "ConsumerGroupState.EMPTY":
        assert time.monotonic() < wait_for_empty, "the group did not empty after both left"
        time.sleep(0.1)
    b.stop()
    b.start()
    d = _describe(b.bootstrap, g)
    assert str(d.state) == "ConsumerGroupState.EMPTY" and not d.members, (d.state, d.members)
