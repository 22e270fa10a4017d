//! State-machine tests driven by events and a fake clock.

mod assignors;
mod classic;
mod consumer;
mod share;

use std::collections::BTreeMap;

use crate::{JoinResponse, Output, SyncResponse};

/// Join responses in `outs`, by token.
pub(crate) fn joins(outs: &[Output]) -> BTreeMap<u64, JoinResponse> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Join { token, response } => Some((*token, response.clone())),
            _ => None,
        })
        .collect()
}

/// Sync responses in `outs`, by token.
pub(crate) fn syncs(outs: &[Output]) -> BTreeMap<u64, SyncResponse> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Sync { token, response } => Some((*token, response.clone())),
            _ => None,
        })
        .collect()
}
