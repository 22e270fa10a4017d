//! The schema registry under the Kafka ACLs (`--authorizer on`): a subject is authorized as
//! the topic it names, so the ACLs that let a client produce to or consume from a topic also
//! let it register or read that topic's schemas, with nothing registry-specific to grant.
//!
//! A subject names its topic the way Confluent's default `TopicNameStrategy` builds it:
//! `<topic>-key` and `<topic>-value`; any other subject (`RecordNameStrategy`'s
//! `com.acme.Order`) is authorized as a topic of its own name, which a prefixed ACL covers.
//!
//! | request | needs, on the subject's topic |
//! |---|---|
//! | read a subject's versions, config, mode; look a schema up; check compatibility | DESCRIBE (READ and WRITE imply it) |
//! | register a schema | WRITE |
//! | delete a subject or a version | DELETE |
//! | set or delete a subject's config or mode | ALTER_CONFIGS |
//! | set or delete the global config or mode | ALTER_CONFIGS on the cluster |
//! | a schema by id | DESCRIBE on the topic of some subject that has it (deleted ones too) |
//! | schema types, global config and mode | an authenticated user |
//!
//! Lists of subjects (`GET /subjects`, a schema id's subjects and versions) show only the
//! subjects the caller may DESCRIBE, as Metadata hides topics.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_acl::{AclOperation, ResourceType, CLUSTER_NAME};

use crate::security::authz;
use crate::security::http::Caller;
use crate::Broker;

/// What a registry request needs.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Authentication only.
    Nothing,
    /// The operation on the subject's topic.
    Subject(AclOperation, String),
    /// The operation on the cluster.
    Cluster(AclOperation),
    /// A list of subjects, filtered to those the caller may DESCRIBE.
    Filtered,
    /// A schema by id: DESCRIBE on the topic of some subject (deleted ones included) that has
    /// it, as Confluent's registry authorizes it.
    SchemaId(i32),
}

/// The topic a subject is authorized as.
pub fn topic_of(subject: &str) -> &str {
    subject
        .strip_suffix("-value")
        .or_else(|| subject.strip_suffix("-key"))
        .filter(|t| !t.is_empty())
        .unwrap_or(subject)
}

fn need(method: &Method, path: &str) -> Need {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let read = matches!(*method, Method::GET | Method::HEAD);
    match (segs.as_slice(), read) {
        (["subjects"], true) => Need::Filtered,
        (["schemas", "ids", _, "subjects" | "versions"], true) => Need::Filtered,
        (["schemas", "ids", id] | ["schemas", "ids", id, "schema"], true) => {
            match id.parse::<i32>() {
                Ok(id) => Need::SchemaId(id),
                // Not an id: the registry's 404.
                Err(_) => Need::Nothing,
            }
        }
        ([] | [""] | ["schemas", ..] | ["config"] | ["mode"], true) => Need::Nothing,
        (["config"] | ["mode"], false) => Need::Cluster(AclOperation::AlterConfigs),
        (["subjects", s, ..], true) | (["config" | "mode", s], true) => {
            Need::Subject(AclOperation::Describe, s.to_string())
        }
        (["subjects", s], false) if *method == Method::POST => {
            Need::Subject(AclOperation::Describe, s.to_string())
        }
        (["subjects", s, "versions"], false) if *method == Method::POST => {
            Need::Subject(AclOperation::Write, s.to_string())
        }
        (["subjects", s, ..], false) if *method == Method::DELETE => {
            Need::Subject(AclOperation::Delete, s.to_string())
        }
        (["config" | "mode", s], false) => Need::Subject(AclOperation::AlterConfigs, s.to_string()),
        (["compatibility", "subjects", s, ..], false) => {
            Need::Subject(AclOperation::Describe, s.to_string())
        }
        // Not a registry route (404 below); a write there is held to the most.
        (_, true) => Need::Nothing,
        (_, false) => Need::Cluster(AclOperation::Alter),
    }
}

