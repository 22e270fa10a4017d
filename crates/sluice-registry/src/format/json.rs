//! JSON Schema: parsed with serde_json, checked and applied by `jsonschema`; compatibility
//! ports Confluent's `json/diff/SchemaDiff` (Object/Array/String/Number/Enum/Const/Not/
//! CombinedSchemaDiff) with its STRICT set of compatible changes.
//!
//! Confluent diffs everit `Schema` objects; we rebuild the part of everit's model the rules
//! look at from the JSON itself ([`Node`]): a schema object becomes one "facet" per kind of
//! keyword it holds (a `type`, `enum`, `const`, `not`, `allOf`/`anyOf`/`oneOf`), several
//! facets become a synthetic `allOf` as everit does, `"type": [a, b]` becomes an `anyOf`,
//! and `$ref`s are followed (into the schema or into referenced schemas) before comparing.
//! Recursion through `$ref` is cut optimistically (a pair met again compares equal), results
//! are memoised per pair, and a budget stops hostile schemas.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{Map, Value};

use super::{minify_json, sorted_json, Dependency};

type Deps = HashMap<String, Value>;

/// A parsed JSON Schema with its compiled validator.
pub struct JsonSchema {
    value: Value,
    deps: Arc<Deps>,
    validator: Validator,
    canonical: String,
}

impl JsonSchema {
    pub fn parse(text: &str, deps: &[Dependency]) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("Invalid JSON: {e}"))?;
        if !value.is_object() && !value.is_boolean() {
            return Err("a JSON Schema must be an object or a boolean".to_string());
        }
        let mut map = Deps::new();
        for d in deps {
            let v: Value = serde_json::from_str(&d.schema)
                .map_err(|e| format!("referenced schema '{}' is not JSON: {e}", d.name))?;
            map.insert(d.name.clone(), v);
        }
        let deps = Arc::new(map);
        jsonschema::meta::validate(&value).map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        check_in_place_expansion(&value, &deps)?;
        let validator = jsonschema::options()
            .with_retriever(DepRetriever(deps.clone()))
            .build(&value)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        Ok(Self {
            canonical: minify_json(text.trim()),
            value,
            deps,
            validator,
        })
    }

    /// The schema text without insignificant whitespace, key order kept.
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// Keys sorted at every level.
    pub fn normalized(&self) -> String {
        sorted_json(&self.value)
    }

    /// Parses a payload as JSON and validates it against the schema.
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let instance: Value =
            serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
        self.validator
            .validate(&instance)
            .map_err(|e| format!("payload does not match the schema: {e}"))
    }

    /// Parses a payload as JSON (not validated: a reader wants to see what was written even
    /// where it no longer matches).
    pub fn decode_json(&self, payload: &[u8]) -> Result<Value, String> {
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))
    }

    /// Can `self` read data written with `writer`? (Confluent: `SchemaDiff.compare(writer,
    /// self)`, incompatible changes reported.)
    pub fn can_read(&self, writer: &JsonSchema) -> Vec<String> {
        // Hashed: a hostile pair can yield tens of thousands of changes.
        let mut seen = HashSet::new();
        let mut out: Vec<String> = Vec::new();
        for d in self.changes_from(writer) {
            if !d.kind.compatible() {
                let s = d.to_string();
                if seen.insert(s.clone()) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Every change from `original` to `self`.
    pub fn changes_from(&self, original: &JsonSchema) -> Vec<JsonChange> {
        let mut ctx = Ctx::default();
        let o = Doc {
            root: &original.value,
            deps: &original.deps,
        };
        let u = Doc {
            root: &self.value,
            deps: &self.deps,
        };
        ctx.compare_values(&original.value, o, &self.value, u)
    }
}

/// Subschemas a validator may apply at one instance location (through `allOf`/`anyOf`/
/// `oneOf`/`not`/`if`/`then`/`else`/`dependentSchemas` and `$ref`s), for any subschema.
/// `$ref`s make the schema a graph: 40 definitions each using the next twice in an `allOf`
/// are 2^40 subschemas, and validating one record against them never ended.
const MAX_IN_PLACE_SUBSCHEMAS: usize = 10_000;
/// In-place applicators nested (through `$ref`s) deeper than this are refused.
const MAX_IN_PLACE_DEPTH: usize = 64;

/// Refuses schemas whose in-place expansion exceeds [`MAX_IN_PLACE_SUBSCHEMAS`] (counted on
/// the graph, each node once) or [`MAX_IN_PLACE_DEPTH`]. A cycle counts once: the validator
/// stops those itself.
fn check_in_place_expansion(root: &Value, deps: &Deps) -> Result<(), String> {
    struct Count {
        memo: HashMap<usize, usize>,
        on_path: HashSet<usize>,
    }
    impl Count {
        /// Every object below `v` (any of them may be a subschema), each counted.
        fn walk(&mut self, v: &Value, doc: Doc<'_>, depth: usize) -> Result<(), String> {
            if depth > 256 {
                return Ok(()); // serde_json's nesting bound is lower; never reached.
            }
            match v {
                Value::Object(m) => {
                    self.expansion(v, doc, 0)?;
                    for child in m.values() {
                        self.walk(child, doc, depth + 1)?;
                    }
                }
                Value::Array(a) => {
                    for child in a {
                        self.walk(child, doc, depth + 1)?;
                    }
                }
                _ => {}
            }
            Ok(())
        }

        fn expansion(&mut self, v: &Value, doc: Doc<'_>, depth: usize) -> Result<usize, String> {
            let Ok((v, doc)) = resolve(v, doc) else {
                return Ok(1); // The validator reports unresolvable references.
            };
            let key = v as *const Value as usize;
            if let Some(n) = self.memo.get(&key) {
                return Ok(*n);
            }
            if depth > MAX_IN_PLACE_DEPTH {
                return Err(format!(
                    "the schema nests allOf/anyOf/oneOf/not/if/$ref more than {MAX_IN_PLACE_DEPTH} levels deep"
                ));
            }
            if !self.on_path.insert(key) {
                return Ok(1);
            }
            let mut children: Vec<&Value> = Vec::new();
            if let Value::Object(m) = v {
                for kw in ["allOf", "anyOf", "oneOf"] {
                    if let Some(Value::Array(items)) = m.get(kw) {
                        children.extend(items);
                    }
                }
                for kw in ["not", "if", "then", "else"] {
                    children.extend(m.get(kw));
                }
                if let Some(Value::Object(d)) = m.get("dependentSchemas") {
                    children.extend(d.values());
                }
            }
            let mut n: usize = 1;
            for c in children {
                n = n.saturating_add(self.expansion(c, doc, depth + 1)?);
                if n > MAX_IN_PLACE_SUBSCHEMAS {
                    return Err(format!(
                        "the schema applies more than {MAX_IN_PLACE_SUBSCHEMAS} subschemas at one place (allOf/anyOf/oneOf/$ref expand too much)"
                    ));
                }
            }
            self.on_path.remove(&key);
            self.memo.insert(key, n);
            Ok(n)
        }
    }
    let mut count = Count {
        memo: HashMap::new(),
        on_path: HashSet::new(),
    };
    let doc = Doc { root, deps };
    count.walk(root, doc, 0)
}

/// Serves referenced schemas to the validator by reference name (also matched as the last
/// segments of the URI the `$ref` resolved to, and by the referenced schema's `$id`).
struct DepRetriever(Arc<Deps>);

impl Retrieve for DepRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        find_dep(&self.0, s)
            .cloned()
            .ok_or_else(|| format!("no referenced schema named '{s}'").into())
    }
}

