//! Confluent Schema Registry's REST API over [`Registry`], as an axum [`Router`] the broker
//! mounts on its HTTP port.
//!
//! Responses carry `application/vnd.schemaregistry.v1+json`. Writes (POST, PUT) must carry one
//! of [`WRITE_CONTENT_TYPES`] or get 415, as Confluent answers: a web page can POST `text/plain`,
//! form data or no content type cross-site without a CORS preflight, so accepting those would
//! let any page a developer visits register schemas on their local registry. Errors are `{"error_code": N, "message": "..."}` with
//! Confluent's codes and HTTP statuses. Boolean query parameters accept any case, because
//! confluent-kafka-python sends Python's `True`/`False`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::error::RegistryError;
use crate::format::ParsedSchema;
use crate::model::{
    CompatibilityLevel, Mode, SchemaReference, SchemaRequest, SchemaType, StoredSchema,
    SubjectVersion, VersionSpec,
};
use crate::registry::Registry;

/// The content type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Content types a POST or PUT may carry (parameters such as `charset` are ignored): the ones
/// Confluent's server consumes. confluent-kafka's clients send the first; Confluent's server
/// also takes `application/octet-stream` (its "generic request" type), which a browser cannot
/// send cross-site without a preflight either.
pub const WRITE_CONTENT_TYPES: &[&str] = &[
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

type Reg = State<Arc<Registry>>;

/// The registry's routes, at the root of whatever the caller nests them under.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(Ok(json!({}))) }))
        .route(
            "/schemas/types",
            get(|| async { reply(Ok(json!(["JSON", "PROTOBUF", "AVRO"]))) }),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/mode",
            get(get_global_mode)
                .put(put_global_mode)
                .delete(delete_global_mode),
        )
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route_layer(axum::middleware::from_fn(require_json_writes))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found".to_string())
        })
        .with_state(registry)
}

// ---- plumbing ------------------------------------------------------------------------------

/// Whether a request changes the registry (Confluent's primary-only operations, which a
/// secondary forwards to the primary): registering (`POST /subjects/{s}/versions`), deletes,
/// and every `PUT`/`DELETE` of config and mode. Lookups (`POST /subjects/{s}`) and
/// compatibility checks (`POST /compatibility/...`) are reads, answered by any node.
pub fn is_write(method: &Method, path: &str) -> bool {
    if *method == Method::PUT || *method == Method::DELETE {
        return true;
    }
    if *method != Method::POST {
        return false;
    }
    let mut parts = path.trim_start_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("subjects"), Some(s), Some("versions"), None) if !s.is_empty()
    )
}

/// The answer Confluent sends for `e` (its HTTP status and `{"error_code", "message"}`).
pub fn error_reply(e: RegistryError) -> Response {
    reply(Err(e))
}

/// Whether a `Content-Type` value names one of [`WRITE_CONTENT_TYPES`].
pub fn is_write_content_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    WRITE_CONTENT_TYPES
        .iter()
        .any(|t| media.eq_ignore_ascii_case(t))
}

/// Refuses a POST or PUT without a JSON (or Confluent's generic) content type, before its body
/// is looked at: 415 with Confluent's error body.
async fn require_json_writes(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::POST | Method::PUT) {
        let ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_write_content_type);
        if !ok {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                415,
                "HTTP 415 Unsupported Media Type".to_string(),
            );
        }
    }
    next.run(req).await
}

fn reply(result: Result<Value, RegistryError>) -> Response {
    match result {
        Ok(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            v.to_string(),
        )
            .into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(status, e.error_code(), e.to_string())
        }
    }
}

fn raw_reply(result: Result<String, RegistryError>) -> Response {
    match result {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => reply(Err(e)),
    }
}

fn error_response(status: StatusCode, code: u32, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({"error_code": code, "message": message}).to_string(),
    )
        .into_response()
}

/// Query parameters, percent-decoded.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(raw: Option<String>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Query(map)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v.is_empty())
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                    Some(Ok(b)) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body_json(body: &[u8]) -> Result<Value, RegistryError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| RegistryError::BadRequest(format!("Invalid JSON body: {e}")))
}

