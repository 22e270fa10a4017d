//! AVRO: parsed by `apache-avro`; compatibility by Avro's schema-resolution rules as Avro
//! Java's `SchemaCompatibility` (which Confluent runs) applies them.
//!
//! Why our own walker rather than `apache_avro::schema_compatibility::SchemaCompatibility`:
//! that checker compares `Schema::Ref`s by name only, so it neither follows references into
//! types defined in another registered schema nor handles a type defined inline in one schema
//! and referenced in the other; and its errors carry no path. The walker below resolves names
//! through both schemas' name tables, reports every incompatibility with its location, and
//! treats what Avro calls partial compatibility (a writer enum symbol the reader lacks without
//! a default, a writer union branch the reader cannot take) as incompatible, as Avro Java and
//! Confluent do. The tests cross-check it against `SchemaCompatibility::can_read`.
//! Logical types are compared by their underlying types, as Avro Java does.

use std::collections::{HashMap, HashSet};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, RecordSchema, UuidSchema,
};
use apache_avro::types::Value;
use apache_avro::Schema;

use super::{minify_json, Dependency};

/// A parsed Avro schema with the named schemas its references brought in.
pub struct AvroSchema {
    schema: Schema,
    deps: Vec<Schema>,
    canonical: String,
}

impl AvroSchema {
    pub fn parse(text: &str, deps: &[Dependency]) -> Result<Self, String> {
        // serde_json bounds nesting (128 levels), so a hostile schema fails here, not later.
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("Invalid JSON: {e}"))?;
        let (schema, deps) = if deps.is_empty() {
            (
                Schema::parse_str(text).map_err(|e| e.to_string())?,
                Vec::new(),
            )
        } else {
            Schema::parse_str_with_list(text, deps.iter().map(|d| d.schema.as_str()))
                .map_err(|e| e.to_string())?
        };
        // Every name must resolve: apache-avro leaves unknown names as `Ref`s on some paths.
        let mut names = HashMap::new();
        for s in std::iter::once(&schema).chain(deps.iter()) {
            collect_names(s, &mut names, 0)?;
        }
        check_refs(&schema, &names, 0)?;
        for s in names.values() {
            if let Some(size) = fixed_size(s) {
                if size > MAX_FIXED_SIZE {
                    return Err(format!("fixed size {size} is larger than {MAX_FIXED_SIZE}"));
                }
            }
        }
        Ok(Self {
            schema,
            deps,
            canonical: minify_json(text.trim()),
        })
    }

    /// The schema text without insignificant whitespace, key order kept.
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// apache-avro's own serialisation: full names, fixed key order, defaults and docs kept.
    pub fn normalized(&self) -> String {
        serde_json::to_string(&self.schema).unwrap_or_else(|_| self.canonical.clone())
    }

    fn names(&self) -> Result<HashMap<String, &Schema>, String> {
        let mut names = HashMap::new();
        for s in std::iter::once(&self.schema).chain(self.deps.iter()) {
            collect_names(s, &mut names, 0)?;
        }
        Ok(names)
    }

    /// Can `self` read data written with `writer`?
    pub fn can_read(&self, writer: &AvroSchema) -> Vec<String> {
        let (r_names, w_names) = match (self.names(), writer.names()) {
            (Ok(r), Ok(w)) => (r, w),
            (Err(e), _) | (_, Err(e)) => return vec![e],
        };
        let mut checker = Checker {
            r_names,
            w_names,
            in_progress: HashSet::new(),
            compatible_pairs: HashSet::new(),
            depth: 0,
            spent: 0,
        };
        checker.check(&self.schema, &writer.schema, "")
    }

    /// Decodes an Avro binary datum (no container header) and requires every byte be used,
    /// and no more.
    pub fn decode(&self, payload: &[u8]) -> Result<(), String> {
        let values = payload.len().saturating_mul(8).saturating_add(65_536);
        self.decode_value(payload, values).map(drop)
    }

    /// [`Self::decode`], returning the datum as JSON (see [`to_json`] for how Avro values
    /// map). Shown values are bounded more tightly than validated ones: at most one per
    /// payload byte plus 4,096, so a block count of zero-byte `null`s cannot turn a small
    /// record into a huge document.
    pub fn decode_json(&self, payload: &[u8]) -> Result<serde_json::Value, String> {
        let values = payload.len().saturating_add(4_096);
        self.decode_value(payload, values).map(to_json)
    }

    fn decode_value(&self, payload: &[u8], values: usize) -> Result<Value, String> {
        // Walk the datum first: apache-avro's decoder is recursive and unbounded (see
        // `Walker`), so only a datum whose shape is known to be sane reaches it.
        let names = self.names()?;
        let mut walker = Walker {
            names: &names,
            rest: payload,
            values,
        };
        walker.skip(&self.schema, 0)?;
        // A length prefix in a record must not make us allocate more than this (first call
        // sets apache-avro's process-wide limit; its default is 512 MiB).
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
        // apache-avro resolves references only to schemas earlier in the list.
        let mut schemata: Vec<&Schema> = self.deps.iter().collect();
        schemata.push(&self.schema);
        let reader = GenericDatumReader::builder(&self.schema)
            .writer_schemata(schemata)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?;
        let mut input = Input {
            rest: payload,
            ran_out: false,
        };
        let decoded: Result<Value, _> = reader.read_value(&mut input);
        let value = decoded.map_err(|e| format!("not valid Avro for the schema: {e}"))?;
        // apache-avro turns a string cut short into a null instead of an error; the reader
        // notices instead.
        if input.ran_out {
            return Err("the Avro datum is truncated".to_string());
        }
        if !input.rest.is_empty() {
            return Err(format!(
                "{} trailing bytes after the Avro datum",
                input.rest.len()
            ));
        }
        Ok(value)
    }
}

