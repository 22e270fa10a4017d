//! Hostile schemas and bodies: errors, never panics or runaway work.

use crate::format::ParsedSchema;
use crate::model::SchemaType;

#[test]
fn deeply_nested_inputs_are_refused() {
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for t in [SchemaType::Avro, SchemaType::Json, SchemaType::Protobuf] {
        assert!(ParsedSchema::parse(t, &deep_json, &[]).is_err(), "{t:?}");
    }
    let mut proto = String::from("syntax = \"proto3\";\n");
    for i in 0..10_000 {
        proto.push_str(&format!("message M{i} {{ "));
    }
    assert!(ParsedSchema::parse(SchemaType::Protobuf, &proto, &[]).is_err());
    let deep_avro = format!(
        "{}\"int\"{}",
        r#"{"type":"array","items":"#.repeat(5000),
        "}".repeat(5000)
    );
    assert!(ParsedSchema::parse(SchemaType::Avro, &deep_avro, &[]).is_err());
}

#[test]
fn self_referential_schemas_compare_and_terminate() {
    let node =
        r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#;
    let a = super::parse(SchemaType::Avro, node);
    assert!(a.can_read(&a).is_empty());
    let json = r##"{"anyOf":[{"type":"null"},{"type":"object","properties":{"n":{"$ref":"#"}}}]}"##;
    let j = super::parse(SchemaType::Json, json);
    assert!(j.can_read(&j).is_empty());
    let loop_ref = r##"{"definitions":{"a":{"$ref":"#/definitions/b"},"b":{"$ref":"#/definitions/a"}},"$ref":"#/definitions/a"}"##;
    // Either refused or compared without hanging.
    if let Ok(p) = ParsedSchema::parse(SchemaType::Json, loop_ref, &[]) {
        let _ = p.can_read(&p);
    }
}

#[test]
fn wide_combinations_stay_bounded() {
    // Nested anyOf of many branches: memoisation and the budget keep this quick.
    let mut s = r#"{"type":"string"}"#.to_string();
    for i in 0..12 {
        let branches: Vec<String> = (0..8)
            .map(|k| format!(r#"{{"type":"object","properties":{{"k{i}_{k}":{s}}}}}"#))
            .collect();
        s = format!(r#"{{"anyOf":[{}]}}"#, branches.join(","));
        if s.len() > 200_000 {
            break;
        }
    }
    if let Ok(p) = ParsedSchema::parse(SchemaType::Json, &s, &[]) {
        let _ = p.can_read(&p);
    }
}

#[test]
fn garbage_is_an_error() {
    for t in [SchemaType::Avro, SchemaType::Json, SchemaType::Protobuf] {
        for g in [
            "",
            "{",
            "null",
            "\u{0}\u{1}",
            "AAAA",
            "syntax = \"proto9\";",
        ] {
            let _ = ParsedSchema::parse(t, g, &[]);
        }
    }
}

/// Random bytes through `validate` for every format: errors or success, never a panic.
#[tokio::test]
async fn random_records_never_panic() {
    use std::sync::Arc;

    use crate::model::CompatibilityLevel;
    use crate::{MemoryJournal, Registry};

    let r = Registry::new(Arc::new(MemoryJournal::new()));
    r.set_config(None, CompatibilityLevel::None, None)
        .await
        .unwrap();
    let schemas = [
        (SchemaType::Avro, r#"{"type":"record","name":"R","fields":[{"name":"a","type":["null","string",{"type":"array","items":"long"}]},{"name":"m","type":{"type":"map","values":"bytes"}},{"name":"f","type":{"type":"fixed","name":"F","size":4}}]}"#),
        (SchemaType::Protobuf, "syntax = \"proto3\"; message A { repeated int64 x = 1; map<string, A> m = 2; message B { bytes b = 1; } B b = 3; }"),
        (SchemaType::Json, r#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","maxLength":3}}}}"#),
    ];
    let mut ids = Vec::new();
    for (i, (t, s)) in schemas.iter().enumerate() {
        let reg = r
            .register(&format!("s{i}"), super::req(*t, s), false)
            .await
            .unwrap();
        ids.push(reg.id);
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let len = (next() % 64) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let id = ids[round % ids.len()];
        let mut record = vec![0u8];
        record.extend_from_slice(&id.to_be_bytes());
        if round % 2 == 0 {
            record.push(0);
        }
        record.append(&mut payload);
        let _ = r.validate(&record, true);
    }
}
