//! [`Registry`]: the store behind a journal, with the operations the REST API and the broker
//! call.
//!
//! Writes take one async mutex, so ids and versions are decided against a state no other
//! write can change; the event is journaled before it is applied, so nothing a client saw
//! can be lost on restart. Reads take a short read lock on the in-memory store and never wait
//! on disk or on a write in progress. Parsed schemas (compiled validators, descriptor pools)
//! are cached by id: an id's schema never changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::compat;
use crate::error::RegistryError;
use crate::format::{Dependency, ParsedSchema};
use crate::journal::Journal;
use crate::model::{
    CompatibilityLevel, Mode, SchemaReference, SchemaRequest, SchemaType, StoredSchema,
    SubjectVersion, VersionSpec,
};
use crate::store::{Config, RegistryEvent, Store};
use crate::wire;

/// What a registration answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub id: i32,
    pub version: i32,
}

/// Reference chains longer than this are refused (and cycles with them).
const MAX_REFERENCE_DEPTH: usize = 32;

/// The schema registry.
pub struct Registry {
    journal: Arc<dyn Journal>,
    write: tokio::sync::Mutex<()>,
    store: RwLock<Store>,
    parsed: RwLock<HashMap<i32, Arc<ParsedSchema>>>,
}

impl Registry {
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self {
            journal,
            write: tokio::sync::Mutex::new(()),
            store: RwLock::new(Store::new()),
            parsed: RwLock::new(HashMap::new()),
        }
    }

    /// Applies one journaled event (on start, in journal order). Unknown event types are
    /// skipped; undecodable bytes are an error the caller may log and skip.
    pub fn replay(&self, event_bytes: &[u8]) -> Result<(), String> {
        let event = RegistryEvent::decode(event_bytes)?;
        self.store.write().apply(&event);
        Ok(())
    }

    /// Forgets the whole state (the journal starts over from another log: its replica was
    /// replaced, or the part of the log not applied yet was dropped before a snapshot).
    pub fn reset(&self) {
        *self.store.write() = Store::new();
        self.parsed.write().clear();
    }

    /// The write lock, once the journal is ready for a write (see [`Journal::ready`]).
    async fn begin_write(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, RegistryError> {
        let guard = self.write.lock().await;
        self.journal.ready().await.map_err(RegistryError::Store)?;
        Ok(guard)
    }

    /// A copy of the whole state (tests compare replayed state with live state).
    pub fn snapshot(&self) -> Store {
        self.store.read().clone()
    }

    async fn commit(&self, event: RegistryEvent) -> Result<(), RegistryError> {
        self.journal
            .append(event.encode())
            .await
            .map_err(RegistryError::Store)?;
        if !self.journal.applies_events() {
            self.store.write().apply(&event);
        }
        if self.journal.wants_snapshot() {
            // Under the write lock (callers hold it), so no change lands between the state
            // read here and the snapshot's place in the journal. The change itself is done:
            // a failed snapshot is only logged by the journal.
            let image = self.store.read().image();
            let snapshot = RegistryEvent::Snapshot {
                image: Box::new(image),
            };
            let _ = self.journal.snapshot(snapshot.encode()).await;
        }
        Ok(())
    }

    // ---- schemas -------------------------------------------------------------------------

    /// `POST /subjects/{subject}/versions`. A schema identical to a live version of the
    /// subject answers that version without a new one; the same schema under another subject
    /// gets the id it already has.
    pub async fn register(
        &self,
        subject: &str,
        req: SchemaRequest,
        normalize: bool,
    ) -> Result<Registered, RegistryError> {
        check_subject(subject)?;
        let _write = self.begin_write().await?;
        let (mode, config, deps) = {
            let st = self.store.read();
            let mode = st.effective_mode(subject);
            if mode.is_read_only() {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Subject {subject} is in read-only mode"
                )));
            }
            let deps = resolve_references(&st, &req.references)?;
            (mode, st.effective_config(subject), deps)
        };
        let parsed = ParsedSchema::parse(req.schema_type, &req.schema, &deps)
            .map_err(RegistryError::InvalidSchema)?;
        let text = if normalize || config.normalize == Some(true) {
            parsed.normalized()
        } else {
            parsed.canonical()
        };
        let stored = StoredSchema {
            schema_type: req.schema_type,
            schema: text,
            references: req.references.clone(),
        };
        let import = mode == Mode::Import;

        let (entries, known_id, next_id) = {
            let st = self.store.read();
            (st.entries(subject), st.id_for(&stored), st.next_id())
        };
        let next_version = entries.last().map_or(1, |(n, _)| n.saturating_add(1));

        let (id, version) = if import && req.id.is_some() {
            let id = req.id.unwrap_or_default();
            if id < 1 {
                return Err(RegistryError::IdDoesNotMatch(format!("Invalid id {id}")));
            }
            if let Some(existing) = self.store.read().schema_ever(id) {
                if *existing != stored {
                    return Err(RegistryError::IdDoesNotMatch(format!(
                        "Overwrite new schema with id {id} is not permitted."
                    )));
                }
            }
            let version = req.version.unwrap_or(next_version);
            if let Some((_, e)) = entries.iter().find(|(n, _)| *n == version) {
                if e.id == id {
                    return Ok(Registered { id, version });
                }
                return Err(RegistryError::InvalidSchema(format!(
                    "Version {version} already exists for subject {subject}"
                )));
            }
            if version < 1 {
                return Err(RegistryError::InvalidVersion(version.to_string()));
            }
            (id, version)
        } else {
            if let Some(id) = known_id {
                if let Some((n, _)) = entries.iter().rev().find(|(_, e)| e.id == id && !e.deleted) {
                    return Ok(Registered { id, version: *n });
                }
            }
            if let Some(v) = req.version {
                if v != next_version && !import {
                    return Err(RegistryError::InvalidSchema(format!(
                        "Version {v} is not one more than previous version {}",
                        next_version - 1
                    )));
                }
            }
            if !import {
                let live: Vec<(i32, i32)> = entries
                    .iter()
                    .filter(|(_, e)| !e.deleted)
                    .map(|(n, e)| (*n, e.id))
                    .collect();
                let mut previous = Vec::with_capacity(live.len());
                // Only what the level needs: the latest, or every version when transitive.
                let needed = if config.compatibility.transitive() {
                    &live[..]
                } else {
                    &live[live.len().saturating_sub(1)..]
                };
                if config.compatibility != CompatibilityLevel::None {
                    for (n, id) in needed {
                        previous.push((*n, self.parsed(*id)?));
                    }
                }
                let refs: Vec<(i32, &ParsedSchema)> =
                    previous.iter().map(|(n, p)| (*n, p.as_ref())).collect();
                let messages = compat::check(config.compatibility, &parsed, &refs);
                if !messages.is_empty() {
                    return Err(RegistryError::Incompatible {
                        subject: subject.to_string(),
                        messages,
                    });
                }
            }
            (known_id.unwrap_or(next_id), next_version)
        };

        let event = RegistryEvent::SchemaRegistered {
            subject: subject.to_string(),
            version,
            id,
            schema_type: stored.schema_type,
            schema: stored.schema,
            references: stored.references,
        };
        self.commit(event).await?;
        self.parsed
            .write()
            .entry(id)
            .or_insert_with(|| Arc::new(parsed));
        Ok(Registered { id, version })
    }

    /// `POST /subjects/{subject}`: the version of `subject` holding this schema.
    pub fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        normalize: bool,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let (entries, deps) = {
            let st = self.store.read();
            if !st.has_subject(subject, deleted) {
                return Err(RegistryError::SubjectNotFound(subject.to_string()));
            }
            (
                st.entries(subject),
                resolve_references(&st, &req.references)?,
            )
        };
        let parsed = ParsedSchema::parse(req.schema_type, &req.schema, &deps)
            .map_err(RegistryError::InvalidSchema)?;
        let canonical = parsed.canonical();
        let normalized = normalize.then(|| parsed.normalized());
        for (version, entry) in entries.iter().rev() {
            if entry.deleted && !deleted {
                continue;
            }
            let Some(stored) = self.store.read().schema_ever(entry.id) else {
                continue;
            };
            if stored.schema_type != req.schema_type || stored.references != req.references {
                continue;
            }
            let same = stored.schema == canonical
                || normalized.as_ref().is_some_and(|n| {
                    *n == stored.schema || self.parsed(entry.id).is_ok_and(|p| p.normalized() == *n)
                });
            if same {
                return Ok(SubjectVersion {
                    subject: subject.to_string(),
                    version: *version,
                    id: entry.id,
                    schema: stored,
                    deleted: entry.deleted,
                });
            }
        }
        Err(RegistryError::SchemaNotFound(String::new()))
    }

    /// `POST /compatibility/subjects/{subject}/versions[/{version}]`: the incompatibilities
    /// of `req` (empty when compatible). `version` None checks what registering would check.
    pub fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        req: &SchemaRequest,
        normalize: bool,
    ) -> Result<Vec<String>, RegistryError> {
        let _ = normalize; // Normalisation does not change what a schema means.
        let (config, targets, deps) = {
            let st = self.store.read();
            let config = st.effective_config(subject);
            let targets: Vec<(i32, i32)> = match version {
                Some(spec) => {
                    if spec == VersionSpec::Latest && !st.has_subject(subject, false) {
                        Vec::new()
                    } else {
                        let sv = st.version(subject, spec, false)?;
                        vec![(sv.version, sv.id)]
                    }
                }
                None => st
                    .entries(subject)
                    .into_iter()
                    .filter(|(_, e)| !e.deleted)
                    .map(|(n, e)| (n, e.id))
                    .collect(),
            };
            (config, targets, resolve_references(&st, &req.references)?)
        };
        let parsed = ParsedSchema::parse(req.schema_type, &req.schema, &deps)
            .map_err(RegistryError::InvalidSchema)?;
        let mut previous = Vec::with_capacity(targets.len());
        for (n, id) in targets {
            previous.push((n, self.parsed(id)?));
        }
        let refs: Vec<(i32, &ParsedSchema)> =
            previous.iter().map(|(n, p)| (*n, p.as_ref())).collect();
        Ok(compat::check(config.compatibility, &parsed, &refs))
    }

    /// The parsed form of a registered id (cached).
    pub fn parsed(&self, id: i32) -> Result<Arc<ParsedSchema>, RegistryError> {
        if let Some(p) = self.parsed.read().get(&id) {
            return Ok(p.clone());
        }
        let (stored, deps) = {
            let st = self.store.read();
            let stored = st
                .schema_ever(id)
                .ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))?;
            let deps = resolve_references(&st, &stored.references)?;
            (stored, deps)
        };
        let parsed = ParsedSchema::parse(stored.schema_type, &stored.schema, &deps)
            .map_err(|e| RegistryError::Store(format!("stored schema {id} does not parse: {e}")))?;
        let parsed = Arc::new(parsed);
        self.parsed.write().insert(id, parsed.clone());
        Ok(parsed)
    }

    // ---- reads ---------------------------------------------------------------------------

    pub fn subjects(&self, prefix: &str, deleted: bool, deleted_only: bool) -> Vec<String> {
        self.store.read().subjects(prefix, deleted, deleted_only)
    }

    pub fn versions(
        &self,
        subject: &str,
        deleted: bool,
        deleted_only: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        self.store.read().versions(subject, deleted, deleted_only)
    }

    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        self.store.read().version(subject, spec, deleted)
    }

    /// `GET /schemas/ids/{id}`: 40403 once no version (live or soft-deleted) uses the id.
    pub fn schema_by_id(&self, id: i32) -> Result<Arc<StoredSchema>, RegistryError> {
        self.store
            .read()
            .schema_by_id(id)
            .ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))
    }

    /// (subject, version) pairs using an id; 40403 when none does.
    pub fn versions_for_id(
        &self,
        id: i32,
        deleted: bool,
    ) -> Result<Vec<(String, i32)>, RegistryError> {
        let st = self.store.read();
        if st.schema_by_id(id).is_none() {
            return Err(RegistryError::SchemaNotFound(id.to_string()));
        }
        Ok(st.versions_for_id(id, deleted))
    }

    /// Ids of schemas referencing a version.
    pub fn referenced_by(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<Vec<i32>, RegistryError> {
        let st = self.store.read();
        let sv = st.version(subject, spec, true)?;
        Ok(st.referenced_by(subject, sv.version, false))
    }

    // ---- deletes -------------------------------------------------------------------------

    /// `DELETE /subjects/{subject}/versions/{version}`; answers the version deleted.
    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let _write = self.begin_write().await?;
        let (event, version) = self
            .store
            .read()
            .plan_delete_version(subject, spec, permanent)?;
        self.commit(event).await?;
        Ok(version)
    }

    /// `DELETE /subjects/{subject}`; answers the versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let _write = self.begin_write().await?;
        let (event, versions) = self.store.read().plan_delete_subject(subject, permanent)?;
        self.commit(event).await?;
        Ok(versions)
    }

    // ---- config and mode -----------------------------------------------------------------

    /// The global config (`subject` None) or a subject's; with `default_to_global` a subject
    /// without its own answers the global one, otherwise 40408.
    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Config, RegistryError> {
        let st = self.store.read();
        match subject {
            None => Ok(st.global_config().unwrap_or_default()),
            Some(s) => match st.subject_config(s) {
                Some(c) => Ok(c),
                None if default_to_global => Ok(st.global_config().unwrap_or_default()),
                None => Err(RegistryError::SubjectCompatibilityNotConfigured(
                    s.to_string(),
                )),
            },
        }
    }

    pub async fn set_config(
        &self,
        subject: Option<&str>,
        compatibility: CompatibilityLevel,
        normalize: Option<bool>,
    ) -> Result<(), RegistryError> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let _write = self.begin_write().await?;
        self.commit(RegistryEvent::ConfigSet {
            subject: subject.map(str::to_string),
            compatibility,
            normalize,
        })
        .await
    }

    /// Removes a config, answering the one removed (the global one falls back to BACKWARD).
    pub async fn delete_config(&self, subject: Option<&str>) -> Result<Config, RegistryError> {
        let _write = self.begin_write().await?;
        let previous = {
            let st = self.store.read();
            match subject {
                None => st.global_config().unwrap_or_default(),
                Some(s) => st.subject_config(s).ok_or_else(|| {
                    RegistryError::SubjectCompatibilityNotConfigured(s.to_string())
                })?,
            }
        };
        self.commit(RegistryEvent::ConfigDeleted {
            subject: subject.map(str::to_string),
        })
        .await?;
        Ok(previous)
    }

    pub fn mode(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        let st = self.store.read();
        match subject {
            None => Ok(st.global_mode().unwrap_or_default()),
            Some(s) => match st.subject_mode(s) {
                Some(m) => Ok(m),
                None if default_to_global => Ok(st.global_mode().unwrap_or_default()),
                None => Err(RegistryError::SubjectModeNotConfigured(s.to_string())),
            },
        }
    }

    /// Sets a mode. IMPORT needs the subject (or, globally, the registry) to be empty unless
    /// `force`, as Confluent requires, so imported ids cannot collide with live ones.
    pub async fn set_mode(
        &self,
        subject: Option<&str>,
        mode: Mode,
        force: bool,
    ) -> Result<(), RegistryError> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let _write = self.begin_write().await?;
        if mode == Mode::Import && !force {
            let st = self.store.read();
            let non_empty = match subject {
                Some(s) => st.has_subject(s, true),
                None => !st.subjects("", true, false).is_empty(),
            };
            if non_empty {
                return Err(RegistryError::OperationNotPermitted(
                    "Cannot import since found existing subjects".to_string(),
                ));
            }
        }
        self.commit(RegistryEvent::ModeSet {
            subject: subject.map(str::to_string),
            mode,
        })
        .await
    }

    /// Removes a mode, answering the one removed.
    pub async fn delete_mode(&self, subject: Option<&str>) -> Result<Mode, RegistryError> {
        let _write = self.begin_write().await?;
        let previous = {
            let st = self.store.read();
            match subject {
                None => st.global_mode().unwrap_or_default(),
                Some(s) => st
                    .subject_mode(s)
                    .ok_or_else(|| RegistryError::SubjectModeNotConfigured(s.to_string()))?,
            }
        };
        self.commit(RegistryEvent::ModeDeleted {
            subject: subject.map(str::to_string),
        })
        .await?;
        Ok(previous)
    }

    // ---- broker-side validation ----------------------------------------------------------

    /// Checks one record key or value: the Confluent wire-format header, that the schema id
    /// is registered (a soft-deleted version still counts: its data is still readable), for
    /// PROTOBUF that the message-index path names a message, and with `parse_payload` that
    /// the payload decodes against the schema. Synchronous and lock-light: one read of the
    /// store, one of the parsed-schema cache.
    pub fn validate(&self, bytes: &[u8], parse_payload: bool) -> Result<(), String> {
        let (id, rest) = wire::parse_header(bytes).map_err(|e| e.to_string())?;
        let schema_type = self
            .store
            .read()
            .schema_by_id(id)
            .map(|s| s.schema_type)
            .ok_or_else(|| format!("schema id {id} is not registered"))?;
        if schema_type != SchemaType::Protobuf && !parse_payload {
            return Ok(());
        }
        let parsed = self.parsed(id).map_err(|e| e.to_string())?;
        match (schema_type, parsed.as_ref()) {
            (SchemaType::Protobuf, ParsedSchema::Protobuf(p)) => {
                let (indexes, payload) =
                    wire::parse_message_indexes(rest).map_err(|e| e.to_string())?;
                if p.message_for_indexes(&indexes).is_none() {
                    return Err(format!(
                        "message index {indexes:?} names no message of schema {id}"
                    ));
                }
                if parse_payload {
                    parsed.validate_payload(&indexes, payload)?;
                }
                Ok(())
            }
            _ if parse_payload => parsed.validate_payload(&[], rest),
            _ => Ok(()),
        }
    }
}

