//! Which dead letters a person has already redriven or discarded (`sluice dlq`), shared by the
//! broker (the depth metric) and the CLI (which writes it).
//!
//! Stored as an ordinary committed offset of the consumer group [`DLQ_TOOL_GROUP`] on each DLQ
//! partition: every offset below the committed offset is handled, and the commit's metadata
//! lists handled ranges above it (`{"handled":[[first,last],...]}`), because a person may
//! redrive single records out of order. Kafka tools then show the DLQ's backlog as this
//! group's lag.
//!
//! Any client can commit for that group, so the metadata is hostile input: it is kept as
//! ranges (never expanded into offsets), every range is clipped and merged with checked
//! arithmetic, and every query costs O(number of ranges), never O(offsets spanned). A commit
//! of `[[i64::MIN, i64::MAX]]` is one range like any other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The consumer group whose commits record handled dead letters.
pub const DLQ_TOOL_GROUP: &str = "sluice-dlq";

/// Ranges read from one commit's metadata at most; the rest are ignored. The broker bounds
/// commit metadata at 4096 bytes (`offset.metadata.max.bytes`), which holds far fewer.
pub const MAX_DECODED_RANGES: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandledOffsets {
    /// Every offset below this is handled.
    pub below: i64,
    /// Handled offsets above `below`: disjoint, non-adjacent ranges `first -> last`
    /// (inclusive), all with `first > below`.
    above: BTreeMap<i64, i64>,
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    handled: Vec<(i64, i64)>,
}

impl HandledOffsets {
    /// From a commit's offset and metadata; unreadable metadata counts as empty, reversed
    /// ranges are skipped, ranges below the offset are clipped.
    pub fn decode(offset: i64, metadata: Option<&str>) -> Self {
        let mut h = HandledOffsets {
            below: offset.max(0),
            above: BTreeMap::new(),
        };
        // librdkafka (confluent-kafka) commits metadata with a trailing NUL byte.
        if let Some(Ok(m)) = metadata
            .map(|m| m.trim_end_matches('\0'))
            .filter(|m| !m.is_empty())
            .map(serde_json::from_str::<Metadata>)
        {
            for (first, last) in m.handled.into_iter().take(MAX_DECODED_RANGES) {
                h.mark_range(first, last);
            }
        }
        h
    }

