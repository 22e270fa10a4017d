"""Share groups (KIP-932 queues) with librdkafka's ShareConsumer (confluent-kafka 2.16): records
split between members with none to both, acknowledgement (ACCEPT / RELEASE / REJECT), lock expiry,
release on leave and on session timeout, dead letters in `dlq.<group>`, Sluice's delayed
redelivery, durable queue state across `kill -9`, group configs, ListGroups/DeleteGroups and the
share metrics.

Consumers run in explicit acknowledgement mode: a poll's records must all be acknowledged (or the
consumer must stop polling) before the next poll; acknowledgements reach the broker on
`commit_sync`. Every group first gets `share.auto.offset.reset=earliest` so that records produced
before its first fetch count."""

import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, AcknowledgeType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AlterConfigOpType

from conftest import wait_until
from kutil import (OP_TIMEOUT_S, admin, consume_n, consumer, create_topic, group_configs, kafka_error,
                   metric, produce_all, producer, scrape_metrics, set_group_configs, share_consume,
                   share_consumer)

ACCEPT, RELEASE, REJECT = AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT

DLQ_HEADERS = ["__dlq.errors.topic", "__dlq.errors.partition", "__dlq.errors.offset",
               "__dlq.errors.group", "__dlq.errors.delivery.count", "__dlq.errors.reason",
               "__dlq.errors.timestamp"]


def queue_group(bootstrap, group, **configs):
    """Sets `share.auto.offset.reset=earliest` and `configs` (keys with `_` for `.`) on `group`."""
    conf = {"share.auto.offset.reset": "earliest"}
    conf.update({k.replace("_", "."): str(v) for k, v in configs.items()})
    set_group_configs(bootstrap, group, conf)
    return group


def fill(bootstrap, topic, n, partitions=1, prefix=b"v"):
    """Produces n records spread round-robin over the partitions; returns {(partition, offset)}.
    Batches hold 10 records (the last of a partition fewer): a share fetch hands out whole stored
    batches (batch-aligned acquisition, as Kafka's), so a member polling 10 records gets one
    batch, not all of them. The long linger makes the cut the count's alone, never the producer's
    timing (a batch goes out when full, and the rest at the final flush)."""
    p = producer(bootstrap, batch_num_messages=10, linger_ms=1000)
    sent = []
    for part in range(partitions):
        recs = [(b"k%d" % i, prefix + b"%d" % i) for i in range(n) if i % partitions == part]
        sent += produce_all(p, topic, recs, partition=part)
    return {(part, off) for part, off, _, _ in sent}


def keys(msgs):
    return [(m.partition(), m.offset()) for m in msgs]


def topic_exists(bootstrap, topic):
    return topic in admin(bootstrap).list_topics(timeout=OP_TIMEOUT_S).topics


def read_all(bootstrap, topic, n, idle_after=0.5, timeout=20.0):
    """Reads partition 0 of `topic` from the beginning with a plain consumer (waits for the topic
    to exist): exactly `n` records, none more within `idle_after`."""
    wait_until(lambda: topic_exists(bootstrap, topic), timeout, f"topic {topic} to exist")
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(c, n, timeout=timeout, idle_after=idle_after)
    finally:
        c.close()
    assert len(msgs) == n, f"{topic}: expected {n} records, got {len(msgs)}"
    return msgs