/// A record key or value framed with a registered schema id, decoded for reading.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub schema_id: i32,
    pub schema_type: SchemaType,
    /// The payload as JSON, or why it could not be decoded with its schema.
    pub value: Result<serde_json::Value, String>,
}

impl Registry {
    /// Decodes a record key or value framed in Confluent's wire format whose schema id is
    /// registered (a soft-deleted version's id too: its data is still readable). `None` when
    /// the bytes are not framed (shorter than 5 bytes, magic other than 0) or the id is not
    /// registered: such bytes are most likely not framed at all (any value that starts with a
    /// zero byte looks framed), so they are not reported as undecodable.
    pub fn decode(&self, bytes: &[u8]) -> Option<Decoded> {
        let (schema_id, rest) = wire::parse_header(bytes).ok()?;
        let schema_type = self.store.read().schema_by_id(schema_id)?.schema_type;
        let value = self
            .parsed(schema_id)
            .map_err(|e| e.to_string())
            .and_then(|parsed| {
                let (indexes, payload) = if schema_type == SchemaType::Protobuf {
                    wire::parse_message_indexes(rest).map_err(|e| e.to_string())?
                } else {
                    (Vec::new(), rest)
                };
                parsed.decode_json(&indexes, payload)
            });
        Some(Decoded {
            schema_id,
            schema_type,
            value,
        })
    }
}

