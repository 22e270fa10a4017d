//! PROTOBUF: `.proto` text (or, as confluent-kafka's serializers send it, a base64
//! `FileDescriptorProto`) compiled by `protox`, navigated with `prost-reflect`.
//!
//! Compatibility ports Confluent's `protobuf/diff/SchemaDiff` (MessageSchemaDiff,
//! FieldSchemaDiff, EnumSchemaDiff): the old schema is the "original", the reader the
//! "update", every change is a typed [`Change`], and a change outside [`Change::compatible`]
//! makes the pair incompatible. Confluent walks the parsed `.proto` text; we walk resolved
//! descriptors, recovering what the text said where it matters (a field's written label,
//! whether a oneof is real or proto3-`optional`'s synthetic one, map fields as `map<K,V>`
//! rather than nested entry messages).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use base64::Engine;
use prost::Message;
use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, FileDescriptor,
    Kind, MessageDescriptor, Syntax,
};
use prost_types::FileDescriptorProto;
use protox::file::{File, FileResolver, GoogleFileResolver};

use super::Dependency;

/// The name the schema being parsed gets inside the compiler; references keep their own
/// names (their import paths).
const MAIN_FILE: &str = "__sluice_schema__.proto";

/// Nesting deeper than this is refused before the parser sees it.
const MAX_NESTING: usize = 64;

/// A compiled protobuf schema.
pub struct ProtobufSchema {
    text: String,
    file: FileDescriptor,
}

impl ProtobufSchema {
    pub fn parse(text: &str, deps: &[Dependency]) -> Result<Self, String> {
        let text = text.trim();
        let mut files = HashMap::new();
        files.insert(MAIN_FILE.to_string(), open(MAIN_FILE, text)?);
        for d in deps {
            files.insert(d.name.clone(), open(&d.name, d.schema.trim())?);
        }
        let resolver = Resolver {
            files,
            google: GoogleFileResolver::new(),
        };
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true).include_source_info(false);
        compiler.open_file(MAIN_FILE).map_err(|e| e.to_string())?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(MAIN_FILE)
            .ok_or_else(|| "compiled schema is missing".to_string())?;
        Ok(Self {
            text: text.to_string(),
            file,
        })
    }

    /// The schema as submitted (trimmed). Text is kept as written so users read back what
    /// they wrote; a base64 descriptor is kept as sent.
    pub fn canonical(&self) -> String {
        self.text.clone()
    }

    /// Same as the canonical text: we do not re-print `.proto` files (Confluent does).
    pub fn normalized(&self) -> String {
        self.text.clone()
    }

    /// The schema as base64 `FileDescriptorProto`, what `?format=serialized` answers and
    /// confluent-kafka's Protobuf deserializer asks for.
    pub fn serialized(&self) -> String {
        let mut proto: FileDescriptorProto = self.file.file_descriptor_proto().clone();
        proto.source_code_info = None;
        base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec())
    }

    /// The message a wire-format index path names: `[0]` the first top-level message,
    /// `[1, 0]` the first nested message of the second. Map entries are not counted (they
    /// are not messages in `.proto` text, which is how Confluent counts).
    pub fn message_for_indexes(&self, indexes: &[i32]) -> Option<MessageDescriptor> {
        let (first, rest) = indexes.split_first()?;
        let mut msg = self.file.messages().nth(usize::try_from(*first).ok()?)?;
        for i in rest {
            let next = msg
                .child_messages()
                .filter(|m| !m.is_map_entry())
                .nth(usize::try_from(*i).ok()?)?;
            msg = next;
        }
        Some(msg)
    }

    /// Decodes a payload as the message the indexes name.
    pub fn decode(&self, indexes: &[i32], payload: &[u8]) -> Result<(), String> {
        let desc = self
            .message_for_indexes(indexes)
            .ok_or_else(|| format!("message index {indexes:?} names no message of the schema"))?;
        DynamicMessage::decode(desc.clone(), payload)
            .map(|_| ())
            .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))
    }

    /// Decodes a payload as the message the indexes name, as JSON: protobuf's JSON mapping
    /// (64-bit integers as strings, enums by name, bytes as base64, well-known types their
    /// JSON forms, fields at their default value left out), except that fields keep their
    /// `.proto` names. Defaults stay out so the document grows with the bytes on the wire: an
    /// empty sub-message is two bytes, and showing every field of its type would let a small
    /// record expand without bound. Nesting is bounded by prost's decoder (100 levels).
    pub fn decode_json(
        &self,
        indexes: &[i32],
        payload: &[u8],
    ) -> Result<serde_json::Value, String> {
        let desc = self
            .message_for_indexes(indexes)
            .ok_or_else(|| format!("message index {indexes:?} names no message of the schema"))?;
        let msg = DynamicMessage::decode(desc.clone(), payload)
            .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))?;
        let options = prost_reflect::SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(true);
        msg.serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| format!("{} cannot be shown as JSON: {e}", desc.full_name()))
    }

    /// Can `self` read data written with `writer`? (Confluent: `SchemaDiff.compare(writer,
    /// self)`, incompatible changes reported.)
    pub fn can_read(&self, writer: &ProtobufSchema) -> Vec<String> {
        let mut diff = Diff::default();
        diff.compare_file(&writer.file, &self.file);
        diff.changes
            .into_iter()
            .filter(|c| !c.kind.compatible())
            .map(|c| c.to_string())
            .collect()
    }

    /// Every change from `original` to `self`, compatible ones included (for tests and
    /// verbose answers).
    pub fn changes_from(&self, original: &ProtobufSchema) -> Vec<Change> {
        let mut diff = Diff::default();
        diff.compare_file(&original.file, &self.file);
        diff.changes
    }
}

