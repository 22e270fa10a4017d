//! Share acknowledgement batches against the share-partition state machine: any byte string
//! is read as a sequence of operations (acquire, acknowledgement lists, lock expiry, give-back,
//! member departure) by three members. Acknowledgement lists go through
//! `validate_ack_batches` first, as the broker applies them. Nothing may panic, and after
//! every operation the state machine's internal invariants hold and its snapshot round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_share::{validate_ack_batches, MemberId, ShareConfig, SharePartition};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    /// Mostly small offsets near the window, sometimes any i64.
    fn offset(&mut self) -> Option<i64> {
        let tag = self.u8()?;
        if tag < 16 {
            let mut b = [0u8; 8];
            for x in &mut b {
                *x = self.u8()?;
            }
            Some(i64::from_le_bytes(b))
        } else {
            Some(i64::from(self.u16()?) % 512 - 8)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let members: [MemberId; 3] = [MemberId::from("a"), MemberId::from("b"), MemberId::from("c")];
    let Some(flags) = input.u8() else { return };
    let cfg = ShareConfig {
        lock_duration_ms: 100,
        delivery_count_limit: u16::from(flags & 3) + 1,
        max_in_flight: 64 + u64::from(flags >> 4) * 16,
        release_backoff_ms: if flags & 4 != 0 { 10 } else { 0 },
        release_backoff_max_ms: 40,
        dead_letter: flags & 8 != 0,
    };
    let mut p = SharePartition::new(0);
    let mut now = 0u64;
    let mut log_end = 0i64;
    let mut deadlines = [0u64; 3];
    while let Some(op) = input.u8() {
        let m = usize::from(op >> 6) % 3;
        let member = &members[m];
        match op & 7 {
            0 => {
                let n = u32::from(input.u8().unwrap_or(1));
                log_end = log_end.saturating_add(i64::from(input.u8().unwrap_or(0)));
                p.acquire(member, n, 0, log_end, now, &cfg);
                deadlines[m] = now.saturating_add(cfg.lock_duration_ms);
            }
            1 | 2 => {
                // One partition's acknowledgement list.
                let count = usize::from(input.u8().unwrap_or(0) % 8);
                let mut batches = Vec::new();
                for _ in 0..count {
                    let (Some(first), Some(span), Some(nt)) =
                        (input.offset(), input.u8(), input.u8())
                    else {
                        break;
                    };
                    let last = if span == 255 {
                        input.offset().unwrap_or(first)
                    } else {
                        first.saturating_add(i64::from(span % 16))
                    };
                    let types: Vec<i8> = (0..nt % 20)
                        .map(|_| (input.u8().unwrap_or(1) % 6) as i8)
                        .collect();
                    batches.push((first, last, types));
                }
                let list = batches.iter().map(|(f, l, t)| (*f, *l, t.as_slice()));
                if validate_ack_batches(list).is_ok() {
                    for (f, l, t) in &batches {
                        let _ = p.acknowledge(member, *f, *l, t, now, &cfg);
                    }
                }
                let _ = p.take_dead_letters();
            }
            3 => {
                now = now.saturating_add(u64::from(input.u8().unwrap_or(0)));
                p.tick(now, &cfg);
            }
            4 => {
                let (Some(first), Some(last)) = (input.offset(), input.offset()) else {
                    break;
                };
                p.unacquire(member, first, last, deadlines[m]);
            }
            5 => p.release_member(member, now, &cfg),
            6 => {
                let letters = p.take_dead_letters();
                let offsets: Vec<i64> = letters.iter().map(|l| l.offset).collect();
                if op & 8 != 0 {
                    p.retry_dead_letters(&offsets);
                } else {
                    p.dead_lettered(&offsets);
                }
            }
            _ => {
                let snap = p.snapshot();
                let back = SharePartition::try_from_snapshot(&snap).expect("own snapshot");
                assert_eq!(back.snapshot(), snap);
            }
        }
        p.assert_consistent();
    }
});
