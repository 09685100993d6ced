//! Request dispatch: one module per API, each stating the versions it serves
//! in `VERSIONS`. ApiVersions advertises exactly those ranges.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_protocol::RequestHeader;
use fjord_protocol::{decode_request, encode_response, response_header_version, Reader, Request};
use tokio::task::JoinHandle;

use crate::quotas::{ConnectionThrottle, QuotaKind};
use crate::response::Response;
use crate::state::Broker;

pub mod acls;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_replica_log_dirs;
pub mod api_versions;
pub mod authz;
pub mod client_quotas;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;
pub mod transactions;
pub mod txn_offset_commit;
pub mod update_features;
pub mod write_txn_markers;

/// Everything a handler knows about the request besides its body.
pub struct Ctx {
    pub broker: Arc<Broker>,
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The client's address (None for requests not from a socket, in tests).
    pub peer: Option<SocketAddr>,
    /// The listener the request came in on (None: not from a socket, or
    /// the default PLAINTEXT listener); Metadata answers its endpoints.
    pub listener: Option<Arc<str>>,
    /// Who sent the request (`User:ANONYMOUS` on a listener without
    /// authentication); `None` for a request from inside the broker (an
    /// admin request another broker forwarded after checking it, a test),
    /// which is never checked against ACLs (see [`authz`]).
    pub principal: Option<crate::security::KafkaPrincipal>,
    /// The size of the request body (what a produce quota counts).
    pub request_bytes: usize,
    /// The connection's mute for quota throttling (None: not from a socket).
    pub throttle: Option<Arc<ConnectionThrottle>>,
}

/// Records `value` of `kind` against the client quota of `principal` and
/// `client_id`; over its quota, mutes the connection for the throttle time
/// and returns it (0 otherwise, and without any quota or principal).
pub fn record_quota(
    broker: &Broker,
    principal: Option<&crate::security::KafkaPrincipal>,
    client_id: Option<&str>,
    throttle: Option<&ConnectionThrottle>,
    kind: QuotaKind,
    value: f64,
) -> i32 {
    let quotas = &broker.quotas;
    if !quotas.enabled() {
        return 0;
    }
    let Some(principal) = principal else {
        return 0;
    };
    let now = u64::try_from(crate::state::now_ms()).unwrap_or(0);
    let ms = quotas.record(kind, &principal.name, client_id.unwrap_or(""), value, now);
    if let Some(t) = throttle {
        t.throttle(now, ms);
    }
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// Every error code a response carries, once per place (Kafka's
/// `errorCounts`), for the error metrics. The responses a client sends in
/// steady state (Produce, Metadata, ListOffsets, the group protocol) are
/// walked field by field; the rare ones (admin) are read from their `Debug`
/// text. Fetch counts its own (`fetch.rs`).
fn response_error_codes<R: Debug + 'static>(body: &R) -> Vec<i16> {
    use fjord_protocol::kafka_protocol::messages::{
        HeartbeatResponse, JoinGroupResponse, ListOffsetsResponse, MetadataResponse,
        OffsetCommitResponse, ProduceResponse, SyncGroupResponse,
    };
    let any = body as &dyn std::any::Any;
    let codes: Vec<i16> = if let Some(r) = any.downcast_ref::<ProduceResponse>() {
        r.responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect()
    } else if let Some(r) = any.downcast_ref::<MetadataResponse>() {
        r.topics
            .iter()
            .flat_map(|t| {
                std::iter::once(t.error_code).chain(t.partitions.iter().map(|p| p.error_code))
            })
            .collect()
    } else if let Some(r) = any.downcast_ref::<ListOffsetsResponse>() {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    } else if let Some(r) = any.downcast_ref::<OffsetCommitResponse>() {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    } else if let Some(r) = any.downcast_ref::<HeartbeatResponse>() {
        vec![r.error_code]
    } else if let Some(r) = any.downcast_ref::<JoinGroupResponse>() {
        vec![r.error_code]
    } else if let Some(r) = any.downcast_ref::<SyncGroupResponse>() {
        vec![r.error_code]
    } else {
        return error_codes_in_all(&format!("{body:?}"));
    };
    codes.into_iter().filter(|c| *c != 0).collect()
}

