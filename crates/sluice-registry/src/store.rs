//! The registry's state as a pure, deterministic state machine of events.
//!
//! Every change is a [`RegistryEvent`], journaled (the broker's `_schemas` log) before
//! [`Store::apply`] runs it, so replaying the journal rebuilds the same state. `apply` does no
//! parsing and never fails: the decisions (which id, which version, which error) are taken
//! before the event is written, by the `plan_*` functions here and by `Registry`. Unknown event
//! types are skipped so an older binary can replay a newer journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::model::{
    CompatibilityLevel, Mode, SchemaReference, SchemaType, StoredSchema, SubjectVersion,
    VersionSpec,
};

/// One change to the registry, as written to the journal (JSON, tagged by `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RegistryEvent {
    /// A new version of `subject`. `id` is either new or the id the same schema already has.
    SchemaRegistered {
        subject: String,
        version: i32,
        id: i32,
        schema_type: SchemaType,
        schema: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<SchemaReference>,
    },
    VersionSoftDeleted {
        subject: String,
        version: i32,
    },
    VersionHardDeleted {
        subject: String,
        version: i32,
    },
    /// Soft-deletes every version of the subject.
    SubjectSoftDeleted {
        subject: String,
    },
    /// Removes every version of the subject, and its config and mode (as Confluent does).
    SubjectHardDeleted {
        subject: String,
    },
    /// Global when `subject` is absent.
    ConfigSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        compatibility: CompatibilityLevel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<bool>,
    },
    ConfigDeleted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    ModeSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        mode: Mode,
    },
    ModeDeleted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// The whole state at once. Replaces everything applied before it, so the journal can
    /// drop what came before a snapshot (the broker keeps `_schemas-0` proportional to the
    /// live state this way).
    Snapshot {
        image: Box<StoreImage>,
    },
    /// An event type this binary does not know; skipped on replay.
    #[serde(other)]
    Unknown,
}

/// The durable form of a whole [`Store`] (the [`RegistryEvent::Snapshot`] event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreImage {
    /// Every schema ever registered, by id (kept after hard deletes: ids are never reused).
    schemas: Vec<ImageSchema>,
    /// The ids that identify their schema text for id assignment (the first id each got).
    key_ids: Vec<i32>,
    subjects: Vec<ImageSubject>,
    max_id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    global_config: Option<ImageConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subject_config: Vec<(String, ImageConfig)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    global_mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subject_mode: Vec<(String, Mode)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ImageSchema {
    id: i32,
    schema_type: SchemaType,
    schema: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    references: Vec<SchemaReference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ImageSubject {
    subject: String,
    /// (version, id, soft-deleted)
    versions: Vec<(i32, i32, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ImageConfig {
    compatibility: CompatibilityLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
}

impl From<Config> for ImageConfig {
    fn from(c: Config) -> Self {
        ImageConfig {
            compatibility: c.compatibility,
            normalize: c.normalize,
        }
    }
}

impl From<ImageConfig> for Config {
    fn from(c: ImageConfig) -> Self {
        Config {
            compatibility: c.compatibility,
            normalize: c.normalize,
        }
    }
}

impl RegistryEvent {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail; an empty object would be skipped on
        // replay, so there is no silent corruption path either way.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("undecodable registry event: {e}"))
    }
}

/// Per-subject (or global) configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    pub compatibility: CompatibilityLevel,
    pub normalize: Option<bool>,
}

/// One registered version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    pub id: i32,
    pub deleted: bool,
}

/// Identity of a schema for id assignment: the same canonical text, type and references get
/// the same id under every subject.
type SchemaKey = (SchemaType, String, Vec<SchemaReference>);

