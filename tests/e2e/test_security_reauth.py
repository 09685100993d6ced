"""KIP-368 re-authentication (issue 18) with Kafka's `connections.max.reauth.ms`: a SASL session lives that long;
a client that re-authenticates in time (the Java client does it by itself) keeps its connection, one that does
not is closed on its next request after the expiry; a re-authentication keeps its mechanism and principal, and
fails once the SCRAM credential is gone. Raw sockets check the wire (session_lifetime_ms, what is closed when);
Kafka's producer-perf-test checks the Java client across several lifetimes. Runs against Fjord and, with
E2E_BROKER=kafka, against Apache Kafka 4.3.1 with the same settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
import time
import uuid

import pytest
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                    UserScramCredentialUpsertion)

import clients as c
import wire
from conftest import BROKER_KIND, free_port

LIFETIME_MS = 3000
PLAIN_USERS = {"alice": "alice-" + uuid.uuid4().hex[:12], "bob": "bob-" + uuid.uuid4().hex[:12]}
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
SASL_AUTHENTICATION_FAILED = 58
ILLEGAL_SASL_STATE = 34


@pytest.fixture(scope="module")
def reauth_broker():
    """One broker with PLAINTEXT and SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256) listeners and 3 s sessions."""
    from conftest import Broker, _tmp_root  # noqa: PLC0415 - the module-scoped broker is made by hand

    b = Broker(BROKER_KIND, _tmp_root("reauth"))
    sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    protocol_map = "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    advertised = listeners
    if BROKER_KIND == "kafka":
        os.environ["CONTROLLER_PORT"] = cport = str(free_port())
        listeners += f",CONTROLLER://127.0.0.1:{cport}"
        protocol_map += ",CONTROLLER:PLAINTEXT"
    users = " ".join(f'user_{u}="{p}"' for u, p in PLAIN_USERS.items())
    b.settings = {
        "listeners": listeners,
        "advertised.listeners": advertised,
        "listener.security.protocol.map": protocol_map,
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="alice" password="{PLAIN_USERS["alice"]}" {users};',
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "connections.max.reauth.ms": str(LIFETIME_MS),
    }
    try:
        b.start()
        yield b, f"127.0.0.1:{sasl_port}"
    finally:
        os.environ.pop("CONTROLLER_PORT", None)
        b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)


# ------------------------------------------------------------------ a raw SASL client
class Conn:
    """One raw connection: SaslHandshake v1 and SaslAuthenticate v1 (non-flexible), Metadata v1."""

    def __init__(self, bootstrap: str):
        self.s = wire.connect(bootstrap, timeout_s=15)
        self.cid = 0

    def ask(self, api_key: int, version: int, body: bytes) -> bytes | None:
        """The response body after the correlation id, or None if the broker closed the connection."""
        self.cid += 1
        try:
            self.s.sendall(wire.frame(wire.header(api_key, version, self.cid) + body))
        except (BrokenPipeError, ConnectionResetError):
            return None
        resp = wire.recv_frame(self.s)
        if resp is None:
            return None
        assert struct.unpack_from(">i", resp)[0] == self.cid
        return resp[4:]

    def handshake(self, mechanism: str) -> int | None:
        resp = self.ask(SASL_HANDSHAKE, 1, wire.string(mechanism))
        return None if resp is None else wire.Reader(resp).i16()

    def authenticate(self, token: bytes):
        """(error, message, server token, session_lifetime_ms), or None if closed unanswered."""
        resp = self.ask(SASL_AUTHENTICATE, 1, wire.i32(len(token)) + token)
        if resp is None:
            return None
        r = wire.Reader(resp)
        return r.i16(), r.string(), r.bytes_(), r.i64()

    def plain(self, user: str, password: str | None = None):
        assert self.handshake("PLAIN") == 0
        return self.authenticate(f"\0{user}\0{password or PLAIN_USERS[user]}".encode())

    def scram_sha256(self, user: str, password: str):
        """RFC 5802 in two SaslAuthenticate rounds; the last round's answer."""
        assert self.handshake("SCRAM-SHA-256") == 0
        nonce = uuid.uuid4().hex
        bare = f"n={user},r={nonce}"
        first = self.authenticate(f"n,,{bare}".encode())
        if first is None or first[0] != 0:
            return first
        server_first = first[2].decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.new(hashlib.sha256(client_key).digest(), message, hashlib.sha256).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
        return self.authenticate(f"{without_proof},p={proof}".encode())

    def metadata(self) -> bool:
        """Whether a Metadata v1 request (no topics) is answered."""
        return self.ask(wire.API_METADATA, 1, wire.i32(0)) is not None

    def close(self):
        self.s.close()


