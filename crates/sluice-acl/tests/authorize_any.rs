//! `authorize_any`, Kafka's `authorizeByResourceType`, with the cases of Kafka's
//! `BaseAuthorizerTest` (same ACLs, same sequence of expectations).

mod common;

use common::*;
use sluice_acl::AclOperation::*;
use sluice_acl::AclPermission::{Allow, Deny};
use sluice_acl::PatternType::{Literal, Prefixed};
use sluice_acl::ResourceType::{Cluster, Group, Topic, TransactionalId};
use sluice_acl::*;

const USER1: &str = "User:user1";
const USER2: &str = "User:user2";
const HOST1: &str = "192.168.1.1";
const HOST2: &str = "192.168.1.2";

fn entry(principal: &str, host: &str, op: AclOperation, perm: AclPermission) -> AccessControlEntry {
    AccessControlEntry::new(principal, host, op, perm)
}

fn add(t: &mut AclTable, entries: &[&AccessControlEntry], pattern: &ResourcePattern) {
    for e in entries {
        t.add(AclBinding::new(pattern.clone(), (*e).clone()));
    }
}

fn remove(t: &mut AclTable, entries: &[&AccessControlEntry], pattern: &ResourcePattern) {
    for e in entries {
        assert!(t.remove(&AclBinding::new(pattern.clone(), (*e).clone())));
    }
}

fn any(t: &AclTable, principal: &str, host: &str, op: AclOperation, rt: ResourceType) -> bool {
    authorize_any(t, &config(), principal, host, op, rt).is_allowed()
}

#[test]
fn multiple_add_and_remove() {
    let mut t = AclTable::new();
    let resource1 = ResourcePattern::literal(Topic, "sb1-5f0c");
    let deny_read = entry(USER1, HOST1, Read, Deny);
    let allow_read = entry(USER1, HOST1, Read, Allow);
    for _ in 0..10 {
        assert!(!any(&t, USER1, HOST1, Read, Topic));
        add(&mut t, &[&allow_read], &resource1);
        assert!(any(&t, USER1, HOST1, Read, Topic));
        for _ in 0..10 {
            add(&mut t, &[&deny_read], &resource1);
            assert!(!any(&t, USER1, HOST1, Read, Topic));
            remove(&mut t, &[&deny_read], &resource1);
            add(&mut t, &[&allow_read], &resource1);
            assert!(any(&t, USER1, HOST1, Read, Topic));
        }
        remove(&mut t, &[&allow_read], &resource1);
        assert!(!any(&t, USER1, HOST1, Read, Topic));
    }
}

#[test]
fn unrelated_deny_does_not_dominate_allow() {
    let mut t = AclTable::new();
    let resource1 = ResourcePattern::literal(Topic, "sb1-a");
    let resource2 = ResourcePattern::literal(Topic, "sb2-b");
    let resource3 = ResourcePattern::prefixed(Group, "s");
    let acl1 = entry(USER1, HOST1, Read, Deny);
    let acl2 = entry(USER2, HOST1, Read, Deny);
    let acl3 = entry(USER1, HOST2, Write, Deny);
    let acl4 = entry(USER1, HOST2, Read, Deny);
    let acl5 = entry(USER1, HOST2, Read, Deny);
    let acl6 = entry(USER2, HOST2, Read, Deny);
    let acl7 = entry(USER1, HOST2, Read, Allow);
    add(&mut t, &[&acl1, &acl2, &acl3, &acl6, &acl7], &resource1);
    add(&mut t, &[&acl4], &resource2);
    add(&mut t, &[&acl5], &resource3);
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    assert!(!any(&t, USER1, HOST1, Read, Group));
    assert!(!any(&t, USER1, HOST1, Read, TransactionalId));
    assert!(!any(&t, USER1, HOST1, Read, Cluster));
    assert!(any(&t, USER1, HOST2, Read, Topic));
}

#[test]
fn deny_takes_precedence() {
    let mut t = AclTable::new();
    let resource1 = ResourcePattern::literal(Topic, "sb1-c");
    add(&mut t, &[&entry(USER1, HOST1, Write, Allow)], &resource1);
    assert!(any(&t, USER1, HOST1, Write, Topic));
    add(&mut t, &[&entry(USER1, HOST1, Write, Deny)], &resource1);
    assert!(!any(&t, USER1, HOST1, Write, Topic));
}

