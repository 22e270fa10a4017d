//! JSON Schema compatibility: Confluent's SchemaDiff rules as a table.

use serde_json::json;

use super::parse;
use crate::format::json::JsonChangeKind;
use crate::format::ParsedSchema;
use crate::model::SchemaType;

/// (name, old, new, backward ok, the change the check must report)
fn cases() -> Vec<(
    &'static str,
    serde_json::Value,
    serde_json::Value,
    bool,
    Option<JsonChangeKind>,
)> {
    use JsonChangeKind::*;
    let open = json!({"type":"object","properties":{"a":{"type":"string"}}});
    let closed =
        json!({"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false});
    vec![
        ("identical", open.clone(), open.clone(), true, None),
        (
            "typed property added to open model",
            open.clone(),
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}),
            false,
            Some(OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL),
        ),
        (
            "empty-schema property added to open model",
            open.clone(),
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{}}}),
            true,
            Some(PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL),
        ),
        (
            "optional property added to closed model",
            closed.clone(),
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":false}),
            true,
            Some(OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL),
        ),
        (
            "required property added to closed model",
            closed.clone(),
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["b"],"additionalProperties":false}),
            false,
            Some(REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL),
        ),
        (
            "required property with default added to closed model",
            closed.clone(),
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer","default":0}},"required":["b"],"additionalProperties":false}),
            true,
            Some(REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL),
        ),
        (
            "property removed from closed model",
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":false}),
            closed.clone(),
            false,
            Some(PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL),
        ),
        (
            "property removed from open model",
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}),
            open.clone(),
            true,
            Some(PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL),
        ),
        (
            "property covered by partially open model",
            json!({"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"integer"}}),
            json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":{"type":"integer"}}),
            true,
            Some(PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL),
        ),
        (
            "property type changed",
            open.clone(),
            json!({"type":"object","properties":{"a":{"type":"integer"}}}),
            false,
            Some(TYPE_CHANGED),
        ),
        (
            "integer widened to number",
            json!({"type":"integer"}),
            json!({"type":"number"}),
            true,
            Some(TYPE_EXTENDED),
        ),
        (
            "number narrowed to integer",
            json!({"type":"number"}),
            json!({"type":"integer"}),
            false,
            Some(TYPE_NARROWED),
        ),
        (
            "required added",
            json!({"type":"object","properties":{"a":{"type":"string"}}}),
            json!({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}),
            false,
            Some(REQUIRED_ATTRIBUTE_ADDED),
        ),
        (
            "required removed",
            json!({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}),
            json!({"type":"object","properties":{"a":{"type":"string"}}}),
            true,
            Some(REQUIRED_ATTRIBUTE_REMOVED),
        ),
        (
            "enum extended",
            json!({"type":"string","enum":["a","b"]}),
            json!({"type":"string","enum":["a","b","c"]}),
            true,
            Some(ENUM_ARRAY_EXTENDED),
        ),
        (
            "enum narrowed",
            json!({"type":"string","enum":["a","b","c"]}),
            json!({"type":"string","enum":["a","b"]}),
            false,
            Some(COMBINED_TYPE_SUBSCHEMAS_CHANGED),
        ),
        (
            "bare enum narrowed",
            json!({"enum":["a","b"]}),
            json!({"enum":["a"]}),
            false,
            Some(ENUM_ARRAY_NARROWED),
        ),
        (
            "maxLength increased",
            json!({"type":"string","maxLength":5}),
            json!({"type":"string","maxLength":9}),
            true,
            Some(MAX_LENGTH_INCREASED),
        ),
        (
            "maxLength decreased",
            json!({"type":"string","maxLength":9}),
            json!({"type":"string","maxLength":5}),
            false,
            Some(MAX_LENGTH_DECREASED),
        ),
        (
            "maxLength added",
            json!({"type":"string"}),
            json!({"type":"string","maxLength":5}),
            false,
            Some(MAX_LENGTH_ADDED),
        ),
        (
            "maxLength removed",
            json!({"type":"string","maxLength":5}),
            json!({"type":"string"}),
            true,
            Some(MAX_LENGTH_REMOVED),
        ),
        (
            "pattern added",
            json!({"type":"string"}),
            json!({"type":"string","pattern":"^a"}),
            false,
            Some(PATTERN_ADDED),
        ),
        (
            "minimum decreased",
            json!({"type":"integer","minimum":5}),
            json!({"type":"integer","minimum":1}),
            true,
            Some(MINIMUM_DECREASED),
        ),
        (
            "minimum increased",
            json!({"type":"integer","minimum":1}),
            json!({"type":"integer","minimum":5}),
            false,
            Some(MINIMUM_INCREASED),
        ),
        (
            "multipleOf reduced",
            json!({"type":"number","multipleOf":4}),
            json!({"type":"number","multipleOf":2}),
            true,
            Some(MULTIPLE_OF_REDUCED),
        ),
        (
            "multipleOf expanded",
            json!({"type":"number","multipleOf":2}),
            json!({"type":"number","multipleOf":4}),
            false,
            Some(MULTIPLE_OF_EXPANDED),
        ),
        (
            "made nullable",
            json!({"type":"string"}),
            json!({"type":["string","null"]}),
            true,
            Some(SUM_TYPE_EXTENDED),
        ),
        (
            "nullable removed",
            json!({"type":["string","null"]}),
            json!({"type":"string"}),
            false,
            Some(TYPE_CHANGED),
        ),
        (
            "anyOf extended",
            json!({"anyOf":[{"type":"string"},{"type":"integer"}]}),
            json!({"anyOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}),
            true,
            Some(SUM_TYPE_EXTENDED),
        ),
        (
            "anyOf narrowed",
            json!({"anyOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}),
            json!({"anyOf":[{"type":"string"},{"type":"integer"}]}),
            false,
            Some(SUM_TYPE_NARROWED),
        ),
        (
            "model opened",
            closed.clone(),
            json!({"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":true}),
            true,
            Some(ADDITIONAL_PROPERTIES_ADDED),
        ),
        (
            "model closed",
            open.clone(),
            closed.clone(),
            false,
            Some(ADDITIONAL_PROPERTIES_REMOVED),
        ),
        (
            "array items type changed",
            json!({"type":"array","items":{"type":"string"}}),
            json!({"type":"array","items":{"type":"integer"}}),
            false,
            Some(TYPE_CHANGED),
        ),
        (
            "maxItems increased",
            json!({"type":"array","maxItems":2}),
            json!({"type":"array","maxItems":3}),
            true,
            Some(MAX_ITEMS_INCREASED),
        ),
        (
            "change inside a $ref definition",
            json!({"type":"object","properties":{"a":{"$ref":"#/definitions/A"}},"definitions":{"A":{"type":"string"}}}),
            json!({"type":"object","properties":{"a":{"$ref":"#/definitions/A"}},"definitions":{"A":{"type":"boolean"}}}),
            false,
            Some(TYPE_CHANGED),
        ),
        (
            "recursive schema unchanged",
            json!({"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#"}}}),
            json!({"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#"}}}),
            true,
            None,
        ),
        (
            "description changed",
            json!({"type":"string","description":"x"}),
            json!({"type":"string","description":"y"}),
            true,
            Some(DESCRIPTION_CHANGED),
        ),
        (
            "false original accepts anything",
            json!(false),
            json!({"type":"string"}),
            true,
            None,
        ),
        (
            "true update accepts anything",
            json!({"type":"string"}),
            json!(true),
            true,
            None,
        ),
    ]
}

