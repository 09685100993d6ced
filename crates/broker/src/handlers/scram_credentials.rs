//! DescribeUserScramCredentials (50) and AlterUserScramCredentials (51):
//! version 0 each, as Kafka 4.3 serves them (KIP-554).
//!
//! Credentials live in the metadata log as UserScramCredentialRecord /
//! RemoveUserScramCredentialRecord, so they replicate to every node and
//! survive restarts. Describe answers from this node's image (Kafka's
//! `ScramImage.describe`); Alter is decided by the active controller
//! (Kafka's `ScramControlManager.alterCredentials`): a node that is not
//! it forwards the request, then waits until its own image shows the
//! change, so a login on this node right after the answer works.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_metadata::MetadataImage;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use fjord_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use fjord_protocol::metadata_records::{
    MetadataRecord, RemoveUserScramCredentialRecord, UserScramCredentialRecord,
};

use super::{str_bytes, Ctx};
use crate::errors;
use crate::security::scram::{ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

pub const DESCRIBE_VERSIONS: RangeInclusive<i16> = 0..=0;
pub const ALTER_VERSIONS: RangeInclusive<i16> = 0..=0;

/// Kafka's answer to DescribeUserScramCredentials from `image`: every user
/// with a credential when `users` is null or empty, else each named user
/// once (DUPLICATE_RESOURCE for a repeat, RESOURCE_NOT_FOUND for a user
/// without credentials).
pub fn describe_in(
    image: &MetadataImage,
    users: Option<&[String]>,
) -> Vec<DescribeUserScramCredentialsResult> {
    // user -> asked twice.
    let mut wanted: BTreeMap<String, bool> = BTreeMap::new();
    match users {
        Some(users) if !users.is_empty() => {
            for u in users {
                wanted
                    .entry(u.clone())
                    .and_modify(|twice| *twice = true)
                    .or_insert(false);
            }
        }
        _ => {
            for (user, _) in image.scram_credentials().keys() {
                wanted.insert(user.clone(), false);
            }
        }
    }
    wanted
        .into_iter()
        .map(|(user, duplicate)| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&user));
            if duplicate {
                return result
                    .with_error_code(ErrorCode::DUPLICATE_RESOURCE.0)
                    .with_error_message(Some(str_bytes(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ))));
            }
            let infos: Vec<CredentialInfo> = ScramMechanism::ALL
                .into_iter()
                .filter_map(|m| {
                    image.scram_credential(&user, m.type_id()).map(|c| {
                        CredentialInfo::default()
                            .with_mechanism(m.type_id())
                            .with_iterations(c.iterations)
                    })
                })
                .collect();
            if infos.is_empty() {
                result
                    .with_error_code(ErrorCode::RESOURCE_NOT_FOUND.0)
                    .with_error_message(Some(str_bytes(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    ))))
            } else {
                result.with_credential_infos(infos)
            }
        })
        .collect()
}

pub fn describe(ctx: &Ctx, req: DescribeUserScramCredentialsRequest) -> Option<BytesMut> {
    let users: Option<Vec<String>> = req
        .users
        .map(|u| u.into_iter().map(|n| n.name.to_string()).collect());
    let results = describe_in(&ctx.broker.image(), users.as_deref());
    ctx.respond(&DescribeUserScramCredentialsResponse::default().with_results(results))
}

/// One user's change in an Alter request.
enum Change {
    Delete(ScramMechanism),
    Upsert {
        mechanism: ScramMechanism,
        iterations: i32,
        salt: bytes::Bytes,
        salted_password: bytes::Bytes,
    },
}

fn failure(code: ErrorCode, message: &str) -> (ErrorCode, Option<String>) {
    (code, Some(message.to_string()))
}

