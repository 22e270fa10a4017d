//! ApiVersions: the truthful list of what this broker implements (see `SUPPORTED`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::StrBytes;

use super::SUPPORTED;
use crate::broker::Broker;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// Feature levels, as a KRaft cluster finalizes them: `group.version` 1 turns on the KIP-848
/// consumer group protocol for clients that check it; `share.version` 1 turns on KIP-932 share
/// groups; `transaction.version` 2 turns on KIP-890 part 2 (EndTxn v5 bumps the epoch per
/// transaction, Produce v12 and TxnOffsetCommit v5 add partitions/groups implicitly). Java 4.x
/// clients use TV2 only when it is finalized at 2 and EndTxn v5 / TxnOffsetCommit v5 are offered.
const FEATURES: &[(&str, i16, i16)] = &[
    ("group.version", 1, 1),
    ("share.version", 1, 1),
    ("transaction.version", 0, 2),
];

pub fn handle(_broker: &Broker, version: i16) -> ApiVersionsResponse {
    let response = ApiVersionsResponse::default().with_api_keys(api_keys());
    if version < 3 {
        return response;
    }
    response
        .with_supported_features(
            FEATURES
                .iter()
                .map(|(name, min, max)| {
                    // KAFKA-17011: clients that send ApiVersions v3 cannot read a supported
                    // minimum of 0; Kafka reports 1 to them.
                    let min = if version < 4 && *min == 0 { 1 } else { *min };
                    SupportedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version(min)
                        .with_max_version(*max)
                })
                .collect(),
        )
        .with_finalized_features_epoch(1)
        .with_finalized_features(
            FEATURES
                .iter()
                .map(|(name, _, max)| {
                    FinalizedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version_level(*max)
                        .with_max_version_level(*max)
                })
                .collect(),
        )
}

/// The KIP-511 answer to an ApiVersions version we do not know.
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
