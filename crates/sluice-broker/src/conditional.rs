//! Conditional append (a Sluice extension for event sourcing; docs/EVENT_SOURCING.md).
//!
//! On a topic with `sluice.conditional.append.enable=true`, two record headers make an append
//! conditional, each an ASCII decimal integer:
//! - `sluice.expected.offset`: the offset the writer expects *this record* to get, i.e. the
//!   partition's log end offset when it is appended. On a batch's first record that is the
//!   batch's base offset (the partition-level compare-and-set); on record `i` it is base + i.
//! - `sluice.expected.key.offset`: the offset of the last record with this record's key in
//!   the partition before this record, or `-1` for none. Records earlier in the same batch
//!   count: two records of one key in one batch need the second's condition (if any) to name
//!   the first's offset, so conditions normally go on a key's first record in the batch.
//!
//! **Which records carry them.** Any record, each checked on its own: clients batch records
//! as they please (librdkafka puts any number of messages in a batch), so a condition set on
//! a message must mean the same whether that message is first in its batch or not. A record
//! may carry both headers (both must hold). The batch — the whole record set of the partition
//! in the request — is appended only if every condition of every record holds; otherwise
//! nothing of it is, and Produce answers INVALID_RECORD with a message naming the actual
//! offset ("sluice: expected offset 41, log end 57", "sluice: expected key offset 12 for key
//! "order-7", actual 30") and, from Produce v8, a RecordErrors entry with the record's index
//! in the record set. Refused the same way (INVALID_RECORD): a value that is not a plain
//! decimal (digits, an optional leading `-`), `sluice.expected.offset` below 0,
//! `sluice.expected.key.offset` below -1, a null value, a header repeated on one record (even
//! with the same value: a repeat is a client bug, never guessed at), a key condition on a
//! record without a key, and any transactional batch (the index would count records that may abort).
//!
//! **The key index.** Per partition, key → offset of the key's last record. It is updated on
//! every append to the topic (with conditions or without), built by scanning the log when the
//! partition opens or the config is switched on, and dropped when it is switched off. A key
//! reads as -1 when it has no record in the log: never written; its last record removed by
//! retention or DeleteRecords (an entry below the log start offset reads as -1); or its last
//! record is a tombstone (null value) — so the answer does not change when the cleaner of a
//! compacted topic later removes the tombstone, or on a restart.
//!
//! **The bound.** The index holds at most [`limits::CONDITIONAL_KEY_INDEX_MAX_BYTES`] per
//! partition and [`limits::CONDITIONAL_KEY_INDEX_TOTAL_BYTES`] in the broker (key bytes plus
//! [`ENTRY_OVERHEAD`] each). A key that does not fit is not entered, and from then on the
//! index is *incomplete*: a key absent from it is unknown rather than -1, and a key condition
//! on an unknown key is refused with POLICY_VIOLATION (never answered wrongly). Keys in the
//! index keep being updated and checked; `sluice.expected.offset` is unaffected; appends
//! without key conditions are never refused. A restart (or switching the config off and on)
//! rebuilds the index and makes it complete again if it then fits. A batch whose records
//! cannot be read during a rebuild also makes the index incomplete.
//!
//! **Cost.** Topics without the config decode nothing (the partition holds no index). On a
//! conditional topic every append walks its records (decompressing a compressed batch once,
//! under the topic's decompression cap) under the partition lock; nothing is allocated per
//! record but new index entries.
//!
//! All of it runs under the partition's lock, after the idempotent-duplicate check, so the
//! check and the append are one atomic step (a retried duplicate gets its original offsets).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use kafka_protocol::error::ResponseError;
use sluice_storage::{BatchHeader, BatchIter, Log, ProducedBatch};

use crate::error::KafkaError;
use crate::limits;
use crate::record_codec::{self, RecordView};
use crate::topic_config::TopicConfigs;

