//! Group configs (Kafka's GROUP config resource, set with IncrementalAlterConfigs): the share
//! group settings, their defaults and validation, and the [`ShareSettings`] they amount to.
//!
//! A group stores only the values set on it; the rest read as defaults. Two departures from
//! Kafka, both documented in docs/CONFIG.md:
//! - `errors.deadletterqueue.topic.name` defaults to `dlq.<group>` (KIP-1191 has no DLQ unless
//!   configured); an empty value turns dead-lettering off.
//! - `share.release.backoff.ms` / `share.release.backoff.max.ms` are Sluice's own: delayed
//!   redelivery, as SQS visibility timeouts and NATS `BackOff` give.
//! - `share.isolation.level` defaults to `read_committed` (Kafka: `read_uncommitted`): a queue
//!   must never hand out the work of an aborted transaction.
//!
//! Bounds are wider than Kafka's where queue users need them (a 1 s lock for tests and fast
//! retries, up to 1 h for slow jobs; up to 1000 deliveries as SQS's `maxReceiveCount`).

use std::collections::BTreeMap;

use sluice_share::ShareConfig;

pub const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
pub const LOCK_DURATION: &str = "share.record.lock.duration.ms";
pub const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
pub use sluice_share::dlq::{DLQ_PREFIX, DLQ_TOPIC};
pub const RELEASE_BACKOFF: &str = "share.release.backoff.ms";
pub const RELEASE_BACKOFF_MAX: &str = "share.release.backoff.max.ms";
pub const HEARTBEAT_INTERVAL: &str = "share.heartbeat.interval.ms";
pub const SESSION_TIMEOUT: &str = "share.session.timeout.ms";
pub const MAX_RECORD_LOCKS: &str = "share.partition.max.record.locks";
pub const ISOLATION_LEVEL: &str = "share.isolation.level";

enum Kind {
    Range(i64, i64),
    Reset,
    TopicOrEmpty,
    /// `read_committed` or `read_uncommitted`.
    Isolation,
}

struct Spec {
    name: &'static str,
    /// `None`: computed from the group id (the DLQ topic).
    default: Option<&'static str>,
    kind: Kind,
}

const SPECS: &[Spec] = &[
    Spec {
        name: DLQ_TOPIC,
        default: None,
        kind: Kind::TopicOrEmpty,
    },
    Spec {
        name: AUTO_OFFSET_RESET,
        default: Some("latest"),
        kind: Kind::Reset,
    },
    Spec {
        name: DELIVERY_COUNT_LIMIT,
        default: Some("5"),
        kind: Kind::Range(1, 1000),
    },
    Spec {
        name: HEARTBEAT_INTERVAL,
        default: Some("5000"),
        kind: Kind::Range(100, 3_600_000),
    },
    Spec {
        name: MAX_RECORD_LOCKS,
        default: Some("2000"),
        kind: Kind::Range(100, 100_000),
    },
    Spec {
        name: ISOLATION_LEVEL,
        default: Some("read_committed"),
        kind: Kind::Isolation,
    },
    Spec {
        name: LOCK_DURATION,
        default: Some("30000"),
        kind: Kind::Range(1000, 3_600_000),
    },
    Spec {
        name: RELEASE_BACKOFF,
        default: Some("0"),
        kind: Kind::Range(0, 3_600_000),
    },
    Spec {
        name: RELEASE_BACKOFF_MAX,
        default: Some("60000"),
        kind: Kind::Range(0, 3_600_000),
    },
    Spec {
        name: SESSION_TIMEOUT,
        default: Some("45000"),
        kind: Kind::Range(1000, 3_600_000),
    },
];

fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// `dlq.<group>`, made a legal topic name whatever the group id holds: characters Kafka does
/// not allow in topic names become `_`, and the name is cut at 249 characters. (Group ids may
/// be any string; without this a group named "a b" could never dead-letter, and its pending
/// dead letters would hold its queue.)
pub fn default_dlq_topic(group: &str) -> String {
    let cleaned: String = format!("{DLQ_PREFIX}{group}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(249)
        .collect();
    cleaned
}

/// Where a share-partition starts when the group first reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    Latest,
    Earliest,
    /// The first record at or after now minus this many milliseconds.
    ByDuration(i64),
}

