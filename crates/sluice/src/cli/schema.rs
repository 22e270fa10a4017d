//! `sluice schema register|get|list|check|delete|config`: the schema registry from the command
//! line. Unlike the other tools this one speaks HTTP, not the Kafka protocol: Confluent Schema
//! Registry's REST API, which `sluice serve` answers on its HTTP port (`--http-addr`, default
//! 127.0.0.1:8081), at `--registry-url` (env `SLUICE_REGISTRY_URL`). Only that API is used, so
//! the tool works against any Confluent-compatible registry reachable over plain HTTP; with
//! `--registry-user` (and `SLUICE_REGISTRY_PASSWORD`) it logs in with HTTP Basic.
//!
//! Output is text for people and JSON with `--output json` for scripts. A failure is one stderr
//! line with the registry's `error_code` and message, and exit status 1; usage errors exit 2
//! (clap). `check` exits 1 when the schema is incompatible, so a script can gate a deploy on it.
//!
//! Wiring: `pub mod schema;` in `cli/mod.rs`; in `main.rs` a `Schema(cli::schema::SchemaArgs)`
//! variant of `Command` run by `Command::Schema(args) => cli::schema::run(args)`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};

use super::table::Table;
use super::Output;

#[derive(Args, Debug)]
pub struct SchemaArgs {
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Subcommand, Debug)]
enum SchemaCommand {
    /// Register a schema under a subject; prints its id and version
    Register {
        /// The subject, e.g. orders-value (TopicNameStrategy: <topic>-value / <topic>-key)
        #[arg(short, long)]
        subject: String,
        #[command(flatten)]
        source: SchemaSource,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show a schema by id, or one version of a subject
    Get(GetArgs),
    /// List subjects with their latest version, schema id and type
    List {
        /// Only subjects whose name starts with this
        #[arg(long, value_name = "PREFIX")]
        subject_prefix: Option<String>,
        /// Include soft-deleted subjects (and versions)
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Check whether a schema is compatible with a subject (exit status 1 when it is not)
    Check {
        /// The subject to check against
        #[arg(short, long)]
        subject: String,
        /// Check against this version only (a number or `latest`); default: the versions the
        /// subject's compatibility level names
        #[arg(short, long, value_name = "VERSION", value_parser = parse_version)]
        version: Option<String>,
        #[command(flatten)]
        source: SchemaSource,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Delete a subject, or one version of it (soft, unless --permanent)
    Delete {
        /// The subject
        #[arg(short, long)]
        subject: String,
        /// Delete only this version (a number or `latest`)
        #[arg(short, long, value_name = "VERSION", value_parser = parse_version)]
        version: Option<String>,
        /// Remove for good (soft-deletes first when needed); ids of hard-deleted schemas are never reused
        #[arg(long)]
        permanent: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show or set the compatibility level, global or of one subject
    Config {
        /// The subject (default: the global level)
        #[arg(short, long)]
        subject: Option<String>,
        /// Set the level: NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE,
        /// FULL or FULL_TRANSITIVE
        #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
        set: Option<String>,
        /// Remove the subject's own level, so the global one applies again
        #[arg(long, conflicts_with = "set", requires = "subject")]
        delete: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Where the registry is, and how to print.
#[derive(Args, Debug, Clone)]
struct RegistryArgs {
    /// Schema registry URL (Sluice serves it on the broker's HTTP port)
    #[arg(
        long,
        env = "SLUICE_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL"
    )]
    registry_url: String,
    /// User to log in to the registry as, with HTTP Basic (a Sluice user, when the broker's
    /// listeners authenticate)
    #[arg(long, env = "SLUICE_REGISTRY_USER", value_name = "USER")]
    registry_user: Option<String>,
    /// Password of --registry-user. Prefer the environment variable SLUICE_REGISTRY_PASSWORD:
    /// a flag is visible to other users in `ps`
    #[arg(
        long,
        env = "SLUICE_REGISTRY_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    registry_password: Option<String>,
    /// Output format: text (for people) or json (for scripts)
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Bound on each request to the registry, in milliseconds
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    request_timeout_ms: u64,
}

/// A schema given on the command line.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("schema_source").required(true).args(["file", "schema"])))]
struct SchemaSource {
    /// Read the schema from this file (`-`: standard input)
    #[arg(short, long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The schema text itself
    #[arg(long, value_name = "TEXT")]
    schema: Option<String>,
    /// AVRO, PROTOBUF or JSON [default: PROTOBUF for a .proto file or non-JSON text, JSON for a
    /// JSON Schema ($schema, properties or type "object"), else AVRO]
    #[arg(short = 't', long = "type", value_name = "TYPE", value_parser = parse_type)]
    schema_type: Option<SchemaType>,
    /// A schema reference NAME=SUBJECT:VERSION (VERSION a number or `latest`); repeatable
    #[arg(long = "reference", value_name = "NAME=SUBJECT:VERSION", value_parser = parse_reference)]
    references: Vec<Reference>,
    /// Normalize the schema first, so equivalent texts map to one id
    #[arg(long)]
    normalize: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "subject"])))]
