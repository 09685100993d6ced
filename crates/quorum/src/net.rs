//! The quorum's TCP side: the CONTROLLER listener and one outbound
//! connection per other voter.
//!
//! Inbound, each connection is served in order, one request at a time:
//! frames are size-checked before allocation (`FRAME_BYTES_MAX`), decoded
//! by `fjord-protocol`'s checked decoders, and Vote, BeginQuorumEpoch,
//! EndQuorumEpoch and Fetch go to the driver, which answers through a
//! oneshot channel. ApiVersions, DescribeQuorum, AddRaftVoter and RemoveRaftVoter (what
//! Kafka's `kafka-metadata-quorum --bootstrap-controller` sends) are
//! answered too.
//! Anything else closes the connection. A full driver queue closes it too
//! (the peer retries).
//!
//! Outbound, a task per voter holds a bounded queue
//! ([`RAFT_PEER_QUEUE_MAX`]); it connects with backoff
//! ([`RAFT_CONNECT_BACKOFF_MAX_MS`]), sends one request, waits for its
//! response up to the request timeout, and hands it to the driver. A
//! request that cannot be sent is dropped: the core resends on its timers.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_client::Connector;
use fjord_model::limits::{
    FRAME_BYTES_MAX, RAFT_CONNECT_BACKOFF_MAX_MS, RAFT_PEER_QUEUE_MAX,
    RAFT_REQUEST_TIMEOUT_MS_DEFAULT,
};
use fjord_model::{ErrorCode, NodeId};
use fjord_protocol::kafka_protocol::messages::describe_quorum_response as dq;
use fjord_protocol::kafka_protocol::messages::{
    api_versions_response, ApiKey, ApiVersionsResponse, BrokerId, DescribeQuorumResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{
    decode_request, decode_request_header, Reader, Request, RequestHeader, SUPPORTED_APIS,
};
use fjord_raft::messages::Message;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use fjord_metadata::quorum::Reply;
use fjord_metadata::{MetadataError, Proposal};
use fjord_model::limits::{METADATA_FORWARD_TIMEOUT_MS, METADATA_RECORDS_PER_PROPOSAL_MAX};
use fjord_model::Offset;

use crate::driver::{Event, QuorumStatus, Voter};
use crate::wire;

/// The active controller's APIs on the CONTROLLER listener, which the
/// quorum does not answer itself: brokers' BrokerRegistration (62),
/// BrokerHeartbeat (63), AllocateProducerIds (67) and partition leaders'
/// AlterPartition (56), and the admin
/// requests brokers forward (CreateTopics, DeleteTopics, CreatePartitions,
/// AlterConfigs, IncrementalAlterConfigs, ElectLeaders), as Kafka's `ControllerApis`
/// serves them. The node that runs the controller's
/// logic (the broker crate, which owns the image and the
/// `fjord_controller::Controller`) installs them with
/// [`crate::RaftQuorum::set_controller_apis`].
pub trait ControllerApis: Send + Sync {
    /// Answers one request (its header and undecoded body) that came on
    /// connection `conn`: a whole response frame, or `None` to close the
    /// connection. Runs on a blocking thread: it may wait for its records
    /// to commit.
    fn handle(&self, conn: ConnectionId, header: RequestHeader, body: Reader) -> Option<BytesMut>;
    /// Connection `conn` closed (either side closed it, or it failed):
    /// nothing more comes on it. Runs on a blocking thread.
    fn closed(&self, conn: ConnectionId);
}

/// What a secured CONTROLLER listener hands the quorum for an accepted
/// connection: the stream after TLS and the SASL login, and whether the
/// peer may send a request of an API key (asked per request, for every
/// key but ApiVersions: Kafka's CLUSTER_ACTION on the cluster for the
/// quorum and controller APIs).
pub struct Secured {
    pub stream: Box<dyn fjord_client::AsyncStream>,
    pub may: Box<dyn Fn(i16) -> bool + Send + Sync>,
}

/// The future of [`ControllerSecurity::accept`].
pub type SecuredFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Secured, String>> + Send>>;

/// Secures the accepted connections of a CONTROLLER listener that is not
/// PLAINTEXT (the broker crate implements it with its listener security:
/// TLS, SASL, the authorizer).
pub trait ControllerSecurity: Send + Sync + std::fmt::Debug {
    fn accept(&self, stream: TcpStream, peer: std::net::SocketAddr) -> SecuredFuture;
}

/// One inbound connection of the CONTROLLER listener (numbered from 1 in
/// the order they were accepted, per listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Where the controller APIs are installed once the broker is built.
pub(crate) type ApisSlot = Arc<OnceLock<Arc<dyn ControllerApis>>>;

/// The API keys handed to [`ControllerApis`].
pub const CONTROLLER_APIS: &[ApiKey] = &[
    ApiKey::BrokerRegistration,
    ApiKey::BrokerHeartbeat,
    ApiKey::AllocateProducerIds,
    ApiKey::AlterPartition,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::ElectLeaders,
];

/// The APIs the CONTROLLER listener serves itself.
const SERVED: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Vote,
    ApiKey::BeginQuorumEpoch,
    ApiKey::EndQuorumEpoch,
    ApiKey::Fetch,
    ApiKey::DescribeQuorum,
    ApiKey::DescribeCluster,
    ApiKey::AddRaftVoter,
    ApiKey::RemoveRaftVoter,
];

