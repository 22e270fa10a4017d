//! PROTOBUF compatibility: Confluent's SchemaDiff rules as a table.

use super::parse;
use crate::format::protobuf::ChangeKind;
use crate::format::ParsedSchema;
use crate::model::SchemaType;

fn p3(body: &str) -> String {
    format!("syntax = \"proto3\";\npackage acme;\n{body}")
}

/// (name, old, new, backward ok, the change the backward check must report)
fn cases() -> Vec<(&'static str, String, String, bool, Option<ChangeKind>)> {
    use ChangeKind::*;
    let base = p3("message User { string name = 1; int32 age = 2; }");
    vec![
        ("identical", base.clone(), base.clone(), true, None),
        (
            "field added",
            base.clone(),
            p3("message User { string name = 1; int32 age = 2; string email = 3; }"),
            true,
            Some(FIELD_ADDED),
        ),
        ("field removed", base.clone(), p3("message User { string name = 1; }"), true, Some(FIELD_REMOVED)),
        (
            "field renamed",
            base.clone(),
            p3("message User { string full_name = 1; int32 age = 2; }"),
            true,
            Some(FIELD_NAME_CHANGED),
        ),
        (
            "field number changed",
            base.clone(),
            p3("message User { string name = 1; int32 age = 5; }"),
            true,
            Some(FIELD_ADDED),
        ),
        (
            "int32 to string",
            base.clone(),
            p3("message User { string name = 1; string age = 2; }"),
            false,
            Some(FIELD_SCALAR_KIND_CHANGED),
        ),
        (
            "int32 to int64 (same wire kind)",
            base.clone(),
            p3("message User { string name = 1; int64 age = 2; }"),
            true,
            None,
        ),
        (
            "int32 to sint32",
            base.clone(),
            p3("message User { string name = 1; sint32 age = 2; }"),
            false,
            Some(FIELD_SCALAR_KIND_CHANGED),
        ),
        (
            "string to bytes",
            base.clone(),
            p3("message User { bytes name = 1; int32 age = 2; }"),
            true,
            None,
        ),
        (
            "scalar to message",
            base.clone(),
            p3("message Age { int32 v = 1; } message User { string name = 1; Age age = 2; }"),
            false,
            Some(FIELD_KIND_CHANGED),
        ),
        (
            "message type renamed in field",
            p3("message A { int32 v = 1; } message User { A x = 1; }"),
            p3("message A { int32 v = 1; } message B { int32 v = 1; } message User { B x = 1; }"),
            false,
            Some(FIELD_NAMED_TYPE_CHANGED),
        ),
        (
            "field's message type changed incompatibly",
            p3("message A { int32 v = 1; } message User { A x = 1; }"),
            p3("message A { string v = 1; } message User { A x = 1; }"),
            false,
            Some(FIELD_NAMED_TYPE_CHANGED),
        ),
        (
            "message removed",
            p3("message A { int32 v = 1; } message User { string name = 1; }"),
            p3("message User { string name = 1; }"),
            false,
            Some(MESSAGE_REMOVED),
        ),
        (
            "message added",
            base.clone(),
            p3("message User { string name = 1; int32 age = 2; } message Other { int32 v = 1; }"),
            true,
            Some(MESSAGE_ADDED),
        ),
        (
            "messages reordered",
            p3("message A { int32 v = 1; } message B { int32 v = 1; }"),
            p3("message B { int32 v = 1; } message A { int32 v = 1; }"),
            true,
            Some(MESSAGE_MOVED),
        ),
        (
            "package changed",
            base.clone(),
            "syntax = \"proto3\";\npackage other;\nmessage User { string name = 1; int32 age = 2; }".to_string(),
            false,
            Some(PACKAGE_CHANGED),
        ),
        (
            "oneof added with new fields",
            base.clone(),
            p3("message User { string name = 1; int32 age = 2; oneof contact { string email = 3; string phone = 4; } }"),
            true,
            Some(ONEOF_ADDED),
        ),
        (
            "one existing field moved into a new oneof",
            base.clone(),
            p3("message User { string name = 1; oneof a { int32 age = 2; string alt = 3; } }"),
            true,
            Some(ONEOF_FIELD_ADDED),
        ),
        (
            "two existing fields moved into a oneof",
            base.clone(),
            p3("message User { oneof a { string name = 1; int32 age = 2; } }"),
            false,
            Some(MULTIPLE_FIELDS_MOVED_TO_ONEOF),
        ),
        (
            "field moved into an existing oneof",
            p3("message User { string name = 1; oneof a { int32 age = 2; } }"),
            p3("message User { oneof a { int32 age = 2; string name = 1; } }"),
            false,
            Some(FIELD_MOVED_TO_EXISTING_ONEOF),
        ),
        (
            "oneof field removed",
            p3("message User { oneof a { int32 age = 2; string alt = 3; } }"),
            p3("message User { oneof a { int32 age = 2; } }"),
            false,
            Some(ONEOF_FIELD_REMOVED),
        ),
        (
            "whole oneof removed",
            p3("message User { string name = 1; oneof a { int32 age = 2; string alt = 3; } }"),
            p3("message User { string name = 1; }"),
            true,
            Some(ONEOF_REMOVED),
        ),
        (
            "oneof field moved to top level",
            p3("message User { oneof a { int32 age = 2; string alt = 3; } }"),
            p3("message User { int32 age = 2; oneof a { string alt = 3; } }"),
            true,
            Some(ONEOF_FIELD_MOVED_TO_TOP_LEVEL),
        ),
        (
            "proto2 required field added",
            "syntax = \"proto2\";\nmessage M { optional int32 a = 1; }".to_string(),
            "syntax = \"proto2\";\nmessage M { optional int32 a = 1; required int32 b = 2; }".to_string(),
            false,
            Some(REQUIRED_FIELD_ADDED),
        ),
        (
            "proto2 numeric optional to repeated",
            "syntax = \"proto2\";\nmessage M { optional int32 a = 1; }".to_string(),
            "syntax = \"proto2\";\nmessage M { repeated int32 a = 1; }".to_string(),
            false,
            Some(FIELD_NUMERIC_LABEL_CHANGED),
        ),
        (
            "proto2 string optional to repeated",
            "syntax = \"proto2\";\nmessage M { optional string a = 1; }".to_string(),
            "syntax = \"proto2\";\nmessage M { repeated string a = 1; }".to_string(),
            true,
            Some(FIELD_STRING_OR_BYTES_LABEL_CHANGED),
        ),
        (
            "enum value added",
            p3("enum Color { RED = 0; } message M { Color c = 1; }"),
            p3("enum Color { RED = 0; BLUE = 1; } message M { Color c = 1; }"),
            true,
            Some(ENUM_CONST_ADDED),
        ),
        (
            "enum value removed",
            p3("enum Color { RED = 0; BLUE = 1; } message M { Color c = 1; }"),
            p3("enum Color { RED = 0; } message M { Color c = 1; }"),
            true,
            Some(ENUM_CONST_REMOVED),
        ),
        (
            "map value type changed",
            p3("message M { map<string, int32> m = 1; }"),
            p3("message M { map<string, string> m = 1; }"),
            false,
            Some(FIELD_SCALAR_KIND_CHANGED),
        ),
        (
            "nested message field changed",
            p3("message M { message N { int32 x = 1; } N n = 1; }"),
            p3("message M { message N { double x = 1; } N n = 1; }"),
            false,
            Some(FIELD_SCALAR_KIND_CHANGED),
        ),
        (
            "recursive message gains a field",
            p3("message Tree { int32 v = 1; repeated Tree kids = 2; }"),
            p3("message Tree { int32 v = 1; repeated Tree kids = 2; string label = 3; }"),
            true,
            Some(FIELD_ADDED),
        ),
    ]
}