fn find_dep<'a>(deps: &'a Deps, target: &str) -> Option<&'a Value> {
    if let Some(v) = deps.get(target) {
        return Some(v);
    }
    let stripped = target
        .strip_prefix("json-schema:///")
        .unwrap_or(target)
        .trim_start_matches('/');
    if let Some(v) = deps.get(stripped) {
        return Some(v);
    }
    deps.iter()
        .find(|(name, v)| {
            target.ends_with(&format!("/{name}"))
                || v.get("$id").and_then(Value::as_str) == Some(target)
        })
        .map(|(_, v)| v)
}

// ---- the diff ------------------------------------------------------------------------------

/// Confluent's JSON `Difference.Type` values this port produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum JsonChangeKind {
    SCHEMA_ADDED,
    SCHEMA_REMOVED,
    TYPE_CHANGED,
    TYPE_EXTENDED,
    TYPE_NARROWED,
    ID_CHANGED,
    TITLE_CHANGED,
    DESCRIPTION_CHANGED,
    DEFAULT_CHANGED,
    MAX_LENGTH_ADDED,
    MAX_LENGTH_REMOVED,
    MAX_LENGTH_INCREASED,
    MAX_LENGTH_DECREASED,
    MIN_LENGTH_ADDED,
    MIN_LENGTH_REMOVED,
    MIN_LENGTH_INCREASED,
    MIN_LENGTH_DECREASED,
    PATTERN_ADDED,
    PATTERN_REMOVED,
    PATTERN_CHANGED,
    MAXIMUM_ADDED,
    MAXIMUM_REMOVED,
    MAXIMUM_INCREASED,
    MAXIMUM_DECREASED,
    MINIMUM_ADDED,
    MINIMUM_REMOVED,
    MINIMUM_INCREASED,
    MINIMUM_DECREASED,
    EXCLUSIVE_MAXIMUM_ADDED,
    EXCLUSIVE_MAXIMUM_REMOVED,
    EXCLUSIVE_MAXIMUM_INCREASED,
    EXCLUSIVE_MAXIMUM_DECREASED,
    EXCLUSIVE_MINIMUM_ADDED,
    EXCLUSIVE_MINIMUM_REMOVED,
    EXCLUSIVE_MINIMUM_INCREASED,
    EXCLUSIVE_MINIMUM_DECREASED,
    MULTIPLE_OF_ADDED,
    MULTIPLE_OF_REMOVED,
    MULTIPLE_OF_EXPANDED,
    MULTIPLE_OF_REDUCED,
    MULTIPLE_OF_CHANGED,
    REQUIRED_ATTRIBUTE_ADDED,
    REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED,
    REQUIRED_ATTRIBUTE_REMOVED,
    DEPENDENCY_ARRAY_ADDED,
    DEPENDENCY_ARRAY_REMOVED,
    DEPENDENCY_ARRAY_EXTENDED,
    DEPENDENCY_ARRAY_NARROWED,
    DEPENDENCY_ARRAY_CHANGED,
    DEPENDENCY_SCHEMA_ADDED,
    DEPENDENCY_SCHEMA_REMOVED,
    MAX_PROPERTIES_ADDED,
    MAX_PROPERTIES_REMOVED,
    MAX_PROPERTIES_INCREASED,
    MAX_PROPERTIES_DECREASED,
    MIN_PROPERTIES_ADDED,
    MIN_PROPERTIES_REMOVED,
    MIN_PROPERTIES_INCREASED,
    MIN_PROPERTIES_DECREASED,
    ADDITIONAL_PROPERTIES_ADDED,
    ADDITIONAL_PROPERTIES_REMOVED,
    ADDITIONAL_PROPERTIES_EXTENDED,
    ADDITIONAL_PROPERTIES_NARROWED,
    PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
    PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
    REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
    REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL,
    OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
    REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
    REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL,
    OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL,
    PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL,
    PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL,
    PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
    PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    MAX_ITEMS_ADDED,
    MAX_ITEMS_REMOVED,
    MAX_ITEMS_INCREASED,
    MAX_ITEMS_DECREASED,
    MIN_ITEMS_ADDED,
    MIN_ITEMS_REMOVED,
    MIN_ITEMS_INCREASED,
    MIN_ITEMS_DECREASED,
    UNIQUE_ITEMS_ADDED,
    UNIQUE_ITEMS_REMOVED,
    ADDITIONAL_ITEMS_ADDED,
    ADDITIONAL_ITEMS_REMOVED,
    ADDITIONAL_ITEMS_EXTENDED,
    ADDITIONAL_ITEMS_NARROWED,
    ITEM_ADDED_TO_OPEN_CONTENT_MODEL,
    ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
    ITEM_ADDED_TO_CLOSED_CONTENT_MODEL,
    ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL,
    ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL,
    ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
    ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL,
    ENUM_ARRAY_EXTENDED,
    ENUM_ARRAY_NARROWED,
    ENUM_ARRAY_CHANGED,
    COMBINED_TYPE_EXTENDED,
    COMBINED_TYPE_CHANGED,
    PRODUCT_TYPE_EXTENDED,
    PRODUCT_TYPE_NARROWED,
    SUM_TYPE_EXTENDED,
    SUM_TYPE_NARROWED,
    COMBINED_TYPE_SUBSCHEMAS_CHANGED,
    NOT_TYPE_EXTENDED,
    NOT_TYPE_NARROWED,
    /// Ours: a `$ref` that resolves nowhere (the validator refuses such schemas first).
    UNRESOLVED_REFERENCE,
    /// Ours: the comparison budget ran out (a hostile or enormous schema).
    TOO_COMPLEX,
}

