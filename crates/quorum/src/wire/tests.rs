use super::*;
use fjord_protocol::{decode_request, decode_request_header, Reader};
use fjord_records::{BatchBuilder, Compression};

const ME: NodeId = NodeId(2);

/// Encodes a core request, decodes it with our request decoders and maps it back.
fn through_wire(msg: &Message) -> Result<(NodeId, Message), Refused> {
    let frame = request_frame(msg, 77).unwrap();
    let mut r = Reader::new(Bytes::copy_from_slice(&frame[4..]));
    let h = decode_request_header(&mut r).unwrap();
    assert_eq!(h.correlation_id, 77);
    let (api, version) = api_of(msg);
    assert_eq!((h.api_key, h.api_version), (api as i16, version));
    let req = decode_request(h.api_key, h.api_version, &mut r).unwrap();
    request_to_message(req, h.api_version, ME, "c1")
}

fn response_through_wire(msg: &Message, records: Option<Bytes>) -> DecodedResponse {
    let (api, version) = api_of(msg);
    let frame = response_frame(5, version, msg, records, false).unwrap();
    let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let d = decode_response(api, version, Bytes::copy_from_slice(&frame[4..])).unwrap();
    assert_eq!(d.correlation_id, 5);
    d
}

#[test]
fn requests_round_trip_through_kafkas_shapes() {
    let msgs = [
        Message::VoteRequest(VoteRequest {
            cluster_id: "c1".into(),
            candidate_id: NodeId(3),
            candidate_epoch: LeaderEpoch(7),
            voter_id: ME,
            last_offset_epoch: LeaderEpoch(6),
            last_offset: Offset(42),
            pre_vote: true,
        }),
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            cluster_id: "c1".into(),
            leader_id: NodeId(3),
            leader_epoch: LeaderEpoch(7),
            voter_id: ME,
        }),
        Message::EndQuorumEpochRequest(EndQuorumEpochRequest {
            cluster_id: "c1".into(),
            leader_id: NodeId(3),
            leader_epoch: LeaderEpoch(7),
            preferred_successors: vec![NodeId(1), ME],
        }),
        Message::FetchRequest(FetchRequest {
            cluster_id: "other".into(),
            replica_id: NodeId(3),
            replica_directory_id: 0x1234_5678,
            current_leader_epoch: LeaderEpoch(7),
            fetch_offset: Offset(100),
            last_fetched_epoch: LeaderEpoch(5),
            max_wait_ms: 500,
        }),
    ];
    for m in msgs {
        let (from, back) = through_wire(&m).unwrap();
        assert_eq!(from, NodeId(3), "{m:?}");
        assert_eq!(back, m);
    }
}

#[test]
fn fetch_names_the_metadata_topic_by_id_and_replica_state() {
    let m = Message::FetchRequest(FetchRequest {
        cluster_id: "c1".into(),
        replica_id: NodeId(3),
        replica_directory_id: 0,
        current_leader_epoch: LeaderEpoch(1),
        fetch_offset: Offset(0),
        last_fetched_epoch: LeaderEpoch(0),
        max_wait_ms: 0,
    });
    let frame = request_frame(&m, 1).unwrap();
    let mut r = Reader::new(Bytes::copy_from_slice(&frame[4..]));
    let h = decode_request_header(&mut r).unwrap();
    let Request::Fetch(f) = decode_request(h.api_key, h.api_version, &mut r).unwrap() else {
        panic!("not a fetch")
    };
    assert_eq!(f.topics.len(), 1);
    assert_eq!(f.topics[0].topic_id, METADATA_TOPIC_ID);
    assert_eq!(
        f.topics[0].topic_id.to_string(),
        "00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(f.replica_state.replica_id, BrokerId(3));
    assert_eq!(f.topics[0].partitions[0].last_fetched_epoch, 0);
    // Another topic id, or two partitions: INVALID_REQUEST, nothing for the core.
    let mut wrong = f.clone();
    wrong.topics[0].topic_id = Uuid::from_u64_pair(0, 2);
    assert_eq!(
        request_to_message(Request::Fetch(wrong), FETCH_VERSION, ME, "c1"),
        Err(Refused(ErrorCode::INVALID_REQUEST))
    );
    let mut two = f.clone();
    let p = two.topics[0].partitions[0].clone();
    two.topics[0].partitions.push(p.with_partition(1));
    assert_eq!(
        request_to_message(Request::Fetch(two), FETCH_VERSION, ME, "c1"),
        Err(Refused(ErrorCode::INVALID_REQUEST))
    );
    // A null cluster id is accepted as ours (Kafka's hasValidClusterId).
    let mut null = f;
    null.cluster_id = None;
    let (_, m2) = request_to_message(Request::Fetch(null), FETCH_VERSION, ME, "c1").unwrap();
    assert_eq!(m2, m);
}

#[test]
fn responses_round_trip_and_errors_land_where_kafka_puts_them() {
    let msgs = [
        Message::VoteResponse(VoteResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(7),
            leader_id: None,
            vote_granted: true,
        }),
        Message::VoteResponse(VoteResponse {
            error_code: ErrorCode::FENCED_LEADER_EPOCH,
            leader_epoch: LeaderEpoch(9),
            leader_id: Some(NodeId(1)),
            vote_granted: false,
        }),
        Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
            error_code: ErrorCode::INCONSISTENT_VOTER_SET,
            leader_epoch: LeaderEpoch(7),
            leader_id: Some(NodeId(3)),
        }),
        Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(7),
            leader_id: Some(NodeId(3)),
        }),
        Message::FetchResponse(FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(7),
            leader_id: Some(NodeId(3)),
            high_watermark: Offset(10),
            diverging_epoch: Some(DivergingEpoch {
                epoch: LeaderEpoch(4),
                end_offset: Offset(8),
            }),
            snapshot_id: None,
            records: vec![],
        }),
        Message::FetchResponse(FetchResponse {
            error_code: ErrorCode::NONE,
            leader_epoch: LeaderEpoch(7),
            leader_id: Some(NodeId(3)),
            high_watermark: Offset(10),
            diverging_epoch: None,
            snapshot_id: Some(fjord_raft::SnapshotId {
                end_offset: Offset(9),
                epoch: LeaderEpoch(6),
            }),
            records: vec![],
        }),
    ];
    for m in msgs {
        assert_eq!(response_through_wire(&m, None).message, m);
    }
    // A wrong cluster id is a top-level error: the partition data is absent.
    let m = Message::VoteResponse(VoteResponse {
        error_code: ErrorCode::INCONSISTENT_CLUSTER_ID,
        leader_epoch: LeaderEpoch(9),
        leader_id: Some(NodeId(1)),
        vote_granted: false,
    });
    let frame = response_frame(1, VOTE_VERSION, &m, None, false).unwrap();
    let (_, body) = fjord_client::decode_response::<km::VoteResponse>(
        Bytes::copy_from_slice(&frame[4..]),
        VOTE_VERSION,
    )
    .unwrap();
    assert_eq!(body.error_code, ErrorCode::INCONSISTENT_CLUSTER_ID.0);
    assert!(body.topics.is_empty());
    let back = response_through_wire(&m, None).message;
    assert_eq!(
        back,
        Message::VoteResponse(VoteResponse {
            error_code: ErrorCode::INCONSISTENT_CLUSTER_ID,
            leader_epoch: LeaderEpoch(-1),
            leader_id: None,
            vote_granted: false,
        })
    );
}