/// Every non-zero `error_code` value in a `Debug` text, repeats kept.
fn error_codes_in_all(debug: &str) -> Vec<i16> {
    debug
        .match_indices("error_code: ")
        .filter_map(|(at, key)| {
            let rest = &debug[at + key.len()..];
            let end = rest
                .find(|c: char| c != '-' && !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse::<i16>().ok()
        })
        .filter(|c| *c != 0)
        .collect()
}

/// The non-zero `error_code` values in a response's `Debug` text (only
/// computed when the debug log is on).
fn error_codes_in(debug: &str) -> Vec<i16> {
    let mut codes = error_codes_in_all(debug);
    codes.sort_unstable();
    codes.dedup();
    codes
}

impl Ctx {
    /// [`record_quota`] for this request.
    pub fn quota_throttle_ms(&self, kind: QuotaKind, value: f64) -> i32 {
        record_quota(
            &self.broker,
            self.principal.as_ref(),
            self.client_id.as_deref(),
            self.throttle.as_deref(),
            kind,
            value,
        )
    }

    /// Takes back `value` of `kind` that [`Ctx::quota_throttle_ms`]
    /// recorded for this request (a throttled Fetch sends nothing).
    pub fn quota_unrecord(&self, kind: QuotaKind, value: f64) {
        let Some(principal) = self.principal.as_ref() else {
            return;
        };
        let now = u64::try_from(crate::state::now_ms()).unwrap_or(0);
        self.broker.quotas.unrecord(
            kind,
            &principal.name,
            self.client_id.as_deref().unwrap_or(""),
            value,
            now,
        );
    }

    /// [`crate::quotas::ClientQuotas::max_in_window`] for this request's
    /// client, in bytes (`None`: no quota).
    pub fn quota_window_bytes(&self, kind: QuotaKind) -> Option<usize> {
        let quotas = &self.broker.quotas;
        if !quotas.enabled() {
            return None;
        }
        let principal = self.principal.as_ref()?;
        quotas
            .max_in_window(
                kind,
                &principal.name,
                self.client_id.as_deref().unwrap_or(""),
            )
            .map(|v| v.min(usize::MAX as f64) as usize)
    }

    /// The live brokers with the endpoints of this request's listener.
    pub fn live_brokers(&self) -> Vec<crate::state::LiveBroker> {
        self.broker.live_brokers_on(self.listener.as_deref())
    }

    /// The debug log's line for this request: API, version, client id,
    /// connection and the error codes answered. `errors` runs only when the
    /// debug level is on, so a request pays nothing for logging otherwise.
    pub fn log_answered(&self, errors: impl FnOnce() -> Vec<i16>) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let api = fjord_protocol::kafka_protocol::messages::ApiKey::try_from(self.api_key)
            .map_or_else(|_| self.api_key.to_string(), |k| format!("{k:?}"));
        let errors: Vec<&str> = errors()
            .into_iter()
            .map(|c| fjord_model::ErrorCode(c).name())
            .collect();
        tracing::debug!(
            api = %api,
            version = self.api_version,
            client_id = self.client_id.as_deref().unwrap_or(""),
            peer = %self.peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
            correlation_id = self.correlation_id,
            errors = %if errors.is_empty() { "none".to_string() } else { errors.join(",") },
            "request"
        );
    }

    /// Encode `body` as the response to this request (and count its error
    /// codes for metrics).
    pub fn respond<R: Encodable + Debug + 'static>(&self, body: &R) -> Option<BytesMut> {
        if self.broker.metrics.enabled() {
            self.broker
                .metrics
                .errors_answered(self.api_key, response_error_codes(body));
        }
        self.log_answered(|| error_codes_in(&format!("{body:?}")));
        let mut out = BytesMut::new();
        let header_version = response_header_version(self.api_key, self.api_version);
        match encode_response(
            self.correlation_id,
            header_version,
            body,
            self.api_version,
            &mut out,
        ) {
            Ok(()) => Some(out),
            Err(e) => {
                // A bug in a handler, never the client's doing: make it loud.
                tracing::error!(
                    api_key = self.api_key,
                    api_version = self.api_version,
                    "failed to encode response: {e}"
                );
                None
            }
        }
    }
}

/// A response being produced. `Ready(None)`: nothing is sent (acks=0).
pub enum Pending {
    Ready(Option<BytesMut>),
    Task(JoinHandle<Option<BytesMut>>),
    /// A response that may carry file ranges (Fetch).
    Stream(JoinHandle<Option<Response>>),
    /// A task whose first step must be done before the connection reads its
    /// next request: the receiver fires (or is dropped) then. A Produce v12+
    /// that adds partitions to a transaction before appending uses it, so
    /// that pipelined appends stay in request order.
    Ordered(
        JoinHandle<Option<BytesMut>>,
        Option<tokio::sync::oneshot::Receiver<()>>,
    ),
}

impl Pending {
    pub fn later<F>(f: F) -> Pending
    where
        F: Future<Output = Option<BytesMut>> + Send + 'static,
    {
        Pending::Task(tokio::spawn(f))
    }

    pub fn is_ready(&self) -> bool {
        match self {
            Pending::Ready(_) => true,
            Pending::Task(t) | Pending::Ordered(t, _) => t.is_finished(),
            Pending::Stream(t) => t.is_finished(),
        }
    }

    /// What the connection waits for before reading its next request.
    pub fn take_barrier(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        match self {
            Pending::Ordered(_, barrier) => barrier.take(),
            _ => None,
        }
    }

    /// The response; `Err` if the handler task died (the connection is closed).
    pub async fn resolve(self) -> Result<Option<Response>, ()> {
        match self {
            Pending::Ready(r) => Ok(r.map(Response::from)),
            Pending::Task(t) | Pending::Ordered(t, _) => {
                t.await.map(|r| r.map(Response::from)).map_err(|_| ())
            }
            Pending::Stream(t) => t.await.map_err(|_| ()),
        }
    }
}