impl JsonChangeKind {
    /// Confluent's `SchemaDiff.COMPATIBLE_CHANGES_STRICT` (the default policy).
    pub fn compatible(self) -> bool {
        use JsonChangeKind::*;
        matches!(
            self,
            ID_CHANGED
                | DESCRIPTION_CHANGED
                | TITLE_CHANGED
                | DEFAULT_CHANGED
                | SCHEMA_REMOVED
                | TYPE_EXTENDED
                | MAX_LENGTH_INCREASED
                | MAX_LENGTH_REMOVED
                | MIN_LENGTH_DECREASED
                | MIN_LENGTH_REMOVED
                | PATTERN_REMOVED
                | MAXIMUM_INCREASED
                | MAXIMUM_REMOVED
                | MINIMUM_DECREASED
                | MINIMUM_REMOVED
                | EXCLUSIVE_MAXIMUM_INCREASED
                | EXCLUSIVE_MAXIMUM_REMOVED
                | EXCLUSIVE_MINIMUM_DECREASED
                | EXCLUSIVE_MINIMUM_REMOVED
                | MULTIPLE_OF_REDUCED
                | MULTIPLE_OF_REMOVED
                | REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED
                | REQUIRED_ATTRIBUTE_REMOVED
                | DEPENDENCY_ARRAY_NARROWED
                | DEPENDENCY_ARRAY_REMOVED
                | DEPENDENCY_SCHEMA_REMOVED
                | MAX_PROPERTIES_INCREASED
                | MAX_PROPERTIES_REMOVED
                | MIN_PROPERTIES_DECREASED
                | MIN_PROPERTIES_REMOVED
                | ADDITIONAL_PROPERTIES_ADDED
                | ADDITIONAL_PROPERTIES_EXTENDED
                | PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
                | REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL
                | OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
                | PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL
                | PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
                | PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                | PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                | MAX_ITEMS_INCREASED
                | MAX_ITEMS_REMOVED
                | MIN_ITEMS_DECREASED
                | MIN_ITEMS_REMOVED
                | UNIQUE_ITEMS_REMOVED
                | ADDITIONAL_ITEMS_ADDED
                | ADDITIONAL_ITEMS_EXTENDED
                | ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
                | ITEM_ADDED_TO_CLOSED_CONTENT_MODEL
                | ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL
                | ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL
                | ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                | ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                | ENUM_ARRAY_EXTENDED
                | COMBINED_TYPE_EXTENDED
                | PRODUCT_TYPE_NARROWED
                | SUM_TYPE_EXTENDED
                | NOT_TYPE_NARROWED
        )
    }
}

/// One difference at a JSON-pointer-like path (`#/properties/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonChange {
    pub kind: JsonChangeKind,
    pub path: String,
}

impl std::fmt::Display for JsonChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} at #{}", self.kind, self.path)
    }
}

fn change(kind: JsonChangeKind, path: &str) -> JsonChange {
    JsonChange {
        kind,
        path: path.to_string(),
    }
}

fn prefixed(prefix: &str, changes: Vec<JsonChange>) -> impl Iterator<Item = JsonChange> + '_ {
    changes.into_iter().map(move |c| JsonChange {
        kind: c.kind,
        path: format!("{prefix}{}", c.path),
    })
}

fn is_compatible(changes: &[JsonChange]) -> bool {
    changes.iter().all(|c| c.kind.compatible())
}

/// Where `$ref`s resolve: the document a schema lives in, and the referenced schemas.
#[derive(Clone, Copy)]
struct Doc<'a> {
    root: &'a Value,
    deps: &'a Deps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

/// The everit schema class a facet stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Facet {
    Empty,
    False,
    Object,
    Array,
    String,
    Number { integer: bool },
    Boolean,
    Null,
    Enum,
    Const,
    Not,
    Combined(Criterion),
}

impl Facet {
    fn same_class(self, other: Facet) -> bool {
        match (self, other) {
            (Facet::Number { .. }, Facet::Number { .. }) => true,
            (Facet::Combined(_), Facet::Combined(_)) => true,
            (a, b) => a == b,
        }
    }
}

#[derive(Clone)]
struct Node<'a> {
    raw: &'a Value,
    doc: Doc<'a>,
    facet: Facet,
    /// Subschemas of a combined facet.
    subs: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    fn obj(&self) -> Option<&'a Map<String, Value>> {
        self.raw.as_object()
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj().and_then(|o| o.get(key))
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }
}

const OBJECT_KEYWORDS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
];
const ARRAY_KEYWORDS: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
];
const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYWORDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Upper bound on value pairs compared in one check; a real schema stays far below.
const BUDGET: usize = 50_000;
/// `$ref` hops followed before giving up.
const MAX_REF_HOPS: usize = 32;
/// Schemas nested (through properties, items, `$ref`s...) deeper than this are not compared.
const MAX_COMPARE_DEPTH: usize = 128;
/// `allOf`/`anyOf`/`oneOf` nested (through `$ref`s) deeper than this are not compared.
const MAX_COMBINATOR_DEPTH: usize = 32;

/// Why a schema could not be turned into a [`Node`].
enum Refused {
    /// A `$ref` resolves nowhere.
    Unresolved,
    /// Combinators nested too deeply, cyclic, or expanding past the budget.
    TooComplex,
}

#[derive(Default)]
struct Ctx {
    memo: HashMap<(usize, usize), Vec<JsonChange>>,
    in_progress: HashSet<(usize, usize)>,
    spent: usize,
    /// Nested `compare_values` calls: `$ref`s to ever other definitions nest without bound
    /// in a flat document, and the registry runs on 2 MiB worker stacks.
    depth: usize,
}