/// A schema from a request body: `schema` (required), `schemaType`, `references`, and the
/// IMPORT-mode `id` and `version`.
fn schema_request(body: &[u8]) -> Result<SchemaRequest, RegistryError> {
    let v = body_json(body)?;
    let schema = match v.get("schema") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(RegistryError::InvalidSchema("Empty schema".to_string())),
    };
    let schema_type = match v.get("schemaType") {
        None | Some(Value::Null) => SchemaType::Avro,
        Some(Value::String(t)) => SchemaType::parse(t)?,
        Some(other) => {
            return Err(RegistryError::InvalidSchema(format!(
                "Invalid schema type {other}"
            )))
        }
    };
    let mut references = Vec::new();
    if let Some(refs) = v.get("references").filter(|r| !r.is_null()) {
        let refs = refs
            .as_array()
            .ok_or_else(|| RegistryError::InvalidSchema("references must be a list".to_string()))?;
        for r in refs {
            let field = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(name), Some(subject), Some(version)) = (
                field("name"),
                field("subject"),
                r.get("version").and_then(Value::as_i64),
            ) else {
                return Err(RegistryError::InvalidSchema(format!(
                    "a reference needs name, subject and version: {r}"
                )));
            };
            let version = i32::try_from(version).map_err(|_| {
                RegistryError::InvalidSchema(format!("invalid reference version {version}"))
            })?;
            references.push(SchemaReference {
                name,
                subject,
                version,
            });
        }
    }
    let int = |k: &str| {
        v.get(k)
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
            .and_then(|n| i32::try_from(n).ok())
    };
    Ok(SchemaRequest {
        schema,
        schema_type,
        references,
        id: int("id"),
        version: int("version"),
    })
}

fn version_spec(s: &str) -> Result<VersionSpec, RegistryError> {
    VersionSpec::parse(s)
}

fn schema_id(s: &str) -> Result<i32, RegistryError> {
    s.parse::<i32>()
        .map_err(|_| RegistryError::SchemaNotFound(s.to_string()))
}

/// The schema fields of an answer: `schema`, `schemaType` (omitted for AVRO, as Confluent
/// does) and `references` (omitted when empty). `format=serialized` turns PROTOBUF text into
/// a base64 descriptor, which confluent-kafka's Protobuf deserializer asks for.
fn schema_fields(
    registry: &Registry,
    id: i32,
    schema: &StoredSchema,
    q: &Query,
) -> Result<serde_json::Map<String, Value>, RegistryError> {
    let mut m = serde_json::Map::new();
    let text = match (schema.schema_type, q.get("format")) {
        (SchemaType::Protobuf, Some(f)) if f.eq_ignore_ascii_case("serialized") => {
            match registry.parsed(id)?.as_ref() {
                ParsedSchema::Protobuf(p) => p.serialized(),
                _ => schema.schema.clone(),
            }
        }
        _ => schema.schema.clone(),
    };
    m.insert("schema".into(), json!(text));
    if schema.schema_type != SchemaType::Avro {
        m.insert("schemaType".into(), json!(schema.schema_type.as_str()));
    }
    if !schema.references.is_empty() {
        m.insert(
            "references".into(),
            json!(references_json(&schema.references)),
        );
    }
    Ok(m)
}

fn references_json(refs: &[SchemaReference]) -> Vec<Value> {
    refs.iter()
        .map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version}))
        .collect()
}

fn subject_version_json(
    registry: &Registry,
    sv: &SubjectVersion,
    q: &Query,
) -> Result<Value, RegistryError> {
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), json!(sv.subject));
    m.insert("version".into(), json!(sv.version));
    m.insert("id".into(), json!(sv.id));
    m.extend(schema_fields(registry, sv.id, &sv.schema, q)?);
    Ok(Value::Object(m))
}

fn config_json(level: CompatibilityLevel, normalize: Option<bool>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("compatibilityLevel".into(), json!(level.as_str()));
    if let Some(n) = normalize {
        m.insert("normalize".into(), json!(n));
    }
    Value::Object(m)
}

