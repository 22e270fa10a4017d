//! Kafka's ACL enums with their wire codes and names, and the names ACLs treat specially.
//!
//! Codes are Kafka's (`ResourceType`, `PatternType`, `AclOperation`, `AclPermissionType` in
//! `org.apache.kafka.common`); names are Kafka's upper-case enum names, which are also the
//! serialized form (the metadata log's on-disk shape). Kafka maps a code it does not know to
//! `UNKNOWN`; here [`from_code`](ResourceType::from_code) returns `None` and the caller decides
//! (`from_code(c).unwrap_or(ResourceType::Unknown)` is Kafka's behaviour).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::AclError;

/// The only name a CLUSTER resource has (Kafka's `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A LITERAL resource name matching every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal matching every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host matching every client address.
pub const WILDCARD_HOST: &str = "*";

macro_rules! kafka_enum {
    (
        $(#[$meta:meta])*
        $what:literal,
        pub enum $ty:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $name:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[repr(i8)]
        pub enum $ty {
            $( $(#[$vmeta])* #[serde(rename = $name)] $variant = $code, )*
        }

        impl $ty {
            /// Every value, in code order.
            pub const VALUES: &'static [$ty] = &[$($ty::$variant),*];

            /// The value with this wire code; `None` for a code Kafka does not define.
            pub const fn from_code(code: i8) -> Option<Self> {
                match code {
                    $( $code => Some($ty::$variant), )*
                    _ => None,
                }
            }

            /// The wire code.
            pub const fn code(self) -> i8 {
                self as i8
            }

            /// Kafka's name (upper case, as `kafka-acls.sh` and the Admin API print it).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $ty::$variant => $name, )*
                }
            }

            /// The value with this name, ignoring ASCII case.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::VALUES
                    .iter()
                    .copied()
                    .find(|value| value.name().eq_ignore_ascii_case(name))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = AclError;

            /// [`from_name`](Self::from_name), with INVALID_REQUEST for an unknown name.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s)
                    .ok_or_else(|| AclError::invalid(format!("unknown {} '{}'", $what, s)))
            }
        }
    };
}

kafka_enum! {
    /// What kind of resource an ACL protects (Kafka's `ResourceType`).
    "resource type",
    pub enum ResourceType {
        /// A code this version does not know; never stored, never matched.
        Unknown = 0 => "UNKNOWN",
        /// Filters only: every resource type.
        Any = 1 => "ANY",
        /// A topic.
        Topic = 2 => "TOPIC",
        /// A consumer, share or classic group.
        Group = 3 => "GROUP",
        /// The cluster; its only name is [`CLUSTER_NAME`].
        Cluster = 4 => "CLUSTER",
        /// A transactional id.
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        /// A delegation token (KIP-48).
        DelegationToken = 6 => "DELEGATION_TOKEN",
        /// A user, for delegation tokens created for others (KIP-373).
        User = 7 => "USER",
    }
}

kafka_enum! {
    /// How a binding's resource name matches resource names (Kafka's `PatternType`).
    "pattern type",
    pub enum PatternType {
        /// A code this version does not know.
        Unknown = 0 => "UNKNOWN",
        /// Filters only: any pattern type, with the exact name.
        Any = 1 => "ANY",
        /// Filters only: every binding that would apply to the named resource.
        Match = 2 => "MATCH",
        /// The exact name, or every name when the name is [`WILDCARD_RESOURCE`].
        Literal = 3 => "LITERAL",
        /// Every name starting with the binding's name.
        Prefixed = 4 => "PREFIXED",
    }
}

kafka_enum! {
    /// What a binding allows or denies (Kafka's `AclOperation`).
    ///
    /// Kafka's response bit field of authorized operations (`1 << code`) limits codes to 31.
    "operation",
    pub enum AclOperation {
        /// A code this version does not know.
        Unknown = 0 => "UNKNOWN",
        /// Filters only: any operation.
        Any = 1 => "ANY",
        /// Every operation.
        All = 2 => "ALL",
        /// Read (fetch, consume, join a group).
        Read = 3 => "READ",
        /// Write (produce, transactional writes).
        Write = 4 => "WRITE",
        /// Create (topics, on the cluster or a topic).
        Create = 5 => "CREATE",
        /// Delete (topics, records, groups).
        Delete = 6 => "DELETE",
        /// Alter (partitions, ACLs on the cluster).
        Alter = 7 => "ALTER",
        /// Describe; implied by READ, WRITE, DELETE and ALTER when allowed.
        Describe = 8 => "DESCRIBE",
        /// Broker-to-broker actions on the cluster.
        ClusterAction = 9 => "CLUSTER_ACTION",
        /// DescribeConfigs; implied by ALTER_CONFIGS when allowed.
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        /// AlterConfigs, IncrementalAlterConfigs.
        AlterConfigs = 11 => "ALTER_CONFIGS",
        /// Idempotent producers (on the cluster; deprecated in Kafka for WRITE on any topic).
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        /// Create delegation tokens for a user (KIP-373).
        CreateTokens = 13 => "CREATE_TOKENS",
        /// Describe a user's delegation tokens (KIP-373).
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
        /// Two-phase commit with a transactional id (KIP-939, Kafka 4.x).
        TwoPhaseCommit = 15 => "TWO_PHASE_COMMIT",
    }
}

