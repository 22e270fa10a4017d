//! Cluster administration: DescribeCluster (60), DescribeQuorum (55), topics and partitions
//! with manual replica assignments (CreateTopics 19, CreatePartitions 37), ElectLeaders (43),
//! AlterPartitionReassignments (45) and ListPartitionReassignments (46).
//!
//! Routing follows Kafka's admin client: DescribeCluster goes to any broker (the bootstrap one);
//! the others go to the controller Metadata names — in KRaft clusters a broker, which forwards
//! to the active controller. When that broker cannot be reached, or answers NOT_CONTROLLER,
//! metadata is refreshed and the request is sent once more (to the new controller, else the
//! bootstrap broker). Versions are negotiated per broker (`versions.rs`); fields newer than the
//! negotiated version are left out, as Kafka's client does.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
    create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic},
    create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig},
    describe_quorum_request::{PartitionData, TopicData},
    elect_leaders_request::TopicPartitions,
    list_partition_reassignments_request::ListPartitionReassignmentsTopics,
    AddRaftVoterRequest, AlterPartitionReassignmentsRequest, ApiKey, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DescribeClusterRequest, DescribeQuorumRequest,
    ElectLeadersRequest, ListPartitionReassignmentsRequest, RemoveRaftVoterRequest,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::Request;

use crate::client::{s, topic_name, Client};
use crate::error::{check, error_name, Error, Result};

/// Kafka's NOT_CONTROLLER: the request reached a broker that is no longer the controller.
const NOT_CONTROLLER: i16 = 41;
/// NOT_LEADER_OR_FOLLOWER: DescribeQuorum reached a node that does not lead the quorum.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// ELECTION_NOT_NEEDED: the preferred replica already leads (not a failure).
pub const ELECTION_NOT_NEEDED: i16 = 84;

/// One broker as DescribeCluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Fenced brokers are listed only when asked for (DescribeCluster v2+).
    pub is_fenced: bool,
}

impl ClusterBroker {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub cluster_id: String,
    /// The controller as the broker reports it (-1: none known). In a KRaft cluster Kafka
    /// reports a live broker here (the controllers are not addressable by clients).
    pub controller_id: i32,
    pub brokers: Vec<ClusterBroker>,
}

/// The metadata log's name in a KRaft cluster (DescribeQuorum asks about its partition 0).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// One member of the metadata quorum, as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    pub node_id: i32,
    pub log_end_offset: i64,
    /// Unix ms of the last fetch from the leader (-1: unknown).
    pub last_fetch_timestamp: i64,
    /// Unix ms when this replica last had caught up with the leader (-1: unknown).
    pub last_caught_up_timestamp: i64,
}

/// The metadata quorum (DescribeQuorum): its leader, epoch, high watermark, voters and
/// observers (brokers that replicate the metadata log without voting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumReplica>,
    pub observers: Vec<QuorumReplica>,
}

impl QuorumInfo {
    /// How many records `replica` is behind the leader's log end (0 for the leader); `None`
    /// when either end is unknown (-1: a voter the leader has not heard from since it was elected).
    pub fn lag(&self, replica: &QuorumReplica) -> Option<i64> {
        let leader_end = self
            .voters
            .iter()
            .find(|v| v.node_id == self.leader_id)
            .map_or(self.high_watermark, |l| l.log_end_offset);
        if leader_end < 0 || replica.log_end_offset < 0 {
            return None;
        }
        Some(leader_end.saturating_sub(replica.log_end_offset).max(0))
    }
}

/// ElectLeaders' election type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Make the first live, in-sync replica of the assignment the leader.
    Preferred = 0,
    /// Elect a leader from outside the ISR when no in-sync replica is alive (may lose data).
    Unclean = 1,
}

/// The outcome for one partition of an ElectLeaders or AlterPartitionReassignments request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    /// 0 on success; [`ELECTION_NOT_NEEDED`] when the leader already is the one asked for.
    pub error_code: i16,
    pub error_message: Option<String>,
}

