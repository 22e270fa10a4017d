//! ApiVersions negotiation: for each API, the highest version both sides speak.
//!
//! Our range is what `kafka-protocol` can encode, capped where a newer version changes the
//! request's shape in ways this client does not implement (topic ids instead of names in
//! Produce v13, Fetch v13+, OffsetCommit/OffsetFetch v10).

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// The versions this client can speak for `api`.
pub fn client_range(api: ApiKey) -> VersionRange {
    let lib = api.valid_versions();
    let cap = match api {
        // v13 identifies topics by id only.
        ApiKey::Produce => 12,
        ApiKey::Fetch => 12,
        ApiKey::OffsetCommit => 9,
        ApiKey::OffsetFetch => 9,
        ApiKey::Metadata => 12,
        _ => lib.max,
    };
    VersionRange {
        min: lib.min,
        max: lib.max.min(cap),
    }
}

/// The version to use: min(our max, broker max), provided it is not below either minimum.
pub fn negotiate(ours: VersionRange, broker: VersionRange) -> Option<i16> {
    let both = ours.intersect(&broker);
    (!both.is_empty()).then_some(both.max)
}

/// The broker's advertised ranges, from an ApiVersions response.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    ranges: HashMap<i16, VersionRange>,
}

impl BrokerVersions {
    pub fn new(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        BrokerVersions {
            ranges: ranges
                .into_iter()
                .map(|(k, min, max)| (k, VersionRange { min, max }))
                .collect(),
        }
    }

    pub fn range(&self, api: ApiKey) -> Option<VersionRange> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The negotiated version, or a description of why there is none.
    pub fn pick(&self, api: ApiKey) -> Result<i16, String> {
        let ours = client_range(api);
        match self.range(api) {
            None => Err(format!(
                "the broker does not offer {api:?}; we speak {ours}"
            )),
            Some(broker) => negotiate(ours, broker)
                .ok_or_else(|| format!("the broker offers {api:?} {broker}, we speak {ours}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn picks_the_lower_max() {
        assert_eq!(negotiate(r(0, 12), r(3, 9)), Some(9));
        assert_eq!(negotiate(r(0, 5), r(3, 9)), Some(5));
        assert_eq!(negotiate(r(0, 2), r(3, 9)), None);
        assert_eq!(negotiate(r(10, 12), r(3, 9)), None);
    }

    #[test]
    fn caps_topic_id_versions() {
        assert_eq!(client_range(ApiKey::Fetch).max, 12);
        assert_eq!(client_range(ApiKey::Produce).max, 12);
        let broker = BrokerVersions::new([(ApiKey::Fetch as i16, 4, 16)]);
        assert_eq!(broker.pick(ApiKey::Fetch), Ok(12));
        assert!(broker.pick(ApiKey::Produce).is_err());
    }
}
