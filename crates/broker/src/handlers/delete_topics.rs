//! DeleteTopics: versions 1..=6 (v6 may name topics by id).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use fjord_protocol::kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};

use super::{str_bytes, Ctx};
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 1..=6;

pub fn handle(ctx: &Ctx, req: DeleteTopicsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    // (name if given, id if given)
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.api_version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => broker.topic_by_id(id).map(|t| t.name.clone()),
        };
        let base = DeletableTopicResult::default()
            .with_name(
                resolved
                    .clone()
                    .or(name.clone())
                    .map(|n| TopicName(str_bytes(n))),
            )
            .with_topic_id(id);
        // Kafka explains an unknown id too.
        let Some(n) = resolved else {
            responses.push(
                base.with_error_code(ErrorCode::UNKNOWN_TOPIC_ID.0)
                    .with_error_message(Some(str_bytes(format!("Topic id {id} not found.")))),
            );
            continue;
        };
        // DELETE on the topic.
        if !ctx.may(ResourceType::Topic, &n, Operation::Delete) {
            responses.push(
                base.with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0)
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        responses.push(match broker.delete_topic(&n) {
            Ok(tid) => base.with_topic_id(tid),
            Err(e) => {
                let (code, msg) = errors::state_error(&e);
                base.with_error_code(code.0)
                    .with_error_message(Some(str_bytes(msg)))
            }
        });
    }
    ctx.respond(&DeleteTopicsResponse::default().with_responses(responses))
}