/// Opens schema text or a base64 descriptor as a compiler input named `name`.
fn open(name: &str, schema: &str) -> Result<File, String> {
    if let Some(mut proto) = decode_descriptor(schema) {
        proto.name = Some(name.to_string());
        return Ok(File::from_file_descriptor_proto(proto));
    }
    check_nesting(schema)?;
    File::from_source(name, schema).map_err(|e| e.to_string())
}

/// A base64 `FileDescriptorProto`, as confluent-kafka's serializers register. `.proto` text
/// always holds characters outside the base64 alphabet (spaces, `;`), so there is no
/// ambiguity.
fn decode_descriptor(schema: &str) -> Option<FileDescriptorProto> {
    if schema.is_empty()
        || !schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
    {
        return None;
    }
    let compact: String = schema.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()?;
    FileDescriptorProto::decode(bytes.as_slice()).ok()
}

/// Refuses brace nesting deep enough to threaten the parser's stack.
fn check_nesting(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' | b'[' | b'(' | b'<' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("schema nested more than {MAX_NESTING} levels"));
                }
            }
            b'}' | b']' | b')' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

struct Resolver {
    files: HashMap<String, File>,
    google: GoogleFileResolver,
}

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(f) => Ok(f.clone()),
            None => self.google.open_file(name),
        }
    }
}

// ---- SchemaDiff ---------------------------------------------------------------------------

/// Confluent's `Difference.Type` for protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ChangeKind {
    PACKAGE_CHANGED,
    MESSAGE_ADDED,
    MESSAGE_REMOVED,
    MESSAGE_MOVED,
    ENUM_ADDED,
    ENUM_REMOVED,
    ENUM_CONST_ADDED,
    ENUM_CONST_CHANGED,
    ENUM_CONST_REMOVED,
    FIELD_ADDED,
    FIELD_REMOVED,
    FIELD_NAME_CHANGED,
    FIELD_KIND_CHANGED,
    FIELD_NAMED_TYPE_CHANGED,
    FIELD_SCALAR_KIND_CHANGED,
    FIELD_NUMERIC_LABEL_CHANGED,
    FIELD_STRING_OR_BYTES_LABEL_CHANGED,
    REQUIRED_FIELD_ADDED,
    REQUIRED_FIELD_REMOVED,
    ONEOF_ADDED,
    ONEOF_REMOVED,
    ONEOF_FIELD_ADDED,
    ONEOF_FIELD_REMOVED,
    ONEOF_FIELD_MOVED_TO_TOP_LEVEL,
    MULTIPLE_FIELDS_MOVED_TO_ONEOF,
    FIELD_MOVED_TO_EXISTING_ONEOF,
}

