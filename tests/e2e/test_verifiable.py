"""Kafka's own verifiable clients through a leader kill (issue 13): org.apache.kafka.tools.VerifiableProducer
and org.apache.kafka.tools.VerifiableConsumer from the Kafka 4.3.1 jars, the tools Kafka's system tests
check replication with, run against a three-node cluster while the leader of partition 0 is killed with
kill -9 and restarted.

The producer (acks=all, idempotent, --max-messages) prints a `producer_send_success` event with partition
and offset for each acknowledged value; the consumer (a group, --verbose) prints `records_consumed` events
(offset ranges per partition) and `record_data` events (each record). Every acknowledged value must be
consumed, at the offset it was acknowledged at, and no value consumed twice at two offsets.

Each node runs in a network namespace (tests/e2e/netns.py, nodes by tests/e2e/netcluster.py, as
test_netns_cluster.py); the tools run in a fourth. E2E_BROKER=kafka runs three Apache Kafka 4.3.1 nodes
instead, which checks the test itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import netcluster
import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import HOSTS, NetCluster, wait_for

TOPIC = "verifiable"
PARTITIONS = 3
MESSAGES = 4000
THROUGHPUT = 400  # records/s: the run lasts about MESSAGES / THROUGHPUT seconds plus the failover


class Tool(threading.Thread):
    """A Kafka tool in the client namespace whose stdout is one JSON event a line; collects the events."""

    def __init__(self, net, main_class, args, log_path):
        super().__init__(daemon=True)
        self.events = []
        self.lock = threading.Lock()
        self.log = open(log_path, "wb")
        argv = ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={REPO}/tests/e2e/log4j2-tools.properties",
                "-cp", f"{KAFKA_LIBS}/*", main_class, *args]
        self.proc = net.popen("client", argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)

    def run(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)

    def running_or_done(self):
        """True while the tool runs or after it printed shutdown_complete; an early exit fails the test."""
        code = self.proc.poll()
        if code is not None and not self.named("shutdown_complete"):
            self.log.flush()
            tail = open(self.log.name, errors="replace").read()[-3000:]
            raise AssertionError(f"the tool exited with status {code} before shutdown_complete:\n{tail}")
        return True

    def named(self, name):
        with self.lock:
            return [e for e in self.events if e.get("name") == name]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.join(10)
        self.log.close()


def three_brokers(bootstrap):
    return netcluster.registered_brokers(bootstrap) == 3


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.timeout(400)  # three Kafka JVMs and two tool JVMs start slowly on a loaded machine
def test_verifiable_clients_through_a_leader_kill(tmp_path):
    with netns.Topology(HOSTS + ["client"]) as net:
        cluster = NetCluster(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO)
        producer = consumer = None
        try:
            for h in HOSTS:
                cluster.start(h)
            bootstrap = cluster.bootstrap
            with net.inside("client"):
                wait_for("three registered brokers", lambda: three_brokers(bootstrap), cluster, timeout_s=180)
                admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
                fs = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})])
                fs[TOPIC].result(timeout=60)
                before = wait_for("leaders for every partition",
                                  lambda: netcluster.leaders(bootstrap, TOPIC, PARTITIONS), cluster)

            consumer = Tool(net, "org.apache.kafka.tools.VerifiableConsumer",
                            ["--bootstrap-server", bootstrap, "--topic", TOPIC, "--group-id", "verifiable-group",
                             "--reset-policy", "earliest", "--verbose"], tmp_path / "consumer.log")
            consumer.start()
            wait_for("the consumer's partitions", lambda: consumer.named("partitions_assigned")
                     and sum(len(e["partitions"]) for e in consumer.named("partitions_assigned")) > 0,
                     cluster, timeout_s=120)
            config = tmp_path / "producer.properties"
            # VerifiableProducer sets retries=0 unless told otherwise; idempotence needs retries.
            config.write_text("enable.idempotence=true\nretries=2147483647\nlinger.ms=5\n"
                              "delivery.timeout.ms=120000\n")
            producer = Tool(net, "org.apache.kafka.tools.VerifiableProducer",
                            ["--bootstrap-server", bootstrap, "--topic", TOPIC, "--acks", "-1",
                             "--max-messages", str(MESSAGES), "--throughput", str(THROUGHPUT),
                             "--command-config", str(config)], tmp_path / "producer.log")
            producer.start()
            wait_for("a quarter of the records acknowledged",
                     lambda: producer.running_or_done() and
                     len(producer.named("producer_send_success")) >= MESSAGES // 4, cluster, timeout_s=120)

            victim_id = before[0]
            victim = cluster.host(victim_id)
            cluster.kill(victim)
            t_kill = time.monotonic()
            survivors = ",".join(f"{net.addr(h)}:9092" for h in HOSTS if h != victim)

            def moved():
                now = netcluster.leaders(survivors, TOPIC, PARTITIONS)
                return now if now and victim_id not in now.values() else None

            with net.inside("client"):
                after = wait_for(f"partitions led by node {victim_id} to move", moved, cluster)
            moved_s = time.monotonic() - t_kill
            cluster.start(victim)
            with net.inside("client"):
                wait_for("the killed node back", lambda: three_brokers(bootstrap), cluster, timeout_s=120)

            wait_for("the producer to finish", lambda: producer.running_or_done() and producer.named("shutdown_complete"),
                     cluster, timeout_s=180)
            acked = {(e["partition"], e["offset"]): e["value"] for e in producer.named("producer_send_success")}

            def consumed_all():
                seen = {e["value"] for e in consumer.named("record_data")}
                return all(v in seen for v in acked.values())

            wait_for("the consumer to read every acknowledged value", consumed_all, cluster, timeout_s=120)
        finally:
            for tool in (producer, consumer):
                if tool is not None:
                    tool.stop()
            cluster.stop()

    errors = producer.named("producer_send_error")
    data = producer.named("tool_data")
    records = consumer.named("record_data")
    ranges = [(p["partition"], p["minOffset"], p["maxOffset"])
              for e in consumer.named("records_consumed") for p in e["partitions"]]
    at = {}
    for r in records:
        at.setdefault((r["partition"], r["offset"]), set()).add(r["value"])
    conflicts = {k: v for k, v in at.items() if len(v) > 1}
    assert conflicts == {}, f"two values consumed at one offset: {list(conflicts.items())[:5]}"
    offsets_of = {}
    for (p, off), vs in at.items():
        for v in vs:
            offsets_of.setdefault(v, set()).add((p, off))
    stored_twice = {v: o for v, o in offsets_of.items() if len(o) > 1}
    assert stored_twice == {}, f"values stored at two offsets: {list(stored_twice.items())[:5]}"
    lost = [(p, off, v) for (p, off), v in acked.items() if v not in at.get((p, off), set())]
    assert lost == [], f"{len(lost)} acknowledged values not consumed at their offsets, e.g. {lost[:5]}"
    outside = [(p, off) for (p, off) in acked if not any(rp == p and lo <= off <= hi for rp, lo, hi in ranges)]
    assert outside == [], f"acknowledged offsets no records_consumed event covers: {outside[:5]}"
    assert len(acked) >= MESSAGES * 9 // 10, f"only {len(acked)} of {MESSAGES} acknowledged; errors {errors[:3]}"
    print(f"\n{BROKER_KIND}: VerifiableProducer sent {MESSAGES}, {len(acked)} acknowledged "
          f"({len(errors)} send errors, e.g. {[e.get('exception') for e in errors[:2]]}); leader node {victim_id} "
          f"of partition 0 killed, its partitions moved after {moved_s:.2f} s ({before} -> {after}); "
          f"VerifiableConsumer read {len(records)} records, every acknowledged value at its offset; "
          f"producer summary {data[-1] if data else None}")