/// The whole registry state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Store {
    /// Every schema ever registered, by id. Kept after hard deletes so an id always means the
    /// same schema and is never handed to another one.
    schemas: BTreeMap<i32, Arc<StoredSchema>>,
    ids_by_key: HashMap<SchemaKey, i32>,
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    /// How many versions (live or soft-deleted) use each id: the per-record check in
    /// `Registry::validate` asks this instead of scanning every subject.
    id_uses: BTreeMap<i32, u32>,
    max_id: i32,
    global_config: Option<Config>,
    subject_config: BTreeMap<String, Config>,
    global_mode: Option<Mode>,
    subject_mode: BTreeMap<String, Mode>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event. Total: events that no longer match the state (a delete of something
    /// already gone) change nothing, so a replay never stops half way.
    pub fn apply(&mut self, event: &RegistryEvent) {
        match event {
            RegistryEvent::SchemaRegistered {
                subject,
                version,
                id,
                schema_type,
                schema,
                references,
            } => {
                let stored = Arc::new(StoredSchema {
                    schema_type: *schema_type,
                    schema: schema.clone(),
                    references: references.clone(),
                });
                self.schemas.entry(*id).or_insert(stored);
                self.ids_by_key
                    .entry((*schema_type, schema.clone(), references.clone()))
                    .or_insert(*id);
                self.max_id = self.max_id.max(*id);
                let previous = self.subjects.entry(subject.clone()).or_default().insert(
                    *version,
                    VersionEntry {
                        id: *id,
                        deleted: false,
                    },
                );
                if let Some(prev) = previous {
                    self.release(prev.id);
                }
                *self.id_uses.entry(*id).or_default() += 1;
            }
            RegistryEvent::VersionSoftDeleted { subject, version } => {
                if let Some(v) = self
                    .subjects
                    .get_mut(subject)
                    .and_then(|vs| vs.get_mut(version))
                {
                    v.deleted = true;
                }
            }
            RegistryEvent::VersionHardDeleted { subject, version } => {
                let mut released = None;
                if let Some(vs) = self.subjects.get_mut(subject) {
                    released = vs.remove(version).map(|v| v.id);
                    if vs.is_empty() {
                        self.subjects.remove(subject);
                    }
                }
                if let Some(id) = released {
                    self.release(id);
                }
            }
            RegistryEvent::SubjectSoftDeleted { subject } => {
                if let Some(vs) = self.subjects.get_mut(subject) {
                    vs.values_mut().for_each(|v| v.deleted = true);
                }
            }
            RegistryEvent::SubjectHardDeleted { subject } => {
                if let Some(vs) = self.subjects.remove(subject) {
                    for v in vs.values() {
                        self.release(v.id);
                    }
                }
                self.subject_config.remove(subject);
                self.subject_mode.remove(subject);
            }
            RegistryEvent::ConfigSet {
                subject,
                compatibility,
                normalize,
            } => {
                let config = Config {
                    compatibility: *compatibility,
                    normalize: *normalize,
                };
                match subject {
                    Some(s) => {
                        self.subject_config.insert(s.clone(), config);
                    }
                    None => self.global_config = Some(config),
                }
            }
            RegistryEvent::ConfigDeleted { subject } => match subject {
                Some(s) => {
                    self.subject_config.remove(s);
                }
                None => self.global_config = None,
            },
            RegistryEvent::ModeSet { subject, mode } => match subject {
                Some(s) => {
                    self.subject_mode.insert(s.clone(), *mode);
                }
                None => self.global_mode = Some(*mode),
            },
            RegistryEvent::ModeDeleted { subject } => match subject {
                Some(s) => {
                    self.subject_mode.remove(s);
                }
                None => self.global_mode = None,
            },
            RegistryEvent::Snapshot { image } => *self = Store::from_image(image),
            RegistryEvent::Unknown => {}
        }
    }

    /// The whole state as one value ([`RegistryEvent::Snapshot`]).
    pub fn image(&self) -> StoreImage {
        StoreImage {
            schemas: self
                .schemas
                .iter()
                .map(|(id, s)| ImageSchema {
                    id: *id,
                    schema_type: s.schema_type,
                    schema: s.schema.clone(),
                    references: s.references.clone(),
                })
                .collect(),
            key_ids: self.ids_by_key.values().copied().collect(),
            subjects: self
                .subjects
                .iter()
                .map(|(subject, vs)| ImageSubject {
                    subject: subject.clone(),
                    versions: vs.iter().map(|(v, e)| (*v, e.id, e.deleted)).collect(),
                })
                .collect(),
            max_id: self.max_id,
            global_config: self.global_config.map(Into::into),
            subject_config: self
                .subject_config
                .iter()
                .map(|(s, c)| (s.clone(), (*c).into()))
                .collect(),
            global_mode: self.global_mode,
            subject_mode: self
                .subject_mode
                .iter()
                .map(|(s, m)| (s.clone(), *m))
                .collect(),
        }
    }

    /// Rebuilds a store from [`Store::image`]; what does not fit (a version naming an id with
    /// no schema, a key id with none) is dropped rather than refused.
    fn from_image(image: &StoreImage) -> Store {
        let mut store = Store::new();
        for s in &image.schemas {
            store.schemas.insert(
                s.id,
                Arc::new(StoredSchema {
                    schema_type: s.schema_type,
                    schema: s.schema.clone(),
                    references: s.references.clone(),
                }),
            );
        }
        for id in &image.key_ids {
            if let Some(s) = store.schemas.get(id) {
                store
                    .ids_by_key
                    .insert((s.schema_type, s.schema.clone(), s.references.clone()), *id);
            }
        }
        for subject in &image.subjects {
            let mut versions = BTreeMap::new();
            for (version, id, deleted) in &subject.versions {
                if !store.schemas.contains_key(id) {
                    continue;
                }
                let entry = VersionEntry {
                    id: *id,
                    deleted: *deleted,
                };
                if let Some(prev) = versions.insert(*version, entry) {
                    store.release(prev.id);
                }
                *store.id_uses.entry(*id).or_default() += 1;
            }
            if !versions.is_empty() {
                store.subjects.insert(subject.subject.clone(), versions);
            }
        }
        store.max_id = image
            .max_id
            .max(store.schemas.keys().next_back().copied().unwrap_or(0));
        store.global_config = image.global_config.map(Into::into);
        store.subject_config = image
            .subject_config
            .iter()
            .map(|(s, c)| (s.clone(), (*c).into()))
            .collect();
        store.global_mode = image.global_mode;
        store.subject_mode = image.subject_mode.iter().cloned().collect();
        store
    }

    fn release(&mut self, id: i32) {
        if let Some(n) = self.id_uses.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.id_uses.remove(&id);
            }
        }
    }

    // ---- reads -------------------------------------------------------------------------

    /// The schema with this id, if any version (live or soft-deleted) still uses it.
    pub fn schema_by_id(&self, id: i32) -> Option<Arc<StoredSchema>> {
        if self.id_in_use(id, true) {
            self.schemas.get(&id).cloned()
        } else {
            None
        }
    }

    /// True when some version uses `id` (soft-deleted ones only when `include_deleted`).
    pub fn id_in_use(&self, id: i32, include_deleted: bool) -> bool {
        if include_deleted {
            return self.id_uses.contains_key(&id);
        }
        self.subjects
            .values()
            .flat_map(|vs| vs.values())
            .any(|v| v.id == id && (include_deleted || !v.deleted))
    }

    /// The id already given to this exact schema, even if every version using it was deleted.
    pub fn id_for(&self, schema: &StoredSchema) -> Option<i32> {
        self.ids_by_key
            .get(&(
                schema.schema_type,
                schema.schema.clone(),
                schema.references.clone(),
            ))
            .copied()
    }

    /// The raw schema table entry for an id, deleted or not (used for IMPORT id checks).
    pub fn schema_ever(&self, id: i32) -> Option<Arc<StoredSchema>> {
        self.schemas.get(&id).cloned()
    }

    pub fn next_id(&self) -> i32 {
        self.max_id.saturating_add(1)
    }

    /// Subjects, sorted. `deleted` includes subjects whose versions are all soft-deleted;
    /// `deleted_only` returns only those.
    pub fn subjects(&self, prefix: &str, deleted: bool, deleted_only: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter(|(_, vs)| {
                let live = vs.values().any(|v| !v.deleted);
                if deleted_only {
                    !live
                } else {
                    live || deleted
                }
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// True when the subject has versions (any, or only live ones).
    pub fn has_subject(&self, subject: &str, include_deleted: bool) -> bool {
        self.subjects
            .get(subject)
            .is_some_and(|vs| vs.values().any(|v| include_deleted || !v.deleted))
    }

    /// The versions of a subject, ascending.
    pub fn versions(
        &self,
        subject: &str,
        deleted: bool,
        deleted_only: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let vs = self
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let out: Vec<i32> = vs
            .iter()
            .filter(|(_, v)| {
                if deleted_only {
                    v.deleted
                } else {
                    deleted || !v.deleted
                }
            })
            .map(|(n, _)| *n)
            .collect();
        if out.is_empty() && !deleted && !deleted_only {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(out)
    }

    /// Every (version, entry) of a subject, ascending, deleted ones included.
    pub fn entries(&self, subject: &str) -> Vec<(i32, VersionEntry)> {
        self.subjects
            .get(subject)
            .map(|vs| vs.iter().map(|(n, v)| (*n, *v)).collect())
            .unwrap_or_default()
    }

    /// Resolves a version selector. `latest` is the newest live version (the newest of all
    /// when `deleted` is set). Confluent's errors: 40401 when the subject has nothing
    /// (visible), 40402 when the version does not exist or is soft-deleted and `deleted` is off.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let vs = self
            .subjects
            .get(subject)
            .filter(|vs| vs.values().any(|v| deleted || !v.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let found = match spec {
            VersionSpec::Latest => vs.iter().rev().find(|(_, v)| deleted || !v.deleted),
            VersionSpec::Number(n) => vs.get_key_value(&n).filter(|(_, v)| deleted || !v.deleted),
        };
        let (n, v) = found.ok_or_else(|| {
            RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".to_string(),
                VersionSpec::Number(n) => n.to_string(),
            })
        })?;
        let schema = self
            .schemas
            .get(&v.id)
            .cloned()
            .ok_or_else(|| RegistryError::Store(format!("schema id {} is missing", v.id)))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: *n,
            id: v.id,
            schema,
            deleted: v.deleted,
        })
    }

    /// (subject, version) pairs using an id, sorted.
    pub fn versions_for_id(&self, id: i32, deleted: bool) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for (subject, vs) in &self.subjects {
            for (n, v) in vs {
                if v.id == id && (deleted || !v.deleted) {
                    out.push((subject.clone(), *n));
                }
            }
        }
        out
    }

    /// Ids of schemas whose references point at (subject, version), sorted.
    pub fn referenced_by(&self, subject: &str, version: i32, include_deleted: bool) -> Vec<i32> {
        let mut ids = BTreeSet::new();
        for vs in self.subjects.values() {
            for v in vs.values() {
                if v.deleted && !include_deleted {
                    continue;
                }
                if let Some(s) = self.schemas.get(&v.id) {
                    if s.references
                        .iter()
                        .any(|r| r.subject == subject && r.version == version)
                    {
                        ids.insert(v.id);
                    }
                }
            }
        }
        ids.into_iter().collect()
    }

    pub fn global_config(&self) -> Option<Config> {
        self.global_config
    }

    pub fn subject_config(&self, subject: &str) -> Option<Config> {
        self.subject_config.get(subject).copied()
    }

    /// The configuration in force for a subject: its own, else the global one, else BACKWARD.
    pub fn effective_config(&self, subject: &str) -> Config {
        self.subject_config(subject)
            .or(self.global_config)
            .unwrap_or_default()
    }

    pub fn global_mode(&self) -> Option<Mode> {
        self.global_mode
    }

    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_mode.get(subject).copied()
    }

    /// The mode in force for a subject: its own, else the global one, else READWRITE.
    pub fn effective_mode(&self, subject: &str) -> Mode {
        self.subject_mode(subject)
            .or(self.global_mode)
            .unwrap_or_default()
    }

    // ---- decisions (pure; return the event to journal) ------------------------------------

    /// Decides a version delete. Confluent's rules: soft delete of a soft-deleted version is
    /// 40406; a permanent delete needs a prior soft delete (40407); a version still referenced
    /// by another schema cannot go (42206).
    pub fn plan_delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<(RegistryEvent, i32), RegistryError> {
        self.check_writable(subject)?;
        if !self.has_subject(subject, true) {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        // `latest` means the newest live version for a soft delete, the newest of all for a
        // permanent one (which must already be soft-deleted). A numbered version is found
        // deleted or not, so the error can say which state it is in.
        let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
        let sv = self.version(subject, spec, include_deleted)?;
        if permanent && !sv.deleted {
            return Err(RegistryError::VersionNotSoftDeleted {
                subject: subject.to_string(),
                version: sv.version,
            });
        }
        if !permanent && sv.deleted {
            return Err(RegistryError::VersionSoftDeleted {
                subject: subject.to_string(),
                version: sv.version,
            });
        }
        let referrers = self.referenced_by(subject, sv.version, permanent);
        if !referrers.is_empty() {
            return Err(RegistryError::ReferenceExists(format!(
                "{{subject={subject},version={}}} (referenced by ids {referrers:?})",
                sv.version
            )));
        }
        let event = if permanent {
            RegistryEvent::VersionHardDeleted {
                subject: subject.to_string(),
                version: sv.version,
            }
        } else {
            RegistryEvent::VersionSoftDeleted {
                subject: subject.to_string(),
                version: sv.version,
            }
        };
        Ok((event, sv.version))
    }

    /// Decides a subject delete; returns the versions it deletes.
    pub fn plan_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(RegistryEvent, Vec<i32>), RegistryError> {
        self.check_writable(subject)?;
        if !self.has_subject(subject, true) {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let live = self.has_subject(subject, false);
        if !permanent && !live {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
        }
        if permanent && live {
            return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
        }
        let versions: Vec<i32> = self
            .entries(subject)
            .into_iter()
            .filter(|(_, v)| permanent || !v.deleted)
            .map(|(n, _)| n)
            .collect();
        for n in &versions {
            let referrers: Vec<i32> = self
                .referenced_by(subject, *n, permanent)
                .into_iter()
                // References inside the subject itself go with it.
                .filter(|id| {
                    !self
                        .versions_for_id(*id, true)
                        .iter()
                        .all(|(s, _)| s == subject)
                })
                .collect();
            if !referrers.is_empty() {
                return Err(RegistryError::ReferenceExists(format!(
                    "{{subject={subject},version={n}}} (referenced by ids {referrers:?})"
                )));
            }
        }
        let event = if permanent {
            RegistryEvent::SubjectHardDeleted {
                subject: subject.to_string(),
            }
        } else {
            RegistryEvent::SubjectSoftDeleted {
                subject: subject.to_string(),
            }
        };
        Ok((event, versions))
    }

    /// 42205 when the subject (or the registry) is read-only.
    pub fn check_writable(&self, subject: &str) -> Result<(), RegistryError> {
        let mode = self.effective_mode(subject);
        if mode.is_read_only() {
            return Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }
}
