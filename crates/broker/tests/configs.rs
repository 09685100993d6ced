//! Topic configs (every Kafka 4.3 name) and dynamic broker configs through
//! CreateTopics / AlterConfigs / IncrementalAlterConfigs / DescribeConfigs,
//! including persistence of dynamic broker configs across a restart.

mod common;
use common::*;

use std::sync::Arc;

use fjord_broker::Broker;
use fjord_protocol::kafka_protocol::messages::*;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Legacy AlterConfigs of one resource; returns (error code, message).
async fn alter(
    b: &Arc<Broker>,
    rtype: i8,
    name: &str,
    configs: &[(&str, &str)],
) -> (i16, Option<String>) {
    let req = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(rtype)
            .with_resource_name(s(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            ),
    ]);
    let r: AlterConfigsResponse = call(b, ApiKey::AlterConfigs, 2, &req).await;
    let x = &r.responses[0];
    (
        x.error_code,
        x.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn incremental(
    b: &Arc<Broker>,
    rtype: i8,
    name: &str,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> i16 {
    incremental_answer(b, rtype, name, key, op, value).await.0
}

/// IncrementalAlterConfigs of one key: (error code, message).
async fn incremental_answer(
    b: &Arc<Broker>,
    rtype: i8,
    name: &str,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> (i16, Option<String>) {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(rtype)
            .with_resource_name(s(name))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s(key))
                    .with_config_operation(op)
                    .with_value(value.map(s)),
            ]),
    ]);
    let r: IncrementalAlterConfigsResponse =
        call(b, ApiKey::IncrementalAlterConfigs, 1, &req).await;
    let x = &r.responses[0];
    (
        x.error_code,
        x.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// DescribeConfigs (v4, with synonyms) of one key: (value, source, read_only, type, synonym sources).
async fn describe(
    b: &Arc<Broker>,
    rtype: i8,
    name: &str,
    key: &str,
) -> Option<(Option<String>, i8, bool, i8, Vec<i8>)> {
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(rtype)
                .with_resource_name(s(name))
                .with_configuration_keys(Some(vec![s(key)])),
        ])
        .with_include_synonyms(true);
    let r: DescribeConfigsResponse = call(b, ApiKey::DescribeConfigs, 4, &req).await;
    assert_eq!(
        r.results[0].error_code, 0,
        "{:?}",
        r.results[0].error_message
    );
    let c = r.results[0].configs.first()?;
    Some((
        c.value.as_ref().map(|v| v.to_string()),
        c.config_source,
        c.read_only,
        c.config_type,
        c.synonyms.iter().map(|x| x.source).collect(),
    ))
}

#[tokio::test]
async fn every_kafka_topic_config_is_accepted_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    let req = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("zipped")))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("compression.type"))
                    .with_value(Some(s("zstd"))),
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("min.insync.replicas"))
                    .with_value(Some(s("1"))),
            ]),
    ]);
    let r: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    assert_eq!(
        describe(&b, TOPIC, "zipped", "compression.type").await,
        Some((Some("zstd".into()), 1, false, 2, vec![1, 5]))
    );
    assert_eq!(
        describe(&b, TOPIC, "zipped", "min.cleanable.dirty.ratio").await,
        Some((Some("0.5".into()), 5, false, 6, vec![5]))
    );
    // Every Kafka topic config is listed when no keys are given.
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s("zipped"))
            .with_configuration_keys(None),
    ]);
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &req).await;
    assert_eq!(r.results[0].configs.len(), 33);

    assert_eq!(
        alter(
            &b,
            TOPIC,
            "zipped",
            &[("compression.type", "lz4"), ("preallocate", "true")]
        )
        .await,
        (0, None)
    );
    assert_eq!(
        describe(&b, TOPIC, "zipped", "preallocate")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("true")
    );
    let (code, msg) = alter(&b, TOPIC, "zipped", &[("compression.type", "brotli")]).await;
    assert_eq!(code, 40);
    assert!(msg.unwrap().contains("String must be one of"));
    let (code, msg) = alter(&b, TOPIC, "zipped", &[("no.such", "1")]).await;
    assert_eq!(
        (code, msg.as_deref()),
        (40, Some("Unknown topic config name: no.such"))
    );
    // Overrides survive a restart.
    b.close();
    drop(b);
    let b = open_broker(dir.path(), 1);
    assert_eq!(
        describe(&b, TOPIC, "zipped", "compression.type")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("lz4")
    );
}

