//! Interning of member ids, so a slot stores a 4-byte index instead of an
//! `Arc<str>` (no refcount traffic per record, and holder checks compare
//! integers).

use std::collections::HashMap;

use crate::MemberId;

/// Members that currently hold at least one acquired record, plus the one
/// being served by the current call. An index is freed when its holder's
/// last lock goes, so indexes stored in non-acquired slots are never read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Members {
    entries: Vec<Entry>,
    free: Vec<u32>,
    index: HashMap<MemberId, u32>,
}

#[derive(Debug, Clone)]
struct Entry {
    id: Option<MemberId>,
    holds: u64,
}

impl Members {
    pub(crate) fn lookup(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The index of `id`, creating an entry with no holds if needed; pair it
    /// with [`Members::forget_if_idle`].
    pub(crate) fn intern(&mut self, id: &MemberId) -> u32 {
        if let Some(i) = self.index.get(&**id) {
            return *i;
        }
        let entry = Entry {
            id: Some(id.clone()),
            holds: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(e) = self.entries.get_mut(i as usize) {
                    *e = entry;
                }
                i
            }
            None => {
                // More than u32::MAX distinct concurrent holders cannot fit in
                // memory anyway (each holds a slot); saturate rather than wrap.
                let i = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
                self.entries.push(entry);
                i
            }
        };
        self.index.insert(id.clone(), i);
        i
    }

    pub(crate) fn hold(&mut self, i: u32) {
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.holds += 1;
        }
    }

    pub(crate) fn unhold(&mut self, i: u32) {
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.holds = e.holds.saturating_sub(1);
        }
        self.forget_if_idle(i);
    }

    pub(crate) fn holds(&self, i: u32) -> u64 {
        self.entries.get(i as usize).map_or(0, |e| e.holds)
    }

    pub(crate) fn forget_if_idle(&mut self, i: u32) {
        let Some(e) = self.entries.get_mut(i as usize) else {
            return;
        };
        if e.holds == 0 {
            if let Some(id) = e.id.take() {
                self.index.remove(&id);
                self.free.push(i);
            }
        }
    }
}
