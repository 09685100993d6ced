"""Hostile input on raw sockets. Each case must get an error response or a closed connection (never a hang,
a crash or an allocation sized by the attacker), and the broker must keep serving normal clients."""

from __future__ import annotations

import errno
import random
import socket
import struct
import time

import pytest

import clients as c
import wire
from conftest import unique

REPLY_TIMEOUT_S = 10.0


def _outcome(s: socket.socket) -> tuple[str, bytes | None]:
    """('closed', None) or ('response', body). A broker that does neither within REPLY_TIMEOUT_S fails."""
    try:
        resp = wire.recv_frame(s)
    except socket.timeout:
        pytest.fail(f"no response and no close within {REPLY_TIMEOUT_S}s")
    return ("closed", None) if resp is None else ("response", resp)


def _send(bootstrap: str, data: bytes, half_close: bool = False) -> tuple[str, bytes | None]:
    with wire.connect(bootstrap, REPLY_TIMEOUT_S) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return ("closed", None)
        except OSError as e:
            # ENOTCONN from shutdown(): the broker already closed the connection.
            if e.errno == errno.ENOTCONN:
                return ("closed", None)
            raise
        return _outcome(s)


def _api_versions_ok(bootstrap: str, s: socket.socket | None = None) -> None:
    """A well-formed ApiVersions v3 gets a full answer (on `s`, or on a new connection)."""
    req = wire.frame(wire.api_versions_request(3, correlation_id=4242))
    if s is None:
        with wire.connect(bootstrap, REPLY_TIMEOUT_S) as s2:
            s2.sendall(req)
            resp = wire.recv_frame(s2)
    else:
        s.sendall(req)
        resp = wire.recv_frame(s)
    assert resp is not None, "ApiVersions got a closed connection"
    corr, err = struct.unpack_from(">ih", resp, 0)
    assert corr == 4242 and err == 0


def _alive(broker) -> None:
    assert broker.running(), f"broker process died\n{broker.log_tail()}"
    _api_versions_ok(broker.bootstrap)


def _response_for(resp: bytes, correlation_id: int) -> None:
    (corr,) = struct.unpack_from(">i", resp, 0)
    assert corr == correlation_id, f"response with correlation id {corr}, expected {correlation_id}"


def test_frame_size_minus_one(broker):
    kind, _ = _send(broker.bootstrap, wire.i32(-1) + b"\x00" * 16)
    assert kind == "closed"
    _alive(broker)


def test_frame_size_int_max(broker):
    # no allocation of 2 GiB: the limit (socket.request.max.bytes, 100 MiB) is checked first
    kind, _ = _send(broker.bootstrap, wire.i32(2**31 - 1) + b"\x00" * 64)
    assert kind == "closed"
    _alive(broker)


def test_frame_just_above_request_limit(broker):
    kind, _ = _send(broker.bootstrap, wire.i32(100 * 1024 * 1024 + 1) + wire.header(wire.API_METADATA, 1, 1))
    assert kind == "closed"
    _alive(broker)


@pytest.mark.parametrize("version", [1, 4, 9, 12])
def test_metadata_topic_count_int_max(broker, version):
    body = wire.i32(2**31 - 1) + b"\x00" * 8
    if version >= 9:  # flexible: compact array length uvarint(count + 1)
        body = wire.uvarint(2**31) + b"\x00" * 8
    kind, resp = _send(broker.bootstrap, wire.frame(wire.header(wire.API_METADATA, version, 77, flexible=version >= 9) + body))
    if kind == "response":
        _response_for(resp, 77)
    _alive(broker)


def test_produce_topic_count_int_max(broker):
    body = wire.string(None) + wire.i16(1) + wire.i32(1000) + wire.i32(2**31 - 1) + b"\x00" * 16
    kind, resp = _send(broker.bootstrap, wire.frame(wire.header(wire.API_PRODUCE, 3, 78) + body))
    if kind == "response":
        _response_for(resp, 78)
    _alive(broker)


def _batch_with(record_count: int | None = None, header_count: int | None = None) -> bytes:
    """A one-record batch with a valid CRC whose record count or header count lies."""
    batch = bytearray(wire.record_batch([(b"k", b"v")], int(time.time() * 1000)))
    if header_count is not None:
        # rebuild the record: attributes, ts delta, offset delta, key, value, header count
        rec = b"\x00" + wire.varint(0) + wire.varint(0) + wire.varint(1) + b"k" + wire.varint(1) + b"v"
        rec += wire.varint(header_count)
        body = wire.varint(len(rec)) + rec
        head = bytes(batch[21:61])
        after_crc = head + body
        batch = bytearray(
            wire.i64(0)
            + wire.i32(4 + 1 + 4 + len(after_crc))
            + wire.i32(-1)
            + wire.i8(2)
            + struct.pack(">I", wire.crc32c(after_crc))
            + after_crc
        )
    if record_count is not None:
        batch[57:61] = wire.i32(record_count)
        batch[17:21] = struct.pack(">I", wire.crc32c(bytes(batch[21:])))
    return bytes(batch)


