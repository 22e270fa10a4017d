//! The ACLs a node holds in memory, indexed for the authorizer's lookups.
//!
//! Per resource type, LITERAL and PREFIXED patterns are kept in two maps ordered by name, and
//! each pattern's bindings by principal. Authorizing a request for resource `name` looks up the
//! literal `name` and `*` directly and finds the PREFIXED patterns that are prefixes of `name`
//! with a backwards walk over the ordered map (below), then only the request's principal and
//! `User:*` within each: the cost grows with the patterns near `name`, not with the table.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use crate::binding::{AclBinding, AclBindingFilter};
use crate::types::{PatternType, ResourceType, WILDCARD_PRINCIPAL, WILDCARD_RESOURCE};

/// The most ACLs a cluster holds. The table does not enforce it: CreateAcls checks
/// `table.len() + new <= MAX_ACLS` before anything is written to the metadata log, so replaying
/// the log never meets a full table.
pub const MAX_ACLS: usize = 100_000;

/// Every ACL of the cluster, as the metadata log built it. Only bindings that pass
/// [`AclBinding::validate`] are held. Cloning is cheap per binding (bindings are shared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclTable {
    types: BTreeMap<ResourceType, TypeIndex>,
    len: usize,
}

/// The patterns of one resource type. No map holds an empty entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TypeIndex {
    literal: BTreeMap<String, PatternAcls>,
    prefixed: BTreeMap<String, PatternAcls>,
}

impl TypeIndex {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.prefixed.is_empty()
    }

    fn map(&self, pattern_type: PatternType) -> Option<&BTreeMap<String, PatternAcls>> {
        match pattern_type {
            PatternType::Literal => Some(&self.literal),
            PatternType::Prefixed => Some(&self.prefixed),
            PatternType::Unknown | PatternType::Any | PatternType::Match => None,
        }
    }

    fn map_mut(&mut self, pattern_type: PatternType) -> Option<&mut BTreeMap<String, PatternAcls>> {
        match pattern_type {
            PatternType::Literal => Some(&mut self.literal),
            PatternType::Prefixed => Some(&mut self.prefixed),
            PatternType::Unknown | PatternType::Any | PatternType::Match => None,
        }
    }
}

/// The bindings of one resource pattern, by principal; never empty while in the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PatternAcls {
    by_principal: BTreeMap<String, BTreeSet<Arc<AclBinding>>>,
}

impl PatternAcls {
    /// Every binding of the pattern, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<AclBinding>> + '_ {
        self.by_principal.values().flatten()
    }

    /// The bindings that name `principal` or `User:*` (the principals Kafka matches a request
    /// against).
    pub(crate) fn for_principal<'s>(
        &'s self,
        principal: &str,
    ) -> impl Iterator<Item = &'s Arc<AclBinding>> + 's {
        let exact = self.by_principal.get(principal);
        let wildcard = if principal == WILDCARD_PRINCIPAL {
            None
        } else {
            self.by_principal.get(WILDCARD_PRINCIPAL)
        };
        exact.into_iter().chain(wildcard).flatten()
    }

    fn matching<'s>(
        &'s self,
        filter: &'s AclBindingFilter,
    ) -> impl Iterator<Item = &'s Arc<AclBinding>> + 's {
        let sets: Box<dyn Iterator<Item = &BTreeSet<Arc<AclBinding>>>> = match &filter.principal {
            Some(principal) => Box::new(self.by_principal.get(principal).into_iter()),
            None => Box::new(self.by_principal.values()),
        };
        sets.flatten().filter(|binding| filter.matches(binding))
    }
}