/// The APIs we serve and the versions advertised for each.
pub fn supported() -> Vec<(i16, RangeInclusive<i16>)> {
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    vec![
        (ApiKey::Produce as i16, produce::ADVERTISED),
        (ApiKey::Fetch as i16, fetch::VERSIONS),
        (ApiKey::ListOffsets as i16, list_offsets::VERSIONS),
        (ApiKey::Metadata as i16, metadata::VERSIONS),
        (ApiKey::ApiVersions as i16, api_versions::VERSIONS),
        (ApiKey::CreateTopics as i16, create_topics::VERSIONS),
        (ApiKey::DeleteTopics as i16, delete_topics::VERSIONS),
        (ApiKey::DeleteRecords as i16, delete_records::VERSIONS),
        (ApiKey::InitProducerId as i16, init_producer_id::VERSIONS),
        (ApiKey::DescribeConfigs as i16, describe_configs::VERSIONS),
        (ApiKey::AlterConfigs as i16, alter_configs::VERSIONS),
        (ApiKey::CreatePartitions as i16, create_partitions::VERSIONS),
        (
            ApiKey::IncrementalAlterConfigs as i16,
            incremental_alter_configs::VERSIONS,
        ),
        (ApiKey::DescribeCluster as i16, describe_cluster::VERSIONS),
        (ApiKey::FindCoordinator as i16, find_coordinator::VERSIONS),
        (ApiKey::JoinGroup as i16, join_group::VERSIONS),
        (ApiKey::SyncGroup as i16, sync_group::VERSIONS),
        (ApiKey::Heartbeat as i16, heartbeat::VERSIONS),
        (ApiKey::LeaveGroup as i16, leave_group::VERSIONS),
        (ApiKey::OffsetCommit as i16, offset_commit::VERSIONS),
        (ApiKey::OffsetFetch as i16, offset_fetch::VERSIONS),
        (ApiKey::ListGroups as i16, list_groups::VERSIONS),
        (ApiKey::DescribeGroups as i16, describe_groups::VERSIONS),
        (ApiKey::DeleteGroups as i16, delete_groups::VERSIONS),
        (ApiKey::OffsetDelete as i16, offset_delete::VERSIONS),
        (ApiKey::DescribeLogDirs as i16, describe_log_dirs::VERSIONS),
        (
            ApiKey::AlterReplicaLogDirs as i16,
            alter_replica_log_dirs::VERSIONS,
        ),
        (ApiKey::ElectLeaders as i16, elect_leaders::VERSIONS),
        (ApiKey::DescribeQuorum as i16, describe_quorum::VERSIONS),
        (
            ApiKey::AlterPartitionReassignments as i16,
            alter_partition_reassignments::VERSIONS,
        ),
        (
            ApiKey::ListPartitionReassignments as i16,
            list_partition_reassignments::VERSIONS,
        ),
        (
            ApiKey::DescribeTopicPartitions as i16,
            describe_topic_partitions::VERSIONS,
        ),
        (
            ApiKey::ListConfigResources as i16,
            list_config_resources::VERSIONS,
        ),
        (
            ApiKey::OffsetForLeaderEpoch as i16,
            offset_for_leader_epoch::VERSIONS,
        ),
        (
            ApiKey::DescribeProducers as i16,
            describe_producers::VERSIONS,
        ),
        (ApiKey::DescribeAcls as i16, acls::VERSIONS),
        (ApiKey::CreateAcls as i16, acls::VERSIONS),
        (ApiKey::DeleteAcls as i16, acls::VERSIONS),
        (ApiKey::ListTransactions as i16, transactions::LIST_VERSIONS),
        (
            ApiKey::AddPartitionsToTxn as i16,
            transactions::ADD_PARTITIONS_VERSIONS,
        ),
        (
            ApiKey::AddOffsetsToTxn as i16,
            transactions::ADD_OFFSETS_VERSIONS,
        ),
        (ApiKey::EndTxn as i16, transactions::END_TXN_VERSIONS),
        (ApiKey::TxnOffsetCommit as i16, txn_offset_commit::VERSIONS),
        (ApiKey::WriteTxnMarkers as i16, write_txn_markers::VERSIONS),
        (
            ApiKey::DescribeTransactions as i16,
            transactions::DESCRIBE_VERSIONS,
        ),
        (ApiKey::UpdateFeatures as i16, update_features::VERSIONS),
        (ApiKey::SaslHandshake as i16, sasl::HANDSHAKE_VERSIONS),
        (ApiKey::SaslAuthenticate as i16, sasl::AUTHENTICATE_VERSIONS),
        (
            ApiKey::DescribeUserScramCredentials as i16,
            scram_credentials::DESCRIBE_VERSIONS,
        ),
        (
            ApiKey::AlterUserScramCredentials as i16,
            scram_credentials::ALTER_VERSIONS,
        ),
        (ApiKey::DescribeClientQuotas as i16, client_quotas::VERSIONS),
        (ApiKey::AlterClientQuotas as i16, client_quotas::VERSIONS),
    ]
}