/// 42208 for names no client could mean.
fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.chars().any(char::is_control) {
        return Err(RegistryError::InvalidSubject(subject.to_string()));
    }
    Ok(())
}

/// The schemas a reference list brings in, transitively, deepest first, each name once.
fn resolve_references(
    st: &Store,
    refs: &[SchemaReference],
) -> Result<Vec<Dependency>, RegistryError> {
    fn visit(
        st: &Store,
        r: &SchemaReference,
        depth: usize,
        seen: &mut HashSet<String>,
        out: &mut Vec<Dependency>,
    ) -> Result<(), RegistryError> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(RegistryError::InvalidSchema(
                "schema references nested too deeply (or cyclic)".to_string(),
            ));
        }
        let spec = if r.version == -1 {
            VersionSpec::Latest
        } else if r.version >= 1 {
            VersionSpec::Number(r.version)
        } else {
            return Err(RegistryError::InvalidSchema(format!(
                "reference '{}' has invalid version {}",
                r.name, r.version
            )));
        };
        let sv = st.version(&r.subject, spec, true).map_err(|_| {
            RegistryError::InvalidSchema(format!(
                "reference '{}' to subject '{}' version {} does not exist",
                r.name, r.subject, r.version
            ))
        })?;
        if seen.contains(&r.name) {
            return Ok(());
        }
        for inner in &sv.schema.references {
            visit(st, inner, depth + 1, seen, out)?;
        }
        if seen.insert(r.name.clone()) {
            out.push(Dependency {
                name: r.name.clone(),
                schema_type: sv.schema.schema_type,
                schema: sv.schema.schema.clone(),
            });
        }
        Ok(())
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in refs {
        visit(st, r, 0, &mut seen, &mut out)?;
    }
    Ok(out)
}