// ---- schemas by id -----------------------------------------------------------------------

async fn schema_by_id(State(r): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let id = schema_id(&id)?;
        let schema = r.schema_by_id(id)?;
        Ok(Value::Object(schema_fields(&r, id, &schema, &q)?))
    })())
}

async fn raw_schema_by_id(State(r): Reg, Path(id): Path<String>) -> Response {
    raw_reply(
        schema_id(&id)
            .and_then(|id| r.schema_by_id(id))
            .map(|s| s.schema.clone()),
    )
}

async fn id_subjects(State(r): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let pairs = r.versions_for_id(schema_id(&id)?, q.flag("deleted"))?;
        let mut subjects: Vec<String> = pairs
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| q.get("subject").is_none_or(|want| want == s))
            .collect();
        subjects.dedup();
        Ok(json!(subjects))
    })())
}

async fn id_versions(State(r): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let pairs = r.versions_for_id(schema_id(&id)?, q.flag("deleted"))?;
        let out: Vec<Value> = pairs
            .into_iter()
            .filter(|(s, _)| q.get("subject").is_none_or(|want| want == s))
            .map(|(s, v)| json!({"subject": s, "version": v}))
            .collect();
        Ok(json!(out))
    })())
}

// ---- subjects ------------------------------------------------------------------------------

async fn list_subjects(State(r): Reg, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q);
    let deleted_only = q.flag("deletedOnly") || q.flag("deleted_only");
    let prefix = q.get("subjectPrefix").unwrap_or("");
    reply(Ok(json!(r.subjects(
        prefix,
        q.flag("deleted"),
        deleted_only
    ))))
}

async fn list_versions(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    let deleted_only = q.flag("deletedOnly") || q.flag("deleted_only");
    reply(
        r.versions(&subject, q.flag("deleted"), deleted_only)
            .map(|v| json!(v)),
    )
}

async fn register(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let q = Query::parse(q);
    let req = match schema_request(&body) {
        Ok(req) => req,
        Err(e) => return reply(Err(e)),
    };
    reply(
        r.register(&subject, req, q.flag("normalize"))
            .await
            .map(|reg| json!({"id": reg.id, "version": reg.version})),
    )
}

async fn lookup(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let req = schema_request(&body)?;
        let sv = r.lookup(&subject, &req, q.flag("normalize"), q.flag("deleted"))?;
        subject_version_json(&r, &sv, &q)
    })())
}

async fn delete_subject(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    reply(
        r.delete_subject(&subject, q.flag("permanent"))
            .await
            .map(|v| json!(v)),
    )
}

async fn get_version(
    State(r): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let sv = r.version(&subject, version_spec(&version)?, q.flag("deleted"))?;
        subject_version_json(&r, &sv, &q)
    })())
}

async fn get_version_schema(
    State(r): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    raw_reply(
        version_spec(&version)
            .and_then(|spec| r.version(&subject, spec, q.flag("deleted")))
            .map(|sv| sv.schema.schema.clone()),
    )
}

async fn delete_version(
    State(r): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    let spec = match version_spec(&version) {
        Ok(s) => s,
        Err(e) => return reply(Err(e)),
    };
    reply(
        r.delete_version(&subject, spec, q.flag("permanent"))
            .await
            .map(|v| json!(v)),
    )
}

async fn referenced_by(
    State(r): Reg,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    reply(
        version_spec(&version)
            .and_then(|spec| r.referenced_by(&subject, spec))
            .map(|ids| json!(ids)),
    )
}

// ---- config --------------------------------------------------------------------------------

async fn get_global_config(State(r): Reg) -> Response {
    reply(
        r.config(None, true)
            .map(|c| config_json(c.compatibility, c.normalize)),
    )
}

async fn get_subject_config(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    reply(
        r.config(Some(&subject), q.flag("defaultToGlobal"))
            .map(|c| config_json(c.compatibility, c.normalize)),
    )
}

