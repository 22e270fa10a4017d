use super::*;

const T: i32 = 60_000;

struct Harness {
    c: Coordinator,
    next_pid: i64,
    log: Vec<TxnMetadata>,
    markers: Vec<Markers>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            c: Coordinator::new(Config::default(), 1),
            next_pid: 1000,
            log: Vec::new(),
            markers: Vec::new(),
        }
    }

    fn run<R>(
        &mut self,
        mut f: impl FnMut(&Coordinator, Option<i64>) -> Decision<R>,
    ) -> Result<R, TxnError> {
        let step = match f(&self.c, None) {
            Decision::Step(s) => s,
            Decision::NeedProducerId => {
                self.next_pid += 1;
                match f(&self.c, Some(self.next_pid)) {
                    Decision::Step(s) => s,
                    Decision::NeedProducerId => panic!("asked twice for a producer id"),
                }
            }
        };
        self.commit_step(step)
    }

    fn commit_step<R>(&mut self, step: Step<R>) -> Result<R, TxnError> {
        if let Some(w) = step.write {
            if let Some(prev) = self.c.get(&w.transactional_id) {
                assert!(
                    w.state.valid_previous(prev.state, w.tv2)
                        || (prev.state == TxnState::Ongoing && w.state == TxnState::PrepareAbort)
                );
            }
            self.log.push(w.clone());
            self.c.apply(w);
        }
        if let Some(m) = step.markers {
            self.markers.push(m);
        }
        step.reply
    }

    fn init(
        &mut self,
        id: &str,
        expected: Option<ProducerIdEpoch>,
        now: i64,
    ) -> Result<ProducerIdEpoch, TxnError> {
        self.run(|c, spare| c.init_producer_id(id, T, expected, now, spare))
    }

    fn add(
        &mut self,
        id: &str,
        pe: ProducerIdEpoch,
        topic: &str,
        p: i32,
        now: i64,
    ) -> Result<(), TxnError> {
        let step = self.c.add(
            id,
            pe.0,
            pe.1,
            &[Member::Partition(topic.into(), p)],
            false,
            now,
        );
        self.commit_step(step)
    }

    fn end(
        &mut self,
        id: &str,
        pe: ProducerIdEpoch,
        commit: bool,
        tv2: bool,
        now: i64,
    ) -> Result<ProducerIdEpoch, TxnError> {
        self.run(|c, spare| c.end_txn(id, pe.0, pe.1, commit, tv2, now, spare))
    }

    /// Writes every outstanding marker set and completes its transaction.
    fn finish_markers(&mut self, now: i64) {
        for m in std::mem::take(&mut self.markers) {
            if let Some(rec) =
                self.c
                    .complete(&m.transactional_id, m.producer_id, m.producer_epoch, now)
            {
                self.log.push(rec.clone());
                self.c.apply(rec);
            }
        }
    }

    fn state(&self, id: &str) -> TxnState {
        self.c.get(id).map(|t| t.state).unwrap_or(TxnState::Dead)
    }
}

#[test]
fn init_bounds() {
    let h = Harness::new();
    assert_eq!(
        h.c.init_producer_id("", T, None, 0, Some(1)),
        Decision::Step(Step::err(TxnError::InvalidRequest))
    );
    for bad in [0, -1, DEFAULT_MAX_TIMEOUT_MS + 1] {
        assert_eq!(
            h.c.init_producer_id("a", bad, None, 0, Some(1)),
            Decision::Step(Step::err(TxnError::InvalidTransactionTimeout))
        );
    }
    assert_eq!(
        h.c.init_producer_id("a", T, None, 0, None),
        Decision::NeedProducerId
    );
}

#[test]
fn init_bumps_epoch() {
    let mut h = Harness::new();
    let (pid, e0) = h.init("a", None, 0).unwrap();
    assert_eq!(e0, 0);
    let (pid1, e1) = h.init("a", None, 1).unwrap();
    assert_eq!((pid1, e1), (pid, 1));
    assert_eq!(h.state("a"), TxnState::Empty);
}