/// Kafka's `ScramControlManager.alterCredentials` against `image`: the
/// records to propose (all or nothing) and one result per user named.
/// A user may be named once in a request (DUPLICATE_RESOURCE otherwise).
pub fn decide(
    image: &MetadataImage,
    req: &AlterUserScramCredentialsRequest,
) -> (Vec<MetadataRecord>, Vec<AlterUserScramCredentialsResult>) {
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    let mut errors: BTreeMap<String, (ErrorCode, Option<String>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let twice = "A user credential cannot be altered twice in the same request";
    let note = |name: &str, order: &mut Vec<String>| {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_string());
        }
    };
    let check_name_and_mechanism = |name: &str, mechanism: i8| {
        if name.is_empty() {
            return Err(failure(
                ErrorCode::UNACCEPTABLE_CREDENTIAL,
                "Username must not be empty",
            ));
        }
        ScramMechanism::from_type(mechanism).ok_or_else(|| {
            failure(
                ErrorCode::UNSUPPORTED_SASL_MECHANISM,
                "Unknown SCRAM mechanism",
            )
        })
    };
    for d in &req.deletions {
        let name = d.name.to_string();
        note(&name, &mut order);
        if errors.contains_key(&name) {
            continue;
        }
        if changes.remove(&name).is_some() {
            errors.insert(name, failure(ErrorCode::DUPLICATE_RESOURCE, twice));
            continue;
        }
        let checked = check_name_and_mechanism(&name, d.mechanism).and_then(|m| {
            if image.scram_credential(&name, m.type_id()).is_none() {
                return Err(failure(
                    ErrorCode::RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist",
                ));
            }
            Ok(m)
        });
        match checked {
            Ok(m) => {
                changes.insert(name, Change::Delete(m));
            }
            Err(e) => {
                errors.insert(name, e);
            }
        }
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        note(&name, &mut order);
        if errors.contains_key(&name) {
            continue;
        }
        if changes.remove(&name).is_some() {
            errors.insert(name, failure(ErrorCode::DUPLICATE_RESOURCE, twice));
            continue;
        }
        let checked = check_name_and_mechanism(&name, u.mechanism).and_then(|m| {
            if u.iterations < MIN_ITERATIONS {
                Err(failure(
                    ErrorCode::UNACCEPTABLE_CREDENTIAL,
                    "Too few iterations",
                ))
            } else if u.iterations > MAX_ITERATIONS {
                Err(failure(
                    ErrorCode::UNACCEPTABLE_CREDENTIAL,
                    "Too many iterations",
                ))
            } else {
                Ok(m)
            }
        });
        match checked {
            Ok(mechanism) => {
                changes.insert(
                    name,
                    Change::Upsert {
                        mechanism,
                        iterations: u.iterations,
                        salt: u.salt.clone(),
                        salted_password: u.salted_password.clone(),
                    },
                );
            }
            Err(e) => {
                errors.insert(name, e);
            }
        }
    }
    let mut records = Vec::new();
    let mut results = Vec::new();
    for name in order {
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&name));
        if let Some((code, message)) = errors.remove(&name) {
            assert!(!changes.contains_key(&name), "a user fails or changes");
            results.push(
                result
                    .with_error_code(code.0)
                    .with_error_message(message.map(str_bytes)),
            );
            continue;
        }
        let Some(change) = changes.remove(&name) else {
            continue;
        };
        records.push(match change {
            Change::Delete(m) => {
                MetadataRecord::RemoveUserScramCredential(RemoveUserScramCredentialRecord {
                    name: name.clone(),
                    mechanism: m.type_id(),
                    ..Default::default()
                })
            }
            Change::Upsert {
                mechanism,
                iterations,
                salt,
                salted_password,
            } => {
                let c = mechanism.credential(&salt, &salted_password, iterations);
                MetadataRecord::UserScramCredential(UserScramCredentialRecord {
                    name: name.clone(),
                    mechanism: mechanism.type_id(),
                    salt,
                    stored_key: c.stored_key.into(),
                    server_key: c.server_key.into(),
                    iterations,
                    ..Default::default()
                })
            }
        });
        // Kafka answers a success with a null message.
        results.push(result.with_error_message(None));
    }
    (records, results)
}

/// Whether `image` shows what `records` set or removed.
fn applied(image: &MetadataImage, records: &[MetadataRecord]) -> bool {
    records.iter().all(|r| match r {
        MetadataRecord::UserScramCredential(r) => image
            .scram_credential(&r.name, r.mechanism)
            .is_some_and(|c| c.stored_key == r.stored_key && c.iterations == r.iterations),
        MetadataRecord::RemoveUserScramCredential(r) => {
            image.scram_credential(&r.name, r.mechanism).is_none()
        }
        _ => true,
    })
}

pub fn alter(ctx: &Ctx, req: AlterUserScramCredentialsRequest) -> Option<BytesMut> {
    let b = &ctx.broker;
    let results = if b.forwards_admin() {
        // The controller decides; this node waits to see what it committed
        // (the records it would have written, computed here the same way).
        match crate::controller_link::forward(b, &req, 0) {
            Ok(resp) => {
                let (records, _) = decide(&MetadataImage::empty(""), &req);
                let ok: Vec<&str> = resp
                    .results
                    .iter()
                    .filter(|r| r.error_code == 0)
                    .map(|r| r.user.as_str())
                    .collect();
                let mine: Vec<MetadataRecord> = records
                    .into_iter()
                    .filter(|r| match r {
                        MetadataRecord::UserScramCredential(r) => ok.contains(&r.name.as_str()),
                        _ => false,
                    })
                    .chain(
                        req.deletions
                            .iter()
                            .filter(|d| ok.contains(&d.name.as_str()))
                            .map(|d| {
                                MetadataRecord::RemoveUserScramCredential(
                                    RemoveUserScramCredentialRecord {
                                        name: d.name.to_string(),
                                        mechanism: d.mechanism,
                                        ..Default::default()
                                    },
                                )
                            }),
                    )
                    .collect();
                match b.wait_applied(|b| applied(&b.image(), &mine).then_some(())) {
                    Ok(()) => resp.results,
                    Err(e) => all_failed(&req, &e),
                }
            }
            Err(e) => all_failed(&req, &e),
        }
    } else {
        let _admin = b.admin_lock();
        let (records, results) = decide(&b.image(), &req);
        if records.is_empty() {
            results
        } else {
            match b.propose(records) {
                Ok(()) => results,
                Err(e) => all_failed(&req, &e),
            }
        }
    };
    ctx.respond(&AlterUserScramCredentialsResponse::default().with_results(results))
}

