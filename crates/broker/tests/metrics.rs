//! The metrics listener against a broker serving real connections: counters
//! move as records are produced and fetched, consumer lag is the high
//! watermark minus the committed offset, /health and /ready answer, bad
//! HTTP gets a 4xx (never a panic), and per-partition series stop at their cap.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_broker::metrics::Health;
use fjord_broker::{Broker, BrokerConfig};
use fjord_client::{Acks, Client, ClientOptions, FetchOptions};
use fjord_model::limits::METRICS_PARTITION_SERIES_MAX;
use fjord_model::{Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::{
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    GroupId, OffsetCommitRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_records::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

struct Node {
    broker: Arc<Broker>,
    kafka: String,
    http: String,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = metrics.local_addr().unwrap().to_string();
    let (stop, stop_rx) = watch::channel(false);
    let health = Health::new();
    tokio::spawn(fjord_broker::metrics::http::serve(
        metrics,
        health.clone(),
        stop_rx.clone(),
    ));
    // Not ready while the broker is not open.
    let (status, body) = get(&http, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("storage: not ready"), "{body}");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: port,
        // Direct writes and the batch cache, where the filesystem takes O_DIRECT.
        direct_io: true,
        ..BrokerConfig::default()
    };
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    health.set_broker(broker.clone());
    let (status, body) = get(&http, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("listener: not ready"), "{body}");
    tokio::spawn(fjord_broker::server::serve(
        broker.clone(),
        listener,
        stop_rx,
    ));
    health.set_serving(true);
    Node {
        broker,
        kafka: format!("127.0.0.1:{port}"),
        http,
        stop,
        _dir: dir,
    }
}

/// Sends `raw` and returns the status code and body (`None`: closed
/// without an answer).
async fn send_raw(addr: &str, raw: &[u8]) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything.
    let _ = s.write_all(raw).await;
    // Nothing more comes: a partial head then ends at EOF.
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
    .expect("an answer")
}

/// The samples of an exposition, by series (name and labels as written).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

async fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    samples(&body)
}

