//! Heartbeat: versions 0..=4. While the group's shard is loading the answer
//! is NONE, as from Kafka (the member keeps its place; it rejoins if needed).

use std::ops::RangeInclusive;

use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 0..=4;

pub fn handle(ctx: Ctx, req: HeartbeatRequest) -> Pending {
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let resp =
            HeartbeatResponse::default().with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0);
        return Pending::Ready(ctx.respond(&resp));
    };
    let request = fjord_group::HeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
    };
    let group_id = request.group_id.clone();
    let call = groups.call(&group_id, |c, now, out| c.heartbeat(request, now, out));
    Pending::later(async move {
        let e = match call.await {
            Ok(e) => e,
            // The group is still loading: Kafka answers as if the heartbeat was fine.
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS) => ErrorCode::NONE,
            Err(e) => e,
        };
        ctx.respond(&HeartbeatResponse::default().with_error_code(e.0))
    })
}
