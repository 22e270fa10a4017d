//! `authorize` and `authorized_operations`, modelled on Kafka's `StandardAuthorizerTest` (the
//! cases marked "Kafka:" are its tests with the same ACLs and expectations).

mod common;

use std::sync::Arc;

use common::*;
use sluice_acl::AclOperation::*;
use sluice_acl::AclPermission::{Allow, Deny};
use sluice_acl::ResourceType::{Cluster, Group, Topic, TransactionalId};
use sluice_acl::*;

fn results(
    table: &AclTable,
    principal: &str,
    host: &str,
    actions: &[(AclOperation, ResourceType, &str)],
) -> Vec<bool> {
    actions
        .iter()
        .map(|&(op, rt, name)| {
            authorize(table, &config(), &request(principal, host, op, rt, name)).is_allowed()
        })
        .collect()
}

/// Kafka: testAllowEveryoneIfNoAclFoundConfigEnabled / Disabled.
#[test]
fn no_acl_default_both_ways() {
    let t = table([literal(Topic, "topic1", "User:Alice", Read, Allow)]);
    let mut cfg = AuthorizerConfig {
        super_users: vec!["User:alice".into(), "User:chris".into()],
        allow_everyone_if_no_acl_found: true,
    };
    // ACLs exist for topic1 (for someone else): denied whatever the default.
    assert_eq!(
        decide(&t, &cfg, "User:Bob", Read, Topic, "topic1"),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    // No ACL at all for topic2: the default.
    assert_eq!(
        decide(&t, &cfg, "User:Bob", Read, Topic, "topic2"),
        Decision::Allowed(Reason::NoAclFound)
    );
    cfg.allow_everyone_if_no_acl_found = false;
    assert_eq!(
        decide(&t, &cfg, "User:Bob", Read, Topic, "topic1"),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    assert_eq!(
        decide(&t, &cfg, "User:Bob", Read, Topic, "topic2"),
        Decision::Denied(Reason::NoAclFound)
    );
    // Principals are case-sensitive: User:Alice's ACL is not User:alice's, but User:alice is a
    // super user.
    assert_eq!(
        decide(&t, &cfg, "User:alice", Read, Topic, "topic1"),
        Decision::Allowed(Reason::SuperUser)
    );
    assert!(allowed(&t, &cfg, "User:Alice", Read, Topic, "topic1"));
    // An empty table with the default config denies everyone but super users.
    let empty = AclTable::new();
    assert!(!allowed(
        &empty,
        &AuthorizerConfig::default(),
        ALICE,
        Describe,
        Cluster,
        CLUSTER_NAME
    ));
}

/// Whether any ACL applies counts every principal, host and operation on the resource — and
/// only the bindings that apply to it (a LITERAL `foo` does not apply to `foobar`).
#[test]
fn the_default_applies_only_when_no_binding_applies_to_the_resource() {
    let cfg = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    let t = table([
        binding(
            Topic,
            "foo",
            PatternType::Literal,
            BOB,
            "10.9.9.9",
            Create,
            Deny,
        ),
        prefixed(Group, "g", BOB, Read, Allow),
        literal(Topic, "*", BOB, Write, Allow),
    ]);
    // Topic "foo": bob's CREATE DENY from another host and the wildcard apply → not the default.
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Topic, "foo"),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    // Every topic has the wildcard binding.
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Topic, "foobar"),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    // Groups starting with "g" have bob's binding; others have none.
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Group, "gx"),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Group, "x"),
        Decision::Allowed(Reason::NoAclFound)
    );
    // A prefix of the binding's name is not covered by it.
    let t = table([
        literal(Topic, "foo", BOB, Read, Allow),
        prefixed(Topic, "bar", BOB, Read, Allow),
    ]);
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Topic, "foobar"),
        Decision::Allowed(Reason::NoAclFound)
    );
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Topic, "fo"),
        Decision::Allowed(Reason::NoAclFound)
    );
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Topic, "ba"),
        Decision::Allowed(Reason::NoAclFound)
    );
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Topic, "barn"),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    // The resource type is part of the resource.
    assert_eq!(
        decide(&t, &cfg, ALICE, Read, Group, "foo"),
        Decision::Allowed(Reason::NoAclFound)
    );
}

