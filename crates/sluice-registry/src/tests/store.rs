//! Ids, versions, deletes, replay, modes and the journal, through the registry and the pure
//! store.

use std::sync::Arc;

use super::{req, req_refs};
use crate::model::{CompatibilityLevel, Mode, SchemaType, VersionSpec};
use crate::store::RegistryEvent;
use crate::{MemoryJournal, Registry, RegistryError, SchemaRequest};

const S1: &str = r#"{"type":"record","name":"A","fields":[{"name":"a","type":"int"}]}"#;
const S2: &str = r#"{"type":"record","name":"B","fields":[{"name":"b","type":"int"}]}"#;

fn registry() -> (Registry, MemoryJournal) {
    let j = MemoryJournal::new();
    (Registry::new(Arc::new(j.clone())), j)
}

fn avro(s: &str) -> SchemaRequest {
    req(SchemaType::Avro, s)
}

#[tokio::test]
async fn ids_are_shared_across_subjects_and_versions_are_per_subject() {
    let (r, j) = registry();
    let a = r.register("a", avro(S1), false).await.unwrap();
    // Same schema with other whitespace under another subject: same id, its own version 1.
    let spaced = S1.replace(',', " ,\n ");
    let b = r.register("b", avro(&spaced), false).await.unwrap();
    assert_eq!((a.id, a.version), (1, 1));
    assert_eq!((b.id, b.version), (1, 1));
    // Registering it again in the same subject: same id and version, nothing journaled.
    let events = j.events().len();
    let again = r.register("a", avro(S1), false).await.unwrap();
    assert_eq!((again.id, again.version), (1, 1));
    assert_eq!(j.events().len(), events);
    let c = r.register("a", avro(S2), false).await;
    // S2 renames the record: incompatible under BACKWARD.
    assert!(matches!(c, Err(RegistryError::Incompatible { .. })));
    r.set_config(Some("a"), CompatibilityLevel::None, None)
        .await
        .unwrap();
    let c = r.register("a", avro(S2), false).await.unwrap();
    assert_eq!((c.id, c.version), (2, 2));
}

#[tokio::test]
async fn ids_are_never_reused_after_hard_delete() {
    let (r, _) = registry();
    let a = r.register("a", avro(S1), false).await.unwrap();
    assert_eq!(r.delete_subject("a", false).await.unwrap(), vec![1]);
    // Soft-deleted: the id still resolves.
    assert!(r.schema_by_id(a.id).is_ok());
    assert_eq!(r.delete_subject("a", true).await.unwrap(), vec![1]);
    assert!(matches!(
        r.schema_by_id(a.id),
        Err(RegistryError::SchemaNotFound(_))
    ));
    let b = r.register("b", avro(S2), false).await.unwrap();
    assert_eq!(b.id, 2, "a new schema never takes a freed id");
    // The old schema comes back with its old id: an id always means one schema.
    let again = r.register("c", avro(S1), false).await.unwrap();
    assert_eq!(again.id, a.id);
}