struct GetArgs {
    /// The schema id
    #[arg(long, value_name = "ID")]
    id: Option<u32>,
    /// The subject
    #[arg(short, long)]
    subject: Option<String>,
    /// The subject's version (a number or `latest`) [default: latest]
    #[arg(short, long, value_name = "VERSION", value_parser = parse_version, requires = "subject")]
    version: Option<String>,
    /// Also find soft-deleted versions
    #[arg(long, requires = "subject")]
    deleted: bool,
    /// Print only the schema text, exactly as stored
    #[arg(long)]
    schema_only: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    name: String,
    subject: String,
    /// A number, or `latest` (resolved before the request).
    version: String,
}

const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

fn parse_type(s: &str) -> Result<SchemaType, String> {
    match s.to_ascii_uppercase().as_str() {
        "AVRO" => Ok(SchemaType::Avro),
        "PROTOBUF" | "PROTO" => Ok(SchemaType::Protobuf),
        "JSON" => Ok(SchemaType::Json),
        _ => Err(format!("expected AVRO, PROTOBUF or JSON, got `{s}`")),
    }
}

fn parse_level(s: &str) -> Result<String, String> {
    let up = s.trim().to_ascii_uppercase().replace('-', "_");
    if LEVELS.contains(&up.as_str()) {
        Ok(up)
    } else {
        Err(format!("expected one of {}, got `{s}`", LEVELS.join(", ")))
    }
}

/// A version: a positive number or `latest` (Confluent's `-1` means latest too).
fn parse_version(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("latest") || t == "-1" {
        return Ok("latest".into());
    }
    match t.parse::<u32>() {
        Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(n.to_string()),
        _ => Err(format!(
            "expected a version number (1 or more) or `latest`, got `{s}`"
        )),
    }
}

/// `NAME=SUBJECT:VERSION`; the subject may itself contain ':'.
fn parse_reference(s: &str) -> Result<Reference, String> {
    let bad = || format!("expected NAME=SUBJECT:VERSION, got `{s}`");
    let (name, rest) = s.split_once('=').ok_or_else(bad)?;
    let (subject, version) = rest.rsplit_once(':').ok_or_else(bad)?;
    if name.is_empty() || subject.is_empty() {
        return Err(bad());
    }
    Ok(Reference {
        name: name.to_owned(),
        subject: subject.to_owned(),
        version: parse_version(version)?,
    })
}

/// The type of a schema given without `--type`: Avro schemas are always JSON, so text that is
/// not JSON is Protobuf; a JSON object that looks like a JSON Schema is JSON; the rest Avro.
fn infer_type(path: Option<&Path>, text: &str) -> SchemaType {
    let ext = path
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("proto") => return SchemaType::Protobuf,
        Some("avsc") => return SchemaType::Avro,
        _ => {}
    }
    match serde_json::from_str::<Value>(text) {
        Err(_) => SchemaType::Protobuf,
        Ok(Value::Object(o))
            if o.contains_key("$schema")
                || o.contains_key("properties")
                || o.get("type").and_then(Value::as_str) == Some("object") =>
        {
            SchemaType::Json
        }
        Ok(_) => SchemaType::Avro,
    }
}

