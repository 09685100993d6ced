//! The client against the real broker, started in-process on a loopback
//! port: bootstrap, topic creation, Metadata, Produce (acks 0/1/all, many in
//! flight), Fetch and ListOffsets.

use bytes::Bytes;
use fjord_broker::{Broker, BrokerConfig};
use fjord_client::{
    Acks, Client, ClientOptions, FetchOptions, NewTopic, OffsetSpec, PartitionProduced,
};
use fjord_model::{Offset, PartitionIndex};
use fjord_records::{BatchBuilder, Compression};

async fn start_broker(dir: &std::path::Path) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: port,
        ..BrokerConfig::default()
    };
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(fjord_broker::server::serve(broker, listener, stop_rx));
    (format!("127.0.0.1:{port}"), stop)
}

fn batch(compression: Compression, first: u32, n: u32) -> Bytes {
    let mut b = BatchBuilder::new(compression);
    for i in first..first + n {
        b.push(
            1_700_000_000_000,
            None,
            Some(format!("v{i}").as_bytes()),
            &[],
        );
    }
    Bytes::from(b.build(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_and_list_offsets_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start_broker(dir.path()).await;
    let client = Client::connect(ClientOptions::new(addr.clone()))
        .await
        .unwrap();

    let new = NewTopic {
        name: "orders".into(),
        partitions: 2,
        replication_factor: -1,
        configs: vec![("retention.ms".into(), "3600000".into())],
    };
    assert!(client.create_topic(&new).await.unwrap());
    assert!(!client.create_topic(&new).await.unwrap(), "exists already");
    let topic = client.wait_for_leaders("orders", 5_000).await.unwrap();
    assert_eq!(topic.partitions.len(), 2);
    let conn = client.connection(topic.partitions[0].leader).await.unwrap();
    let tref = topic.topic_ref();

    // Many requests in flight on one connection, acknowledged in order.
    let mut pending = Vec::new();
    for i in 0..20u32 {
        let acks = if i % 2 == 0 { Acks::All } else { Acks::Leader };
        pending.push(
            conn.produce(
                &tref,
                acks,
                5_000,
                vec![(PartitionIndex(0), batch(Compression::Zstd, i * 10, 10))],
            )
            .await
            .unwrap(),
        );
    }
    let mut bases = Vec::new();
    for p in pending {
        let r: Vec<PartitionProduced> = p.wait_ok(1).await.unwrap();
        bases.push(r[0].base_offset.0);
    }
    assert_eq!(bases, (0..20).map(|i| i * 10).collect::<Vec<i64>>());
    // acks=0: no answer, but the records arrive.
    let none = conn
        .produce(
            &tref,
            Acks::None,
            5_000,
            vec![(PartitionIndex(1), batch(Compression::None, 0, 5))],
        )
        .await
        .unwrap();
    assert!(none.wait().await.unwrap().is_empty());

    let latest = client
        .list_offsets(&topic, OffsetSpec::Latest)
        .await
        .unwrap();
    assert_eq!(
        latest,
        vec![
            (PartitionIndex(0), Offset(200)),
            (PartitionIndex(1), Offset(5))
        ]
    );
    let earliest = client
        .list_offsets(&topic, OffsetSpec::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest[0], (PartitionIndex(0), Offset(0)));

    // Fetch everything back and check every value in order.
    let mut next = 0i64;
    let mut values = Vec::new();
    while next < 200 {
        let parts = conn
            .fetch(
                &tref,
                &[(PartitionIndex(0), Offset(next))],
                &FetchOptions::default(),
            )
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].error_code, 0);
        assert_eq!(parts[0].high_watermark, Offset(200));
        for b in fjord_records::batches(&parts[0].records) {
            let Ok((h, range)) = b else { break };
            for r in fjord_records::decode_records(&parts[0].records[range]).unwrap() {
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
            next = h.next_offset();
        }
    }
    assert_eq!(
        values,
        (0..200).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );

    // Errors carry Kafka's name for the code.
    let err = client.topic("absent").await.unwrap_err();
    assert_eq!(err.code(), Some(3));
    assert!(
        err.to_string().contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{err}"
    );
    let _ = stop.send(true);
}