/// Kafka: testFindResultImplication.
#[test]
fn implied_operations_for_allow_only() {
    let foo = |op, perm| table([prefixed(Topic, "foo_", BOB, op, perm)]);
    for op in [Describe, Read, Write, Delete, Alter] {
        assert!(
            allowed(&foo(op, Allow), &config(), BOB, Describe, Topic, "foo_bar"),
            "{op}"
        );
    }
    // CREATE does not imply DESCRIBE (nor anything else).
    for op in [
        Create,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
    ] {
        assert_eq!(
            decide(&foo(op, Allow), &config(), BOB, Describe, Topic, "foo_bar"),
            Decision::Denied(Reason::NoMatchingAcl),
            "{op}"
        );
    }
    // DENY ACLs do no implication.
    for op in [Read, Write, Delete, Alter] {
        assert_eq!(
            decide(&foo(op, Deny), &config(), BOB, Describe, Topic, "foo_bar"),
            Decision::Denied(Reason::NoMatchingAcl),
            "{op}"
        );
    }
    let deny_describe = foo(Describe, Deny);
    assert!(matches!(
        decide(&deny_describe, &config(), BOB, Describe, Topic, "foo_bar"),
        Decision::Denied(Reason::DenyAcl(_))
    ));
    for op in [DescribeConfigs, AlterConfigs] {
        assert!(allowed(
            &foo(op, Allow),
            &config(),
            BOB,
            DescribeConfigs,
            Topic,
            "foo_bar"
        ));
    }
    assert_eq!(
        decide(
            &foo(AlterConfigs, Deny),
            &config(),
            BOB,
            DescribeConfigs,
            Topic,
            "foo_bar"
        ),
        Decision::Denied(Reason::NoMatchingAcl)
    );
    assert!(matches!(
        decide(
            &foo(AlterConfigs, Deny),
            &config(),
            BOB,
            AlterConfigs,
            Topic,
            "foo_bar"
        ),
        Decision::Denied(Reason::DenyAcl(_))
    ));
    // Implication goes one way only.
    assert!(!allowed(
        &foo(Describe, Allow),
        &config(),
        BOB,
        Read,
        Topic,
        "foo_bar"
    ));
    assert!(!allowed(
        &foo(DescribeConfigs, Allow),
        &config(),
        BOB,
        AlterConfigs,
        Topic,
        "foo_bar"
    ));
    assert!(!allowed(
        &foo(Read, Allow),
        &config(),
        BOB,
        Write,
        Topic,
        "foo_bar"
    ));
    assert!(!allowed(
        &foo(Alter, Allow),
        &config(),
        BOB,
        AlterConfigs,
        Topic,
        "foo_bar"
    ));
    assert!(!allowed(
        &foo(Write, Allow),
        &config(),
        BOB,
        DescribeConfigs,
        Topic,
        "foo_bar"
    ));
    // ALL allows and denies every operation.
    for &op in AclOperation::VALUES.iter().filter(|op| op.is_concrete()) {
        assert!(
            allowed(&foo(All, Allow), &config(), BOB, op, Topic, "foo_bar"),
            "{op}"
        );
        assert!(
            !allowed(&foo(All, Deny), &config(), BOB, op, Topic, "foo_bar"),
            "{op}"
        );
    }
}

