//! Changes of the metadata quorum's membership (KIP-853's AddRaftVoter / RemoveRaftVoter,
//! adapted), decided on the quorum leader.
//!
//! - **Joining**: a node started with `--voters` that does not name it (a broker-only node),
//!   or a node that is no longer a voter, asks at start to be added as a learner
//!   ([`Cluster::join_quorum`]): it sends [`CtrlRequest::JoinQuorum`] to the voters of its
//!   `--voters` in turn until one answers; a voter that does not lead forwards it once to the
//!   leader. The leader adds it (idempotent); the learner then receives the metadata log,
//!   registers as a broker and hosts replicas like any other. It never counts toward a
//!   majority.
//! - **Voter changes**: [`CtrlRequest::AddVoter`] promotes a caught-up learner,
//!   [`CtrlRequest::RemoveVoter`] demotes a voter to a learner (it keeps the log while it runs;
//!   openraft's joint consensus, one change at a time). Both are refused when the voter set
//!   that results would not have a majority of live brokers ([`check_voter_change`]): a change
//!   that cannot commit would leave the quorum stuck in the joint configuration.
//! - **Unregistering**: [`CtrlRequest::UnregisterBroker`] (Kafka's UnregisterBroker, API 64)
//!   removes a stopped, drained, non-voting node: its broker registration leaves the image
//!   (Metadata no longer lists it, even fenced) and it leaves the quorum's learners.
//!
//! Bounds: [`JOIN_TIMEOUT_MS`], `sluice_quorum::MAX_QUORUM_MEMBERS`,
//! `sluice_quorum::PROMOTE_MAX_LAG_ENTRIES`.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_controller::{codes, ControllerError};
use sluice_quorum::{MembershipError, ProposeError};

use super::{cerr, Cluster, CtrlReply, CtrlRequest, REQUEST_TIMED_OUT};

/// How long a node keeps asking the voters to add it to the quorum at start.
pub const JOIN_TIMEOUT_MS: u64 = 120_000;
/// Kafka's INCONSISTENT_CLUSTER_ID.
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
/// Kafka's DUPLICATE_VOTER.
pub const DUPLICATE_VOTER: i16 = 126;
/// Kafka's VOTER_NOT_FOUND.
pub const VOTER_NOT_FOUND: i16 = 127;

/// Checks a voter change against the live brokers: `target` joins (`add`) or leaves the
/// `voters`; the resulting set must keep a majority of live members, and a new voter must be
/// live itself (pure: unit-tested).
pub fn check_voter_change(
    voters: &BTreeSet<u64>,
    target: u64,
    add: bool,
    alive: &BTreeSet<u64>,
) -> Result<(), String> {
    let mut after = voters.clone();
    if add {
        if !alive.contains(&target) {
            return Err(format!(
                "node {target} is not a live broker: start it (and let it catch up) first"
            ));
        }
        after.insert(target);
    } else {
        after.remove(&target);
    }
    if after.is_empty() {
        return Err(format!("node {target} is the last voter"));
    }
    let live = after.intersection(alive).count();
    let majority = after.len() / 2 + 1;
    if live < majority {
        let down: Vec<_> = after.difference(alive).collect();
        return Err(format!(
            "the voters would be {:?}, of which {:?} are down: {live} live of the {majority} needed for a majority; bring them back first",
            after, down
        ));
    }
    Ok(())
}

fn membership_error(e: MembershipError) -> ControllerError {
    match e {
        MembershipError::Propose(ProposeError::Timeout) => cerr(
            REQUEST_TIMED_OUT,
            "the metadata quorum did not commit the membership change in time (it may still apply)",
        ),
        MembershipError::Propose(e) => cerr(codes::NOT_CONTROLLER, e.to_string()),
        MembershipError::DuplicateVoter(m) => cerr(DUPLICATE_VOTER, m),
        MembershipError::VoterNotFound(m) => cerr(VOTER_NOT_FOUND, m),
        MembershipError::NotCaughtUp(m) => cerr(REQUEST_TIMED_OUT, m),
        MembershipError::Refused(m) => cerr(codes::INVALID_REQUEST, m),
    }
}

impl Cluster {
    fn is_quorum_leader(&self) -> bool {
        self.quorum.status().leader == Some(self.node_id as u64)
    }

