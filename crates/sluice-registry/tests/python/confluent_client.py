# Drives confluent-kafka-python's SchemaRegistryClient and its Avro, JSON and Protobuf
# serializers/deserializers against a registry at URL (argv[1]), e.g. the in-memory server:
#   cargo run -p sluice-registry --example serve -- 127.0.0.1:38517
#   python confluent_client.py http://127.0.0.1:38517
# Needs confluent-kafka==2.16.1 plus its schema-registry extras installed by hand (its
# [schemaregistry] extra pins certifi>=2026.10.19, which PyPI does not have): certifi attrs
# cachetools httpx2 authlib fastavro avro requests jsonschema protobuf googleapis-common-protos.
# Expects a fresh registry.
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient, Schema, SchemaReference
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer, JSONDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer, ProtobufDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField

url = sys.argv[1]
c = SchemaRegistryClient({'url': url})
ok = 0
def check(cond, what):
    global ok
    if not cond:
        raise SystemExit("FAIL: " + what)
    ok += 1

user = json.dumps({"type":"record","name":"User","fields":[{"name":"name","type":"string"}]})
user2 = json.dumps({"type":"record","name":"User","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]})
bad = json.dumps({"type":"record","name":"User","fields":[{"name":"name","type":"int"}]})

check(sorted(c.get_schema_types()) == ["AVRO","JSON","PROTOBUF"], "types")
id1 = c.register_schema("u-value", Schema(user, "AVRO"))
check(id1 == 1, f"register id {id1}")
id2 = c.register_schema("u-value", Schema(user2, "AVRO"))
check(id2 == 2, "register 2")
rs = c.lookup_schema("u-value", Schema(user, "AVRO"))
check(rs.schema_id == 1 and rs.version == 1, f"lookup {rs}")
s = c.get_schema(2)
check(json.loads(s.schema_str) == json.loads(user2) and s.schema_type == "AVRO", "get_schema")
lv = c.get_latest_version("u-value")
check(lv.version == 2 and lv.schema_id == 2, f"latest {lv}")
v1 = c.get_version("u-value", 1)
check(v1.schema_id == 1, "get_version")
check(c.get_versions("u-value") == [1, 2], "get_versions")
check(c.test_compatibility("u-value", Schema(bad, "AVRO")) is False, "test compat false")
check(c.test_compatibility("u-value", Schema(user2, "AVRO")) is True, "test compat true")
check(c.test_compatibility_all_versions("u-value", Schema(user2, "AVRO")) is True, "compat all")
try:
    c.register_schema("u-value", Schema(bad, "AVRO"))
    check(False, "incompatible accepted")
except SchemaRegistryError as e:
    check(e.http_status_code == 409, f"409 {e}")
    print("incompatible:", e.error_code, e.error_message[:160])
c.set_compatibility("u-value", "FULL")
check(c.get_compatibility("u-value") == "FULL", "get_compat subject")
check(c.get_compatibility() == "BACKWARD", "get_compat global")
c.set_compatibility(level="BACKWARD")
cfg = c.get_config("u-value")
check(cfg.compatibility_level.value == "FULL" if hasattr(cfg.compatibility_level, "value") else True, f"get_config {cfg}")
check(c.get_subjects() == ["u-value"], "subjects")
check(c.get_subjects_by_schema_id(1) == ["u-value"], "subjects by id")
vs = c.get_schema_versions(1)
check(vs[0].subject == "u-value" and vs[0].version == 1, "versions by id")
check(c.delete_version("u-value", 2) == 2, "delete_version")
check(c.get_versions("u-value") == [1], "after delete")
check(c.delete_subject("u-value") == [1], "delete subject soft")
check(c.delete_subject("u-value", permanent=True) == [1, 2], "delete subject hard")
try:
    c.get_latest_version("gone")
    check(False, "missing subject")
except SchemaRegistryError as e:
    check(e.http_status_code == 404 and e.error_code == 40401, f"40401 {e}")
try:
    c.get_schema(999)
except SchemaRegistryError as e:
    check(e.error_code == 40403, "40403")
check(c.get_global_mode() == "READWRITE", "global mode")
c.update_mode("m-subj", "READONLY")
check(c.get_mode("m-subj") == "READONLY", "subject mode")
c.delete_mode("m-subj")

# Avro serde round trip
ctx = SerializationContext("orders", MessageField.VALUE)
order = json.dumps({"type":"record","name":"Order","namespace":"acme","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"tags","type":{"type":"array","items":"string"}}]})
ser = AvroSerializer(c, order)
data = ser({"id": 7, "item": "book", "tags": ["a","b"]}, ctx)
check(data[0] == 0, "magic")
de = AvroDeserializer(c)
check(de(data, ctx) == {"id": 7, "item": "book", "tags": ["a","b"]}, "avro roundtrip")

# JSON serde round trip
js = json.dumps({"$schema":"http://json-schema.org/draft-07/schema#","title":"Thing","type":"object","properties":{"n":{"type":"integer"},"s":{"type":"string"}},"required":["n"]})
jser = JSONSerializer(js, c)
jd = jser({"n": 3, "s": "x"}, SerializationContext("things", MessageField.VALUE))
jde = JSONDeserializer(js, schema_registry_client=c)
check(jde(jd, SerializationContext("things", MessageField.VALUE)) == {"n": 3, "s": "x"}, "json roundtrip")
jde2 = JSONDeserializer(None, schema_registry_client=c)
check(jde2(jd, SerializationContext("things", MessageField.VALUE)) == {"n": 3, "s": "x"}, "json roundtrip via registry schema")

# Protobuf serde round trip, with a dependency (timestamp is builtin and skipped) and nested message
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import timestamp_pb2
pool = descriptor_pool.Default()
dep = descriptor_pb2.FileDescriptorProto(name="acme/common.proto", package="acme", syntax="proto3")
m = dep.message_type.add(name="Money")
m.field.add(name="cents", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64, label=1)
pool.Add(dep)
fdp = descriptor_pb2.FileDescriptorProto(name="acme/pay.proto", package="acme", syntax="proto3", dependency=["acme/common.proto", "google/protobuf/timestamp.proto"])
a = fdp.message_type.add(name="Header")
a.field.add(name="k", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
p = fdp.message_type.add(name="Payment")
p.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
p.field.add(name="amount", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=".acme.Money", label=1)
p.field.add(name="at", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp", label=1)
n = p.nested_type.add(name="Line")
n.field.add(name="sku", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
p.field.add(name="lines", number=4, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=".acme.Payment.Line", label=3)
pool.Add(fdp)
Payment = message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.Payment"))
Line = message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.Payment.Line"))
pser = ProtobufSerializer(Payment, c, {"use.deprecated.format": False})
pctx = SerializationContext("payments", MessageField.VALUE)
msg = Payment(id="p1")
msg.amount.cents = 1250
msg.at.seconds = 100
msg.lines.add(sku="x")
pdata = pser(msg, pctx)
check(pdata[5] == 2 and pdata[6] == 2, f"message index [1] {pdata[:8]!r}")
pde = ProtobufDeserializer(Payment, {"use.deprecated.format": False})
back = pde(pdata, pctx)
check(back.id == "p1" and back.amount.cents == 1250 and back.lines[0].sku == "x", "protobuf roundtrip")
# Nested message index [1, 0]
lser = ProtobufSerializer(Line, c, {"use.deprecated.format": False, "auto.register.schemas": True})
ldata = lser(Line(sku="z"), SerializationContext("lines", MessageField.VALUE))
check(ldata[5:8] == bytes([4, 2, 0]), f"nested index {ldata[:9]!r}")
print("subjects:", c.get_subjects())
ref_by = c.get_referenced_by("acme/common.proto", 1)
check(len(ref_by) >= 1, f"referenced by {ref_by}")
# Protobuf deserializer that fetches the writer schema from the registry (use.latest.version off):
pde2 = ProtobufDeserializer(Payment, {"use.deprecated.format": False}, schema_registry_client=c)
back2 = pde2(pdata, pctx)
check(back2.amount.cents == 1250, "protobuf deserialize with registry")
print(f"{ok} passed, 0 failed")
