//! ApiVersions: the truthful list of what this broker implements (see `SUPPORTED`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

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

pub fn handle(_broker: &Broker) -> ApiVersionsResponse {
    // No finalized features yet: KIP-848 (group.version) is advertised when its APIs are.
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1)
}

/// The KIP-511 answer to an ApiVersions version we do not know.
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
