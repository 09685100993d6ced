"""Connection limits (issue 18, "Bad input" and quotas): max.connections.per.ip(.overrides) and
max.connection.creation.rate set as cluster-wide dynamic broker configs with Kafka's kafka-configs
(--entity-type brokers --entity-default), the per-IP connection_creation_rate quota set with kafka-configs
--entity-type ips (AlterClientQuotas) and read back (DescribeClientQuotas), and queued.max.request.bytes, the
broker-wide bound on bytes of requests read and not yet handled. librdkafka (confluent-kafka) and kafka-python see
what Kafka does: a connection over the per-IP limit is closed at accept, one over the per-IP rate is closed after its
throttle time, the broker-wide rate delays accepts, and while the request pool is full nothing more is read.
Runs against Fjord and, with E2E_BROKER=kafka, against Apache Kafka 4.3.1."""

from __future__ import annotations

import gc
import select
import socket
import struct
import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import clients as c
import wire
from conftest import unique

CONFIGS = "kafka.admin.ConfigCommand"
FRAME_MAX = 4 * 1024 * 1024  # socket.request.max.bytes
POOL = 2 * FRAME_MAX  # queued.max.request.bytes: two largest frames
SETTINGS = {
    # One whole window of one second: a rate is over its quota after one second's worth of connections.
    "quota.window.num": "2",
    "quota.window.size.seconds": "1",
    "socket.request.max.bytes": str(FRAME_MAX),
    "queued.max.request.bytes": str(POOL),
}


def start_broker(name, settings):
    from conftest import BROKER_KIND, Broker, _tmp_root  # noqa: PLC0415 - a module-scoped private broker

    b = Broker(BROKER_KIND, _tmp_root(name), settings)
    b.start()
    return b


def stop_broker(b):
    b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)


@pytest.fixture(scope="module")
def limits_broker():
    b = start_broker("connlimits", SETTINGS)
    try:
        yield b
    finally:
        stop_broker(b)


def configs(java, b, *args, check=True):
    return java.run(CONFIGS, "--bootstrap-server", b.bootstrap, *args, check=check)


def broker_default(java, b, *args, check=True):
    return configs(java, b, "--entity-type", "brokers", "--entity-default", *args, check=check)


def probe(bootstrap, timeout_s=5.0):
    """An ApiVersions on a new connection: 'answered', 'closed' (closed or reset unanswered) or 'timeout'."""
    try:
        s = wire.connect(bootstrap, timeout_s)
    except OSError:
        return "closed", None
    try:
        s.sendall(wire.frame(wire.api_versions_request(0, 1)))
        if wire.recv_frame(s) is None:
            s.close()
            return "closed", None
        return "answered", s
    except TimeoutError:
        s.close()
        return "timeout", None
    except OSError:
        s.close()
        return "closed", None


def hold_until_refused(bootstrap, cap=12):
    """Opens connections (each answered once) until one is not answered; returns the open ones and the outcome
    of the last attempt."""
    held = []
    while len(held) < cap:
        outcome, s = probe(bootstrap)
        if s is None:
            return held, outcome
        held.append(s)
    return held, "answered"


def close_all(socks):
    for s in socks:
        s.close()


def cf_metadata_ok(bootstrap, timeout_s):
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000})
    try:
        a.list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False
    finally:
        del a
        gc.collect()  # librdkafka's connections close with its handle


def kp_metadata_ok(bootstrap, timeout_s):
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    except (KafkaError, OSError):
        return False
    try:
        a.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        a.close()


def test_max_connections_per_ip_override_closes_connections_at_accept(limits_broker, java):
    b = limits_broker
    # max.connections.per.ip=0 without overrides is refused, as Kafka's config check refuses it.
    bad = broker_default(java, b, "--alter", "--add-config", "max.connections.per.ip=0", check=False)
    assert bad.returncode != 0
    assert "can be set to zero only if max.connections.per.ip.overrides property is set" in bad.stdout + bad.stderr
    broker_default(java, b, "--alter", "--add-config", "max.connections.per.ip.overrides=127.0.0.1:4")
    try:
        described = broker_default(java, b, "--describe").stdout
        assert "max.connections.per.ip.overrides=127.0.0.1:4" in described, described
        # Applied by the broker within a moment (Kafka applies the metadata log asynchronously).
        deadline = time.monotonic() + 10
        while True:
            held, last = hold_until_refused(b.bootstrap)
            if len(held) <= 4 or time.monotonic() > deadline:
                break
            close_all(held)
            time.sleep(0.5)
        try:
            # The tool's connections are gone: the test holds all four, the fifth is closed unanswered.
            assert len(held) == 4 and last == "closed", (len(held), last)
            # Both clients see a disconnect while the address is at its limit.
            assert not cf_metadata_ok(b.bootstrap, 3)
            assert not kp_metadata_ok(b.bootstrap, 3)
        finally:
            close_all(held)
        # Closing connections frees their places.
        time.sleep(0.5)
        assert kp_metadata_ok(b.bootstrap, 10)
        assert cf_metadata_ok(b.bootstrap, 10)
    finally:
        broker_default(java, b, "--alter", "--delete-config", "max.connections.per.ip.overrides")
    time.sleep(1.0)
    held, _ = hold_until_refused(b.bootstrap, cap=8)
    close_all(held)
    assert len(held) == 8


