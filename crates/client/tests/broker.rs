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
    let (addr, stop, _) = start_broker_handle(dir).await;
    (addr, stop)
}

/// `start_broker`, also returning the broker (to close it).
async fn start_broker_handle(
    dir: &std::path::Path,
) -> (
    String,
    tokio::sync::watch::Sender<bool>,
    std::sync::Arc<Broker>,
) {
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
    tokio::spawn(fjord_broker::server::serve(
        broker.clone(),
        listener,
        stop_rx,
    ));
    (format!("127.0.0.1:{port}"), stop, broker)
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

/// The values of every record in partition 0 of `topic`, read from offset 0
/// to the high watermark.
async fn read_all(client: &Client, topic: &str) -> Vec<String> {
    let topic = client.wait_for_leaders(topic, 5_000).await.unwrap();
    let conn = client.connection(topic.partitions[0].leader).await.unwrap();
    let tref = topic.topic_ref();
    let mut next = 0i64;
    let mut values = Vec::new();
    loop {
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
        assert_eq!(parts[0].error_code, 0);
        for b in fjord_records::batches(&parts[0].records) {
            let Ok((h, range)) = b else { break };
            for r in fjord_records::decode_records(&parts[0].records[range]).unwrap() {
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
            next = h.next_offset();
        }
        if next >= parts[0].high_watermark.0 {
            return values;
        }
    }
}

/// Produces `values` to partition 0 of `topic` with acks=all, one batch.
async fn produce_all(client: &Client, topic: &str, values: &[String]) -> i64 {
    let topic = client.wait_for_leaders(topic, 5_000).await.unwrap();
    let conn = client.connection(topic.partitions[0].leader).await.unwrap();
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    let produced = conn
        .produce(
            &topic.topic_ref(),
            Acks::All,
            5_000,
            vec![(PartitionIndex(0), Bytes::from(b.build(0)))],
        )
        .await
        .unwrap()
        .wait_ok(1)
        .await
        .unwrap();
    produced[0].base_offset.0
}

/// Several brokers run in one process (what a cluster simulation needs):
/// nothing in storage or the broker is process-wide, so each keeps its own
/// topics, offsets, data and flush threads, and one stopping leaves the
/// others serving durable (acks=all) produces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_in_one_process_keep_their_own_state() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        let (addr, stop, broker) = start_broker_handle(d.path()).await;
        let client = Client::connect(ClientOptions::new(addr)).await.unwrap();
        nodes.push((client, (stop, broker)));
    }
    // The same topic name on every node, each with its own records.
    let new = NewTopic {
        name: "shared".into(),
        partitions: 1,
        replication_factor: -1,
        configs: vec![],
    };
    let expected: Vec<Vec<String>> = (0..3)
        .map(|n| (0..(n + 1) * 10).map(|k| format!("node{n}-v{k}")).collect())
        .collect();
    for (n, (client, _)) in nodes.iter().enumerate() {
        assert!(client.create_topic(&new).await.unwrap());
        assert_eq!(produce_all(client, "shared", &expected[n]).await, 0);
    }
    // A topic created on one node only exists there.
    assert!(nodes[1]
        .0
        .create_topic(&NewTopic {
            name: "only-on-1".into(),
            ..new.clone()
        })
        .await
        .unwrap());
    for (n, (client, _)) in nodes.iter().enumerate() {
        assert_eq!(read_all(client, "shared").await, expected[n]);
        let only = client.topic("only-on-1").await;
        assert_eq!(only.is_ok(), n == 1, "node {n}: {only:?}");
    }
    // Stop and close node 0 (its storage flushes and lets its threads go);
    // the others keep acknowledging durable writes.
    let (_, (stop0, broker0)) = nodes.remove(0);
    let _ = stop0.send(true);
    tokio::task::spawn_blocking(move || broker0.close())
        .await
        .unwrap();
    for (i, (client, _)) in nodes.iter().enumerate() {
        let more = vec![format!("after-stop-{i}")];
        let base = produce_all(client, "shared", &more).await;
        assert_eq!(base, expected[i + 1].len() as i64);
        let mut want = expected[i + 1].clone();
        want.extend(more);
        assert_eq!(read_all(client, "shared").await, want);
    }
    for (_, (stop, _)) in nodes {
        let _ = stop.send(true);
    }
}