/// Where `throttle_time_ms` sits in the body of response `api_key` at
/// `version`, in bytes from the body's start, for the responses that have it
/// at a fixed place (Kafka's schemas: the first field; OffsetDelete's follows
/// its error code). `None`: no such field (SASL, ApiVersions, the quorum and
/// inter-broker APIs), or not at a fixed place (Produce's follows its
/// topics; its handler writes its own).
pub fn throttle_time_at(api_key: i16, version: i16) -> Option<usize> {
    use fjord_protocol::kafka_protocol::messages::ApiKey::{self, *};
    let first_version = match ApiKey::try_from(api_key).ok()? {
        OffsetDelete => return Some(2),
        DeleteRecords
        | InitProducerId
        | DescribeConfigs
        | AlterConfigs
        | CreatePartitions
        | IncrementalAlterConfigs
        | DescribeCluster
        | DeleteGroups
        | DescribeLogDirs
        | AlterReplicaLogDirs
        | ElectLeaders
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | DescribeTopicPartitions
        | ListConfigResources
        | DescribeProducers
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | ListTransactions
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | TxnOffsetCommit
        | DescribeTransactions
        | UpdateFeatures
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | DescribeClientQuotas
        | AlterClientQuotas => 0,
        Fetch | FindCoordinator | Heartbeat | DeleteTopics | DescribeGroups | LeaveGroup
        | ListGroups | SyncGroup => 1,
        CreateTopics | JoinGroup | ListOffsets | OffsetForLeaderEpoch => 2,
        Metadata | OffsetCommit | OffsetFetch => 3,
        _ => return None,
    };
    (version >= first_version).then_some(0)
}

/// Raises the `throttle_time_ms` of an encoded response (header of
/// `header_len` bytes, then the body) to `throttle_ms`; a larger one already
/// there stays (Kafka answers the larger of a request's throttle times).
pub fn raise_throttle_time(frame: &mut [u8], header_len: usize, at: usize, throttle_ms: i32) {
    let start = header_len + at;
    if let Some(field) = frame.get_mut(start..start + 4) {
        let had = i32::from_be_bytes([field[0], field[1], field[2], field[3]]);
        if throttle_ms > had {
            field.copy_from_slice(&throttle_ms.to_be_bytes());
        }
    }
}

/// A response to a request over its `request_percentage`, with the
/// throttle time written into it where the response has that field (the
/// connection is muted for it either way). Fetch takes it into account
/// itself (a throttled fetch is answered empty); Produce's field follows
/// its topics, so its response is decoded and written again.
fn with_request_throttle(pending: Pending, api_key: i16, version: i16, ms: i32) -> Pending {
    // The size prefix and the correlation id, then a tagged-field byte in
    // header v1 (empty in every response we write).
    let header_len = 8 + usize::from(response_header_version(api_key, version) >= 1);
    let produce = fjord_protocol::kafka_protocol::messages::ApiKey::Produce as i16;
    if api_key == produce && version >= 1 {
        return map_pending(pending, move |out| {
            raise_produce_throttle_time(out, header_len, version, ms)
        });
    }
    let Some(at) = throttle_time_at(api_key, version) else {
        return pending;
    };
    map_pending(pending, move |mut out: BytesMut| {
        raise_throttle_time(&mut out, header_len, at, ms);
        out
    })
}

/// `pending` with `f` applied to its encoded response once there.
fn map_pending(pending: Pending, f: impl FnOnce(BytesMut) -> BytesMut + Send + 'static) -> Pending {
    match pending {
        Pending::Ready(out) => Pending::Ready(out.map(f)),
        Pending::Task(task) => Pending::later(async move { task.await.ok().flatten().map(f) }),
        Pending::Ordered(task, first_step) => Pending::Ordered(
            tokio::spawn(async move { task.await.ok().flatten().map(f) }),
            first_step,
        ),
        Pending::Stream(task) => Pending::Stream(task),
    }
}

/// [`raise_throttle_time`] for an encoded Produce response (v1+), whose
/// `throttle_time_ms` comes after its topics: decoded, raised, encoded
/// again. A response that does not decode is left as it is.
pub fn raise_produce_throttle_time(
    out: BytesMut,
    header_len: usize,
    version: i16,
    throttle_ms: i32,
) -> BytesMut {
    use fjord_protocol::kafka_protocol::messages::ProduceResponse;
    use fjord_protocol::kafka_protocol::protocol::Decodable;
    let Some(body) = out.get(header_len..) else {
        return out;
    };
    let mut body = Bytes::copy_from_slice(body);
    let Ok(mut resp) = ProduceResponse::decode(&mut body, version) else {
        return out;
    };
    if resp.throttle_time_ms >= throttle_ms {
        return out;
    }
    resp.throttle_time_ms = throttle_ms;
    let mut fresh = BytesMut::with_capacity(out.len());
    fresh.extend_from_slice(&out[..header_len]);
    if resp.encode(&mut fresh, version).is_err() {
        return out;
    }
    let Ok(len) = u32::try_from(fresh.len() - 4) else {
        return out;
    };
    fresh[..4].copy_from_slice(&len.to_be_bytes());
    fresh
}

