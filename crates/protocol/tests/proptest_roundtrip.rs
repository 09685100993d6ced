//! Property tests: requests with generated field values, at a generated
//! version, survive kafka-protocol encode -> our decode unchanged.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{roundtrip, s};
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::metadata_request::{
    MetadataRequest, MetadataRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName, TransactionalId};
use fjord_protocol::Request;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use uuid::Uuid;

fn name() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn tags(flexible: bool) -> BoxedStrategy<BTreeMap<i32, Bytes>> {
    if flexible {
        btree_map(
            2i32..200,
            vec(any::<u8>(), 0..6).prop_map(Bytes::from),
            0..3,
        )
        .boxed()
    } else {
        Just(BTreeMap::new()).boxed()
    }
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn produce(v: i16) -> impl Strategy<Value = ProduceRequest> {
    let f = v >= 9;
    let partition = (any::<i32>(), option::of(vec(any::<u8>(), 0..40)), tags(f)).prop_map(
        |(index, records, t)| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(records.map(Bytes::from))
                .with_unknown_tagged_fields(t)
        },
    );
    let topic = (name(), uuid(), vec(partition, 0..4), tags(f)).prop_map(move |(n, id, p, t)| {
        let mut topic = TopicProduceData::default()
            .with_partition_data(p)
            .with_unknown_tagged_fields(t);
        if v <= 12 {
            topic = topic.with_name(TopicName(s(&n)));
        } else {
            topic = topic.with_topic_id(id);
        }
        topic
    });
    (
        option::of(name()),
        any::<i16>(),
        any::<i32>(),
        vec(topic, 0..4),
        tags(f),
    )
        .prop_map(|(tx, acks, timeout, topics, t)| {
            ProduceRequest::default()
                .with_transactional_id(tx.map(|x| TransactionalId(s(&x))))
                .with_acks(acks)
                .with_timeout_ms(timeout)
                .with_topic_data(topics)
                .with_unknown_tagged_fields(t)
        })
}

fn fetch(v: i16) -> impl Strategy<Value = FetchRequest> {
    let f = v >= 12;
    let partition = (
        any::<(i32, i32, i64, i32, i64, i32)>(),
        uuid(),
        any::<i64>(),
        tags(f),
    )
        .prop_map(move |((p, epoch, off, last, start, max), dir, hw, t)| {
            let mut fp = FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(off)
                .with_partition_max_bytes(max)
                .with_unknown_tagged_fields(t);
            if v >= 9 {
                fp = fp.with_current_leader_epoch(epoch);
            }
            if v >= 12 {
                fp = fp.with_last_fetched_epoch(last);
            }
            if v >= 5 {
                fp = fp.with_log_start_offset(start);
            }
            if v >= 17 {
                fp = fp.with_replica_directory_id(dir);
            }
            if v >= 18 {
                fp = fp.with_high_watermark(hw);
            }
            fp
        });
    let topic = (name(), uuid(), vec(partition, 0..4), tags(f)).prop_map(move |(n, id, p, t)| {
        let mut ft = FetchTopic::default()
            .with_partitions(p)
            .with_unknown_tagged_fields(t);
        if v <= 12 {
            ft = ft.with_topic(TopicName(s(&n)));
        } else {
            ft = ft.with_topic_id(id);
        }
        ft
    });
    (
        any::<(i32, i32, i32, i32, i8, i32, i32)>(),
        vec(topic, 0..4),
        name(),
        option::of(name()),
        tags(f),
    )
        .prop_map(
            move |((replica, wait, min, max, iso, sid, sepoch), topics, rack, cluster, t)| {
                let mut m = FetchRequest::default()
                    .with_max_wait_ms(wait)
                    .with_min_bytes(min)
                    .with_max_bytes(max)
                    .with_isolation_level(iso)
                    .with_topics(topics)
                    .with_unknown_tagged_fields(t);
                if v <= 14 {
                    m = m.with_replica_id(BrokerId(replica));
                }
                if v >= 7 {
                    m = m.with_session_id(sid).with_session_epoch(sepoch);
                }
                if v >= 11 {
                    m = m.with_rack_id(s(&rack));
                }
                if f {
                    m = m.with_cluster_id(cluster.map(|c| s(&c)));
                }
                m
            },
        )
}

fn metadata(v: i16) -> impl Strategy<Value = MetadataRequest> {
    let f = v >= 9;
    let topic = (option::of(name()), uuid(), tags(f)).prop_map(move |(n, id, t)| {
        let mut mt = MetadataRequestTopic::default()
            .with_name(n.map(|x| TopicName(s(&x))))
            .with_unknown_tagged_fields(t);
        if v >= 10 {
            mt = mt.with_topic_id(id);
        }
        mt
    });
    (
        option::of(vec(topic, 0..5)),
        any::<(bool, bool, bool)>(),
        tags(f),
    )
        .prop_map(move |(topics, (auto, cluster_ops, topic_ops), t)| {
            let mut m = MetadataRequest::default()
                .with_topics(topics)
                .with_unknown_tagged_fields(t);
            if v >= 4 {
                m = m.with_allow_auto_topic_creation(auto);
            }
            if (8..=10).contains(&v) {
                m = m.with_include_cluster_authorized_operations(cluster_ops);
            }
            if v >= 8 {
                m = m.with_include_topic_authorized_operations(topic_ops);
            }
            m
        })
}

fn list_offsets(v: i16) -> impl Strategy<Value = ListOffsetsRequest> {
    let f = v >= 6;
    let partition = (any::<(i32, i32, i64)>(), tags(f)).prop_map(move |((p, e, ts), t)| {
        let mut lp = ListOffsetsPartition::default()
            .with_partition_index(p)
            .with_timestamp(ts)
            .with_unknown_tagged_fields(t);
        if v >= 4 {
            lp = lp.with_current_leader_epoch(e);
        }
        lp
    });
    let topic = (name(), vec(partition, 0..4), tags(f)).prop_map(|(n, p, t)| {
        ListOffsetsTopic::default()
            .with_name(TopicName(s(&n)))
            .with_partitions(p)
            .with_unknown_tagged_fields(t)
    });
    (any::<(i32, i8, i32)>(), vec(topic, 0..4), tags(f)).prop_map(
        move |((replica, iso, timeout), topics, t)| {
            let mut m = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_topics(topics)
                .with_unknown_tagged_fields(t);
            if v >= 2 {
                m = m.with_isolation_level(iso);
            }
            if v >= 10 {
                m = m.with_timeout_ms(timeout);
            }
            m
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn produce_roundtrips((v, req) in (3i16..=13).prop_flat_map(|v| (Just(v), produce(v)))) {
        roundtrip(&Request::Produce(req), v);
    }

    #[test]
    fn fetch_roundtrips((v, req) in (4i16..=18).prop_flat_map(|v| (Just(v), fetch(v)))) {
        roundtrip(&Request::Fetch(req), v);
    }

    #[test]
    fn metadata_roundtrips((v, req) in (0i16..=13).prop_flat_map(|v| (Just(v), metadata(v)))) {
        roundtrip(&Request::Metadata(req), v);
    }

    #[test]
    fn list_offsets_roundtrips(
        (v, req) in (1i16..=10).prop_flat_map(|v| (Just(v), list_offsets(v)))
    ) {
        roundtrip(&Request::ListOffsets(req), v);
    }
}
