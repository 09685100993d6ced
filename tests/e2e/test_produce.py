"""Produce semantics: acks=0/1/all, LogAppendTime topics, message.max.bytes / max.message.bytes."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError

import clients as c
import wire
from conftest import unique

N = 50


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_confluent_and_kafka_python(broker, acks):
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"acks{acks}-cf"))
    recs = c.records(N, "cf")
    dels = c.cf_produce(b, t, recs, {"acks": acks})
    assert all(d.err is None for d in dels), dels
    if acks != "0":
        assert [d.offset for d in dels] == list(range(N))
    c.assert_same(recs, c.kcat_consume(b, t))

    t = c.create_topic(b, unique(f"acks{acks}-kp"))
    recs = c.records(N, "kp")
    mds = c.kp_produce(b, t, recs, {"acks": {"0": 0, "1": 1, "all": "all"}[acks]})
    if acks != "0":
        assert [m.offset for m in mds] == list(range(N))
    c.assert_same(recs, c.cf_consume(b, t, N))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_java(broker, java, acks):
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"acks{acks}-java"))
    recs = c.records(N, "java")
    # acks=0/1 cannot be combined with idempotence, which the Java client enables by default
    conf = {"acks": acks, "enable.idempotence": "true" if acks == "all" else "false"}
    acks_out, errors = c.java_produce(java, b, t, recs, conf)
    assert not errors and len(acks_out) == N
    if acks != "0":
        assert [a["offset"] for a in acks_out] == list(range(N))
    else:
        assert all(a["offset"] == -1 for a in acks_out)  # the Java client knows no offsets with acks=0
    c.assert_same(recs, c.cf_consume(b, t, N))


def test_acks0_gets_no_response_raw(broker):
    """acks=0: the broker sends nothing back, so the next response on the connection is for the next request."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("acks0-raw"))
    now = int(time.time() * 1000)
    with wire.connect(b) as s:
        s.sendall(wire.frame(wire.produce_v3(t, 0, wire.record_batch([(b"k", b"v0")], now), acks=0, correlation_id=41)))
        s.sendall(wire.frame(wire.produce_v3(t, 0, wire.record_batch([(b"k", b"v1")], now), acks=1, correlation_id=42)))
        resp = wire.recv_frame(s)
        assert resp is not None
        corr, parts = wire.parse_produce_v3(resp)
        assert corr == 42, f"first response has correlation id {corr}: acks=0 must not be answered"
        err, base, log_append = parts[(t, 0)]
        assert err == 0 and base == 1 and log_append == -1  # CreateTime topic: log_append_time -1
    got = c.cf_consume(b, t, 2)
    assert [r["value"] for r in got] == ["v0", "v1"]
    assert all(r["timestamp"] == now for r in got)


def test_log_append_time_topic(broker, java):
    b = broker.bootstrap
    t = c.create_topic(b, unique("lat"), config={"message.timestamp.type": "LogAppendTime"})
    old = int(time.time() * 1000) - 3 * 3600 * 1000  # a client timestamp 3 hours old, to be replaced
    before = int(time.time() * 1000) - 1

    recs = c.records(10, "cf", ts0=old)
    dels = c.cf_produce(b, t, recs)
    assert all(d.err is None for d in dels)
    java_recs = c.records(10, "java", ts0=old)
    acks, errors = c.java_produce(java, b, t, java_recs)
    assert not errors
    with wire.connect(b) as s:
        s.sendall(wire.frame(wire.produce_v3(t, 0, wire.record_batch([(b"raw", b"raw")], old), acks=1, correlation_id=5)))
        _, parts = wire.parse_produce_v3(wire.recv_frame(s))
        err, base, log_append = parts[(t, 0)]
    after = int(time.time() * 1000) + 1

    assert err == 0 and base == 20
    assert before <= log_append <= after, "Produce response must carry the broker's append time"
    # the clients learn the broker's timestamp from the produce response
    assert all(before <= a["timestamp"] <= after for a in acks), acks
    assert all(before <= d.timestamp <= after for d in dels), dels

    for got in (c.kcat_consume(b, t), c.java_consume(java, b, t, 21)[0], c.kp_consume(b, t, 21)):
        assert len(got) == 21
        assert all(r["timestamp_type"] == "log_append" for r in got), got[:2]
        assert all(before <= r["timestamp"] <= after for r in got), got[:2]
        assert [r["value"] for r in got[:10]] == [r["value"] for r in recs]

    # ListOffsets by timestamp works on broker timestamps
    from confluent_kafka import TopicPartition

    cons = c.cf_consumer(b)
    try:
        res = cons.offsets_for_times([TopicPartition(t, 0, old)], timeout=15)[0]
        assert res.offset == 0
    finally:
        cons.close()