def test_a_session_lasts_its_lifetime_unless_renewed(reauth_broker):
    """Two connections authenticate as alice: each is told the 3 s lifetime; the one that re-authenticates after
    1.5 s is still served at 3.8 s (and told the lifetime again), the other is closed on its request at 3.8 s; the
    renewed one is closed on its request at 5.3 s, 3.8 s after its re-authentication."""
    _, sasl = reauth_broker
    renewed, lapsed = Conn(sasl), Conn(sasl)
    try:
        start = time.monotonic()
        for conn in (renewed, lapsed):
            error, _, _, lifetime = conn.plain("alice")
            assert (error, lifetime) == (0, LIFETIME_MS)
            assert conn.metadata()

        def at(s):
            time.sleep(max(0.0, start + s - time.monotonic()))

        at(1.5)
        error, message, _, lifetime = renewed.plain("alice")
        assert (error, message, lifetime) == (0, "", LIFETIME_MS)
        assert renewed.metadata() and lapsed.metadata(), "both within their lifetime"
        at(3.8)
        assert renewed.metadata(), "re-authenticated at 1.5 s: its session ends at 4.5 s"
        assert not lapsed.metadata(), "its session ended at 3 s: the next request closes it"
        at(5.3)
        assert not renewed.metadata()
    finally:
        renewed.close()
        lapsed.close()


def test_reauthentication_keeps_the_principal_and_the_mechanism(reauth_broker):
    _, sasl = reauth_broker
    conn = Conn(sasl)
    try:
        assert conn.plain("alice")[0] == 0
        error, message, _, _ = conn.plain("bob")
        assert error == SASL_AUTHENTICATION_FAILED
        assert message == "Cannot change principals during re-authentication from User.alice: User.bob"
        assert not conn.metadata(), "closed after the failed re-authentication"
    finally:
        conn.close()
    conn = Conn(sasl)
    try:
        assert conn.plain("alice")[0] == 0
        # Kafka answers the handshake, then closes on the token without an answer.
        assert conn.handshake("SCRAM-SHA-256") == 0
        assert conn.authenticate(b"n,,n=alice,r=abc") is None
    finally:
        conn.close()


def test_reauthentication_fails_once_the_scram_credential_is_deleted(reauth_broker):
    b, sasl = reauth_broker
    user, password = f"carol{uuid.uuid4().hex[:6]}", "carol-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": b.bootstrap})

    def alter(change):
        for f in admin.alter_user_scram_credentials([change]).values():
            f.result(timeout=30)

    alter(UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                       password.encode()))
    deadline = time.monotonic() + 15
    while True:  # Kafka's brokers learn the credential from the metadata log shortly after
        conn = Conn(sasl)
        first = conn.scram_sha256(user, password)
        if first[0] == 0 or time.monotonic() > deadline:
            break
        conn.close()
    try:
        error, _, server_final, lifetime = first
        assert (error, lifetime) == (0, LIFETIME_MS) and server_final.startswith(b"v=")
        time.sleep(1.0)  # a second between re-authentications
        error, _, _, lifetime = conn.scram_sha256(user, password)
        assert (error, lifetime) == (0, LIFETIME_MS), "re-authenticated with the same credential"
        alter(UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256))
        time.sleep(1.0)
        assert conn.scram_sha256(user, password)[0] == SASL_AUTHENTICATION_FAILED
        assert not conn.metadata()
    finally:
        conn.close()


def test_java_producer_reauthenticates_across_lifetimes(reauth_broker, java):
    """Kafka's producer-perf-test produces for about 9 s (three lifetimes) over SASL/PLAIN: every record is
    acknowledged, its connections re-authenticated (the client's own metrics), and none failed to."""
    b, sasl = reauth_broker
    topic = f"reauth-{uuid.uuid4().hex[:8]}"
    props = b.root / "producer.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="alice" password="{PLAIN_USERS["alice"]}";\n'
    )
    n = 450
    res = java.run("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(n),
                   "--record-size", "100", "--throughput", "50", "--producer.config", str(props),
                   "--producer-props", f"bootstrap.servers={sasl}", "acks=all", "--print-metrics", timeout=90)
    out = res.stdout

    def metric(name):
        found = re.findall(rf"producer-metrics:{name}:\{{client-id=[^}}]*\}}\s*:\s*([0-9.]+)", out)
        assert found, f"no {name} in\n{out[-3000:]}"
        return float(found[0])

    assert f"{n} records sent" in out, out[-2000:]
    assert metric("successful-reauthentication-total") >= 2, out[-3000:]
    assert metric("failed-reauthentication-total") == 0
    got = c.cf_consume(b.bootstrap, topic, n)
    assert len(got) == n