#[test]
fn commit_flow_tv1() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    h.add("a", pe, "t", 0, 1).unwrap();
    assert_eq!(h.state("a"), TxnState::Ongoing);
    // Adding again writes nothing.
    let log_len = h.log.len();
    h.add("a", pe, "t", 0, 2).unwrap();
    assert_eq!(h.log.len(), log_len);
    let step =
        h.c.add("a", pe.0, pe.1, &[Member::Group("g".into())], false, 2);
    h.commit_step(step).unwrap();
    assert_eq!(h.end("a", pe, true, false, 3), Ok(pe));
    assert_eq!(h.state("a"), TxnState::PrepareCommit);
    assert_eq!(h.markers.len(), 1);
    assert_eq!(h.markers[0].partitions, vec![("t".to_string(), 0)]);
    assert_eq!(h.markers[0].groups, vec!["g".to_string()]);
    assert!(h.markers[0].commit);
    // Retries while the markers are written, and the wrong result.
    assert_eq!(
        h.end("a", pe, true, false, 4),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        h.end("a", pe, false, false, 4),
        Err(TxnError::InvalidTxnState)
    );
    // AddPartitions while deciding.
    assert_eq!(
        h.add("a", pe, "t", 1, 4),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(h.c.pending_markers().len(), 1);
    h.finish_markers(5);
    assert_eq!(h.state("a"), TxnState::CompleteCommit);
    assert_eq!(h.end("a", pe, true, false, 6), Ok(pe));
    assert_eq!(
        h.end("a", pe, false, false, 6),
        Err(TxnError::InvalidTxnState)
    );
    // A new transaction with the same epoch.
    h.add("a", pe, "t", 1, 7).unwrap();
    assert_eq!(h.c.get("a").unwrap().partitions.len(), 1);
    assert_eq!(h.c.get("a").unwrap().start_ms, 7);
}

#[test]
fn end_errors_tv1() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    assert_eq!(
        h.end("a", pe, true, false, 1),
        Err(TxnError::InvalidTxnState)
    );
    assert_eq!(
        h.end("b", pe, true, false, 1),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("a", (pe.0 + 1, pe.1), true, false, 1),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("a", (pe.0, pe.1 + 1), true, false, 1),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        h.add("a", (pe.0, 7), "t", 0, 1),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        h.add("x", pe, "t", 0, 1),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn init_fences_ongoing() {
    let mut h = Harness::new();
    let old = h.init("a", None, 0).unwrap();
    h.add("a", old, "t", 0, 1).unwrap();
    assert_eq!(h.init("a", None, 2), Err(TxnError::ConcurrentTransactions));
    assert_eq!(h.state("a"), TxnState::PrepareAbort);
    assert_eq!(h.markers[0].producer_epoch, old.1 + 1);
    assert!(!h.markers[0].commit);
    // Still deciding: the retry waits.
    assert_eq!(h.init("a", None, 3), Err(TxnError::ConcurrentTransactions));
    h.finish_markers(4);
    let new = h.init("a", None, 5).unwrap();
    assert_eq!(new, (old.0, old.1 + 2));
    // The zombie is fenced.
    assert_eq!(
        h.end("a", old, true, false, 6),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(h.add("a", old, "t", 0, 6), Err(TxnError::ProducerFenced));
}

#[test]
fn kip360_checks() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    assert_eq!(
        h.init("a", Some((pe.0 + 5, 0)), 1),
        Err(TxnError::ProducerFenced)
    );
    let bumped = h.init("a", Some(pe), 1).unwrap();
    assert_eq!(bumped, (pe.0, pe.1 + 1));
    // A retry of that bump gets the same answer.
    assert_eq!(h.init("a", Some(pe), 2), Ok(bumped));
    // An older epoch is fenced.
    let bumped2 = h.init("a", Some(bumped), 3).unwrap();
    assert_eq!(h.init("a", Some(pe), 4), Err(TxnError::ProducerFenced));
    assert_eq!(bumped2.1, bumped.1 + 1);
}

#[test]
fn epoch_exhaustion_rotates() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    let mut rec = h.c.get("a").unwrap().clone();
    rec.producer_epoch = i16::MAX - 1;
    h.c.apply(rec);
    let rotated = h.init("a", Some((pe.0, i16::MAX - 1)), 1).unwrap();
    assert_ne!(rotated.0, pe.0);
    assert_eq!(rotated.1, 0);
    assert_eq!(h.c.get("a").unwrap().previous_producer_id, pe.0);
    // The retry with the old id and exhausted epoch gets the same answer.
    assert_eq!(h.init("a", Some((pe.0, i16::MAX - 1)), 2), Ok(rotated));
}

