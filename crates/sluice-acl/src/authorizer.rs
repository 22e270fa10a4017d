//! Kafka's `StandardAuthorizer`: is this principal, from this host, allowed this operation on
//! this resource — with the reason, for the broker's audit log.
//!
//! The rules (`StandardAuthorizerData.authorize`):
//!
//! 1. A super user is allowed, without looking at ACLs.
//! 2. The bindings that apply to the resource are the LITERAL ones with its exact name, the
//!    LITERAL `*` and the PREFIXED ones whose name is a prefix of its name. Of those, a binding
//!    matches the request when its principal is the request's or `User:*`, its host is the
//!    request's or `*`, and its operation is the request's or ALL — or, for an ALLOW binding
//!    only, an operation that implies the request's: READ, WRITE, DELETE and ALTER imply
//!    DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS. (A DENY of READ does not deny DESCRIBE.)
//! 3. Any matching DENY → denied. Else any matching ALLOW → allowed.
//! 4. Else, if no binding at all applies to the resource (whoever it names, whatever the
//!    operation) → `allow.everyone.if.no.acl.found` decides (default: denied); if some do →
//!    denied.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use crate::binding::AclBinding;
use crate::table::{walk_prefixes, AclTable};
use crate::types::{
    AclOperation, AclPermission, PatternType, ResourceType, WILDCARD_HOST, WILDCARD_RESOURCE,
};

/// The authorizer's settings (Kafka's `super.users` and `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals allowed everything, e.g. `User:admin` (compared as text).
    pub super_users: Vec<String>,
    /// The decision for a resource no binding applies to (Kafka's default: false, denied).
    pub allow_everyone_if_no_acl_found: bool,
}

/// One authorization question: may `principal` from `host` do `operation` on the resource
/// `(resource_type, name)`?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request<'a> {
    /// The session's principal, `Type:name` (e.g. `User:alice`, `User:ANONYMOUS`).
    pub principal: &'a str,
    /// The client's IP address as Kafka writes it ([`client_host`]).
    pub host: &'a str,
    /// A concrete operation (not ANY or UNKNOWN).
    pub operation: AclOperation,
    /// A concrete resource type (not ANY or UNKNOWN).
    pub resource_type: ResourceType,
    /// The resource's name (`kafka-cluster` for the cluster).
    pub name: &'a str,
}

/// Why a decision went the way it did (Kafka's `MatchingRule`), for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The principal is a super user.
    SuperUser,
    /// This ALLOW binding matched (and no DENY did).
    AllowAcl(Arc<AclBinding>),
    /// This DENY binding matched.
    DenyAcl(Arc<AclBinding>),
    /// No binding applies to the resource: `allow_everyone_if_no_acl_found` decided.
    NoAclFound,
    /// Bindings apply to the resource, but none allows this principal, host and operation.
    NoMatchingAcl,
    /// The request named ANY or UNKNOWN as its operation or resource type (Kafka throws); always
    /// denied.
    InvalidRequest,
}

impl fmt::Display for Reason {
    /// Kafka's rule names: `SuperUser`, `MatchingAcl(acl=...)`, `DefaultAllow`/`DefaultDeny` (as
    /// `NoAclFound` and `NoMatchingAcl` here, which Kafka does not tell apart).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SuperUser => f.write_str("SuperUser"),
            Reason::AllowAcl(binding) | Reason::DenyAcl(binding) => {
                write!(f, "MatchingAcl(acl={binding})")
            }
            Reason::NoAclFound => f.write_str("NoAclFound"),
            Reason::NoMatchingAcl => f.write_str("NoMatchingAcl"),
            Reason::InvalidRequest => f.write_str("InvalidRequest"),
        }
    }
}

