//! [`SharePartition`]: the in-flight window of one share-partition.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

use crate::members::Members;
use crate::{
    AckError, AckType, AcquiredRange, DeadLetter, DeadLetterReason, MemberId, Run, ShareConfig,
    Snapshot, SnapshotError, StoredState, WindowStats,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Can be acquired now.
    Available,
    /// Released or expired; becomes Available at `Slot::time` (release backoff).
    Delayed,
    /// Locked by `Slot::member` until `Slot::time`.
    Acquired,
    Acknowledged,
    Archived,
    /// Waiting for its DLQ write. `taken` = handed out by take_dead_letters and
    /// not handed back, so it is not reported twice.
    DeadLettering {
        reason: DeadLetterReason,
        taken: bool,
    },
}

impl SlotState {
    fn is_done(self) -> bool {
        matches!(self, SlotState::Acknowledged | SlotState::Archived)
    }
}

/// One offset of the window. 16 bytes, `Copy`: the window is one dense
/// `VecDeque` with no per-record allocation.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Lock deadline (Acquired) or backoff end (Delayed); unused otherwise.
    time: u64,
    /// Holder's index in `Members` (Acquired only).
    member: u32,
    delivery_count: u16,
    state: SlotState,
}

impl Slot {
    const FRESH: Slot = Slot {
        time: 0,
        member: 0,
        delivery_count: 0,
        state: SlotState::Available,
    };
}

/// "Something may happen to offsets `first..=last` at `time`": a lock may
/// expire or a backoff may end. Entries are hints checked against the slots
/// when due (a slot acknowledged or renewed since is simply skipped), which is
/// cheaper than removing entries on every acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    time: u64,
    first: i64,
    last: i64,
}

/// Collects the offsets a call gives a deadline, one heap entry per
/// contiguous run of equal deadlines.
#[derive(Default)]
struct DueBatch(Option<Due>);

impl DueBatch {
    fn add(&mut self, heap: &mut BinaryHeap<Reverse<Due>>, time: u64, offset: i64) {
        if let Some(d) = &mut self.0 {
            if d.time == time && d.last.checked_add(1) == Some(offset) {
                d.last = offset;
                return;
            }
            heap.push(Reverse(*d));
        }
        self.0 = Some(Due {
            time,
            first: offset,
            last: offset,
        });
    }

    fn finish(self, heap: &mut BinaryHeap<Reverse<Due>>) {
        if let Some(d) = self.0 {
            heap.push(Reverse(d));
        }
    }
}

/// Kafka's `SharePartition` for one (share group, topic-partition): see the
/// crate docs for invariants and complexity.
#[derive(Debug, Clone)]
pub struct SharePartition {
    /// SPSO. `slots[i]` is offset `start + i`; SPEO is `start + slots.len()`.
    start: i64,
    slots: VecDeque<Slot>,
    /// Forward-scan cursor of acquire: every Available slot below it is in
    /// `released`. Only moves forward (except on reset), so acquire never
    /// rescans the acquired/acknowledged prefix of the window.
    scan_from: i64,
    /// Offsets below `scan_from` that became Available again (min-heap, may
    /// hold stale entries that are checked on pop).
    released: BinaryHeap<Reverse<i64>>,
    /// Lock deadlines and backoff ends (min-heap of hints).
    due: BinaryHeap<Reverse<Due>>,
    members: Members,
    /// Offsets entered into DeadLettering (or handed back) and not yet
    /// taken; may hold stale entries that are checked on take.
    dl_pending: Vec<i64>,
    /// Dead-lettering offsets whose copy may exist ([`DeadLetter::maybe_copied`]): they were
    /// dead-lettering in the snapshot this state was restored from, or handed back after a
    /// write whose outcome is unknown. Dropped once archived. At most the window.
    dl_maybe_copied: BTreeSet<i64>,
    /// Slots in state Acquired.
    acquired: usize,
    /// Slots in state Acknowledged or Archived (not yet dropped by start).
    done: usize,
    /// Something became Available since the last tick.
    woke: bool,
    /// The durable form changed since the last `take_dirty`.
    dirty: bool,
}

impl SharePartition {
    /// Hard cap on the window length whatever `max_in_flight` says, so a
    /// misconfiguration or a corrupt snapshot cannot exhaust memory (16 bytes
    /// per slot: 16 MiB).
    pub const MAX_WINDOW: u64 = 1 << 20;

