//! The classic consumer protocol's "range" assignor, as Kafka's `RangeAssignor` does it, and
//! the encoding of subscriptions and assignments (a 2-byte version, then the struct), so that
//! a `sluice consume --group` shares a group with Java and librdkafka consumers.

use std::collections::{BTreeMap, HashMap};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Protocol type and name sent in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";
pub const RANGE: &str = "range";

/// The newest version of both structs that `kafka-protocol` knows; newer versions only append
/// fields, so a newer peer's bytes decode with it (Kafka's own clients do the same).
const MAX_VERSION: i16 = 3;

/// Topic → partitions.
pub type Assignment = BTreeMap<String, Vec<i32>>;

pub fn encode_subscription(topics: &[String]) -> Result<Bytes, String> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&sub)
}

pub fn decode_subscription(mut data: Bytes) -> Result<Vec<String>, String> {
    let version = read_version(&mut data)?;
    let sub =
        ConsumerProtocolSubscription::decode(&mut data, version).map_err(|e| e.to_string())?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, String> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    encode_versioned(&a)
}

/// An empty assignment may arrive as zero bytes (a member the leader gave nothing).
pub fn decode_assignment(mut data: Bytes) -> Result<Assignment, String> {
    if data.is_empty() {
        return Ok(Assignment::new());
    }
    let version = read_version(&mut data)?;
    let a = ConsumerProtocolAssignment::decode(&mut data, version).map_err(|e| e.to_string())?;
    let mut out = Assignment::new();
    for t in a.assigned_partitions {
        out.entry(t.topic.0.to_string())
            .or_default()
            .extend(t.partitions);
    }
    Ok(out)
}

fn encode_versioned<T: Encodable>(msg: &T) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    buf.put_i16(MAX_VERSION);
    msg.encode(&mut buf, MAX_VERSION)
        .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

fn read_version(data: &mut Bytes) -> Result<i16, String> {
    if data.remaining() < 2 {
        return Err("consumer protocol data shorter than its version".into());
    }
    let v = data.get_i16();
    if v < 0 {
        return Err(format!("negative consumer protocol version {v}"));
    }
    Ok(v.min(MAX_VERSION))
}

/// Kafka's RangeAssignor: for each topic, the subscribed members in member-id order each get
/// a contiguous range; the first `partitions % members` get one extra.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions_per_topic: &HashMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut topics: Vec<&String> = subscriptions.values().flatten().collect();
    topics.sort();
    topics.dedup();
    for topic in topics {
        let Some(&n) = partitions_per_topic.get(topic) else {
            continue;
        };
        // BTreeMap keys are already in member-id order.
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || n <= 0 {
            continue;
        }
        let per = n / members.len() as i32;
        let extra = n % members.len() as i32;
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let count = per + i32::from((i as i32) < extra);
            if count == 0 {
                continue;
            }
            let parts: Vec<i32> = (next..next + count).collect();
            next += count;
            if let Some(a) = out.get_mut(*m) {
                a.insert(topic.clone(), parts);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_matches_kafka() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("c1".to_string(), vec!["t1".to_string(), "t2".to_string()]),
            ("c0".to_string(), vec!["t1".to_string(), "t2".to_string()]),
        ]
        .into();
        let parts: HashMap<String, i32> = [("t1".to_string(), 3), ("t2".to_string(), 3)].into();
        let a = range_assign(&subs, &parts);
        assert_eq!(a["c0"]["t1"], vec![0, 1]);
        assert_eq!(a["c1"]["t1"], vec![2]);
        assert_eq!(a["c0"]["t2"], vec![0, 1]);
        assert_eq!(a["c1"]["t2"], vec![2]);
    }

    #[test]
    fn more_members_than_partitions() {
        let subs: BTreeMap<String, Vec<String>> = (0..3)
            .map(|i| (format!("m{i}"), vec!["t".to_string()]))
            .collect();
        let parts: HashMap<String, i32> = [("t".to_string(), 2)].into();
        let a = range_assign(&subs, &parts);
        assert_eq!(a["m0"]["t"], vec![0]);
        assert_eq!(a["m1"]["t"], vec![1]);
        assert!(a["m2"].is_empty());
    }

    #[test]
    fn only_subscribed_topics_and_unknown_topics_skipped() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["x".to_string()]),
            (
                "b".to_string(),
                vec!["y".to_string(), "missing".to_string()],
            ),
        ]
        .into();
        let parts: HashMap<String, i32> = [("x".to_string(), 2), ("y".to_string(), 1)].into();
        let a = range_assign(&subs, &parts);
        assert_eq!(a["a"]["x"], vec![0, 1]);
        assert!(!a["a"].contains_key("y"));
        assert_eq!(a["b"]["y"], vec![0]);
        assert!(!a["b"].contains_key("missing"));
    }

    #[test]
    fn protocol_bytes_round_trip() {
        let sub = encode_subscription(&["t".into(), "u".into()]).unwrap();
        assert_eq!(&sub[..2], &[0, 3]);
        assert_eq!(decode_subscription(sub).unwrap(), vec!["t", "u"]);
        let mut a = Assignment::new();
        a.insert("t".into(), vec![0, 2]);
        let bytes = encode_assignment(&a).unwrap();
        assert_eq!(decode_assignment(bytes).unwrap(), a);
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_subscription(Bytes::from_static(&[0])).is_err());
        // A v0 subscription as old librdkafka sends it: version, topics array, null user data.
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        v0.put_i32(1);
        v0.put_i16(1);
        v0.put_slice(b"t");
        v0.put_i32(-1);
        assert_eq!(decode_subscription(v0.freeze()).unwrap(), vec!["t"]);
    }
}
