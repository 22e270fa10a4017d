//! Client quotas: DescribeClientQuotas and AlterClientQuotas (what `kafka-configs.sh
//! --entity-type users|clients` sends).

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use crate::error::{check, Result};
use crate::Client;

/// One part of a quota entity: its type (`user`, `client-id`) and name (`None`: the default).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntityPart {
    pub entity_type: String,
    pub name: Option<String>,
}

/// An entity and its quotas.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEntry {
    pub entity: Vec<EntityPart>,
    pub values: Vec<(String, f64)>,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

impl Client {
    /// The quotas of entities with exactly the parts in `filter` (each part's name, or the
    /// default when `None`); with an empty filter, every entity.
    pub async fn describe_client_quotas(
        &mut self,
        filter: &[EntityPart],
    ) -> Result<Vec<QuotaEntry>> {
        let addr = self.admin_addr();
        let components = filter
            .iter()
            .map(|p| {
                ComponentData::default()
                    .with_entity_type(s(&p.entity_type))
                    .with_match_type(if p.name.is_some() { 0 } else { 1 })
                    .with_match(p.name.as_deref().map(s))
            })
            .collect();
        let req = DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(!filter.is_empty());
        let resp = self.send_to(&addr, &req).await?;
        check(resp.error_code, resp.error_message.as_deref(), || {
            "describe client quotas".into()
        })?;
        let mut out: Vec<QuotaEntry> = resp
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let mut entity: Vec<EntityPart> = e
                    .entity
                    .into_iter()
                    .map(|d| EntityPart {
                        entity_type: d.entity_type.to_string(),
                        name: d.entity_name.map(|n| n.to_string()),
                    })
                    .collect();
                entity.sort();
                let mut values: Vec<(String, f64)> = e
                    .values
                    .into_iter()
                    .map(|v| (v.key.to_string(), v.value))
                    .collect();
                values.sort_by(|a, b| a.0.cmp(&b.0));
                QuotaEntry { entity, values }
            })
            .collect();
        out.sort_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }

    /// Sets (`Some`) and removes (`None`) quotas of one entity.
    pub async fn alter_client_quotas(
        &mut self,
        entity: &[EntityPart],
        changes: &[(String, Option<f64>)],
        validate_only: bool,
    ) -> Result<()> {
        let addr = self.admin_addr();
        let entry = EntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|p| {
                        EntityData::default()
                            .with_entity_type(s(&p.entity_type))
                            .with_entity_name(p.name.as_deref().map(s))
                    })
                    .collect(),
            )
            .with_ops(
                changes
                    .iter()
                    .map(|(k, v)| {
                        OpData::default()
                            .with_key(s(k))
                            .with_value(v.unwrap_or(0.0))
                            .with_remove(v.is_none())
                    })
                    .collect(),
            );
        let req = AlterClientQuotasRequest::default()
            .with_entries(vec![entry])
            .with_validate_only(validate_only);
        let resp = self.send_to(&addr, &req).await?;
        for e in &resp.entries {
            check(e.error_code, e.error_message.as_deref(), || {
                "alter client quotas".into()
            })?;
        }
        Ok(())
    }
}