#[tokio::test]
async fn replay_rebuilds_identical_state() {
    let (r, j) = registry();
    r.register("a", avro(S1), false).await.unwrap();
    r.set_config(Some("b"), CompatibilityLevel::None, Some(true))
        .await
        .unwrap();
    r.register("b", avro(S1), false).await.unwrap();
    r.register("b", avro(S2), false).await.unwrap();
    r.delete_version("b", VersionSpec::Number(1), false)
        .await
        .unwrap();
    r.set_mode(Some("z"), Mode::ReadOnly, false).await.unwrap();
    r.set_config(None, CompatibilityLevel::FullTransitive, None)
        .await
        .unwrap();
    r.delete_subject("a", false).await.unwrap();
    r.delete_subject("a", true).await.unwrap();

    let replayed = Registry::new(Arc::new(MemoryJournal::new()));
    for e in j.events() {
        replayed.replay(&e).unwrap();
    }
    assert_eq!(replayed.snapshot(), r.snapshot());
    // Replaying twice more changes nothing more than it did once (idempotent events).
    let twice = Registry::new(Arc::new(MemoryJournal::new()));
    for e in j.events().iter().chain(j.events().iter()) {
        twice.replay(e).unwrap();
    }
    assert_eq!(twice.subjects("", true, false), r.subjects("", true, false));
    // Unknown event types are skipped; garbage is an error.
    replayed
        .replay(br#"{"type":"SomethingNew","x":1}"#)
        .unwrap();
    assert!(replayed.replay(b"\xff not json").is_err());
}

#[tokio::test]
async fn event_format_is_plain_tagged_json() {
    let e = RegistryEvent::SchemaRegistered {
        subject: "s".into(),
        version: 1,
        id: 7,
        schema_type: SchemaType::Protobuf,
        schema: "x".into(),
        references: vec![],
    };
    let text = String::from_utf8(e.encode()).unwrap();
    assert_eq!(
        text,
        r#"{"type":"SchemaRegistered","subject":"s","version":1,"id":7,"schema_type":"PROTOBUF","schema":"x"}"#
    );
    assert_eq!(RegistryEvent::decode(text.as_bytes()).unwrap(), e);
    let c = RegistryEvent::ConfigSet {
        subject: None,
        compatibility: CompatibilityLevel::FullTransitive,
        normalize: None,
    };
    assert_eq!(
        String::from_utf8(c.encode()).unwrap(),
        r#"{"type":"ConfigSet","compatibility":"FULL_TRANSITIVE"}"#
    );
}

#[tokio::test]
async fn soft_and_hard_delete_error_codes() {
    let (r, _) = registry();
    r.set_config(None, CompatibilityLevel::None, None)
        .await
        .unwrap();
    r.register("s", avro(S1), false).await.unwrap();
    r.register("s", avro(S2), false).await.unwrap();
    let code = |e: RegistryError| e.error_code();

    assert_eq!(
        code(
            r.delete_version("s", VersionSpec::Number(9), false)
                .await
                .unwrap_err()
        ),
        40402
    );
    assert_eq!(
        code(
            r.delete_version("nope", VersionSpec::Number(1), false)
                .await
                .unwrap_err()
        ),
        40401
    );
    assert_eq!(
        code(
            r.delete_version("s", VersionSpec::Number(1), true)
                .await
                .unwrap_err()
        ),
        40407
    );
    assert_eq!(
        r.delete_version("s", VersionSpec::Number(1), false)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        code(
            r.delete_version("s", VersionSpec::Number(1), false)
                .await
                .unwrap_err()
        ),
        40406
    );
    // A soft-deleted version is invisible unless asked for.
    assert_eq!(
        code(r.version("s", VersionSpec::Number(1), false).unwrap_err()),
        40402
    );
    assert!(
        r.version("s", VersionSpec::Number(1), true)
            .unwrap()
            .deleted
    );
    assert_eq!(r.versions("s", false, false).unwrap(), vec![2]);
    assert_eq!(r.versions("s", true, false).unwrap(), vec![1, 2]);
    assert_eq!(r.versions("s", false, true).unwrap(), vec![1]);
    assert_eq!(
        r.delete_version("s", VersionSpec::Number(1), true)
            .await
            .unwrap(),
        1
    );

    assert_eq!(code(r.delete_subject("s", true).await.unwrap_err()), 40405);
    assert_eq!(r.delete_subject("s", false).await.unwrap(), vec![2]);
    assert_eq!(code(r.delete_subject("s", false).await.unwrap_err()), 40404);
    assert_eq!(code(r.versions("s", false, false).unwrap_err()), 40401);
    assert_eq!(r.subjects("", false, false), Vec::<String>::new());
    assert_eq!(r.subjects("", true, false), vec!["s".to_string()]);
    assert_eq!(r.subjects("", false, true), vec!["s".to_string()]);
    assert_eq!(r.delete_subject("s", true).await.unwrap(), vec![2]);
    assert_eq!(code(r.delete_subject("s", true).await.unwrap_err()), 40401);
}

#[tokio::test]
async fn references_are_resolved_and_protected() {
    let (r, _) = registry();
    let addr = r#"{"type":"record","name":"Address","namespace":"ns","fields":[{"name":"city","type":"string"}]}"#;
    let user = r#"{"type":"record","name":"User","namespace":"ns","fields":[{"name":"home","type":"ns.Address"}]}"#;
    r.register("addr", avro(addr), false).await.unwrap();
    // Without the reference the type is unknown: invalid schema.
    assert_eq!(
        r.register("user", avro(user), false)
            .await
            .unwrap_err()
            .error_code(),
        42201
    );
    let missing = req_refs(SchemaType::Avro, user, &[("ns.Address", "addr", 5)]);
    assert_eq!(
        r.register("user", missing, false)
            .await
            .unwrap_err()
            .error_code(),
        42201
    );
    let u = r
        .register(
            "user",
            req_refs(SchemaType::Avro, user, &[("ns.Address", "addr", 1)]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        r.referenced_by("addr", VersionSpec::Number(1)).unwrap(),
        vec![u.id]
    );
    // A referenced version cannot be deleted.
    assert_eq!(
        r.delete_version("addr", VersionSpec::Number(1), false)
            .await
            .unwrap_err()
            .error_code(),
        42206
    );
    assert_eq!(
        r.delete_subject("addr", false)
            .await
            .unwrap_err()
            .error_code(),
        42206
    );
    // Validation of a referencing schema's payloads works through the reference.
    let bytes = crate::wire::frame(u.id, None, &[4, b'o', b's']);
    r.validate(&bytes, true).unwrap();
}

#[tokio::test]
async fn modes() {
    let (r, _) = registry();
    r.register("s", avro(S1), false).await.unwrap();
    r.set_mode(Some("s"), Mode::ReadOnly, false).await.unwrap();
    assert_eq!(
        r.register("s", avro(S2), false)
            .await
            .unwrap_err()
            .error_code(),
        42205
    );
    assert_eq!(
        r.delete_subject("s", false).await.unwrap_err().error_code(),
        42205
    );
    assert_eq!(
        r.mode(Some("other"), false).unwrap_err().error_code(),
        40409
    );
    assert_eq!(r.mode(Some("other"), true).unwrap(), Mode::ReadWrite);
    r.delete_mode(Some("s")).await.unwrap();

    // IMPORT needs an empty subject unless forced, then keeps the caller's id and version.
    assert_eq!(
        r.set_mode(Some("s"), Mode::Import, false)
            .await
            .unwrap_err()
            .error_code(),
        42205
    );
    r.set_mode(Some("imp"), Mode::Import, false).await.unwrap();
    let mut imported = avro(S2);
    imported.id = Some(100);
    imported.version = Some(7);
    let got = r.register("imp", imported.clone(), false).await.unwrap();
    assert_eq!((got.id, got.version), (100, 7));
    // Id 1 is S1: importing another schema under it is refused (42207).
    let mut clash = avro(S2);
    clash.id = Some(1);
    assert_eq!(
        r.register("imp", clash, false)
            .await
            .unwrap_err()
            .error_code(),
        42207
    );
    // New ids continue after the largest imported one.
    r.set_mode(Some("imp"), Mode::ReadWrite, false)
        .await
        .unwrap();
    r.set_config(None, CompatibilityLevel::None, None)
        .await
        .unwrap();
    let next = r
        .register(
            "fresh",
            avro(r#"{"type":"fixed","name":"F","size":3}"#),
            false,
        )
        .await
        .unwrap();
    assert_eq!(next.id, 101);
}

#[tokio::test]
async fn journal_failure_is_a_store_error_and_changes_nothing() {
    let (r, j) = registry();
    j.set_failing(true);
    let e = r.register("s", avro(S1), false).await.unwrap_err();
    assert_eq!(e.error_code(), 50001);
    assert!(r.subjects("", true, false).is_empty());
    j.set_failing(false);
    assert_eq!(r.register("s", avro(S1), false).await.unwrap().id, 1);
}

#[tokio::test]
async fn lookup_finds_the_version() {
    let (r, _) = registry();
    r.set_config(None, CompatibilityLevel::None, None)
        .await
        .unwrap();
    r.register("s", avro(S1), false).await.unwrap();
    r.register("s", avro(S2), false).await.unwrap();
    let sv = r.lookup("s", &avro(S1), false, false).unwrap();
    assert_eq!((sv.version, sv.id), (1, 1));
    assert_eq!(
        r.lookup("x", &avro(S1), false, false)
            .unwrap_err()
            .error_code(),
        40401
    );
    let other = r#"{"type":"record","name":"C","fields":[]}"#;
    assert_eq!(
        r.lookup("s", &avro(other), false, false)
            .unwrap_err()
            .error_code(),
        40403
    );
    r.delete_version("s", VersionSpec::Number(1), false)
        .await
        .unwrap();
    assert_eq!(
        r.lookup("s", &avro(S1), false, false)
            .unwrap_err()
            .error_code(),
        40403
    );
    assert_eq!(r.lookup("s", &avro(S1), false, true).unwrap().version, 1);
}

#[tokio::test]
async fn normalize_stores_the_normalized_text() {
    let (r, _) = registry();
    // Key order as a person might write it; normalisation puts `type` first.
    let text = r#"{"fields":[{"type":"int","name":"a"}],"name":"A","type":"record"}"#;
    let reg = r.register("s", avro(text), true).await.unwrap();
    let stored = r.schema_by_id(reg.id).unwrap();
    assert!(
        stored.schema.starts_with(r#"{"type":"record""#),
        "{}",
        stored.schema
    );
    // A lookup with normalize finds it from the original text; without, it does not.
    assert_eq!(r.lookup("s", &avro(text), true, false).unwrap().id, reg.id);
    assert_eq!(
        r.lookup("s", &avro(text), false, false)
            .unwrap_err()
            .error_code(),
        40403
    );
}

/// A snapshot event rebuilds exactly the state it was taken from — schemas kept after hard
/// deletes, soft-deleted versions, configs and modes — and replaces whatever came before it.
#[tokio::test]
async fn snapshot_event_rebuilds_the_whole_state() {
    let (r, _) = registry();
    r.register("a", avro(S1), false).await.unwrap();
    r.set_config(Some("b"), CompatibilityLevel::None, Some(true))
        .await
        .unwrap();
    r.register("b", avro(S2), false).await.unwrap();
    r.register("c", avro(S2), false).await.unwrap();
    r.delete_subject("a", false).await.unwrap();
    r.delete_subject("a", true).await.unwrap();
    r.delete_subject("c", false).await.unwrap();
    r.set_config(None, CompatibilityLevel::Full, None)
        .await
        .unwrap();
    r.set_mode(Some("b"), Mode::ReadOnly, false).await.unwrap();
    let live = r.snapshot();
    let event = RegistryEvent::Snapshot {
        image: Box::new(live.image()),
    };
    let bytes = event.encode();

    // Replayed after unrelated history, the snapshot wins.
    let (fresh, _) = registry();
    fresh
        .replay(
            &RegistryEvent::ConfigSet {
                subject: Some("zzz".into()),
                compatibility: CompatibilityLevel::Forward,
                normalize: None,
            }
            .encode(),
        )
        .unwrap();
    fresh.replay(&bytes).unwrap();
    assert_eq!(fresh.snapshot(), live);
    // Ids are still never reused after a snapshot.
    fresh
        .set_mode(Some("b"), Mode::ReadWrite, false)
        .await
        .unwrap();
    let d = fresh
        .register(
            "d",
            avro(r#"{"type":"record","name":"D","fields":[]}"#),
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.id, 3);
}