/// Decode the body of a request and hand it to its handler. `None` closes the
/// connection (a request we cannot parse has no response we could send).
pub fn dispatch(broker: &Arc<Broker>, header: RequestHeader, body: Reader) -> Option<Pending> {
    dispatch_from(broker, None, header, body)
}

/// [`dispatch`] for a request read from the connection with `peer`.
pub fn dispatch_from(
    broker: &Arc<Broker>,
    peer: Option<SocketAddr>,
    header: RequestHeader,
    body: Reader,
) -> Option<Pending> {
    dispatch_on(broker, peer, None, None, None, header, body)
}

/// [`dispatch_from`] for a request that came in on `listener` from
/// `principal` (checked against the ACLs when an authorizer is set).
pub fn dispatch_on(
    broker: &Arc<Broker>,
    peer: Option<SocketAddr>,
    listener: Option<Arc<str>>,
    principal: Option<crate::security::KafkaPrincipal>,
    throttle: Option<Arc<ConnectionThrottle>>,
    header: RequestHeader,
    mut body: Reader,
) -> Option<Pending> {
    let ctx = Ctx {
        broker: broker.clone(),
        api_key: header.api_key,
        api_version: header.api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id,
        peer,
        listener,
        principal,
        request_bytes: body.remaining(),
        throttle,
    };
    let Some((_, versions)) = supported().into_iter().find(|(k, _)| *k == ctx.api_key) else {
        tracing::debug!(
            api_key = ctx.api_key,
            "unsupported api key, closing connection"
        );
        return None;
    };
    if !versions.contains(&ctx.api_version) {
        if ctx.api_key == api_versions::API_KEY {
            return Some(Pending::Ready(api_versions::unsupported_version(&ctx)));
        }
        tracing::debug!(
            api_key = ctx.api_key,
            api_version = ctx.api_version,
            "unsupported version, closing connection"
        );
        return None;
    }
    // Kept only to log the start of an undecodable body (a cheap clone, not a copy).
    let raw = body.clone();
    let request = match decode_request(ctx.api_key, ctx.api_version, &mut body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(
                api_key = ctx.api_key,
                api_version = ctx.api_version,
                // Never the body of a SASL request: it may hold a password.
                body = ?if is_sasl_api(ctx.api_key) { &[][..] } else { &raw.peek()[..raw.peek().len().min(256)] },
                "undecodable request, closing connection: {e}"
            );
            return None;
        }
    };
    let request = match authz::check(&ctx, request) {
        authz::Checked::Go(r) => r,
        authz::Checked::Denied(answer) => return Some(Pending::Ready(answer)),
        authz::Checked::Close => return None,
    };
    // request_percentage (Kafka's request quota): the time of the handler's
    // synchronous part, for clients with a quota; ApiVersions and SASL are
    // exempt, as in Kafka.
    let request_quota = (broker.quotas.enabled()
        && ctx.principal.is_some()
        && ctx.api_key != api_versions::API_KEY
        && !is_sasl_api(ctx.api_key))
    .then(|| {
        (
            std::time::Instant::now(),
            ctx.principal.clone(),
            ctx.client_id.clone(),
            ctx.throttle.clone(),
        )
    });
    let (api_key, api_version) = (ctx.api_key, ctx.api_version);
    let pending = handle(ctx, request)?;
    if let Some((started, principal, client_id, throttle)) = request_quota {
        // Kafka's unit: percent of one thread over the window.
        let percent = started.elapsed().as_nanos() as f64 * 100.0 / 1e9;
        let ms = record_quota(
            broker,
            principal.as_ref(),
            client_id.as_deref(),
            throttle.as_deref(),
            QuotaKind::Request,
            percent,
        );
        if ms > 0 {
            return Some(with_request_throttle(pending, api_key, api_version, ms));
        }
    }
    Some(pending)
}

