"""Fetch from the closest replica (KIP-392, issue 13 scope 5): consumers read from the follower in their rack.

Three combined nodes in network namespaces (tests/e2e/netns.py, tests/e2e/netcluster.py), node N with
`broker.rack` rN, all with `replica.selector.class` = Kafka's RackAwareReplicaSelector. One partition on
brokers 1, 2, 3 (leader 1, min.insync.replicas 2) gets records from an idempotent acks=all producer; the
Java consumer (E2EClient consume, `client.rack` r2) and librdkafka (confluent-kafka, `client.rack` r3) read
it from the start. The leader is killed with kill -9 halfway, more records are produced, and both consumers
carry on to the end. Proof of where they read: the Java consumer's `preferred-read-replica` metric named 2
and its bytes came from node 2, not node 1; librdkafka's statistics name broker 3 as the one the partition
is fetched from, and its bytes came from node 3, not node 1. Every record is read once, in order, with its
value. A second test does the same with read_committed consumers of a transactional producer: a follower
serves committed transactions only, up to its own last stable offset. With E2E_BROKER=kafka every node is
Apache Kafka 4.3.1, which checks the test itself.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import HOSTS, NetCluster, partition_metadata, registered_brokers, running, wait_for

TOPIC = "racked"
HALF = 1500
TOTAL = 2 * HALF
VALUE_BYTES = 200
RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def value(i: int) -> str:
    return f"v{i}".ljust(VALUE_BYTES, ".")


class RackedCluster(NetCluster):
    """NetCluster with node N in rack rN."""

    def settings(self, host):
        s = super().settings(host)
        s["broker.rack"] = f"r{self.node_id(host)}"
        return s


def produce(bootstrap, first, count):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 120000, "linger.ms": 5, "log_level": 0})
    failed = []
    for i in range(first, first + count):
        p.produce(TOPIC, value(i).encode(), partition=0,
                  on_delivery=lambda err, _msg: err is not None and failed.append(err))
        p.poll(0)
    assert p.flush(150) == 0, "records not delivered"
    assert not failed, failed[:5]


class RdkafkaReader(threading.Thread):
    """confluent-kafka consumer in rack r3 reading the partition from the start, with statistics."""

    def __init__(self, bootstrap, total=TOTAL, conf=None):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.total = total
        self.conf = dict(conf or {})
        self.got: list[tuple[int, str]] = []
        self.stats: dict = {}
        self.fetched_from: set[int] = set()
        self.error = None
        self.stop = threading.Event()

    def on_stats(self, text):
        s = json.loads(text)
        self.stats = s
        part = s.get("topics", {}).get(TOPIC, {}).get("partitions", {}).get("0")
        if part and part.get("broker", -1) >= 0 and self.got:
            self.fetched_from.add(part["broker"])

    def node_rx(self):
        """{node id: bytes received from it} from the last statistics."""
        return {b["nodeid"]: b["rxbytes"] for b in self.stats.get("brokers", {}).values() if b["nodeid"] >= 0}

    def run(self):
        try:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "rack-r3", "client.rack": "r3",
                          "enable.auto.commit": False, "statistics.interval.ms": 200, "stats_cb": self.on_stats,
                          "log_level": 0, **self.conf})
            c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 240
            while len(self.got) < self.total and time.monotonic() < deadline and not self.stop.is_set():
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                self.got.append((m.offset(), m.value().decode()))
            # One more statistics round with the last bytes counted.
            end = time.monotonic() + 1
            while time.monotonic() < end:
                c.poll(0.1)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


class JavaReader(threading.Thread):
    """The Java consumer (E2EClient consume) in rack r2, run inside the client namespace."""

    def __init__(self, net, java, bootstrap, total=TOTAL, *props):
        super().__init__(daemon=True)
        self.proc = net.popen("client", java.cmd("E2EClient", "consume", bootstrap, TOPIC, "earliest", str(total),
                                                 "client.rack=r2", "poll.total.ms=240000", *props),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.got: list[tuple[int, str]] = []
        self.done = None

    def run(self):
        for line in self.proc.stdout:
            o = json.loads(line)
            if o["type"] == "record":
                self.got.append((o["offset"], o["value"]))
            elif o["type"] == "done":
                self.done = o


def check_read(name, got):
    want = [(i, value(i)) for i in range(TOTAL)]
    assert got == want, f"{name}: read {len(got)} records, first difference at " \
                        f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), TOTAL))}"


@contextlib.contextmanager
def racked_partition(tmp_path):
    """Three nodes in racks r1-r3 with RackAwareReplicaSelector, and TOPIC's one partition on brokers 1, 2, 3
    (leader 1, min.insync.replicas 2, all in sync). Yields (net, cluster, bootstrap) inside the client
    namespace; stops the cluster afterwards."""
    with netns.Topology(HOSTS + ["client"]) as net:
        cluster = RackedCluster(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO,
                                extra={"replica.selector.class": RACK_AWARE,
                                       # Kafka gives up registering after 60 s, which a loaded machine can take.
                                       "initial.broker.registration.timeout.ms": "300000"})
        with running(net, cluster, register_timeout_s=180) as bootstrap:
            md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=10)
            assert {b.id: b.host for b in md.brokers.values()}.keys() == {1, 2, 3}
            admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
            fs = admin.create_topics([NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2, 3]],
                                               config={"min.insync.replicas": "2"})])
            fs[TOPIC].result(timeout=60)
            wait_for("leader 1 with all three in sync",
                     lambda: partition_metadata(bootstrap, TOPIC, 1) == {0: (1, [1, 2, 3])}, cluster)
            yield net, cluster, bootstrap


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.timeout(600)  # three Kafka JVMs and a consumer JVM start slowly on two cores
def test_consumers_read_from_the_follower_in_their_rack_through_a_leader_kill(tmp_path, java):
    java_reader = None
    with racked_partition(tmp_path) as (net, cluster, bootstrap):
        try:
            produce(bootstrap, 0, HALF)

            rd = RdkafkaReader(bootstrap)
            rd.start()
            java_reader = JavaReader(net, java, bootstrap)
            java_reader.start()
            wait_for("both consumers through the first half",
                     lambda: len(rd.got) >= HALF and len(java_reader.got) >= HALF, cluster, timeout_s=120)

            cluster.kill("n1")
            survivors = ",".join(a for a in bootstrap.split(",") if not a.startswith(net.addr("n1") + ":"))
            wait_for("a new leader", lambda: (partition_metadata(survivors, TOPIC, 1) or {0: (1, [])})[0][0]
                     in (2, 3), cluster)
            produce(survivors, HALF, HALF)

            wait_for("both consumers at the end", lambda: len(rd.got) >= TOTAL and java_reader.done is not None,
                     cluster, timeout_s=120)
            rd.join(30)
            java_reader.join(30)
            assert rd.error is None, rd.error
            check_read("librdkafka", rd.got)
            check_read("java", java_reader.got)

            payload = TOTAL * VALUE_BYTES
            # librdkafka: fetched from broker 3 (its rack), the bytes came from there, not from the leader.
            rx = rd.node_rx()
            assert 3 in rd.fetched_from, (rd.fetched_from, rx)
            assert rx.get(3, 0) >= payload, rx
            assert rx.get(1, 0) < payload / 4, rx
            # Java: preferred-read-replica named 2, the bytes came from node 2.
            done = java_reader.done
            assert 2 in done["preferred_read_replicas"], done
            node_bytes = done["node_incoming_bytes"]
            assert node_bytes.get("node-2", 0) >= payload, node_bytes
            assert node_bytes.get("node-1", 0) < payload / 4, node_bytes
        finally:
            if java_reader is not None and java_reader.proc.poll() is None:
                java_reader.proc.kill()
                java_reader.proc.wait()


def transaction(producer, first, count, commit):
    producer.begin_transaction()
    for i in range(first, first + count):
        producer.produce(TOPIC, value(i).encode(), partition=0)
    if commit is None:
        assert producer.flush(60) == 0, "records not delivered"
    elif commit:
        producer.commit_transaction(60)
    else:
        producer.abort_transaction(60)


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.timeout(600)
def test_read_committed_consumers_read_from_the_follower_in_their_rack(tmp_path, java):
    """A follower serves read_committed fetches up to its own last stable offset: committed transactions, never
    an aborted one, and nothing of an open one until it commits. One partition on brokers 1, 2, 3 (leader 1);
    a transactional producer (confluent-kafka) commits records 0-99, aborts 100-199, commits 200-299 and leaves
    300-399 open; read_committed consumers in racks r2 (Java) and r3 (librdkafka) read 0-99 and 200-299 from
    their rack's follower, nothing more while the transaction is open, then 300-399 once it commits."""
    batch = 100
    committed = [value(i) for i in range(batch)] + [value(i) for i in range(2 * batch, 4 * batch)]
    java_reader = None
    with racked_partition(tmp_path) as (net, cluster, bootstrap):
        try:
            producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "racked-txn",
                                 "transaction.timeout.ms": 120000, "log_level": 0})
            producer.init_transactions(120)
            transaction(producer, 0, batch, True)
            transaction(producer, batch, batch, False)
            transaction(producer, 2 * batch, batch, True)
            transaction(producer, 3 * batch, batch, None)  # left open

            rd = RdkafkaReader(bootstrap, 3 * batch, {"isolation.level": "read_committed"})
            rd.start()
            java_reader = JavaReader(net, java, bootstrap, 3 * batch, "isolation.level=read_committed")
            java_reader.start()
            wait_for("both consumers through the committed transactions",
                     lambda: len(rd.got) >= 2 * batch and len(java_reader.got) >= 2 * batch, cluster,
                     timeout_s=120)
            time.sleep(2)  # polls go on: nothing of the open transaction may arrive
            for name, got in (("librdkafka", rd.got), ("java", java_reader.got)):
                assert [v for _, v in got] == committed[:2 * batch], f"{name}: {len(got)} records"
            producer.commit_transaction(60)
            wait_for("both consumers at the end", lambda: len(rd.got) >= 3 * batch and java_reader.done is not None,
                     cluster, timeout_s=120)
            rd.join(30)
            java_reader.join(30)
            assert rd.error is None, rd.error
            for name, got in (("librdkafka", rd.got), ("java", java_reader.got)):
                assert [v for _, v in got] == committed, f"{name}: {len(got)} records"
                offsets = [o for o, _ in got]
                assert offsets == sorted(set(offsets)), f"{name}: offsets out of order"
            # Where they read: librdkafka from broker 3, Java from node 2, not from the leader.
            payload = 3 * batch * VALUE_BYTES
            rx = rd.node_rx()
            assert 3 in rd.fetched_from, (rd.fetched_from, rx)
            assert rx.get(3, 0) >= payload, rx
            done = java_reader.done
            assert 2 in done["preferred_read_replicas"], done
            assert done["node_incoming_bytes"].get("node-2", 0) >= payload, done["node_incoming_bytes"]
        finally:
            if java_reader is not None and java_reader.proc.poll() is None:
                java_reader.proc.kill()
                java_reader.proc.wait()
