//! Consumer-group APIs through `handlers::dispatch` against a real broker in a
//! temporary directory: every advertised version answers and parses; a
//! two-member group forms (MEMBER_ID_REQUIRED, held JoinGroup, held
//! SyncGroup); commits survive a broker restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use fjord_broker::groups::OFFSETS_TOPIC;
use fjord_broker::handlers::{dispatch, supported};
use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_protocol::{Reader, RequestHeader};

fn open(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        num_partitions: 2,
        ..BrokerConfig::default()
    };
    Broker::open(config).unwrap()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn call<Req: Encodable, Resp: Decodable>(
    broker: &Arc<Broker>,
    api_key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    let mut buf = BytesMut::new();
    body.encode(&mut buf, version).unwrap();
    let header = RequestHeader {
        api_key: api_key as i16,
        api_version: version,
        correlation_id: 7,
        client_id: Some("test".into()),
    };
    let pending = dispatch(broker, header, Reader::new(buf.freeze())).expect("request refused");
    let resp = tokio::time::timeout(Duration::from_secs(20), pending.resolve())
        .await
        .expect("response in time")
        .expect("handler died")
        .expect("a response");
    let mut resp = resp.to_bytes().unwrap();
    let size = resp.get_i32() as usize;
    assert_eq!(size, resp.len());
    assert_eq!(resp.get_i32(), 7);
    if fjord_protocol::response_header_version(api_key as i16, version) >= 1 {
        assert_eq!(resp.get_u8(), 0);
    }
    let v = Resp::decode(&mut resp, version).unwrap();
    assert_eq!(
        resp.remaining(),
        0,
        "{api_key:?} v{version}: trailing bytes"
    );
    v
}

fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    supported()
        .into_iter()
        .find(|(k, _)| *k == api_key as i16)
        .map(|(_, v)| v)
        .unwrap()
}

/// The versions of `api_key` kafka-protocol can encode: OffsetCommit and
/// OffsetFetch v10 name topics by id, a layout it cannot write (those are
/// covered by every_version.rs's `offset_commit_and_fetch_by_topic_id`).
fn named_versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let all = versions(api_key);
    let last = all
        .clone()
        .rev()
        .find(|v| !fjord_protocol::is_newer_layout(api_key as i16, *v))
        .unwrap();
    *all.start()..=last
}

fn join_req(member_id: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(
            b"\0\0\0\0\0\x01\0\x01t\xff\xff\xff\xff",
        ))])
}

/// The error OffsetCommit answered for partition `partition` of topic t.
fn commit_error(r: &OffsetCommitResponse, partition: i32) -> i16 {
    let p = r.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == partition);
    p.expect("partition answered").error_code
}

fn commit_req(generation: i32, member: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1),
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(9)
                        .with_committed_offset(offset),
                ]),
        ])
}

async fn create_topic(b: &Arc<Broker>) {
    b.create_topic("t", 2, Default::default(), false).unwrap();
}

#[tokio::test]
async fn find_coordinator_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    for v in versions(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g"), s("h")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        };
        let r: FindCoordinatorResponse = call(&b, ApiKey::FindCoordinator, v, &req).await;
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            assert_eq!(r.coordinators[1].key.as_str(), "h");
            assert_eq!(r.coordinators[0].node_id.0, b.config.node_id.0);
            assert_eq!(r.coordinators[0].error_code, 0);
        } else {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.node_id.0, b.config.node_id.0);
            assert_eq!(r.port, b.config.advertised_port as i32);
        }
    }
}

