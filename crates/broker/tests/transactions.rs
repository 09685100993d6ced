//! Transactions through the broker's handlers (issue 15): the transaction
//! coordinator on `__transaction_state`, markers written into the
//! partitions, the last stable offset, fencing, and the listing APIs.

mod common;

use std::time::Duration;

use common::*;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use fjord_protocol::kafka_protocol::messages::*;

const CONCURRENT_TRANSACTIONS: i16 = 51;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

/// FindCoordinator key type 1 until this node is named (the first lookup
/// creates `__transaction_state`).
async fn find_txn_coordinator(b: &std::sync::Arc<fjord_broker::Broker>, id: &str) {
    for _ in 0..200 {
        let req = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s(id)]);
        let r: FindCoordinatorResponse = call(b, ApiKey::FindCoordinator, 4, &req).await;
        let c = &r.coordinators[0];
        if c.error_code == 0 {
            assert_eq!(c.node_id.0, b.config.node_id.0);
            return;
        }
        assert!(
            [COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS].contains(&c.error_code),
            "{r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the transaction coordinator never loaded");
}

async fn init(b: &std::sync::Arc<fjord_broker::Broker>, id: &str, v: i16) -> (i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    for _ in 0..200 {
        let r: InitProducerIdResponse = call(b, ApiKey::InitProducerId, v, &req).await;
        if r.error_code == CONCURRENT_TRANSACTIONS {
            // The previous producer's transaction is being aborted: retry, as clients do.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(r.error_code, 0, "v{v}: {r:?}");
        return (r.producer_id.0, r.producer_epoch);
    }
    panic!("InitProducerId kept answering CONCURRENT_TRANSACTIONS");
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&[u8]]) -> bytes::Bytes {
    let mut b = fjord_records::BatchBuilder::new(fjord_records::Compression::None)
        .producer(pid, epoch, seq)
        .transactional(true);
    for v in values {
        b.push(1_000, Some(b"k".as_slice()), Some(*v), &[]);
    }
    bytes::Bytes::from(b.build(0))
}

async fn produce(
    b: &std::sync::Arc<fjord_broker::Broker>,
    id: &str,
    topic: &str,
    batch: bytes::Bytes,
) -> i16 {
    produce_at(b, 9, id, topic, batch).await
}

/// Produce version `v` of `batch` to partition 0 of `topic`: its error code.
async fn produce_at(
    b: &std::sync::Arc<fjord_broker::Broker>,
    v: i16,
    id: &str,
    topic: &str,
    batch: bytes::Bytes,
) -> i16 {
    use fjord_protocol::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let r: ProduceResponse = call(b, ApiKey::Produce, v, &req).await;
    r.responses[0].partition_responses[0].error_code
}

async fn add_partitions(
    b: &std::sync::Arc<fjord_broker::Broker>,
    v: i16,
    id: &str,
    (pid, epoch): (i64, i16),
    topic: &str,
) -> i16 {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![0])]);
    let r: AddPartitionsToTxnResponse = call(b, ApiKey::AddPartitionsToTxn, v, &req).await;
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end_txn(
    b: &std::sync::Arc<fjord_broker::Broker>,
    v: i16,
    id: &str,
    (pid, epoch): (i64, i16),
    commit: bool,
) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = call(b, ApiKey::EndTxn, v, &req).await;
    r.error_code
}

async fn describe(b: &std::sync::Arc<fjord_broker::Broker>, id: &str) -> (i16, String) {
    let req =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    let r: DescribeTransactionsResponse = call(b, ApiKey::DescribeTransactions, 0, &req).await;
    let t = &r.transaction_states[0];
    (t.error_code, t.transaction_state.to_string())
}

