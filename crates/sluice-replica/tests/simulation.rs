//! Seeded simulation of one partition replicated on three brokers with `min.insync.replicas=2`,
//! driven through the crate's public API the way the broker drives it.
//!
//! Each schedule runs a few hundred 10 ms steps of: producers sending acks=all writes to
//! whoever believes it leads; followers fetching (flushing first, so a fetch offset is durable);
//! the leader answering with records, `DivergingEpoch` or errors; the leader proposing ISR
//! changes to a simulated controller that commits them (or rejects stale ones), fences brokers
//! whose heartbeats stop (removing them from the ISR, electing a new leader from the ISR), and
//! now and then moves leadership to another ISR member. Faults: messages (fetches, answers,
//! AlterPartition requests and answers, metadata pushes, which the controller repeats now and
//! then) dropped, delayed and reordered; brokers crash (losing what they had not flushed) and come back; brokers are
//! isolated (alive but unheard: zombie leaders); followers now and then also send a fetch from
//! past the leader's log end (a buggy or stale follower), which the leader must refuse without
//! counting it towards the HW or the ISR. Each replica's leader-epoch cache is the
//! storage crate's `LeaderEpochCache`.
//!
//! After every step the invariants of the crate docs are checked (see `check`).
//!
//! `SLUICE_REPLICA_SIM_SCHEDULES=N` runs N schedules (default 2000, a few seconds);
//! `SLUICE_REPLICA_SIM_SEED=S` runs only schedule S (printed on failure).

use std::collections::BTreeMap;

use sluice_replica::{
    follower_high_watermark, truncation_offset, AcksOutcome, AlterPartitionError, BrokerStatus,
    FollowerFetch, IsrProposal, LeaderInit, LeaderState,
};
use sluice_storage::LeaderEpochCache;

