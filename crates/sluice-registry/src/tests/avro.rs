//! AVRO compatibility: the changes Confluent's docs list, both directions, cross-checked with
//! apache-avro's own checker.

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use super::parse;
use crate::model::SchemaType;

fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"ns","fields":[{fields}]}}"#)
}

/// (name, old, new, backward ok, forward ok, a word the backward message must contain)
fn cases() -> Vec<(&'static str, String, String, bool, bool, &'static str)> {
    let a_int = r#"{"name":"a","type":"int"}"#;
    vec![
        ("identical", rec(a_int), rec(a_int), true, true, ""),
        (
            "add field with default",
            rec(a_int),
            rec(&format!(r#"{a_int},{{"name":"b","type":"string","default":"x"}}"#)),
            true,
            true,
            "",
        ),
        (
            "add field without default",
            rec(a_int),
            rec(&format!(r#"{a_int},{{"name":"b","type":"string"}}"#)),
            false,
            true,
            "reader field 'b' has no default",
        ),
        (
            "remove field with default",
            rec(&format!(r#"{a_int},{{"name":"b","type":"string","default":"x"}}"#)),
            rec(a_int),
            true,
            true,
            "",
        ),
        (
            "remove field without default",
            rec(&format!(r#"{a_int},{{"name":"b","type":"string"}}"#)),
            rec(a_int),
            true,
            false,
            "",
        ),
        (
            "promote int to long",
            rec(a_int),
            rec(r#"{"name":"a","type":"long"}"#),
            true,
            false,
            "",
        ),
        (
            "promote float to double",
            rec(r#"{"name":"a","type":"float"}"#),
            rec(r#"{"name":"a","type":"double"}"#),
            true,
            false,
            "",
        ),
        (
            "string and bytes interchange",
            rec(r#"{"name":"a","type":"string"}"#),
            rec(r#"{"name":"a","type":"bytes"}"#),
            true,
            true,
            "",
        ),
        (
            "change int to string",
            rec(a_int),
            rec(r#"{"name":"a","type":"string"}"#),
            false,
            false,
            "TYPE_MISMATCH at /fields/0/type: reader type string is not compatible with writer type int",
        ),
        (
            "rename field",
            rec(a_int),
            rec(r#"{"name":"b","type":"int"}"#),
            false,
            false,
            "READER_FIELD_MISSING_DEFAULT_VALUE",
        ),
        (
            "rename field with alias",
            rec(a_int),
            rec(r#"{"name":"b","type":"int","aliases":["a"]}"#),
            true,
            false,
            "",
        ),
        (
            "rename record",
            rec(a_int),
            r#"{"type":"record","name":"Other","namespace":"ns","fields":[{"name":"a","type":"int"}]}"#.to_string(),
            false,
            false,
            "NAME_MISMATCH",
        ),
        (
            "enum symbol added",
            rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}"#),
            rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}"#),
            true,
            false,
            "",
        ),
        (
            "enum symbol removed",
            rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}"#),
            rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}"#),
            false,
            true,
            "MISSING_ENUM_SYMBOLS",
        ),
        (
            "enum symbol removed with reader default",
            rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}"#),
            rec(r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}}"#),
            true,
            true,
            "",
        ),
        (
            "union widened",
            rec(r#"{"name":"u","type":["null","int"]}"#),
            rec(r#"{"name":"u","type":["null","int","string"]}"#),
            true,
            false,
            "",
        ),
        (
            "union narrowed",
            rec(r#"{"name":"u","type":["null","int","string"]}"#),
            rec(r#"{"name":"u","type":["null","int"]}"#),
            false,
            true,
            "MISSING_UNION_BRANCH at /fields/0/type/2",
        ),
        (
            "field made optional",
            rec(a_int),
            rec(r#"{"name":"a","type":["null","int"],"default":null}"#),
            true,
            false,
            "",
        ),
        (
            "fixed size changed",
            rec(r#"{"name":"f","type":{"type":"fixed","name":"F","size":4}}"#),
            rec(r#"{"name":"f","type":{"type":"fixed","name":"F","size":8}}"#),
            false,
            false,
            "FIXED_SIZE_MISMATCH",
        ),
        (
            "nested field added without default",
            rec(r#"{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}}"#),
            rec(r#"{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}}"#),
            false,
            true,
            "at /fields/0/type/fields/1: reader field 'y'",
        ),
        (
            "logical type over the same base type",
            rec(r#"{"name":"t","type":"long"}"#),
            rec(r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}"#),
            true,
            true,
            "",
        ),
        (
            "array items promoted",
            rec(r#"{"name":"xs","type":{"type":"array","items":"int"}}"#),
            rec(r#"{"name":"xs","type":{"type":"array","items":"long"}}"#),
            true,
            false,
            "",
        ),
        (
            "map values changed",
            rec(r#"{"name":"m","type":{"type":"map","values":"int"}}"#),
            rec(r#"{"name":"m","type":{"type":"map","values":"boolean"}}"#),
            false,
            false,
            "at /fields/0/type/values",
        ),
        (
            "recursive record gains a defaulted field",
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(),
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null},{"name":"w","type":"int","default":0}]}"#.to_string(),
            true,
            true,
            "",
        ),
    ]
}

#[test]
fn avro_compatibility_table() {
    for (name, old, new, backward, forward, word) in cases() {
        let o = parse(SchemaType::Avro, &old);
        let n = parse(SchemaType::Avro, &new);
        let b = n.can_read(&o);
        let f = o.can_read(&n);
        assert_eq!(b.is_empty(), backward, "{name}: backward {b:?}");
        assert_eq!(f.is_empty(), forward, "{name}: forward {f:?}");
        if !word.is_empty() {
            assert!(
                b.iter().any(|m| m.contains(word)),
                "{name}: backward messages {b:?} lack {word:?}"
            );
        }
    }
}

/// Our verdict agrees with apache-avro's checker where that checker applies (no references),
/// counting its partial compatibility as incompatible.
#[test]
fn avro_agrees_with_apache_avro_checker() {
    for (name, old, new, backward, forward, _) in cases() {
        let o = Schema::parse_str(&old).unwrap();
        let n = Schema::parse_str(&new).unwrap();
        let lib_b = SchemaCompatibility::can_read(&o, &n) == Ok(Compatibility::Full);
        let lib_f = SchemaCompatibility::can_read(&n, &o) == Ok(Compatibility::Full);
        assert_eq!(lib_b, backward, "{name}: apache-avro backward");
        assert_eq!(lib_f, forward, "{name}: apache-avro forward");
    }
}

#[test]
fn avro_canonical_and_normalized() {
    let a = parse(SchemaType::Avro, "{ \"type\" : \"record\", \"name\":\"R\",\n \"fields\":[{\"name\":\"a\",\"type\":\"int\",\"doc\":\"x y\"}]}");
    assert_eq!(
        a.canonical(),
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","doc":"x y"}]}"#
    );
    let n = a.normalized();
    assert!(n.contains("\"doc\":\"x y\""), "{n}");
    // Normalising twice is stable.
    assert_eq!(parse(SchemaType::Avro, &n).normalized(), n);
}

#[test]
fn avro_payload_decoding() {
    let s = parse(
        SchemaType::Avro,
        &rec(r#"{"name":"a","type":"int"},{"name":"s","type":"string"}"#),
    );
    // a = 1 (zig-zag 2), s = "hi"
    assert!(s.validate_payload(&[], &[2, 4, b'h', b'i']).is_ok());
    assert!(s.validate_payload(&[], &[2, 4, b'h']).is_err(), "truncated");
    assert!(
        s.validate_payload(&[], &[2, 4, b'h', b'i', 0]).is_err(),
        "trailing byte"
    );
}

#[test]
fn avro_references_resolve_named_types() {
    use crate::format::Dependency;
    let dep = Dependency {
        name: "ns.Address".into(),
        schema_type: SchemaType::Avro,
        schema: r#"{"type":"record","name":"Address","namespace":"ns","fields":[{"name":"city","type":"string"}]}"#.into(),
    };
    let dep2 = Dependency {
        schema: r#"{"type":"record","name":"Address","namespace":"ns","fields":[{"name":"city","type":"string"},{"name":"zip","type":"string"}]}"#.into(),
        ..dep.clone()
    };
    let user = r#"{"type":"record","name":"User","namespace":"ns","fields":[{"name":"home","type":"ns.Address"}]}"#;
    let v1 = super::parse_with(SchemaType::Avro, user, std::slice::from_ref(&dep));
    let v2 = super::parse_with(SchemaType::Avro, user, &[dep2]);
    // The referenced type changed incompatibly (zip has no default): the walker follows it.
    let b = v2.can_read(&v1);
    assert!(b.iter().any(|m| m.contains("'zip'")), "{b:?}");
    assert!(v1.can_read(&v2).is_empty());
    assert!(
        ParsedSchema::parse(SchemaType::Avro, user, &[]).is_err(),
        "unknown type without the reference"
    );
}

use crate::format::ParsedSchema;