#[test]
fn protobuf_compatibility_table() {
    for (name, old, new, backward, expected) in cases() {
        let o = parse(SchemaType::Protobuf, &old);
        let n = parse(SchemaType::Protobuf, &new);
        let msgs = n.can_read(&o);
        assert_eq!(msgs.is_empty(), backward, "{name}: {msgs:?}");
        let (ParsedSchema::Protobuf(op), ParsedSchema::Protobuf(np)) = (&o, &n) else {
            unreachable!()
        };
        let changes = np.changes_from(op);
        if let Some(kind) = expected {
            assert!(
                changes.iter().any(|c| c.kind == kind),
                "{name}: {kind:?} not in {changes:?}"
            );
        } else {
            assert!(
                changes.iter().all(|c| c.kind.compatible()),
                "{name}: {changes:?}"
            );
        }
    }
}

#[test]
fn protobuf_message_indexes_and_payloads() {
    let s = parse(
        SchemaType::Protobuf,
        &p3("message A { int32 x = 1; map<string,int32> m = 2; message Inner { string s = 1; } } message B { string y = 1; }"),
    );
    let ParsedSchema::Protobuf(p) = &s else {
        unreachable!()
    };
    assert_eq!(p.message_for_indexes(&[0]).unwrap().full_name(), "acme.A");
    assert_eq!(p.message_for_indexes(&[1]).unwrap().full_name(), "acme.B");
    // The map entry is not counted: [0, 0] is Inner.
    assert_eq!(
        p.message_for_indexes(&[0, 0]).unwrap().full_name(),
        "acme.A.Inner"
    );
    assert!(p.message_for_indexes(&[2]).is_none());
    assert!(p.message_for_indexes(&[0, 1]).is_none());
    // B { y = "hi" }
    assert!(s.validate_payload(&[1], &[0x0a, 2, b'h', b'i']).is_ok());
    assert!(s.validate_payload(&[1], &[0x0a, 5, b'h']).is_err());
}

#[test]
fn protobuf_base64_descriptor_and_serialized_form() {
    let text = p3("message User { string name = 1; }");
    let s = parse(SchemaType::Protobuf, &text);
    let ParsedSchema::Protobuf(p) = &s else {
        unreachable!()
    };
    let b64 = p.serialized();
    // A base64 descriptor (what confluent-kafka's serializer registers) parses to the same
    // schema: no differences either way.
    let again = parse(SchemaType::Protobuf, &b64);
    assert!(again.can_read(&s).is_empty());
    assert!(s.can_read(&again).is_empty());
    assert_eq!(again.canonical(), b64);
}

#[test]
fn protobuf_imports_resolve_through_references() {
    use crate::format::Dependency;
    let dep = Dependency {
        name: "acme/address.proto".into(),
        schema_type: SchemaType::Protobuf,
        schema: "syntax = \"proto3\";\npackage acme;\nmessage Address { string city = 1; }".into(),
    };
    let user = "syntax = \"proto3\";\npackage acme;\nimport \"acme/address.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage User { Address home = 1; google.protobuf.Timestamp at = 2; }";
    let s = super::parse_with(SchemaType::Protobuf, user, &[dep]);
    assert_eq!(s.schema_type(), SchemaType::Protobuf);
    assert!(ParsedSchema::parse(SchemaType::Protobuf, user, &[]).is_err());
}