#[test]
fn tv2_epoch_bump_and_retry() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    let step = h.c.add(
        "a",
        pe.0,
        pe.1,
        &[Member::Partition("t".into(), 0)],
        true,
        1,
    );
    h.commit_step(step).unwrap();
    let next = h.end("a", pe, true, true, 2).unwrap();
    assert_eq!(next, (pe.0, pe.1 + 1));
    assert_eq!(h.markers[0].producer_epoch, pe.1 + 1);
    assert_eq!(
        h.end("a", pe, true, true, 3),
        Err(TxnError::ConcurrentTransactions)
    );
    h.finish_markers(4);
    assert_eq!(h.end("a", pe, true, true, 5), Ok(next));
    assert_eq!(
        h.end("a", pe, false, true, 5),
        Err(TxnError::InvalidTxnState)
    );
    // Abort from Complete/Empty is allowed and bumps.
    let after = h.end("a", next, false, true, 6).unwrap();
    assert_eq!(after, (pe.0, pe.1 + 2));
    h.finish_markers(7);
    assert_eq!(h.state("a"), TxnState::CompleteAbort);
    // A stale EndTxn in the next transaction is fenced, not applied.
    let step = h.c.add(
        "a",
        after.0,
        after.1,
        &[Member::Partition("t".into(), 0)],
        true,
        8,
    );
    h.commit_step(step).unwrap();
    assert_eq!(
        h.end("a", next, true, true, 9),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(h.state("a"), TxnState::Ongoing);
}

#[test]
fn tv2_overflow() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    let mut rec = h.c.get("a").unwrap().clone();
    rec.producer_epoch = i16::MAX - 1;
    h.c.apply(rec);
    let old = (pe.0, i16::MAX - 1);
    let step = h.c.add(
        "a",
        old.0,
        old.1,
        &[Member::Partition("t".into(), 0)],
        true,
        1,
    );
    h.commit_step(step).unwrap();
    let next = h.end("a", old, true, true, 2).unwrap();
    assert_ne!(next.0, pe.0);
    assert_eq!(next.1, 0);
    assert_eq!(h.markers[0].producer_id, pe.0);
    assert_eq!(h.markers[0].producer_epoch, i16::MAX);
    h.finish_markers(3);
    let t = h.c.get("a").unwrap();
    assert_eq!(
        (t.producer_id, t.producer_epoch, t.previous_producer_id),
        (next.0, 0, pe.0)
    );
    assert_eq!(h.end("a", old, true, true, 4), Ok(next));
}

