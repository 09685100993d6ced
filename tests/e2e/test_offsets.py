"""ListOffsets: by timestamp, earliest, latest, max timestamp; seeking back and replaying; fetch at the edges."""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import TopicPartition

import clients as c
import wire
from conftest import unique

N = 20


@pytest.fixture(scope="module")
def ts_topic(_session_broker):
    """One partition, N records with timestamps ts0 + i*1000 (i = offset)."""
    b = _session_broker.bootstrap
    t = c.create_topic(b, unique("ts"))
    ts0 = (int(time.time()) - 300) * 1000
    recs = c.records(N, "ts", ts0=ts0)
    dels = c.cf_produce(b, t, recs)
    assert [d.offset for d in dels] == list(range(N))
    return t, ts0, recs


def test_offsets_for_times_confluent(broker, ts_topic):
    t, ts0, recs = ts_topic
    cons = c.cf_consumer(broker.bootstrap)
    try:
        # one partition per call: librdkafka answers a list naming the same partition twice with -1s
        res = [
            cons.offsets_for_times([TopicPartition(t, 0, ts)], timeout=15)[0]
            for ts in (ts0 - 10_000, ts0 + 5_000, ts0 + 5_500, ts0 + 19_000, ts0 + 60_000)
        ]
        # first offset with timestamp >= target; past the last record: -1 (librdkafka's OFFSET_END)
        assert [r.offset for r in res] == [0, 5, 6, 19, -1], res
        assert all(r.error is None for r in res)
        cons.assign([TopicPartition(t, 0, res[2].offset)])
        got = c.cf_poll(cons, N - 6)
        assert [r["offset"] for r in got] == list(range(6, N))
        c.assert_same(recs[6:], got, check_offsets=False)
    finally:
        cons.close()


def test_offsets_for_times_kafka_python(broker, ts_topic):
    from kafka import TopicPartition as KTP

    t, ts0, recs = ts_topic
    kc = c.kp_consumer(broker.bootstrap)
    try:
        tp = KTP(t, 0)
        res = kc.offsets_for_times({tp: ts0 + 5_500})
        assert res[tp].offset == 6 and res[tp].timestamp == ts0 + 6_000, res
        assert kc.offsets_for_times({tp: ts0 + 60_000})[tp] is None
        kc.assign([tp])
        kc.seek(tp, res[tp].offset)
        got = c.kp_poll(kc, N - 6)
        assert [r["offset"] for r in got] == list(range(6, N))
        c.assert_same(recs[6:], got, check_offsets=False)
    finally:
        kc.close()


def test_offsets_for_times_java_and_kcat(broker, ts_topic, java):
    t, ts0, recs = ts_topic
    got, start, done = c.java_consume(java, broker.bootstrap, t, N - 6, start=f"ts:{ts0 + 5_500}")
    assert start == {f"{t}:0": 6}
    c.assert_same(recs[6:], got, check_offsets=False)
    assert done["beginning_offsets"] == {f"{t}:0": 0} and done["end_offsets"] == {f"{t}:0": N}

    got = c.kcat_consume(broker.bootstrap, t, partition=0, offset=f"s@{ts0 + 12_000}")
    assert [r["offset"] for r in got] == list(range(12, N))
    c.assert_same(recs[12:], got, check_offsets=False)


def test_earliest_latest(broker, ts_topic):
    t, _, _ = ts_topic
    cons = c.cf_consumer(broker.bootstrap)
    try:
        assert cons.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False) == (0, N)
    finally:
        cons.close()

    from kafka import TopicPartition as KTP

    kc = c.kp_consumer(broker.bootstrap)
    try:
        tp = KTP(t, 0)
        assert kc.beginning_offsets([tp]) == {tp: 0}
        assert kc.end_offsets([tp]) == {tp: N}
    finally:
        kc.close()

    # from the end: nothing to read, and no error
    assert c.kcat_consume(broker.bootstrap, t, partition=0, offset="end") == []
    # the last 3 records (kcat's relative offset asks for latest, then reads from there)
    assert [r["offset"] for r in c.kcat_consume(broker.bootstrap, t, partition=0, offset=-3)] == [17, 18, 19]