def test_ip_connection_creation_rate_closes_connections_after_the_throttle(limits_broker, java):
    b = limits_broker
    ip = "127.0.0.1"
    configs(java, b, "--alter", "--add-config", "connection_creation_rate=5", "--entity-type", "ips",
            "--entity-name", ip)
    try:
        described = configs(java, b, "--describe", "--entity-type", "ips", "--entity-name", ip).stdout
        assert "connection_creation_rate=5" in described, described
        time.sleep(2.0)  # applied, and the tool's own connections out of the window
        outcomes = []
        for _ in range(12):
            started = time.monotonic()
            outcome, s = probe(b.bootstrap)
            outcomes.append((outcome, round(time.monotonic() - started, 2)))
            if s is not None:
                s.close()
        print(outcomes)
        answered = [o for o in outcomes if o[0] == "answered"]
        closed = [o for o in outcomes if o[0] == "closed"]
        assert len(answered) + len(closed) == len(outcomes), outcomes
        # About one window's worth (5) at once, then more as the window moves on; the others are closed
        # unanswered after their throttle time (Kafka's delayed close: at most one quota window), not at once.
        assert outcomes[:4] == [("answered", o[1]) for o in outcomes[:4]], outcomes
        assert 4 <= len(answered) <= 9 and len(closed) >= 3, outcomes
        assert all(0.05 <= t <= 1.5 for _, t in closed), outcomes
        # Both clients reconnect and get through once the rate allows it.
        assert cf_metadata_ok(b.bootstrap, 15)
        time.sleep(1.5)
        assert kp_metadata_ok(b.bootstrap, 15)
    finally:
        configs(java, b, "--alter", "--delete-config", "connection_creation_rate", "--entity-type", "ips",
                "--entity-name", ip)
    time.sleep(1.5)
    assert all(probe(b.bootstrap)[0] == "answered" for _ in range(12))


def test_broker_connection_creation_rate_delays_accepts(limits_broker, java):
    b = limits_broker

    def burst(n):
        started = time.monotonic()
        socks = [wire.connect(b.bootstrap, 15) for _ in range(n)]
        for s in socks:
            s.sendall(wire.frame(wire.api_versions_request(0, 1)))
        answered = sum(1 for s in socks if wire.recv_frame(s) is not None)
        close_all(socks)
        return answered, time.monotonic() - started

    answered, fast = burst(15)
    assert answered == 15 and fast < 1.0, (answered, fast)
    broker_default(java, b, "--alter", "--add-config", "max.connection.creation.rate=5")
    try:
        time.sleep(2.0)
        # 15 connections at 5 per second: all answered (accepts wait, nothing is refused), over about two seconds.
        answered, slow = burst(15)
        assert answered == 15 and slow >= 1.2, (answered, slow, fast)
        # librdkafka and kafka-python connect all the same.
        assert cf_metadata_ok(b.bootstrap, 15)
        assert kp_metadata_ok(b.bootstrap, 15)
    finally:
        broker_default(java, b, "--alter", "--delete-config", "max.connection.creation.rate")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stall(bootstrap, n, seconds=3.0):
    """n connections, each announcing a frame of FRAME_MAX bytes and sending all of it but its last byte (as much
    as the sockets take within `seconds`). Returns the sockets and the bytes sent."""
    socks = [wire.connect(bootstrap, 10) for _ in range(n)]
    left = {}
    for s in socks:
        s.sendall(struct.pack(">i", FRAME_MAX))
        s.setblocking(False)
        left[s] = FRAME_MAX - 1
    chunk = b"\0" * 65536
    sent = 0
    deadline = time.monotonic() + seconds
    while left and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(left), [], 0.1)
        for s in writable:
            try:
                k = s.send(chunk[: min(len(chunk), left[s])])
            except BlockingIOError:
                continue
            sent += k
            left[s] -= k
            if left[s] == 0:
                del left[s]
    return socks, sent