impl AclTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bindings the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no binding.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a binding; `false` if it was already present, or if it fails
    /// [`AclBinding::validate`] (such a binding is never stored: CreateAcls validates before the
    /// metadata log holds it).
    pub fn add(&mut self, binding: AclBinding) -> bool {
        if binding.validate().is_err() || self.contains(&binding) {
            return false;
        }
        let pattern = &binding.pattern;
        let Some(map) = self
            .types
            .entry(pattern.resource_type)
            .or_default()
            .map_mut(pattern.pattern_type)
        else {
            // validate() admits only LITERAL and PREFIXED.
            return false;
        };
        let inserted = map
            .entry(pattern.name.clone())
            .or_default()
            .by_principal
            .entry(binding.entry.principal.clone())
            .or_default()
            .insert(Arc::new(binding));
        if inserted {
            self.len = self.len.saturating_add(1);
        }
        inserted
    }

    /// Removes a binding; `false` if it was not present.
    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        let pattern = &binding.pattern;
        let Some(index) = self.types.get_mut(&pattern.resource_type) else {
            return false;
        };
        let Some(map) = index.map_mut(pattern.pattern_type) else {
            return false;
        };
        let Some(acls) = map.get_mut(pattern.name.as_str()) else {
            return false;
        };
        let principal = binding.entry.principal.as_str();
        let Some(set) = acls.by_principal.get_mut(principal) else {
            return false;
        };
        if !set.remove(binding) {
            return false;
        }
        if set.is_empty() {
            acls.by_principal.remove(principal);
        }
        if acls.by_principal.is_empty() {
            map.remove(pattern.name.as_str());
        }
        if index.is_empty() {
            self.types.remove(&pattern.resource_type);
        }
        self.len = self.len.saturating_sub(1);
        true
    }

    /// Whether the table holds this binding.
    pub fn contains(&self, binding: &AclBinding) -> bool {
        let pattern = &binding.pattern;
        self.types
            .get(&pattern.resource_type)
            .and_then(|index| index.map(pattern.pattern_type))
            .and_then(|map| map.get(pattern.name.as_str()))
            .and_then(|acls| acls.by_principal.get(binding.entry.principal.as_str()))
            .is_some_and(|set| set.contains(binding))
    }

    /// Drops every binding (before loading a metadata snapshot).
    pub fn clear(&mut self) {
        self.types.clear();
        self.len = 0;
    }

    /// Every binding, in [`AclBinding`]'s order: resource type, pattern type, name, principal,
    /// host, operation, permission.
    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> + '_ {
        self.types
            .values()
            .flat_map(|index| index.literal.values().chain(index.prefixed.values()))
            .flat_map(PatternAcls::iter)
            .map(|binding| &**binding)
    }

    /// The bindings `filter` selects (DescribeAcls, and DeleteAcls before it removes them), in
    /// [`iter`](Self::iter)'s order. Exactly `iter().filter(|b| filter.matches(b))`, found
    /// through the index when the filter names a resource type, a name or a principal. The
    /// caller checks [`AclBindingFilter::validate`] first; an UNKNOWN field selects nothing.
    pub fn matching(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let indexes: Box<dyn Iterator<Item = &TypeIndex>> = match filter.resource_type {
            ResourceType::Any => Box::new(self.types.values()),
            resource_type => Box::new(self.types.get(&resource_type).into_iter()),
        };
        let mut patterns: Vec<&PatternAcls> = Vec::new();
        for index in indexes {
            match (&filter.name, filter.pattern_type) {
                (_, PatternType::Unknown) => {}
                (None, PatternType::Any | PatternType::Match) => {
                    patterns.extend(index.literal.values());
                    patterns.extend(index.prefixed.values());
                }
                (None, pattern_type) => {
                    if let Some(map) = index.map(pattern_type) {
                        patterns.extend(map.values());
                    }
                }
                (Some(name), PatternType::Any) => {
                    patterns.extend(index.literal.get(name.as_str()));
                    patterns.extend(index.prefixed.get(name.as_str()));
                }
                (Some(name), PatternType::Match) => {
                    let _ = index.for_each_applicable::<()>(name, |acls| {
                        patterns.push(acls);
                        ControlFlow::Continue(())
                    });
                }
                (Some(name), pattern_type) => {
                    if let Some(map) = index.map(pattern_type) {
                        patterns.extend(map.get(name.as_str()));
                    }
                }
            }
        }
        let mut found: Vec<&Arc<AclBinding>> = patterns
            .into_iter()
            .flat_map(|acls| acls.matching(filter))
            .collect();
        found.sort();
        found.dedup();
        found
            .into_iter()
            .map(|binding| (**binding).clone())
            .collect()
    }

    /// Calls `visit` with the bindings of every pattern that applies to the resource
    /// `(resource_type, name)`: LITERAL `name`, LITERAL `*`, and each PREFIXED pattern whose name
    /// is a prefix of `name`. Stops at the first `Break`.
    pub(crate) fn for_each_applicable<'s, B>(
        &'s self,
        resource_type: ResourceType,
        name: &str,
        visit: impl FnMut(&'s PatternAcls) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        match self.types.get(&resource_type) {
            Some(index) => index.for_each_applicable(name, visit),
            None => ControlFlow::Continue(()),
        }
    }

    /// Every pattern of `resource_type` with its bindings (for `authorize_any`).
    pub(crate) fn patterns_of_type(
        &self,
        resource_type: ResourceType,
    ) -> impl Iterator<Item = (PatternType, &str, &PatternAcls)> + '_ {
        self.types
            .get(&resource_type)
            .into_iter()
            .flat_map(|index| {
                let literal = index
                    .literal
                    .iter()
                    .map(|(name, acls)| (PatternType::Literal, name.as_str(), acls));
                let prefixed = index
                    .prefixed
                    .iter()
                    .map(|(name, acls)| (PatternType::Prefixed, name.as_str(), acls));
                literal.chain(prefixed)
            })
    }
}