/// The layer on the registry's routes (requests from outside and the console's in-process
/// calls alike).
pub async fn authorize(State(broker): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    if !broker.security.authorizer.enabled {
        return next.run(req).await;
    }
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| Caller::open(std::net::Ipv4Addr::LOCALHOST.into()));
    let ctx = caller.context("SchemaRegistry");
    let denied = |what: String| {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error_code": 40301,
                "message": format!("{} is not authorized to {what}", caller.principal),
            })),
        )
            .into_response()
    };
    match need(req.method(), req.uri().path()) {
        Need::Nothing => next.run(req).await,
        Need::Subject(op, subject) => {
            let topic = topic_of(&subject);
            if authz::authorize(&broker, &ctx, op, ResourceType::Topic, topic) {
                next.run(req).await
            } else {
                denied(format!(
                    "{} subject {subject} (needs {} on topic {topic})",
                    op_verb(op),
                    op.name()
                ))
            }
        }
        Need::SchemaId(id) => {
            // An unknown id passes on to the registry's own 404.
            let subjects = broker
                .registry
                .versions_for_id(id, true)
                .unwrap_or_default();
            let visible = subjects.is_empty()
                || subjects
                    .iter()
                    .any(|(subject, _)| describes(&broker, &ctx, subject));
            if visible {
                next.run(req).await
            } else {
                // One audited denial for the request (the checks above only filtered).
                if let Some((subject, _)) = subjects.first() {
                    authz::authorize(
                        &broker,
                        &ctx,
                        AclOperation::Describe,
                        ResourceType::Topic,
                        topic_of(subject),
                    );
                }
                denied(format!(
                    "read schema {id} (needs DESCRIBE on the topic of a subject using it)"
                ))
            }
        }
        Need::Cluster(op) => {
            if authz::authorize(&broker, &ctx, op, ResourceType::Cluster, CLUSTER_NAME) {
                next.run(req).await
            } else {
                denied(format!(
                    "change the registry's global settings (needs {} on the cluster)",
                    op.name()
                ))
            }
        }
        Need::Filtered => {
            let resp = next.run(req).await;
            if !resp.status().is_success() {
                return resp;
            }
            let (parts, body) = resp.into_parts();
            let Ok(bytes) =
                axum::body::to_bytes(body, crate::limits::CONSOLE_MAX_API_RESPONSE_BYTES).await
            else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(serde_json::json!({
                        "error_code": 50001,
                        "message": format!(
                            "the list is over {} bytes, too long to filter by ACL",
                            crate::limits::CONSOLE_MAX_API_RESPONSE_BYTES
                        ),
                    })),
                )
                    .into_response();
            };
            let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&bytes) else {
                return Response::from_parts(parts, Body::from(bytes));
            };
            let visible = |subject: &str| describes(&broker, &ctx, subject);
            let kept: Vec<serde_json::Value> = items
                .into_iter()
                .filter(|item| {
                    let subject = item
                        .as_str()
                        .or_else(|| item.get("subject").and_then(|s| s.as_str()));
                    subject.is_some_and(visible)
                })
                .collect();
            let mut resp =
                Response::from_parts(parts, Body::from(serde_json::Value::from(kept).to_string()));
            resp.headers_mut().remove(header::CONTENT_LENGTH);
            resp
        }
    }
}

/// Whether the caller may see a subject (DESCRIBE on its topic); not audited: it filters.
fn describes(broker: &Broker, ctx: &crate::handlers::RequestContext, subject: &str) -> bool {
    authz::permits(
        broker,
        ctx,
        AclOperation::Describe,
        ResourceType::Topic,
        topic_of(subject),
    )
}

fn op_verb(op: AclOperation) -> &'static str {
    match op {
        AclOperation::Write => "register schemas under",
        AclOperation::Delete => "delete",
        AclOperation::AlterConfigs => "change the config or mode of",
        _ => "read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_topics() {
        assert_eq!(topic_of("orders-value"), "orders");
        assert_eq!(topic_of("orders-key"), "orders");
        assert_eq!(topic_of("com.acme.Order"), "com.acme.Order");
        assert_eq!(topic_of("-value"), "-value");
    }

    #[test]
    fn requests_need_what_the_table_says() {
        use AclOperation as Op;
        let s = |op, name: &str| Need::Subject(op, name.to_string());
        assert_eq!(need(&Method::GET, "/subjects"), Need::Filtered);
        assert_eq!(
            need(&Method::GET, "/schemas/ids/3/subjects"),
            Need::Filtered
        );
        assert_eq!(need(&Method::GET, "/schemas/ids/3"), Need::SchemaId(3));
        assert_eq!(
            need(&Method::GET, "/schemas/ids/3/schema"),
            Need::SchemaId(3)
        );
        assert_eq!(need(&Method::GET, "/schemas/ids/x"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/schemas/types"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/config"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/"), Need::Nothing);
        assert_eq!(
            need(&Method::GET, "/subjects/orders-value/versions/latest"),
            s(Op::Describe, "orders-value")
        );
        assert_eq!(
            need(&Method::POST, "/subjects/orders-value/versions"),
            s(Op::Write, "orders-value")
        );
        assert_eq!(
            need(&Method::POST, "/subjects/orders-value"),
            s(Op::Describe, "orders-value")
        );
        assert_eq!(
            need(&Method::DELETE, "/subjects/orders-value/versions/1"),
            s(Op::Delete, "orders-value")
        );
        assert_eq!(
            need(&Method::PUT, "/config/orders-value"),
            s(Op::AlterConfigs, "orders-value")
        );
        assert_eq!(
            need(&Method::GET, "/mode/orders-value"),
            s(Op::Describe, "orders-value")
        );
        assert_eq!(
            need(&Method::PUT, "/config"),
            Need::Cluster(Op::AlterConfigs)
        );
        assert_eq!(
            need(&Method::DELETE, "/mode"),
            Need::Cluster(Op::AlterConfigs)
        );
        assert_eq!(
            need(
                &Method::POST,
                "/compatibility/subjects/a%2Fb-value/versions/latest"
            ),
            s(Op::Describe, "a/b-value")
        );
        assert_eq!(need(&Method::POST, "/nowhere"), Need::Cluster(Op::Alter));
    }
}