#[test]
fn prefixed_deny_dominates() {
    let mut t = AclTable::new();
    let allow = entry(USER1, HOST1, Read, Allow);
    let deny = entry(USER1, HOST1, Read, Deny);
    let p = |name: &str| ResourcePattern::prefixed(Group, name);
    add(&mut t, &[&allow], &p("abcde"));
    assert!(any(&t, USER1, HOST1, Read, Group));
    add(&mut t, &[&deny], &p("abcd"));
    assert!(!any(&t, USER1, HOST1, Read, Group));
    add(&mut t, &[&allow], &p("abc"));
    assert!(any(&t, USER1, HOST1, Read, Group));
    add(&mut t, &[&deny], &p("a"));
    assert!(!any(&t, USER1, HOST1, Read, Group));
    add(&mut t, &[&allow], &p("ab"));
    assert!(!any(&t, USER1, HOST1, Read, Group));
}

#[test]
fn wildcard_deny_dominates() {
    let mut t = AclTable::new();
    let allow = entry(USER1, HOST1, Write, Allow);
    let deny = entry(USER1, HOST1, Write, Deny);
    let wildcard = ResourcePattern::literal(Group, WILDCARD_RESOURCE);
    add(
        &mut t,
        &[&allow],
        &ResourcePattern::prefixed(Group, "hello"),
    );
    assert!(any(&t, USER1, HOST1, Write, Group));
    add(&mut t, &[&deny], &wildcard);
    assert!(!any(&t, USER1, HOST1, Write, Group));
    add(&mut t, &[&allow], &wildcard);
    assert!(!any(&t, USER1, HOST1, Write, Group));
    add(&mut t, &[&allow], &ResourcePattern::literal(Group, "aloha"));
    assert!(!any(&t, USER1, HOST1, Write, Group));
}

#[test]
fn operation_all() {
    let mut t = AclTable::new();
    let resource1 = ResourcePattern::literal(Topic, "sb1-d");
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    add(
        &mut t,
        &[
            &entry(USER1, HOST1, Write, Deny),
            &entry(USER1, HOST1, All, Allow),
        ],
        &resource1,
    );
    assert!(any(&t, USER1, HOST1, Read, Topic));
    add(&mut t, &[&entry(USER1, HOST1, All, Deny)], &resource1);
    assert!(!any(&t, USER1, HOST1, Read, Topic));
}

#[test]
fn wildcard_host() {
    let mut t = AclTable::new();
    let resource1 = ResourcePattern::literal(Topic, "sb1-e");
    let resource2 = ResourcePattern::literal(Topic, "sb2-e");
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    add(&mut t, &[&entry(USER1, HOST1, Read, Allow)], &resource1);
    assert!(any(&t, USER1, HOST1, Read, Topic));
    add(
        &mut t,
        &[&entry(USER1, WILDCARD_HOST, Read, Deny)],
        &resource1,
    );
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    add(&mut t, &[&entry(USER1, HOST1, Read, Deny)], &resource2);
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    assert!(!any(&t, USER1, HOST2, Read, Topic));
    add(
        &mut t,
        &[&entry(USER1, WILDCARD_HOST, Read, Allow)],
        &resource2,
    );
    assert!(any(&t, USER1, HOST2, Read, Topic));
    add(
        &mut t,
        &[&entry(USER1, WILDCARD_HOST, Read, Deny)],
        &resource2,
    );
    assert!(!any(&t, USER1, HOST2, Read, Topic));
}

#[test]
fn wildcard_principal() {
    let mut t = AclTable::new();
    let resource1 = ResourcePattern::literal(Topic, "sb1-f");
    let resource2 = ResourcePattern::literal(Topic, "sb2-f");
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    add(&mut t, &[&entry(USER1, HOST1, Read, Allow)], &resource1);
    assert!(any(&t, USER1, HOST1, Read, Topic));
    add(&mut t, &[&entry(ANY_USER, HOST1, Read, Deny)], &resource1);
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    add(&mut t, &[&entry(USER1, HOST1, Read, Deny)], &resource2);
    assert!(!any(&t, USER1, HOST1, Read, Topic));
    assert!(!any(&t, USER2, HOST1, Read, Topic));
    add(&mut t, &[&entry(ANY_USER, HOST1, Read, Allow)], &resource2);
    assert!(any(&t, USER2, HOST1, Read, Topic));
    add(&mut t, &[&entry(ANY_USER, HOST1, Read, Deny)], &resource2);
    assert!(!any(&t, USER2, HOST1, Read, Topic));
}