impl Ctx {
    /// Confluent's `SchemaDiff.compare` on two raw schemas.
    fn compare_values<'a>(
        &mut self,
        o: &'a Value,
        od: Doc<'a>,
        u: &'a Value,
        ud: Doc<'a>,
    ) -> Vec<JsonChange> {
        let (o, od) = match resolve(o, od) {
            Ok(x) => x,
            Err(_) => return vec![change(JsonChangeKind::UNRESOLVED_REFERENCE, "")],
        };
        let (u, ud) = match resolve(u, ud) {
            Ok(x) => x,
            Err(_) => return vec![change(JsonChangeKind::UNRESOLVED_REFERENCE, "")],
        };
        let key = (o as *const Value as usize, u as *const Value as usize);
        if let Some(done) = self.memo.get(&key) {
            return done.clone();
        }
        if !self.in_progress.insert(key) {
            return Vec::new();
        }
        self.spent += 1;
        self.depth += 1;
        let out = if self.spent > BUDGET || self.depth > MAX_COMPARE_DEPTH {
            vec![change(JsonChangeKind::TOO_COMPLEX, "")]
        } else {
            let built = self
                .build(o, od, 0)
                .and_then(|on| Ok((on, self.build(u, ud, 0)?)));
            match built {
                Ok((on, un)) => self.compare_nodes(&on, &un),
                Err(Refused::TooComplex) => vec![change(JsonChangeKind::TOO_COMPLEX, "")],
                Err(Refused::Unresolved) => {
                    vec![change(JsonChangeKind::UNRESOLVED_REFERENCE, "")]
                }
            }
        };
        self.depth -= 1;
        self.in_progress.remove(&key);
        self.memo.insert(key, out.clone());
        out
    }

    /// Builds the node for an already-resolved raw schema.
    ///
    /// Combinator subschemas are built eagerly, following their `$ref`s, so the recursion is
    /// bounded twice: in depth (a `$ref` cycle through combinators alone, `{"allOf":[{"$ref":
    /// "#"}]}`, never reaches a leaf; a long chain would exhaust a 2 MiB worker stack) and in
    /// the nodes built, charged to the comparison budget (`$ref`s make a DAG that can expand
    /// to exponentially many nodes).
    fn build<'a>(
        &mut self,
        raw: &'a Value,
        doc: Doc<'a>,
        depth: usize,
    ) -> Result<Node<'a>, Refused> {
        let leaf = |facet| Node {
            raw,
            doc,
            facet,
            subs: Vec::new(),
        };
        let obj = match raw {
            Value::Bool(true) => return Ok(leaf(Facet::Empty)),
            Value::Bool(false) => return Ok(leaf(Facet::False)),
            Value::Object(o) => o,
            _ => return Ok(leaf(Facet::Empty)),
        };
        let typed = |t: &str| -> Option<Facet> {
            Some(match t {
                "object" => Facet::Object,
                "array" => Facet::Array,
                "string" => Facet::String,
                "number" => Facet::Number { integer: false },
                "integer" => Facet::Number { integer: true },
                "boolean" => Facet::Boolean,
                "null" => Facet::Null,
                _ => return None,
            })
        };
        let mut facets = Vec::new();
        match obj.get("type") {
            Some(Value::String(t)) => {
                if let Some(f) = typed(t) {
                    facets.push(leaf(f));
                }
            }
            Some(Value::Array(ts)) => {
                let subs: Vec<Node> = ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(typed)
                    .map(leaf)
                    .collect();
                if subs.len() == 1 {
                    facets.extend(subs);
                } else if !subs.is_empty() {
                    facets.push(Node {
                        raw,
                        doc,
                        facet: Facet::Combined(Criterion::Any),
                        subs,
                    });
                }
            }
            _ => {
                let has = |kws: &[&str]| kws.iter().any(|k| obj.contains_key(*k));
                if has(OBJECT_KEYWORDS) {
                    facets.push(leaf(Facet::Object));
                }
                if has(ARRAY_KEYWORDS) {
                    facets.push(leaf(Facet::Array));
                }
                if has(STRING_KEYWORDS) {
                    facets.push(leaf(Facet::String));
                }
                if has(NUMBER_KEYWORDS) {
                    facets.push(leaf(Facet::Number { integer: false }));
                }
            }
        }
        if obj.contains_key("enum") {
            facets.push(leaf(Facet::Enum));
        }
        if obj.contains_key("const") {
            facets.push(leaf(Facet::Const));
        }
        if obj.contains_key("not") {
            facets.push(leaf(Facet::Not));
        }
        for (kw, c) in [
            ("allOf", Criterion::All),
            ("anyOf", Criterion::Any),
            ("oneOf", Criterion::One),
        ] {
            if let Some(Value::Array(items)) = obj.get(kw) {
                if depth >= MAX_COMBINATOR_DEPTH {
                    return Err(Refused::TooComplex);
                }
                self.spent = self.spent.saturating_add(items.len());
                if self.spent > BUDGET {
                    return Err(Refused::TooComplex);
                }
                let mut subs = Vec::with_capacity(items.len());
                for item in items {
                    let (v, d) = resolve(item, doc).map_err(|_| Refused::Unresolved)?;
                    subs.push(self.build(v, d, depth + 1)?);
                }
                facets.push(Node {
                    raw,
                    doc,
                    facet: Facet::Combined(c),
                    subs,
                });
            }
        }
        Ok(match facets.len() {
            0 => leaf(Facet::Empty),
            1 => facets.remove(0),
            _ => Node {
                raw,
                doc,
                facet: Facet::Combined(Criterion::All),
                subs: facets,
            },
        })
    }

    fn compare_opt<'a>(
        &mut self,
        o: Option<&'a Value>,
        od: Doc<'a>,
        u: Option<&'a Value>,
        ud: Doc<'a>,
    ) -> Vec<JsonChange> {
        match (o, u) {
            (None, None) => Vec::new(),
            (None, Some(_)) => vec![change(JsonChangeKind::SCHEMA_ADDED, "")],
            (Some(_), None) => vec![change(JsonChangeKind::SCHEMA_REMOVED, "")],
            (Some(o), Some(u)) => self.compare_values(o, od, u, ud),
        }
    }

    /// `SchemaDiff.compareTypes`.
    fn compare_nodes<'a>(&mut self, o: &Node<'a>, u: &Node<'a>) -> Vec<JsonChange> {
        use JsonChangeKind::*;
        self.spent += 1;
        if self.spent > BUDGET {
            return vec![change(TOO_COMPLEX, "")];
        }
        let o_comb = matches!(o.facet, Facet::Combined(_));
        let u_comb = matches!(u.facet, Facet::Combined(_));
        if !o_comb && u_comb {
            if u.subs.len() == 1 {
                let sub = self.compare_nodes(o, &u.subs[0]);
                if is_compatible(&sub) {
                    return sub;
                }
            } else if matches!(u.facet, Facet::Combined(Criterion::Any | Criterion::One)) {
                for s in &u.subs {
                    let mut sub = self.compare_nodes(o, s);
                    if is_compatible(&sub) {
                        sub.push(change(SUM_TYPE_EXTENDED, ""));
                        return sub;
                    }
                }
            }
        } else if o_comb && !u_comb {
            if o.subs.len() == 1 {
                let sub = self.compare_nodes(&o.subs[0], u);
                if is_compatible(&sub) {
                    return sub;
                }
            } else if o.facet == Facet::Combined(Criterion::All) {
                for s in &o.subs {
                    let mut sub = self.compare_nodes(s, u);
                    if is_compatible(&sub) {
                        sub.push(change(PRODUCT_TYPE_NARROWED, ""));
                        return sub;
                    }
                }
            }
        }
        if !o.facet.same_class(u.facet) {
            if o.facet == Facet::False || u.facet == Facet::Empty {
                return Vec::new();
            }
            let bytes = |n: &Node| n.get("connect.type").and_then(Value::as_str) == Some("bytes");
            if bytes(o) && bytes(u) {
                return Vec::new();
            }
            return vec![change(TYPE_CHANGED, "")];
        }
        let mut out = Vec::new();
        for (key, kind) in [
            ("$id", ID_CHANGED),
            ("title", TITLE_CHANGED),
            ("description", DESCRIPTION_CHANGED),
            ("default", DEFAULT_CHANGED),
        ] {
            if o.get(key) != u.get(key) {
                out.push(change(kind, ""));
            }
        }
        match o.facet {
            Facet::String => self.compare_string(o, u, &mut out),
            Facet::Number { .. } => self.compare_number(o, u, &mut out),
            Facet::Const if o.get("const") != u.get("const") => {
                out.push(change(ENUM_ARRAY_CHANGED, "/const"));
            }
            Facet::Enum => compare_enum(o, u, &mut out),
            Facet::Combined(_) => self.compare_combined(o, u, &mut out),
            Facet::Not => {
                // A narrower `not` accepts more: compare the update's `not` to the original's.
                let sub = self.compare_opt(u.get("not"), u.doc, o.get("not"), o.doc);
                out.push(change(
                    if is_compatible(&sub) {
                        NOT_TYPE_NARROWED
                    } else {
                        NOT_TYPE_EXTENDED
                    },
                    "/not",
                ));
            }
            Facet::Object => self.compare_object(o, u, &mut out),
            Facet::Array => self.compare_array(o, u, &mut out),
            _ => {}
        }
        out
    }

    fn compare_string(&mut self, o: &Node, u: &Node, out: &mut Vec<JsonChange>) {
        use JsonChangeKind::*;
        bound(
            out,
            "/maxLength",
            o.num("maxLength"),
            u.num("maxLength"),
            [
                MAX_LENGTH_ADDED,
                MAX_LENGTH_REMOVED,
                MAX_LENGTH_INCREASED,
                MAX_LENGTH_DECREASED,
            ],
        );
        bound(
            out,
            "/minLength",
            o.num("minLength"),
            u.num("minLength"),
            [
                MIN_LENGTH_ADDED,
                MIN_LENGTH_REMOVED,
                MIN_LENGTH_INCREASED,
                MIN_LENGTH_DECREASED,
            ],
        );
        match (o.get("pattern"), u.get("pattern")) {
            (None, Some(_)) => out.push(change(PATTERN_ADDED, "/pattern")),
            (Some(_), None) => out.push(change(PATTERN_REMOVED, "/pattern")),
            (Some(a), Some(b)) if a != b => out.push(change(PATTERN_CHANGED, "/pattern")),
            _ => {}
        }
    }

    fn compare_number(&mut self, o: &Node, u: &Node, out: &mut Vec<JsonChange>) {
        use JsonChangeKind::*;
        bound(
            out,
            "/maximum",
            o.num("maximum"),
            u.num("maximum"),
            [
                MAXIMUM_ADDED,
                MAXIMUM_REMOVED,
                MAXIMUM_INCREASED,
                MAXIMUM_DECREASED,
            ],
        );
        bound(
            out,
            "/minimum",
            o.num("minimum"),
            u.num("minimum"),
            [
                MINIMUM_ADDED,
                MINIMUM_REMOVED,
                MINIMUM_INCREASED,
                MINIMUM_DECREASED,
            ],
        );
        bound(
            out,
            "/exclusiveMaximum",
            o.num("exclusiveMaximum"),
            u.num("exclusiveMaximum"),
            [
                EXCLUSIVE_MAXIMUM_ADDED,
                EXCLUSIVE_MAXIMUM_REMOVED,
                EXCLUSIVE_MAXIMUM_INCREASED,
                EXCLUSIVE_MAXIMUM_DECREASED,
            ],
        );
        bound(
            out,
            "/exclusiveMinimum",
            o.num("exclusiveMinimum"),
            u.num("exclusiveMinimum"),
            [
                EXCLUSIVE_MINIMUM_ADDED,
                EXCLUSIVE_MINIMUM_REMOVED,
                EXCLUSIVE_MINIMUM_INCREASED,
                EXCLUSIVE_MINIMUM_DECREASED,
            ],
        );
        let divides = |a: f64, b: f64| {
            // Is `a` a multiple of `b`?
            b != 0.0 && {
                let q = a / b;
                (q - q.round()).abs() < 1e-9
            }
        };
        match (o.num("multipleOf"), u.num("multipleOf")) {
            (None, Some(_)) => out.push(change(MULTIPLE_OF_ADDED, "/multipleOf")),
            (Some(_), None) => out.push(change(MULTIPLE_OF_REMOVED, "/multipleOf")),
            (Some(a), Some(b)) if a != b => {
                if divides(b, a) {
                    out.push(change(MULTIPLE_OF_EXPANDED, "/multipleOf"))
                } else if divides(a, b) {
                    out.push(change(MULTIPLE_OF_REDUCED, "/multipleOf"))
                } else {
                    out.push(change(MULTIPLE_OF_CHANGED, "/multipleOf"))
                }
            }
            _ => {}
        }
        if let (Facet::Number { integer: oi }, Facet::Number { integer: ui }) = (o.facet, u.facet) {
            if oi && !ui {
                out.push(change(TYPE_EXTENDED, ""));
            } else if !oi && ui {
                out.push(change(TYPE_NARROWED, ""));
            }
        }
    }

    /// `CombinedSchemaDiff`: criteria, sizes, then a maximum matching of compatible pairs.
    fn compare_combined<'a>(&mut self, o: &Node<'a>, u: &Node<'a>, out: &mut Vec<JsonChange>) {
        use JsonChangeKind::*;
        let (Facet::Combined(oc), Facet::Combined(uc)) = (o.facet, u.facet) else {
            return;
        };
        if oc != uc {
            let o1 = o.subs.len() == 1;
            let u1 = u.subs.len() == 1;
            let extended = uc == Criterion::Any
                || (o1 && u1)
                || (o1 && uc == Criterion::One)
                || (u1 && oc == Criterion::All);
            if extended {
                out.push(change(COMBINED_TYPE_EXTENDED, ""));
            } else {
                out.push(change(COMBINED_TYPE_CHANGED, ""));
                return;
            }
        }
        // Every pair below is compared and charged to the budget: refuse a table the budget
        // cannot pay for before it is allocated (thousands of branches on both sides would
        // be a table of millions of cells).
        if self
            .spent
            .saturating_add(o.subs.len().saturating_mul(u.subs.len()))
            > BUDGET
        {
            out.push(change(TOO_COMPLEX, ""));
            return;
        }
        let os = dedup(&o.subs);
        let us = dedup(&u.subs);
        if os.len() < us.len() {
            out.push(change(
                if uc == Criterion::All {
                    PRODUCT_TYPE_EXTENDED
                } else {
                    SUM_TYPE_EXTENDED
                },
                "",
            ));
        } else if os.len() > us.len() {
            out.push(change(
                if matches!(oc, Criterion::Any | Criterion::One) {
                    SUM_TYPE_NARROWED
                } else {
                    PRODUCT_TYPE_NARROWED
                },
                "",
            ));
        }
        let mut edges: Vec<Vec<Option<Vec<JsonChange>>>> = Vec::with_capacity(os.len());
        for on in &os {
            let row = us
                .iter()
                .map(|un| {
                    let sub = self.compare_nodes(on, un);
                    is_compatible(&sub).then_some(sub)
                })
                .collect();
            edges.push(row);
        }
        let matching = max_matching(&edges);
        for (i, j) in &matching {
            if let Some(Some(sub)) = edges.get(*i).and_then(|r| r.get(*j)) {
                let prefix = format!("/{}/{i}", oc.keyword());
                out.extend(prefixed(&prefix, sub.clone()));
            }
        }
        if matching.len() < os.len().min(us.len()) {
            out.push(change(COMBINED_TYPE_SUBSCHEMAS_CHANGED, ""));
        }
    }

    fn compare_object<'a>(&mut self, o: &Node<'a>, u: &Node<'a>, out: &mut Vec<JsonChange>) {
        use JsonChangeKind::*;
        let empty = Map::new();
        let o_props = o
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let u_props = u
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let o_req = required(o);
        let u_req = required(u);

        // required
        for key in o_props.keys() {
            if let Some(us) = u_props.get(key) {
                let (or, ur) = (o_req.contains(key.as_str()), u_req.contains(key.as_str()));
                let p = format!("/required/{key}");
                if or && !ur {
                    out.push(change(REQUIRED_ATTRIBUTE_REMOVED, &p));
                } else if !or && ur {
                    out.push(change(
                        if has_default(us) {
                            REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED
                        } else {
                            REQUIRED_ATTRIBUTE_ADDED
                        },
                        &p,
                    ));
                }
            }
        }

        // properties
        let keys: BTreeSet<&String> = o_props.keys().chain(u_props.keys()).collect();
        for key in keys {
            let p = format!("/properties/{key}");
            match (o_props.get(key), u_props.get(key)) {
                (Some(os), None) => {
                    if is_open_object(u) {
                        out.push(change(PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL, &p));
                    } else if let Some(partial) = partial_object_schema(u, key) {
                        let sub = self.compare_values(os, o.doc, partial, u.doc);
                        let ok = is_compatible(&sub);
                        out.extend(prefixed(&p, sub));
                        out.push(change(
                            if ok {
                                PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                            } else {
                                PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                            },
                            &p,
                        ));
                    } else if *os == Value::Bool(false) {
                        out.push(change(
                            PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
                            &p,
                        ));
                    } else {
                        out.push(change(PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL, &p));
                    }
                }
                (None, Some(us)) => {
                    if is_open_object(o) {
                        if is_empty_schema(us) {
                            out.push(change(
                                PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL,
                                &p,
                            ));
                        } else if u_req.contains(key.as_str()) {
                            out.push(change(
                                if has_default(us) {
                                    REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL
                                } else {
                                    REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL
                                },
                                &p,
                            ));
                        } else {
                            out.push(change(OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, &p));
                        }
                    } else {
                        if let Some(partial) = partial_object_schema(o, key) {
                            let sub = self.compare_values(partial, o.doc, us, u.doc);
                            let ok = is_compatible(&sub);
                            out.extend(prefixed(&p, sub));
                            out.push(change(
                                if ok {
                                    PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                                } else {
                                    PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                                },
                                &p,
                            ));
                        }
                        if u_req.contains(key.as_str()) {
                            out.push(change(
                                if has_default(us) {
                                    REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL
                                } else {
                                    REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
                                },
                                &p,
                            ));
                        } else {
                            out.push(change(OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL, &p));
                        }
                    }
                }
                (Some(os), Some(us)) => {
                    let sub = self.compare_values(os, o.doc, us, u.doc);
                    out.extend(prefixed(&p, sub));
                }
                (None, None) => {}
            }
        }

        // dependencies
        let (o_arr, o_sch) = dependencies(o);
        let (u_arr, u_sch) = dependencies(u);
        let keys: BTreeSet<&String> = o_arr.keys().chain(u_arr.keys()).collect();
        for key in keys {
            let p = format!("/dependencies/{key}");
            match (o_arr.get(key), u_arr.get(key)) {
                (Some(_), None) => out.push(change(DEPENDENCY_ARRAY_REMOVED, &p)),
                (None, Some(_)) => out.push(change(DEPENDENCY_ARRAY_ADDED, &p)),
                (Some(a), Some(b)) if a != b => {
                    if b.is_superset(a) {
                        out.push(change(DEPENDENCY_ARRAY_EXTENDED, &p))
                    } else if a.is_superset(b) {
                        out.push(change(DEPENDENCY_ARRAY_NARROWED, &p))
                    } else {
                        out.push(change(DEPENDENCY_ARRAY_CHANGED, &p))
                    }
                }
                _ => {}
            }
        }
        let keys: BTreeSet<&String> = o_sch.keys().chain(u_sch.keys()).collect();
        for key in keys {
            let p = format!("/dependencies/{key}");
            match (o_sch.get(key), u_sch.get(key)) {
                (Some(_), None) => out.push(change(DEPENDENCY_SCHEMA_REMOVED, &p)),
                (None, Some(_)) => out.push(change(DEPENDENCY_SCHEMA_ADDED, &p)),
                (Some(a), Some(b)) => {
                    let sub = self.compare_values(a, o.doc, b, u.doc);
                    out.extend(prefixed(&p, sub));
                }
                (None, None) => {}
            }
        }

        // additionalProperties
        let p = "/additionalProperties";
        let (o_permits, o_schema) = additional(o.get("additionalProperties"));
        let (u_permits, u_schema) = additional(u.get("additionalProperties"));
        if o_permits != u_permits {
            out.push(change(
                if u_permits {
                    ADDITIONAL_PROPERTIES_ADDED
                } else {
                    ADDITIONAL_PROPERTIES_REMOVED
                },
                p,
            ));
        } else if o_schema.is_none() && u_schema.is_some() {
            out.push(change(ADDITIONAL_PROPERTIES_NARROWED, p));
        } else if o_schema.is_some() && u_schema.is_none() {
            out.push(change(ADDITIONAL_PROPERTIES_EXTENDED, p));
        } else {
            let sub = self.compare_opt(o_schema, o.doc, u_schema, u.doc);
            out.extend(prefixed(p, sub));
        }

        bound(
            out,
            "/maxProperties",
            o.num("maxProperties"),
            u.num("maxProperties"),
            [
                MAX_PROPERTIES_ADDED,
                MAX_PROPERTIES_REMOVED,
                MAX_PROPERTIES_INCREASED,
                MAX_PROPERTIES_DECREASED,
            ],
        );
        bound(
            out,
            "/minProperties",
            o.num("minProperties"),
            u.num("minProperties"),
            [
                MIN_PROPERTIES_ADDED,
                MIN_PROPERTIES_REMOVED,
                MIN_PROPERTIES_INCREASED,
                MIN_PROPERTIES_DECREASED,
            ],
        );
    }

    fn compare_array<'a>(&mut self, o: &Node<'a>, u: &Node<'a>, out: &mut Vec<JsonChange>) {
        use JsonChangeKind::*;
        let o_arr = ArrayModel::of(o);
        let u_arr = ArrayModel::of(u);

        // items (one schema for all)
        let sub = self.compare_opt(o_arr.all_items, o.doc, u_arr.all_items, u.doc);
        out.extend(prefixed("/items", sub));

        // items (tuple)
        let common = o_arr.tuple.len().min(u_arr.tuple.len());
        for i in 0..common {
            let sub = self.compare_values(o_arr.tuple[i], o.doc, u_arr.tuple[i], u.doc);
            out.extend(prefixed(&format!("/items/{i}"), sub));
        }
        for (i, os) in o_arr.tuple.iter().enumerate().skip(common) {
            let p = format!("/items/{i}");
            if u_arr.open() {
                out.push(change(ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL, &p));
            } else if let Some(partial) = u_arr.additional_schema {
                let sub = self.compare_values(os, o.doc, partial, u.doc);
                let ok = is_compatible(&sub);
                out.extend(prefixed(&p, sub));
                out.push(change(
                    if ok {
                        ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                    } else {
                        ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                    },
                    &p,
                ));
            } else if **os == Value::Bool(false) {
                out.push(change(
                    ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL,
                    &p,
                ));
            } else {
                out.push(change(ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL, &p));
            }
        }
        for (i, us) in u_arr.tuple.iter().enumerate().skip(common) {
            let p = format!("/items/{i}");
            if o_arr.open() {
                out.push(change(
                    if is_empty_schema(us) {
                        ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
                    } else {
                        ITEM_ADDED_TO_OPEN_CONTENT_MODEL
                    },
                    &p,
                ));
            } else if let Some(partial) = o_arr.additional_schema {
                let sub = self.compare_values(partial, o.doc, us, u.doc);
                let ok = is_compatible(&sub);
                out.extend(prefixed(&p, sub));
                out.push(change(
                    if ok {
                        ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                    } else {
                        ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
                    },
                    &p,
                ));
            } else {
                out.push(change(ITEM_ADDED_TO_CLOSED_CONTENT_MODEL, &p));
            }
        }

        // additionalItems
        let p = "/additionalItems";
        if o_arr.additional_permitted != u_arr.additional_permitted {
            out.push(change(
                if o_arr.additional_permitted {
                    ADDITIONAL_ITEMS_REMOVED
                } else {
                    ADDITIONAL_ITEMS_ADDED
                },
                p,
            ));
        } else if o_arr.additional_schema.is_none() && u_arr.additional_schema.is_some() {
            out.push(change(ADDITIONAL_ITEMS_NARROWED, p));
        } else if o_arr.additional_schema.is_some() && u_arr.additional_schema.is_none() {
            out.push(change(ADDITIONAL_ITEMS_EXTENDED, p));
        } else {
            let sub = self.compare_opt(
                o_arr.additional_schema,
                o.doc,
                u_arr.additional_schema,
                u.doc,
            );
            out.extend(prefixed(p, sub));
        }

        bound(
            out,
            "/maxItems",
            o.num("maxItems"),
            u.num("maxItems"),
            [
                MAX_ITEMS_ADDED,
                MAX_ITEMS_REMOVED,
                MAX_ITEMS_INCREASED,
                MAX_ITEMS_DECREASED,
            ],
        );
        bound(
            out,
            "/minItems",
            o.num("minItems"),
            u.num("minItems"),
            [
                MIN_ITEMS_ADDED,
                MIN_ITEMS_REMOVED,
                MIN_ITEMS_INCREASED,
                MIN_ITEMS_DECREASED,
            ],
        );
        let unique = |n: &Node| n.get("uniqueItems") == Some(&Value::Bool(true));
        match (unique(o), unique(u)) {
            (true, false) => out.push(change(UNIQUE_ITEMS_REMOVED, "/uniqueItems")),
            (false, true) => out.push(change(UNIQUE_ITEMS_ADDED, "/uniqueItems")),
            _ => {}
        }
    }
}