/// Every user of the request answered with `e`.
fn all_failed(
    req: &AlterUserScramCredentialsRequest,
    e: &crate::state::StateError,
) -> Vec<AlterUserScramCredentialsResult> {
    let (code, message) = errors::state_error(e);
    let mut names: Vec<String> = Vec::new();
    for n in req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
    {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
        .into_iter()
        .map(|n| {
            AlterUserScramCredentialsResult::default()
                .with_user(str_bytes(n))
                .with_error_code(code.0)
                .with_error_message(Some(str_bytes(message.clone())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use fjord_metadata::MetadataDelta;
    use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };

    use super::*;

    fn upsert(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion::default()
            .with_name(str_bytes(name))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(bytes::Bytes::from_static(b"salt"))
            .with_salted_password(bytes::Bytes::from(vec![9u8; 32]))
    }

    fn delete(name: &str, mechanism: i8) -> ScramCredentialDeletion {
        ScramCredentialDeletion::default()
            .with_name(str_bytes(name))
            .with_mechanism(mechanism)
    }

    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut d = MetadataDelta::new(image);
        for r in records {
            d.replay(r).unwrap();
        }
        d.apply()
    }

    fn codes(results: &[AlterUserScramCredentialsResult]) -> Vec<(String, i16)> {
        results
            .iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect()
    }

    #[test]
    fn alter_decides_as_kafkas_controller_and_describe_reads_the_image() {
        let empty = MetadataImage::empty("c");
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![delete("zed", 1), delete("", 1)])
            .with_upsertions(vec![
                upsert("alice", 1, 4096),
                upsert("bob", 3, 4096),
                upsert("carol", 2, 100),
                upsert("dave", 2, 20000),
                upsert("erin", 1, 8192),
                upsert("erin", 2, 8192),
            ]);
        let (records, results) = decide(&empty, &req);
        assert!(results
            .iter()
            .all(|r| (r.error_code == 0) == r.error_message.is_none()));
        assert_eq!(
            codes(&results),
            [
                ("zed".to_string(), ErrorCode::RESOURCE_NOT_FOUND.0),
                ("".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
                ("alice".to_string(), 0),
                ("bob".to_string(), ErrorCode::UNSUPPORTED_SASL_MECHANISM.0),
                ("carol".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
                ("dave".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
                ("erin".to_string(), ErrorCode::DUPLICATE_RESOURCE.0),
            ]
        );
        assert_eq!(records.len(), 1, "only alice's credential");
        let MetadataRecord::UserScramCredential(r) = &records[0] else {
            panic!("{records:?}");
        };
        // The stored key is H(HMAC(salted, "Client Key")), not the salted password.
        let expected = ScramMechanism::Sha256.credential(b"salt", &[9u8; 32], 4096);
        assert_eq!(r.stored_key.as_ref(), expected.stored_key.as_slice());
        assert_ne!(r.stored_key.as_ref(), &[9u8; 32][..]);
        let img = apply(&empty, &records);
        assert!(applied(&img, &records));
        assert!(!applied(&empty, &records));

        // Describe: everyone, one user, a repeat, an unknown user.
        let all = describe_in(&img, None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].credential_infos.len(), 1);
        assert_eq!(
            (
                all[0].credential_infos[0].mechanism,
                all[0].credential_infos[0].iterations
            ),
            (1, 4096)
        );
        assert_eq!(describe_in(&img, Some(&[])).len(), 1);
        let asked = describe_in(
            &img,
            Some(&[
                "nobody".to_string(),
                "alice".to_string(),
                "alice".to_string(),
            ]),
        );
        let by_user: BTreeMap<String, i16> = asked
            .iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect();
        assert_eq!(by_user["nobody"], ErrorCode::RESOURCE_NOT_FOUND.0);
        assert_eq!(by_user["alice"], ErrorCode::DUPLICATE_RESOURCE.0);

        // Delete alice's, and a delete plus an upsert of one user is a repeat.
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![delete("alice", 1), delete("bob", 1)])
            .with_upsertions(vec![upsert("bob", 1, 4096)]);
        let (records, results) = decide(&img, &req);
        assert_eq!(
            codes(&results),
            [
                ("alice".to_string(), 0),
                ("bob".to_string(), ErrorCode::RESOURCE_NOT_FOUND.0)
            ]
        );
        let img = apply(&img, &records);
        assert!(img.scram_credentials().is_empty());
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![delete("x", 1)])
            .with_upsertions(vec![upsert("y", 1, 4096), upsert("y", 2, 4096)]);
        let (records, results) = decide(&img, &req);
        assert!(records.is_empty());
        assert_eq!(
            codes(&results),
            [
                ("x".to_string(), ErrorCode::RESOURCE_NOT_FOUND.0),
                ("y".to_string(), ErrorCode::DUPLICATE_RESOURCE.0)
            ]
        );
    }
}