/// Hands a decoded, authorized request to its handler.
fn handle(ctx: Ctx, request: Request) -> Option<Pending> {
    Some(match request {
        Request::ApiVersions(r) => Pending::Ready(api_versions::handle(&ctx, r)),
        Request::Metadata(r) => Pending::Ready(metadata::handle(&ctx, r)),
        Request::Produce(r) => produce::handle(ctx, r),
        Request::Fetch(r) => fetch::handle(ctx, r),
        Request::ListOffsets(r) => Pending::Ready(list_offsets::handle(&ctx, r)),
        Request::CreateTopics(r) => blocking(ctx, move |ctx| create_topics::handle(&ctx, r)),
        Request::DeleteTopics(r) => blocking(ctx, move |ctx| delete_topics::handle(&ctx, r)),
        Request::CreatePartitions(r) => {
            blocking(ctx, move |ctx| create_partitions::handle(&ctx, r))
        }
        Request::DeleteRecords(r) => Pending::Ready(delete_records::handle(&ctx, r)),
        Request::DescribeCluster(r) => Pending::Ready(describe_cluster::handle(&ctx, r)),
        Request::DescribeConfigs(r) => Pending::Ready(describe_configs::handle(&ctx, r)),
        Request::AlterConfigs(r) => blocking(ctx, move |ctx| alter_configs::handle(&ctx, r)),
        Request::IncrementalAlterConfigs(r) => {
            blocking(ctx, move |ctx| incremental_alter_configs::handle(&ctx, r))
        }
        Request::DescribeLogDirs(r) => Pending::Ready(describe_log_dirs::handle(&ctx, r)),
        Request::AlterReplicaLogDirs(r) => Pending::Ready(alter_replica_log_dirs::handle(&ctx, r)),
        Request::ElectLeaders(r) => blocking(ctx, move |ctx| elect_leaders::handle(&ctx, r)),
        Request::DescribeQuorum(r) => blocking(ctx, move |ctx| describe_quorum::handle(&ctx, r)),
        Request::AlterPartitionReassignments(r) => {
            Pending::Ready(alter_partition_reassignments::handle(&ctx, r))
        }
        Request::ListPartitionReassignments(r) => {
            Pending::Ready(list_partition_reassignments::handle(&ctx, r))
        }
        Request::DescribeTopicPartitions(r) => {
            Pending::Ready(describe_topic_partitions::handle(&ctx, r))
        }
        Request::ListConfigResources(r) => Pending::Ready(list_config_resources::handle(&ctx, r)),
        Request::InitProducerId(r) => init_producer_id::handle(ctx, r),
        Request::FindCoordinator(r) => Pending::Ready(find_coordinator::handle(&ctx, r)),
        Request::JoinGroup(r) => join_group::handle(ctx, r),
        Request::SyncGroup(r) => sync_group::handle(ctx, r),
        Request::Heartbeat(r) => heartbeat::handle(ctx, r),
        Request::LeaveGroup(r) => leave_group::handle(ctx, r),
        Request::OffsetCommit(r) => offset_commit::handle(ctx, r),
        Request::OffsetFetch(r) => Pending::Ready(offset_fetch::handle(&ctx, r)),
        Request::ListGroups(r) => Pending::Ready(list_groups::handle(&ctx, r)),
        Request::DescribeGroups(r) => Pending::Ready(describe_groups::handle(&ctx, r)),
        Request::DeleteGroups(r) => delete_groups::handle(ctx, r),
        Request::OffsetDelete(r) => offset_delete::handle(ctx, r),
        Request::OffsetForLeaderEpoch(r) => {
            Pending::Ready(offset_for_leader_epoch::handle(&ctx, r))
        }
        Request::DescribeProducers(r) => Pending::Ready(describe_producers::handle(&ctx, r)),
        Request::DescribeAcls(r) => Pending::Ready(acls::describe(&ctx, r)),
        Request::CreateAcls(r) => blocking(ctx, move |ctx| acls::create(&ctx, r)),
        Request::DeleteAcls(r) => blocking(ctx, move |ctx| acls::delete(&ctx, r)),
        Request::ListTransactions(r) => Pending::Ready(transactions::list(&ctx, r)),
        Request::AddPartitionsToTxn(r) => transactions::add_partitions(ctx, r),
        Request::AddOffsetsToTxn(r) => transactions::add_offsets(ctx, r),
        Request::EndTxn(r) => transactions::end_txn(ctx, r),
        Request::TxnOffsetCommit(r) => txn_offset_commit::handle(ctx, r),
        Request::WriteTxnMarkers(r) => write_txn_markers::handle(ctx, r),
        Request::DescribeTransactions(r) => Pending::Ready(transactions::describe(&ctx, r)),
        Request::UpdateFeatures(r) => blocking(ctx, move |ctx| update_features::handle(&ctx, r)),
        Request::SaslHandshake(r) => Pending::Ready(sasl::handshake(&ctx, r)),
        Request::SaslAuthenticate(r) => Pending::Ready(sasl::authenticate(&ctx, r)),
        Request::DescribeUserScramCredentials(r) => {
            Pending::Ready(scram_credentials::describe(&ctx, r))
        }
        Request::AlterUserScramCredentials(r) => {
            blocking(ctx, move |ctx| scram_credentials::alter(&ctx, r))
        }
        Request::DescribeClientQuotas(r) => Pending::Ready(client_quotas::describe(&ctx, r)),
        Request::AlterClientQuotas(r) => blocking(ctx, move |ctx| client_quotas::alter(&ctx, r)),
        // Every request type has a handler now; kept for types added later.
        #[allow(unreachable_patterns)]
        other => {
            tracing::debug!(api_key = other.api_key(), "no handler, closing connection");
            return None;
        }
    })
}

/// SaslHandshake and SaslAuthenticate, whose bodies are never logged.
pub fn is_sasl_api(api_key: i16) -> bool {
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16
}

