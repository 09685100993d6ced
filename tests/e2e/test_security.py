"""Secured listeners with real clients (issue 18): SSL with mutual TLS and SASL_PLAINTEXT with PLAIN and
SCRAM-SHA-256/512, beside the PLAINTEXT listener, configured with Kafka's own names. SCRAM users are created with
Kafka's own `kafka-configs` tool (AlterUserScramCredentials). Certificates (openssl CLI) and passwords are made by
the test. Runs against Fjord and, with E2E_BROKER=kafka, against Apache Kafka 4.3.1 with the same settings."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ScramMechanism

import clients as c
from conftest import BROKER_KIND, free_port

PASSWORD = "alice-" + uuid.uuid4().hex[:12]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a broker certificate for 127.0.0.1/localhost (key and chain in one PEM file, as Kafka's
    ssl.keystore.location reads it) and a client certificate CN=alice."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=fjord-e2e-ca", cwd=d)
    # X.509 v3 certificates (rustls' verifier, like browsers, refuses v1 ones, which `x509 -req` makes
    # without an extension file).
    (d / "server.cnf").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.cnf").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subj, ext in (("broker", "/CN=localhost", ["-extfile", "server.cnf"]),
                            ("client", "/O=Example/CN=alice", ["-extfile", "client.cnf"])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)
        # PKCS#8, as Kafka's PEM key store wants it.
        openssl("pkcs8", "-topk8", "-nocrypt", "-in", f"{name}.key", "-out", f"{name}.p8", cwd=d)
    (d / "broker-keystore.pem").write_text((d / "broker.p8").read_text() + (d / "broker.pem").read_text())
    return d


@pytest.fixture(scope="module")
def secured(pki, tmp_path_factory):
    """One broker with PLAINTEXT, SSL (client certificates required) and SASL_PLAINTEXT (PLAIN) listeners."""
    from conftest import Broker, _tmp_root  # noqa: PLC0415 - the module-scoped broker is made by hand

    root = _tmp_root("security")
    b = Broker(BROKER_KIND, root)
    ssl_port, sasl_port = free_port(), free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{ssl_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    protocol_map = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
    env_cport = None
    if BROKER_KIND == "kafka":
        import os  # noqa: PLC0415

        env_cport = str(free_port())
        os.environ["CONTROLLER_PORT"] = env_cport
        listeners += f",CONTROLLER://127.0.0.1:{env_cport}"
        protocol_map += ",CONTROLLER:PLAINTEXT"
    b.settings = {
        "listeners": listeners,
        "advertised.listeners": listeners.replace(f",CONTROLLER://127.0.0.1:{env_cport}", ""),
        "listener.security.protocol.map": protocol_map,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki / "broker-keystore.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki / "ca.pem"),
        "listener.name.ssl.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="alice" password="{PASSWORD}" user_alice="{PASSWORD}";',
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    try:
        b.start()
        yield b, ssl_port, sasl_port
    finally:
        if env_cport is not None:
            import os  # noqa: PLC0415

            os.environ.pop("CONTROLLER_PORT", None)
        b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)


def ssl_conf(pki, with_cert=True):
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki / "ca.pem")}
    if with_cert:
        conf |= {"ssl.certificate.location": str(pki / "client.pem"), "ssl.key.location": str(pki / "client.key")}
    return conf


def sasl_conf(password=PASSWORD):
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "alice",
            "sasl.password": password}


def roundtrip_librdkafka(bootstrap, conf, n=200):
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    recs = c.records(n, headers=False)
    out = c.cf_produce(bootstrap, topic, recs, conf=conf)
    assert all(d.err is None for d in out), [d.err for d in out if d.err][:3]
    got = c.cf_consume(bootstrap, topic, n, conf=conf)
    assert [r["value"] for r in got] == [r["value"] for r in recs]


def test_librdkafka_over_mutual_tls(secured, pki):
    b, ssl_port, _ = secured
    roundtrip_librdkafka(f"127.0.0.1:{ssl_port}", ssl_conf(pki))


def test_librdkafka_over_sasl_plain(secured):
    b, _, sasl_port = secured
    roundtrip_librdkafka(f"127.0.0.1:{sasl_port}", sasl_conf())


def test_metadata_answers_the_listener_the_client_used(secured, pki):
    b, ssl_port, sasl_port = secured
    for port, conf in ((b.port, {}), (ssl_port, ssl_conf(pki)), (sasl_port, sasl_conf())):
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", **conf}).list_topics(timeout=20)
        assert [(br.host, br.port) for br in md.brokers.values()] == [("127.0.0.1", port)]


def test_kafka_python_over_tls_and_sasl(secured, pki):
    b, ssl_port, sasl_port = secured
    for bootstrap, conf in (
        (f"127.0.0.1:{ssl_port}", {"security_protocol": "SSL", "ssl_cafile": str(pki / "ca.pem"),
                                   "ssl_certfile": str(pki / "client.pem"), "ssl_keyfile": str(pki / "client.key"),
                                   "ssl_check_hostname": False}),
        (f"127.0.0.1:{sasl_port}", {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                    "sasl_plain_username": "alice", "sasl_plain_password": PASSWORD}),
    ):
        topic = f"sec-kp-{uuid.uuid4().hex[:8]}"
        recs = c.records(20, headers=False)
        c.kp_produce(bootstrap, topic, recs, conf=conf)
        got = c.kp_consume(bootstrap, topic, 20, **conf)
        assert [r["value"] for r in got] == [r["value"] for r in recs]


def _produce_error(bootstrap, conf) -> KafkaError | None:
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 8000, "error_cb": errors.append, **conf})
    p.produce("sec-never", b"x")
    p.flush(10)
    return errors[0] if errors else None


def test_wrong_password_is_refused(secured):
    b, _, sasl_port = secured
    err = _produce_error(f"127.0.0.1:{sasl_port}", sasl_conf("not-the-password"))
    assert err is not None and err.code() == KafkaError._AUTHENTICATION, err


def test_client_without_certificate_is_refused(secured, pki):
    b, ssl_port, _ = secured
    md_error = None
    try:
        AdminClient({"bootstrap.servers": f"127.0.0.1:{ssl_port}", **ssl_conf(pki, with_cert=False),
                     "socket.timeout.ms": 5000}).list_topics(timeout=8)
    except KafkaException as e:
        md_error = e
    assert md_error is not None


def _closed(sock: socket.socket, timeout_s: float = 15.0) -> bool:
    sock.settimeout(timeout_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_plaintext_client_on_tls_port_is_closed(secured):
    b, ssl_port, _ = secured
    with socket.create_connection(("127.0.0.1", ssl_port)) as s:
        # An ApiVersions v0 request, in plaintext.
        s.sendall(bytes([0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0]))
        assert _closed(s)


def test_request_before_authentication_is_closed(secured):
    b, _, sasl_port = secured
    with socket.create_connection(("127.0.0.1", sasl_port)) as s:
        # A Metadata v0 request (all topics) before any SASL handshake: no answer, the connection closes.
        s.sendall(bytes([0, 0, 0, 14, 0, 3, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0]))
        assert _closed(s)


@pytest.mark.skipif(BROKER_KIND != "fjord", reason="Kafka's handshake timeout is connections.max.idle.ms")
def test_handshake_that_never_finishes_is_closed(secured):
    b, ssl_port, sasl_port = secured
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", sasl_port)) as s:
        assert _closed(s, timeout_s=30)
    assert time.monotonic() - start < 25


# ------------------------------------------------------------------ SASL/SCRAM
CONFIGS = "kafka.admin.ConfigCommand"
SCRAM_PASSWORD = "bob-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def scram_user(secured, java):
    """User `bob` with SCRAM-SHA-256 and SCRAM-SHA-512 credentials, set with Kafka's kafka-configs tool over the
    PLAINTEXT listener (AlterUserScramCredentials); DescribeUserScramCredentials lists both."""
    b, _, _ = secured
    # One mechanism per request: Kafka's controller refuses a user named twice in one
    # AlterUserScramCredentials (DUPLICATE_RESOURCE), and so does Fjord's.
    for config in (f"SCRAM-SHA-256=[iterations=8192,password={SCRAM_PASSWORD}]",
                   f"SCRAM-SHA-512=[password={SCRAM_PASSWORD}]"):
        java.run(CONFIGS, "--bootstrap-server", b.bootstrap, "--alter", "--add-config", config,
                 "--entity-type", "users", "--entity-name", "bob")
    # Listed with librdkafka's admin client (kafka-configs --describe also asks DescribeClientQuotas, which
    # Fjord does not serve yet).
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    desc = admin.describe_user_scram_credentials(["bob"])["bob"].result(timeout=30)
    infos = {(i.mechanism, i.iterations) for i in desc.scram_credential_infos}
    assert infos == {(ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)}, infos
    return "bob"


def scram_conf(mechanism, password=SCRAM_PASSWORD, user="bob"):
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism, "sasl.username": user,
            "sasl.password": password}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_librdkafka_over_sasl_scram(secured, scram_user, mechanism):
    b, _, sasl_port = secured
    roundtrip_librdkafka(f"127.0.0.1:{sasl_port}", scram_conf(mechanism))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_over_sasl_scram(secured, scram_user, mechanism):
    b, _, sasl_port = secured
    bootstrap = f"127.0.0.1:{sasl_port}"
    conf = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
            "sasl_plain_username": scram_user, "sasl_plain_password": SCRAM_PASSWORD}
    topic = f"sec-scram-{uuid.uuid4().hex[:8]}"
    recs = c.records(20, headers=False)
    c.kp_produce(bootstrap, topic, recs, conf=conf)
    got = c.kp_consume(bootstrap, topic, 20, **conf)
    assert [r["value"] for r in got] == [r["value"] for r in recs]


def test_scram_wrong_password_and_unknown_user_are_refused(secured, scram_user):
    b, _, sasl_port = secured
    bootstrap = f"127.0.0.1:{sasl_port}"
    for conf in (scram_conf("SCRAM-SHA-256", password="not-the-password"),
                 scram_conf("SCRAM-SHA-512", user="nobody"),
                 # PLAIN's users are not SCRAM users.
                 scram_conf("SCRAM-SHA-256", user="alice", password=PASSWORD)):
        err = _produce_error(bootstrap, conf)
        assert err is not None and err.code() == KafkaError._AUTHENTICATION, (conf["sasl.username"], err)


def test_scram_credential_deleted_with_kafka_configs_stops_working(secured, java):
    b, _, sasl_port = secured
    bootstrap = f"127.0.0.1:{sasl_port}"
    password = "carol-" + uuid.uuid4().hex[:12]
    java.run(CONFIGS, "--bootstrap-server", b.bootstrap, "--alter", "--add-config",
             f"SCRAM-SHA-512=[password={password}]", "--entity-type", "users", "--entity-name", "carol")
    roundtrip_librdkafka(bootstrap, scram_conf("SCRAM-SHA-512", password=password, user="carol"), n=5)
    java.run(CONFIGS, "--bootstrap-server", b.bootstrap, "--alter", "--delete-config", "SCRAM-SHA-512",
             "--entity-type", "users", "--entity-name", "carol")
    err = _produce_error(bootstrap, scram_conf("SCRAM-SHA-512", password=password, user="carol"))
    assert err is not None and err.code() == KafkaError._AUTHENTICATION, err