/// Reports a numeric bound's change as added / removed / increased / decreased.
fn bound(
    out: &mut Vec<JsonChange>,
    path: &str,
    o: Option<f64>,
    u: Option<f64>,
    kinds: [JsonChangeKind; 4],
) {
    let [added, removed, increased, decreased] = kinds;
    match (o, u) {
        (None, Some(_)) => out.push(change(added, path)),
        (Some(_), None) => out.push(change(removed, path)),
        (Some(a), Some(b)) if a < b => out.push(change(increased, path)),
        (Some(a), Some(b)) if a > b => out.push(change(decreased, path)),
        _ => {}
    }
}

fn compare_enum(o: &Node, u: &Node, out: &mut Vec<JsonChange>) {
    use JsonChangeKind::*;
    let values = |n: &Node| -> Vec<Value> {
        n.get("enum")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (values(o), values(u));
    let contains_all = |big: &[Value], small: &[Value]| small.iter().all(|v| big.contains(v));
    if contains_all(&a, &b) && contains_all(&b, &a) {
        return;
    }
    out.push(change(
        if contains_all(&b, &a) {
            ENUM_ARRAY_EXTENDED
        } else if contains_all(&a, &b) {
            ENUM_ARRAY_NARROWED
        } else {
            ENUM_ARRAY_CHANGED
        },
        "/enum",
    ));
}

fn required<'a>(n: &Node<'a>) -> HashSet<&'a str> {
    n.get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has_default(v: &Value) -> bool {
    v.get("default").is_some()
}

