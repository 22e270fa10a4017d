//! DescribeAcls/DeleteAcls filters (Kafka's `ResourcePatternFilterTest`,
//! `AclBindingFilterTest`), `AclTable::matching`, and the on-disk shape of a binding.

mod common;

use common::*;
use sluice_acl::AclOperation::*;
use sluice_acl::AclPermission::{Allow, Deny};
use sluice_acl::PatternType::{Literal, Match, Prefixed};
use sluice_acl::ResourceType::{Group, Topic};
use sluice_acl::*;

fn pattern_filter(rt: ResourceType, name: Option<&str>, pt: PatternType) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: rt,
        name: name.map(str::to_owned),
        pattern_type: pt,
        ..AclBindingFilter::ANY
    }
}

fn pattern(rt: ResourceType, name: &str, pt: PatternType) -> ResourcePattern {
    ResourcePattern::new(rt, name, pt)
}

/// Kafka: ResourcePatternFilterTest, case by case.
#[test]
fn resource_pattern_filter() {
    let cases: &[(&str, AclBindingFilter, ResourcePattern, bool)] = &[
        (
            "different resource type",
            pattern_filter(Topic, Some("Name"), Prefixed),
            pattern(Group, "Name", Prefixed),
            false,
        ),
        (
            "different name",
            pattern_filter(Topic, Some("Name"), Prefixed),
            pattern(Topic, "Different", Prefixed),
            false,
        ),
        (
            "different name case",
            pattern_filter(Topic, Some("Name"), Prefixed),
            pattern(Topic, "NAME", Prefixed),
            false,
        ),
        (
            "different pattern type",
            pattern_filter(Topic, Some("Name"), Literal),
            pattern(Topic, "Name", Prefixed),
            false,
        ),
        (
            "resource type ANY",
            pattern_filter(ResourceType::Any, Some("Name"), Prefixed),
            pattern(Topic, "Name", Prefixed),
            true,
        ),
        (
            "name null",
            pattern_filter(Topic, None, Prefixed),
            pattern(Topic, "Name", Prefixed),
            true,
        ),
        (
            "pattern type ANY",
            pattern_filter(Topic, Some("Name"), PatternType::Any),
            pattern(Topic, "Name", Prefixed),
            true,
        ),
        (
            "pattern type MATCH",
            pattern_filter(Topic, Some("Name"), Match),
            pattern(Topic, "Name", Prefixed),
            true,
        ),
        (
            "literal exact",
            pattern_filter(Topic, Some("Name"), Literal),
            pattern(Topic, "Name", Literal),
            true,
        ),
        (
            "literal, filter ANY",
            pattern_filter(Topic, Some("Name"), PatternType::Any),
            pattern(Topic, "Name", Literal),
            true,
        ),
        (
            "literal wildcard exact",
            pattern_filter(Topic, Some("*"), Literal),
            pattern(Topic, "*", Literal),
            true,
        ),
        (
            "literal wildcard vs other name",
            pattern_filter(Topic, Some("Name"), Literal),
            pattern(Topic, "*", Literal),
            false,
        ),
        (
            "literal wildcard the way around",
            pattern_filter(Topic, Some("*"), Literal),
            pattern(Topic, "Name", Literal),
            false,
        ),
        (
            "literal wildcard, filter ANY",
            pattern_filter(Topic, Some("Name"), PatternType::Any),
            pattern(Topic, "*", Literal),
            false,
        ),
        (
            "literal wildcard, filter MATCH",
            pattern_filter(Topic, Some("Name"), Match),
            pattern(Topic, "*", Literal),
            true,
        ),
        (
            "prefixed exact",
            pattern_filter(Topic, Some("Name"), Prefixed),
            pattern(Topic, "Name", Prefixed),
            true,
        ),
        (
            "both prefixed, filter a prefix of the resource",
            pattern_filter(Topic, Some("Name"), Prefixed),
            pattern(Topic, "Name-something", Prefixed),
            false,
        ),
        (
            "both prefixed, resource a prefix of the filter",
            pattern_filter(Topic, Some("Name-something"), Prefixed),
            pattern(Topic, "Name", Prefixed),
            false,
        ),
        (
            "prefixed, filter ANY",
            pattern_filter(Topic, Some("Name-something"), PatternType::Any),
            pattern(Topic, "Name", Prefixed),
            false,
        ),
        (
            "prefixed, filter MATCH",
            pattern_filter(Topic, Some("Name-something"), Match),
            pattern(Topic, "Name", Prefixed),
            true,
        ),
        (
            "prefixed longer than MATCH name",
            pattern_filter(Topic, Some("Name"), Match),
            pattern(Topic, "Name-something", Prefixed),
            false,
        ),
        (
            "literal, filter MATCH other name",
            pattern_filter(Topic, Some("Name-something"), Match),
            pattern(Topic, "Name", Literal),
            false,
        ),
        (
            "MATCH null name",
            pattern_filter(Topic, None, Match),
            pattern(Topic, "x", Literal),
            true,
        ),
        (
            "MATCH on '*' selects only the literal '*'",
            pattern_filter(Topic, Some("*"), Match),
            pattern(Topic, "x", Literal),
            false,
        ),
        (
            "filter UNKNOWN pattern type",
            pattern_filter(Topic, Some("Name"), PatternType::Unknown),
            pattern(Topic, "Name", Literal),
            false,
        ),
        (
            "filter UNKNOWN resource type",
            pattern_filter(ResourceType::Unknown, None, PatternType::Any),
            pattern(Topic, "Name", Literal),
            false,
        ),
    ];
    for (why, filter, pattern, expected) in cases {
        assert_eq!(filter.matches_pattern(pattern), *expected, "{why}");
    }
}