#[tokio::test]
async fn dynamic_broker_configs_apply_to_topics_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    b.create_topic("plain", 1, Default::default(), false)
        .unwrap();
    let mut own = std::collections::BTreeMap::new();
    own.insert("flush.messages".to_string(), "7".to_string());
    b.create_topic("own", 1, own, false).unwrap();

    let before = describe(&b, BROKER, "1", "log.flush.interval.messages")
        .await
        .unwrap();
    assert_eq!(before.0, Some(i64::MAX.to_string()));
    assert_eq!((before.1, before.2), (5, false));

    assert_eq!(
        alter(&b, BROKER, "1", &[("log.flush.interval.messages", "1234")]).await,
        (0, None)
    );
    assert_eq!(
        describe(&b, BROKER, "1", "log.flush.interval.messages").await,
        Some((Some("1234".into()), 2, false, 5, vec![2, 5]))
    );
    // Topics without an override follow; the override still wins.
    let plain = b.topic("plain").unwrap();
    assert_eq!(plain.settings.read().flush_messages, Some(1234));
    assert_eq!(
        plain
            .partition(0)
            .unwrap()
            .log
            .config()
            .flush_interval_messages,
        Some(1234)
    );
    assert_eq!(
        b.topic("own").unwrap().settings.read().flush_messages,
        Some(7)
    );
    let t = describe(&b, TOPIC, "plain", "flush.messages")
        .await
        .unwrap();
    assert_eq!((t.0.as_deref(), t.1), (Some("1234"), 2));

    // Cluster-wide default: weaker than the per-broker value. Set
    // incrementally, as a Kafka user does: a plain AlterConfigs of the
    // cluster resource would remove its min.insync.replicas, which eligible
    // leader replicas (on in a new cluster) refuse.
    assert_eq!(
        incremental(&b, BROKER, "", "log.retention.ms", 0, Some("5000")).await,
        0
    );
    assert_eq!(plain.settings.read().retention_ms, Some(5000));
    assert_eq!(
        describe(&b, BROKER, "", "log.retention.ms").await,
        Some((Some("5000".into()), 3, false, 5, vec![3]))
    );

    // Errors as Kafka gives them.
    let (code, msg) = alter(&b, BROKER, "1", &[("num.partitions", "3")]).await;
    assert_eq!(
        (code, msg.as_deref()),
        (
            42,
            Some("Cannot update these configs dynamically: [num.partitions]")
        )
    );
    let (code, msg) = alter(&b, BROKER, "2", &[("log.retention.ms", "1")]).await;
    assert_eq!(
        (code, msg.as_deref()),
        (42, Some("Unexpected broker id, expected 1, but received 2"))
    );
    let (code, msg) = alter(&b, BROKER, "1", &[("log.flush.interval.messages", "abc")]).await;
    assert_eq!(code, 42);
    assert_eq!(
        msg.as_deref(),
        Some("Invalid value abc for configuration log.flush.interval.messages: Not a number of type LONG")
    );
    // A failed change changes nothing.
    assert_eq!(plain.settings.read().flush_messages, Some(1234));
    let ro = describe(&b, BROKER, "1", "num.partitions").await.unwrap();
    assert!(ro.2, "read-only");

    // Incremental: APPEND to the list-valued log.cleanup.policy, then DELETE.
    assert_eq!(
        incremental(&b, BROKER, "1", "log.cleanup.policy", 2, Some("compact")).await,
        0
    );
    assert_eq!(plain.settings.read().cleanup_policy, "delete,compact");
    assert_eq!(
        incremental(&b, BROKER, "1", "log.cleanup.policy", 1, None).await,
        0
    );
    assert_eq!(plain.settings.read().cleanup_policy, "delete");

    // Restart: the dynamic values are still there.
    b.close();
    drop((b, plain));
    let b = open_broker(dir.path(), 1);
    assert_eq!(
        describe(&b, BROKER, "1", "log.flush.interval.messages")
            .await
            .unwrap()
            .0
            .as_deref(),
        Some("1234")
    );
    assert_eq!(
        b.topic("plain").unwrap().settings.read().flush_messages,
        Some(1234)
    );
    assert_eq!(
        b.topic("plain").unwrap().settings.read().retention_ms,
        Some(5000)
    );

    // A plain AlterConfigs replaces every dynamic value of the resource.
    assert_eq!(
        alter(&b, BROKER, "1", &[("compression.type", "gzip")]).await,
        (0, None)
    );
    assert_eq!(
        describe(&b, BROKER, "1", "log.flush.interval.messages")
            .await
            .unwrap()
            .1,
        5
    );
    assert_eq!(
        b.topic("plain").unwrap().settings.read().flush_messages,
        None
    );
    assert_eq!(
        b.topic("plain")
            .unwrap()
            .settings
            .read()
            .get("compression.type")
            .as_deref(),
        Some("gzip")
    );
}

