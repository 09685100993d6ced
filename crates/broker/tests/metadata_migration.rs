//! An old data directory (`fjord-metadata.json`, `fjord-broker-configs.json`,
//! partition directories with data) is migrated into the metadata log on the
//! first start, once; topics, ids, configs, data and producer ids survive.

use std::collections::BTreeMap;
use std::path::Path;

use fjord_broker::{Broker, BrokerConfig};
use fjord_model::{Offset, ProducerId};
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::{Log, LogConfig, Storage};

const TOPIC_ID: &str = "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

/// Writes the files exactly as the broker wrote them before the metadata
/// log (serde_json pretty, the same field names), and partition data.
fn build_old_data_dir(dir: &Path) {
    let metadata = serde_json::json!({
        "cluster_id": "OldClusterIdAAAAAAAAAA",
        "producer_id_next": 5000,
        "topics": [
            {
                "name": "orders",
                "id": TOPIC_ID,
                "partitions": 2,
                "overrides": { "retention.ms": "123456", "cleanup.policy": "delete" }
            },
            { "name": "empty", "id": "0a0b0c0d-0000-4000-8000-000000000001", "partitions": 1, "overrides": {} }
        ]
    });
    std::fs::write(
        dir.join("fjord-metadata.json"),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    let configs = serde_json::json!({
        "broker": { "log.retention.ms": "999999" },
        "cluster_default": { "log.segment.bytes": "2097152" }
    });
    std::fs::write(
        dir.join("fjord-broker-configs.json"),
        serde_json::to_vec_pretty(&configs).unwrap(),
    )
    .unwrap();
    let storage = Storage::default();
    for p in 0..2 {
        let (log, _) = Log::open(
            &storage,
            &dir.join(format!("orders-{p}")),
            LogConfig::default(),
            1,
        )
        .unwrap();
        for i in 0..=p {
            let mut b = BatchBuilder::new(Compression::None);
            b.push(
                1_700_000_000_000,
                None,
                Some(format!("v{i}").as_bytes()),
                &[],
            );
            log.append(&mut b.build(0), 2).unwrap();
        }
        log.close().unwrap();
    }
    let (log, _) = Log::open(&storage, &dir.join("empty-0"), LogConfig::default(), 1).unwrap();
    log.close().unwrap();
}

fn open(dir: &Path) -> std::sync::Arc<Broker> {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap()
}

fn check_content(b: &Broker) {
    assert_eq!(b.cluster_id, "OldClusterIdAAAAAAAAAA");
    let orders = b.topic("orders").expect("migrated topic");
    assert_eq!(orders.id.to_string(), TOPIC_ID);
    assert_eq!(orders.partition_count(), 2);
    assert_eq!(
        *orders.overrides.read(),
        BTreeMap::from([
            ("cleanup.policy".to_string(), "delete".to_string()),
            ("retention.ms".to_string(), "123456".to_string()),
        ])
    );
    assert_eq!(
        orders.settings.read().log_config().retention_ms,
        Some(123456)
    );
    assert_eq!(orders.partition(0).unwrap().log.log_end_offset(), Offset(1));
    assert_eq!(orders.partition(1).unwrap().log.log_end_offset(), Offset(2));
    let data = orders
        .partition(1)
        .unwrap()
        .log
        .read(Offset(0), 1 << 20, Offset(2), true)
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(data.windows(2).any(|w| w == b"v1"), "partition data intact");
    assert_eq!(b.topic("empty").unwrap().partition_count(), 1);
    let dynamic = b.dynamic_configs();
    assert_eq!(
        dynamic.broker.get("log.retention.ms").map(String::as_str),
        Some("999999")
    );
    assert_eq!(
        dynamic
            .cluster_default
            .get("log.segment.bytes")
            .map(String::as_str),
        Some("2097152")
    );
    // Topic defaults follow the dynamic configs; a topic's override still wins.
    assert_eq!(
        b.topic("empty")
            .unwrap()
            .settings
            .read()
            .log_config()
            .retention_ms,
        Some(999999)
    );
    let image = b.image();
    assert_eq!(
        image.topics().get("orders").unwrap().id.to_string(),
        TOPIC_ID
    );
    assert_eq!(image.topics().get("empty").unwrap().partition_count(), 1);
    assert_eq!(
        image.metadata_version(),
        Some(fjord_broker::cluster_metadata::BOOTSTRAP_METADATA_VERSION)
    );
}

#[test]
fn old_data_dir_is_migrated_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build_old_data_dir(dir);

    let b = open(dir);
    check_content(&b);
    // Producer ids continue from the persisted block end.
    assert_eq!(b.next_producer_id().unwrap(), ProducerId(5000));
    assert_eq!(b.next_producer_id().unwrap(), ProducerId(5001));
    assert!(!dir.join("fjord-metadata.json").exists());
    assert!(dir.join("fjord-metadata.json.migrated").exists());
    assert!(dir.join("fjord-broker-configs.json.migrated").exists());
    assert!(dir.join("meta.properties").exists());
    assert!(dir
        .join("__cluster_metadata-0")
        .join("quorum-state")
        .exists());
    b.close();
    drop(b);

    // Second start: nothing to migrate, everything still there; the producer
    // id block handed out before is never handed out again.
    let b = open(dir);
    check_content(&b);
    assert_eq!(b.next_producer_id().unwrap(), ProducerId(6000));
    b.close();
    drop(b);

    // A crash after the records were durable but before the rename leaves
    // the old file in place: the next start only renames it (migrating
    // again would try to create the topics twice and fail).
    std::fs::copy(
        dir.join("fjord-metadata.json.migrated"),
        dir.join("fjord-metadata.json"),
    )
    .unwrap();
    let b = open(dir);
    check_content(&b);
    assert!(!dir.join("fjord-metadata.json").exists());
    // The group coordinator's topic and the two migrated ones, no more.
    assert_eq!(b.image().topics().len(), 3);
    b.close();
}

