//! ACL bindings (what the metadata log stores), their validation, and the filters DescribeAcls
//! and DeleteAcls select them with.
//!
//! A binding says "principal P is ALLOWED/DENIED operation O from host H on resources matching
//! pattern R". Kafka's classes: `ResourcePattern`, `AccessControlEntry`, `AclBinding`,
//! `ResourcePatternFilter`, `AccessControlEntryFilter`, `AclBindingFilter`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::AclError;
use crate::types::{
    AclOperation, AclPermission, PatternType, ResourceType, CLUSTER_NAME, WILDCARD_RESOURCE,
};

/// The resources a binding applies to: a type, a name and how the name matches.
///
/// A stored pattern has a concrete type and a LITERAL or PREFIXED pattern type
/// ([`AclBinding::validate`]); the filter-only values (ANY, MATCH, UNKNOWN) exist in the enums
/// for [`AclBindingFilter`].
///
/// Ordered by resource type, pattern type, then name (the order [`crate::AclTable::iter`] uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourcePattern {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The name (LITERAL: the exact name, or `*` for every one; PREFIXED: the prefix).
    pub name: String,
    /// LITERAL or PREFIXED.
    pub pattern_type: PatternType,
}

impl ResourcePattern {
    /// A pattern from its parts.
    pub fn new(
        resource_type: ResourceType,
        name: impl Into<String>,
        pattern_type: PatternType,
    ) -> Self {
        ResourcePattern {
            resource_type,
            name: name.into(),
            pattern_type,
        }
    }

    /// A LITERAL pattern.
    pub fn literal(resource_type: ResourceType, name: impl Into<String>) -> Self {
        Self::new(resource_type, name, PatternType::Literal)
    }

    /// A PREFIXED pattern.
    pub fn prefixed(resource_type: ResourceType, name: impl Into<String>) -> Self {
        Self::new(resource_type, name, PatternType::Prefixed)
    }
}

impl Ord for ResourcePattern {
    fn cmp(&self, other: &Self) -> Ordering {
        self.resource_type
            .cmp(&other.resource_type)
            .then(self.pattern_type.cmp(&other.pattern_type))
            .then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for ResourcePattern {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ResourcePattern {
    /// Kafka's `ResourcePattern.toString`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResourcePattern(resourceType={}, name={}, patternType={})",
            self.resource_type, self.name, self.pattern_type
        )
    }
}

/// Who, from where, may or may not do what (Kafka's `AccessControlEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessControlEntry {
    /// `Type:name`, e.g. `User:alice`; `User:*` is every principal.
    pub principal: String,
    /// The client's IP address as text, or `*` for every host. Kafka compares it with the text of
    /// the client address (no host names, no CIDR); see [`crate::client_host`].
    pub host: String,
    /// The operation (`ALL` for every one).
    pub operation: AclOperation,
    /// ALLOW or DENY.
    pub permission: AclPermission,
}

impl AccessControlEntry {
    /// An entry from its parts.
    pub fn new(
        principal: impl Into<String>,
        host: impl Into<String>,
        operation: AclOperation,
        permission: AclPermission,
    ) -> Self {
        AccessControlEntry {
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        }
    }
}

impl fmt::Display for AccessControlEntry {
    /// Kafka's `AccessControlEntry.toString`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(principal={}, host={}, operation={}, permissionType={})",
            self.principal, self.host, self.operation, self.permission
        )
    }
}

/// One ACL: a resource pattern and an entry. This is the metadata log's on-disk shape:
///
/// ```json
/// {"pattern": {"resource_type": "TOPIC", "name": "orders", "pattern_type": "LITERAL"},
///  "entry": {"principal": "User:alice", "host": "*", "operation": "READ", "permission": "ALLOW"}}
/// ```
///
/// Ordered by pattern (type, pattern type, name), then principal, host, operation, permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    /// The resources it applies to.
    pub pattern: ResourcePattern,
    /// Who, from where, what, allow or deny.
    pub entry: AccessControlEntry,
}

impl AclBinding {
    /// A binding from its parts.
    pub fn new(pattern: ResourcePattern, entry: AccessControlEntry) -> Self {
        AclBinding { pattern, entry }
    }

