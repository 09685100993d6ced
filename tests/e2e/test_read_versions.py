"""The read path at Apache Kafka 4.x versions: advertised maxima, kafka-python's broker-version inference,
Fetch by topic id (v13-v18) and ListOffsets' special timestamps (v8-v11), with raw requests whose answers
are checked against what Kafka 4.3.1 answers (the same test passes against Kafka)."""

from __future__ import annotations

import clients as c
import wire
from conftest import unique

API_LIST_OFFSETS = 2
UNSUPPORTED_VERSION = 35
UNKNOWN_TOPIC_OR_PARTITION = 3
UNKNOWN_TOPIC_ID = 100


def cstr(s: str) -> bytes:
    b = s.encode()
    return wire.uvarint(len(b) + 1) + b


class R(wire.Reader):
    """Compact (flexible-version) primitives on top of wire.Reader."""

    def uv(self) -> int:
        v = shift = 0
        while True:
            b = self.d[self.p]
            self.p += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    def cstr(self):
        n = self.uv() - 1
        if n < 0:
            return None
        s = self.d[self.p : self.p + n]
        self.p += n
        return s

    def uuid(self) -> bytes:
        u = self.d[self.p : self.p + 16]
        self.p += 16
        return u

    def tags(self) -> dict:
        out = {}
        for _ in range(self.uv()):
            tag = self.uv()
            n = self.uv()
            out[tag] = self.d[self.p : self.p + n]
            self.p += n
        return out


def advertised(bootstrap: str) -> dict:
    resp = wire.roundtrip(bootstrap, wire.api_versions_request(0, 1, flexible=False))
    _, err, apis = wire.parse_api_versions_v0(resp)
    assert err == 0
    return apis


def topic_id(bootstrap: str, topic: str) -> bytes:
    """The topic's id from a raw Metadata v12."""
    body = wire.uvarint(2) + b"\0" * 16 + cstr(topic) + wire.uvarint(0) + wire.i8(0) + wire.i8(0) + wire.uvarint(0)
    r = R(wire.roundtrip(bootstrap, wire.header(wire.API_METADATA, 12, 1, flexible=True) + body))
    r.i32()
    r.tags()
    r.i32()  # throttle
    for _ in range(r.uv() - 1):  # brokers
        r.i32()
        r.cstr()
        r.i32()
        r.cstr()
        r.tags()
    r.cstr()  # cluster id
    r.i32()  # controller
    assert r.uv() - 1 == 1
    assert r.i16() == 0
    assert r.cstr() == topic.encode()
    return r.uuid()


def fetch(bootstrap: str, version: int, tid: bytes, partition: int, offset: int):
    """A sessionless Fetch by topic id: (top-level error, session id, [(topic id, partition, error, hw, records)])."""
    b = wire.i32(-1) if version <= 14 else b""
    b += wire.i32(100) + wire.i32(0) + wire.i32(1 << 20) + wire.i8(0) + wire.i32(0) + wire.i32(-1)
    b += wire.uvarint(2) + tid + wire.uvarint(2)
    b += wire.i32(partition) + wire.i32(-1) + wire.i64(offset) + wire.i32(-1) + wire.i64(-1) + wire.i32(1 << 20)
    b += wire.uvarint(0) + wire.uvarint(0)  # partition, topic tags
    b += wire.uvarint(1) + cstr("") + wire.uvarint(0)  # no forgotten topics, rack, tags
    r = R(wire.roundtrip(bootstrap, wire.header(wire.API_FETCH, version, 5, flexible=True) + b))
    r.i32()
    r.tags()
    r.i32()  # throttle
    err, session = r.i16(), r.i32()
    out = []
    for _ in range(r.uv() - 1):
        t = r.uuid()
        for _ in range(r.uv() - 1):
            p, perr, hw = r.i32(), r.i16(), r.i64()
            r.i64()  # last stable offset
            r.i64()  # log start offset
            for _ in range(max(r.uv() - 1, 0)):  # aborted transactions (null or empty here)
                r.i64()
                r.i64()
                r.tags()
            r.i32()  # preferred read replica
            recs = r.cstr()
            assert r.tags() == {}, "no leader hints without NOT_LEADER errors"
            out.append((t, p, perr, hw, recs or b""))
        r.tags()
    assert r.tags() == {}, "node_endpoints omitted"
    assert r.remaining() == 0
    return err, session, out