/// Kafka: AccessControlEntryFilter semantics (AclBindingFilterTest).
#[test]
fn entry_filter() {
    let entry = AccessControlEntry::new(ALICE, "10.0.0.1", Read, Allow);
    let f = |principal: Option<&str>, host: Option<&str>, op, perm| AclBindingFilter {
        principal: principal.map(str::to_owned),
        host: host.map(str::to_owned),
        operation: op,
        permission: perm,
        ..AclBindingFilter::ANY
    };
    assert!(f(None, None, AclOperation::Any, AclPermission::Any).matches_entry(&entry));
    assert!(f(Some(ALICE), Some("10.0.0.1"), Read, Allow).matches_entry(&entry));
    assert!(!f(Some(BOB), None, AclOperation::Any, AclPermission::Any).matches_entry(&entry));
    // Principals and hosts compare as text: `User:*` and `*` are not wildcards in a filter.
    assert!(!f(Some(ANY_USER), None, AclOperation::Any, AclPermission::Any).matches_entry(&entry));
    assert!(!f(None, Some("*"), AclOperation::Any, AclPermission::Any).matches_entry(&entry));
    // No implication: a DESCRIBE filter does not select READ.
    assert!(!f(None, None, Describe, AclPermission::Any).matches_entry(&entry));
    assert!(!f(None, None, All, AclPermission::Any).matches_entry(&entry));
    assert!(!f(None, None, AclOperation::Any, Deny).matches_entry(&entry));
    assert!(!f(None, None, AclOperation::Unknown, AclPermission::Any).matches_entry(&entry));
}

fn sample() -> Vec<AclBinding> {
    vec![
        literal(Topic, "orders", ALICE, Read, Allow),
        literal(Topic, "orders", BOB, Write, Allow),
        binding(Topic, "orders", Literal, ALICE, "10.0.0.1", Write, Deny),
        literal(Topic, "*", ANY_USER, Describe, Allow),
        prefixed(Topic, "ord", ALICE, All, Allow),
        prefixed(Topic, "orders", BOB, Read, Deny),
        prefixed(Topic, "orders-eu", BOB, Read, Allow),
        prefixed(Topic, "x", ALICE, Read, Allow),
        literal(Topic, "ord", ALICE, Read, Allow),
        literal(Group, "orders", ALICE, Read, Allow),
        prefixed(Group, "o", ANY_USER, Read, Allow),
        literal(ResourceType::Cluster, CLUSTER_NAME, ALICE, Alter, Allow),
    ]
}

fn names(found: &[AclBinding]) -> Vec<String> {
    found
        .iter()
        .map(|b| {
            format!(
                "{}:{}:{}:{}:{}",
                b.pattern.resource_type,
                b.pattern.pattern_type,
                b.pattern.name,
                b.entry.principal,
                b.entry.operation
            )
        })
        .collect()
}