async fn read_frame<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> std::io::Result<Option<Bytes>> {
    let mut prefix = [0u8; 4];
    match s.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = fjord_protocol::frame_len(prefix, FRAME_BYTES_MAX)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// Writes one whole frame and flushes it (a TLS stream may hold it back).
async fn send<S: tokio::io::AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    frame: &[u8],
) -> Result<(), String> {
    s.write_all(frame).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())
}

/// What every connection of the CONTROLLER listener knows of its node.
pub(crate) struct ListenerContext {
    pub node_id: NodeId,
    pub cluster_id: String,
    /// The finalized `kraft.version`: 1 for a dynamic quorum (KIP-853), 0
    /// for a static one. ApiVersions reports it.
    pub kraft_version: i16,
    /// How the leader reaches a voter being added (its ApiVersions).
    pub connector: Connector,
}

/// Accepts connections on the CONTROLLER listener until the runtime stops.
pub(crate) async fn serve(
    listener: TcpListener,
    events: SyncSender<Event>,
    ctx: Arc<ListenerContext>,
    apis: ApisSlot,
    security: Option<Arc<dyn ControllerSecurity>>,
) {
    let mut accepted = 0;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        accepted += 1;
        let conn = ConnectionId(accepted);
        let events = events.clone();
        let ctx = ctx.clone();
        let apis = apis.clone();
        let security = security.clone();
        tokio::spawn(async move {
            let secured = match security {
                None => Secured {
                    stream: Box::new(stream),
                    may: Box::new(|_| true),
                },
                Some(security) => match security.accept(stream, peer).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::info!(%peer, "controller connection refused: {e}");
                        return;
                    }
                },
            };
            if let Err(e) = connection(conn, secured, events, &ctx, &apis).await {
                tracing::debug!("controller connection closed: {e}");
            }
            if let Some(apis) = apis.get().cloned() {
                // It may wait for the controller (a blocking lock).
                let _ = tokio::task::spawn_blocking(move || apis.closed(conn)).await;
            }
        });
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn connection(
    conn: ConnectionId,
    secured: Secured,
    events: SyncSender<Event>,
    ctx: &ListenerContext,
    apis: &ApisSlot,
) -> Result<(), String> {
    let (node_id, cluster_id) = (ctx.node_id, ctx.cluster_id.as_str());
    let Secured { stream: mut s, may } = secured;
    while let Some(frame) = read_frame(&mut s).await.map_err(|e| e.to_string())? {
        let mut r = Reader::new(frame);
        let h = decode_request_header(&mut r).map_err(|e| e.to_string())?;
        let (key, version, cid) = (h.api_key, h.api_version, h.correlation_id);
        if key != ApiKey::ApiVersions as i16 && !may(key) {
            // Kafka's ControllerApis: CLUSTER_AUTHORIZATION_FAILED in the
            // API's answer (every topic, resource or partition it lists);
            // a forwarded proposal gets it as its refusal.
            let code = ErrorCode::CLUSTER_AUTHORIZATION_FAILED;
            let out = if key == FORWARD_PROPOSAL_API_KEY {
                forwarded_refusal(cid, code, "Cluster authorization failed.")
            } else {
                wire::denied_frame(key, version, cid, code, &mut r)
                    .map_err(|e| format!("api {key}: not authorized ({e})"))?
            };
            send(&mut s, &out).await?;
            continue;
        }
        if CONTROLLER_APIS.iter().any(|k| *k as i16 == key) {
            let Some(apis) = apis.get().cloned() else {
                return Err(format!("api {key}: no controller on this node"));
            };
            let out = tokio::task::spawn_blocking(move || apis.handle(conn, h, r))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("api {key}: closed by the controller"))?;
            send(&mut s, &out).await?;
            continue;
        }
        if key == FORWARD_PROPOSAL_API_KEY {
            let out = match decode_forwarded(&mut r) {
                Ok(records) => {
                    let (p, reply) = Proposal::pair();
                    events
                        .try_send(Event::Propose(records, None, reply))
                        .map_err(|_| "quorum busy".to_string())?;
                    forwarded_response(cid, p.await)
                }
                Err(e) => forwarded_response(cid, Err(MetadataError::InvalidProposal(e))),
            };
            send(&mut s, &out).await?;
            continue;
        }
        let out = match decode_request(key, version, &mut r) {
            Ok(Request::ApiVersions(_)) => api_versions(cid, version, ctx.kraft_version)?,
            Ok(Request::DescribeCluster(req)) => {
                let (tx, rx) = oneshot::channel();
                events
                    .try_send(Event::Describe(tx))
                    .map_err(|_| "quorum busy".to_string())?;
                let status = rx.await.map_err(|_| "quorum closed".to_string())?;
                describe_cluster(cid, version, &req, &status, cluster_id)?
            }
            Ok(Request::DescribeQuorum(req)) => {
                let (tx, rx) = oneshot::channel();
                events
                    .try_send(Event::Describe(tx))
                    .map_err(|_| "quorum busy".to_string())?;
                let status = rx.await.map_err(|_| "quorum closed".to_string())?;
                describe_quorum(cid, version, &req, &status)?
            }
            Ok(Request::RemoveRaftVoter(req)) => {
                let answer = remove_voter(&events, &req, cluster_id).await?;
                remove_voter_response(cid, version, answer)?
            }
            Ok(Request::AddRaftVoter(req)) => {
                let answer = add_voter(&events, &req, ctx).await?;
                add_voter_response(cid, version, answer)?
            }
            Ok(req) => match wire::request_to_message(req, version, node_id, cluster_id) {
                Ok((from, message)) => {
                    let (tx, rx) = oneshot::channel();
                    events
                        .try_send(Event::Inbound {
                            from,
                            message,
                            reply: tx,
                        })
                        .map_err(|_| "quorum busy".to_string())?;
                    let (msg, raw, leader) = rx.await.map_err(|_| "quorum closed".to_string())?;
                    wire::response_frame_with_leader(cid, version, &msg, raw, false, leader)?
                }
                Err(wire::Refused(code)) => wire::refusal_frame(key, version, cid, code)?,
            },
            Err(e) => return Err(e.to_string()),
        };
        send(&mut s, &out).await?;
    }
    Ok(())
}