/// An authorization decision and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allowed(Reason),
    /// Denied.
    Denied(Reason),
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }

    /// Why.
    pub fn reason(&self) -> &Reason {
        match self {
            Decision::Allowed(reason) | Decision::Denied(reason) => reason,
        }
    }

    /// Kafka's audit log line for this decision (`StandardAuthorizerData.buildAuditMessage`,
    /// without the reference count): `Principal = User:alice is Denied operation = READ from
    /// host = 10.0.0.7 on resource = TOPIC:LITERAL:orders for request = Fetch based on rule ...`.
    /// Kafka logs denials of explicitly requested resources at INFO, the rest at DEBUG/TRACE.
    pub fn audit_message(&self, request: &Request<'_>, api_name: &str) -> String {
        format!(
            "Principal = {} is {} operation = {} from host = {} on resource = {}:{}:{} \
             for request = {} based on rule {}",
            request.principal,
            if self.is_allowed() {
                "Allowed"
            } else {
                "Denied"
            },
            request.operation,
            request.host,
            request.resource_type,
            PatternType::Literal,
            request.name,
            api_name,
            self.reason(),
        )
    }
}

/// Kafka's `StandardAuthorizerData.authorize` (see the module documentation).
///
/// A request for operation or resource type ANY or UNKNOWN is denied with
/// [`Reason::InvalidRequest`], super user or not (Kafka would throw or, for a super user, allow).
pub fn authorize(table: &AclTable, config: &AuthorizerConfig, request: &Request<'_>) -> Decision {
    if !request.operation.is_concrete() || !request.resource_type.is_concrete() {
        return Decision::Denied(Reason::InvalidRequest);
    }
    if is_super_user(config, request.principal) {
        return Decision::Allowed(Reason::SuperUser);
    }
    let mut any_applies = false;
    let mut allow: Option<&Arc<AclBinding>> = None;
    let flow = table.for_each_applicable(request.resource_type, request.name, |acls| {
        any_applies = true;
        for binding in acls.for_principal(request.principal) {
            match find_result(binding, request) {
                Some(AclPermission::Deny) => return ControlFlow::Break(binding),
                Some(_) => {
                    allow.get_or_insert(binding);
                }
                None => {}
            }
        }
        ControlFlow::Continue(())
    });
    if let ControlFlow::Break(deny) = flow {
        return Decision::Denied(Reason::DenyAcl(Arc::clone(deny)));
    }
    if let Some(allow) = allow {
        return Decision::Allowed(Reason::AllowAcl(Arc::clone(allow)));
    }
    if any_applies {
        Decision::Denied(Reason::NoMatchingAcl)
    } else if config.allow_everyone_if_no_acl_found {
        Decision::Allowed(Reason::NoAclFound)
    } else {
        Decision::Denied(Reason::NoAclFound)
    }
}

/// Whether `principal` is one of the configured super users.
pub fn is_super_user(config: &AuthorizerConfig, principal: &str) -> bool {
    config.super_users.iter().any(|user| user == principal)
}

/// What a binding whose resource pattern and principal apply says about the request (Kafka's
/// `StandardAuthorizerData.findResult`): `None` when host or operation do not match, else its
/// permission (ALLOW or DENY).
fn find_result(binding: &AclBinding, request: &Request<'_>) -> Option<AclPermission> {
    let entry = &binding.entry;
    if entry.host != WILDCARD_HOST && entry.host != request.host {
        return None;
    }
    if entry.operation != AclOperation::All {
        let matches = match (entry.permission, request.operation) {
            (AclPermission::Allow, AclOperation::Describe) => matches!(
                entry.operation,
                AclOperation::Describe
                    | AclOperation::Read
                    | AclOperation::Write
                    | AclOperation::Delete
                    | AclOperation::Alter
            ),
            (AclPermission::Allow, AclOperation::DescribeConfigs) => matches!(
                entry.operation,
                AclOperation::DescribeConfigs | AclOperation::AlterConfigs
            ),
            _ => entry.operation == request.operation,
        };
        if !matches {
            return None;
        }
    }
    match entry.permission {
        AclPermission::Allow | AclPermission::Deny => Some(entry.permission),
        // Never stored (AclBinding::validate).
        AclPermission::Any | AclPermission::Unknown => None,
    }
}

