//! The storage crate's one error type. The broker maps each variant onto a Kafka error code.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// CRC mismatch or a batch whose framing is broken (Kafka: CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    /// Structurally valid but semantically wrong batch (Kafka: INVALID_RECORD).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch over `max.message.bytes` (Kafka: MESSAGE_TOO_LARGE).
    #[error("{0}")]
    MessageTooLarge(String),
    /// Magic 0/1 message sets (Kafka: UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("{0}")]
    UnsupportedMessageFormat(String),
    /// An unknown codec id in the attributes (Kafka: UNSUPPORTED_COMPRESSION_TYPE).
    #[error("{0}")]
    UnsupportedCompression(String),
    /// A CreateTime timestamp outside the topic's allowed window (Kafka: INVALID_TIMESTAMP).
    #[error("{0}")]
    InvalidTimestamp(String),
    /// An offset outside [log start, log end] (Kafka: OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A topic config value the log cannot use (Kafka: INVALID_CONFIG).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;
