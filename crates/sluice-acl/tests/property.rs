//! Seeded random tables and requests: the indexed authorizer against a naive reading of Kafka's
//! rules over every binding, the indexed filters against `iter().filter`, the table against a
//! set, and no panics on odd input.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::*;
use sluice_acl::AclOperation::*;
use sluice_acl::*;

const NAMES: &[&str] = &[
    "a", "ab", "abc", "b", "ba", "*", "é", "éa", "è", "a*", "x", "日本",
];
const REQUEST_NAMES: &[&str] = &[
    "a",
    "ab",
    "abc",
    "abcd",
    "b",
    "ba",
    "*",
    "é",
    "éa",
    "éab",
    "è",
    "a*",
    "x",
    "",
    "c",
    "日本語",
    "hardcode",
    "h",
];
const PRINCIPALS: &[&str] = &["User:alice", "User:bob", "User:*", "Group:alice"];
const REQUEST_PRINCIPALS: &[&str] = &[
    "User:alice",
    "User:bob",
    "User:admin",
    "Group:alice",
    "User:*",
    "User:carol",
];
const HOSTS: &[&str] = &["*", "10.0.0.1", "10.0.0.2"];
const REQUEST_HOSTS: &[&str] = &["10.0.0.1", "10.0.0.2", "10.0.0.3"];
const TYPES: &[ResourceType] = &[
    ResourceType::Topic,
    ResourceType::Group,
    ResourceType::Cluster,
    ResourceType::TransactionalId,
];

fn random_binding(rng: &mut Rng) -> AclBinding {
    let rt = rng.pick(TYPES);
    let name = if rt == ResourceType::Cluster {
        CLUSTER_NAME
    } else {
        rng.pick(NAMES)
    };
    let pt = if rng.chance(50) {
        PatternType::Literal
    } else {
        PatternType::Prefixed
    };
    // Few operations, so that bindings meet requests often.
    let op = rng.pick(&[
        Read,
        Write,
        Describe,
        All,
        AlterConfigs,
        DescribeConfigs,
        Create,
        Delete,
        Alter,
    ]);
    let perm = if rng.chance(30) {
        AclPermission::Deny
    } else {
        AclPermission::Allow
    };
    binding(
        rt,
        name,
        pt,
        rng.pick(PRINCIPALS),
        rng.pick(HOSTS),
        op,
        perm,
    )
}

fn random_table(rng: &mut Rng) -> AclTable {
    let n = rng.below(40);
    (0..n).map(|_| random_binding(rng)).collect()
}

fn random_config(rng: &mut Rng) -> AuthorizerConfig {
    AuthorizerConfig {
        super_users: if rng.chance(50) {
            vec!["User:admin".into()]
        } else {
            vec![]
        },
        allow_everyone_if_no_acl_found: rng.chance(50),
    }
}

/// Kafka's rules read naively over every binding.
#[derive(Debug, PartialEq)]
enum Expected {
    Invalid,
    SuperUser,
    Deny(HashSet<AclBinding>),
    Allow(HashSet<AclBinding>),
    NoAclFound(bool),
    NoMatchingAcl,
}

fn applies(b: &AclBinding, rt: ResourceType, name: &str) -> bool {
    b.pattern.resource_type == rt
        && match b.pattern.pattern_type {
            PatternType::Literal => b.pattern.name == name || b.pattern.name == "*",
            PatternType::Prefixed => name.starts_with(&b.pattern.name),
            _ => false,
        }
}

fn implies(granted: AclOperation, asked: AclOperation) -> bool {
    granted == All
        || granted == asked
        || (asked == Describe && [Read, Write, Delete, Alter].contains(&granted))
        || (asked == DescribeConfigs && granted == AlterConfigs)
}