impl ChangeKind {
    /// Confluent's `SchemaDiff.COMPATIBLE_CHANGES`.
    pub fn compatible(self) -> bool {
        use ChangeKind::*;
        matches!(
            self,
            MESSAGE_ADDED
                | MESSAGE_MOVED
                | ENUM_ADDED
                | ENUM_REMOVED
                | ENUM_CONST_ADDED
                | ENUM_CONST_CHANGED
                | ENUM_CONST_REMOVED
                | FIELD_ADDED
                | FIELD_REMOVED
                | FIELD_NAME_CHANGED
                | FIELD_STRING_OR_BYTES_LABEL_CHANGED
                | ONEOF_ADDED
                | ONEOF_REMOVED
                | ONEOF_FIELD_ADDED
                | ONEOF_FIELD_MOVED_TO_TOP_LEVEL
        )
    }
}

/// One difference, at a path like `#/Outer/Inner/3` (messages by name, fields by number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
    pub detail: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} at {}", self.kind, self.path)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The label a field was written with in `.proto` text (none for proto3 singular fields,
/// oneof members and maps), which is what Confluent compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Optional,
    Required,
    Repeated,
}

fn written_label(f: &FieldDescriptor) -> Option<Label> {
    if f.is_map() || f.containing_oneof().is_some_and(|o| !o.is_synthetic()) {
        return None;
    }
    match f.cardinality() {
        Cardinality::Repeated => Some(Label::Repeated),
        Cardinality::Required => Some(Label::Required),
        Cardinality::Optional => {
            let proto3 = f.parent_file().syntax() == Syntax::Proto3;
            if !proto3 || f.field_descriptor_proto().proto3_optional() {
                Some(Label::Optional)
            } else {
                None
            }
        }
    }
}

/// Confluent's `FieldSchemaDiff.ScalarKind`: groups of scalar types sharing a wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarKind {
    GeneralNumber,
    SignedNumber,
    StringOrBytes,
    Fixed32,
    Fixed64,
    Float,
    Double,
}

/// A field's type as the diff sees it.
#[derive(Clone)]
enum FieldType {
    Scalar(ScalarKind, String),
    Message(MessageDescriptor),
    Map(Box<FieldType>, Box<FieldType>),
}

impl FieldType {
    fn of_kind(kind: Kind) -> FieldType {
        let scalar = |k, n: &str| FieldType::Scalar(k, n.to_string());
        match kind {
            Kind::Int32 => scalar(ScalarKind::GeneralNumber, "int32"),
            Kind::Int64 => scalar(ScalarKind::GeneralNumber, "int64"),
            Kind::Uint32 => scalar(ScalarKind::GeneralNumber, "uint32"),
            Kind::Uint64 => scalar(ScalarKind::GeneralNumber, "uint64"),
            Kind::Bool => scalar(ScalarKind::GeneralNumber, "bool"),
            Kind::Enum(e) => {
                FieldType::Scalar(ScalarKind::GeneralNumber, e.full_name().to_string())
            }
            Kind::Sint32 => scalar(ScalarKind::SignedNumber, "sint32"),
            Kind::Sint64 => scalar(ScalarKind::SignedNumber, "sint64"),
            Kind::String => scalar(ScalarKind::StringOrBytes, "string"),
            Kind::Bytes => scalar(ScalarKind::StringOrBytes, "bytes"),
            Kind::Fixed32 => scalar(ScalarKind::Fixed32, "fixed32"),
            Kind::Sfixed32 => scalar(ScalarKind::Fixed32, "sfixed32"),
            Kind::Fixed64 => scalar(ScalarKind::Fixed64, "fixed64"),
            Kind::Sfixed64 => scalar(ScalarKind::Fixed64, "sfixed64"),
            Kind::Float => scalar(ScalarKind::Float, "float"),
            Kind::Double => scalar(ScalarKind::Double, "double"),
            Kind::Message(m) => FieldType::Message(m),
        }
    }