/// Kafka: testFindResultPrincipalMatching.
#[test]
fn principal_matching() {
    let foo = table([prefixed(Topic, "foo_", BOB, Read, Allow)]);
    assert!(allowed(&foo, &config(), BOB, Read, Topic, "foo_bar"));
    assert!(!allowed(&foo, &config(), ALICE, Read, Topic, "foo_bar"));
    // The wildcard principal matches anyone.
    let bar = table([literal(Group, "bar", ANY_USER, Read, Deny)]);
    assert!(matches!(
        decide(&bar, &config(), ALICE, Read, Group, "bar"),
        Decision::Denied(Reason::DenyAcl(_))
    ));
    // ... of any principal type, as in Kafka (its matching principals are the session's and
    // `User:*`); `Group:*` is no wildcard, and other principal types match exactly.
    let t = table([
        literal(Group, "bar", ANY_USER, Read, Allow),
        literal(Group, "ops", "Group:admins", Read, Allow),
        literal(Group, "svc", "Service:*", Read, Allow),
    ]);
    assert!(allowed(&t, &config(), "Service:x", Read, Group, "bar"));
    assert!(!allowed(&t, &config(), "Service:x", Read, Group, "svc"));
    assert!(allowed(&t, &config(), "Service:*", Read, Group, "svc"));
    assert!(allowed(&t, &config(), "Group:admins", Read, Group, "ops"));
    assert!(!allowed(&t, &config(), "User:admins", Read, Group, "ops"));
    // Names with colons compare whole.
    let t = table([literal(Topic, "t", "User:CN=a:b", Read, Allow)]);
    assert!(allowed(&t, &config(), "User:CN=a:b", Read, Topic, "t"));
    assert!(!allowed(&t, &config(), "User:CN=a", Read, Topic, "t"));
}

/// Kafka: testSimpleAuthorizations.
#[test]
fn simple_authorizations() {
    let t = table([
        prefixed(Topic, "foo_", BOB, Read, Allow),
        prefixed(Topic, "foo_", BOB, Write, Allow),
        literal(Group, "bar", ANY_USER, DescribeConfigs, Allow),
        literal(Group, "bar", ANY_USER, AlterConfigs, Allow),
    ]);
    assert!(allowed(&t, &config(), BOB, Read, Topic, "foo_"));
    assert!(allowed(
        &t,
        &config(),
        "User:fred",
        AlterConfigs,
        Group,
        "bar"
    ));
}

/// Kafka: testDenyPrecedenceWithOperationAll.
#[test]
fn deny_precedence_with_operation_all() {
    let t = table([
        literal(Topic, "foo", ALICE, All, Deny),
        prefixed(Topic, "foo", ALICE, Read, Allow),
        literal(Topic, "foo", ANY_USER, All, Deny),
        prefixed(Topic, "foo", ANY_USER, Describe, Allow),
    ]);
    assert_eq!(
        results(
            &t,
            ALICE,
            HOST,
            &[
                (Write, Topic, "foo"),
                (Read, Topic, "foo"),
                (Describe, Topic, "foo"),
                (Read, Topic, "foobar")
            ]
        ),
        [false, false, false, true]
    );
    assert_eq!(
        results(
            &t,
            BOB,
            HOST,
            &[
                (Describe, Topic, "foo"),
                (Read, Topic, "foo"),
                (Write, Topic, "foo"),
                (Describe, Topic, "foobaz"),
                (Read, Topic, "foobaz")
            ]
        ),
        [false, false, false, true, false]
    );
}

/// Kafka: testTopicAclWithOperationAll.
#[test]
fn topic_acl_with_operation_all() {
    let t = table([
        literal(Topic, "foo", ANY_USER, All, Allow),
        prefixed(Topic, "bar", ALICE, All, Allow),
        literal(Topic, "baz", BOB, All, Allow),
    ]);
    assert_eq!(
        results(
            &t,
            ALICE,
            HOST,
            &[
                (Write, Topic, "foo"),
                (DescribeConfigs, Topic, "bar"),
                (Describe, Topic, "baz")
            ]
        ),
        [true, true, false]
    );
    assert_eq!(
        results(
            &t,
            BOB,
            HOST,
            &[
                (Write, Topic, "foo"),
                (Read, Topic, "bar"),
                (Describe, Topic, "baz")
            ]
        ),
        [true, false, true]
    );
    assert_eq!(
        results(
            &t,
            "User:malory",
            HOST,
            &[
                (Describe, Topic, "foo"),
                (Write, Topic, "bar"),
                (Read, Topic, "baz")
            ]
        ),
        [true, false, false]
    );
}