fn expected(table: &AclTable, config: &AuthorizerConfig, req: &Request<'_>) -> Expected {
    if !req.operation.is_concrete() || !req.resource_type.is_concrete() {
        return Expected::Invalid;
    }
    if config.super_users.iter().any(|u| u == req.principal) {
        return Expected::SuperUser;
    }
    let applying: Vec<&AclBinding> = table
        .iter()
        .filter(|b| applies(b, req.resource_type, req.name))
        .collect();
    if applying.is_empty() {
        return Expected::NoAclFound(config.allow_everyone_if_no_acl_found);
    }
    let matching: Vec<&AclBinding> = applying
        .into_iter()
        .filter(|b| b.entry.principal == req.principal || b.entry.principal == "User:*")
        .filter(|b| b.entry.host == "*" || b.entry.host == req.host)
        .collect();
    let denies: HashSet<AclBinding> = matching
        .iter()
        .filter(|b| b.entry.permission == AclPermission::Deny)
        .filter(|b| b.entry.operation == All || b.entry.operation == req.operation)
        .map(|b| (*b).clone())
        .collect();
    if !denies.is_empty() {
        return Expected::Deny(denies);
    }
    let allows: HashSet<AclBinding> = matching
        .iter()
        .filter(|b| {
            b.entry.permission == AclPermission::Allow && implies(b.entry.operation, req.operation)
        })
        .map(|b| (*b).clone())
        .collect();
    if !allows.is_empty() {
        return Expected::Allow(allows);
    }
    Expected::NoMatchingAcl
}

fn check(decision: &Decision, expected: &Expected) -> bool {
    match (decision, expected) {
        (Decision::Denied(Reason::InvalidRequest), Expected::Invalid) => true,
        (Decision::Allowed(Reason::SuperUser), Expected::SuperUser) => true,
        (Decision::Denied(Reason::DenyAcl(b)), Expected::Deny(set)) => set.contains(&**b),
        (Decision::Allowed(Reason::AllowAcl(b)), Expected::Allow(set)) => set.contains(&**b),
        (Decision::Allowed(Reason::NoAclFound), Expected::NoAclFound(true)) => true,
        (Decision::Denied(Reason::NoAclFound), Expected::NoAclFound(false)) => true,
        (Decision::Denied(Reason::NoMatchingAcl), Expected::NoMatchingAcl) => true,
        _ => false,
    }
}

fn random_request<'a>(rng: &mut Rng) -> Request<'a> {
    let ops = AclOperation::VALUES;
    let rt = if rng.chance(5) {
        rng.pick(ResourceType::VALUES)
    } else {
        rng.pick(TYPES)
    };
    let name = if rt == ResourceType::Cluster && rng.chance(80) {
        CLUSTER_NAME
    } else {
        rng.pick(REQUEST_NAMES)
    };
    let op = if rng.chance(5) {
        rng.pick(ops)
    } else {
        rng.pick(&[
            Read,
            Write,
            Describe,
            DescribeConfigs,
            AlterConfigs,
            Create,
            Delete,
            Alter,
            ClusterAction,
        ])
    };
    request(
        rng.pick(REQUEST_PRINCIPALS),
        rng.pick(REQUEST_HOSTS),
        op,
        rt,
        name,
    )
}

#[test]
fn authorize_matches_the_naive_reading() {
    let mut rng = Rng::new(0x5EED_0AC1);
    let mut seen = [0usize; 7];
    for round in 0..3_000 {
        let table = random_table(&mut rng);
        let config = random_config(&mut rng);
        for _ in 0..30 {
            let req = random_request(&mut rng);
            let decision = authorize(&table, &config, &req);
            let want = expected(&table, &config, &req);
            assert!(
                check(&decision, &want),
                "round {round}: {req:?}\n got {decision:?}\n want {want:?}\n table {:#?}",
                table.iter().collect::<Vec<_>>()
            );
            let kind = match want {
                Expected::Invalid => 0,
                Expected::SuperUser => 1,
                Expected::Deny(_) => 2,
                Expected::Allow(_) => 3,
                Expected::NoAclFound(true) => 4,
                Expected::NoAclFound(false) => 5,
                Expected::NoMatchingAcl => 6,
            };
            seen[kind] += 1;
        }
    }
    // Every outcome was exercised, none rarely.
    assert!(seen.iter().all(|&n| n > 1_000), "{seen:?}");
}

