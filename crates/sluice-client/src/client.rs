//! [`Client`]: connections to the cluster's brokers (one per address), metadata, and one
//! method per admin, produce, fetch and group operation the tools use. Partition-level
//! requests go to the partition's leader as Metadata names it; group requests go to the
//! group's coordinator as FindCoordinator names it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_topics_request::DeleteTopicState,
    describe_configs_request::DescribeConfigsResource,
    fetch_request::{FetchPartition, FetchTopic},
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    },
    produce_request::{PartitionProduceData, TopicProduceData},
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{Compression, Record};

use crate::connection::Connection;
use crate::error::{check, Error, Result};
use crate::records::{build_batch, build_batch_timed, decode_fetched_batches, ProduceRecord};
use crate::security::{Connector, Security};

/// DescribeConfigs resource types (Kafka's `ConfigResource.Type`).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_GROUP: i8 = 32;

/// Produce error codes after which the batch was certainly not appended, so that sending it
/// again cannot duplicate it: UNKNOWN_TOPIC_OR_PARTITION (3, a partition its leader has not
/// learned of yet), LEADER_NOT_AVAILABLE (5), NOT_LEADER_OR_FOLLOWER (6), NOT_ENOUGH_REPLICAS
/// (19), FENCED_LEADER_EPOCH (74).
const PRODUCE_NOT_APPENDED: [i16; 5] = [3, 5, 6, 19, 74];
/// First wait before a produce retry (doubles per attempt).
const PRODUCE_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between produce retries (Kafka's `retry.backoff.max.ms` is 1000).
const PRODUCE_RETRY_BACKOFF_MAX: Duration = Duration::from_millis(1000);

/// ListOffsets timestamps with special meaning.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of any broker.
    pub bootstrap: String,
    pub client_id: String,
    /// Bound on each request (Fetch gets its long-poll wait on top).
    pub request_timeout: Duration,
    /// TLS and SASL ([`Security`]); PLAINTEXT by default. Every connection of the client,
    /// to the bootstrap broker and to the brokers Metadata names, uses it.
    pub security: Security,
}

impl ClientConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ClientConfig {
            bootstrap: bootstrap.into(),
            client_id: "sluice-cli".into(),
            request_timeout: Duration::from_secs(30),
            security: Security::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    /// `broker.rack` (Metadata v1+), when the broker has one.
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1: no leader (every replica offline, or an election is pending).
    pub leader: i32,
    /// Metadata v7+; -1 from older brokers.
    pub leader_epoch: i32,
    /// The assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on brokers that are not alive (Metadata v5+).
    pub offline_replicas: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub error_code: i16,
    pub is_internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicInfo>,
}

#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub is_sensitive: bool,
    /// Kafka's ConfigSource: 1 = set on the topic, 4 = static broker config, 5 = default, ...
    pub source: i8,
}

impl ConfigEntry {
    pub fn source_name(&self) -> &'static str {
        match self.source {
            1 => "topic",
            2 => "dynamic-broker",
            3 => "dynamic-default-broker",
            4 => "static-broker",
            5 => "default",
            6 => "dynamic-broker-logger",
            7 => "client-metrics",
            8 => "group",
            _ => "unknown",
        }
    }
}

/// One partition's part of a Fetch response.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records at or after the requested offset, control records removed.
    pub records: Vec<Record>,
    /// The offset after the last complete batch returned (control records and records
    /// compaction removed included): where a reader continues when `records` is empty but
    /// batches came. `None` when no complete batch came.
    pub next_offset: Option<i64>,
}

/// A committed offset as OffsetFetch returns it (`offset` -1: nothing committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: Option<String>,
    /// `classic`, `consumer` or `share` (ListGroups v5+; `None` from older brokers).
    pub group_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GroupMemberInfo {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Decoded from the consumer protocol assignment when the group uses it.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<GroupMemberInfo>,
}

pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(crate) fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

