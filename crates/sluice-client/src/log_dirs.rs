//! Partition sizes on disk, from DescribeLogDirs (what `kafka-log-dirs.sh` reads).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::error::Result;

impl Client {
    /// The bytes on disk of each partition's leader replica, by partition. A partition without a
    /// reachable leader is left out: sizes are for display, and one dead broker must not hide
    /// the others'.
    pub async fn leader_sizes(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let info = self.topic(topic).await?;
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for p in &info.partitions {
            if let Ok(addr) = self.leader_addr(topic, p.partition).await {
                by_leader.entry(addr).or_default().push(p.partition);
            }
        }
        let mut sizes = BTreeMap::new();
        for (addr, partitions) in by_leader {
            let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(partitions.clone()),
            ]));
            // A broker that cannot answer (down, too old, or an error) leaves its partitions out.
            let Ok(resp) = self.send(&addr, &req).await else {
                continue;
            };
            if resp.error_code != 0 {
                continue;
            }
            for dir in resp.results.iter().filter(|d| d.error_code == 0) {
                for t in dir.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                    for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                        if partitions.contains(&p.partition_index) {
                            let size = sizes.entry(p.partition_index).or_insert(0i64);
                            *size = size.saturating_add(p.partition_size.max(0));
                        }
                    }
                }
            }
        }
        Ok(sizes)
    }
}
