//! Samples of the transaction requests (issue 15): AddPartitionsToTxn (one
//! transaction in v0-3, a batch of them in v4+), AddOffsetsToTxn, EndTxn and
//! TxnOffsetCommit, WriteTxnMarkers.

use fjord_protocol::kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use fjord_protocol::kafka_protocol::messages::end_txn_request::EndTxnRequest;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{GroupId, ProducerId, TopicName, TransactionalId};

use super::super::{extra_tags, s};

pub fn add_partitions_to_txn(v: i16) -> AddPartitionsToTxnRequest {
    let f = v >= 3;
    let topic = |name: &str, n: i32| {
        AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![0, 3, 7])
            .with_unknown_tagged_fields(extra_tags(f, n))
    };
    let m = AddPartitionsToTxnRequest::default().with_unknown_tagged_fields(extra_tags(f, 1));
    if v >= 4 {
        let txn = |id: &str, verify: bool| {
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(4242))
                .with_producer_epoch(3)
                .with_verify_only(verify)
                .with_topics(vec![topic("orders", 2), topic("payments-é", 3)])
                .with_unknown_tagged_fields(extra_tags(f, 4))
        };
        m.with_transactions(vec![txn("t-1", false), txn("t-2", true)])
    } else {
        m.with_v3_and_below_transactional_id(TransactionalId(s("t-1")))
            .with_v3_and_below_producer_id(ProducerId(4242))
            .with_v3_and_below_producer_epoch(3)
            .with_v3_and_below_topics(vec![topic("orders", 2), topic("payments-é", 3)])
    }
}

pub fn add_offsets_to_txn(v: i16) -> AddOffsetsToTxnRequest {
    AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s("t-1")))
        .with_producer_id(ProducerId(4242))
        .with_producer_epoch(3)
        .with_group_id(GroupId(s("billing")))
        .with_unknown_tagged_fields(extra_tags(v >= 3, 1))
}

pub fn end_txn(v: i16) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("t-1")))
        .with_producer_id(ProducerId(4242))
        .with_producer_epoch(3)
        .with_committed(true)
        .with_unknown_tagged_fields(extra_tags(v >= 3, 1))
}

pub fn txn_offset_commit(v: i16) -> TxnOffsetCommitRequest {
    let f = v >= 3;
    let mut p = TxnOffsetCommitRequestPartition::default()
        .with_partition_index(2)
        .with_committed_offset(1234)
        .with_committed_metadata(Some(s("meta")))
        .with_unknown_tagged_fields(extra_tags(f, 1));
    if v >= 2 {
        p = p.with_committed_leader_epoch(5);
    }
    let mut m = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("t-1")))
        .with_group_id(GroupId(s("billing")))
        .with_producer_id(ProducerId(4242))
        .with_producer_epoch(3)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                p,
                TxnOffsetCommitRequestPartition::default().with_committed_metadata(None),
            ])
            .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_unknown_tagged_fields(extra_tags(f, 3));
    if v >= 3 {
        m = m
            .with_generation_id(7)
            .with_member_id(s("member-1"))
            .with_group_instance_id(Some(s("instance-1")));
    }
    m
}

/// Fjord owns WriteTxnMarkers' structs (v2 adds each marker's transaction
/// version, KIP-1228, which kafka-protocol's cannot carry).
pub fn write_txn_markers(v: i16) -> fjord_protocol::requests::owned::WriteTxnMarkersRequest {
    use fjord_protocol::requests::owned::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic, WriteTxnMarkersRequest,
    };
    let f = v >= 1;
    WriteTxnMarkersRequest {
        markers: vec![
            WritableTxnMarker {
                producer_id: 4242,
                producer_epoch: 3,
                transaction_result: true,
                coordinator_epoch: 9,
                transaction_version: if v >= 2 { 2 } else { 0 },
                topics: vec![WritableTxnMarkerTopic {
                    name: "orders".to_string(),
                    partition_indexes: vec![0, 2, 5],
                    unknown_tagged_fields: extra_tags(f, 1),
                }],
                unknown_tagged_fields: extra_tags(f, 2),
            },
            WritableTxnMarker {
                producer_id: 7,
                ..WritableTxnMarker::default()
            },
        ],
        unknown_tagged_fields: extra_tags(f, 3),
    }
}