    /// A new share-partition whose window starts at `start_offset` (chosen by
    /// the caller from share.auto.offset.reset).
    pub fn new(start_offset: i64) -> Self {
        SharePartition {
            start: start_offset,
            slots: VecDeque::new(),
            scan_from: start_offset,
            released: BinaryHeap::new(),
            due: BinaryHeap::new(),
            members: Members::default(),
            dl_pending: Vec::new(),
            dl_maybe_copied: BTreeSet::new(),
            acquired: 0,
            done: 0,
            woke: false,
            dirty: false,
        }
    }

    /// SPSO: every offset below it is done (acknowledged or archived) or gone.
    #[cfg(test)]
    pub(crate) fn dl_maybe_copied_is_empty(&self) -> bool {
        self.dl_maybe_copied.is_empty()
    }

    pub fn start_offset(&self) -> i64 {
        self.start
    }

    /// SPEO: first offset not yet taken into the window.
    pub fn end_offset(&self) -> i64 {
        self.start.saturating_add(self.slots.len() as i64)
    }

    /// Records at or above start that are not yet acknowledged/archived,
    /// counting the log up to `log_end`: share-group lag. Dead-lettering
    /// records count (they are not archived yet).
    pub fn lag(&self, log_end: i64) -> i64 {
        let in_window = self.slots.len().saturating_sub(self.done) as i64;
        let beyond = log_end.saturating_sub(self.end_offset()).max(0);
        in_window.saturating_add(beyond)
    }

    /// Counts of the window's records by state and delivery count. O(window).
    pub fn stats(&self) -> WindowStats {
        let mut st = WindowStats {
            start_offset: self.start,
            end_offset: self.end_offset(),
            delivery_counts: vec![0; WindowStats::DELIVERY_BUCKETS],
            ..WindowStats::default()
        };
        let last = WindowStats::DELIVERY_BUCKETS - 1;
        for s in &self.slots {
            match s.state {
                SlotState::Acknowledged | SlotState::Archived => continue,
                SlotState::Acquired => st.acquired += 1,
                SlotState::Available | SlotState::Delayed => st.available += 1,
                SlotState::DeadLettering { .. } => st.dead_lettering += 1,
            }
            st.delivery_counts[usize::from(s.delivery_count).min(last)] += 1;
        }
        st
    }

    /// Records currently Acquired.
    pub fn in_flight(&self) -> usize {
        self.acquired
    }