#[tokio::test]
async fn group_forms_commits_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    create_topic(&b).await;

    // Member A: v5 without instance id -> MEMBER_ID_REQUIRED, then joins.
    let r: JoinGroupResponse = call(&b, ApiKey::JoinGroup, 5, &join_req("", None)).await;
    assert_eq!(r.error_code, 79);
    let a = r.member_id.to_string();
    assert!(!a.is_empty());
    // The initial rebalance delay (3 s) holds the response; a second member joins meanwhile.
    let b2 = b.clone();
    let a2 = a.clone();
    let join_a = tokio::spawn(async move {
        call::<_, JoinGroupResponse>(&b2, ApiKey::JoinGroup, 7, &join_req(&a2, None)).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Member B: static (v5+), no MEMBER_ID_REQUIRED.
    let rb: JoinGroupResponse = call(&b, ApiKey::JoinGroup, 9, &join_req("", Some("inst-b"))).await;
    let ra = join_a.await.unwrap();
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!(ra.generation_id, rb.generation_id);
    assert_eq!(ra.leader.as_str(), a);
    assert_eq!(ra.members.len(), 2, "leader sees both members");
    assert!(rb.members.is_empty());
    assert_eq!(
        ra.protocol_type.as_ref().map(|p| p.as_str()),
        Some("consumer")
    );
    let generation = ra.generation_id;
    let bid = rb.member_id.to_string();

    // Follower's SyncGroup is held until the leader's arrives.
    let b3 = b.clone();
    let bid2 = bid.clone();
    let sync_b = tokio::spawn(async move {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(s(&bid2))
            .with_group_instance_id(Some(s("inst-b")))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
        call::<_, SyncGroupResponse>(&b3, ApiKey::SyncGroup, 5, &req).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sync_b.is_finished());
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(generation)
        .with_member_id(s(&a))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&a))
                .with_assignment(Bytes::from_static(b"A")),
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&bid))
                .with_assignment(Bytes::from_static(b"B")),
        ]);
    let sa: SyncGroupResponse = call(&b, ApiKey::SyncGroup, 3, &req).await;
    let sb = sync_b.await.unwrap();
    assert_eq!(sa.assignment, Bytes::from_static(b"A"));
    assert_eq!(sb.assignment, Bytes::from_static(b"B"));
    assert_eq!(sb.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));

    for v in versions(ApiKey::Heartbeat) {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(s(&a));
        let r: HeartbeatResponse = call(&b, ApiKey::Heartbeat, v, &req).await;
        assert_eq!(r.error_code, 0, "heartbeat v{v}");
    }

    // Commits: every version; partition 9 does not exist and is answered
    // first, as Kafka answers unknown partitions before the coordinator's.
    for v in named_versions(ApiKey::OffsetCommit) {
        let req = commit_req(generation, &a, 100 + v as i64);
        let r: OffsetCommitResponse = call(&b, ApiKey::OffsetCommit, v, &req).await;
        let codes: Vec<(i32, i16)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(codes, vec![(9, 3), (1, 0)], "v{v}");
    }
    // A simple commit (generation -1, no member) to an active group is refused.
    let r: OffsetCommitResponse = call(&b, ApiKey::OffsetCommit, 2, &commit_req(-1, "", 1)).await;
    assert_eq!(commit_error(&r, 1), 25);
    let last = 100 + *named_versions(ApiKey::OffsetCommit).end() as i64;
    let stale: OffsetCommitResponse = call(
        &b,
        ApiKey::OffsetCommit,
        8,
        &commit_req(generation - 1, &a, 1),
    )
    .await;
    assert_eq!(commit_error(&stale, 1), 22);

    check_fetch(&b, last).await;

    // ListGroups / DescribeGroups at every version.
    for v in versions(ApiKey::ListGroups) {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req = req.with_states_filter(vec![s("Stable")]);
        }
        let r: ListGroupsResponse = call(&b, ApiKey::ListGroups, v, &req).await;
        assert_eq!(r.groups.len(), 1, "v{v}");
        assert_eq!(r.groups[0].protocol_type.as_str(), "consumer");
    }
    for v in versions(ApiKey::DescribeGroups) {
        let req =
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("nope"))]);
        let r: DescribeGroupsResponse = call(&b, ApiKey::DescribeGroups, v, &req).await;
        assert_eq!(r.groups[0].group_state.as_str(), "Stable");
        assert_eq!(r.groups[0].protocol_data.as_str(), "range");
        assert_eq!(r.groups[0].members.len(), 2);
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");
    }
    // Non-empty group cannot be deleted.
    let r: DeleteGroupsResponse = call(
        &b,
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
    )
    .await;
    assert_eq!(r.results[0].error_code, 68);

    // Restart: offsets and the Stable group come back from __consumer_offsets.
    b.close();
    drop(b);
    let b = open(dir.path());
    check_fetch(&b, last).await;
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(generation)
        .with_member_id(s(&a));
    let r: HeartbeatResponse = call(&b, ApiKey::Heartbeat, 4, &req).await;
    assert_eq!(
        r.error_code, 0,
        "member survives restart within its session"
    );

    // Both leave (v3+ batch, static by instance id); then the group can be deleted.
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&a)),
            leave_group_request::MemberIdentity::default()
                .with_member_id(s(""))
                .with_group_instance_id(Some(s("inst-b"))),
        ]);
    let r: LeaveGroupResponse = call(&b, ApiKey::LeaveGroup, 5, &req).await;
    assert_eq!(r.error_code, 0);
    assert!(
        r.members.iter().all(|m| m.error_code == 0),
        "{:?}",
        r.members
    );
    let r: OffsetDeleteResponse = call(
        &b,
        ApiKey::OffsetDelete,
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]),
    )
    .await;
    assert_eq!(r.error_code, 0);
    for v in versions(ApiKey::DeleteGroups) {
        let r: DeleteGroupsResponse = call(
            &b,
            ApiKey::DeleteGroups,
            v,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
        )
        .await;
        let want = if v == 0 { 0 } else { 69 };
        assert_eq!(r.results[0].error_code, want, "v{v}");
    }
    check_fetch(&b, -1).await;
}

