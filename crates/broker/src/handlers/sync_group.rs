//! SyncGroup: versions 0..=5 (v5 echoes protocol_type and protocol_name).
//! Followers are held until the leader sends the assignments.

use std::ops::RangeInclusive;

use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 0..=5;

pub fn handle(ctx: Ctx, req: SyncGroupRequest) -> Pending {
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let resp =
            SyncGroupResponse::default().with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0);
        return Pending::Ready(ctx.respond(&resp));
    };
    let request = fjord_group::SyncRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    Pending::later(async move {
        let r = groups.sync(request).await;
        let resp = SyncGroupResponse::default()
            .with_error_code(r.error.0)
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes))
            .with_assignment(r.assignment);
        ctx.respond(&resp)
    })
}