/// Parses an ISO-8601 duration of days and time (`P1D`, `PT30M`, `P1DT2H3M4.5S`), as Kafka's
/// `by_duration:` takes.
fn parse_iso_duration_ms(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut parts = 0;
    let mut take = |mut s: &str, units: &[(char, f64)]| -> Option<()> {
        while !s.is_empty() {
            let end = s.find(|c: char| c.is_ascii_alphabetic())?;
            let value: f64 = s[..end].parse().ok().filter(|v: &f64| *v >= 0.0)?;
            let unit = s[end..].chars().next()?;
            let factor = units.iter().find(|(u, _)| *u == unit)?.1;
            total += value * factor;
            parts += 1;
            s = &s[end + unit.len_utf8()..];
        }
        Some(())
    };
    take(date, &[('D', 86_400_000.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    }
    (parts > 0 && total < 1e15).then_some(total as i64)
}

fn parse_reset(value: &str) -> Option<AutoOffsetReset> {
    match value {
        "latest" => Some(AutoOffsetReset::Latest),
        "earliest" => Some(AutoOffsetReset::Earliest),
        v => v
            .strip_prefix("by_duration:")
            .and_then(parse_iso_duration_ms)
            .map(AutoOffsetReset::ByDuration),
    }
}

/// Checks one name/value pair.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let spec = spec(name).ok_or_else(|| {
        format!(
            "unknown group config {name:?}; group configs are: {}",
            SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        )
    })?;
    match spec.kind {
        Kind::Range(min, max) => match value.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            _ => Err(format!(
                "invalid value {value:?} for {name}: expected an integer from {min} to {max}"
            )),
        },
        Kind::Reset => parse_reset(value).map(|_| ()).ok_or_else(|| {
            format!(
                "invalid value {value:?} for {name}: expected latest, earliest or \
                 by_duration:<ISO-8601 duration> such as by_duration:PT1H"
            )
        }),
        Kind::Isolation if matches!(value, "read_committed" | "read_uncommitted") => Ok(()),
        Kind::Isolation => Err(format!(
            "invalid value {value:?} for {name}: expected read_committed or read_uncommitted"
        )),
        Kind::TopicOrEmpty if value.is_empty() => Ok(()),
        Kind::TopicOrEmpty => crate::metadata::validate_topic_name(value).map_err(|e| e.message),
    }
}

/// The configs set on one group (overrides of the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupConfigs(pub BTreeMap<String, String>);

/// What a share group runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSettings {
    pub share: ShareConfig,
    pub auto_offset_reset: AutoOffsetReset,
    /// `None`: dead-lettering is off (records are archived).
    pub dlq_topic: Option<String>,
    pub heartbeat_interval_ms: i32,
    pub session_timeout_ms: i32,
    /// `share.isolation.level` = read_committed: share-partitions acquire only below the last
    /// stable offset and never deliver records of aborted transactions.
    pub read_committed: bool,
}

impl GroupConfigs {
    /// The configs with every value that no longer validates dropped (it reads as the
    /// default), each with a warning: replay must never refuse to start over a stored value.
    pub fn sanitized(mut self, group: &str) -> Self {
        crate::topic_config::retain_valid(&mut self.0, validate, "group", group);
        self
    }

    /// The effective value of `name` for group `group`.
    pub fn get(&self, group: &str, name: &str) -> Option<String> {
        if let Some(v) = self.0.get(name) {
            return Some(v.clone());
        }
        let spec = spec(name)?;
        Some(match spec.default {
            Some(d) => d.to_string(),
            None => default_dlq_topic(group),
        })
    }

