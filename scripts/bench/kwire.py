"""kwire.py - the few Kafka requests the benchmark harness sends itself (Python standard library only).

    metadata(addr, topics)            Metadata v4: {topic: [leader id per partition, -1 when none]} plus errors
    metadata_brokers(addr, topics)    the same with the controller id and the set of broker ids
    quorum_leader(addr)               the KRaft quorum leader (the active controller) from DescribeQuorum v0
    ready(addr, topics, partitions)   True once every partition of every topic has a leader and no error
    create_topics(addr, {name: parts}, timeout_ms, replication_factor=1, configs=None)
                                      CreateTopics v2 (configs: topic configs for every topic); {name: (error code, message)}
    delete_topics(addr, [names])      DeleteTopics v1; {name: error code}
    partitions(addr, topic)           Metadata v4: [{"partition", "error", "leader", "replicas", "isr"}] of one topic
    i16, i32, i64, string, array, Reader
                                      non-flexible encoders and a bounds-checked reader for other requests

Used where the harness must not depend on a client library's own timeouts: creating 1,000-partition
topics (librdkafka's helper gives up after 30 s) and polling a restarting broker until it serves.
Versions: Metadata v4 and CreateTopics v2 are non-flexible and supported by Apache Kafka 4.x and Fjord.
"""

import socket
import struct

METADATA = 3
CREATE_TOPICS = 19
DELETE_TOPICS = 20
DESCRIBE_QUORUM = 55


class WireError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise WireError("response too short")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        return self.take(n).decode("utf-8", "replace")

    def array(self, fn):
        n = self.i32()
        if n < 0:
            return None
        return [fn() for _ in range(n)]


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    """A non-flexible (nullable) STRING."""
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def array(items):
    """A non-flexible ARRAY of already encoded items."""
    return i32(len(items)) + b"".join(items)


_str = string


def _request(addr, api_key, version, body, timeout_s):
    host, port = addr.rsplit(":", 1)
    header = struct.pack(">hhi", api_key, version, 1) + _str("fjord-bench-harness")
    msg = header + body
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        data = _recv_exact(s, size)
    r = Reader(data)
    if r.i32() != 1:
        raise WireError("correlation id mismatch")
    return r


def _uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_uvarint(r):
    shift, v = 0, 0
    while True:
        b = r.take(1)[0]
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v
        shift += 7
        if shift > 28:
            raise WireError("varint too long")


def quorum_leader(addr, timeout_s=5.0):
    """The KRaft quorum leader's node id from DescribeQuorum v0 on __cluster_metadata-0 (a broker forwards
    it to the controllers), or -1. DescribeQuorum is flexible: request header v2, response header v1."""
    name = b"__cluster_metadata"
    body = (_uvarint(2) + _uvarint(len(name) + 1) + name + _uvarint(2) + struct.pack(">i", 0) + b"\x00"
            + b"\x00" + b"\x00")
    header = struct.pack(">hhi", DESCRIBE_QUORUM, 0, 1) + _str("fjord-bench-harness") + b"\x00"
    msg = header + body
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        r = Reader(_recv_exact(s, size))
    if r.i32() != 1:
        raise WireError("correlation id mismatch")
    _read_uvarint(r)  # response header tagged fields
    if r.i16() != 0:
        return -1
    if _read_uvarint(r) - 1 < 1:
        return -1
    r.take(_read_uvarint(r) - 1)  # topic name
    if _read_uvarint(r) - 1 < 1:
        return -1
    r.i32()  # partition index
    if r.i16() != 0:
        return -1
    return r.i32()


def _recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise WireError("connection closed")
        out += chunk
    return bytes(out)


