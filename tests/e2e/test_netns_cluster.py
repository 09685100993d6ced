"""A three-node cluster in network namespaces: the leader of a partition is cut off the network while an
idempotent acks=all producer (confluent-kafka) runs; the others take over, the cut node comes back, and
every acknowledged record is read back once, at the offset it was acknowledged at, and every node reports
the same leaders. Twice: the cut node is the active controller (the KRaft quorum leader, found with
DescribeQuorum) leading a partition, then a partition leader that is not the active controller.

Each node runs in a namespace of its own behind a private bridge (tests/e2e/netns.py); the client runs
in a fourth. The same test runs against Apache Kafka 4.3.1 (E2E_BROKER=kafka: three combined KRaft
nodes). Needs root for `ip netns`: skipped, with the reason, where the machine does not allow it.
Both kinds get broker.session.timeout.ms 2000 and broker.heartbeat.interval.ms 500 (as the other
cluster tests), so the cut broker is fenced about two seconds after its last heartbeat.
"""

from __future__ import annotations

import base64
import os
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kschema
import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO

HOSTS = ["n1", "n2", "n3"]
CLIENT_PORT = 9092
CONTROLLER_PORT = 9093
PARTITIONS = 3
RECORDS_PER_S = 400
WAIT_S = 60


class NetCluster:
    """Three combined broker+controller nodes, one per namespace, Kafka's KRaft config names."""

    def __init__(self, kind, net, root):
        self.kind, self.net, self.root = kind, net, root
        self.voters = ",".join(f"{i + 1}@{net.addr(h)}:{CONTROLLER_PORT}" for i, h in enumerate(HOSTS))
        self.procs = {}
        self.cluster_id = base64.urlsafe_b64encode(b"fjord-netns-test").decode().rstrip("=")

    def settings(self, host):
        i = HOSTS.index(host) + 1
        a = self.net.addr(host)
        return {
            "node.id": str(i),
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

    def start(self, host):
        d = self.root / host
        d.mkdir(exist_ok=True)
        s = self.settings(host)
        log = open(d / "node.log", "ab")
        if self.kind == "fjord":
            args = ["--data-dir", str(d / "data")]
            for k, v in s.items():
                args += ["--set", f"{k}={v}"]
            if not (d / "data").exists():
                self.net.run(host, [str(FJORD_BIN), "format", "--cluster-id", self.cluster_id, *args],
                             check=True, capture_output=True, timeout=60)
            argv = [str(FJORD_BIN), "serve", *args]
            env = dict(os.environ, NO_COLOR="1")
        else:
            s.update({"log.dirs": str(d / "data"), "offsets.topic.replication.factor": "3",
                      "transaction.state.log.replication.factor": "3", "group.initial.rebalance.delay.ms": "0"})
            props = d / "server.properties"
            props.write_text("".join(f"{k}={v}\n" for k, v in s.items()))
            java = ["java", "-Xmx512m", f"-Dlog4j2.configurationFile={REPO}/tests/e2e/log4j2-tools.properties",
                    "-cp", f"{KAFKA_LIBS}/*"]
            if not (d / "data").exists():
                self.net.run(host, [*java, "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c",
                                    str(props)], check=True, capture_output=True, timeout=120)
            argv = [*java, "kafka.Kafka", str(props)]
            env = dict(os.environ)
        self.procs[host] = self.net.popen(host, argv, stdout=log, stderr=log, stdin=None, env=env)
        log.close()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    def log_tails(self, lines=30):
        out = []
        for h in HOSTS:
            f = self.root / h / "node.log"
            if f.exists():
                out.append(f"--- {h}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def wait_for(what, pred, cluster, timeout_s=WAIT_S):
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{cluster.log_tails()}")
        time.sleep(0.2)


def leaders(bootstrap, topic):
    """{partition: leader} from a new client of `bootstrap`, or None while the metadata is incomplete. A new
    client each time: one that knew the cut node may wait on its dead connection for a minute."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - a node may be unreachable: ask again
        return None
    t = md.topics.get(topic)
    if t is None or t.error is not None or len(t.partitions) != PARTITIONS:
        return None
    out = {p: pm.leader for p, pm in t.partitions.items()}
    return out if all(v >= 0 for v in out.values()) else None


def active_controller(net, why=None):
    """The KRaft quorum leader's node id, from DescribeQuorum on a CONTROLLER listener (a broker listener
    forwards it to the controller on Kafka), or None; `why` collects what each node answered."""
    body = {"Topics": [{"TopicName": "__cluster_metadata", "Partitions": [{"PartitionIndex": 0}]}]}
    for h in HOSTS:
        for port in (CONTROLLER_PORT, CLIENT_PORT):
            try:
                with kschema.Conn(f"{net.addr(h)}:{port}", timeout_s=5) as conn:
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


class Load(threading.Thread):
    """An idempotent acks=all producer: value i to partition i % PARTITIONS, at RECORDS_PER_S."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 120_000, "log_level": 0})
        self.acked = []  # (partition, offset, value, monotonic time)
        self.errors = []
        self.sent = 0
        self.stop = threading.Event()

    def cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.value().decode(), time.monotonic()))

    def run(self):
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * RECORDS_PER_S)
            while self.sent < due:
                self.producer.produce(self.topic, str(self.sent).encode(), partition=self.sent % PARTITIONS,
                                      on_delivery=self.cb)
                self.sent += 1
            self.producer.poll(0.01)
        self.producer.flush(120)