def wait_metric(broker, name, value, timeout=10.0, **labels):
    """Waits until the /metrics sample `name{labels}` equals `value` (refreshed once a second)."""
    last = []

    def ok():
        v = metric(scrape_metrics(broker.http), name, **labels)
        last[:] = [v]
        return v == value

    try:
        wait_until(ok, timeout, f"{name}{labels} == {value}", interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; last value {last[0] if last else None}") from None


def list_groups(a):
    """ListGroups through the deprecated AdminClient.list_groups (the only call that shows share
    groups: list_consumer_groups keeps protocol types "consumer" and "" only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return a.list_groups(timeout=OP_TIMEOUT_S)


def closing(*consumers):
    """Closes the consumers (those not None), the first failure raised after all tried."""
    err = None
    for c in consumers:
        if c is None:
            continue
        try:
            c.close()
        except Exception as e:  # noqa: BLE001
            err = err or e
    if err:
        raise err


# ---------------------------------------------------------------------------------------------
# Splitting, acknowledgement, redelivery


@pytest.mark.parametrize("partitions", [1, 3])
def test_two_members_split_records_none_to_both(broker, unique, partitions):
    t = create_topic(broker.bootstrap, unique(), partitions=partitions)
    g = queue_group(broker.bootstrap, unique("g"))
    sent = fill(broker.bootstrap, t, 200, partitions)
    c1 = share_consumer(broker.bootstrap, g, max_poll_records=10)
    c2 = share_consumer(broker.bootstrap, g, max_poll_records=10)
    try:
        c1.subscribe([t])
        c2.subscribe([t])
        # Each member first takes one batch and holds it (locked), so the other can only get
        # different records: both are then provably active members sharing the partitions.
        first1 = share_consume(c1, 1, ack=False)
        first2 = share_consume(c2, 1, ack=False)
        assert not set(keys(first1)) & set(keys(first2)), "a locked record went to the other member"
        got = {1: list(first1), 2: list(first2)}
        for c, ms in ((c1, first1), (c2, first2)):
            for m in ms:
                c.acknowledge(m, ACCEPT)
            c.commit_sync(OP_TIMEOUT_S)
        deadline = time.monotonic() + 30
        while len(got[1]) + len(got[2]) < len(sent):
            assert time.monotonic() < deadline, \
                f"got {len(got[1])}+{len(got[2])} of {len(sent)} records within 30s"
            for i, c in ((1, c1), (2, c2)):
                got[i] += share_consume(c, 0, idle_after=0.05)
        # Nothing else may come: every record was accepted in time.
        for i, c in ((1, c1), (2, c2)):
            got[i] += share_consume(c, 0, idle_after=0.5)
    finally:
        closing(c1, c2)
    k1, k2 = keys(got[1]), keys(got[2])
    assert len(set(k1)) == len(k1) and len(set(k2)) == len(k2), "a member got a record twice"
    assert not set(k1) & set(k2), f"records delivered to both: {sorted(set(k1) & set(k2))[:10]}"
    assert set(k1) | set(k2) == sent
    assert k1 and k2, "one member got nothing"
    assert {m.delivery_count() for m in got[1] + got[2]} == {1}
    if partitions > 1:
        assert {p for p, _ in k1 + k2} == set(range(partitions))


def test_accepted_records_not_redelivered_to_new_member(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker.bootstrap, t, 20)
    a = share_consumer(broker.bootstrap, g)
    b = None
    try:
        a.subscribe([t])
        first = share_consume(a, 20, idle_after=0.3)
        assert sorted(keys(first)) == [(0, o) for o in range(20)]
        a.close()
        a = None
        b = share_consumer(broker.bootstrap, g)
        b.subscribe([t])
        fill(broker.bootstrap, t, 5, prefix=b"new")
        later = share_consume(b, 5, idle_after=1.0)
    finally:
        closing(a, b)
    assert sorted(keys(later)) == [(0, o) for o in range(20, 25)], "an accepted record came back"
    assert all(m.value().startswith(b"new") for m in later)
    assert {m.delivery_count() for m in later} == {1}


def test_release_redelivers_with_higher_delivery_count(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker.bootstrap, t, 5)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        first = share_consume(c, 5, ack=lambda m: RELEASE if m.offset() == 2 else ACCEPT)
        assert sorted(keys(first)) == [(0, o) for o in range(5)]
        assert {m.delivery_count() for m in first} == {1}
        again = share_consume(c, 1, idle_after=0.5)
    finally:
        c.close()
    assert keys(again) == [(0, 2)], "only the released record may come back"
    assert again[0].delivery_count() == 2
    assert again[0].value() == b"v2"


def test_release_goes_to_another_member(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker.bootstrap, t, 3)
    a = share_consumer(broker.bootstrap, g)
    b = share_consumer(broker.bootstrap, g)
    try:
        a.subscribe([t])
        share_consume(a, 3, ack=lambda m: RELEASE)
        # a stops polling; b gets the three released records.
        b.subscribe([t])
        got = share_consume(b, 3, idle_after=0.5)
    finally:
        closing(a, b)
    assert sorted(keys(got)) == [(0, 0), (0, 1), (0, 2)]
    assert {m.delivery_count() for m in got} == {2}


def test_lock_expiry_hands_record_to_another_member(broker, unique):
    lock_ms = 1500
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_record_lock_duration_ms=lock_ms)
    fill(broker.bootstrap, t, 4)
    produced = time.monotonic()  # no record can be acquired before this
    a = share_consumer(broker.bootstrap, g)
    b = share_consumer(broker.bootstrap, g)
    try:
        a.subscribe([t])
        held = share_consume(a, 4, ack=False)  # a holds them and stops polling, staying a member
        assert {m.delivery_count() for m in held} == {1}
        b.subscribe([t])
        got = share_consume(b, 4, timeout=20)
        gap = time.monotonic() - produced
        assert gap >= lock_ms / 1000 - 0.1, f"records came back after {gap:.2f}s, before the lock ended"
        assert sorted(keys(got)) == sorted(keys(held))
        assert {m.delivery_count() for m in got} == {2}
        # a's late acknowledgement is refused: the records are no longer a's.
        for m in held:
            a.acknowledge(m, ACCEPT)
        res = a.commit_sync(OP_TIMEOUT_S)
        errs = [e for e in res.values() if e is not None]
        assert errs, f"a late ACCEPT of expired records was taken: {res}"
        assert kafka_error(errs[0]).code() == KafkaError.INVALID_RECORD_STATE
        # ... and b's acceptance stands: nothing is delivered again.
        assert share_consume(b, 0, idle_after=0.5) == []
    finally:
        closing(a, b)


def test_close_releases_acquired_records(broker, unique):
    # The lock is long (60 s): the records can only come back this fast because a left.
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_record_lock_duration_ms=60000)
    fill(broker.bootstrap, t, 6)
    a = share_consumer(broker.bootstrap, g)
    b = None
    try:
        a.subscribe([t])
        held = share_consume(a, 6, ack=False)
        a.close()
        a = None
        left = time.monotonic()
        b = share_consumer(broker.bootstrap, g)
        b.subscribe([t])
        got = share_consume(b, 6, timeout=20, idle_after=0.3)
        assert time.monotonic() - left < 30
    finally:
        closing(a, b)
    assert sorted(keys(got)) == sorted(keys(held))
    assert {m.delivery_count() for m in got} == {2}, "the delivery count was not kept"


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from kutil import share_consumer, share_consume
    c = share_consumer(sys.argv[2], sys.argv[3])
    c.subscribe([sys.argv[4]])
    held = share_consume(c, int(sys.argv[5]), ack=False)
    print("HELD", " ".join(str(m.offset()) for m in held), flush=True)
    time.sleep(120)
""")


