//! The REST API through the router: happy paths, response shapes the confluent-kafka client
//! parses, and each error code.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::http::{router, CONTENT_TYPE};
use crate::{MemoryJournal, Registry};

struct Api {
    app: axum::Router,
}

impl Api {
    fn new() -> Self {
        let registry = Arc::new(Registry::new(Arc::new(MemoryJournal::new())));
        Self {
            app: router(registry),
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.call_raw(method, uri, body).await;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn call_raw(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", CONTENT_TYPE)
            .body(match body {
                Some(b) => Body::from(b.to_string()),
                None => Body::empty(),
            })
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string());
        assert_eq!(ct.as_deref(), Some(CONTENT_TYPE), "{method} {uri}");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn err_code(v: &Value) -> i64 {
    v["error_code"].as_i64().unwrap_or(-1)
}

const USER: &str = r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"}]}"#;
const USER2: &str = r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]}"#;
const USER_BAD: &str = r#"{"type":"record","name":"User","fields":[{"name":"name","type":"int"}]}"#;

#[tokio::test]
async fn happy_paths() {
    let api = Api::new();
    assert_eq!(
        api.call("GET", "/", None).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        api.call("GET", "/schemas/types", None).await.1,
        json!(["JSON", "PROTOBUF", "AVRO"])
    );
    let (s, v) = api
        .call(
            "POST",
            "/subjects/users-value/versions",
            Some(json!({"schema": USER})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"id": 1, "version": 1}));
    // Python sends ?normalize=False.
    let (_, v) = api
        .call(
            "POST",
            "/subjects/users-value/versions?normalize=False",
            Some(json!({"schema": USER2, "schemaType": "AVRO"})),
        )
        .await;
    assert_eq!(v, json!({"id": 2, "version": 2}));
    assert_eq!(
        api.call("GET", "/subjects", None).await.1,
        json!(["users-value"])
    );
    assert_eq!(
        api.call("GET", "/subjects?subjectPrefix=x", None).await.1,
        json!([])
    );
    assert_eq!(
        api.call("GET", "/subjects/users-value/versions", None)
            .await
            .1,
        json!([1, 2])
    );
    let (_, latest) = api
        .call("GET", "/subjects/users-value/versions/latest", None)
        .await;
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["id"], 2);
    assert_eq!(latest["subject"], "users-value");
    assert!(latest.get("schemaType").is_none(), "AVRO is implied");
    assert_eq!(
        api.call("GET", "/subjects/users-value/versions/-1", None)
            .await
            .1,
        latest
    );
    let (_, v1) = api
        .call("GET", "/subjects/users-value/versions/1", None)
        .await;
    assert_eq!(v1["schema"], USER);
    let (_, raw) = api
        .call_raw("GET", "/subjects/users-value/versions/1/schema", None)
        .await;
    assert_eq!(raw, USER);
    assert_eq!(
        api.call("GET", "/schemas/ids/1", None).await.1,
        json!({"schema": USER})
    );
    assert_eq!(
        api.call_raw("GET", "/schemas/ids/1/schema", None).await.1,
        USER
    );
    assert_eq!(
        api.call("GET", "/schemas/ids/1/subjects", None).await.1,
        json!(["users-value"])
    );
    assert_eq!(
        api.call("GET", "/schemas/ids/1/versions", None).await.1,
        json!([{"subject": "users-value", "version": 1}])
    );
    // Lookup.
    let (s, v) = api
        .call(
            "POST",
            "/subjects/users-value?normalize=False&deleted=False",
            Some(json!({"schema": USER})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["id"].clone(), v["version"].clone()),
        (json!(1), json!(1))
    );
    // Compatibility checks.
    let (_, v) = api
        .call(
            "POST",
            "/compatibility/subjects/users-value/versions/latest?verbose=True",
            Some(json!({"schema": USER2})),
        )
        .await;
    assert_eq!(v, json!({"is_compatible": true, "messages": []}));
    let (_, v) = api
        .call(
            "POST",
            "/compatibility/subjects/users-value/versions?verbose=true",
            Some(json!({"schema": USER_BAD})),
        )
        .await;
    assert_eq!(v["is_compatible"], false);
    assert!(
        v["messages"][0].as_str().unwrap().contains("TYPE_MISMATCH"),
        "{v}"
    );
    let (_, v) = api
        .call(
            "POST",
            "/compatibility/subjects/nobody/versions/latest",
            Some(json!({"schema": USER})),
        )
        .await;
    assert_eq!(v, json!({"is_compatible": true}));
    // Config and mode.
    assert_eq!(
        api.call("GET", "/config", None).await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        api.call(
            "PUT",
            "/config/users-value",
            Some(json!({"compatibility": "full"}))
        )
        .await
        .1,
        json!({"compatibility": "FULL"})
    );
    assert_eq!(
        api.call("GET", "/config/users-value", None).await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        api.call("GET", "/config/other?defaultToGlobal=true", None)
            .await
            .1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        api.call("DELETE", "/config/users-value", None).await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        api.call("GET", "/mode", None).await.1,
        json!({"mode": "READWRITE"})
    );
    assert_eq!(
        api.call(
            "PUT",
            "/mode/users-value?force=False",
            Some(json!({"mode": "READONLY"}))
        )
        .await
        .1,
        json!({"mode": "READONLY"})
    );
    let (s, v) = api
        .call(
            "POST",
            "/subjects/users-value/versions",
            Some(json!({"schema": USER2.replace("age", "years")})),
        )
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, 42205));
    api.call("DELETE", "/mode/users-value", None).await;
    // Deletes.
    assert_eq!(
        api.call("DELETE", "/subjects/users-value/versions/2", None)
            .await
            .1,
        json!(2)
    );
    assert_eq!(
        api.call("GET", "/subjects/users-value/versions?deleted=true", None)
            .await
            .1,
        json!([1, 2])
    );
    assert_eq!(
        api.call(
            "DELETE",
            "/subjects/users-value/versions/2?permanent=true",
            None
        )
        .await
        .1,
        json!(2)
    );
    assert_eq!(
        api.call("DELETE", "/subjects/users-value", None).await.1,
        json!([1])
    );
    assert_eq!(
        api.call("GET", "/subjects?deleted=true", None).await.1,
        json!(["users-value"])
    );
    assert_eq!(
        api.call("DELETE", "/subjects/users-value?permanent=true", None)
            .await
            .1,
        json!([1])
    );
    assert_eq!(
        api.call("GET", "/subjects?deleted=true", None).await.1,
        json!([])
    );
}