/// Kafka: testHostAddressAclValidation.
#[test]
fn host_matching() {
    let (local, host1, host2) = ("10.0.0.5", "192.168.1.1", "192.168.1.2");
    let t = table([
        binding(Topic, "foo", PatternType::Literal, ALICE, host1, Read, Deny),
        binding(Topic, "foo", PatternType::Literal, ALICE, "*", Read, Allow),
        binding(Topic, "bar", PatternType::Literal, BOB, host2, Read, Allow),
        binding(
            Topic,
            "bar",
            PatternType::Literal,
            ANY_USER,
            local,
            Describe,
            Allow,
        ),
    ]);
    let actions = [
        (Read, Topic, "foo"),
        (Read, Topic, "bar"),
        (Describe, Topic, "bar"),
    ];
    assert_eq!(results(&t, ALICE, local, &actions), [true, false, true]);
    assert_eq!(results(&t, ALICE, host1, &actions), [false, false, false]);
    assert_eq!(results(&t, ALICE, host2, &actions), [true, false, false]);
    assert_eq!(results(&t, BOB, local, &actions), [false, false, true]);
    assert_eq!(results(&t, BOB, host1, &actions), [false, false, false]);
    assert_eq!(results(&t, BOB, host2, &actions), [false, true, true]);
    // Hosts compare as text: Kafka's IPv6 form is not the compressed one.
    let t = table([binding(
        Topic,
        "v6",
        PatternType::Literal,
        ALICE,
        "0:0:0:0:0:0:0:1",
        Read,
        Allow,
    )]);
    let v6 = client_host(
        "::1"
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    );
    assert!(results(&t, ALICE, &v6, &[(Read, Topic, "v6")])[0]);
    assert!(!results(&t, ALICE, "::1", &[(Read, Topic, "v6")])[0]);
}

/// Kafka: testAuthorizationWithManyAcls.
#[test]
fn many_acls() {
    let t = table([
        literal(Topic, "green2", ANY_USER, Read, Allow),
        prefixed(Topic, "green", BOB, Read, Allow),
        literal(Topic, "betamax4", BOB, Read, Allow),
        literal(Topic, "betamax", BOB, Read, Allow),
        prefixed(Topic, "beta", ANY_USER, Read, Allow),
        prefixed(Topic, "alpha", ANY_USER, Read, Allow),
        prefixed(Topic, "alp", BOB, Read, Deny),
        literal(Group, "*", BOB, Write, Allow),
        literal(Group, "wheel", ANY_USER, Write, Deny),
    ]);
    assert_eq!(
        results(
            &t,
            BOB,
            HOST,
            &[(Read, Topic, "green1"), (Write, Group, "wheel")]
        ),
        [true, false]
    );
    assert_eq!(
        results(
            &t,
            BOB,
            HOST,
            &[
                (Read, Topic, "alpha"),
                (Write, Group, "arbitrary"),
                (Read, Topic, "ala")
            ]
        ),
        [false, true, false]
    );
    // More from the same table.
    assert_eq!(
        results(
            &t,
            ALICE,
            HOST,
            &[
                (Read, Topic, "alphabet"),
                (Read, Topic, "betamax4"),
                (Describe, Topic, "green2"),
                (Read, Topic, "green3")
            ]
        ),
        [true, true, true, false]
    );
}

/// Kafka: testPrefixAcls.
#[test]
fn prefix_acls() {
    let t = table([
        prefixed(Topic, "fooa", ALICE, All, Allow),
        literal(Topic, "foobar", BOB, All, Allow),
        prefixed(Topic, "f", BOB, All, Allow),
    ]);
    assert_eq!(
        results(
            &t,
            BOB,
            HOST,
            &[
                (Write, Topic, "foobarr"),
                (Read, Topic, "goobar"),
                (Read, Topic, "fooa")
            ]
        ),
        [true, false, true]
    );
    assert_eq!(
        results(
            &t,
            ALICE,
            HOST,
            &[
                (Describe, Topic, "fooa"),
                (Write, Topic, "bar"),
                (Read, Topic, "baz")
            ]
        ),
        [true, false, false]
    );
}