def test_session_timeout_releases_records_of_a_dead_member(broker, unique):
    # A member process is killed with SIGKILL while holding records (no leave): its session
    # times out after 2 s and the records come back long before their 60 s lock would end.
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_record_lock_duration_ms=60000,
                    share_session_timeout_ms=2000, share_heartbeat_interval_ms=500)
    fill(broker.bootstrap, t, 5)
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, here, broker.bootstrap, g, t, "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    b = None
    try:
        line = proc.stdout.readline()  # bounded by share_consume's 20 s timeout in the child
        assert line.startswith("HELD"), f"holder process said {line!r}, exit {proc.poll()}"
        held = sorted(int(x) for x in line.split()[1:])
        assert held == list(range(5))
        proc.kill()
        proc.wait(10)
        killed = time.monotonic()
        b = share_consumer(broker.bootstrap, g)
        b.subscribe([t])
        got = share_consume(b, 5, timeout=30, idle_after=0.3)
        assert time.monotonic() - killed < 40
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        closing(b)
    assert sorted(keys(got)) == [(0, o) for o in held]
    assert {m.delivery_count() for m in got} == {2}


# ---------------------------------------------------------------------------------------------
# Dead letters


def test_delivery_limit_dead_letters_with_origin(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    started_ms = int(time.time() * 1000)
    p = producer(broker.bootstrap)
    orig_headers = [("trace", b"abc"), ("empty", b""), ("none", None)]
    p.produce(t, key=b"poison-key", value=b"poison-value", headers=orig_headers,
              timestamp=1_600_000_000_123)
    p.produce(t, key=b"ok", value=b"fine")
    p.produce(t, key=None, value=None)  # a tombstone, rejected below
    assert p.flush(OP_TIMEOUT_S) == 0
    c = share_consumer(broker.bootstrap, g)
    counts = []
    try:
        c.subscribe([t])
        deadline = time.monotonic() + 30
        acks = {0: RELEASE, 1: ACCEPT, 2: REJECT}
        while len(counts) < 5:
            assert time.monotonic() < deadline, f"deliveries of the poison record: {counts}"
            for m in share_consume(c, 0, idle_after=0.05, ack=lambda m: acks[m.offset()]):
                if m.offset() == 0:
                    counts.append(m.delivery_count())
                else:
                    assert m.delivery_count() == 1, (m.offset(), m.delivery_count())
        # The fifth release ends it: no sixth delivery.
        assert share_consume(c, 0, idle_after=1.0) == []
    finally:
        c.close()
    assert counts == [1, 2, 3, 4, 5]

    letters = {dict(m.headers())["__dlq.errors.offset"]: m
               for m in read_all(broker.bootstrap, "dlq." + g, 2)}
    assert sorted(letters) == [b"0", b"2"]
    dl = letters[b"0"]
    assert dl.key() == b"poison-key"
    assert dl.value() == b"poison-value"
    assert dl.timestamp()[1] == 1_600_000_000_123
    hdrs = dl.headers()
    assert hdrs[:len(orig_headers)] == orig_headers, "original headers changed or reordered"
    dlq = dict(hdrs[len(orig_headers):])
    assert sorted(dlq) == sorted(DLQ_HEADERS), hdrs
    assert dlq["__dlq.errors.topic"] == t.encode()
    assert dlq["__dlq.errors.partition"] == b"0"
    assert dlq["__dlq.errors.offset"] == b"0"
    assert dlq["__dlq.errors.group"] == g.encode()
    assert dlq["__dlq.errors.delivery.count"] == b"5"
    assert dlq["__dlq.errors.reason"] == b"delivery_limit"
    ts = int(dlq["__dlq.errors.timestamp"])
    assert started_ms - 5000 <= ts <= int(time.time() * 1000) + 5000, ts
    tomb = letters[b"2"]
    assert tomb.key() is None and tomb.value() is None, "null key/value not kept"
    assert dict(tomb.headers())["__dlq.errors.reason"] == b"rejected"


def test_dead_letter_keeps_repeated_header_keys(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    headers = [("dup", b"1"), ("other", b"x"), ("dup", b"2")]
    p = producer(broker.bootstrap)
    p.produce(t, key=b"k", value=b"v", headers=headers)
    assert p.flush(OP_TIMEOUT_S) == 0
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        (m,) = share_consume(c, 1, ack=lambda m: REJECT)
        assert m.headers() == headers  # delivered intact; only the dead-letter copy loses one
    finally:
        c.close()
    (dl,) = read_all(broker.bootstrap, "dlq." + g, 1)
    assert dl.headers()[:3] == headers


def test_lock_expiry_counts_towards_the_delivery_limit(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_record_lock_duration_ms=1000,
                    share_delivery_count_limit=2)
    fill(broker.bootstrap, t, 1)
    a = share_consumer(broker.bootstrap, g)
    b = share_consumer(broker.bootstrap, g)
    try:
        a.subscribe([t])
        (m,) = share_consume(a, 1, ack=False)  # held until the lock expires
        assert m.delivery_count() == 1
        b.subscribe([t])
        (m,) = share_consume(b, 1, ack=False)  # the second (last) delivery, expires too
        assert m.delivery_count() == 2
        (dl,) = read_all(broker.bootstrap, "dlq." + g, 1, timeout=15)
    finally:
        closing(a, b)
    h = dict(dl.headers())
    assert h["__dlq.errors.reason"] == b"delivery_limit"
    assert h["__dlq.errors.delivery.count"] == b"2"
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        assert share_consume(c, 0, idle_after=1.0) == [], "a dead-lettered record was delivered"
    finally:
        c.close()


def test_reject_dead_letters_at_once_while_others_flow(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=1)
    g = queue_group(broker.bootstrap, unique("g"))
    sent = fill(broker.bootstrap, t, 50)
    c = share_consumer(broker.bootstrap, g, max_poll_records=7)
    try:
        c.subscribe([t])
        got = share_consume(c, 50, ack=lambda m: REJECT if m.offset() == 17 else ACCEPT)
        # The rejected record is not redelivered; the partition was not held up by it.
        got += share_consume(c, 0, idle_after=0.7)
        fill(broker.bootstrap, t, 3, prefix=b"after")
        more = share_consume(c, 3, idle_after=0.3)
    finally:
        c.close()
    assert sorted(keys(got)) == sorted(sent), "every record once, the rejected one included"
    assert {m.delivery_count() for m in got} == {1}
    assert sorted(keys(more)) == [(0, 50), (0, 51), (0, 52)]

    (dl,) = read_all(broker.bootstrap, "dlq." + g, 1)
    assert (dl.key(), dl.value()) == (b"k17", b"v17")
    dlq = dict(dl.headers())
    assert dlq["__dlq.errors.reason"] == b"rejected"
    assert dlq["__dlq.errors.delivery.count"] == b"1"
    assert dlq["__dlq.errors.offset"] == b"17"
    assert dlq["__dlq.errors.topic"] == t.encode()
    assert dlq["__dlq.errors.group"] == g.encode()
    md = admin(broker.bootstrap).list_topics("dlq." + g, timeout=OP_TIMEOUT_S)
    assert len(md.topics["dlq." + g].partitions) == 1


def test_reject_with_dead_lettering_off_writes_nothing(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), errors_deadletterqueue_topic_name="")
    assert group_configs(broker.bootstrap, g)["errors.deadletterqueue.topic.name"].value == ""
    fill(broker.bootstrap, t, 5)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        got = share_consume(c, 5, ack=lambda m: REJECT if m.offset() == 1 else ACCEPT)
        got += share_consume(c, 0, idle_after=0.5)
    finally:
        c.close()
    assert sorted(keys(got)) == [(0, o) for o in range(5)], "the rejected record came back"
    # The broker has handled the REJECT (nothing left unacknowledged) ...
    wait_metric(broker, "sluice_share_group_lag", 0, group=g, topic=t)
    # ... and wrote no dead letter anywhere.
    assert not topic_exists(broker.bootstrap, "dlq." + g)
    samples = scrape_metrics(broker.http)
    written = [v for (name, labels), v in samples.items()
               if name == "sluice_dlq_records_written_total" and ("group", g) in labels]
    assert not any(written), written


# ---------------------------------------------------------------------------------------------
# Delayed redelivery (Sluice's share.release.backoff.ms)


def test_release_backoff_delays_redelivery(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_release_backoff_ms=1500)
    fill(broker.bootstrap, t, 1)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        gaps = []
        for delivery in (1, 2):
            (m,) = share_consume(c, 1, timeout=20, ack=False)
            if delivery > 1:
                gaps.append(time.monotonic() - released)
            assert (m.offset(), m.delivery_count()) == (0, delivery)
            c.acknowledge(m, RELEASE)
            released = time.monotonic()  # the broker releases it after this
            c.commit_sync(OP_TIMEOUT_S)
            if delivery == 1:
                # Records produced meanwhile are not held up by the delayed one.
                fill(broker.bootstrap, t, 2, prefix=b"next")
                nxt = share_consume(c, 2, timeout=10)
                assert sorted(keys(nxt)) == [(0, 1), (0, 2)]
        (m,) = share_consume(c, 1, timeout=20)
        gaps.append(time.monotonic() - released)
        assert (m.offset(), m.delivery_count()) == (0, 3)
        assert share_consume(c, 0, idle_after=0.3) == []
    finally:
        c.close()
    # backoff after the n-th delivery: 1500 * 2^(n-1) ms
    assert gaps[0] >= 1.4, f"redelivered {gaps[0]:.2f}s after the first release"
    assert gaps[1] >= 2.9, f"redelivered {gaps[1]:.2f}s after the second release"


# ---------------------------------------------------------------------------------------------
# Durability


def test_queue_state_survives_kill9(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique())
    g = queue_group(b.bootstrap, unique("g"))
    fill(b.bootstrap, t, 100)
    a = share_consumer(b.bootstrap, g, max_poll_records=10)
    c = None
    try:
        a.subscribe([t])
        # At least 40 acknowledged, one of them (offset 7) rejected; commit_sync after every
        # poll returns once the acknowledgements are durable. A fetch hands out whole stored
        # batches, and where the producer cut its batches is its own timing: the last poll may
        # reach past 40, so the test uses how many were acknowledged, not 40.
        done = share_consume(a, 40, ack=lambda m: REJECT if m.offset() == 7 else ACCEPT)
        acked = len(done)
        assert acked >= 40 and sorted(keys(done)) == [(0, o) for o in range(acked)]
        read_all(b.bootstrap, "dlq." + g, 1)  # the dead letter is written
        held = share_consume(a, 1, ack=False)  # acquired, never acknowledged
        assert min(o for _, o in keys(held)) >= acked
        b.kill9()
        b.start()
        closing(a)
        a = None
        cfg = group_configs(b.bootstrap, g)
        assert cfg["share.auto.offset.reset"].value == "earliest", "group config lost"
        c = share_consumer(b.bootstrap, g)
        c.subscribe([t])
        rest = share_consume(c, 100 - acked, timeout=30, idle_after=1.0)
    finally:
        closing(a, c)
    again = set(keys(done)) & set(keys(rest))
    assert not again, f"acknowledged records delivered again after kill -9: {sorted(again)[:10]}"
    assert sorted(keys(rest)) == [(0, o) for o in range(acked, 100)]
    assert set(keys(held)) <= set(keys(rest)), "a held record was lost"
    # The dead letter was written once, not again after the restart.
    (dl,) = read_all(b.bootstrap, "dlq." + g, 1)
    assert dict(dl.headers())["__dlq.errors.offset"] == b"7"


# ---------------------------------------------------------------------------------------------
# Group configs, ListGroups / DeleteGroups, metrics


def test_group_config_defaults_and_validation(broker, unique):
    g = unique("g")
    cfg = group_configs(broker.bootstrap, g)
    defaults = {
        "share.auto.offset.reset": "latest",
        "share.record.lock.duration.ms": "30000",
        "share.delivery.count.limit": "5",
        "errors.deadletterqueue.topic.name": "dlq." + g,
        "share.release.backoff.ms": "0",
    }
    for name, value in defaults.items():
        assert name in cfg, f"{name} missing from {sorted(cfg)}"
        assert cfg[name].value == value, (name, cfg[name].value)
        assert cfg[name].is_default, name
    for name in ("share.release.backoff.max.ms", "share.heartbeat.interval.ms",
                 "share.session.timeout.ms", "share.partition.max.record.locks"):
        assert name in cfg and cfg[name].is_default, name

    bad = [
        {"share.no.such.setting": "1"},
        {"share.record.lock.duration.ms": "999"},
        {"share.record.lock.duration.ms": "soon"},
        {"share.delivery.count.limit": "0"},
        {"share.auto.offset.reset": "sometimes"},
        {"share.auto.offset.reset": "by_duration:an hour"},
        {"share.release.backoff.ms": "-1"},
        {"errors.deadletterqueue.topic.name": "bad topic!"},
        # One bad entry fails the whole resource: the good one is not applied either.
        {"share.delivery.count.limit": "7", "share.record.lock.duration.ms": "0"},
    ]
    for conf in bad:
        with pytest.raises(KafkaException) as ei:
            set_group_configs(broker.bootstrap, g, conf)
        assert kafka_error(ei.value).code() == KafkaError.INVALID_CONFIG, (conf, ei.value)
    cfg = group_configs(broker.bootstrap, g)
    assert cfg["share.delivery.count.limit"].value == "5" and cfg["share.delivery.count.limit"].is_default

    set_group_configs(broker.bootstrap, g, {
        "share.auto.offset.reset": "by_duration:PT1H",
        "share.record.lock.duration.ms": "1000",
        "share.delivery.count.limit": "9",
        "errors.deadletterqueue.topic.name": "my-dead-letters",
    })
    cfg = group_configs(broker.bootstrap, g)
    assert cfg["share.auto.offset.reset"].value == "by_duration:PT1H"
    assert cfg["share.record.lock.duration.ms"].value == "1000"
    assert cfg["share.delivery.count.limit"].value == "9"
    assert cfg["errors.deadletterqueue.topic.name"].value == "my-dead-letters"
    assert not cfg["share.delivery.count.limit"].is_default

    set_group_configs(broker.bootstrap, g, {"share.delivery.count.limit": "",
                                            "errors.deadletterqueue.topic.name": ""},
                      op=AlterConfigOpType.DELETE)
    cfg = group_configs(broker.bootstrap, g)
    assert cfg["share.delivery.count.limit"].value == "5" and cfg["share.delivery.count.limit"].is_default
    assert cfg["errors.deadletterqueue.topic.name"].value == "dlq." + g
    assert cfg["share.record.lock.duration.ms"].value == "1000", "DELETE touched another config"


def test_group_config_applies_to_a_running_group(broker, unique):
    # share.delivery.count.limit lowered while the group runs: the next release dead-letters.
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker.bootstrap, t, 1)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        share_consume(c, 1, ack=lambda m: RELEASE)
        set_group_configs(broker.bootstrap, g, {"share.delivery.count.limit": "2"})
        (m,) = share_consume(c, 1, ack=lambda m: RELEASE)
        assert m.delivery_count() == 2
        assert share_consume(c, 0, idle_after=0.7) == []
    finally:
        c.close()
    (dl,) = read_all(broker.bootstrap, "dlq." + g, 1)
    assert dict(dl.headers())["__dlq.errors.reason"] == b"delivery_limit"
    assert dict(dl.headers())["__dlq.errors.delivery.count"] == b"2"


