//! The built-in schema registry's broker side: its durable log, and broker-side validation of
//! produced records.
//!
//! Registry events (`sluice-registry`'s `RegistryEvent`s) are appended to the internal log
//! `_schemas-0` (Confluent keeps them in the `_schemas` topic) and fsynced before they take
//! effect; on start the log is replayed. The REST API is mounted on the HTTP port (`http.rs`).
//!
//! Validation is per topic: `confluent.value.schema.validation` / `confluent.key.schema.validation`
//! (Redpanda's `redpanda.value.schema.id.validation` / `redpanda.key.schema.id.validation` mean
//! the same) make Produce decode each batch and check every record's Confluent framing: magic
//! byte, a registered schema id — under the subject the topic's subject name strategy gives,
//! for the default `TopicNameStrategy` — and for Protobuf the message indexes. With
//! `sluice.schema.validation.parse=true` the payload must also decode against the schema. A bad
//! batch is refused whole with INVALID_RECORD naming the record; so is a compressed batch whose
//! records inflate past the topic's `max.message.bytes` (decompression is bounded by it).
//! Topics without these configs take the usual path: nothing is decoded.
//!
//! Its internal log (`_schemas-0`) is a `Partition` opened here, not a replica of the
//! `ReplicaManager` (replica_manager.rs): internal logs become replicated partitions in a later
//! wave of issue #10.

use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use sluice_registry::{Journal, Registry};
use sluice_storage::ProducedBatch;

use crate::error::KafkaError;
use crate::internal_log;
use crate::partition::Partition;
use crate::record_codec;
use crate::topic_config::TopicConfigs;

pub const SCHEMAS_LOG_DIR: &str = "_schemas-0";

const TOPIC_NAME_STRATEGY: &str = "io.confluent.kafka.serializers.subject.TopicNameStrategy";

/// The registry's journal: the internal log, always fsynced, compacted by the registry's
/// snapshots (`RegistryEvent::Snapshot` replaces the whole state on replay).
struct SchemaLog {
    log: Arc<Partition>,
    compaction: Arc<internal_log::Compaction>,
}