#[tokio::test]
async fn counters_move_with_produce_fetch_and_commits() {
    let node = start().await;
    assert_eq!(get(&node.http, "/health").await.0, 200);
    let (status, body) = get(&node.http, "/ready").await;
    assert_eq!(status, 200, "{body}");
    node.broker
        .create_topic("metered", 2, Default::default(), false)
        .unwrap();
    let before = scrape(&node.http).await;
    assert_eq!(
        before["fjord_topic_records_in_total{topic=\"metered\"}"],
        0.0
    );
    assert_eq!(before["fjord_ready"], 1.0);

    let client = Client::connect(ClientOptions::new(node.kafka.clone()))
        .await
        .unwrap();
    let topic = client.topic("metered").await.unwrap().topic_ref();
    let conn = client.bootstrap_connection();
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..30u32 {
        b.push(1_700_000_000_000, None, Some(&i.to_be_bytes()), &[]);
    }
    let batch = b.build(0);
    let batch_len = batch.len();
    conn.produce(
        &topic,
        Acks::All,
        5_000,
        vec![(PartitionIndex(0), batch.into())],
    )
    .await
    .unwrap()
    .wait_ok(1)
    .await
    .unwrap();
    // A partition that does not exist: an error counted for Produce.
    let bad = conn
        .produce(
            &topic,
            Acks::Leader,
            5_000,
            vec![(PartitionIndex(7), b.build(0).into())],
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(bad[0].error_code, 3);
    let fetched = conn
        .fetch(
            &topic,
            &[(PartitionIndex(0), Offset(0))],
            &FetchOptions::default(),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("readers")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("metered")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(12)])]);
    let r = conn.call(&commit).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    let m = scrape(&node.http).await;
    let t = |name: &str| m[&format!("{name}{{topic=\"metered\"}}")];
    assert_eq!(t("fjord_topic_records_in_total"), 30.0);
    assert_eq!(t("fjord_topic_bytes_in_total"), batch_len as f64);
    assert_eq!(t("fjord_topic_bytes_out_total"), batch_len as f64);
    let p0 = |name: &str| m[&format!("{name}{{topic=\"metered\",partition=\"0\"}}")];
    assert_eq!(p0("fjord_partition_log_end_offset"), 30.0);
    assert_eq!(p0("fjord_partition_high_watermark"), 30.0);
    assert_eq!(p0("fjord_partition_size_bytes"), batch_len as f64);
    assert_eq!(p0("fjord_partition_segments"), 1.0);
    let g = "{group=\"readers\",topic=\"metered\",partition=\"0\"}";
    assert_eq!(
        m[&format!("fjord_consumer_group_committed_offset{g}")],
        12.0
    );
    assert_eq!(m[&format!("fjord_consumer_group_lag{g}")], 18.0);
    assert_eq!(m["fjord_requests_total{api=\"Produce\"}"], 2.0);
    assert_eq!(
        m["fjord_request_duration_seconds_count{api=\"Produce\"}"],
        2.0
    );
    assert_eq!(m["fjord_requests_total{api=\"Fetch\"}"], 1.0);
    assert_eq!(m["fjord_requests_total{api=\"OffsetCommit\"}"], 1.0);
    assert_eq!(
        m["fjord_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}"],
        1.0
    );
    assert!(m["fjord_connections_open"] >= 1.0);
    assert!(m["fjord_connections_accepted_total"] >= 1.0);
    assert!(m["fjord_storage_fsync_duration_seconds_count"] >= 1.0);
    assert!(m["fjord_storage_group_commit_waiters_count"] >= 1.0);
    // The fetch read what the produce wrote: from the batch cache when it was a direct write.
    assert_eq!(
        m["fjord_storage_batch_cache_read_bytes_total"] > 0.0,
        m["fjord_storage_direct_writes_total"] > 0.0
    );
    assert!(m["fjord_storage_batch_cache_bytes"] >= 0.0);
    assert!(m["process_resident_memory_bytes"] > 0.0);
    assert!(m["process_open_fds"] > 0.0);

    // Closed connections keep their counts.
    drop(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let m = scrape(&node.http).await;
        if m["fjord_connections_open"] == 0.0 {
            assert_eq!(m["fjord_requests_total{api=\"Produce\"}"], 2.0);
            assert!(m["fjord_connections_closed_total"] >= 1.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connection never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = node.stop.send(true);
    node.broker.close();
}

#[tokio::test]
async fn bad_http_gets_4xx_or_a_close_and_the_server_keeps_answering() {
    let node = start().await;
    let long_head = vec![b'a'; 20_000];
    let cases: Vec<(&[u8], Option<u16>)> = vec![
        (b"POST /metrics HTTP/1.1\r\n\r\n", Some(405)),
        (b"GET /nothing HTTP/1.1\r\n\r\n", Some(404)),
        (b"GET metrics HTTP/1.1\r\n\r\n", Some(400)),
        (b"\x00\xff\xfe garbage\r\n\r\n", Some(400)),
        (b"GET / HTTP/1.1 extra\r\n\r\n", Some(400)),
        (&long_head, Some(431)),
        // The client stops before a whole head: no answer.
        (b"GET /metrics HTTP/1.1\r\n", None),
    ];
    for (raw, want) in cases {
        let got = send_raw(&node.http, raw).await.map(|(s, _)| s);
        assert_eq!(
            got,
            want,
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(40)])
        );
        assert_eq!(get(&node.http, "/health").await.0, 200);
    }
    // HEAD gets the head only.
    let (status, body) = send_raw(&node.http, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    let _ = node.stop.send(true);
    node.broker.close();
}

/// Per-partition series stop at the cap; broker-wide counts still cover
/// every partition. `FJORD_METRICS_PARTITIONS` sets how many partitions
/// (default a few hundred past the cap; 10000 for the BENCHMARKS.md row,
/// which also prints the scrape's time and size).
#[tokio::test]
async fn partition_series_stop_at_the_cap() {
    let wanted: i32 = std::env::var("FJORD_METRICS_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(METRICS_PARTITION_SERIES_MAX as i32 + 100);
    let node = start().await;
    let b = node.broker.clone();
    tokio::task::spawn_blocking(move || {
        b.create_topic("wide", wanted, Default::default(), false)
            .unwrap()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let (status, body) = get(&node.http, "/metrics").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    println!(
        "scrape of {wanted} partitions: {} bytes in {:.1} ms",
        body.len(),
        took.as_secs_f64() * 1e3
    );
    let m = samples(&body);
    let total = m["fjord_partitions"] as usize;
    assert!(total >= wanted as usize);
    let series = m
        .keys()
        .filter(|k| k.starts_with("fjord_partition_log_end_offset{"))
        .count();
    assert_eq!(series, METRICS_PARTITION_SERIES_MAX);
    assert_eq!(
        m["fjord_metrics_series_omitted{family=\"partition\"}"] as usize,
        total - METRICS_PARTITION_SERIES_MAX
    );
    // Bounded: the cap, not the partition count, sets the size.
    assert!(body.len() < 1_000_000, "{} bytes", body.len());
    let _ = node.stop.send(true);
    node.broker.close();
}