// ---- HTTP ------------------------------------------------------------------------------------

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// An error answer from the registry.
#[derive(Debug)]
struct ApiError {
    status: u16,
    /// Confluent's `error_code`, when the body carried one.
    code: Option<i64>,
    message: String,
    hint: Option<&'static str>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        match self.code {
            Some(code) => write!(f, "registry error {code}: {message}")?,
            None => write!(f, "registry answered HTTP {}: {message}", self.status)?,
        }
        if let Some(h) = self.hint {
            write!(f, " — {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The registry error code of a failed call, if the registry sent one.
fn error_code(e: &anyhow::Error) -> Option<i64> {
    e.downcast_ref::<ApiError>().and_then(|a| a.code)
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

struct Client {
    base: String,
    agent: ureq::Agent,
    json: bool,
    /// The `Authorization` header of --registry-user.
    authorization: Option<String>,
}

impl Client {
    fn new(args: &RegistryArgs) -> anyhow::Result<Client> {
        let mut base = args.registry_url.trim().trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            anyhow::bail!(
                "--registry-url {base}: https is not supported by this tool; use http:// (the \
                 broker's HTTP port)"
            );
        }
        if !base.starts_with("http://") {
            base = format!("http://{base}");
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(args.request_timeout_ms.max(1))))
            .build()
            .into();
        let authorization = match (&args.registry_user, &args.registry_password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                if user.contains(':') {
                    anyhow::bail!("--registry-user {user:?}: a user name has no colon (HTTP Basic)");
                }
                use base64::Engine;
                let pair = format!("{user}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (Some(_), None) => anyhow::bail!(
                "--registry-user needs a password: SLUICE_REGISTRY_PASSWORD (or --registry-password)"
            ),
            (None, Some(_)) => anyhow::bail!("a registry password needs --registry-user"),
        };
        Ok(Client {
            base,
            agent,
            json: args.output == Output::Json,
            authorization,
        })
    }

    /// `req` with the --registry-user credentials, when given.
    fn authorized<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// One request; `path` is already encoded. Answers the JSON body of a 2xx answer.
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let accept = "application/vnd.schemaregistry.v1+json, application/json";
        let result = match (method, body) {
            (Method::Get, _) => self
                .authorized(self.agent.get(&url))
                .header("Accept", accept)
                .call(),
            (Method::Delete, _) => self
                .authorized(self.agent.delete(&url))
                .header("Accept", accept)
                .call(),
            (Method::Post | Method::Put, body) => {
                let text = body.map_or_else(|| "{}".to_owned(), Value::to_string);
                let req = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.put(&url),
                };
                self.authorized(req)
                    .header("Accept", accept)
                    .header("Content-Type", CONTENT_TYPE)
                    .send(text)
            }
        };
        let mut resp = result.map_err(|e| self.transport_error(method, &url, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer to {} {url}", method.as_str()))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).or_else(|_| Ok(Value::String(text)));
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v.get("error_code"))
            .and_then(Value::as_i64);
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let t = text.trim();
                if t.is_empty() {
                    format!("{} {path} failed", method.as_str())
                } else {
                    t.chars().take(300).collect()
                }
            });
        let hint = match code {
            Some(40401) => Some("`sluice schema list` shows the subjects"),
            Some(40402) => Some("`sluice schema get --subject S` shows the latest version"),
            Some(409 | 40901) => Some("`sluice schema check` names the incompatibilities"),
            None if status == 404 => Some(
                "is --registry-url the broker's HTTP port, and does the broker serve the \
                 registry?",
            ),
            _ => None,
        };
        Err(ApiError {
            status,
            code,
            message,
            hint,
        }
        .into())
    }

    fn transport_error(&self, method: Method, url: &str, e: ureq::Error) -> anyhow::Error {
        let unreachable = match &e {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::AddrNotAvailable
            ),
            _ => false,
        };
        if unreachable {
            anyhow::anyhow!(
                "cannot reach the schema registry at {}: {e} — is `sluice serve` running? (set \
                 --registry-url or SLUICE_REGISTRY_URL to its HTTP address)",
                self.base
            )
        } else {
            anyhow::anyhow!("{} {url} failed: {e}", method.as_str())
        }
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::Get, path, None)
    }
}

/// Percent-encodes one path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print_json(v: &Value) {
    println!("{v}");
}

/// Schema text for people: JSON schemas (AVRO, JSON) indented, Protobuf as is.
fn pretty_schema(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => {
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned())
        }
        _ => text.trim_end().to_owned(),
    }
}

fn type_of(v: &Value) -> &str {
    v.get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO")
}