def test_max_timestamp(broker, java):
    """ListOffsets with timestamp -3 (KIP-734): the offset of the record with the largest timestamp."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("maxts"))
    now = int(time.time()) * 1000
    stamps = [now - 5000, now - 1000, now - 3000, now - 4000]
    recs = c.records(len(stamps), "mx")
    for r, ts in zip(recs, stamps):
        r["timestamp"] = ts
    assert all(d.err is None for d in c.cf_produce(b, t, recs))

    from confluent_kafka.admin import OffsetSpec

    a = c.cf_admin(b)
    tp = TopicPartition(t, 0)
    res = a.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=15)[tp].result(timeout=20)
    assert res.offset == 1 and res.timestamp == now - 1000, res
    res = a.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=15)[tp].result(timeout=20)
    assert res.offset == 0
    res = a.list_offsets({tp: OffsetSpec.latest()}, request_timeout=15)[tp].result(timeout=20)
    assert res.offset == len(stamps)
    # first timestamp >= target with out-of-order timestamps
    res = a.list_offsets({tp: OffsetSpec.for_timestamp(now - 3500)}, request_timeout=15)[tp].result(timeout=20)
    assert res.offset == 1, res

    out = java.run(
        "org.apache.kafka.tools.GetOffsetShell", "--bootstrap-server", b, "--topic", t, "--time", "-3"
    ).stdout.strip()
    assert out == f"{t}:0:1", out


def test_seek_back_and_replay(broker, ts_topic, java):
    t, _, recs = ts_topic
    cons = c.cf_consumer(broker.bootstrap)
    try:
        cons.assign([TopicPartition(t, 0, 0)])
        first = c.cf_poll(cons, N)
        c.assert_same(recs, first)
        cons.seek(TopicPartition(t, 0, 5))
        again = c.cf_poll(cons, N - 5)
        assert again == first[5:]
        cons.seek(TopicPartition(t, 0, 0))
        assert c.cf_poll(cons, 3) == first[:3]
    finally:
        cons.close()

    from kafka import TopicPartition as KTP

    kc = c.kp_consumer(broker.bootstrap)
    try:
        tp = KTP(t, 0)
        kc.assign([tp])
        kc.seek_to_beginning(tp)
        first_kp = c.kp_poll(kc, N)
        c.assert_same(recs, first_kp)
        kc.seek(tp, 14)
        assert c.kp_poll(kc, N - 14) == first_kp[14:]
    finally:
        kc.close()

    got, start, _ = c.java_consume(java, broker.bootstrap, t, N - 12, start="offset:12")
    assert start == {f"{t}:0": 12}
    c.assert_same(recs[12:], got, check_offsets=False)


def test_fetch_edges_raw(broker, ts_topic):
    """Fetch at the log end: empty, no error, high watermark set. Past the end: OFFSET_OUT_OF_RANGE."""
    t, _, _ = ts_topic
    _, parts = wire.parse_fetch_v10(wire.roundtrip(broker.bootstrap, wire.fetch_v10(t, 0, N)))
    p = parts[(t, 0)]
    assert p["error"] == 0 and p["high_watermark"] == N and p["last_stable_offset"] == N
    assert p["records"] is not None and len(p["records"]) == 0
    assert p["log_start_offset"] == 0

    _, parts = wire.parse_fetch_v10(wire.roundtrip(broker.bootstrap, wire.fetch_v10(t, 0, N + 5)))
    p = parts[(t, 0)]
    assert p["error"] == 1, p  # OFFSET_OUT_OF_RANGE
    assert p["records"] is not None, "records must be an empty array, not null"
    # Kafka 4.3.1 answers an out-of-range fetch with high_watermark -1; the real value is fine too
    assert p["high_watermark"] in (N, -1)

    _, parts = wire.parse_fetch_v10(wire.roundtrip(broker.bootstrap, wire.fetch_v10(t, 0, 3)))
    p = parts[(t, 0)]
    assert p["error"] == 0
    bs = list(wire.batches(p["records"]))
    assert bs and bs[0]["base_offset"] <= 3 <= bs[0]["base_offset"] + bs[0]["last_offset_delta"]
    assert sum(b["record_count"] for b in bs) >= N - 3

    # kcat reads the partition end-of-file (needs a valid LSO) and stops by itself
    res = subprocess.run(
        [c.KCAT, "-b", broker.bootstrap, "-C", "-t", t, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o\n"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0 and res.stdout.split() == [str(i) for i in range(N)]
