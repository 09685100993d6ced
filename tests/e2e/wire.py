"""Minimal hand-written Kafka wire encoding for raw-socket tests (hostile input, batch inspection)."""

from __future__ import annotations

import socket
import struct

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18

UNSUPPORTED_VERSION = 35


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def header(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "e2e", flexible=False) -> bytes:
    """Request header v1 (or v2 with an empty tagged-field section when flexible)."""
    h = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    if flexible:
        h += uvarint(0)
    return h


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def connect(bootstrap: str, timeout_s: float = 10.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout_s)
    s.settimeout(timeout_s)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes | None:
    """n bytes, or None if the peer closed the connection first."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(s: socket.socket) -> bytes | None:
    """One response frame (without its size), or None if the connection was closed.
    A broker that neither answers nor closes makes this raise socket.timeout."""
    size = recv_exact(s, 4)
    if size is None:
        return None
    (n,) = struct.unpack(">i", size)
    assert 0 <= n <= 64 * 1024 * 1024, f"implausible response size {n}"
    return recv_exact(s, n)


def roundtrip(bootstrap: str, payload: bytes, timeout_s: float = 10.0) -> bytes | None:
    with connect(bootstrap, timeout_s) as s:
        s.sendall(frame(payload))
        return recv_frame(s)


class Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.p = 0

    def take(self, fmt: str):
        (v,) = struct.unpack_from(fmt, self.d, self.p)
        self.p += struct.calcsize(fmt)
        return v

    def i8(self):
        return self.take(">b")

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def i64(self):
        return self.take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.d[self.p : self.p + n].decode()
        self.p += n
        return v

    def bytes_(self):
        n = self.i32()
        if n < 0:
            return None
        v = self.d[self.p : self.p + n]
        self.p += n
        return v

    def remaining(self):
        return len(self.d) - self.p


def parse_api_versions_v0(resp: bytes):
    """(correlation_id, error_code, {api_key: (min, max)}) of a v0-format ApiVersions response."""
    r = Reader(resp)
    corr = r.i32()
    err = r.i16()
    n = r.i32()
    apis = {}
    for _ in range(n):
        k = r.i16()
        apis[k] = (r.i16(), r.i16())
    return corr, err, apis


def fetch_v10(topic: str, partition: int, offset: int, max_bytes: int = 1 << 20, correlation_id: int = 7) -> bytes:
    """A sessionless Fetch v10 (the first version that may carry zstd batches)."""
    body = (
        i32(-1)  # replica id
        + i32(500)  # max wait ms
        + i32(1)  # min bytes
        + i32(max_bytes)
        + i8(0)  # read_uncommitted
        + i32(0)  # session id: none
        + i32(-1)  # session epoch: full fetch, no session
        + i32(1)
        + string(topic)
        + i32(1)
        + i32(partition)
        + i32(-1)  # current leader epoch: unknown
        + i64(offset)
        + i64(-1)  # log start offset (followers only)
        + i32(max_bytes)
        + i32(0)  # forgotten topics
    )
    return header(API_FETCH, 10, correlation_id) + body


def parse_fetch_v10(resp: bytes):
    """Returns (top-level error, {(topic, partition): dict(error, high_watermark, last_stable_offset,
    log_start_offset, records)})."""
    r = Reader(resp)
    r.i32()  # correlation id
    r.i32()  # throttle
    top_err = r.i16()
    r.i32()  # session id
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            lso = r.i64()
            lso_start = r.i64()
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64()
                r.i64()
            recs = r.bytes_()
            out[(topic, p)] = {
                "error": err,
                "high_watermark": hw,
                "last_stable_offset": lso,
                "log_start_offset": lso_start,
                "records": recs,
            }
    return top_err, out


def batches(records: bytes):
    """Walk v2 record batches: yields dicts(base_offset, last_offset_delta, magic, attributes, record_count).
    A cut-off trailing batch is ignored."""
    p = 0
    while p + 61 <= len(records):
        base_offset, batch_len = struct.unpack_from(">qi", records, p)
        if p + 12 + batch_len > len(records):
            break
        magic = records[p + 16]
        attributes, last_delta = struct.unpack_from(">hi", records, p + 21)
        count = struct.unpack_from(">i", records, p + 57)[0]
        yield {
            "base_offset": base_offset,
            "last_offset_delta": last_delta,
            "magic": magic,
            "attributes": attributes,
            "compression": attributes & 0x7,
            "timestamp_type": (attributes >> 3) & 1,
            "record_count": count,
        }
        p += 12 + batch_len


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def batch_codecs(bootstrap: str, topic: str, partition: int = 0, offset: int = 0) -> list[int]:
    """Compression ids of the stored batches from `offset`, read with a raw Fetch v10."""
    resp = roundtrip(bootstrap, fetch_v10(topic, partition, offset))
    assert resp is not None, "connection closed on a Fetch v10"
    top_err, parts = parse_fetch_v10(resp)
    assert top_err == 0, f"fetch top-level error {top_err}"
    part = parts[(topic, partition)]
    assert part["error"] == 0, f"fetch error {part['error']}"
    return [b["compression"] for b in batches(part["records"] or b"")]


# ---------------------------------------------------------------- record batches and Produce (raw)
def _crc32c_table():
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    t = _CRC32C
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(v: int) -> bytes:
    """Signed zig-zag varint (as in records)."""
    return uvarint((v << 1) ^ (v >> 63))


def record_batch(recs: list[tuple[bytes | None, bytes | None]], base_ts_ms: int, attributes: int = 0,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1) -> bytes:
    """An uncompressed magic-2 batch of (key, value) records, all stamped base_ts_ms (attributes 0x10: a
    transactional batch of producer_id)."""
    body = b""
    for i, (k, v) in enumerate(recs):
        r = b"\x00" + varint(0) + varint(i)
        r += varint(-1) if k is None else varint(len(k)) + k
        r += varint(-1) if v is None else varint(len(v)) + v
        r += varint(0)  # headers
        body += varint(len(r)) + r
    after_crc = (
        i16(attributes)
        + i32(len(recs) - 1)  # last offset delta
        + i64(base_ts_ms)
        + i64(base_ts_ms)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(recs))
        + body
    )
    crc = struct.pack(">I", crc32c(after_crc))
    after_len = i32(-1) + i8(2) + crc + after_crc  # partition leader epoch, magic, crc
    return i64(0) + i32(len(after_len)) + after_len


def produce_v3(topic: str, partition: int, batch: bytes, acks: int, correlation_id: int, timeout_ms: int = 10_000):
    body = string(None) + i16(acks) + i32(timeout_ms) + i32(1) + string(topic) + i32(1) + i32(partition)
    body += i32(len(batch)) + batch
    return header(API_PRODUCE, 3, correlation_id) + body


def parse_produce_v3(resp: bytes):
    """(correlation_id, {(topic, partition): (error, base_offset, log_append_time)})."""
    r = Reader(resp)
    corr = r.i32()
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(topic, p)] = (r.i16(), r.i64(), r.i64())
    return corr, out


def api_versions_request(version: int, correlation_id: int, flexible: bool | None = None) -> bytes:
    """ApiVersions; v3+ uses header v2 and carries client software name/version."""
    if flexible is None:
        flexible = version >= 3
    body = b""
    if version >= 3:
        body = uvarint(len(b"e2e") + 1) + b"e2e" + uvarint(len(b"1.0") + 1) + b"1.0" + uvarint(0)
    return header(API_API_VERSIONS, version, correlation_id, flexible=flexible) + body
