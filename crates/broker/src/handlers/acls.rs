//! DescribeAcls (29), CreateAcls (30), DeleteAcls (31): versions 1..=3.
//!
//! With `authorizer.class.name` set (the StandardAuthorizer), ACLs live in
//! the metadata log as AccessControlEntryRecord / RemoveAccessControlEntryRecord,
//! so they replicate to every node and survive restarts, as in Kafka's
//! KRaft mode. Changes are decided by the active controller (Kafka's
//! `AclControlManager`): new ACLs are checked (`authorizer::validate_new`,
//! INVALID_REQUEST otherwise), one already present is not added twice;
//! DeleteAcls removes every ACL a filter matches and lists them. A node
//! that is not the active controller checks the principal, forwards the
//! request, then waits until its own image shows the change. Describe
//! answers from this node's image, grouped by resource pattern.
//!
//! CreateAcls and DeleteAcls need ALTER on the cluster, DescribeAcls
//! DESCRIBE (CLUSTER_AUTHORIZATION_FAILED otherwise).
//!
//! Without an authorizer Kafka answers these APIs with SECURITY_DISABLED
//! (DescribeAcls once for the request, CreateAcls once per creation,
//! DeleteAcls once per filter), and so does Fjord.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_metadata::{AclEntry, MetadataImage};
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::create_acls_response::AclCreationResult;
use fjord_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use fjord_protocol::kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use fjord_protocol::kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource,
};
use fjord_protocol::kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use fjord_protocol::metadata_records::{MetadataRecord, RemoveAccessControlEntryRecord};
use uuid::Uuid;

use super::{str_bytes, Ctx};
use crate::errors;
use crate::security::authorizer::{validate_new, AclFilter, Operation};

pub const VERSIONS: RangeInclusive<i16> = 1..=3;

/// Kafka's messages, so that tools print the same line for either broker.
const DESCRIBE_MESSAGE: &str = "No Authorizer is configured on the broker";
const CHANGE_MESSAGE: &str = "No Authorizer is configured.";

/// The version requests are forwarded to the controller with.
const FORWARD_VERSION: i16 = 3;

fn filter_of(f: &DeleteAclsFilter) -> AclFilter {
    AclFilter {
        resource_type: f.resource_type_filter,
        name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
        pattern_type: f.pattern_type_filter,
        principal: f.principal_filter.as_ref().map(|s| s.to_string()),
        host: f.host_filter.as_ref().map(|s| s.to_string()),
        operation: f.operation,
        permission_type: f.permission_type,
    }
}

/// Kafka's DescribeAcls answer from `image`: the ACLs `filter` matches,
/// grouped by resource pattern.
pub fn describe_in(image: &MetadataImage, filter: &AclFilter) -> Vec<DescribeAclsResource> {
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in image.acls().values().filter(|a| filter.matches(a)) {
        by_resource
            .entry((
                acl.resource_type,
                acl.resource_name.clone(),
                acl.pattern_type,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&acl.principal))
                    .with_host(str_bytes(&acl.host))
                    .with_operation(acl.operation)
                    .with_permission_type(acl.permission_type),
            );
    }
    by_resource
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern)
                .with_acls(acls)
        })
        .collect()
}

pub fn describe(ctx: &Ctx, req: DescribeAclsRequest) -> Option<BytesMut> {
    if !ctx.broker.config.authorizer_enabled {
        return ctx.respond(
            &DescribeAclsResponse::default()
                .with_error_code(ErrorCode::SECURITY_DISABLED.0)
                .with_error_message(Some(str_bytes(DESCRIBE_MESSAGE))),
        );
    }
    if !ctx.may_on_cluster(Operation::Describe) {
        return ctx.respond(
            &DescribeAclsResponse::default()
                .with_error_code(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0)
                .with_error_message(None),
        );
    }
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        name: req.resource_name_filter.map(|s| s.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.map(|s| s.to_string()),
        host: req.host_filter.map(|s| s.to_string()),
        operation: req.operation,
        permission_type: req.permission_type,
    };
    if let Err(message) = filter.validate() {
        return ctx.respond(
            &DescribeAclsResponse::default()
                .with_error_code(ErrorCode::INVALID_REQUEST.0)
                .with_error_message(Some(str_bytes(message))),
        );
    }
    let resources = describe_in(&ctx.broker.image(), &filter);
    ctx.respond(
        &DescribeAclsResponse::default()
            .with_error_message(None)
            .with_resources(resources),
    )
}

