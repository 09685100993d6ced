"""Admin APIs a single node answers trivially, and dynamic broker configs, with real clients:
kafka-python's KafkaAdminClient (DescribeLogDirs, AlterReplicaLogDirs, ElectLeaders, DescribeQuorum,
Alter/ListPartitionReassignments, DescribeTopicPartitions, ListConfigResources), confluent-kafka's
AdminClient (ElectLeaders, broker and topic configs, compression.type) and Kafka's Java tools
(kafka-log-dirs, kafka-metadata-quorum, kafka-leader-election, kafka-reassign-partitions, kafka-configs)."""

from __future__ import annotations

import json
import time

from confluent_kafka import ElectionType, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CfTopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

import clients as c
from conftest import unique

CONFIGS = "kafka.admin.ConfigCommand"
LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand"
QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"


def _kp_admin(bootstrap):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


def test_kafka_python_single_node_admin_apis(broker):
    from kafka.structs import TopicPartitionReplica
    from kafka.structs import TopicPartition

    b = broker.bootstrap
    t = c.create_topic(b, unique("kpapis"), partitions=3)
    assert all(d.err is None for d in c.cf_produce(b, t, c.records(10, "ld")))
    adm = _kp_admin(b)
    try:
        dirs = adm.describe_log_dirs()
        assert len(dirs) == 1 and dirs[0]["broker"] == 1
        log_dir = dirs[0]["log_dirs"][0]
        assert log_dir["error_code"] == 0
        sizes = {
            (tp["name"], p["partition_index"]): p["partition_size"]
            for tp in log_dir["topics"]
            for p in tp["partitions"]
        }
        assert sum(sizes[(t, p)] for p in range(3)) > 0, sizes

        tpr = TopicPartitionReplica(t, 0, 1)
        assert adm.alter_replica_log_dirs({tpr: log_dir["log_dir"]})[tpr].errno == 0
        res = adm.alter_replica_log_dirs({tpr: "/no/such/dir"})
        assert res[tpr].errno == 57  # LOG_DIR_NOT_FOUND

        r = adm.elect_leaders(0, {t: [0, 1, 2]})
        codes = sorted((p[0], p[1]) for p in r.replica_election_results[0][1])
        assert codes == [(0, 84), (1, 84), (2, 84)]  # ELECTION_NOT_NEEDED

        q = adm.describe_metadata_quorum()
        p = q["topics"][0]["partitions"][0]
        assert p["leader_id"] == 1 and [v["replica_id"] for v in p["current_voters"]] == [1]

        tp = TopicPartition(t, 0)
        assert adm.alter_partition_reassignments({tp: [1]}) == {tp: None}
        assert adm.list_partition_reassignments() == {}

        pages, seen, cursor = 0, [], None
        while True:
            kw = {"cursor": cursor} if cursor else {}
            r = adm.describe_topic_partitions([t], response_partition_limit=1, **kw)
            pages += 1
            seen += [p["partition_index"] for topic in r["topics"] for p in topic["partitions"]]
            cursor = r["next_cursor"]
            if cursor is None:
                break
            assert pages < 10
        assert seen == [0, 1, 2] and pages == 3

        res = adm.list_config_resources()
        assert res["broker"] == ["1"] and t in res["topic"]
    finally:
        adm.close()