/// Runs a handler that waits for the metadata quorum (records committed
/// and applied: fsync, opening logs) on tokio's blocking pool, off the
/// runtime's worker threads.
pub(crate) fn blocking<F>(ctx: Ctx, f: F) -> Pending
where
    F: FnOnce(Ctx) -> Option<BytesMut> + Send + 'static,
{
    Pending::later(async move {
        tokio::task::spawn_blocking(move || f(ctx))
            .await
            .unwrap_or(None)
    })
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use fjord_protocol::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use fjord_protocol::kafka_protocol::messages::MetadataResponse;

    use super::*;
    use crate::BrokerConfig;

    /// Collects what the fmt subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn subscriber(level: tracing::Level, out: &Captured) -> impl tracing::Subscriber {
        let out = out.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish()
    }

    #[test]
    fn one_debug_line_per_request_with_the_errors_answered() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        let ctx = Ctx {
            broker: broker.clone(),
            api_key: 3,
            api_version: 12,
            correlation_id: 7,
            client_id: Some("app-1".into()),
            peer: Some("127.0.0.1:5555".parse().unwrap()),
            listener: None,
            principal: None,
            request_bytes: 0,
            throttle: None,
        };
        let resp = MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default().with_error_code(3),
            MetadataResponseTopic::default().with_error_code(0),
            MetadataResponseTopic::default().with_error_code(3),
        ]);
        let out = Captured::default();
        tracing::subscriber::with_default(subscriber(tracing::Level::DEBUG, &out), || {
            // Tests on other threads may have registered the callsite while
            // no debug subscriber existed (cached as never enabled): look again.
            tracing::callsite::rebuild_interest_cache();
            assert!(ctx.respond(&resp).is_some());
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(" request ")).collect();
        assert_eq!(lines.len(), 1, "{text}");
        for want in [
            "api=Metadata",
            "version=12",
            "client_id=\"app-1\"",
            "peer=127.0.0.1:5555",
            "errors=UNKNOWN_TOPIC_OR_PARTITION",
        ] {
            assert!(lines[0].contains(want), "{want} in {}", lines[0]);
        }
        // Below debug the errors are not even looked for.
        let quiet = Captured::default();
        tracing::subscriber::with_default(subscriber(tracing::Level::INFO, &quiet), || {
            ctx.log_answered(|| panic!("error codes computed with debug off"));
            assert!(ctx.respond(&MetadataResponse::default()).is_some());
        });
        assert!(quiet.0.lock().unwrap().is_empty());
        broker.close();
    }

    #[test]
    fn error_metrics_count_every_place_an_error_code_is_answered() {
        use fjord_protocol::kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use fjord_protocol::kafka_protocol::messages::{DeleteGroupsResponse, ProduceResponse};
        let produce =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default().with_error_code(3),
                    PartitionProduceResponse::default(),
                    PartitionProduceResponse::default().with_error_code(3),
                ])]);
        assert_eq!(response_error_codes(&produce), vec![3, 3]);
        let metadata = MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default().with_error_code(3),
            MetadataResponseTopic::default(),
        ]);
        assert_eq!(response_error_codes(&metadata), vec![3]);
        // An API without a walker: read from the Debug text.
        let groups = DeleteGroupsResponse::default().with_results(vec![
            Default::default(),
            fjord_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                .with_error_code(69),
        ]);
        assert_eq!(response_error_codes(&groups), vec![69]);
    }

    #[test]
    fn error_codes_are_read_from_the_debug_text() {
        assert_eq!(
            error_codes_in("A { error_code: 0, x: [B { error_code: -1 }, B { error_code: 36 }, B { error_code: 36 }] }"),
            vec![-1, 36]
        );
        assert!(error_codes_in("A { throttle_time_ms: 0 }").is_empty());
    }

    /// A Produce response over the request quota gets the larger throttle
    /// time after its topics, for every version from v1 served, its header
    /// kept and its size prefix right.
    #[test]
    fn produce_throttle_time_is_raised_after_its_topics() {
        use fjord_protocol::kafka_protocol::messages::produce_response::*;
        use fjord_protocol::kafka_protocol::messages::*;
        use fjord_protocol::kafka_protocol::protocol::{Decodable, Message};
        let resp = |ms| {
            ProduceResponse::default()
                .with_responses(vec![TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(3)
                        .with_base_offset(42)])])
                .with_throttle_time_ms(ms)
        };
        let key = ApiKey::Produce as i16;
        for version in 3..=ProduceResponse::VERSIONS.max {
            let header_len = 8 + usize::from(response_header_version(key, version) >= 1);
            let frame = |ms| {
                let mut out = BytesMut::from(&[0, 0, 0, 0, 0, 0, 0, 7, 0][..header_len]);
                resp(ms).encode(&mut out, version).expect("encodes");
                let len = (out.len() - 4) as u32;
                out[..4].copy_from_slice(&len.to_be_bytes());
                out
            };
            let raised = raise_produce_throttle_time(frame(5), header_len, version, 900);
            assert_eq!(raised, frame(900), "v{version}");
            let mut body = Bytes::copy_from_slice(&raised[header_len..]);
            let back = ProduceResponse::decode(&mut body, version).expect("decodes");
            assert_eq!(back.throttle_time_ms, 900, "v{version}");
            assert_eq!(back.responses[0].partition_responses[0].base_offset, 42);
            // A larger one already there stays; what does not decode is left alone.
            assert_eq!(
                raise_produce_throttle_time(frame(1000), header_len, version, 900),
                frame(1000)
            );
            let cut = BytesMut::from(&frame(5)[..header_len + 3]);
            assert_eq!(
                raise_produce_throttle_time(cut.clone(), header_len, version, 900),
                cut
            );
        }
    }

    /// `throttle_time_at` names the place where kafka-protocol writes
    /// `throttle_time_ms`, for every API and version we serve, and `None`
    /// where it writes none or where it is not at a fixed place.
    #[test]
    fn throttle_time_is_found_in_every_response_served() {
        use fjord_protocol::kafka_protocol::messages::*;
        use fjord_protocol::kafka_protocol::protocol::Message;
        fn check<R: Default + Encodable + Message>(key: ApiKey, set: fn(R, i32) -> R) {
            let served = supported()
                .into_iter()
                .find(|(k, _)| *k == key as i16)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("{key:?} is not served"));
            // Versions kafka-protocol does not encode (Produce v0–v2, only
            // advertised) are skipped.
            for version in served.filter(|v| (R::VERSIONS.min..=R::VERSIONS.max).contains(v)) {
                let encode = |ms| {
                    let mut out = BytesMut::new();
                    set(R::default(), ms)
                        .encode(&mut out, version)
                        .expect("encodes");
                    out
                };
                let (zero, set) = (encode(0), encode(0x0102_0304));
                let at = zero.iter().zip(set.iter()).position(|(a, b)| a != b);
                // Produce: after its topics; ApiVersions: after its list,
                // and exempt from quotas.
                let expected = if matches!(key, ApiKey::Produce | ApiKey::ApiVersions) {
                    None
                } else {
                    at
                };
                assert_eq!(
                    throttle_time_at(key as i16, version),
                    expected,
                    "{key:?} v{version}"
                );
                if let Some(at) = at {
                    assert_eq!(&set[at..at + 4], &[1, 2, 3, 4], "{key:?} v{version}");
                    let mut frame = vec![0u8; 9];
                    frame.extend_from_slice(&zero);
                    raise_throttle_time(&mut frame, 9, at, 0x0102_0304);
                    assert_eq!(&frame[9..], &set[..], "{key:?} v{version}");
                    // A larger throttle time already there stays.
                    raise_throttle_time(&mut frame, 9, at, 5);
                    assert_eq!(&frame[9..], &set[..], "{key:?} v{version}");
                }
            }
        }
        macro_rules! check_all {
            ($($key:ident => $resp:ty),* $(,)?) => {
                $(check::<$resp>(ApiKey::$key, |r, ms| r.with_throttle_time_ms(ms));)*
            };
        }
        check_all!(
            Produce => ProduceResponse,
            Fetch => FetchResponse,
            ListOffsets => ListOffsetsResponse,
            Metadata => MetadataResponse,
            ApiVersions => ApiVersionsResponse,
            CreateTopics => CreateTopicsResponse,
            DeleteTopics => DeleteTopicsResponse,
            DeleteRecords => DeleteRecordsResponse,
            InitProducerId => InitProducerIdResponse,
            DescribeConfigs => DescribeConfigsResponse,
            AlterConfigs => AlterConfigsResponse,
            CreatePartitions => CreatePartitionsResponse,
            IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
            DescribeCluster => DescribeClusterResponse,
            FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse,
            SyncGroup => SyncGroupResponse,
            Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse,
            OffsetCommit => OffsetCommitResponse,
            OffsetFetch => OffsetFetchResponse,
            ListGroups => ListGroupsResponse,
            DescribeGroups => DescribeGroupsResponse,
            DeleteGroups => DeleteGroupsResponse,
            OffsetDelete => OffsetDeleteResponse,
            DescribeLogDirs => DescribeLogDirsResponse,
            AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
            ElectLeaders => ElectLeadersResponse,
            AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
            ListPartitionReassignments => ListPartitionReassignmentsResponse,
            DescribeTopicPartitions => DescribeTopicPartitionsResponse,
            ListConfigResources => ListConfigResourcesResponse,
            OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
            DescribeProducers => DescribeProducersResponse,
            DescribeAcls => DescribeAclsResponse,
            CreateAcls => CreateAclsResponse,
            DeleteAcls => DeleteAclsResponse,
            ListTransactions => ListTransactionsResponse,
            AddPartitionsToTxn => AddPartitionsToTxnResponse,
            AddOffsetsToTxn => AddOffsetsToTxnResponse,
            EndTxn => EndTxnResponse,
            TxnOffsetCommit => TxnOffsetCommitResponse,
            DescribeTransactions => DescribeTransactionsResponse,
            UpdateFeatures => UpdateFeaturesResponse,
            DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
            AlterUserScramCredentials => AlterUserScramCredentialsResponse,
            DescribeClientQuotas => DescribeClientQuotasResponse,
            AlterClientQuotas => AlterClientQuotasResponse,
        );
        // Responses without the field.
        for key in [
            ApiKey::SaslHandshake,
            ApiKey::SaslAuthenticate,
            ApiKey::DescribeQuorum,
            ApiKey::WriteTxnMarkers,
        ] {
            assert_eq!(throttle_time_at(key as i16, 0), None, "{key:?}");
        }
    }
}
