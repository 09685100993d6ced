"""A secured three-node cluster (issue 18): every listener is SASL_SSL (PLAIN) — the clients', the inter-broker
one (`inter.broker.listener.name`) and the CONTROLLER one — with the StandardAuthorizer and the brokers' user
in `super.users`. Certificates (openssl CLI) and passwords are made by the test. An RF 3 topic is written
with acks=all by librdkafka (idempotent, kept running while the leader of a partition is killed with -9) and
by the Java client, and read back by both over SASL_SSL; a plaintext connection and a wrong password are
refused on the client and on the CONTROLLER listener of every node, a right password is let in (control).
The killed node stays down: the two others (min.insync.replicas 2) keep acknowledging and serve the reads.

Three combined broker+controller nodes on loopback ports (tests/e2e/netcluster.py starts them, on Fjord or on
Apache Kafka 4.3.1 with E2E_BROKER=kafka, with the same settings)."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import clients as c
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO, free_port
from netcluster import HOSTS, NetCluster, wait_for
from test_netns_cluster import Load, check_acked_read_back, read_all

BROKER_PASSWORD = "broker-" + uuid.uuid4().hex[:12]
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex[:12]
PARTITIONS = 3
RECORDS_PER_S = 200
PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Path:
    """A CA and one node certificate for 127.0.0.1/localhost (key and chain in one PEM file)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=fjord-e2e-ca", cwd=d)
    (d / "node.cnf").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj",
            "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "node.pem", "-days", "2", "-extfile", "node.cnf", cwd=d)
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", "node.key", "-out", "node.p8", cwd=d)
    (d / "keystore.pem").write_text((d / "node.p8").read_text() + (d / "node.pem").read_text())
    return d


class Loopback:
    """netns.Topology's interface for nodes on loopback ports: no namespaces."""

    def addr(self, host):
        return "127.0.0.1"

    def run(self, host, argv, **kw):
        return subprocess.run(argv, **kw)

    def popen(self, host, argv, **kw):
        return subprocess.Popen(argv, **kw)


class SecuredCluster(NetCluster):
    def __init__(self, root: Path, pki: Path):
        super().__init__(BROKER_KIND, Loopback(), root, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO)
        self.pki = pki
        self.ports = {h: (free_port(), free_port()) for h in HOSTS}
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{self.ports[h][1]}" for i, h in enumerate(HOSTS))
        self.bootstrap = ",".join(f"127.0.0.1:{self.ports[h][0]}" for h in HOSTS)

    def settings(self, host):
        port, cport = self.ports[host]
        jaas = (f'{PLAIN} username="broker" password="{BROKER_PASSWORD}" user_broker="{BROKER_PASSWORD}" '
                f'user_admin="{ADMIN_PASSWORD}";')
        return {
            "node.id": str(self.node_id(host)),
            "process.roles": "broker,controller",
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL",
            "controller.quorum.voters": self.voters,
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki / "keystore.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki / "ca.pem"),
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
            "listener.name.controller.plain.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:broker;User:admin",
        }


def client_conf(pki, password=ADMIN_PASSWORD):
    return {"security.protocol": "SASL_SSL", "ssl.ca.location": str(pki / "ca.pem"), "sasl.mechanism": "PLAIN",
            "sasl.username": "admin", "sasl.password": password}


def java_conf(pki):
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
            "sasl.jaas.config": f'{PLAIN} username="admin" password="{ADMIN_PASSWORD}";',
            "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki / "ca.pem")}


def _frame(api_key, version, cid, body):
    client = b"e2e"
    msg = struct.pack(">hhih", api_key, version, cid, len(client)) + client + body
    return struct.pack(">i", len(msg)) + msg


def _read(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">i", head)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def plain_login(pki, port, password):
    """SaslHandshake v1 (PLAIN) and SaslAuthenticate v1 over TLS: the error code of the login."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        mech = b"PLAIN"
        s.sendall(_frame(17, 1, 1, struct.pack(">h", len(mech)) + mech))
        resp = _read(s)
        assert resp is not None and struct.unpack(">h", resp[4:6])[0] == 0, resp
        token = b"\0admin\0" + password.encode()
        s.sendall(_frame(36, 1, 2, struct.pack(">i", len(token)) + token))
        resp = _read(s)
        assert resp is not None, "closed without an answer"
        return struct.unpack(">h", resp[4:6])[0]


def plaintext_answered(port):
    """Whether a plaintext ApiVersions request gets a Kafka answer (it must not, on a TLS listener)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_frame(18, 0, 7, b""))
        try:
            resp = _read(s)
        except (ConnectionResetError, TimeoutError, OSError):
            return False
        return resp is not None and resp[:4] == struct.pack(">i", 7)


