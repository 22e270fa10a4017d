"""The built-in schema registry (issue #4, BRIEF §6) through Confluent's own Python client.

confluent-kafka-python's SchemaRegistryClient and its Avro, Protobuf and JSON Schema serializers
talk to the broker's HTTP port; records they frame go through a topic with a real Producer and
Consumer and come back equal. Then: compatibility levels (BACKWARD by default, per-subject
FULL_TRANSITIVE), Confluent's error codes, soft and hard delete, a restart (SIGTERM and kill -9)
keeping every schema and id, broker-side validation (`confluent.value.schema.validation` and
friends refusing records with INVALID_RECORD), and the `sluice schema` CLI.

The Protobuf message classes are built at run time from a FileDescriptorProto (no generated
_pb2 module, no protoc).
"""

import json
import os
import struct
import subprocess
import urllib.error
import urllib.request

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import sluice_bin
from kutil import OP_TIMEOUT_S, consume_n, consumer, create_topic, produce_all, producer

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer  # noqa: E402
from confluent_kafka.schema_registry.protobuf import (  # noqa: E402
    ProtobufDeserializer,
    ProtobufSerializer,
)

# ---- schemas ------------------------------------------------------------------------------------

USER_V1 = {
    "type": "record", "name": "User", "namespace": "sluice.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
    ],
}
# Adds a field with a default: BACKWARD (and FORWARD) compatible.
USER_V2 = {**USER_V1, "fields": USER_V1["fields"] + [
    {"name": "email", "type": ["null", "string"], "default": None}]}
# Adds a field without a default: new readers cannot read old data, so not BACKWARD compatible.
USER_BAD = {**USER_V1, "fields": USER_V1["fields"] + [{"name": "age", "type": "int"}]}

ORDER_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "sku": {"type": "string"},
        "qty": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "sku", "qty"],
}


def avro(schema) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


def proto_classes():
    """(Item, Order) message classes from a FileDescriptorProto built here: two messages (so
    Order's Confluent message index is [1]), a nested repeated message and an enum."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="sluice_test/order.proto", package="sluice.test", syntax="proto3")
    status = fdp.enum_type.add(name="Status")
    status.value.add(name="NEW", number=0)
    status.value.add(name="SHIPPED", number=1)
    item = fdp.message_type.add(name="Item")
    item.field.add(name="sku", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    item.field.add(name="qty", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    order = fdp.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    order.field.add(name="customer", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    order.field.add(name="items", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                    type_name=".sluice.test.Item")
    order.field.add(name="status", number=4, type=F.TYPE_ENUM, label=F.LABEL_OPTIONAL,
                    type_name=".sluice.test.Status")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(fdp.SerializeToString())
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"sluice.test.{n}"))
                 for n in ("Item", "Order"))


Item, Order = proto_classes()


# ---- helpers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sr(broker):
    """A SchemaRegistryClient on the broker's HTTP port (which must serve the registry)."""
    status, body = rest(broker, "GET", "/subjects")
    assert status == 200, (f"GET /subjects on the broker's HTTP port answered {status} {body!r}: "
                           "is this binary built with the schema registry?")
    return SchemaRegistryClient({"url": broker.http})