#[test]
fn timeout_aborts_with_fence() {
    let mut h = Harness::new();
    let pe = h.init("a", None, 0).unwrap();
    h.add("a", pe, "t", 0, 1000).unwrap();
    assert!(h.c.abort_timed_out(1000 + i64::from(T)).is_empty());
    let steps = h.c.abort_timed_out(1001 + i64::from(T));
    assert_eq!(steps.len(), 1);
    for s in steps {
        h.commit_step(s).unwrap();
    }
    assert_eq!(h.state("a"), TxnState::PrepareAbort);
    h.finish_markers(2000 + i64::from(T));
    assert_eq!(h.state("a"), TxnState::CompleteAbort);
    assert_eq!(
        h.end("a", pe, true, false, 3000 + i64::from(T)),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn id_expiry() {
    let mut h = Harness::new();
    h.init("a", None, 0).unwrap();
    let pe = h.init("b", None, 0).unwrap();
    h.add("b", pe, "t", 0, 0).unwrap();
    let later = DEFAULT_ID_EXPIRATION_MS + 1;
    assert_eq!(h.c.expired_ids(later), vec!["a".to_string()]);
    assert!(h.c.expired_ids(DEFAULT_ID_EXPIRATION_MS).is_empty());
}

#[test]
fn state_names_roundtrip() {
    for s in TxnState::ALL {
        assert_eq!(TxnState::from_name(s.name()), Some(s));
        assert_eq!(TxnState::from_name(&s.name().to_uppercase()), Some(s));
    }
    assert_eq!(TxnState::from_name("nope"), None);
}

/// A small deterministic generator (no dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random requests from several "instances" per id (zombies included), random marker
/// completion, timeouts and expiry. Checks after every step: transitions valid, a producer
/// id's epoch never goes down, a replay of the log equals memory, and no transaction stays
/// decided forever once markers are written.
#[test]
fn simulation() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed);
        let mut h = Harness::new();
        let ids = ["a", "b", "c"];
        // What each client instance believes: (id, pid, epoch).
        let mut clients: Vec<(usize, ProducerIdEpoch)> = Vec::new();
        let mut now = 0i64;
        let mut max_epoch: BTreeMap<i64, i16> = BTreeMap::new();
        for _ in 0..400 {
            now += rng.below(5_000) as i64;
            let tv2 = seed % 2 == 0;
            match rng.below(9) {
                0 | 1 => {
                    let i = rng.below(ids.len() as u64) as usize;
                    let expected = if rng.below(2) == 0 {
                        clients
                            .iter()
                            .rev()
                            .find(|(c, _)| *c == i)
                            .map(|(_, pe)| *pe)
                    } else {
                        None
                    };
                    if let Ok(pe) = h.init(ids[i], expected, now) {
                        clients.push((i, pe));
                    }
                }
                2 | 3 if !clients.is_empty() => {
                    let k = rng.below(clients.len() as u64) as usize;
                    let (i, pe) = clients[k];
                    let p = rng.below(3) as i32;
                    let member = if rng.below(4) == 0 {
                        Member::Group("g".into())
                    } else {
                        Member::Partition("t".into(), p)
                    };
                    let step = h.c.add(ids[i], pe.0, pe.1, &[member], tv2, now);
                    let _ = h.commit_step(step);
                }
                4 if !clients.is_empty() => {
                    let k = rng.below(clients.len() as u64) as usize;
                    let (i, pe) = clients[k];
                    let commit = rng.below(2) == 0;
                    if let Ok(next) = h.end(ids[i], pe, commit, tv2, now) {
                        if tv2 {
                            clients[k] = (i, next);
                        }
                    }
                }
                5 | 6 => {
                    // Some markers finish, possibly out of order.
                    if !h.markers.is_empty() {
                        let k = rng.below(h.markers.len() as u64) as usize;
                        let m = h.markers.remove(k);
                        if let Some(rec) =
                            h.c.complete(&m.transactional_id, m.producer_id, m.producer_epoch, now)
                        {
                            h.log.push(rec.clone());
                            h.c.apply(rec);
                        }
                    }
                }
                7 => {
                    for s in h.c.abort_timed_out(now) {
                        let _ = h.commit_step(s);
                    }
                }
                _ => {
                    // A restart: replay the log into a fresh coordinator, re-drive markers.
                    let mut fresh =
                        Coordinator::new(Config::default(), h.c.coordinator_epoch() + 1);
                    for r in &h.log {
                        fresh.apply(r.clone());
                    }
                    assert_eq!(
                        fresh.all().collect::<Vec<_>>(),
                        h.c.all().collect::<Vec<_>>(),
                        "seed {seed}: replay differs"
                    );
                    h.c = fresh;
                    h.markers = h.c.pending_markers();
                }
            }
            for t in h.c.all() {
                let e = max_epoch.entry(t.producer_id).or_insert(t.producer_epoch);
                assert!(
                    t.producer_epoch >= *e,
                    "seed {seed}: epoch went down for {t:?}"
                );
                *e = t.producer_epoch;
                if t.state.is_prepare() {
                    assert!(
                        h.markers
                            .iter()
                            .any(|m| m.transactional_id == t.transactional_id),
                        "seed {seed}: decided without markers: {t:?}"
                    );
                }
                if t.state != TxnState::Ongoing {
                    assert!(t.state.is_prepare() || t.partitions.is_empty());
                }
            }
        }
        // Drain: every decision completes.
        h.finish_markers(now);
        assert!(h.c.all().all(|t| !t.state.is_prepare()), "seed {seed}");
    }
}

#[test]
fn groups_per_transaction_are_bounded() {
    let mut h = Harness::new();
    let pe = h.init("g", None, 0).expect("init");
    for i in 0..MAX_GROUPS_PER_TXN {
        let step =
            h.c.add("g", pe.0, pe.1, &[Member::Group(format!("g{i}"))], false, 1);
        h.commit_step(step).expect("within the bound");
    }
    let step = h.c.add(
        "g",
        pe.0,
        pe.1,
        &[Member::Group("one-more".into())],
        false,
        1,
    );
    assert_eq!(h.commit_step(step), Err(TxnError::InvalidRequest));
    assert_eq!(
        h.c.get("g").map(|t| t.groups.len()),
        Some(MAX_GROUPS_PER_TXN),
        "the refused add changed nothing"
    );
}