fn refs_text(v: &Value) -> Option<String> {
    let refs = v.get("references")?.as_array()?;
    if refs.is_empty() {
        return None;
    }
    Some(
        refs.iter()
            .map(|r| {
                format!(
                    "{} -> {} v{}",
                    r.get("name").and_then(Value::as_str).unwrap_or("?"),
                    r.get("subject").and_then(Value::as_str).unwrap_or("?"),
                    r.get("version")
                        .map_or_else(|| "?".into(), Value::to_string)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

// ---- the commands ------------------------------------------------------------------------------

pub fn run(args: SchemaArgs) -> anyhow::Result<()> {
    match args.command {
        SchemaCommand::Register {
            subject,
            source,
            registry,
        } => register(&Client::new(&registry)?, &subject, &source),
        SchemaCommand::Get(a) => get(&Client::new(&a.registry)?, &a),
        SchemaCommand::List {
            subject_prefix,
            deleted,
            registry,
        } => list(&Client::new(&registry)?, subject_prefix.as_deref(), deleted),
        SchemaCommand::Check {
            subject,
            version,
            source,
            registry,
        } => check(
            &Client::new(&registry)?,
            &subject,
            version.as_deref(),
            &source,
        ),
        SchemaCommand::Delete {
            subject,
            version,
            permanent,
            registry,
        } => delete(
            &Client::new(&registry)?,
            &subject,
            version.as_deref(),
            permanent,
        ),
        SchemaCommand::Config {
            subject,
            set,
            delete,
            registry,
        } => config(
            &Client::new(&registry)?,
            subject.as_deref(),
            set.as_deref(),
            delete,
        ),
    }
}

/// The request body for a schema given on the command line, and its type.
fn schema_body(c: &Client, source: &SchemaSource) -> anyhow::Result<(Value, SchemaType)> {
    let text = match (&source.file, &source.schema) {
        (Some(path), _) if path.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the schema from standard input")?;
            s
        }
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read schema file {}", path.display()))?,
        (None, Some(text)) => text.clone(),
        (None, None) => anyhow::bail!("give the schema with --file or --schema"),
    };
    if text.trim().is_empty() {
        anyhow::bail!("the schema is empty");
    }
    let schema_type = source
        .schema_type
        .unwrap_or_else(|| infer_type(source.file.as_deref(), &text));
    let mut refs = Vec::new();
    for r in &source.references {
        let version = if r.version == "latest" {
            let v = c
                .get(&format!("/subjects/{}/versions/latest", enc(&r.subject)))
                .with_context(|| format!("cannot resolve reference {}", r.name))?;
            v.get("version").and_then(Value::as_i64).with_context(|| {
                format!(
                    "the registry did not say the latest version of {}",
                    r.subject
                )
            })?
        } else {
            r.version.parse::<i64>()?
        };
        refs.push(json!({"name": r.name, "subject": r.subject, "version": version}));
    }
    let mut body = json!({"schema": text, "schemaType": schema_type.as_str()});
    if !refs.is_empty() {
        body["references"] = Value::Array(refs);
    }
    Ok((body, schema_type))
}

fn normalize_query(on: bool) -> &'static str {
    if on {
        "?normalize=true"
    } else {
        ""
    }
}

fn register(c: &Client, subject: &str, source: &SchemaSource) -> anyhow::Result<()> {
    let (body, schema_type) = schema_body(c, source)?;
    let path = format!(
        "/subjects/{}/versions{}",
        enc(subject),
        normalize_query(source.normalize)
    );
    let v = c.call(Method::Post, &path, Some(&body))?;
    let id = v
        .get("id")
        .and_then(Value::as_i64)
        .context("the registry's answer has no id")?;
    // Older registries answer only the id: the lookup finds the version.
    let version = match v.get("version").and_then(Value::as_i64) {
        Some(n) => Some(n),
        None => c
            .call(
                Method::Post,
                &format!(
                    "/subjects/{}{}",
                    enc(subject),
                    normalize_query(source.normalize)
                ),
                Some(&body),
            )
            .ok()
            .and_then(|l| l.get("version").and_then(Value::as_i64)),
    };
    if c.json {
        print_json(&json!({
            "subject": subject,
            "id": id,
            "version": version,
            "schemaType": schema_type.as_str(),
        }));
    } else {
        match version {
            Some(n) => println!(
                "schema id {id} is version {n} of subject {subject} ({})",
                schema_type.as_str()
            ),
            None => println!(
                "schema id {id} is registered under subject {subject} ({})",
                schema_type.as_str()
            ),
        }
    }
    Ok(())
}

fn get(c: &Client, a: &GetArgs) -> anyhow::Result<()> {
    let (mut v, used_by) = match (&a.subject, a.id) {
        (Some(subject), _) => {
            let q = if a.deleted { "?deleted=true" } else { "" };
            let v = c.get(&format!(
                "/subjects/{}/versions/{}{q}",
                enc(subject),
                enc(a.version.as_deref().unwrap_or("latest"))
            ))?;
            (v, None)
        }
        (None, Some(id)) => {
            let mut v = c.get(&format!("/schemas/ids/{id}"))?;
            v["id"] = json!(id);
            // Which subjects use it: an extra, best-effort call.
            let used_by = c
                .get(&format!("/schemas/ids/{id}/versions"))
                .ok()
                .and_then(|u| u.as_array().cloned());
            (v, used_by)
        }
        (None, None) => anyhow::bail!("give --id or --subject"),
    };
    let schema = v
        .get("schema")
        .and_then(Value::as_str)
        .context("the registry's answer has no schema")?
        .to_owned();
    if a.schema_only {
        println!("{}", schema.trim_end());
        return Ok(());
    }
    if c.json {
        if v.get("schemaType").is_none() {
            v["schemaType"] = json!("AVRO");
        }
        if let Some(u) = &used_by {
            v["versions"] = Value::Array(u.clone());
        }
        print_json(&v);
        return Ok(());
    }
    if let Some(s) = v.get("subject").and_then(Value::as_str) {
        println!("subject:     {s}");
    }
    if let Some(n) = v.get("version") {
        println!("version:     {n}");
    }
    if let Some(id) = v.get("id") {
        println!("id:          {id}");
    }
    println!("type:        {}", type_of(&v));
    if let Some(u) = used_by.filter(|u| !u.is_empty()) {
        let list: Vec<String> = u
            .iter()
            .map(|e| {
                format!(
                    "{} v{}",
                    e.get("subject").and_then(Value::as_str).unwrap_or("?"),
                    e.get("version")
                        .map_or_else(|| "?".into(), Value::to_string)
                )
            })
            .collect();
        println!("used by:     {}", list.join(", "));
    }
    if let Some(r) = refs_text(&v) {
        println!("references:  {r}");
    }
    println!();
    println!("{}", pretty_schema(&schema));
    Ok(())
}

fn list(c: &Client, prefix: Option<&str>, deleted: bool) -> anyhow::Result<()> {
    let mut query: Vec<String> = Vec::new();
    if let Some(p) = prefix {
        query.push(format!("subjectPrefix={}", enc(p)));
    }
    let live_path = if query.is_empty() {
        "/subjects".to_owned()
    } else {
        format!("/subjects?{}", query.join("&"))
    };
    let as_names = |v: Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let live = as_names(c.get(&live_path)?);
    let mut subjects = if deleted {
        query.push("deleted=true".into());
        as_names(c.get(&format!("/subjects?{}", query.join("&")))?)
    } else {
        live.clone()
    };
    if let Some(p) = prefix {
        // A registry that ignores subjectPrefix still lists only what was asked for.
        subjects.retain(|s| s.starts_with(p));
    }
    subjects.sort();
    subjects.dedup();
    let q = if deleted { "?deleted=true" } else { "" };
    let mut rows = Vec::new();
    for s in &subjects {
        let latest = match c.get(&format!("/subjects/{}/versions/latest{q}", enc(s))) {
            Ok(v) => Some(v),
            // Deleted between the two calls, or only soft-deleted versions left.
            Err(e) if matches!(error_code(&e), Some(40401 | 40402)) => None,
            Err(e) => return Err(e),
        };
        rows.push((s.clone(), latest, !live.contains(s)));
    }
    if c.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|(s, l, del)| {
                let mut o = json!({
                    "subject": s,
                    "version": l.as_ref().and_then(|l| l.get("version")).cloned(),
                    "id": l.as_ref().and_then(|l| l.get("id")).cloned(),
                    "schemaType": l.as_ref().map(type_of),
                });
                if deleted {
                    o["deleted"] = json!(del);
                }
                o
            })
            .collect();
        print_json(&Value::Array(out));
        return Ok(());
    }
    let mut header = vec!["SUBJECT", "VERSION", "ID", "TYPE"];
    if deleted {
        header.push("DELETED");
    }
    let mut t = Table::new(&header);
    for (s, l, del) in &rows {
        let field = |k: &str| {
            l.as_ref()
                .and_then(|l| l.get(k))
                .map_or_else(|| "-".into(), Value::to_string)
        };
        let mut row = vec![
            s.clone(),
            field("version"),
            field("id"),
            l.as_ref().map_or("-", type_of).to_owned(),
        ];
        if deleted {
            row.push(if *del { "yes" } else { "no" }.into());
        }
        t.row(row);
    }
    t.print();
    Ok(())
}

fn check(
    c: &Client,
    subject: &str,
    version: Option<&str>,
    source: &SchemaSource,
) -> anyhow::Result<()> {
    let (body, _) = schema_body(c, source)?;
    let mut path = format!("/compatibility/subjects/{}/versions", enc(subject));
    if let Some(v) = version {
        path.push('/');
        path.push_str(&enc(v));
    }
    path.push_str("?verbose=true");
    if source.normalize {
        path.push_str("&normalize=true");
    }
    let v = c.call(Method::Post, &path, Some(&body))?;
    let compatible = v
        .get("is_compatible")
        .and_then(Value::as_bool)
        .context("the registry's answer has no is_compatible")?;
    let messages: Vec<String> = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // The level that applied, for the reader: best effort.
    let level = c
        .get(&format!("/config/{}?defaultToGlobal=true", enc(subject)))
        .ok()
        .and_then(|l| {
            l.get("compatibilityLevel")
                .or_else(|| l.get("compatibility"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let against = match version {
        Some(v) => format!("version {v} of subject {subject}"),
        None => format!("subject {subject}"),
    };
    if c.json {
        print_json(&json!({
            "subject": subject,
            "version": version,
            "compatibility": level,
            "is_compatible": compatible,
            "messages": messages,
        }));
    } else {
        let level_note = level
            .map(|l| format!(" (compatibility {l})"))
            .unwrap_or_default();
        if compatible {
            println!("compatible with {against}{level_note}");
        } else {
            println!("NOT compatible with {against}{level_note}:");
            for m in &messages {
                println!("  - {m}");
            }
        }
    }
    if !compatible {
        anyhow::bail!("the schema is not compatible with {against}");
    }
    Ok(())
}

fn delete(c: &Client, subject: &str, version: Option<&str>, permanent: bool) -> anyhow::Result<()> {
    let base = match version {
        None => format!("/subjects/{}", enc(subject)),
        Some(v) => format!("/subjects/{}/versions/{}", enc(subject), enc(v)),
    };
    // Soft first: Confluent's permanent delete needs it (40405 / 40407 otherwise).
    let soft = match c.call(Method::Delete, &base, None) {
        Ok(v) => Some(v),
        // Already soft-deleted (40404 subject, 40406 version): go on to the permanent delete.
        Err(e) if permanent && matches!(error_code(&e), Some(40404 | 40406)) => None,
        Err(e) => return Err(e),
    };
    let result = if permanent {
        // `latest` moved once the soft delete took it: aim at the number it answered.
        let hard_path = match (version, &soft) {
            (Some(_), Some(n)) if n.is_i64() => {
                format!("/subjects/{}/versions/{n}", enc(subject))
            }
            _ => base.clone(),
        };
        c.call(Method::Delete, &format!("{hard_path}?permanent=true"), None)?
    } else {
        soft.unwrap_or(Value::Null)
    };
    let versions: Vec<Value> = match &result {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    if c.json {
        print_json(&json!({
            "subject": subject,
            "versions": versions,
            "permanent": permanent,
        }));
    } else {
        let list = versions
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let how = if permanent {
            "permanently deleted"
        } else {
            "soft-deleted"
        };
        match version {
            None => println!("{how} subject {subject} (versions {list})"),
            Some(_) => println!("{how} version {list} of subject {subject}"),
        }
        if !permanent {
            println!("(its schema ids still resolve; --permanent removes it for good)");
        }
    }
    Ok(())
}

fn level_of(v: &Value) -> Option<String> {
    v.get("compatibilityLevel")
        .or_else(|| v.get("compatibility"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn config(
    c: &Client,
    subject: Option<&str>,
    set: Option<&str>,
    delete: bool,
) -> anyhow::Result<()> {
    let path = match subject {
        Some(s) => format!("/config/{}", enc(s)),
        None => "/config".to_owned(),
    };
    let scope = subject.map_or_else(|| "global".to_owned(), |s| format!("subject {s}"));
    if let Some(level) = set {
        let v = c.call(Method::Put, &path, Some(&json!({"compatibility": level})))?;
        let level = level_of(&v).unwrap_or_else(|| level.to_owned());
        if c.json {
            print_json(&json!({"subject": subject, "compatibility": level}));
        } else {
            println!("compatibility ({scope}) set to {level}");
        }
        return Ok(());
    }
    if delete {
        let v = c.call(Method::Delete, &path, None)?;
        let was = level_of(&v);
        let global = level_of(&c.get("/config")?);
        if c.json {
            print_json(
                &json!({"subject": subject, "removed": was, "compatibility": global, "inherited": true}),
            );
        } else {
            println!(
                "removed the compatibility of {scope} (was {}); the global level {} applies",
                was.as_deref().unwrap_or("?"),
                global.as_deref().unwrap_or("?")
            );
        }
        return Ok(());
    }
    let (level, inherited) = match c.get(&path) {
        Ok(v) => (level_of(&v), false),
        // No level of its own: the global one applies.
        Err(e) if subject.is_some() && error_code(&e) == Some(40408) => {
            (level_of(&c.get("/config")?), true)
        }
        Err(e) => return Err(e),
    };
    let level = level.context("the registry's answer has no compatibility level")?;
    if c.json {
        print_json(&json!({"subject": subject, "compatibility": level, "inherited": inherited}));
    } else if inherited {
        println!(
            "compatibility ({scope}): {level} (the global level; the subject has none of its own)"
        );
    } else {
        println!("compatibility ({scope}): {level}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            parse_reference("com.acme.Other=other-value:3"),
            Ok(Reference {
                name: "com.acme.Other".into(),
                subject: "other-value".into(),
                version: "3".into()
            })
        );
        let r = parse_reference("a.proto=ctx:sub:latest").unwrap();
        assert_eq!(
            (r.subject.as_str(), r.version.as_str()),
            ("ctx:sub", "latest")
        );
        assert!(parse_reference("nosubject").is_err());
        assert!(parse_reference("=s:1").is_err());
        assert!(parse_reference("n=s:0").is_err());
        assert!(parse_reference("n=s:x").is_err());
    }

    #[test]
    fn parses_levels_and_types() {
        assert_eq!(parse_level("full-transitive").unwrap(), "FULL_TRANSITIVE");
        assert_eq!(parse_level("Backward").unwrap(), "BACKWARD");
        assert!(parse_level("sideways").is_err());
        assert_eq!(parse_type("protobuf"), Ok(SchemaType::Protobuf));
        assert!(parse_type("xml").is_err());
        assert_eq!(parse_version("-1").unwrap(), "latest");
        assert_eq!(parse_version("7").unwrap(), "7");
        assert!(parse_version("0").is_err());
    }

    #[test]
    fn infers_types() {
        let avro = r#"{"type":"record","name":"R","fields":[]}"#;
        assert_eq!(infer_type(None, avro), SchemaType::Avro);
        assert_eq!(infer_type(None, r#""string""#), SchemaType::Avro);
        assert_eq!(
            infer_type(None, r#"{"type":"object","properties":{}}"#),
            SchemaType::Json
        );
        assert_eq!(
            infer_type(None, "syntax = \"proto3\";\nmessage M {}"),
            SchemaType::Protobuf
        );
        assert_eq!(
            infer_type(Some(Path::new("x.proto")), avro),
            SchemaType::Protobuf
        );
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(enc("orders-value"), "orders-value");
        assert_eq!(enc("a/b c:d"), "a%2Fb%20c%3Ad");
    }

    #[test]
    fn formats_registry_errors_on_one_line() {
        let e = ApiError {
            status: 404,
            code: Some(40401),
            message: "Subject 'x'\nnot found.".into(),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "registry error 40401: Subject 'x' not found."
        );
    }
}