def test_message_too_large_confluent(broker):
    """A batch above the broker's message.max.bytes (default 1048588) gets MESSAGE_TOO_LARGE, and the producer
    keeps working."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("big-cf"))
    recs = [
        {"key": "small0", "value": "ok"},
        {"key": "big", "value": None, "value_size": 1_500_000},
        {"key": "small1", "value": "ok again"},
    ]
    # one record per request so the small ones are not in the rejected batch
    dels = c.cf_produce(b, t, recs[:2], {"message.max.bytes": 10_000_000, "linger.ms": 0, "batch.num.messages": 1})
    assert dels[0].err is None
    assert dels[1].err is not None and dels[1].err.code() == KafkaError.MSG_SIZE_TOO_LARGE, dels[1]
    dels = c.cf_produce(b, t, recs[2:])
    assert dels[0].err is None and dels[0].offset == 1
    assert [r["key"] for r in c.kcat_consume(b, t)] == ["small0", "small1"]


def test_message_too_large_java(broker, java):
    b = broker.bootstrap
    t = c.create_topic(b, unique("big-java"))
    recs = [
        {"key": "small0", "value": "ok"},
        {"key": "big", "value": None, "value_size": 1_500_000},
        {"key": "small1", "value": "ok again"},
    ]
    acks, errors = c.java_produce(
        java, b, t, recs, {"max.request.size": "10000000", "linger.ms": "0", "retries": "0"}
    )
    assert [e["key"] for e in errors] == ["big"], errors
    assert errors[0]["error"] == "RecordTooLargeException", errors
    assert sorted(a["key"] for a in acks) == ["small0", "small1"]
    assert [r["key"] for r in c.cf_consume(b, t, 2)] == ["small0", "small1"]


def test_message_too_large_raw_connection_survives(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("big-raw"))
    now = int(time.time() * 1000)
    with wire.connect(b) as s:
        big = wire.record_batch([(b"big", b"x" * 1_100_000)], now)
        s.sendall(wire.frame(wire.produce_v3(t, 0, big, acks=1, correlation_id=1)))
        corr, parts = wire.parse_produce_v3(wire.recv_frame(s))
        assert corr == 1 and parts[(t, 0)][0] == 10  # MESSAGE_TOO_LARGE
        s.sendall(wire.frame(wire.produce_v3(t, 0, wire.record_batch([(b"k", b"v")], now), acks=1, correlation_id=2)))
        corr, parts = wire.parse_produce_v3(wire.recv_frame(s))
        assert corr == 2 and parts[(t, 0)][:2] == (0, 0)


def test_topic_max_message_bytes(broker, java):
    """The topic-level max.message.bytes overrides the broker's limit."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("topicmax"), config={"max.message.bytes": "20000"})
    recs = [{"key": "a", "value": "small"}, {"key": "b", "value": None, "value_size": 50_000}]
    dels = c.cf_produce(b, t, recs, {"linger.ms": 0, "batch.num.messages": 1})
    assert dels[0].err is None
    assert dels[1].err is not None and dels[1].err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    acks, errors = c.java_produce(java, b, t, recs, {"linger.ms": "0", "retries": "0"})
    assert [e["error"] for e in errors] == ["RecordTooLargeException"]
    assert [a["key"] for a in acks] == ["a"]
