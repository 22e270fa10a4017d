//! In-process quorum tests: real nodes on loopback TCP with temp dirs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_quorum::rpc::{Handlers, RpcClient, RpcServer, SERVICE_QUORUM};
use sluice_quorum::{
    MembershipError, ProposeError, Quorum, QuorumConfig, QuorumError, StateMachine,
};
use tokio::net::TcpListener;

/// Records every applied command; its snapshot is the whole list.
#[derive(Default)]
struct ListSm {
    applied: Mutex<Vec<(u64, Vec<u8>)>>,
    apply_calls: AtomicU64,
}

impl StateMachine for ListSm {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        self.apply_calls.fetch_add(1, Ordering::Relaxed);
        self.applied.lock().unwrap().push((index, command.to_vec()));
        format!("ok:{index}").into_bytes()
    }
    fn snapshot(&self) -> Vec<u8> {
        let list = self.applied.lock().unwrap();
        let mut out = Vec::new();
        for (i, c) in list.iter() {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(c);
        }
        out
    }
    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let mut list = Vec::new();
        let mut s = snapshot;
        while !s.is_empty() {
            if s.len() < 12 {
                return Err("short".into());
            }
            let i = u64::from_be_bytes(s[..8].try_into().unwrap());
            let n = u32::from_be_bytes(s[8..12].try_into().unwrap()) as usize;
            list.push((i, s[12..12 + n].to_vec()));
            s = &s[12 + n..];
        }
        *self.applied.lock().unwrap() = list;
        Ok(())
    }
}

impl ListSm {
    fn list(&self) -> Vec<(u64, Vec<u8>)> {
        self.applied.lock().unwrap().clone()
    }
    fn commands(&self) -> Vec<Vec<u8>> {
        self.list().into_iter().map(|(_, c)| c).collect()
    }
}

struct Node {
    id: u64,
    addr: String,
    q: Arc<Quorum>,
    server: RpcServer,
    rpc: Arc<RpcClient>,
    sm: Arc<ListSm>,
}

fn config(id: u64, voters: &BTreeMap<u64, String>, dir: &Path) -> QuorumConfig {
    let mut c = QuorumConfig::new(id, voters.clone(), dir.to_path_buf());
    c.heartbeat_interval_ms = 100;
    c.election_timeout_ms = (600, 1200);
    c.snapshot_interval = 10;
    c.propose_timeout_ms = 5_000;
    c
}

async fn start_node(
    id: u64,
    voters: &BTreeMap<u64, String>,
    dir: &Path,
    listener: Option<TcpListener>,
    tweak: impl FnOnce(&mut QuorumConfig),
) -> Node {
    let addr = voters[&id].clone();
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(&addr).await.unwrap(),
    };
    let rpc = RpcClient::new();
    let sm = Arc::new(ListSm::default());
    let mut c = config(id, voters, dir);
    tweak(&mut c);
    let q = Quorum::open(c, sm.clone(), rpc.clone()).await.unwrap();
    let mut h: Handlers = HashMap::new();
    h.insert(SERVICE_QUORUM, q.clone());
    let server = RpcServer::serve(listener, h).unwrap();
    Node {
        id,
        addr,
        q,
        server,
        rpc,
        sm,
    }
}

async fn stop_node(n: &Node) {
    n.server.shutdown().await;
    n.q.shutdown().await;
}

/// Binds three listeners and returns the voter map.
async fn three_listeners() -> (BTreeMap<u64, String>, Vec<TcpListener>) {
    let mut voters = BTreeMap::new();
    let mut ls = Vec::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        voters.insert(id, l.local_addr().unwrap().to_string());
        ls.push(l);
    }
    (voters, ls)
}

async fn start_three(tmp: &Path) -> (BTreeMap<u64, String>, Vec<Node>) {
    let (voters, ls) = three_listeners().await;
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let id = i as u64 + 1;
        nodes.push(start_node(id, &voters, &tmp.join(format!("n{id}")), Some(l), |_| {}).await);
    }
    (voters, nodes)
}

