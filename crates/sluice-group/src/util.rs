//! Small arithmetic helpers that never panic.

/// A timeout in milliseconds from the wire (negative means zero).
pub(crate) fn ms(timeout_ms: i32) -> u64 {
    u64::try_from(timeout_ms).unwrap_or(0)
}

/// The epoch/generation after `epoch`, wrapping to 1 instead of overflowing.
pub(crate) fn next_epoch(epoch: i32) -> i32 {
    match epoch.checked_add(1) {
        Some(next) if next > 0 => next,
        _ => 1,
    }
}
