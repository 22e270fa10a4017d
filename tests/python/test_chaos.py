"""Operator chaos (issue #8): a seeded random sequence of admin operations — create, delete,
recreate, alter configs with valid and invalid values, add partitions, delete records, commit and
delete groups — interleaved with acks=all produces and SIGTERM / kill -9 restarts. After every
restart the broker must have started, and every acknowledged record of every live topic must be
readable at its offset, with the watermarks and committed offsets the model expects.

CI runs a short seed set. Run it long with, for example:

    SLUICE_CHAOS_SEEDS=1-200 SLUICE_CHAOS_STEPS=300 pytest -q tests/python/test_chaos.py

A failure names its seed; rerun that seed alone with SLUICE_CHAOS_SEEDS=<seed>.
"""

import os
import random

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, ResourceType)

from kutil import OP_TIMEOUT_S, admin, consume_n, consumer, kafka_error, produce_all, producer


def seeds():
    spec = os.environ.get("SLUICE_CHAOS_SEEDS", "1-3")
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


STEPS = int(os.environ.get("SLUICE_CHAOS_STEPS", "40"))

VALID_CONFIGS = [
    ("segment.bytes", "1048576"),
    ("segment.bytes", "16777216"),
    ("max.message.bytes", "2000000"),
    ("retention.ms", "-1"),
    ("retention.ms", "86400000000"),
    ("message.timestamp.type", "LogAppendTime"),
    ("message.timestamp.type", "CreateTime"),
    ("index.interval.bytes", "128"),
    ("cleanup.policy", "delete"),
]
INVALID_CONFIGS = [
    ("segment.bytes", "3000000000"),
    ("segment.bytes", "14"),
    ("retention.ms", "-7"),
    ("max.message.bytes", "99999999999"),
    ("message.timestamp.type", "Sometimes"),
    ("no.such.config", "1"),
]


class Model:
    """What the broker must hold: per topic, per partition, the log start offset and every
    acknowledged record by offset; per group, its committed offsets."""

    def __init__(self):
        self.topics = {}  # name -> [ {"start": int, "end": int, "records": {offset: value}} ]
        self.groups = {}  # group -> {(topic, partition): offset}

    def add_topic(self, name, partitions):
        self.topics[name] = [{"start": 0, "end": 0, "records": {}} for _ in range(partitions)]

    def drop_topic(self, name):
        del self.topics[name]
        for offsets in self.groups.values():
            for key in [k for k in offsets if k[0] == name]:
                del offsets[key]