impl TypeIndex {
    fn for_each_applicable<'s, B>(
        &'s self,
        name: &str,
        mut visit: impl FnMut(&'s PatternAcls) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if let Some(acls) = self.literal.get(name) {
            visit(acls)?;
        }
        if name != WILDCARD_RESOURCE {
            if let Some(acls) = self.literal.get(WILDCARD_RESOURCE) {
                visit(acls)?;
            }
        }
        walk_prefixes(
            name,
            |upper| {
                self.prefixed
                    .range::<str, _>((Bound::Unbounded, upper))
                    .next_back()
                    .map(|(key, acls)| (key.as_str(), acls))
            },
            visit,
        )
    }
}

impl FromIterator<AclBinding> for AclTable {
    /// A table of the bindings that pass [`AclBinding::validate`], duplicates once.
    fn from_iter<I: IntoIterator<Item = AclBinding>>(bindings: I) -> Self {
        let mut table = AclTable::new();
        table.extend(bindings);
        table
    }
}

impl Extend<AclBinding> for AclTable {
    /// [`add`](AclTable::add)s each binding.
    fn extend<I: IntoIterator<Item = AclBinding>>(&mut self, bindings: I) {
        for binding in bindings {
            self.add(binding);
        }
    }
}

/// Finds, in an ordered set of keys, every key that is a prefix of `name` (the empty key
/// included), longest first, without looking at every key.
///
/// `greatest(upper)` answers the greatest key within `upper` (and its value). Walking down from
/// `name`: if the greatest key `k <= upper` is a prefix of `name` it is reported, and every
/// shorter prefix is below it (`upper = < k`). Otherwise `k` and `name` first differ at byte `m`
/// with `k[m] < name[m]`, so every prefix of `name` longer than `m` is above `k`, and the
/// remaining candidates are at most `name[..m]` (cut back to a char boundary, since keys are
/// strings): `upper = <= name[..m]`, a proper prefix of `k`. Each step finds a key below the
/// previous one, so the walk ends; it visits the prefixes of `name` plus at most one other key
/// per distinct branching point. (Kafka's `StandardAuthorizerData` walks its reverse-ordered
/// set the same way.)
pub(crate) fn walk_prefixes<'k, T, B>(
    name: &str,
    mut greatest: impl FnMut(Bound<&str>) -> Option<(&'k str, T)>,
    mut on_prefix: impl FnMut(T) -> ControlFlow<B>,
) -> ControlFlow<B> {
    let mut upper: Bound<&str> = Bound::Included(name);
    while let Some((key, value)) = greatest(upper) {
        if name.starts_with(key) {
            on_prefix(value)?;
            upper = Bound::Excluded(key);
        } else {
            let mut common = key
                .bytes()
                .zip(name.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            while !name.is_char_boundary(common) {
                common = common.saturating_sub(1);
            }
            upper = Bound::Included(name.get(..common).unwrap_or(""));
        }
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{AccessControlEntry, ResourcePattern};
    use crate::types::{AclOperation, AclPermission};

    fn prefixes_in(keys: &[&str], name: &str) -> Vec<String> {
        let set: BTreeSet<&str> = keys.iter().copied().collect();
        let mut out = Vec::new();
        let _ = walk_prefixes::<_, ()>(
            name,
            |upper| {
                set.range::<str, _>((Bound::Unbounded, upper))
                    .next_back()
                    .map(|k| (*k, *k))
            },
            |k| {
                out.push(k.to_owned());
                ControlFlow::Continue(())
            },
        );
        out
    }

    #[test]
    fn walk_finds_every_prefix_longest_first() {
        let keys = [
            "gar",
            "foobar",
            "foob",
            "foo",
            "fb",
            "fa",
            "f",
            "eeee",
            "foobarbaz",
            "fooc",
            "",
        ];
        assert_eq!(
            prefixes_in(&keys, "foobar"),
            ["foobar", "foob", "foo", "f", ""]
        );
        assert_eq!(prefixes_in(&keys, "foobaz"), ["foob", "foo", "f", ""]);
        assert_eq!(prefixes_in(&keys, "g"), [""]);
        assert_eq!(prefixes_in(&keys[..10], "zzz"), Vec::<String>::new());
        assert_eq!(prefixes_in(&keys[..10], ""), Vec::<String>::new());
        assert_eq!(prefixes_in(&[], "abc"), Vec::<String>::new());
    }

    #[test]
    fn walk_cuts_back_to_char_boundaries() {
        // "é" is C3 A9 and "è" C3 A8: they share a byte, not a char.
        let keys = ["è", "a", "aé", "aè", "aèx", "é"];
        assert_eq!(prefixes_in(&keys, "aéz"), ["aé", "a"]);
        assert_eq!(prefixes_in(&keys, "éé"), ["é"]);
        assert_eq!(prefixes_in(&keys, "ê"), Vec::<String>::new());
        assert_eq!(prefixes_in(&keys, "aèxy"), ["aèx", "aè", "a"]);
    }

    #[test]
    fn walk_matches_brute_force() {
        let alphabet = ["a", "b", "é", "*", "ab"];
        let mut keys: Vec<String> = Vec::new();
        for x in alphabet {
            keys.push(x.to_owned());
            for y in alphabet {
                keys.push(format!("{x}{y}"));
                for z in alphabet {
                    keys.push(format!("{x}{y}{z}"));
                }
            }
        }
        for (i, _) in keys.iter().enumerate().step_by(3) {
            let subset: Vec<&str> = keys
                .iter()
                .skip(i % 7)
                .step_by(4)
                .map(String::as_str)
                .collect();
            for name in keys.iter().take(60) {
                let mut expected: Vec<String> = subset
                    .iter()
                    .filter(|k| name.starts_with(**k))
                    .map(|k| (*k).to_owned())
                    .collect();
                expected.sort();
                expected.dedup();
                expected.reverse();
                assert_eq!(prefixes_in(&subset, name), expected, "{name} in {subset:?}");
            }
        }
    }

    fn acl(rt: ResourceType, name: &str, pt: PatternType, principal: &str) -> AclBinding {
        AclBinding::new(
            ResourcePattern::new(rt, name, pt),
            AccessControlEntry::new(principal, "*", AclOperation::Read, AclPermission::Allow),
        )
    }

    #[test]
    fn add_remove_contains_len() {
        let mut table = AclTable::new();
        let a = acl(ResourceType::Topic, "t", PatternType::Literal, "User:a");
        let b = acl(ResourceType::Topic, "t", PatternType::Prefixed, "User:a");
        assert!(table.add(a.clone()));
        assert!(!table.add(a.clone()));
        assert!(table.add(b.clone()));
        assert_eq!(table.len(), 2);
        assert!(table.contains(&a) && table.contains(&b));
        assert!(table.remove(&a));
        assert!(!table.remove(&a));
        assert!(!table.contains(&a));
        assert_eq!(table.len(), 1);
        assert!(table.remove(&b));
        assert!(table.is_empty());
        // Removing everything leaves no empty index entries behind.
        assert_eq!(table, AclTable::new());
    }

    #[test]
    fn invalid_bindings_are_not_stored() {
        let mut table = AclTable::new();
        assert!(!table.add(acl(ResourceType::Any, "t", PatternType::Literal, "User:a")));
        assert!(!table.add(acl(ResourceType::Topic, "t", PatternType::Match, "User:a")));
        assert!(!table.add(acl(ResourceType::Topic, "", PatternType::Literal, "User:a")));
        assert!(!table.add(acl(ResourceType::Topic, "t", PatternType::Literal, "alice")));
        assert!(!table.add(acl(
            ResourceType::Cluster,
            "c",
            PatternType::Literal,
            "User:a"
        )));
        assert!(table.is_empty());
        let bad = acl(ResourceType::Topic, "t", PatternType::Any, "User:a");
        assert!(!table.contains(&bad));
        assert!(!table.remove(&bad));
    }

    #[test]
    fn iter_is_in_binding_order() {
        let bindings = vec![
            acl(ResourceType::Group, "g", PatternType::Literal, "User:b"),
            acl(ResourceType::Topic, "z", PatternType::Prefixed, "User:a"),
            acl(ResourceType::Topic, "z", PatternType::Literal, "User:a"),
            acl(ResourceType::Topic, "a", PatternType::Literal, "User:b"),
            acl(ResourceType::Topic, "a", PatternType::Literal, "User:a"),
            acl(
                ResourceType::Cluster,
                "kafka-cluster",
                PatternType::Literal,
                "User:*",
            ),
        ];
        let table: AclTable = bindings.iter().cloned().collect();
        let listed: Vec<AclBinding> = table.iter().cloned().collect();
        let mut sorted = bindings;
        sorted.sort();
        assert_eq!(listed, sorted);
        assert_eq!(table.matching(&AclBindingFilter::ANY), sorted);
        let mut cleared = table.clone();
        cleared.clear();
        assert!(cleared.is_empty() && cleared.iter().next().is_none());
    }
}