/// An Avro value as JSON, for people reading records (the HTTP API's `decode=registry`):
/// records and maps become objects, unions their branch's value (without Avro's JSON-encoding
/// `{"type": value}` wrapper), enums their symbol, bytes, fixed and decimals the base64 of
/// their bytes (a decimal's are its unscaled two's-complement value), logical dates and times
/// their underlying number, UUIDs their text, a duration `{months, days, millis}`, and floats
/// that JSON cannot hold (NaN, infinities) the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
/// Recursion is bounded: only a datum `decode` accepted (at most [`MAX_PAYLOAD_DEPTH`] deep)
/// reaches here.
pub fn to_json(value: Value) -> serde_json::Value {
    use base64::Engine;
    use serde_json::Value as J;
    let b64 = |b: &[u8]| J::String(base64::engine::general_purpose::STANDARD.encode(b));
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(
            || {
                J::String(if f.is_nan() {
                    "NaN".into()
                } else if f > 0.0 {
                    "Infinity".into()
                } else {
                    "-Infinity".into()
                })
            },
            J::Number,
        )
    };
    match value {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => J::from(i),
        Value::Long(l)
        | Value::TimeMicros(l)
        | Value::TimestampMillis(l)
        | Value::TimestampMicros(l)
        | Value::TimestampNanos(l)
        | Value::LocalTimestampMillis(l)
        | Value::LocalTimestampMicros(l)
        | Value::LocalTimestampNanos(l) => J::from(l),
        Value::Float(f) => float(f64::from(f)),
        Value::Double(d) => float(d),
        Value::Bytes(b) | Value::Fixed(_, b) => b64(&b),
        Value::String(s) | Value::Enum(_, s) => J::String(s),
        Value::Union(_, v) => to_json(*v),
        Value::Array(items) => J::Array(items.into_iter().map(to_json).collect()),
        Value::Map(items) => J::Object(items.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        Value::Record(fields) => {
            J::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        Value::Decimal(d) => match <Vec<u8>>::try_from(&d) {
            Ok(bytes) => b64(&bytes),
            Err(e) => J::String(format!("(decimal not shown: {e})")),
        },
        Value::BigDecimal(d) => J::String(d.to_string()),
        Value::Duration(d) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        Value::Uuid(u) => J::String(u.hyphenated().to_string()),
    }
}

/// A payload reader that remembers being asked for bytes it did not have.
struct Input<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl std::io::Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && self.rest.is_empty() {
            self.ran_out = true;
            return Ok(0);
        }
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// Nesting (records, arrays, maps) a validated payload may have. apache-avro decodes
/// recursively with several KiB of stack per level, and a recursive schema (a linked list, a
/// tree) lets a 2 KB payload nest a thousand levels: that overflowed a 2 MiB worker stack and
/// aborted the broker. Protobuf payloads have the same kind of bound (prost: 100 messages).
pub const MAX_PAYLOAD_DEPTH: usize = 128;

/// Walks an Avro binary datum without building it, to bound what apache-avro would do
/// with it: its nesting ([`MAX_PAYLOAD_DEPTH`]), and how many values it holds (`values`,
/// a multiple of its size: a 3-byte block count can otherwise declare 2^60 `null`s or empty
/// records, which take no bytes each but a `Value` each once decoded).
struct Walker<'n, 'a, 'p> {
    names: &'n HashMap<String, &'a Schema>,
    rest: &'p [u8],
    values: usize,
}