fn is_empty_schema(v: &Value) -> bool {
    match v {
        Value::Bool(true) => true,
        Value::Object(m) => m.keys().all(|k| {
            matches!(
                k.as_str(),
                "$id" | "id" | "title" | "description" | "default" | "$comment" | "examples"
            )
        }),
        _ => false,
    }
}

/// (permits additional, schema of additional) for `additionalProperties`/`additionalItems`.
fn additional(v: Option<&Value>) -> (bool, Option<&Value>) {
    match v {
        None | Some(Value::Bool(true)) => (true, None),
        Some(Value::Bool(false)) => (false, None),
        Some(other) => (true, Some(other)),
    }
}

/// An open content model: any property may appear with any value.
fn is_open_object(n: &Node) -> bool {
    let (permits, schema) = additional(n.get("additionalProperties"));
    let no_patterns = n
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    permits && schema.is_none() && no_patterns
}

/// The schema a partially open model gives an undeclared property.
fn partial_object_schema<'a>(n: &Node<'a>, key: &str) -> Option<&'a Value> {
    if let Some(patterns) = n.get("patternProperties").and_then(Value::as_object) {
        for (pattern, schema) in patterns {
            let matched = regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .map(|re| re.is_match(key))
                .unwrap_or(false);
            if matched {
                return Some(schema);
            }
        }
    }
    additional(n.get("additionalProperties")).1
}