#[tokio::test]
async fn error_codes() {
    let api = Api::new();
    api.call(
        "POST",
        "/subjects/s/versions",
        Some(json!({"schema": USER})),
    )
    .await;
    for (method, uri, body, status, code) in [
        ("GET", "/subjects/nope/versions", None, 404, 40401),
        ("GET", "/subjects/nope/versions/1", None, 404, 40401),
        ("GET", "/subjects/s/versions/9", None, 404, 40402),
        ("GET", "/schemas/ids/999", None, 404, 40403),
        (
            "POST",
            "/subjects/s",
            Some(json!({"schema": USER2})),
            404,
            40403,
        ),
        (
            "POST",
            "/subjects/nope",
            Some(json!({"schema": USER})),
            404,
            40401,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"schema": USER_BAD})),
            409,
            40901,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"schema": "{not avro"})),
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"schema": USER, "schemaType": "XML"})),
            422,
            42201,
        ),
        (
            "POST",
            "/subjects/s/versions",
            Some(json!({"nothing": 1})),
            422,
            42201,
        ),
        ("GET", "/subjects/s/versions/abc", None, 422, 42202),
        ("GET", "/subjects/s/versions/0", None, 422, 42202),
        (
            "PUT",
            "/config",
            Some(json!({"compatibility": "SIDEWAYS"})),
            422,
            42203,
        ),
        (
            "PUT",
            "/mode",
            Some(json!({"mode": "WRITEONLY"})),
            422,
            42204,
        ),
        ("GET", "/config/s", None, 404, 40408),
        ("GET", "/mode/s", None, 404, 40409),
        ("DELETE", "/subjects/s?permanent=true", None, 404, 40405),
        (
            "DELETE",
            "/subjects/s/versions/1?permanent=true",
            None,
            404,
            40407,
        ),
    ] {
        let (s, v) = api.call(method, uri, body).await;
        assert_eq!(
            (s.as_u16(), err_code(&v)),
            (status, code),
            "{method} {uri}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // The incompatibility message names the change.
    let (_, v) = api
        .call(
            "POST",
            "/subjects/s/versions",
            Some(json!({"schema": USER_BAD})),
        )
        .await;
    assert!(
        v["message"].as_str().unwrap().contains("/fields/0/type"),
        "{v}"
    );
    // Soft-delete states.
    api.call("DELETE", "/subjects/s/versions/1", None).await;
    let (s, v) = api.call("DELETE", "/subjects/s/versions/1", None).await;
    assert_eq!((s.as_u16(), err_code(&v)), (404, 40406));
    let (s, v) = api.call("DELETE", "/subjects/s", None).await;
    assert_eq!((s.as_u16(), err_code(&v)), (404, 40404));
    // A body that is not JSON, and an unknown route.
    let req = Request::builder()
        .method("POST")
        .uri("/subjects/s/versions")
        .header("content-type", "application/octet-stream")
        .body(Body::from("{{{"))
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (s, v) = api.call("GET", "/nowhere", None).await;
    assert_eq!((s.as_u16(), err_code(&v)), (404, 404));
}

#[tokio::test]
async fn protobuf_and_json_shapes() {
    let api = Api::new();
    let proto = "syntax = \"proto3\";\npackage acme;\nmessage User { string name = 1; }";
    let (_, v) = api
        .call(
            "POST",
            "/subjects/p/versions",
            Some(json!({"schema": proto, "schemaType": "PROTOBUF"})),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    let (_, v) = api.call("GET", &format!("/schemas/ids/{id}"), None).await;
    assert_eq!(v, json!({"schema": proto, "schemaType": "PROTOBUF"}));
    // format=serialized: a base64 FileDescriptorProto (what confluent-kafka deserializers ask).
    let (_, v) = api
        .call("GET", &format!("/schemas/ids/{id}?format=serialized"), None)
        .await;
    let b64 = v["schema"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let fd =
        <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice()).unwrap();
    assert_eq!(fd.package.as_deref(), Some("acme"));
    // Registering that base64 form elsewhere works and round-trips.
    let (s, v) = api
        .call(
            "POST",
            "/subjects/p2/versions",
            Some(json!({"schema": b64, "schemaType": "PROTOBUF"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = api
        .call(
            "GET",
            "/subjects/p/versions/1?deleted=True&format=serialized",
            None,
        )
        .await;
    assert_eq!(v["schema"], b64);

    let json_schema = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
    let (_, v) = api
        .call(
            "POST",
            "/subjects/j/versions",
            Some(json!({"schema": json_schema, "schemaType": "JSON"})),
        )
        .await;
    let jid = v["id"].as_i64().unwrap();
    let (_, v) = api.call("GET", "/subjects/j/versions/latest", None).await;
    assert_eq!(v["schemaType"], "JSON");
    assert_eq!(v["id"], jid);

    // References appear in answers.
    let user = r#"{"type":"object","properties":{"home":{"$ref":"a.json"}}}"#;
    let (s, v) = api
        .call(
            "POST",
            "/subjects/u/versions",
            Some(json!({"schema": user, "schemaType": "JSON", "references": [{"name": "a.json", "subject": "j", "version": 1}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = api.call("GET", "/subjects/u/versions/1", None).await;
    assert_eq!(
        v["references"],
        json!([{"name": "a.json", "subject": "j", "version": 1}])
    );
    let (_, v) = api
        .call("GET", "/subjects/j/versions/1/referencedby", None)
        .await;
    assert_eq!(v, json!([jid + 1]));
}

/// A write is refused with 415 unless it carries a JSON content type (a web page can POST
/// `text/plain`, form data or no content type cross-site without a preflight); nothing is
/// registered or changed.
#[tokio::test]
async fn writes_need_a_json_content_type() {
    let api = Api::new();
    let schema = json!({"schema": "\"string\""}).to_string();
    let send = |method: &'static str, uri: &'static str, ct: Option<&'static str>| {
        let app = api.app.clone();
        let body = schema.clone();
        async move {
            let mut req = Request::builder().method(method).uri(uri);
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let resp = app
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (status, v) = send("POST", "/subjects/x/versions", ct).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(
            v,
            json!({"error_code": 415, "message": "HTTP 415 Unsupported Media Type"})
        );
        let (status, _) = send("PUT", "/config", ct).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
    }
    let (_, subjects) = api.call("GET", "/subjects", None).await;
    assert_eq!(subjects, json!([]));

    for ct in [
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/octet-stream",
    ] {
        let (status, v) = send("POST", "/subjects/x/versions", Some(ct)).await;
        assert_eq!(status, StatusCode::OK, "{ct}: {v}");
    }
    let (_, subjects) = api.call("GET", "/subjects", None).await;
    assert_eq!(subjects, json!(["x"]));
    // Reads need no content type; unknown paths still answer 404.
    let (status, _) = send("GET", "/subjects", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send("POST", "/no/such/path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The requests a secondary forwards to the primary: every change, never a read (lookups and
/// compatibility checks are POSTs that change nothing).
#[test]
fn writes_are_the_changes() {
    use crate::http::is_write;
    use axum::http::Method;
    for (method, path) in [
        (Method::POST, "/subjects/orders-value/versions"),
        (Method::DELETE, "/subjects/orders-value"),
        (Method::DELETE, "/subjects/orders-value/versions/3"),
        (Method::PUT, "/config"),
        (Method::PUT, "/config/orders-value"),
        (Method::DELETE, "/config/orders-value"),
        (Method::PUT, "/mode"),
        (Method::DELETE, "/mode/orders-value"),
    ] {
        assert!(is_write(&method, path), "{method} {path}");
    }
    for (method, path) in [
        (Method::GET, "/subjects/orders-value/versions"),
        (Method::POST, "/subjects/orders-value"),
        (
            Method::POST,
            "/compatibility/subjects/orders-value/versions/latest",
        ),
        (
            Method::POST,
            "/compatibility/subjects/orders-value/versions",
        ),
        (Method::POST, "/subjects//versions"),
        (Method::POST, "/subjects/a/versions/1"),
        (Method::GET, "/schemas/ids/1"),
    ] {
        assert!(!is_write(&method, path), "{method} {path}");
    }
}

/// 50003 and 50004 are answered as Confluent answers them: HTTP 500 with the code.
#[tokio::test]
async fn forwarding_errors_are_confluents() {
    use crate::http::error_reply;
    use crate::RegistryError;
    for (e, code) in [
        (RegistryError::ForwardingFailed("timed out".into()), 50003),
        (RegistryError::UnknownLeader("no leader".into()), 50004),
    ] {
        let resp = error_reply(e);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error_code"], code);
    }
}