const N: usize = 3;
const MIN_ISR: usize = 2;
const STEP_MS: i64 = 10;
const LAG_MS: i64 = 200;
const FETCH_TIMEOUT_MS: i64 = 80;
const ALTER_TIMEOUT_MS: i64 = 150;
const SESSION_TIMEOUT_MS: i64 = 120;
const STEPS: usize = 300;
/// Steps of the healing phase that ends each schedule (no faults, no producers).
const HEAL_STEPS: usize = 300;
const MAX_FETCH_RECORDS: usize = 8;
const T0: i64 = 1_000_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Rec {
    epoch: i32,
    value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    leader: Option<i32>,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

enum Role {
    None,
    Follower,
    Leader(Box<LeaderState>),
}

struct Node {
    id: i32,
    alive: bool,
    isolated_until: i64,
    log: Vec<Rec>,
    flushed: usize,
    cache: LeaderEpochCache,
    hw: i64,
    known: Option<Meta>,
    role: Role,
    broker_epoch: i64,
    /// (request id, sent at) of the fetch in flight.
    fetch: Option<(u64, i64)>,
    /// Sent at, for the AlterPartition in flight.
    alter_sent: Option<i64>,
    /// The leader epoch in which this follower last got records (so it truncated first).
    synced_epoch: Option<i32>,
}

impl Node {
    fn leo(&self) -> i64 {
        self.log.len() as i64
    }
    fn end_offset_for(&self, epoch: i32) -> (i32, i64) {
        self.cache.end_offset_for(epoch, self.leo())
    }
    fn truncate(&mut self, to: i64) {
        let to = to.clamp(0, self.leo()) as usize;
        self.log.truncate(to);
        self.flushed = self.flushed.min(to);
        self.cache.truncate_from_end(to as i64);
        self.hw = self.hw.min(to as i64);
    }
}

enum FetchBody {
    Records { recs: Vec<(i64, Rec)>, hw: i64 },
    Diverging { epoch: i32, end_offset: i64 },
    Error,
}

enum Msg {
    Fetch {
        from: i32,
        to: i32,
        leader_epoch: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        last_fetched_epoch: Option<i32>,
        req: u64,
    },
    FetchResp {
        to: i32,
        leader_epoch: i32,
        req: u64,
        body: FetchBody,
    },
    Alter {
        from: i32,
        leader_epoch: i32,
        proposal: IsrProposal,
    },
    AlterResp {
        to: i32,
        leader_epoch: i32,
        proposal: IsrProposal,
        result: Result<Meta, AlterPartitionError>,
    },
    Metadata {
        to: i32,
        meta: Meta,
    },
}

impl Msg {
    fn endpoints(&self) -> (Option<i32>, i32) {
        // (sender broker, receiver broker); the controller is `None`.
        match self {
            Msg::Fetch { from, to, .. } => (Some(*from), *to),
            Msg::FetchResp { to, .. } => (None, *to),
            Msg::Alter { from, .. } => (Some(*from), -1),
            Msg::AlterResp { to, .. } | Msg::Metadata { to, .. } => (None, *to),
        }
    }
}

struct Controller {
    meta: Meta,
    /// Registered and unfenced brokers, with their broker epochs.
    unfenced: BTreeMap<i32, i64>,
    last_heartbeat: [i64; N],
}

#[derive(Default, Debug)]
struct Stats {
    acked: u64,
    elections: u64,
    truncations: u64,
    diverging: u64,
    shrinks: u64,
    expansions: u64,
    not_enough_replicas: u64,
    not_leader: u64,
    crashes: u64,
    /// Fetches from past the leader's log end (a buggy or stale follower) the leader refused.
    bogus_fetches_refused: u64,
}

struct Sim {
    rng: Rng,
    now: i64,
    nodes: Vec<Node>,
    ctl: Controller,
    net: Vec<(i64, u64, Msg)>,
    seq: u64,
    drop_p: f64,
    /// Per-step chances of an administrative leader move, a crash, an isolation.
    move_p: f64,
    crash_p: f64,
    isolate_p: f64,
    produce_p: f64,
    /// Per-fetch chance that a follower also sends a fetch from past its own log end (a
    /// buggy or stale follower); the leader must refuse it without recording it.
    bogus_fetch_p: f64,
    max_delay: i64,
    next_value: u64,
    /// Parked produce requests: value -> offset.
    parked: BTreeMap<u64, (i32, i64, Rec)>,
    /// Acknowledged records: offset -> record.
    acked: BTreeMap<i64, Rec>,
    /// Committed records (below some leader's HW): offset -> record.
    committed: BTreeMap<i64, Rec>,
    /// Highest HW seen per (leader, leader epoch).
    hw_seen: BTreeMap<(i32, i32), i64>,
    /// Leader of each leader epoch, as the brokers claimed it.
    leaders: BTreeMap<i32, i32>,
    stats: Stats,
    /// `SLUICE_REPLICA_SIM_TRACE=1`: print every event (with a single seed).
    trace: bool,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!("[{}] {}", $sim.now - T0, format!($($arg)*));
        }
    };
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let drop_p = [0.0, 0.02, 0.1, 0.25][rng.below(4) as usize];
        let max_delay = [5, 20, 60][rng.below(3) as usize];
        let move_p = [0.0, 0.01, 0.05][rng.below(3) as usize];
        let crash_p = [0.001, 0.004, 0.015][rng.below(3) as usize];
        let isolate_p = [0.001, 0.004, 0.015][rng.below(3) as usize];
        let bogus_fetch_p = [0.0, 0.05, 0.2][rng.below(3) as usize];
        let nodes = (0..N as i32)
            .map(|id| Node {
                id,
                alive: true,
                isolated_until: 0,
                log: Vec::new(),
                flushed: 0,
                cache: LeaderEpochCache::new(),
                hw: 0,
                known: None,
                role: Role::None,
                broker_epoch: 1,
                fetch: None,
                alter_sent: None,
                synced_epoch: None,
            })
            .collect();
        let meta = Meta {
            leader: Some(0),
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![0, 1, 2],
            isr: vec![0, 1, 2],
        };
        let mut sim = Sim {
            rng,
            now: T0,
            nodes,
            ctl: Controller {
                meta,
                unfenced: (0..N as i32).map(|i| (i, 1)).collect(),
                last_heartbeat: [T0; N],
            },
            net: Vec::new(),
            seq: 0,
            drop_p,
            move_p,
            crash_p,
            isolate_p,
            produce_p: 0.4,
            bogus_fetch_p,
            max_delay,
            next_value: 1,
            parked: BTreeMap::new(),
            acked: BTreeMap::new(),
            committed: BTreeMap::new(),
            hw_seen: BTreeMap::new(),
            leaders: BTreeMap::new(),
            stats: Stats::default(),
            trace: std::env::var("SLUICE_REPLICA_SIM_TRACE").is_ok(),
        };
        for id in 0..N as i32 {
            let meta = sim.ctl.meta.clone();
            sim.apply_metadata(id, meta);
        }
        sim
    }

    fn send(&mut self, msg: Msg, reliable: bool) {
        if !reliable && self.rng.chance(self.drop_p) {
            return;
        }
        let delay = self.rng.below(self.max_delay as u64 + 1) as i64;
        self.seq += 1;
        self.net.push((self.now + delay, self.seq, msg));
    }

    fn reachable(&self, id: i32) -> bool {
        let n = &self.nodes[id as usize];
        n.alive && n.isolated_until <= self.now
    }

    fn broadcast(&mut self) {
        for id in 0..N as i32 {
            let meta = self.ctl.meta.clone();
            self.send(Msg::Metadata { to: id, meta }, false);
        }
    }

    // ---- controller ----

    fn elect(&mut self, exclude: Option<i32>) {
        let candidates: Vec<i32> = self
            .ctl
            .meta
            .isr
            .iter()
            .copied()
            .filter(|id| Some(*id) != exclude && self.ctl.unfenced.contains_key(id))
            .collect();
        let leader = if candidates.is_empty() {
            None
        } else {
            Some(candidates[self.rng.below(candidates.len() as u64) as usize])
        };
        self.ctl.meta.leader = leader;
        self.ctl.meta.leader_epoch += 1;
        self.ctl.meta.partition_epoch += 1;
        self.stats.elections += 1;
        trace!(
            self,
            "controller: elect {:?} -> {:?}",
            exclude,
            self.ctl.meta
        );
        self.broadcast();
    }

    fn controller_step(&mut self) {
        for id in 0..N as i32 {
            let incarnation = self.nodes[id as usize].broker_epoch;
            if self.reachable(id)
                && self
                    .ctl
                    .unfenced
                    .get(&id)
                    .is_some_and(|e| *e != incarnation)
            {
                // A new incarnation registers: the old one is fenced first (KRaft).
                self.fence(id);
            }
            if self.reachable(id) {
                self.ctl.last_heartbeat[id as usize] = self.now;
                if !self.ctl.unfenced.contains_key(&id) {
                    // (Re-)registration or unfencing.
                    let epoch = self.nodes[id as usize].broker_epoch;
                    self.ctl.unfenced.insert(id, epoch);
                    if self.ctl.meta.leader.is_none() && self.ctl.meta.isr.contains(&id) {
                        self.elect(None);
                    } else {
                        self.broadcast();
                    }
                }
            } else if self.ctl.unfenced.contains_key(&id)
                && self.now - self.ctl.last_heartbeat[id as usize] >= SESSION_TIMEOUT_MS
            {
                self.fence(id);
            }
        }
        // Now and then an administrative leader move within the ISR.
        if self.rng.chance(self.move_p) && self.ctl.meta.leader.is_some() {
            let current = self.ctl.meta.leader;
            if self
                .ctl
                .meta
                .isr
                .iter()
                .any(|r| Some(*r) != current && self.ctl.unfenced.contains_key(r))
            {
                self.elect(current);
            }
        }
        // Metadata is re-pushed periodically (a broker that missed it catches up).
        if self.rng.chance(0.05) {
            self.broadcast();
        }
    }

    /// Fences a broker: out of the ISR (unless it is the last member), and a new leader from
    /// the ISR if it led (none if no other ISR member is unfenced).
    fn fence(&mut self, id: i32) {
        trace!(self, "controller: fence {id}");
        self.ctl.unfenced.remove(&id);
        let mut changed = false;
        if self.ctl.meta.isr.len() > 1 && self.ctl.meta.isr.contains(&id) {
            self.ctl.meta.isr.retain(|r| *r != id);
            changed = true;
        }
        if self.ctl.meta.leader == Some(id) {
            self.elect(Some(id));
        } else if changed {
            self.ctl.meta.partition_epoch += 1;
            self.broadcast();
        }
    }

    fn on_alter(&mut self, from: i32, leader_epoch: i32, proposal: IsrProposal) {
        // Kafka's order of checks: leader epoch, partition epoch, eligibility.
        let m = &self.ctl.meta;
        let check = if m.leader != Some(from) || m.leader_epoch != leader_epoch {
            Err(AlterPartitionError::FencedLeaderEpoch)
        } else if m.partition_epoch != proposal.partition_epoch {
            Err(AlterPartitionError::InvalidUpdateVersion)
        } else if !proposal.new_isr.contains(&from) {
            Err(AlterPartitionError::InvalidRequest)
        } else if !proposal
            .new_isr
            .iter()
            .all(|r| m.isr.contains(r) || self.ctl.unfenced.contains_key(r))
        {
            Err(AlterPartitionError::IneligibleReplica)
        } else {
            Ok(())
        };
        let reply = proposal.clone();
        let result = if let Err(e) = check {
            Err(e)
        } else {
            if proposal.new_isr.len() < self.ctl.meta.isr.len() {
                self.stats.shrinks += 1;
            } else {
                self.stats.expansions += 1;
            }
            self.ctl.meta.isr = proposal.new_isr;
            self.ctl.meta.partition_epoch += 1;
            trace!(self, "controller: alter from {from} -> {:?}", self.ctl.meta);
            let meta = self.ctl.meta.clone();
            self.broadcast();
            Ok(meta)
        };
        self.send(
            Msg::AlterResp {
                to: from,
                leader_epoch,
                proposal: reply,
                result,
            },
            false,
        );
    }

    // ---- brokers ----

    fn apply_metadata(&mut self, id: i32, meta: Meta) {
        let now = self.now;
        let node = &mut self.nodes[id as usize];
        if !node.alive {
            return;
        }
        if let Some(k) = &node.known {
            if meta.leader_epoch < k.leader_epoch
                || (meta.leader_epoch == k.leader_epoch
                    && meta.partition_epoch <= k.partition_epoch)
            {
                return;
            }
        }
        let new_epoch = node
            .known
            .as_ref()
            .is_none_or(|k| k.leader_epoch != meta.leader_epoch);
        node.known = Some(meta.clone());
        if !new_epoch {
            if let Role::Leader(ls) = &mut node.role {
                ls.on_partition_change(
                    meta.replicas.clone(),
                    meta.isr.clone(),
                    meta.partition_epoch,
                    now,
                );
                if ls.pending_proposal().is_none() {
                    node.alter_sent = None;
                }
            }
            return;
        }
        // A new leader epoch: whatever this broker led is over.
        let mut failed = Vec::new();
        if let Role::Leader(ls) = &mut node.role {
            failed = ls.resign();
        }
        node.role = Role::None;
        node.fetch = None;
        node.alter_sent = None;
        node.synced_epoch = None;
        if self.trace {
            eprintln!(
                "[{}] node {id}: new epoch {:?}; log {:?} flushed {} hw {}",
                now - T0,
                meta,
                node.log,
                node.flushed,
                node.hw
            );
        }
        if meta.leader == Some(id) {
            // Kafka's makeLeader: the epoch starts at the (flushed) log end.
            node.flushed = node.log.len();
            node.cache.assign(meta.leader_epoch, node.leo());
            let ls = LeaderState::new(LeaderInit {
                local_id: id,
                leader_epoch: meta.leader_epoch,
                partition_epoch: meta.partition_epoch,
                replicas: meta.replicas.clone(),
                isr: meta.isr.clone(),
                min_isr: MIN_ISR,
                replica_lag_time_max_ms: LAG_MS,
                local_leo: node.leo(),
                high_watermark: node.hw,
                log_start_offset: 0,
                now_ms: now,
            });
            node.hw = ls.high_watermark();
            node.role = Role::Leader(Box::new(ls));
            let prev = self.leaders.insert(meta.leader_epoch, id);
            assert!(
                prev.is_none_or(|p| p == id),
                "two leaders in epoch {}",
                meta.leader_epoch
            );
        } else if meta.leader.is_some() {
            node.role = Role::Follower;
        }
        self.fail_parked(failed);
    }

    fn fail_parked(&mut self, done: Vec<(u64, AcksOutcome)>) {
        for (token, outcome) in done {
            assert_eq!(outcome, AcksOutcome::NotLeaderOrFollower);
            self.parked.remove(&token);
            self.stats.not_leader += 1;
        }
    }

    fn crash(&mut self, id: i32) {
        trace!(self, "crash {id}");
        let node = &mut self.nodes[id as usize];
        node.alive = false;
        // Unflushed data is lost; the epoch cache is cut to the log as `Log::open` does.
        node.log.truncate(node.flushed);
        let end = node.leo();
        node.cache.truncate_from_end(end);
        node.hw = node.hw.min(end);
        let mut failed = Vec::new();
        if let Role::Leader(ls) = &mut node.role {
            failed = ls.resign();
        }
        node.role = Role::None;
        node.known = None;
        node.fetch = None;
        node.alter_sent = None;
        node.synced_epoch = None;
        self.stats.crashes += 1;
        self.fail_parked(failed);
        // Whatever was on its way to it is gone with it.
        self.net.retain(|(_, _, m)| m.endpoints().1 != id);
    }

    fn restart(&mut self, id: i32) {
        let node = &mut self.nodes[id as usize];
        if self.trace {
            eprintln!("[{}] restart {id}: log {:?}", self.now - T0, node.log);
        }
        node.alive = true;
        // A new incarnation: the controller fences the old one when it registers, then sends
        // it the partition state. Nothing sent to the old process reaches the new one (its
        // connections are new): it must never resume leading an epoch it led before the crash,
        // with a log that lost its unflushed tail.
        node.broker_epoch += 1;
        self.net.retain(|(_, _, m)| m.endpoints().1 != id);
    }

    fn deliver(&mut self, msg: Msg) {
        let (from, to) = msg.endpoints();
        if let Some(f) = from {
            if !self.reachable(f) {
                return;
            }
        }
        if to >= 0 && !self.reachable(to) {
            return;
        }
        match msg {
            Msg::Metadata { to, meta } => self.apply_metadata(to, meta),
            Msg::Alter {
                from,
                leader_epoch,
                proposal,
            } => self.on_alter(from, leader_epoch, proposal),
            Msg::AlterResp {
                to,
                leader_epoch,
                proposal,
                result,
            } => {
                let now = self.now;
                let node = &mut self.nodes[to as usize];
                if let Role::Leader(ls) = &mut node.role {
                    if ls.leader_epoch() == leader_epoch {
                        match result {
                            Ok(m) => {
                                ls.on_partition_change(m.replicas, m.isr, m.partition_epoch, now);
                            }
                            Err(e) => {
                                // Retriable errors are resent by the timeout below.
                                ls.on_proposal_failed(&proposal, e);
                            }
                        }
                        if ls.pending_proposal().is_none() {
                            node.alter_sent = None;
                        }
                    }
                }
            }
            Msg::Fetch {
                from,
                to,
                leader_epoch,
                broker_epoch,
                fetch_offset,
                last_fetched_epoch,
                req,
            } => self.on_fetch(
                from,
                to,
                leader_epoch,
                broker_epoch,
                fetch_offset,
                last_fetched_epoch,
                req,
            ),
            Msg::FetchResp {
                to,
                leader_epoch,
                req,
                body,
            } => self.on_fetch_resp(to, leader_epoch, req, body),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fetch(
        &mut self,
        from: i32,
        to: i32,
        leader_epoch: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        last_fetched_epoch: Option<i32>,
        req: u64,
    ) {
        let now = self.now;
        let node = &mut self.nodes[to as usize];
        let body = match &mut node.role {
            Role::Leader(ls) if ls.leader_epoch() == leader_epoch => {
                let cache = node.cache.clone();
                let leo = node.log.len() as i64;
                let answer = ls.on_follower_fetch(
                    from,
                    broker_epoch,
                    fetch_offset,
                    last_fetched_epoch,
                    now,
                    leo,
                    |e| cache.end_offset_for(e, leo),
                );
                match answer {
                    FollowerFetch::Diverging { epoch, end_offset } => {
                        FetchBody::Diverging { epoch, end_offset }
                    }
                    FollowerFetch::Error(_) => {
                        if fetch_offset > leo {
                            self.stats.bogus_fetches_refused += 1;
                        }
                        FetchBody::Error
                    }
                    FollowerFetch::Serve { .. } => {
                        assert!(
                            fetch_offset <= leo,
                            "leader {to} served a fetch from {fetch_offset}, past its log end {leo}"
                        );
                        let start = fetch_offset.max(0) as usize;
                        let end = (start + MAX_FETCH_RECORDS).min(node.log.len());
                        FetchBody::Records {
                            recs: (start..end).map(|o| (o as i64, node.log[o])).collect(),
                            hw: ls.high_watermark(),
                        }
                    }
                }
            }
            _ => FetchBody::Error,
        };
        let done = self.take_ready(to);
        self.complete(to, done);
        self.send(
            Msg::FetchResp {
                to: from,
                leader_epoch,
                req,
                body,
            },
            false,
        );
    }

    fn on_fetch_resp(&mut self, to: i32, leader_epoch: i32, req: u64, body: FetchBody) {
        let node = &mut self.nodes[to as usize];
        let current = matches!(node.role, Role::Follower)
            && node.known.as_ref().map(|k| k.leader_epoch) == Some(leader_epoch)
            && node.fetch.map(|(r, _)| r) == Some(req);
        if !current {
            return;
        }
        node.fetch = None;
        match body {
            FetchBody::Records { recs, hw } => {
                if self.trace {
                    eprintln!(
                        "[{}] node {to}: {} records from {:?} hw {hw}; flushed {} leo {}",
                        self.now - T0,
                        recs.len(),
                        recs.first().map(|r| r.0),
                        node.flushed,
                        node.leo()
                    );
                }
                for (offset, rec) in recs {
                    if offset != node.leo() {
                        break;
                    }
                    node.cache.assign(rec.epoch, offset);
                    node.log.push(rec);
                }
                node.hw = follower_high_watermark(hw, 0, node.leo());
                node.synced_epoch = Some(leader_epoch);
            }
            FetchBody::Diverging { epoch, end_offset } => {
                self.stats.diverging += 1;
                let t = truncation_offset(
                    (epoch, end_offset),
                    |e| node.end_offset_for(e),
                    node.leo(),
                    node.hw,
                );
                if t.offset < node.leo() {
                    self.stats.truncations += 1;
                }
                if self.trace {
                    eprintln!(
                        "[{}] node {to}: diverging ({epoch}, {end_offset}) truncate {:?} log {:?} cache {:?}",
                        self.now - T0,
                        t,
                        node.log,
                        node.cache.entries()
                    );
                }
                node.truncate(t.offset);
            }
            FetchBody::Error => {}
        }
    }

    fn take_ready(&mut self, id: i32) -> Vec<(u64, AcksOutcome)> {
        match &mut self.nodes[id as usize].role {
            Role::Leader(ls) => {
                let hw = ls.high_watermark();
                let epoch = ls.leader_epoch();
                self.nodes[id as usize].hw = hw;
                let prev = self.hw_seen.insert((id, epoch), hw);
                assert!(
                    prev.is_none_or(|p| p <= hw),
                    "HW of leader {id} in epoch {epoch} moved back from {prev:?} to {hw}"
                );
                // Everything below the HW is committed: one history, durable on min ISR
                // replicas (checked in `check`).
                let log = &self.nodes[id as usize].log;
                for o in prev.unwrap_or(0)..hw {
                    let rec = log[o as usize];
                    let old = self.committed.insert(o, rec);
                    assert!(
                        old.is_none_or(|r| r == rec),
                        "offset {o} committed as {old:?} then as {rec:?} by leader {id} in epoch {epoch}"
                    );
                }
                match &mut self.nodes[id as usize].role {
                    Role::Leader(ls) => ls.take_ready(),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    fn complete(&mut self, leader: i32, done: Vec<(u64, AcksOutcome)>) {
        for (token, outcome) in done {
            let Some((l, offset, rec)) = self.parked.remove(&token) else {
                continue;
            };
            assert_eq!(l, leader);
            match outcome {
                AcksOutcome::Done => {
                    assert_eq!(self.committed.get(&offset), Some(&rec));
                    let prev = self.acked.insert(offset, rec);
                    assert!(
                        prev.is_none_or(|p| p == rec),
                        "offset {offset} acknowledged twice with different records"
                    );
                    self.stats.acked += 1;
                    trace!(self, "ack offset {offset} {rec:?} by {leader}");
                    // At the moment of the acknowledgement: durable on min ISR replicas.
                    let copies = self
                        .nodes
                        .iter()
                        .filter(|n| {
                            (offset as usize) < n.flushed
                                && n.log.get(offset as usize) == Some(&rec)
                        })
                        .count();
                    assert!(
                        copies >= MIN_ISR,
                        "offset {offset} acknowledged with {copies} durable copies"
                    );
                }
                AcksOutcome::NotEnoughReplicasAfterAppend => {}
                AcksOutcome::NotLeaderOrFollower => self.stats.not_leader += 1,
            }
        }
    }

    fn broker_step(&mut self, id: i32) {
        if !self.nodes[id as usize].alive {
            return;
        }
        let now = self.now;
        let reachable = self.reachable(id);
        // Leader work.
        if matches!(self.nodes[id as usize].role, Role::Leader(_)) {
            // The metadata image's view of the brokers (KIP-841 eligibility, KIP-903 epochs).
            let statuses: Vec<(i32, BrokerStatus)> = (0..N as i32)
                .map(|r| {
                    let status = match self.ctl.unfenced.get(&r) {
                        Some(e) => BrokerStatus {
                            broker_epoch: *e,
                            fenced: false,
                        },
                        None => BrokerStatus {
                            broker_epoch: self.nodes[r as usize].broker_epoch,
                            fenced: true,
                        },
                    };
                    (r, status)
                })
                .collect();
            if let Role::Leader(ls) = &mut self.nodes[id as usize].role {
                for (r, status) in statuses {
                    ls.set_broker_status(r, Some(status));
                }
                ls.recheck_high_watermark(now);
            }
            // Group commit: the flushed end moves now and then.
            if self.rng.chance(0.5) {
                let node = &mut self.nodes[id as usize];
                node.flushed = node.log.len();
                let leo = node.leo();
                if let Role::Leader(ls) = &mut node.role {
                    ls.on_local_append(leo, now);
                }
            }
            // Producers.
            if self.rng.chance(self.produce_p) {
                let value = self.next_value;
                self.next_value += 1;
                let node = &mut self.nodes[id as usize];
                if let Role::Leader(ls) = &mut node.role {
                    match ls.check_acks_all_before_append() {
                        Ok(()) => {
                            let rec = Rec {
                                epoch: ls.leader_epoch(),
                                value,
                            };
                            let offset = node.log.len() as i64;
                            node.log.push(rec);
                            ls.park(value, offset + 1);
                            self.parked.insert(value, (id, offset, rec));
                        }
                        Err(e) => {
                            assert_eq!(e.code(), 19);
                            self.stats.not_enough_replicas += 1;
                        }
                    }
                }
            }
            // ISR changes (one in flight; a lost one is given up after a while).
            let node = &mut self.nodes[id as usize];
            let mut alter = None;
            if let Role::Leader(ls) = &mut node.role {
                if ls.pending_proposal().is_none() {
                    node.alter_sent = None;
                }
                if node.alter_sent.is_some_and(|t| now - t > ALTER_TIMEOUT_MS) {
                    // No answer: the same proposal again (never given up on a timeout).
                    node.alter_sent = Some(now);
                    alter = ls
                        .pending_proposal()
                        .cloned()
                        .map(|p| (ls.leader_epoch(), p));
                } else if let Some(p) = ls.isr_change_to_propose(now) {
                    if self.trace {
                        eprintln!(
                            "[{}] leader {id} proposes {p:?}; hw {} leo {} followers {:?}",
                            now - T0,
                            ls.high_watermark(),
                            ls.local_leo(),
                            (0..N as i32)
                                .map(|r| ls.follower(r).copied())
                                .collect::<Vec<_>>()
                        );
                    }
                    node.alter_sent = Some(now);
                    alter = Some((ls.leader_epoch(), p));
                }
            }
            if let Some((leader_epoch, proposal)) = alter {
                if reachable {
                    self.send(
                        Msg::Alter {
                            from: id,
                            leader_epoch,
                            proposal,
                        },
                        false,
                    );
                }
            }
            let done = self.take_ready(id);
            self.complete(id, done);
        }
        // Follower work: flush, then fetch from the durable end.
        let node = &mut self.nodes[id as usize];
        if matches!(node.role, Role::Follower) {
            let Some(meta) = node.known.clone() else {
                return;
            };
            let Some(leader) = meta.leader else { return };
            let due = node.fetch.is_none_or(|(_, t)| now - t > FETCH_TIMEOUT_MS);
            if due {
                node.flushed = node.log.len();
                self.seq += 1;
                let req = self.seq;
                node.fetch = Some((req, now));
                let msg = Msg::Fetch {
                    from: id,
                    to: leader,
                    leader_epoch: meta.leader_epoch,
                    broker_epoch: node.broker_epoch,
                    fetch_offset: node.leo(),
                    last_fetched_epoch: node.cache.latest_epoch(),
                    req,
                };
                self.send(msg, false);
                if self.rng.chance(self.bogus_fetch_p) {
                    // A buggy or stale follower: a fetch from past the leader's log end
                    // (by more than the leader can append while it is in flight), with or
                    // without a last fetched epoch; its answer is ignored (request id 0).
                    let leader_leo = self.nodes[leader as usize].leo();
                    let fetch_offset = leader_leo + 8 + self.rng.below(8) as i64;
                    let node = &self.nodes[id as usize];
                    let last_fetched_epoch = if self.rng.chance(0.5) {
                        None
                    } else {
                        node.cache.latest_epoch()
                    };
                    let msg = Msg::Fetch {
                        from: id,
                        to: leader,
                        leader_epoch: meta.leader_epoch,
                        broker_epoch: node.broker_epoch,
                        fetch_offset,
                        last_fetched_epoch,
                        req: 0,
                    };
                    self.send(msg, false);
                }
            }
        }
    }

    fn faults(&mut self) {
        let alive = self.nodes.iter().filter(|n| n.alive).count();
        for id in 0..N as i32 {
            let i = id as usize;
            if self.nodes[i].alive {
                if alive > 1 && self.rng.chance(self.crash_p) {
                    self.crash(id);
                    return;
                }
                if self.rng.chance(self.isolate_p) {
                    self.nodes[i].isolated_until = self.now + 50 + self.rng.below(400) as i64;
                    trace!(
                        self,
                        "isolate {id} until {}",
                        self.nodes[i].isolated_until - T0
                    );
                }
            } else if self.rng.chance(0.03) {
                self.restart(id);
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP_MS;
        self.faults();
        self.controller_step();
        // Deliver what is due, in random order (reordering).
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].0 <= self.now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(_, seq, _)| *seq);
        while !due.is_empty() {
            let pick = self.rng.below(due.len() as u64) as usize;
            let (_, _, msg) = due.swap_remove(pick);
            self.deliver(msg);
            self.check();
        }
        let mut order: Vec<i32> = (0..N as i32).collect();
        for k in (1..order.len()).rev() {
            let j = self.rng.below(k as u64 + 1) as usize;
            order.swap(k, j);
        }
        for id in order {
            self.broker_step(id);
            self.check();
        }
    }

    /// Every committed offset is checked after every step (the logs are short). An acked
    /// offset is committed, so this covers acknowledgements too.
    fn committed_checked_from(&self) -> i64 {
        0
    }

    /// The invariants of the crate docs.
    fn check(&self) {
        for leader in &self.nodes {
            let Role::Leader(ls) = &leader.role else {
                continue;
            };
            // One leader per epoch.
            assert_eq!(self.leaders.get(&ls.leader_epoch()), Some(&leader.id));
            // HW never moves back (recorded at every take_ready), and never past the LEO of
            // an ISR member.
            if let Some(seen) = self.hw_seen.get(&(leader.id, ls.leader_epoch())) {
                assert!(*seen <= ls.high_watermark());
            }
            assert!(ls.high_watermark() <= leader.leo());
            for m in ls.isr() {
                let member = &self.nodes[*m as usize];
                assert!(
                    ls.high_watermark() <= member.leo(),
                    "HW {} of leader {} (epoch {}) above the LEO {} of ISR member {m}",
                    ls.high_watermark(),
                    leader.id,
                    ls.leader_epoch(),
                    member.leo()
                );
            }
            // A follower that truncated and fetched in this epoch holds a prefix of the
            // leader's log (records compared with their epochs).
            for f in &self.nodes {
                if f.id == leader.id
                    || !matches!(f.role, Role::Follower)
                    || f.synced_epoch != Some(ls.leader_epoch())
                {
                    continue;
                }
                let common = f.log.len().min(leader.log.len());
                assert_eq!(
                    f.log[..common],
                    leader.log[..common],
                    "follower {} diverges from leader {} in epoch {}",
                    f.id,
                    leader.id,
                    ls.leader_epoch()
                );
            }
        }
        // Acknowledged records: durable on min ISR replicas and on every ISR member, so any
        // leader the controller may elect has them.
        for (&offset, rec) in self.committed.range(self.committed_checked_from()..) {
            let o = offset as usize;
            let holds = |n: &Node| o < n.flushed.min(n.log.len()) && n.log[o] == *rec;
            let copies = self.nodes.iter().filter(|n| holds(n)).count();
            assert!(
                copies >= MIN_ISR,
                "committed offset {offset} has {copies} durable copies"
            );
            for m in &self.ctl.meta.isr {
                assert!(
                    holds(&self.nodes[*m as usize]),
                    "ISR member {m} lacks committed offset {offset}"
                );
            }
        }
    }
}

impl Sim {
    /// The faults stop, every broker comes back, producers stop: the partition must converge
    /// to one leader whose ISR holds every replica, with identical logs and the HW at the end.
    fn heal_and_check_convergence(&mut self) {
        self.drop_p = 0.0;
        self.move_p = 0.0;
        self.crash_p = 0.0;
        self.isolate_p = 0.0;
        self.produce_p = 0.0;
        self.bogus_fetch_p = 0.0;
        for id in 0..N as i32 {
            self.nodes[id as usize].isolated_until = 0;
            if !self.nodes[id as usize].alive {
                self.restart(id);
            }
        }
        for _ in 0..HEAL_STEPS {
            self.step();
        }
        let leader = self
            .nodes
            .iter()
            .find(|n| matches!(n.role, Role::Leader(_)))
            .expect("a leader after healing");
        let Role::Leader(ls) = &leader.role else {
            unreachable!()
        };
        let mut isr = ls.isr().to_vec();
        isr.sort_unstable();
        assert_eq!(
            isr,
            vec![0, 1, 2],
            "ISR after healing ({:?})",
            self.ctl.meta
        );
        assert_eq!(ls.high_watermark(), leader.leo(), "HW after healing");
        for n in &self.nodes {
            assert_eq!(n.log, leader.log, "log of {} after healing", n.id);
        }
    }
}

fn run(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..STEPS {
        sim.step();
    }
    sim.heal_and_check_convergence();
    sim.stats
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeded_schedules_keep_every_invariant() {
    let seeds: Vec<u64> = match env("SLUICE_REPLICA_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("SLUICE_REPLICA_SIM_SCHEDULES").unwrap_or(2000)).collect(),
    };
    let mut total = Stats::default();
    for seed in seeds.iter().copied() {
        let result = std::panic::catch_unwind(|| run(seed));
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                eprintln!("schedule {seed} failed; replay with SLUICE_REPLICA_SIM_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        };
        total.acked += stats.acked;
        total.elections += stats.elections;
        total.truncations += stats.truncations;
        total.diverging += stats.diverging;
        total.shrinks += stats.shrinks;
        total.expansions += stats.expansions;
        total.not_enough_replicas += stats.not_enough_replicas;
        total.not_leader += stats.not_leader;
        total.crashes += stats.crashes;
        total.bogus_fetches_refused += stats.bogus_fetches_refused;
    }
    eprintln!("{} schedules: {total:?}", seeds.len());
    if seeds.len() >= 100 {
        // The schedules exercise what they claim to.
        assert!(total.acked > 0 && total.elections > 0 && total.crashes > 0);
        assert!(total.truncations > 0 && total.diverging > 0);
        assert!(total.shrinks > 0 && total.expansions > 0);
        assert!(total.not_enough_replicas > 0 && total.not_leader > 0);
        assert!(total.bogus_fetches_refused > 0);
    }
}
