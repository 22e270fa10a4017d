//! Kafka protocol error codes used by the coordinator.
//!
//! The values are the wire codes of Apache Kafka's `Errors` enum, so the
//! broker can copy them straight into responses.

/// No error.
pub const NONE: i16 = 0;
/// Unexpected server-side failure.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// The coordinator is not available (e.g. the group is being unloaded).
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// This broker is not the coordinator for the group.
pub const NOT_COORDINATOR: i16 = 16;
/// The generation id given does not match the group's.
pub const ILLEGAL_GENERATION: i16 = 22;
/// Protocol type or protocols are incompatible with the group's.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
/// The group id is empty or otherwise invalid.
pub const INVALID_GROUP_ID: i16 = 24;
/// The member id is not known to the group.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// The session timeout is outside the configured bounds.
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
/// The group is rebalancing; the member must rejoin.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// The request is malformed.
pub const INVALID_REQUEST: i16 = 42;
/// The group cannot be deleted because it still has members.
pub const NON_EMPTY_GROUP: i16 = 68;
/// The group does not exist (or has another type).
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// The member must rejoin with the member id returned in the response.
pub const MEMBER_ID_REQUIRED: i16 = 79;
/// The group already has the maximum number of members.
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
/// The static member id was replaced by a newer instance.
pub const FENCED_INSTANCE_ID: i16 = 82;
/// The consumer-protocol member epoch is not the expected one; rejoin.
pub const FENCED_MEMBER_EPOCH: i16 = 110;
/// The static instance id is still owned by an active member.
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
/// The requested server-side assignor is not supported.
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
/// An offset commit carried an older member epoch than the member's.
pub const STALE_MEMBER_EPOCH: i16 = 113;

/// Kafka's name for an error code (for logs and test messages).
pub fn name(code: i16) -> &'static str {
    match code {
        NONE => "NONE",
        UNKNOWN_SERVER_ERROR => "UNKNOWN_SERVER_ERROR",
        COORDINATOR_NOT_AVAILABLE => "COORDINATOR_NOT_AVAILABLE",
        NOT_COORDINATOR => "NOT_COORDINATOR",
        ILLEGAL_GENERATION => "ILLEGAL_GENERATION",
        INCONSISTENT_GROUP_PROTOCOL => "INCONSISTENT_GROUP_PROTOCOL",
        INVALID_GROUP_ID => "INVALID_GROUP_ID",
        UNKNOWN_MEMBER_ID => "UNKNOWN_MEMBER_ID",
        INVALID_SESSION_TIMEOUT => "INVALID_SESSION_TIMEOUT",
        REBALANCE_IN_PROGRESS => "REBALANCE_IN_PROGRESS",
        INVALID_REQUEST => "INVALID_REQUEST",
        NON_EMPTY_GROUP => "NON_EMPTY_GROUP",
        GROUP_ID_NOT_FOUND => "GROUP_ID_NOT_FOUND",
        MEMBER_ID_REQUIRED => "MEMBER_ID_REQUIRED",
        GROUP_MAX_SIZE_REACHED => "GROUP_MAX_SIZE_REACHED",
        FENCED_INSTANCE_ID => "FENCED_INSTANCE_ID",
        FENCED_MEMBER_EPOCH => "FENCED_MEMBER_EPOCH",
        UNRELEASED_INSTANCE_ID => "UNRELEASED_INSTANCE_ID",
        UNSUPPORTED_ASSIGNOR => "UNSUPPORTED_ASSIGNOR",
        STALE_MEMBER_EPOCH => "STALE_MEMBER_EPOCH",
        _ => "UNKNOWN",
    }
}
