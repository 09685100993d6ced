//! LeaveGroup: versions 0..=5 (v3+ batches members and static members leave
//! by instance id; v0-v2 carry one member id and a single error code).

use std::ops::RangeInclusive;

use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use fjord_protocol::kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 0..=5;

pub fn handle(ctx: Ctx, req: LeaveGroupRequest) -> Pending {
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let resp =
            LeaveGroupResponse::default().with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0);
        return Pending::Ready(ctx.respond(&resp));
    };
    let v = ctx.api_version;
    let members: Vec<fjord_group::LeaveMember> = if v < 3 {
        vec![fjord_group::LeaveMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    } else {
        req.members
            .into_iter()
            .map(|m| fjord_group::LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
            })
            .collect()
    };
    let group_id = req.group_id.0.to_string();
    let key = group_id.clone();
    let call = groups.call(&key, move |c, now, out| {
        c.leave(&group_id, members, now, out)
    });
    Pending::later(async move {
        let r = match call.await {
            Ok(r) => r,
            Err(e) => {
                return ctx.respond(&LeaveGroupResponse::default().with_error_code(e.0));
            }
        };
        let resp = if v < 3 {
            let error = if r.error.is_none() {
                r.members.first().map_or(ErrorCode::NONE, |m| m.error)
            } else {
                r.error
            };
            LeaveGroupResponse::default().with_error_code(error.0)
        } else {
            LeaveGroupResponse::default()
                .with_error_code(r.error.0)
                .with_members(
                    r.members
                        .into_iter()
                        .map(|m| {
                            MemberResponse::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                .with_error_code(m.error.0)
                        })
                        .collect(),
                )
        };
        ctx.respond(&resp)
    })
}