/// RemoveRaftVoter (KIP-853): the cluster id is checked here, the rest by
/// the driver (leader only, Kafka's RemoveVoterHandler rules and codes),
/// which answers once the new VotersRecord commits; REQUEST_TIMED_OUT
/// after the request timeout, as Kafka's pending operation expires.
async fn remove_voter(
    events: &SyncSender<Event>,
    req: &fjord_protocol::kafka_protocol::messages::RemoveRaftVoterRequest,
    cluster_id: &str,
) -> Result<(ErrorCode, Option<String>), String> {
    if let Some(given) = &req.cluster_id {
        if given.as_str() != cluster_id {
            return Ok((
                ErrorCode::INCONSISTENT_CLUSTER_ID,
                Some(format!(
                    "The given id \"{given}\" doesn't match the cluster id \"{cluster_id}\""
                )),
            ));
        }
    }
    let (tx, rx) = oneshot::channel();
    events
        .try_send(Event::RemoveVoter {
            id: NodeId(req.voter_id),
            directory_id: req.voter_directory_id,
            reply: tx,
        })
        .map_err(|_| "quorum busy".to_string())?;
    let wait = Duration::from_millis(RAFT_REQUEST_TIMEOUT_MS_DEFAULT.unsigned_abs());
    match tokio::time::timeout(wait, rx).await {
        Ok(answer) => answer.map_err(|_| "quorum closed".to_string()),
        Err(_) => Ok((
            ErrorCode::REQUEST_TIMED_OUT,
            Some("Request timed out waiting for the new voter set to commit".into()),
        )),
    }
}

