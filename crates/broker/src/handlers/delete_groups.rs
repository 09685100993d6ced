//! DeleteGroups: versions 0..=2. Only empty groups are deleted (else NON_EMPTY_GROUP).

use std::ops::RangeInclusive;

use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use fjord_protocol::kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, GroupId,
};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

pub fn handle(ctx: Ctx, req: DeleteGroupsRequest) -> Pending {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let results = ids
            .into_iter()
            .map(|id| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0)
            })
            .collect();
        return Pending::Ready(ctx.respond(&DeleteGroupsResponse::default().with_results(results)));
    };
    Pending::later(async move {
        let r = groups.call(|c, now, out| c.delete(&ids, now, out)).await;
        let results = r
            .into_iter()
            .map(|(id, e)| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_error_code(e.0)
            })
            .collect();
        ctx.respond(&DeleteGroupsResponse::default().with_results(results))
    })
}