def rest(broker, method, path, body=None):
    """One raw REST call: (status, parsed JSON body or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(broker.http + path, data=data, method=method, headers={
        "Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=OP_TIMEOUT_S) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def registry_error(excinfo) -> SchemaRegistryError:
    e = excinfo.value
    assert isinstance(e, SchemaRegistryError), repr(e)
    return e


def frame_id(b: bytes) -> int:
    """The schema id of a Confluent-framed payload (magic byte 0, 4-byte big-endian id)."""
    assert b is not None and len(b) >= 5 and b[0] == 0, f"not Confluent-framed: {b!r}"
    return struct.unpack(">I", b[1:5])[0]


def framed(schema_id: int, payload: bytes = b"") -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def consume_from_start(broker, topic, n):
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        return consume_n(c, n)
    finally:
        c.close()


def deliver(p, topic, value, key=None):
    """Produces one record and waits for its delivery report: None, or the KafkaError."""
    reports = []
    p.produce(topic, value=value, key=key, on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(OP_TIMEOUT_S) == 0, "no delivery report in time"
    assert len(reports) == 1
    return reports[0]


def assert_refused(err, what):
    assert err is not None, f"{what} was accepted; the validating topic should refuse it"
    assert err.code() == KafkaError.INVALID_RECORD, f"{what}: {err!r} (want INVALID_RECORD)"


# ---- serializers round trip ---------------------------------------------------------------------

def _serde(fmt, sr):
    """(serializer, deserializer, records, normalise) for one format."""
    if fmt == "avro":
        records = [{"id": i, "name": f"user-{i}", "email": None if i % 2 else f"u{i}@x"}
                   for i in range(5)]
        return (AvroSerializer(sr, json.dumps(USER_V2)), AvroDeserializer(sr), records,
                lambda v: v)
    if fmt == "protobuf":
        records = [Order(id=i, customer=f"c{i}", status=i % 2,
                         items=[Item(sku=f"s{j}", qty=j + 1) for j in range(i)])
                   for i in range(5)]
        return (ProtobufSerializer(Order, sr, {"use.deprecated.format": False}),
                ProtobufDeserializer(Order, {"use.deprecated.format": False}),
                records, lambda m: m.SerializeToString(deterministic=True))
    records = [{"id": i, "sku": f"sku-{i}", "qty": i + 1, "tags": ["a"] * i} for i in range(5)]
    return (JSONSerializer(json.dumps(ORDER_JSON_SCHEMA), sr), JSONDeserializer(None, schema_registry_client=sr),
            records, lambda v: v)


@pytest.mark.parametrize("validating", [False, True], ids=["plain-topic", "validating-topic"])
@pytest.mark.parametrize("fmt", ["avro", "protobuf", "json"])
def test_serializers_round_trip(broker, sr, unique, fmt, validating):
    """Each serializer registers its schema under <topic>-value, frames records with its id; the
    records come back through the topic and deserialize to equal objects. On a topic that
    validates and parses, the real serializers' output is accepted."""
    topic = unique(fmt)
    config = {"confluent.value.schema.validation": "true",
              "sluice.schema.validation.parse": "true"} if validating else None
    create_topic(broker.bootstrap, topic, config=config)
    ser, de, records, norm = _serde(fmt, sr)
    ctx = SerializationContext(topic, MessageField.VALUE)
    values = [ser(r, ctx) for r in records]

    latest = sr.get_latest_version(f"{topic}-value")
    assert latest.version == 1
    assert latest.schema.schema_type == {"avro": "AVRO", "protobuf": "PROTOBUF", "json": "JSON"}[fmt]
    assert {frame_id(v) for v in values} == {latest.schema_id}
    if fmt == "protobuf":
        assert all(v[5] == 2 and v[6] == 2 for v in values), "Order's message index should be [1]"

    p = producer(broker.bootstrap)
    produce_all(p, topic, [(str(i).encode(), v) for i, v in enumerate(values)])
    got = consume_from_start(broker, topic, len(values))
    assert [m.value() for m in got] == values
    back = [de(m.value(), ctx) for m in got]
    assert [norm(b) for b in back] == [norm(r) for r in records]


# ---- compatibility ------------------------------------------------------------------------------

def test_backward_default_refuses_incompatible_avro(sr, unique):
    subject = unique("compat") + "-value"
    assert sr.get_compatibility() == "BACKWARD"
    id1 = sr.register_schema(subject, avro(USER_V1))

    with pytest.raises(SchemaRegistryError) as ei:
        sr.register_schema(subject, avro(USER_BAD))
    e = registry_error(ei)
    assert e.http_status_code == 409, e
    assert e.error_code == 40901, e
    assert "age" in e.error_message, f"the message should name the new field: {e.error_message}"

    assert sr.test_compatibility(subject, avro(USER_BAD)) is False
    assert sr.test_compatibility(subject, avro(USER_V2)) is True
    reg = sr.register_schema_full_response(subject, avro(USER_V2))
    assert (reg.version, reg.schema_id != id1) == (2, True)
    assert sr.get_versions(subject) == [1, 2]