#[test]
fn authorized_operations_matches_the_naive_reading() {
    let mut rng = Rng::new(42);
    for _ in 0..1_000 {
        let table = random_table(&mut rng);
        let config = random_config(&mut rng);
        let req = random_request(&mut rng);
        let naive = operations_bit_field(
            supported_operations(req.resource_type)
                .iter()
                .copied()
                .filter(|&operation| {
                    matches!(
                        expected(&table, &config, &Request { operation, ..req }),
                        Expected::SuperUser | Expected::Allow(_) | Expected::NoAclFound(true)
                    )
                }),
        );
        assert_eq!(
            authorized_operations(
                &table,
                &config,
                req.principal,
                req.host,
                req.resource_type,
                req.name
            ),
            naive
        );
    }
}

/// Kafka's `authorizeByResourceType` transcribed over every binding.
fn naive_any(
    table: &AclTable,
    config: &AuthorizerConfig,
    principal: &str,
    host: &str,
    op: AclOperation,
    rt: ResourceType,
) -> bool {
    if !op.is_concrete() || !rt.is_concrete() {
        return false;
    }
    if authorize(table, config, &request(principal, host, op, rt, "hardcode")).is_allowed() {
        return true;
    }
    let mut deny_literal = HashSet::new();
    let mut deny_prefixed = HashSet::new();
    let mut allow_literal = HashSet::new();
    let mut allow_prefixed = HashSet::new();
    let mut wildcard_allow = false;
    for b in table.iter().filter(|b| b.pattern.resource_type == rt) {
        if b.entry.host != host && b.entry.host != "*" {
            continue;
        }
        if b.entry.principal != principal && b.entry.principal != "User:*" {
            continue;
        }
        if b.entry.operation != op && b.entry.operation != All {
            continue;
        }
        let literal = b.pattern.pattern_type == PatternType::Literal;
        let name = b.pattern.name.clone();
        if b.entry.permission == AclPermission::Deny {
            if literal && name == "*" {
                return false;
            }
            if literal {
                deny_literal.insert(name)
            } else {
                deny_prefixed.insert(name)
            };
            continue;
        }
        if literal && name == "*" {
            wildcard_allow = true;
            continue;
        }
        if literal {
            allow_literal.insert(name)
        } else {
            allow_prefixed.insert(name)
        };
    }
    if wildcard_allow {
        return true;
    }
    let dominated = |name: &String| {
        let mut prefix = String::new();
        name.chars().any(|c| {
            prefix.push(c);
            deny_prefixed.contains(&prefix)
        })
    };
    allow_literal
        .iter()
        .any(|n| !deny_literal.contains(n) && !dominated(n))
        || allow_prefixed.iter().any(|n| !dominated(n))
}

#[test]
fn authorize_any_matches_kafkas_algorithm() {
    let mut rng = Rng::new(7);
    let (mut yes, mut no) = (0, 0);
    for _ in 0..3_000 {
        let table = random_table(&mut rng);
        let config = random_config(&mut rng);
        for _ in 0..10 {
            let req = random_request(&mut rng);
            let got = authorize_any(
                &table,
                &config,
                req.principal,
                req.host,
                req.operation,
                req.resource_type,
            );
            let want = naive_any(
                &table,
                &config,
                req.principal,
                req.host,
                req.operation,
                req.resource_type,
            );
            assert_eq!(
                got.is_allowed(),
                want,
                "{req:?} {got:?}\n{:#?}",
                table.iter().collect::<Vec<_>>()
            );
            if want {
                yes += 1
            } else {
                no += 1
            }
        }
    }
    assert!(yes > 3_000 && no > 3_000, "{yes} {no}");
}

