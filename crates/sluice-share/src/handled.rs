//! Which dead letters a person has already redriven or discarded (`sluice dlq`), shared by the
//! broker (the depth metric) and the CLI (which writes it).
//!
//! Stored as an ordinary committed offset of the consumer group [`DLQ_TOOL_GROUP`] on each DLQ
//! partition: every offset below the committed offset is handled, and the commit's metadata
//! lists handled ranges above it (`{"handled":[[first,last],...]}`), because a person may
//! redrive single records out of order. Kafka tools then show the DLQ's backlog as this
//! group's lag.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The consumer group whose commits record handled dead letters.
pub const DLQ_TOOL_GROUP: &str = "sluice-dlq";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandledOffsets {
    /// Every offset below this is handled.
    pub below: i64,
    /// Handled offsets at or above `below`.
    pub above: BTreeSet<i64>,
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    handled: Vec<(i64, i64)>,
}

impl HandledOffsets {
    /// From a commit's offset and metadata; unreadable metadata counts as empty.
    pub fn decode(offset: i64, metadata: Option<&str>) -> Self {
        let mut above = BTreeSet::new();
        if let Some(Ok(m)) = metadata
            .filter(|m| !m.is_empty())
            .map(serde_json::from_str::<Metadata>)
        {
            for (first, last) in m.handled {
                // Bounded: a hostile commit cannot make this loop forever.
                if last >= first && last - first < 1_000_000 {
                    above.extend((first..=last).filter(|o| *o >= offset));
                }
            }
        }
        let mut h = HandledOffsets {
            below: offset.max(0),
            above,
        };
        h.normalise();
        h
    }

    fn normalise(&mut self) {
        while self.above.remove(&self.below) {
            self.below += 1;
        }
        let below = self.below;
        self.above.retain(|o| *o >= below);
    }

    pub fn is_handled(&self, offset: i64) -> bool {
        offset < self.below || self.above.contains(&offset)
    }

    pub fn mark(&mut self, offset: i64) {
        if offset >= self.below {
            self.above.insert(offset);
            self.normalise();
        }
    }

    /// Everything below `offset` is handled (records retention removed count as handled).
    pub fn mark_below(&mut self, offset: i64) {
        if offset > self.below {
            self.below = offset;
            self.normalise();
        }
    }

    /// The commit to write: offset and metadata.
    pub fn encode(&self) -> (i64, String) {
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for &o in &self.above {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == o => *last = o,
                _ => runs.push((o, o)),
            }
        }
        let text = if runs.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&Metadata { handled: runs }).unwrap_or_default()
        };
        (self.below, text)
    }

    /// Offsets in `[start, end)` that are not handled.
    pub fn unhandled_between(&self, start: i64, end: i64) -> i64 {
        let from = start.max(self.below);
        if end <= from {
            return 0;
        }
        let handled = self.above.range(from..end).count() as i64;
        end - from - handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_counts() {
        let mut h = HandledOffsets::default();
        h.mark(3);
        h.mark(4);
        h.mark(7);
        assert_eq!(h.unhandled_between(0, 10), 7);
        let (offset, meta) = h.encode();
        assert_eq!(offset, 0);
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
    }
}
