//! Where registry events become durable. The broker implements [`Journal`] over its internal
//! `_schemas` log; [`MemoryJournal`] serves tests and embedders that need no durability.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

/// Durable, ordered storage of encoded [`RegistryEvent`](crate::store::RegistryEvent)s.
pub trait Journal: Send + Sync + 'static {
    /// Durably appends one event; resolves once it is on disk.
    fn append(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>>;

    /// True when the journal would like a snapshot of the whole state (it has grown well past
    /// the last one). The registry then calls [`Journal::snapshot`] after its next change.
    fn wants_snapshot(&self) -> bool {
        false
    }

    /// Durably appends a snapshot event (the whole state), after which the journal may drop
    /// every event before it.
    fn snapshot(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        self.append(event)
    }

    /// Resolves once a write may be decided here: called under the registry's write lock
    /// before the write reads the state, so an error (this node cannot write now, or the
    /// state does not yet hold every journaled event) refuses the write before anything is
    /// decided. The default: always ready.
    fn ready(&self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// True when the journal itself applies its events to the registry (a replicated journal
    /// applies what is committed, on every node, through [`crate::Registry::replay`]): its
    /// [`Journal::append`] resolves only once the event is applied, and the registry does not
    /// apply it a second time. The default: the registry applies each event once appended.
    fn applies_events(&self) -> bool {
        false
    }
}

/// Keeps events in memory; can be told to fail, to test the store-error path.
#[derive(Default, Clone)]
pub struct MemoryJournal {
    events: Arc<Mutex<Vec<Vec<u8>>>>,
    failing: Arc<AtomicBool>,
}

impl MemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event appended so far, in order.
    pub fn events(&self) -> Vec<Vec<u8>> {
        self.events.lock().clone()
    }

    /// Makes later appends fail (true) or succeed (false).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Journal for MemoryJournal {
    fn append(&self, event: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        let result = if self.failing.load(Ordering::SeqCst) {
            Err("journal unavailable".to_string())
        } else {
            self.events.lock().push(event);
            Ok(())
        };
        Box::pin(async move { result })
    }
}
