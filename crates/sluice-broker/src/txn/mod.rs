//! The transaction coordinator's IO edge (Kafka's `TransactionCoordinator`): the durable
//! `__transaction_state` log, the markers written to each partition of a transaction, and the
//! timers that abort expired transactions. The state machine itself is `sluice-txn`.

use std::path::Path;

use kafka_protocol::error::ResponseError;

use crate::error::KafkaError;

pub struct TxnCoordinator {}

impl TxnCoordinator {
    /// Opens `__transaction_state`, replays it, and returns the coordinator.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self, KafkaError> {
        // SKELETON: implemented by the coordinator work.
        let _ = (data_dir, now_ms);
        Ok(TxnCoordinator {})
    }

    /// KIP-890 part 1 (and the TV2 implicit add): called by Produce before appending a
    /// transactional batch. `Ok` if `topic-partition` is in the open transaction of
    /// `transactional_id` for this producer id and epoch. With `add` (Produce v12+, TV2) a
    /// partition not yet in the transaction is added to it (durably) first. Errors are
    /// Kafka's: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED / INVALID_PRODUCER_EPOCH,
    /// CONCURRENT_TRANSACTIONS, TRANSACTION_ABORTABLE / INVALID_TXN_STATE; the produce handler
    /// maps them for old Produce versions.
    #[allow(clippy::too_many_arguments)]
    pub async fn verify_partition(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
        add: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        // SKELETON: implemented by the coordinator work.
        let _ = (
            transactional_id,
            producer_id,
            producer_epoch,
            topic,
            partition,
            add,
            now_ms,
        );
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    }

    /// The group-side twin of [`Self::verify_partition`], called by TxnOffsetCommit: `Ok` if
    /// `group` was added to the open transaction (AddOffsetsToTxn); with `add` (TxnOffsetCommit
    /// v5+, TV2) it is added first. Same errors as `verify_partition`.
    pub async fn verify_group(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        add: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        // SKELETON: implemented by the coordinator work.
        let _ = (
            transactional_id,
            producer_id,
            producer_epoch,
            group,
            add,
            now_ms,
        );
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    }
}
