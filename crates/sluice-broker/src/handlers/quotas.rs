//! DescribeClientQuotas (48) and AlterClientQuotas (49): the client quotas of `quota.rs`, kept
//! in the metadata log. Validation and error codes follow Kafka's `ClientQuotaControlManager`;
//! the `ip` entity type (`connection_creation_rate`) is not enforced by Sluice, so setting it
//! is refused rather than accepted and ignored.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlterEntityData, EntryData as AlterEntryData,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::{EntityName, QuotaEntity};

use super::s;
use crate::broker::{now_ms, Broker};
use crate::limits::MAX_QUOTA_ALTERATIONS;
use crate::quota::QuotaType;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

const INVALID_REQUEST: i16 = 42;
const UNSUPPORTED_VERSION: i16 = 35;

/// A refusal: Kafka's error code and message.
type Refused = (i16, String);

fn invalid(message: impl Into<String>) -> Refused {
    (INVALID_REQUEST, message.into())
}

fn name_of(name: &Option<StrBytes>) -> EntityName {
    match name {
        None => EntityName::Default,
        Some(n) => EntityName::Named(n.to_string()),
    }
}

fn wire_name(name: &EntityName) -> Option<StrBytes> {
    match name {
        EntityName::Default => None,
        EntityName::Named(n) => Some(s(n.clone())),
    }
}

/// An entity of an AlterClientQuotas entry, checked as Kafka checks it.
fn parse_entity<'a>(
    parts: impl Iterator<Item = (&'a StrBytes, &'a Option<StrBytes>)>,
) -> Result<QuotaEntity, Refused> {
    let mut entity = QuotaEntity::default();
    let mut any = false;
    for (kind, name) in parts {
        any = true;
        if name.as_ref().is_some_and(|n| n.is_empty()) {
            return Err(invalid(format!("Empty {} not supported", kind.as_str())));
        }
        let slot = match kind.as_str() {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => {
                return Err(invalid(
                    "Sluice does not enforce ip quotas (connection_creation_rate)",
                ))
            }
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )))
            }
        };
        if slot.is_some() {
            return Err(invalid(format!(
                "Invalid client quota entity, duplicate entity entry {}",
                kind.as_str()
            )));
        }
        *slot = Some(name_of(name));
    }
    if !any {
        return Err(invalid("Invalid empty client quota entity"));
    }
    Ok(entity)
}

/// Kafka's `validateQuotaKeyValue`.
fn check_value(key: &str, value: f64) -> Result<(), Refused> {
    let Some(t) = QuotaType::from_key(key) else {
        return Err(invalid(if key == "controller_mutation_rate" {
            "Sluice does not enforce controller_mutation_rate".to_string()
        } else {
            format!("Invalid configuration key {key}")
        }));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(invalid(format!("Quota {key} must be greater than 0")));
    }
    if t.integral() {
        if value > i64::MAX as f64 {
            return Err(invalid(format!(
                "Proposed value for {key} is too large for a LONG."
            )));
        }
        if (value % 1.0).abs() > 1e-6 {
            return Err(invalid(format!("{key} cannot be a fractional value.")));
        }
    }
    Ok(())
}

/// The changes of one entry: `Some` sets, `None` removes.
fn parse_ops(
    ops: &[kafka_protocol::messages::alter_client_quotas_request::OpData],
) -> Result<BTreeMap<String, Option<f64>>, Refused> {
    let mut changes = BTreeMap::new();
    for op in ops {
        let key = op.key.to_string();
        let value = if op.remove {
            None
        } else {
            check_value(&key, op.value)?;
            Some(op.value)
        };
        if changes.insert(key.clone(), value).is_some() {
            return Err(invalid(format!(
                "Duplicate quota key {key} not updating quota for this entity"
            )));
        }
    }
    Ok(changes)
}

pub async fn alter_client_quotas(
    broker: &Broker,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut seen = Vec::new();
    let mut entries = Vec::with_capacity(req.entries.len().min(MAX_QUOTA_ALTERATIONS));
    for (i, e) in req.entries.into_iter().enumerate() {
        let outcome = if i >= MAX_QUOTA_ALTERATIONS {
            Err(invalid(format!(
                "at most {MAX_QUOTA_ALTERATIONS} entities are altered in one request"
            )))
        } else {
            match parse_entity(e.entity.iter().map(|d| (&d.entity_type, &d.entity_name))) {
                Ok(entity) if seen.contains(&entity) => {
                    Err(invalid(format!("Ignoring duplicate entity {entity:?}")))
                }
                Ok(entity) => {
                    seen.push(entity.clone());
                    match parse_ops(&e.ops) {
                        Err(r) => Err(r),
                        Ok(_) if req.validate_only => Ok(()),
                        Ok(changes) => broker
                            .metadata
                            .alter_client_quotas(entity, changes, now_ms())
                            .await
                            .map_err(|e| (e.code, e.message)),
                    }
                }
                Err(r) => Err(r),
            }
        };
        let entity = e
            .entity
            .into_iter()
            .map(|d| {
                AlterEntityData::default()
                    .with_entity_type(d.entity_type)
                    .with_entity_name(d.entity_name)
            })
            .collect();
        let entry = AlterEntryData::default().with_entity(entity);
        entries.push(match outcome {
            Ok(()) => entry,
            Err((code, message)) => entry
                .with_error_code(code)
                .with_error_message(Some(s(message))),
        });
    }
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// What a DescribeClientQuotas filter asks of one entity type.
#[derive(Debug, PartialEq)]
enum Want {
    /// This name (`None`: the default).
    Exact(Option<String>),
    /// Any name, the default included.
    Any,
}

fn filter(req: &DescribeClientQuotasRequest) -> Result<Vec<(String, Want)>, Refused> {
    let mut wants: Vec<(String, Want)> = Vec::new();
    for c in &req.components {
        let kind = c.entity_type.to_string();
        if kind.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if wants.iter().any(|(k, _)| *k == kind) {
            return Err(invalid(format!(
                "Entity type {kind} cannot appear more than once in the filter."
            )));
        }
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err((
                UNSUPPORTED_VERSION,
                format!("Unsupported entity type {kind}"),
            ));
        }
        let want = match c.match_type {
            0 => Want::Exact(c._match.as_ref().map(|m| m.to_string())),
            1 => Want::Exact(None),
            2 => Want::Any,
            other => return Err(invalid(format!("Unexpected match type {other}"))),
        };
        wants.push((kind, want));
    }
    let has = |k: &str| wants.iter().any(|(kind, _)| kind == k);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be \
             used with user or clientId filter component.",
        ));
    }
    Ok(wants)
}

