//! Topic configs: Kafka's names, defaults and validation, and how they map onto the log.
//!
//! A topic stores only the values set on it; everything else reads as the default. Unknown
//! names and bad values are refused with a message (INVALID_CONFIG at the protocol edge).

use std::collections::BTreeMap;

use sluice_storage::LogConfig;

#[derive(Clone, Copy)]
enum Kind {
    /// A 64-bit integer with an inclusive minimum.
    Long(i64),
    /// A 32-bit integer (Kafka's INT configs) in an inclusive range.
    Int(i32, i32),
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    Bool,
    /// A ratio in [0, 1].
    Ratio,
    /// An integer in one of these inclusive ranges.
    Range(&'static [std::ops::RangeInclusive<i64>]),
    /// A comma-separated list of distinct words from a fixed set (Kafka's `ValidList`),
    /// at least one.
    List(&'static [&'static str]),
}

struct Spec {
    name: &'static str,
    default: &'static str,
    kind: Kind,
}

const SUBJECT_STRATEGIES: &[&str] = &[
    "io.confluent.kafka.serializers.subject.TopicNameStrategy",
    "io.confluent.kafka.serializers.subject.RecordNameStrategy",
    "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
    "TopicNameStrategy",
    "RecordNameStrategy",
    "TopicRecordNameStrategy",
];

/// Every topic config Sluice accepts. Ones the log does not act on yet are accepted and
/// described (so tools that set them keep working) and documented in docs/CONFIG.md.
const SPECS: &[Spec] = &[
    Spec {
        name: "cleanup.policy",
        default: "delete",
        kind: Kind::List(&["delete", "compact"]),
    },
    Spec {
        name: "compression.type",
        default: "producer",
        kind: Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    },
    // KIP-390's levels (used when the topic's codec recompresses a batch).
    Spec {
        name: "compression.gzip.level",
        default: "-1",
        kind: Kind::Range(&[-1..=-1, 1..=9]),
    },
    Spec {
        name: "compression.lz4.level",
        default: "9",
        kind: Kind::Range(&[1..=17]),
    },
    Spec {
        name: "compression.zstd.level",
        default: "3",
        kind: Kind::Range(&[-131_072..=22]),
    },
    Spec {
        name: "delete.retention.ms",
        default: "86400000",
        kind: Kind::Long(0),
    },
    Spec {
        name: "file.delete.delay.ms",
        default: "60000",
        kind: Kind::Long(0),
    },
    Spec {
        name: "flush.messages",
        default: "9223372036854775807",
        kind: Kind::Long(1),
    },
    Spec {
        name: "flush.ms",
        default: "9223372036854775807",
        kind: Kind::Long(0),
    },
    Spec {
        name: "index.interval.bytes",
        default: "4096",
        kind: Kind::Int(0, i32::MAX),
    },
    Spec {
        name: "max.compaction.lag.ms",
        default: "9223372036854775807",
        kind: Kind::Long(1),
    },
    Spec {
        name: "max.message.bytes",
        default: "1048588",
        kind: Kind::Int(0, i32::MAX),
    },
    Spec {
        name: "message.timestamp.after.max.ms",
        default: "3600000",
        kind: Kind::Long(0),
    },
    Spec {
        name: "message.timestamp.before.max.ms",
        default: "9223372036854775807",
        kind: Kind::Long(0),
    },
    Spec {
        name: "message.timestamp.type",
        default: "CreateTime",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
    },
    Spec {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        kind: Kind::Ratio,
    },
    Spec {
        name: "min.compaction.lag.ms",
        default: "0",
        kind: Kind::Long(0),
    },
    Spec {
        name: "min.insync.replicas",
        default: "1",
        kind: Kind::Int(1, i32::MAX),
    },
    // Broker-side schema validation (docs/SCHEMAS.md): Confluent's names, Redpanda's aliases.
    Spec {
        name: "confluent.key.schema.validation",
        default: "false",
        kind: Kind::Bool,
    },
    Spec {
        name: "confluent.key.subject.name.strategy",
        default: "io.confluent.kafka.serializers.subject.TopicNameStrategy",
        kind: Kind::Choice(SUBJECT_STRATEGIES),
    },
    Spec {
        name: "confluent.value.schema.validation",
        default: "false",
        kind: Kind::Bool,
    },
    Spec {
        name: "confluent.value.subject.name.strategy",
        default: "io.confluent.kafka.serializers.subject.TopicNameStrategy",
        kind: Kind::Choice(SUBJECT_STRATEGIES),
    },
    Spec {
        name: "redpanda.key.schema.id.validation",
        default: "false",
        kind: Kind::Bool,
    },
    Spec {
        name: "redpanda.value.schema.id.validation",
        default: "false",
        kind: Kind::Bool,
    },
    // Conditional append (conditional.rs, docs/EVENT_SOURCING.md).
    Spec {
        name: "sluice.conditional.append.enable",
        default: "false",
        kind: Kind::Bool,
    },
    Spec {
        name: "sluice.schema.validation.parse",
        default: "false",
        kind: Kind::Bool,
    },
    Spec {
        name: "preallocate",
        default: "false",
        kind: Kind::Bool,
    },
    Spec {
        name: "retention.bytes",
        default: "-1",
        kind: Kind::Long(-1),
    },
    Spec {
        name: "retention.ms",
        default: "604800000",
        kind: Kind::Long(-1),
    },
    Spec {
        name: "segment.bytes",
        default: "1073741824",
        kind: Kind::Int(SEGMENT_BYTES_MIN, i32::MAX),
    },
    Spec {
        name: "segment.index.bytes",
        default: "10485760",
        kind: Kind::Int(4, i32::MAX),
    },
    Spec {
        name: "segment.jitter.ms",
        default: "0",
        kind: Kind::Long(0),
    },
    Spec {
        name: "segment.ms",
        default: "604800000",
        kind: Kind::Long(1),
    },
    Spec {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: Kind::Bool,
    },
];