def test_confluent_elect_leaders_and_compression_config(broker):
    b = broker.bootstrap
    a = c.cf_admin(b)
    t = unique("cfzstd")
    fs = a.create_topics(
        [NewTopic(t, 1, 1, config={"compression.type": "zstd", "min.cleanable.dirty.ratio": "0.3"})],
        operation_timeout=15,
        request_timeout=15,
    )
    fs[t].result(timeout=20)
    res = ConfigResource(ResourceType.TOPIC, t)
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert cfg["compression.type"].value == "zstd"
    assert cfg["compression.type"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["min.cleanable.dirty.ratio"].value == "0.3"
    assert cfg["preallocate"].value == "false" and cfg["preallocate"].is_default

    bad = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("compression.type", "brotli", incremental_operation=AlterConfigOpType.SET)])
    try:
        a.incremental_alter_configs([bad])[bad].result(timeout=20)
        raise AssertionError("brotli accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_CONFIG

    # (confluent-kafka 2.16.1's binding rejects keyword arguments to elect_leaders)
    fut = a.elect_leaders(ElectionType.PREFERRED, [CfTopicPartition(t, 0)])
    result = fut.result(timeout=20)
    err = result[CfTopicPartition(t, 0)]
    assert err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED


def test_dynamic_broker_config_survives_restart(broker_factory, java):
    br = broker_factory()
    b = br.bootstrap
    t = c.create_topic(b, unique("dyn"))
    a = c.cf_admin(b)
    node = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.flush.interval.messages", "1234", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([node])[node].result(timeout=20)

    def check():
        res = ConfigResource(ResourceType.BROKER, "1")
        cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
        e = cfg["log.flush.interval.messages"]
        assert e.value == "1234" and not e.is_read_only
        assert e.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert cfg["num.partitions"].is_read_only
        tres = ConfigResource(ResourceType.TOPIC, t)
        tcfg = a.describe_configs([tres], request_timeout=15)[tres].result(timeout=20)
        assert tcfg["retention.ms"].value == "3600000"
        assert tcfg["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value

    def eventually(timeout_s=15.0):
        # Kafka applies dynamic configs asynchronously (through its metadata log).
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return check()
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    eventually()
    br.restart()
    a = c.cf_admin(b)
    eventually()

    out = java.run(CONFIGS, "--bootstrap-server", b, "--entity-type", "brokers", "--entity-name", "1",
                   "--describe").stdout
    assert "log.flush.interval.messages=1234" in out and "DYNAMIC_BROKER_CONFIG" in out, out
    java.run(CONFIGS, "--bootstrap-server", b, "--entity-type", "brokers", "--entity-default", "--alter",
             "--add-config", "log.segment.bytes=2000000")
    out = java.run(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", t,
                   "--describe", "--all").stdout
    assert "segment.bytes=2000000" in out and "DYNAMIC_DEFAULT_BROKER_CONFIG" in out, out
    bad = java.run(CONFIGS, "--bootstrap-server", b, "--entity-type", "brokers", "--entity-name", "1",
                   "--alter", "--add-config", "num.partitions=3", check=False)
    assert bad.returncode != 0
    assert "Cannot update these configs dynamically: [num.partitions]" in bad.stdout + bad.stderr


def test_java_log_dirs_quorum_election_reassign_tools(broker, java):
    b = broker.bootstrap
    t = c.create_topic(b, unique("jtool"), partitions=2)
    assert all(d.err is None for d in c.cf_produce(b, t, c.records(5, "jt")))

    out = java.run(LOG_DIRS, "--bootstrap-server", b, "--describe", "--topic-list", t).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    dirs = doc["brokers"][0]["logDirs"]
    assert len(dirs) == 1 and dirs[0]["error"] is None
    parts = {p["partition"]: p for p in dirs[0]["partitions"]}
    assert set(parts) == {f"{t}-0", f"{t}-1"}
    assert sum(p["size"] for p in parts.values()) > 0 and all(p["offsetLag"] == 0 for p in parts.values())

    out = java.run(QUORUM, "--bootstrap-server", b, "describe", "--status").stdout
    assert "LeaderId:               1" in out and '"id": 1' in out, out
    out = java.run(QUORUM, "--bootstrap-server", b, "describe", "--replication").stdout
    assert "Leader" in out, out

    out = java.run(ELECTION, "--bootstrap-server", b, "--election-type", "preferred", "--topic", t,
                   "--partition", "0").stdout
    assert f"Valid replica already elected for partitions {t}-0" in out, out

    out = java.run(REASSIGN, "--bootstrap-server", b, "--list").stdout
    assert "No partition reassignments found." in out, out