#[test]
fn matching_selects_what_describe_and_delete_see() {
    let t = table(sample());
    // MATCH: everything that applies to topic "orders".
    let found = t.matching(&pattern_filter(Topic, Some("orders"), Match));
    assert_eq!(
        names(&found),
        [
            "TOPIC:LITERAL:*:User:*:DESCRIBE",
            "TOPIC:LITERAL:orders:User:alice:READ",
            "TOPIC:LITERAL:orders:User:alice:WRITE",
            "TOPIC:LITERAL:orders:User:bob:WRITE",
            "TOPIC:PREFIXED:ord:User:alice:ALL",
            "TOPIC:PREFIXED:orders:User:bob:READ",
        ]
    );
    // ANY: the exact name, both pattern types, every type.
    let found = t.matching(&pattern_filter(
        ResourceType::Any,
        Some("orders"),
        PatternType::Any,
    ));
    assert_eq!(
        names(&found),
        [
            "TOPIC:LITERAL:orders:User:alice:READ",
            "TOPIC:LITERAL:orders:User:alice:WRITE",
            "TOPIC:LITERAL:orders:User:bob:WRITE",
            "TOPIC:PREFIXED:orders:User:bob:READ",
            "GROUP:LITERAL:orders:User:alice:READ",
        ]
    );
    // A pattern type without a name.
    assert_eq!(t.matching(&pattern_filter(Topic, None, Prefixed)).len(), 4);
    // Principal, host, operation, permission.
    let f = AclBindingFilter {
        principal: Some(ALICE.into()),
        permission: Allow,
        ..AclBindingFilter::ANY
    };
    assert_eq!(t.matching(&f).len(), 6);
    let f = AclBindingFilter {
        host: Some("10.0.0.1".into()),
        ..AclBindingFilter::ANY
    };
    assert_eq!(
        names(&t.matching(&f)),
        ["TOPIC:LITERAL:orders:User:alice:WRITE"]
    );
    let f = AclBindingFilter {
        operation: All,
        ..AclBindingFilter::ANY
    };
    assert_eq!(
        names(&t.matching(&f)),
        ["TOPIC:PREFIXED:ord:User:alice:ALL"]
    );
    // Everything, in order; nothing for UNKNOWN or an absent type.
    assert_eq!(
        t.matching(&AclBindingFilter::ANY),
        t.iter().cloned().collect::<Vec<_>>()
    );
    assert!(t
        .matching(&pattern_filter(Topic, None, PatternType::Unknown))
        .is_empty());
    assert!(t
        .matching(&pattern_filter(
            ResourceType::Unknown,
            None,
            PatternType::Any
        ))
        .is_empty());
    assert!(t
        .matching(&pattern_filter(
            ResourceType::DelegationToken,
            None,
            PatternType::Any
        ))
        .is_empty());
}

#[test]
fn matching_is_iter_filtered_for_many_filters() {
    let t = table(sample());
    let names = [
        None,
        Some("orders"),
        Some("ord"),
        Some("orders-eu-1"),
        Some("*"),
        Some("o"),
        Some(""),
        Some(CLUSTER_NAME),
    ];
    let principals = [None, Some(ALICE), Some(ANY_USER), Some("User:nobody")];
    for &rt in ResourceType::VALUES {
        for &pt in PatternType::VALUES {
            for name in names {
                for principal in principals {
                    for op in [AclOperation::Any, Read, All] {
                        for perm in [AclPermission::Any, Allow, Deny] {
                            let f = AclBindingFilter {
                                resource_type: rt,
                                name: name.map(str::to_owned),
                                pattern_type: pt,
                                principal: principal.map(str::to_owned),
                                host: None,
                                operation: op,
                                permission: perm,
                            };
                            let expected: Vec<AclBinding> =
                                t.iter().filter(|b| f.matches(b)).cloned().collect();
                            assert_eq!(t.matching(&f), expected, "{f:?}");
                        }
                    }
                }
            }
        }
    }
}

/// DeleteAcls: every binding a filter selects is removed, the rest stay.
#[test]
fn delete_by_filter() {
    let mut t = table(sample());
    let f = AclBindingFilter {
        principal: Some(BOB.into()),
        ..AclBindingFilter::ANY
    };
    let doomed = t.matching(&f);
    assert_eq!(doomed.len(), 3);
    for b in &doomed {
        assert!(t.remove(b));
    }
    assert_eq!(t.len(), sample().len() - 3);
    assert!(t.iter().all(|b| b.entry.principal != BOB));
    assert!(t.matching(&f).is_empty());
    // An exact filter removes one binding.
    let one = literal(Topic, "orders", ALICE, Read, Allow);
    assert_eq!(t.matching(&one.to_filter()), [one]);
}

#[test]
fn on_disk_shape_is_stable() {
    let b = prefixed(
        ResourceType::TransactionalId,
        "app-",
        "User:alice",
        DescribeConfigs,
        Deny,
    );
    let json = serde_json::to_string(&b).unwrap();
    assert_eq!(
        json,
        r#"{"pattern":{"resource_type":"TRANSACTIONAL_ID","name":"app-","pattern_type":"PREFIXED"},"entry":{"principal":"User:alice","host":"*","operation":"DESCRIBE_CONFIGS","permission":"DENY"}}"#
    );
    let back: AclBinding = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b);
    // Every enum value round-trips by name.
    for &op in AclOperation::VALUES {
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, format!("\"{}\"", op.name()));
        assert_eq!(serde_json::from_str::<AclOperation>(&json).unwrap(), op);
    }
    for &rt in ResourceType::VALUES {
        assert_eq!(
            serde_json::to_string(&rt).unwrap(),
            format!("\"{}\"", rt.name())
        );
    }
    // Names are exact on disk; a code is not a name.
    assert!(serde_json::from_str::<AclOperation>("\"read\"").is_err());
    assert!(serde_json::from_str::<AclOperation>("3").is_err());
    assert!(serde_json::from_str::<AclBinding>(r#"{"pattern":{}}"#).is_err());
}
