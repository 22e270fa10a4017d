//! DescribeQuorum (API 55, KIP-595; v2 fields of KIP-853): the metadata quorum as this node
//! sees it, from `sluice_quorum::Quorum::status`.
//!
//! Mapping of the Raft state onto Kafka's fields: the quorum's log is the partition
//! `__cluster_metadata`-0; `leader_epoch` is the Raft term; `high_watermark` is the committed
//! index + 1 and a voter's `log_end_offset` the index it is known to hold + 1 (Kafka's offsets
//! are exclusive ends; only the differences — a voter's lag — mean anything). Only the quorum
//! leader knows its followers' logs: any other node answers with its own log end and -1
//! (unknown) for the others, as it answers the timestamps it does not track. A node without
//! `--voters` is the one voter of its own quorum. Kafka brokers
//! forward DescribeQuorum to the active controller; Sluice answers locally (`sluice cluster
//! status` asks the quorum leader). The observers are the quorum's learners (broker-only nodes,
//! removed voters still running), reported like the voters.
//!
//! AddRaftVoter (API 80) / RemoveRaftVoter (API 81) and UnregisterBroker (API 64) go to the
//! controller (`cluster/membership.rs`) through any broker, as Kafka brokers forward them.
//! AddRaftVoter promotes a node that already runs as a non-voting member (it joined with its
//! own `--cluster-addr`): `listeners` may be empty, or must name that address; the directory
//! ids of KIP-853 are not used (Sluice has no directory ids; a voter is its node id), nor is
//! `timeout_ms` (a learner that has not caught up is refused with REQUEST_TIMED_OUT at once;
//! `sluice cluster add-voter` retries).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, BrokerId, DescribeQuorumRequest,
    DescribeQuorumResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_quorum::{QuorumStatus, VoterStatus};
use uuid::Uuid;

use super::s;
use crate::broker::{now_ms, Broker};
use crate::cluster::{CtrlRequest, INCONSISTENT_CLUSTER_ID};

/// The name Kafka gives the metadata log's topic.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn describe_quorum(broker: &Broker, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let status = broker.metadata.cluster.quorum.status();
    answer(&status, &req, now_ms())
}

/// The response for `req` from `status` (pure: unit-tested below).
fn answer(status: &QuorumStatus, req: &DescribeQuorumRequest, now: i64) -> DescribeQuorumResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let known_topic = t.topic_name.0.as_str() == METADATA_TOPIC;
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            if known_topic && p.partition_index == 0 {
                                partition(status, now)
                            } else {
                                PartitionData::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                                    .with_leader_id(BrokerId(-1))
                                    .with_leader_epoch(-1)
                                    .with_high_watermark(-1)
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(topics)
        .with_nodes(nodes(status))
}

fn id(n: u64) -> BrokerId {
    BrokerId(i32::try_from(n).unwrap_or(-1))
}

/// An index known held (Some) as an exclusive end offset; unknown is -1.
fn end_offset(index: Option<u64>) -> i64 {
    index
        .and_then(|i| i64::try_from(i).ok())
        .map_or(-1, |i| i.saturating_add(1))
}

/// The voters of the membership, or this node alone when it runs without (a one-node cluster, whose
/// quorum config lists no voter).
fn voters(status: &QuorumStatus) -> Vec<VoterStatus> {
    if status.voters.is_empty() {
        return vec![VoterStatus {
            node_id: status.node_id,
            addr: String::new(),
            matched: Some(status.last_log_index),
        }];
    }
    status.voters.clone()
}

fn partition(status: &QuorumStatus, now: i64) -> PartitionData {
    let leading = status.leader == Some(status.node_id);
    let states = |members: &[VoterStatus]| -> Vec<ReplicaState> {
        members
            .iter()
            .map(|v| {
                // The leader knows what each voter holds; any other node only its own log.
                let known = if leading {
                    v.matched
                } else if v.node_id == status.node_id {
                    Some(status.last_log_index)
                } else {
                    None
                };
                let me = v.node_id == status.node_id;
                // A voter holding the leader's whole log is caught up now.
                let caught_up = leading && known.is_some_and(|m| m >= status.last_log_index);
                ReplicaState::default()
                    .with_replica_id(id(v.node_id))
                    .with_replica_directory_id(Uuid::nil())
                    .with_log_end_offset(end_offset(known))
                    .with_last_fetch_timestamp(if leading && me { now } else { -1 })
                    .with_last_caught_up_timestamp(if caught_up { now } else { -1 })
            })
            .collect()
    };
    let voters = states(&voters(status));
    let observers = states(&status.learners);
    let error = match (&status.running, status.leader) {
        (Err(_), _) | (_, None) => ResponseError::NotLeaderOrFollower.code(),
        _ => 0,
    };
    PartitionData::default()
        .with_partition_index(0)
        .with_error_code(error)
        .with_error_message(status.running.as_ref().err().map(|e| s(e.clone())))
        .with_leader_id(status.leader.map_or(BrokerId(-1), id))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(end_offset(Some(status.committed)))
        .with_current_voters(voters)
        .with_observers(observers)
}