class Chaos:
    def __init__(self, broker, seed, unique):
        self.b = broker
        self.rng = random.Random(seed)
        self.seed = seed
        self.model = Model()
        self.names = [unique(f"c{seed}-{i}") for i in range(4)]
        self.group_names = [unique(f"g{seed}-{i}") for i in range(2)]
        self.counter = 0

    def admin(self):
        return admin(self.b.bootstrap)

    def create(self):
        free = [n for n in self.names if n not in self.model.topics]
        if not free:
            return
        name = self.rng.choice(free)
        partitions = self.rng.randint(1, 3)
        config = dict(self.rng.sample(VALID_CONFIGS, self.rng.randint(0, 2)))
        a = self.admin()
        a.create_topics([NewTopic(name, partitions, 1, config=config)],
                        operation_timeout=OP_TIMEOUT_S)[name].result(OP_TIMEOUT_S)
        self.model.add_topic(name, partitions)

    def delete(self, recreate=False):
        if not self.model.topics:
            return
        name = self.rng.choice(sorted(self.model.topics))
        a = self.admin()
        a.delete_topics([name], operation_timeout=OP_TIMEOUT_S)[name].result(OP_TIMEOUT_S)
        self.model.drop_topic(name)
        if recreate:
            partitions = self.rng.randint(1, 3)
            a.create_topics([NewTopic(name, partitions, 1)],
                            operation_timeout=OP_TIMEOUT_S)[name].result(OP_TIMEOUT_S)
            self.model.add_topic(name, partitions)

    def alter(self):
        if not self.model.topics:
            return
        name = self.rng.choice(sorted(self.model.topics))
        valid = self.rng.random() < 0.5
        key, value = self.rng.choice(VALID_CONFIGS if valid else INVALID_CONFIGS)
        res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
        a = self.admin()
        fut = a.incremental_alter_configs([res])[res]
        if valid:
            fut.result(OP_TIMEOUT_S)
        else:
            with pytest.raises(Exception) as e:
                fut.result(OP_TIMEOUT_S)
            assert kafka_error(e.value).code() == KafkaError.INVALID_CONFIG, (key, value)

    def add_partitions(self):
        if not self.model.topics:
            return
        name = self.rng.choice(sorted(self.model.topics))
        now = len(self.model.topics[name])
        if now >= 5:
            return
        a = self.admin()
        a.create_partitions([NewPartitions(name, now + 1)])[name].result(OP_TIMEOUT_S)
        self.model.topics[name].append({"start": 0, "end": 0, "records": {}})

    def produce(self):
        if not self.model.topics:
            return
        name = self.rng.choice(sorted(self.model.topics))
        parts = self.model.topics[name]
        p = producer(self.b.bootstrap, acks="all", linger_ms=0)
        batch = []
        for _ in range(self.rng.randint(1, 30)):
            self.counter += 1
            batch.append((self.rng.randrange(len(parts)), b"%d-%d" % (self.seed, self.counter)))
        # One record per call keeps each on its chosen partition; any delivery error fails.
        acked = []
        for partition, value in batch:
            for _, off, _, v in produce_all(p, name, [(None, value)], partition=partition):
                acked.append((partition, off, v))
        for partition, offset, value in acked:
            part = parts[partition]
            part["records"][offset] = value
            part["end"] = max(part["end"], offset + 1)

    def delete_records(self):
        candidates = [(t, i) for t, ps in self.model.topics.items() for i, p in enumerate(ps)
                      if p["end"] > p["start"]]
        if not candidates:
            return
        name, i = self.rng.choice(sorted(candidates))
        part = self.model.topics[name][i]
        to = self.rng.randint(part["start"], part["end"])
        a = self.admin()
        fs = a.delete_records([TopicPartition(name, i, to)], request_timeout=OP_TIMEOUT_S,
                              operation_timeout=OP_TIMEOUT_S)
        for f in fs.values():
            f.result(OP_TIMEOUT_S)
        part["start"] = max(part["start"], to)
        part["records"] = {o: v for o, v in part["records"].items() if o >= part["start"]}

    def commit(self):
        if not self.model.topics:
            return
        group = self.rng.choice(self.group_names)
        name = self.rng.choice(sorted(self.model.topics))
        i = self.rng.randrange(len(self.model.topics[name]))
        offset = self.rng.randint(0, self.model.topics[name][i]["end"])
        c = consumer(self.b.bootstrap, group)
        try:
            res = c.commit(offsets=[TopicPartition(name, i, offset)], asynchronous=False)
            assert all(tp.error is None for tp in res)
        finally:
            c.close()
        self.model.groups.setdefault(group, {})[(name, i)] = offset

    def delete_group(self):
        live = sorted(g for g, o in self.model.groups.items() if o)
        if not live:
            return
        group = self.rng.choice(live)
        a = self.admin()
        a.delete_consumer_groups([group], request_timeout=OP_TIMEOUT_S)[group].result(OP_TIMEOUT_S)
        del self.model.groups[group]

    def restart(self):
        if self.rng.random() < 0.5:
            self.b.restart()
        else:
            self.b.kill9()
            self.b.start()
        self.check()

    def check(self):
        a = self.admin()
        listed = {t for t in a.list_topics(timeout=OP_TIMEOUT_S).topics if not t.startswith("_")}
        assert listed == set(self.model.topics), f"seed {self.seed}: topics differ"
        c = consumer(self.b.bootstrap)
        try:
            for name, parts in self.model.topics.items():
                md = a.list_topics(topic=name, timeout=OP_TIMEOUT_S).topics[name]
                assert len(md.partitions) == len(parts), f"seed {self.seed}: {name} partitions"
                for i, part in enumerate(parts):
                    lo, hi = c.get_watermark_offsets(TopicPartition(name, i), timeout=OP_TIMEOUT_S)
                    assert (lo, hi) == (part["start"], part["end"]), \
                        f"seed {self.seed}: {name}-{i} watermarks {(lo, hi)} != model"
                    if hi > lo:
                        c.assign([TopicPartition(name, i, lo)])
                        got = {m.offset(): m.value() for m in consume_n(c, hi - lo, timeout=30)}
                        assert got == part["records"], f"seed {self.seed}: {name}-{i} records differ"
        finally:
            c.close()
        for group, offsets in self.model.groups.items():
            if not offsets:
                continue
            k = consumer(self.b.bootstrap, group)
            try:
                tps = [TopicPartition(t, p) for (t, p) in offsets]
                got = {(tp.topic, tp.partition): tp.offset
                       for tp in k.committed(tps, timeout=OP_TIMEOUT_S)}
                assert got == offsets, f"seed {self.seed}: group {group} offsets differ"
            finally:
                k.close()

    def run(self, steps):
        ops = [(self.create, 3), (lambda: self.delete(False), 1), (lambda: self.delete(True), 1),
               (self.alter, 2), (self.add_partitions, 1), (self.produce, 6),
               (self.delete_records, 1), (self.commit, 2), (self.delete_group, 1),
               (self.restart, 2)]
        funcs = [f for f, w in ops for _ in range(w)]
        for _ in range(steps):
            self.rng.choice(funcs)()
        self.restart()


@pytest.mark.parametrize("seed", seeds())
def test_operator_chaos(broker_factory, unique, seed):
    flush = "always" if seed % 2 else "os"
    b = broker_factory(["--initial-rebalance-delay-ms", "300", "--flush", flush])
    Chaos(b, seed, unique).run(STEPS)
