//! Authorization of requests against the ACLs (issue 18), as Kafka's
//! `KafkaApis` does it with `authorizer.class.name` set to the
//! StandardAuthorizer. The rules themselves are
//! [`crate::security::authorizer`]; this module says which operation on
//! which resource each API needs.
//!
//! Two places check, both through [`Ctx`]:
//! - [`check`], in the dispatch layer before a handler runs, for the
//!   checks that concern the whole request (the group of a group API, the
//!   transactional id of a transactional API, the cluster: log dirs,
//!   reassignments, ElectLeaders, DescribeQuorum, UpdateFeatures, the SCRAM
//!   admin APIs; AddPartitionsToTxn's topics, as nothing is added when one
//!   is denied): a denied
//!   request gets its API's answer with the authorization error in every
//!   place the answer has one, and never reaches its handler.
//! - Handlers of multi-topic requests ask [`Ctx::may`] per topic
//!   (Produce WRITE, Fetch READ, Metadata/ListOffsets/OffsetForLeaderEpoch
//!   DESCRIBE, CreateTopics CREATE, DeleteTopics DELETE, OffsetCommit,
//!   OffsetDelete, TxnOffsetCommit and DescribeProducers READ,
//!   CreatePartitions ALTER, DeleteRecords DELETE, DescribeTopicPartitions
//!   DESCRIBE), answering TOPIC_AUTHORIZATION_FAILED for a topic denied and
//!   serving the others; Metadata and DescribeTopicPartitions leave
//!   unauthorized topics out of a list-all answer, so their names do not
//!   leak. DescribeTransactions checks DESCRIBE on each transactional id,
//!   ListTransactions lists only those the principal may DESCRIBE. The config APIs check
//!   each resource ([`config_resource_denied`]), DescribeGroups and
//!   DeleteGroups each group, ListGroups filters what it lists.
//!
//! No check is made without an authorizer, nor for a request from inside
//! the broker (`Ctx::principal` is `None`: an admin request another
//! broker forwarded after checking it). An API this table does not cover
//! yet is served only to principals allowed ALTER on the cluster (super
//! users), and closes the connection of any other: nothing is served
//! unchecked.

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use fjord_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use fjord_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use fjord_protocol::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult as ElectionPartitionResult, ReplicaElectionResult,
};
use fjord_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use fjord_protocol::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    AlterPartitionReassignmentsResponse, AlterReplicaLogDirsResponse,
    AlterUserScramCredentialsResponse, BrokerId, DescribeLogDirsResponse, DescribeQuorumResponse,
    DescribeUserScramCredentialsResponse, ElectLeadersResponse, EndTxnResponse,
    FindCoordinatorResponse, HeartbeatResponse, InitProducerIdResponse, JoinGroupResponse,
    LeaveGroupResponse, ListPartitionReassignmentsResponse, OffsetCommitResponse,
    OffsetDeleteResponse, OffsetFetchResponse, ProducerId, SyncGroupResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, UpdateFeaturesResponse,
};
use fjord_protocol::Request;

use super::Ctx;
use crate::security::authorizer::{
    Action, Authorizer, Operation, ResourceType, CLUSTER_NAME, PERMISSION_ALLOW, WILDCARD,
    WILDCARD_PRINCIPAL,
};

