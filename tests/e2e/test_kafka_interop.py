"""An Apache Kafka 4.3.1 broker joins a Fjord cluster (issue 12, "interop proof of the formats").

Three combined Fjord nodes form the KRaft quorum; a fourth node runs Apache Kafka 4.3.1 with
`process.roles=broker`, pointed at Fjord's controllers with Kafka's own config names. It follows Fjord's
`__cluster_metadata` log as an observer, registers with Fjord's active controller (BrokerRegistration with
its log directory), heartbeats, is unfenced, and then holds replicas like any broker: a topic is created
with partition 0 led by the Kafka broker (Fjord nodes follow it), partition 1 led by Fjord with the Kafka
broker following, partition 2 also followed by it. An idempotent acks=all producer (confluent-kafka)
writes to all three; every acknowledged record is read back at its offset through a Fjord node and
through the Kafka node. Then the Kafka broker is killed with kill -9: Fjord's controller fences it and
moves partition 0's leadership to a Fjord follower in the ISR, and production goes on without losing an
acknowledged record.

Each node runs in a network namespace (tests/e2e/netns.py, as test_netns_cluster.py). With
E2E_BROKER=kafka the quorum is three Apache Kafka nodes instead, which checks the test itself.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import CLIENT_PORT, HOSTS, NetCluster, wait_for
from test_netns_cluster import (PARTITIONS, RECORDS_PER_S, Load, check_acked_read_back, leaders, read_all,
                                wait_moved_off)

KAFKA_HOST = "k4"
KAFKA_ID = 4
# Partition 0 is led by the Kafka broker, 1 by Fjord with the Kafka broker following, 2 likewise.
ASSIGNMENT = [[KAFKA_ID, 1, 2], [1, KAFKA_ID, 3], [2, 3, KAFKA_ID]]


class MixedCluster(NetCluster):
    """NetCluster's three quorum nodes plus a broker-only Apache Kafka node."""

    def settings(self, host):
        if host != KAFKA_HOST:
            return super().settings(host)
        s = super().settings(HOSTS[0])
        a = self.net.addr(host)
        s.update({
            "node.id": str(KAFKA_ID),
            "process.roles": "broker",
            "listeners": f"PLAINTEXT://{a}:{CLIENT_PORT}",
            "advertised.listeners": f"PLAINTEXT://{a}:{CLIENT_PORT}",
        })
        return s

    def kafka_log(self):
        f = self.root / KAFKA_HOST / "node.log"
        return f.read_text(errors="replace") if f.exists() else ""


def brokers(bootstrap):
    try:
        return sorted(AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=5).brokers)
    except Exception:  # noqa: BLE001 - not up yet
        return []


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
def test_a_kafka_broker_joins_the_quorum_and_replicates_both_ways(tmp_path):
    assert len(ASSIGNMENT) == PARTITIONS
    topic = "interop"
    with netns.Topology(HOSTS + [KAFKA_HOST, "client"]) as net:
        cluster = MixedCluster(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO)
        try:
            for h in HOSTS:
                cluster.start(h)
            cluster.start(KAFKA_HOST, kind="kafka")
            bootstrap = f"{net.addr(HOSTS[0])}:{CLIENT_PORT}"
            kafka_bootstrap = f"{net.addr(KAFKA_HOST)}:{CLIENT_PORT}"
            with net.inside("client"):
                wait_for("four registered, unfenced brokers", lambda: brokers(bootstrap) == [1, 2, 3, 4], cluster,
                         timeout_s=180)
                # Kafka's broker serves Metadata from the image it built out of the quorum's log.
                wait_for("the Kafka broker's own view of four brokers",
                         lambda: brokers(kafka_bootstrap) == [1, 2, 3, 4], cluster)
                admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
                fs = admin.create_topics([NewTopic(topic, PARTITIONS, -1, replica_assignment=ASSIGNMENT,
                                                   config={"min.insync.replicas": "2"})])
                fs[topic].result(timeout=60)
                want = {p: r[0] for p, r in enumerate(ASSIGNMENT)}
                wait_for(f"leaders {want}", lambda: leaders(bootstrap, topic) == want, cluster)
                wait_for(f"leaders {want} on the Kafka broker", lambda: leaders(kafka_bootstrap, topic) == want,
                         cluster)

                load = Load(bootstrap, topic)
                load.start()
                wait_for("acknowledgements from every partition",
                         lambda: {p for p, *_ in load.acked} == set(range(PARTITIONS))
                         and len(load.acked) > 2 * RECORDS_PER_S, cluster)
                # Everything acknowledged so far, read through the Kafka broker (it leads partition 0 and
                # forwards nothing: a client is sent to each partition's leader by Metadata).
                n_before_kill = len(load.acked)
                got_via_kafka, _ = read_all(kafka_bootstrap, topic)
                cluster.kill(KAFKA_HOST)
                t_kill = time.monotonic()
                after, moved_s = wait_moved_off(cluster, bootstrap, topic, KAFKA_ID, t_kill,
                                                "partition 0 to move off the killed Kafka broker")
                n_at_move = len(load.acked)
                wait_for("acknowledgements from the new leader",
                         lambda: len([a for a in load.acked[n_at_move:] if a[0] == 0]) > RECORDS_PER_S // 3, cluster)
                load.stop.set()
                load.join(150)
                got, ends = read_all(bootstrap, topic)
                kafka_log = cluster.kafka_log()
        finally:
            cluster.stop()

    check_acked_read_back(load, got)
    via_kafka = {(p, off): v for p, off, v in got_via_kafka}
    missing = [(p, off, v) for p, off, v, _ in load.acked[:n_before_kill] if via_kafka.get((p, off)) != v]
    assert missing == [], f"{len(missing)} acknowledged records not read through the Kafka broker: {missing[:5]}"
    assert after[0] in ASSIGNMENT[0][1:], f"partition 0 moved to {after[0]}, not a follower of {ASSIGNMENT[0]}"
    # A registration that lost the broker's log directories makes a Kafka broker register again and again
    # ("Current directory set is empty, but MV supports JBOD. Resending broker registration.").
    resent = kafka_log.count("Resending broker registration")
    assert resent <= 1, f"the Kafka broker registered {resent} more times"
    print(f"\n{BROKER_KIND} quorum + a Kafka 4.3.1 broker: {len(load.acked)} records acknowledged, all read back "
          f"at their offsets; after kill -9 of the Kafka broker partition 0 moved to node {after[0]} in "
          f"{moved_s:.2f} s; log ends {ends}")
