"""SASL/OAUTHBEARER with JWT validation (issue 18), configured with Kafka's broker names: the listener's
`oauthbearer.sasl.server.callback.handler.class` is Kafka's OAuthBearerValidatorCallbackHandler, the keys come from a
JWKS file (`sasl.oauthbearer.jwks.endpoint.url=file://...`), with an expected audience and issuer. The test makes an
RSA and an EC P-256 key (openssl CLI) and signs its own RS256/ES256 tokens. confluent-kafka (an oauth_cb returning
a signed JWT) and the Java client (its OAuthBearerLoginCallbackHandler reading the token from a file) produce and
consume; an expired token, a wrong audience, a bad signature and an unsigned token are refused with
SASL_AUTHENTICATION_FAILED; the token's expiry bounds the session (KIP-368). Runs against Fjord and, with
E2E_BROKER=kafka, against Apache Kafka 4.3.1 with the same settings."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaError, Producer

import clients as c
from conftest import BROKER_KIND, free_port
from test_security_reauth import SASL_AUTHENTICATION_FAILED, Conn

AUDIENCE = "fjord-e2e"
ISSUER = "https://issuer.example"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, cwd, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, input=input,
                          timeout=60).stdout


def der_to_raw(der: bytes, size: int = 32) -> bytes:
    """An ECDSA signature from openssl (DER SEQUENCE of two INTEGERs) as JWS wants it: r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2 : i + 2 + n].lstrip(b"\0").rjust(size, b"\0")
        i += 2 + n
    return out


class Keys:
    """An RSA key (kid rsa1) and an EC P-256 key (kid ec1), their JWKS, and an RSA key the JWKS does not hold."""

    def __init__(self, d):
        self.d = d
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.key", cwd=d)
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other.key", cwd=d)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.key", cwd=d)
        modulus = openssl("rsa", "-in", "rsa.key", "-noout", "-modulus", cwd=d).decode().strip().split("=", 1)[1]
        point = openssl("ec", "-in", "ec.key", "-pubout", "-outform", "DER", cwd=d)[-65:]
        assert point[0] == 4
        jwks = {"keys": [
            {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": b64url(bytes.fromhex(modulus)),
             "e": b64url((65537).to_bytes(3, "big"))},
            {"kty": "EC", "kid": "ec1", "use": "sig", "crv": "P-256", "x": b64url(point[1:33]),
             "y": b64url(point[33:])},
        ]}
        self.jwks = d / "jwks.json"
        self.jwks.write_text(json.dumps(jwks))

    def token(self, sub="alice", alg="RS256", kid=None, aud=AUDIENCE, iss=ISSUER, lifetime_s=3600, key=None,
              **claims) -> str:
        now = int(time.time())
        kid = kid or {"RS256": "rsa1", "ES256": "ec1"}.get(alg)
        header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid else {})
        body = {"sub": sub, "iat": now, "exp": now + lifetime_s, "iss": iss, "aud": aud, "scope": "kafka"} | claims
        signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
        if alg == "none":
            return signed + "."
        key = key or {"RS256": "rsa.key", "ES256": "ec.key"}[alg]
        sig = openssl("dgst", "-sha256", "-sign", key, cwd=self.d, input=signed.encode())
        if alg == "ES256":
            sig = der_to_raw(sig)
        return f"{signed}.{b64url(sig)}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("oauth"))


@pytest.fixture(scope="module")
def oauth_broker(keys):
    """PLAINTEXT and SASL_PLAINTEXT (OAUTHBEARER) listeners."""
    from conftest import Broker, _tmp_root  # noqa: PLC0415 - the module-scoped broker is made by hand

    b = Broker(BROKER_KIND, _tmp_root("oauth"))
    sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    protocol_map = "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    advertised = listeners
    jwks_url = f"file://{keys.jwks}"
    saved_opts = os.environ.get("KAFKA_JVM_OPTS")
    if BROKER_KIND == "kafka":
        os.environ["CONTROLLER_PORT"] = cport = str(free_port())
        listeners += f",CONTROLLER://127.0.0.1:{cport}"
        protocol_map += ",CONTROLLER:PLAINTEXT"
        # Kafka 4 reads a JWKS URL only if the JVM allows it.
        os.environ["KAFKA_JVM_OPTS"] = (f"{saved_opts or '-XX:TieredStopAtLevel=1'} "
                                        f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={jwks_url}")
    b.settings = {
        "listeners": listeners,
        "advertised.listeners": advertised,
        "listener.security.protocol.map": protocol_map,
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        "sasl.oauthbearer.jwks.endpoint.url": jwks_url,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.expected.issuer": ISSUER,
    }
    try:
        b.start()
        yield b, f"127.0.0.1:{sasl_port}"
    finally:
        os.environ.pop("CONTROLLER_PORT", None)
        if saved_opts is None:
            os.environ.pop("KAFKA_JVM_OPTS", None)
        else:
            os.environ["KAFKA_JVM_OPTS"] = saved_opts
        b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)