    /// The earliest lock expiry or backoff end, for the caller's timer. May be
    /// earlier than needed (the deadline of records acknowledged since): a
    /// tick then finds nothing to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.due.peek().map(|Reverse(d)| d.time)
    }

    /// AlterShareGroupOffsets / reset: drop all state, start at `offset`.
    /// Locks held by members are forgotten; their acknowledgements then fail
    /// with InvalidRecordState.
    pub fn reset(&mut self, offset: i64) {
        *self = SharePartition::new(offset);
        self.dirty = true;
    }

    /// Whether the durable form ([`SharePartition::snapshot`]) may have
    /// changed since the previous call that returned true; clears the flag.
    /// Conservative (true can mean "same as before"), never misses a change.
    /// Unlike [`SharePartition::tick`]'s result it covers every durable
    /// change: delivery counts, acknowledgements, records archived or
    /// dead-lettered at the delivery limit, start moves. Lock renewals, lock
    /// expiries below the limit and backoffs are not durable.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Moves start to `log_start` if retention or DeleteRecords removed the
    /// records below it: their state is dropped, including locks and pending
    /// DLQ writes (a deleted record cannot be copied). Called by `acquire`;
    /// public so the caller can apply a DeleteRecords without fetching.
    pub fn advance_log_start(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.dirty = true;
        while self.start < log_start {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.forget_slot(slot);
            self.start += 1;
        }
        if self.slots.is_empty() {
            self.start = self.start.max(log_start);
        }
        self.after_start_moved();
        // Records past the deleted ones may already be done.
        self.advance_start();
    }

    /// Offers records to `member`: Available records (backoff passed) lowest
    /// offsets first, then new log records up to `log_end` (exclusive) while
    /// `end - start < max_in_flight`; at most `max_records`. Each acquired
    /// record gets delivery_count + 1 and a lock until `now + lock_duration`.
    /// Due lock expiries and backoff ends are processed first, so a late timer
    /// cannot hide records from a fetch. Returns ranges of consecutive offsets
    /// with equal delivery counts, ascending.
    pub fn acquire(
        &mut self,
        member: &MemberId,
        max_records: u32,
        log_start: i64,
        log_end: i64,
        now_ms: u64,
        cfg: &ShareConfig,
    ) -> Vec<AcquiredRange> {
        self.advance_log_start(log_start);
        self.process_due(now_ms, cfg);
        let mut out = Vec::new();
        if max_records == 0 {
            return out;
        }
        let mut want = max_records as usize;
        let deadline = now_ms.saturating_add(cfg.lock_duration_ms);
        let m = self.members.intern(member);
        let mut batch = DueBatch::default();

        // 1. Records released below the cursor, lowest first. They are all
        //    below the cursor, so output stays ascending across the steps.
        while want > 0 {
            let Some(&Reverse(offset)) = self.released.peek() else {
                break;
            };
            if offset >= log_end {
                // The log was truncated below this record; keep it for later.
                break;
            }
            self.released.pop();
            let Some(i) = self.index(offset) else {
                continue;
            };
            if self.slots[i].state == SlotState::Available
                && self.take_slot(i, m, deadline, cfg, &mut out, &mut batch)
            {
                want -= 1;
            }
        }

        // 2. and 3. Forward from the cursor: the window, then new log records.
        self.scan_forward(
            m,
            &mut want,
            i64::MAX,
            log_end,
            deadline,
            cfg,
            &mut out,
            &mut batch,
        );

        batch.finish(&mut self.due);
        self.members.forget_if_idle(m);
        self.advance_start();
        out
    }

    /// Batch-aligned acquisition. ShareFetch's MaxRecords "can be exceeded for alignment of
    /// batch boundaries" (Kafka's batch-optimized mode): once a fetch has acquired up to
    /// `from - 1` and read the stored batch that ends at `through`, the rest of that batch goes
    /// to the same member, so no batch is sent whole to two consumers for half its records
    /// each. Only when the forward cursor stands at `from` (the rest are the next records in
    /// order, not records released elsewhere), with the locks `acquire` gave at the same
    /// `now_ms`, and within the in-flight bound. The records are added to `out` (the fetch's
    /// ranges, which end below `from`), merged into its last range where they continue it.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_through(
        &mut self,
        member: &MemberId,
        from: i64,
        through: i64,
        log_end: i64,
        now_ms: u64,
        cfg: &ShareConfig,
        out: &mut Vec<AcquiredRange>,
    ) {
        if self.scan_from != from || through < from {
            return;
        }
        let deadline = now_ms.saturating_add(cfg.lock_duration_ms);
        let m = self.members.intern(member);
        let mut batch = DueBatch::default();
        let mut want = usize::MAX;
        let stop_at = through.saturating_add(1);
        self.scan_forward(
            m, &mut want, stop_at, log_end, deadline, cfg, out, &mut batch,
        );
        batch.finish(&mut self.due);
        self.members.forget_if_idle(m);
        self.advance_start();
    }

    /// Acquisition forward from the cursor, below `stop_at`: Available records of the window
    /// (2.), then new records from the log within the in-flight bound (3.), at most `want`.
    #[allow(clippy::too_many_arguments)]
    fn scan_forward(
        &mut self,
        m: u32,
        want: &mut usize,
        stop_at: i64,
        log_end: i64,
        deadline: u64,
        cfg: &ShareConfig,
        out: &mut Vec<AcquiredRange>,
        batch: &mut DueBatch,
    ) {
        // 2. Forward scan of the window from the cursor.
        let stop = self.end_offset().min(log_end).min(stop_at);
        while *want > 0 && self.scan_from < stop {
            let offset = self.scan_from;
            if let Some(i) = self.index(offset) {
                if self.slots[i].state == SlotState::Available
                    && self.take_slot(i, m, deadline, cfg, out, batch)
                {
                    *want -= 1;
                }
            }
            // Every Available slot passed is now Acquired or dead-lettered,
            // so the cursor invariant holds.
            self.scan_from = offset + 1;
        }

        // 3. New records from the log, within the in-flight bound.
        let cap = cfg.max_in_flight.min(Self::MAX_WINDOW);
        let new_end = log_end.min(stop_at);
        if *want > 0 && self.scan_from >= self.end_offset() {
            while *want > 0 && self.end_offset() < new_end && (self.slots.len() as u64) < cap {
                let offset = self.end_offset();
                self.slots.push_back(Slot {
                    time: deadline,
                    member: m,
                    delivery_count: 1,
                    state: SlotState::Acquired,
                });
                self.acquired += 1;
                self.dirty = true;
                self.members.hold(m);
                push_range(out, offset, 1);
                batch.add(&mut self.due, deadline, offset);
                *want -= 1;
            }
            self.scan_from = self.end_offset();
        }
    }

    /// The window slots in `[first_offset, last_offset]` acquired by `member` with lock
    /// deadline `deadline_ms` (what one ShareFetch handed out), with the member's handle; `None`
    /// if the member is unknown. The range is clipped to the window.
    fn acquired_by(
        &self,
        member: &MemberId,
        first_offset: i64,
        last_offset: i64,
        deadline_ms: u64,
    ) -> Option<(u32, Vec<usize>)> {
        let m = self.members.lookup(member)?;
        let lo = first_offset.max(self.start);
        let hi = last_offset.min(self.end_offset().saturating_sub(1));
        let (Some(lo), Some(hi)) = (self.index(lo), self.index(hi)) else {
            return Some((m, Vec::new()));
        };
        let slots = (lo..=hi)
            .filter(|&i| {
                let s = self.slots[i];
                s.state == SlotState::Acquired && s.member == m && s.time == deadline_ms
            })
            .collect();
        Some((m, slots))
    }

    /// Gives back records `acquire` handed to `member` with lock deadline `deadline_ms` that
    /// the caller could not send (ShareFetch's `max_bytes` cut the response short): as if
    /// never acquired by that call — Available again with the delivery count it had before,
    /// and records taken from the log at the window's end leave the window. Offsets outside
    /// the window, or no longer acquired by `member` under that deadline (expired, or acquired
    /// again since), are left alone. O(window) at most (the range is clipped to it). Returns
    /// how many records were given back.
    pub fn unacquire(
        &mut self,
        member: &MemberId,
        first_offset: i64,
        last_offset: i64,
        deadline_ms: u64,
    ) -> u64 {
        let Some((_, slots)) = self.acquired_by(member, first_offset, last_offset, deadline_ms)
        else {
            return 0;
        };
        let n = slots.len() as u64;
        for i in slots {
            self.leave_acquired(i);
            self.slots[i].delivery_count = self.slots[i].delivery_count.saturating_sub(1);
            self.make_available(i);
        }
        if n > 0 {
            self.dirty = true;
            // Never-delivered records at the end leave the window, so the in-flight bound
            // and the lag count them as the log's again.
            while self
                .slots
                .back()
                .is_some_and(|s| s.state == SlotState::Available && s.delivery_count == 0)
            {
                self.slots.pop_back();
            }
            self.scan_from = self.scan_from.min(self.end_offset());
        }
        n
    }

    /// Archives records `acquire` handed to `member` with lock deadline `deadline_ms` that
    /// must never reach a consumer: transaction markers (control batches), and records of
    /// aborted transactions under read_committed (Kafka's
    /// `SharePartition.filterAbortedTransactionalAcquiredRecords`). The caller finds them
    /// when it reads the acquired batches. Offsets not acquired by `member` under that
    /// deadline are left alone. O(range within the window). Returns how many were archived.
    pub fn archive_acquired(
        &mut self,
        member: &MemberId,
        first_offset: i64,
        last_offset: i64,
        deadline_ms: u64,
    ) -> u64 {
        let Some((m, slots)) = self.acquired_by(member, first_offset, last_offset, deadline_ms)
        else {
            return 0;
        };
        let n = slots.len() as u64;
        for i in slots {
            self.finish_slot(i, SlotState::Archived);
        }
        if n > 0 {
            self.members.forget_if_idle(m);
            self.advance_start();
        }
        n
    }

    /// One acknowledgement batch (Kafka's AcknowledgementBatch): `types` has
    /// one entry (for every offset) or one per offset. All-or-nothing: the
    /// whole batch is validated before anything is applied.
    pub fn acknowledge(
        &mut self,
        member: &MemberId,
        first_offset: i64,
        last_offset: i64,
        types: &[i8],
        now_ms: u64,
        cfg: &ShareConfig,
    ) -> Result<(), AckError> {
        if last_offset < first_offset {
            return Err(AckError::InvalidRequest(format!(
                "last offset {last_offset} is below first offset {first_offset}"
            )));
        }
        // i128: a batch from i64::MIN to i64::MAX must not overflow.
        let len = i128::from(last_offset) - i128::from(first_offset) + 1;
        if types.len() != 1 && types.len() as i128 != len {
            return Err(AckError::InvalidRequest(format!(
                "{} acknowledge types for {len} offsets (need 1 or {len})",
                types.len()
            )));
        }
        for &t in types {
            AckType::try_from(t)?;
        }

        let end = self.end_offset();
        if first_offset < self.start || last_offset >= end {
            return Err(AckError::InvalidRecordState(format!(
                "offsets {first_offset}..={last_offset} are not all in the in-flight window {}..{end}",
                self.start
            )));
        }
        let Some(m) = self.members.lookup(member) else {
            return Err(AckError::InvalidRecordState(format!(
                "member {member} holds no records (offsets {first_offset}..={last_offset})"
            )));
        };
        // In the window, so both indexes fit.
        let lo = (first_offset - self.start) as usize;
        let hi = (last_offset - self.start) as usize;
        for i in lo..=hi {
            let s = self.slots[i];
            let held = s.state == SlotState::Acquired && s.member == m;
            if !held || s.time <= now_ms {
                let why = if !held {
                    "is not acquired by this member"
                } else {
                    "has an expired acquisition lock"
                };
                return Err(AckError::InvalidRecordState(format!(
                    "offset {} {why}",
                    self.start + i as i64
                )));
            }
        }

        let mut batch = DueBatch::default();
        for (k, i) in (lo..=hi).enumerate() {
            let code = if types.len() == 1 { types[0] } else { types[k] };
            // Validated above; the fallback is never taken.
            let Ok(t) = AckType::try_from(code) else {
                continue;
            };
            match t {
                AckType::Accept => self.finish_slot(i, SlotState::Acknowledged),
                // Kafka archives gaps: there is no record to acknowledge.
                AckType::Gap => self.finish_slot(i, SlotState::Archived),
                AckType::Release => self.release_slot(i, now_ms, cfg, &mut batch),
                AckType::Reject => {
                    self.leave_acquired(i);
                    self.dead_letter(i, DeadLetterReason::Rejected, cfg);
                }
                AckType::Renew => {
                    let deadline = now_ms.saturating_add(cfg.lock_duration_ms);
                    self.slots[i].time = deadline;
                    batch.add(&mut self.due, deadline, self.start + i as i64);
                }
            }
        }
        batch.finish(&mut self.due);
        self.advance_start();
        Ok(())
    }

    /// The member left or its share session closed: every record it holds is
    /// released as if acknowledged with Release (back to Available after the
    /// release backoff, or dead-lettered at the delivery limit). O(window).
    pub fn release_member(&mut self, member: &MemberId, now_ms: u64, cfg: &ShareConfig) {
        let Some(m) = self.members.lookup(member) else {
            return;
        };
        let mut batch = DueBatch::default();
        for i in 0..self.slots.len() {
            if self.members.holds(m) == 0 {
                break;
            }
            let s = self.slots[i];
            if s.state == SlotState::Acquired && s.member == m {
                self.release_slot(i, now_ms, cfg, &mut batch);
            }
        }
        batch.finish(&mut self.due);
        self.advance_start();
    }

    /// Expires locks whose deadline <= now (Available again, or dead-letter at
    /// the limit) and ends due backoffs. Returns true if anything became
    /// Available since the previous tick, including records released by
    /// acknowledge/release_member and expiries processed inside acquire, so
    /// the caller can wake long-polling fetches from one place.
    pub fn tick(&mut self, now_ms: u64, cfg: &ShareConfig) -> bool {
        self.process_due(now_ms, cfg);
        std::mem::take(&mut self.woke)
    }

    /// Records that must be written to the dead-letter topic, each returned
    /// once (until handed back by `retry_dead_letters` or a restart), in the
    /// order they were dead-lettered.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        let mut pending = std::mem::take(&mut self.dl_pending);
        let mut out = Vec::with_capacity(pending.len());
        for &offset in &pending {
            let Some(i) = self.index(offset) else {
                continue;
            };
            let slot = &mut self.slots[i];
            if let SlotState::DeadLettering {
                reason,
                taken: false,
            } = slot.state
            {
                slot.state = SlotState::DeadLettering {
                    reason,
                    taken: true,
                };
                out.push(DeadLetter {
                    offset,
                    delivery_count: slot.delivery_count,
                    reason,
                    maybe_copied: self.dl_maybe_copied.contains(&offset),
                });
            }
        }
        // Keep the vector's capacity for the next dead letters.
        pending.clear();
        self.dl_pending = pending;
        out
    }

    /// The DLQ write failed or was skipped: the next take_dead_letters returns
    /// these again, `maybe_copied` if the write may have happened (its outcome is
    /// unknown). Offsets not taken, not dead-lettering, or gone are ignored.
    pub fn retry_dead_letters(&mut self, offsets: &[i64], maybe_copied: bool) {
        for &offset in offsets {
            let Some(i) = self.index(offset) else {
                continue;
            };
            if let SlotState::DeadLettering {
                reason,
                taken: true,
            } = self.slots[i].state
            {
                self.slots[i].state = SlotState::DeadLettering {
                    reason,
                    taken: false,
                };
                self.dl_pending.push(offset);
                if maybe_copied {
                    self.dl_maybe_copied.insert(offset);
                }
            }
        }
    }

    /// The DLQ writes for these offsets are durable: Archived. Offsets not
    /// dead-lettering or gone are ignored.
    pub fn dead_lettered(&mut self, offsets: &[i64]) {
        for &offset in offsets {
            let Some(i) = self.index(offset) else {
                continue;
            };
            if matches!(self.slots[i].state, SlotState::DeadLettering { .. }) {
                self.set_done(i, SlotState::Archived);
                self.dl_maybe_copied.remove(&offset);
            }
        }
        self.advance_start();
    }

    /// The durable form: start offset plus runs of records that are not
    /// never-delivered Available. Acquired and backed-off records are stored as
    /// Available with their delivery count (locks and backoffs do not survive
    /// a restart); dead-lettering records are stored as such, taken or not, so
    /// their DLQ write is redone after a restart. O(window).
    pub fn snapshot(&self) -> Snapshot {
        let mut runs: Vec<Run> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let state = match s.state {
                SlotState::Available | SlotState::Delayed | SlotState::Acquired => {
                    if s.delivery_count == 0 {
                        continue;
                    }
                    StoredState::Available
                }
                SlotState::Acknowledged => StoredState::Acknowledged,
                SlotState::Archived => StoredState::Archived,
                SlotState::DeadLettering {
                    reason: DeadLetterReason::DeliveryLimit,
                    ..
                } => StoredState::DeadLettering,
                SlotState::DeadLettering {
                    reason: DeadLetterReason::Rejected,
                    ..
                } => StoredState::DeadLetteringRejected,
            };
            let offset = self.start + i as i64;
            if let Some(r) = runs.last_mut() {
                if r.last + 1 == offset && r.state == state && r.delivery_count == s.delivery_count
                {
                    r.last = offset;
                    continue;
                }
            }
            runs.push(Run {
                first: offset,
                last: offset,
                state,
                delivery_count: s.delivery_count,
            });
        }
        Snapshot {
            start_offset: self.start,
            runs,
        }
    }

    /// Restores a snapshot, leniently: runs that are reversed, overlap an
    /// earlier run, lie below start, or reach beyond `start + MAX_WINDOW` are
    /// clipped or skipped (use [`SharePartition::try_from_snapshot`] to refuse
    /// them instead). Dead-lettering records come back pending for
    /// take_dead_letters, whatever `dead_letter` is now set to.
    pub fn from_snapshot(s: &Snapshot) -> Self {
        let mut p = SharePartition::new(s.start_offset);
        let limit = p.start.saturating_add(Self::MAX_WINDOW as i64 - 1);
        for run in &s.runs {
            let first = run.first.max(p.end_offset());
            let last = run.last.min(limit);
            if last < first {
                continue;
            }
            while p.end_offset() < first {
                p.slots.push_back(Slot::FRESH);
            }
            let state = match run.state {
                StoredState::Available => SlotState::Available,
                StoredState::Acknowledged => SlotState::Acknowledged,
                StoredState::Archived => SlotState::Archived,
                StoredState::DeadLettering => SlotState::DeadLettering {
                    reason: DeadLetterReason::DeliveryLimit,
                    taken: false,
                },
                StoredState::DeadLetteringRejected => SlotState::DeadLettering {
                    reason: DeadLetterReason::Rejected,
                    taken: false,
                },
            };
            for offset in first..=last {
                p.slots.push_back(Slot {
                    state,
                    delivery_count: run.delivery_count,
                    ..Slot::FRESH
                });
                if state.is_done() {
                    p.done += 1;
                }
                if matches!(state, SlotState::DeadLettering { .. }) {
                    p.dl_pending.push(offset);
                    p.dl_maybe_copied.insert(offset);
                }
            }
        }
        p.advance_start();
        p
    }

    /// Restores a snapshot, refusing malformed ones: runs must be ascending,
    /// non-overlapping, with `first <= last`, at or above start, and within
    /// `MAX_WINDOW` of start.
    pub fn try_from_snapshot(s: &Snapshot) -> Result<Self, SnapshotError> {
        let mut next = s.start_offset;
        for (k, run) in s.runs.iter().enumerate() {
            if run.last < run.first {
                return Err(SnapshotError(format!(
                    "run {k}: last {} < first {}",
                    run.last, run.first
                )));
            }
            if run.first < next {
                return Err(SnapshotError(format!(
                    "run {k} starts at {}, below start or the previous run (next free offset {next})",
                    run.first
                )));
            }
            if i128::from(run.last) - i128::from(s.start_offset) >= i128::from(Self::MAX_WINDOW) {
                return Err(SnapshotError(format!(
                    "run {k} ends at {}, more than {} offsets past start {}",
                    run.last,
                    Self::MAX_WINDOW,
                    s.start_offset
                )));
            }
            next = run.last.saturating_add(1);
        }
        Ok(Self::from_snapshot(s))
    }

    // ----- internals -----

    /// Index of `offset` in the window, if it is in it.
    fn index(&self, offset: i64) -> Option<usize> {
        let i = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Acquires slot `i` (Available) for member `m`, or dead-letters it if it
    /// already reached the limit (possible only after the limit was lowered or
    /// a snapshot restore). Returns whether it was acquired.
    fn take_slot(
        &mut self,
        i: usize,
        m: u32,
        deadline: u64,
        cfg: &ShareConfig,
        out: &mut Vec<AcquiredRange>,
        batch: &mut DueBatch,
    ) -> bool {
        if self.slots[i].delivery_count >= limit(cfg) {
            self.dead_letter(i, DeadLetterReason::DeliveryLimit, cfg);
            return false;
        }
        let s = &mut self.slots[i];
        s.state = SlotState::Acquired;
        s.member = m;
        s.time = deadline;
        s.delivery_count = s.delivery_count.saturating_add(1);
        let count = s.delivery_count;
        self.acquired += 1;
        self.dirty = true;
        self.members.hold(m);
        let offset = self.start + i as i64;
        push_range(out, offset, count);
        batch.add(&mut self.due, deadline, offset);
        true
    }

    /// Bookkeeping for slot `i` leaving Acquired.
    fn leave_acquired(&mut self, i: usize) {
        let m = self.slots[i].member;
        self.members.unhold(m);
        self.acquired = self.acquired.saturating_sub(1);
    }

    /// Acquired slot `i` -> Acknowledged or Archived.
    fn finish_slot(&mut self, i: usize, state: SlotState) {
        self.leave_acquired(i);
        self.set_done(i, state);
    }

    fn set_done(&mut self, i: usize, state: SlotState) {
        if !self.slots[i].state.is_done() {
            self.done += 1;
        }
        self.slots[i].state = state;
        self.dirty = true;
    }

    /// Acquired slot `i` is released (Release, member gone, lock expired):
    /// dead-letter at the limit, else Available after the backoff.
    fn release_slot(&mut self, i: usize, now_ms: u64, cfg: &ShareConfig, batch: &mut DueBatch) {
        self.leave_acquired(i);
        let count = self.slots[i].delivery_count;
        if count >= limit(cfg) {
            self.dead_letter(i, DeadLetterReason::DeliveryLimit, cfg);
            return;
        }
        let delay = backoff_ms(count, cfg);
        if delay == 0 {
            self.make_available(i);
        } else {
            let at = now_ms.saturating_add(delay);
            self.slots[i].state = SlotState::Delayed;
            self.slots[i].time = at;
            batch.add(&mut self.due, at, self.start + i as i64);
        }
    }

    fn make_available(&mut self, i: usize) {
        self.slots[i].state = SlotState::Available;
        self.woke = true;
        let offset = self.start + i as i64;
        if offset < self.scan_from {
            self.released.push(Reverse(offset));
        }
    }

    fn dead_letter(&mut self, i: usize, reason: DeadLetterReason, cfg: &ShareConfig) {
        if cfg.dead_letter {
            self.slots[i].state = SlotState::DeadLettering {
                reason,
                taken: false,
            };
            self.dirty = true;
            self.dl_pending.push(self.start + i as i64);
        } else {
            self.set_done(i, SlotState::Archived);
        }
    }

    /// Expires due locks and ends due backoffs.
    fn process_due(&mut self, now_ms: u64, cfg: &ShareConfig) {
        let mut batch = DueBatch::default();
        while let Some(&Reverse(d)) = self.due.peek() {
            if d.time > now_ms {
                break;
            }
            self.due.pop();
            // Start does not move inside this loop (advance_start runs after),
            // so indexes stay valid.
            let (Some(lo), Some(hi)) = (
                self.index(d.first.max(self.start)),
                self.index(d.last.min(self.end_offset().saturating_sub(1))),
            ) else {
                continue;
            };
            for i in lo..=hi {
                let s = self.slots[i];
                match s.state {
                    SlotState::Acquired if s.time <= now_ms => {
                        self.release_slot(i, now_ms, cfg, &mut batch)
                    }
                    SlotState::Delayed if s.time <= now_ms => self.make_available(i),
                    _ => {}
                }
            }
        }
        // New entries are all later than now (backoff > 0), so pushing them
        // after the loop changes nothing for it.
        batch.finish(&mut self.due);
        self.advance_start();
    }

    /// Drops the leading run of done slots.
    fn advance_start(&mut self) {
        let mut moved = false;
        while self.slots.front().is_some_and(|s| s.state.is_done()) {
            self.slots.pop_front();
            self.done = self.done.saturating_sub(1);
            self.start += 1;
            moved = true;
        }
        if moved {
            self.after_start_moved();
        }
    }

    fn after_start_moved(&mut self) {
        self.scan_from = self.scan_from.max(self.start);
        while self
            .dl_maybe_copied
            .first()
            .is_some_and(|&o| o < self.start)
        {
            self.dl_maybe_copied.pop_first();
        }
        // Trim hints that can only refer to dropped offsets, so the caller's
        // timer is not woken for records acknowledged long ago.
        while self
            .due
            .peek()
            .is_some_and(|Reverse(d)| d.last < self.start)
        {
            self.due.pop();
        }
        while self
            .released
            .peek()
            .is_some_and(|Reverse(o)| *o < self.start)
        {
            self.released.pop();
        }
        if self.dl_pending.first().is_some_and(|o| *o < self.start) {
            let start = self.start;
            self.dl_pending.retain(|o| *o >= start);
        }
    }

    /// Bookkeeping for a slot dropped from the window without finishing it.
    fn forget_slot(&mut self, slot: Slot) {
        if slot.state == SlotState::Acquired {
            self.members.unhold(slot.member);
            self.acquired = self.acquired.saturating_sub(1);
        }
        if slot.state.is_done() {
            self.done = self.done.saturating_sub(1);
        }
    }
}

