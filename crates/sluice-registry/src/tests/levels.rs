//! The seven levels through the registry, with three versions so transitive and
//! non-transitive levels differ.

use std::sync::Arc;

use super::req;
use crate::model::{CompatibilityLevel, SchemaType};
use crate::{MemoryJournal, Registry, RegistryError};

fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)
}

/// Registers v1, v2 under `level` (both must pass) and answers whether v3 is accepted.
async fn third_accepted(level: CompatibilityLevel, v1: &str, v2: &str, v3: &str) -> bool {
    let r = Registry::new(Arc::new(MemoryJournal::new()));
    r.set_config(Some("s"), level, Option::None).await.unwrap();
    r.register("s", req(SchemaType::Avro, v1), false)
        .await
        .unwrap();
    r.register("s", req(SchemaType::Avro, v2), false)
        .await
        .unwrap();
    match r.register("s", req(SchemaType::Avro, v3), false).await {
        Ok(_) => true,
        Err(RegistryError::Incompatible { messages, .. }) => {
            assert!(
                messages.iter().any(|m| m.contains(level.as_str())),
                "{messages:?}"
            );
            false
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[tokio::test]
async fn transitive_and_non_transitive_levels_differ() {
    use CompatibilityLevel::*;
    let a = r#"{"name":"a","type":"int"}"#;
    let b_def = r#"{"name":"b","type":"string","default":"x"}"#;
    let b = r#"{"name":"b","type":"string"}"#;
    // v3 reads v2 (b written) but not v1 (b missing, no default).
    let (v1, v2, v3) = (
        rec(a),
        rec(&format!("{a},{b_def}")),
        rec(&format!("{a},{b}")),
    );
    assert!(third_accepted(Backward, &v1, &v2, &v3).await);
    assert!(!third_accepted(BackwardTransitive, &v1, &v2, &v3).await);
    assert!(third_accepted(Full, &v1, &v2, &v3).await);
    assert!(!third_accepted(FullTransitive, &v1, &v2, &v3).await);
    assert!(third_accepted(None, &v1, &v2, &v3).await);

    // v2 reads v3's data (b defaulted) but v1 cannot (b without default).
    let (f1, f2, f3) = (
        rec(&format!("{a},{b}")),
        rec(&format!("{a},{b_def}")),
        rec(a),
    );
    assert!(third_accepted(Forward, &f1, &f2, &f3).await);
    assert!(!third_accepted(ForwardTransitive, &f1, &f2, &f3).await);
}

#[tokio::test]
async fn directions() {
    use CompatibilityLevel::*;
    let a = r#"{"name":"a","type":"int"}"#;
    let v1 = rec(a);
    let added_required = rec(&format!(r#"{a},{{"name":"b","type":"int"}}"#));
    // A new field without default: the new schema cannot read old data (BACKWARD fails),
    // old readers ignore it (FORWARD passes).
    for (level, ok) in [
        (Backward, false),
        (BackwardTransitive, false),
        (Forward, true),
        (ForwardTransitive, true),
        (Full, false),
        (FullTransitive, false),
        (None, true),
    ] {
        let r = Registry::new(Arc::new(MemoryJournal::new()));
        r.set_config(Option::None, level, Option::None)
            .await
            .unwrap();
        r.register("s", req(SchemaType::Avro, &v1), false)
            .await
            .unwrap();
        let got = r
            .register("s", req(SchemaType::Avro, &added_required), false)
            .await;
        assert_eq!(got.is_ok(), ok, "{level:?}: {got:?}");
    }
}

#[tokio::test]
async fn default_level_is_backward_and_subject_overrides_global() {
    let r = Registry::new(Arc::new(MemoryJournal::new()));
    assert_eq!(
        r.config(None, true).unwrap().compatibility,
        CompatibilityLevel::Backward
    );
    r.set_config(None, CompatibilityLevel::Full, None)
        .await
        .unwrap();
    assert_eq!(
        r.config(Some("s"), true).unwrap().compatibility,
        CompatibilityLevel::Full
    );
    assert!(matches!(
        r.config(Some("s"), false),
        Err(RegistryError::SubjectCompatibilityNotConfigured(_))
    ));
    r.set_config(Some("s"), CompatibilityLevel::None, None)
        .await
        .unwrap();
    assert_eq!(
        r.config(Some("s"), false).unwrap().compatibility,
        CompatibilityLevel::None
    );
    r.delete_config(Some("s")).await.unwrap();
    assert_eq!(
        r.config(Some("s"), true).unwrap().compatibility,
        CompatibilityLevel::Full
    );
}

#[tokio::test]
async fn protobuf_and_json_levels_through_the_registry() {
    let r = Registry::new(Arc::new(MemoryJournal::new()));
    let p1 = "syntax = \"proto3\"; message M { int32 a = 1; }";
    let p2 = "syntax = \"proto3\"; message M { string a = 1; }";
    r.register("p", req(SchemaType::Protobuf, p1), false)
        .await
        .unwrap();
    assert!(matches!(
        r.register("p", req(SchemaType::Protobuf, p2), false).await,
        Err(RegistryError::Incompatible { .. })
    ));
    let j1 =
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#;
    let j2 = r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}"#;
    r.register("j", req(SchemaType::Json, j1), false)
        .await
        .unwrap();
    r.register("j", req(SchemaType::Json, j2), false)
        .await
        .unwrap();
    // Changing format is incompatible.
    assert!(matches!(
        r.register("j", req(SchemaType::Avro, r#""string""#), false)
            .await,
        Err(RegistryError::Incompatible { .. })
    ));
}
