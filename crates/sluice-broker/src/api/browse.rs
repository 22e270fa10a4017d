//! What message browsing shares (the consume endpoint in `records.rs` and the live tail in
//! `tail.rs`): record filters (`key_contains`, `value_contains`, `header`) and schema-registry
//! decoding of record keys and values (`decode=registry`).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_client::Record;

use super::{ApiError, Encoding};
use crate::limits::{MAX_API_DECODE_BYTES, MAX_API_FILTER_BYTES};

/// How record keys and values are shown besides their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decode {
    /// Bytes only.
    #[default]
    None,
    /// Keys and values framed with a schema id of the built-in registry are also shown
    /// decoded (`key_decoded` / `value_decoded`, or `*_decode_error`).
    Registry,
}

/// Which records a browse returns: all of these that are given must hold. Substrings are
/// matched on the bytes (case-sensitive), so a UTF-8 needle also finds text inside binary
/// formats (an Avro string, say).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    key: Option<memchr::memmem::Finder<'static>>,
    value: Option<memchr::memmem::Finder<'static>>,
    /// A header name, and a substring its value must contain.
    header: Option<(String, Option<memchr::memmem::Finder<'static>>)>,
}

impl Filter {
    /// From the query parameters. `header` is `name` (a header of that name is present) or
    /// `name=text` (a header of that name whose value contains `text`). An empty substring
    /// matches any key or value that is present (not null).
    pub fn parse(
        key_contains: Option<&str>,
        value_contains: Option<&str>,
        header: Option<&str>,
    ) -> Result<Filter, ApiError> {
        for (name, v) in [
            ("key_contains", key_contains),
            ("value_contains", value_contains),
            ("header", header),
        ] {
            if v.is_some_and(|v| v.len() > MAX_API_FILTER_BYTES) {
                return Err(ApiError::invalid(format!(
                    "{name} is at most {MAX_API_FILTER_BYTES} bytes"
                )));
            }
        }
        let finder = |s: &str| memchr::memmem::Finder::new(s.as_bytes()).into_owned();
        let header = match header {
            None => None,
            Some(h) => {
                let (name, text) = match h.split_once('=') {
                    Some((name, text)) => (name, Some(finder(text))),
                    None => (h, None),
                };
                if name.is_empty() {
                    return Err(ApiError::invalid(
                        "header is `name` or `name=text`, with a name",
                    ));
                }
                Some((name.to_owned(), text))
            }
        };
        Ok(Filter {
            key: key_contains.map(finder),
            value: value_contains.map(finder),
            header,
        })
    }

    /// True when no filter was given (every record matches).
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.value.is_none() && self.header.is_none()
    }

    pub fn matches(&self, r: &Record) -> bool {
        let contains =
            |needle: &Option<memchr::memmem::Finder<'static>>, hay: &Option<Bytes>| match (
                needle, hay,
            ) {
                (None, _) => true,
                (Some(n), Some(h)) => n.find(h).is_some(),
                (Some(_), None) => false,
            };
        if !contains(&self.key, &r.key) || !contains(&self.value, &r.value) {
            return false;
        }
        match &self.header {
            None => true,
            Some((name, text)) => r.headers.iter().any(|(k, v)| {
                k.as_str() == name.as_str()
                    && match text {
                        None => true,
                        Some(_) => contains(text, v),
                    }
            }),
        }
    }
}

/// Bytes a record holds (key, value, header names and values): what browse bounds count.
pub fn record_size(r: &Record) -> u64 {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
    let headers: u64 = r.headers.iter().map(|(k, v)| k.len() as u64 + len(v)).sum();
    len(&r.key) + len(&r.value) + headers
}

/// How many key and value bytes one answer (a consume, or one poll of a tail) decodes with the
/// registry. A decoded document is larger than its bytes (each value becomes a JSON node), so
/// decoding is bounded apart from the bytes returned; past the budget a record's part carries
/// a `*_decode_error` saying so.
pub struct DecodeBudget(usize);

impl DecodeBudget {
    pub fn new() -> Self {
        DecodeBudget(MAX_API_DECODE_BYTES)
    }
}

impl Default for DecodeBudget {
    fn default() -> Self {
        Self::new()
    }
}

/// One record as the browse endpoints show it: `record_json`'s fields, and with
/// `decode=registry` the key and value decoded with the registry where they are framed with a
/// registered schema id, while `budget` lasts.
pub fn record_view(
    r: &Record,
    encoding: Encoding,
    decode: Decode,
    registry: &sluice_registry::Registry,
    budget: &mut DecodeBudget,
) -> Value {
    let mut v = super::records::record_json(r, encoding);
    if decode == Decode::Registry {
        for (part, bytes) in [("key", &r.key), ("value", &r.value)] {
            let Some(bytes) = bytes.as_ref() else {
                continue;
            };
            if bytes.first() != Some(&sluice_registry::wire::MAGIC) || bytes.len() < 5 {
                continue;
            }
            if bytes.len() > budget.0 {
                v[format!("{part}_decode_error")] = json!(format!(
                    "not decoded: one answer decodes at most {MAX_API_DECODE_BYTES} bytes of \
                     keys and values; ask for fewer records to see this one decoded"
                ));
                continue;
            }
            let Some(d) = registry.decode(bytes) else {
                continue;
            };
            budget.0 -= bytes.len();
            match d.value {
                Ok(value) => {
                    v[format!("{part}_decoded")] = json!({
                        "schema_id": d.schema_id,
                        "schema_type": d.schema_type.as_str(),
                        "value": value,
                    });
                }
                Err(e) => {
                    v[format!("{part}_decode_error")] = json!(format!(
                        "schema {} ({}): {e}",
                        d.schema_id,
                        d.schema_type.as_str()
                    ));
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>, value: Option<&[u8]>, headers: &[(&str, Option<&str>)]) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 0,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        kafka_protocol::protocol::StrBytes::from_string((*k).to_owned()),
                        v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn filters() {
        let r = record(
            Some("order-17"),
            Some(b"\x00\x01{\"sku\":\"ab\"}"),
            &[("source", Some("web-eu")), ("trace", None)],
        );
        let f = |k: Option<&str>, v: Option<&str>, h: Option<&str>| {
            Filter::parse(k, v, h).unwrap().matches(&r)
        };
        assert!(f(None, None, None));
        assert!(Filter::parse(None, None, None).unwrap().is_empty());
        assert!(f(Some("der-1"), None, None));
        assert!(!f(Some("Order"), None, None), "case-sensitive");
        assert!(f(None, Some("\"sku\""), None), "found inside binary bytes");
        assert!(f(Some(""), Some(""), None));
        assert!(f(None, None, Some("trace")));
        assert!(f(None, None, Some("source=eu")));
        assert!(!f(None, None, Some("source=us")));
        assert!(
            !f(None, None, Some("trace=x")),
            "a null value contains nothing"
        );
        assert!(!f(None, None, Some("missing")));
        assert!(!f(Some("order"), Some("nope"), None), "all must hold");
        let keyless = record(None, None, &[]);
        assert!(!Filter::parse(Some(""), None, None)
            .unwrap()
            .matches(&keyless));
        assert!(Filter::parse(None, None, Some("=x")).is_err());
        let long = "x".repeat(MAX_API_FILTER_BYTES + 1);
        assert!(Filter::parse(Some(&long), None, None).is_err());
        assert_eq!(record_size(&r), 8 + 14 + 6 + 6 + 5);
    }
}