def test_list_and_delete_share_group(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_delivery_count_limit=3)
    fill(broker.bootstrap, t, 4)
    a = admin(broker.bootstrap)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        share_consume(c, 4)
        # ListGroups shows it as a share group. (librdkafka's list_consumer_groups keeps only
        # protocol types "consumer" and "" and so never shows share groups; the deprecated
        # list_groups shows every group with its protocol type.)
        groups = {gm.id: gm for gm in list_groups(a)}
        assert g in groups
        assert groups[g].protocol_type == "share"
        # A group with a member cannot be deleted.
        with pytest.raises(KafkaException) as ei:
            a.delete_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
        assert kafka_error(ei.value).code() == KafkaError.NON_EMPTY_GROUP
    finally:
        c.close()
    # Once empty it can; its configs and its queue state go with it.
    a.delete_consumer_groups([g], request_timeout=OP_TIMEOUT_S)[g].result(OP_TIMEOUT_S)
    assert g not in {gm.id for gm in list_groups(a)}
    cfg = group_configs(broker.bootstrap, g)
    assert cfg["share.delivery.count.limit"].is_default and cfg["share.delivery.count.limit"].value == "5"
    assert cfg["share.auto.offset.reset"].value == "latest"
    # Recreated with earliest: the four accepted records are delivered again.
    queue_group(broker.bootstrap, g)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        again = share_consume(c, 4, idle_after=0.3)
    finally:
        c.close()
    assert sorted(keys(again)) == [(0, o) for o in range(4)]
    assert {m.delivery_count() for m in again} == {1}


