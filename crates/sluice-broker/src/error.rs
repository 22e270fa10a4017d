//! Mapping of internal errors onto Kafka error codes, at the protocol edge.

use kafka_protocol::error::ResponseError;
use sluice_storage::StorageError;

/// A Kafka error code with the message that goes with it (ErrorMessage fields, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: String,
    /// The index of the record that made a produce fail, for Produce v8+ `RecordErrors`
    /// (conditional append); `None` for everything else.
    pub record_index: Option<i32>,
    /// The partition's current leader, when this broker knows it and the error is
    /// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH: Produce v10+ and Fetch v12+ send it
    /// back as `CurrentLeader` (KIP-951), so the client need not refresh its metadata first.
    pub current_leader: Option<LeaderAndEpoch>,
}

/// A partition's leader and its epoch (KIP-951's `LeaderIdAndEpoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderAndEpoch {
    pub leader_id: i32,
    pub leader_epoch: i32,
}

impl KafkaError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        KafkaError {
            code: error.code(),
            message: message.into(),
            record_index: None,
            current_leader: None,
        }
    }

    /// The same error, carrying the partition's current leader (KIP-951).
    pub fn with_current_leader(mut self, leader: LeaderAndEpoch) -> Self {
        self.current_leader = Some(leader);
        self
    }

    /// The same error, naming the record (in its record set) that caused it.
    pub fn with_record_index(mut self, index: i32) -> Self {
        self.record_index = Some(index);
        self
    }
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (error code {})", self.message, self.code)
    }
}

impl From<StorageError> for KafkaError {
    fn from(e: StorageError) -> Self {
        let kind = match &e {
            StorageError::Io(_) => ResponseError::KafkaStorageError,
            StorageError::CorruptMessage(_) => ResponseError::CorruptMessage,
            StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
            StorageError::MessageTooLarge(_) => ResponseError::MessageTooLarge,
            StorageError::UnsupportedMessageFormat(_) => ResponseError::UnsupportedForMessageFormat,
            StorageError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
            StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            StorageError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
            StorageError::InvalidConfig(_) => ResponseError::InvalidConfig,
        };
        KafkaError::new(kind, e.to_string())
    }
}

impl From<std::io::Error> for KafkaError {
    fn from(e: std::io::Error) -> Self {
        KafkaError::new(ResponseError::KafkaStorageError, e.to_string())
    }
}

pub fn code(e: ResponseError) -> i16 {
    e.code()
}