/// Waits until DescribeTransactions reports `state` (markers are written in
/// the background after EndTxn is answered).
async fn wait_state(b: &std::sync::Arc<fjord_broker::Broker>, id: &str, state: &str) {
    for _ in 0..200 {
        if describe(b, id).await == (0, state.to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never reached {state}: {:?}", describe(b, id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_abort_fencing_and_the_last_stable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 1, Default::default(), false).unwrap();
    find_txn_coordinator(&b, "app").await;
    assert!(b.topic("__transaction_state").is_some());

    // A new transactional id gets a producer id; every InitProducerId bumps its epoch.
    let mut producer = (0, 0);
    for v in versions(ApiKey::InitProducerId) {
        let got = init(&b, "app", v).await;
        if v > 0 {
            assert_eq!(got, (producer.0, producer.1 + 1), "v{v}");
        }
        producer = got;
    }
    let partition = b.topic("t").unwrap().partition(0).unwrap();

    // Commit: the data is unstable until its marker is written.
    assert_eq!(add_partitions(&b, 3, "app", producer, "t").await, 0);
    let p = producer;
    assert_eq!(
        produce(&b, "app", "t", txn_batch(p.0, p.1, 0, &[b"a", b"b"])).await,
        0
    );
    assert_eq!(partition.last_stable_offset().0, 0);
    assert_eq!(partition.high_watermark().0, 2);
    assert_eq!(describe(&b, "app").await, (0, "Ongoing".to_string()));
    assert_eq!(end_txn(&b, 3, "app", producer, true).await, 0);
    wait_state(&b, "app", "CompleteCommit").await;
    // Two records and the COMMIT marker.
    assert_eq!(partition.last_stable_offset().0, 3);
    assert_eq!(partition.high_watermark().0, 3);

    // Abort.
    assert_eq!(add_partitions(&b, 3, "app", producer, "t").await, 0);
    assert_eq!(
        produce(&b, "app", "t", txn_batch(p.0, p.1, 2, &[b"c"])).await,
        0
    );
    assert_eq!(partition.last_stable_offset().0, 3);
    assert_eq!(end_txn(&b, 3, "app", producer, false).await, 0);
    wait_state(&b, "app", "CompleteAbort").await;
    assert_eq!(partition.last_stable_offset().0, 5);

    // A new producer with the same id fences the old one: its open
    // transaction is aborted, its requests refused.
    assert_eq!(add_partitions(&b, 3, "app", producer, "t").await, 0);
    assert_eq!(
        produce(&b, "app", "t", txn_batch(p.0, p.1, 3, &[b"z"])).await,
        0
    );
    let fresh = init(&b, "app", 4).await;
    assert_eq!(fresh.0, producer.0);
    assert!(
        fresh.1 > producer.1 + 1,
        "the fence and the new producer each bump the epoch"
    );
    wait_state(&b, "app", "Empty").await;
    assert_eq!(partition.last_stable_offset(), partition.high_watermark());
    // PRODUCER_FENCED (90) from v2, INVALID_PRODUCER_EPOCH (47) before.
    assert_eq!(end_txn(&b, 3, "app", producer, true).await, 90);
    assert_eq!(end_txn(&b, 1, "app", producer, true).await, 47);
    assert_eq!(add_partitions(&b, 3, "app", producer, "t").await, 90);
    // The fenced producer's data is refused by the partition too.
    assert_eq!(
        produce(&b, "app", "t", txn_batch(p.0, p.1, 4, &[b"late"])).await,
        47
    );
    // An unknown transactional id.
    assert_eq!(end_txn(&b, 3, "nobody", producer, true).await, 49);

    // ListTransactions lists it, with the filters.
    let req = ListTransactionsRequest::default().with_state_filters(vec![s("Empty"), s("Bogus")]);
    let r: ListTransactionsResponse = call(&b, ApiKey::ListTransactions, 1, &req).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
    let listed: Vec<(&str, i64, &str)> = r
        .transaction_states
        .iter()
        .map(|t| {
            (
                &*t.transactional_id.0,
                t.producer_id.0,
                &*t.transaction_state,
            )
        })
        .collect();
    assert_eq!(listed, vec![("app", fresh.0, "Empty")]);
    let req = ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing")]);
    let r: ListTransactionsResponse = call(&b, ApiKey::ListTransactions, 1, &req).await;
    assert!(r.transaction_states.is_empty());
    assert_eq!(describe(&b, "nobody").await.0, 105);
}

/// The coordinator's state is read back from `__transaction_state` at open:
/// the producer id survives, and the next InitProducerId bumps its epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let b = open_broker(dir.path(), 1);
        find_txn_coordinator(&b, "keep").await;
        let p = init(&b, "keep", 4).await;
        b.close();
        p
    };
    let b = open_broker(dir.path(), 1);
    find_txn_coordinator(&b, "keep").await;
    assert_eq!(describe(&b, "keep").await, (0, "Empty".to_string()));
    let after = init(&b, "keep", 4).await;
    assert_eq!(after, (before.0, before.1 + 1));
}