def test_full_transitive_per_subject(sr, unique):
    """v1 {id, name}; v2 gives name a default; v3 drops name. v3 is FULL-compatible with v2 but not
    with v1 (a v1 reader needs `name`), so FULL accepts it and FULL_TRANSITIVE does not."""
    subject = unique("full") + "-value"
    v2 = {**USER_V1, "fields": [{"name": "id", "type": "long"},
                                {"name": "name", "type": "string", "default": ""}]}
    v3 = {**USER_V1, "fields": [{"name": "id", "type": "long"}]}
    sr.register_schema(subject, avro(USER_V1))
    sr.register_schema(subject, avro(v2))

    assert sr.set_compatibility(subject, "FULL_TRANSITIVE") == {"compatibility": "FULL_TRANSITIVE"}
    assert sr.get_compatibility(subject) == "FULL_TRANSITIVE"
    assert sr.get_compatibility() == "BACKWARD", "a subject's level must not change the global one"

    assert sr.test_compatibility(subject, avro(v3), version="latest") is True
    assert sr.test_compatibility(subject, avro(v3), version=1) is False
    assert sr.test_compatibility_all_versions(subject, avro(v3)) is False
    with pytest.raises(SchemaRegistryError) as ei:
        sr.register_schema(subject, avro(v3))
    assert (registry_error(ei).http_status_code, registry_error(ei).error_code) == (409, 40901)

    sr.set_compatibility(subject, "FULL")
    assert sr.test_compatibility_all_versions(subject, avro(v3)) is True
    assert sr.register_schema_full_response(subject, avro(v3)).version == 3


# ---- error codes --------------------------------------------------------------------------------

def test_error_codes(broker, sr, unique):
    subject = unique("err") + "-value"
    sr.register_schema(subject, avro(USER_V1))

    cases = [
        (lambda: sr.get_latest_version(unique("missing")), 404, 40401),
        (lambda: sr.get_version(subject, 42), 404, 40402),
        (lambda: sr.get_schema(987654321), 404, 40403),
        (lambda: sr.register_schema(subject, Schema('{"type": "record", "name": "X"}', "AVRO")),
         422, 42201),
        (lambda: sr.register_schema(unique("p"), Schema("message {", "PROTOBUF")), 422, 42201),
        (lambda: sr.register_schema(unique("j"), Schema('{"type": 12}', "JSON")), 422, 42201),
    ]
    for i, (call, status, code) in enumerate(cases):
        with pytest.raises(SchemaRegistryError) as ei:
            call()
        e = registry_error(ei)
        assert (e.http_status_code, e.error_code) == (status, code), f"case {i}: {e}"

    # The raw body is Confluent's: {"error_code": ..., "message": ...}.
    status, body = rest(broker, "GET", f"/subjects/{unique('nope')}/versions")
    assert status == 404 and body["error_code"] == 40401 and body["message"], body


# ---- delete -------------------------------------------------------------------------------------