impl PartitionResult {
    /// Kafka's name of the error code (`NONE` for success).
    pub fn error_name(&self) -> String {
        error_name(self.error_code)
    }
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    /// The current replica set (target and source replicas while the move runs).
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// A replica move: the partition's new replica list (preferred leader first), or `None`
/// to cancel a reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

impl Client {
    /// Sends an admin request to the controller, once more after a metadata refresh when
    /// that broker is unreachable. `retry_on` says whether a response asks for the retry
    /// (NOT_CONTROLLER).
    async fn send_admin<R: Request + Clone>(
        &mut self,
        req: &R,
        retry_on: impl Fn(&R::Response) -> bool,
    ) -> Result<R::Response> {
        self.metadata(Some(&[]), false).await?;
        let addr = self.admin_addr();
        match self.send_to(&addr, req).await {
            Ok(resp) if !retry_on(&resp) => return Ok(resp),
            Ok(_) => {}
            Err(e @ (Error::Connect { .. } | Error::Io { .. } | Error::Timeout { .. })) => {
                if addr == self.bootstrap() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        self.metadata(Some(&[]), false).await?;
        let addr = self.admin_addr();
        self.send_to(&addr, req).await
    }

    /// The admin address after a metadata refresh (for callers that need the version).
    async fn admin_version(&mut self, api: ApiKey) -> Result<i16> {
        self.metadata(Some(&[]), false).await?;
        let addr = self.admin_addr();
        match self.version_at(&addr, api).await {
            Ok(v) => Ok(v),
            Err(Error::Connect { .. } | Error::Io { .. } | Error::Timeout { .. }) => {
                let b = self.bootstrap();
                self.version_at(&b, api).await
            }
            Err(e) => Err(e),
        }
    }

    /// DescribeCluster (API 60): cluster id, controller and brokers with racks. With
    /// `include_fenced` (v2+) fenced brokers are listed too, marked as such.
    pub async fn describe_cluster(&mut self, include_fenced: bool) -> Result<ClusterDescription> {
        let addr = self.bootstrap();
        let version = self.version_at(&addr, ApiKey::DescribeCluster).await?;
        let mut req = DescribeClusterRequest::default();
        if version >= 1 {
            req.endpoint_type = 1; // brokers
        }
        if version >= 2 {
            req.include_fenced_brokers = include_fenced;
        }
        let resp = self.send_to(&addr, &req).await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "describe cluster".into()
        })?;
        let mut brokers: Vec<ClusterBroker> = resp
            .brokers
            .iter()
            .map(|b| ClusterBroker {
                node_id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                is_fenced: b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id.to_string(),
            controller_id: resp.controller_id.0,
            brokers,
        })
    }