/// A transaction open for longer than its `transaction.timeout.ms` is aborted
/// by the coordinator (checked every 10 s, Kafka's default interval): its
/// producer is fenced and the partition's last stable offset moves past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_transaction_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 1, Default::default(), false).unwrap();
    find_txn_coordinator(&b, "slow").await;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("slow"))))
        .with_transaction_timeout_ms(500)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = call(&b, ApiKey::InitProducerId, 4, &req).await;
    assert_eq!(r.error_code, 0);
    let producer = (r.producer_id.0, r.producer_epoch);
    assert_eq!(add_partitions(&b, 3, "slow", producer, "t").await, 0);
    let batch = txn_batch(producer.0, producer.1, 0, &[b"never"]);
    assert_eq!(produce(&b, "slow", "t", batch).await, 0);
    let partition = b.topic("t").unwrap().partition(0).unwrap();
    assert_eq!(partition.last_stable_offset().0, 0);
    for _ in 0..300 {
        if describe(&b, "slow").await == (0, "CompleteAbort".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(describe(&b, "slow").await, (0, "CompleteAbort".to_string()));
    // The data and the ABORT marker are stable now; the producer is fenced.
    assert_eq!(partition.last_stable_offset().0, 2);
    assert_eq!(end_txn(&b, 3, "slow", producer, true).await, 90);
}

async fn write_marker(
    b: &std::sync::Arc<fjord_broker::Broker>,
    producer: (i64, i16),
    coordinator_epoch: i32,
    commit: bool,
    topic: &str,
) -> i16 {
    write_marker_at(b, 1, 0, producer, coordinator_epoch, commit, topic).await
}

/// WriteTxnMarkers at `version` (Fjord's own structs: v2 carries the
/// marker's `transaction_version`) for partition 0 of `topic`.
async fn write_marker_at(
    b: &std::sync::Arc<fjord_broker::Broker>,
    version: i16,
    transaction_version: i8,
    (pid, epoch): (i64, i16),
    coordinator_epoch: i32,
    commit: bool,
    topic: &str,
) -> i16 {
    use fjord_protocol::requests::owned::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic, WriteTxnMarkersRequest,
    };
    use fjord_protocol::requests::owned::WriteTxnMarkersResponse;
    let req = WriteTxnMarkersRequest {
        markers: vec![WritableTxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            transaction_result: commit,
            coordinator_epoch,
            transaction_version,
            topics: vec![WritableTxnMarkerTopic {
                name: topic.to_string(),
                partition_indexes: vec![0],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r: WriteTxnMarkersResponse = call(b, ApiKey::WriteTxnMarkers, version, &req).await;
    assert_eq!(r.markers.len(), 1);
    assert_eq!(r.markers[0].producer_id, pid);
    assert_eq!(r.markers[0].topics[0].name, topic);
    r.markers[0].topics[0].partitions[0].error_code
}

/// A one-node broker with topic `t` (one partition) and `id`'s producer
/// from InitProducerId version `init_version`.
async fn txn_broker(
    id: &str,
    init_version: i16,
) -> (
    tempfile::TempDir,
    std::sync::Arc<fjord_broker::Broker>,
    (i64, i16),
) {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("t", 1, Default::default(), false).unwrap();
    find_txn_coordinator(&b, id).await;
    let producer = init(&b, id, init_version).await;
    (dir, b, producer)
}

/// Moves `partition`'s leadership to another node (a later leader epoch);
/// returns its replica state before and after.
fn lead_elsewhere(
    partition: &fjord_partition::Partition,
) -> (fjord_partition::ReplicaState, fjord_partition::ReplicaState) {
    let here = partition.replica_state();
    let mut elsewhere = here.clone();
    elsewhere.leader = fjord_model::NodeId(here.leader.0 + 1);
    elsewhere.leader_epoch = fjord_model::LeaderEpoch(here.leader_epoch.0 + 1);
    partition.set_replica_state(elsewhere.clone());
    (here, elsewhere)
}

/// WriteTxnMarkers, as another broker's transaction coordinator (or the admin
/// client's abortTransaction) sends it: the marker ends the producer's open
/// transaction in the partition (last stable offset, aborted-transaction
/// index); an older coordinator epoch is TRANSACTION_COORDINATOR_FENCED, an
/// older producer epoch INVALID_PRODUCER_EPOCH, an unknown partition
/// UNKNOWN_TOPIC_OR_PARTITION, and none of them writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_txn_markers_ends_a_transaction_in_its_partitions() {
    assert_eq!(versions(ApiKey::WriteTxnMarkers), 1..=2);
    let (_dir, b, producer) = txn_broker("w", 4).await;
    let partition = b.topic("t").unwrap().partition(0).unwrap();

    assert_eq!(add_partitions(&b, 3, "w", producer, "t").await, 0);
    let batch = txn_batch(producer.0, producer.1, 0, &[b"x", b"y"]);
    assert_eq!(produce(&b, "w", "t", batch).await, 0);
    assert_eq!(partition.last_stable_offset().0, 0);
    // The ABORT marker, at coordinator epoch 5.
    assert_eq!(write_marker(&b, producer, 5, false, "t").await, 0);
    assert_eq!(partition.last_stable_offset().0, 3);
    assert_eq!(partition.high_watermark().0, 3);
    let aborted = partition.log.aborted_index();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].first_offset.0, aborted[0].last_offset.0),
        (0, 2)
    );
    // Refusals write nothing.
    const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    assert_eq!(
        write_marker(&b, producer, 4, true, "t").await,
        TRANSACTION_COORDINATOR_FENCED
    );
    assert_eq!(
        write_marker(&b, (producer.0, producer.1 - 1), 5, true, "t").await,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        write_marker(&b, producer, 5, true, "nope").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(partition.log.log_end_offset().0, 3);
    // The same coordinator epoch is accepted (a retried marker).
    assert_eq!(write_marker(&b, producer, 5, true, "t").await, 0);
    assert_eq!(partition.log.log_end_offset().0, 4);
}

/// WriteTxnMarkers v2 (KIP-1228) with transaction version 2: the marker
/// must carry an epoch above the transaction's (its coordinator bumped it),
/// so the transaction's own epoch is INVALID_PRODUCER_EPOCH and writes
/// nothing while the transaction is open, as Kafka 4.3.1's
/// `checkProducerEpoch`; the bumped epoch ends it, and its retry (the same
/// epoch, nothing open) is written again. A marker of transaction version 0
/// (what v1 means) is accepted at the transaction's epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_txn_markers_v2_needs_the_bumped_epoch_of_a_tv2_transaction() {
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    let (_dir, b, producer) = txn_broker("w2", 4).await;
    let partition = b.topic("t").unwrap().partition(0).unwrap();
    assert_eq!(add_partitions(&b, 3, "w2", producer, "t").await, 0);
    let batch = txn_batch(producer.0, producer.1, 0, &[b"x", b"y"]);
    assert_eq!(produce(&b, "w2", "t", batch).await, 0);
    assert_eq!(partition.log.log_end_offset().0, 2);
    // Transaction version 0 (what v1 means): the transaction's own epoch.
    assert_eq!(write_marker_at(&b, 2, 0, producer, 0, false, "t").await, 0);
    assert_eq!(partition.last_stable_offset().0, 3);

    // The next batch of the (still ongoing, for the coordinator) transaction
    // opens one again in the partition.
    let batch = txn_batch(producer.0, producer.1, 2, &[b"z"]);
    assert_eq!(produce(&b, "w2", "t", batch).await, 0);
    assert_eq!(partition.log.log_end_offset().0, 4);
    assert_eq!(
        write_marker_at(&b, 2, 2, producer, 0, true, "t").await,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(partition.log.log_end_offset().0, 4, "nothing written");
    assert_eq!(partition.last_stable_offset().0, 3, "still open");
    let bumped = (producer.0, producer.1 + 1);
    assert_eq!(write_marker_at(&b, 2, 2, bumped, 0, true, "t").await, 0);
    assert_eq!(partition.last_stable_offset().0, 5);
    assert_eq!(write_marker_at(&b, 2, 2, bumped, 0, true, "t").await, 0);
    assert_eq!(partition.log.log_end_offset().0, 6, "the retry is written");
}

/// A Produce v12 whose partition cannot join the transaction yet, because
/// the producer's previous transaction is still writing its markers
/// (CONCURRENT_TRANSACTIONS), is asked again at the leader every
/// `add.partitions.to.txn.retry.backoff.ms` for up to
/// `add.partitions.to.txn.retry.backoff.max.ms` (Kafka's
/// `maybeRetryOnConcurrentTransactions`): here the previous commit's marker
/// waits while its partition is led elsewhere, the produce keeps asking, and
/// once the marker is written it joins the new transaction and is appended
/// (before, it was answered NOT_ENOUGH_REPLICAS at once; the window is
/// unit-tested in `handlers::produce`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v12_is_retried_while_the_previous_transaction_ends() {
    let dir = tempfile::tempdir().unwrap();
    let b = fjord_broker::Broker::open(fjord_broker::BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        num_partitions: 1,
        add_partitions_to_txn_retry_backoff_max_ms: 10_000,
        ..fjord_broker::BrokerConfig::default()
    })
    .unwrap();
    b.create_topic("t", 1, Default::default(), false).unwrap();
    b.create_topic("u", 1, Default::default(), false).unwrap();
    find_txn_coordinator(&b, "busy").await;
    let producer = init(&b, "busy", 5).await;
    let batch = txn_batch(producer.0, producer.1, 0, &[b"x"]);
    assert_eq!(produce_at(&b, 12, "busy", "t", batch).await, 0);
    let t = b.topic("t").unwrap().partition(0).unwrap();
    let (here, elsewhere) = lead_elsewhere(&t);
    assert_eq!(end_txn(&b, 5, "busy", producer, true).await, 0);
    assert_eq!(describe(&b, "busy").await, (0, "PrepareCommit".to_string()));

    // The next transaction (the epoch EndTxn v5 bumped) starts in u.
    let next = (producer.0, producer.1 + 1);
    let b2 = b.clone();
    let produce = tokio::spawn(async move {
        let batch = txn_batch(next.0, next.1, 0, &[b"y"]);
        produce_at(&b2, 12, "busy", "u", batch).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !produce.is_finished(),
        "asking again while the markers are out"
    );
    let mut back = here;
    back.leader_epoch = fjord_model::LeaderEpoch(elsewhere.leader_epoch.0 + 1);
    t.set_replica_state(back);
    assert_eq!(produce.await.unwrap(), 0);
    assert_eq!(describe(&b, "busy").await, (0, "Ongoing".to_string()));
    let u = b.topic("u").unwrap().partition(0).unwrap();
    assert_eq!(u.log.log_end_offset().0, 1);
}