pub struct Client {
    config: ClientConfig,
    /// `config.security`, checked and with its files read, for every connection.
    connector: Connector,
    /// Open connections by address; the bootstrap address is the first.
    conns: HashMap<String, Connection>,
    /// Broker addresses by node id, from the last Metadata response.
    brokers: HashMap<i32, String>,
    /// Partition leaders from the last Metadata response.
    leaders: HashMap<(String, i32), i32>,
    controller: Option<i32>,
}

impl Client {
    /// Connects to the bootstrap broker (and negotiates versions with it). `bootstrap` may
    /// list several brokers, comma-separated: the first that answers is used, as Kafka's
    /// clients do; the error of the last one is returned when none answers.
    pub async fn connect(mut config: ClientConfig) -> Result<Client> {
        let candidates: Vec<String> = config
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        let connector = config.security.connector()?;
        let mut last = Error::Invalid("no bootstrap server given".into());
        let mut found = None;
        for addr in candidates {
            let opened = Connection::connect_with(
                &addr,
                &config.client_id,
                config.request_timeout,
                &connector,
            )
            .await;
            match opened {
                Ok(conn) => {
                    found = Some((addr, conn));
                    break;
                }
                Err(e) => last = e,
            }
        }
        let (addr, conn) = found.ok_or(last)?;
        config.bootstrap = addr;
        let mut conns = HashMap::new();
        conns.insert(config.bootstrap.clone(), conn);
        Ok(Client {
            config,
            connector,
            conns,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            controller: None,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The connection to `addr`, (re)opened if needed.
    pub async fn connection(&mut self, addr: &str) -> Result<&mut Connection> {
        let stale = self.conns.get(addr).is_none_or(Connection::is_broken);
        if stale {
            let conn = Connection::connect_with(
                addr,
                &self.config.client_id,
                self.config.request_timeout,
                &self.connector,
            )
            .await?;
            self.conns.insert(addr.to_owned(), conn);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| Error::Invalid(format!("no connection to {addr}")))
    }

    pub(crate) async fn send_to<R: Request>(&mut self, addr: &str, req: &R) -> Result<R::Response> {
        self.connection(addr).await?.send(req).await
    }

    pub(crate) async fn version_at(
        &mut self,
        addr: &str,
        api: kafka_protocol::messages::ApiKey,
    ) -> Result<i16> {
        self.connection(addr).await?.version(api)
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.config.bootstrap.clone()
    }

    /// Where admin requests go: the controller when known (Kafka requires it for topic
    /// changes on old brokers), else the bootstrap broker.
    pub(crate) fn admin_addr(&self) -> String {
        self.controller
            .and_then(|c| self.brokers.get(&c).cloned())
            .unwrap_or_else(|| self.bootstrap())
    }

    fn broker_addr(&self, node: i32) -> Result<String> {
        self.brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("broker {node} is not in the cluster metadata")))
    }

    /// Metadata for `topics` (all topics when `None`). With `auto_create` false, a missing
    /// topic comes back with UNKNOWN_TOPIC_OR_PARTITION instead of being created.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<ClusterMetadata> {
        let addr = self.bootstrap();
        let version = self
            .version_at(&addr, kafka_protocol::messages::ApiKey::Metadata)
            .await?;
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        });
        if version >= 4 {
            req.allow_auto_topic_creation = auto_create;
        }
        let resp = match self.send_to(&addr, &req).await {
            Ok(resp) => resp,
            Err(e @ (Error::Connect { .. } | Error::Io { .. } | Error::Timeout { .. })) => {
                // The bootstrap broker is gone (a node of a cluster stopped): ask another
                // broker the last metadata named, and keep using the first that answers.
                let mut others: Vec<String> = self
                    .brokers
                    .values()
                    .filter(|a| **a != addr)
                    .cloned()
                    .collect();
                others.sort();
                let mut answered = None;
                for other in others {
                    if let Ok(resp) = self.send_to(&other, &req).await {
                        answered = Some((other, resp));
                        break;
                    }
                }
                let (other, resp) = answered.ok_or(e)?;
                self.config.bootstrap = other;
                resp
            }
            Err(e) => return Err(e),
        };
        if version >= 13 {
            check(resp.error_code, None, || "Metadata".into())?;
        }
        let md = ClusterMetadata {
            cluster_id: resp.cluster_id.map(|c| c.to_string()),
            controller_id: resp.controller_id.0,
            brokers: resp
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
                .collect(),
            topics: resp
                .topics
                .iter()
                .map(|t| {
                    let mut partitions: Vec<PartitionInfo> = t
                        .partitions
                        .iter()
                        .map(|p| PartitionInfo {
                            partition: p.partition_index,
                            leader: p.leader_id.0,
                            leader_epoch: if version >= 7 { p.leader_epoch } else { -1 },
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                            error_code: p.error_code,
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    TopicInfo {
                        name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                        error_code: t.error_code,
                        is_internal: t.is_internal,
                        partitions,
                    }
                })
                .collect(),
        };
        for b in &md.brokers {
            self.brokers.insert(b.node_id, b.addr());
        }
        self.controller = (md.controller_id >= 0).then_some(md.controller_id);
        for t in &md.topics {
            for p in &t.partitions {
                self.leaders.insert((t.name.clone(), p.partition), p.leader);
            }
        }
        Ok(md)
    }

    /// One existing topic's metadata; UNKNOWN_TOPIC_OR_PARTITION if it does not exist.
    pub async fn topic(&mut self, name: &str) -> Result<TopicInfo> {
        let md = self.metadata(Some(&[name.to_owned()]), false).await?;
        let t = md
            .topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Invalid(format!("the broker did not describe topic {name}")))?;
        check(t.error_code, None, || format!("topic {name}"))?;
        Ok(t)
    }

    /// The leader's address for a partition, refreshing metadata when it is unknown.
    pub async fn leader_addr(&mut self, topic: &str, partition: i32) -> Result<String> {
        let key = (topic.to_owned(), partition);
        if !self.leaders.contains_key(&key) {
            self.topic(topic).await?;
        }
        match self.leaders.get(&key) {
            Some(&leader) if leader >= 0 => self.broker_addr(leader),
            Some(_) => Err(Error::Kafka {
                context: format!("partition {topic}-{partition}"),
                code: 5,
                name: "LEADER_NOT_AVAILABLE".into(),
                message: None,
            }),
            None => Err(Error::Invalid(format!(
                "topic {topic} has no partition {partition}"
            ))),
        }
    }

    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<()> {
        if self.controller.is_none() {
            self.metadata(Some(&[]), false).await?;
        }
        let addr = self.admin_addr();
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
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
        let resp = self.send_to(&addr, &req).await?;
        for t in &resp.topics {
            check(t.error_code, t.error_message.as_deref(), || {
                format!("create topic {name}")
            })?;
        }
        Ok(())
    }

    pub async fn delete_topic(&mut self, name: &str) -> Result<()> {
        if self.controller.is_none() {
            self.metadata(Some(&[]), false).await?;
        }
        let addr = self.admin_addr();
        let version = self
            .version_at(&addr, kafka_protocol::messages::ApiKey::DeleteTopics)
            .await?;
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms());
        if version >= 6 {
            req.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            req.topic_names = vec![topic_name(name)];
        }
        let resp = self.send_to(&addr, &req).await?;
        for t in &resp.responses {
            check(t.error_code, t.error_message.as_deref(), || {
                format!("delete topic {name}")
            })?;
        }
        Ok(())
    }

    /// Grows `name` to `total` partitions.
    pub async fn create_partitions(&mut self, name: &str, total: i32) -> Result<()> {
        if self.controller.is_none() {
            self.metadata(Some(&[]), false).await?;
        }
        let addr = self.admin_addr();
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(total)
                // Null: the controller places them (the crate's default is an empty list,
                // which Kafka reads as "0 assignments given").
                .with_assignments(None)])
            .with_timeout_ms(self.timeout_ms());
        let resp = self.send_to(&addr, &req).await?;
        for r in &resp.results {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("add partitions to {name}")
            })?;
        }
        self.leaders.retain(|(t, _), _| t != name);
        Ok(())
    }

    /// The topic's configs (resource type 2 = TOPIC).
    pub async fn describe_topic_configs(&mut self, name: &str) -> Result<Vec<ConfigEntry>> {
        self.describe_configs(RESOURCE_TOPIC, name).await
    }

    /// A group's configs (resource type 32 = GROUP): the share-group settings with their
    /// effective values, defaults included.
    pub async fn describe_group_configs(&mut self, group: &str) -> Result<Vec<ConfigEntry>> {
        self.describe_configs(RESOURCE_GROUP, group).await
    }

    /// DescribeConfigs of one resource (Kafka's ConfigResource.Type codes: [`RESOURCE_TOPIC`],
    /// [`RESOURCE_BROKER`], [`RESOURCE_GROUP`]), every key.
    pub async fn describe_configs(
        &mut self,
        resource_type: i8,
        name: &str,
    ) -> Result<Vec<ConfigEntry>> {
        let addr = self.bootstrap();
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configuration_keys(None),
        ]);
        let resp = self.send_to(&addr, &req).await?;
        let mut out = Vec::new();
        for r in resp.results {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("describe configs of {name}")
            })?;
            out.extend(r.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                read_only: c.read_only,
                is_sensitive: c.is_sensitive,
                source: c.config_source,
            }));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sets and deletes (reverts to default) topic configs in one IncrementalAlterConfigs.
    pub async fn alter_topic_configs(
        &mut self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<()> {
        let addr = self.bootstrap();
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(s(k.clone()))
                    .with_config_operation(0) // SET
                    .with_value(Some(s(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(s(k.clone()))
                .with_config_operation(1) // DELETE
                .with_value(None)
        }));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name))
                .with_configs(configs),
        ]);
        let resp = self.send_to(&addr, &req).await?;
        for r in &resp.responses {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("alter configs of {name}")
            })?;
        }
        Ok(())
    }

    /// ListOffsets for the given partitions of one topic at `timestamp` ([`EARLIEST`],
    /// [`LATEST`], or milliseconds). Returns partition → (offset, timestamp); offset -1 means
    /// no record at or after the timestamp.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, (i64, i64)>> {
        self.list_offsets_isolated(topic, partitions, timestamp, 0)
            .await
    }

    /// [`Self::list_offsets`] with an isolation level (ListOffsets v2+): with 1
    /// (read_committed) "latest" is the last stable offset, the end a read_committed
    /// consumer can reach.
    pub async fn list_offsets_isolated(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
        isolation_level: i8,
    ) -> Result<BTreeMap<i32, (i64, i64)>> {
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let addr = self.leader_addr(topic, p).await?;
            by_leader.entry(addr).or_default().push(p);
        }
        let mut out = BTreeMap::new();
        for (addr, parts) in by_leader {
            let version = self
                .version_at(&addr, kafka_protocol::messages::ApiKey::ListOffsets)
                .await?;
            let mut req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(if version >= 2 { isolation_level } else { 0 })
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            if version >= 10 {
                req.timeout_ms = self.timeout_ms();
            }
            let resp = self.send_to(&addr, &req).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(p.error_code, None, || {
                        format!("list offsets of {topic}-{}", p.partition_index)
                    })?;
                    out.insert(p.partition_index, (p.offset, p.timestamp));
                }
            }
        }
        Ok(out)
    }

    /// Log start and end offsets of every partition of `topic`.
    pub async fn offset_bounds(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, (i64, i64)>> {
        let start = self.list_offsets(topic, partitions, EARLIEST).await?;
        let end = self.list_offsets(topic, partitions, LATEST).await?;
        Ok(partitions
            .iter()
            .map(|p| {
                let s = start.get(p).map_or(-1, |x| x.0);
                let e = end.get(p).map_or(-1, |x| x.0);
                (*p, (s, e))
            })
            .collect())
    }

    /// Produces one batch to one partition with acks=all; returns the base offset.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        compression: Compression,
        timestamp_ms: i64,
    ) -> Result<i64> {
        let batch = build_batch(records, compression, timestamp_ms)?;
        self.produce_batch(topic, partition, batch).await
    }

    /// Produces one batch in which every record keeps its own CreateTime (ms), with acks=all;
    /// returns the base offset.
    pub async fn produce_timed(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[(i64, ProduceRecord)],
        compression: Compression,
    ) -> Result<i64> {
        let batch = build_batch_timed(records, compression)?;
        self.produce_batch(topic, partition, batch).await
    }

    /// Sends the batch to the partition's leader; when the answer (or a refused connection)
    /// says the batch was certainly not appended — the leader moved, is not known yet, or too
    /// few replicas are in sync — refreshes metadata and sends it again, with backoff, until
    /// `request_timeout` has passed (Kafka's producer retries the same errors). Errors after
    /// which the batch may have been appended (a timeout, a connection lost mid-request,
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND) are returned, not retried: that would duplicate it.
    async fn produce_batch(&mut self, topic: &str, partition: i32, batch: Bytes) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        let mut backoff = PRODUCE_RETRY_BACKOFF_MIN;
        loop {
            let err = match self
                .produce_batch_once(topic, partition, batch.clone())
                .await
            {
                Ok(offset) => return Ok(offset),
                Err(e) => e,
            };
            let retriable = match &err {
                Error::Kafka { code, .. } => PRODUCE_NOT_APPENDED.contains(code),
                Error::Connect { .. } => true,
                Error::Timeout { what, .. } => what == "connecting",
                _ => false,
            };
            if !retriable || tokio::time::Instant::now() + backoff >= deadline {
                return Err(err);
            }
            tracing::debug!("produce to {topic}-{partition} failed ({err}); retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(PRODUCE_RETRY_BACKOFF_MAX);
            self.leaders.remove(&(topic.to_owned(), partition));
            // A failed refresh is retried with the next attempt.
            let _ = self.metadata(Some(&[topic.to_owned()]), false).await;
        }
    }

    async fn produce_batch_once(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<i64> {
        let addr = self.leader_addr(topic, partition).await?;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(self.timeout_ms())
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let resp = self.send_to(&addr, &req).await?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::Protocol {
                addr: addr.clone(),
                detail: format!("Produce response lacks {topic}-{partition}"),
            })?;
        let message = p.error_message.as_deref().map(str::to_owned).or_else(|| {
            p.record_errors
                .first()
                .and_then(|e| e.batch_index_error_message.as_deref().map(str::to_owned))
        });
        check(p.error_code, message.as_deref(), || {
            format!("produce to {topic}-{partition}")
        })?;
        Ok(p.base_offset)
    }

    /// Fetches from each (topic, partition, offset), waiting up to `max_wait` for data.
    /// Partitions whose leaders differ are fetched one leader after another.
    pub async fn fetch(
        &mut self,
        positions: &[(String, i32, i64)],
        max_wait: Duration,
        max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>> {
        let mut by_leader: BTreeMap<String, Vec<&(String, i32, i64)>> = BTreeMap::new();
        for pos in positions {
            let addr = self.leader_addr(&pos.0, pos.1).await?;
            by_leader.entry(addr).or_default().push(pos);
        }
        let wait_ms = i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX);
        let mut out = Vec::new();
        for (addr, positions) in by_leader {
            let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
            for (t, p, o) in &positions {
                topics.entry(t.as_str()).or_default().push(
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*o)
                        .with_partition_max_bytes(max_bytes),
                );
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(max_bytes)
                .with_isolation_level(0)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            FetchTopic::default()
                                .with_topic(topic_name(t))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            let timeout = self.config.request_timeout + max_wait;
            let resp = self
                .connection(&addr)
                .await?
                .send_with_timeout(&req, timeout)
                .await?;
            check(resp.error_code, None, || "Fetch".into())?;
            for t in resp.responses {
                let topic = t.topic.0.to_string();
                for p in t.partitions {
                    let from = positions
                        .iter()
                        .find(|(pt, pp, _)| *pt == topic && *pp == p.partition_index)
                        .map_or(0, |x| x.2);
                    let (records, next_offset) = match p.records {
                        Some(data) if p.error_code == 0 => {
                            let (records, next) =
                                decode_fetched_batches(data).map_err(|detail| Error::Protocol {
                                    addr: addr.clone(),
                                    detail: format!(
                                        "bad records in {topic}-{}: {detail}",
                                        p.partition_index
                                    ),
                                })?;
                            let records = records
                                .into_iter()
                                // A compressed batch may start before the requested offset.
                                .filter(|r| r.offset >= from)
                                .collect();
                            (records, next)
                        }
                        _ => (Vec::new(), None),
                    };
                    if p.error_code != 0 {
                        self.leaders.remove(&(topic.clone(), p.partition_index));
                    }
                    out.push(FetchedPartition {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        error_code: p.error_code,
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                        records,
                        next_offset,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The address of `group`'s coordinator.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<String> {
        self.find_coordinator_of(group, 0).await
    }

    /// The address of the transaction coordinator of `transactional_id` (FindCoordinator key
    /// type 1; in a Sluice cluster one node, the leader of `__transaction_state-0`, coordinates
    /// every id).
    pub async fn find_transaction_coordinator(&mut self, transactional_id: &str) -> Result<String> {
        self.find_coordinator_of(transactional_id, 1).await
    }

    /// FindCoordinator of `key` (`key_type` 0: a group, 1: a transactional id).
    async fn find_coordinator_of(&mut self, key: &str, key_type: i8) -> Result<String> {
        let addr = self.bootstrap();
        let version = self
            .version_at(&addr, kafka_protocol::messages::ApiKey::FindCoordinator)
            .await?;
        let mut req = FindCoordinatorRequest::default();
        if version >= 1 {
            req.key_type = key_type;
        }
        if version >= 4 {
            req.coordinator_keys = vec![s(key)];
        } else {
            req.key = s(key);
        }
        let resp = self.send_to(&addr, &req).await?;
        let (code, msg, host, port) = if version >= 4 {
            let c = resp.coordinators.first().ok_or_else(|| Error::Protocol {
                addr: addr.clone(),
                detail: "FindCoordinator response has no coordinator".into(),
            })?;
            (
                c.error_code,
                c.error_message.clone(),
                c.host.to_string(),
                c.port,
            )
        } else {
            (
                resp.error_code,
                resp.error_message.clone(),
                resp.host.to_string(),
                resp.port,
            )
        };
        check(code, msg.as_deref(), || {
            let what = if key_type == 1 {
                "transactional id"
            } else {
                "group"
            };
            format!("find coordinator of {what} {key}")
        })?;
        Ok(BrokerInfo {
            node_id: 0,
            host,
            port,
            rack: None,
        }
        .addr())
    }

    /// Commits offsets. `generation` -1 and an empty `member_id` commit as an admin tool
    /// (only accepted while the group has no members).
    pub async fn commit_offsets(
        &mut self,
        coordinator: &str,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<()> {
        let offsets: Vec<(String, i32, i64, Option<String>)> = offsets
            .iter()
            .map(|(t, p, o)| (t.clone(), *p, *o, None))
            .collect();
        self.commit_offsets_with_metadata(coordinator, group, generation, member_id, &offsets)
            .await
    }

    /// Commits offsets, each with its metadata string (`None`: no metadata). Same rules as
    /// [`Client::commit_offsets`].
    pub async fn commit_offsets_with_metadata(
        &mut self,
        coordinator: &str,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64, Option<String>)],
    ) -> Result<()> {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (t, p, o, m) in offsets {
            topics.entry(t.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_metadata(m.clone().map(s)),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = self.send_to(coordinator, &req).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    format!(
                        "commit offset of group {group} on {}-{}",
                        t.name.0, p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Committed offsets of `group`: for the given topic's partitions, or every partition the
    /// group has committed when `topic` is `None`.
    pub async fn fetch_offsets(
        &mut self,
        coordinator: &str,
        group: &str,
        topic: Option<(&str, &[i32])>,
    ) -> Result<Vec<CommittedOffset>> {
        let version = self
            .version_at(coordinator, kafka_protocol::messages::ApiKey::OffsetFetch)
            .await?;
        let mut req = OffsetFetchRequest::default();
        if version >= 8 {
            req.groups = vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(topic.map(|(t, ps)| {
                    vec![OffsetFetchRequestTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.to_vec())]
                }))];
        } else {
            req.group_id = GroupId(s(group));
            req.topics = topic.map(|(t, ps)| {
                vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(ps.to_vec())]
            });
        }
        let resp = self.send_to(coordinator, &req).await?;
        let mut out = Vec::new();
        let ctx = || format!("fetch committed offsets of group {group}");
        if version >= 8 {
            for g in resp.groups {
                check(g.error_code, None, ctx)?;
                for t in g.topics {
                    for p in t.partitions {
                        check(p.error_code, None, ctx)?;
                        out.push(CommittedOffset {
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: p.metadata.map(|m| m.to_string()),
                        });
                    }
                }
            }
        } else {
            if version >= 2 {
                check(resp.error_code, None, ctx)?;
            }
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, None, ctx)?;
                    out.push(CommittedOffset {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        metadata: p.metadata.map(|m| m.to_string()),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Every group on every broker.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>> {
        self.list_groups_of_types(&[]).await
    }

    /// The groups of the given types (`share`, `consumer`, `classic`; empty: all) on every
    /// broker. Brokers older than ListGroups v5 cannot filter by type: then every group is
    /// returned, without a `group_type`.
    pub async fn list_groups_of_types(&mut self, types: &[&str]) -> Result<Vec<GroupListing>> {
        self.metadata(Some(&[]), false).await?;
        let mut addrs: Vec<String> = self.brokers.values().cloned().collect();
        if addrs.is_empty() {
            addrs.push(self.bootstrap());
        }
        addrs.sort();
        let mut out = Vec::new();
        for addr in addrs {
            let version = self
                .version_at(&addr, kafka_protocol::messages::ApiKey::ListGroups)
                .await?;
            let mut req = ListGroupsRequest::default();
            if version >= 5 {
                req.types_filter = types.iter().map(|t| s(*t)).collect();
            }
            let resp = self.send_to(&addr, &req).await?;
            check(resp.error_code, None, || format!("list groups on {addr}"))?;
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: (version >= 4).then(|| g.group_state.to_string()),
                group_type: (version >= 5).then(|| g.group_type.to_string()),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    pub async fn describe_group(
        &mut self,
        coordinator: &str,
        group: &str,
    ) -> Result<GroupDescription> {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let resp = self.send_to(coordinator, &req).await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol {
                addr: coordinator.to_owned(),
                detail: "DescribeGroups response has no group".into(),
            })?;
        check(g.error_code, g.error_message.as_deref(), || {
            format!("describe group {group}")
        })?;
        let consumer = g.protocol_type.as_str() == crate::assignment::PROTOCOL_TYPE;
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMemberInfo {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        // Best effort: an assignment we cannot read is shown as none.
                        crate::assignment::decode_assignment(m.member_assignment)
                            .unwrap_or_default()
                    } else {
                        BTreeMap::new()
                    },
                })
                .collect(),
        })
    }

    pub async fn delete_group(&mut self, coordinator: &str, group: &str) -> Result<()> {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        let resp = self.send_to(coordinator, &req).await?;
        for r in &resp.results {
            check(r.error_code, None, || format!("delete group {group}"))?;
        }
        Ok(())
    }

    /// Sends any request to `addr` (the group membership code uses this).
    pub async fn send<R: Request>(&mut self, addr: &str, req: &R) -> Result<R::Response> {
        self.send_to(addr, req).await
    }

    pub async fn version(
        &mut self,
        addr: &str,
        api: kafka_protocol::messages::ApiKey,
    ) -> Result<i16> {
        self.version_at(addr, api).await
    }

    pub(crate) fn timeout_ms(&self) -> i32 {
        i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX)
    }
}

/// The bytes of a record field as text, for printing.
pub fn lossy(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}