#[test]
fn json_compatibility_table() {
    for (name, old, new, backward, expected) in cases() {
        let o = parse(SchemaType::Json, &old.to_string());
        let n = parse(SchemaType::Json, &new.to_string());
        let msgs = n.can_read(&o);
        assert_eq!(msgs.is_empty(), backward, "{name}: {msgs:?}");
        let (ParsedSchema::Json(oj), ParsedSchema::Json(nj)) = (&o, &n) else {
            unreachable!()
        };
        let changes = nj.changes_from(oj);
        match expected {
            Some(kind) => assert!(
                changes.iter().any(|c| c.kind == kind),
                "{name}: {kind:?} not in {changes:?}"
            ),
            None => assert!(
                changes.iter().all(|c| c.kind.compatible()),
                "{name}: {changes:?}"
            ),
        }
    }
}

#[test]
fn json_messages_name_the_path() {
    let o = parse(
        SchemaType::Json,
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
    );
    let n = parse(
        SchemaType::Json,
        r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#,
    );
    let msgs = n.can_read(&o);
    assert_eq!(msgs, vec!["TYPE_CHANGED at #/properties/a".to_string()]);
}

#[test]
fn json_payload_validation() {
    let s = parse(
        SchemaType::Json,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}"#,
    );
    assert!(s.validate_payload(&[], br#"{"a":"x"}"#).is_ok());
    assert!(s.validate_payload(&[], br#"{"a":1}"#).is_err());
    assert!(s.validate_payload(&[], br#"{"b":"x"}"#).is_err());
    assert!(s.validate_payload(&[], b"not json").is_err());
}

#[test]
fn json_invalid_schemas_are_refused() {
    for bad in [
        r#"{"type":"strin"}"#,
        r#"{"type":"object","required":"a"}"#,
        "42",
        "{",
    ] {
        assert!(
            ParsedSchema::parse(SchemaType::Json, bad, &[]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn json_references_resolve() {
    use crate::format::Dependency;
    let dep = |t: &str| Dependency {
        name: "address.json".into(),
        schema_type: SchemaType::Json,
        schema: format!(r#"{{"type":"object","properties":{{"city":{{"type":"{t}"}}}}}}"#),
    };
    let user = r#"{"type":"object","properties":{"home":{"$ref":"address.json"}}}"#;
    let v1 = super::parse_with(SchemaType::Json, user, &[dep("string")]);
    let v2 = super::parse_with(SchemaType::Json, user, &[dep("integer")]);
    assert!(v1
        .validate_payload(&[], br#"{"home":{"city":"x"}}"#)
        .is_ok());
    assert!(v1.validate_payload(&[], br#"{"home":{"city":1}}"#).is_err());
    let msgs = v2.can_read(&v1);
    assert!(msgs.iter().any(|m| m.contains("TYPE_CHANGED")), "{msgs:?}");
}
