"""Hostile schemas and records against the real binary: what the registry fuzz targets
(`fuzz/fuzz_targets/registry_*.rs`) found must not take the broker down.

- A recursive Avro schema let a 20 KB record nest 10,000 levels; validating it on produce
  overflowed the worker's stack and aborted the whole broker. Now INVALID_RECORD.
- A JSON Schema whose `allOf`/`$ref` graph expands to 2^40 subschemas made validating one
  record run forever. Now refused at registration (42201).
"""

import json
import struct
import urllib.error
import urllib.request

from confluent_kafka import KafkaError

from kutil import OP_TIMEOUT_S, create_topic, producer

NODE = {"type": "record", "name": "Node", "fields": [
    {"name": "v", "type": "int"},
    {"name": "next", "type": ["null", "Node"], "default": None}]}


def rest(broker, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(broker.http + path, data=data, method=method, headers={
        "Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=OP_TIMEOUT_S) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def deliver(p, topic, value):
    reports = []
    p.produce(topic, value=value, on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(OP_TIMEOUT_S) == 0, "no delivery report in time"
    assert len(reports) == 1
    return reports[0]


def framed(schema_id, payload):
    return b"\x00" + struct.pack(">I", schema_id) + payload


def test_deeply_nested_avro_record_is_refused_not_fatal(broker, unique):
    topic = create_topic(broker.bootstrap, unique("deep"), config={
        "confluent.value.schema.validation": "true", "sluice.schema.validation.parse": "true"})
    status, body = rest(broker, "POST", f"/subjects/{topic}-value/versions",
                        {"schema": json.dumps(NODE)})
    assert status == 200, body
    sid = body["id"]
    p = producer(broker.bootstrap, linger_ms=0)

    # v=1 and "next is a Node", 10,000 times, then v=1 and null.
    deep = b"\x02\x02" * 10_000 + b"\x02\x00"
    err = deliver(p, topic, framed(sid, deep))
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, repr(err)

    # The broker is still up and a list of 50 nodes is fine.
    assert deliver(p, topic, framed(sid, b"\x02\x02" * 50 + b"\x02\x00")) is None
    status, _ = rest(broker, "GET", "/subjects")
    assert status == 200


def test_exponential_json_schema_is_refused(broker, unique):
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
            for i in range(40)}
    defs["d40"] = {"type": "string"}
    schema = {"$defs": defs, "$ref": "#/$defs/d0"}
    status, body = rest(broker, "POST", f"/subjects/{unique('dag')}-value/versions",
                        {"schemaType": "JSON", "schema": json.dumps(schema)})
    assert status == 422 and body["error_code"] == 42201, (status, body)
    assert "subschemas" in body["message"], body