#[test]
fn super_user_has_access() {
    let deny_all = entry(ANY_USER, WILDCARD_HOST, All, Deny);
    let mut t = AclTable::new();
    for rt in [Topic, Group, TransactionalId] {
        add(
            &mut t,
            &[&deny_all],
            &ResourcePattern::literal(rt, WILDCARD_RESOURCE),
        );
    }
    // Kafka's test uses CLUSTER `*`, which CreateAcls refuses; the only cluster name here.
    add(
        &mut t,
        &[&deny_all],
        &ResourcePattern::literal(Cluster, CLUSTER_NAME),
    );
    for rt in [Topic, Cluster, Group, TransactionalId] {
        assert_eq!(
            authorize_any(&t, &config(), "User:superman", "192.0.4.4", Read, rt),
            Decision::Allowed(Reason::SuperUser)
        );
        assert!(!any(&t, USER1, "192.0.4.4", Read, rt));
    }
}

/// Kafka's first step authorizes a resource named `hardcode`, so the no-ACL default and
/// implied operations count there, and only there.
#[test]
fn the_hardcode_probe() {
    let open = AuthorizerConfig {
        super_users: vec![],
        allow_everyone_if_no_acl_found: true,
    };
    let t = AclTable::new();
    assert_eq!(
        authorize_any(&t, &open, USER1, HOST1, Write, Topic),
        Decision::Allowed(Reason::NoAclFound)
    );
    // With a binding on "h" prefixes the probe is no longer "no ACL found".
    let t = table([prefixed(Topic, "h", USER2, Read, Allow)]);
    assert!(!authorize_any(&t, &open, USER1, HOST1, Write, Topic).is_allowed());
    // READ on `*` implies DESCRIBE through the probe...
    let t = table([literal(Topic, "*", USER1, Read, Allow)]);
    assert!(any(&t, USER1, HOST1, Describe, Topic));
    // ...but step 2 compares operations exactly: READ on a prefix does not give DESCRIBE.
    let t = table([prefixed(Topic, "x", USER1, Read, Allow)]);
    assert!(any(&t, USER1, HOST1, Read, Topic));
    assert!(!any(&t, USER1, HOST1, Describe, Topic));
}

#[test]
fn literal_deny_and_prefix_deny() {
    // A LITERAL DENY of the same name cancels a LITERAL ALLOW, not a PREFIXED one.
    let t = table([
        literal(Topic, "a", USER1, Write, Allow),
        literal(Topic, "a", USER1, Write, Deny),
    ]);
    assert!(!any(&t, USER1, HOST1, Write, Topic));
    let t = table([
        prefixed(Topic, "a", USER1, Write, Allow),
        literal(Topic, "a", USER1, Write, Deny),
    ]);
    assert_eq!(
        authorize_any(&t, &config(), USER1, HOST1, Write, Topic),
        Decision::Allowed(Reason::AllowAcl(std::sync::Arc::new(prefixed(
            Topic, "a", USER1, Write, Allow
        ))))
    );
    // A PREFIXED DENY whose name is a prefix cancels both; a longer one cancels neither.
    let t = table([
        literal(Topic, "abc", USER1, Write, Allow),
        prefixed(Topic, "abc", USER1, Write, Deny),
    ]);
    assert!(!any(&t, USER1, HOST1, Write, Topic));
    let t = table([
        literal(Topic, "ab", USER1, Write, Allow),
        prefixed(Topic, "abc", USER1, Write, Deny),
    ]);
    assert!(any(&t, USER1, HOST1, Write, Topic));
    let t = table([
        prefixed(Topic, "éa", USER1, Write, Allow),
        prefixed(Topic, "é", USER1, Write, Deny),
    ]);
    assert!(!any(&t, USER1, HOST1, Write, Topic));
    let t = table([
        prefixed(Topic, "éa", USER1, Write, Allow),
        prefixed(Topic, "è", USER1, Write, Deny),
    ]);
    assert!(any(&t, USER1, HOST1, Write, Topic));
    // Denies for other principals, hosts or operations do not count.
    let t = table([
        literal(Topic, "a", USER1, Write, Allow),
        literal(Topic, "*", USER2, Write, Deny),
        binding(Topic, "a", Literal, USER1, HOST2, Write, Deny),
        binding(Topic, "a", Prefixed, USER1, WILDCARD_HOST, Read, Deny),
    ]);
    assert!(any(&t, USER1, HOST1, Write, Topic));
    assert!(!any(&t, USER2, HOST1, Write, Topic));
}

/// The InitProducerId fallback: IDEMPOTENT_WRITE on the cluster, else WRITE on any topic.
#[test]
fn idempotent_producer_fallback() {
    let t = table([prefixed(Topic, "app.", USER1, Write, Allow)]);
    let cluster = authorize(
        &t,
        &config(),
        &request(USER1, HOST1, IdempotentWrite, Cluster, CLUSTER_NAME),
    );
    assert_eq!(cluster, Decision::Denied(Reason::NoAclFound));
    assert!(any(&t, USER1, HOST1, Write, Topic));
    assert!(!any(&t, USER2, HOST1, Write, Topic));
}