def cf_conf(keys, **token_args):
    def oauth_cb(_config):
        return keys.token(**token_args), time.time() + 3600

    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER", "oauth_cb": oauth_cb}


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_librdkafka_with_a_signed_jwt(oauth_broker, keys, alg):
    _, sasl = oauth_broker
    topic = f"oauth-{alg.lower()}-{uuid.uuid4().hex[:6]}"
    conf = cf_conf(keys, alg=alg)
    recs = c.records(50, headers=False)
    out = c.cf_produce(sasl, topic, recs, conf=conf)
    assert all(d.err is None for d in out), [d.err for d in out if d.err][:3]
    got = c.cf_consume(sasl, topic, 50, conf=cf_conf(keys, alg=alg))
    assert [r["value"] for r in got] == [r["value"] for r in recs]


def _auth_error(sasl, conf) -> KafkaError | None:
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": sasl, "message.timeout.ms": 8000, "error_cb": errors.append, **conf})
    p.produce("oauth-never", b"x")
    deadline = time.monotonic() + 8
    while not errors and time.monotonic() < deadline:  # the first refusal is the answer
        p.poll(0.1)
    p.purge()
    p.flush(1)
    return errors[0] if errors else None


@pytest.mark.parametrize("case", ["expired", "wrong-audience", "wrong-issuer", "bad-signature", "unknown-kid"])
def test_invalid_tokens_are_refused(oauth_broker, keys, case):
    _, sasl = oauth_broker
    args = {"expired": {"lifetime_s": -120}, "wrong-audience": {"aud": "someone-else"},
            "wrong-issuer": {"iss": "https://other.example"}, "bad-signature": {"key": "other.key"},
            "unknown-kid": {"kid": "nope"}}[case]
    err = _auth_error(sasl, cf_conf(keys, **args))
    assert err is not None and err.code() == KafkaError._AUTHENTICATION, err


def oauth_message(token: str, authzid: str = "") -> bytes:
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01\x01".encode()


def test_the_wire_of_an_invalid_token_and_of_a_valid_one(oauth_broker, keys):
    """An invalid token is answered with Kafka's error challenge; the client's %x01 then gets
    SASL_AUTHENTICATION_FAILED. A valid one is answered with the session's lifetime: the token's."""
    _, sasl = oauth_broker
    conn = Conn(sasl)
    try:
        assert conn.handshake("OAUTHBEARER") == 0
        error, _, challenge, _ = conn.authenticate(oauth_message(keys.token(alg="none")))
        assert (error, json.loads(challenge)) == (0, {"status": "invalid_token"})
        error, message, _, _ = conn.authenticate(b"\x01")
        assert error == SASL_AUTHENTICATION_FAILED
        assert json.loads(message) == {"status": "invalid_token"}
    finally:
        conn.close()
    conn = Conn(sasl)
    try:
        assert conn.handshake("OAUTHBEARER") == 0
        error, _, _, lifetime = conn.authenticate(oauth_message(keys.token(lifetime_s=60)))
        assert error == 0 and 50_000 < lifetime <= 60_000, lifetime
        assert conn.metadata()
    finally:
        conn.close()
    conn = Conn(sasl)
    try:
        assert conn.handshake("OAUTHBEARER") == 0
        error, message, _, _ = conn.authenticate(oauth_message(keys.token(), authzid="bob"))
        assert error == SASL_AUTHENTICATION_FAILED, (error, message)
    finally:
        conn.close()


def test_java_client_with_a_token_file(oauth_broker, keys, java):
    b, sasl = oauth_broker
    token_file = keys.d / f"token-{uuid.uuid4().hex[:6]}.jwt"
    token_file.write_text(keys.token(alg="ES256"))
    props = keys.d / "java-oauth.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;\n"
        "sasl.login.callback.handler.class="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n"
        f"sasl.oauthbearer.token.endpoint.url=file://{token_file}\n"
    )
    topic = f"oauth-java-{uuid.uuid4().hex[:6]}"
    saved = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file://{token_file}"
    try:
        res = java.run("org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", "100",
                       "--record-size", "100", "--throughput", "-1", "--producer.config", str(props),
                       "--producer-props", f"bootstrap.servers={sasl}", "acks=all", timeout=90)
    finally:
        if saved is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = saved
    assert re.search(r"^100 records sent", res.stdout, re.M), res.stdout[-2000:] + res.stderr[-2000:]
    assert len(c.cf_consume(b.bootstrap, topic, 100)) == 100