    /// Handled ranges above [`HandledOffsets::below`], ascending, as (first, last) inclusive.
    pub fn ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.above.iter().map(|(f, l)| (*f, *l))
    }

    pub fn is_handled(&self, offset: i64) -> bool {
        offset < self.below
            || self
                .above
                .range(..=offset)
                .next_back()
                .is_some_and(|(_, last)| offset <= *last)
    }

    pub fn mark(&mut self, offset: i64) {
        self.mark_range(offset, offset);
    }

    /// Marks `first..=last` handled (nothing if reversed). O(log n + ranges merged).
    pub fn mark_range(&mut self, first: i64, last: i64) {
        let first = first.max(self.below);
        if last < first {
            return;
        }
        let (mut first, mut last) = (first, last);
        // The range that starts at or before `first` and touches it (adjacent counts).
        if let Some((&f, &l)) = self.above.range(..=first).next_back() {
            if l.saturating_add(1) >= first {
                first = f;
                last = last.max(l);
                self.above.remove(&f);
            }
        }
        // Ranges starting inside `first..=last + 1` are swallowed.
        loop {
            let upper = last.saturating_add(1);
            let Some((&f, &l)) = self.above.range(first..=upper).next() else {
                break;
            };
            last = last.max(l);
            self.above.remove(&f);
        }
        if first <= self.below {
            // Reaches the committed offset: fold into it.
            self.below = self.below.max(last.saturating_add(1));
        } else {
            self.above.insert(first, last);
        }
        self.normalise();
    }

    /// Folds a range starting at `below` into it and drops ranges below it.
    fn normalise(&mut self) {
        loop {
            let Some((&f, &l)) = self.above.first_key_value() else {
                return;
            };
            if f > self.below {
                return;
            }
            self.above.remove(&f);
            if l >= self.below {
                self.below = l.saturating_add(1);
            }
        }
    }

    /// Everything below `offset` is handled (records retention removed count as handled).
    pub fn mark_below(&mut self, offset: i64) {
        if offset > self.below {
            self.below = offset;
            // A range straddling the new `below` keeps its part above it.
            if let Some((&f, &l)) = self.above.range(..offset).next_back() {
                if l >= offset {
                    self.above.remove(&f);
                    self.above.insert(offset, l);
                }
            }
            self.normalise();
        }
    }

    /// Adds `other`'s handled offsets (a commit made by someone else meanwhile).
    pub fn merge(&mut self, other: &HandledOffsets) {
        self.mark_below(other.below);
        for (first, last) in other.ranges() {
            self.mark_range(first, last);
        }
    }

    /// The commit to write: offset and metadata.
    pub fn encode(&self) -> (i64, String) {
        let text = if self.above.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&Metadata {
                handled: self.ranges().collect(),
            })
            .unwrap_or_default()
        };
        (self.below, text)
    }

    /// Offsets in `[start, end)` that are not handled. O(ranges), saturating.
    pub fn unhandled_between(&self, start: i64, end: i64) -> i64 {
        let from = start.max(self.below);
        if end <= from {
            return 0;
        }
        // i128: `end - from` of two arbitrary i64 cannot overflow it.
        let mut unhandled = i128::from(end) - i128::from(from);
        for (first, last) in self.ranges() {
            if first >= end {
                break;
            }
            let lo = first.max(from);
            let hi = last.min(end - 1);
            if hi >= lo {
                unhandled -= i128::from(hi) - i128::from(lo) + 1;
            }
        }
        i64::try_from(unhandled.max(0)).unwrap_or(i64::MAX)
    }

    /// The lowest offset at or after `from` that is not handled. O(log n + ranges skipped).
    pub fn next_unhandled(&self, from: i64) -> i64 {
        let mut o = from.max(self.below);
        if let Some((_, &l)) = self.above.range(..=o).next_back() {
            if l >= o {
                o = l.saturating_add(1);
            }
        }
        // Ranges are non-adjacent, so one step past a range is unhandled.
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answers as the naive offset-by-offset model, on small offsets.
    fn model_check(h: &HandledOffsets, lo: i64, hi: i64) {
        for start in lo..hi {
            for end in start..hi {
                let naive = (start..end)
                    .filter(|o| !h.is_handled(*o) && *o >= h.below)
                    .filter(|o| *o >= start.max(h.below))
                    .count() as i64;
                assert_eq!(
                    h.unhandled_between(start, end),
                    naive,
                    "{start}..{end} {h:?}"
                );
            }
            let next = (start.max(h.below)..).find(|o| !h.is_handled(*o)).unwrap();
            assert_eq!(h.next_unhandled(start), next);
        }
        // Invariants of the representation.
        let mut prev: Option<i64> = None;
        for (f, l) in h.ranges() {
            assert!(f > h.below && f <= l, "{h:?}");
            if let Some(p) = prev {
                assert!(
                    f > p.saturating_add(1),
                    "adjacent or overlapping ranges {h:?}"
                );
            }
            prev = Some(l);
        }
    }

    #[test]
    fn round_trip_and_counts() {
        let mut h = HandledOffsets::default();
        h.mark(3);
        h.mark(4);
        h.mark(7);
        assert_eq!(h.unhandled_between(0, 10), 7);
        let (offset, meta) = h.encode();
        assert_eq!(offset, 0);
        assert_eq!(meta, r#"{"handled":[[3,4],[7,7]]}"#);
        let back = HandledOffsets::decode(offset, Some(&meta));
        assert_eq!(back, h);
        h.mark(0);
        h.mark(1);
        h.mark(2);
        assert_eq!(
            h.below, 5,
            "contiguous marks fold into the committed offset"
        );
        assert!(h.is_handled(7) && !h.is_handled(6));
        assert_eq!(h.unhandled_between(0, 10), 4);
        assert_eq!(HandledOffsets::decode(2, Some("garbage")).below, 2);
        let nul = HandledOffsets::decode(0, Some("{\"handled\":[[3,4],[7,7]]}\0"));
        assert_eq!(nul, back, "librdkafka's trailing NUL");
        model_check(&h, 0, 12);
    }

    #[test]
    fn hostile_ranges_cost_nothing() {
        // The commit from the issue: `last - first` overflowed and the depth loop ran 2^63 times.
        let h = HandledOffsets::decode(0, Some(r#"{"handled":[[-9223372036854775808,0]]}"#));
        assert_eq!(h.below, 1);
        assert_eq!(h.unhandled_between(0, 10), 9);
        let h = HandledOffsets::decode(
            5,
            Some(r#"{"handled":[[-9223372036854775808,9223372036854775807]]}"#),
        );
        assert_eq!(h.below, i64::MAX);
        assert_eq!(h.unhandled_between(i64::MIN, i64::MAX), 0);
        assert!(h.is_handled(i64::MAX - 1));
        let h = HandledOffsets::decode(
            0,
            Some(
                r#"{"handled":[[10,9223372036854775807],[9223372036854775807,9223372036854775807]]}"#,
            ),
        );
        assert_eq!(h.unhandled_between(0, i64::MAX), 10);
        assert_eq!(h.unhandled_between(i64::MIN, i64::MAX), 10);
        assert_eq!(h.next_unhandled(10), i64::MAX);
        // Reversed, negative-offset and huge commits.
        let h = HandledOffsets::decode(i64::MIN, Some(r#"{"handled":[[5,4],[-3,-1]]}"#));
        assert_eq!(h, HandledOffsets::default());
        assert_eq!(h.unhandled_between(i64::MIN, i64::MAX), i64::MAX);
        let h = HandledOffsets::decode(i64::MAX, Some(r#"{"handled":[[1,2]]}"#));
        assert_eq!(h.unhandled_between(0, i64::MAX), 0);
        let h = HandledOffsets::decode(0, Some(r#"{"handled":[[1, 99999999999999999999]]}"#));
        assert_eq!(h, HandledOffsets::default(), "unparseable: empty");
    }

    #[test]
    fn many_ranges_are_bounded() {
        let ranges: Vec<String> = (0..10_000)
            .map(|i| format!("[{},{}]", i * 3 + 1, i * 3 + 1))
            .collect();
        let meta = format!(r#"{{"handled":[{}]}}"#, ranges.join(","));
        let h = HandledOffsets::decode(0, Some(&meta));
        assert_eq!(h.ranges().count(), MAX_DECODED_RANGES);
    }

    #[test]
    fn merge_and_mark_below() {
        let mut h = HandledOffsets::default();
        h.mark_range(5, 10);
        h.mark_range(20, 30);
        h.mark_below(7);
        assert_eq!(h.below, 11);
        h.mark_range(12, 19);
        assert_eq!(h.ranges().collect::<Vec<_>>(), vec![(12, 30)]);
        h.mark(11);
        assert_eq!((h.below, h.ranges().count()), (31, 0));
        let mut a = HandledOffsets::default();
        a.mark(4);
        let mut b = HandledOffsets::default();
        b.mark_below(3);
        b.mark_range(6, 8);
        a.merge(&b);
        assert_eq!(a.below, 3);
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(4, 4), (6, 8)]);
        model_check(&a, 0, 12);
        a.mark(5);
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(4, 8)]);
        a.mark(3);
        assert_eq!((a.below, a.ranges().count()), (9, 0));
    }

    #[test]
    fn matches_offset_model() {
        // A small deterministic pseudo-random walk against a set of offsets.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut h = HandledOffsets::default();
            let mut set = std::collections::BTreeSet::new();
            let mut below = 0i64;
            for _ in 0..20 {
                match next(3) {
                    0 => {
                        let o = next(40) as i64;
                        h.mark(o);
                        set.insert(o);
                    }
                    1 => {
                        let f = next(40) as i64;
                        let l = f + next(6) as i64;
                        h.mark_range(f, l);
                        set.extend(f..=l);
                    }
                    _ => {
                        let o = next(20) as i64;
                        h.mark_below(o);
                        below = below.max(o);
                    }
                }
                for o in 0..50 {
                    let expect = o < below || set.contains(&o);
                    assert_eq!(h.is_handled(o), expect, "offset {o} {h:?}");
                }
                model_check(&h, 0, 50);
                let (off, meta) = h.encode();
                assert_eq!(HandledOffsets::decode(off, Some(&meta)), h);
            }
        }
    }
}
