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