async fn put_config(
    r: &Registry,
    subject: Option<&str>,
    body: &[u8],
) -> Result<Value, RegistryError> {
    let v = body_json(body)?;
    let level = match v
        .get("compatibility")
        .or_else(|| v.get("compatibilityLevel"))
    {
        Some(Value::String(s)) => CompatibilityLevel::parse(s)?,
        None | Some(Value::Null) => r.config(subject, true)?.compatibility,
        Some(other) => return Err(RegistryError::InvalidCompatibilityLevel(other.to_string())),
    };
    let normalize = v.get("normalize").and_then(Value::as_bool);
    r.set_config(subject, level, normalize).await?;
    let mut out = serde_json::Map::new();
    out.insert("compatibility".into(), json!(level.as_str()));
    if let Some(n) = normalize {
        out.insert("normalize".into(), json!(n));
    }
    Ok(Value::Object(out))
}

async fn put_global_config(State(r): Reg, body: Bytes) -> Response {
    reply(put_config(&r, None, &body).await)
}

async fn put_subject_config(State(r): Reg, Path(subject): Path<String>, body: Bytes) -> Response {
    reply(put_config(&r, Some(&subject), &body).await)
}

async fn delete_global_config(State(r): Reg) -> Response {
    reply(
        r.delete_config(None)
            .await
            .map(|c| config_json(c.compatibility, c.normalize)),
    )
}

async fn delete_subject_config(State(r): Reg, Path(subject): Path<String>) -> Response {
    reply(
        r.delete_config(Some(&subject))
            .await
            .map(|c| config_json(c.compatibility, c.normalize)),
    )
}

// ---- mode ----------------------------------------------------------------------------------

async fn get_global_mode(State(r): Reg) -> Response {
    reply(r.mode(None, true).map(|m| json!({"mode": m.as_str()})))
}

async fn get_subject_mode(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q);
    reply(
        r.mode(Some(&subject), q.flag("defaultToGlobal"))
            .map(|m| json!({"mode": m.as_str()})),
    )
}

async fn put_mode(
    r: &Registry,
    subject: Option<&str>,
    q: &Query,
    body: &[u8],
) -> Result<Value, RegistryError> {
    let v = body_json(body)?;
    let mode = match v.get("mode") {
        Some(Value::String(s)) => Mode::parse(s)?,
        other => {
            return Err(RegistryError::InvalidMode(
                other.map(Value::to_string).unwrap_or_default(),
            ))
        }
    };
    r.set_mode(subject, mode, q.flag("force")).await?;
    Ok(json!({"mode": mode.as_str()}))
}

async fn put_global_mode(State(r): Reg, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let q = Query::parse(q);
    reply(put_mode(&r, None, &q, &body).await)
}

async fn put_subject_mode(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let q = Query::parse(q);
    reply(put_mode(&r, Some(&subject), &q, &body).await)
}

async fn delete_global_mode(State(r): Reg) -> Response {
    reply(
        r.delete_mode(None)
            .await
            .map(|m| json!({"mode": m.as_str()})),
    )
}

async fn delete_subject_mode(State(r): Reg, Path(subject): Path<String>) -> Response {
    reply(
        r.delete_mode(Some(&subject))
            .await
            .map(|m| json!({"mode": m.as_str()})),
    )
}

// ---- compatibility -------------------------------------------------------------------------

fn compat_json(messages: Vec<String>, verbose: bool) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("is_compatible".into(), json!(messages.is_empty()));
    if verbose {
        m.insert("messages".into(), json!(messages));
    }
    Value::Object(m)
}

async fn check_all(
    State(r): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let req = schema_request(&body)?;
        let messages = r.check_compatibility(&subject, None, &req, q.flag("normalize"))?;
        Ok(compat_json(messages, q.flag("verbose")))
    })())
}

async fn check_version(
    State(r): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let q = Query::parse(q);
    reply((|| {
        let spec = version_spec(&version)?;
        let req = schema_request(&body)?;
        let messages = r.check_compatibility(&subject, Some(spec), &req, q.flag("normalize"))?;
        Ok(compat_json(messages, q.flag("verbose")))
    })())
}