    /// What CreateAcls checks before a binding is stored, in Kafka's order (`AclApis`, then
    /// `AclControlManager.validateNewAcl`), each refusal INVALID_REQUEST with Kafka's message:
    ///
    /// - a CLUSTER resource must be named `kafka-cluster`;
    /// - the resource name must not be empty;
    /// - the resource type must be concrete (not ANY or UNKNOWN);
    /// - the pattern type must be LITERAL or PREFIXED;
    /// - the operation must be concrete (not ANY or UNKNOWN);
    /// - the permission must be ALLOW or DENY;
    /// - the principal must be `Type:name` with both halves non-empty (recent Kafka refuses a
    ///   principal without a colon; an empty half is refused here too, as `sluice-auth` does).
    ///
    /// The host is not checked: Kafka accepts any string (one that is not `*` or a client's
    /// address text simply never matches).
    pub fn validate(&self) -> Result<(), AclError> {
        let pattern = &self.pattern;
        let entry = &self.entry;
        if pattern.resource_type == ResourceType::Cluster && pattern.name != CLUSTER_NAME {
            return Err(AclError::invalid(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            )));
        }
        if pattern.name.is_empty() {
            return Err(AclError::invalid("Invalid empty resource name"));
        }
        if !pattern.resource_type.is_concrete() {
            return Err(AclError::invalid(format!(
                "Invalid resourceType {}",
                pattern.resource_type
            )));
        }
        if !pattern.pattern_type.is_specific() {
            return Err(AclError::invalid(format!(
                "Invalid patternType {}",
                pattern.pattern_type
            )));
        }
        if !entry.operation.is_concrete() {
            return Err(AclError::invalid(format!(
                "Invalid operation {}",
                entry.operation
            )));
        }
        if !entry.permission.is_concrete() {
            return Err(AclError::invalid(format!(
                "Invalid permissionType {}",
                entry.permission
            )));
        }
        if parse_principal(&entry.principal).is_none() {
            return Err(AclError::invalid(format!(
                "Could not parse principal from `{}` (expected principalType:principalName)",
                entry.principal
            )));
        }
        Ok(())
    }

    /// The filter matching exactly this binding (Kafka's `AclBinding.toFilter`).
    pub fn to_filter(&self) -> AclBindingFilter {
        AclBindingFilter {
            resource_type: self.pattern.resource_type,
            name: Some(self.pattern.name.clone()),
            pattern_type: self.pattern.pattern_type,
            principal: Some(self.entry.principal.clone()),
            host: Some(self.entry.host.clone()),
            operation: self.entry.operation,
            permission: self.entry.permission,
        }
    }
}

impl fmt::Display for AclBinding {
    /// Kafka's `AclBinding.toString`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(pattern={}, entry={})", self.pattern, self.entry)
    }
}

/// Splits a `Type:name` principal at its first colon (Kafka's
/// `SecurityUtils.parseKafkaPrincipal`); `None` unless both halves are non-empty.
pub fn parse_principal(principal: &str) -> Option<(&str, &str)> {
    let (principal_type, name) = principal.split_once(':')?;
    if principal_type.is_empty() || name.is_empty() {
        return None;
    }
    Some((principal_type, name))
}

/// Selects bindings (DescribeAcls, DeleteAcls): Kafka's `AclBindingFilter`, flattened. `None`
/// fields and the ANY values match everything; see [`matches`](Self::matches). Serde: how a
/// broker hands DeleteAcls filters to the controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBindingFilter {
    /// A resource type, or ANY.
    pub resource_type: ResourceType,
    /// A resource name; `None` matches every name.
    pub name: Option<String>,
    /// LITERAL or PREFIXED (that type, exact name), ANY (any type, exact name) or MATCH (every
    /// binding that applies to the resource `name`).
    pub pattern_type: PatternType,
    /// A principal, compared as text (`User:*` matches only bindings for `User:*`); `None`
    /// matches every principal.
    pub principal: Option<String>,
    /// A host, compared as text; `None` matches every host.
    pub host: Option<String>,
    /// An operation (no implication: READ does not select DESCRIBE), or ANY.
    pub operation: AclOperation,
    /// ALLOW, DENY or ANY.
    pub permission: AclPermission,
}

impl AclBindingFilter {
    /// The filter matching every binding (Kafka's `AclBindingFilter.ANY`).
    pub const ANY: AclBindingFilter = AclBindingFilter {
        resource_type: ResourceType::Any,
        name: None,
        pattern_type: PatternType::Any,
        principal: None,
        host: None,
        operation: AclOperation::Any,
        permission: AclPermission::Any,
    };