type PropertyDeps = HashMap<String, BTreeSet<String>>;

fn dependencies<'a>(n: &Node<'a>) -> (PropertyDeps, HashMap<String, &'a Value>) {
    let mut arrays = PropertyDeps::new();
    let mut schemas = HashMap::new();
    for key in ["dependencies", "dependentRequired", "dependentSchemas"] {
        if let Some(m) = n.get(key).and_then(Value::as_object) {
            for (k, v) in m {
                match v {
                    Value::Array(a) => {
                        arrays.insert(
                            k.clone(),
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                        );
                    }
                    other => {
                        schemas.insert(k.clone(), other);
                    }
                }
            }
        }
    }
    (arrays, schemas)
}

/// An array schema in draft-7 terms (`prefixItems` read as a tuple, `items` then acting as
/// `additionalItems`).
struct ArrayModel<'a> {
    all_items: Option<&'a Value>,
    tuple: Vec<&'a Value>,
    additional_permitted: bool,
    additional_schema: Option<&'a Value>,
}

impl<'a> ArrayModel<'a> {
    fn of(n: &Node<'a>) -> Self {
        let items = n.get("items");
        if let Some(Value::Array(prefix)) = n.get("prefixItems") {
            let (permitted, schema) = additional(items);
            return Self {
                all_items: None,
                tuple: prefix.iter().collect(),
                additional_permitted: permitted,
                additional_schema: schema,
            };
        }
        let (permitted, schema) = additional(n.get("additionalItems"));
        match items {
            Some(Value::Array(tuple)) => Self {
                all_items: None,
                tuple: tuple.iter().collect(),
                additional_permitted: permitted,
                additional_schema: schema,
            },
            other => Self {
                all_items: other,
                tuple: Vec::new(),
                additional_permitted: permitted,
                additional_schema: schema,
            },
        }
    }