#[test]
fn literal_prefixed_and_wildcard_resources() {
    let t = table([
        literal(Topic, "orders", ALICE, Read, Allow),
        prefixed(Topic, "logs.", ALICE, Read, Allow),
        literal(Topic, "*", BOB, Read, Allow),
        literal(Group, "*", ALICE, Read, Allow),
    ]);
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "orders"));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "orders2"));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "order"));
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "logs."));
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "logs.app"));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "logs"));
    // The literal `*` is every topic (and a topic named `*`).
    for name in ["orders", "x", "*", "logs.app", ""] {
        assert!(allowed(&t, &config(), BOB, Read, Topic, name), "{name}");
    }
    // ... of its type only.
    assert!(!allowed(&t, &config(), BOB, Read, Group, "x"));
    assert!(allowed(&t, &config(), ALICE, Read, Group, "anything"));
    assert!(!allowed(
        &t,
        &config(),
        ALICE,
        Read,
        TransactionalId,
        "anything"
    ));
    // A PREFIXED `*` is a prefix like any other, not a wildcard.
    let t = table([prefixed(Topic, "*", ALICE, Read, Allow)]);
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "*x"));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "x"));
    // A LITERAL name ending in `*` is not a pattern.
    let t = table([literal(Topic, "a*", ALICE, Read, Allow)]);
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "a*"));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "ab"));
}

#[test]
fn deny_wins_over_allow_wherever_it_comes_from() {
    let allow = literal(Topic, "secret-1", ALICE, Read, Allow);
    let cases = [
        (
            "wildcard principal",
            prefixed(Topic, "secret", ANY_USER, Read, Deny),
        ),
        ("prefix", prefixed(Topic, "secret-", ALICE, Read, Deny)),
        ("wildcard resource", literal(Topic, "*", ALICE, Read, Deny)),
        (
            "operation ALL",
            literal(Topic, "secret-1", ALICE, All, Deny),
        ),
        (
            "same literal",
            literal(Topic, "secret-1", ALICE, Read, Deny),
        ),
        (
            "host",
            binding(
                Topic,
                "secret-1",
                PatternType::Literal,
                ALICE,
                HOST,
                Read,
                Deny,
            ),
        ),
        (
            "the whole name as prefix",
            prefixed(Topic, "secret-1", ANY_USER, All, Deny),
        ),
    ];
    for (why, deny) in cases {
        let t = table([
            allow.clone(),
            prefixed(Topic, "sec", ALICE, All, Allow),
            deny.clone(),
        ]);
        assert_eq!(
            decide(&t, &config(), ALICE, Read, Topic, "secret-1"),
            Decision::Denied(Reason::DenyAcl(Arc::new(deny))),
            "{why}"
        );
        // A super user is not affected.
        assert!(
            allowed(&t, &config(), "User:superman", Read, Topic, "secret-1"),
            "{why}"
        );
    }
    // A DENY for another host, principal, operation or resource does not deny.
    let others = [
        binding(
            Topic,
            "secret-1",
            PatternType::Literal,
            ALICE,
            "10.1.1.1",
            Read,
            Deny,
        ),
        literal(Topic, "secret-1", BOB, Read, Deny),
        literal(Topic, "secret-1", ALICE, Write, Deny),
        literal(Topic, "secret-12", ALICE, Read, Deny),
        prefixed(Topic, "secret-12", ALICE, Read, Deny),
        literal(Topic, "secret", ALICE, Read, Deny),
        literal(Group, "secret-1", ALICE, Read, Deny),
    ];
    let t = table(others.iter().cloned().chain([allow.clone()]));
    assert_eq!(
        decide(&t, &config(), ALICE, Read, Topic, "secret-1"),
        Decision::Allowed(Reason::AllowAcl(Arc::new(allow)))
    );
}