/// The operations Kafka reports for a resource type in the authorized-operations bit fields
/// (`AclEntry.supportedOperations`); empty for ANY and UNKNOWN.
pub fn supported_operations(resource_type: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
        ResourceType::Any | ResourceType::Unknown => &[],
    }
}

/// Kafka's bit field of operations (`Utils.to32BitField`): bit `code` set for each operation.
pub fn operations_bit_field(operations: impl IntoIterator<Item = AclOperation>) -> i32 {
    operations.into_iter().fold(0, |field, operation| {
        let bit = u32::try_from(operation.code())
            .ok()
            .and_then(|code| 1i32.checked_shl(code))
            .unwrap_or(0);
        field | bit
    })
}

/// The operations whose bits are set in a bit field (Kafka's `Utils.from32BitField`), in code
/// order; bits of codes this version does not know are ignored.
pub fn operations_from_bit_field(field: i32) -> Vec<AclOperation> {
    AclOperation::VALUES
        .iter()
        .copied()
        .filter(|&operation| operations_bit_field([operation]) & field != 0)
        .collect()
}

/// Kafka's value of an authorized-operations field the client did not ask for.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// The bit field of the [`supported_operations`] of `resource_type` that `principal` from `host`
/// may do on the resource `name` (Kafka's `AuthHelper.authorizedOperations`, for Metadata's
/// topic and cluster authorized operations, DescribeGroups, DescribeCluster, ...). Without an
/// authorizer Kafka reports every supported operation:
/// `operations_bit_field(supported_operations(t).iter().copied())`.
pub fn authorized_operations(
    table: &AclTable,
    config: &AuthorizerConfig,
    principal: &str,
    host: &str,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    let allowed = supported_operations(resource_type)
        .iter()
        .copied()
        .filter(|&operation| {
            let request = Request {
                principal,
                host,
                operation,
                resource_type,
                name,
            };
            authorize(table, config, &request).is_allowed()
        });
    operations_bit_field(allowed)
}

