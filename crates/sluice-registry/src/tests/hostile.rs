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

/// Runs `f` on a thread with tokio's 2 MiB worker stack (where the registry runs) and fails
/// if it takes longer than `secs`: a hang or a stack overflow is the bug these tests catch.
fn bounded(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .unwrap();
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .is_ok(),
        "did not finish in {secs} s"
    );
}

/// Parses, compares each schema with itself and with the others, and validates a few
/// payloads.
fn compare_all(t: SchemaType, schemas: Vec<String>) {
    bounded(20, move || {
        let parsed: Vec<ParsedSchema> = schemas.iter().map(|s| super::parse(t, s)).collect();
        for r in &parsed {
            for w in &parsed {
                let _ = r.can_read(w);
            }
        }
        for p in &parsed {
            for payload in [&b"{}"[..], b"1", b"\"x\"", b"[1]", b"\x00\x02"] {
                let _ = p.validate_payload(&[0], payload);
            }
        }
    });
}

#[test]
fn json_combinator_cycles_terminate() {
    compare_all(
        SchemaType::Json,
        vec![
            r##"{"allOf":[{"$ref":"#"}]}"##.to_string(),
            r##"{"anyOf":[{"type":"null"},{"$ref":"#"}]}"##.to_string(),
            r##"{"$defs":{"a":{"oneOf":[{"$ref":"#/$defs/b"}]},"b":{"allOf":[{"$ref":"#/$defs/a"}]}},"anyOf":[{"$ref":"#/$defs/a"}]}"##.to_string(),
        ],
    );
}

/// Types used many times (by name in Avro, by message type in protobuf) are compared once
/// per pair, not once per path: a chain of N types each using the next twice is 2^N paths.
#[test]
fn shared_types_compare_once_per_pair() {
    // A top-level union defines the chain flat (JSON nesting stays shallow).
    let avro = |leaf: &str| {
        let mut types = vec![format!(
            r#"{{"type":"record","name":"T40","fields":[{{"name":"x","type":"{leaf}"}}]}}"#
        )];
        for i in (0..40).rev() {
            types.push(format!(
                r#"{{"type":"record","name":"T{i}","fields":[{{"name":"a","type":"T{n}"}},{{"name":"b","type":"T{n}"}}]}}"#,
                n = i + 1
            ));
        }
        format!("[{}]", types.join(","))
    };
    compare_all(SchemaType::Avro, vec![avro("int"), avro("string")]);

    let proto = |leaf: &str| {
        let mut s = String::from("syntax = \"proto3\";\n");
        for i in 0..40 {
            s.push_str(&format!(
                "message T{i} {{ T{n} a = 1; T{n} b = 2; }}\n",
                n = i + 1
            ));
        }
        s.push_str(&format!("message T40 {{ {leaf} x = 1; }}\n"));
        s
    };
    compare_all(SchemaType::Protobuf, vec![proto("int32"), proto("string")]);
}

/// One combinator with thousands of distinct branches on both sides: refused as too
/// complex to compare, without a pairwise table of millions of entries.
#[test]
fn wide_combinators_are_bounded() {
    let wide = |n: usize, t: &str| {
        let branches: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"type":"{t}","title":"b{i}"}}"#))
            .collect();
        format!(r#"{{"anyOf":[{}]}}"#, branches.join(","))
    };
    compare_all(
        SchemaType::Json,
        vec![wide(9_000, "string"), wide(9_000, "integer")],
    );
}

