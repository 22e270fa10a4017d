//! Replica placement: Kafka's rack-aware assignment (`AdminUtils.assignReplicasToBrokers`):
//! a rack-alternating broker list, a start index and a replica shift.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{codes, err, ControllerError};
use crate::record::NodeId;

/// Assigns `rf` replicas to each of `n_partitions` partitions numbered from
/// `start_partition_id`, over `brokers` (node id, rack). `start_index` picks the first
/// partition's leader and `shift` the distance to its followers (Kafka draws both at random;
/// here they come from the caller, so placement is deterministic). Rack-aware when any broker
/// has a rack (a broker without one counts as the rack `""`); otherwise Kafka's rack-unaware
/// assignment (which is the same algorithm with one rack).
///
/// INVALID_REPLICATION_FACTOR when `rf < 1` or `rf > brokers`; INVALID_PARTITIONS when
/// `n_partitions < 0`.
pub fn assign_replicas(
    brokers: &[(NodeId, Option<String>)],
    n_partitions: i32,
    rf: i16,
    start_index: usize,
    shift: usize,
    start_partition_id: i32,
) -> Result<Vec<Vec<NodeId>>, ControllerError> {
    if n_partitions < 0 {
        return err(codes::INVALID_PARTITIONS, "number of partitions below 0");
    }
    let rf_usize = match usize::try_from(rf) {
        Ok(r) if r >= 1 => r,
        _ => {
            return err(
                codes::INVALID_REPLICATION_FACTOR,
                "replication factor below 1",
            )
        }
    };
    if rf_usize > brokers.len() {
        return err(
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {rf} larger than the {} available brokers",
                brokers.len()
            ),
        );
    }
    // Rack → sorted broker ids.
    let mut by_rack: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    let mut rack_of: BTreeMap<NodeId, String> = BTreeMap::new();
    for (id, rack) in brokers {
        let r = rack.clone().unwrap_or_default();
        by_rack.entry(r.clone()).or_default().push(*id);
        rack_of.insert(*id, r);
    }
    for v in by_rack.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    // Kafka's getRackAlternatedBrokerList: one broker per rack in turn.
    let n = rack_of.len();
    if n < rf_usize {
        return err(
            codes::INVALID_REPLICATION_FACTOR,
            "replication factor larger than the number of distinct brokers",
        );
    }
    let racks: Vec<&Vec<NodeId>> = by_rack.values().collect();
    let num_racks = racks.len();
    let mut arranged = Vec::with_capacity(n);
    let mut depth = 0usize;
    while arranged.len() < n {
        for r in &racks {
            if let Some(b) = r.get(depth) {
                arranged.push(*b);
            }
        }
        depth += 1;
    }
    let start_index = start_index % n;
    let mut next_shift = shift % n;
    let first_partition = usize::try_from(start_partition_id.max(0)).unwrap_or(0);
    let replica_index = |first: usize, second_shift: usize, k: usize| -> usize {
        let s = 1 + (second_shift + k) % (n - 1).max(1);
        (first + s) % n
    };
    let mut out = Vec::with_capacity(usize::try_from(n_partitions).unwrap_or(0));
    let count = usize::try_from(n_partitions).unwrap_or(0);
    for current in first_partition..first_partition.saturating_add(count) {
        if current > 0 && current % n == 0 {
            next_shift += 1;
        }
        let first = (current + start_index) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks_used: BTreeSet<&str> = BTreeSet::new();
        racks_used.insert(rack_of[&leader].as_str());
        let mut k = 0usize;
        while replicas.len() < rf_usize {
            let b = arranged[replica_index(first, next_shift.wrapping_mul(num_racks), k)];
            let rack = rack_of[&b].as_str();
            if (!racks_used.contains(rack) || racks_used.len() == num_racks)
                && !replicas.contains(&b)
            {
                replicas.push(b);
                racks_used.insert(rack);
            }
            k += 1;
            if k > n * n + n {
                // Cannot happen (n ≥ rf and every broker is reachable); never loop forever.
                return err(
                    codes::UNKNOWN_SERVER_ERROR,
                    "replica placement did not converge",
                );
            }
        }
        out.push(replicas);
    }
    Ok(out)
}