def test_soft_then_hard_delete(broker, sr, unique):
    subject = unique("del") + "-value"
    # A record name of its own: the same schema under another subject would share its id.
    id1 = sr.register_schema(subject, avro({**USER_V1, "name": "Deleted"}))
    id2 = sr.register_schema(subject, avro({**USER_V2, "name": "Deleted"}))

    # Soft-delete version 1: gone from the listing, still there with deleted=true, id resolves.
    assert sr.delete_version(subject, 1) == 1
    assert sr.get_versions(subject) == [2]
    assert rest(broker, "GET", f"/subjects/{subject}/versions?deleted=true") == (200, [1, 2])
    status, body = rest(broker, "GET", f"/subjects/{subject}/versions/1")
    assert (status, body["error_code"]) == (404, 40402), body
    assert rest(broker, "GET", f"/schemas/ids/{id1}")[0] == 200

    # Hard-delete it: gone even with deleted=true.
    assert sr.delete_version(subject, 1, permanent=True) == 1
    assert rest(broker, "GET", f"/subjects/{subject}/versions?deleted=true") == (200, [2])

    # A permanent delete needs a soft one first (40405).
    with pytest.raises(SchemaRegistryError) as ei:
        sr.delete_subject(subject, permanent=True)
    assert registry_error(ei).error_code == 40405

    assert sr.delete_subject(subject) == [2]
    assert subject not in sr.get_subjects()
    assert subject in rest(broker, "GET", "/subjects?deleted=true")[1]
    with pytest.raises(SchemaRegistryError) as ei:
        sr.delete_subject(subject)
    assert registry_error(ei).error_code == 40404  # already soft-deleted

    assert sr.delete_subject(subject, permanent=True) == [2]
    assert subject not in rest(broker, "GET", "/subjects?deleted=true")[1]
    status, body = rest(broker, "GET", f"/schemas/ids/{id2}")
    assert (status, body["error_code"]) == (404, 40403), body

    # Ids are never reused.
    id3 = sr.register_schema(unique("after") + "-value", avro({**USER_V1, "name": "Fresh"}))
    assert id3 > max(id1, id2)


# ---- restart ------------------------------------------------------------------------------------

def test_restart_keeps_schemas_and_ids(broker_factory, unique):
    b = broker_factory()
    sr1 = SchemaRegistryClient({"url": b.http})
    subjects = {
        unique("a") + "-value": [avro(USER_V1), avro(USER_V2)],
        unique("j") + "-value": [Schema(json.dumps(ORDER_JSON_SCHEMA), "JSON")],
        unique("p") + "-value": [Schema(
            'syntax = "proto3";\npackage sluice.test;\nmessage Ping { int64 at = 1; }\n',
            "PROTOBUF")],
    }
    for s, schemas in subjects.items():
        for schema in schemas:
            sr1.register_schema(s, schema)
    first = next(iter(subjects))
    sr1.set_compatibility(first, "FULL")
    soft = unique("soft") + "-value"
    sr1.register_schema(soft, avro({**USER_V1, "name": "Soft"}))
    sr1.delete_subject(soft)

    def snapshot(client):
        out = {}
        for s in subjects:
            for v in client.get_versions(s):
                reg = client.get_version(s, v)
                out[(s, v)] = (reg.schema_id, reg.schema.schema_type, reg.schema.schema_str)
        ids = {i for i, _, _ in out.values()}
        by_id = {i: client.get_schema(i).schema_str for i in ids}
        return out, by_id, client.get_compatibility(first)

    before = snapshot(sr1)
    assert len(before[0]) == 4
    live = sorted(subjects)
    assert sorted(sr1.get_subjects()) == live

    b.restart()
    sr2 = SchemaRegistryClient({"url": b.http})
    assert snapshot(sr2) == before
    assert sorted(sr2.get_subjects()) == live
    status, body = rest(b, "GET", "/subjects?deleted=true")
    assert status == 200 and soft in body, "the soft delete must survive too"
    # A new schema after the restart gets an id no earlier schema has.
    new_subject = unique("n") + "-value"
    new_id = sr2.register_schema(new_subject, avro({**USER_V1, "name": "New"}))
    assert new_id > max(before[1])

    b.kill9()
    b.start()
    sr3 = SchemaRegistryClient({"url": b.http})
    assert snapshot(sr3) == before
    assert sorted(sr3.get_subjects()) == sorted(live + [new_subject])
    assert sr3.get_latest_version(new_subject).schema_id == new_id, \
        "a schema registered just before kill -9 is kept"


# ---- broker-side validation ---------------------------------------------------------------------