@pytest.mark.parametrize("case", ["record_count", "header_count"])
def test_record_batch_counts_int_max(broker, case):
    """Counts inside a record batch (with a valid CRC) larger than the batch: rejected, nothing allocated."""
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"hostile-{case}"))
    batch = _batch_with(record_count=2**31 - 1) if case == "record_count" else _batch_with(header_count=2**31 - 1)
    with wire.connect(b, REPLY_TIMEOUT_S) as s:
        s.sendall(wire.frame(wire.produce_v3(t, 0, batch, acks=1, correlation_id=90)))
        kind, resp = _outcome(s)
        if kind == "response":
            corr, parts = wire.parse_produce_v3(resp)
            assert corr == 90
            err = parts[(t, 0)][0]
            assert err != 0, "a lying batch was accepted"
            _api_versions_ok(b, s)  # the connection stays usable
    _alive(broker)
    assert c.cf_consume(b, t, 1, timeout_s=3) == []


def test_truncated_frames(broker):
    b = broker.bootstrap
    # a frame that holds only part of a request header
    kind, resp = _send(b, wire.frame(wire.i16(wire.API_METADATA) + wire.i16(1)))
    assert kind == "closed" or resp is not None
    # a header whose client-id length runs past the frame
    kind, _ = _send(b, wire.frame(wire.i16(wire.API_METADATA) + wire.i16(1) + wire.i32(5) + wire.i16(300) + b"ab"))
    _alive(broker)
    # a Metadata v1 body cut in the middle of a topic name
    kind, resp = _send(b, wire.frame(wire.header(wire.API_METADATA, 1, 6) + wire.i32(1) + wire.i16(50) + b"abc"))
    if kind == "response":
        _response_for(resp, 6)
    # a frame announced as 100 bytes, of which 10 arrive before the client stops sending
    kind, _ = _send(b, wire.i32(100) + b"\x00" * 10, half_close=True)
    assert kind == "closed"
    # and a size prefix that is itself cut short
    kind, _ = _send(b, b"\x00\x00", half_close=True)
    assert kind == "closed"
    _alive(broker)


def test_random_garbage(broker):
    rng = random.Random(20240604)
    b = broker.bootstrap
    for i in range(12):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        kind, _ = _send(b, wire.frame(body))
    # well-formed headers of real APIs followed by garbage
    for i in range(24):
        api, version = rng.choice([(wire.API_METADATA, 1), (wire.API_METADATA, 9), (2, 1), (2, 5), (18, 0), (18, 3)])
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        kind, resp = _send(b, wire.frame(wire.header(api, version, 1000 + i, flexible=version >= 9 or (api == 18 and version >= 3)) + body))
        if kind == "response":
            _response_for(resp, 1000 + i)
    # garbage with no size framing at all
    _send(b, bytes(rng.getrandbits(8) for _ in range(64)), half_close=True)
    _alive(broker)


def test_unknown_api_key(broker):
    for key in (32000, -5, 999):
        kind, resp = _send(broker.bootstrap, wire.frame(wire.header(key, 0, 55)))
        if kind == "response":
            _response_for(resp, 55)
    _alive(broker)


def test_unsupported_version_of_known_api(broker):
    kind, resp = _send(broker.bootstrap, wire.frame(wire.header(wire.API_METADATA, 999, 56) + wire.i32(0)))
    if kind == "response":
        _response_for(resp, 56)
    _alive(broker)


def test_api_versions_unknown_version(broker):
    """An ApiVersions version the broker does not know: a v0-format response, error 35 (UNSUPPORTED_VERSION),
    and a non-empty list that includes ApiVersions itself, so the client can retry. Clients send it with the
    flexible (v2) request header, as here; Kafka 4.3.1 closes the connection when the same request comes with
    a v1 header, so that variant is not tested."""
    req = wire.header(wire.API_API_VERSIONS, 127, 31, flexible=True)
    req += wire.uvarint(4) + b"e2e" + wire.uvarint(4) + b"1.0" + wire.uvarint(0)
    kind, resp = _send(broker.bootstrap, wire.frame(req))
    assert kind == "response"
    corr, err, apis = wire.parse_api_versions_v0(resp)
    assert corr == 31
    assert err == wire.UNSUPPORTED_VERSION
    assert apis, "the api list must not be empty"
    assert wire.API_API_VERSIONS in apis and apis[wire.API_API_VERSIONS][0] == 0
    _alive(broker)


def test_api_versions_all_versions(broker):
    """Every advertised ApiVersions version answers; v3 lists Produce from v0 (librdkafka's codec check)."""
    with wire.connect(broker.bootstrap, REPLY_TIMEOUT_S) as s:
        s.sendall(wire.frame(wire.api_versions_request(0, 1)))
        _, err, apis = wire.parse_api_versions_v0(wire.recv_frame(s))
        assert err == 0
        lo, hi = apis[wire.API_API_VERSIONS]
        for v in range(lo, hi + 1):
            s.sendall(wire.frame(wire.api_versions_request(v, 100 + v)))
            resp = wire.recv_frame(s)
            assert resp is not None
            corr, err = struct.unpack_from(">ih", resp, 0)  # response header v0 even for v3+
            assert (corr, err) == (100 + v, 0)
        assert apis[wire.API_PRODUCE][0] == 0


def test_normal_clients_after_hostile_input(broker, java):
    """Run last in this file: after all of the above the broker serves real clients as before."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("after-hostile"))
    recs = c.records(20, "after")
    assert all(d.err is None for d in c.cf_produce(b, t, recs))
    c.assert_same(recs, c.kcat_consume(b, t))
    got, _, _ = c.java_consume(java, b, t, 20)
    c.assert_same(recs, got)