    fn of_field(f: &FieldDescriptor) -> FieldType {
        if f.is_map() {
            if let Kind::Message(entry) = f.kind() {
                return FieldType::Map(
                    Box::new(FieldType::of_kind(entry.map_entry_key_field().kind())),
                    Box::new(FieldType::of_kind(entry.map_entry_value_field().kind())),
                );
            }
        }
        FieldType::of_kind(f.kind())
    }

    fn kind_name(&self) -> &'static str {
        match self {
            FieldType::Scalar(..) => "scalar",
            FieldType::Message(_) => "message",
            FieldType::Map(..) => "map",
        }
    }

    fn describe(&self) -> String {
        match self {
            FieldType::Scalar(_, n) => n.clone(),
            FieldType::Message(m) => m.full_name().to_string(),
            FieldType::Map(k, v) => format!("map<{}, {}>", k.describe(), v.describe()),
        }
    }
}

#[derive(Default)]
struct Diff {
    changes: Vec<Change>,
    /// Original messages being compared (Confluent's `enterSchema`): meeting one again is
    /// recursion and compares nothing more.
    in_progress: HashSet<String>,
    /// Message-type pairs already compared for a field, and whether they changed
    /// incompatibly. Their changes are reported once (at `#/<type>`, whichever field met
    /// them first): a type used by two fields of a type used by two fields... would
    /// otherwise be compared once per path, 2^depth times.
    compared: HashMap<(String, String), bool>,
}

impl Diff {
    fn add(&mut self, kind: ChangeKind, path: &str, detail: impl Into<String>) {
        self.changes.push(Change {
            kind,
            path: path.to_string(),
            detail: detail.into(),
        });
    }

    fn compare_file(&mut self, original: &FileDescriptor, update: &FileDescriptor) {
        if original.package_name() != update.package_name() {
            self.add(
                ChangeKind::PACKAGE_CHANGED,
                "#/",
                format!(
                    "package changed from '{}' to '{}'",
                    original.package_name(),
                    update.package_name()
                ),
            );
        }
        self.compare_types(
            original.messages().collect(),
            original.enums().collect(),
            update.messages().collect(),
            update.enums().collect(),
            "#",
        );
    }

    fn compare_types(
        &mut self,
        o_msgs: Vec<MessageDescriptor>,
        o_enums: Vec<EnumDescriptor>,
        u_msgs: Vec<MessageDescriptor>,
        u_enums: Vec<EnumDescriptor>,
        path: &str,
    ) {
        let index = |msgs: Vec<MessageDescriptor>| -> BTreeMap<String, (usize, MessageDescriptor)> {
            msgs.into_iter()
                .filter(|m| !m.is_map_entry())
                .enumerate()
                .map(|(i, m)| (m.name().to_string(), (i, m)))
                .collect()
        };
        let o = index(o_msgs);
        let u = index(u_msgs);
        let names: BTreeSet<&String> = o.keys().chain(u.keys()).collect();
        for name in names {
            let p = format!("{path}/{name}");
            match (o.get(name), u.get(name)) {
                (Some(_), None) => self.add(
                    ChangeKind::MESSAGE_REMOVED,
                    &p,
                    format!("message '{name}' was removed"),
                ),
                (None, Some(_)) => self.add(ChangeKind::MESSAGE_ADDED, &p, ""),
                (Some((oi, om)), Some((ui, um))) => {
                    self.compare_message(om, um, &p);
                    if oi != ui {
                        self.add(ChangeKind::MESSAGE_MOVED, &p, "");
                    }
                }
                (None, None) => {}
            }
        }
        let oe: BTreeMap<String, EnumDescriptor> = o_enums
            .into_iter()
            .map(|e| (e.name().to_string(), e))
            .collect();
        let ue: BTreeMap<String, EnumDescriptor> = u_enums
            .into_iter()
            .map(|e| (e.name().to_string(), e))
            .collect();
        let names: BTreeSet<&String> = oe.keys().chain(ue.keys()).collect();
        for name in names {
            let p = format!("{path}/{name}");
            match (oe.get(name), ue.get(name)) {
                (Some(_), None) => self.add(ChangeKind::ENUM_REMOVED, &p, ""),
                (None, Some(_)) => self.add(ChangeKind::ENUM_ADDED, &p, ""),
                (Some(a), Some(b)) => self.compare_enum(a, b, &p),
                (None, None) => {}
            }
        }
    }

