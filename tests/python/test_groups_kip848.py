"""KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka: server-side assignment,
revoke-then-assign when a member joins, commits, and regex subscriptions matched by the broker."""

from confluent_kafka import Consumer, TopicPartition

from kutil import (OP_TIMEOUT_S, assert_split_between, consume_n, create_topic, produce_all, producer,
                   wait_assignment)


def kip848_consumer(bootstrap, group, **conf):
    # Session and heartbeat timing belong to the broker under this protocol: librdkafka refuses
    # session.timeout.ms / heartbeat.interval.ms here.
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "check.crcs": True,
    }
    c.update(conf)
    return Consumer(c)


def fill(bootstrap, topic, n, partitions):
    p = producer(bootstrap)
    out = []
    for part in range(partitions):
        recs = [(b"k%d" % i, b"%s-%d" % (topic.encode(), i)) for i in range(n) if i % partitions == part]
        out += produce_all(p, topic, recs, partition=part)
    return out


def test_two_members_split_partitions_without_overlap(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=4)
    g = unique("g")
    c1 = kip848_consumer(broker.bootstrap, g)
    c2 = kip848_consumer(broker.bootstrap, g)
    try:
        c1.subscribe([t])
        wait_assignment(c1, min_partitions=4)
        c2.subscribe([t])
        # Revoke-then-assign: the first member learns of the new epoch at its next heartbeat
        # (5 s server-side), gives up two partitions, and only then does the second get them.
        assert_split_between(c1, c2, 4, lambda: fill(broker.bootstrap, t, 200, 4))
    finally:
        c1.close()
        c2.close()


def test_commit_and_resume(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    fill(broker.bootstrap, t, 60, 2)
    g = unique("g")
    c = kip848_consumer(broker.bootstrap, g)
    c.subscribe([t])
    first = consume_n(c, 60, idle_after=0.3)
    assert len(first) == 60
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(t, 0), TopicPartition(t, 1)], timeout=OP_TIMEOUT_S)
    assert sorted(tp.offset for tp in committed) == [30, 30]
    c.close()

    fill(broker.bootstrap, t, 10, 2)
    c2 = kip848_consumer(broker.bootstrap, g)
    try:
        c2.subscribe([t])
        rest = consume_n(c2, 10, idle_after=0.5)
        assert sorted((m.partition(), m.offset()) for m in rest) == \
            sorted((p, o) for p in (0, 1) for o in range(30, 35))
    finally:
        c2.close()


def test_regex_subscription_follows_new_topics(broker, unique):
    prefix = unique("rx")
    a = create_topic(broker.bootstrap, prefix + "-a", partitions=2)
    b = create_topic(broker.bootstrap, prefix + "-b", partitions=1)
    other = create_topic(broker.bootstrap, unique("other"), partitions=1)
    for t in (a, b, other):
        fill(broker.bootstrap, t, 6, 1)
    c = kip848_consumer(broker.bootstrap, unique("g"))
    try:
        c.subscribe(["^" + prefix + "-.*"])
        msgs = consume_n(c, 12, idle_after=0.5)
        assert sorted({m.topic() for m in msgs}) == [a, b]
        # A topic created later that matches joins the subscription.
        late = create_topic(broker.bootstrap, prefix + "-late", partitions=1)
        fill(broker.bootstrap, late, 5, 1)
        more = consume_n(c, 5, timeout=30)
        assert {m.topic() for m in more} == {late}
    finally:
        c.close()