fn entry_of(
    c: &fjord_protocol::kafka_protocol::messages::create_acls_request::AclCreation,
) -> AclEntry {
    AclEntry {
        resource_type: c.resource_type,
        resource_name: c.resource_name.to_string(),
        pattern_type: c.resource_pattern_type,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: c.operation,
        permission_type: c.permission_type,
    }
}

/// Kafka's `AclControlManager.createAcls` against `image`: the records
/// to propose and one result per creation. An ACL already in the image
/// (or earlier in the request) succeeds without a record.
pub fn decide_create(
    image: &MetadataImage,
    req: &CreateAclsRequest,
) -> (Vec<MetadataRecord>, Vec<AclCreationResult>) {
    let mut records = Vec::new();
    let mut added: Vec<AclEntry> = Vec::new();
    let results = req
        .creations
        .iter()
        .map(|c| {
            let acl = entry_of(c);
            if let Err(message) = validate_new(&acl) {
                return AclCreationResult::default()
                    .with_error_code(ErrorCode::INVALID_REQUEST.0)
                    .with_error_message(Some(str_bytes(message)));
            }
            let present = image.acls().values().any(|a| **a == acl) || added.contains(&acl);
            if !present {
                records.push(MetadataRecord::AccessControlEntry(
                    acl.to_record(Uuid::new_v4()),
                ));
                added.push(acl);
            }
            AclCreationResult::default().with_error_message(None)
        })
        .collect();
    (records, results)
}

/// Kafka's `AclControlManager.deleteAcls` against `image`: the records to
/// propose and, per filter, the ACLs it removes (an ACL two filters match
/// is removed once, listed under the first).
pub fn decide_delete(
    image: &MetadataImage,
    req: &DeleteAclsRequest,
) -> (Vec<MetadataRecord>, Vec<DeleteAclsFilterResult>) {
    let mut records = Vec::new();
    let mut removed: Vec<Uuid> = Vec::new();
    let results = req
        .filters
        .iter()
        .map(|f| {
            let filter = filter_of(f);
            if let Err(message) = filter.validate() {
                return DeleteAclsFilterResult::default()
                    .with_error_code(ErrorCode::INVALID_REQUEST.0)
                    .with_error_message(Some(str_bytes(message)));
            }
            let mut matching = Vec::new();
            for (id, acl) in image.acls() {
                if !filter.matches(acl) || removed.contains(id) {
                    continue;
                }
                removed.push(*id);
                records.push(MetadataRecord::RemoveAccessControlEntry(
                    RemoveAccessControlEntryRecord {
                        id: *id,
                        ..Default::default()
                    },
                ));
                matching.push(
                    DeleteAclsMatchingAcl::default()
                        .with_error_message(None)
                        .with_resource_type(acl.resource_type)
                        .with_resource_name(str_bytes(&acl.resource_name))
                        .with_pattern_type(acl.pattern_type)
                        .with_principal(str_bytes(&acl.principal))
                        .with_host(str_bytes(&acl.host))
                        .with_operation(acl.operation)
                        .with_permission_type(acl.permission_type),
                );
            }
            DeleteAclsFilterResult::default()
                .with_error_message(None)
                .with_matching_acls(matching)
        })
        .collect();
    (records, results)
}

