//! Kafka's ACL model and its `StandardAuthorizer`, as pure code.
//!
//! An ACL ([`AclBinding`]) says "principal P is ALLOWED/DENIED operation O from host H on the
//! resources matching pattern R" — Kafka's model exactly: the same resource types, pattern
//! types (LITERAL, with `*` for every name, and PREFIXED), operations and permissions with their
//! wire codes, the same CreateAcls validation, the same DescribeAcls/DeleteAcls filter semantics
//! (ANY, MATCH, absent fields) and the same authorization rules as Kafka's KRaft authorizer
//! (`StandardAuthorizerData`): super users first, DENY wins, ALLOW of READ/WRITE/DELETE/ALTER
//! implies DESCRIBE and of ALTER_CONFIGS implies DESCRIBE_CONFIGS, and a resource no ACL applies
//! to gets `allow.everyone.if.no.acl.found`. A client's ACLs mean here what they mean on Kafka.
//!
//! It is pure: no IO, no clock, no threads, no global state, no panics on any input. The broker
//! owns everything else:
//!
//! - **Storage.** ACLs live in the metadata log (the quorum): CreateAcls validates each binding
//!   ([`AclBinding::validate`], the Kafka error code in [`AclError`]), checks the [`MAX_ACLS`]
//!   bound and proposes the new bindings; DeleteAcls validates its filters
//!   ([`AclBindingFilter::validate`]) and proposes the removal of what
//!   [`AclTable::matching`] selects. A binding's serde form is the on-disk shape.
//! - **Lookup.** Every node applies the committed records to its in-memory [`AclTable`]
//!   ([`AclTable::add`], [`AclTable::remove`]), which indexes bindings by resource type, pattern
//!   and principal so a lookup costs the patterns near the name, not the table.
//! - **Checks.** Every request handler asks [`authorize`] (with the session's principal and the
//!   client address as [`client_host`] writes it), reports allowed operations with
//!   [`authorized_operations`], and uses [`authorize_any`] where a request needs a right on some
//!   resource of a type. A [`Decision`] carries its [`Reason`] (super user, the matching
//!   binding, no ACL, ...) for the audit line ([`Decision::audit_message`]).
//!
//! Modules, each with one job: [`types`] (the enums and special names), [`binding`] (bindings,
//! validation, filters), [`error`], [`table`] (the index) and [`authorizer`] (the decisions).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]

pub mod authorizer;
pub mod binding;
pub mod error;
pub mod table;
pub mod types;

pub use authorizer::{
    authorize, authorize_any, authorized_operations, client_host, is_super_user,
    operations_bit_field, operations_from_bit_field, supported_operations, AuthorizerConfig,
    Decision, Reason, Request, AUTHORIZED_OPERATIONS_OMITTED,
};
pub use binding::{
    parse_principal, AccessControlEntry, AclBinding, AclBindingFilter, ResourcePattern,
};
pub use error::AclError;
pub use table::{AclTable, MAX_ACLS};
pub use types::{
    AclOperation, AclPermission, PatternType, ResourceType, CLUSTER_NAME, WILDCARD_HOST,
    WILDCARD_PRINCIPAL, WILDCARD_RESOURCE,
};