def test_auto_offset_reset_latest_skips_existing_records(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = unique("g")  # no configs: share.auto.offset.reset=latest
    fill(broker.bootstrap, t, 5, prefix=b"old")
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        # The share-partition starts at the end when the group first fetches it; records
        # produced until then are never delivered. Keep producing until new ones arrive.
        got = []
        deadline = time.monotonic() + 20
        while not got:
            assert time.monotonic() < deadline, "no record within 20s"
            fill(broker.bootstrap, t, 1, prefix=b"new")
            got = share_consume(c, 0, idle_after=0.3)
        got += share_consume(c, 0, idle_after=0.3)
    finally:
        c.close()
    assert all(m.value().startswith(b"new") for m in got), [m.value() for m in got]
    assert min(m.offset() for m in got) >= 5


def test_metrics_lag_dlq_depth_and_acknowledgements(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker.bootstrap, t, 30)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        held = share_consume(c, 30, ack=False)
        wait_metric(broker, "sluice_share_group_lag", 30, group=g, topic=t)
        wait_metric(broker, "sluice_share_group_in_flight_records", 30, group=g, topic=t)
        for m in held:
            c.acknowledge(m, REJECT if m.offset() in (3, 11) else ACCEPT)
        c.commit_sync(OP_TIMEOUT_S)
        wait_metric(broker, "sluice_share_group_lag", 0, group=g, topic=t)
        wait_metric(broker, "sluice_share_group_in_flight_records", 0, group=g, topic=t)
        wait_metric(broker, "sluice_dlq_depth", 2, topic="dlq." + g)
        # The oldest dead letter's age counts up from its dead-lettering.
        wait_until(lambda: 0 < (metric(scrape_metrics(broker.http), "sluice_dlq_oldest_age_seconds",
                                       topic="dlq." + g) or 0) < 120, 10, "the DLQ age to count up")
        wait_metric(broker, "sluice_dlq_records_written_total", 2, group=g, topic="dlq." + g)
        s = scrape_metrics(broker.http)
        assert metric(s, "sluice_share_group_acknowledgements_total", group=g, kind="accept") == 28
        assert metric(s, "sluice_share_group_acknowledgements_total", group=g, kind="reject") == 2
        assert metric(s, "sluice_share_group_acquired_records_total", group=g, topic=t) == 30
        # New records raise the lag again.
        fill(broker.bootstrap, t, 4)
        wait_metric(broker, "sluice_share_group_lag", 4, group=g, topic=t)
        share_consume(c, 4)
        wait_metric(broker, "sluice_share_group_lag", 0, group=g, topic=t)
    finally:
        c.close()


def test_subscribing_before_the_topic_exists(broker, unique):
    t = unique()
    g = queue_group(broker.bootstrap, unique("g"), share_heartbeat_interval_ms=500)
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        assert share_consume(c, 0, idle_after=1.0) == []
        assert not topic_exists(broker.bootstrap, t), "the share consumer auto-created its topic"
        create_topic(broker.bootstrap, t, partitions=2)
        sent = fill(broker.bootstrap, t, 10, partitions=2)
        got = share_consume(c, 10, timeout=30, idle_after=0.3)
    finally:
        c.close()
    assert sorted(keys(got)) == sorted(sent)


def test_auto_offset_reset_by_duration(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"), share_auto_offset_reset="by_duration:PT1H")
    now = int(time.time() * 1000)
    p = producer(broker.bootstrap)
    produce_all(p, t, [(b"old%d" % i, b"v", now - 2 * 3600 * 1000) for i in range(3)])
    produce_all(p, t, [(b"new%d" % i, b"v", now) for i in range(3)])
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        got = share_consume(c, 3, idle_after=0.5)
    finally:
        c.close()
    assert sorted(m.key() for m in got) == [b"new0", b"new1", b"new2"]


def test_implicit_acknowledgement_accepts_on_next_poll_and_close(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    fill(broker.bootstrap, t, 10)
    c = share_consumer(broker.bootstrap, g, explicit=False, max_poll_records=3)
    try:
        c.subscribe([t])
        got = share_consume(c, 10, ack=False, idle_after=0.3)
    finally:
        c.close()
    assert sorted(keys(got)) == [(0, o) for o in range(10)]
    assert {m.delivery_count() for m in got} == {1}, "implicitly accepted records came back"
    c = share_consumer(broker.bootstrap, g, explicit=False)
    try:
        c.subscribe([t])
        assert share_consume(c, 0, ack=False, idle_after=1.0) == []
    finally:
        c.close()


def test_compressed_batches_split_and_dead_letter(broker, unique):
    # Records inside zstd batches of ~100 are acquired in ranges that cut the batches.
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    p = producer(broker.bootstrap, compression_type="zstd", linger_ms=50, batch_num_messages=100)
    produce_all(p, t, [(b"k%d" % i, b"v%d" % i) for i in range(300)])
    c1 = share_consumer(broker.bootstrap, g, max_poll_records=7)
    c2 = share_consumer(broker.bootstrap, g, max_poll_records=7)
    rejected = {5, 150}
    ack = lambda m: REJECT if m.offset() in rejected else ACCEPT  # noqa: E731
    got = {1: [], 2: []}
    try:
        c1.subscribe([t])
        c2.subscribe([t])
        deadline = time.monotonic() + 30
        while len(got[1]) + len(got[2]) < 300:
            assert time.monotonic() < deadline, f"got {len(got[1]) + len(got[2])} of 300"
            for i, c in ((1, c1), (2, c2)):
                got[i] += share_consume(c, 0, ack=ack, idle_after=0.05)
        for i, c in ((1, c1), (2, c2)):
            got[i] += share_consume(c, 0, ack=ack, idle_after=0.3)
    finally:
        closing(c1, c2)
    every = got[1] + got[2]
    assert sorted(keys(every)) == [(0, o) for o in range(300)]
    assert all(m.value() == b"v%d" % m.offset() for m in every)
    letters = read_all(broker.bootstrap, "dlq." + g, 2)
    assert sorted((m.key(), m.value()) for m in letters) == [(b"k150", b"v150"), (b"k5", b"v5")]


# ---------------------------------------------------------------------------------------------
# Dead letters that cannot be written


def test_group_id_not_a_topic_name_does_not_stall_the_queue(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g with space"),
                    share_partition_max_record_locks=100)
    fill(broker.bootstrap, t, 250)
    c = share_consumer(broker.bootstrap, g, max_poll_records=50)
    try:
        c.subscribe([t])
        got = share_consume(c, 250, timeout=6, ack=lambda m: REJECT if m.offset() == 0 else ACCEPT)
    finally:
        c.close()
    assert sorted(keys(got)) == [(0, o) for o in range(250)]


def test_dead_letter_that_cannot_be_written_does_not_block_others(broker, unique):
    t = create_topic(broker.bootstrap, unique())
    g = queue_group(broker.bootstrap, unique("g"))
    create_topic(broker.bootstrap, "dlq." + g, config={"max.message.bytes": "1000"})
    produce_all(producer(broker.bootstrap), t, [(b"big", b"x" * 900), (b"small", b"y")])
    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        share_consume(c, 2, ack=lambda m: REJECT)
    finally:
        c.close()
    (dl,) = read_all(broker.bootstrap, "dlq." + g, 1, timeout=5)
    assert dl.key() == b"small"


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_share_members_keep_their_epochs_across_a_coordinator_restart(broker_factory, unique, how):
    """A share group's membership is persisted with the group coordinator's state: after a
    restart, a member heartbeating with the epoch it was given goes on (no UNKNOWN_MEMBER_ID,
    no rejoin), with the same epoch."""
    import uuid

    from kproto_share import Conn, heartbeat
    b = broker_factory()
    topic, group = unique("t"), unique("g")
    create_topic(b.bootstrap, topic, partitions=2)
    members = [uuid.uuid4().hex, uuid.uuid4().hex]
    conn = Conn(b.kafka_port)
    try:
        epochs = {}
        for m in members:
            code, epochs[m] = heartbeat(conn, group, m, [topic])
            assert code == 0
        # The first member learns the group's latest epoch (the second one's join bumped it).
        code, epochs[members[0]] = heartbeat(conn, group, members[0], None,
                                             epoch=epochs[members[0]])
        assert code == 0
    finally:
        conn.close()
    b.kill9() if how == "kill9" else b.stop()
    b.start()
    conn = Conn(b.kafka_port)
    try:
        for m in members:
            code, epoch = heartbeat(conn, group, m, None, epoch=epochs[m])
            assert (code, epoch) == (0, epochs[m]), f"member {m} after the restart"
    finally:
        conn.close()