    /// What DescribeAcls and DeleteAcls refuse (Kafka's `AclControlManager.validateFilter`):
    /// an UNKNOWN resource type or pattern type ("Unknown patternFilter."), an UNKNOWN operation or
    /// permission ("Unknown entryFilter."). INVALID_REQUEST.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type == ResourceType::Unknown || self.pattern_type == PatternType::Unknown
        {
            return Err(AclError::invalid("Unknown patternFilter."));
        }
        if self.operation == AclOperation::Unknown || self.permission == AclPermission::Unknown {
            return Err(AclError::invalid("Unknown entryFilter."));
        }
        Ok(())
    }

    /// Whether the binding is selected: both [`matches_pattern`](Self::matches_pattern) and
    /// [`matches_entry`](Self::matches_entry).
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(&binding.pattern) && self.matches_entry(&binding.entry)
    }

    /// Kafka's `ResourcePatternFilter.matches`:
    ///
    /// - the resource type is ANY or equal;
    /// - the pattern type is ANY, MATCH or equal;
    /// - then a `None` name matches;
    /// - with ANY or an equal pattern type the names must be equal;
    /// - with MATCH, a LITERAL binding matches when its name equals the filter's or is `*`, and a
    ///   PREFIXED one when its name is a prefix of the filter's.
    pub fn matches_pattern(&self, pattern: &ResourcePattern) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != pattern.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != pattern.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == pattern.pattern_type {
            return *name == pattern.name;
        }
        // MATCH against a binding of another pattern type.
        match pattern.pattern_type {
            PatternType::Literal => *name == pattern.name || pattern.name == WILDCARD_RESOURCE,
            PatternType::Prefixed => name.starts_with(pattern.name.as_str()),
            // Kafka throws here; such a binding is never stored (validate), so it matches nothing.
            PatternType::Unknown | PatternType::Any | PatternType::Match => false,
        }
    }

    /// Kafka's `AccessControlEntryFilter.matches`: principal and host equal unless `None`,
    /// operation and permission equal unless ANY.
    pub fn matches_entry(&self, entry: &AccessControlEntry) -> bool {
        if self
            .principal
            .as_ref()
            .is_some_and(|p| *p != entry.principal)
        {
            return false;
        }
        if self.host.as_ref().is_some_and(|h| *h != entry.host) {
            return false;
        }
        if self.operation != AclOperation::Any && self.operation != entry.operation {
            return false;
        }
        self.permission == AclPermission::Any || self.permission == entry.permission
    }
}

impl Default for AclBindingFilter {
    /// [`AclBindingFilter::ANY`].
    fn default() -> Self {
        Self::ANY
    }
}