    fn compare_enum(&mut self, original: &EnumDescriptor, update: &EnumDescriptor, path: &str) {
        let o: BTreeMap<i32, String> = original
            .values()
            .map(|v| (v.number(), v.name().to_string()))
            .collect();
        let u: BTreeMap<i32, String> = update
            .values()
            .map(|v| (v.number(), v.name().to_string()))
            .collect();
        let tags: BTreeSet<&i32> = o.keys().chain(u.keys()).collect();
        for tag in tags {
            let p = format!("{path}/{tag}");
            match (o.get(tag), u.get(tag)) {
                (Some(_), None) => self.add(ChangeKind::ENUM_CONST_REMOVED, &p, ""),
                (None, Some(_)) => self.add(ChangeKind::ENUM_CONST_ADDED, &p, ""),
                (Some(a), Some(b)) if a != b => self.add(ChangeKind::ENUM_CONST_CHANGED, &p, ""),
                _ => {}
            }
        }
    }

    fn compare_message(
        &mut self,
        original: &MessageDescriptor,
        update: &MessageDescriptor,
        path: &str,
    ) {
        let key = original.full_name().to_string();
        if self.in_progress.insert(key.clone()) {
            self.compare_fields(original, update, path);
            self.compare_types(
                original.child_messages().collect(),
                original.child_enums().collect(),
                update.child_messages().collect(),
                update.child_enums().collect(),
                path,
            );
            self.in_progress.remove(&key);
        }
    }

    fn compare_fields(
        &mut self,
        original: &MessageDescriptor,
        update: &MessageDescriptor,
        path: &str,
    ) {
        struct Fields {
            by_tag: BTreeMap<u32, FieldDescriptor>,
            tag_to_oneof: HashMap<u32, String>,
            oneofs: BTreeMap<String, Vec<u32>>,
        }
        let collect = |m: &MessageDescriptor| {
            let mut f = Fields {
                by_tag: BTreeMap::new(),
                tag_to_oneof: HashMap::new(),
                oneofs: BTreeMap::new(),
            };
            for field in m.fields() {
                f.by_tag.insert(field.number(), field.clone());
                if let Some(o) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
                    f.tag_to_oneof.insert(field.number(), o.name().to_string());
                    f.oneofs
                        .entry(o.name().to_string())
                        .or_default()
                        .push(field.number());
                }
            }
            for o in m.oneofs().filter(|o| !o.is_synthetic()) {
                f.oneofs.entry(o.name().to_string()).or_default();
            }
            f
        };
        let o = collect(original);
        let u = collect(update);

        // Oneofs removed with none of their fields surviving.
        let completely_deleted: HashSet<&String> = o
            .oneofs
            .iter()
            .filter(|(name, tags)| {
                !u.oneofs.contains_key(*name) && !tags.iter().any(|t| u.by_tag.contains_key(t))
            })
            .map(|(name, _)| name)
            .collect();