#[test]
fn fetch_response_carries_the_logs_batches() {
    let lc = ControlRecord::LeaderChange {
        leader_id: 3,
        voters: vec![1, 2, 3],
        granting_voters: vec![2, 3],
    };
    let mut raw = Vec::new();
    let mut b = BatchBuilder::new(Compression::None)
        .partition_leader_epoch(7)
        .control(true);
    b.push(1, Some(&lc.key()), Some(&lc.value()), &[]);
    raw.extend(b.build(10));
    let mut b = BatchBuilder::new(Compression::None).partition_leader_epoch(7);
    b.push(1, None, Some(b"rec-a"), &[]);
    b.push(1, None, Some(b"rec-b"), &[]);
    raw.extend(b.build(11));
    let entries = decode_entries(&raw).unwrap();
    let want = vec![
        Entry {
            offset: Offset(10),
            epoch: LeaderEpoch(7),
            data: EntryData::LeaderChange {
                leader_id: NodeId(3),
                voters: vec![NodeId(1), NodeId(2), NodeId(3)],
            },
        },
        Entry {
            offset: Offset(11),
            epoch: LeaderEpoch(7),
            data: EntryData::Data(b"rec-a".to_vec()),
        },
        Entry {
            offset: Offset(12),
            epoch: LeaderEpoch(7),
            data: EntryData::Data(b"rec-b".to_vec()),
        },
    ];
    assert_eq!(entries, want);
    let m = Message::FetchResponse(FetchResponse {
        error_code: ErrorCode::NONE,
        leader_epoch: LeaderEpoch(7),
        leader_id: Some(NodeId(3)),
        high_watermark: Offset(11),
        diverging_epoch: None,
        snapshot_id: None,
        records: want.clone(),
    });
    let d = response_through_wire(&m, Some(Bytes::from(raw.clone())));
    assert_eq!(d.message, m);
    assert_eq!(&d.raw_records[..], &raw[..]);
    // A damaged batch is refused, not half-read.
    let mut bad = raw;
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(decode_entries(&bad).is_err());
}

#[test]
fn refusals_are_top_level_errors_of_the_right_api() {
    for (api, v) in [
        (ApiKey::Vote, VOTE_VERSION),
        (ApiKey::BeginQuorumEpoch, BEGIN_QUORUM_EPOCH_VERSION),
        (ApiKey::EndQuorumEpoch, END_QUORUM_EPOCH_VERSION),
        (ApiKey::Fetch, FETCH_VERSION),
    ] {
        let f = refusal_frame(api as i16, v, 9, ErrorCode::INVALID_REQUEST).unwrap();
        let d = decode_response(api, v, Bytes::copy_from_slice(&f[4..])).unwrap();
        let code = match d.message {
            Message::VoteResponse(r) => r.error_code,
            Message::BeginQuorumEpochResponse(r) => r.error_code,
            Message::EndQuorumEpochResponse(r) => r.error_code,
            Message::FetchResponse(r) => r.error_code,
            _ => panic!("a request"),
        };
        assert_eq!(code, ErrorCode::INVALID_REQUEST, "{api:?}");
    }
    assert!(refusal_frame(ApiKey::Produce as i16, 9, 1, ErrorCode::NONE).is_err());
}

