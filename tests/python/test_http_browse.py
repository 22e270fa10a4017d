"""What a web console needs of the HTTP API (docs/HTTP_API.md, "Browsing records" and "Resetting a
consumer group's offsets"): filtered consumes that scan across many fetches, keys and values
decoded with the built-in schema registry, a live tail over Server-Sent Events (resumed with
Last-Event-ID, bounded per node), and consumer-group offset resets planned by the CLI's code."""

import base64
import http.client
import io
import json
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from confluent_kafka import TopicPartition

from conftest import sluice_bin, sluice_only, wait_until
from kutil import OP_TIMEOUT_S, consumer, create_topic, produce_all, producer
from test_http_api import call

pytestmark = sluice_only

# The bounds in crates/sluice-broker/src/limits.rs this file checks.
MAX_API_TAILS = 32


def produce_http(broker, topic, records, encoding="utf8"):
    status, out = call(broker, "POST", f"/v1/topics/{topic}/records",
                       {"records": records, "encoding": encoding})
    assert status == 200, out
    return out["offsets"]


def page(broker, topic, partition, **params):
    q = urllib.parse.urlencode(params)
    status, body = call(broker, "GET", f"/v1/topics/{topic}/partitions/{partition}/records?{q}")
    assert status == 200, body
    return body


def framed(schema_id, payload, indexes=None):
    """Confluent's wire format: magic 0, the schema id, for PROTOBUF the message indexes."""
    out = b"\x00" + struct.pack(">I", schema_id)
    if indexes is not None:
        out += bytes(indexes)  # zig-zag varints; the small ones used here are single bytes
    return out + payload


def register(broker, subject, schema, schema_type="AVRO"):
    body = json.dumps({"schema": schema, "schemaType": schema_type}).encode()
    req = urllib.request.Request(broker.http + f"/subjects/{subject}/versions", data=body, method="POST",
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=OP_TIMEOUT_S) as r:
        return json.loads(r.read())["id"]


def b64(b):
    return base64.b64encode(b).decode()


# ---- filtered consume ---------------------------------------------------------------------------

def test_filters_scan_across_many_fetches(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    # 40 produce requests of 25 records: 40 batches; a max_bytes of ~1 batch makes every fetch of
    # the scan return one or two of them.
    expected = []
    for b in range(40):
        records = []
        for i in range(25):
            n = b * 25 + i
            rec = {"partition": 0, "key": f"user-{n % 7}", "value": f"event {n} " + ("x" * 40),
                   "headers": [{"name": "kind", "value": "order" if n % 50 == 13 else "view"}]}
            if n % 97 == 5:
                rec["value"] = f"event {n} needle " + ("y" * 40)
                expected.append(n)
            records.append(rec)
        produce_http(broker, t, records)
    assert len(expected) == 11

    # Everything in one call: the scan goes fetch after fetch to the end.
    got = page(broker, t, 0, value_contains="needle", max_bytes=2000)
    assert [r["offset"] for r in got["records"]] == expected
    assert got["next_offset"] == got["high_watermark"] == 1000
    assert got["scanned"] == 1000
    assert all("needle" in r["value"] for r in got["records"])

    # Paging three matches at a time: each page ends after its last match, and goes on from there.
    seen, offset, pages = [], 0, 0
    while True:
        got = page(broker, t, 0, value_contains="needle", max_records=3, max_bytes=2000, offset=offset)
        pages += 1
        seen += [r["offset"] for r in got["records"]]
        if len(got["records"]) == 3:
            assert got["next_offset"] == got["records"][-1]["offset"] + 1
        assert got["scanned"] == got["next_offset"] - offset
        offset = got["next_offset"]
        if offset == got["high_watermark"]:
            break
        assert pages < 10
    assert seen == expected

    # Key and header filters, together: all must hold.
    got = page(broker, t, 0, key_contains="user-6", header="kind=ord")
    assert [r["offset"] for r in got["records"]] == [n for n in range(1000) if n % 7 == 6 and n % 50 == 13]
    assert page(broker, t, 0, header="kind", max_records=5)["records"][4]["offset"] == 4
    got = page(broker, t, 0, header="kind=nothing", max_records=5)
    assert (got["records"], got["next_offset"], got["scanned"]) == ([], 1000, 1000)
    # Case-sensitive.
    assert page(broker, t, 0, value_contains="NEEDLE")["records"] == []

    # Without a filter a consume is as before: one fetch, no `scanned`.
    plain = page(broker, t, 0, max_records=2)
    assert "scanned" not in plain and [r["offset"] for r in plain["records"]] == [0, 1]
    assert "value_decoded" not in plain["records"][0]

    for bad in ({"header": ""}, {"header": "=x"}, {"key_contains": "k" * 4097}, {"decode": "magic"}):
        q = urllib.parse.urlencode(bad)
        status, err = call(broker, "GET", f"/v1/topics/{t}/partitions/0/records?{q}")
        assert (status, err["error_code"]) == (400, 40001), (bad, err)


def test_filtered_scan_steps_over_transaction_markers(broker, unique):
    """Batches of control records leave no record to go on after: the scan goes on after the
    batch (and a filtered page past committed transactions still reaches the end)."""
    t = create_topic(broker.bootstrap, unique("t"))
    p = producer(broker.bootstrap, transactional_id=unique("tx"))
    p.init_transactions(OP_TIMEOUT_S)
    for i in range(6):
        p.begin_transaction()
        p.produce(t, value=f"tx {i}" + (" hit" if i == 4 else ""), partition=0)
        p.commit_transaction(OP_TIMEOUT_S)
    # Each transaction is a record and a marker: 12 offsets, 6 records.
    got = page(broker, t, 0, value_contains="hit", max_bytes=64)
    assert [r["value"] for r in got["records"]] == ["tx 4 hit"]
    assert got["next_offset"] == got["high_watermark"] == 12
    assert got["scanned"] == 6


# ---- schema-registry decoding -------------------------------------------------------------------

AVRO_USER = {"type": "record", "name": "User", "namespace": "sluice.test", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": ["null", "string"]},
    {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO"]}},
]}


def avro_bytes(schema, datum):
    from fastavro import parse_schema, schemaless_writer

    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), datum)
    return buf.getvalue()