#[test]
fn super_users() {
    let t = table([
        literal(Topic, "*", ANY_USER, All, Deny),
        literal(Cluster, CLUSTER_NAME, ANY_USER, All, Deny),
    ]);
    let cfg = AuthorizerConfig {
        super_users: vec!["User:admin".into(), "User:ops".into()],
        allow_everyone_if_no_acl_found: false,
    };
    for &op in AclOperation::VALUES.iter().filter(|op| op.is_concrete()) {
        assert_eq!(
            decide(&t, &cfg, "User:admin", op, Topic, "t"),
            Decision::Allowed(Reason::SuperUser)
        );
        assert_eq!(
            decide(&t, &cfg, "User:ops", op, Cluster, CLUSTER_NAME),
            Decision::Allowed(Reason::SuperUser)
        );
        assert!(!allowed(&t, &cfg, ALICE, op, Topic, "t"));
    }
    // Exact text: no case folding, no wildcard.
    assert!(!allowed(&t, &cfg, "User:Admin", Read, Topic, "t"));
    assert!(!allowed(&t, &cfg, "admin", Read, Topic, "t"));
    assert!(is_super_user(&cfg, "User:admin"));
    assert!(!is_super_user(&AuthorizerConfig::default(), "User:admin"));
    // `User:*` as a super user makes only a principal literally named `*` one.
    let cfg = AuthorizerConfig {
        super_users: vec![ANY_USER.into()],
        allow_everyone_if_no_acl_found: false,
    };
    assert!(!allowed(&t, &cfg, ALICE, Read, Topic, "t"));
}

#[test]
fn a_filter_value_in_a_request_is_denied() {
    let t = table([literal(Topic, "*", ANY_USER, All, Allow)]);
    let cfg = AuthorizerConfig {
        super_users: vec![ALICE.into()],
        allow_everyone_if_no_acl_found: true,
    };
    for (op, rt) in [
        (Any, Topic),
        (Unknown, Topic),
        (Read, ResourceType::Any),
        (Read, ResourceType::Unknown),
    ] {
        assert_eq!(
            decide(&t, &cfg, ALICE, op, rt, "t"),
            Decision::Denied(Reason::InvalidRequest)
        );
        assert_eq!(
            decide(&t, &cfg, BOB, op, rt, "t"),
            Decision::Denied(Reason::InvalidRequest)
        );
        if !rt.is_concrete() {
            assert_eq!(authorized_operations(&t, &cfg, ALICE, HOST, rt, "t"), 0);
        }
        assert_eq!(
            authorize_any(&t, &cfg, ALICE, HOST, op, rt),
            Decision::Denied(Reason::InvalidRequest)
        );
    }
}

#[test]
fn cluster_and_transactional_id_resources() {
    let t = table([
        literal(Cluster, CLUSTER_NAME, ALICE, Alter, Allow),
        literal(Cluster, CLUSTER_NAME, BOB, IdempotentWrite, Allow),
        prefixed(TransactionalId, "app-", BOB, Write, Allow),
    ]);
    assert!(allowed(&t, &config(), ALICE, Alter, Cluster, CLUSTER_NAME));
    assert!(allowed(
        &t,
        &config(),
        ALICE,
        Describe,
        Cluster,
        CLUSTER_NAME
    ));
    assert!(!allowed(
        &t,
        &config(),
        ALICE,
        Create,
        Cluster,
        CLUSTER_NAME
    ));
    assert!(!allowed(
        &t,
        &config(),
        ALICE,
        AlterConfigs,
        Cluster,
        CLUSTER_NAME
    ));
    assert!(allowed(
        &t,
        &config(),
        BOB,
        IdempotentWrite,
        Cluster,
        CLUSTER_NAME
    ));
    assert!(!allowed(
        &t,
        &config(),
        BOB,
        Describe,
        Cluster,
        CLUSTER_NAME
    ));
    assert!(allowed(&t, &config(), BOB, Write, TransactionalId, "app-1"));
    assert!(allowed(
        &t,
        &config(),
        BOB,
        Describe,
        TransactionalId,
        "app-1"
    ));
    assert!(!allowed(
        &t,
        &config(),
        BOB,
        Write,
        TransactionalId,
        "other"
    ));
    assert!(!allowed(&t, &config(), BOB, Write, Topic, "app-1"));
}

