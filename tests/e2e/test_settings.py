"""A broker started with --set NAME=VALUE settings (Kafka's broker config names)."""

from __future__ import annotations

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

import pytest

import clients as c
from conftest import BROKER_KIND, unique

SETTINGS = {
    "num.partitions": "3",
    "auto.create.topics.enable": "false",
    "message.max.bytes": "100000",
    "log.segment.bytes": "1048576",
}


def test_broker_settings(broker_factory, java):
    br = broker_factory(SETTINGS)
    b = br.bootstrap
    a = c.cf_admin(b)

    res = ConfigResource(ResourceType.BROKER, "1")
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    for k, v in SETTINGS.items():
        assert cfg[k].value == v, (k, cfg[k])

    # no auto-creation: producing to an unknown topic fails and creates nothing
    t = unique("noauto")
    dels = c.cf_produce(b, t, [{"key": "a", "value": "1"}], {"message.timeout.ms": 5000}, flush_timeout_s=20)
    assert dels[0].err is not None
    assert dels[0].err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT)
    md = a.list_topics(t, timeout=10)
    assert md.topics[t].error is not None and md.topics[t].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert t not in a.list_topics(timeout=10).topics

    # topics created without a partition count get num.partitions (CreateTopics with -1)
    t1 = unique("defparts")
    a.create_topics([NewTopic(t1)], request_timeout=15)[t1].result(timeout=20)
    assert len(c.wait_topic(b, t1).partitions) == 3
    t2 = unique("defparts-java")
    java.run("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", b, "--create", "--topic", t2)
    assert len(c.wait_topic(b, t2).partitions) == 3

    # message.max.bytes applies
    recs = [{"key": "ok", "value": None, "value_size": 50_000}, {"key": "big", "value": None, "value_size": 150_000}]
    dels = c.cf_produce(b, t1, recs, {"linger.ms": 0, "batch.num.messages": 1})
    assert dels[0].err is None
    assert dels[1].err is not None and dels[1].err.code() == KafkaError.MSG_SIZE_TOO_LARGE

    # settings hold after a restart
    br.restart()
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert cfg["num.partitions"].value == "3"
    assert len(c.wait_topic(b, t1).partitions) == 3


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
def test_many_segments_and_restart(broker_factory, direct):
    """~3 MiB into 1 MiB segments, a DeleteRecords across a segment boundary, a restart: all consistent.
    `direct`: Fjord with log.direct.io=auto (O_DIRECT appends; Kafka has no such switch and runs as is),
    and a kill -9 and restart at the end."""
    settings = {"log.segment.bytes": "1048576"}
    if direct and BROKER_KIND == "fjord":
        settings["log.direct.io"] = "auto"
    br = broker_factory(settings)
    b = br.bootstrap
    t = c.create_topic(b, unique("segments"))
    n = 3000
    recs = [{"key": f"k{i}", "value": f"{i:06d}-" + "s" * 1000} for i in range(n)]
    dels = c.cf_produce(b, t, recs, {"linger.ms": 20})
    assert [d.offset for d in dels] == list(range(n))

    got = c.kcat_consume(b, t, partition=0)
    assert [r["offset"] for r in got] == list(range(n))
    assert all(r["value"] == recs[r["offset"]]["value"] for r in got)

    a = c.cf_admin(b)
    list(a.delete_records([TopicPartition(t, 0, 1500)], request_timeout=15).values())[0].result(timeout=20)

    br.stop()
    br.start()
    cons = c.cf_consumer(b)
    try:
        assert cons.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False) == (1500, n)
    finally:
        cons.close()
    got = c.cf_consume(b, t, n - 1500, timeout_s=30)
    assert [r["offset"] for r in got] == list(range(1500, n))
    assert all(r["value"] == recs[r["offset"]]["value"] for r in got)
    # reading from the middle of a later segment
    got = c.kcat_consume(b, t, partition=0, offset=2500)
    assert [r["offset"] for r in got] == list(range(2500, n))
    if not direct:
        return
    if BROKER_KIND == "fjord":
        assert "written with O_DIRECT" in br.log_path.read_text(errors="replace"), br.log_tail()
    # More appends after the restart (the last partial block reloaded), then kill -9: the
    # padding after the last block is cut at the next start, every acknowledged record stays.
    more = [{"key": f"k{i}", "value": f"{i:06d}-" + "d" * 777} for i in range(n, n + 500)]
    dels = c.cf_produce(b, t, more, {"linger.ms": 5, "acks": "all"})
    assert [d.offset for d in dels] == list(range(n, n + 500))
    br.kill9()
    br.start()
    got = c.kcat_consume(b, t, partition=0, offset=2500)
    assert [r["offset"] for r in got] == list(range(2500, n + 500))
    want = {**{i: recs[i]["value"] for i in range(2500, n)}, **{n + j: m["value"] for j, m in enumerate(more)}}
    assert all(r["value"] == want[r["offset"]] for r in got)