fn nodes(status: &QuorumStatus) -> Vec<Node> {
    voters(status)
        .iter()
        .chain(status.learners.iter())
        .map(|v| {
            let listeners = v
                .addr
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
                .map(|(host, port)| {
                    vec![Listener::default()
                        .with_name(s("CLUSTER"))
                        .with_host(s(host.trim_start_matches('[').trim_end_matches(']')))
                        .with_port(port)]
                })
                .unwrap_or_default();
            Node::default()
                .with_node_id(id(v.node_id))
                .with_listeners(listeners)
        })
        .collect()
}

/// Sends a membership request to the controller; (error code, message).
async fn membership(broker: &Broker, req: CtrlRequest) -> (i16, Option<StrBytes>) {
    match broker.metadata.cluster.request(req).await {
        Ok((index, _)) => {
            broker
                .metadata
                .cluster
                .wait_applied(index, std::time::Duration::from_secs(10))
                .await;
            (0, None)
        }
        Err(e) => (e.code, Some(s(e.message))),
    }
}

/// A request naming another cluster is refused (INCONSISTENT_CLUSTER_ID).
fn wrong_cluster(
    broker: &Broker,
    cluster_id: Option<&StrBytes>,
) -> Option<(i16, Option<StrBytes>)> {
    let mine = broker.metadata.cluster.cluster_id();
    cluster_id
        .filter(|c| !c.is_empty() && c.as_str() != mine)
        .map(|c| {
            (
                INCONSISTENT_CLUSTER_ID,
                Some(s(format!("this is cluster {mine}, not {}", c.as_str()))),
            )
        })
}

/// AddRaftVoter (API 80): makes a non-voting member a voter.
pub async fn add_raft_voter(broker: &Broker, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let (code, message) = match wrong_cluster(broker, req.cluster_id.as_ref()) {
        Some(e) => e,
        None => match listener_mismatch(broker, &req) {
            Some(e) => e,
            None => {
                membership(
                    broker,
                    CtrlRequest::AddVoter {
                        node_id: req.voter_id,
                    },
                )
                .await
            }
        },
    };
    AddRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message)
}

/// The listeners of an AddRaftVoter must name the address the node joined with (when given).
fn listener_mismatch(
    broker: &Broker,
    req: &AddRaftVoterRequest,
) -> Option<(i16, Option<StrBytes>)> {
    if req.listeners.is_empty() {
        return None;
    }
    let node = u64::try_from(req.voter_id).ok()?;
    let known = broker.metadata.cluster.quorum.addr_of(node)?;
    let matches = req.listeners.iter().any(|l| {
        let host = l.host.as_str();
        known == format!("{host}:{}", l.port) || known == format!("[{host}]:{}", l.port)
    });
    (!matches).then(|| {
        (
            ResponseError::InvalidRequest.code(),
            Some(s(format!(
                "node {node} is a member at {known}, which none of the request's listeners names"
            ))),
        )
    })
}

/// RemoveRaftVoter (API 81): makes a voter a non-voting member.
pub async fn remove_raft_voter(
    broker: &Broker,
    req: RemoveRaftVoterRequest,
) -> RemoveRaftVoterResponse {
    let (code, message) = match wrong_cluster(broker, req.cluster_id.as_ref()) {
        Some(e) => e,
        None => {
            membership(
                broker,
                CtrlRequest::RemoveVoter {
                    node_id: req.voter_id,
                },
            )
            .await
        }
    };
    RemoveRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message)
}

