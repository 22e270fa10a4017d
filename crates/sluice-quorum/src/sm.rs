//! The glue between openraft's `RaftStateMachine` and the application's [`StateMachine`].

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, StorageIOError};

use crate::codec::{self, MAX_SNAPSHOT_BYTES};
use crate::store::{read_atomic, write_atomic};
use crate::types::{Entry, LogId, Reply, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::StateMachine;

const SNAPSHOT_FILE: &str = "snapshot";

struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct Shared {
    app: Arc<dyn StateMachine>,
    dir: PathBuf,
    state: Mutex<SmState>,
    /// Meta of the snapshot on disk; the lock also serializes snapshot file writes.
    snapshot: Mutex<Option<SnapshotMeta>>,
    /// Last applied index (0 if none), for `status`.
    applied_index: AtomicU64,
    snapshot_seq: AtomicU64,
}

/// openraft's state machine over the application's. Cloning shares it.
#[derive(Clone)]
pub struct SmStore {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn sto_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::error(e.to_string())),
    }
}

/// Writes the snapshot file unless the one on disk is at least as new. Blocking.
fn persist_snapshot(shared: &Shared, meta: &SnapshotMeta, state: &[u8]) -> io::Result<bool> {
    let mut cur = lock(&shared.snapshot);
    if let Some(c) = cur.as_ref() {
        if c.last_log_id >= meta.last_log_id {
            return Ok(false);
        }
    }
    let payload = codec::encode_snapshot(meta, state).map_err(io::Error::other)?;
    write_atomic(&shared.dir, SNAPSHOT_FILE, &payload)?;
    *cur = Some(meta.clone());
    Ok(true)
}

impl SmStore {
    /// Opens the state machine: restores the latest snapshot into `app` (which must be empty),
    /// so openraft re-applies only the committed entries after it.
    pub fn open(dir: &Path, app: Arc<dyn StateMachine>) -> io::Result<SmStore> {
        let mut state = SmState {
            last_applied: None,
            membership: StoredMembership::default(),
        };
        let mut snap_meta = None;
        if let Some(data) = read_atomic(dir, SNAPSHOT_FILE, MAX_SNAPSHOT_BYTES)? {
            let (meta, app_state) = codec::decode_snapshot(&data).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(SNAPSHOT_FILE).display()),
                )
            })?;
            app.restore(app_state)
                .map_err(|e| io::Error::other(format!("restoring the quorum snapshot: {e}")))?;
            tracing::info!(last = ?meta.last_log_id, id = %meta.snapshot_id, bytes = app_state.len(), "quorum: restored snapshot");
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
            snap_meta = Some(meta);
        }
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(SmStore {
            shared: Arc::new(Shared {
                app,
                dir: dir.to_path_buf(),
                state: Mutex::new(state),
                snapshot: Mutex::new(snap_meta),
                applied_index: AtomicU64::new(applied),
                snapshot_seq: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn applied_index(&self) -> u64 {
        self.shared.applied_index.load(Ordering::Relaxed)
    }

    /// Last log id in the snapshot on disk, if any.
    pub fn snapshot_last(&self) -> Option<LogId> {
        lock(&self.shared.snapshot)
            .as_ref()
            .and_then(|m| m.last_log_id)
    }
}

/// Captures the state at `get_snapshot_builder` time (applies go on while the file is written).
pub struct Builder {
    shared: Arc<Shared>,
    meta: SnapshotMeta,
    state: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = self.shared.clone();
        let meta = self.meta.clone();
        let state = std::mem::take(&mut self.state);
        let sig = meta.signature();
        let res = tokio::task::spawn_blocking(move || {
            persist_snapshot(&shared, &meta, &state).map(|_| (meta, state))
        })
        .await;
        match res {
            Ok(Ok((meta, state))) => {
                tracing::info!(last = ?meta.last_log_id, bytes = state.len(), "quorum: snapshot written");
                Ok(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(state)),
                })
            }
            Ok(Err(e)) => Err(sto_err(
                ErrorSubject::Snapshot(Some(sig)),
                ErrorVerb::Write,
                e,
            )),
            Err(e) => Err(sto_err(
                ErrorSubject::Snapshot(Some(sig)),
                ErrorVerb::Write,
                e,
            )),
        }
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = lock(&self.shared.state);
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut st = lock(&self.shared.state);
        for e in entries {
            let reply = match e.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(cmd) => self.shared.app.apply(e.log_id.index, &cmd.0),
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(e.log_id), m);
                    Vec::new()
                }
            };
            st.last_applied = Some(e.log_id);
            self.shared
                .applied_index
                .store(e.log_id.index, Ordering::Relaxed);
            out.push(Reply(reply));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let st = lock(&self.shared.state);
        let state = self.shared.app.snapshot();
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let id = match st.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
            snapshot_id: id,
        };
        Builder {
            shared: self.shared.clone(),
            meta,
            state,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let state = snapshot.into_inner();
        let sig = meta.signature();
        if state.len() > MAX_SNAPSHOT_BYTES {
            return Err(sto_err(
                ErrorSubject::Snapshot(Some(sig)),
                ErrorVerb::Write,
                "snapshot too large",
            ));
        }
        tracing::info!(last = ?meta.last_log_id, bytes = state.len(), "quorum: installing a snapshot from the leader");
        // Durable first: a crash after this restarts from the new snapshot.
        let shared = self.shared.clone();
        let m = meta.clone();
        let res = tokio::task::spawn_blocking(move || {
            persist_snapshot(&shared, &m, &state).map(|_| state)
        })
        .await;
        let state = match res {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(sto_err(
                    ErrorSubject::Snapshot(Some(sig)),
                    ErrorVerb::Write,
                    e,
                ))
            }
            Err(e) => {
                return Err(sto_err(
                    ErrorSubject::Snapshot(Some(sig)),
                    ErrorVerb::Write,
                    e,
                ))
            }
        };
        let mut st = lock(&self.shared.state);
        self.shared.app.restore(&state).map_err(|e| {
            sto_err(
                ErrorSubject::StateMachine,
                ErrorVerb::Write,
                format!("restore: {e}"),
            )
        })?;
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        self.shared.applied_index.store(
            meta.last_log_id.map(|l| l.index).unwrap_or(0),
            Ordering::Relaxed,
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let shared = self.shared.clone();
        let res =
            tokio::task::spawn_blocking(move || -> io::Result<Option<Snapshot<TypeConfig>>> {
                let _g = lock(&shared.snapshot);
                let Some(data) = read_atomic(&shared.dir, SNAPSHOT_FILE, MAX_SNAPSHOT_BYTES)?
                else {
                    return Ok(None);
                };
                let (meta, state) = codec::decode_snapshot(&data)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(state.to_vec())),
                }))
            })
            .await;
        match res {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
            Err(e) => Err(sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
        }
    }
}