/// The operations Kafka reports in authorized-operations fields for a type of
/// resource (`AclEntry.supportedOperations` of Kafka 4.x).
pub fn supported_operations(resource_type: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// The value of an authorized-operations field the request did not ask for
/// (Kafka's `Int.MinValue`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// What the dispatch layer does with a request after [`check`].
pub enum Checked {
    /// Allowed (or checked per resource by its handler): dispatch it.
    Go(Request),
    /// Denied: send this answer instead.
    Denied(Option<BytesMut>),
    /// Denied, and the API has no checked answer yet: close the connection.
    Close,
}

impl Ctx {
    /// Whether requests of this context are checked against ACLs.
    pub fn checks_acls(&self) -> bool {
        self.broker.config.authorizer_enabled && self.principal.is_some()
    }

    fn host(&self) -> String {
        self.peer
            .map_or_else(|| WILDCARD.to_string(), |p| p.ip().to_string())
    }

    /// Whether this request's principal may do `operation` on resource
    /// `name` of type `resource_type` (always, without an authorizer).
    pub fn may(&self, resource_type: ResourceType, name: &str, operation: Operation) -> bool {
        let Some(principal) = self.principal.as_ref().filter(|_| self.checks_acls()) else {
            return true;
        };
        let image = self.broker.image();
        let authorizer = Authorizer {
            config: &self.broker.config.authorizer,
            acls: image.acls().values().map(|a| &**a),
        };
        authorizer.authorize(
            principal,
            &self.host(),
            Action {
                resource_type,
                name,
                operation,
            },
        )
    }

    /// [`Ctx::may`] on the cluster.
    pub fn may_on_cluster(&self, operation: Operation) -> bool {
        self.may(ResourceType::Cluster, CLUSTER_NAME, operation)
    }

    /// Kafka's `authorizedOperations`: the operations of
    /// [`supported_operations`] this principal may do on resource `name`
    /// (every one without an authorizer), as the bit field the
    /// `*_authorized_operations` fields carry (bit n: operation code n).
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        supported_operations(resource_type)
            .iter()
            .filter(|op| self.may(resource_type, name, **op))
            .fold(0, |bits, op| bits | (1 << (*op as i8)))
    }

    /// Whether some ALLOW ACL lets this principal do `operation` on some
    /// resource of `resource_type` (Kafka's `authorizeByResourceType`,
    /// used by InitProducerId without a transactional id: WRITE on any
    /// topic will do). Super users may; DENY ACLs are not weighed against
    /// it here (Kafka subtracts a DENY that covers every such ALLOW).
    pub fn may_on_some(&self, resource_type: ResourceType, operation: Operation) -> bool {
        let Some(principal) = self.principal.as_ref().filter(|_| self.checks_acls()) else {
            return true;
        };
        let config = &self.broker.config.authorizer;
        let who = principal.to_string();
        if config.super_users.contains(&who) {
            return true;
        }
        let host = self.host();
        let image = self.broker.image();
        let any = image.acls().values().any(|acl| {
            acl.resource_type == resource_type as i8
                && acl.permission_type == PERMISSION_ALLOW
                && (acl.principal == who || acl.principal == WILDCARD_PRINCIPAL)
                && (acl.host == WILDCARD || acl.host == host)
                && Operation::from_code(acl.operation)
                    .is_some_and(|op| op == Operation::All || op == operation)
        });
        // With no ACL on any resource of the type, the default applies.
        any || (config.allow_if_no_acl
            && !image
                .acls()
                .values()
                .any(|acl| acl.resource_type == resource_type as i8))
    }
}

/// Kafka's check of one config resource (DescribeConfigs, AlterConfigs,
/// IncrementalAlterConfigs): `operation` on the topic
/// (TOPIC_AUTHORIZATION_FAILED), on the group (GROUP_AUTHORIZATION_FAILED),
/// or on the cluster for broker, broker-logger and other resources
/// (CLUSTER_AUTHORIZATION_FAILED). `None`: allowed.
pub fn config_resource_denied(
    ctx: &Ctx,
    resource_type: i8,
    name: &str,
    operation: Operation,
) -> Option<(ErrorCode, &'static str)> {
    const TOPIC: i8 = 2;
    const GROUP: i8 = 32;
    let (allowed, denied) = match resource_type {
        TOPIC => (
            ctx.may(ResourceType::Topic, name, operation),
            (
                ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                "Topic authorization failed.",
            ),
        ),
        GROUP => (
            ctx.may(ResourceType::Group, name, operation),
            (
                ErrorCode::GROUP_AUTHORIZATION_FAILED,
                "Group authorization failed.",
            ),
        ),
        _ => (
            ctx.may_on_cluster(operation),
            (
                ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                "Cluster authorization failed.",
            ),
        ),
    };
    (!allowed).then_some(denied)
}

fn group(ctx: &Ctx, name: &str, operation: Operation) -> bool {
    ctx.may(ResourceType::Group, name, operation)
}

fn txn_id(ctx: &Ctx, name: &str) -> bool {
    ctx.may(ResourceType::TransactionalId, name, Operation::Write)
}

