"""ACLs (#13) with Kafka's StandardAuthorizer semantics, seen by unmodified clients.

Modelled on librdkafka's 0115-producer_auth and 0119-consumer_auth (an ACL granted or removed
turns produce and consume errors on and off) and Kafka's authorizer tests (prefix and literal
patterns, deny wins, super users, the no-ACL default). The broker runs `--authorizer on` with
`User:admin` as super user; alice and bob log in with SCRAM over SASL_PLAINTEXT; ACLs are made
with `sluice acl` as admin."""

import json
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import sluice_bin, sluice_only, wait_until
from kutil import metric, scrape_metrics

pytestmark = sluice_only

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
PROTO = "SASL_PLAINTEXT"


@pytest.fixture(scope="module")
def acl_broker(tmp_root):
    from conftest import _new_broker

    b = _new_broker(
        tmp_root,
        ["--initial-rebalance-delay-ms", "300", "--authorizer", "on",
         "--superuser", "User:admin", "--auto-create-topics", "false",
         "--allow-plain-without-tls"],
        {PROTO: PROTO},
        {"SLUICE_BOOTSTRAP_USERS": ",".join(f"{u}:{p}" for u, p in USERS.items())}).start()
    yield b
    assert b.stop() == 0, b.log_tail()


def conf(b, user):
    return {"bootstrap.servers": b.listener(PROTO), "security.protocol": PROTO,
            "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": user,
            "sasl.password": USERS[user]}


def cli_env(b, user="admin"):
    env = dict(os.environ)
    env.update({"SLUICE_BOOTSTRAP_SERVER": b.listener(PROTO), "SLUICE_SECURITY_PROTOCOL": PROTO,
                "SLUICE_SASL_MECHANISM": "SCRAM-SHA-256", "SLUICE_SASL_USERNAME": user,
                "SLUICE_SASL_PASSWORD": USERS[user]})
    return env


def sluice(b, *args, user="admin", check=True):
    r = subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=60,
                       env=cli_env(b, user))
    if check:
        assert r.returncode == 0, f"sluice {' '.join(args)}: {r.stderr}"
    return r


def acl(b, *args, user="admin", check=True):
    return sluice(b, "acl", *args, user=user, check=check)


def new_topic(b, name=None, partitions=1):
    name = name or f"t-{uuid.uuid4().hex[:8]}"
    a = AdminClient(conf(b, "admin"))
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    return name


def produce_one(b, user, topic, **extra):
    """Produces one record; returns None on success, else the delivery error's code."""
    out = []
    p = Producer({**conf(b, user), "message.timeout.ms": 8000, **extra})
    p.produce(topic, b"v", on_delivery=lambda e, m: out.append(e))
    p.flush(20)
    assert out, "no delivery report"
    return None if out[0] is None else out[0].code()


def consume(b, user, topic, group, n=1, timeout=15):
    """(records read, errors seen) for a group consumer reading from the beginning."""
    errors = []
    c = Consumer({**conf(b, user), "group.id": group, "auto.offset.reset": "earliest",
                  "error_cb": errors.append})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is None:
            continue
        if m.error():
            errors.append(m.error())
            if m.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                    KafkaError.GROUP_AUTHORIZATION_FAILED):
                break
            continue
        got.append(m.value())
    c.close()
    return got, errors


def codes(errors):
    return {e.code() for e in errors}