impl<'a> Walker<'_, 'a, '_> {
    fn skip(&mut self, s: &'a Schema, depth: usize) -> Result<(), String> {
        self.values = self
            .values
            .checked_sub(1)
            .ok_or("the Avro datum declares more values than its size allows")?;
        let k = kind(s, self.names, 0).ok_or("a named type could not be resolved")?;
        let nested = || {
            if depth >= MAX_PAYLOAD_DEPTH {
                Err(format!(
                    "the Avro datum is nested more than {MAX_PAYLOAD_DEPTH} levels deep"
                ))
            } else {
                Ok(depth + 1)
            }
        };
        match k {
            Kind::Null => {}
            Kind::Boolean => self.take(1).map(drop)?,
            Kind::Int | Kind::Long => self.long().map(drop)?,
            Kind::Float => self.take(4).map(drop)?,
            Kind::Double => self.take(8).map(drop)?,
            Kind::Bytes | Kind::String => {
                let len = self.length()?;
                self.take(len).map(drop)?
            }
            Kind::Fixed(f) => self.take(f.size).map(drop)?,
            Kind::Enum(e) => {
                let i = self.long()?;
                if usize::try_from(i).map_or(true, |i| i >= e.symbols.len()) {
                    return Err(format!("enum index {i} is out of range"));
                }
            }
            Kind::Union(branches) => {
                let i = self.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| format!("union index {i} is out of range"))?;
                // Unions do not nest directly: the branch's own level bounds this one.
                self.skip(branch, depth)?
            }
            Kind::Record(r) => {
                let depth = nested()?;
                for f in &r.fields {
                    self.skip(&f.schema, depth)?;
                }
            }
            Kind::Array(items) => {
                let depth = nested()?;
                while let Some(count) = self.block()? {
                    for _ in 0..count {
                        self.skip(items, depth)?;
                    }
                }
            }
            Kind::Map(values) => {
                let depth = nested()?;
                while let Some(count) = self.block()? {
                    for _ in 0..count {
                        let len = self.length()?;
                        self.take(len)?;
                        self.skip(values, depth)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.rest.len() {
            return Err("the Avro datum is truncated".to_string());
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// A zigzag varint long.
    fn long(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first().ok_or("the Avro datum is truncated")?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err("an Avro varint is longer than 10 bytes".to_string())
    }

    fn length(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("negative length {n}"))
    }

    /// The item count of the next array or map block (a negative count is followed by the
    /// block's size in bytes); None at the end.
    fn block(&mut self) -> Result<Option<u64>, String> {
        let count = self.long()?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            self.long()?;
        }
        Ok(Some(count.unsigned_abs()))
    }
}

/// apache-avro allocates a `fixed` value's size up front: keep sizes sane.
const MAX_FIXED_SIZE: usize = 1 << 20;
/// The largest single string, bytes or collection a validated payload may declare.
const MAX_ALLOCATION: usize = 64 << 20;

fn fixed_size(s: &Schema) -> Option<usize> {
    match s {
        Schema::Fixed(f)
        | Schema::Duration(f)
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => Some(f.size),
        _ => None,
    }
}

/// Deep enough for any real schema; the JSON parser already stops hostile nesting.
const MAX_DEPTH: usize = 256;

/// Full name → definition of every named type (records, enums, fixed) in a schema.
fn collect_names<'a>(
    s: &'a Schema,
    out: &mut HashMap<String, &'a Schema>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("schema nested too deeply".to_string());
    }
    match s {
        Schema::Record(r) => {
            out.insert(r.name.fullname(None), s);
            for f in &r.fields {
                collect_names(&f.schema, out, depth + 1)?;
            }
        }
        Schema::Enum(e) => {
            out.insert(e.name.fullname(None), s);
        }
        Schema::Fixed(f)
        | Schema::Duration(f)
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => {
            out.insert(f.name.fullname(None), s);
        }
        Schema::Array(a) => collect_names(&a.items, out, depth + 1)?,
        Schema::Map(m) => collect_names(&m.types, out, depth + 1)?,
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, out, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_refs(s: &Schema, names: &HashMap<String, &Schema>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("schema nested too deeply".to_string());
    }
    match s {
        Schema::Ref { name } => {
            let full = name.fullname(None);
            if !names.contains_key(&full) {
                return Err(format!("Unknown type: {full}"));
            }
        }
        Schema::Record(r) => {
            for f in &r.fields {
                check_refs(&f.schema, names, depth + 1)?;
            }
        }
        Schema::Array(a) => check_refs(&a.items, names, depth + 1)?,
        Schema::Map(m) => check_refs(&m.types, names, depth + 1)?,
        Schema::Union(u) => {
            for v in u.variants() {
                check_refs(v, names, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A schema reduced to what resolution looks at: logical types become their underlying
/// types, references are followed.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(&'a Schema),
    Map(&'a Schema),
    Union(&'a [Schema]),
    Record(&'a RecordSchema),
    Enum(&'a EnumSchema),
    Fixed(&'a FixedSchema),
}

impl Kind<'_> {
    fn name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Int => "int",
            Kind::Long => "long",
            Kind::Float => "float",
            Kind::Double => "double",
            Kind::Bytes => "bytes",
            Kind::String => "string",
            Kind::Array(_) => "array",
            Kind::Map(_) => "map",
            Kind::Union(_) => "union",
            Kind::Record(_) => "record",
            Kind::Enum(_) => "enum",
            Kind::Fixed(_) => "fixed",
        }
    }

    /// Describes a type for messages: named types by their full name.
    fn describe(&self) -> String {
        match self {
            Kind::Record(r) => format!("record {}", r.name.fullname(None)),
            Kind::Enum(e) => format!("enum {}", e.name.fullname(None)),
            Kind::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
            other => other.name().to_string(),
        }
    }

    fn same_type(&self, other: &Kind<'_>) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

fn kind<'a>(s: &'a Schema, names: &HashMap<String, &'a Schema>, hops: usize) -> Option<Kind<'a>> {
    Some(match s {
        Schema::Null => Kind::Null,
        Schema::Boolean => Kind::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Kind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::Bytes
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        }) => Kind::Bytes,
        Schema::String | Schema::Uuid(UuidSchema::String) => Kind::String,
        Schema::Array(a) => Kind::Array(&a.items),
        Schema::Map(m) => Kind::Map(&m.types),
        Schema::Union(u) => Kind::Union(u.variants()),
        Schema::Record(r) => Kind::Record(r),
        Schema::Enum(e) => Kind::Enum(e),
        Schema::Fixed(f)
        | Schema::Duration(f)
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => Kind::Fixed(f),
        Schema::Ref { name } => {
            if hops > 8 {
                return None;
            }
            return kind(names.get(&name.fullname(None))?, names, hops + 1);
        }
    })
}

struct Checker<'a> {
    r_names: HashMap<String, &'a Schema>,
    w_names: HashMap<String, &'a Schema>,
    /// Named pairs being compared; meeting one again means recursion, assumed compatible
    /// (Avro Java does the same).
    in_progress: HashSet<(String, String)>,
    /// Record pairs (by address) found compatible. A named type can be used any number of
    /// times, so without this a type used twice by a type used twice... is compared once
    /// per path, 2^depth times (Avro Java memoises every pair for the same reason).
    compatible_pairs: HashSet<(usize, usize)>,
    depth: usize,
    /// Schema pairs compared so far; past [`MAX_CHECKS`] the answer is "too complex".
    spent: usize,
}

/// Schema pairs one compatibility check may compare: far above any real schema (memoised
/// compatible pairs cost once), low enough that a hostile pair of schemas whose shared
/// types differ (each difference reported on every path) stays quick.
const MAX_CHECKS: usize = 100_000;

impl<'a> Checker<'a> {
    fn check(&mut self, reader: &'a Schema, writer: &'a Schema, path: &str) -> Vec<String> {
        let (Some(r), Some(w)) = (
            kind(reader, &self.r_names, 0),
            kind(writer, &self.w_names, 0),
        ) else {
            return vec![format!(
                "UNRESOLVED_TYPE at {}: a named type could not be resolved",
                at(path)
            )];
        };
        if self.depth > MAX_DEPTH {
            return vec![format!(
                "TOO_DEEP at {}: schemas nested too deeply to compare",
                at(path)
            )];
        }
        self.spent += 1;
        if self.spent > MAX_CHECKS {
            return vec![format!(
                "TOO_COMPLEX at {}: schemas too complex to compare",
                at(path)
            )];
        }
        let (key, pair) = match (&r, &w) {
            (Kind::Record(rr), Kind::Record(wr)) => {
                let pair = (
                    *rr as *const RecordSchema as usize,
                    *wr as *const RecordSchema as usize,
                );
                if self.compatible_pairs.contains(&pair) {
                    return Vec::new();
                }
                (
                    Some((rr.name.fullname(None), wr.name.fullname(None))),
                    Some(pair),
                )
            }
            _ => (None, None),
        };
        if let Some(k) = &key {
            if !self.in_progress.insert(k.clone()) {
                return Vec::new();
            }
        }
        self.depth += 1;
        let out = self.check_kinds(r, w, path);
        self.depth -= 1;
        if let Some(k) = &key {
            self.in_progress.remove(k);
        }
        if let Some(pair) = pair {
            if out.is_empty() {
                self.compatible_pairs.insert(pair);
            }
        }
        out
    }

    fn check_kinds(&mut self, r: Kind<'a>, w: Kind<'a>, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if r.same_type(&w) {
            match (r, w) {
                (Kind::Array(ri), Kind::Array(wi)) => {
                    out.extend(self.check(ri, wi, &format!("{path}/items")))
                }
                (Kind::Map(rv), Kind::Map(wv)) => {
                    out.extend(self.check(rv, wv, &format!("{path}/values")))
                }
                (Kind::Fixed(rf), Kind::Fixed(wf)) => {
                    if !names_match(&rf.name, rf.aliases.as_deref(), &wf.name) {
                        out.push(name_mismatch(path, &r, &w));
                    }
                    if rf.size != wf.size {
                        out.push(format!(
                            "FIXED_SIZE_MISMATCH at {path}/size: expected {}, found {}",
                            wf.size, rf.size
                        ));
                    }
                }
                (Kind::Enum(re), Kind::Enum(we)) => {
                    if !names_match(&re.name, re.aliases.as_deref(), &we.name) {
                        out.push(name_mismatch(path, &r, &w));
                    }
                    let has_default = re.default.as_ref().is_some_and(|d| re.symbols.contains(d));
                    let missing: Vec<&String> = we
                        .symbols
                        .iter()
                        .filter(|s| !re.symbols.contains(s))
                        .collect();
                    if !missing.is_empty() && !has_default {
                        out.push(format!(
                            "MISSING_ENUM_SYMBOLS at {path}/symbols: reader enum '{}' lacks writer symbols {:?} and has no default",
                            re.name.fullname(None),
                            missing
                        ));
                    }
                }
                (Kind::Record(rr), Kind::Record(wr)) => {
                    if !names_match(&rr.name, rr.aliases.as_deref(), &wr.name) {
                        out.push(name_mismatch(path, &r, &w));
                    }
                    for (i, rf) in rr.fields.iter().enumerate() {
                        let wf = std::iter::once(&rf.name)
                            .chain(rf.aliases.iter())
                            .find_map(|n| wr.fields.iter().find(|wf| &wf.name == n));
                        match wf {
                            Some(wf) => out.extend(self.check(
                                &rf.schema,
                                &wf.schema,
                                &format!("{path}/fields/{i}/type"),
                            )),
                            None if rf.default.is_none() => out.push(format!(
                                "READER_FIELD_MISSING_DEFAULT_VALUE at {path}/fields/{i}: reader field '{}' has no default value and is missing from the writer schema",
                                rf.name
                            )),
                            None => {}
                        }
                    }
                }
                (Kind::Union(rb), Kind::Union(wb)) => {
                    // Every writer branch must resolve against the reader union.
                    for (i, wbranch) in wb.iter().enumerate() {
                        if !self.compatible(rb, wbranch) {
                            let desc = kind(wbranch, &self.w_names, 0)
                                .map(|k| k.describe())
                                .unwrap_or_default();
                            out.push(format!(
                                "MISSING_UNION_BRANCH at {path}/{i}: reader union lacks writer type {desc}"
                            ));
                        }
                    }
                }
                _ => {}
            }
            return out;
        }
        // Types differ.
        if let Kind::Union(wb) = w {
            for (i, wbranch) in wb.iter().enumerate() {
                let sub = self.check_against_kind(r, wbranch, &format!("{path}/{i}"));
                out.extend(sub);
            }
            return out;
        }
        let promotable = matches!(
            (r, w),
            (Kind::Long, Kind::Int)
                | (Kind::Float, Kind::Int | Kind::Long)
                | (Kind::Double, Kind::Int | Kind::Long | Kind::Float)
                | (Kind::Bytes, Kind::String)
                | (Kind::String, Kind::Bytes)
        );
        if promotable {
            return out;
        }
        if let Kind::Union(rb) = r {
            // Some reader branch must take the writer's type.
            for rbranch in rb {
                if self.check_reader_branch(rbranch, w, path).is_empty() {
                    return out;
                }
            }
            out.push(format!(
                "MISSING_UNION_BRANCH at {}: reader union lacks writer type {}",
                at(path),
                w.describe()
            ));
            return out;
        }
        out.push(format!(
            "TYPE_MISMATCH at {}: reader type {} is not compatible with writer type {}",
            at(path),
            r.describe(),
            w.describe()
        ));
        out
    }

    /// Reader (already reduced) against one writer branch.
    fn check_against_kind(&mut self, r: Kind<'a>, writer: &'a Schema, path: &str) -> Vec<String> {
        match kind(writer, &self.w_names, 0) {
            Some(w) => {
                self.depth += 1;
                let out = if self.depth > MAX_DEPTH {
                    vec![format!(
                        "TOO_DEEP at {}: schemas nested too deeply to compare",
                        at(path)
                    )]
                } else {
                    self.check_kinds(r, w, path)
                };
                self.depth -= 1;
                out
            }
            None => vec![format!(
                "UNRESOLVED_TYPE at {}: a named type could not be resolved",
                at(path)
            )],
        }
    }

    fn check_reader_branch(&mut self, reader: &'a Schema, w: Kind<'a>, path: &str) -> Vec<String> {
        match kind(reader, &self.r_names, 0) {
            Some(r) => {
                self.depth += 1;
                let out = if self.depth > MAX_DEPTH {
                    vec!["TOO_DEEP".to_string()]
                } else {
                    self.check_kinds(r, w, path)
                };
                self.depth -= 1;
                out
            }
            None => vec!["UNRESOLVED_TYPE".to_string()],
        }
    }

    /// Can a reader union take this writer schema?
    fn compatible(&mut self, reader_branches: &'a [Schema], writer: &'a Schema) -> bool {
        reader_branches
            .iter()
            .any(|rb| self.check(rb, writer, "").is_empty())
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Avro Java's rule: unqualified names equal, or a reader alias names the writer.
fn names_match(
    reader: &apache_avro::schema::Name,
    reader_aliases: Option<&[apache_avro::schema::Alias]>,
    writer: &apache_avro::schema::Name,
) -> bool {
    if reader.name() == writer.name() {
        return true;
    }
    let writer_full = writer.fullname(None);
    reader_aliases
        .unwrap_or_default()
        .iter()
        .any(|a| a.fullname(reader.namespace()) == writer_full || a.name() == writer.name())
}

fn name_mismatch(path: &str, r: &Kind<'_>, w: &Kind<'_>) -> String {
    format!(
        "NAME_MISMATCH at {path}/name: reader {} does not match writer {}",
        r.describe(),
        w.describe()
    )
}