#[test]
fn new_node_bootstraps_and_keeps_topics_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let b = open(dir);
    let cluster_id = b.cluster_id.clone();
    assert_eq!(
        b.image().brokers().len(),
        1,
        "a RegisterBrokerRecord for itself"
    );
    let t = b.create_topic("t", 3, BTreeMap::new(), false).unwrap();
    let id = t.id;
    b.create_partitions("t", 4, false).unwrap();
    b.alter_topic_config(
        "t",
        &[("retention.ms".into(), Some("42".into()))],
        true,
        false,
    )
    .unwrap();
    b.create_topic("gone", 1, BTreeMap::new(), false).unwrap();
    b.delete_topic("gone").unwrap();
    assert!(!dir.join("gone-0").exists());
    b.close();
    drop(b);
    let b = open(dir);
    assert_eq!(b.cluster_id, cluster_id);
    let t = b.topic("t").unwrap();
    assert_eq!((t.id, t.partition_count()), (id, 4));
    assert_eq!(t.settings.read().log_config().retention_ms, Some(42));
    assert!(b.topic("gone").is_none());
    b.close();
}

#[test]
fn the_node_registers_itself_and_admin_records_come_from_the_controller() {
    use fjord_model::NodeId;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = |port: u16| BrokerConfig {
        data_dir: dir.to_path_buf(),
        advertised_port: port,
        ..BrokerConfig::default()
    };
    let b = Broker::open(config(19092)).unwrap();
    let node = b.config.node_id;
    let reg = b.image().broker(node).cloned().unwrap();
    assert!(!reg.fenced);
    assert_eq!(reg.end_points[0].port, 19092);
    let live = b.live_brokers();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].id, live[0].port), (node, 19092));
    // A topic's records come from the controller's placement: this node
    // is the only replica, the ISR and the leader.
    b.create_topic("t", 2, BTreeMap::new(), false).unwrap();
    b.create_partitions("t", 3, false).unwrap();
    let image = b.image();
    let t = image.topics().get("t").unwrap();
    assert_eq!(t.partition_count(), 3);
    for p in t.partitions.values() {
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![node.0], vec![node.0])
        );
        assert_eq!(p.leader, node.0);
    }
    fjord_controller::check_image(&image).unwrap();
    // Producer-id blocks are allocated at this node's broker epoch.
    let first = b.next_producer_id().unwrap();
    assert_eq!(b.image().next_producer_id(), first.0 + 1000);
    b.close();
    drop(b);

    // Restarted with another advertised port: registered again (a new,
    // higher epoch, the new endpoint), unfenced, still leading its partitions.
    let b = Broker::open(config(19093)).unwrap();
    let again = b.image().broker(node).cloned().unwrap();
    assert!(again.broker_epoch > reg.broker_epoch);
    assert!(!again.fenced);
    assert_eq!(again.end_points[0].port, 19093);
    assert_eq!(b.live_brokers()[0].port, 19093);
    let image = b.image();
    for p in image.topics().get("t").unwrap().partitions.values() {
        assert_eq!(p.leader, node.0);
    }
    fjord_controller::check_image(&image).unwrap();
    // The next block starts after the first one.
    assert_eq!(b.next_producer_id().unwrap().0, first.0 + 1000);
    assert_eq!(b.image().broker(NodeId(node.0 + 1)), None);
    b.close();
}