    fn open(&self) -> bool {
        self.additional_permitted && self.additional_schema.is_none()
    }
}

/// Follows `$ref`s to the schema they name, switching documents for references to other
/// registered schemas.
fn resolve<'a>(mut v: &'a Value, mut doc: Doc<'a>) -> Result<(&'a Value, Doc<'a>), String> {
    for _ in 0..MAX_REF_HOPS {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Ok((v, doc));
        };
        let (base, fragment) = match r.split_once('#') {
            Some((b, f)) => (b, f),
            None => (r, ""),
        };
        if !base.is_empty() {
            let dep = find_dep(doc.deps, base).ok_or_else(|| format!("unresolved $ref {r}"))?;
            doc = Doc {
                root: dep,
                deps: doc.deps,
            };
        }
        v = pointer(doc.root, fragment).ok_or_else(|| format!("unresolved $ref {r}"))?;
    }
    Err("too many $ref hops".to_string())
}

/// A JSON pointer fragment (`/definitions/a%20b`), percent- and `~`-decoded.
fn pointer<'a>(root: &'a Value, fragment: &str) -> Option<&'a Value> {
    if fragment.is_empty() {
        return Some(root);
    }
    let decoded = percent_decode(fragment);
    if !decoded.starts_with('/') {
        return None;
    }
    root.pointer(&decoded)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Subschemas with duplicates (same JSON, same facet) removed, as Confluent's set does.
/// Pairwise for the usual few branches; hashed (by sorted text) for many, which would be
/// quadratic.
fn dedup<'a>(subs: &[Node<'a>]) -> Vec<Node<'a>> {
    let mut out: Vec<Node<'a>> = Vec::new();
    if subs.len() <= 64 {
        for s in subs {
            let duplicate = out.iter().any(|o| {
                o.facet == s.facet && o.raw == s.raw && o.subs.is_empty() && s.subs.is_empty()
            });
            if !duplicate {
                out.push(s.clone());
            }
        }
        return out;
    }
    let mut seen: HashSet<(Facet, String)> = HashSet::new();
    for s in subs {
        if s.subs.is_empty() && !seen.insert((s.facet, sorted_json(s.raw))) {
            continue;
        }
        out.push(s.clone());
    }
    out
}

/// Maximum bipartite matching (Kuhn's algorithm) over the compatible pairs.
fn max_matching<T>(edges: &[Vec<Option<T>>]) -> Vec<(usize, usize)> {
    let cols = edges.iter().map(Vec::len).max().unwrap_or(0);
    let mut owner: Vec<Option<usize>> = vec![None; cols];
    fn try_row<T>(
        row: usize,
        edges: &[Vec<Option<T>>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (col, e) in edges[row].iter().enumerate() {
            if e.is_some() && !seen[col] {
                seen[col] = true;
                if owner[col].is_none_or(|r| try_row(r, edges, seen, owner)) {
                    owner[col] = Some(row);
                    return true;
                }
            }
        }
        false
    }
    for row in 0..edges.len() {
        let mut seen = vec![false; cols];
        try_row(row, edges, &mut seen, &mut owner);
    }
    owner
        .iter()
        .enumerate()
        .filter_map(|(col, r)| r.map(|r| (r, col)))
        .collect()
}
