//! Incremental fetch sessions (KIP-227), as Kafka's `FetchSessionCache`.
//!
//! A client opens a session with epoch 0 and then sends only what changed (new or moved
//! partitions, forgotten ones) with increasing epochs; the broker remembers the rest and
//! answers only the partitions that have something new: records, an error, or a moved high
//! watermark or log start offset. Epoch -1 closes the session (or asks for none).
//!
//! Plain code, no IO: the fetch handler asks it which partitions to read and tells it what it
//! answered.
//!
//! A partition is identified as the request named it: by topic id (Fetch v13+, name empty) or
//! by name (older versions, id nil). A session holds at most [`MAX_FETCH_PARTITIONS`]
//! partitions; partitions a request would add past that are refused (the handler answers them
//! with an error) and not remembered. Every call costs O(partitions named + session size), with
//! map lookups, never a scan per partition.

use std::collections::{BTreeMap, HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

pub use crate::limits::MAX_FETCH_PARTITIONS;
pub use crate::limits::MAX_FETCH_SESSIONS as MAX_SESSIONS;
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

/// What a session remembers of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPartition {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// The client's `CurrentLeaderEpoch` (Fetch v9+; -1 unchecked), as last sent (KIP-320).
    pub current_leader_epoch: i32,
    /// The client's `LastFetchedEpoch` (Fetch v12+; -1 absent), as last sent.
    pub last_fetched_epoch: i32,
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
    /// The topic id (Fetch v13+), else nil.
    pub topic_id: Uuid,
    /// The topic name (before Fetch v13), else empty.
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// `CurrentLeaderEpoch` (Fetch v9+), -1 when absent.
    pub current_leader_epoch: i32,
    /// `LastFetchedEpoch` (Fetch v12+), -1 when absent: the leader checks it for divergence.
    pub last_fetched_epoch: i32,
}

/// (topic id, topic name, partition), as the request named it.
pub type PartitionKey = (Uuid, String, i32);

fn key_of(p: &RequestedPartition) -> PartitionKey {
    (p.topic_id, p.topic.clone(), p.partition)
}

#[derive(Debug)]
struct Session {
    epoch: i32,
    partitions: BTreeMap<PartitionKey, SessionPartition>,
    last_used: u64,
}

/// How the handler should treat this request.
#[derive(Debug)]
pub enum Plan {
    /// No session: read exactly what the request lists, answer everything.
    Sessionless,
    /// Read these partitions; when `incremental`, answer only the changed ones. `refused`:
    /// partitions the request would have added past [`MAX_FETCH_PARTITIONS`].
    Session {
        id: i32,
        incremental: bool,
        partitions: Vec<RequestedPartition>,
        refused: Vec<RequestedPartition>,
    },
}

#[derive(Debug, Default)]
pub struct FetchSessions {
    sessions: HashMap<i32, Session>,
    next_id: i32,
    clock: u64,
}

impl FetchSessions {
    /// Resolves a request's session fields. `forgotten` lists partitions to drop. The caller
    /// bounds `requested` by [`MAX_FETCH_PARTITIONS`].
    pub fn plan(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: &[RequestedPartition],
        forgotten: &[PartitionKey],
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
                .take(MAX_FETCH_PARTITIONS)
                .map(|p| {
                    (
                        key_of(p),
                        SessionPartition {
                            fetch_offset: p.fetch_offset,
                            partition_max_bytes: p.partition_max_bytes,
                            current_leader_epoch: p.current_leader_epoch,
                            last_fetched_epoch: p.last_fetched_epoch,
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
            let mut partitions = requested.to_vec();
            let refused = partitions.split_off(partitions.len().min(MAX_FETCH_PARTITIONS));
            return Ok(Plan::Session {
                id,
                incremental: false,
                partitions,
                refused,
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
        // Forgotten first, so they make room; a partition both sent and forgotten ends up
        // forgotten, as in Kafka (which applies the forgotten list last).
        for key in forgotten {
            session.partitions.remove(key);
        }
        let forgotten: HashSet<&PartitionKey> = forgotten.iter().collect();
        let mut refused = Vec::new();
        for p in requested {
            let key = key_of(p);
            if forgotten.contains(&key) {
                continue;
            }
            if let Some(entry) = session.partitions.get_mut(&key) {
                entry.fetch_offset = p.fetch_offset;
                entry.partition_max_bytes = p.partition_max_bytes;
                entry.current_leader_epoch = p.current_leader_epoch;
                entry.last_fetched_epoch = p.last_fetched_epoch;
            } else if session.partitions.len() < MAX_FETCH_PARTITIONS {
                session.partitions.insert(
                    key,
                    SessionPartition {
                        fetch_offset: p.fetch_offset,
                        partition_max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                        last_fetched_epoch: p.last_fetched_epoch,
                        last_high_watermark: -1,
                        last_log_start_offset: -1,
                    },
                );
            } else {
                refused.push(p.clone());
            }
        }
        let partitions = session
            .partitions
            .iter()
            .map(|((topic_id, topic, partition), p)| RequestedPartition {
                topic_id: *topic_id,
                topic: topic.clone(),
                partition: *partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            })
            .collect();
        Ok(Plan::Session {
            id: session_id,
            incremental: true,
            partitions,
            refused,
        })
    }

    /// Records what was answered for a partition and says whether an incremental response
    /// must include it. As in Kafka, the fetch offset changes only when the client resends the
    /// partition (a paused client that ignores data must get it again).
    pub fn note_response(
        &mut self,
        session_id: i32,
        key: &PartitionKey,
        answered: Answered,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return true;
        };
        let Some(p) = session.partitions.get_mut(key) else {
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
            topic_id: Uuid::nil(),
            topic: topic.into(),
            partition,
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
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
            &(Uuid::nil(), "a".into(), 0),
            Answered {
                high_watermark: 10,
                log_start_offset: 0,
                has_records: true,
                has_error: false
            }
        ));
        assert!(s.note_response(
            id,
            &(Uuid::nil(), "a".into(), 1),
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
            &(Uuid::nil(), "a".into(), 1),
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
        let Ok(Plan::Session { partitions, .. }) =
            s.plan(id, 2, &[], &[(Uuid::nil(), "a".into(), 0)])
        else {
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

    #[test]
    fn session_size_is_bounded() {
        let mut s = FetchSessions::default();
        let many: Vec<RequestedPartition> = (0..MAX_FETCH_PARTITIONS as i32 + 5)
            .map(|p| req("big", p, 0))
            .collect();
        let Ok(Plan::Session {
            id,
            partitions,
            refused,
            ..
        }) = s.plan(0, 0, &many, &[])
        else {
            panic!("expected a new session");
        };
        assert_eq!((partitions.len(), refused.len()), (MAX_FETCH_PARTITIONS, 5));
        // Full: a new partition is refused, a known one updated, a forgotten one makes room.
        let Ok(Plan::Session { refused, .. }) =
            s.plan(id, 1, &[req("other", 0, 0), req("big", 0, 7)], &[])
        else {
            panic!("expected incremental");
        };
        assert_eq!(refused.len(), 1);
        let Ok(Plan::Session {
            refused,
            partitions,
            ..
        }) = s.plan(
            id,
            2,
            &[req("other", 0, 0)],
            &[(Uuid::nil(), "big".into(), 1)],
        )
        else {
            panic!("expected incremental");
        };
        assert!(refused.is_empty());
        assert_eq!(partitions.len(), MAX_FETCH_PARTITIONS);
        assert_eq!(
            partitions
                .iter()
                .find(|p| p.topic == "big" && p.partition == 0)
                .map(|p| p.fetch_offset),
            Some(7)
        );
    }
}
