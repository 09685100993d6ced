//! `fjord bench` against the real broker, started in-process on a loopback
//! port: produce a few thousand records, consume them back, and run a short
//! end-to-end measurement.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use fjord::bench::{
    run_consume, run_e2e, run_produce, CommonArgs, ConsumeArgs, ConsumerArgs, E2eArgs, ProduceArgs,
    ProducerArgs,
};
use fjord_broker::{Broker, BrokerConfig};
use fjord_client::Acks;
use fjord_records::Compression;

struct TestBroker {
    addr: String,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_broker() -> TestBroker {
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
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(fjord_broker::server::serve(broker, listener, stop_rx));
    TestBroker {
        addr: format!("127.0.0.1:{port}"),
        stop,
        server,
        _dir: dir,
    }
}

impl TestBroker {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

fn common(addr: &str, topic: &str) -> CommonArgs {
    CommonArgs {
        partitions: 3,
        quiet: true,
        ..CommonArgs::new(addr, topic)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_consume_counts_match() {
    let broker = start_broker().await;
    let stop = || Arc::new(AtomicBool::new(false));

    let produce = ProduceArgs {
        common: CommonArgs {
            count: Some(5_000),
            ..common(&broker.addr, "bench")
        },
        producer: ProducerArgs {
            record_size: 200,
            producers: 2,
            batch_bytes: 16 * 1024,
            compression: Compression::Lz4,
            ..ProducerArgs::default()
        },
    };
    let s = run_produce(&produce, stop()).await.unwrap();
    assert_eq!(s.records, 5_000);
    assert_eq!(s.bytes, 5_000 * 200);
    assert_eq!(s.partitions, 3);
    let lat = s.latency.expect("acks=all measures latency");
    assert_eq!(lat.samples, 5_000);
    assert!(lat.p50_ms <= lat.p99_ms && lat.p99_ms <= lat.max_ms);
    assert!(s.records_per_s > 0.0);

    // A second run with acks=1, uncompressed, appends to the same topic.
    let mut again = produce.clone();
    again.common.count = Some(1_000);
    again.producer.acks = Acks::Leader;
    again.producer.compression = Compression::None;
    assert_eq!(run_produce(&again, stop()).await.unwrap().records, 1_000);

    // Everything in the topic, read by two consumers.
    let consume = ConsumeArgs {
        common: common(&broker.addr, "bench"),
        consumer: ConsumerArgs {
            consumers: 2,
            partition_max_bytes: 64 * 1024,
            ..ConsumerArgs::default()
        },
    };
    let c = run_consume(&consume, stop()).await.unwrap();
    assert_eq!(c.records, 6_000);
    assert_eq!(c.bytes, 6_000 * 200);
    assert!(c.latency.is_some());

    // --count stops early.
    let mut some = consume.clone();
    some.common.count = Some(10);
    some.consumer.consumers = 1;
    let c = run_consume(&some, stop()).await.unwrap();
    assert!(c.records >= 10, "{c:?}");

    // JSON output is one object with the same numbers.
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["mode"], "consume");
    assert_eq!(json["records"], c.records);

    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_latency_is_measured_per_record() {
    let broker = start_broker().await;
    let args = E2eArgs {
        common: CommonArgs {
            duration: Some(Duration::from_millis(1500)),
            ..common(&broker.addr, "e2e")
        },
        producer: ProducerArgs {
            rate: Some(2_000.0),
            ..ProducerArgs::default()
        },
        consumer: ConsumerArgs::default(),
    };
    let s = run_e2e(&args, Arc::new(AtomicBool::new(false)))
        .await
        .unwrap();
    // About 3,000 records at 2,000/s for 1.5 s; every one consumed and timed.
    assert!((2_000..=3_100).contains(&s.records), "{s:?}");
    let lat = s.latency.expect("e2e latency");
    assert_eq!(lat.samples, s.records);
    assert!(lat.max_ms < 10_000.0, "{lat:?}");
    broker.stop().await;
}

#[tokio::test]
async fn errors_are_reported_not_panicked() {
    let stop = Arc::new(AtomicBool::new(false));
    // Nothing listens on port 1.
    let args = ProduceArgs {
        common: CommonArgs {
            count: Some(1),
            ..common("127.0.0.1:1", "t")
        },
        producer: ProducerArgs::default(),
    };
    let err = run_produce(&args, stop.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("cannot connect to 127.0.0.1:1"),
        "{err}"
    );

    let broker = start_broker().await;
    let args = ConsumeArgs {
        common: common(&broker.addr, "missing"),
        consumer: ConsumerArgs::default(),
    };
    let err = run_consume(&args, stop.clone()).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let args = ProduceArgs {
        common: CommonArgs {
            count: Some(1),
            ..common(&broker.addr, "t")
        },
        producer: ProducerArgs {
            record_size: 0,
            ..ProducerArgs::default()
        },
    };
    let err = run_produce(&args, stop).await.unwrap_err();
    assert!(err.to_string().contains("--record-size"), "{err}");
    broker.stop().await;
}
