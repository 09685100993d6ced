//! DescribeClientQuotas (48) and AlterClientQuotas (49): versions 0..=1,
//! as Kafka 4.3 serves them (KIP-546).
//!
//! Quotas live in the metadata log as ClientQuotaRecord, so they replicate
//! to every node and survive restarts; every broker enforces the quotas of
//! its image (`crate::quotas`). Describe answers from this node's image
//! (Kafka's `ClientQuotasImage.describe`); Alter is decided by the active
//! controller (Kafka's `ClientQuotaControlManager.alterClientQuotas`): a
//! node that is not it forwards the request, then waits until its own image
//! shows the change.
//!
//! DescribeClientQuotas needs DESCRIBE_CONFIGS on the cluster,
//! AlterClientQuotas ALTER_CONFIGS (CLUSTER_AUTHORIZATION_FAILED otherwise).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_metadata::{client_quota_record, MetadataImage, QuotaEntity};
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::alter_client_quotas_request::EntryData as AlterEntry;
use fjord_protocol::kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlterResult,
};
use fjord_protocol::kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData as DescribedEntry, ValueData,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use fjord_protocol::metadata_records::MetadataRecord;

use super::{str_bytes, Ctx};
use crate::errors;
use crate::quotas::{
    CONNECTION_CREATION_RATE, CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, ENTITY_CLIENT_ID,
    ENTITY_IP, ENTITY_USER, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};
use crate::security::authorizer::Operation;

pub const VERSIONS: RangeInclusive<i16> = 0..=1;

/// The version Alter is forwarded to the controller with.
const FORWARD_VERSION: i16 = 1;

/// Kafka's message for CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_DENIED_MESSAGE: &str = "Cluster authorization failed.";

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// Kafka's failure of a whole request or entry: a code and a message.
type Failure = (ErrorCode, String);

fn invalid(message: impl Into<String>) -> Failure {
    (ErrorCode::INVALID_REQUEST, message.into())
}

/// Kafka's `ClientQuotasImage.describe` on `image`: the entities the
/// filter matches with their quotas, or the request's error.
pub fn describe_in(
    image: &MetadataImage,
    req: &DescribeClientQuotasRequest,
) -> Result<Vec<DescribedEntry>, Failure> {
    // Entity type -> name (None: the default entity) that must be there.
    let mut exact: BTreeMap<String, Option<String>> = BTreeMap::new();
    // Entity types that must be there, with any name.
    let mut any: Vec<String> = Vec::new();
    for c in &req.components {
        let t = c.entity_type.to_string();
        if t.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if exact.contains_key(&t) || any.contains(&t) {
            return Err(invalid(format!(
                "Entity type {t} cannot appear more than once in the filter."
            )));
        }
        if t != ENTITY_IP && t != ENTITY_USER && t != ENTITY_CLIENT_ID {
            return Err((
                ErrorCode::UNSUPPORTED_VERSION,
                format!("Unsupported entity type {t}"),
            ));
        }
        match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(m)) => {
                exact.insert(t, Some(m.to_string()));
            }
            (MATCH_EXACT, None) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.",
                ))
            }
            (MATCH_DEFAULT, None) => {
                exact.insert(t, None);
            }
            (MATCH_DEFAULT, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.",
                ))
            }
            (MATCH_SPECIFIED, None) => any.push(t),
            (MATCH_SPECIFIED, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.",
                ))
            }
            (other, _) => {
                return Err((
                    ErrorCode::UNSUPPORTED_VERSION,
                    format!("Unknown match type {other}"),
                ))
            }
        }
    }
    let has = |t: &str| exact.contains_key(t) || any.iter().any(|a| a == t);
    if has(ENTITY_IP) && (has(ENTITY_USER) || has(ENTITY_CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be \
             used with user or clientId filter component.",
        ));
    }
    let matches = |entity: &QuotaEntity| {
        (!req.strict || entity.len() == exact.len() + any.len())
            && exact.iter().all(|(t, n)| entity.get(t) == Some(n))
            && any.iter().all(|t| entity.contains_key(t))
    };
    Ok(image
        .client_quotas()
        .iter()
        .filter(|(entity, _)| matches(entity))
        .map(|(entity, values)| {
            DescribedEntry::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            DescribedEntity::default()
                                .with_entity_type(str_bytes(t))
                                .with_entity_name(n.as_ref().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| ValueData::default().with_key(str_bytes(k)).with_value(*v))
                        .collect(),
                )
        })
        .collect())
}