/// `$ref` chains through thousands of definitions nest without bound in a flat document.
#[test]
fn long_reference_chains_are_bounded() {
    let chain = |hop: &dyn Fn(usize) -> String, leaf: &str| {
        let defs: Vec<String> = (0..5000)
            .map(|i| format!(r#""d{i}":{}"#, hop(i + 1)))
            .chain(std::iter::once(format!(r#""d5000":{leaf}"#)))
            .collect();
        format!(
            r##"{{"$defs":{{{}}},"$ref":"#/$defs/d0"}}"##,
            defs.join(",")
        )
    };
    let through_properties = |n: usize| {
        format!(r##"{{"type":"object","properties":{{"a":{{"$ref":"#/$defs/d{n}"}}}}}}"##)
    };
    let through_all_of = |n: usize| format!(r##"{{"allOf":[{{"$ref":"#/$defs/d{n}"}}]}}"##);
    compare_all(
        SchemaType::Json,
        vec![
            chain(&through_properties, r#"{"type":"string"}"#),
            chain(&through_properties, r#"{"type":"integer"}"#),
        ],
    );
    // In place (the same instance location all along): refused.
    let all_of = chain(&through_all_of, r#"{"type":"string"}"#);
    let err = ParsedSchema::parse(SchemaType::Json, &all_of, &[]).unwrap_err();
    assert!(err.contains("levels deep"), "{err}");
}

/// `$ref`s to definitions that use the next definition twice: 2^40 subschemas at one
/// instance location. Validating one record never ended; such schemas are refused (42201).
#[test]
fn json_reference_dags_are_bounded() {
    let dag = |leaf: &str| {
        let defs: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r##""d{i}":{{"allOf":[{{"$ref":"#/$defs/d{n}"}},{{"$ref":"#/$defs/d{n}"}}]}}"##,
                    n = i + 1
                )
            })
            .chain(std::iter::once(format!(r#""d40":{leaf}"#)))
            .collect();
        format!(
            r##"{{"$defs":{{{}}},"$ref":"#/$defs/d0"}}"##,
            defs.join(",")
        )
    };
    let schemas = vec![dag(r#"{"type":"string"}"#), dag(r#"{"type":"integer"}"#)];
    bounded(20, move || {
        for s in &schemas {
            let err = ParsedSchema::parse(SchemaType::Json, s, &[]).unwrap_err();
            assert!(err.contains("more than 10000 subschemas"), "{err}");
        }
    });
}

/// A recursive Avro schema lets a small payload nest without bound: apache-avro's recursive
/// decoder overflowed the 2 MiB worker stack at ~400 levels (a 1 KB record), aborting the
/// process. Found by the `registry_avro` fuzz target.
#[test]
fn avro_payload_nesting_is_bounded() {
    let list = r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#;
    let tree = r#"{"type":"record","name":"N","fields":[{"name":"c","type":{"type":"array","items":"N"}}]}"#;
    bounded(20, move || {
        let list = super::parse(SchemaType::Avro, list);
        let nodes = |n: usize| {
            let mut p = b"\x02\x02".repeat(n);
            p.extend_from_slice(b"\x02\x00");
            p
        };
        assert_eq!(list.validate_payload(&[], &nodes(100)), Ok(()));
        let err = list.validate_payload(&[], &nodes(10_000)).unwrap_err();
        assert!(err.contains("nested more than"), "{err}");
        let tree = super::parse(SchemaType::Avro, tree);
        let deep = [vec![2u8; 5000], vec![0u8; 5001]].concat();
        assert!(tree.validate_payload(&[], &deep).is_err());
    });
}

/// A few bytes of block count declaring billions of values that take no bytes each.
#[test]
fn avro_zero_size_values_are_bounded() {
    bounded(20, || {
        let nulls = super::parse(SchemaType::Avro, r#"{"type":"array","items":"null"}"#);
        // 2^40 nulls, then the end of the array.
        let mut p = Vec::new();
        let mut v: u64 = (1u64 << 40) << 1;
        while v >= 0x80 {
            p.push((v as u8) | 0x80);
            v >>= 7;
        }
        p.push(v as u8);
        p.push(0);
        let err = nulls.validate_payload(&[], &p).unwrap_err();
        assert!(err.contains("more values"), "{err}");
        assert_eq!(nulls.validate_payload(&[], b"\x06\x00"), Ok(()));
    });
}

/// A block of `null`s takes no bytes on the wire: validation allows a generous number, but a
/// document shown to a person (`decode_json`) allows one value per byte plus 4,096, so a tiny
/// record cannot expand into a huge JSON array.
#[test]
fn shown_avro_values_grow_with_the_bytes() {
    let schema = ParsedSchema::parse(SchemaType::Avro, r#"{"type":"array","items":"null"}"#, &[])
        .expect("an array of nulls");
    // One block of 10,000 nulls (zig-zag varint 20,000 = 0xa0 0x9c 0x01), then the end block.
    let payload = [0xa0, 0x9c, 0x01, 0x00];
    assert!(schema.validate_payload(&[], &payload).is_ok());
    assert!(schema.decode_json(&[], &payload).is_err());
    // A few nulls are shown.
    let small = [0x06, 0x00];
    assert_eq!(
        schema.decode_json(&[], &small).expect("three nulls"),
        serde_json::json!([null, null, null])
    );
}