    /// DescribeQuorum (API 55) about the metadata log, as Kafka's `kafka-metadata-quorum.sh
    /// --bootstrap-server` asks it (a broker forwards it to the controllers). `Ok(None)` when
    /// the broker does not offer the API (a cluster without a KRaft-style quorum to report).
    pub async fn describe_quorum(&mut self) -> Result<Option<QuorumInfo>> {
        let addr = self.bootstrap();
        match self.version_at(&addr, ApiKey::DescribeQuorum).await {
            Ok(_) => {}
            Err(Error::Unsupported { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(topic_name(METADATA_TOPIC))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        // To the controller (the quorum leader in Sluice; a broker forwarding to it in Kafka):
        // only the leader knows every voter's log end.
        let resp = self
            .send_admin(&req, |r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .any(|p| p.error_code == NOT_LEADER_OR_FOLLOWER)
            })
            .await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "describe quorum".into()
        })?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| Error::Protocol {
                addr: addr.clone(),
                detail: "DescribeQuorum response lacks the metadata partition".into(),
            })?;
        check(p.error_code, p.error_message.as_deref(), || {
            "describe quorum".into()
        })?;
        let replicas =
            |rs: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
                let mut out: Vec<QuorumReplica> = rs
                    .iter()
                    .map(|r| QuorumReplica {
                        node_id: r.replica_id.0,
                        log_end_offset: r.log_end_offset,
                        last_fetch_timestamp: r.last_fetch_timestamp,
                        last_caught_up_timestamp: r.last_caught_up_timestamp,
                    })
                    .collect();
                out.sort_by_key(|r| r.node_id);
                out
            };
        Ok(Some(QuorumInfo {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: replicas(&p.current_voters),
            observers: replicas(&p.observers),
        }))
    }

    /// CreateTopics with a manual assignment: partition `i` gets replicas `assignment[i]`
    /// (preferred leader first); the partition count and replication factor follow from it.
    pub async fn create_topic_with_assignment(
        &mut self,
        name: &str,
        assignment: &[Vec<i32>],
        configs: &[(String, String)],
    ) -> Result<()> {
        if assignment.is_empty() {
            return Err(Error::Invalid(format!(
                "create topic {name}: the assignment lists no partition"
            )));
        }
        let assignments = assignment
            .iter()
            .enumerate()
            .map(|(i, replicas)| {
                Ok(CreatableReplicaAssignment::default()
                    .with_partition_index(i32::try_from(i).map_err(|_| {
                        Error::Invalid(format!("create topic {name}: too many partitions"))
                    })?)
                    .with_broker_ids(replicas.iter().map(|&b| BrokerId(b)).collect()))
            })
            .collect::<Result<Vec<_>>>()?;
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(assignments)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k.clone()))
                                .with_value(Some(s(v.clone())))
                        })
                        .collect(),
                )])
            .with_timeout_ms(self.timeout_ms());
        let resp = self
            .send_admin(&req, |r| {
                r.topics.iter().any(|t| t.error_code == NOT_CONTROLLER)
            })
            .await?;
        for t in &resp.topics {
            check(t.error_code, t.error_message.as_deref(), || {
                format!("create topic {name}")
            })?;
        }
        Ok(())
    }

    /// CreatePartitions (API 37): grows `name` to `total` partitions; with `assignments`,
    /// one replica list per new partition (preferred leader first), else the controller places them.
    pub async fn create_partitions_with_assignment(
        &mut self,
        name: &str,
        total: i32,
        assignments: Option<&[Vec<i32>]>,
    ) -> Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(total)
                .with_assignments(assignments.map(|a| {
                    a.iter()
                        .map(|replicas| {
                            CreatePartitionsAssignment::default()
                                .with_broker_ids(replicas.iter().map(|&b| BrokerId(b)).collect())
                        })
                        .collect()
                }))])
            .with_timeout_ms(self.timeout_ms());
        let resp = self
            .send_admin(&req, |r| {
                r.results.iter().any(|t| t.error_code == NOT_CONTROLLER)
            })
            .await?;
        for r in &resp.results {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("add partitions to {name}")
            })?;
        }
        Ok(())
    }

    /// AddRaftVoter (API 80, KIP-853): makes `node`, which already runs as a non-voting member
    /// of the metadata quorum (an observer), a voter. Sent to a broker, which forwards it to
    /// the controller; the listeners are left empty (Sluice uses the address the node joined
    /// with).
    pub async fn add_raft_voter(&mut self, node: i32) -> Result<()> {
        self.admin_version(ApiKey::AddRaftVoter).await?;
        let req = AddRaftVoterRequest::default()
            .with_voter_id(node)
            .with_timeout_ms(self.timeout_ms());
        let resp = self
            .send_admin(&req, |r| r.error_code == NOT_CONTROLLER)
            .await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            format!("add voter {node}")
        })
    }

    /// RemoveRaftVoter (API 81, KIP-853): makes voter `node` a non-voting member of the
    /// metadata quorum.
    pub async fn remove_raft_voter(&mut self, node: i32) -> Result<()> {
        self.admin_version(ApiKey::RemoveRaftVoter).await?;
        let req = RemoveRaftVoterRequest::default().with_voter_id(node);
        let resp = self
            .send_admin(&req, |r| r.error_code == NOT_CONTROLLER)
            .await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            format!("remove voter {node}")
        })
    }

    /// UnregisterBroker (API 64): removes a stopped broker's registration (Kafka's
    /// `kafka-cluster.sh unregister`).
    pub async fn unregister_broker(&mut self, node: i32) -> Result<()> {
        self.admin_version(ApiKey::UnregisterBroker).await?;
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(node));
        let resp = self
            .send_admin(&req, |r| r.error_code == NOT_CONTROLLER)
            .await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            format!("unregister broker {node}")
        })
    }

    /// ElectLeaders (API 43) for `partitions` (`None`: every partition — Kafka then reports
    /// only the partitions it acted on). v0 knows preferred elections only. Per-partition
    /// outcomes are returned, errors included; a request-level error is an `Err`.
    pub async fn elect_leaders(
        &mut self,
        election: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<PartitionResult>> {
        let version = self.admin_version(ApiKey::ElectLeaders).await?;
        if version == 0 && election != ElectionType::Preferred {
            return Err(Error::Unsupported {
                addr: self.admin_addr(),
                api: "ElectLeaders".into(),
                detail: "unclean elections need ElectLeaders v1+".into(),
            });
        }
        let topic_partitions = partitions.map(|ps| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in ps {
                by_topic.entry(t.as_str()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect()
        });
        let mut req = ElectLeadersRequest::default()
            .with_topic_partitions(topic_partitions)
            .with_timeout_ms(self.timeout_ms());
        if version >= 1 {
            req.election_type = election as i8;
        }
        let resp = self
            .send_admin(&req, |r| r.error_code == NOT_CONTROLLER)
            .await?;
        check(resp.error_code, None, || "elect leaders".into())?;
        let mut out = Vec::new();
        for t in resp.replica_election_results {
            for p in t.partition_result {
                out.push(PartitionResult {
                    topic: t.topic.0.to_string(),
                    partition: p.partition_id,
                    error_code: p.error_code,
                    error_message: p.error_message.map(|m| m.to_string()),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// AlterPartitionReassignments (API 45): starts (or, with `replicas: None`, cancels) the
    /// given moves. The controller adds the target replicas, waits for them to join the ISR,
    /// then drops the others; follow progress with [`Client::list_partition_reassignments`].
    pub async fn alter_partition_reassignments(
        &mut self,
        moves: &[Reassignment],
    ) -> Result<Vec<PartitionResult>> {
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for m in moves {
            by_topic.entry(m.topic.as_str()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(m.partition)
                    .with_replicas(
                        m.replicas
                            .as_ref()
                            .map(|r| r.iter().map(|&b| BrokerId(b)).collect()),
                    ),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = self
            .send_admin(&req, |r| r.error_code == NOT_CONTROLLER)
            .await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "alter partition reassignments".into()
        })?;
        let mut out = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                out.push(PartitionResult {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    error_message: p.error_message.map(|m| m.to_string()),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// ListPartitionReassignments (API 46): the reassignments in progress, for `partitions`
    /// or (`None`) the whole cluster.
    pub async fn list_partition_reassignments(
        &mut self,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<OngoingReassignment>> {
        let topics = partitions.map(|ps| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in ps {
                by_topic.entry(t.as_str()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps)
                })
                .collect()
        });
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(topics);
        let resp = self
            .send_admin(&req, |r| r.error_code == NOT_CONTROLLER)
            .await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "list partition reassignments".into()
        })?;
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                out.push(OngoingReassignment {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    replicas: p.replicas.iter().map(|b| b.0).collect(),
                    adding: p.adding_replicas.iter().map(|b| b.0).collect(),
                    removing: p.removing_replicas.iter().map(|b| b.0).collect(),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(node_id: i32, log_end_offset: i64) -> QuorumReplica {
        QuorumReplica {
            node_id,
            log_end_offset,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        }
    }

    #[test]
    fn quorum_lag_is_behind_the_leaders_log_end() {
        let q = QuorumInfo {
            leader_id: 2,
            leader_epoch: 3,
            high_watermark: 20,
            voters: vec![r(1, -1), r(2, 22), r(3, 21)],
            observers: vec![r(4, 25)],
        };
        assert_eq!(q.lag(&q.voters[0]), None);
        assert_eq!(q.lag(&q.voters[1]), Some(0));
        assert_eq!(q.lag(&q.voters[2]), Some(1));
        assert_eq!(q.lag(&q.observers[0]), Some(0));
    }
}
