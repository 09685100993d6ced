//! DescribeAcls, CreateAcls, DeleteAcls: versions 1..=3. Fjord has no
//! authorizer yet (the security issue), and Kafka without one answers these
//! APIs with SECURITY_DISABLED: DescribeAcls once for the request, CreateAcls
//! once per creation, DeleteAcls once per filter. Tools then print "no
//! authorizer" instead of UnsupportedVersion, and MirrorMaker 2's ACL sync
//! stops asking.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::create_acls_response::AclCreationResult;
use fjord_protocol::kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use fjord_protocol::kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 1..=3;

/// Kafka's messages, so that tools print the same line for either broker.
const DESCRIBE_MESSAGE: &str = "No Authorizer is configured on the broker";
const CHANGE_MESSAGE: &str = "No Authorizer is configured.";

pub fn describe(ctx: &Ctx, _req: DescribeAclsRequest) -> Option<BytesMut> {
    ctx.respond(
        &DescribeAclsResponse::default()
            .with_error_code(ErrorCode::SECURITY_DISABLED.0)
            .with_error_message(Some(str_bytes(DESCRIBE_MESSAGE))),
    )
}

pub fn create(ctx: &Ctx, req: CreateAclsRequest) -> Option<BytesMut> {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ErrorCode::SECURITY_DISABLED.0)
                .with_error_message(Some(str_bytes(CHANGE_MESSAGE)))
        })
        .collect();
    ctx.respond(&CreateAclsResponse::default().with_results(results))
}

pub fn delete(ctx: &Ctx, req: DeleteAclsRequest) -> Option<BytesMut> {
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ErrorCode::SECURITY_DISABLED.0)
                .with_error_message(Some(str_bytes(CHANGE_MESSAGE)))
        })
        .collect();
    ctx.respond(&DeleteAclsResponse::default().with_filter_results(results))
}