/// UnregisterBroker (API 64): removes a stopped, drained, non-voting node.
pub async fn unregister_broker(
    broker: &Broker,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let (code, message) = membership(
        broker,
        CtrlRequest::UnregisterBroker {
            node_id: req.broker_id.0,
        },
    )
    .await;
    UnregisterBrokerResponse::default()
        .with_error_code(code)
        .with_error_message(message)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{describe_quorum_request, TopicName};

    use super::*;

    fn status(node: u64, leader: Option<u64>, matched: [Option<u64>; 3]) -> QuorumStatus {
        QuorumStatus {
            node_id: node,
            leader,
            term: 4,
            committed: 41,
            applied: 41,
            last_log_index: 42,
            quorum_ack_age_ms: Some(3),
            voters: (1..=3)
                .map(|i| VoterStatus {
                    node_id: i,
                    addr: format!("10.0.0.{i}:9093"),
                    matched: matched[i as usize - 1],
                })
                .collect(),
            learners: Vec::new(),
            joint: false,
            running: Ok(()),
        }
    }

    fn request(topic: &str, partition: i32) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(s(topic)))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()
                    .with_partition_index(partition)]),
        ])
    }

    #[test]
    fn leader_reports_every_voter() {
        let st = status(1, Some(1), [Some(42), Some(40), None]);
        let r = answer(&st, &request(METADATA_TOPIC, 0), 1000);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id, BrokerId(1));
        assert_eq!(p.leader_epoch, 4);
        assert_eq!(p.high_watermark, 42);
        let leo: Vec<i64> = p.current_voters.iter().map(|v| v.log_end_offset).collect();
        assert_eq!(leo, vec![43, 41, -1]);
        let caught: Vec<i64> = p
            .current_voters
            .iter()
            .map(|v| v.last_caught_up_timestamp)
            .collect();
        assert_eq!(caught, vec![1000, -1, -1]);
        assert!(p.observers.is_empty());
        assert_eq!(r.nodes.len(), 3);
        assert_eq!(r.nodes[1].listeners[0].host.as_str(), "10.0.0.2");
        assert_eq!(r.nodes[1].listeners[0].port, 9093);
    }

    #[test]
    fn learners_are_observers() {
        let mut st = status(1, Some(1), [Some(42), Some(42), Some(42)]);
        st.learners.push(VoterStatus {
            node_id: 4,
            addr: "10.0.0.4:9093".into(),
            matched: Some(40),
        });
        let r = answer(&st, &request(METADATA_TOPIC, 0), 1000);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.current_voters.len(), 3);
        assert_eq!(p.observers.len(), 1);
        assert_eq!(p.observers[0].replica_id, BrokerId(4));
        assert_eq!(p.observers[0].log_end_offset, 41);
        assert_eq!(p.observers[0].last_caught_up_timestamp, -1);
        assert_eq!(r.nodes.len(), 4);
        assert_eq!(r.nodes[3].listeners[0].host.as_str(), "10.0.0.4");
    }

    #[test]
    fn follower_reports_only_itself() {
        let st = status(2, Some(1), [None, None, None]);
        let p = &answer(&st, &request(METADATA_TOPIC, 0), 1000).topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id, BrokerId(1));
        let leo: Vec<i64> = p.current_voters.iter().map(|v| v.log_end_offset).collect();
        assert_eq!(leo, vec![-1, 43, -1]);
    }

    #[test]
    fn single_node_is_its_own_voter() {
        let mut st = status(1, Some(1), [None, None, None]);
        st.voters.clear();
        let r = answer(&st, &request(METADATA_TOPIC, 0), 1000);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id, BrokerId(1));
        assert_eq!(p.current_voters.len(), 1);
        assert_eq!(p.current_voters[0].replica_id, BrokerId(1));
        assert_eq!(p.current_voters[0].log_end_offset, 43);
        assert_eq!(r.nodes.len(), 1);
        assert!(r.nodes[0].listeners.is_empty());
    }

    #[test]
    fn no_leader_and_unknown_partitions() {
        let st = status(2, None, [None, None, None]);
        let p = &answer(&st, &request(METADATA_TOPIC, 0), 1000).topics[0].partitions[0];
        assert_eq!(p.error_code, ResponseError::NotLeaderOrFollower.code());
        assert_eq!(p.leader_id, BrokerId(-1));
        for (topic, part) in [("other", 0), (METADATA_TOPIC, 1)] {
            let st = status(1, Some(1), [Some(42), Some(42), Some(42)]);
            let p = &answer(&st, &request(topic, part), 1000).topics[0].partitions[0];
            assert_eq!(p.error_code, ResponseError::UnknownTopicOrPartition.code());
        }
    }
}