/// The body of `frame` (size prefix and response header skipped).
fn denied_body(frame: &BytesMut, api: ApiKey, version: i16) -> Bytes {
    use bytes::Buf as _;
    let mut b = Bytes::copy_from_slice(&frame[4..]);
    assert_eq!(b.get_i32(), 31, "correlation id");
    if fjord_protocol::response_header_version(api as i16, version) >= 1 {
        assert_eq!(b.get_u8(), 0, "no tagged fields in the header");
    }
    b
}

fn denied<Req: Encodable>(api: ApiKey, version: i16, req: &Req) -> Bytes {
    let mut body = BytesMut::new();
    req.encode(&mut body, version).unwrap();
    let mut r = Reader::new(body.freeze());
    let f = denied_frame(
        api as i16,
        version,
        31,
        ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
        &mut r,
    )
    .unwrap();
    let len = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
    assert_eq!(len, f.len() - 4);
    denied_body(&f, api, version)
}

#[test]
fn denied_controller_requests_get_kafkas_cluster_authorization_failed() {
    use fjord_protocol::kafka_protocol::protocol::Decodable;
    const DENIED: i16 = 31;
    let v = 1;
    let mut b = denied(
        ApiKey::BrokerRegistration,
        v,
        &km::BrokerRegistrationRequest::default(),
    );
    let r = km::BrokerRegistrationResponse::decode(&mut b, v).unwrap();
    assert_eq!((r.error_code, r.broker_epoch), (DENIED, -1));
    let mut b = denied(
        ApiKey::BrokerHeartbeat,
        v,
        &km::BrokerHeartbeatRequest::default(),
    );
    let r = km::BrokerHeartbeatResponse::decode(&mut b, v).unwrap();
    assert_eq!(r.error_code, DENIED);
    assert!(r.is_fenced, "Kafka's default");
    let mut b = denied(
        ApiKey::AlterPartition,
        2,
        &km::AlterPartitionRequest::default(),
    );
    let r = km::AlterPartitionResponse::decode(&mut b, 2).unwrap();
    assert_eq!(r.error_code, DENIED);
    let topic = |n: &'static str| {
        km::create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(n)))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    let req = km::CreateTopicsRequest::default().with_topics(vec![topic("a"), topic("b")]);
    let mut b = denied(ApiKey::CreateTopics, 7, &req);
    let r = km::CreateTopicsResponse::decode(&mut b, 7).unwrap();
    let got: Vec<(&str, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.error_code))
        .collect();
    assert_eq!(got, vec![("a", DENIED), ("b", DENIED)]);
    let mut b = denied(
        ApiKey::DescribeQuorum,
        2,
        &km::DescribeQuorumRequest::default(),
    );
    let r = km::DescribeQuorumResponse::decode(&mut b, 2).unwrap();
    assert_eq!(r.error_code, DENIED);
    // A quorum API keeps its own refusal.
    let f = denied_frame(
        ApiKey::Vote as i16,
        VOTE_VERSION,
        31,
        ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
        &mut Reader::new(Bytes::new()),
    )
    .unwrap();
    let d = decode_response(ApiKey::Vote, VOTE_VERSION, Bytes::copy_from_slice(&f[4..])).unwrap();
    assert!(
        matches!(d.message, Message::VoteResponse(r) if r.error_code == ErrorCode::CLUSTER_AUTHORIZATION_FAILED)
    );
}

#[test]
fn a_fetch_response_names_the_leaders_endpoint() {
    let m = Message::FetchResponse(FetchResponse {
        error_code: ErrorCode::NOT_LEADER_OR_FOLLOWER,
        leader_epoch: LeaderEpoch(4),
        leader_id: Some(NodeId(2)),
        high_watermark: Offset(-1),
        diverging_epoch: None,
        snapshot_id: None,
        records: Vec::new(),
    });
    let addr: std::net::SocketAddr = "127.0.0.1:9193".parse().unwrap();
    let (api, version) = api_of(&m);
    let frame =
        response_frame_with_leader(5, version, &m, None, false, Some((NodeId(2), addr))).unwrap();
    let d = decode_response(api, version, Bytes::copy_from_slice(&frame[4..])).unwrap();
    assert_eq!(d.leader_endpoint, Some((NodeId(2), addr)));
    assert_eq!(d.message, m);
    // Only the leader's endpoint is named.
    let frame =
        response_frame_with_leader(5, version, &m, None, false, Some((NodeId(3), addr))).unwrap();
    let d = decode_response(api, version, Bytes::copy_from_slice(&frame[4..])).unwrap();
    assert_eq!(d.leader_endpoint, None);
}
