//! Helpers shared by the integration tests.
#![allow(dead_code)]

use sluice_acl::*;

pub const ALICE: &str = "User:alice";
pub const BOB: &str = "User:bob";
pub const ANY_USER: &str = "User:*";
pub const HOST: &str = "192.168.0.1";

pub fn binding(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    host: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding::new(
        ResourcePattern::new(resource_type, name, pattern_type),
        AccessControlEntry::new(principal, host, operation, permission),
    )
}

/// A LITERAL binding from any host.
pub fn literal(
    resource_type: ResourceType,
    name: &str,
    principal: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    binding(
        resource_type,
        name,
        PatternType::Literal,
        principal,
        WILDCARD_HOST,
        operation,
        permission,
    )
}

/// A PREFIXED binding from any host.
pub fn prefixed(
    resource_type: ResourceType,
    name: &str,
    principal: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    binding(
        resource_type,
        name,
        PatternType::Prefixed,
        principal,
        WILDCARD_HOST,
        operation,
        permission,
    )
}

/// A table of these bindings; each must be new and valid.
pub fn table(bindings: impl IntoIterator<Item = AclBinding>) -> AclTable {
    let mut table = AclTable::new();
    for b in bindings {
        let shown = b.to_string();
        assert!(table.add(b), "not added: {shown}");
    }
    table
}

/// Kafka's test authorizer: super user `User:superman`, default deny.
pub fn config() -> AuthorizerConfig {
    AuthorizerConfig {
        super_users: vec!["User:superman".into()],
        allow_everyone_if_no_acl_found: false,
    }
}

pub fn request<'a>(
    principal: &'a str,
    host: &'a str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &'a str,
) -> Request<'a> {
    Request {
        principal,
        host,
        operation,
        resource_type,
        name,
    }
}

/// The decision for `principal` from [`HOST`].
pub fn decide(
    table: &AclTable,
    config: &AuthorizerConfig,
    principal: &str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> Decision {
    authorize(
        table,
        config,
        &request(principal, HOST, operation, resource_type, name),
    )
}

pub fn allowed(
    table: &AclTable,
    config: &AuthorizerConfig,
    principal: &str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    decide(table, config, principal, operation, resource_type, name).is_allowed()
}

/// A seeded PRNG (SplitMix64): reproducible, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}