    fn get_i64(&self, group: &str, name: &str) -> i64 {
        self.get(group, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Every config with its effective value and whether it is a default.
    pub fn describe(&self, group: &str) -> Vec<(&'static str, String, bool)> {
        SPECS
            .iter()
            .map(|s| {
                let set = self.0.get(s.name);
                (
                    s.name,
                    self.get(group, s.name).unwrap_or_default(),
                    set.is_none(),
                )
            })
            .collect()
    }

    pub fn share_settings(&self, group: &str) -> ShareSettings {
        let dlq = self.get(group, DLQ_TOPIC).unwrap_or_default();
        let u = |name| self.get_i64(group, name).max(0) as u64;
        ShareSettings {
            share: ShareConfig {
                lock_duration_ms: u(LOCK_DURATION),
                delivery_count_limit: u(DELIVERY_COUNT_LIMIT).clamp(1, 1000) as u16,
                max_in_flight: u(MAX_RECORD_LOCKS),
                release_backoff_ms: u(RELEASE_BACKOFF),
                release_backoff_max_ms: u(RELEASE_BACKOFF_MAX),
                dead_letter: !dlq.is_empty(),
            },
            auto_offset_reset: self
                .get(group, AUTO_OFFSET_RESET)
                .and_then(|v| parse_reset(&v))
                .unwrap_or(AutoOffsetReset::Latest),
            dlq_topic: Some(dlq).filter(|d| !d.is_empty()),
            heartbeat_interval_ms: self.get_i64(group, HEARTBEAT_INTERVAL) as i32,
            session_timeout_ms: self.get_i64(group, SESSION_TIMEOUT) as i32,
            read_committed: self.get(group, ISOLATION_LEVEL).as_deref() != Some("read_uncommitted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = GroupConfigs::default();
        let s = c.share_settings("workers");
        assert_eq!(s.dlq_topic.as_deref(), Some("dlq.workers"));
        assert_eq!(s.share.lock_duration_ms, 30_000);
        assert_eq!(s.share.delivery_count_limit, 5);
        assert_eq!(s.auto_offset_reset, AutoOffsetReset::Latest);
        assert!(s.read_committed, "queues read committed data by default");
        let c = GroupConfigs(BTreeMap::from([
            (ISOLATION_LEVEL.to_string(), "read_uncommitted".to_string()),
            (DLQ_TOPIC.to_string(), String::new()),
            (
                AUTO_OFFSET_RESET.to_string(),
                "by_duration:PT1H30M".to_string(),
            ),
        ]));
        let s = c.share_settings("workers");
        assert_eq!(s.dlq_topic, None);
        assert!(!s.share.dead_letter);
        assert_eq!(s.auto_offset_reset, AutoOffsetReset::ByDuration(5_400_000));
        assert!(!s.read_committed);
    }

    #[test]
    fn validation() {
        assert!(validate(LOCK_DURATION, "999").is_err());
        assert!(validate(ISOLATION_LEVEL, "read_committed").is_ok());
        assert!(validate(ISOLATION_LEVEL, "read_uncommitted").is_ok());
        assert!(validate(ISOLATION_LEVEL, "READ_COMMITTED").is_err());
        assert!(validate(LOCK_DURATION, "1000").is_ok());
        assert!(validate(DELIVERY_COUNT_LIMIT, "0").is_err());
        assert!(validate(AUTO_OFFSET_RESET, "earliest").is_ok());
        assert!(validate(AUTO_OFFSET_RESET, "by_duration:P1DT2H").is_ok());
        assert!(validate(AUTO_OFFSET_RESET, "by_duration:1h").is_err());
        assert!(validate(AUTO_OFFSET_RESET, "by_duration:PT").is_err());
        assert!(validate(DLQ_TOPIC, "").is_ok());
        assert!(validate(DLQ_TOPIC, "bad name").is_err());
        assert!(validate("group.no.such", "1").is_err());
        assert_eq!(default_dlq_topic("a b/c"), "dlq.a_b_c");
        assert_eq!(default_dlq_topic(&"x".repeat(300)).len(), 249);
        assert_eq!(parse_iso_duration_ms("PT0.5S"), Some(500));
        assert_eq!(parse_iso_duration_ms("P2D"), Some(172_800_000));
    }
}