/// The topic config that turns conditional append on.
pub const TOPIC_CONFIG: &str = "sluice.conditional.append.enable";
/// The record header: the offset this record must get.
pub const EXPECTED_OFFSET: &str = "sluice.expected.offset";
/// The record header: the offset of the key's last record, `-1` for none.
pub const EXPECTED_KEY_OFFSET: &str = "sluice.expected.key.offset";

/// Bytes an index entry is counted for besides its key (hash table slot, boxed key, offset).
pub const ENTRY_OVERHEAD: usize = 48;

/// Index bytes held by every partition of the broker.
static TOTAL_BYTES: AtomicUsize = AtomicUsize::new(0);

/// True if the topic's configs turn conditional append on.
pub fn enabled(configs: &TopicConfigs) -> bool {
    configs
        .0
        .get(TOPIC_CONFIG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The conditions one record carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditions {
    pub expected_offset: Option<i64>,
    pub expected_key_offset: Option<i64>,
}

impl Conditions {
    pub fn any(&self) -> bool {
        self.expected_offset.is_some() || self.expected_key_offset.is_some()
    }
}

/// Parses a plain ASCII decimal: an optional `-`, then 1 to 19 digits; no sign `+`, no
/// spaces, no leading zeros beyond a single `0`, no `-0`. Overflow is `None`. Every value has
/// one spelling: what parses prints back as the same bytes (fuzzed).
pub fn parse_decimal(v: &[u8]) -> Option<i64> {
    let (negative, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let leading_zero = digits.first() == Some(&b'0') && (digits.len() > 1 || negative);
    if digits.is_empty() || digits.len() > 19 || leading_zero {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

/// Reads the conditions of one record's headers (other headers are skipped without a copy).
pub fn record_conditions(record: &RecordView<'_>) -> Result<Conditions, String> {
    let mut c = Conditions::default();
    for (name, value) in record.headers() {
        let (slot, min) = if name == EXPECTED_OFFSET.as_bytes() {
            (&mut c.expected_offset, 0)
        } else if name == EXPECTED_KEY_OFFSET.as_bytes() {
            (&mut c.expected_key_offset, -1)
        } else {
            continue;
        };
        let label = String::from_utf8_lossy(name);
        if slot.is_some() {
            return Err(format!(
                "sluice: header {label} appears twice on one record"
            ));
        }
        let value = value.ok_or_else(|| format!("sluice: header {label} has a null value"))?;
        let n = parse_decimal(value).filter(|n| *n >= min).ok_or_else(|| {
            format!(
                "sluice: header {label} must be a decimal integer >= {min}, got {:?}",
                String::from_utf8_lossy(&value[..value.len().min(32)])
            )
        })?;
        *slot = Some(n);
    }
    if c.expected_key_offset.is_some() && record.key.is_none() {
        return Err(format!(
            "sluice: header {EXPECTED_KEY_OFFSET} on a record without a key"
        ));
    }
    Ok(c)
}

/// A key for messages: lossy UTF-8, at most 64 bytes shown.
fn show_key(key: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&key[..key.len().min(64)]);
    if key.len() > 64 {
        format!("{shown:?}...")
    } else {
        format!("{shown:?}")
    }
}

/// What a key's last offset is, as far as the index knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOffset {
    /// The offset of its last record, or -1 for none.
    Known(i64),
    /// Not in an incomplete index.
    Unknown,
}

/// The per-partition key → last offset index (see the module doc).
#[derive(Debug)]
pub struct KeyIndex {
    keys: HashMap<Box<[u8]>, i64>,
    /// Bytes counted for the entries (keys + [`ENTRY_OVERHEAD`] each).
    bytes: usize,
    /// Every key with a record in the log is in the index.
    complete: bool,
    /// The log must be scanned again before the index is used (an append failed after the
    /// index took its records, or the log assigned other offsets than predicted).
    stale: bool,
    /// The log start offset when entries below it were last dropped.
    pruned_below: i64,
    max_bytes: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::with_limit(limits::CONDITIONAL_KEY_INDEX_MAX_BYTES)
    }
}

impl Drop for KeyIndex {
    fn drop(&mut self) {
        TOTAL_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A refused append's error, with the index of the refused record in the record set.
fn refuse(error: ResponseError, record: usize, message: String) -> KafkaError {
    KafkaError::new(error, message).with_record_index(i32::try_from(record).unwrap_or(i32::MAX))
}

impl KeyIndex {
    /// An empty, complete index holding at most `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        KeyIndex {
            keys: HashMap::new(),
            bytes: 0,
            complete: true,
            stale: false,
            pruned_below: 0,
            max_bytes,
        }
    }

    /// Builds the index of `log` by scanning it from its start offset.
    pub fn build(log: &Log) -> Self {
        let mut index = KeyIndex::default();
        index.rebuild(log);
        index
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The last offset of `key` in a log starting at `log_start`.
    pub fn lookup(&self, key: &[u8], log_start: i64) -> KeyOffset {
        match self.keys.get(key) {
            Some(&o) if o >= log_start => KeyOffset::Known(o),
            // Its last record was removed by retention or DeleteRecords.
            Some(_) => KeyOffset::Known(-1),
            None if self.complete => KeyOffset::Known(-1),
            None => KeyOffset::Unknown,
        }
    }

    fn clear(&mut self) {
        TOTAL_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        self.keys = HashMap::new();
        self.bytes = 0;
        self.complete = true;
        self.stale = false;
    }

    /// Drops the entries below the log start (they read as -1 anyway), at most once per log
    /// start offset; run when the index is full.
    fn prune(&mut self, log_start: i64) {
        if log_start <= self.pruned_below {
            return;
        }
        self.pruned_below = log_start;
        let mut freed = 0;
        self.keys.retain(|k, o| {
            let keep = *o >= log_start;
            if !keep {
                freed += k.len() + ENTRY_OVERHEAD;
            }
            keep
        });
        self.bytes -= freed;
        TOTAL_BYTES.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Sets `key`'s last offset (`None`: a tombstone, the key is removed); returns the previous
    /// value. A new key that does not fit makes the index incomplete instead.
    fn set(&mut self, key: &[u8], offset: Option<i64>, log_start: i64) -> Option<i64> {
        if let Some(slot) = self.keys.get_mut(key) {
            let prev = *slot;
            match offset {
                Some(o) => *slot = o,
                None => self.remove(key),
            }
            return Some(prev);
        }
        let o = offset?;
        let cost = key.len().saturating_add(ENTRY_OVERHEAD);
        if !self.fits(cost) {
            self.prune(log_start);
            if !self.fits(cost) {
                if self.complete {
                    tracing::warn!(
                        keys = self.keys.len(),
                        bytes = self.bytes,
                        "conditional append: the key index of a partition is full; key conditions on keys not in it are refused until a restart"
                    );
                }
                self.complete = false;
                return None;
            }
        }
        self.keys.insert(key.into(), o);
        self.bytes += cost;
        TOTAL_BYTES.fetch_add(cost, Ordering::Relaxed);
        None
    }

    fn fits(&self, cost: usize) -> bool {
        self.bytes.saturating_add(cost) <= self.max_bytes
            && TOTAL_BYTES.load(Ordering::Relaxed).saturating_add(cost)
                <= limits::CONDITIONAL_KEY_INDEX_TOTAL_BYTES
    }

    fn remove(&mut self, key: &[u8]) {
        if self.keys.remove(key).is_some() {
            let cost = key.len() + ENTRY_OVERHEAD;
            self.bytes -= cost;
            TOTAL_BYTES.fetch_sub(cost, Ordering::Relaxed);
        }
    }

    /// Puts `key` back to `prev` (undoing [`KeyIndex::set`]).
    fn restore(&mut self, key: &[u8], prev: Option<i64>, log_start: i64) {
        match prev {
            Some(o) => {
                self.set(key, Some(o), log_start);
            }
            None => self.remove(key),
        }
    }

    /// Scans the whole log (from its start offset) into a fresh index.
    pub fn rebuild(&mut self, log: &Log) {
        self.clear();
        let start = log.log_start_offset();
        self.pruned_below = start;
        let end = log.log_end_offset();
        let cap = decompression_cap(log);
        let mut scratch = Vec::new();
        let mut at = start;
        while at < end {
            let loaded = match log.read(at, 1 << 20) {
                Ok(Some(slice)) => slice.load(),
                Ok(None) => break,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let bytes = match loaded {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "conditional append: reading the log for the key index failed; the index is incomplete");
                    self.complete = false;
                    return;
                }
            };
            let mut next = at;
            for (pos, h) in BatchIter::new(&bytes) {
                next = next.max(h.next_offset());
                if h.is_control() || h.next_offset() <= start {
                    continue;
                }
                let batch = bytes.get(pos..pos.saturating_add(h.total_len()));
                let ok = batch.is_some_and(|batch| {
                    self.index_stored_batch(batch, &h, start, cap, &mut scratch)
                        .is_ok()
                });
                if !ok {
                    tracing::warn!(
                        base_offset = h.base_offset,
                        "conditional append: a stored batch's records cannot be read; the key index is incomplete"
                    );
                    self.complete = false;
                }
            }
            if next <= at {
                break;
            }
            at = next;
        }
    }

    fn index_stored_batch(
        &mut self,
        batch: &[u8],
        h: &BatchHeader,
        start: i64,
        cap: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<(), String> {
        let section =
            record_codec::records_section(batch, h, cap, scratch).map_err(|e| e.to_string())?;
        for r in record_codec::records(section, h.records_count) {
            let r = r?;
            let offset = h.base_offset.saturating_add(r.offset_delta);
            if offset < start {
                continue;
            }
            if let Some(key) = r.key {
                self.set(key, r.value.map(|_| offset), start);
            }
        }
        Ok(())
    }

    /// Checks the conditions of a record set about to be appended to `log` and enters its
    /// keys at the offsets the append will give them. On a refusal nothing is changed. The
    /// caller appends next and reports the outcome with [`KeyIndex::appended`].
    /// Returns the base offset the append must get (for [`KeyIndex::appended`]).
    pub fn check_and_apply(
        &mut self,
        log: &Log,
        buf: &[u8],
        batches: &[ProducedBatch],
    ) -> Result<i64, KafkaError> {
        if self.stale {
            self.rebuild(log);
        }
        let log_start = log.log_start_offset();
        let cap = decompression_cap(log);
        // Sections first (compressed batches inflated once each), so the walk below can keep
        // borrowed keys for the undo list.
        let mut owned: Vec<Vec<u8>> = Vec::new();
        for b in batches {
            if b.header.compression() != 0 && !b.header.is_control() {
                let batch = batch_bytes(buf, b);
                let mut scratch = Vec::new();
                record_codec::records_section(batch, &b.header, cap, &mut scratch).map_err(
                    |e| {
                        KafkaError::new(
                            ResponseError::InvalidRecord,
                            format!("sluice: conditional append cannot read the batch: {e}"),
                        )
                    },
                )?;
                owned.push(scratch);
            }
        }
        let mut undo: Vec<(&[u8], Option<i64>)> = Vec::new();
        let complete = self.complete;
        let base = log.log_end_offset();
        let result = self.walk(buf, batches, &owned, base, log_start, &mut undo);
        if let Err(e) = result {
            // Completeness as before; a key that cannot be put back (the broker-wide budget
            // was taken meanwhile) makes it incomplete again.
            self.complete = complete;
            for (key, prev) in undo.into_iter().rev() {
                self.restore(key, prev, log_start);
            }
            return Err(e);
        }
        Ok(base)
    }

    fn walk<'a>(
        &mut self,
        buf: &'a [u8],
        batches: &[ProducedBatch],
        owned: &'a [Vec<u8>],
        log_end: i64,
        log_start: i64,
        undo: &mut Vec<(&'a [u8], Option<i64>)>,
    ) -> Result<(), KafkaError> {
        let mut owned = owned.iter();
        let mut base = log_end;
        let mut index = 0usize;
        for b in batches {
            let h = &b.header;
            let batch_base = base;
            base = batch_base
                .checked_add(i64::from(h.last_offset_delta))
                .and_then(|o| o.checked_add(1))
                .ok_or_else(|| {
                    KafkaError::new(ResponseError::InvalidRecord, "sluice: offsets overflow")
                })?;
            if h.is_control() {
                continue;
            }
            let section: &'a [u8] = if h.compression() != 0 {
                owned.next().map(Vec::as_slice).unwrap_or_default()
            } else {
                batch_bytes(buf, b)
                    .get(record_codec::BATCH_HEADER_LEN..h.total_len())
                    .unwrap_or_default()
            };
            let mut records = record_codec::records(section, h.records_count);
            for r in records.by_ref() {
                let r = r.map_err(|e| {
                    refuse(
                        ResponseError::InvalidRecord,
                        index,
                        format!("sluice: conditional append cannot read record {index}: {e}"),
                    )
                })?;
                let offset = batch_base.saturating_add(r.offset_delta);
                let c = record_conditions(&r)
                    .map_err(|e| refuse(ResponseError::InvalidRecord, index, e))?;
                if h.is_transactional() {
                    // The key index answers for appended records; a transaction's records may
                    // still abort (and the cleaner later removes them), so the index would
                    // disagree with what read_committed readers see and with a rebuild.
                    return Err(refuse(
                        ResponseError::InvalidRecord,
                        index,
                        "sluice: a topic with sluice.conditional.append.enable=true takes no transactional batches".into(),
                    ));
                }
                if let Some(expected) = c.expected_offset {
                    if expected != offset {
                        return Err(refuse(
                            ResponseError::InvalidRecord,
                            index,
                            format!("sluice: expected offset {expected}, log end {offset}"),
                        ));
                    }
                }
                if let (Some(expected), Some(key)) = (c.expected_key_offset, r.key) {
                    match self.lookup(key, log_start) {
                        KeyOffset::Known(actual) if actual == expected => {}
                        KeyOffset::Known(actual) => {
                            return Err(refuse(
                                ResponseError::InvalidRecord,
                                index,
                                format!(
                                    "sluice: expected key offset {expected} for key {}, actual {actual}",
                                    show_key(key)
                                ),
                            ))
                        }
                        KeyOffset::Unknown => {
                            return Err(refuse(
                                ResponseError::PolicyViolation,
                                index,
                                format!(
                                    "sluice: the key index of this partition is full; the last offset of key {} is unknown",
                                    show_key(key)
                                ),
                            ))
                        }
                    }
                }
                if let Some(key) = r.key {
                    let prev = self.set(key, r.value.map(|_| offset), log_start);
                    undo.push((key, prev));
                }
                index += 1;
            }
            if records.remaining() != 0 {
                return Err(refuse(
                    ResponseError::InvalidRecord,
                    index,
                    format!(
                        "sluice: batch declares {} records but bytes remain after them",
                        h.records_count
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The outcome of the append that followed a successful [`KeyIndex::check_and_apply`]:
    /// `Some(first offset)` it got, or `None` if it failed. Unless it got the predicted
    /// offsets, the index is rebuilt from the log before its next use.
    pub fn appended(&mut self, predicted_base: i64, first_offset: Option<i64>) {
        if first_offset != Some(predicted_base) {
            self.stale = true;
        }
    }
}

fn batch_bytes<'a>(buf: &'a [u8], b: &ProducedBatch) -> &'a [u8] {
    buf.get(b.position..b.position.saturating_add(b.header.total_len()))
        .unwrap_or_default()
}

/// How far a batch of this log is inflated (the topic's `max.message.bytes`, capped).
fn decompression_cap(log: &Log) -> usize {
    log.config()
        .max_message_bytes
        .min(limits::MAX_DECOMPRESSED_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_codec::{encode, RawRecord};
    use bytes::Bytes;
    use sluice_storage::LogConfig;

    fn rec(key: Option<&str>, value: Option<&str>, headers: &[(&str, &str)]) -> RawRecord {
        RawRecord {
            offset: 0,
            timestamp: 1_000,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        Bytes::copy_from_slice(k.as_bytes()),
                        Some(Bytes::copy_from_slice(v.as_bytes())),
                    )
                })
                .collect(),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        log: Log,
        index: KeyIndex,
    }

    impl Fixture {
        fn new(limit: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(
                &dir.path().join("t-0"),
                LogConfig::default(),
                0,
                &mut |_: &BatchHeader| {},
            )
            .unwrap();
            Fixture {
                _dir: dir,
                log,
                index: KeyIndex::with_limit(limit),
            }
        }

        /// Checks and appends like `Replica::append_as_leader`; the base offset, or the error.
        fn append(&mut self, records: &[RawRecord]) -> Result<i64, KafkaError> {
            let buf = encode(records);
            let batches = self.log.validate(&buf, 1_000).unwrap();
            let predicted = self.index.check_and_apply(&self.log, &buf, &batches)?;
            let info = self.log.append(&buf, &batches, 0, 1_000).unwrap();
            self.index.appended(predicted, Some(info.first_offset));
            Ok(info.first_offset)
        }
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"-1"), Some(-1));
        assert_eq!(parse_decimal(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"-01",
            b"1e3",
            b"9223372036854775808",
            b"99999999999999999999",
            b"\xff",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expected_offset_hits_and_misses() {
        let mut f = Fixture::new(1 << 20);
        assert_eq!(
            f.append(&[rec(None, Some("a"), &[(EXPECTED_OFFSET, "0")])]),
            Ok(0)
        );
        assert_eq!(f.append(&[rec(None, Some("b"), &[])]), Ok(1));
        let e = f
            .append(&[rec(None, Some("c"), &[(EXPECTED_OFFSET, "1")])])
            .unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidRecord.code());
        assert_eq!(e.message, "sluice: expected offset 1, log end 2");
        assert_eq!(e.record_index, Some(0));
        // A later record of a batch: its own offset.
        let e = f
            .append(&[
                rec(None, Some("d"), &[]),
                rec(None, Some("e"), &[(EXPECTED_OFFSET, "2")]),
            ])
            .unwrap_err();
        assert_eq!(e.message, "sluice: expected offset 2, log end 3");
        assert_eq!(e.record_index, Some(1));
        assert_eq!(
            f.log.log_end_offset(),
            2,
            "nothing of a refused batch is appended"
        );
        assert_eq!(
            f.append(&[
                rec(None, Some("d"), &[(EXPECTED_OFFSET, "2")]),
                rec(None, Some("e"), &[(EXPECTED_OFFSET, "3")]),
            ]),
            Ok(2)
        );
    }

    #[test]
    fn key_offsets_hit_miss_and_none() {
        let mut f = Fixture::new(1 << 20);
        let k = |v: &str| rec(Some("order-7"), Some("x"), &[(EXPECTED_KEY_OFFSET, v)]);
        assert_eq!(f.append(&[k("-1")]), Ok(0));
        let e = f.append(&[k("-1")]).unwrap_err();
        assert_eq!(
            e.message,
            "sluice: expected key offset -1 for key \"order-7\", actual 0"
        );
        assert_eq!(f.append(&[rec(Some("other"), Some("y"), &[])]), Ok(1));
        assert_eq!(f.append(&[k("0")]), Ok(2));
        // Two records of the key in one batch: the second names the first's offset.
        assert_eq!(
            f.append(&[
                k("2"),
                rec(Some("order-7"), Some("x"), &[(EXPECTED_KEY_OFFSET, "3")])
            ]),
            Ok(3)
        );
        // A refused batch leaves the index as it was, even for keys it touched before the
        // refused record.
        let e = f
            .append(&[rec(Some("other"), Some("z"), &[]), k("0")])
            .unwrap_err();
        assert!(e.message.ends_with("actual 4"), "{}", e.message);
        assert_eq!(f.index.lookup(b"other", 0), KeyOffset::Known(1));
        // A tombstone makes the key read as never written.
        assert_eq!(f.append(&[rec(Some("order-7"), None, &[])]), Ok(5));
        assert_eq!(f.index.lookup(b"order-7", 0), KeyOffset::Known(-1));
        assert_eq!(f.append(&[k("-1")]), Ok(6));
        // Rebuilt from the log: the same answers.
        let rebuilt = KeyIndex::build(&f.log);
        assert!(rebuilt.is_complete());
        for key in [&b"order-7"[..], b"other", b"none"] {
            assert_eq!(rebuilt.lookup(key, 0), f.index.lookup(key, 0), "{key:?}");
        }
        assert_eq!(rebuilt.lookup(b"order-7", 0), KeyOffset::Known(6));
    }

    #[test]
    fn malformed_conditions_are_refused() {
        let mut f = Fixture::new(1 << 20);
        for (records, needle) in [
            (
                vec![rec(None, Some("x"), &[(EXPECTED_KEY_OFFSET, "-1")])],
                "without a key",
            ),
            (
                vec![rec(None, Some("x"), &[(EXPECTED_OFFSET, "-1")])],
                "must be a decimal integer >= 0",
            ),
            (
                vec![rec(Some("k"), Some("x"), &[(EXPECTED_KEY_OFFSET, "-2")])],
                ">= -1",
            ),
            (
                vec![rec(Some("k"), Some("x"), &[(EXPECTED_OFFSET, "zero")])],
                "\"zero\"",
            ),
            (
                vec![rec(
                    Some("k"),
                    Some("x"),
                    &[(EXPECTED_OFFSET, "0"), (EXPECTED_OFFSET, "0")],
                )],
                "twice",
            ),
        ] {
            let e = f.append(&records).unwrap_err();
            assert_eq!(e.code, ResponseError::InvalidRecord.code());
            assert!(e.message.contains(needle), "{} !~ {needle}", e.message);
        }
        // Both conditions on one record: both must hold.
        assert_eq!(
            f.append(&[rec(
                Some("k"),
                Some("x"),
                &[(EXPECTED_OFFSET, "0"), (EXPECTED_KEY_OFFSET, "-1")]
            )]),
            Ok(0)
        );
        assert!(f
            .append(&[rec(
                Some("k"),
                Some("x"),
                &[(EXPECTED_OFFSET, "1"), (EXPECTED_KEY_OFFSET, "-1")]
            )])
            .is_err());
    }

    #[test]
    fn retention_makes_a_key_read_as_none() {
        let mut f = Fixture::new(1 << 20);
        f.append(&[rec(Some("a"), Some("1"), &[])]).unwrap();
        f.append(&[rec(Some("b"), Some("1"), &[])]).unwrap();
        f.log.delete_records_before(1).unwrap();
        assert_eq!(f.index.lookup(b"a", 1), KeyOffset::Known(-1));
        assert_eq!(f.index.lookup(b"b", 1), KeyOffset::Known(1));
        let rebuilt = KeyIndex::build(&f.log);
        assert_eq!(rebuilt.lookup(b"a", 1), KeyOffset::Known(-1));
        assert_eq!(rebuilt.lookup(b"b", 1), KeyOffset::Known(1));
        assert_eq!(
            f.append(&[rec(Some("a"), Some("2"), &[(EXPECTED_KEY_OFFSET, "-1")])]),
            Ok(2)
        );
    }

    #[test]
    fn a_full_index_refuses_unknown_keys_but_never_answers_wrongly() {
        let limit = 2 * (ENTRY_OVERHEAD + 2);
        let mut f = Fixture::new(limit);
        f.append(&[rec(Some("k1"), Some("1"), &[])]).unwrap();
        f.append(&[rec(Some("k2"), Some("1"), &[])]).unwrap();
        assert!(f.index.is_complete());
        // k3 does not fit: appended, not indexed; the index is incomplete.
        f.append(&[rec(Some("k3"), Some("1"), &[])]).unwrap();
        assert!(!f.index.is_complete());
        assert!(f.index.bytes() <= limit);
        let e = f
            .append(&[rec(Some("k3"), Some("2"), &[(EXPECTED_KEY_OFFSET, "2")])])
            .unwrap_err();
        assert_eq!(e.code, ResponseError::PolicyViolation.code());
        let e = f
            .append(&[rec(Some("k4"), Some("2"), &[(EXPECTED_KEY_OFFSET, "-1")])])
            .unwrap_err();
        assert_eq!(e.code, ResponseError::PolicyViolation.code());
        // Keys in the index still work, and so do offset conditions.
        assert_eq!(
            f.append(&[rec(Some("k1"), Some("2"), &[(EXPECTED_KEY_OFFSET, "0")])]),
            Ok(3)
        );
        assert_eq!(
            f.append(&[rec(None, Some("2"), &[(EXPECTED_OFFSET, "4")])]),
            Ok(4)
        );
        // Retention frees the entries below the log start: new keys fit again (still
        // incomplete: k3 was missed).
        f.log.delete_records_before(4).unwrap();
        f.append(&[rec(Some("k5"), Some("1"), &[])]).unwrap();
        assert_eq!(f.index.lookup(b"k5", 4), KeyOffset::Known(5));
        assert_eq!(f.index.lookup(b"k3", 4), KeyOffset::Unknown);
    }

    #[test]
    fn a_failed_append_makes_the_index_rebuild() {
        let mut f = Fixture::new(1 << 20);
        let buf = encode(&[rec(Some("a"), Some("1"), &[])]);
        let batches = f.log.validate(&buf, 1_000).unwrap();
        f.index.check_and_apply(&f.log, &buf, &batches).unwrap();
        assert_eq!(f.index.lookup(b"a", 0), KeyOffset::Known(0));
        f.index.appended(0, None);
        // The next check rebuilds from the log, where "a" never arrived.
        assert_eq!(
            f.append(&[rec(Some("a"), Some("1"), &[(EXPECTED_KEY_OFFSET, "-1")])]),
            Ok(0)
        );
    }

    #[test]
    fn compressed_and_multi_batch_record_sets() {
        use crate::compression::{Codec, Levels};
        let mut f = Fixture::new(1 << 20);
        let plain = encode(&[
            rec(Some("a"), Some("1"), &[(EXPECTED_KEY_OFFSET, "-1")]),
            rec(Some("b"), Some("1"), &[(EXPECTED_OFFSET, "1")]),
        ]);
        let h = BatchHeader::parse(&plain).unwrap();
        let mut zipped = Vec::new();
        record_codec::recompress(
            &plain,
            &h,
            Codec::Zstd,
            Levels::DEFAULT,
            1 << 20,
            &mut Vec::new(),
            &mut zipped,
        )
        .unwrap();
        // Two batches in one record set: the second's condition sees the first's records.
        let second = encode(&[rec(Some("a"), Some("2"), &[(EXPECTED_KEY_OFFSET, "0")])]);
        let mut buf = zipped.clone();
        buf.extend_from_slice(&second);
        let batches = f.log.validate(&buf, 1_000).unwrap();
        assert_eq!(batches.len(), 2);
        f.index.check_and_apply(&f.log, &buf, &batches).unwrap();
        let info = f.log.append(&buf, &batches, 0, 1_000).unwrap();
        f.index.appended(0, Some(info.first_offset));
        assert_eq!(f.index.lookup(b"a", 0), KeyOffset::Known(2));
        assert_eq!(f.index.lookup(b"b", 0), KeyOffset::Known(1));
        let rebuilt = KeyIndex::build(&f.log);
        assert_eq!(rebuilt.lookup(b"a", 0), KeyOffset::Known(2));
        assert_eq!(rebuilt.lookup(b"b", 0), KeyOffset::Known(1));
    }
}
