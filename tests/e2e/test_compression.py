"""Each codec produced by confluent-kafka, the Java producer and kafka-python, stored compressed as sent,
and read back by other clients."""

from __future__ import annotations

import time

import pytest

import clients as c
import wire
from conftest import unique

CODECS = ["gzip", "snappy", "lz4", "zstd"]
N = 200


def _recs(prefix):
    recs = c.records(N, prefix, ts0=(int(time.time()) - 600) * 1000)  # recent: old ones fall to retention
    for r in recs:
        r["value"] = r["value"] + " compressible payload " * 8
    return recs


def _assert_stored_with(bootstrap, topic, codec):
    codecs = wire.batch_codecs(bootstrap, topic)
    assert codecs, "no batches fetched"
    assert set(codecs) == {wire.CODEC_IDS[codec]}, f"stored batch codecs {codecs}, want {codec}"


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_produces(broker, java, codec):
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"cz-cf-{codec}"))
    recs = _recs("cf")
    dels = c.cf_produce(b, t, recs, {"compression.codec": codec, "linger.ms": 50})
    assert all(d.err is None for d in dels)
    _assert_stored_with(b, t, codec)
    got, _, _ = c.java_consume(java, b, t, N)
    c.assert_same(recs, got)
    c.assert_same(recs, c.kcat_consume(b, t))


@pytest.mark.parametrize("codec", CODECS)
def test_java_produces(broker, java, codec):
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"cz-java-{codec}"))
    recs = _recs("java")
    acks, errors = c.java_produce(java, b, t, recs, {"compression.type": codec, "linger.ms": "50"})
    assert not errors and len(acks) == N
    _assert_stored_with(b, t, codec)
    c.assert_same(recs, c.cf_consume(b, t, N))
    c.assert_same(recs, c.kp_consume(b, t, N))


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_and_kcat_produce(broker, codec):
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"cz-kp-{codec}"))
    recs = _recs("kp")
    c.kp_produce(b, t, recs, {"compression_type": codec, "linger_ms": 50})
    _assert_stored_with(b, t, codec)
    c.assert_same(recs, c.cf_consume(b, t, N))

    t2 = c.create_topic(b, unique(f"cz-kcat-{codec}"))
    recs2 = c.records(N, "kcat", headers=False)
    c.kcat_produce(b, t2, recs2, codec=codec, extra=["-X", "linger.ms=50"])
    _assert_stored_with(b, t2, codec)
    c.assert_same(recs2, c.kp_consume(b, t2, N))
