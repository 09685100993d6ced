//! JoinGroup: versions 0..=9 (v4+: MEMBER_ID_REQUIRED round trip; v5+:
//! static membership, which the Java consumer needs; v7+ echoes protocol_type).
//! The response is held until the rebalance completes.

use std::ops::RangeInclusive;

use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use fjord_protocol::kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 0..=9;

pub fn handle(ctx: Ctx, req: JoinGroupRequest) -> Pending {
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let resp = JoinGroupResponse::default()
            .with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0)
            .with_generation_id(-1);
        return Pending::Ready(ctx.respond(&resp));
    };
    let v = ctx.api_version;
    let request = fjord_group::JoinRequest {
        group_id: req.group_id.0.to_string(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if v == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| fjord_group::Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: false,
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: "/unknown".to_string(),
    };
    let request = fjord_group::JoinRequest {
        require_known_member_id: v >= 4 && request.group_instance_id.is_none(),
        ..request
    };
    Pending::later(async move {
        let r = groups.join(request).await;
        let resp = JoinGroupResponse::default()
            .with_error_code(r.error.0)
            .with_generation_id(r.generation_id)
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(if v >= 7 {
                r.protocol_name.map(str_bytes)
            } else {
                // Before v7 the name is not nullable.
                Some(str_bytes(r.protocol_name.unwrap_or_default()))
            })
            .with_leader(str_bytes(r.leader))
            .with_skip_assignment(r.skip_assignment)
            .with_member_id(str_bytes(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(str_bytes))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            );
        ctx.respond(&resp)
    })
}
