//! Authorization: the ACL bindings of the metadata image as `sluice-acl`'s table, and the check
//! every request handler makes (`--authorizer on`; Kafka's StandardAuthorizer semantics).
//!
//! A denial the client asked for explicitly (a produce to a topic, a join of a group) is written
//! to the audit log at INFO, one line each, as Kafka's authorizer logs them; a check that only
//! filters what a client sees (topics in an all-topics Metadata, groups in ListGroups) is not.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_acl::{AclBinding, AclOperation, AclTable, AuthorizerConfig, Request, ResourceType};

use crate::handlers::RequestContext;
use crate::Broker;

/// The ACL bindings in force, replaced whole when the image's change.
#[derive(Default)]
pub struct Acls {
    table: parking_lot::RwLock<Arc<AclTable>>,
    /// The image's form of the current table, to skip rebuilding on unrelated changes.
    source: parking_lot::Mutex<BTreeMap<u64, AclBinding>>,
}

impl Acls {
    /// Follows the image (called on every metadata sync).
    pub fn sync(&self, image: &BTreeMap<u64, AclBinding>) {
        let mut source = self.source.lock();
        if *source == *image {
            return;
        }
        let table: AclTable = image.values().cloned().collect();
        *self.table.write() = Arc::new(table);
        *source = image.clone();
    }

    pub fn table(&self) -> Arc<AclTable> {
        self.table.read().clone()
    }
}

/// `--authorizer`, `--superuser`, `--allow-everyone-if-no-acl-found`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerSettings {
    pub enabled: bool,
    pub config: AuthorizerConfig,
}

/// Whether the request's principal may do `operation` on the resource; a denial is audited.
pub fn authorize(
    broker: &Broker,
    ctx: &RequestContext,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    check(broker, ctx, operation, resource_type, name, true)
}

/// As [`authorize`] without the audit line: for checks that only filter what a client sees.
pub fn permits(
    broker: &Broker,
    ctx: &RequestContext,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    check(broker, ctx, operation, resource_type, name, false)
}

fn check(
    broker: &Broker,
    ctx: &RequestContext,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
    audit: bool,
) -> bool {
    let settings = &broker.security.authorizer;
    if !settings.enabled {
        return true;
    }
    let principal = ctx.principal.to_string();
    let host = sluice_acl::client_host(ctx.client_ip);
    let request = Request {
        principal: &principal,
        host: &host,
        operation,
        resource_type,
        name,
    };
    let table = broker.metadata.acls.table();
    let decision = sluice_acl::authorize(&table, &settings.config, &request);
    if !decision.is_allowed() && audit {
        broker.metrics.authorization_denied(ctx.api_name);
        tracing::info!(
            target: "sluice::audit",
            "{}",
            decision.audit_message(&request, ctx.api_name)
        );
    }
    decision.is_allowed()
}

/// Kafka's `authorizeByResourceType`: may the principal do `operation` on some resource of the
/// type (CREATE on any topic, WRITE on any topic for an idempotent producer).
pub fn authorize_any(
    broker: &Broker,
    ctx: &RequestContext,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool {
    let settings = &broker.security.authorizer;
    if !settings.enabled {
        return true;
    }
    let principal = ctx.principal.to_string();
    let host = sluice_acl::client_host(ctx.client_ip);
    let table = broker.metadata.acls.table();
    sluice_acl::authorize_any(
        &table,
        &settings.config,
        &principal,
        &host,
        operation,
        resource_type,
    )
    .is_allowed()
}

/// The bit field of operations the principal may do on a resource (the `*_authorized_operations`
/// fields of Metadata, DescribeGroups, DescribeCluster): every supported operation when the
/// authorizer is off.
pub fn authorized_operations(
    broker: &Broker,
    ctx: &RequestContext,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    let settings = &broker.security.authorizer;
    if !settings.enabled {
        return sluice_acl::operations_bit_field(
            sluice_acl::supported_operations(resource_type)
                .iter()
                .copied(),
        );
    }
    let principal = ctx.principal.to_string();
    let host = sluice_acl::client_host(ctx.client_ip);
    let table = broker.metadata.acls.table();
    sluice_acl::authorized_operations(
        &table,
        &settings.config,
        &principal,
        &host,
        resource_type,
        name,
    )
}