def test_validation_refuses_unframed_and_unknown_ids(broker, sr, unique):
    topic = create_topic(broker.bootstrap, unique("val"),
                         config={"confluent.value.schema.validation": "true"})
    good_id = sr.register_schema(f"{topic}-value", avro(USER_V1))
    other_id = sr.register_schema(unique("other") + "-value", avro({**USER_V1, "name": "Other"}))
    p = producer(broker.bootstrap, linger_ms=0)

    assert_refused(deliver(p, topic, b"plain bytes, no framing"), "an unframed record")
    assert_refused(deliver(p, topic, framed(987654), b"\x02\x02a"), "an unknown schema id")
    assert_refused(deliver(p, topic, framed(other_id), b"\x02\x02a"),
                   "an id registered under another subject")
    assert_refused(deliver(p, topic, None), "a null value")
    assert_refused(deliver(p, topic, b"\x01" + struct.pack(">I", good_id)), "a bad magic byte")

    # Framed with the id registered under <topic>-value: accepted (payload not parsed here).
    assert deliver(p, topic, framed(good_id, b"\x02\x02a")) is None
    assert deliver(p, topic, framed(good_id, b"not avro at all")) is None
    got = consume_from_start(broker, topic, 2)
    assert [frame_id(m.value()) for m in got] == [good_id, good_id]

    # Keys are checked only where asked; a topic without the configs takes anything.
    plain = create_topic(broker.bootstrap, unique("plain"))
    assert deliver(p, plain, b"anything", key=b"k") is None


def test_validation_error_names_the_record(broker, sr, unique):
    """librdkafka reports only the code; kafka-python surfaces ProduceResponse's per-record
    errors (KIP-467): in one batch of three, the bad middle record is named (batch index 1)
    and the whole batch is refused."""
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError, KafkaError as KPError

    topic = create_topic(broker.bootstrap, unique("idx"),
                         config={"confluent.value.schema.validation": "true"})
    sid = sr.register_schema(f"{topic}-value", avro(USER_V1))
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5000, retries=0)
    try:
        futures = [p.send(topic, v, partition=0)
                   for v in (framed(sid, b"\x02\x02a"), b"unframed", framed(sid, b"\x02\x02b"))]
        p.flush(OP_TIMEOUT_S)
        errors = [f.exception for f in futures]
    finally:
        p.close(timeout=OP_TIMEOUT_S)
    assert all(isinstance(e, KPError) for e in errors), f"the whole batch must be refused: {errors}"
    bad = errors[1]
    assert isinstance(bad, InvalidRecordError), repr(bad)
    assert "record 1" in str(bad) and topic in str(bad), f"the message should name the record: {bad}"
    assert "record 1" not in str(errors[0]), errors[0]


def test_validation_keys_and_redpanda_alias(broker, sr, unique):
    p = producer(broker.bootstrap, linger_ms=0)
    keyed = create_topic(broker.bootstrap, unique("key"),
                         config={"confluent.key.schema.validation": "true"})
    key_id = sr.register_schema(f"{keyed}-key", Schema('"string"', "AVRO"))
    assert_refused(deliver(p, keyed, b"v", key=b"raw key"), "an unframed key")
    assert_refused(deliver(p, keyed, b"v", key=None), "a null key")
    assert deliver(p, keyed, b"any value", key=framed(key_id, b"\x02k")) is None

    rp = create_topic(broker.bootstrap, unique("rp"),
                      config={"redpanda.value.schema.id.validation": "true"})
    rp_id = sr.register_schema(f"{rp}-value", avro(USER_V1))
    assert_refused(deliver(p, rp, b"unframed"), "an unframed record (Redpanda's config name)")
    assert deliver(p, rp, framed(rp_id, b"\x02\x02a")) is None