/// AddRaftVoter (KIP-853), Kafka's AddVoterHandler steps: the cluster id
/// here; the leader-only checks, one change at a time, the committed epoch
/// and voter set and DUPLICATE_VOTER by the driver; then this node asks the
/// new voter's listener (the endpoint named like this node's CONTROLLER
/// listener) for its ApiVersions and hands the driver its `kraft.version`
/// range, and the driver checks that range and that the new voter is an
/// observer that fetched and caught up with that directory id, appends the
/// VotersRecord and answers once it commits.
async fn add_voter(
    events: &SyncSender<Event>,
    req: &fjord_protocol::kafka_protocol::messages::AddRaftVoterRequest,
    ctx: &ListenerContext,
) -> Result<(ErrorCode, Option<String>), String> {
    if let Some(given) = &req.cluster_id {
        if given.as_str() != ctx.cluster_id {
            return Ok((
                ErrorCode::INCONSISTENT_CLUSTER_ID,
                Some(format!(
                    "The given id \"{given}\" doesn't match the cluster id \"{}\"",
                    ctx.cluster_id
                )),
            ));
        }
    }
    let listeners: Vec<fjord_metadata::control::VoterEndpoint> = req
        .listeners
        .iter()
        .map(|l| fjord_metadata::control::VoterEndpoint {
            name: l.name.to_string(),
            host: l.host.to_string(),
            port: l.port,
        })
        .collect();
    let (tx, rx) = oneshot::channel();
    events
        .try_send(Event::AddVoterCheck {
            id: NodeId(req.voter_id),
            directory_id: req.voter_directory_id,
            listeners: listeners.clone(),
            reply: tx,
        })
        .map_err(|_| "quorum busy".to_string())?;
    let addr = match rx.await.map_err(|_| "quorum closed".to_string())? {
        Ok(addr) => addr,
        Err(refused) => return Ok(refused),
    };
    let wait = Duration::from_millis(RAFT_REQUEST_TIMEOUT_MS_DEFAULT.unsigned_abs());
    let kraft_versions =
        match tokio::time::timeout(wait, kraft_versions_of(&ctx.connector, addr)).await {
            Ok(Ok(range)) => range,
            Ok(Err(e)) => {
                return Ok((
                    ErrorCode::REQUEST_TIMED_OUT,
                    Some(format!(
                        "Aborted add voter operation since API_VERSIONS returned an error: {e}"
                    )),
                ))
            }
            Err(_) => {
                return Ok((
                    ErrorCode::REQUEST_TIMED_OUT,
                    Some(format!(
                        "New voter {} is not ready to receive requests",
                        req.voter_id
                    )),
                ))
            }
        };
    let (tx, rx) = oneshot::channel();
    events
        .try_send(Event::AddVoter {
            id: NodeId(req.voter_id),
            directory_id: req.voter_directory_id,
            listeners,
            kraft_versions,
            reply: tx,
        })
        .map_err(|_| "quorum busy".to_string())?;
    // The driver answers REQUEST_TIMED_OUT itself when the change does not
    // commit within the request timeout; this is a backstop.
    match tokio::time::timeout(wait * 2, rx).await {
        Ok(answer) => answer.map_err(|_| "quorum closed".to_string()),
        Err(_) => Ok((
            ErrorCode::REQUEST_TIMED_OUT,
            Some("Request timed out waiting for the new voter set to commit".into()),
        )),
    }
}

/// The `kraft.version` range the node at `addr` supports, from its
/// ApiVersions response (`None`: it names no such feature).
async fn kraft_versions_of(
    connector: &Connector,
    addr: std::net::SocketAddr,
) -> Result<Option<(i16, i16)>, String> {
    let mut s = dial(connector, addr).await?;
    let version = 3;
    let request = fjord_protocol::kafka_protocol::messages::ApiVersionsRequest::default()
        .with_client_software_name(sb("fjord"))
        .with_client_software_version(sb(env!("CARGO_PKG_VERSION")));
    let frame = fjord_client::encode_request(&request, version, 1, wire::CLIENT_ID)
        .map_err(|e| e.to_string())?;
    send(&mut s, &frame).await?;
    let resp = read_frame(&mut s)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "connection closed".to_string())?;
    let (_, r) = fjord_client::decode_response::<ApiVersionsResponse>(resp, version)?;
    if r.error_code != 0 {
        return Err(format!("error code {}", r.error_code));
    }
    Ok(r.supported_features
        .iter()
        .find(|f| f.name.as_str() == KRAFT_VERSION_FEATURE)
        .map(|f| (f.min_version, f.max_version)))
}