/// Produce v12 (transaction version 2) to a partition this node does not
/// lead is NOT_LEADER_OR_FOLLOWER, and the partition does not join the
/// producer's transaction: the leader checks leadership before it asks the
/// coordinator, as Kafka's `Partition.maybeStartTransactionVerification`.
/// Once led here again, the same batch joins the transaction and is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v12_to_a_partition_led_elsewhere_adds_nothing() {
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    let (_dir, b, producer) = txn_broker("led-elsewhere", 5).await;
    let partition = b.topic("t").unwrap().partition(0).unwrap();
    let (here, elsewhere) = lead_elsewhere(&partition);

    let batch = || txn_batch(producer.0, producer.1, 0, &[b"x"]);
    assert_eq!(
        produce_at(&b, 12, "led-elsewhere", "t", batch()).await,
        NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(
        describe(&b, "led-elsewhere").await,
        (0, "Empty".to_string())
    );
    assert_eq!(partition.log.log_end_offset().0, 0);

    // Led here again (a later epoch): the implicit add and the append.
    let mut back = here;
    back.leader_epoch = fjord_model::LeaderEpoch(elsewhere.leader_epoch.0 + 1);
    partition.set_replica_state(back);
    assert_eq!(produce_at(&b, 12, "led-elsewhere", "t", batch()).await, 0);
    assert_eq!(
        describe(&b, "led-elsewhere").await,
        (0, "Ongoing".to_string())
    );
    assert_eq!(partition.log.log_end_offset().0, 1);
}
