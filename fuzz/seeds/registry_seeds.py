#!/usr/bin/env python3
"""Writes the seed corpora of the registry targets: fuzz/corpus/registry_{avro,protobuf,json}/.

Each seed is `A \\0 B \\0 payload` (see fuzz_targets/registry_schemas.rs): schema pairs taken
from crates/sluice-registry/src/tests/*.rs, B sometimes referencing A (by Avro full name, the
protobuf import "a.proto", the JSON $ref "a.json"), payloads that decode. Run from fuzz/:
    python3 seeds/registry_seeds.py
"""
import hashlib
import os

AVRO = [
    (r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"a","type":"int"}]}',
     r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}]}',
     b"\x02"),
    (r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}]}',
     r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}}]}',
     b"\x04"),
    (r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"u","type":["null","int"]}]}',
     r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"u","type":["null","int","string"]}]}',
     b"\x02\x54"),
    (r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"f","type":{"type":"fixed","name":"F","size":4}}]}',
     r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}',
     b"abcd"),
    (r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"xs","type":{"type":"array","items":"int"}},{"name":"m","type":{"type":"map","values":"boolean"}}]}',
     r'{"type":"record","name":"R","namespace":"ns","fields":[{"name":"xs","type":{"type":"array","items":"long"}},{"name":"m","type":{"type":"map","values":"int"}}]}',
     b"\x04\x02\x04\x00\x02\x02k\x01\x00"),
    (r'{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}',
     r'{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null},{"name":"w","type":"int","default":0}]}',
     b"\x02\x02\x04\x00"),
    # B uses the type A defines (a reference).
    (r'{"type":"record","name":"Address","namespace":"ns","fields":[{"name":"city","type":"string"}]}',
     r'{"type":"record","name":"User","namespace":"ns","fields":[{"name":"home","type":"ns.Address"},{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}}]}',
     b"\x06abc\x02\x01"),
    ('"string"', '["null","string",{"type":"array","items":"long"}]', b"\x06abc"),
]

PROTOBUF = [
    ('syntax = "proto3";\npackage acme;\nmessage User { string name = 1; int32 age = 2; }',
     'syntax = "proto3";\npackage acme;\nmessage User { string name = 1; int64 age = 2; string email = 3; }',
     b"\x00\x0a\x03bob\x10\x2a"),
    ('syntax = "proto2";\nmessage M { optional int32 a = 1; }',
     'syntax = "proto2";\nmessage M { optional int32 a = 1; required int32 b = 2; }',
     b"\x00\x08\x01\x10\x02"),
    ('syntax = "proto3";\npackage acme;\nmessage A { oneof v { string s = 1; int32 i = 2; } map<string, int64> m = 3; enum E { X = 0; Y = 1; } E e = 4; }',
     'syntax = "proto3";\npackage acme;\nmessage A { string s = 1; oneof v { int32 i = 2; } map<string, int64> m = 3; repeated bytes r = 5; message N { optional sint32 z = 1; } N n = 6; }',
     b"\x02\x00\x00\x0a\x01x"),
    # B imports A (a reference).
    ('syntax = "proto3";\npackage acme;\nmessage Address { string city = 1; }',
     'syntax = "proto3";\npackage acme;\nimport "a.proto";\nimport "google/protobuf/timestamp.proto";\nmessage User { Address home = 1; google.protobuf.Timestamp at = 2; }',
     b"\x00\x0a\x04\x0a\x02NY\x12\x02\x08\x01"),
    ('syntax = "proto3";\nmessage Node { Node next = 1; fixed32 f = 2; double d = 3; }',
     'syntax = "proto3";\nmessage Node { Node next = 1; sfixed32 f = 2; float d = 3; }',
     b"\x00\x0a\x00\x15\x01\x00\x00\x00"),
]

JSON = [
    ('{"type":"object","properties":{"a":{"type":"string"}}}',
     '{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["b"],"additionalProperties":false}',
     b'{"a":"x","b":1}'),
    ('{"type":"string","maxLength":5,"pattern":"^a"}',
     '{"type":"string","enum":["a","b"]}',
     b'"abc"'),
    ('{"type":"integer","minimum":5}',
     '{"type":"number","multipleOf":4,"exclusiveMaximum":100}',
     b'8'),
    ('{"anyOf":[{"type":"string"},{"type":"integer"}]}',
     '{"oneOf":[{"type":"string"},{"type":"null"}],"allOf":[{"not":{"const":"x"}}]}',
     b'"y"'),
    ('{"type":"array","items":{"type":"string"},"maxItems":2}',
     '{"type":"array","prefixItems":[{"type":"integer"}],"items":false,"uniqueItems":true}',
     b'[1]'),
    ('{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#"}}}',
     '{"$defs":{"n":{"type":["integer","null"]}},"type":"object","properties":{"v":{"$ref":"#/$defs/n"}},"patternProperties":{"^x":{"type":"string"}},"dependentRequired":{"v":["w"]}}',
     b'{"v":1,"next":{"v":2}}'),
    # B references A (a reference).
    ('{"type":"object","properties":{"city":{"type":"string"}}}',
     '{"type":"object","properties":{"home":{"$ref":"a.json"}}}',
     b'{"home":{"city":"NY"}}'),
    ('true', 'false', b'null'),
]


def write(target, seeds):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    for a, b, payload in seeds:
        data = a.encode() + b"\0" + b.encode() + b"\0" + payload
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        # Each schema also on its own, and the pair reversed.
        for alone in (a.encode() + b"\0\0" + payload, b.encode() + b"\0" + a.encode() + b"\0"):
            with open(os.path.join(d, hashlib.sha1(alone).hexdigest()), "wb") as f:
                f.write(alone)


write("registry_avro", AVRO)
write("registry_protobuf", PROTOBUF)
write("registry_json", JSON)