pub fn describe(ctx: &Ctx, req: DescribeClientQuotasRequest) -> Option<BytesMut> {
    let resp = if !ctx.may_on_cluster(Operation::DescribeConfigs) {
        DescribeClientQuotasResponse::default()
            .with_error_code(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0)
            .with_error_message(Some(str_bytes(CLUSTER_DENIED_MESSAGE)))
            .with_entries(None)
    } else {
        match describe_in(&ctx.broker.image(), &req) {
            Ok(entries) => DescribeClientQuotasResponse::default().with_entries(Some(entries)),
            // Kafka answers a refused filter with null entries.
            Err((code, message)) => DescribeClientQuotasResponse::default()
                .with_error_code(code.0)
                .with_error_message(Some(str_bytes(message)))
                .with_entries(None),
        }
    };
    ctx.respond(&resp)
}

/// The keys an entity of these types may set, and whether each must be a
/// whole number (Kafka's `QuotaConfigs`: LONG byte rates, DOUBLE
/// percentages and rates, INT connection rate).
fn key_is_integer(entity: &QuotaEntity, key: &str) -> Option<bool> {
    if entity.contains_key(ENTITY_IP) {
        return (key == CONNECTION_CREATION_RATE).then_some(true);
    }
    match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => Some(true),
        REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => Some(false),
        _ => None,
    }
}

/// An entry's entity, checked as Kafka's `validateEntity` and
/// `configKeysForEntityType` do.
fn entity_of(entry: &AlterEntry) -> Result<QuotaEntity, Failure> {
    if entry.entity.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut entity = QuotaEntity::new();
    for e in &entry.entity {
        let t = e.entity_type.to_string();
        if entity.contains_key(&t) {
            return Err(invalid(format!(
                "Invalid empty client quota entity, duplicate entity entry {t}"
            )));
        }
        if t != ENTITY_USER && t != ENTITY_CLIENT_ID && t != ENTITY_IP {
            return Err(invalid(format!("Unhandled client quota entity type: {t}")));
        }
        let name = e.entity_name.as_ref().map(|n| n.to_string());
        if name.as_deref() == Some("") {
            return Err(invalid(format!("Empty {t} not supported")));
        }
        if t == ENTITY_IP {
            if let Some(ip) = &name {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(invalid(format!(
                        "{ip} is not a valid IP or resolvable host."
                    )));
                }
            }
        }
        entity.insert(t, name);
    }
    if entity.contains_key(ENTITY_IP) && entity.len() > 1 {
        return Err(invalid("Invalid empty client quota entity"));
    }
    Ok(entity)
}