/// Every broker config Kafka 4.3.1 defines is described, with Kafka's
/// documentation when asked for, its type and the source of its value; a
/// config Fjord accepts without acting on it reports the value given.
#[tokio::test]
async fn every_kafka_broker_config_is_described_with_documentation() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fjord_broker::BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..fjord_broker::BrokerConfig::default()
    };
    config.set("log.cleaner.backoff.ms", "20000").unwrap();
    config.set("ssl.key.password", "hidden").unwrap();
    let b = Broker::open(config).unwrap();
    let ask = |documentation: bool| {
        DescribeConfigsRequest::default()
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(BROKER)
                    .with_resource_name(s("1"))
                    .with_configuration_keys(None),
            ])
            .with_include_documentation(documentation)
    };
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &ask(true)).await;
    let configs = &r.results[0].configs;
    assert!(configs.len() > 300, "{} configs", configs.len());
    let find = |name: &str| {
        configs
            .iter()
            .find(|c| &*c.name == name)
            .unwrap_or_else(|| panic!("{name} not described"))
    };
    for c in configs {
        let kafka = fjord_broker::kafka_configs::broker(&c.name).expect("a Kafka config");
        assert_eq!(c.documentation.as_deref(), Some(kafka.documentation));
        assert_eq!(c.config_type, kafka.config_type() as i8, "{}", &*c.name);
    }
    let backoff = find("log.cleaner.backoff.ms");
    assert_eq!(
        (
            backoff.value.as_deref(),
            backoff.config_source,
            backoff.config_type
        ),
        (Some("20000"), 4, 5)
    );
    assert!(!find("num.partitions")
        .documentation
        .as_deref()
        .unwrap()
        .is_empty());
    let rack = find("broker.rack");
    assert_eq!((rack.value.as_deref(), rack.config_source), (None, 5));
    let threads = find("log.cleaner.threads");
    assert_eq!(
        (threads.value.as_deref(), threads.config_source),
        (Some("1"), 5)
    );
    let password = find("ssl.key.password");
    assert!(password.is_sensitive);
    assert_eq!(
        (password.value.as_deref(), password.config_source),
        (None, 4)
    );
    // Without the flag, no documentation.
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &ask(false)).await;
    assert!(r.results[0]
        .configs
        .iter()
        .all(|c| c.documentation.is_none()));
    // Topic configs carry Kafka's documentation too.
    let req = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("documented")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let _: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, 7, &req).await;
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(s("documented"))
                .with_configuration_keys(Some(vec![s("retention.ms")])),
        ])
        .with_include_documentation(true);
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &req).await;
    let doc = r.results[0].configs[0].documentation.as_deref().unwrap();
    assert!(doc.contains("retention"), "{doc}");
}

/// A broker whose data directory was formatted at `metadata.version`
/// `metadata_version` with Kafka's default feature levels for it (`fjord
/// format --release-version`).
fn open_broker_at(dir: &std::path::Path, metadata_version: i16) -> Arc<Broker> {
    let levels = fjord_broker::features::default_levels(metadata_version);
    let records = fjord_broker::cluster_metadata::feature_records(metadata_version, &levels);
    fjord_metadata::log::write_bootstrap_checkpoint(dir, &records, metadata_version, 0).unwrap();
    open_broker(dir, 1)
}

