//! The group coordinator's shards against a damaged `__consumer_offsets`:
//! 200 commits for one group, a clean stop, one batch in the middle of that
//! group's partition damaged (its magic byte), a restart. The group's
//! committed offset must never read as "none" without an error: its shard
//! answers NOT_COORDINATOR (what Apache Kafka 4.3.1 answers in the same
//! test) while a group of another shard is served; once the batch is
//! repaired, a retried load brings every commit back.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{call, name, named_versions, open_broker, s};
use fjord_broker::groups::OFFSETS_TOPIC;
use fjord_broker::Broker;
use fjord_protocol::kafka_protocol::messages::*;

const VICTIM: &str = "victim";
const COMMITS: i64 = 200;
/// Byte position of the magic byte in a v2 batch header.
const MAGIC_AT: usize = 16;

/// A group id whose `__consumer_offsets` partition differs from `VICTIM`'s.
fn bystander() -> String {
    let victim = fjord_group::offsets_partition_for(VICTIM, 50);
    (0..)
        .map(|i| format!("bystander-{i}"))
        .find(|g| fjord_group::offsets_partition_for(g, 50) != victim)
        .unwrap()
}

fn commit_req(group: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1),
                ]),
        ])
}

async fn commit(b: &Arc<Broker>, group: &str, offset: i64) -> i16 {
    let r: OffsetCommitResponse =
        call(b, ApiKey::OffsetCommit, 8, &commit_req(group, offset)).await;
    r.topics[0].partitions[0].error_code
}

/// (group error, partition error, committed offset) of partition t-0, at `version`.
async fn fetch(b: &Arc<Broker>, group: &str, version: i16) -> (i16, i16, i64) {
    let topics = Some(vec![
        offset_fetch_request::OffsetFetchRequestTopics::default()
            .with_name(name("t"))
            .with_partition_indexes(vec![0]),
    ]);
    if version >= 8 {
        let req = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(topics),
        ]);
        let r: OffsetFetchResponse = call(b, ApiKey::OffsetFetch, version, &req).await;
        let g = &r.groups[0];
        let p = g.topics.first().and_then(|t| t.partitions.first());
        (
            g.error_code,
            p.map_or(-1, |p| p.error_code),
            p.map_or(-1, |p| p.committed_offset),
        )
    } else {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]),
            ]));
        let r: OffsetFetchResponse = call(b, ApiKey::OffsetFetch, version, &req).await;
        let p = r.topics.first().and_then(|t| t.partitions.first());
        (
            if version >= 2 { r.error_code } else { 0 },
            p.map_or(-1, |p| p.error_code),
            p.map_or(-1, |p| p.committed_offset),
        )
    }
}

/// Byte positions of every batch in a segment file.
fn batch_positions(segment: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 12 <= segment.len() {
        out.push(at);
        let len = i32::from_be_bytes(segment[at + 8..at + 12].try_into().unwrap());
        at += 12 + len as usize;
    }
    out
}

#[tokio::test]
async fn a_damaged_offsets_partition_never_reads_as_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let bystander = bystander();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 1, Default::default(), false).unwrap();
    for offset in 1..=COMMITS {
        assert_eq!(commit(&b, VICTIM, offset).await, 0);
    }
    assert_eq!(commit(&b, &bystander, 7).await, 0);
    assert_eq!(fetch(&b, VICTIM, 8).await, (0, 0, COMMITS));
    b.close();
    drop(b);

    // Damage one batch in the middle of the victim's partition.
    let p = fjord_group::offsets_partition_for(VICTIM, 50);
    let segment = dir
        .path()
        .join(format!("{OFFSETS_TOPIC}-{p}"))
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let positions = batch_positions(&bytes);
    assert_eq!(positions.len() as i64, COMMITS, "one batch per commit");
    let magic_at = positions[positions.len() / 2] + MAGIC_AT;
    assert_eq!(bytes[magic_at], 2);
    bytes[magic_at] = 0;
    std::fs::write(&segment, &bytes).unwrap();

    // Broker::open waits for every shard to load or fail.
    let b = open_broker(dir.path(), 1);
    for v in named_versions(ApiKey::OffsetFetch) {
        let (group_error, partition_error, offset) = fetch(&b, VICTIM, v).await;
        assert_ne!(
            (group_error, partition_error),
            (0, 0),
            "v{v}: the victim's offset read as {offset} with no error"
        );
        // NOT_COORDINATOR (16), or COORDINATOR_LOAD_IN_PROGRESS (14) if a retry is running.
        assert!(
            matches!(partition_error, 14 | 16),
            "v{v}: partition error {partition_error}"
        );
        if v >= 2 {
            assert_eq!(group_error, partition_error, "v{v}");
        }
    }
    // A commit to the damaged shard is refused, not written over partial state.
    assert!(matches!(commit(&b, VICTIM, 999).await, 14 | 16));
    let hb: HeartbeatResponse = call(
        &b,
        ApiKey::Heartbeat,
        4,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(s(VICTIM)))
            .with_generation_id(1)
            .with_member_id(s("m")),
    )
    .await;
    assert!(
        matches!(hb.error_code, 14 | 16),
        "heartbeat {}",
        hb.error_code
    );
    // FindCoordinator still names this node (as Kafka): the client then gets
    // NOT_COORDINATOR from the group request and retries.
    let fc: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s(VICTIM)]),
    )
    .await;
    assert_eq!(fc.coordinators[0].error_code, 0);

    // Another shard serves: reads and writes.
    assert_eq!(fetch(&b, &bystander, 8).await, (0, 0, 7));
    assert_eq!(commit(&b, &bystander, 8).await, 0);
    assert_eq!(fetch(&b, &bystander, 8).await, (0, 0, 8));
    // ListGroups lists the shards that serve.
    let lg: ListGroupsResponse =
        call(&b, ApiKey::ListGroups, 4, &ListGroupsRequest::default()).await;
    let listed: Vec<&str> = lg.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert_eq!((lg.error_code, listed), (0, vec![bystander.as_str()]));

    // Repair the batch: a retried load (after its backoff) brings back every commit.
    bytes[magic_at] = 2;
    std::fs::write(&segment, &bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (group_error, partition_error, offset) = fetch(&b, VICTIM, 8).await;
        if group_error == 0 {
            assert_eq!((partition_error, offset), (0, COMMITS));
            break;
        }
        assert!(matches!(group_error, 14 | 16), "error {group_error}");
        assert!(Instant::now() < deadline, "the shard never loaded again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(commit(&b, VICTIM, COMMITS + 1).await, 0);
    assert_eq!(fetch(&b, VICTIM, 8).await, (0, 0, COMMITS + 1));
}
