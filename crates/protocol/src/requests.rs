//! Bounds-checked decoders for the request bodies we serve, producing the
//! `kafka_protocol::messages` request structs.
//!
//! Each decoder mirrors the field layout of the message schema for every
//! version kafka-protocol 0.18 knows (`<T as Message>::VERSIONS`), reading
//! with [`Reader`]'s checked primitives. Fields absent from a version keep the
//! struct's `Default` value. `flexible` versions use compact strings, arrays
//! and bytes, and end every struct with a tagged-field section.

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message};

use crate::frame::EncodeError;
use crate::reader::{DecodeError, Reader};

mod admin;
mod core;
mod group;

/// Versions of one API that [`decode_request`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
    /// First flexible (header v2, compact encodings) version.
    pub first_flexible_version: i16,
}

macro_rules! apis {
    ($( $variant:ident($ty:ident) = $key:ident, flexible >= $flex:literal, $decode:path; )*) => {
        /// A decoded request body.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $( $variant($ty), )*
        }

        impl Request {
            /// The api key of this request.
            pub fn api_key(&self) -> i16 {
                match self {
                    $( Request::$variant(_) => ApiKey::$key as i16, )*
                }
            }

            /// Encodes the body with kafka-protocol's encoder (for clients,
            /// tests and tools; the broker never needs it).
            pub fn encode(&self, version: i16, out: &mut BytesMut) -> Result<(), EncodeError> {
                let result = match self {
                    $( Request::$variant(m) => m.encode(
                        out,
                        same_layout_version(ApiKey::$key, <$ty as Message>::VERSIONS.max, version),
                    ), )*
                };
                result.map_err(|e| EncodeError::Body { version, message: e.to_string() })
            }
        }

        /// Every API [`decode_request`] understands, with its version range
        /// (kafka-protocol 0.18's range for the message, extended by
        /// [`LAYOUT_ALIASES`]).
        pub const SUPPORTED_APIS: &[ApiSupport] = &[
            $( ApiSupport {
                api_key: ApiKey::$key as i16,
                min_version: <$ty as Message>::VERSIONS.min,
                max_version: max_version(ApiKey::$key, <$ty as Message>::VERSIONS.max),
                first_flexible_version: $flex,
            }, )*
        ];

        /// Decodes the body of a request (everything after the request
        /// header). Bytes left after the body are ignored, as Apache Kafka
        /// ignores them: librdkafka 2.16's admin client sends Metadata v12
        /// requests with three extra bytes. They stay in `body` for the caller
        /// to inspect (`Reader::remaining`).
        pub fn decode_request(
            api_key: i16,
            api_version: i16,
            body: &mut Reader,
        ) -> Result<Request, DecodeError> {
            $(
                if api_key == ApiKey::$key as i16 {
                    let range = <$ty as Message>::VERSIONS;
                    let max = max_version(ApiKey::$key, range.max);
                    if api_version < range.min || api_version > max {
                        return Err(DecodeError::UnsupportedVersion {
                            api_key,
                            api_version,
                            min: range.min,
                            max,
                        });
                    }
                    let v = Version { v: api_version, flexible: api_version >= $flex };
                    let decoded = $decode(body, v)?;
                    return Ok(Request::$variant(decoded));
                }
            )*
            Err(DecodeError::UnsupportedApi { api_key })
        }
    };
}

/// Versions newer than kafka-protocol 0.18 knows whose request and response
/// layouts equal the newest version it knows (only the meaning of values
/// changed): `(api, newest version we decode)`. ListOffsets v11 only allows
/// a new timestamp value (-6, earliest pending upload).
/// DescribeLogDirs v5's request equals v4 (its response adds `is_cordoned`;
/// the broker's handler encodes that one itself).
pub(crate) const LAYOUT_ALIASES: &[(ApiKey, i16)] =
    &[(ApiKey::ListOffsets, 11), (ApiKey::DescribeLogDirs, 5)];

/// The newest version we decode of `key`, given kafka-protocol's newest.
const fn max_version(key: ApiKey, known_max: i16) -> i16 {
    let mut i = 0;
    while i < LAYOUT_ALIASES.len() {
        if LAYOUT_ALIASES[i].0 as i16 == key as i16 && LAYOUT_ALIASES[i].1 > known_max {
            return LAYOUT_ALIASES[i].1;
        }
        i += 1;
    }
    known_max
}

