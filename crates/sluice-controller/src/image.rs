//! The cluster image: the state every node rebuilds by applying the metadata log in order
//! (and the snapshot format of that log).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{
    ListenerEndpoint, MetadataRecord, NodeId, QuotaEntity, QuotaValue, ScramCredentialInfo,
    NO_LEADER,
};

/// The topic config that allows electing a leader outside the ISR.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: NodeId,
    pub incarnation_id: Uuid,
    pub kafka_host: String,
    pub kafka_port: i32,
    pub cluster_addr: String,
    pub rack: Option<String>,
    /// The advertised HTTP address (`host:port`), if the broker registered one (images of
    /// older versions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    /// Every advertised Kafka listener (empty in images of older versions: one PLAINTEXT
    /// listener at `kafka_host:kafka_port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerEndpoint>,
    /// The log index of the registration record.
    pub broker_epoch: i64,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
    pub draining: bool,
}

impl BrokerInfo {
    /// The `host:port` clients of listener `name` are told (Kafka answers Metadata with the
    /// endpoints of the listener a request came in on). A broker registered without listeners
    /// (an older version) answers with its one endpoint; one without this listener has none
    /// (Kafka leaves it out rather than send a client to a port speaking another protocol).
    pub fn endpoint(&self, name: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return Some((self.kafka_host.as_str(), self.kafka_port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| (l.host.as_str(), l.port))
    }

    /// Kafka's `isActive`: may lead partitions and join ISRs.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// One partition's replication state (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// The assigned replicas; `replicas[0]` is the preferred leader. During a reassignment
    /// this is target ∪ current (target first).
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// [`NO_LEADER`] when offline.
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    #[serde(default)]
    pub adding_replicas: Vec<NodeId>,
    #[serde(default)]
    pub removing_replicas: Vec<NodeId>,
}

impl PartitionInfo {
    /// The preferred leader (`replicas[0]`).
    pub fn preferred_leader(&self) -> NodeId {
        self.replicas.first().copied().unwrap_or(NO_LEADER)
    }

    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas as they were before the ongoing reassignment (Kafka's
    /// `originalReplicas`: replicas without the adding ones).
    pub fn original_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }

    /// The target of the ongoing reassignment (replicas without the removing ones).
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// The structural rules every partition satisfies: replicas non-empty without duplicates,
    /// ISR non-empty without duplicates and ⊆ replicas, leader ∈ ISR or none, adding and
    /// removing ⊆ replicas and disjoint, epochs ≥ 0.
    pub fn is_well_formed(&self) -> bool {
        fn distinct(v: &[NodeId]) -> bool {
            let s: BTreeSet<_> = v.iter().collect();
            s.len() == v.len() && v.iter().all(|&n| n >= 0)
        }
        !self.replicas.is_empty()
            && distinct(&self.replicas)
            && !self.isr.is_empty()
            && distinct(&self.isr)
            && self.isr.iter().all(|r| self.replicas.contains(r))
            && (self.leader == NO_LEADER || self.isr.contains(&self.leader))
            && distinct(&self.adding_replicas)
            && distinct(&self.removing_replicas)
            && self
                .adding_replicas
                .iter()
                .all(|r| self.replicas.contains(r))
            && self
                .removing_replicas
                .iter()
                .all(|r| self.replicas.contains(r))
            && self
                .adding_replicas
                .iter()
                .all(|r| !self.removing_replicas.contains(r))
            && self.replicas.len() > self.removing_replicas.len()
            && self.leader_epoch >= 0
            && self.partition_epoch >= 0
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    /// Indexed by partition id (partitions are always `0..len`).
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
    }

    /// `unclean.leader.election.enable` of this topic, or `default` when unset or not a boolean.
    pub fn unclean_leader_election(&self, default: bool) -> bool {
        match self.configs.get(UNCLEAN_LEADER_ELECTION_ENABLE) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => default,
        }
    }
}

/// What applying a record changed, so the broker can react.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A broker registered, was fenced or unfenced, began a controlled shutdown or changed
    /// its draining flag.
    Broker(NodeId),
    BrokerUnregistered(NodeId),
    TopicCreated {
        name: String,
        id: Uuid,
    },
    /// The topic and its partitions `0..partitions` are gone.
    TopicDeleted {
        name: String,
        id: Uuid,
        partitions: i32,
    },
    TopicConfigs(Uuid),
    /// A partition was created or changed.
    Partition {
        topic_id: Uuid,
        partition: i32,
    },
    ProducerIdBlock,
    GroupConfigs(String),
    ClientQuotas,
    /// A user's SCRAM credentials changed.
    ScramCredentials,
    /// ACL bindings were created or removed.
    Acls,
    /// The decision in this log entry was made against another image: none of its records
    /// applied (the controller must not send its reply).
    DecisionRejected,
}