impl From<&AclBinding> for AclBindingFilter {
    fn from(binding: &AclBinding) -> Self {
        binding.to_filter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(rt: ResourceType, name: &str, pt: PatternType) -> AclBinding {
        AclBinding::new(
            ResourcePattern::new(rt, name, pt),
            AccessControlEntry::new("User:alice", "*", AclOperation::Read, AclPermission::Allow),
        )
    }

    #[test]
    fn validate_accepts_kafkas_shapes() {
        assert_eq!(
            binding(ResourceType::Topic, "t", PatternType::Literal).validate(),
            Ok(())
        );
        assert_eq!(
            binding(ResourceType::Topic, "*", PatternType::Literal).validate(),
            Ok(())
        );
        assert_eq!(
            binding(ResourceType::Group, "g", PatternType::Prefixed).validate(),
            Ok(())
        );
        assert_eq!(
            binding(ResourceType::Cluster, CLUSTER_NAME, PatternType::Literal).validate(),
            Ok(())
        );
        let mut b = binding(ResourceType::User, "bob", PatternType::Literal);
        b.entry.principal = "Group:ops:east".into();
        b.entry.host = "not-an-ip".into();
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_with_kafkas_messages() {
        let msg = |b: AclBinding| b.validate().unwrap_err().message().to_owned();
        assert_eq!(
            msg(binding(
                ResourceType::Cluster,
                "my-cluster",
                PatternType::Literal
            )),
            "The only valid name for the CLUSTER resource is kafka-cluster"
        );
        assert_eq!(
            msg(binding(ResourceType::Cluster, "", PatternType::Literal)),
            "The only valid name for the CLUSTER resource is kafka-cluster"
        );
        assert_eq!(
            msg(binding(ResourceType::Topic, "", PatternType::Literal)),
            "Invalid empty resource name"
        );
        assert_eq!(
            msg(binding(ResourceType::Any, "t", PatternType::Literal)),
            "Invalid resourceType ANY"
        );
        assert_eq!(
            msg(binding(ResourceType::Unknown, "t", PatternType::Literal)),
            "Invalid resourceType UNKNOWN"
        );
        for pt in [PatternType::Any, PatternType::Match, PatternType::Unknown] {
            assert_eq!(
                msg(binding(ResourceType::Topic, "t", pt)),
                format!("Invalid patternType {pt}")
            );
        }
        for op in [AclOperation::Any, AclOperation::Unknown] {
            let mut b = binding(ResourceType::Topic, "t", PatternType::Literal);
            b.entry.operation = op;
            assert_eq!(msg(b), format!("Invalid operation {op}"));
        }
        for perm in [AclPermission::Any, AclPermission::Unknown] {
            let mut b = binding(ResourceType::Topic, "t", PatternType::Literal);
            b.entry.permission = perm;
            assert_eq!(msg(b), format!("Invalid permissionType {perm}"));
        }
        for principal in ["alice", "", ":alice", "User:"] {
            let mut b = binding(ResourceType::Topic, "t", PatternType::Literal);
            b.entry.principal = principal.into();
            let err = b.validate().unwrap_err();
            assert_eq!(err.code(), AclError::INVALID_REQUEST);
            assert!(
                err.message().starts_with("Could not parse principal"),
                "{err}"
            );
        }
    }

    #[test]
    fn parse_principal_splits_at_the_first_colon() {
        assert_eq!(parse_principal("User:alice"), Some(("User", "alice")));
        assert_eq!(parse_principal("User:CN=a:b"), Some(("User", "CN=a:b")));
        assert_eq!(parse_principal("User:*"), Some(("User", "*")));
        assert_eq!(parse_principal("User"), None);
        assert_eq!(parse_principal("User:"), None);
        assert_eq!(parse_principal(":x"), None);
    }

    #[test]
    fn filter_validate() {
        assert_eq!(AclBindingFilter::ANY.validate(), Ok(()));
        let mut f = AclBindingFilter::ANY;
        f.pattern_type = PatternType::Unknown;
        assert_eq!(
            f.validate().unwrap_err().message(),
            "Unknown patternFilter."
        );
        let mut f = AclBindingFilter::ANY;
        f.resource_type = ResourceType::Unknown;
        assert_eq!(
            f.validate().unwrap_err().message(),
            "Unknown patternFilter."
        );
        let mut f = AclBindingFilter::ANY;
        f.operation = AclOperation::Unknown;
        assert_eq!(f.validate().unwrap_err().message(), "Unknown entryFilter.");
        let mut f = AclBindingFilter::ANY;
        f.permission = AclPermission::Unknown;
        assert_eq!(f.validate().unwrap_err().code(), 42);
    }

    #[test]
    fn display_is_kafkas() {
        let b = binding(ResourceType::Topic, "orders", PatternType::Prefixed);
        assert_eq!(
            b.to_string(),
            "(pattern=ResourcePattern(resourceType=TOPIC, name=orders, patternType=PREFIXED), \
             entry=(principal=User:alice, host=*, operation=READ, permissionType=ALLOW))"
        );
    }

    #[test]
    fn to_filter_matches_only_itself() {
        let b = binding(ResourceType::Topic, "orders", PatternType::Prefixed);
        let f = AclBindingFilter::from(&b);
        assert!(f.matches(&b));
        let mut other = b.clone();
        other.entry.host = "10.0.0.1".into();
        assert!(!f.matches(&other));
        let mut other = b.clone();
        other.pattern.pattern_type = PatternType::Literal;
        assert!(!f.matches(&other));
    }

    #[test]
    fn ordering_is_type_pattern_type_name() {
        let a = binding(ResourceType::Topic, "z", PatternType::Literal);
        let b = binding(ResourceType::Topic, "a", PatternType::Prefixed);
        let c = binding(ResourceType::Group, "zz", PatternType::Prefixed);
        let mut v = vec![b.clone(), a.clone(), c.clone()];
        v.sort();
        assert_eq!(v, vec![a, b, c]);
    }
}
