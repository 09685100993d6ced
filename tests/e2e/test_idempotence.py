"""Idempotent producers: a retried batch is stored once and answered with its original offset.

Raw-socket test: InitProducerId v0 for a real producer id, then hand-built v2 batches carrying
that id, its epoch and sequence numbers sent with Produce v3, the same request bytes twice.
Passes against Apache Kafka too (E2E_BROKER=kafka).
"""

from __future__ import annotations

import struct
import time

import clients as c
import wire
from conftest import unique

API_INIT_PRODUCER_ID = 22
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


def init_producer_id(bootstrap: str) -> tuple[int, int]:
    """InitProducerId v0 with a null transactional id: (producer id, epoch)."""
    body = wire.string(None) + wire.i32(60_000)
    resp = wire.roundtrip(bootstrap, wire.header(API_INIT_PRODUCER_ID, 0, 5) + body)
    assert resp is not None, "connection closed on InitProducerId"
    r = wire.Reader(resp)
    assert r.i32() == 5
    r.i32()  # throttle time
    err, pid, epoch = r.i16(), r.i64(), r.i16()
    assert err == 0, f"InitProducerId error {err}"
    return pid, epoch


def idempotent_batch(values: list[bytes], pid: int, epoch: int, seq: int, ts_ms: int) -> bytes:
    """An uncompressed magic-2 batch with producer id, epoch and base sequence set."""
    body = b""
    for i, v in enumerate(values):
        rec = b"\x00" + wire.varint(0) + wire.varint(i) + wire.varint(1) + b"k"
        rec += wire.varint(len(v)) + v + wire.varint(0)
        body += wire.varint(len(rec)) + rec
    after_crc = (
        wire.i16(0)  # attributes
        + wire.i32(len(values) - 1)
        + wire.i64(ts_ms)
        + wire.i64(ts_ms)
        + wire.i64(pid)
        + wire.i16(epoch)
        + wire.i32(seq)
        + wire.i32(len(values))
        + body
    )
    crc = struct.pack(">I", wire.crc32c(after_crc))
    after_len = wire.i32(-1) + wire.i8(2) + crc + after_crc
    return wire.i64(0) + wire.i32(len(after_len)) + after_len


def produce(sock, topic: str, batch: bytes, corr: int) -> tuple[int, int]:
    """Produce v3 acks=all on an open connection: (error code, base offset)."""
    sock.sendall(wire.frame(wire.produce_v3(topic, 0, batch, acks=-1, correlation_id=corr)))
    resp = wire.recv_frame(sock)
    assert resp is not None, "connection closed on Produce"
    got_corr, parts = wire.parse_produce_v3(resp)
    assert got_corr == corr
    err, base, _ = parts[(topic, 0)]
    return err, base


def test_duplicate_batch_is_stored_once(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("idem"))
    pid, epoch = init_producer_id(b)
    now = int(time.time() * 1000)
    first = idempotent_batch([b"a0", b"a1", b"a2"], pid, epoch, 0, now)
    second = idempotent_batch([b"b0", b"b1"], pid, epoch, 3, now)
    with wire.connect(b) as s:
        assert produce(s, t, first, 1) == (0, 0)
        # The same bytes again, as a producer retrying after a lost response: NONE, same offset.
        assert produce(s, t, first, 2) == (0, 0)
        assert produce(s, t, second, 3) == (0, 3)
    with wire.connect(b) as s:  # a retry on a new connection
        assert produce(s, t, first, 4) == (0, 0)
        assert produce(s, t, second, 5) == (0, 3)
        # A gap in the sequence is refused and stores nothing.
        gap = idempotent_batch([b"x"], pid, epoch, 9, now)
        assert produce(s, t, gap, 6)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    got = c.cf_consume(b, t, 6, timeout_s=10)
    assert [m["value"] for m in got] == ["a0", "a1", "a2", "b0", "b1"], got
    assert [m["offset"] for m in got] == [0, 1, 2, 3, 4]


def test_idempotent_clients_store_each_record_once(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("idem-cf"))
    recs = c.records(200, "idem")
    dels = c.cf_produce(b, t, recs, {"enable.idempotence": True, "acks": "all"})
    assert all(d.err is None for d in dels), dels
    assert [d.offset for d in dels] == list(range(200))
    c.assert_same(recs, c.cf_consume(b, t, 200))
