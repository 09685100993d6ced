//! ListGroups: versions 0..=5 (v4 filters by state, v5 by type). Lists every
//! shard's groups; they are all classic groups, so a type filter that does
//! not name "classic" lists none.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use fjord_protocol::kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=5;

pub fn handle(ctx: &Ctx, req: ListGroupsRequest) -> Option<BytesMut> {
    let Some(groups) = ctx.broker.groups.get() else {
        return ctx.respond(
            &ListGroupsResponse::default().with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0),
        );
    };
    // A state name we do not know matches no group (Kafka does the same).
    let states: Vec<Option<fjord_group::GroupState>> = req
        .states_filter
        .iter()
        .map(|s| fjord_group::GroupState::parse(s.as_str()))
        .collect();
    let known: Vec<fjord_group::GroupState> = states.iter().flatten().copied().collect();
    let classic_wanted = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"));
    let mut listed = Vec::new();
    if classic_wanted && (states.is_empty() || !known.is_empty()) {
        for shard in groups.read_all(|c| c.list(&known, &[])) {
            match shard {
                Ok(l) => listed.extend(l),
                // As Kafka: a shard this node does not coordinate (here: one
                // that failed to load) lists nothing; one still loading
                // makes the whole answer COORDINATOR_LOAD_IN_PROGRESS.
                Err(ErrorCode::NOT_COORDINATOR) => {}
                Err(e) => {
                    return ctx.respond(&ListGroupsResponse::default().with_error_code(e.0));
                }
            }
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        // Kafka lists every group to DESCRIBE on the cluster, else the
        // groups the principal may DESCRIBE.
        if ctx.checks_acls()
            && !ctx.may_on_cluster(crate::security::authorizer::Operation::Describe)
        {
            listed.retain(|g| {
                ctx.may(
                    crate::security::authorizer::ResourceType::Group,
                    &g.group_id,
                    crate::security::authorizer::Operation::Describe,
                )
            });
        }
    }
    let resp = ListGroupsResponse::default().with_groups(
        listed
            .into_iter()
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(g.group_id)))
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_group_state(str_bytes(g.state.as_str()))
                    .with_group_type(str_bytes("classic"))
            })
            .collect(),
    );
    ctx.respond(&resp)
}