/// Kafka's floor for `segment.bytes` (1 MiB since Kafka 4.0): each segment holds a file open,
/// so tiny segments would let one client exhaust the broker's file descriptors.
pub const SEGMENT_BYTES_MIN: i32 = crate::limits::SEGMENT_BYTES_MIN;

fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Checks one name/value pair.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let spec = spec(name).ok_or_else(|| format!("unknown topic config {name:?}"))?;
    let ok = match spec.kind {
        Kind::Long(min) => value.parse::<i64>().is_ok_and(|v| v >= min),
        Kind::Int(min, max) => value.parse::<i32>().is_ok_and(|v| (min..=max).contains(&v)),
        Kind::Choice(words) => words.contains(&value),
        // Kafka reads booleans without regard to case.
        Kind::Bool => value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false"),
        Kind::Ratio => value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v)),
        Kind::Range(ranges) => value
            .parse::<i64>()
            .is_ok_and(|v| ranges.iter().any(|r| r.contains(&v))),
        Kind::List(words) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            items.iter().all(|i| words.contains(i))
                && items
                    .iter()
                    .enumerate()
                    .all(|(n, i)| !items[..n].contains(i))
        }
    };
    if ok {
        return Ok(());
    }
    let expected = match spec.kind {
        Kind::Long(min) => format!("an integer >= {min}"),
        Kind::Int(min, max) => format!("an integer between {min} and {max}"),
        Kind::Choice(words) => format!("one of {}", words.join(", ")),
        Kind::Bool => "true or false".to_string(),
        Kind::Ratio => "a number between 0 and 1".to_string(),
        Kind::Range(ranges) => ranges
            .iter()
            .map(|r| match r.start() == r.end() {
                true => r.start().to_string(),
                false => format!("{}..{}", r.start(), r.end()),
            })
            .collect::<Vec<_>>()
            .join(" or "),
        Kind::List(words) => format!("a list of distinct values from {}", words.join(", ")),
    };
    Err(format!(
        "invalid value {value:?} for {name}: expected {expected}"
    ))
}

/// Drops every stored value that `validate` refuses, with a warning naming its owner (a topic
/// or a group): replay must never refuse to start over a value stored once.
pub(crate) fn retain_valid(
    configs: &mut BTreeMap<String, String>,
    validate: fn(&str, &str) -> Result<(), String>,
    kind: &str,
    owner: &str,
) {
    configs.retain(|name, value| match validate(name, value) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(kind, owner, error = %e, "ignoring a stored config; the default applies");
            false
        }
    });
}