/// The version kafka-protocol should encode or decode for `version` of
/// `key`: an alias of [`LAYOUT_ALIASES`] maps to the newest version it knows
/// (same bytes); every other version is itself.
pub(crate) fn same_layout_version(key: ApiKey, known_max: i16, version: i16) -> i16 {
    if version > known_max && version <= max_version(key, known_max) {
        known_max
    } else {
        version
    }
}

/// The version being decoded and whether it is flexible.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Version {
    pub v: i16,
    pub flexible: bool,
}

apis! {
    ApiVersions(ApiVersionsRequest) = ApiVersions, flexible >= 3, core::api_versions;
    Metadata(MetadataRequest) = Metadata, flexible >= 9, core::metadata;
    Produce(ProduceRequest) = Produce, flexible >= 9, core::produce;
    Fetch(FetchRequest) = Fetch, flexible >= 12, core::fetch;
    ListOffsets(ListOffsetsRequest) = ListOffsets, flexible >= 6, core::list_offsets;
    CreateTopics(CreateTopicsRequest) = CreateTopics, flexible >= 5, admin::create_topics;
    DeleteTopics(DeleteTopicsRequest) = DeleteTopics, flexible >= 4, admin::delete_topics;
    CreatePartitions(CreatePartitionsRequest) = CreatePartitions, flexible >= 2, admin::create_partitions;
    DeleteRecords(DeleteRecordsRequest) = DeleteRecords, flexible >= 2, admin::delete_records;
    DescribeCluster(DescribeClusterRequest) = DescribeCluster, flexible >= 0, admin::describe_cluster;
    DescribeConfigs(DescribeConfigsRequest) = DescribeConfigs, flexible >= 4, admin::describe_configs;
    AlterConfigs(AlterConfigsRequest) = AlterConfigs, flexible >= 2, admin::alter_configs;
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest) = IncrementalAlterConfigs, flexible >= 1, admin::incremental_alter_configs;
    DescribeLogDirs(DescribeLogDirsRequest) = DescribeLogDirs, flexible >= 2, admin::describe_log_dirs;
    AlterReplicaLogDirs(AlterReplicaLogDirsRequest) = AlterReplicaLogDirs, flexible >= 2, admin::alter_replica_log_dirs;
    ElectLeaders(ElectLeadersRequest) = ElectLeaders, flexible >= 2, admin::elect_leaders;
    DescribeQuorum(DescribeQuorumRequest) = DescribeQuorum, flexible >= 0, admin::describe_quorum;
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest) = AlterPartitionReassignments, flexible >= 0, admin::alter_partition_reassignments;
    ListPartitionReassignments(ListPartitionReassignmentsRequest) = ListPartitionReassignments, flexible >= 0, admin::list_partition_reassignments;
    DescribeTopicPartitions(DescribeTopicPartitionsRequest) = DescribeTopicPartitions, flexible >= 0, admin::describe_topic_partitions;
    ListConfigResources(ListConfigResourcesRequest) = ListConfigResources, flexible >= 0, admin::list_config_resources;
    InitProducerId(InitProducerIdRequest) = InitProducerId, flexible >= 2, group::init_producer_id;
    FindCoordinator(FindCoordinatorRequest) = FindCoordinator, flexible >= 3, group::find_coordinator;
    JoinGroup(JoinGroupRequest) = JoinGroup, flexible >= 6, group::join_group;
    SyncGroup(SyncGroupRequest) = SyncGroup, flexible >= 4, group::sync_group;
    Heartbeat(HeartbeatRequest) = Heartbeat, flexible >= 4, group::heartbeat;
    LeaveGroup(LeaveGroupRequest) = LeaveGroup, flexible >= 4, group::leave_group;
    OffsetCommit(OffsetCommitRequest) = OffsetCommit, flexible >= 8, group::offset_commit;
    OffsetFetch(OffsetFetchRequest) = OffsetFetch, flexible >= 6, group::offset_fetch;
    ListGroups(ListGroupsRequest) = ListGroups, flexible >= 3, group::list_groups;
    DescribeGroups(DescribeGroupsRequest) = DescribeGroups, flexible >= 5, group::describe_groups;
    DeleteGroups(DeleteGroupsRequest) = DeleteGroups, flexible >= 2, group::delete_groups;
    OffsetDelete(OffsetDeleteRequest) = OffsetDelete, flexible >= 32767, group::offset_delete;
}