/// Kafka's `ClientQuotaControlManager.alterClientQuotas` against `image`:
/// the records to propose and one result per entry. An entry fails as a
/// whole (INVALID_REQUEST) for a bad entity, a key it cannot set, a value
/// of the wrong kind, a key named twice, or an entity named twice; a value
/// equal to the current one and the removal of an absent key write nothing.
pub fn decide(
    image: &MetadataImage,
    req: &AlterClientQuotasRequest,
) -> (Vec<MetadataRecord>, Vec<Result<(), Failure>>) {
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(req.entries.len());
    let mut seen: Vec<QuotaEntity> = Vec::new();
    for entry in &req.entries {
        let decided = entity_of(entry).and_then(|entity| {
            if seen.contains(&entity) {
                return Err(invalid(format!("Ignoring duplicate entity {entity:?}")));
            }
            seen.push(entity.clone());
            let mut changes: BTreeMap<String, Option<f64>> = BTreeMap::new();
            for op in &entry.ops {
                let key = op.key.to_string();
                if changes.contains_key(&key) {
                    return Err(invalid(format!(
                        "Duplicate quota key {key} not updating quota for this entity"
                    )));
                }
                if !op.remove {
                    let integer = key_is_integer(&entity, &key)
                        .ok_or_else(|| invalid(format!("Invalid configuration key {key}")))?;
                    let epsilon = 1e-6;
                    if integer && ((op.value + epsilon).trunc() - op.value).abs() > epsilon {
                        return Err(invalid(format!("Configuration {key} must be a Long value")));
                    }
                    if !op.value.is_finite() || op.value < 0.0 {
                        return Err(invalid(format!(
                            "Invalid value {} for configuration {key}",
                            op.value
                        )));
                    }
                }
                changes.insert(key, (!op.remove).then_some(op.value));
            }
            let current = image.client_quotas().get(&entity);
            let mut out = Vec::new();
            for (key, value) in changes {
                let now = current.and_then(|c| c.get(&key)).copied();
                let changed = match value {
                    None => now.is_some(),
                    Some(v) => now != Some(v),
                };
                if changed {
                    out.push(client_quota_record(&entity, &key, value));
                }
            }
            Ok(out)
        });
        match decided {
            Ok(out) => {
                records.extend(out);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    (records, results)
}

/// Whether `image` shows every value the successful entries of `req` set
/// or removed.
fn applied(image: &MetadataImage, req: &AlterClientQuotasRequest, ok: &[bool]) -> bool {
    req.entries
        .iter()
        .zip(ok)
        .filter(|(_, ok)| **ok)
        .all(|(e, _)| {
            let Ok(entity) = entity_of(e) else {
                return true;
            };
            let current = image.client_quotas().get(&entity);
            e.ops.iter().all(|op| {
                let now = current.and_then(|c| c.get(op.key.as_str())).copied();
                if op.remove {
                    now.is_none()
                } else {
                    now == Some(op.value)
                }
            })
        })
}

fn results_for(
    req: &AlterClientQuotasRequest,
    outcome: &[Result<(), Failure>],
) -> Vec<AlterResult> {
    req.entries
        .iter()
        .zip(outcome)
        .map(|(entry, r)| {
            // Kafka answers with its entity map's entries: client-id before
            // user, whatever the request's order.
            let mut entity: Vec<AlteredEntity> = entry
                .entity
                .iter()
                .map(|e| {
                    AlteredEntity::default()
                        .with_entity_type(e.entity_type.clone())
                        .with_entity_name(e.entity_name.clone())
                })
                .collect();
            entity.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
            let result = AlterResult::default().with_entity(entity);
            match r {
                // A success carries a null message.
                Ok(()) => result.with_error_message(None),
                Err((code, message)) => result
                    .with_error_code(code.0)
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect()
}

pub fn alter(ctx: &Ctx, req: AlterClientQuotasRequest) -> Option<BytesMut> {
    let b = &ctx.broker;
    let all = |failure: Failure| vec![Err(failure); req.entries.len()];
    let outcome: Vec<Result<(), Failure>> = if !ctx.may_on_cluster(Operation::AlterConfigs) {
        all((
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
            CLUSTER_DENIED_MESSAGE.to_string(),
        ))
    } else if b.forwards_admin() {
        match crate::controller_link::forward(b, &req, FORWARD_VERSION) {
            Ok(resp) => {
                let ok: Vec<bool> = resp.entries.iter().map(|e| e.error_code == 0).collect();
                let done = req.validate_only
                    || b.wait_applied(|b| applied(&b.image(), &req, &ok).then_some(()))
                        .is_ok();
                let outcome: Vec<Result<(), Failure>> = resp
                    .entries
                    .iter()
                    .map(|e| {
                        if e.error_code == 0 {
                            Ok(())
                        } else {
                            Err((
                                ErrorCode(e.error_code),
                                e.error_message
                                    .as_ref()
                                    .map(|m| m.to_string())
                                    .unwrap_or_default(),
                            ))
                        }
                    })
                    .collect();
                if done && outcome.len() == req.entries.len() {
                    outcome
                } else {
                    all((
                        ErrorCode::REQUEST_TIMED_OUT,
                        "the controller committed the change; this broker has not applied it yet"
                            .to_string(),
                    ))
                }
            }
            Err(e) => all(errors::state_error(&e)),
        }
    } else {
        let _admin = b.admin_lock();
        let (records, outcome) = decide(&b.image(), &req);
        if records.is_empty() || req.validate_only {
            outcome
        } else {
            match b.propose(records) {
                Ok(()) => outcome,
                Err(e) => all(errors::state_error(&e)),
            }
        }
    };
    let entries = results_for(&req, &outcome);
    ctx.respond(&AlterClientQuotasResponse::default().with_entries(entries))
}

#[cfg(test)]
mod tests {
    use fjord_metadata::MetadataDelta;
    use fjord_protocol::kafka_protocol::messages::alter_client_quotas_request::{
        EntityData as ReqEntity, OpData,
    };
    use fjord_protocol::kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    use super::*;

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> AlterEntry {
        AlterEntry::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        ReqEntity::default()
                            .with_entity_type(str_bytes(*t))
                            .with_entity_name(n.map(str_bytes))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, v)| {
                        OpData::default()
                            .with_key(str_bytes(*k))
                            .with_value(v.unwrap_or(0.0))
                            .with_remove(v.is_none())
                    })
                    .collect(),
            )
    }

    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut d = MetadataDelta::new(image);
        for r in records {
            d.replay(r).unwrap();
        }
        d.apply()
    }

    fn codes(outcome: &[Result<(), Failure>]) -> Vec<i16> {
        outcome
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| e.0 .0, |()| 0))
            .collect()
    }

    fn component(t: &str, match_type: i8, m: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(str_bytes(t))
            .with_match_type(match_type)
            .with_match(m.map(str_bytes))
    }

    fn described(
        image: &MetadataImage,
        components: Vec<ComponentData>,
        strict: bool,
    ) -> Vec<String> {
        let req = DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(strict);
        describe_in(image, &req)
            .unwrap()
            .iter()
            .map(|e| {
                e.entity
                    .iter()
                    .map(|d| {
                        format!(
                            "{}={}",
                            d.entity_type,
                            d.entity_name.as_ref().map_or("<default>", |n| n.as_str())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn alter_validates_as_kafkas_controller_and_describe_filters_as_kafka() {
        let empty = MetadataImage::empty("c");
        let req = AlterClientQuotasRequest::default().with_entries(vec![
            entry(
                &[("user", Some("alice"))],
                &[(PRODUCER_BYTE_RATE, Some(1024.0))],
            ),
            entry(
                &[("user", Some("alice")), ("client-id", None)],
                &[
                    (CONSUMER_BYTE_RATE, Some(2048.0)),
                    (REQUEST_PERCENTAGE, Some(50.5)),
                ],
            ),
            entry(&[("client-id", None)], &[(PRODUCER_BYTE_RATE, Some(10.0))]),
            entry(&[("user", None)], &[(PRODUCER_BYTE_RATE, Some(1.5))]),
            entry(&[], &[(PRODUCER_BYTE_RATE, Some(1.0))]),
            entry(&[("group", Some("g"))], &[(PRODUCER_BYTE_RATE, Some(1.0))]),
            entry(&[("user", Some(""))], &[(PRODUCER_BYTE_RATE, Some(1.0))]),
            entry(&[("client-id", Some("c"))], &[("nope", Some(1.0))]),
            entry(
                &[("ip", Some("5.6.7.8"))],
                &[(PRODUCER_BYTE_RATE, Some(1.0))],
            ),
            entry(
                &[("ip", Some("1.2.3.4"))],
                &[(CONNECTION_CREATION_RATE, Some(5.0))],
            ),
            entry(
                &[("client-id", Some("d"))],
                &[(PRODUCER_BYTE_RATE, Some(1.0)), (PRODUCER_BYTE_RATE, None)],
            ),
            entry(
                &[("user", Some("alice"))],
                &[(CONSUMER_BYTE_RATE, Some(1.0))],
            ),
        ]);
        let (records, outcome) = decide(&empty, &req);
        let bad = ErrorCode::INVALID_REQUEST.0;
        assert_eq!(
            codes(&outcome),
            [0, 0, 0, bad, bad, bad, bad, bad, bad, 0, bad, bad]
        );
        assert_eq!(records.len(), 5);
        let img = apply(&empty, &records);
        assert_eq!(img.client_quotas().len(), 4);
        assert!(applied(&img, &req, &[true, true, true, false]));
        assert!(!applied(&empty, &req, &[true]));
        // Snapshots carry quotas.
        assert_eq!(apply(&empty, &img.to_records()), img);

        // Setting the same value writes nothing; removing writes once.
        let again = AlterClientQuotasRequest::default().with_entries(vec![entry(
            &[("user", Some("alice"))],
            &[
                (PRODUCER_BYTE_RATE, Some(1024.0)),
                (CONSUMER_BYTE_RATE, None),
            ],
        )]);
        assert_eq!(decide(&img, &again).0, vec![]);

        // Describe, as kafka-configs asks.
        let user_alice = || component("user", MATCH_EXACT, Some("alice"));
        assert_eq!(described(&img, vec![user_alice()], true), ["user=alice"]);
        assert_eq!(
            described(&img, vec![user_alice()], false),
            ["client-id=<default>,user=alice", "user=alice"]
        );
        assert_eq!(
            described(
                &img,
                vec![component("client-id", MATCH_DEFAULT, None)],
                true
            ),
            ["client-id=<default>"]
        );
        assert_eq!(
            described(&img, vec![component("user", MATCH_SPECIFIED, None)], true),
            ["user=alice"]
        );
        assert_eq!(described(&img, vec![], false).len(), 4);
        assert_eq!(
            described(&img, vec![component("ip", MATCH_SPECIFIED, None)], true),
            ["ip=1.2.3.4"]
        );
        for (components, code) in [
            (vec![user_alice(), user_alice()], bad),
            (vec![component("user", MATCH_EXACT, None)], bad),
            (vec![component("user", MATCH_DEFAULT, Some("x"))], bad),
            (
                vec![component("ip", MATCH_SPECIFIED, None), user_alice()],
                bad,
            ),
            (
                vec![component("group", MATCH_SPECIFIED, None)],
                ErrorCode::UNSUPPORTED_VERSION.0,
            ),
            (
                vec![component("user", 7, None)],
                ErrorCode::UNSUPPORTED_VERSION.0,
            ),
        ] {
            let req = DescribeClientQuotasRequest::default().with_components(components);
            assert_eq!(describe_in(&img, &req).unwrap_err().0 .0, code);
        }

        // Remove every quota: the image is empty again.
        let removal = AlterClientQuotasRequest::default().with_entries(
            img.client_quotas()
                .iter()
                .map(|(entity, values)| {
                    let entity: Vec<(&str, Option<&str>)> = entity
                        .iter()
                        .map(|(t, n)| (t.as_str(), n.as_deref()))
                        .collect();
                    let ops: Vec<(&str, Option<f64>)> =
                        values.keys().map(|k| (k.as_str(), None)).collect();
                    entry(&entity, &ops)
                })
                .collect(),
        );
        let (records, outcome) = decide(&img, &removal);
        assert!(outcome.iter().all(Result::is_ok));
        assert!(apply(&img, &records).client_quotas().is_empty());
    }
}