#[test]
fn unicode_names_and_prefixes() {
    let t = table([
        prefixed(Topic, "é", ALICE, Read, Allow),
        prefixed(Topic, "aè", ALICE, Read, Allow),
        literal(Topic, "日本", ALICE, Write, Allow),
    ]);
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "éa"));
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "aèb"));
    // "é" and "è" share their first UTF-8 byte.
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "è"));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "aé"));
    assert!(allowed(&t, &config(), ALICE, Write, Topic, "日本"));
    assert!(!allowed(&t, &config(), ALICE, Write, Topic, "日"));
    assert!(!allowed(&t, &config(), ALICE, Write, Topic, "日本語"));
}

#[test]
fn reasons_name_the_binding() {
    let allow = literal(Topic, "t", ALICE, Read, Allow);
    let deny = literal(Topic, "t", BOB, Read, Deny);
    let t = table([allow.clone(), deny.clone()]);
    let d = decide(&t, &config(), ALICE, Describe, Topic, "t");
    assert_eq!(
        d,
        Decision::Allowed(Reason::AllowAcl(Arc::new(allow.clone())))
    );
    assert_eq!(d.reason().to_string(), format!("MatchingAcl(acl={allow})"));
    let d = decide(&t, &config(), BOB, Read, Topic, "t");
    assert_eq!(d, Decision::Denied(Reason::DenyAcl(Arc::new(deny))));
    assert!(!d.is_allowed());
    let req = request(BOB, "10.0.0.7", Read, Topic, "t");
    assert_eq!(
        authorize(&t, &config(), &req).audit_message(&req, "Fetch"),
        "Principal = User:bob is Denied operation = READ from host = 10.0.0.7 on resource = \
         TOPIC:LITERAL:t for request = Fetch based on rule MatchingAcl(acl=(pattern=\
         ResourcePattern(resourceType=TOPIC, name=t, patternType=LITERAL), entry=(principal=\
         User:bob, host=*, operation=READ, permissionType=DENY)))"
    );
    let req = request("User:superman", "10.0.0.7", Alter, Cluster, CLUSTER_NAME);
    assert_eq!(
        authorize(&t, &config(), &req).audit_message(&req, "CreateAcls"),
        "Principal = User:superman is Allowed operation = ALTER from host = 10.0.0.7 on resource = \
         CLUSTER:LITERAL:kafka-cluster for request = CreateAcls based on rule SuperUser"
    );
}

#[test]
fn removing_bindings_changes_decisions() {
    let allow = literal(Topic, "t", ALICE, Read, Allow);
    let deny = prefixed(Topic, "t", ANY_USER, Read, Deny);
    let mut t = table([allow.clone(), deny.clone()]);
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, "t"));
    assert!(t.remove(&deny));
    assert!(allowed(&t, &config(), ALICE, Read, Topic, "t"));
    assert!(t.remove(&allow));
    assert_eq!(
        decide(&t, &config(), ALICE, Read, Topic, "t"),
        Decision::Denied(Reason::NoAclFound)
    );
}

