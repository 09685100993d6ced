"""Three combined broker+controller nodes (Fjord or Apache Kafka 4.3.1), one per network namespace.

    with netns.Topology(["n1", "n2", "n3", "client"]) as net:
        cluster = NetCluster("fjord", net, root, fjord_bin=..., kafka_libs=...)
        for h in HOSTS: cluster.start(h)
        ...
        cluster.signal("n2", signal.SIGKILL); cluster.start("n2")   # kill -9 and restart (same data dir)
        cluster.stop()

Shared by the namespace cluster test (test_netns_cluster.py) and the Jepsen-style checker (checker.py).
Kafka's KRaft config names on both kinds; broker.session.timeout.ms 2000 and broker.heartbeat.interval.ms
500, so a node that stops heartbeating is fenced about two seconds later. A node's data dir is
`<root>/<host>/data`, or `<data_parent>/data` when `data_parents` names a directory for that host (the
checker puts one node's data on a small tmpfs to fill it). Clients of the cluster must run inside a
namespace of the topology (`net.inside("client")`): the nodes' addresses exist only there.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

import kschema

HOSTS = ["n1", "n2", "n3"]
CLIENT_PORT = 9092
CONTROLLER_PORT = 9093
WAIT_S = 60


class NetCluster:
    def __init__(self, kind, net, root: Path, *, fjord_bin: Path, kafka_libs: Path, repo: Path,
                 data_parents: dict[str, Path] | None = None, extra: dict[str, str] | None = None,
                 voter_hosts: list[str] = HOSTS, broker_hosts: list[str] = HOSTS):
        self.kind, self.net, self.root = kind, net, root
        self.fjord_bin, self.kafka_libs, self.repo = fjord_bin, kafka_libs, repo
        self.data_parents = dict(data_parents or {})
        self.extra = dict(extra or {})
        self.voters = ",".join(f"{i + 1}@{net.addr(h)}:{CONTROLLER_PORT}" for i, h in enumerate(voter_hosts))
        self.procs = {}
        # Extra `kafka-storage format` arguments for Kafka nodes (e.g. --release-version).
        self.kafka_format_args: list[str] = []
        self.cluster_id = base64.urlsafe_b64encode(b"fjord-netns-test").decode().rstrip("=")
        self.bootstrap = ",".join(f"{net.addr(h)}:{CLIENT_PORT}" for h in broker_hosts)

    def node_id(self, host) -> int:
        return HOSTS.index(host) + 1

    def host(self, node_id: int) -> str:
        return HOSTS[node_id - 1]

    def data_dir(self, host) -> Path:
        return self.data_parents.get(host, self.root / host) / "data"

    def settings(self, host):
        a = self.net.addr(host)
        s = {
            "node.id": str(self.node_id(host)),
            "process.roles": "broker,controller",
            "listeners": f"PLAINTEXT://{a}:{CLIENT_PORT},CONTROLLER://{a}:{CONTROLLER_PORT}",
            "advertised.listeners": f"PLAINTEXT://{a}:{CLIENT_PORT}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": self.voters,
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
        }
        s.update(self.extra)
        return s

    def start(self, host, kind=None):
        """Starts (or restarts, on the same data) the node of `host`; formats its data dir the first time.
        `kind` ("fjord" or "kafka") overrides the cluster's for this node."""
        d = self.root / host
        d.mkdir(parents=True, exist_ok=True)
        data = self.data_dir(host)
        s = self.settings(host)
        log = open(d / "node.log", "ab")
        if (kind or self.kind) == "fjord":
            args = ["--data-dir", str(data)]
            for k, v in s.items():
                args += ["--set", f"{k}={v}"]
            if not data.exists():
                self.net.run(host, [str(self.fjord_bin), "format", "--cluster-id", self.cluster_id, *args],
                             check=True, capture_output=True, timeout=60)
            argv = [str(self.fjord_bin), "serve", *args]
            env = dict(os.environ, NO_COLOR="1")
        else:
            s.update({"log.dirs": str(data), "offsets.topic.replication.factor": "3",
                      "transaction.state.log.replication.factor": "3", "group.initial.rebalance.delay.ms": "0"})
            props = d / "server.properties"
            props.write_text("".join(f"{k}={v}\n" for k, v in s.items()))
            java = ["java", "-Xmx512m", f"-Dlog4j2.configurationFile={self.repo}/tests/e2e/log4j2-tools.properties",
                    "-cp", f"{self.kafka_libs}/*"]
            if not data.exists():
                self.net.run(host, [*java, "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c",
                                    str(props), *self.kafka_format_args], check=True, capture_output=True,
                             timeout=120)
            argv = [*java, "kafka.Kafka", str(props)]
            env = dict(os.environ)
        # `ip netns exec` execs the command in place: the Popen's pid is the node's own process.
        self.procs[host] = self.net.popen(host, argv, stdout=log, stderr=log, stdin=None, env=env)
        log.close()

    def alive(self, host) -> bool:
        p = self.procs.get(host)
        return p is not None and p.poll() is None

    def signal(self, host, sig) -> None:
        p = self.procs[host]
        if p.poll() is None:
            p.send_signal(sig)

    def kill(self, host) -> None:
        """kill -9, and waits for the process to be gone."""
        p = self.procs[host]
        if p.poll() is None:
            p.kill()
            p.wait()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    def log_tails(self, lines=30):
        out = []
        for h in self.procs:
            f = self.root / h / "node.log"
            if f.exists():
                out.append(f"--- {h}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def wait_for(what, pred, cluster, timeout_s=WAIT_S, interval_s=0.2):
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{cluster.log_tails()}")
        time.sleep(interval_s)


def partition_metadata(bootstrap, topic, partitions):
    """{partition: (leader, isr)} from a new client of `bootstrap`, or None while the metadata is incomplete
    (a partition without a leader included). A new client each time: one that knew a cut node may wait on
    its dead connection for a minute."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - a node may be unreachable: ask again
        return None
    t = md.topics.get(topic)
    if t is None or t.error is not None or len(t.partitions) != partitions:
        return None
    out = {p: (pm.leader, sorted(pm.isrs)) for p, pm in t.partitions.items()}
    return out if all(leader >= 0 for leader, _ in out.values()) else None


def leaders(bootstrap, topic, partitions):
    """{partition: leader}, or None while the metadata is incomplete."""
    md = partition_metadata(bootstrap, topic, partitions)
    return None if md is None else {p: leader for p, (leader, _) in md.items()}


def registered_brokers(bootstrap) -> int:
    try:
        return len(AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=5).brokers)
    except Exception:  # noqa: BLE001 - not up yet
        return 0


@contextlib.contextmanager
def running(net, cluster, register_timeout_s=120):
    """Starts every node of `cluster`, enters the client namespace and waits until the three brokers are
    registered; yields the bootstrap servers. Stops the cluster afterwards, on failure too."""
    try:
        for h in HOSTS:
            cluster.start(h)
        bootstrap = cluster.bootstrap
        with net.inside("client"):
            wait_for("three registered brokers", lambda: registered_brokers(bootstrap) == 3, cluster,
                     timeout_s=register_timeout_s)
            yield bootstrap
    finally:
        cluster.stop()


def active_controller(net, why=None, hosts=HOSTS, timeout_s=5):
    """The KRaft quorum leader's node id, from DescribeQuorum on a CONTROLLER listener (a broker listener
    forwards it to the controller on Kafka), or None; `why` collects what each node answered."""
    body = {"Topics": [{"TopicName": "__cluster_metadata", "Partitions": [{"PartitionIndex": 0}]}]}
    for h in hosts:
        for port in (CONTROLLER_PORT, CLIENT_PORT):
            try:
                with kschema.Conn(f"{net.addr(h)}:{port}", timeout_s=timeout_s) as conn:
                    resp = conn.call("DescribeQuorum", 1, body)
            except OSError as e:
                resp = f"{type(e).__name__}: {e}"
            if why is not None:
                why[f"{h}:{port}"] = resp
            if isinstance(resp, dict) and resp["ErrorCode"] == 0:
                part = resp["Topics"][0]["Partitions"][0]
                if part["ErrorCode"] == 0 and part["LeaderId"] >= 0:
                    return part["LeaderId"]
    return None