def metadata_brokers(addr, topics, timeout_s=5.0):
    """(controller id, {broker ids}, {topic: {"error", "leaders", "partition_errors"}}) for the named topics."""
    body = struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics) + struct.pack(">b", 0)
    r = _request(addr, METADATA, 4, body, timeout_s)
    r.i32()  # throttle_time_ms

    def broker():
        node = r.i32()
        r.string()
        r.i32()
        r.string()
        return node

    brokers = set(r.array(broker) or [])
    r.string()  # cluster id
    controller = r.i32()
    out = {}

    def topic():
        err = r.i16()
        name = r.string()
        r.i8()  # is_internal

        def part():
            perr = r.i16()
            idx = r.i32()
            leader = r.i32()
            r.array(r.i32)
            r.array(r.i32)
            return idx, leader, perr

        parts = r.array(part) or []
        leaders = [-1] * len(parts)
        bad = 0
        for idx, leader, perr in parts:
            if 0 <= idx < len(leaders):
                leaders[idx] = leader if perr == 0 else -1
            if perr != 0:
                bad += 1
        out[name] = {"error": err, "leaders": leaders, "partition_errors": bad}

    r.array(topic)
    return controller, brokers, out


def metadata(addr, topics, timeout_s=5.0):
    """{topic: {"error": code, "leaders": [leader per partition index]}} for the named topics."""
    return metadata_brokers(addr, topics, timeout_s)[2]


def ready(addr, topics, partitions, timeout_s=5.0):
    """True when the broker answers Metadata with every partition of every topic led and error-free."""
    try:
        md = metadata(addr, topics, timeout_s)
    except (OSError, WireError, struct.error):
        return False
    for t in topics:
        m = md.get(t)
        if not m or m["error"] != 0 or len(m["leaders"]) != partitions:
            return False
        if any(leader < 0 for leader in m["leaders"]):
            return False
    return True


def partitions(addr, topic, timeout_s=5.0):
    """Metadata v4 of one topic: [{"partition", "error", "leader", "replicas", "isr"}] by partition index
    (empty when the topic is unknown)."""
    body = struct.pack(">i", 1) + _str(topic) + struct.pack(">b", 0)
    r = _request(addr, METADATA, 4, body, timeout_s)
    r.i32()  # throttle_time_ms

    def broker():
        r.i32()
        r.string()
        r.i32()
        r.string()

    r.array(broker)
    r.string()  # cluster id
    r.i32()  # controller id
    out = []

    def topic_entry():
        err = r.i16()
        r.string()
        r.i8()  # is_internal

        def part():
            perr = r.i16()
            idx = r.i32()
            leader = r.i32()
            replicas = r.array(r.i32) or []
            isr = r.array(r.i32) or []
            return {"partition": idx, "error": perr, "leader": leader, "replicas": replicas, "isr": isr}

        parts = r.array(part) or []
        if err == 0:
            out.extend(sorted(parts, key=lambda p: p["partition"]))

    r.array(topic_entry)
    return out


def create_topics(addr, topics, timeout_ms=600_000, replication_factor=1, configs=None):
    """CreateTopics v2: {name: (error code, message or None)}. `configs` ({name: value}) apply to every
    topic of the request."""
    cfg = array([_str(k) + _str(str(v)) for k, v in (configs or {}).items()])
    body = struct.pack(">i", len(topics))
    for name, parts in topics.items():
        body += _str(name) + struct.pack(">ih", parts, replication_factor) + struct.pack(">i", 0) + cfg
    body += struct.pack(">ib", timeout_ms, 0)
    r = _request(addr, CREATE_TOPICS, 2, body, timeout_ms / 1000 + 30)
    r.i32()  # throttle_time_ms
    out = {}

    def topic():
        name = r.string()
        err = r.i16()
        msg = r.string()
        out[name] = (err, msg)

    r.array(topic)
    return out


def delete_topics(addr, names, timeout_ms=60_000):
    """DeleteTopics v1: {name: error code}."""
    body = array([_str(n) for n in names]) + i32(timeout_ms)
    r = _request(addr, DELETE_TOPICS, 1, body, timeout_ms / 1000 + 30)
    r.i32()  # throttle_time_ms
    out = {}

    def topic():
        name = r.string()
        out[name] = r.i16()

    r.array(topic)
    return out
