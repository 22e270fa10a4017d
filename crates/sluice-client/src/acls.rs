//! ACLs: CreateAcls, DescribeAcls and DeleteAcls (what `kafka-acls.sh` sends).

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_acl::{
    AccessControlEntry, AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternType,
    ResourcePattern, ResourceType,
};

use crate::error::{check, Result};
use crate::Client;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn binding(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> AclBinding {
    AclBinding::new(
        ResourcePattern::new(
            ResourceType::from_code(resource_type).unwrap_or(ResourceType::Unknown),
            name,
            PatternType::from_code(pattern_type).unwrap_or(PatternType::Unknown),
        ),
        AccessControlEntry::new(
            principal,
            host,
            AclOperation::from_code(operation).unwrap_or(AclOperation::Unknown),
            AclPermission::from_code(permission).unwrap_or(AclPermission::Unknown),
        ),
    )
}

impl Client {
    /// Creates the bindings (all or, per binding, the broker's error).
    pub async fn create_acls(&mut self, bindings: &[AclBinding]) -> Result<()> {
        let addr = self.admin_addr();
        let req = CreateAclsRequest::default().with_creations(
            bindings
                .iter()
                .map(|b| {
                    AclCreation::default()
                        .with_resource_type(b.pattern.resource_type.code())
                        .with_resource_name(s(&b.pattern.name))
                        .with_resource_pattern_type(b.pattern.pattern_type.code())
                        .with_principal(s(&b.entry.principal))
                        .with_host(s(&b.entry.host))
                        .with_operation(b.entry.operation.code())
                        .with_permission_type(b.entry.permission.code())
                })
                .collect(),
        );
        let resp = self.send_to(&addr, &req).await?;
        for (r, b) in resp.results.iter().zip(bindings) {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("create ACL {b}")
            })?;
        }
        Ok(())
    }

    /// The bindings the filter matches.
    pub async fn describe_acls(&mut self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>> {
        let addr = self.admin_addr();
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(filter.name.as_deref().map(s))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(filter.principal.as_deref().map(s))
            .with_host_filter(filter.host.as_deref().map(s))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code());
        let resp = self.send_to(&addr, &req).await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "describe ACLs".into()
        })?;
        let mut out = Vec::new();
        for r in &resp.resources {
            for a in &r.acls {
                out.push(binding(
                    r.resource_type,
                    &r.resource_name,
                    r.pattern_type,
                    &a.principal,
                    &a.host,
                    a.operation,
                    a.permission_type,
                ));
            }
        }
        Ok(out)
    }

    /// Deletes every binding the filter matches; returns them.
    pub async fn delete_acls(&mut self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>> {
        let addr = self.admin_addr();
        let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(filter.name.as_deref().map(s))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(filter.principal.as_deref().map(s))
            .with_host_filter(filter.host.as_deref().map(s))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code())]);
        let resp = self.send_to(&addr, &req).await?;
        let mut out = Vec::new();
        for r in &resp.filter_results {
            check(r.error_code, r.error_message.as_deref(), || {
                "delete ACLs".into()
            })?;
            for m in &r.matching_acls {
                out.push(binding(
                    m.resource_type,
                    &m.resource_name,
                    m.pattern_type,
                    &m.principal,
                    &m.host,
                    m.operation,
                    m.permission_type,
                ));
            }
        }
        Ok(out)
    }
}