/// A compacted topic's cleaner settings (Kafka's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compaction {
    /// `min.cleanable.dirty.ratio` (0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` (0).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` (Long.MAX).
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms` (1 day).
    pub delete_retention_ms: i64,
}

/// The configs set on one topic (overrides of the defaults).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfigs(pub BTreeMap<String, String>);

/// One config as DescribeConfigs reports it.
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: String,
    pub is_default: bool,
}

impl TopicConfigs {
    /// Builds from name/value pairs, validating each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            validate(name, value)?;
            map.insert(name.to_string(), value.to_string());
        }
        let configs = TopicConfigs(map);
        configs.check_combination()?;
        Ok(configs)
    }

    /// The checks across values (Kafka's `LogConfig.validateValues`).
    pub fn check_combination(&self) -> Result<(), String> {
        let (min, max) = (
            self.get_i64("min.compaction.lag.ms"),
            self.get_i64("max.compaction.lag.ms"),
        );
        if min > max {
            return Err(format!(
                "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
            ));
        }
        Ok(())
    }

    /// The configs with every value that no longer validates dropped (so it reads as the
    /// default), each with a warning. Replay uses this: a value accepted once (perhaps by an
    /// older, looser version) must never keep the broker from starting.
    pub fn sanitized(mut self, topic: &str) -> Self {
        retain_valid(&mut self.0, validate, "topic", topic);
        self
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .cloned()
            .or_else(|| spec(name).map(|s| s.default.to_string()))
    }

    fn get_i64(&self, name: &str) -> i64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// How far the broker inflates one batch of this topic where it must read records (schema
    /// validation, recompression, ListOffsets inside a batch, dead letters): the topic's
    /// `max.message.bytes`, at most [`crate::limits::MAX_DECOMPRESSED_BYTES`].
    pub fn decompression_cap(&self) -> usize {
        usize::try_from(self.get_i64("max.message.bytes"))
            .unwrap_or(0)
            .min(crate::limits::MAX_DECOMPRESSED_BYTES)
    }

    /// Every config with its effective value, in name order.
    pub fn describe(&self) -> Vec<DescribedConfig> {
        SPECS
            .iter()
            .map(|s| match self.0.get(s.name) {
                Some(v) => DescribedConfig {
                    name: s.name,
                    value: v.clone(),
                    is_default: false,
                },
                None => DescribedConfig {
                    name: s.name,
                    value: s.default.to_string(),
                    is_default: true,
                },
            })
            .collect()
    }

    fn policy_has(&self, word: &str) -> bool {
        self.get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|w| w.trim() == word))
    }

    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest record per key, and
    /// produce refuses keyless records.
    pub fn is_compacted(&self) -> bool {
        self.policy_has("compact")
    }

    /// `cleanup.policy` includes `delete`: time and size retention apply (a `compact`-only
    /// topic keeps its segments until the cleaner rewrites them, as Kafka).
    pub fn has_retention(&self) -> bool {
        self.policy_has("delete")
    }

    /// The cleaner's settings of this topic.
    pub fn compaction(&self) -> Compaction {
        Compaction {
            min_cleanable_dirty_ratio: self
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.5),
            min_compaction_lag_ms: self.get_i64("min.compaction.lag.ms"),
            max_compaction_lag_ms: self.get_i64("max.compaction.lag.ms"),
            delete_retention_ms: self.get_i64("delete.retention.ms"),
        }
    }

    /// What the log needs to know.
    pub fn log_config(&self) -> LogConfig {
        let retention = self.has_retention();
        LogConfig {
            segment_bytes: self.get_i64("segment.bytes").max(14) as u64,
            segment_ms: self.get_i64("segment.ms").max(1),
            retention_ms: if retention {
                self.get_i64("retention.ms")
            } else {
                -1
            },
            retention_bytes: if retention {
                self.get_i64("retention.bytes")
            } else {
                -1
            },
            max_message_bytes: self
                .get_i64("max.message.bytes")
                .clamp(0, i64::from(i32::MAX)) as usize,
            index_interval_bytes: self.get_i64("index.interval.bytes").max(0) as u64,
            log_append_time: self.get("message.timestamp.type").as_deref() == Some("LogAppendTime"),
            timestamp_after_max_ms: self.get_i64("message.timestamp.after.max.ms"),
            timestamp_before_max_ms: self.get_i64("message.timestamp.before.max.ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_maps() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        for ok in [
            "delete",
            "compact",
            "compact,delete",
            "delete,compact",
            "compact, delete",
        ] {
            assert!(validate("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "compact,compact", "Compact", "delete,", "remove"] {
            assert!(validate("cleanup.policy", bad).is_err(), "{bad:?}");
        }
        let compact = TopicConfigs::from_pairs([("cleanup.policy", "compact")]).unwrap();
        assert!(compact.is_compacted() && !compact.has_retention());
        assert_eq!(compact.log_config().retention_ms, -1);
        let both = TopicConfigs::from_pairs([("cleanup.policy", "compact,delete")]).unwrap();
        assert!(both.is_compacted() && both.has_retention());
        assert_eq!(both.log_config().retention_ms, 604_800_000);
        assert_eq!(both.compaction().min_cleanable_dirty_ratio, 0.5);
        assert_eq!(both.compaction().max_compaction_lag_ms, i64::MAX);
        let c = TopicConfigs::from_pairs([
            ("segment.bytes", "1048576"),
            ("message.timestamp.type", "LogAppendTime"),
        ])
        .unwrap();
        let log = c.log_config();
        assert_eq!(log.segment_bytes, 1 << 20);
        assert!(validate("segment.bytes", "1048575").is_err());
        assert!(validate("segment.bytes", "3000000000").is_err());
        let stored = TopicConfigs(
            [("segment.bytes", "14"), ("retention.ms", "1000")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        assert_eq!(
            stored.sanitized("t").0.keys().collect::<Vec<_>>(),
            vec!["retention.ms"]
        );
        assert!(log.log_append_time);
        assert_eq!(log.retention_ms, 604_800_000);
        assert_eq!(c.describe().iter().filter(|d| !d.is_default).count(), 2);
    }
}