/// Waits (bounded) until `f` holds.
async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every given node agrees on one leader among them; returns it.
async fn agreed_leader(nodes: &[&Node]) -> u64 {
    let mut leader = 0;
    wait_until("an agreed leader", 30, || {
        let ls: Vec<_> = nodes.iter().map(|n| n.q.status().leader).collect();
        match ls[0] {
            Some(l) if ls.iter().all(|x| *x == Some(l)) && nodes.iter().any(|n| n.id == l) => {
                leader = l;
                true
            }
            _ => false,
        }
    })
    .await;
    leader
}

fn by_id(nodes: &[Node], id: u64) -> &Node {
    nodes.iter().find(|n| n.id == id).unwrap()
}

async fn propose_n(n: &Node, prefix: &str, count: usize) -> Vec<u64> {
    let mut idx = Vec::new();
    for i in 0..count {
        let (index, reply) =
            n.q.propose(format!("{prefix}{i}").into_bytes())
                .await
                .unwrap();
        assert_eq!(reply, format!("ok:{index}").into_bytes());
        idx.push(index);
    }
    idx
}

fn cmds(prefix: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_propose_and_apply_in_the_same_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (_voters, nodes) = start_three(tmp.path()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    let l = by_id(&nodes, leader);
    let idx = propose_n(l, "c", 20).await;
    assert!(
        idx.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive indexes {idx:?}"
    );
    for n in nodes.iter().filter(|n| n.id != leader) {
        assert_eq!(
            n.q.propose(b"x".to_vec()).await,
            Err(ProposeError::NotLeader {
                leader: Some(leader)
            })
        );
        assert_eq!(
            n.q.read_barrier().await,
            Err(ProposeError::NotLeader {
                leader: Some(leader)
            })
        );
    }
    let rb = l.q.read_barrier().await.unwrap();
    assert!(rb >= *idx.last().unwrap());
    wait_until("all apply 20", 20, || {
        nodes.iter().all(|n| n.sm.list().len() == 20)
    })
    .await;
    let first = nodes[0].sm.list();
    assert_eq!(
        first.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        cmds("c", 20)
    );
    assert_eq!(first.iter().map(|(i, _)| *i).collect::<Vec<_>>(), idx);
    for n in &nodes {
        assert_eq!(
            n.sm.list(),
            first,
            "node {} applied a different sequence",
            n.id
        );
    }
    // The leader reports every voter's match.
    let last = *idx.last().unwrap();
    wait_until("matched indexes", 20, || {
        l.q.status()
            .voters
            .iter()
            .all(|v| v.matched.is_some_and(|m| m >= last))
    })
    .await;
    let st = l.q.status();
    assert_eq!(st.node_id, leader);
    assert!(st.term >= 1 && st.committed >= last && st.applied >= last && st.running.is_ok());
    assert_eq!(st.voters.len(), 3);
    // The leader watch agrees.
    for n in &nodes {
        assert_eq!(*n.q.leader_watch().borrow(), Some(leader));
    }
    for n in &nodes {
        stop_node(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shutdown_elects_a_new_leader_and_keeps_committed_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let (_voters, nodes) = start_three(tmp.path()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let old = agreed_leader(&all).await;
    propose_n(by_id(&nodes, old), "a", 10).await;
    stop_node(by_id(&nodes, old)).await;
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != old).collect();
    let new = agreed_leader(&rest).await;
    assert_ne!(new, old);
    let new_node = by_id(&nodes, new);
    propose_n(new_node, "b", 5).await;
    let mut expect = cmds("a", 10);
    expect.extend(cmds("b", 5));
    wait_until("survivors apply all 15", 20, || {
        rest.iter().all(|n| n.sm.commands() == expect)
    })
    .await;
    assert_eq!(rest[0].sm.list(), rest[1].sm.list());
    for n in &rest {
        stop_node(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_cannot_commit_majority_moves_on_and_old_leader_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (_voters, nodes) = start_three(tmp.path()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let old = agreed_leader(&all).await;
    let oldn = by_id(&nodes, old);
    propose_n(oldn, "a", 5).await;
    // Cut the leader off, both directions.
    for n in nodes.iter().filter(|n| n.id != old) {
        oldn.rpc.cut_link(&n.addr);
        n.rpc.cut_link(&oldn.addr);
    }
    // The old leader cannot commit: its proposal times out (or it learns it lost leadership).
    let res = oldn.q.propose(b"lost".to_vec()).await;
    assert!(
        matches!(
            res,
            Err(ProposeError::Timeout) | Err(ProposeError::NotLeader { .. })
        ),
        "{res:?}"
    );
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != old).collect();
    let new = agreed_leader(&rest).await;
    assert_ne!(new, old);
    propose_n(by_id(&nodes, new), "b", 5).await;
    assert!(
        !oldn.sm.commands().iter().any(|c| c.starts_with(b"b")),
        "the cut node applied nothing of the majority's"
    );
    // Heal: the old leader steps down, drops its uncommitted entry and catches up.
    for n in &nodes {
        n.rpc.heal_all();
    }
    let mut expect = cmds("a", 5);
    expect.extend(cmds("b", 5));
    wait_until("everyone converges", 30, || {
        nodes.iter().all(|n| n.sm.commands() == expect)
    })
    .await;
    let leader = agreed_leader(&all).await;
    assert_ne!(leader, 0);
    for n in &nodes {
        assert!(!n.sm.commands().contains(&b"lost".to_vec()));
        assert_eq!(n.sm.list(), nodes[0].sm.list());
    }
    for n in &nodes {
        stop_node(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_snapshot_and_log_reapplies_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (voters, nodes) = start_three(tmp.path()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    let idx = propose_n(by_id(&nodes, leader), "r", 35).await;
    let last = *idx.last().unwrap();
    wait_until("all commit and apply", 20, || {
        nodes
            .iter()
            .all(|n| n.sm.list().len() == 35 && n.q.status().committed >= last)
    })
    .await;
    let before = nodes[0].sm.list();
    for n in &nodes {
        wait_until("a snapshot", 20, || n.q.snapshot_index().is_some()).await;
        stop_node(n).await;
    }
    drop(nodes);
    // One node alone replays its committed entries at once, without a quorum.
    let alone = start_node(2, &voters, &tmp.path().join("n2"), None, |_| {}).await;
    wait_until("the lone node replays", 20, || alone.sm.list().len() == 35).await;
    assert_eq!(alone.sm.list(), before);
    let snap = alone.q.snapshot_index().expect("a snapshot on disk");
    assert!(snap >= 10 && snap <= last, "snapshot at {snap}");
    // Applied exactly once: only the entries after the snapshot were applied by this process.
    let replayed = alone.sm.apply_calls.load(Ordering::Relaxed);
    let after_snapshot = before.iter().filter(|(i, _)| *i > snap).count() as u64;
    assert_eq!(replayed, after_snapshot);
    stop_node(&alone).await;
    drop(alone);
    // The whole cluster restarts and goes on.
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(
            start_node(
                id,
                &voters,
                &tmp.path().join(format!("n{id}")),
                None,
                |_| {},
            )
            .await,
        );
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    let more = propose_n(by_id(&nodes, leader), "s", 3).await;
    assert!(more[0] > last);
    let mut expect = cmds("r", 35);
    expect.extend(cmds("s", 3));
    wait_until("all apply after restart", 20, || {
        nodes.iter().all(|n| n.sm.commands() == expect)
    })
    .await;
    for n in &nodes {
        let l = n.sm.list();
        assert!(
            l.windows(2).all(|w| w[0].0 < w[1].0),
            "each index once, in order"
        );
        stop_node(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (voters, nodes) = start_three(tmp.path()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    let lagger = nodes.iter().find(|n| n.id != leader).unwrap().id;
    stop_node(by_id(&nodes, lagger)).await;
    let ln = by_id(&nodes, leader);
    propose_n(ln, "p", 60).await;
    // The leader snapshotted and purged the log the lagging follower would need.
    wait_until("leader purged", 20, || {
        ln.q.log_indexes().first().is_some_and(|f| *f > 5)
    })
    .await;
    let lag_dir = tmp.path().join(format!("n{lagger}"));
    let back = start_node(lagger, &voters, &lag_dir, None, |_| {}).await;
    wait_until("lagger catches up", 30, || {
        back.sm.commands() == cmds("p", 60)
    })
    .await;
    assert!(
        back.q.snapshot_index().is_some_and(|s| s >= 10),
        "it got the leader's snapshot"
    );
    let others: Vec<&Node> = nodes.iter().filter(|n| n.id != lagger).collect();
    assert_eq!(back.sm.list(), others[0].sm.list());
    stop_node(&back).await;
    for n in others {
        stop_node(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_when_the_first_voter_is_down_and_it_joins_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (voters, mut ls) = three_listeners().await;
    let l1 = ls.remove(0);
    drop(l1); // node 1 (which initializes first) is not up
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let id = i as u64 + 2;
        nodes.push(
            start_node(
                id,
                &voters,
                &tmp.path().join(format!("n{id}")),
                Some(l),
                |_| {},
            )
            .await,
        );
    }
    let two: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&two).await;
    propose_n(by_id(&nodes, leader), "f", 4).await;
    let n1 = start_node(1, &voters, &tmp.path().join("n1"), None, |_| {}).await;
    wait_until("node 1 catches up", 30, || n1.sm.commands() == cmds("f", 4)).await;
    assert_eq!(n1.q.status().leader, Some(leader));
    stop_node(&n1).await;
    for n in &nodes {
        stop_node(n).await;
    }
}

fn single(dir: &Path, id: u64) -> QuorumConfig {
    config(id, &BTreeMap::new(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_is_leader_at_once_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let sm = Arc::new(ListSm::default());
    let q = Quorum::open(single(tmp.path(), 7), sm.clone(), RpcClient::new())
        .await
        .unwrap();
    assert_eq!(q.status().leader, Some(7));
    let (i, r) = q.propose(b"one".to_vec()).await.unwrap();
    assert_eq!(r, format!("ok:{i}").into_bytes());
    assert_eq!(q.read_barrier().await.unwrap(), i);
    q.shutdown().await;
    assert_eq!(
        q.propose(b"x".to_vec()).await,
        Err(ProposeError::ShuttingDown)
    );
    drop(q);
    let sm2 = Arc::new(ListSm::default());
    let q = Quorum::open(single(tmp.path(), 7), sm2.clone(), RpcClient::new())
        .await
        .unwrap();
    assert_eq!(sm2.list(), vec![(i, b"one".to_vec())]);
    let (j, _) = q.propose(b"two".to_vec()).await.unwrap();
    assert!(j > i);
    q.shutdown().await;
    drop(q);
    // Another identity on the same directory is refused.
    match Quorum::open(
        single(tmp.path(), 8),
        Arc::new(ListSm::default()),
        RpcClient::new(),
    )
    .await
    {
        Err(QuorumError::IdentityMismatch { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a different node id opened the directory"),
    }
    let mut voters = BTreeMap::new();
    voters.insert(7, "127.0.0.1:1".to_string());
    voters.insert(9, "127.0.0.1:2".to_string());
    assert!(matches!(
        Quorum::open(
            config(7, &voters, tmp.path()),
            Arc::new(ListSm::default()),
            RpcClient::new()
        )
        .await,
        Err(QuorumError::IdentityMismatch { .. })
    ));
    // Oversized commands are refused before they reach the log.
    let q = Quorum::open(
        single(tmp.path(), 7),
        Arc::new(ListSm::default()),
        RpcClient::new(),
    )
    .await
    .unwrap();
    let big = vec![0u8; sluice_quorum::MAX_COMMAND_BYTES + 1];
    assert_eq!(
        q.propose(big).await,
        Err(ProposeError::TooLarge(sluice_quorum::MAX_COMMAND_BYTES + 1))
    );
    q.shutdown().await;
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_and_corruption_before_the_tail_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let sm = Arc::new(ListSm::default());
    let q = Quorum::open(single(tmp.path(), 1), sm.clone(), RpcClient::new())
        .await
        .unwrap();
    for c in ["a", "b", "c"] {
        q.propose(c.as_bytes().to_vec()).await.unwrap();
    }
    q.shutdown().await;
    drop(q);
    let seg = last_segment(tmp.path());
    let good = std::fs::read(&seg).unwrap();
    // A torn append: a frame header promising more bytes than were written.
    let mut torn = good.clone();
    torn.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(&seg, &torn).unwrap();
    let sm2 = Arc::new(ListSm::default());
    let q = Quorum::open(single(tmp.path(), 1), sm2.clone(), RpcClient::new())
        .await
        .unwrap();
    assert_eq!(
        sm2.commands(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    q.propose(b"d".to_vec()).await.unwrap();
    q.shutdown().await;
    drop(q);
    let healed = std::fs::read(&seg).unwrap();
    assert!(
        healed.starts_with(&good) && healed.len() > good.len(),
        "torn bytes gone, new entries appended"
    );
    // A flipped byte inside an early record, with valid records after it: refuse to start.
    let mut bad = healed.clone();
    bad[20] ^= 0x5a;
    std::fs::write(&seg, &bad).unwrap();
    match Quorum::open(
        single(tmp.path(), 1),
        Arc::new(ListSm::default()),
        RpcClient::new(),
    )
    .await
    {
        Err(QuorumError::Storage(e)) => assert!(e.to_string().contains("corrupt"), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a corrupt log"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_rejoins() {
    let tmp = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_three(tmp.path()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    propose_n(by_id(&nodes, leader), "w", 15).await;
    wait_until("all apply", 20, || {
        nodes.iter().all(|n| n.sm.list().len() == 15)
    })
    .await;
    // Wipe a follower's directory (an operator replacing a disk) and start it again.
    let pos = nodes.iter().position(|n| n.id != leader).unwrap();
    let f = nodes.remove(pos);
    stop_node(&f).await;
    let fid = f.id;
    drop(f);
    let fdir = tmp.path().join(format!("n{fid}"));
    std::fs::remove_dir_all(&fdir).unwrap();
    let back = start_node(fid, &voters, &fdir, None, |_| {}).await;
    wait_until("the wiped follower catches up", 40, || {
        back.sm.commands() == cmds("w", 15)
    })
    .await;
    nodes.push(back);
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    propose_n(by_id(&nodes, leader), "x", 2).await;
    let mut expect = cmds("w", 15);
    expect.extend(cmds("x", 2));
    wait_until("all apply after the rejoin", 20, || {
        nodes.iter().all(|n| n.sm.commands() == expect)
    })
    .await;
    for n in &nodes {
        stop_node(n).await;
    }
}

/// Random faults (a node cut off, one link cut, a node's outgoing calls cut, a node restarted) with proposals during each;
/// after healing, every node applies the same sequence and every acknowledged proposal is in it
/// at the index it was acknowledged with, once. CI runs a few rounds; for a soak:
/// `SLUICE_QUORUM_NEMESIS_ROUNDS=200 SLUICE_QUORUM_NEMESIS_SEED=7 cargo test --release -p sluice-quorum --test cluster nemesis`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_schedule_keeps_acknowledged_commands() {
    let rounds: u64 = std::env::var("SLUICE_QUORUM_NEMESIS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut seed: u64 = std::env::var("SLUICE_QUORUM_NEMESIS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let tmp = tempfile::tempdir().unwrap();
    let (voters, ls) = three_listeners().await;
    let fast = |c: &mut QuorumConfig| c.propose_timeout_ms = 1500;
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let id = i as u64 + 1;
        nodes.push(
            start_node(
                id,
                &voters,
                &tmp.path().join(format!("n{id}")),
                Some(l),
                fast,
            )
            .await,
        );
    }
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    for round in 0..rounds {
        let fault = rnd(4);
        let victim = rnd(3) as usize;
        let other = (victim + 1 + rnd(2) as usize) % 3;
        match fault {
            0 => {
                for j in 0..3 {
                    if j != victim {
                        let (a, b) = (nodes[victim].addr.clone(), nodes[j].addr.clone());
                        nodes[victim].rpc.cut_link(&b);
                        nodes[j].rpc.cut_link(&a);
                    }
                }
            }
            1 => {
                let (a, b) = (nodes[victim].addr.clone(), nodes[other].addr.clone());
                nodes[victim].rpc.cut_link(&b);
                nodes[other].rpc.cut_link(&a);
            }
            2 => {
                // One way: the victim's calls to every other node are lost, theirs reach it.
                for j in 0..3 {
                    if j != victim {
                        let b = nodes[j].addr.clone();
                        nodes[victim].rpc.cut_link(&b);
                    }
                }
            }
            _ => {
                let id = nodes[victim].id;
                stop_node(&nodes[victim]).await;
                let n =
                    start_node(id, &voters, &tmp.path().join(format!("n{id}")), None, fast).await;
                nodes[victim] = n;
            }
        }
        for k in 0..6 {
            let cmd = format!("r{round}-{k}").into_bytes();
            // Propose on whichever node believes it leads (possibly a cut-off one).
            let target = nodes
                .iter()
                .find(|n| n.q.status().leader == Some(n.id))
                .map(|n| n.id);
            let Some(t) = target else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if let Ok((index, _)) = by_id(&nodes, t).q.propose(cmd.clone()).await {
                acked.push((index, cmd));
            }
        }
        for n in &nodes {
            n.rpc.heal_all();
        }
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    let (last, _) = by_id(&nodes, leader)
        .q
        .propose(b"final".to_vec())
        .await
        .unwrap();
    wait_until("everyone applies the final command", 40, || {
        nodes.iter().all(|n| n.q.status().applied >= last)
    })
    .await;
    let reference = by_id(&nodes, leader).sm.list();
    for n in &nodes {
        let l = n.sm.list();
        assert!(
            l.windows(2).all(|w| w[0].0 < w[1].0),
            "node {}: indexes increase",
            n.id
        );
        // A restarted node holds the same sequence (restored + replayed).
        assert_eq!(l, reference, "node {} diverged", n.id);
    }
    let at: BTreeMap<u64, Vec<u8>> = reference.iter().cloned().collect();
    for (index, cmd) in &acked {
        assert_eq!(
            at.get(index),
            Some(cmd),
            "acknowledged command {:?} at {index} kept",
            String::from_utf8_lossy(cmd)
        );
    }
    let mut seen = std::collections::HashSet::new();
    assert!(
        reference.iter().all(|(_, c)| seen.insert(c.clone())),
        "no command applied twice"
    );
    assert!(!acked.is_empty(), "some proposals succeeded");
    for n in &nodes {
        stop_node(n).await;
    }
}

/// Writes seed inputs for the `quorum_files` fuzz target from a real single-voter run:
/// `SLUICE_QUORUM_SEED_DIR=fuzz/corpus/quorum_files cargo test --release -p sluice-quorum --test cluster write_fuzz_seeds -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn write_fuzz_seeds() {
    let out =
        PathBuf::from(std::env::var("SLUICE_QUORUM_SEED_DIR").expect("SLUICE_QUORUM_SEED_DIR"));
    std::fs::create_dir_all(&out).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut c = single(tmp.path(), 1);
    c.snapshot_interval = 5;
    let q = Quorum::open(c, Arc::new(ListSm::default()), RpcClient::new())
        .await
        .unwrap();
    for i in 0..8 {
        q.propose(format!("seed command {i}").into_bytes())
            .await
            .unwrap();
    }
    wait_until("a snapshot", 20, || q.snapshot_index().is_some()).await;
    q.shutdown().await;
    for name in ["vote", "committed", "identity", "snapshot"] {
        if let Ok(b) = std::fs::read(tmp.path().join(name)) {
            std::fs::write(out.join(format!("seed-{name}")), b).unwrap();
        }
    }
    std::fs::write(
        out.join("seed-segment"),
        std::fs::read(last_segment(tmp.path())).unwrap(),
    )
    .unwrap();
}

/// A broker-only node (not among the voters) joins as a learner, receives the log, is made a
/// voter; a voter is removed; then a voter of the new set is stopped and the remaining two
/// (a majority of the new set) elect a leader and commit. The removed voter stays a learner
/// until it is removed as one. A restart of the new voter keeps its membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_is_promoted_and_a_voter_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_three(tmp.path()).await;
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
    propose_n(by_id(&nodes, leader), "a", 5).await;

    // Node 4: --voters names the cluster, node 4 is not in it.
    let l4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr4 = l4.local_addr().unwrap().to_string();
    let dir4 = tmp.path().join("n4");
    let rpc = RpcClient::new();
    let sm4 = Arc::new(ListSm::default());
    let q4 = Quorum::open(config(4, &voters, &dir4), sm4.clone(), rpc.clone())
        .await
        .unwrap();
    let mut h: Handlers = HashMap::new();
    h.insert(SERVICE_QUORUM, q4.clone());
    let server4 = RpcServer::serve(l4, h).unwrap();
    // It never forms a cluster of its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q4.status().leader, None);
    assert!(!q4.is_voter());

    // Only the leader changes the membership.
    let follower = *voters.keys().find(|id| **id != leader).unwrap();
    assert!(matches!(
        by_id(&nodes, follower)
            .q
            .add_learner(4, addr4.clone())
            .await,
        Err(MembershipError::Propose(ProposeError::NotLeader { .. }))
    ));
    let lq = by_id(&nodes, leader).q.clone();
    // Not yet a member: cannot be promoted.
    assert!(matches!(
        lq.add_voter(4).await,
        Err(MembershipError::Refused(_))
    ));
    lq.add_learner(4, addr4.clone()).await.unwrap();
    // Idempotent; another address for the same id is refused.
    lq.add_learner(4, addr4.clone()).await.unwrap();
    assert!(matches!(
        lq.add_learner(4, "127.0.0.1:1".into()).await,
        Err(MembershipError::Refused(_))
    ));
    wait_until("node 4 receives the log", 30, || {
        sm4.commands() == cmds("a", 5) && q4.status().leader == Some(leader)
    })
    .await;
    let st = lq.status();
    assert_eq!(
        st.learners.iter().map(|l| l.node_id).collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(st.voters.len(), 3);

    // Promote 4, then remove a voter other than the leader (retained as a learner).
    lq.add_voter(4).await.unwrap();
    assert!(matches!(
        lq.add_voter(4).await,
        Err(MembershipError::DuplicateVoter(_))
    ));
    let removed = *voters.keys().find(|id| **id != leader).unwrap();
    lq.remove_voter(removed).await.unwrap();
    assert!(matches!(
        lq.remove_voter(removed).await,
        Err(MembershipError::VoterNotFound(_))
    ));
    let m = lq.membership();
    let mut expect: Vec<u64> = voters.keys().copied().filter(|id| *id != removed).collect();
    expect.push(4);
    assert_eq!(m.voters.keys().copied().collect::<Vec<_>>(), expect);
    assert_eq!(
        m.learners.keys().copied().collect::<Vec<_>>(),
        vec![removed]
    );
    wait_until("node 4 sees itself a voter", 30, || q4.is_voter()).await;
    // The removed voter leaves the membership for good.
    lq.remove_learner(removed).await.unwrap();
    assert!(lq.membership().learners.is_empty());
    let gone = nodes.iter().position(|n| n.id == removed).unwrap();
    let gone = nodes.remove(gone);
    stop_node(&gone).await;
    propose_n(by_id(&nodes, leader), "b", 3).await;

    // Stop the old leader: {other old voter, 4} are two of three and elect a leader.
    let idx = nodes.iter().position(|n| n.id == leader).unwrap();
    let old = nodes.remove(idx);
    stop_node(&old).await;
    let survivor = nodes.pop().unwrap();
    let mut new_leader = 0;
    wait_until("a leader among the survivors", 60, || {
        match (survivor.q.status().leader, q4.status().leader) {
            (Some(a), Some(b)) if a == b && a != leader => {
                new_leader = a;
                true
            }
            _ => false,
        }
    })
    .await;
    let q = if new_leader == 4 {
        q4.clone()
    } else {
        survivor.q.clone()
    };
    q.propose(b"c0".to_vec()).await.unwrap();
    let mut want = cmds("a", 5);
    want.extend(cmds("b", 3));
    want.push(b"c0".to_vec());
    wait_until("both survivors apply everything", 30, || {
        sm4.commands() == want && survivor.sm.commands() == want
    })
    .await;

    // Node 4 restarts with the same (old) --voters: its stored membership wins.
    server4.shutdown().await;
    q4.shutdown().await;
    drop(q4);
    let l4 = TcpListener::bind(&addr4).await.unwrap();
    let sm4 = Arc::new(ListSm::default());
    let q4 = Quorum::open(config(4, &voters, &dir4), sm4.clone(), RpcClient::new())
        .await
        .unwrap();
    let mut h: Handlers = HashMap::new();
    h.insert(SERVICE_QUORUM, q4.clone());
    let server4 = RpcServer::serve(l4, h).unwrap();
    wait_until("node 4 is a voter again after restart", 30, || {
        q4.is_voter() && sm4.commands() == want
    })
    .await;
    // A different node id on its directory is still refused.
    assert!(matches!(
        Quorum::open(
            config(5, &voters, &dir4),
            Arc::new(ListSm::default()),
            RpcClient::new()
        )
        .await,
        Err(QuorumError::IdentityMismatch { .. })
    ));
    server4.shutdown().await;
    q4.shutdown().await;
    stop_node(&survivor).await;
}