impl Journal for SchemaLog {
    fn append(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        let log = self.log.clone();
        self.compaction.appended(event.len());
        Box::pin(async move {
            internal_log::append_durably(&log, &[(None, Some(event))], crate::broker::now_ms())
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    }

    fn wants_snapshot(&self) -> bool {
        self.compaction.due()
    }

    fn snapshot(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        let (log, compaction) = (self.log.clone(), self.compaction.clone());
        Box::pin(async move {
            if !compaction.start() {
                return Ok(());
            }
            let records = [(None, Some(event))];
            let appended = internal_log::append_snapshot(&*log, &records, crate::broker::now_ms());
            internal_log::finish_snapshot(&*log, &compaction, appended)
                .await
                .map_err(|e| e.message)
        })
    }
}

/// Opens `_schemas-0` and rebuilds the registry from it.
pub fn open(data_dir: &std::path::Path, now_ms: i64) -> Result<Arc<Registry>, KafkaError> {
    let log = Arc::new(Partition::open(
        &data_dir.join(SCHEMAS_LOG_DIR),
        0,
        internal_log::log_config(),
        now_ms,
    )?);
    let compaction = Arc::new(internal_log::Compaction::new(log.size_bytes()));
    let registry = Registry::new(Arc::new(SchemaLog {
        log: log.clone(),
        compaction,
    }));
    internal_log::replay(&log, |_, value| {
        if let Some(v) = value {
            if let Err(e) = registry.replay(v) {
                tracing::error!(error = %e, "skipping unreadable schema registry event");
            }
        }
    })?;
    Ok(Arc::new(registry))
}

/// What a topic asks of produced records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub key: bool,
    pub value: bool,
    pub parse: bool,
    /// Check the id is registered under `<topic>-key` / `<topic>-value`.
    pub key_topic_subject: bool,
    pub value_topic_subject: bool,
}

fn flag(configs: &TopicConfigs, name: &str) -> bool {
    configs
        .0
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl Validation {
    /// `None` for topics that validate nothing (the common, free case).
    pub fn of(configs: &TopicConfigs) -> Option<Validation> {
        let key = flag(configs, "confluent.key.schema.validation")
            || flag(configs, "redpanda.key.schema.id.validation");
        let value = flag(configs, "confluent.value.schema.validation")
            || flag(configs, "redpanda.value.schema.id.validation");
        if !key && !value {
            return None;
        }
        let topic_strategy = |name: &str| {
            configs
                .0
                .get(name)
                .is_none_or(|s| s == TOPIC_NAME_STRATEGY || s == "TopicNameStrategy")
        };
        Some(Validation {
            key,
            value,
            parse: flag(configs, "sluice.schema.validation.parse"),
            key_topic_subject: topic_strategy("confluent.key.subject.name.strategy"),
            value_topic_subject: topic_strategy("confluent.value.subject.name.strategy"),
        })
    }
}

fn invalid(message: String) -> KafkaError {
    KafkaError::new(ResponseError::InvalidRecord, message)
}

/// Checks every record of a produced record set whose batches `batches` (from
/// `validate_produced`: framing and CRCs already checked) are in `records`; the error names the
/// first bad record by its index in the set (Kafka's `RecordErrors.BatchIndex`) and says what
/// is wrong. A compressed batch is decompressed under `cap` (the topic's `max.message.bytes`)
/// into one buffer reused for every batch; records are read in place, never copied.
pub fn validate_records(
    registry: &Registry,
    topic: &str,
    spec: &Validation,
    records: &[u8],
    batches: &[ProducedBatch],
    cap: usize,
) -> Result<(), (i32, KafkaError)> {
    // Ids already checked against the topic's subject in this request.
    let mut subject_ok: Vec<(bool, i32)> = Vec::new();
    let mut index = 0i32;
    let mut scratch = Vec::new();
    for b in batches {
        let batch = records.get(b.position..).unwrap_or_default();
        let section = record_codec::records_section(batch, &b.header, cap, &mut scratch)
            .map_err(|e| (index, invalid(format!("record batch of {topic}: {e}"))))?;
        for r in record_codec::records(section, b.header.records_count) {
            let r = r.map_err(|e| {
                (
                    index,
                    invalid(format!("record batch cannot be decoded: {e}")),
                )
            })?;
            for (is_key, on, bytes, by_topic) in [
                (true, spec.key, r.key, spec.key_topic_subject),
                (false, spec.value, r.value, spec.value_topic_subject),
            ] {
                if !on {
                    continue;
                }
                let part = if is_key { "key" } else { "value" };
                let fail = |why: String| {
                    (
                        index,
                        invalid(format!(
                            "record {index} (offset delta {}) of {topic}: {part} {why}",
                            r.offset_delta
                        )),
                    )
                };
                let Some(bytes) = bytes else {
                    return Err(fail(
                        "is null; this topic requires schema-framed records".into(),
                    ));
                };
                registry
                    .validate(bytes, spec.parse)
                    .map_err(|e| fail(format!("is invalid: {e}")))?;
                if by_topic {
                    let id = sluice_registry::wire::parse_header(bytes)
                        .map(|(id, _)| id)
                        .map_err(|e| fail(format!("is invalid: {e}")))?;
                    if !subject_ok.contains(&(is_key, id)) {
                        let subject = format!("{topic}-{part}");
                        let registered = registry
                            .versions_for_id(id, true)
                            .map(|v| v.iter().any(|(s, _)| *s == subject))
                            .unwrap_or(false);
                        if !registered {
                            return Err(fail(format!(
                                "uses schema id {id}, which is not registered under subject {subject}"
                            )));
                        }
                        subject_ok.push((is_key, id));
                    }
                }
            }
            index = index.saturating_add(1);
        }
    }
    Ok(())
}