def test_start_needs_a_super_user(tmp_root):
    r = subprocess.run([sluice_bin(), "serve", "--authorizer", "on", "--data-dir",
                        str(tmp_root / f"x-{uuid.uuid4().hex[:6]}"), "--kafka-addr", "127.0.0.1:0",
                        "--http-addr", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--superuser" in r.stderr, r.stderr


def test_acl_apis_need_the_cluster_and_list_what_was_made(acl_broker):
    b = acl_broker
    # alice may not even look.
    r = acl(b, "list", user="alice", check=False)
    assert r.returncode == 1 and "CLUSTER_AUTHORIZATION_FAILED" in r.stderr, r.stderr
    topic = f"acl-{uuid.uuid4().hex[:6]}"
    acl(b, "create", "--principal", "User:alice", "--operation", "READ", "--operation",
        "DESCRIBE", "--topic", topic)
    rows = json.loads(acl(b, "list", "--topic", topic, "--output", "json").stdout)
    assert sorted(r["operation"] for r in rows) == ["DESCRIBE", "READ"]
    assert all(r["principal"] == "User:alice" and r["permission"] == "ALLOW"
               and r["pattern_type"] == "LITERAL" for r in rows)
    deleted = json.loads(acl(b, "delete", "--topic", topic, "--operation", "READ",
                             "--output", "json").stdout)
    assert [r["operation"] for r in deleted] == ["READ"]
    rows = json.loads(acl(b, "list", "--topic", topic, "--output", "json").stdout)
    assert [r["operation"] for r in rows] == ["DESCRIBE"]
    # CreateAcls refuses what Kafka refuses.
    r = acl(b, "create", "--principal", "alice", "--operation", "READ", "--topic", topic,
            check=False)
    assert r.returncode == 1


def test_acl_apis_without_an_authorizer_are_security_disabled(broker_factory):
    b = broker_factory()
    r = subprocess.run([sluice_bin(), "acl", "list", "--bootstrap-server", b.bootstrap],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "SECURITY_DISABLED" in r.stderr, r.stderr


def test_produce_needs_write_and_follows_the_acl(acl_broker):
    """librdkafka 0115: no ACL → TOPIC_AUTHORIZATION_FAILED; granted → delivered; removed →
    refused again."""
    b = acl_broker
    topic = new_topic(b)
    assert produce_one(b, "alice", topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    acl(b, "create", "--principal", "User:alice", "--producer", "--topic", topic)
    assert produce_one(b, "alice", topic) is None
    acl(b, "delete", "--principal", "User:alice", "--topic", topic, "--operation", "WRITE")
    assert produce_one(b, "alice", topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The super user needs no ACL.
    assert produce_one(b, "admin", topic) is None


def test_consume_needs_read_on_the_topic_and_the_group(acl_broker):
    """librdkafka 0119: a consumer without READ on the group, then on the topic, is refused
    with the matching code; with both it reads."""
    b = acl_broker
    topic = new_topic(b)
    assert produce_one(b, "admin", topic) is None
    group = f"g-{uuid.uuid4().hex[:6]}"
    got, errors = consume(b, "alice", topic, group)
    assert not got and KafkaError.GROUP_AUTHORIZATION_FAILED in codes(errors), errors
    acl(b, "create", "--principal", "User:alice", "--operation", "READ", "--group", group)
    got, errors = consume(b, "alice", topic, group)
    assert not got and KafkaError.TOPIC_AUTHORIZATION_FAILED in codes(errors), errors
    acl(b, "create", "--principal", "User:alice", "--consumer", "--topic", topic,
        "--group", group)
    got, errors = consume(b, "alice", topic, group)
    assert got == [b"v"], errors


def test_metadata_hides_topics_the_principal_may_not_describe(acl_broker):
    b = acl_broker
    seen, hidden = new_topic(b), new_topic(b)
    acl(b, "create", "--principal", "User:bob", "--operation", "DESCRIBE", "--topic", seen)
    md = AdminClient(conf(b, "bob")).list_topics(timeout=10)
    assert seen in md.topics and hidden not in md.topics
    # Named: refused whether it exists or not, so existence is not disclosed.
    for name in (hidden, f"nope-{uuid.uuid4().hex[:6]}"):
        t = AdminClient(conf(b, "bob")).list_topics(topic=name, timeout=10).topics[name]
        assert t.error is not None and t.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The super user sees both.
    md = AdminClient(conf(b, "admin")).list_topics(timeout=10)
    assert {seen, hidden} <= set(md.topics)


def test_prefixed_acls_and_deny_wins(acl_broker):
    b = acl_broker
    prefix = f"team-{uuid.uuid4().hex[:6]}-"
    mine, other = new_topic(b, prefix + "orders"), new_topic(b)
    acl(b, "create", "--principal", "User:*", "--producer", "--topic", prefix, "--prefixed")
    assert produce_one(b, "alice", mine) is None
    assert produce_one(b, "bob", mine) is None
    assert produce_one(b, "alice", other) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # A DENY for bob on the literal topic beats the prefixed ALLOW for everyone.
    acl(b, "create", "--principal", "User:bob", "--operation", "WRITE", "--topic", mine, "--deny")
    assert produce_one(b, "bob", mine) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_one(b, "alice", mine) is None
    # The denial is audited, one line with Kafka's wording, and counted.
    wait_until(lambda: "Principal = User:bob is Denied operation = WRITE" in b.log_tail(2000),
               10, "the audit line")
    samples = scrape_metrics(b.http)
    assert (metric(samples, "sluice_authorization_denials_total", api="Produce") or 0) >= 1


def test_creating_topics_needs_create(acl_broker):
    b = acl_broker
    name = f"c-{uuid.uuid4().hex[:6]}"
    alice = AdminClient(conf(b, "alice"))  # kept alive until its future resolves
    f = alice.create_topics([NewTopic(name, 1, 1)])[name]
    with pytest.raises(Exception) as e:
        f.result(20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    acl(b, "create", "--principal", "User:alice", "--operation", "CREATE", "--cluster")
    alice.create_topics([NewTopic(name, 1, 1)])[name].result(20)
    acl(b, "delete", "--principal", "User:alice", "--cluster")


def test_idempotent_and_transactional_producers(acl_broker):
    b = acl_broker
    topic = new_topic(b)
    txn_id = f"tx-{uuid.uuid4().hex[:6]}"
    acl(b, "create", "--principal", "User:alice", "--producer", "--topic", topic)
    # An idempotent producer: WRITE on a topic is enough for InitProducerId (Kafka 2.8+).
    assert produce_one(b, "alice", topic, **{"enable.idempotence": True}) is None
    # A transactional one needs WRITE on its transactional id.
    p = Producer({**conf(b, "alice"), "transactional.id": txn_id})
    with pytest.raises(Exception) as e:
        p.init_transactions(15)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    acl(b, "create", "--principal", "User:alice", "--producer", "--transactional-id", txn_id)
    p = Producer({**conf(b, "alice"), "transactional.id": txn_id})
    p.init_transactions(15)
    p.begin_transaction()
    p.produce(topic, b"in-txn")
    p.commit_transaction(15)


def test_share_group_needs_read_on_group_and_topic(acl_broker):
    from confluent_kafka import ShareConsumer

    b = acl_broker
    topic = new_topic(b)
    assert produce_one(b, "admin", topic) is None
    group = f"sg-{uuid.uuid4().hex[:6]}"

    def share_read(feed=False):
        errors = []
        c = ShareConsumer({**conf(b, "alice"), "group.id": group, "error_cb": errors.append,
                           "share.acknowledgement.mode": "implicit", "log_level": 3})
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 12
        while not got and time.monotonic() < deadline:
            if feed:
                # A new share group starts at the log end: records come after it joined.
                assert produce_one(b, "admin", topic) is None
            try:
                batch = c.poll(0.5) or []
            except KafkaException as e:  # the share consumer raises group-level errors
                errors.append(e.args[0])
                batch = []
            for m in batch:
                if m.error():
                    errors.append(m.error())
                else:
                    got.append(m.value())
            if codes(errors) & {KafkaError.GROUP_AUTHORIZATION_FAILED,
                                KafkaError.TOPIC_AUTHORIZATION_FAILED}:
                break
        try:
            c.close()
        except KafkaException as e:
            errors.append(e.args[0])
        return got, errors

    got, errors = share_read()
    assert not got and codes(errors) & {KafkaError.GROUP_AUTHORIZATION_FAILED,
                                        KafkaError.TOPIC_AUTHORIZATION_FAILED}, errors
    acl(b, "create", "--principal", "User:alice", "--consumer", "--topic", topic, "--group", group)
    got, errors = share_read(feed=True)
    assert got and set(got) == {b"v"}, errors


def test_share_group_offset_admin_needs_read_on_each_topic(acl_broker):
    """DeleteShareGroupOffsets (raw frames: no installed client sends it with chosen topics):
    DELETE on the group lets the request in, and each topic without READ is refused on its own."""
    import struct

    from kproto_share import Reader, carr, cstr, frame
    from test_security import Raw

    b = acl_broker
    group = f"sg-{uuid.uuid4().hex[:6]}"
    readable, unreadable = new_topic(b), new_topic(b)
    acl(b, "create", "--principal", "User:alice", "--operation", "DELETE", "--group", group)
    acl(b, "create", "--principal", "User:alice", "--operation", "READ", "--topic", readable)
    with Raw(b.listener_ports[PROTO][1]) as r:
        assert r.handshake("PLAIN")[0] == 0
        assert r.authenticate(b"\x00alice\x00" + USERS["alice"].encode())[0] == 0
        body = cstr(group) + carr([cstr(t) + b"\x00" for t in (readable, unreadable)]) + b"\x00"
        r.s.sendall(frame(92, 0, 99, body))
        resp = Reader(r.recv())
        assert resp.i32() == 99
        resp.tags()
        resp.i32()  # throttle
        assert resp.i16() == 0, "the group itself is allowed"
        resp.cstr()

        def topic():
            name, _, code, _ = resp.cstr(), resp.uuid(), resp.i16(), resp.cstr()
            resp.tags()
            return name, code

        answered = dict(resp.carr(topic))
    assert answered[unreadable] == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert answered[readable] != KafkaError.TOPIC_AUTHORIZATION_FAILED