        // Fields gathered into a oneof from different places.
        for (oneof, tags) in &u.oneofs {
            let mut origins = HashSet::new();
            let mut top_level_moved_in = 0;
            for tag in tags {
                if let Some(prev) = o.tag_to_oneof.get(tag) {
                    origins.insert(format!("oneof:{prev}"));
                } else if o.by_tag.contains_key(tag) {
                    origins.insert(format!("field:{tag}"));
                    top_level_moved_in += 1;
                }
            }
            if origins.len() > 1 {
                let p = format!("{path}/{oneof}");
                if top_level_moved_in > 1 {
                    self.add(
                        ChangeKind::MULTIPLE_FIELDS_MOVED_TO_ONEOF,
                        &p,
                        format!("several existing fields moved into oneof '{oneof}'"),
                    );
                } else {
                    self.add(
                        ChangeKind::FIELD_MOVED_TO_EXISTING_ONEOF,
                        &p,
                        format!("an existing field moved into oneof '{oneof}'"),
                    );
                }
            }
        }

        let oneof_names: BTreeSet<&String> = o.oneofs.keys().chain(u.oneofs.keys()).collect();
        for name in oneof_names {
            let p = format!("{path}/{name}");
            if !u.oneofs.contains_key(name) {
                self.add(ChangeKind::ONEOF_REMOVED, &p, "");
            } else if !o.oneofs.contains_key(name) {
                self.add(ChangeKind::ONEOF_ADDED, &p, "");
            }
        }