    /// The brokers registered and unfenced in the image.
    fn live_brokers(&self) -> BTreeSet<u64> {
        self.state.read(|i| {
            i.brokers
                .values()
                .filter(|b| !b.fenced)
                .filter_map(|b| u64::try_from(b.node_id).ok())
                .collect()
        })
    }

    /// Serves the membership requests of the controller service (see the module docs).
    pub(super) async fn handle_membership(
        &self,
        req: CtrlRequest,
    ) -> Result<(u64, CtrlReply), ControllerError> {
        if self.is_single_node() {
            return Err(cerr(
                codes::INVALID_REQUEST,
                "this node runs alone (no --voters): its quorum membership cannot change",
            ));
        }
        // Membership changes are serialized (openraft refuses a second one in flight anyway).
        let _guard = if matches!(
            req,
            CtrlRequest::JoinQuorum {
                forwarded: false,
                ..
            }
        ) {
            None
        } else {
            Some(self.membership_lock.lock().await)
        };
        match req {
            CtrlRequest::JoinQuorum {
                node_id,
                cluster_addr,
                forwarded,
            } => {
                if !self.is_quorum_leader() {
                    if forwarded {
                        return Err(cerr(
                            codes::NOT_CONTROLLER,
                            "this node is not the quorum leader",
                        ));
                    }
                    // One hop to the leader, which answers NOT_CONTROLLER if it moved on
                    // (the joining node then tries again).
                    let leader = self.quorum.status().leader;
                    let Some(addr) = leader.and_then(|l| self.quorum.addr_of(l)) else {
                        return Err(cerr(codes::NOT_CONTROLLER, "no quorum leader known"));
                    };
                    let payload = serde_json::to_vec(&CtrlRequest::JoinQuorum {
                        node_id,
                        cluster_addr,
                        forwarded: true,
                    })
                    .map_err(|e| cerr(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
                    return self.call_remote(&addr, &payload).await;
                }
                let node = u64::try_from(node_id)
                    .map_err(|_| cerr(codes::INVALID_REQUEST, "negative node id"))?;
                let index = self
                    .quorum
                    .add_learner(node, cluster_addr.clone())
                    .await
                    .map_err(membership_error)?;
                tracing::info!(
                    node = node_id,
                    addr = %cluster_addr,
                    "quorum: node joined as a learner"
                );
                Ok((index, CtrlReply::Done))
            }
            CtrlRequest::AddVoter { node_id } | CtrlRequest::RemoveVoter { node_id } => {
                let add = matches!(req, CtrlRequest::AddVoter { .. });
                if !self.is_quorum_leader() {
                    return Err(cerr(
                        codes::NOT_CONTROLLER,
                        "this node is not the quorum leader",
                    ));
                }
                let node = u64::try_from(node_id)
                    .map_err(|_| cerr(VOTER_NOT_FOUND, "negative node id"))?;
                let voters: BTreeSet<u64> =
                    self.quorum.membership().voters.keys().copied().collect();
                if add == voters.contains(&node) {
                    // Let the quorum answer DUPLICATE_VOTER / VOTER_NOT_FOUND.
                } else {
                    check_voter_change(&voters, node, add, &self.live_brokers())
                        .map_err(|m| cerr(codes::INVALID_REQUEST, m))?;
                }
                let index = if add {
                    self.quorum.add_voter(node).await
                } else {
                    self.quorum.remove_voter(node).await
                }
                .map_err(membership_error)?;
                tracing::info!(
                    node = node_id,
                    add,
                    voters = ?self.quorum.membership().voters.keys().collect::<Vec<_>>(),
                    "quorum: voters changed"
                );
                Ok((index, CtrlReply::Done))
            }
            CtrlRequest::UnregisterBroker { node_id } => {
                if !self.is_quorum_leader() {
                    return Err(cerr(
                        codes::NOT_CONTROLLER,
                        "this node is not the quorum leader",
                    ));
                }
                let node = u64::try_from(node_id)
                    .map_err(|_| cerr(codes::BROKER_ID_NOT_REGISTERED, "negative node id"))?;
                let membership = self.quorum.membership();
                if membership.voters.contains_key(&node) {
                    return Err(cerr(
                        codes::INVALID_REQUEST,
                        format!("node {node_id} is a voter of the metadata quorum: remove it as a voter first (sluice cluster remove-voter {node_id})"),
                    ));
                }
                let registered = self.state.read(|i| i.broker(node_id).map(|b| b.fenced));
                if registered == Some(false) {
                    return Err(cerr(
                        codes::INVALID_REQUEST,
                        format!(
                            "broker {node_id} is alive: stop it first (it would register again)"
                        ),
                    ));
                }
                let learner = membership.learners.contains_key(&node);
                if registered.is_none() && !learner {
                    return Err(cerr(
                        codes::BROKER_ID_NOT_REGISTERED,
                        format!("broker {node_id} is not registered"),
                    ));
                }
                let mut index = self.state.applied();
                if registered.is_some() {
                    // Refused while it hosts replicas (drain it first).
                    let (i, ()) = self
                        .decide(|c, img, _| c.unregister_broker(img, node_id))
                        .await?;
                    index = i;
                }
                if learner {
                    index = self
                        .quorum
                        .remove_learner(node)
                        .await
                        .map_err(membership_error)?;
                }
                tracing::info!(node = node_id, "broker unregistered");
                Ok((index, CtrlReply::Done))
            }
            _ => Err(cerr(codes::INVALID_REQUEST, "not a membership request")),
        }
    }

    /// At start, for a node that is not a voter of the membership it knows (a broker-only
    /// node, or a removed voter): asks the voters of `--voters` in turn to add it as a learner,
    /// until one answers (bounded by [`JOIN_TIMEOUT_MS`]). Idempotent on the leader.
    pub(super) async fn join_quorum(&self) -> anyhow::Result<()> {
        if self.is_single_node() || self.quorum.is_voter() {
            return Ok(());
        }
        let Some(addr) = self.cluster_addr.clone() else {
            anyhow::bail!("a node joining the cluster needs --cluster-addr");
        };
        let payload = serde_json::to_vec(&CtrlRequest::JoinQuorum {
            node_id: self.node_id,
            cluster_addr: addr.clone(),
            forwarded: false,
        })?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(JOIN_TIMEOUT_MS);
        let mut last = String::new();
        loop {
            for (id, voter) in &self.voters {
                if *id == self.node_id as u64 {
                    continue;
                }
                match self.call_remote(voter, &payload).await {
                    Ok(_) => {
                        tracing::info!(via = id, addr = %addr, "joined the metadata quorum as a learner");
                        return Ok(());
                    }
                    Err(e) if e.code == codes::INVALID_REQUEST => {
                        anyhow::bail!("cannot join the metadata quorum: {}", e.message)
                    }
                    Err(e) => last = format!("node {id} at {voter}: {}", e.message),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "no voter of --voters added this node to the metadata quorum within {} s (last: {last})",
                    JOIN_TIMEOUT_MS / 1000
                );
            }
            tracing::debug!(last = %last, "joining the metadata quorum");
            tokio::time::sleep(Duration::from_millis(
                super::CONTROLLER_RETRY_BACKOFF_MS * 5,
            ))
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn voter_changes_keep_a_live_majority() {
        let all = set(&[1, 2, 3, 4]);
        // Remove a live voter of three: {1,2} both live.
        assert!(check_voter_change(&set(&[1, 2, 3]), 3, false, &all).is_ok());
        // Remove the dead voter: fine, the others are live.
        assert!(check_voter_change(&set(&[1, 2, 3]), 3, false, &set(&[1, 2])).is_ok());
        // Removing a live voter while another is down leaves {1,2} with one live: refused.
        assert!(check_voter_change(&set(&[1, 2, 3]), 3, false, &set(&[1, 3])).is_err());
        // The last voter stays.
        assert!(check_voter_change(&set(&[1]), 1, false, &all).is_err());
        // Two voters down to one live one.
        assert!(check_voter_change(&set(&[1, 2]), 2, false, &set(&[1, 2])).is_ok());
        // Adding a live node: {1,2,4} with 1,2,4 live.
        assert!(check_voter_change(&set(&[1, 2]), 4, true, &all).is_ok());
        // A node that is down is not added.
        assert!(check_voter_change(&set(&[1, 2]), 4, true, &set(&[1, 2])).is_err());
        // {1,2,3,4} needs three live: 1 and 4 only.
        assert!(check_voter_change(&set(&[1, 2, 3]), 4, true, &set(&[1, 4])).is_err());
        assert!(check_voter_change(&set(&[1, 2, 3]), 4, true, &set(&[1, 2, 4])).is_ok());
    }
}