const GROUP_DENIED: i16 = ErrorCode::GROUP_AUTHORIZATION_FAILED.0;
const TXN_DENIED: i16 = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0;
const CLUSTER_DENIED: i16 = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0;

/// The whole-request checks of `request` (see the module comment).
pub fn check(ctx: &Ctx, request: Request) -> Checked {
    if !ctx.checks_acls() {
        return Checked::Go(request);
    }
    let denied = |answer: Option<BytesMut>| Checked::Denied(answer);
    // The cluster APIs: Kafka's operation on the cluster, and its answer
    // with CLUSTER_AUTHORIZATION_FAILED in every place.
    if let Some(operation) = cluster_operation(&request) {
        if !ctx.may_on_cluster(operation) {
            return denied(cluster_denied(ctx, &request));
        }
        return Checked::Go(request);
    }
    match &request {
        // Served to anyone; Metadata checks per topic.
        Request::ApiVersions(_)
        | Request::SaslHandshake(_)
        | Request::SaslAuthenticate(_)
        | Request::DescribeCluster(_)
        | Request::Metadata(_) => {}
        // Checked per topic by their handlers.
        Request::Produce(r) => {
            if let Some(id) = &r.transactional_id {
                if !txn_id(ctx, id.as_str()) {
                    return denied(produce_denied(ctx, r, TXN_DENIED));
                }
            }
        }
        Request::Fetch(r) => {
            let follower = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            if follower && !ctx.may_on_cluster(Operation::ClusterAction) {
                tracing::info!(principal = ?ctx.principal, "a follower's Fetch without CLUSTER_ACTION on the cluster: closing");
                return Checked::Close;
            }
        }
        Request::OffsetForLeaderEpoch(r) => {
            if r.replica_id.0 >= 0 && !ctx.may_on_cluster(Operation::ClusterAction) {
                return Checked::Close;
            }
        }
        Request::ListOffsets(_) | Request::DeleteTopics(_) => {}
        Request::CreateTopics(_) => {}
        // ACL changes need ALTER, DescribeAcls DESCRIBE on the cluster:
        // checked by their handlers, which answer each creation/filter.
        Request::DescribeAcls(_) | Request::CreateAcls(_) | Request::DeleteAcls(_) => {}
        // DESCRIBE_CONFIGS / ALTER_CONFIGS on the cluster, checked by their
        // handlers (`client_quotas`).
        Request::DescribeClientQuotas(_) | Request::AlterClientQuotas(_) => {}
        // Per resource in their handlers: DESCRIBE_CONFIGS / ALTER_CONFIGS
        // on the topic or the cluster (`config_resource_denied`); ListGroups
        // lists the groups the principal may DESCRIBE (all with DESCRIBE on
        // the cluster), DescribeGroups needs DESCRIBE and DeleteGroups DELETE
        // on each group.
        Request::DescribeConfigs(_)
        | Request::AlterConfigs(_)
        | Request::IncrementalAlterConfigs(_)
        | Request::ListGroups(_)
        | Request::DescribeGroups(_)
        | Request::DeleteGroups(_) => {}
        Request::JoinGroup(r) => {
            if !group(ctx, r.group_id.as_str(), Operation::Read) {
                return denied(
                    ctx.respond(
                        &JoinGroupResponse::default()
                            .with_error_code(GROUP_DENIED)
                            .with_generation_id(-1),
                    ),
                );
            }
        }
        Request::SyncGroup(r) => {
            if !group(ctx, r.group_id.as_str(), Operation::Read) {
                return denied(
                    ctx.respond(&SyncGroupResponse::default().with_error_code(GROUP_DENIED)),
                );
            }
        }
        Request::Heartbeat(r) => {
            if !group(ctx, r.group_id.as_str(), Operation::Read) {
                return denied(
                    ctx.respond(&HeartbeatResponse::default().with_error_code(GROUP_DENIED)),
                );
            }
        }
        Request::LeaveGroup(r) => {
            if !group(ctx, r.group_id.as_str(), Operation::Read) {
                return denied(
                    ctx.respond(&LeaveGroupResponse::default().with_error_code(GROUP_DENIED)),
                );
            }
        }
        // The group here; each topic (READ) in the handler.
        Request::OffsetCommit(r) => {
            if !group(ctx, r.group_id.as_str(), Operation::Read) {
                let topics = r
                    .topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(GROUP_DENIED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                return denied(ctx.respond(&OffsetCommitResponse::default().with_topics(topics)));
            }
        }
        // DESCRIBE on each group asked (one denied denies the request).
        Request::OffsetFetch(r) => {
            if ctx.api_version < 8 {
                if !group(ctx, r.group_id.as_str(), Operation::Describe) {
                    return denied(
                        ctx.respond(&OffsetFetchResponse::default().with_error_code(GROUP_DENIED)),
                    );
                }
            } else if r
                .groups
                .iter()
                .any(|g| !group(ctx, g.group_id.as_str(), Operation::Describe))
            {
                let groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(GROUP_DENIED)
                    })
                    .collect();
                return denied(ctx.respond(&OffsetFetchResponse::default().with_groups(groups)));
            }
        }
        Request::FindCoordinator(r) => {
            let keys: Vec<&str> = if ctx.api_version < 4 {
                vec![r.key.as_str()]
            } else {
                r.coordinator_keys.iter().map(|k| k.as_str()).collect()
            };
            let (resource, code) = if r.key_type == 1 {
                (ResourceType::TransactionalId, TXN_DENIED)
            } else {
                (ResourceType::Group, GROUP_DENIED)
            };
            if keys
                .iter()
                .any(|k| !ctx.may(resource, k, Operation::Describe))
            {
                let resp = if ctx.api_version < 4 {
                    FindCoordinatorResponse::default()
                        .with_error_code(code)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                } else {
                    FindCoordinatorResponse::default().with_coordinators(
                        keys.iter()
                            .map(|k| {
                                Coordinator::default()
                                    .with_key(super::str_bytes(*k))
                                    .with_node_id(BrokerId(-1))
                                    .with_port(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                };
                return denied(ctx.respond(&resp));
            }
        }
        Request::InitProducerId(r) => {
            let (ok, code) = match &r.transactional_id {
                Some(id) => (txn_id(ctx, id.as_str()), TXN_DENIED),
                None => (
                    ctx.may_on_cluster(Operation::IdempotentWrite)
                        || ctx.may_on_some(ResourceType::Topic, Operation::Write),
                    CLUSTER_DENIED,
                ),
            };
            if !ok {
                return denied(
                    ctx.respond(
                        &InitProducerIdResponse::default()
                            .with_error_code(code)
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1),
                    ),
                );
            }
        }
        Request::AddOffsetsToTxn(r) => {
            let code = if !txn_id(ctx, r.transactional_id.as_str()) {
                TXN_DENIED
            } else if !group(ctx, r.group_id.as_str(), Operation::Read) {
                GROUP_DENIED
            } else {
                0
            };
            if code != 0 {
                return denied(
                    ctx.respond(&AddOffsetsToTxnResponse::default().with_error_code(code)),
                );
            }
        }
        Request::EndTxn(r) => {
            if !txn_id(ctx, r.transactional_id.as_str()) {
                return denied(ctx.respond(&EndTxnResponse::default().with_error_code(TXN_DENIED)));
            }
        }
        // Kafka: CLUSTER_ACTION on the cluster, or every partition answered
        // CLUSTER_AUTHORIZATION_FAILED.
        Request::WriteTxnMarkers(r) => {
            if !ctx.may_on_cluster(Operation::ClusterAction) {
                let answer = super::write_txn_markers::error_response(
                    r,
                    ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                );
                return denied(ctx.respond(&answer));
            }
        }
        // Checked per resource by their handlers: CreatePartitions ALTER and
        // DeleteRecords DELETE on each topic, DescribeProducers READ and
        // DescribeTopicPartitions DESCRIBE on each topic (a list-all request
        // leaves the others out), DescribeTransactions DESCRIBE on each
        // transactional id (and lists only the partitions of topics the
        // principal may DESCRIBE), ListTransactions lists only the
        // transactional ids the principal may DESCRIBE.
        Request::CreatePartitions(_)
        | Request::DeleteRecords(_)
        | Request::DescribeProducers(_)
        | Request::DescribeTopicPartitions(_)
        | Request::DescribeTransactions(_)
        | Request::ListTransactions(_) => {}
        // The group here (DELETE), each topic (READ) in the handler.
        Request::OffsetDelete(r) => {
            if !group(ctx, r.group_id.as_str(), Operation::Delete) {
                return denied(
                    ctx.respond(&OffsetDeleteResponse::default().with_error_code(GROUP_DENIED)),
                );
            }
        }
        // The transactional id (WRITE), then the group (READ), here; each
        // topic (READ) in the handler.
        Request::TxnOffsetCommit(r) => {
            let code = if !txn_id(ctx, r.transactional_id.as_str()) {
                TXN_DENIED
            } else if !group(ctx, r.group_id.as_str(), Operation::Read) {
                GROUP_DENIED
            } else {
                0
            };
            if code != 0 {
                return denied(ctx.respond(&txn_offset_commit_denied(r, code)));
            }
        }
        Request::AddPartitionsToTxn(r) => {
            if let Some(answer) = add_partitions_denied(ctx, r) {
                return denied(ctx.respond(&answer));
            }
        }
        // Not covered yet: super users (ALTER on the cluster) only.
        _ => {
            if !ctx.may_on_cluster(Operation::Alter) {
                tracing::info!(
                    api_key = ctx.api_key,
                    principal = ?ctx.principal,
                    "an API without per-resource ACL checks yet is served to principals \
                     with ALTER on the cluster only: closing"
                );
                return Checked::Close;
            }
        }
    }
    Checked::Go(request)
}

/// The operation on the cluster a cluster API needs (`None`: not one).
fn cluster_operation(request: &Request) -> Option<Operation> {
    match request {
        Request::DescribeLogDirs(_)
        | Request::ListPartitionReassignments(_)
        | Request::DescribeQuorum(_)
        | Request::DescribeUserScramCredentials(_) => Some(Operation::Describe),
        Request::AlterReplicaLogDirs(_)
        | Request::ElectLeaders(_)
        | Request::AlterPartitionReassignments(_)
        | Request::UpdateFeatures(_)
        | Request::AlterUserScramCredentials(_) => Some(Operation::Alter),
        _ => None,
    }
}

/// A cluster API's answer when its operation is denied: Kafka's
/// `getErrorResponse`, CLUSTER_AUTHORIZATION_FAILED at the top level and
/// for every item it lists.
fn cluster_denied(ctx: &Ctx, request: &Request) -> Option<BytesMut> {
    let c = CLUSTER_DENIED;
    let message = cluster_denied_message;
    match request {
        Request::DescribeLogDirs(_) => super::describe_log_dirs::respond(
            ctx,
            DescribeLogDirsResponse::default().with_error_code(c),
        ),
        Request::AlterReplicaLogDirs(r) => {
            let results = r.dirs.iter().flat_map(|d| d.topics.iter()).map(|t| {
                let partitions = t.partitions.iter().map(|&p| {
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(c)
                });
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(t.name.clone())
                    .with_partitions(partitions.collect())
            });
            ctx.respond(&AlterReplicaLogDirsResponse::default().with_results(results.collect()))
        }
        Request::ElectLeaders(r) => {
            let results = r.topic_partitions.iter().flatten().map(|t| {
                let partitions = t.partitions.iter().map(|&p| {
                    ElectionPartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(c)
                        .with_error_message(message())
                });
                ReplicaElectionResult::default()
                    .with_topic(t.topic.clone())
                    .with_partition_result(partitions.collect())
            });
            ctx.respond(
                &ElectLeadersResponse::default()
                    .with_error_code(c)
                    .with_replica_election_results(results.collect()),
            )
        }
        Request::DescribeQuorum(_) => ctx.respond(
            &DescribeQuorumResponse::default()
                .with_error_code(c)
                .with_error_message(message()),
        ),
        Request::AlterPartitionReassignments(r) => {
            let responses = r.topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c)
                        .with_error_message(message())
                });
                ReassignableTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions.collect())
            });
            ctx.respond(
                &AlterPartitionReassignmentsResponse::default()
                    .with_error_code(c)
                    .with_error_message(message())
                    .with_responses(responses.collect()),
            )
        }
        Request::ListPartitionReassignments(r) => {
            let topics = r.topics.iter().flatten().map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| OngoingPartitionReassignment::default().with_partition_index(p));
                OngoingTopicReassignment::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions.collect())
            });
            ctx.respond(
                &ListPartitionReassignmentsResponse::default()
                    .with_error_code(c)
                    .with_error_message(message())
                    .with_topics(topics.collect()),
            )
        }
        Request::UpdateFeatures(_) => ctx.respond(
            &UpdateFeaturesResponse::default()
                .with_error_code(c)
                .with_error_message(message()),
        ),
        Request::DescribeUserScramCredentials(r) => {
            let results = r.users.iter().flatten().map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(u.name.clone())
                    .with_error_code(c)
                    .with_error_message(message())
            });
            ctx.respond(
                &DescribeUserScramCredentialsResponse::default()
                    .with_error_code(c)
                    .with_error_message(message())
                    .with_results(results.collect()),
            )
        }
        Request::AlterUserScramCredentials(r) => {
            // Each user once, in name order (Kafka's error response).
            let users: std::collections::BTreeSet<&str> = r
                .deletions
                .iter()
                .map(|d| d.name.as_str())
                .chain(r.upsertions.iter().map(|u| u.name.as_str()))
                .collect();
            let results = users.into_iter().map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(super::str_bytes(u))
                    .with_error_code(c)
                    .with_error_message(message())
            });
            ctx.respond(
                &AlterUserScramCredentialsResponse::default().with_results(results.collect()),
            )
        }
        _ => None,
    }
}