/// The effective delivery limit: 0 would mean "never deliver", so at least 1.
fn limit(cfg: &ShareConfig) -> u16 {
    cfg.delivery_count_limit.max(1)
}

/// Release backoff after the `count`-th delivery: `min(b * 2^(count-1), max)`.
fn backoff_ms(count: u16, cfg: &ShareConfig) -> u64 {
    let b = cfg.release_backoff_ms;
    if b == 0 {
        return 0;
    }
    let shift = u32::from(count.saturating_sub(1));
    let factor = 1u64.checked_shl(shift).unwrap_or(0);
    let delay = if factor == 0 {
        u64::MAX
    } else {
        b.saturating_mul(factor)
    };
    delay.min(cfg.release_backoff_max_ms)
}

/// Appends `offset` to the last range if consecutive with the same count.
fn push_range(out: &mut Vec<AcquiredRange>, offset: i64, count: u16) {
    if let Some(r) = out.last_mut() {
        if r.last_offset + 1 == offset && r.delivery_count == count {
            r.last_offset = offset;
            return;
        }
    }
    out.push(AcquiredRange {
        first_offset: offset,
        last_offset: offset,
        delivery_count: count,
    });
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod check {
    //! Internal consistency checks used by the tests (sorted vectors rather
    //! than hash sets: these run after every step of the random test).
    use super::*;

    impl SharePartition {
        /// Offsets in state Acquired, ascending.
        pub fn acquired_offsets(&self) -> Vec<i64> {
            (0..self.slots.len())
                .filter(|&i| self.slots[i].state == SlotState::Acquired)
                .map(|i| self.start + i as i64)
                .collect()
        }

        /// Panics (tests only) if cached counters or cursor invariants are off.
        pub fn assert_consistent(&self) {
            let acquired = self
                .slots
                .iter()
                .filter(|s| s.state == SlotState::Acquired)
                .count();
            assert_eq!(acquired, self.acquired, "acquired counter");
            let done = self.slots.iter().filter(|s| s.state.is_done()).count();
            assert_eq!(done, self.done, "done counter");
            assert!(
                self.slots.front().is_none_or(|s| !s.state.is_done()),
                "leading done slot not dropped"
            );
            assert!(self.scan_from >= self.start && self.scan_from <= self.end_offset());
            let mut released: Vec<i64> = self.released.iter().map(|Reverse(o)| *o).collect();
            released.sort_unstable();
            let mut timers = Vec::new();
            for Reverse(d) in &self.due {
                for o in d.first.max(self.start)..=d.last.min(self.end_offset() - 1) {
                    timers.push((o, d.time));
                }
            }
            timers.sort_unstable();
            for (i, s) in self.slots.iter().enumerate() {
                let offset = self.start + i as i64;
                if s.state == SlotState::Available && offset < self.scan_from {
                    assert!(
                        released.binary_search(&offset).is_ok(),
                        "available {offset} lost"
                    );
                }
                if matches!(s.state, SlotState::Acquired | SlotState::Delayed) {
                    assert!(
                        timers.binary_search(&(offset, s.time)).is_ok(),
                        "no timer for {offset}"
                    );
                }
                if s.state == SlotState::Acquired {
                    assert!(self.members.holds(s.member) > 0);
                }
            }
        }
    }
}
