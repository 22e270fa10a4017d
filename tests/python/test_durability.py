"""Restart (SIGTERM) and crash (kill -9 mid-stream) on the same data dir: every acknowledged
record keeps its offset, every topic, config and committed offset survives (BRIEF sections 1, 4)."""

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from kutil import OP_TIMEOUT_S, admin, consume_n, consumer, create_topic, produce_all, producer


def read_partition(bootstrap, topic, partition):
    """Every record of one partition from its low to its high watermark: {offset: (key, value)}."""
    c = consumer(bootstrap)
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S)
        if hi == lo:
            return {}
        c.assign([TopicPartition(topic, partition, lo)])
        msgs = consume_n(c, hi - lo, timeout=30)
        assert [m.offset() for m in msgs] == list(range(lo, hi)), "offsets not dense after restart"
        return {m.offset(): (m.key(), m.value()) for m in msgs}
    finally:
        c.close()


def committed(bootstrap, group, tps):
    c = consumer(bootstrap, group)
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=OP_TIMEOUT_S)}
    finally:
        c.close()


def commit(bootstrap, group, offsets):
    c = consumer(bootstrap, group)
    try:
        res = c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        assert all(tp.error is None for tp in res)
    finally:
        c.close()


def topic_config(bootstrap, topic, key):
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=OP_TIMEOUT_S)[res].result(OP_TIMEOUT_S)[key].value


def test_restart_keeps_records_topics_configs_and_offsets(broker_factory, unique):
    b = broker_factory()
    t1 = create_topic(b.bootstrap, unique(), partitions=3, config={"retention.ms": "7200000"})
    t2 = create_topic(b.bootstrap, unique(), partitions=1)
    p = producer(b.bootstrap, acks="all")
    sent1 = produce_all(p, t1, [(b"k%d" % (i % 11), b"one-%d" % i) for i in range(600)])
    sent2 = produce_all(p, t2, [(None, b"two-%d" % i) for i in range(50)])
    del p
    g = unique("g")
    commit(b.bootstrap, g, {(t1, 0): 5, (t1, 2): 7, (t2, 0): 42})

    b.restart()

    md = admin(b.bootstrap).list_topics(timeout=OP_TIMEOUT_S)
    assert len(md.topics[t1].partitions) == 3 and len(md.topics[t2].partitions) == 1
    assert topic_config(b.bootstrap, t1, "retention.ms") == "7200000"
    for topic, sent, parts in ((t1, sent1, 3), (t2, sent2, 1)):
        want = {}
        for part, off, key, val in sent:
            want.setdefault(part, {})[off] = (key, val)
        for part in range(parts):
            assert read_partition(b.bootstrap, topic, part) == want.get(part, {})
    assert committed(b.bootstrap, g, [TopicPartition(t1, 0), TopicPartition(t1, 1), TopicPartition(t1, 2),
                                      TopicPartition(t2, 0)]) == \
        {(t1, 0): 5, (t1, 1): -1001, (t1, 2): 7, (t2, 0): 42}

    # Appends continue where the log ended.
    got = produce_all(producer(b.bootstrap, acks="all"), t2, [(None, b"after")])
    assert got[0][:2] == (0, 50)
    # And a second restart changes nothing either.
    b.restart()
    assert read_partition(b.bootstrap, t2, 0)[50] == (None, b"after")