def test_queued_max_request_bytes_bounds_what_is_read(limits_broker):
    b = limits_broker
    topic = c.create_topic(b.bootstrap, unique("pool"))
    rss_before = rss_bytes(b.pid) if b.kind == "fjord" else None
    socks, sent = stall(b.bootstrap, 12)
    try:
        # Two frames take the whole pool: nothing more is read, on any connection (Kafka mutes every channel
        # while its memory pool is empty).
        assert probe(b.bootstrap, timeout_s=2.0)[0] == "timeout"
        if rss_before is not None:
            grown = rss_bytes(b.pid) - rss_before
            # What the broker read is bounded by the pool, not by what the clients sent.
            assert sent > 3 * POOL and grown < POOL + 16 * 1024 * 1024, (sent, grown)
            print(f"sent {sent} bytes on 12 stalled connections; fjord RSS grew {grown} bytes")
    finally:
        close_all(socks)
    # Once the stalled connections are gone the pool is free again: both clients are served.
    recs = c.records(20, prefix="pool")
    assert all(d.err is None for d in c.cf_produce(b.bootstrap, topic, recs))
    assert len(c.kp_consume(b.bootstrap, topic, 20)) == 20


def fetch_v10_waiting(topic, wait_ms, correlation_id):
    body = (
        wire.i32(-1) + wire.i32(wait_ms) + wire.i32(1) + wire.i32(1 << 20) + wire.i8(0) + wire.i32(0) + wire.i32(-1)
        + wire.i32(1) + wire.string(topic) + wire.i32(1) + wire.i32(0) + wire.i32(-1) + wire.i64(0) + wire.i64(-1)
        + wire.i32(1 << 20) + wire.i32(0)
    )
    return wire.header(1, 10, correlation_id) + body


def test_waiting_fetches_do_not_hold_the_pool(limits_broker):
    """Fifty connections each with a Fetch waiting (max.wait 20 s on an empty partition) do not keep other
    clients from being served: a Fetch's frame is released once read (Kafka: once parsed), only a Produce holds
    its frame until answered."""
    b = limits_broker
    idle, topic = c.create_topic(b.bootstrap, unique("idle")), c.create_topic(b.bootstrap, unique("busy"))
    waiting = []
    try:
        for i in range(50):
            s = wire.connect(b.bootstrap, 30)
            s.sendall(wire.frame(fetch_v10_waiting(idle, 20_000, i)))
            waiting.append(s)
        time.sleep(0.5)
        started = time.monotonic()
        recs = c.records(20, prefix="busy")
        assert all(d.err is None for d in c.cf_produce(b.bootstrap, topic, recs))
        assert len(c.kp_consume(b.bootstrap, topic, 20)) == 20
        elapsed = time.monotonic() - started
        assert elapsed < 15, elapsed
        # The fetches are still waiting.
        readable, _, _ = select.select(waiting, [], [], 0)
        assert not readable
    finally:
        close_all(waiting)


def test_without_the_pool_stalled_frames_are_read(tmp_path):
    """The same stalled connections on a Fjord broker without queued.max.request.bytes: what it reads grows with
    what the clients send (the per-connection bound alone lets each connection hold a whole frame)."""
    from conftest import BROKER_KIND  # noqa: PLC0415

    if BROKER_KIND != "fjord":
        pytest.skip("measures the Fjord process's memory")
    settings = {k: v for k, v in SETTINGS.items() if k != "queued.max.request.bytes"}
    b = start_broker("connlimits-nopool", settings)
    try:
        assert probe(b.bootstrap)[0] == "answered"
        rss_before = rss_bytes(b.pid)
        socks, sent = stall(b.bootstrap, 12)
        try:
            time.sleep(0.5)
            grown = rss_bytes(b.pid) - rss_before
            print(f"sent {sent} bytes on 12 stalled connections; fjord RSS grew {grown} bytes without the pool")
            assert grown > POOL + 16 * 1024 * 1024, (sent, grown)
            # Nothing is shared: another client is answered.
            assert probe(b.bootstrap, timeout_s=5.0)[0] == "answered"
        finally:
            close_all(socks)
    finally:
        stop_broker(b)
