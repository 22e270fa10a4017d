//! The cluster controller of Sluice (Kafka's KRaft `QuorumController` with its
//! `ClusterControlManager`, `ReplicationControlManager` and `PartitionChangeBuilder`), as a
//! plain state machine: no IO, no clock, no randomness of its own, no panics on any input.
//!
//! # The pieces
//!
//! - [`MetadataRecord`]: one change to the cluster metadata, serde JSON tagged by `type`
//!   (snake case). These are the on-disk format of the metadata log: field names are stable,
//!   new optional fields get `#[serde(default)]`.
//! - [`ClusterImage`]: the state every node rebuilds by applying the committed records in log
//!   order ([`ClusterImage::apply`]), and (serde) the snapshot format. It answers the broker's
//!   questions: live brokers, partitions led / hosted by a node, under-replicated and offline
//!   partitions, preferred leaders, topic configs.
//! - [`Controller`]: runs on the metadata quorum's leader. Each request method takes the
//!   current image and `now_ms` and returns a [`Decision`]: `Ok((reply, records))` or a
//!   [`ControllerError`] with Kafka's error code ([`codes`]). Its only own state is the broker
//!   sessions (heartbeat deadlines) and a placement seed.
//!
//! # How the broker drives it
//!
//! **Decide → propose → apply, one decision at a time, one controller at a time.**
//!
//! 1. A request arrives at the controller node (the Raft leader). The broker calls the
//!    method with its current image. That image should contain every earlier decision: the
//!    broker serialises decide → commit → apply (one lock / one task).
//! 2. If `records` is non-empty, the broker proposes them as one log entry (JSON
//!    `Vec<MetadataRecord>`; one decision per entry) and waits for the commit. Nothing has changed until then; if the
//!    proposal fails (leadership lost), the reply is not sent and the client retries against
//!    the new controller.
//! 3. Every node applies the committed entry's records in order with
//!    `ClusterImage::apply(index, &record)`; `index` is the entry's log index (all records of
//!    an entry share it). Then the controller node sends `reply`, which already describes the
//!    state after the records.
//!
//! Every non-empty decision starts with a [`MetadataRecord::Guard`] naming the image it was
//! decided against (`based_on` = that image's `last_applied`). If another decision was
//! applied in between — a controller deciding before its image caught up after a failover,
//! or two decisions proposed concurrently — the whole entry is ignored on every node and
//! `apply` returns [`Change::DecisionRejected`]: the caller must then not send the reply
//! (answer NOT_CONTROLLER or decide again). So a decision applies whole or not at all, and
//! serialising decisions is needed for progress, not for safety.
//! 4. `tick(image, now_ms)` runs periodically on the controller (every few hundred ms); its
//!    records go through the same path.
//! 5. A node that becomes the Raft leader first waits until its image has applied every
//!    committed entry (openraft: the leader's blank entry), then builds a fresh
//!    [`Controller::new`] from that image: every registered broker gets a fresh session
//!    (Kafka does the same), so a failover never fences a live broker.
//!
//! The broker epoch is the log index of the broker's `RegisterBroker` record: the controller
//! cannot know it when it decides, so the registering broker learns it from the index of the
//! committed entry (the caller puts it in the BrokerRegistration response).
//!
//! Inside one decision the records are built against a draft image (the current image with
//! the decision's earlier records applied by the very same `apply`), so several changes to
//! one partition in one decision compose, and a record that `apply` would ignore is never
//! proposed. A mutating decision therefore clones the image once: O(image), which is cheap at
//! Sluice's scale (thousands of partitions); the repair scan (below) is O(partitions).
//!
//! # The records
//!
//! | record | effect on the image |
//! |---|---|
//! | `guard {based_on}` | first of every decision: the rest of the entry applies only if `last_applied` was `based_on` |
//! | `register_broker {node_id, incarnation_id, kafka_host, kafka_port, cluster_addr, rack}` | replaces the node's registration; broker epoch = index; fenced; keeps `draining` |
//! | `unregister_broker {node_id}` | removes it |
//! | `fence_broker {node_id, broker_epoch}` | fenced, controlled shutdown ends (only at that epoch) |
//! | `unfence_broker {node_id, broker_epoch}` | unfenced (only at that epoch) |
//! | `controlled_shutdown {node_id, broker_epoch}` | in controlled shutdown (only at that epoch) |
//! | `set_draining {node_id, draining}` | placement skips a draining node (Sluice's) |
//! | `topic_created {name, id, configs}` | a topic without partitions |
//! | `partition_created {topic_id, partition, replicas, isr, leader, leader_epoch, partition_epoch}` | the next partition of the topic |
//! | `partition_change {topic_id, partition, expected_partition_epoch, leader?, isr?, replicas?, adding_replicas?, removing_replicas?}` | partition epoch + 1; leader epoch + 1 whenever `leader` is present |
//! | `topic_configs_replaced {topic_id, configs}` | the topic's configs, whole |
//! | `topic_deleted {name, id}` | the topic and its partitions are gone |
//! | `producer_id_block {next_block_start}` | the next producer id block starts there (only forward) |
//! | `group_configs_replaced {group, configs}` | the group's configs, whole (empty removes) |
//! | `client_quotas_replaced {entity, quotas}` | a client-quota entity's quotas, whole (empty removes) |
//!
//! `apply` never panics and ignores (deterministically, returning no [`Change`]) a record
//! that no longer makes sense: an index below the last applied one, a change to a deleted
//! topic or a missing partition, a fence / unfence / shutdown for another broker epoch, a
//! `partition_change` whose `expected_partition_epoch` is not the partition's epoch, any
//! change that would leave a partition malformed (see [`PartitionInfo::is_well_formed`]:
//! replicas non-empty and distinct; ISR non-empty, distinct, ⊆ replicas; leader ∈ ISR or -1;
//! adding / removing ⊆ replicas and disjoint), a partition record naming an unregistered
//! replica or setting a leader that is unregistered or fenced, an `unregister_broker` for a
//! node that still hosts replicas, a second topic with the same name or id, a producer id
//! block that goes backwards.
//!
//! # The rules
//!
//! **Registration.** A new registration of a node id starts fenced with a new broker epoch.
//! While the id's current registration is unfenced and its session alive, a registration
//! with another incarnation id is refused (DUPLICATE_BROKER_REGISTRATION); the same
//! incarnation may register again (a retry; it gets a new epoch). Re-registering first moves
//! the old registration's leaderships and ISR memberships, exactly as fencing does.
//!
//! **Heartbeats and sessions.** A heartbeat at another broker epoch gets STALE_BROKER_EPOCH.
//! Each valid one renews the session (`broker.session.timeout.ms`, 9 s). A fenced broker is
//! unfenced once its `metadata_offset` reaches its registration index (it has seen its own
//! registration) and it is not in controlled shutdown; leaderless partitions whose ISR holds
//! it get it as leader in the same decision. `want_fence` fences. `tick` fences every
//! unfenced broker whose session expired.
//!
//! **Fencing** (session expiry, `want_fence`, re-registration) and **controlled shutdown**
//! (`want_shutdown`) take the broker out of every ISR where another member remains and move
//! its leaderships: the new leader is the first replica (replica order) that is in the ISR
//! and active (registered, unfenced, not shutting down). If the broker is the last ISR member
//! it stays there and the partition goes leaderless (leader -1): the last in-sync replica
//! can come back as leader when it returns — KRaft's rule without ELR. With
//! `unclean.leader.election.enable` on the topic, the first active replica is elected
//! instead and the ISR becomes {it}. These moves come *before* the fence / shutdown record in
//! the batch, so the invariants hold after every record. A broker in controlled shutdown gets
//! `should_shut_down` once it leads nothing.
//!
//! **Elections.** Only from the ISR ∩ active brokers, preferring replica order; the preferred
//! leader is `replicas[0]`; unclean only with the topic's `unclean.leader.election.enable`
//! (cluster default from [`ControllerConfig`]) or an explicit ElectLeaders UNCLEAN, and then
//! the ISR becomes {the new leader}. Every record with `leader` bumps the leader epoch, so an
//! epoch is never reused; a reassignment that removes replicas re-elects the same leader at a
//! new epoch (Kafka's rule: the removed replicas' fetches are fenced). ISR shrinks do not bump
//! the leader epoch (Kafka ≥ 3.6). `tick` repairs what can be repaired: leaderless partitions
//! get a leader once an ISR member is active again (or unclean, if enabled), inactive
//! brokers leave ISRs, and with `auto.leader.rebalance.enable` every
//! `leader.imbalance.check.interval` leaderships return to preferred replicas that are in the
//! ISR and active (at most [`MAX_AUTO_ELECTIONS_PER_PASS`] per pass).
//!
//! **AlterPartition** (KIP-497, KIP-903/841). Only the leader changes the ISR, at its current
//! leader and partition epochs; Kafka's checks and codes in Kafka's order (see
//! [`Controller::alter_partition`]). Every proposed member must be registered, unfenced, not
//! shutting down and (unless its broker epoch is -1) at the broker epoch the leader saw it
//! fetch with, else INELIGIBLE_REPLICA: a restarted replica that lost data cannot be added on
//! the strength of its previous incarnation's fetches. A reassignment completes here once
//! every target replica is in the ISR; if that moves the leadership away from the requester,
//! the records are still committed and the reply carries NEW_LEADER_ELECTED.
//!
//! **Topics.** [`Controller::create_topic`] places replicas over active, non-draining brokers
//! with Kafka's rack-aware assignment ([`assign_replicas`]: rack-alternating broker list,
//! start index, replica shift — drawn from the controller's seed, so placement is
//! deterministic); the default replication factor is `default.replication.factor` or
//! min(3, usable brokers); each partition's ISR is its active replicas, its leader the first of
//! them. INVALID_REPLICATION_FACTOR (more replicas than usable brokers, or no active replica),
//! INVALID_REPLICA_ASSIGNMENT (empty, duplicate, unregistered, uneven manual lists),
//! TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION (Kafka's name rule, `.`/`_` collisions),
//! INVALID_PARTITIONS. Topic ids are chosen by the caller (the controller draws no
//! randomness). Also `create_partitions`, `delete_topic`, `replace_topic_configs` (enabling
//! unclean election elects at once), `replace_group_configs`,
//! `allocate_producer_id_block` (blocks of 1000, never overlapping).
//!
//! **Reassignment** (KIP-455). A target makes replicas = target ++ (current − target) with
//! `adding` = target − current and `removing` = current − target; it completes when the whole
//! target is in the ISR (at once if it already is, else in AlterPartition): replicas and ISR
//! lose the removing ones, a new leader is elected if the old one left. Cancelling (`None`)
//! restores the original replicas and takes the adding ones out of the ISR; if that would
//! empty the ISR it needs unclean election enabled (INVALID_REPLICA_ASSIGNMENT otherwise).
//! NO_REASSIGNMENT_IN_PROGRESS when there is nothing to cancel.
//!
//! **Removing a node.** [`Controller::set_draining`] keeps new replicas off it;
//! [`Controller::drain_plan`] computes the reassignments that move each of its replicas to an
//! active, non-draining broker (same rack first, then the least loaded); once they complete,
//! [`Controller::unregister_broker`] removes the id (refused while it hosts any replica).
//!
//! # Invariants (checked after every record by `tests/sim.rs`)
//!
//! - At most one leader per (partition, leader epoch), ever; leader and partition epochs
//!   strictly increase per partition (partition epoch by exactly one per change).
//! - leader ∈ ISR ⊆ replicas; the ISR is never empty; the leader is registered, unfenced and
//!   not in controlled shutdown (or -1): a fenced broker leads nothing.
//! - An inactive broker is in an ISR only as its last member, with no leader.
//! - No election outside the ISR unless unclean election is enabled (or asked for).
//! - A stale AlterPartition (older leader / partition / broker epoch) never applies.
//! - Replaying the committed log from nothing rebuilds the same image; snapshots round-trip.
//! - A decision made on an older image (a lagging controller) is rejected whole.
//! - `tick` is a fixpoint: a second tick at the same instant decides nothing.
//!
//! # Where Sluice differs from Kafka, and why
//!
//! - **No ELR (KIP-966) yet**, and no `LeaderRecoveryState`: without ELR, KRaft keeps the last
//!   ISR member leaderless in the ISR, which is what we do; Sluice fsyncs before
//!   acknowledging, so that member's log is complete. ELR can come later as new optional
//!   fields.
//! - **Guards instead of speculative state.** Kafka's controller applies its records to
//!   memory before they commit (and reverts on failure), so it never decides on a stale
//!   state. Ours decides against the committed image, so each decision carries its
//!   precondition: the `guard` record (the whole entry is rejected if the image moved on) and,
//!   per partition, `expected_partition_epoch`; `apply` also refuses a leader that is not
//!   active and replicas that are not registered. No revert is ever needed; the cost is one
//!   mutating decision per commit (batching can come later).
//! - **Placement** uses the rack-aware `AdminUtils` algorithm (as ZooKeeper-era Kafka and its
//!   tooling did) rather than KRaft's `StripedReplicaPlacer`, seeded rather than random; a
//!   broker without a rack counts as rack `""` when others have one (Kafka's AdminUtils
//!   refuses mixed racks).
//! - **Draining** (`set_draining`, `drain_plan`) is Sluice's; Kafka has no decommission step.
//!   **UnregisterBroker is refused while the node hosts replicas** (Kafka allows it and leaves
//!   dangling replicas).
//! - **Error codes follow Kafka's controller**, not a ZooKeeper-era reading: a non-leader's
//!   AlterPartition and an ISR member that is not a replica get INVALID_REQUEST (Kafka's
//!   `validateAlterPartitionData`), not NOT_LEADER_OR_FOLLOWER / INELIGIBLE_REPLICA.
//! - `tick` fences every expired broker in one batch (Kafka fences one per event-loop turn)
//!   and also repairs leaderless partitions every tick (Kafka does it on broker events);
//!   `leader.imbalance.per.broker.percentage` is not used (KRaft ignores it too).
//! - No metadata.version / feature levels, no JBOD directory assignment, no ACLs, quotas,
//!   SCRAM or delegation tokens in the metadata log (yet).
//!
//! # Bounds
//!
//! [`MAX_PARTITIONS_PER_TOPIC`], [`MAX_AUTO_ELECTIONS_PER_PASS`],
//! [`MAX_REGISTRATION_STRING_LEN`], [`MAX_CONFIG_ENTRIES`], [`MAX_CONFIG_KEY_LEN`],
//! [`MAX_CONFIG_VALUE_LEN`], [`MAX_GROUP_ID_LEN`], [`MAX_TOPIC_NAME_LEN`]; defaults
//! [`DEFAULT_SESSION_TIMEOUT_MS`], [`DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS`],
//! [`PRODUCER_ID_BLOCK_SIZE`], [`DEFAULT_NUM_PARTITIONS`].
//!
//! # Tests
//!
//! Unit tests per rule in `src/tests.rs`; the seeded simulation in `tests/sim.rs` (2000
//! schedules × 250 steps by default, about a second in release; `SLUICE_CTRL_SIM_SCHEDULES`,
//! `SLUICE_CTRL_SIM_STEPS`, `SLUICE_CTRL_SIM_SEED` for longer runs or one seed).

mod controller;
mod error;
mod image;
mod placement;
mod record;

#[cfg(test)]
mod tests;

pub use controller::*;
pub use error::{codes, ControllerError};
pub use image::*;
pub use placement::assign_replicas;
pub use record::*;
