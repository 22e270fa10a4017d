//! DescribeLogDirs: the size on disk of each partition replica this broker holds, and the data
//! directory's total and usable bytes (KIP-827, v4). Kafka's `kafka-log-dirs.sh`, AKHQ and
//! Kafbat read topic sizes this way; Sluice's HTTP API and console do too.
//!
//! Sluice has one log directory, `--data-dir`. As in Kafka, only replicas this broker holds are
//! listed: a topic or partition it does not hold is left out rather than reported as an error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::s;
use crate::broker::Broker;

pub fn describe_log_dirs(broker: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // What was asked for: None is every replica. The request's own size bounds this map.
    // Sets: a request may name millions of partitions, each looked up once per local replica.
    let wanted: Option<HashMap<String, HashSet<i32>>> = req.topics.map(|topics| {
        let mut wanted: HashMap<String, HashSet<i32>> = HashMap::new();
        for t in topics {
            wanted
                .entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions);
        }
        wanted
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for replica in broker.replicas.all() {
        let (topic, index) = (replica.topic(), replica.index());
        let asked = match &wanted {
            None => true,
            Some(w) => w.get(topic).is_some_and(|ps| ps.contains(&index)),
        };
        if !asked {
            continue;
        }
        let size = i64::try_from(replica.partition().size_bytes()).unwrap_or(i64::MAX);
        by_topic.entry(topic.to_owned()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(index)
                .with_partition_size(size)
                // No future (moving) replicas and no intra-broker moves: never behind.
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let topics: Vec<DescribeLogDirsTopic> = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(s(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = &broker.config.data_dir;
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let (total, usable) = disk_space(dir).unwrap_or((-1, -1));
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(s(shown.to_string_lossy().into_owned()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

/// The file system's size and the bytes available to this process, from statvfs.
#[allow(clippy::useless_conversion)]
fn disk_space(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` is written by the call before
    // it is read; a non-zero return leaves it unread.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`. (The field types differ by platform,
    // hence the conversions clippy finds useless here.)
    let st = unsafe { st.assume_init() };
    let frsize = u64::from(st.f_frsize);
    let total = u64::from(st.f_blocks).checked_mul(frsize)?;
    let usable = u64::from(st.f_bavail).checked_mul(frsize)?;
    Some((i64::try_from(total).ok()?, i64::try_from(usable).ok()?))
}
