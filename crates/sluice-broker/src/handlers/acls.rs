//! DescribeAcls (29), CreateAcls (30), DeleteAcls (31): the ACL bindings of the metadata log
//! (`security/authz.rs`), as Kafka's `AclControlManager` serves them. Without `--authorizer on`
//! all three answer SECURITY_DISABLED, as Kafka does with no authorizer configured.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_acl::{
    AccessControlEntry, AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternType,
    ResourcePattern, ResourceType, CLUSTER_NAME,
};

use super::RequestContext;
use crate::broker::{now_ms, Broker};
use crate::security::authz::authorize;

const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SECURITY_DISABLED: i16 = 54;
const UNKNOWN_SERVER_ERROR: i16 = -1;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// None when the request may go on; else the error every part of the answer carries.
fn refusal(broker: &Broker, ctx: &RequestContext, op: AclOperation) -> Option<(i16, String)> {
    if !broker.security.authorizer.enabled {
        return Some((
            SECURITY_DISABLED,
            "No Authorizer is configured (sluice serve --authorizer on).".into(),
        ));
    }
    if !authorize(broker, ctx, op, ResourceType::Cluster, CLUSTER_NAME) {
        return Some((
            CLUSTER_AUTHORIZATION_FAILED,
            "Cluster authorization failed.".into(),
        ));
    }
    None
}

/// A filter from its wire form (unknown codes become UNKNOWN, which validation refuses).
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
    version: i16,
) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(resource_type).unwrap_or(ResourceType::Unknown),
        name: name.map(|n| n.to_string()),
        // v0 has no pattern type: it filters LITERAL bindings.
        pattern_type: if version == 0 {
            PatternType::Literal
        } else {
            PatternType::from_code(pattern_type).unwrap_or(PatternType::Unknown)
        },
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: AclOperation::from_code(operation).unwrap_or(AclOperation::Unknown),
        permission: AclPermission::from_code(permission).unwrap_or(AclPermission::Unknown),
    }
}

pub fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let fail = |(code, message): (i16, String)| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)))
    };
    if let Some(e) = refusal(broker, ctx, AclOperation::Describe) {
        return fail(e);
    }
    let f = filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
        ctx.version,
    );
    if let Err(e) = f.validate() {
        return fail((e.code(), e.message().to_string()));
    }
    let table = broker.metadata.acls.table();
    // One resource entry per pattern, its entries in the table's order.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in table.matching(&f) {
        let entry = AclDescription::default()
            .with_principal(s(b.entry.principal.clone()))
            .with_host(s(b.entry.host.clone()))
            .with_operation(b.entry.operation.code())
            .with_permission_type(b.entry.permission.code());
        let same = |r: &DescribeAclsResource| {
            r.resource_type == b.pattern.resource_type.code()
                && r.resource_name.as_str() == b.pattern.name
                && r.pattern_type == b.pattern.pattern_type.code()
        };
        match resources.iter_mut().find(|r| same(r)) {
            Some(r) => r.acls.push(entry),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.pattern.resource_type.code())
                    .with_resource_name(s(b.pattern.name.clone()))
                    .with_pattern_type(b.pattern.pattern_type.code())
                    .with_acls(vec![entry]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn create(
    broker: &Broker,
    ctx: &RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let result = |code: i16, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message.map(s))
    };
    if let Some((code, message)) = refusal(broker, ctx, AclOperation::Alter) {
        let results = req
            .creations
            .iter()
            .map(|_| result(code, Some(message.clone())))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // Each creation is checked on its own; the valid ones are created together.
    let mut checked: Vec<Result<AclBinding, (i16, String)>> = Vec::new();
    for c in &req.creations {
        let pattern_type = if ctx.version == 0 {
            PatternType::Literal
        } else {
            PatternType::from_code(c.resource_pattern_type).unwrap_or(PatternType::Unknown)
        };
        let binding = AclBinding::new(
            ResourcePattern::new(
                ResourceType::from_code(c.resource_type).unwrap_or(ResourceType::Unknown),
                c.resource_name.to_string(),
                pattern_type,
            ),
            AccessControlEntry::new(
                c.principal.to_string(),
                c.host.to_string(),
                AclOperation::from_code(c.operation).unwrap_or(AclOperation::Unknown),
                AclPermission::from_code(c.permission_type).unwrap_or(AclPermission::Unknown),
            ),
        );
        checked.push(
            binding
                .validate()
                .map(|()| binding)
                .map_err(|e| (e.code(), e.message().to_string())),
        );
    }
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let outcome = if valid.is_empty() {
        Ok(())
    } else {
        broker.metadata.create_acls(valid, now_ms()).await
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &outcome) {
            (Err((code, message)), _) => result(code, Some(message)),
            (Ok(_), Ok(())) => result(0, None),
            (Ok(_), Err(e)) => result(e.code, Some(e.message.clone())),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub async fn delete(
    broker: &Broker,
    ctx: &RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let failed = |code: i16, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)))
    };
    if let Some((code, message)) = refusal(broker, ctx, AclOperation::Alter) {
        let results = req
            .filters
            .iter()
            .map(|_| failed(code, message.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<Result<AclBindingFilter, (i16, String)>> = req
        .filters
        .iter()
        .map(|f| {
            let f = filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
                ctx.version,
            );
            f.validate()
                .map(|()| f)
                .map_err(|e| (e.code(), e.message().to_string()))
        })
        .collect();
    let valid: Vec<AclBindingFilter> = filters.iter().filter_map(|f| f.clone().ok()).collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        broker.metadata.delete_acls(valid, now_ms()).await
    };
    let mut deleted_iter = match &deleted {
        Ok(d) => d.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = filters
        .into_iter()
        .map(|f| match (f, &deleted) {
            (Err((code, message)), _) => failed(code, message),
            (Ok(_), Err(e)) => failed(
                if e.code == 0 {
                    UNKNOWN_SERVER_ERROR
                } else {
                    e.code
                },
                e.message.clone(),
            ),
            (Ok(_), Ok(_)) => DeleteAclsFilterResult::default().with_matching_acls(
                deleted_iter
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.pattern.resource_type.code())
                            .with_resource_name(s(b.pattern.name))
                            .with_pattern_type(b.pattern.pattern_type.code())
                            .with_principal(s(b.entry.principal))
                            .with_host(s(b.entry.host))
                            .with_operation(b.entry.operation.code())
                            .with_permission_type(b.entry.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