/// OffsetFetch at every version sees `offset` for t-1 and -1 for t-0.
async fn check_fetch(b: &Arc<Broker>, offset: i64) {
    for v in named_versions(ApiKey::OffsetFetch) {
        let (p0, p1, epoch) = if v >= 8 {
            let req = OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0, 1]),
                    ])),
            ]);
            let r: OffsetFetchResponse = call(b, ApiKey::OffsetFetch, v, &req).await;
            let ps = &r.groups[0].topics[0].partitions;
            (
                ps[0].committed_offset,
                ps[1].committed_offset,
                ps[0].committed_leader_epoch,
            )
        } else {
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1]),
                ]));
            let r: OffsetFetchResponse = call(b, ApiKey::OffsetFetch, v, &req).await;
            let ps = &r.topics[0].partitions;
            (
                ps[0].committed_offset,
                ps[1].committed_offset,
                ps[0].committed_leader_epoch,
            )
        };
        assert_eq!((p0, p1), (-1, offset), "OffsetFetch v{v}");
        if v >= 5 {
            assert_eq!(epoch, -1, "unknown epoch is -1");
        }
    }
}

fn open_deferred(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        num_partitions: 2,
        ..BrokerConfig::default()
    };
    Broker::open_deferred(config).unwrap()
}

/// Asks FindCoordinator until it names this node; returns how many answers
/// were COORDINATOR_NOT_AVAILABLE (the only other answer allowed) first.
async fn until_coordinator(b: &Arc<Broker>) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut not_available = 0;
    loop {
        let req = FindCoordinatorRequest::default().with_key(s("g"));
        let r: FindCoordinatorResponse = call(b, ApiKey::FindCoordinator, 3, &req).await;
        match r.error_code {
            0 => return not_available,
            15 => not_available += 1,
            other => panic!("FindCoordinator answered {other}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "coordinator not ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn deferred_start_creates_offsets_topic_on_first_group_request() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_deferred(dir.path());
    create_topic(&b).await;
    assert!(
        b.topic(OFFSETS_TOPIC).is_none(),
        "nothing created before a group request"
    );
    // A commit before the coordinator exists is refused with a retriable error...
    let r: OffsetCommitResponse = call(&b, ApiKey::OffsetCommit, 2, &commit_req(-1, "", 7)).await;
    assert_eq!(commit_error(&r, 1), 15);
    // ...and started the creation; FindCoordinator answers once it is done.
    until_coordinator(&b).await;
    let topic = b.topic(OFFSETS_TOPIC).expect("created");
    assert_eq!(topic.partition_count(), 50);
    let r: OffsetCommitResponse = call(&b, ApiKey::OffsetCommit, 2, &commit_req(-1, "", 7)).await;
    assert_eq!((commit_error(&r, 1), commit_error(&r, 9)), (0, 3));
    check_fetch(&b, 7).await;
}

#[tokio::test]
async fn deferred_start_replays_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    create_topic(&b).await;
    let r: OffsetCommitResponse = call(&b, ApiKey::OffsetCommit, 2, &commit_req(-1, "", 42)).await;
    assert_eq!(commit_error(&r, 1), 0);
    b.close();
    drop(b);

    let b = open_deferred(dir.path());
    // The topic is open at once (Produce/Fetch need not wait for the replay).
    assert!(b.topic("t").is_some());
    until_coordinator(&b).await;
    check_fetch(&b, 42).await;
}

#[tokio::test]
async fn clients_cannot_create_the_offsets_topic() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_deferred(dir.path());
    // Metadata's auto-create and CreateTopics both end here.
    let e = b
        .create_topic(OFFSETS_TOPIC, 1, Default::default(), false)
        .err()
        .expect("refused");
    let (code, _) = fjord_broker::errors::state_error(&e);
    assert_eq!(code.0, 5, "LEADER_NOT_AVAILABLE");
    // The broker creates it with its own settings instead.
    until_coordinator(&b).await;
    let topic = b.topic(OFFSETS_TOPIC).expect("created");
    assert_eq!(topic.partition_count(), 50);
    assert_eq!(topic.settings.read().cleanup_policy, "compact");
    let e = b
        .create_topic(OFFSETS_TOPIC, 1, Default::default(), false)
        .err()
        .expect("refused");
    assert_eq!(fjord_broker::errors::state_error(&e).0 .0, 36);
}