def test_kill_9_mid_stream_loses_no_acknowledged_record(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), partitions=3)
    other = create_topic(b.bootstrap, unique(), partitions=2, config={"retention.ms": "3600000"})
    produce_all(producer(b.bootstrap, acks="all"), other, [(None, b"o%d" % i) for i in range(20)], partition=1)
    g = unique("g")
    commit(b.bootstrap, g, {(other, 1): 13, (t, 0): 0})

    acked = []
    errors = []

    def cb(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            errors.append(err)

    p = producer(b.bootstrap, **{"acks": "all", "linger.ms": 1, "message.timeout.ms": 4000,
                                 "retries": 0, "batch.num.messages": 20})
    kill_after = 3000
    i = 0
    deadline = time.monotonic() + 60
    while len(acked) < kill_after:
        assert time.monotonic() < deadline, f"only {len(acked)} acknowledged within 60s"
        try:
            p.produce(t, key=b"k%d" % (i % 17), value=b"crash-%07d" % i, on_delivery=cb)
            i += 1
        except BufferError:
            pass
        p.poll(0)
    b.kill9()  # mid-stream: the producer has more in flight
    in_flight_at_kill = len(p)
    assert in_flight_at_kill > 0, "the kill did not land mid-stream"
    p.purge()
    p.flush(0)
    snapshot = list(acked)
    assert len(snapshot) >= kill_after
    del p

    b.start()

    log = {part: read_partition(b.bootstrap, t, part) for part in range(3)}
    missing = [(part, off, v) for part, off, v in snapshot if log[part].get(off, (None, None))[1] != v]
    assert not missing, (f"{len(missing)} of {len(snapshot)} acknowledged records lost or moved "
                         f"(in flight at kill: {in_flight_at_kill}); first: {missing[:5]}")
    # No record appears twice (no retries were allowed).
    vals = [v for part in log.values() for _, v in part.values()]
    assert len(vals) == len(set(vals))
    # Other topics, configs and committed offsets survived too.
    md = admin(b.bootstrap).list_topics(timeout=OP_TIMEOUT_S)
    assert len(md.topics[t].partitions) == 3 and len(md.topics[other].partitions) == 2
    assert topic_config(b.bootstrap, other, "retention.ms") == "3600000"
    assert read_partition(b.bootstrap, other, 1) == {i: (None, b"o%d" % i) for i in range(20)}
    assert committed(b.bootstrap, g, [TopicPartition(other, 1), TopicPartition(t, 0)]) == \
        {(other, 1): 13, (t, 0): 0}
    # The broker takes writes again after recovery, right after the last surviving record.
    ends = {part: max(log[part]) + 1 if log[part] else 0 for part in range(3)}
    got = produce_all(producer(b.bootstrap, acks="all"), t, [(None, b"post-crash")], partition=0)
    assert got[0][:2] == (0, ends[0])


def test_kill_9_while_group_commits(broker_factory, unique):
    """Committed offsets acknowledged before a crash are all there after it."""
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), partitions=4)
    g = unique("g")
    c = consumer(b.bootstrap, g)
    last = {}
    try:
        for n in range(1, 41):
            offs = {(t, n % 4): n * 10}
            res = c.commit(offsets=[TopicPartition(t, n % 4, n * 10)], asynchronous=False)
            assert all(tp.error is None for tp in res)
            last.update(offs)
    finally:
        b.kill9()
        c.close()
    b.start()
    assert committed(b.bootstrap, g, [TopicPartition(t, i) for i in range(4)]) == last


def test_idempotent_producer_survives_broker_restart(broker_factory, unique):
    """Producer ids and sequence numbers outlive a restart: the same idempotent producer goes on
    without a sequence error, and nothing is duplicated."""
    b = broker_factory()
    t = create_topic(b.bootstrap, unique(), partitions=2)
    p = producer(b.bootstrap, **{"enable.idempotence": True, "linger.ms": 2})
    first = produce_all(p, t, [(b"k%d" % (i % 5), b"a%04d" % i) for i in range(500)])
    b.restart()
    second = produce_all(p, t, [(b"k%d" % (i % 5), b"b%04d" % i) for i in range(500)], timeout=30)
    log = {part: read_partition(b.bootstrap, t, part) for part in range(2)}
    vals = [v for part in log.values() for _, v in part.values()]
    assert len(vals) == 1000 and len(set(vals)) == 1000
    for part, off, _, v in first + second:
        assert log[part][off][1] == v