/// The quotas set on one client-quota entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotas {
    pub entity: QuotaEntity,
    pub quotas: BTreeMap<String, QuotaValue>,
}

/// The cluster metadata as of `last_applied` (serde: the snapshot format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    pub topics: BTreeMap<Uuid, TopicInfo>,
    pub topic_ids: BTreeMap<String, Uuid>,
    /// The first producer id of the next block to hand out.
    pub next_producer_id: i64,
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Client quotas by entity, sorted by entity (images of older versions have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_quotas: Vec<ClientQuotas>,
    /// SCRAM credentials by user, then by mechanism code (images of older versions have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: BTreeMap<String, BTreeMap<i8, ScramCredentialInfo>>,
    /// ACL bindings by id (images of older versions have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acls: BTreeMap<u64, sluice_acl::AclBinding>,
    /// The log index of the last record applied.
    pub last_applied: u64,
    /// The log index whose decision was rejected by its [`MetadataRecord::Guard`]: the rest
    /// of that entry is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_index: Option<u64>,
    /// The cluster's id ([`MetadataRecord::ClusterId`]; the first applied stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

impl ClusterImage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one committed record at log `index` (several records may share an index: one
    /// log entry carries a batch). Never panics; a record that no longer makes sense (a change
    /// to a deleted topic, a fence for an older broker epoch, a partition change decided on an
    /// older partition epoch, a change that would break [`PartitionInfo::is_well_formed`]) or
    /// an index below `last_applied` is ignored and returns no [`Change`] — deterministically,
    /// so every node ends with the same image.
    ///
    /// A [`MetadataRecord::Guard`] whose `based_on` is not the `last_applied` before its entry
    /// rejects the rest of its entry (returning [`Change::DecisionRejected`]); a guard that
    /// holds returns no change.
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) -> Vec<Change> {
        let previous = self.last_applied;
        if index < previous {
            return Vec::new();
        }
        self.last_applied = index;
        if let MetadataRecord::Guard { based_on } = record {
            if *based_on == previous {
                self.rejected_index = None;
                return Vec::new();
            }
            self.rejected_index = Some(index);
            return vec![Change::DecisionRejected];
        }
        if self.rejected_index == Some(index) {
            return Vec::new();
        }
        self.apply_inner(index, record).unwrap_or_default()
    }

    fn apply_inner(&mut self, index: u64, record: &MetadataRecord) -> Option<Vec<Change>> {
        match record {
            MetadataRecord::Guard { .. } => None,
            MetadataRecord::RegisterBroker {
                node_id,
                incarnation_id,
                kafka_host,
                kafka_port,
                cluster_addr,
                rack,
                http_addr,
                listeners,
            } => {
                if *node_id < 0 {
                    return None;
                }
                let broker_epoch = i64::try_from(index).ok()?;
                let draining = self.brokers.get(node_id).is_some_and(|b| b.draining);
                self.brokers.insert(
                    *node_id,
                    BrokerInfo {
                        node_id: *node_id,
                        incarnation_id: *incarnation_id,
                        kafka_host: kafka_host.clone(),
                        kafka_port: *kafka_port,
                        cluster_addr: cluster_addr.clone(),
                        rack: rack.clone(),
                        http_addr: http_addr.clone(),
                        listeners: listeners.clone(),
                        broker_epoch,
                        fenced: true,
                        in_controlled_shutdown: false,
                        draining,
                    },
                );
                Some(vec![Change::Broker(*node_id)])
            }
            MetadataRecord::UnregisterBroker { node_id } => {
                // Never leave replicas on an id that is gone.
                if self
                    .partitions()
                    .any(|(_, _, p)| p.replicas.contains(node_id))
                {
                    return None;
                }
                self.brokers.remove(node_id)?;
                Some(vec![Change::BrokerUnregistered(*node_id)])
            }
            MetadataRecord::FenceBroker {
                node_id,
                broker_epoch,
            } => {
                let b = self.broker_at_epoch(*node_id, *broker_epoch)?;
                b.fenced = true;
                b.in_controlled_shutdown = false;
                Some(vec![Change::Broker(*node_id)])
            }
            MetadataRecord::UnfenceBroker {
                node_id,
                broker_epoch,
            } => {
                let b = self.broker_at_epoch(*node_id, *broker_epoch)?;
                b.fenced = false;
                Some(vec![Change::Broker(*node_id)])
            }
            MetadataRecord::ControlledShutdown {
                node_id,
                broker_epoch,
            } => {
                let b = self.broker_at_epoch(*node_id, *broker_epoch)?;
                b.in_controlled_shutdown = true;
                Some(vec![Change::Broker(*node_id)])
            }
            MetadataRecord::ClusterId { cluster_id } => {
                if self.cluster_id.is_some() || cluster_id.is_empty() || cluster_id.len() > 64 {
                    return None;
                }
                self.cluster_id = Some(cluster_id.clone());
                Some(Vec::new())
            }
            MetadataRecord::SetDraining { node_id, draining } => {
                let b = self.brokers.get_mut(node_id)?;
                b.draining = *draining;
                Some(vec![Change::Broker(*node_id)])
            }
            MetadataRecord::TopicCreated { name, id, configs } => {
                if name.is_empty()
                    || id.is_nil()
                    || self.topic_ids.contains_key(name)
                    || self.topics.contains_key(id)
                {
                    return None;
                }
                self.topic_ids.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicInfo {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: Vec::new(),
                    },
                );
                Some(vec![Change::TopicCreated {
                    name: name.clone(),
                    id: *id,
                }])
            }
            MetadataRecord::PartitionCreated {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let topic = self.topics.get(topic_id)?;
                if usize::try_from(*partition).ok()? != topic.partitions.len() {
                    return None;
                }
                let p = PartitionInfo {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                };
                if !p.is_well_formed() || !self.may_hold(&p, Some(*leader)) {
                    return None;
                }
                let topic = self.topics.get_mut(topic_id)?;
                topic.partitions.push(p);
                Some(vec![Change::Partition {
                    topic_id: *topic_id,
                    partition: *partition,
                }])
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                expected_partition_epoch,
                leader,
                isr,
                replicas,
                adding_replicas,
                removing_replicas,
            } => {
                let index = usize::try_from(*partition).ok()?;
                let p = self.topics.get(topic_id)?.partitions.get(index)?;
                if p.partition_epoch != *expected_partition_epoch {
                    return None;
                }
                let mut next = p.clone();
                next.partition_epoch = p.partition_epoch.checked_add(1)?;
                if let Some(l) = leader {
                    next.leader = *l;
                    next.leader_epoch = p.leader_epoch.checked_add(1)?;
                }
                if let Some(v) = isr {
                    next.isr = v.clone();
                }
                if let Some(v) = replicas {
                    next.replicas = v.clone();
                }
                if let Some(v) = adding_replicas {
                    next.adding_replicas = v.clone();
                }
                if let Some(v) = removing_replicas {
                    next.removing_replicas = v.clone();
                }
                if !next.is_well_formed() || !self.may_hold(&next, *leader) {
                    return None;
                }
                let slot = self.topics.get_mut(topic_id)?.partitions.get_mut(index)?;
                *slot = next;
                Some(vec![Change::Partition {
                    topic_id: *topic_id,
                    partition: *partition,
                }])
            }
            MetadataRecord::TopicConfigsReplaced { topic_id, configs } => {
                let topic = self.topics.get_mut(topic_id)?;
                topic.configs = configs.clone();
                Some(vec![Change::TopicConfigs(*topic_id)])
            }
            MetadataRecord::TopicDeleted { name, id } => {
                if self.topic_ids.get(name) != Some(id) {
                    return None;
                }
                self.topic_ids.remove(name);
                let t = self.topics.remove(id)?;
                Some(vec![Change::TopicDeleted {
                    name: name.clone(),
                    id: *id,
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                }])
            }
            MetadataRecord::ProducerIdBlock { next_block_start } => {
                if *next_block_start <= self.next_producer_id {
                    return None;
                }
                self.next_producer_id = *next_block_start;
                Some(vec![Change::ProducerIdBlock])
            }
            MetadataRecord::GroupConfigsReplaced { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), configs.clone());
                }
                Some(vec![Change::GroupConfigs(group.clone())])
            }
            MetadataRecord::ClientQuotasReplaced { entity, quotas } => {
                let at = self
                    .client_quotas
                    .binary_search_by(|q| q.entity.cmp(entity));
                match (at, quotas.is_empty()) {
                    (Ok(i), true) => {
                        self.client_quotas.remove(i);
                    }
                    (Ok(i), false) => self.client_quotas[i].quotas = quotas.clone(),
                    (Err(_), true) => return None,
                    (Err(i), false) => self.client_quotas.insert(
                        i,
                        ClientQuotas {
                            entity: entity.clone(),
                            quotas: quotas.clone(),
                        },
                    ),
                }
                Some(vec![Change::ClientQuotas])
            }
            MetadataRecord::UserScramCredential { name, credential } => {
                self.scram_credentials
                    .entry(name.clone())
                    .or_default()
                    .insert(credential.mechanism, credential.clone());
                Some(vec![Change::ScramCredentials])
            }
            MetadataRecord::AclCreated { id, binding } => {
                if self.acls.contains_key(id) {
                    return None;
                }
                self.acls.insert(*id, binding.clone());
                Some(vec![Change::Acls])
            }
            MetadataRecord::AclRemoved { id } => {
                self.acls.remove(id)?;
                Some(vec![Change::Acls])
            }
            MetadataRecord::UserScramCredentialRemoved { name, mechanism } => {
                let user = self.scram_credentials.get_mut(name)?;
                user.remove(mechanism)?;
                if user.is_empty() {
                    self.scram_credentials.remove(name);
                }
                Some(vec![Change::ScramCredentials])
            }
        }
    }

    /// The quotas set on `entity` (none if it has none).
    pub fn client_quotas_of(&self, entity: &QuotaEntity) -> Option<&BTreeMap<String, QuotaValue>> {
        self.client_quotas
            .binary_search_by(|q| q.entity.cmp(entity))
            .ok()
            .map(|i| &self.client_quotas[i].quotas)
    }

    /// Every replica of `p` is registered, and a leader being set (`Some`, not -1) is
    /// registered, unfenced and not shutting down: a decision made on an out-of-date image cannot hand a
    /// partition to a broker that is gone or fenced.
    fn may_hold(&self, p: &PartitionInfo, new_leader: Option<NodeId>) -> bool {
        p.replicas.iter().all(|r| self.brokers.contains_key(r))
            && match new_leader {
                None | Some(NO_LEADER) => true,
                Some(l) => self.brokers.get(&l).is_some_and(|b| b.is_active()),
            }
    }

    fn broker_at_epoch(&mut self, node_id: NodeId, broker_epoch: i64) -> Option<&mut BrokerInfo> {
        self.brokers
            .get_mut(&node_id)
            .filter(|b| b.broker_epoch == broker_epoch)
    }

    // ---- Views ----

    pub fn broker(&self, node_id: NodeId) -> Option<&BrokerInfo> {
        self.brokers.get(&node_id)
    }

    /// Registered, unfenced brokers (in node id order).
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Registered, unfenced and not in controlled shutdown (may lead and join ISRs).
    pub fn is_active(&self, node_id: NodeId) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| b.is_active())
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicInfo> {
        self.topics.get(id)
    }

    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionInfo> {
        self.topics.get(topic_id)?.partition(partition)
    }

    /// Every partition as (topic, partition id, state), in topic id then partition order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicInfo, i32, &PartitionInfo)> {
        self.topics.values().flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (t, i32::try_from(i).unwrap_or(i32::MAX), p))
        })
    }

    /// (topic id, partition) of the partitions `node_id` leads.
    pub fn partitions_led_by(&self, node_id: NodeId) -> Vec<(Uuid, i32)> {
        self.partitions()
            .filter(|(_, _, p)| p.leader == node_id)
            .map(|(t, i, _)| (t.id, i))
            .collect()
    }

    /// (topic id, partition) of the partitions with a replica on `node_id`.
    pub fn partitions_hosted_by(&self, node_id: NodeId) -> Vec<(Uuid, i32)> {
        self.partitions()
            .filter(|(_, _, p)| p.replicas.contains(&node_id))
            .map(|(t, i, _)| (t.id, i))
            .collect()
    }

    /// Partitions whose ISR is smaller than their replica set.
    pub fn under_replicated_partitions(&self) -> Vec<(Uuid, i32)> {
        self.partitions()
            .filter(|(_, _, p)| p.isr.len() < p.replicas.len())
            .map(|(t, i, _)| (t.id, i))
            .collect()
    }

    /// Partitions without a leader.
    pub fn offline_partitions(&self) -> Vec<(Uuid, i32)> {
        self.partitions()
            .filter(|(_, _, p)| p.leader == NO_LEADER)
            .map(|(t, i, _)| (t.id, i))
            .collect()
    }

    /// The preferred leader of a partition (`replicas[0]`), if the partition exists.
    pub fn preferred_leader(&self, topic_id: &Uuid, partition: i32) -> Option<NodeId> {
        self.partition(topic_id, partition)
            .map(|p| p.preferred_leader())
    }
}