/// Kafka's message of CLUSTER_AUTHORIZATION_FAILED.
fn cluster_denied_message() -> Option<fjord_protocol::kafka_protocol::protocol::StrBytes> {
    Some(super::str_bytes("Cluster authorization failed."))
}

/// TxnOffsetCommit denied as a whole: every partition gets `code`.
fn txn_offset_commit_denied(r: &TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    let topics = r
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// Kafka's checks of AddPartitionsToTxn: a client's (v0..=3) needs WRITE on
/// the transactional id (else every partition is
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and WRITE on each topic (else the
/// topics denied are TOPIC_AUTHORIZATION_FAILED, partitions of unknown
/// topics UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED:
/// nothing is added); a broker's (v4+, KIP-890 verification) CLUSTER_ACTION
/// on the cluster. `None`: allowed.
fn add_partitions_denied(
    ctx: &Ctx,
    r: &AddPartitionsToTxnRequest,
) -> Option<AddPartitionsToTxnResponse> {
    if ctx.api_version >= 4 {
        return (!ctx.may_on_cluster(Operation::ClusterAction))
            .then(|| AddPartitionsToTxnResponse::default().with_error_code(CLUSTER_DENIED));
    }
    let whole = !txn_id(ctx, r.v3_and_below_transactional_id.as_str());
    let denied_topics: Vec<&str> = r
        .v3_and_below_topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !ctx.may(ResourceType::Topic, name, Operation::Write))
        .collect();
    if !whole && denied_topics.is_empty() {
        return None;
    }
    let code = |name: &str, p: i32| {
        if whole {
            TXN_DENIED
        } else if denied_topics.contains(&name) {
            ErrorCode::TOPIC_AUTHORIZATION_FAILED.0
        } else if ctx
            .broker
            .topic(name)
            .is_some_and(|t| p >= 0 && p < t.partition_count())
        {
            ErrorCode::OPERATION_NOT_ATTEMPTED.0
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0
        }
    };
    let results = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code(t.name.as_str(), p))
                        })
                        .collect(),
                )
        })
        .collect();
    Some(AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results))
}

/// Produce denied as a whole: every partition gets `code`.
fn produce_denied(
    ctx: &Ctx,
    r: &fjord_protocol::kafka_protocol::messages::ProduceRequest,
    code: i16,
) -> Option<BytesMut> {
    use fjord_protocol::kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use fjord_protocol::kafka_protocol::messages::ProduceResponse;
    if r.acks == 0 {
        return None;
    }
    let responses = r
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(code)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    ctx.respond(&ProduceResponse::default().with_responses(responses))
}