@pytest.mark.timeout(600)  # three Kafka JVMs start slowly on two loaded cores; Fjord takes about 30 s
def test_sasl_ssl_cluster_survives_a_leader_kill(tmp_path, java):
    t_start = time.monotonic()
    pki = make_pki(tmp_path)
    cluster = SecuredCluster(tmp_path, pki)
    conf = client_conf(pki)
    topic = "secured"
    try:
        for h in HOSTS:
            cluster.start(h)
        bootstrap = cluster.bootstrap

        def leaders(bs=bootstrap):
            try:
                md = AdminClient({"bootstrap.servers": bs, "log_level": 0, **conf}).list_topics(topic, timeout=5)
            except Exception:  # noqa: BLE001 - not up yet, or a node is gone
                return None
            t = md.topics.get(topic)
            if t is None or t.error is not None or len(t.partitions) != PARTITIONS:
                return None
            out = {p: pm.leader for p, pm in t.partitions.items()}
            return out if all(v >= 0 for v in out.values()) else None

        def brokers():
            try:
                return len(AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **conf})
                           .list_topics(timeout=5).brokers)
            except Exception:  # noqa: BLE001 - not up yet
                return 0

        wait_for("three registered brokers over SASL_SSL", lambda: brokers() == 3, cluster, timeout_s=120)
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **conf})
        fs = admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])
        fs[topic].result(timeout=60)
        before = wait_for("leaders for every partition", leaders, cluster)

        # Refusals on every node's client and CONTROLLER listener; the right password gets in.
        for h in HOSTS:
            for port in cluster.ports[h]:
                assert not plaintext_answered(port), f"{h}:{port} answered plaintext"
                assert plain_login(pki, port, "wrong-password") == 58, f"{h}:{port}"
                assert plain_login(pki, port, ADMIN_PASSWORD) == 0, f"{h}:{port}"
        wrong = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **client_conf(pki, "nope")})
        with pytest.raises(Exception):  # noqa: B017 - librdkafka's authentication error
            wrong.list_topics(timeout=2)

        # The Java client over SASL_SSL, acks=all.
        recs = c.records(50, headers=False)
        for i, r in enumerate(recs):
            r["partition"] = i % PARTITIONS
        acks, errors = c.java_produce(java, bootstrap, topic, recs, conf=java_conf(pki) | {"acks": "all"})
        assert errors == [] and len(acks) == len(recs), errors[:3]

        load = Load(bootstrap, topic, conf, records_per_s=RECORDS_PER_S)
        load.start()
        wait_for("acknowledgements", lambda: len(load.acked) > RECORDS_PER_S, cluster)
        victim_id = before[0]
        victim = HOSTS[victim_id - 1]
        cluster.kill(victim)
        t_kill = time.monotonic()
        survivors = ",".join(f"127.0.0.1:{cluster.ports[h][0]}" for h in HOSTS if h != victim)

        def moved():
            now = leaders(survivors)
            return now if now and victim_id not in now.values() else None

        after = wait_for(f"partitions led by node {victim_id} to move", moved, cluster)
        moved_s = time.monotonic() - t_kill
        n_moved = len(load.acked)
        wait_for("acknowledgements from the new leaders", lambda: len(load.acked) > n_moved + RECORDS_PER_S,
                 cluster)
        load.stop.set()
        load.join(150)
        got, _ = read_all(survivors, topic, conf)
        java_recs, _, _ = c.java_consume(java, survivors, topic, len(recs) + len(load.acked),
                                         conf=java_conf(pki))
    finally:
        cluster.stop()

    check_acked_read_back(load, got)
    java_values = {r["value"] for r in java_recs}
    assert {r["value"] for r in recs} <= java_values, "the Java consumer missed the Java producer's records"
    assert {v for _, _, v, _ in load.acked} <= java_values, "the Java consumer missed acknowledged records"
    times = sorted(t for *_, t in load.acked)
    gap = max(b - a for a, b in zip(times, times[1:]))
    print(f"\n{BROKER_KIND}: SASL_SSL on every listener; killed node {victim_id} (-9); its partitions moved after "
          f"{moved_s:.2f} s ({before} -> {after}); {len(load.acked)} acks=all records acknowledged and read back "
          f"(librdkafka and Java); longest gap {gap:.2f} s; whole test {time.monotonic() - t_start:.1f} s")
