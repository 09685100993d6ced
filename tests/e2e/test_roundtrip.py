"""Produce with each client, consume with each client: keys, headers, timestamps survive the trip."""

from __future__ import annotations

import time

import pytest

import clients as c
from conftest import unique

N = 30
KCAT_HEADERS = [("source", "kcat"), ("empty", "")]


@pytest.fixture(scope="module")
def produced(_session_broker, java):
    """Four topics, one per producing client; returns {topic: (producer name, expected records)}."""
    b = _session_broker.bootstrap
    ts0 = (int(time.time()) - 3600) * 1000  # explicit timestamps an hour in the past
    out = {}

    t = c.create_topic(b, unique("rt-kcat"))
    recs = c.records(N, "kcat", headers=False, null_key_every=10)
    for r in recs:
        r["headers"] = list(KCAT_HEADERS)
    c.kcat_produce(b, t, recs, headers=KCAT_HEADERS)
    out[t] = ("kcat", recs)

    t = c.create_topic(b, unique("rt-confluent"))
    recs = c.records(N, "cf", ts0=ts0, null_key_every=10)
    dels = c.cf_produce(b, t, recs)
    assert [d.err for d in dels] == [None] * N
    assert [d.offset for d in dels] == list(range(N))
    assert [d.timestamp for d in dels] == [r["timestamp"] for r in recs]
    out[t] = ("confluent", recs)

    t = c.create_topic(b, unique("rt-kafkapython"))
    recs = c.records(N, "kp", ts0=ts0 + 500, null_key_every=10)
    mds = c.kp_produce(b, t, recs)
    assert [m.offset for m in mds] == list(range(N))
    out[t] = ("kafka-python", recs)

    t = c.create_topic(b, unique("rt-java"))
    recs = c.records(N, "java", ts0=ts0 + 700, null_key_every=10)
    acks, errors = c.java_produce(java, b, t, recs)
    assert not errors
    assert [a["offset"] for a in acks] == list(range(N))
    assert [a["timestamp"] for a in acks] == [r["timestamp"] for r in recs]
    out[t] = ("java", recs)
    return out


def _check(produced, consumed_by_topic, who):
    for topic, (producer, recs) in produced.items():
        got = consumed_by_topic[topic]
        try:
            c.assert_same(recs, got, check_ts=True)
        except AssertionError as e:
            raise AssertionError(f"{producer} -> {who}: {e}") from None
        assert all(r["timestamp_type"] == "create" for r in got)
        assert all(r["timestamp"] > 0 for r in got)


def test_consume_with_kcat(broker, produced):
    got = {t: c.kcat_consume(broker.bootstrap, t) for t in produced}
    _check(produced, got, "kcat")


def test_consume_with_confluent(broker, produced):
    got = {t: c.cf_consume(broker.bootstrap, t, N) for t in produced}
    _check(produced, got, "confluent-kafka")


def test_consume_with_kafka_python(broker, produced):
    got = {t: c.kp_consume(broker.bootstrap, t, N) for t in produced}
    _check(produced, got, "kafka-python")


def test_consume_with_java(broker, produced, java):
    recs, start, done = c.java_consume(java, broker.bootstrap, list(produced), N * len(produced))
    assert all(v == 0 for v in start.values()), start
    got = {t: [r for r in recs if r["topic"] == t] for t in produced}
    _check(produced, got, "java")
    assert all(v == N for v in done["end_offsets"].values()), done


@pytest.mark.groups
def test_consumer_group_subscribe(broker):
    """A subscribing consumer (group coordination) reads a multi-partition topic; both clients."""
    t = c.create_topic(broker.bootstrap, unique("rt-group"), partitions=3)
    recs = c.records(60, "grp")
    for i, r in enumerate(recs):
        r["partition"] = i % 3
    assert all(d.err is None for d in c.cf_produce(broker.bootstrap, t, recs))

    cons = c.cf_consumer(broker.bootstrap)
    try:
        cons.subscribe([t])
        got = c.cf_poll(cons, 60, timeout_s=45)
    finally:
        cons.close()
    assert sorted(r["value"] for r in got) == sorted(r["value"] for r in recs)

    from kafka import KafkaConsumer

    kp = KafkaConsumer(
        t, bootstrap_servers=broker.bootstrap, group_id=unique("kpg"), auto_offset_reset="earliest"
    )
    try:
        got = c.kp_poll(kp, 60, timeout_s=45)
    finally:
        kp.close()
    assert sorted(r["value"] for r in got) == sorted(r["value"] for r in recs)


def test_auto_create_on_produce(broker):
    """With default settings, producing to an unknown topic creates it (num.partitions=1)."""
    t1, t2 = unique("auto-kcat"), unique("auto-cf")
    c.kcat_produce(broker.bootstrap, t1, [{"key": "a", "value": "1"}])
    assert [r["value"] for r in c.kcat_consume(broker.bootstrap, t1)] == ["1"]
    dels = c.cf_produce(broker.bootstrap, t2, [{"key": "a", "value": "2"}])
    assert dels[0].err is None and dels[0].offset == 0
    md = c.wait_topic(broker.bootstrap, t2)
    assert len(md.partitions) == 1