def read_all(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"netns-check-{time.time_ns()}",
                  "enable.auto.commit": False, "log_level": 0})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = []
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + WAIT_S
    while len(done) < PARTITIONS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append((m.partition(), m.offset(), m.value().decode()))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return got, ends


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.parametrize("victim_kind", ["controller", "leader"])
def test_cut_off_leader_loses_no_acknowledged_write(tmp_path, victim_kind):
    topic = "netns-cut"
    with netns.Topology(HOSTS + ["client"]) as net:
        cluster = NetCluster(BROKER_KIND, net, tmp_path)
        try:
            for h in HOSTS:
                cluster.start(h)
            bootstrap = ",".join(f"{net.addr(h)}:{CLIENT_PORT}" for h in HOSTS)
            with net.inside("client"):
                admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

                def three_brokers():
                    try:
                        probe = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
                        return len(probe.list_topics(timeout=5).brokers) == 3
                    except Exception:  # noqa: BLE001 - not up yet
                        return False

                wait_for("three registered brokers", three_brokers, cluster, timeout_s=120)
                fs = admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])
                fs[topic].result(timeout=60)
                before = wait_for("leaders for every partition", lambda: leaders(bootstrap, topic), cluster)

                load = Load(bootstrap, topic)
                load.start()
                wait_for("acknowledgements", lambda: len(load.acked) > RECORDS_PER_S, cluster)
                # "controller": the active controller, which also leads a partition (leaders are striped over
                # the three brokers). Cutting it once left its partitions offline on Fjord: its deposed
                # controller kept deciding (fencing the brokers it no longer heard, shrinking ISRs to itself)
                # and those records reached the new quorum leader. "leader": a partition leader that is not it.
                why = {}
                try:
                    controller = wait_for("the active controller", lambda: active_controller(net, why), cluster)
                except AssertionError as e:
                    raise AssertionError(f"{e}\nDescribeQuorum answers: {why}") from None
                led = sorted(set(before.values()))
                if victim_kind == "controller":
                    assert controller in led, f"the active controller {controller} leads none of {before}"
                    victim_id = controller
                else:
                    victim_id = next(lead for lead in led if lead != controller)
                victim = HOSTS[victim_id - 1]
                net.cut(victim)
                t_cut = time.monotonic()

                survivors = ",".join(f"{net.addr(h)}:{CLIENT_PORT}" for h in HOSTS if h != victim)

                def moved():
                    now = leaders(survivors, topic)
                    return now if now and victim_id not in now.values() else None

                after = wait_for(f"partitions led by node {victim_id} to move", moved, cluster)
                moved_s = time.monotonic() - t_cut
                n_at_move = len(load.acked)
                wait_for("acknowledgements from the new leaders", lambda: len(load.acked) > n_at_move + RECORDS_PER_S,
                         cluster)
                net.heal(victim)
                wait_for("the cut node back in the cluster", three_brokers, cluster)
                n_at_heal = len(load.acked)
                wait_for("acknowledgements after the heal", lambda: len(load.acked) > n_at_heal + RECORDS_PER_S,
                         cluster)
                load.stop.set()
                load.join(150)
                got, ends = read_all(bootstrap, topic)

                def agreed():
                    views = [leaders(f"{net.addr(h)}:{CLIENT_PORT}", topic) for h in HOSTS]
                    return views[0] if views[0] and all(v == views[0] for v in views) else None

                final = wait_for("every node to report the same leaders", agreed, cluster)
        finally:
            cluster.stop()

    assert not load.is_alive(), "the producer did not finish"
    assert load.errors == [], f"delivery errors: {load.errors[:5]}"
    assert len(load.acked) == load.sent, f"{load.sent} sent, {len(load.acked)} acknowledged"
    at = {(p, off): v for p, off, v in got}
    assert len(at) == len(got), "a (partition, offset) read twice"
    values = [v for _, _, v in got]
    assert len(set(values)) == len(values), "a record is stored twice"
    missing = [(p, off, v) for p, off, v, _ in load.acked if at.get((p, off)) != v]
    assert missing == [], f"{len(missing)} acknowledged records not at their offsets, e.g. {missing[:5]}"
    times = sorted(t for *_, t in load.acked)
    gap = max(b - a for a, b in zip(times, times[1:]))
    role = "the active controller, a partition leader" if victim_kind == "controller" else "a partition leader, not the controller"
    print(f"\n{BROKER_KIND}: cut node {victim_id} ({role}); its partitions moved after "
          f"{moved_s:.2f} s ({before} -> {after}); {len(load.acked)} records acknowledged, all read back "
          f"at their offsets; longest stretch without an acknowledgement {gap:.2f} s; log ends {ends}; "
          f"every node reports leaders {final}")
