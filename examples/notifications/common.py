"""What the pieces of the notification service share: topic and group names, the queue policy
of the worker groups, the demo's events, the state directory, and small Kafka helpers.

Everything here is plain confluent-kafka (librdkafka); nothing is Sluice-specific except
`share.release.backoff.ms` in the group policy (Kafka's share groups redeliver at once)."""

import json
import os
import sqlite3
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)

CHANNELS = ("email", "push", "sms")
EVENTS_TOPIC = "events"
ROUTER_GROUP = "router"
PARTITIONS = 3
OP_TIMEOUT_S = 15


def work_topic(channel):
    """The channel's work queue: one record per notification to send."""
    return f"notify.{channel}"


def worker_group(channel):
    """The share group whose members send the channel's notifications."""
    return f"workers.{channel}"


def dlq_topic(channel):
    """Where the broker puts the channel's dead letters (Sluice's default: dlq.<group>)."""
    return f"dlq.{worker_group(channel)}"


# The queue policy of every worker group, set with IncrementalAlterConfigs on the GROUP resource.
WORKER_GROUP_CONFIG = {
    # Records written before a worker first joins are work too.
    "share.auto.offset.reset": "earliest",
    # A worker has this long to finish a notification before it goes to another worker.
    "share.record.lock.duration.ms": "15000",
    # The third failed delivery dead-letters the record (into dlq.workers.<channel>).
    "share.delivery.count.limit": "3",
    # A released record waits 2 s, then 4 s, ... (capped) before it is delivered again, so a
    # provider that is down is not hammered and its workers do not spin (Sluice's own config).
    "share.release.backoff.ms": "2000",
    "share.release.backoff.max.ms": "10000",
    # Members learn of a new assignment (a worker joined or left) on their next heartbeat: with
    # as many partitions as workers, each partition has one reader, so a partition whose worker
    # left is unread until then. 1 s instead of 5 s.
    "share.heartbeat.interval.ms": "1000",
    # A worker that dies silently is removed (its records and partitions handed to the others)
    # after 10 s instead of 45 s.
    "share.session.timeout.ms": "10000",
}

# A dedupe claim older than the record lock is abandoned: the broker has handed the record to
# another worker by then anyway.
CLAIM_LEASE_S = int(WORKER_GROUP_CONFIG["share.record.lock.duration.ms"]) / 1000

REQUEUED_HEADER = "__dlq.requeued.from"  # added by `sluice dlq requeue`
DLQ_HEADER_PREFIX = "__dlq.errors."  # added by the broker to a dead letter


def default_bootstrap():
    return os.environ.get("SLUICE_BOOTSTRAP_SERVER", "127.0.0.1:9092")


def default_state_dir():
    return Path(os.environ.get("NOTIFY_STATE_DIR", Path(__file__).resolve().parent / "state"))


# ---------------------------------------------------------------------------------------------
# Topics and group configs


def admin(bootstrap):
    # log_level 5: no "purging unserved events" notice when a handle is dropped at exit.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 5})


def topic_names(bootstrap):
    return set(admin(bootstrap).list_topics(timeout=OP_TIMEOUT_S).topics)


def setup(bootstrap):
    """Creates the topics (existing ones are kept) and sets the worker groups' policy."""
    a = admin(bootstrap)
    topics = [EVENTS_TOPIC] + [work_topic(c) for c in CHANNELS]
    fs = a.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
                          for t in topics], operation_timeout=OP_TIMEOUT_S,
                         request_timeout=OP_TIMEOUT_S)
    for t, f in fs.items():
        try:
            f.result(OP_TIMEOUT_S)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    resources = [ConfigResource(ResourceType.GROUP, worker_group(c), incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in WORKER_GROUP_CONFIG.items()]) for c in CHANNELS]
    for f in a.incremental_alter_configs(resources, request_timeout=OP_TIMEOUT_S).values():
        f.result(OP_TIMEOUT_S)
    return topics


# ---------------------------------------------------------------------------------------------
# The demo's events

USERS = {
    "u1": {"email": "ada@example.com", "phone": "+15550101", "device": "dev-ada"},
    "u2": {"email": "brian@example.com", "phone": "+15550102", "device": "dev-brian"},
    "u3": {"email": "chen@example.com", "phone": "+15550103", "device": "dev-chen"},
    "u4": {"email": "dana@example.com", "phone": "+15550104", "device": "dev-dana"},
    "u5": {"email": "emeka@example.com", "phone": "+15550105", "device": "dev-emeka"},
    "u6": {"email": "fatima@example.com", "phone": "+15550106", "device": "dev-fatima"},
    "u7": {"email": "goran@example.com", "phone": "+15550107", "device": "dev-goran"},
    "u8": {"email": "hana@example.com", "phone": "+15550108", "device": "dev-hana"},
}
# The last order was placed with a mistyped address: the email provider refuses it for good.
BAD_EMAIL = "hana.example.com"


