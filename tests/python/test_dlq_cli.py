"""`sluice dlq list|show|requeue|discard` against dead letters made the real way: librdkafka's
ShareConsumer (confluent-kafka 2.16, explicit acknowledgement) rejects records, the broker writes
them to `dlq.<group>`, the tool shows and redrives them, and the same consumer receives the
requeued records again. The broker's `sluice_dlq_depth` metric must agree with the tool."""

import json
import subprocess
import time

from confluent_kafka import AcknowledgeType, Producer

from conftest import sluice_bin, wait_until
from kutil import (OP_TIMEOUT_S, create_topic, metric, scrape_metrics, set_group_configs,
                   share_consume, share_consumer)

ACCEPT, REJECT = AcknowledgeType.ACCEPT, AcknowledgeType.REJECT
CLI_TIMEOUT_S = 60


def sluice(broker, *args, code=0):
    """Runs `sluice ARGS` against the broker; checks the exit code, returns the process."""
    p = subprocess.run([sluice_bin(), *args, "--bootstrap-server", broker.bootstrap],
                       capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert p.returncode == code, (
        f"sluice {' '.join(args)} exited {p.returncode} (expected {code}):\n"
        f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def sluice_json(broker, *args):
    return json.loads(sluice(broker, *args, "--output", "json").stdout)


def listed(broker, topic):
    """The `dlq list` entry of `topic` (None when not listed)."""
    return next((r for r in sluice_json(broker, "dlq", "list") if r["topic"] == topic), None)


def wait_depth(broker, topic, depth, timeout=15.0):
    """Waits until `dlq list` and the broker's `sluice_dlq_depth` metric (refreshed once a
    second) both say `depth`."""
    last = {}

    def ok():
        row = listed(broker, topic)
        last["cli"] = row and row["depth"]
        last["metric"] = metric(scrape_metrics(broker.http), "sluice_dlq_depth", topic=topic)
        return last["cli"] == depth and last["metric"] == depth

    try:
        wait_until(ok, timeout, f"depth {depth} of {topic}", interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen {last}") from None


def produce(broker, topic, records):
    """Produces (partition, key, value, timestamp_ms) records with a `trace` header each."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    errors = []
    for part, k, v, ts in records:
        p.produce(topic, key=k, value=v, partition=part, timestamp=ts,
                  headers=[("trace", b"t-" + k)],
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(OP_TIMEOUT_S) == 0, "records not delivered"
    assert not errors, errors


def share_receive(c, n, idle_after=0.5, timeout=20.0):
    """The next `n` records (accepted), and none more within `idle_after`."""
    got = share_consume(c, n, timeout=timeout, idle_after=idle_after)
    assert len(got) == n, [(m.key(), m.headers()) for m in got]
    return got


def test_dead_letters_listed_shown_requeued_once_and_discarded(broker, unique):
    t = create_topic(broker.bootstrap, unique(), partitions=2)
    g = unique("g")
    dlq = "dlq." + g
    set_group_configs(broker.bootstrap, g, {"share.auto.offset.reset": "earliest"})
    base_ts = int(time.time() * 1000) - 60_000
    sent = {b"k%d" % i: (i % 2, base_ts + i) for i in range(12)}
    produce(broker, t, [(p, k, b"value " + k, ts) for k, (p, ts) in sent.items()])
    rejected = {b"k1", b"k4", b"k7", b"k10"}

    c = share_consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])
        got = share_consume(c, 12, ack=lambda m: REJECT if m.key() in rejected else ACCEPT)
        origin = {m.key(): (m.partition(), m.offset()) for m in got}
        assert set(origin) == set(sent)
        wait_depth(broker, dlq, 4)

        # list: the topic, its group, depth and an age; the table says the same.
        row = listed(broker, dlq)
        assert row["group"] == g and row["handled"] == 0, row
        assert 0 <= row["oldest_age_ms"] < 120_000, row
        table = sluice(broker, "dlq", "list").stdout
        assert any(line.split()[:4] == [dlq, g, "4", "0"] for line in table.splitlines()), table

        # show: every dead letter with its origin and reason.
        shown = sluice_json(broker, "dlq", "show", "--group", g)
        assert shown["topic"] == dlq and shown["depth"] == 4, shown
        letters = {l["key"].encode(): l for l in shown["dead_letters"]}
        assert set(letters) == rejected
        for k, l in letters.items():
            o = l["origin"]
            assert (o["topic"], o["partition"], o["offset"]) == (t, *origin[k]), l
            assert l["reason"] == "rejected" and l["delivery_count"] == 1, l
            assert l["group"] == g and l["value"] == "value " + k.decode(), l
            assert l["headers"] == {"trace": "t-" + k.decode()}, l
        table = sluice(broker, "dlq", "show", "--group", g).stdout
        assert f"{t}:{origin[b'k4'][0]}:{origin[b'k4'][1]}" in table, table

        # requeue one: it reappears on its origin and the share consumer gets it again.
        off = letters[b"k4"]["offset"]
        out = sluice(broker, "dlq", "requeue", "--group", g, "--offset", str(off)).stdout
        assert out.startswith(f"requeued 1 dead letter from {dlq} to {t} (1)"), out
        (m,) = share_receive(c, 1)
        assert (m.key(), m.value(), m.partition()) == (b"k4", b"value k4", origin[b"k4"][0])
        assert m.offset() > origin[b"k4"][1]
        assert m.timestamp()[1] == sent[b"k4"][1], "the original CreateTime"
        assert dict(m.headers()) == {"trace": b"t-k4",
                                     "__dlq.requeued.from": f"{dlq}:0:{off}".encode()}
        wait_depth(broker, dlq, 3)

        # An offset that is not in the DLQ: an error naming it, and nothing written.
        p = sluice(broker, "dlq", "requeue", "--group", g, "--offset", f"{off},999", code=1)
        assert "offset 999 is not in" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr

        # requeue --all: the other three once; the one already requeued is skipped.
        res = sluice_json(broker, "dlq", "requeue", "--group", g, "--all")
        assert res["requeued"] == 3 and res["skipped_already_handled"] == 1, res
        assert res["to"] == {t: 3}, res
        again = share_receive(c, 3)
        assert {m.key() for m in again} == rejected - {b"k4"}
        wait_depth(broker, dlq, 0)
        # A second redrive writes nothing.
        res = sluice_json(broker, "dlq", "requeue", "--group", g, "--all")
        assert res["requeued"] == 0 and res["skipped_already_handled"] == 4, res
        assert share_consume(c, 0, idle_after=1.0) == []

        # discard: two new dead letters, one discarded by offset, then the rest.
        produce(broker, t, [(0, b"d1", b"bad 1", base_ts), (1, b"d2", b"bad 2", base_ts)])
        share_consume(c, 2, ack=lambda m: REJECT)
        wait_depth(broker, dlq, 2)
        shown = sluice_json(broker, "dlq", "show", "--group", g)
        offsets = sorted(l["offset"] for l in shown["dead_letters"])
        assert len(offsets) == 2 and offsets[0] >= 4, shown
        res = sluice_json(broker, "dlq", "discard", "--group", g, "--offset", str(offsets[0]))
        assert res["discarded"] == 1, res
        wait_depth(broker, dlq, 1)
        out = sluice(broker, "dlq", "discard", "--group", g, "--all").stdout
        assert out.startswith(f"discarded 1 dead letter from {dlq}"), out
        wait_depth(broker, dlq, 0)
        # Discarded records are not written anywhere; show --all marks every one handled.
        assert share_consume(c, 0, idle_after=1.0) == []
        every = sluice_json(broker, "dlq", "show", "--group", g, "--all")["dead_letters"]
        assert len(every) == 6 and all(l["handled"] for l in every), every
    finally:
        c.close()
