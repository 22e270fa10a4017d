//! Deterministic, unique member-id generation (no randomness, no clock).

/// Generates UUID-shaped strings from a counter and the caller's clock.
///
/// The low 48 bits embed the counter, so ids are unique for the lifetime of
/// one coordinator; the other bits mix `now_ms` in so ids differ across
/// broker restarts.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdGen {
    counter: u64,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl IdGen {
    pub(crate) fn next(&mut self, now_ms: u64) -> String {
        self.counter = self.counter.wrapping_add(1);
        let a = splitmix64(now_ms ^ self.counter.rotate_left(40));
        let b = splitmix64(a);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16,
            (b >> 48) as u16,
            self.counter & 0xFFFF_FFFF_FFFF
        )
    }
}