/// Whether `principal` from `host` may do `operation` on at least one resource of
/// `resource_type` — Kafka's `Authorizer.authorizeByResourceType`, used where a request needs
/// the right on *some* resource: InitProducerId for an idempotent producer (WRITE on any topic,
/// when IDEMPOTENT_WRITE on the cluster is denied), and similar checks.
///
/// Kafka's rules:
///
/// 1. [`authorize`] the operation on a resource named `hardcode`: allowed → allowed (so super
///    users, the no-ACL default and the wildcard ALLOWs count, implied operations included).
/// 2. Else look at the bindings of the type naming the principal or `User:*`, the host or `*`,
///    and the operation itself or ALL (no implication here):
///    - a DENY on LITERAL `*` → denied;
///    - an ALLOW on LITERAL `*` → allowed;
///    - a LITERAL ALLOW is allowed unless a LITERAL DENY has the same name or a PREFIXED DENY's
///      name is a prefix of its name; a PREFIXED ALLOW is allowed unless a PREFIXED DENY's name
///      is a prefix of its name;
///    - otherwise denied.
pub fn authorize_any(
    table: &AclTable,
    config: &AuthorizerConfig,
    principal: &str,
    host: &str,
    operation: AclOperation,
    resource_type: ResourceType,
) -> Decision {
    if !operation.is_concrete() || !resource_type.is_concrete() {
        return Decision::Denied(Reason::InvalidRequest);
    }
    let probe = authorize(
        table,
        config,
        &Request {
            principal,
            host,
            operation,
            resource_type,
            name: "hardcode",
        },
    );
    if probe.is_allowed() {
        return probe;
    }

    let mut deny_literal: HashSet<&str> = HashSet::new();
    let mut deny_prefixed: BTreeSet<&str> = BTreeSet::new();
    let mut allows: Vec<(PatternType, &str, &Arc<AclBinding>)> = Vec::new();
    let mut wildcard_allow: Option<&Arc<AclBinding>> = None;
    for (pattern_type, name, acls) in table.patterns_of_type(resource_type) {
        let wildcard = pattern_type == PatternType::Literal && name == WILDCARD_RESOURCE;
        for binding in acls.for_principal(principal) {
            let entry = &binding.entry;
            if entry.host != WILDCARD_HOST && entry.host != host {
                continue;
            }
            if entry.operation != operation && entry.operation != AclOperation::All {
                continue;
            }
            match entry.permission {
                AclPermission::Deny if wildcard => {
                    return Decision::Denied(Reason::DenyAcl(Arc::clone(binding)));
                }
                AclPermission::Deny => {
                    if pattern_type == PatternType::Literal {
                        deny_literal.insert(name);
                    } else {
                        deny_prefixed.insert(name);
                    }
                }
                AclPermission::Allow if wildcard => {
                    wildcard_allow.get_or_insert(binding);
                }
                AclPermission::Allow => allows.push((pattern_type, name, binding)),
                AclPermission::Any | AclPermission::Unknown => {}
            }
        }
    }
    if let Some(binding) = wildcard_allow {
        return Decision::Allowed(Reason::AllowAcl(Arc::clone(binding)));
    }
    for (pattern_type, name, binding) in allows {
        if pattern_type == PatternType::Literal && deny_literal.contains(name) {
            continue;
        }
        let dominated = walk_prefixes(
            name,
            |upper| {
                deny_prefixed
                    .range::<str, _>((Bound::Unbounded, upper))
                    .next_back()
                    .map(|deny| (*deny, *deny))
            },
            // Kafka checks the prefixes of one char or more; an empty name is never stored.
            |deny: &str| {
                if deny.is_empty() {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        )
        .is_break();
        if !dominated {
            return Decision::Allowed(Reason::AllowAcl(Arc::clone(binding)));
        }
    }
    Decision::Denied(Reason::NoMatchingAcl)
}

/// The text Kafka compares an ACL's host with: Java's `InetAddress.getHostAddress()` of the
/// client address. IPv4 is dotted decimal; an IPv4-mapped IPv6 address is its IPv4 address (the
/// JVM hands those out as `Inet4Address`); other IPv6 addresses are eight lowercase hex groups
/// without leading zeros and without `::` compression (`0:0:0:0:0:0:0:1`, not `::1`), so a
/// binding written for a Kafka broker matches the same clients here.
pub fn client_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6
                .segments()
                .iter()
                .map(|segment| format!("{segment:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn client_host_is_javas() {
        assert_eq!(
            client_host(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))),
            "10.0.0.7"
        );
        assert_eq!(
            client_host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "0:0:0:0:0:0:0:1"
        );
        assert_eq!(
            client_host("2001:db8::ff00:42:8329".parse().unwrap()),
            "2001:db8:0:0:0:ff00:42:8329"
        );
        assert_eq!(
            client_host("::ffff:192.168.1.1".parse().unwrap()),
            "192.168.1.1"
        );
    }

    #[test]
    fn bit_fields() {
        assert_eq!(operations_bit_field([]), 0);
        assert_eq!(
            operations_bit_field([AclOperation::Read, AclOperation::Describe]),
            (1 << 3) | (1 << 8)
        );
        assert_eq!(
            operations_bit_field(supported_operations(ResourceType::Topic).iter().copied()),
            0b1101_1111_1000
        );
        assert_eq!(
            operations_bit_field(supported_operations(ResourceType::Cluster).iter().copied()),
            (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
        );
        assert_eq!(
            operations_from_bit_field((1 << 3) | (1 << 8) | (1 << 30)),
            [AclOperation::Read, AclOperation::Describe]
        );
        assert_eq!(operations_from_bit_field(AUTHORIZED_OPERATIONS_OMITTED), []);
        assert!(supported_operations(ResourceType::Any).is_empty());
    }
}
