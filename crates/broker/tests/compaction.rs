//! Compaction in the broker: `__consumer_offsets` is a compacted topic, and the group
//! state its shards replay from the compacted log (the coordinator's load path, at
//! broker open) equals the state replayed from the full log; the broker's cleaner
//! threads compact a `cleanup.policy=compact` topic on their own.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{call, name, s};
use fjord_broker::groups::OFFSETS_TOPIC;
use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::CleanOptions;

const GROUPS: usize = 6;
const PARTITIONS: i32 = 3;

fn config(dir: &std::path::Path, cleaner_threads: usize) -> BrokerConfig {
    let mut c = BrokerConfig {
        data_dir: dir.to_path_buf(),
        num_partitions: PARTITIONS,
        ..BrokerConfig::default()
    };
    // Small segments, so that many of them are sealed and cleanable.
    c.topic_defaults.segment_bytes = 1024;
    c.groups.offsets_segment_bytes = 1024;
    c.cleaner.threads = cleaner_threads;
    c.cleaner.backoff = Duration::from_millis(20);
    c
}

async fn commit(b: &Arc<Broker>, group: &str, offset: i64) {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset + i64::from(p))
                                .with_committed_metadata(Some(s(&format!("m{offset}"))))
                        })
                        .collect(),
                ),
        ]);
    let r: OffsetCommitResponse = call(b, ApiKey::OffsetCommit, 8, &req).await;
    for p in &r.topics[0].partitions {
        assert_eq!(p.error_code, 0, "commit of {group} at {offset}");
    }
}

/// Every group's committed offsets and metadata, by OffsetFetch.
async fn state(b: &Arc<Broker>) -> BTreeMap<(String, i32), (i64, Option<String>)> {
    let mut out = BTreeMap::new();
    for g in 0..GROUPS {
        let group = format!("group-{g}");
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes((0..PARTITIONS).collect()),
            ]));
        let r: OffsetFetchResponse = call(b, ApiKey::OffsetFetch, 7, &req).await;
        assert_eq!(r.error_code, 0, "OffsetFetch of {group}");
        for p in &r.topics[0].partitions {
            out.insert(
                (group.clone(), p.partition_index),
                (
                    p.committed_offset,
                    p.metadata.as_ref().map(|m| m.to_string()),
                ),
            );
        }
    }
    out
}

#[test]
fn offsets_topic_is_created_with_offsets_topic_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 0);
    c.topic_defaults.segment_bytes = 1 << 30;
    c.groups.offsets_segment_bytes = 4096;
    let b = Broker::open(c).unwrap();
    let t = b.topic(OFFSETS_TOPIC).expect("offsets topic");
    let parts = t.partitions.read().clone();
    for p in parts {
        let cfg = p.log.config();
        assert_eq!(cfg.segment_bytes_max, 4096);
        assert!(cfg.compact && !cfg.delete);
    }
    b.close();
}

fn offsets_topic_bytes(b: &Arc<Broker>) -> u64 {
    let t = b.topic(OFFSETS_TOPIC).expect("offsets topic");
    let parts = t.partitions.read();
    parts.iter().map(|p| p.log.size_bytes()).sum()
}

#[tokio::test]
async fn group_state_replayed_from_compacted_offsets_topic_equals_the_full_log() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path(), 0)).unwrap();
    b.create_topic("t", PARTITIONS, Default::default(), false)
        .unwrap();
    for round in 0..150 {
        for g in 0..GROUPS {
            commit(&b, &format!("group-{g}"), round * 10 + g as i64).await;
        }
    }
    let live = state(&b).await;
    assert_eq!(live.len(), GROUPS * PARTITIONS as usize);
    assert!(live.values().all(|(o, _)| *o >= 1490), "{live:?}");
    b.close();
    drop(b);

    // The full log, replayed.
    let b = Broker::open(config(dir.path(), 0)).unwrap();
    assert_eq!(state(&b).await, live, "replay of the full log");
    // Compact every partition of the offsets topic (a round cleans the sealed segments).
    let before = offsets_topic_bytes(&b);
    {
        let t = b.topic(OFFSETS_TOPIC).unwrap();
        let parts = t.partitions.read().clone();
        let mut rounds = 0;
        for p in parts {
            p.log.flush().unwrap();
            if p.log
                .clean(fjord_broker::state::now_ms(), &CleanOptions::default())
                .unwrap()
                .is_some()
            {
                rounds += 1;
            }
        }
        assert!(rounds > 0, "nothing was cleaned");
    }
    let after = offsets_topic_bytes(&b);
    assert!(after * 4 < before, "{after} of {before} bytes left");
    b.close();
    drop(b);

    // The compacted log, replayed through the coordinator's load path.
    let b = Broker::open(config(dir.path(), 0)).unwrap();
    assert_eq!(state(&b).await, live, "replay of the compacted log");
    b.close();
}

fn keyed_batch(key: u32, version: u32) -> Vec<u8> {
    let mut bb = BatchBuilder::new(Compression::None);
    let value = format!("version-{version}-{}", "v".repeat(64));
    bb.push(
        fjord_broker::state::now_ms(),
        Some(format!("key-{key}").as_bytes()),
        Some(value.as_bytes()),
        &[],
    );
    bb.build(0)
}

#[tokio::test]
async fn the_broker_cleaner_compacts_a_compact_topic() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path(), 1)).unwrap();
    let overrides = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
    ]);
    b.create_topic("c", 1, overrides, false).unwrap();
    let t = b.topic("c").expect("created");
    let log = Arc::clone(&t.partitions.read()[0].log);
    assert!(log.config().compact);
    assert_eq!(log.config().min_cleanable_dirty_ratio_ppm, 10_000);
    // The cleaner may start while this runs (a roll persists the recovery point).
    let mut before = 0;
    for version in 0..200 {
        let mut batch = keyed_batch(version % 5, version);
        before += batch.len() as u64;
        log.append(&mut batch, fjord_broker::state::now_ms())
            .unwrap();
    }
    log.flush().unwrap();
    b.wake_cleaner();
    // Rounds run until every sealed segment is clean: well under half the bytes stay.
    // The cleaner counts a round after its swap, so the size may drop first.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let counted = |b: &Broker| b.cleaner_totals().is_some_and(|t| t.rounds > 0);
    while log.size_bytes() * 2 >= before || !counted(&b) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {before} bytes left after 30 s",
            log.size_bytes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let totals = b.cleaner_totals().expect("cleaner runs");
    assert!(totals.rounds > 0, "{totals:?}");
    assert!(totals.bytes_after < totals.bytes_before, "{totals:?}");
    b.close();
}