#[test]
fn matching_equals_iter_filter() {
    let mut rng = Rng::new(99);
    for _ in 0..2_000 {
        let table = random_table(&mut rng);
        for _ in 0..10 {
            let pick_opt = |rng: &mut Rng, items: &[&str]| {
                if rng.chance(40) {
                    None
                } else {
                    Some(rng.pick(items).to_owned())
                }
            };
            let filter = AclBindingFilter {
                resource_type: rng.pick(ResourceType::VALUES),
                name: pick_opt(&mut rng, REQUEST_NAMES),
                pattern_type: rng.pick(PatternType::VALUES),
                principal: pick_opt(&mut rng, REQUEST_PRINCIPALS),
                host: pick_opt(&mut rng, HOSTS),
                operation: if rng.chance(60) {
                    AclOperation::Any
                } else {
                    rng.pick(AclOperation::VALUES)
                },
                permission: rng.pick(AclPermission::VALUES),
            };
            let want: Vec<AclBinding> = table
                .iter()
                .filter(|b| filter.matches(b))
                .cloned()
                .collect();
            assert_eq!(table.matching(&filter), want, "{filter:?}");
        }
    }
}

#[test]
fn table_behaves_as_a_set() {
    let mut rng = Rng::new(2024);
    let mut table = AclTable::new();
    let mut model = BTreeSet::new();
    for step in 0..20_000 {
        let b = random_binding(&mut rng);
        if rng.chance(55) {
            assert_eq!(table.add(b.clone()), model.insert(b), "step {step}");
        } else {
            assert_eq!(table.remove(&b), model.remove(&b), "step {step}");
        }
        assert_eq!(table.len(), model.len());
        if step % 500 == 0 {
            assert!(table.iter().eq(model.iter()));
            for b in &model {
                assert!(table.contains(b));
            }
        }
    }
    assert!(table.iter().eq(model.iter()));
    // Removing everything empties the index completely.
    for b in &model {
        assert!(table.remove(b));
    }
    assert_eq!(table, AclTable::new());
}

fn random_text(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "b",
        ":",
        "*",
        "é",
        "è",
        "日",
        "\u{0}",
        "\u{10FFFF}",
        "User",
        "User:",
        " ",
        "ab",
    ];
    (0..rng.below(6)).map(|_| rng.pick(PIECES)).collect()
}

/// Anything a client can send goes through every entry point without a panic, and whatever the
/// table stored passes validation.
#[test]
fn odd_input_never_panics() {
    let mut rng = Rng::new(0xBAD);
    let mut table = AclTable::new();
    for _ in 0..20_000 {
        let b = binding(
            rng.pick(ResourceType::VALUES),
            &random_text(&mut rng),
            rng.pick(PatternType::VALUES),
            &random_text(&mut rng),
            &random_text(&mut rng),
            rng.pick(AclOperation::VALUES),
            rng.pick(AclPermission::VALUES),
        );
        let valid = b.validate().is_ok();
        let present = table.contains(&b);
        assert_eq!(table.add(b.clone()), valid && !present);
        let name = random_text(&mut rng);
        let principal = random_text(&mut rng);
        let host = random_text(&mut rng);
        let req = request(
            &principal,
            &host,
            rng.pick(AclOperation::VALUES),
            rng.pick(ResourceType::VALUES),
            &name,
        );
        let config = random_config(&mut rng);
        let _ = authorize(&table, &config, &req);
        let _ = authorize_any(
            &table,
            &config,
            &principal,
            &host,
            req.operation,
            req.resource_type,
        );
        let _ = authorized_operations(&table, &config, &principal, &host, req.resource_type, &name);
        let filter = AclBindingFilter {
            name: Some(name.clone()),
            pattern_type: rng.pick(PatternType::VALUES),
            ..b.to_filter()
        };
        let _ = filter.validate();
        let _ = table.matching(&filter);
        if rng.chance(10) {
            table.remove(&b);
        }
    }
    assert!(table.iter().all(|b| b.validate().is_ok()));
    assert!(!table.is_empty());
    for code in i8::MIN..=i8::MAX {
        let _ = (
            ResourceType::from_code(code),
            PatternType::from_code(code),
            AclOperation::from_code(code),
            AclPermission::from_code(code),
        );
    }
    let _ = operations_from_bit_field(-1);
}
