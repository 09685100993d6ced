//! DescribeGroups: versions 0..=6. An unknown group (the empty id included)
//! is described as Dead with no error before v6 and with GROUP_ID_NOT_FOUND
//! ("Group <id> not found.") from v6 on (KIP-1043), as Kafka does.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use fjord_protocol::kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::authz::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=6;

pub fn handle(ctx: &Ctx, req: DescribeGroupsRequest) -> Option<BytesMut> {
    let ids: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let groups = ctx.broker.groups.get();
    let mut out = Vec::with_capacity(req.groups.len());
    for (gid, id) in ids.iter().zip(req.groups) {
        let may = ctx.may(
            crate::security::authorizer::ResourceType::Group,
            gid,
            crate::security::authorizer::Operation::Describe,
        );
        let described = match groups {
            _ if !may => Err(ErrorCode::GROUP_AUTHORIZATION_FAILED),
            None => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
            Some(g) => g
                .read(gid, |c| c.describe(std::slice::from_ref(gid)))
                .and_then(|d| d.into_iter().next().ok_or(ErrorCode::UNKNOWN_SERVER_ERROR)),
        };
        let group = match &described {
            Err(e) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(e.0),
            // A group that does not exist: the coordinator keeps no Dead groups.
            Ok(d) if d.state == fjord_group::GroupState::Dead => {
                let unknown = DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(str_bytes(d.state.as_str()));
                if ctx.api_version >= 6 {
                    unknown
                        .with_error_code(ErrorCode::GROUP_ID_NOT_FOUND.0)
                        .with_error_message(Some(str_bytes(format!("Group {gid} not found."))))
                } else {
                    unknown
                }
            }
            Ok(d) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(d.error.0)
                .with_group_state(str_bytes(d.state.as_str()))
                .with_protocol_type(str_bytes(d.protocol_type.clone()))
                .with_protocol_data(str_bytes(d.protocol.clone()))
                .with_members(
                    d.members
                        .iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id.clone()))
                                .with_group_instance_id(m.group_instance_id.clone().map(str_bytes))
                                .with_client_id(str_bytes(m.client_id.clone()))
                                .with_client_host(str_bytes(m.client_host.clone()))
                                .with_member_metadata(m.metadata.clone())
                                .with_member_assignment(m.assignment.clone())
                        })
                        .collect(),
                ),
        };
        // v3+ asks for the principal's operations on each group described
        // without an error (Kafka's rule).
        let operations = if ctx.api_version >= 3
            && req.include_authorized_operations
            && group.error_code == ErrorCode::NONE.0
        {
            ctx.authorized_operations(crate::security::authorizer::ResourceType::Group, gid)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
        out.push(group.with_authorized_operations(operations));
    }
    ctx.respond(&DescribeGroupsResponse::default().with_groups(out))
}