        let tags: BTreeSet<&u32> = o.by_tag.keys().chain(u.by_tag.keys()).collect();
        for tag in tags {
            let of = o.by_tag.get(tag);
            let uf = u.by_tag.get(tag);
            let o_oneof = o.tag_to_oneof.get(tag);
            let u_oneof = u.tag_to_oneof.get(tag);
            match (of, uf) {
                (Some(of), None) => {
                    if let Some(oneof) = o_oneof {
                        if !completely_deleted.contains(oneof) {
                            self.add(
                                ChangeKind::ONEOF_FIELD_REMOVED,
                                &format!("{path}/{oneof}/{tag}"),
                                format!("field '{}' removed from oneof '{oneof}'", of.name()),
                            );
                        }
                    } else if written_label(of) == Some(Label::Required) {
                        self.add(
                            ChangeKind::REQUIRED_FIELD_REMOVED,
                            &format!("{path}/{tag}"),
                            format!("required field '{}' was removed", of.name()),
                        );
                    } else {
                        self.add(ChangeKind::FIELD_REMOVED, &format!("{path}/{tag}"), "");
                    }
                }
                (None, Some(uf)) => {
                    if let Some(oneof) = u_oneof {
                        self.add(
                            ChangeKind::ONEOF_FIELD_ADDED,
                            &format!("{path}/{oneof}/{tag}"),
                            "",
                        );
                    } else if written_label(uf) == Some(Label::Required) {
                        self.add(
                            ChangeKind::REQUIRED_FIELD_ADDED,
                            &format!("{path}/{tag}"),
                            format!("required field '{}' was added", uf.name()),
                        );
                    } else {
                        self.add(ChangeKind::FIELD_ADDED, &format!("{path}/{tag}"), "");
                    }
                }
                (Some(of), Some(uf)) => {
                    if o_oneof.is_some() && u_oneof.is_none() {
                        self.add(
                            ChangeKind::ONEOF_FIELD_MOVED_TO_TOP_LEVEL,
                            &format!("{path}/{tag}"),
                            "",
                        );
                    }
                    let p = match u_oneof {
                        Some(oneof) => format!("{path}/{oneof}/{tag}"),
                        None => format!("{path}/{tag}"),
                    };
                    self.compare_field(of, uf, &p);
                }
                (None, None) => {}
            }
        }
    }

    fn compare_field(&mut self, original: &FieldDescriptor, update: &FieldDescriptor, path: &str) {
        if original.name() != update.name() {
            self.add(ChangeKind::FIELD_NAME_CHANGED, path, "");
        }
        self.compare_labels_and_types(
            written_label(original),
            written_label(update),
            &FieldType::of_field(original),
            &FieldType::of_field(update),
            path,
            original.name(),
        );
    }

    fn compare_labels_and_types(
        &mut self,
        o_label: Option<Label>,
        u_label: Option<Label>,
        o_type: &FieldType,
        u_type: &FieldType,
        path: &str,
        field: &str,
    ) {
        match (o_type, u_type) {
            (FieldType::Scalar(ok, _), FieldType::Scalar(uk, _)) => {
                if ok != uk {
                    self.add(
                        ChangeKind::FIELD_SCALAR_KIND_CHANGED,
                        path,
                        format!(
                            "field '{field}' changed type from {} to {}",
                            o_type.describe(),
                            u_type.describe()
                        ),
                    );
                } else if let (Some(ol), Some(ul)) = (o_label, u_label) {
                    if ol != ul {
                        if *ok == ScalarKind::StringOrBytes {
                            self.add(ChangeKind::FIELD_STRING_OR_BYTES_LABEL_CHANGED, path, "");
                        } else {
                            self.add(
                                ChangeKind::FIELD_NUMERIC_LABEL_CHANGED,
                                path,
                                format!("field '{field}' changed label from {ol:?} to {ul:?}"),
                            );
                        }
                    }
                }
            }
            (FieldType::Message(om), FieldType::Message(um)) => {
                self.compare_message_types(om, um, path, field)
            }
            (FieldType::Map(ok, ov), FieldType::Map(uk, uv)) => {
                self.compare_labels_and_types(None, None, ok, uk, path, field);
                self.compare_labels_and_types(None, None, ov, uv, path, field);
            }
            _ => self.add(
                ChangeKind::FIELD_KIND_CHANGED,
                path,
                format!(
                    "field '{field}' changed from {} {} to {} {}",
                    o_type.kind_name(),
                    o_type.describe(),
                    u_type.kind_name(),
                    u_type.describe()
                ),
            ),
        }
    }

    fn compare_message_types(
        &mut self,
        original: &MessageDescriptor,
        update: &MessageDescriptor,
        path: &str,
        field: &str,
    ) {
        let local = |m: &MessageDescriptor| {
            let pkg = m.package_name();
            let full = m.full_name();
            match full.strip_prefix(pkg).and_then(|s| s.strip_prefix('.')) {
                Some(l) if !pkg.is_empty() => l.to_string(),
                _ => full.to_string(),
            }
        };
        if local(original) != local(update) {
            self.add(
                ChangeKind::FIELD_NAMED_TYPE_CHANGED,
                path,
                format!(
                    "field '{field}' changed type from {} to {}",
                    original.full_name(),
                    update.full_name()
                ),
            );
            return;
        }
        // Same local name: compare the message types themselves (Confluent's subcontext).
        let pair = (
            original.full_name().to_string(),
            update.full_name().to_string(),
        );
        let incompatible = match self.compared.get(&pair) {
            Some(incompatible) => *incompatible,
            None => {
                let mut sub = Diff {
                    changes: Vec::new(),
                    in_progress: std::mem::take(&mut self.in_progress),
                    compared: std::mem::take(&mut self.compared),
                };
                sub.compare_message(original, update, &format!("#/{}", local(original)));
                self.in_progress = std::mem::take(&mut sub.in_progress);
                self.compared = std::mem::take(&mut sub.compared);
                let incompatible = sub.changes.iter().any(|c| !c.kind.compatible());
                self.changes.extend(sub.changes);
                // A pair met again while it is still being compared (recursion) compares
                // nothing; only a finished comparison is remembered.
                if !self.in_progress.contains(original.full_name()) {
                    self.compared.insert(pair, incompatible);
                }
                incompatible
            }
        };
        if incompatible {
            self.add(
                ChangeKind::FIELD_NAMED_TYPE_CHANGED,
                path,
                format!(
                    "field '{field}' has type {} that changed incompatibly",
                    update.full_name()
                ),
            );
        }
    }
}