def test_registry_decoding_of_avro_json_and_protobuf(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    avro_id = register(broker, unique("avro") + "-value", json.dumps(AVRO_USER))
    json_id = register(broker, unique("json") + "-value",
                       json.dumps({"type": "object", "properties": {"sku": {"type": "string"}}}), "JSON")
    proto_id = register(broker, unique("proto") + "-value",
                        'syntax = "proto3"; package sluice.test;\n'
                        "message Item { string sku = 1; int32 qty = 2; }\n"
                        "message Order { int64 id = 1; repeated Item items = 2; }\n", "PROTOBUF")
    key_id = register(broker, unique("key") + "-key", '"string"')

    alice = avro_bytes(AVRO_USER, {"id": 7, "name": "alice", "tier": "PRO"})
    # Order (message index [1]: count 1, index 1, zig-zag) {id: 42, items: [{sku: "ab", qty: 3}]}.
    order = b"\x08\x2a" + b"\x12\x06" + b"\x0a\x02ab\x10\x03"
    values = [
        (framed(key_id, avro_bytes("string", "k-1")), framed(avro_id, alice)),
        (None, framed(json_id, b'{"sku": "x-1", "qty": [1, 2]}')),
        (None, framed(proto_id, order, indexes=[2, 2])),
        (None, framed(avro_id, b"\x0e")),  # truncated: framed, not decodable
        (None, framed(987654, b"whatever")),  # an id nobody registered: bytes only
        (b"plain", b"not framed at all"),
    ]
    produce_http(broker, t, [{"partition": 0, "key": None if k is None else b64(k), "value": b64(v)}
                             for k, v in values], encoding="base64")

    got = page(broker, t, 0, decode="registry", encoding="base64")["records"]
    assert got[0]["key_decoded"] == {"schema_id": key_id, "schema_type": "AVRO", "value": "k-1"}
    assert got[0]["value_decoded"] == {"schema_id": avro_id, "schema_type": "AVRO",
                                       "value": {"id": 7, "name": "alice", "tier": "PRO"}}
    # The bytes are still there.
    assert base64.b64decode(got[0]["value"]) == framed(avro_id, alice)
    assert got[1]["value_decoded"] == {"schema_id": json_id, "schema_type": "JSON",
                                       "value": {"sku": "x-1", "qty": [1, 2]}}
    assert got[2]["value_decoded"] == {"schema_id": proto_id, "schema_type": "PROTOBUF",
                                       "value": {"id": "42", "items": [{"sku": "ab", "qty": 3}]}}
    assert "value_decoded" not in got[3] and "truncated" in got[3]["value_decode_error"]
    assert str(avro_id) in got[3]["value_decode_error"]
    for r in got[4:]:
        assert not any(k.endswith(("_decoded", "_decode_error")) for k in r), r
    # decode=none (the default) shows bytes only.
    assert not any("value_decoded" in r for r in page(broker, t, 0)["records"])

    # Filters apply to the bytes, so text inside Avro is found; decoding applies to what returns.
    got = page(broker, t, 0, value_contains="alice", decode="registry")
    assert [r["value_decoded"]["value"]["name"] for r in got["records"]] == ["alice"]

    # Real serializers' bytes: confluent-kafka's AvroSerializer against the same registry.
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    t2 = create_topic(broker.bootstrap, unique("t"))
    ser = AvroSerializer(SchemaRegistryClient({"url": broker.http}), json.dumps(AVRO_USER))
    value = ser({"id": 9, "name": None, "tier": "FREE"}, SerializationContext(t2, MessageField.VALUE))
    produce_all(producer(broker.bootstrap), t2, [(None, value)], partition=0)
    (r,) = page(broker, t2, 0, decode="registry")["records"]
    assert r["value_decoded"]["value"] == {"id": 9, "name": None, "tier": "FREE"}
    assert r["value_decoded"]["schema_type"] == "AVRO"


# ---- live tail ----------------------------------------------------------------------------------

class Tail:
    """One Server-Sent Events stream of /v1/topics/{t}/tail, read with a bounded timeout."""

    def __init__(self, broker, topic, last_event_id=None, **params):
        self.conn = http.client.HTTPConnection("127.0.0.1", broker.http_port, timeout=10)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        q = urllib.parse.urlencode(params)
        self.conn.request("GET", f"/v1/topics/{topic}/tail?{q}", headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.last_id = None

    def error(self):
        return json.loads(self.resp.read())

    def next(self, timeout=10.0):
        """The next event as {"event", "id", "data"} (id-only events included), or fails after
        `timeout` seconds. Comments (keep-alives) are skipped."""
        self.conn.sock.settimeout(timeout)
        ev = {"event": None, "id": None, "data": None}
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, "no event in time"
            line = self.resp.readline()
            assert line, "the stream ended"
            line = line.decode().rstrip("\n")
            if line == "":
                if ev["id"] is not None or ev["data"] is not None or ev["event"] is not None:
                    if ev["id"] is not None:
                        self.last_id = ev["id"]
                    if ev["data"] is not None:
                        ev["data"] = json.loads(ev["data"])
                    return ev
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                ev["data"] = value if ev["data"] is None else ev["data"] + "\n" + value
            elif field in ("event", "id"):
                ev[field] = value

    def records(self, n, timeout=10.0):
        """The next `n` record events (id-only events skipped)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"got {len(out)} of {n} records: {out}"
            ev = self.next(left)
            if ev["event"] == "record":
                out.append(ev)
            else:
                assert ev["event"] is None, ev
        return out

    def close(self):
        self.conn.close()


def test_tail_streams_new_records_and_resumes_from_last_event_id(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    produce_http(broker, t, [{"partition": 0, "value": "old match"}, {"partition": 1, "value": "old"}])
    tail = Tail(broker, t, value_contains="match")
    try:
        assert tail.status == 200 and tail.resp.getheader("Content-Type") == "text/event-stream"
        ready = tail.next()
        assert ready["event"] == "ready" and ready["id"] == "0:1,1:1"
        assert ready["data"] == {"topic": t, "partitions": [{"partition": 0, "offset": 1},
                                                            {"partition": 1, "offset": 1}]}
        # Produced after the tail started (from=end): only these, and only those that match.
        produce_http(broker, t, [{"partition": 0, "value": "nope"}, {"partition": 1, "key": "k", "value": "match a",
                                  "headers": [{"name": "h", "value": "v"}]},
                                 {"partition": 0, "value": "match b"}])
        a, b = sorted(tail.records(2), key=lambda e: e["data"]["partition"], reverse=True)
        assert a["data"] == {"partition": 1, "offset": 1, "timestamp": a["data"]["timestamp"], "key": "k",
                             "value": "match a", "headers": [{"name": "h", "value": "v"}], "encoding": "utf8"}
        assert b["data"]["partition"] == 0 and b["data"]["offset"] == 2 and b["data"]["value"] == "match b"
        # Ids are every partition's next offset after the event.
        assert {a["id"], b["id"]} <= {"0:1,1:2", "0:3,1:2", "0:3,1:1"}
        resume = tail.last_id
    finally:
        tail.close()
    assert resume == "0:3,1:2"

    # Produced while nobody listens; the reconnect with Last-Event-ID gets exactly those.
    produce_http(broker, t, [{"partition": 1, "value": "match c"}, {"partition": 0, "value": "skip"},
                             {"partition": 0, "value": "match d"}])
    tail = Tail(broker, t, last_event_id=resume, value_contains="match")
    try:
        ready = tail.next()
        assert ready["event"] == "ready" and ready["id"] == resume
        got = tail.records(2)
        assert sorted(e["data"]["value"] for e in got) == ["match c", "match d"]
        assert tail.last_id == "0:5,1:3"
        # Records that do not match move the positions with an id-only event (EventSource
        # dispatches nothing, but keeps it as lastEventId), so a reconnect does not scan them
        # again.
        produce_http(broker, t, [{"partition": 0, "value": "zzz"}])
        assert tail.next() == {"event": None, "id": "0:6,1:3", "data": None}
    finally:
        tail.close()

    # from=beginning, one partition, with registry decoding and base64.
    tail = Tail(broker, t, partition=0, **{"from": "beginning"}, encoding="base64")
    try:
        assert tail.next()["data"]["partitions"] == [{"partition": 0, "offset": 0}]
        got = [e["data"] for e in tail.records(6)]
        assert [base64.b64decode(r["value"]) for r in got] == [b"old match", b"nope", b"match b", b"skip",
                                                              b"match d", b"zzz"]
        assert {r["partition"] for r in got} == {0} and {r["encoding"] for r in got} == {"base64"}
    finally:
        tail.close()


def test_tail_decodes_with_the_registry(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    avro_id = register(broker, unique("avro") + "-value", json.dumps(AVRO_USER))
    tail = Tail(broker, t, decode="registry")
    try:
        assert tail.next()["event"] == "ready"
        value = framed(avro_id, avro_bytes(AVRO_USER, {"id": 1, "name": "bob", "tier": "FREE"}))
        produce_http(broker, t, [{"value": b64(value)}], encoding="base64")
        (ev,) = tail.records(1)
        assert ev["data"]["value_decoded"] == {"schema_id": avro_id, "schema_type": "AVRO",
                                               "value": {"id": 1, "name": "bob", "tier": "FREE"}}
    finally:
        tail.close()


def test_tail_refusals(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    cases = [
        (f"/v1/topics/{unique('missing')}/tail", {}, 404, 40401),
        (f"/v1/topics/{t}/tail?partition=2", {}, 404, 40401),
        (f"/v1/topics/{t}/tail?from=middle", {}, 400, 40001),
        (f"/v1/topics/{t}/tail?header==x", {}, 400, 40001),
        (f"/v1/topics/{t}/tail", {"Last-Event-ID": "0:x"}, 400, 40001),
        (f"/v1/topics/{t}/tail", {"Last-Event-ID": "-1:4"}, 400, 40001),
    ]
    for path, headers, status, code in cases:
        req = urllib.request.Request(broker.http + path, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=OP_TIMEOUT_S)
        assert e.value.code == status, path
        assert json.loads(e.value.read())["error_code"] == code, path


def test_tail_ends_with_an_error_when_its_topic_is_deleted(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    tail = Tail(broker, t)
    try:
        assert tail.next()["event"] == "ready"
        status, _ = call(broker, "DELETE", f"/v1/topics/{t}")
        assert status == 204
        ev = tail.next(15)
        while ev["event"] is None:
            ev = tail.next(15)
        assert ev["event"] == "tail-error" and ev["data"]["error_code"] == 40401, ev
        assert tail.resp.readline() == b"", "the stream ends after tail-error"
    finally:
        tail.close()


def test_an_open_tail_does_not_hold_up_shutdown(broker_factory, unique):
    """SIGTERM: the node's Kafka listener closes the tail's connection, the tail ends with a
    tail-error (an EventSource reconnects with Last-Event-ID), and the broker exits cleanly."""
    b = broker_factory()
    t = create_topic(b.bootstrap, unique("t"))
    tail = Tail(b, t)
    try:
        assert tail.next()["event"] == "ready"
        # stop() gives the broker 15 s before kill -9 (and a non-zero status): an open tail
        # holding up the shutdown fails here.
        assert b.stop() == 0
        ev = tail.next(5)
        while ev["event"] is None:
            ev = tail.next(5)
        assert ev["event"] == "tail-error" and ev["data"]["error_code"] == 50301, ev
    finally:
        tail.close()
    assert "did not finish" not in b.log_tail(), "the shutdown was not clean"


def test_tails_are_bounded_per_node_and_freed_on_disconnect(broker_factory, unique):
    b = broker_factory()
    t = create_topic(b.bootstrap, unique("t"))
    tails = []
    try:
        for _ in range(MAX_API_TAILS):
            tail = Tail(b, t)
            tails.append(tail)
            assert tail.status == 200 and tail.next()["event"] == "ready"
        extra = Tail(b, t)
        assert extra.status == 429 and extra.error()["error_code"] == 42901
        extra.close()
        # A client that goes away frees its place: the server notices the closed connection.
        tails.pop().close()

        def opens():
            tail = Tail(b, t)
            if tail.status != 200:
                tail.close()
                return False
            tails.append(tail)
            return tail.next()["event"] == "ready"

        wait_until(opens, 30, "a tail to open once another disconnected")
        # Every tail still streams.
        produce_http(b, t, [{"value": "to all"}])
        for tail in tails:
            assert tail.records(1)[0]["data"]["value"] == "to all"
    finally:
        for tail in tails:
            tail.close()

    # All closed: every place is free again. Places are taken as they free and kept (opening
    # MAX at a time and closing them between tries would itself hold the places it waits for).
    held = []
    try:
        def all_free():
            tail = Tail(b, t)
            if tail.status == 200:
                held.append(tail)
            else:
                tail.close()
            return len(held) == MAX_API_TAILS

        wait_until(all_free, 30, "every tail's place to be freed")
    finally:
        for x in held:
            x.close()


# ---- consumer-group offset reset ----------------------------------------------------------------

def reset(broker, group, body):
    return call(broker, "POST", f"/v1/groups/{group}/offsets/reset", body)


def committed(broker, group, topic):
    status, desc = call(broker, "GET", f"/v1/groups/{group}")
    assert status == 200, desc
    return {o["partition"]: o["committed_offset"] for o in desc["offsets"] if o["topic"] == topic}


def test_offset_reset_plans_and_executes_as_the_cli_does(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"), partitions=2)
    g = unique("g")
    base = int(time.time() * 1000) - 100_000
    p = producer(broker.bootstrap)
    produce_all(p, t, [(None, b"a%d" % i, base + i * 1000) for i in range(10)], partition=0)
    produce_all(p, t, [(None, b"b%d" % i, base + i * 1000) for i in range(4)], partition=1)
    c = consumer(broker.bootstrap, g)
    c.commit(offsets=[TopicPartition(t, 0, 5), TopicPartition(t, 1, 1)], asynchronous=False)
    c.close()

    # A dry run changes nothing.
    status, plan = reset(broker, g, {"topic": t, "to": "earliest"})
    assert status == 200, plan
    assert plan == {"group": g, "topic": t, "executed": False, "offsets": [
        {"topic": t, "partition": 0, "current_offset": 5, "new_offset": 0},
        {"topic": t, "partition": 1, "current_offset": 1, "new_offset": 0}]}
    assert committed(broker, g, t) == {0: 5, 1: 1}
    # The CLI plans the same (sluice_client::reset).
    out = subprocess.run([sluice_bin(), "group", "reset-offsets", "--group", g, "--topic", t, "--to-earliest",
                          "--bootstrap-server", broker.bootstrap, "--output", "json"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == plan

    # shift: from the committed offset, clamped to the log start.
    status, plan = reset(broker, g, {"topic": t, "to": "shift", "value": -2, "execute": True})
    assert (status, plan["executed"]) == (200, True), plan
    assert [o["new_offset"] for o in plan["offsets"]] == [3, 0]
    assert committed(broker, g, t) == {0: 3, 1: 0}
    # offset: clamped to the log end.
    status, plan = reset(broker, g, {"topic": t, "to": "offset", "value": 100, "execute": False})
    assert [o["new_offset"] for o in plan["offsets"]] == [10, 4]
    # timestamp: the first record at or after it; after every record, the end.
    status, plan = reset(broker, g, {"topic": t, "to": "timestamp", "value": base + 2500, "execute": True})
    assert [o["new_offset"] for o in plan["offsets"]] == [3, 3]
    assert committed(broker, g, t) == {0: 3, 1: 3}
    status, plan = reset(broker, g, {"topic": t, "to": "timestamp", "value": base + 10**9})
    assert [o["new_offset"] for o in plan["offsets"]] == [10, 4]
    status, plan = reset(broker, g, {"topic": t, "to": "latest", "value": None, "execute": True})
    assert status == 200 and committed(broker, g, t) == {0: 10, 1: 4}
    status, desc = call(broker, "GET", f"/v1/groups/{g}")
    assert desc["total_lag"] == 0

    # A group that never committed and has no members: reset creates its offsets (Kafka's tool too).
    fresh = unique("g")
    status, plan = reset(broker, fresh, {"topic": t, "to": "earliest", "execute": True})
    assert status == 200 and [o["current_offset"] for o in plan["offsets"]] == [None, None]
    assert committed(broker, fresh, t) == {0: 0, 1: 0}
    # A consumer group is not a share group.
    status, err = call(broker, "GET", f"/v1/share-groups/{fresh}")
    assert (status, err["error_code"]) == (404, 40402), err

    for body, code in [({"topic": t, "to": "sideways"}, (400, 40001)),
                       ({"topic": t, "to": "offset"}, (400, 40001)),
                       ({"topic": t, "to": "earliest", "value": 3}, (400, 40001)),
                       ({"topic": t, "to": "timestamp", "value": -5}, (400, 40001)),
                       ({"topic": unique("missing"), "to": "latest"}, (404, 40401)),
                       ({"topic": t, "to": "latest", "colour": "red"}, (422, 42201))]:
        status, err = reset(broker, g, body)
        assert (status, err["error_code"]) == code, (body, err)
    assert committed(broker, g, t) == {0: 10, 1: 4}


def test_offset_reset_refuses_an_active_group(broker, unique):
    t = create_topic(broker.bootstrap, unique("t"))
    g = unique("g")
    produce_all(producer(broker.bootstrap), t, [(None, b"x")] * 3, partition=0)
    c = consumer(broker.bootstrap, g)
    try:
        c.subscribe([t])

        def joined():
            c.poll(0.2)
            return bool(c.assignment())

        wait_until(joined, 30, "the consumer to join")
        status, err = reset(broker, g, {"topic": t, "to": "earliest", "execute": True})
        assert (status, err["error_code"]) == (409, 40905), err
        assert "active member" in err["message"]
    finally:
        c.close()
    # Once it left, the reset goes through.
    wait_until(lambda: reset(broker, g, {"topic": t, "to": "earliest", "execute": True})[0] == 200,
               30, "the reset once the group is empty")
    assert committed(broker, g, t) == {0: 0}


def test_decoding_is_bounded_per_answer(broker, unique):
    """One answer decodes at most 256 KiB of keys and values (MAX_API_DECODE_BYTES): past it a
    record says it was not decoded, and asking for it alone decodes it."""
    t = create_topic(broker.bootstrap, unique("t"))
    sid = register(broker, t + "-value", json.dumps("bytes"))
    big = framed(sid, avro_bytes("bytes", b"x" * 200_000))
    produce_all(producer(broker.bootstrap, message_max_bytes=2_000_000), t,
                [(None, big), (None, big)], partition=0)
    both = page(broker, t, 0, decode="registry", offset=0)["records"]
    assert [("value_decoded" in r, "value_decode_error" in r) for r in both] == [(True, False), (False, True)]
    assert "not decoded" in both[1]["value_decode_error"]
    (second,) = page(broker, t, 0, decode="registry", offset=1)["records"]
    assert second["value_decoded"]["schema_id"] == sid


def test_unfiltered_next_offset_steps_past_transaction_markers(broker, unique):
    """A consume that reads only a commit marker still moves next_offset on, so paging by it
    never stands still."""
    from confluent_kafka import Producer
    t = create_topic(broker.bootstrap, unique("t"))
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("tx")})
    p.init_transactions(OP_TIMEOUT_S)
    p.begin_transaction()
    p.produce(t, b"v", partition=0)
    p.commit_transaction(OP_TIMEOUT_S)
    # Offset 0 is the record, 1 the commit marker.
    body = page(broker, t, 0, offset=1)
    assert body["records"] == [] and body["next_offset"] == 2 == body["high_watermark"], body
