//! DeleteGroups: versions 0..=2. Only empty groups are deleted (else NON_EMPTY_GROUP).

use std::collections::{BTreeMap, HashMap, VecDeque};
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
    // DELETE on each group (GROUP_AUTHORIZATION_FAILED for the others).
    let denied: std::collections::HashSet<String> = ids
        .iter()
        .filter(|id| {
            !ctx.may(
                crate::security::authorizer::ResourceType::Group,
                id,
                crate::security::authorizer::Operation::Delete,
            )
        })
        .cloned()
        .collect();
    // Each shard deletes its own groups; the answer keeps the request's order.
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for id in ids.iter().filter(|id| !denied.contains(*id)) {
        by_shard
            .entry(groups.partition_for(id))
            .or_default()
            .push(id.clone());
    }
    let calls: Vec<_> = by_shard
        .into_values()
        .map(|shard_ids| {
            let key = shard_ids.first().cloned().unwrap_or_default();
            let call = groups.call(&key, move |c, now, out| c.delete(&shard_ids, now, out));
            (key, call)
        })
        .collect();
    Pending::later(async move {
        // Per group id, its answers in request order (an id may repeat).
        let mut decided: HashMap<String, VecDeque<ErrorCode>> = HashMap::new();
        for (key, call) in calls {
            let answers: Vec<(String, ErrorCode)> = match call.await {
                Ok(r) => r,
                Err(e) => {
                    let shard = groups.partition_for(&key);
                    ids.iter()
                        .filter(|id| groups.partition_for(id) == shard)
                        .map(|id| (id.clone(), e))
                        .collect()
                }
            };
            for (id, e) in answers {
                decided.entry(id).or_default().push_back(e);
            }
        }
        let results = ids
            .iter()
            .map(|id| {
                let e = if denied.contains(id) {
                    ErrorCode::GROUP_AUTHORIZATION_FAILED
                } else {
                    decided
                        .get_mut(id)
                        .and_then(|q| q.pop_front())
                        .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR)
                };
                DeletableGroupResult::default()
                    .with_group_id(GroupId(str_bytes(id.clone())))
                    .with_error_code(e.0)
            })
            .collect();
        ctx.respond(&DeleteGroupsResponse::default().with_results(results))
    })
}