def test_validation_parse_refuses_undecodable_payloads(broker, sr, unique):
    from fastavro import parse_schema, schemaless_writer
    import io

    topic = create_topic(broker.bootstrap, unique("parse"), config={
        "confluent.value.schema.validation": "true", "sluice.schema.validation.parse": "true"})
    sid = sr.register_schema(f"{topic}-value", avro(USER_V1))
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(USER_V1), {"id": 7, "name": "seven"})
    p = producer(broker.bootstrap, linger_ms=0)

    assert_refused(deliver(p, topic, framed(sid, b"")), "an empty Avro payload")
    assert_refused(deliver(p, topic, framed(sid, b"\x0e\x7f")), "a truncated Avro payload")
    assert deliver(p, topic, framed(sid, buf.getvalue())) is None
    (m,) = consume_from_start(broker, topic, 1)
    assert AvroDeserializer(sr)(m.value(), SerializationContext(topic, MessageField.VALUE)) == \
        {"id": 7, "name": "seven"}


# ---- the CLI ------------------------------------------------------------------------------------

def cli(broker, *args, stdin=None):
    env = dict(os.environ, SLUICE_REGISTRY_URL=broker.http)
    return subprocess.run([sluice_bin(), "schema", *args], env=env, capture_output=True,
                          text=True, timeout=OP_TIMEOUT_S, input=stdin)


def test_cli(broker, unique, tmp_path):
    subject = unique("cli") + "-value"
    v1 = tmp_path / "user.avsc"
    v1.write_text(json.dumps(USER_V1, indent=2))
    bad = tmp_path / "user-bad.avsc"
    bad.write_text(json.dumps(USER_BAD))
    good = tmp_path / "user-v2.avsc"
    good.write_text(json.dumps(USER_V2))

    r = cli(broker, "register", "--subject", subject, "--file", str(v1))
    assert r.returncode == 0, r.stderr
    r = cli(broker, "register", "--subject", subject, "--file", str(v1), "--output", "json")
    assert r.returncode == 0, r.stderr
    reg = json.loads(r.stdout)
    assert (reg["subject"], reg["version"], reg["schemaType"]) == (subject, 1, "AVRO")
    sid = reg["id"]
    assert f"schema id {sid}" in cli(broker, "register", "-s", subject, "-f", str(v1)).stdout

    r = cli(broker, "list", "--output", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["subject"]: row for row in json.loads(r.stdout)}
    assert (rows[subject]["version"], rows[subject]["id"], rows[subject]["schemaType"]) == \
        (1, sid, "AVRO")
    r = cli(broker, "list", "--subject-prefix", subject)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SUBJECT", "VERSION", "ID", "TYPE"]
    assert lines[1].split() == [subject, "1", str(sid), "AVRO"]

    # check: exit 1 and the reason when incompatible, 0 when compatible.
    r = cli(broker, "check", "--subject", subject, "--file", str(bad))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "NOT compatible" in r.stdout and "age" in r.stdout, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cli(broker, "check", "--subject", subject, "--file", str(good), "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["is_compatible"] is True

    r = cli(broker, "get", "--id", str(sid), "--output", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert json.loads(got["schema"])["name"] == "User" and got["schemaType"] == "AVRO"
    assert {"subject": subject, "version": 1} in got["versions"]
    r = cli(broker, "get", "--subject", subject, "--schema-only")
    assert r.returncode == 0 and json.loads(r.stdout)["fields"][0]["name"] == "id", r

    # Errors: one stderr line with the registry's code, exit 1; usage errors exit 2.
    r = cli(broker, "get", "--subject", unique("missing"))
    assert r.returncode == 1 and "40401" in r.stderr, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cli(broker, "register", "--subject", subject, "--schema", '{"type": "record"}')
    assert r.returncode == 1 and "42201" in r.stderr, (r.returncode, r.stderr)
    assert cli(broker, "get").returncode == 2
    assert cli(broker, "config", "--set", "sideways").returncode == 2

    r = cli(broker, "config", "--subject", subject, "--set", "full-transitive")
    assert r.returncode == 0, r.stderr
    r = cli(broker, "config", "--subject", subject, "--output", "json")
    assert json.loads(r.stdout)["compatibility"] == "FULL_TRANSITIVE", r.stdout

    r = cli(broker, "delete", "--subject", subject, "--permanent", "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["versions"] == [1]
    r = cli(broker, "list", "--deleted", "--output", "json")
    assert subject not in {row["subject"] for row in json.loads(r.stdout)}