pub fn create(ctx: &Ctx, req: CreateAclsRequest) -> Option<BytesMut> {
    let every = |code: ErrorCode, message: Option<String>| {
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code.0)
                    .with_error_message(message.clone().map(str_bytes))
            })
            .collect();
        ctx.respond(&CreateAclsResponse::default().with_results(results))
    };
    if !ctx.broker.config.authorizer_enabled {
        return every(ErrorCode::SECURITY_DISABLED, Some(CHANGE_MESSAGE.into()));
    }
    if !ctx.may_on_cluster(Operation::Alter) {
        return every(ErrorCode::CLUSTER_AUTHORIZATION_FAILED, None);
    }
    let b = &ctx.broker;
    if b.forwards_admin() {
        return match crate::controller_link::forward(b, &req, FORWARD_VERSION) {
            Ok(resp) => {
                // Wait until this node's image has every ACL created.
                let created: Vec<AclEntry> = req
                    .creations
                    .iter()
                    .zip(&resp.results)
                    .filter(|(_, r)| r.error_code == 0)
                    .map(|(c, _)| entry_of(c))
                    .collect();
                let seen = b.wait_applied(|b| {
                    let image = b.image();
                    created
                        .iter()
                        .all(|c| image.acls().values().any(|a| **a == *c))
                        .then_some(())
                });
                match seen {
                    Ok(()) => ctx.respond(&resp),
                    Err(e) => {
                        let (code, message) = errors::state_error(&e);
                        every(code, Some(message))
                    }
                }
            }
            Err(e) => {
                let (code, message) = errors::state_error(&e);
                every(code, Some(message))
            }
        };
    }
    let _admin = b.admin_lock();
    let (records, results) = decide_create(&b.image(), &req);
    if !records.is_empty() {
        if let Err(e) = b.propose(records) {
            let (code, message) = errors::state_error(&e);
            return every(code, Some(message));
        }
    }
    ctx.respond(&CreateAclsResponse::default().with_results(results))
}

pub fn delete(ctx: &Ctx, req: DeleteAclsRequest) -> Option<BytesMut> {
    let every = |code: ErrorCode, message: Option<String>| {
        let results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code.0)
                    .with_error_message(message.clone().map(str_bytes))
            })
            .collect();
        ctx.respond(&DeleteAclsResponse::default().with_filter_results(results))
    };
    if !ctx.broker.config.authorizer_enabled {
        return every(ErrorCode::SECURITY_DISABLED, Some(CHANGE_MESSAGE.into()));
    }
    if !ctx.may_on_cluster(Operation::Alter) {
        return every(ErrorCode::CLUSTER_AUTHORIZATION_FAILED, None);
    }
    let b = &ctx.broker;
    if b.forwards_admin() {
        return match crate::controller_link::forward(b, &req, FORWARD_VERSION) {
            Ok(resp) => {
                // Wait until this node's image no longer has what was removed.
                let gone: Vec<AclEntry> = resp
                    .filter_results
                    .iter()
                    .flat_map(|r| r.matching_acls.iter())
                    .map(|m| AclEntry {
                        resource_type: m.resource_type,
                        resource_name: m.resource_name.to_string(),
                        pattern_type: m.pattern_type,
                        principal: m.principal.to_string(),
                        host: m.host.to_string(),
                        operation: m.operation,
                        permission_type: m.permission_type,
                    })
                    .collect();
                let seen = b.wait_applied(|b| {
                    let image = b.image();
                    gone.iter()
                        .all(|g| !image.acls().values().any(|a| **a == *g))
                        .then_some(())
                });
                match seen {
                    Ok(()) => ctx.respond(&resp),
                    Err(e) => {
                        let (code, message) = errors::state_error(&e);
                        every(code, Some(message))
                    }
                }
            }
            Err(e) => {
                let (code, message) = errors::state_error(&e);
                every(code, Some(message))
            }
        };
    }
    let _admin = b.admin_lock();
    let (records, results) = decide_delete(&b.image(), &req);
    if !records.is_empty() {
        if let Err(e) = b.propose(records) {
            let (code, message) = errors::state_error(&e);
            return every(code, Some(message));
        }
    }
    ctx.respond(&DeleteAclsResponse::default().with_filter_results(results))
}
