//! `fjord groups describe` reports a group's lag: log end minus committed
//! offset, per partition, against the real broker started in-process.

use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::{
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    GroupId, OffsetCommitRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_records::{BatchBuilder, Compression};

#[tokio::test]
async fn describe_reports_lag_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: port,
        ..BrokerConfig::default()
    };
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    // 30 records in partition 0 of a two-partition topic.
    let topic = broker
        .create_topic("lagged", 2, Default::default(), false)
        .unwrap();
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..30u32 {
        b.push(1_700_000_000_000, None, Some(&i.to_be_bytes()), &[]);
    }
    let mut batch = b.build(0);
    topic
        .partition(0)
        .unwrap()
        .log
        .append(&mut batch, 0)
        .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(fjord_broker::server::serve(broker, listener, stop_rx));
    let addr = format!("127.0.0.1:{port}");

    // A simple (generation -1) commit of offset 12 on partition 0.
    let client = fjord_client::Client::connect(fjord_client::ClientOptions::new(addr.clone()))
        .await
        .unwrap();
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("readers")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("lagged")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(12)])]);
    let r = client.bootstrap_connection().call(&commit).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    let g = fjord::groups::group_lag(&addr, "readers").await.unwrap();
    assert_eq!(g.state, "Empty");
    assert_eq!(g.partitions.len(), 1);
    let p = &g.partitions[0];
    assert_eq!((p.topic.as_str(), p.partition), ("lagged", 0));
    assert_eq!((p.committed, p.log_end, p.lag), (12, Some(30), Some(18)));

    let _ = stop.send(true);
    let _ = server.await;
}