#[test]
fn authorized_operations_bit_fields() {
    let bits = |ops: &[AclOperation]| operations_bit_field(ops.iter().copied());
    let cfg = config();
    let t = table([
        literal(Topic, "t", ALICE, Read, Allow),
        literal(Topic, "u", ALICE, All, Allow),
        literal(Topic, "u", ALICE, Write, Deny),
        literal(Topic, "c", ALICE, AlterConfigs, Allow),
        literal(Group, "g", ALICE, Read, Allow),
        literal(Cluster, CLUSTER_NAME, ALICE, All, Allow),
        literal(TransactionalId, "x", ALICE, Write, Allow),
        literal(ResourceType::User, "bob", ALICE, CreateTokens, Allow),
    ]);
    let ops = |rt, name| authorized_operations(&t, &cfg, ALICE, HOST, rt, name);
    assert_eq!(ops(Topic, "t"), bits(&[Read, Describe]));
    assert_eq!(ops(Topic, "t"), (1 << 3) | (1 << 8));
    assert_eq!(
        ops(Topic, "u"),
        bits(&[
            Read,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs
        ])
    );
    assert_eq!(ops(Topic, "c"), bits(&[DescribeConfigs, AlterConfigs]));
    assert_eq!(ops(Topic, "none"), 0);
    assert_eq!(ops(Group, "g"), bits(&[Read, Describe]));
    assert_eq!(
        ops(Cluster, CLUSTER_NAME),
        bits(supported_operations(Cluster))
    );
    assert_eq!(ops(TransactionalId, "x"), bits(&[Write, Describe]));
    assert_eq!(ops(ResourceType::User, "bob"), bits(&[CreateTokens]));
    assert_eq!(ops(ResourceType::Any, "t"), 0);
    // Super users get every supported operation; so does everyone when no ACL applies and the
    // default allows.
    for rt in [
        Topic,
        Group,
        Cluster,
        TransactionalId,
        ResourceType::DelegationToken,
        ResourceType::User,
    ] {
        let full = bits(supported_operations(rt));
        assert_eq!(
            authorized_operations(&t, &cfg, "User:superman", HOST, rt, "zz"),
            full
        );
        let open = AuthorizerConfig {
            super_users: vec![],
            allow_everyone_if_no_acl_found: true,
        };
        assert_eq!(
            authorized_operations(&AclTable::new(), &open, BOB, HOST, rt, "zz"),
            full
        );
        assert_eq!(
            authorized_operations(&AclTable::new(), &cfg, BOB, HOST, rt, "zz"),
            0
        );
    }
    // Kafka's supported operations per type.
    assert_eq!(bits(supported_operations(Topic)), 0b1101_1111_1000);
    assert_eq!(
        bits(supported_operations(Group)),
        bits(&[Read, Describe, Delete, DescribeConfigs, AlterConfigs])
    );
    assert_eq!(
        bits(supported_operations(Cluster)),
        bits(&[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe
        ])
    );
    assert_eq!(
        bits(supported_operations(TransactionalId)),
        bits(&[Describe, Write])
    );
}

/// Many bindings and long names stay cheap: each lookup visits the patterns near the name.
#[test]
fn large_tables_and_long_names() {
    let mut t = AclTable::new();
    for i in 0..20_000 {
        assert!(t.add(prefixed(Topic, &format!("p{i:05}"), ALICE, Read, Allow)));
        assert!(t.add(literal(Topic, &format!("l{i:05}"), BOB, Read, Allow)));
    }
    assert_eq!(t.len(), 40_000);
    for i in (0..20_000).step_by(97) {
        assert!(allowed(
            &t,
            &config(),
            ALICE,
            Read,
            Topic,
            &format!("p{i:05}-x")
        ));
        assert!(!allowed(
            &t,
            &config(),
            ALICE,
            Read,
            Topic,
            &format!("l{i:05}")
        ));
        assert!(allowed(
            &t,
            &config(),
            BOB,
            Read,
            Topic,
            &format!("l{i:05}")
        ));
    }
    // A long name with many of its prefixes bound.
    let long: String = "ab".repeat(50_000);
    let mut t = AclTable::new();
    for len in (1..2_000).map(|l| l * 50) {
        assert!(t.add(prefixed(Topic, &long[..len], BOB, Read, Allow)));
    }
    assert!(t.add(prefixed(Topic, &long[..99_000], ALICE, Read, Deny)));
    assert!(allowed(&t, &config(), BOB, Read, Topic, &long));
    assert!(!allowed(&t, &config(), ALICE, Read, Topic, &long));
    assert!(!allowed(
        &t,
        &config(),
        ALICE,
        Read,
        Topic,
        &"b".repeat(100_000)
    ));
}