kafka_enum! {
    /// Whether a binding allows or denies (Kafka's `AclPermissionType`).
    "permission type",
    pub enum AclPermission {
        /// A code this version does not know.
        Unknown = 0 => "UNKNOWN",
        /// Filters only: either permission.
        Any = 1 => "ANY",
        /// Deny; wins over any ALLOW.
        Deny = 2 => "DENY",
        /// Allow.
        Allow = 3 => "ALLOW",
    }
}

impl ResourceType {
    /// A type a binding or a request can name: neither ANY nor UNKNOWN.
    pub const fn is_concrete(self) -> bool {
        !matches!(self, ResourceType::Any | ResourceType::Unknown)
    }
}

impl PatternType {
    /// A type a binding can have: LITERAL or PREFIXED (Kafka's `isSpecific`).
    pub const fn is_specific(self) -> bool {
        matches!(self, PatternType::Literal | PatternType::Prefixed)
    }
}

impl AclOperation {
    /// An operation a binding or a request can name: neither ANY nor UNKNOWN.
    pub const fn is_concrete(self) -> bool {
        !matches!(self, AclOperation::Any | AclOperation::Unknown)
    }
}

impl AclPermission {
    /// A permission a binding can have: ALLOW or DENY.
    pub const fn is_concrete(self) -> bool {
        matches!(self, AclPermission::Allow | AclPermission::Deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_kafka() {
        for &t in ResourceType::VALUES {
            assert_eq!(ResourceType::from_code(t.code()), Some(t));
        }
        for &t in PatternType::VALUES {
            assert_eq!(PatternType::from_code(t.code()), Some(t));
        }
        for &t in AclOperation::VALUES {
            assert_eq!(AclOperation::from_code(t.code()), Some(t));
        }
        for &t in AclPermission::VALUES {
            assert_eq!(AclPermission::from_code(t.code()), Some(t));
        }
        assert_eq!(ResourceType::TransactionalId.code(), 5);
        assert_eq!(ResourceType::User.code(), 7);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(AclOperation::DescribeTokens.code(), 14);
        assert_eq!(AclPermission::Allow.code(), 3);
        assert_eq!(ResourceType::from_code(8), None);
        assert_eq!(ResourceType::from_code(-1), None);
        assert_eq!(PatternType::from_code(5), None);
        assert_eq!(AclOperation::from_code(16), None);
        assert_eq!(AclPermission::from_code(i8::MIN), None);
        // Codes are contiguous from 0 (VALUES is in code order).
        for (i, t) in AclOperation::VALUES.iter().enumerate() {
            assert_eq!(usize::try_from(t.code()).ok(), Some(i));
        }
    }

    #[test]
    fn names_are_kafkas_and_parse_ignoring_case() {
        assert_eq!(ResourceType::TransactionalId.name(), "TRANSACTIONAL_ID");
        assert_eq!(
            ResourceType::DelegationToken.to_string(),
            "DELEGATION_TOKEN"
        );
        assert_eq!(PatternType::Prefixed.name(), "PREFIXED");
        assert_eq!(AclOperation::DescribeConfigs.name(), "DESCRIBE_CONFIGS");
        assert_eq!(AclOperation::ClusterAction.name(), "CLUSTER_ACTION");
        assert_eq!(AclOperation::IdempotentWrite.name(), "IDEMPOTENT_WRITE");
        assert_eq!(AclPermission::Deny.name(), "DENY");
        assert_eq!(
            ResourceType::from_name("transactional_id"),
            Some(ResourceType::TransactionalId)
        );
        assert_eq!(
            PatternType::from_name("Prefixed"),
            Some(PatternType::Prefixed)
        );
        assert_eq!(
            "describe_configs".parse::<AclOperation>(),
            Ok(AclOperation::DescribeConfigs)
        );
        assert_eq!(
            AclPermission::from_name("allow"),
            Some(AclPermission::Allow)
        );
        assert_eq!(ResourceType::from_name("topics"), None);
        assert_eq!(AclOperation::from_name(""), None);
        let err = "nope".parse::<AclPermission>().unwrap_err();
        assert_eq!(err.code(), 42);
        assert_eq!(err.message(), "unknown permission type 'nope'");
        // Non-ASCII input is just unknown.
        assert_eq!(AclOperation::from_name("RÉAD"), None);
    }

    #[test]
    fn every_name_parses_back() {
        for &t in AclOperation::VALUES {
            assert_eq!(AclOperation::from_name(&t.name().to_lowercase()), Some(t));
        }
        for &t in ResourceType::VALUES {
            assert_eq!(t.name().parse::<ResourceType>(), Ok(t));
        }
    }
}