fn matches(entity: &QuotaEntity, wants: &[(String, Want)], strict: bool) -> bool {
    let parts = [(USER, &entity.user), (CLIENT_ID, &entity.client_id)];
    let present = parts.iter().filter(|(_, p)| p.is_some()).count();
    if strict && present != wants.len() {
        return false;
    }
    wants.iter().all(|(kind, want)| {
        let Some((_, Some(name))) = parts.iter().find(|(k, _)| k == kind) else {
            return false;
        };
        match want {
            Want::Any => true,
            Want::Exact(None) => *name == EntityName::Default,
            Want::Exact(Some(n)) => matches!(name, EntityName::Named(x) if x == n),
        }
    })
}

pub fn describe_client_quotas(
    broker: &Broker,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let wants = match filter(&req) {
        Ok(w) => w,
        Err((code, message)) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(message)))
        }
    };
    let entries = broker
        .metadata
        .client_quotas()
        .into_iter()
        .filter(|q| matches(&q.entity, &wants, req.strict))
        .map(|q| {
            let mut entity = Vec::new();
            for (kind, name) in [(USER, &q.entity.user), (CLIENT_ID, &q.entity.client_id)] {
                if let Some(name) = name {
                    entity.push(
                        EntityData::default()
                            .with_entity_type(s(kind))
                            .with_entity_name(wire_name(name)),
                    );
                }
            }
            let values = q
                .quotas
                .iter()
                .map(|(k, v)| ValueData::default().with_key(s(k.clone())).with_value(v.0))
                .collect();
            EntryData::default().with_entity(entity).with_values(values)
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// Puts `ms` in a response's `throttle_time_ms` (KIP-219). The responses without the field
/// (WriteTxnMarkers, DescribeQuorum: inter-broker and operator calls) carry none.
pub fn set_throttle(response: &mut ResponseKind, ms: i32) {
    macro_rules! field {
        (throttle $r:ident) => {
            $r.throttle_time_ms = ms
        };
        (none $r:ident) => {
            let _ = $r;
        };
    }
    macro_rules! throttle {
        ($($k:ident: $throttle:ident),* $(,)?) => {{
            $(if let ResponseKind::$k(r) = response {
                field!($throttle r);
                return;
            })*
        }};
    }
    served_apis!(throttle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    #[test]
    fn describe_filters_match_as_kafkas() {
        let named = |n: &str| Some(EntityName::Named(n.into()));
        let d = || Some(EntityName::Default);
        let want = |k: &str, w: Want| (k.to_string(), w);
        let ua = entity(named("a"), None);
        let ud_cx = entity(d(), named("x"));
        // Any user: both; strict: only the user-alone entity.
        let any_user = [want(USER, Want::Any)];
        assert!(matches(&ua, &any_user, false));
        assert!(matches(&ud_cx, &any_user, false));
        assert!(!matches(&ud_cx, &any_user, true));
        // The default user.
        assert!(matches(&ud_cx, &[want(USER, Want::Exact(None))], false));
        assert!(!matches(&ua, &[want(USER, Want::Exact(None))], false));
        // A named client id, and a type the entity lacks.
        assert!(matches(
            &ud_cx,
            &[want(CLIENT_ID, Want::Exact(Some("x".into())))],
            false
        ));
        assert!(!matches(&ua, &[want(CLIENT_ID, Want::Any)], false));
        // No components: everything, unless strict.
        assert!(matches(&ua, &[], false));
        assert!(!matches(&ua, &[], true));
    }

    #[test]
    fn every_served_api_is_named_and_throttled_where_its_response_can_say_so() {
        for (key, _, _) in super::super::SUPPORTED {
            assert_ne!(super::super::api_name(*key), "Other", "{key:?}");
        }
        let mut produce = ResponseKind::Produce(Default::default());
        set_throttle(&mut produce, 250);
        assert!(matches!(produce, ResponseKind::Produce(r) if r.throttle_time_ms == 250));
        let mut quotas = ResponseKind::AlterClientQuotas(Default::default());
        set_throttle(&mut quotas, 7);
        assert!(matches!(quotas, ResponseKind::AlterClientQuotas(r) if r.throttle_time_ms == 7));
    }

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        assert!(check_value("producer_byte_rate", 1024.0).is_ok());
        assert!(check_value("request_percentage", 12.5).is_ok());
        for (key, v) in [
            ("producer_byte_rate", 1.5),
            ("producer_byte_rate", 0.0),
            ("consumer_byte_rate", -1.0),
            ("consumer_byte_rate", f64::NAN),
            ("request_percentage", f64::INFINITY),
            ("controller_mutation_rate", 1.0),
            ("nonsense", 1.0),
        ] {
            assert_eq!(
                check_value(key, v).unwrap_err().0,
                INVALID_REQUEST,
                "{key} {v}"
            );
        }
    }
}
