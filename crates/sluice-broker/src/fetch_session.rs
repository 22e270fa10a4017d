//! Incremental fetch sessions (KIP-227), as Kafka's `FetchSessionCache`.
//!
//! A client opens a session with epoch 0 and then sends only what changed (new or moved
//! partitions, forgotten ones) with increasing epochs; the broker remembers the rest and
//! answers only the partitions that have something new: records, an error, or a moved high
//! watermark or log start offset. Epoch -1 closes the session (or asks for none).
//!
//! Plain code, no IO: the fetch handler asks it which partitions to read and tells it what it
//! answered.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;

pub use crate::limits::MAX_FETCH_SESSIONS as MAX_SESSIONS;
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

/// What a session remembers of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPartition {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// What the last response said, to decide whether the next must mention it.
    last_high_watermark: i64,
    last_log_start_offset: i64,
}

/// What a response said about one partition.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
    pub has_error: bool,
}

/// A partition as a request names it.
#[derive(Debug, Clone)]
pub struct RequestedPartition {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
}

#[derive(Debug)]
struct Session {
    epoch: i32,
    partitions: BTreeMap<(String, i32), SessionPartition>,
    last_used: u64,
}

/// How the handler should treat this request.
#[derive(Debug)]
pub enum Plan {
    /// No session: read exactly what the request lists, answer everything.
    Sessionless,
    /// Read these partitions; when `incremental`, answer only the changed ones.
    Session {
        id: i32,
        incremental: bool,
        partitions: Vec<RequestedPartition>,
    },
}

#[derive(Debug, Default)]
pub struct FetchSessions {
    sessions: HashMap<i32, Session>,
    next_id: i32,
    clock: u64,
}

impl FetchSessions {
    /// Resolves a request's session fields. `forgotten` lists (topic, partition) to drop.
    pub fn plan(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: &[RequestedPartition],
        forgotten: &[(String, i32)],
    ) -> Result<Plan, ResponseError> {
        self.clock += 1;
        if epoch == FINAL_EPOCH {
            self.sessions.remove(&session_id);
            return Ok(Plan::Sessionless);
        }
        if epoch == INITIAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            let id = self.new_id();
            let partitions = requested
                .iter()
                .map(|p| {
                    (
                        (p.topic.clone(), p.partition),
                        SessionPartition {
                            fetch_offset: p.fetch_offset,
                            partition_max_bytes: p.partition_max_bytes,
                            last_high_watermark: -1,
                            last_log_start_offset: -1,
                        },
                    )
                })
                .collect();
            if self.sessions.len() >= MAX_SESSIONS {
                // Evict the least recently used session, as Kafka's cache does when full.
                if let Some(oldest) = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(id, _)| *id)
                {
                    self.sessions.remove(&oldest);
                }
            }
            self.sessions.insert(
                id,
                Session {
                    epoch: 1,
                    partitions,
                    last_used: self.clock,
                },
            );
            return Ok(Plan::Session {
                id,
                incremental: false,
                partitions: requested.to_vec(),
            });
        }
        let clock = self.clock;
        let session = self
            .sessions
            .get_mut(&session_id)
            .ok_or(ResponseError::FetchSessionIdNotFound)?;
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.last_used = clock;
        for p in requested {
            let entry = session
                .partitions
                .entry((p.topic.clone(), p.partition))
                .or_insert(SessionPartition {
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes,
                    last_high_watermark: -1,
                    last_log_start_offset: -1,
                });
            entry.fetch_offset = p.fetch_offset;
            entry.partition_max_bytes = p.partition_max_bytes;
        }
        for key in forgotten {
            session.partitions.remove(key);
        }
        let partitions = session
            .partitions
            .iter()
            .map(|((topic, partition), p)| RequestedPartition {
                topic: topic.clone(),
                partition: *partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
            })
            .collect();
        Ok(Plan::Session {
            id: session_id,
            incremental: true,
            partitions,
        })
    }

    /// Records what was answered for a partition and says whether an incremental response
    /// must include it. As in Kafka, the fetch offset changes only when the client resends the
    /// partition (a paused client that ignores data must get it again).
    pub fn note_response(
        &mut self,
        session_id: i32,
        topic: &str,
        partition: i32,
        answered: Answered,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return true;
        };
        let Some(p) = session.partitions.get_mut(&(topic.to_string(), partition)) else {
            return true;
        };
        let changed = answered.has_error
            || answered.has_records
            || p.last_high_watermark != answered.high_watermark
            || p.last_log_start_offset != answered.log_start_offset;
        p.last_high_watermark = answered.high_watermark;
        p.last_log_start_offset = answered.log_start_offset;
        changed
    }

    fn new_id(&mut self) -> i32 {
        loop {
            self.next_id = if self.next_id >= i32::MAX - 1 {
                1
            } else {
                self.next_id + 1
            };
            if !self.sessions.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(topic: &str, partition: i32, offset: i64) -> RequestedPartition {
        RequestedPartition {
            topic: topic.into(),
            partition,
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
        }
    }

    #[test]
    fn session_lifecycle() {
        let mut s = FetchSessions::default();
        assert!(matches!(
            s.plan(0, -1, &[req("a", 0, 0)], &[]),
            Ok(Plan::Sessionless)
        ));
        let Ok(Plan::Session {
            id,
            incremental: false,
            ..
        }) = s.plan(0, 0, &[req("a", 0, 0), req("a", 1, 5)], &[])
        else {
            panic!("expected a new session");
        };
        assert!(s.note_response(
            id,
            "a",
            0,
            Answered {
                high_watermark: 10,
                log_start_offset: 0,
                has_records: true,
                has_error: false
            }
        ));
        assert!(s.note_response(
            id,
            "a",
            1,
            Answered {
                high_watermark: 5,
                log_start_offset: 0,
                has_records: false,
                has_error: false
            }
        ));
        // Epoch 1 moves partition 0 on; partition 1 is remembered as it was.
        let Ok(Plan::Session {
            partitions,
            incremental: true,
            ..
        }) = s.plan(id, 1, &[req("a", 0, 10)], &[])
        else {
            panic!("expected incremental");
        };
        assert_eq!(
            partitions
                .iter()
                .map(|p| p.fetch_offset)
                .collect::<Vec<_>>(),
            vec![10, 5]
        );
        // Nothing new on partition 1: not mentioned.
        assert!(!s.note_response(
            id,
            "a",
            1,
            Answered {
                high_watermark: 5,
                log_start_offset: 0,
                has_records: false,
                has_error: false
            }
        ));
        assert_eq!(
            s.plan(id, 1, &[], &[]).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        let Ok(Plan::Session { partitions, .. }) = s.plan(id, 2, &[], &[("a".into(), 0)]) else {
            panic!("expected incremental");
        };
        assert_eq!(partitions.len(), 1);
        assert_eq!(
            s.plan(999, 1, &[], &[]).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        assert!(matches!(s.plan(id, -1, &[], &[]), Ok(Plan::Sessionless)));
        assert!(s.is_empty());
    }
}