def make_events(n):
    """n events (n even): each order is placed, then shipped. Placed orders are announced by
    email and push, shipped ones by sms too."""
    assert n >= 2 and n % 2 == 0, "events come in pairs (placed, shipped)"
    users = sorted(USERS)
    orders = n // 2
    out = []
    for i in range(n):
        order = i // 2
        user = users[order % len(users)]
        contact = dict(USERS[user])
        if order == orders - 1:
            contact["email"] = BAD_EMAIL
        shipped = i % 2 == 1
        out.append({
            "event_id": f"evt-{i + 1:04d}",
            "type": "order_shipped" if shipped else "order_placed",
            "order_id": f"ord-{order + 1:04d}",
            "user": {"id": user, **contact},
            "channels": ["email", "push", "sms"] if shipped else ["email", "push"],
        })
    return out


def save_events(state_dir, events):
    p = Path(state_dir) / "events.jsonl"
    p.write_text("".join(json.dumps(e) + "\n" for e in events))
    return p


def load_events(state_dir):
    p = Path(state_dir) / "events.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def undeliverable(event, channel):
    """A notification no provider will ever take (the demo's one kind: a malformed address)."""
    return channel == "email" and "@" not in event["user"]["email"]


def expected_by_channel(events):
    """{channel: {event_id}} of the notifications the events ask for that can be delivered."""
    out = {c: set() for c in CHANNELS}
    for e in events:
        for c in e["channels"]:
            if not undeliverable(e, c):
                out[c].add(e["event_id"])
    return out


def poison_by_channel(events):
    """{channel: {event_id}} of the notifications that can never be delivered."""
    out = {c: set() for c in CHANNELS}
    for e in events:
        for c in e["channels"]:
            if undeliverable(e, c):
                out[c].add(e["event_id"])
    return out


# ---------------------------------------------------------------------------------------------
# State files: the fake providers' outboxes and the workers' dedupe stores (SQLite, one file per
# channel each, shared by the worker processes of that channel)


def sqlite(path):
    conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)  # autocommit; BEGIN by hand
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def outbox_path(state_dir, channel):
    return Path(state_dir) / f"provider-{channel}.sqlite"


def store_path(state_dir, channel):
    return Path(state_dir) / f"dedupe-{channel}.sqlite"


def down_flag(state_dir, channel):
    return Path(state_dir) / f"{channel}.down"


def set_provider(state_dir, channel, up):
    """Takes a fake provider down (it answers every send with a transient error) or up again."""
    flag = down_flag(state_dir, channel)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    if up:
        flag.unlink(missing_ok=True)
    else:
        flag.write_text("down\n")


def read_rows(path, sql):
    if not Path(path).exists():
        return []
    conn = sqlite(path)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        conn.close()


def channel_stats(state_dir, channel, expected):
    """What happened on one channel, from the provider's outbox and the workers' journal."""
    sends = {}
    last_send = None
    for eid, at in read_rows(outbox_path(state_dir, channel), "SELECT event_id, sent_at FROM outbox"):
        sends[eid] = sends.get(eid, 0) + 1
        last_send = at if last_send is None else max(last_send, at)
    outcomes = {}
    redriven_done = 0
    finished = None
    for outcome, redriven, at in read_rows(store_path(state_dir, channel),
                                           "SELECT outcome, redriven, at FROM journal"):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("sent", "deduped", "rejected"):
            finished = at if finished is None else max(finished, at)
            if redriven:
                redriven_done += 1
    return {
        "expected": len(expected),
        "delivered": len(set(sends) & expected),
        "missing": sorted(expected - set(sends)),
        "duplicate_sends": sum(n - 1 for n in sends.values()),
        "unexpected_sends": sorted(set(sends) - expected),
        "outcomes": outcomes,
        "done": sum(outcomes.get(k, 0) for k in ("sent", "deduped", "rejected")),
        "redriven_done": redriven_done,
        "last_send_at": last_send,
        "finished_at": finished,
    }


# ---------------------------------------------------------------------------------------------
# Reading topics and group offsets (for the report; the service itself does not need these)


def _consumer(bootstrap, group="notify-inspector"):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "enable.partition.eof": False})


def end_offsets(bootstrap, topic):
    """{partition: high watermark}; {} when the topic does not exist."""
    if topic not in topic_names(bootstrap):
        return {}
    c = _consumer(bootstrap)
    try:
        md = c.list_topics(topic, timeout=OP_TIMEOUT_S).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S)[1]
                for p in md.partitions}
    finally:
        c.close()


def committed_offsets(bootstrap, group, topic, partitions):
    """{partition: committed offset (negative when none)} of a consumer group."""
    c = _consumer(bootstrap, group)
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=OP_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def read_topic(bootstrap, topic, timeout=15.0):
    """Every record of `topic` (up to the end offsets when called), as dicts."""
    ends = end_offsets(bootstrap, topic)
    todo = {p: e for p, e in ends.items() if e > 0}
    if not todo:
        return []
    c = _consumer(bootstrap)
    out = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in todo])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {len(out)} records, still missing {todo}")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            headers = {}
            for k, v in m.headers() or []:
                headers[k] = v.decode() if v is not None else None
            out.append({"partition": m.partition(), "offset": m.offset(), "key": m.key(),
                        "value": m.value(), "headers": headers,
                        "timestamp_ms": m.timestamp()[1]})
            if m.offset() + 1 >= todo.get(m.partition(), 0):
                todo.pop(m.partition(), None)
    finally:
        c.close()
    return out