fn add_voter_response(
    cid: i32,
    version: i16,
    (code, message): (ErrorCode, Option<String>),
) -> Result<BytesMut, String> {
    let body = fjord_protocol::kafka_protocol::messages::AddRaftVoterResponse::default()
        .with_error_code(code.0)
        .with_error_message(message.map(|m| sb(&m)));
    encode_answer(cid, version, ApiKey::AddRaftVoter, &body)
}

/// A response frame of `api` at `version`.
fn encode_answer<R: fjord_protocol::kafka_protocol::protocol::Encodable>(
    cid: i32,
    version: i16,
    api: ApiKey,
    body: &R,
) -> Result<BytesMut, String> {
    let hv = fjord_protocol::response_header_version(api as i16, version);
    let mut out = BytesMut::new();
    fjord_protocol::encode_response(cid, hv, body, version, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Kafka's `KRaftVersion.FEATURE_NAME`.
pub const KRAFT_VERSION_FEATURE: &str = "kraft.version";
/// The highest `kraft.version` Fjord supports (KIP-853 voter changes).
pub const KRAFT_VERSION_MAX: i16 = 1;

fn remove_voter_response(
    cid: i32,
    version: i16,
    (code, message): (ErrorCode, Option<String>),
) -> Result<BytesMut, String> {
    let body = fjord_protocol::kafka_protocol::messages::RemoveRaftVoterResponse::default()
        .with_error_code(code.0)
        .with_error_message(message.map(|m| sb(&m)));
    encode_answer(cid, version, ApiKey::RemoveRaftVoter, &body)
}

fn api_versions(cid: i32, version: i16, kraft_version: i16) -> Result<BytesMut, String> {
    let keys = SUPPORTED_APIS
        .iter()
        .filter(|a| {
            SERVED
                .iter()
                .chain(CONTROLLER_APIS)
                .any(|k| *k as i16 == a.api_key)
        })
        .map(|a| {
            let max = if a.api_key == ApiKey::Fetch as i16 {
                a.max_version.min(wire::FETCH_VERSION)
            } else {
                a.max_version
            };
            api_versions_response::ApiVersion::default()
                .with_api_key(a.api_key)
                .with_min_version(a.min_version)
                .with_max_version(max)
        })
        .collect();
    let (body_version, code) = if (0..=4).contains(&version) {
        (version, ErrorCode::NONE)
    } else {
        (0, ErrorCode::UNSUPPORTED_VERSION)
    };
    let mut body = ApiVersionsResponse::default()
        .with_error_code(code.0)
        .with_api_keys(keys);
    if code == ErrorCode::NONE && version >= 3 {
        // KIP-853: what the leader adding this node as a voter checks.
        body = body
            .with_supported_features(vec![api_versions_response::SupportedFeatureKey::default()
                .with_name(sb(KRAFT_VERSION_FEATURE))
                .with_min_version(0)
                .with_max_version(KRAFT_VERSION_MAX)])
            .with_finalized_features_epoch(-1)
            .with_finalized_features(vec![api_versions_response::FinalizedFeatureKey::default()
                .with_name(sb(KRAFT_VERSION_FEATURE))
                .with_min_version_level(kraft_version)
                .with_max_version_level(kraft_version)]);
    }
    let mut out = BytesMut::new();
    fjord_protocol::encode_response(cid, 0, &body, body_version, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn describe_quorum(
    cid: i32,
    version: i16,
    req: &fjord_protocol::kafka_protocol::messages::DescribeQuorumRequest,
    st: &QuorumStatus,
) -> Result<BytesMut, String> {
    let valid = req.topics.len() == 1
        && &*req.topics[0].topic_name == wire::METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    let body = if !valid {
        DescribeQuorumResponse::default().with_error_code(ErrorCode::INVALID_REQUEST.0)
    } else {
        let leader = st.leader_id.map_or(-1, |n| n.0);
        let directory_id = |id: fjord_model::NodeId| {
            st.directory_ids
                .iter()
                .find(|(v, _)| *v == id)
                .map_or(uuid::Uuid::nil(), |(_, d)| *d)
        };
        let replicas =
            |list: &[(fjord_model::NodeId, fjord_model::Offset, i64)]| -> Vec<dq::ReplicaState> {
                list.iter()
                    .map(|(id, end, at)| {
                        dq::ReplicaState::default()
                            .with_replica_id(BrokerId(id.0))
                            .with_replica_directory_id(directory_id(*id))
                            .with_log_end_offset(end.0)
                            .with_last_fetch_timestamp(*at)
                            .with_last_caught_up_timestamp(*at)
                    })
                    .collect()
            };
        let voters = replicas(&st.voters);
        let observers = replicas(&st.observers);
        let p = dq::PartitionData::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(st.epoch.0)
            .with_high_watermark(st.high_watermark.0)
            .with_current_voters(voters)
            .with_observers(observers);
        let mut resp = DescribeQuorumResponse::default()
            .with_topics(vec![dq::TopicData::default()
                .with_topic_name(TopicName(sb(wire::METADATA_TOPIC)))
                .with_partitions(vec![p])]);
        if version >= 2 {
            let nodes = st
                .endpoints
                .iter()
                .map(|(id, addr)| {
                    dq::Node::default()
                        .with_node_id(BrokerId(id.0))
                        .with_listeners(vec![dq::Listener::default()
                            .with_name(sb("CONTROLLER"))
                            .with_host(sb(&addr.ip().to_string()))
                            .with_port(addr.port())])
                })
                .collect();
            resp = resp.with_nodes(nodes);
        }
        resp
    };
    let hv = fjord_protocol::response_header_version(ApiKey::DescribeQuorum as i16, version);
    let mut out = BytesMut::new();
    fjord_protocol::encode_response(cid, hv, &body, version, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// DescribeCluster on the CONTROLLER listener (KIP-919: what Kafka's admin
/// client sends with `bootstrap.controllers`): the voters' CONTROLLER
/// endpoints and the leader as controller.
fn describe_cluster(
    cid: i32,
    version: i16,
    req: &fjord_protocol::kafka_protocol::messages::DescribeClusterRequest,
    st: &QuorumStatus,
    cluster_id: &str,
) -> Result<BytesMut, String> {
    use fjord_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use fjord_protocol::kafka_protocol::messages::DescribeClusterResponse;
    // Kafka's EndpointType: 1 broker, 2 controller.
    let mut body = DescribeClusterResponse::default()
        .with_cluster_id(sb(cluster_id))
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_authorized_operations(i32::MIN);
    if version >= 1 && req.endpoint_type != 2 {
        body = body
            .with_error_code(ErrorCode::MISMATCHED_ENDPOINT_TYPE.0)
            .with_error_message(Some(sb("The request was sent to a controller endpoint")));
    } else {
        let brokers = st
            .endpoints
            .iter()
            .map(|(id, addr)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id.0))
                    .with_host(sb(&addr.ip().to_string()))
                    .with_port(i32::from(addr.port()))
            })
            .collect();
        // No leader known: any voter, as Kafka answers with a random controller.
        let controller = st
            .leader_id
            .or_else(|| st.endpoints.first().map(|e| e.0))
            .map_or(-1, |n| n.0);
        body = body
            .with_controller_id(BrokerId(controller))
            .with_brokers(brokers);
    }
    let hv = fjord_protocol::response_header_version(ApiKey::DescribeCluster as i16, version);
    let mut out = BytesMut::new();
    fjord_protocol::encode_response(cid, hv, &body, version, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Starts the outbound connection to `voter`; returns its queue.
pub(crate) fn spawn_peer(
    rt: &tokio::runtime::Handle,
    voter: Voter,
    events: SyncSender<Event>,
    connector: Connector,
) -> mpsc::Sender<(u64, Message)> {
    let (tx, rx) = mpsc::channel(RAFT_PEER_QUEUE_MAX);
    rt.spawn(peer(voter, rx, events, connector));
    tx
}

/// Connects to a voter's CONTROLLER listener through `connector` (TLS
/// and the SASL login when it says so; the TLS server name is the
/// voter's address).
async fn dial(
    connector: &Connector,
    addr: std::net::SocketAddr,
) -> Result<Box<dyn fjord_client::AsyncStream>, String> {
    let timeout = Duration::from_millis(RAFT_REQUEST_TIMEOUT_MS_DEFAULT as u64);
    connector
        .connect(&addr.to_string(), wire::CLIENT_ID, timeout)
        .await
}

async fn peer(
    voter: Voter,
    mut rx: mpsc::Receiver<(u64, Message)>,
    events: SyncSender<Event>,
    connector: Connector,
) {
    let mut backoff_ms = 10u64;
    let timeout = Duration::from_millis(RAFT_REQUEST_TIMEOUT_MS_DEFAULT as u64);
    loop {
        let mut s = match dial(&connector, voter.addr).await {
            Ok(s) => {
                backoff_ms = 10;
                s
            }
            Err(e) => {
                tracing::debug!(voter = voter.id.0, "connecting to a voter: {e}");
                // The voter is likely gone (refused at once after a kill):
                // the core may stop waiting for it as leader.
                let _ = events.try_send(Event::Unreachable(voter.id));
                // Requests queued meanwhile are stale: the core resends.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(RAFT_CONNECT_BACKOFF_MAX_MS);
                continue;
            }
        };
        loop {
            let Some((id, msg)) = rx.recv().await else {
                return;
            };
            let (api, version) = wire::api_of(&msg);
            let cid = (id & 0x7fff_ffff) as i32;
            let frame = match wire::request_frame(&msg, cid) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!("encoding a quorum request: {e}");
                    continue;
                }
            };
            if send(&mut s, &frame).await.is_err() {
                break;
            }
            let resp = match tokio::time::timeout(timeout, read_frame(&mut s)).await {
                Ok(Ok(Some(f))) => f,
                _ => break,
            };
            match wire::decode_response(api, version, resp) {
                Ok(d) if d.correlation_id == cid => {
                    let _ = events.try_send(Event::Response {
                        from: voter.id,
                        correlation_id: id,
                        message: d.message,
                        raw: d.raw_records,
                        leader_endpoint: d.leader_endpoint,
                    });
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(voter = voter.id.0, "bad quorum response: {e}");
                    break;
                }
            }
        }
    }
}

/// Fjord's one API of its own on the CONTROLLER listener: a proposal
/// forwarded by a voter that does not lead (Kafka has no such RPC; its
/// brokers forward whole admin requests to the active controller). Far
/// outside Kafka's api keys; never advertised in ApiVersions.
///
/// Request: header v1 (api key, version 0, correlation id, client id),
/// then int32 record count and, per record, int32 length and bytes.
/// Response: header v0, int16 error code (0 or NOT_CONTROLLER), int64
/// offset of the proposal's last record, int16 length and a UTF-8 message.
pub const FORWARD_PROPOSAL_API_KEY: i16 = 10_001;

fn decode_forwarded(r: &mut Reader) -> Result<Vec<Bytes>, String> {
    let count = r.i32("ForwardProposal.count").map_err(|e| e.to_string())?;
    let count = usize::try_from(count).map_err(|_| "negative record count".to_string())?;
    if count == 0 || count > METADATA_RECORDS_PER_PROPOSAL_MAX || count * 4 > r.remaining() {
        return Err(format!("{count} records"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.i32("ForwardProposal.len").map_err(|e| e.to_string())?;
        let len = usize::try_from(len).map_err(|_| "negative record length".to_string())?;
        if len > r.remaining() {
            return Err("record longer than the frame".into());
        }
        out.push(
            r.raw("ForwardProposal.record", len)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

fn forwarded_response(cid: i32, result: Result<Offset, MetadataError>) -> BytesMut {
    let (code, offset, message) = match result {
        Ok(o) => (ErrorCode::NONE, o.0, String::new()),
        // NOT_CONTROLLER tells the forwarding node that trying again may succeed.
        Err(e @ (MetadataError::NoLeader(_) | MetadataError::Busy | MetadataError::Closed)) => {
            (ErrorCode::NOT_CONTROLLER, -1, e.to_string())
        }
        Err(e) => (ErrorCode::UNKNOWN_SERVER_ERROR, -1, e.to_string()),
    };
    forwarded_frame(cid, code, offset, &message)
}

/// A forwarded proposal refused with `code` before it was looked at.
fn forwarded_refusal(cid: i32, code: ErrorCode, message: &str) -> BytesMut {
    forwarded_frame(cid, code, -1, message)
}

fn forwarded_frame(cid: i32, code: ErrorCode, offset: i64, message: &str) -> BytesMut {
    let message: String = message.chars().take(1000).collect();
    let mut out = BytesMut::new();
    let body_len = 4 + 2 + 8 + 2 + message.len();
    out.extend_from_slice(&(body_len as i32).to_be_bytes());
    out.extend_from_slice(&cid.to_be_bytes());
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(message.len() as i16).to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// Sends `records` to the leader at `addr`; on its commit, asks the driver
/// to resolve `reply` once this node's listener handled that offset.
pub(crate) async fn forward_proposal(
    addr: std::net::SocketAddr,
    records: Vec<Bytes>,
    reply: Reply,
    events: SyncSender<Event>,
    connector: Connector,
) {
    let timeout = Duration::from_millis(METADATA_FORWARD_TIMEOUT_MS);
    let result = tokio::time::timeout(timeout, forward_once(&connector, addr, &records)).await;
    match result {
        Ok(Ok(offset)) => {
            if let Err(std::sync::mpsc::TrySendError::Full(Event::AwaitLocal(_, reply))) =
                events.try_send(Event::AwaitLocal(offset, reply))
            {
                reply.send(Err(MetadataError::Busy));
            }
        }
        Ok(Err(e)) => reply.send(Err(e.into_error(addr))),
        Err(_) => reply.send(Err(MetadataError::NoLeader(format!(
            "forwarding to the quorum leader at {addr}: timed out"
        )))),
    }
}

/// Why a forwarded proposal failed.
enum ForwardError {
    /// The leader could not be reached or answered nothing: nothing is known to be written.
    Unreachable(String),
    /// The leader answered with an error.
    Refused(ErrorCode, String),
}

impl ForwardError {
    fn into_error(self, addr: std::net::SocketAddr) -> MetadataError {
        match self {
            ForwardError::Unreachable(e) => {
                MetadataError::NoLeader(format!("forwarding to the quorum leader at {addr}: {e}"))
            }
            ForwardError::Refused(code, e)
                if code == ErrorCode::NOT_CONTROLLER
                    || code == ErrorCode::NOT_LEADER_OR_FOLLOWER =>
            {
                MetadataError::NoLeader(format!("{addr} no longer leads the quorum: {e}"))
            }
            ForwardError::Refused(_, e) => {
                MetadataError::Failed(format!("the quorum leader at {addr} refused: {e}"))
            }
        }
    }
}

async fn forward_once(
    connector: &Connector,
    addr: std::net::SocketAddr,
    records: &[Bytes],
) -> Result<Offset, ForwardError> {
    let unreachable = |e: String| ForwardError::Unreachable(e);
    let mut s = dial(connector, addr).await.map_err(unreachable)?;
    let mut body = BytesMut::new();
    body.extend_from_slice(&FORWARD_PROPOSAL_API_KEY.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(wire::CLIENT_ID.len() as i16).to_be_bytes());
    body.extend_from_slice(wire::CLIENT_ID.as_bytes());
    body.extend_from_slice(&(records.len() as i32).to_be_bytes());
    for r in records {
        body.extend_from_slice(&(r.len() as i32).to_be_bytes());
        body.extend_from_slice(r);
    }
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    send(&mut s, &frame).await.map_err(unreachable)?;
    let resp = read_frame(&mut s)
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .ok_or_else(|| unreachable("connection closed".into()))?;
    let mut r = Reader::new(resp);
    let e = |e: fjord_protocol::DecodeError| unreachable(e.to_string());
    let _cid = r.i32("ForwardProposal.correlation_id").map_err(e)?;
    let code = ErrorCode(r.i16("ForwardProposal.error_code").map_err(e)?);
    let offset = r.i64("ForwardProposal.offset").map_err(e)?;
    let len = r.i16("ForwardProposal.message_len").map_err(e)?;
    let len = usize::try_from(len).unwrap_or(0).min(r.remaining());
    let message = r.raw("ForwardProposal.message", len).map_err(e)?;
    if code != ErrorCode::NONE {
        return Err(ForwardError::Refused(
            code,
            String::from_utf8_lossy(&message).into_owned(),
        ));
    }
    Ok(Offset(offset))
}
