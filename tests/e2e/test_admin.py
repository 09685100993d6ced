"""Topic administration: the Java kafka-topics / kafka-configs / kafka-delete-records tools, confluent-kafka's
AdminClient and kafka-python's admin client. CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
AlterConfigs, IncrementalAlterConfigs, DeleteRecords."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

import clients as c
from conftest import unique

TOPICS = "org.apache.kafka.tools.TopicCommand"
CONFIGS = "kafka.admin.ConfigCommand"
DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand"


def _wait_gone(bootstrap, topic, timeout_s=30):
    a = c.cf_admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if topic not in a.list_topics(timeout=10).topics:
            return
        time.sleep(0.3)
    raise AssertionError(f"topic {topic} still listed {timeout_s}s after deletion")


def _topic_configs(bootstrap, topic) -> dict[str, ConfigEntry]:
    a = c.cf_admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=15)[res].result(timeout=20)


def test_java_topics_and_configs_tools(broker, java):
    b = broker.bootstrap
    t = unique("jtools")
    out = java.run(
        TOPICS, "--bootstrap-server", b, "--create", "--topic", t, "--partitions", "3",
        "--replication-factor", "1", "--config", "retention.ms=3600000",
    ).stdout
    assert f"Created topic {t}" in out
    c.wait_topic(b, t, 3)

    java.run(TOPICS, "--bootstrap-server", b, "--alter", "--topic", t, "--partitions", "5")
    c.wait_topic(b, t, 5)
    desc = java.run(TOPICS, "--bootstrap-server", b, "--describe", "--topic", t).stdout
    assert "PartitionCount: 5" in desc, desc
    assert "retention.ms=3600000" in desc, desc
    assert sum(1 for line in desc.splitlines() if "Partition:" in line and "Leader: 1" in line) == 5, desc

    java.run(
        CONFIGS, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", t, "--alter",
        "--add-config", "retention.ms=7200000,max.message.bytes=200000,cleanup.policy=compact",
    )
    desc = java.run(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", t, "--describe").stdout
    for kv in ("retention.ms=7200000", "max.message.bytes=200000", "cleanup.policy=compact"):
        assert kv in desc, desc
    # the other client sees the same
    cfg = _topic_configs(b, t)
    assert cfg["retention.ms"].value == "7200000" and not cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].value == "200000"

    java.run(
        CONFIGS, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", t, "--alter",
        "--delete-config", "max.message.bytes,cleanup.policy",
    )
    cfg = _topic_configs(b, t)
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["cleanup.policy"].value == "delete" and cfg["cleanup.policy"].is_default
    assert cfg["max.message.bytes"].is_default

    listed = java.run(TOPICS, "--bootstrap-server", b, "--list").stdout.split()
    assert t in listed
    java.run(TOPICS, "--bootstrap-server", b, "--delete", "--topic", t)
    _wait_gone(b, t)


def test_java_configs_tool_broker(broker, java):
    """Broker configs are readable (num.partitions is what topic-creating tools look up)."""
    out = java.run(
        CONFIGS, "--bootstrap-server", broker.bootstrap, "--entity-type", "brokers", "--entity-name", "1",
        "--describe", "--all",
    ).stdout
    assert "num.partitions=1" in out, out[-3000:]
    assert "message.max.bytes=" in out


def test_confluent_admin_topics(broker):
    b = broker.bootstrap
    a = c.cf_admin(b)
    t = unique("cfadmin")

    # validate_only creates nothing
    fs = a.create_topics([NewTopic(t, 2, 1)], validate_only=True, operation_timeout=15, request_timeout=15)
    fs[t].result(timeout=20)
    time.sleep(0.5)
    assert t not in a.list_topics(timeout=10).topics

    fs = a.create_topics(
        [NewTopic(t, 2, 1, config={"retention.ms": "3600000", "segment.bytes": "1048576"})],
        operation_timeout=15,
        request_timeout=15,
    )
    fs[t].result(timeout=20)
    md = c.wait_topic(b, t, 2)
    assert sorted(md.partitions) == [0, 1]

    # creating it again: TOPIC_ALREADY_EXISTS
    fs = a.create_topics([NewTopic(t, 2, 1)], operation_timeout=15, request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[t].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # the metadata log's name is no topic's (Kafka's controller refuses it; Fjord's partition directory would
    # be the metadata log's)
    fs = a.create_topics([NewTopic("__cluster_metadata", 1, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs["__cluster_metadata"].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_REQUEST, ei.value
    assert "__cluster_metadata" not in a.list_topics(timeout=10).topics

    # an invalid config value is refused
    bad = unique("cfbad")
    fs = a.create_topics([NewTopic(bad, 1, 1, config={"retention.ms": "not-a-number"})], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[bad].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG

    cfg = _topic_configs(b, t)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["message.timestamp.type"].value == "CreateTime"

    # incremental: set one, delete another
    res = ConfigResource(
        ResourceType.TOPIC,
        t,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("retention.bytes", "10485760", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    a.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    cfg = _topic_configs(b, t)
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["retention.bytes"].value == "10485760"
    assert cfg["segment.bytes"].is_default

    # legacy AlterConfigs replaces the whole set
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"segment.ms": "600000"})
    a.alter_configs([res], request_timeout=15)[res].result(timeout=20)
    cfg = _topic_configs(b, t)
    assert cfg["segment.ms"].value == "600000"
    assert cfg["retention.ms"].is_default and cfg["retention.bytes"].is_default

    # broker configs are readable
    br = ConfigResource(ResourceType.BROKER, "1")
    bcfg = a.describe_configs([br], request_timeout=15)[br].result(timeout=20)
    assert bcfg["num.partitions"].value == "1"

    fs = a.delete_topics([t], operation_timeout=15, request_timeout=15)
    fs[t].result(timeout=20)
    _wait_gone(b, t)

    fs = a.delete_topics([unique("nosuch")], operation_timeout=15, request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        list(fs.values())[0].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions(broker):
    b = broker.bootstrap
    a = c.cf_admin(b)
    t = c.create_topic(b, unique("cparts"), partitions=2)

    fs = a.create_partitions([NewPartitions(t, 4)], validate_only=True, request_timeout=15)
    fs[t].result(timeout=20)
    time.sleep(0.5)
    assert len(c.wait_topic(b, t).partitions) == 2

    fs = a.create_partitions([NewPartitions(t, 4)], request_timeout=15)
    fs[t].result(timeout=20)
    c.wait_topic(b, t, 4)

    # shrinking is refused
    fs = a.create_partitions([NewPartitions(t, 3)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[t].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    # the new partitions take records, read back by another client
    recs = c.records(8, "np")
    for i, r in enumerate(recs):
        r["partition"] = i % 4
    assert all(d.err is None for d in c.cf_produce(b, t, recs))
    got = c.kp_consume(b, t, 8)
    assert sorted((r["partition"], r["value"]) for r in got) == sorted((r["partition"], r["value"]) for r in recs)


def test_kafka_python_admin(broker):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.admin import NewPartitions as KNewPartitions
    from kafka.admin import NewTopic as KNewTopic

    b = broker.bootstrap
    t = unique("kpadmin")
    adm = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=15000)
    try:
        adm.create_topics([KNewTopic(t, 1, 1, topic_configs={"retention.ms": "3600000"})])
        c.wait_topic(b, t, 1)
        adm.create_partitions({t: KNewPartitions(3)})
        c.wait_topic(b, t, 3)
        res = adm.describe_configs([KConfigResource(ConfigResourceType.TOPIC, t)])
        text = repr(res)
        assert "retention.ms" in text and "3600000" in text, text
        adm.delete_topics([t])
        _wait_gone(b, t)
    finally:
        adm.close()


def test_delete_records(broker, java):
    b = broker.bootstrap
    t = c.create_topic(b, unique("delrec"))
    recs = c.records(20, "dr")
    assert all(d.err is None for d in c.cf_produce(b, t, recs))

    a = c.cf_admin(b)
    if not hasattr(a, "delete_records"):
        pytest.fail("the installed confluent-kafka has no AdminClient.delete_records")
    fs = a.delete_records([TopicPartition(t, 0, 5)], request_timeout=15)
    res = list(fs.values())[0].result(timeout=20)
    assert res.low_watermark == 5

    cons = c.cf_consumer(b)
    try:
        assert cons.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False) == (5, 20)
    finally:
        cons.close()
    got = c.cf_consume(b, t, 15)
    assert [r["offset"] for r in got] == list(range(5, 20))
    c.assert_same(recs[5:], got, check_offsets=False)

    spec = {"version": 1, "partitions": [{"topic": t, "partition": 0, "offset": 8}]}
    path = broker.root / f"{t}-delete.json"
    path.write_text(json.dumps(spec))
    out = java.run(DELETE_RECORDS, "--bootstrap-server", b, "--offset-json-file", str(path)).stdout
    assert "low_watermark: 8" in out, out

    # readers starting before the log start are moved to it (auto.offset.reset=earliest)
    got, start, done = c.java_consume(java, b, t, 12)
    assert done["beginning_offsets"] == {f"{t}:0": 8}
    assert [r["offset"] for r in got] == list(range(8, 20))
    c.assert_same(recs[8:], got, check_offsets=False)
    got = c.kcat_consume(b, t, partition=0, offset="beginning")
    assert [r["offset"] for r in got] == list(range(8, 20))