/// A new cluster at Kafka 4.3.1's default metadata.version (4.3-IV0) has
/// eligible leader replicas on, as Kafka's does from 4.1-IV0, with Kafka's
/// safety record written at bootstrap: the cluster-wide
/// `min.insync.replicas` (the static one, 1; DYNAMIC_DEFAULT_BROKER_CONFIG).
/// One formatted at 4.0 (4.0-IV3) has it off and no such record.
#[tokio::test]
async fn a_new_cluster_has_eligible_leader_replicas_on_from_4_1() {
    let level = |b: &Arc<Broker>| b.image().feature_level("eligible.leader.replicas.version");
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker(dir.path(), 1);
    assert_eq!(level(&b), Some(1));
    assert_eq!(
        describe(&b, BROKER, "", "min.insync.replicas")
            .await
            .map(|d| (d.0, d.1)),
        Some((Some("1".into()), 3))
    );
    assert_eq!(
        incremental_answer(&b, BROKER, "1", "min.insync.replicas", 0, Some("2")).await,
        (
            40,
            Some("Broker-level min.insync.replicas cannot be altered while ELR is enabled.".into())
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let b = open_broker_at(dir.path(), 25);
    assert_eq!(level(&b), None);
    assert_eq!(
        describe(&b, BROKER, "", "min.insync.replicas").await,
        None,
        "no cluster-wide record"
    );
}

/// Kafka's refusals while eligible leader replicas are on (KIP-966,
/// `ConfigurationControlManager`): a node's own `min.insync.replicas` can
/// be neither set nor removed, the cluster-wide one not removed (also by a
/// plain AlterConfigs that leaves it out); INVALID_CONFIG with Kafka's
/// messages. Before the feature is on (a cluster formatted at 4.0), the
/// same changes are accepted.
#[tokio::test]
async fn elr_refuses_a_node_min_insync_replicas_and_removing_the_cluster_one() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_broker_at(dir.path(), 25);
    let min_isr = "min.insync.replicas";
    let set_node = |b| incremental(b, BROKER, "1", min_isr, 0, Some("2"));
    assert_eq!(set_node(&b).await, 0, "ELR off: a node's own value is fine");
    assert_eq!(incremental(&b, BROKER, "1", min_isr, 1, None).await, 0);

    let req = UpdateFeaturesRequest::default()
        .with_timeout_ms(10_000)
        .with_feature_updates(vec![update_features_request::FeatureUpdateKey::default()
            .with_feature(s("eligible.leader.replicas.version"))
            .with_max_version_level(1)
            .with_upgrade_type(1)]);
    let r: UpdateFeaturesResponse = call(&b, ApiKey::UpdateFeatures, 1, &req).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!(r.results.iter().all(|x| x.error_code == 0), "{r:?}");

    let node_msg = "Broker-level min.insync.replicas cannot be altered while ELR is enabled.";
    let cluster_msg = "Cluster-level min.insync.replicas cannot be removed while ELR is enabled.";
    assert_eq!(
        incremental_answer(&b, BROKER, "1", min_isr, 0, Some("2")).await,
        (40, Some(node_msg.into()))
    );
    // Enabling wrote the cluster-wide value (the static one, 1):
    // DYNAMIC_DEFAULT_BROKER_CONFIG.
    assert_eq!(
        describe(&b, BROKER, "", min_isr).await.map(|d| (d.0, d.1)),
        Some((Some("1".into()), 3))
    );
    assert_eq!(
        incremental_answer(&b, BROKER, "", min_isr, 1, None).await,
        (40, Some(cluster_msg.into()))
    );
    assert_eq!(
        incremental_answer(&b, BROKER, "", min_isr, 0, Some("2")).await,
        (0, None),
        "changing it is fine"
    );
    assert_eq!(
        alter(&b, BROKER, "", &[("log.retention.ms", "3600000")]).await,
        (40, Some(cluster_msg.into())),
        "a plain AlterConfigs that leaves it out removes it"
    );
    assert_eq!(
        alter(
            &b,
            BROKER,
            "",
            &[(min_isr, "2"), ("log.retention.ms", "3600000")]
        )
        .await,
        (0, None)
    );
}