def list_offset(bootstrap: str, version: int, topic: str, ts: int):
    """(error, timestamp, offset, leader epoch) of partition 0 at `ts`, by a raw ListOffsets (v6+)."""
    body = wire.i32(-1) + wire.i8(0) + wire.uvarint(2) + cstr(topic) + wire.uvarint(2)
    body += wire.i32(0) + wire.i32(-1) + wire.i64(ts) + wire.uvarint(0) + wire.uvarint(0)
    if version >= 10:
        body += wire.i32(5000)
    body += wire.uvarint(0)
    r = R(wire.roundtrip(bootstrap, wire.header(API_LIST_OFFSETS, version, 9, flexible=True) + body))
    r.i32()
    r.tags()
    r.i32()
    assert r.uv() - 1 == 1 and r.cstr() == topic.encode() and r.uv() - 1 == 1
    assert r.i32() == 0
    return r.i16(), r.i64(), r.i64(), r.i32()


def test_advertises_kafka_4_read_path_maxima(broker):
    apis = advertised(broker.bootstrap)
    assert apis[wire.API_FETCH][1] >= 18
    assert apis[API_LIST_OFFSETS][1] >= 11
    assert apis[wire.API_METADATA][1] >= 13


def test_kafka_python_infers_a_4x_broker(broker):
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        assert admin._client.check_version() >= (4, 0)
    finally:
        admin.close()


def test_fetch_by_topic_id(broker):
    b = broker.bootstrap
    topic = c.create_topic(b, unique("fetch-id"), partitions=2)
    recs = c.records(5, "fid")
    for r in recs:
        r["partition"] = 0
    c.kp_produce(b, topic, recs)
    tid = topic_id(b, topic)
    for v in range(13, 19):
        err, session, parts = fetch(b, v, tid, 0, 0)
        assert (err, session) == (0, 0), f"v{v}"
        assert [(p[0], p[1], p[2], p[3]) for p in parts] == [(tid, 0, 0, 5)], f"v{v}"
        batches = list(wire.batches(parts[0][4]))
        assert batches and batches[0]["base_offset"] == 0, f"v{v}"
        assert sum(bt["record_count"] for bt in batches) == 5, f"v{v}"

        _, _, parts = fetch(b, v, tid, 1, 0)
        assert [(p[2], p[3], p[4]) for p in parts] == [(0, 0, b"")], f"v{v} empty partition"
        _, _, parts = fetch(b, v, tid, 7, 0)
        assert parts[0][2] == UNKNOWN_TOPIC_OR_PARTITION, f"v{v}"
        for other in (b"\x01" * 16, b"\0" * 16):
            _, _, parts = fetch(b, v, other, 0, 0)
            assert [(p[0], p[2], p[4]) for p in parts] == [(other, UNKNOWN_TOPIC_ID, b"")], f"v{v}"


def test_list_offsets_special_timestamps(broker):
    b = broker.bootstrap
    topic = c.create_topic(b, unique("lo-special"))
    c.kp_produce(b, topic, c.records(4, "lo"))
    nothing = (0, -1, -1, -1)
    for v in range(6, 12):
        unsupported = (UNSUPPORTED_VERSION, -1, -1, -1)
        assert list_offset(b, v, topic, -1) == (0, -1, 4, 0), f"v{v} latest"
        assert list_offset(b, v, topic, -2) == (0, -1, 0, 0), f"v{v} earliest"
        max_ts = list_offset(b, v, topic, -3)
        assert max_ts[0] == (0 if v >= 7 else UNSUPPORTED_VERSION), f"v{v} max timestamp"
        assert list_offset(b, v, topic, -4) == ((0, -1, 0, 0) if v >= 8 else unsupported), f"v{v} earliest local"
        assert list_offset(b, v, topic, -5) == (nothing if v >= 9 else unsupported), f"v{v} latest tiered"
        assert list_offset(b, v, topic, -6) == (nothing if v >= 11 else unsupported), f"v{v} pending upload"
        assert list_offset(b, v, topic, -7) == unsupported, f"v{v} unknown special timestamp"


def test_java_consumer_at_newest_versions(broker, java):
    """The Java client picks Fetch 17+/ListOffsets 10+ against a broker advertising them."""
    b = broker.bootstrap
    topic = c.create_topic(b, unique("java-new"), partitions=3)
    recs = c.records(30, "jn")
    c.kp_produce(b, topic, recs)
    got, start, done = c.java_consume(java, b, [topic], 30)
    assert len(got) == 30
    assert sorted(r["value"] for r in got) == sorted(r["value"] for r in recs)
    assert sum(done["end_offsets"].values()) == 30
