"""Partition reassignment that moves data (issue 13 scope 5, KIP-455), with Kafka's own tool.

Four nodes, each in a network namespace of its own (tests/e2e/netns.py, launched by tests/e2e/netcluster.py):
n1-n3 combined broker+controller nodes (the KRaft quorum), n4 a broker-only node. A topic of three
partitions, each on brokers 1, 2 and 3 (replication factor 3, min.insync.replicas 2), gets records from an
idempotent acks=all producer (confluent-kafka) while Apache Kafka 4.3.1's `kafka-reassign-partitions`
(org.apache.kafka.tools.reassign.ReassignPartitionsCommand) moves them to brokers 2, 3 and 4: `--execute`,
then `--verify` until it reports every reassignment complete. Checked afterwards: each partition's replicas
are 2, 3, 4 and its ISR all three; every acknowledged record is read back at its offset (from the new
replicas: broker 1 no longer is one); broker 1 no longer holds the partitions' directories (Kafka renames
them `<topic>-<p>.<id>-delete` and deletes them after `log.segment.delete.delay.ms`, 1 s here), broker 4
does. With E2E_BROKER=kafka every
node is Apache Kafka 4.3.1, which checks the test itself.
"""

from __future__ import annotations

import json

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import CLIENT_PORT, HOSTS, NetCluster, wait_for
from test_netns_cluster import PARTITIONS, RECORDS_PER_S, Load, read_all

NODES = HOSTS + ["n4"]
TOPIC = "moving"


class FourNodes(NetCluster):
    """The three combined voters of NetCluster and broker-only node 4."""

    def __init__(self, *a, **kw):
        super().__init__(*a, voter_hosts=HOSTS, broker_hosts=NODES, **kw)

    def node_id(self, host) -> int:
        return NODES.index(host) + 1

    def host(self, node_id: int) -> str:
        return NODES[node_id - 1]

    def settings(self, host):
        if host != "n4":
            return super().settings(host)
        s = super().settings("n1")
        a = self.net.addr(host)
        s.update({"node.id": "4", "process.roles": "broker", "listeners": f"PLAINTEXT://{a}:{CLIENT_PORT}",
                  "advertised.listeners": f"PLAINTEXT://{a}:{CLIENT_PORT}"})
        return s


def placement(bootstrap):
    """{partition: (leader, sorted replicas, sorted ISR)}, or None while the metadata is incomplete."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(TOPIC, timeout=5)
    except Exception:  # noqa: BLE001 - ask again
        return None
    t = md.topics.get(TOPIC)
    if t is None or t.error is not None or len(t.partitions) != PARTITIONS:
        return None
    return {i: (p.leader, sorted(p.replicas), sorted(p.isrs)) for i, p in t.partitions.items()}


def placed_on(bootstrap, brokers):
    """The placement once every partition has `brokers` as replicas and ISR, else None."""
    m = placement(bootstrap)
    return m if m and all(r == brokers and isr == brokers for _, r, isr in m.values()) else None


def reassign_tool(net, bootstrap, tmp_path, action, target):
    plan = tmp_path / "reassignment.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": TOPIC, "partition": p, "replicas": target} for p in range(PARTITIONS)]}))
    argv = ["java", f"-Dlog4j2.configurationFile={REPO}/tests/e2e/log4j2-tools.properties", "-cp",
            f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
            "--bootstrap-server", bootstrap, "--reassignment-json-file", str(plan), action]
    return net.run("client", argv, capture_output=True, text=True, timeout=120)


def copies(cluster, host):
    """The partitions' directories on `host` (Kafka's renamed `-delete` ones included)."""
    names = {f"{TOPIC}-{p}" for p in range(PARTITIONS)}
    return sorted(d.name for d in cluster.data_dir(host).iterdir() if d.name.split(".")[0] in names)


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.timeout(600)  # four Kafka JVMs start slowly on two cores
def test_reassignment_moves_the_data_and_loses_no_acknowledged_write(tmp_path):
    with netns.Topology(NODES + ["client"]) as net:
        cluster = FourNodes(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO,
                            extra={"log.segment.delete.delay.ms": "1000",
                                   # Kafka gives up registering after 60 s, which a loaded machine can take.
                                   "initial.broker.registration.timeout.ms": "300000"})
        try:
            for h in NODES:
                cluster.start(h)
            bootstrap = cluster.bootstrap
            with net.inside("client"):
                def four_brokers():
                    try:
                        probe = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
                        return sorted(probe.list_topics(timeout=5).brokers) == [1, 2, 3, 4]
                    except Exception:  # noqa: BLE001 - not up yet
                        return False

                wait_for("four registered brokers", four_brokers, cluster, timeout_s=180)
                admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
                fs = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS,
                                                   replica_assignment=[[1, 2, 3]] * PARTITIONS,
                                                   config={"min.insync.replicas": "2"})])
                fs[TOPIC].result(timeout=60)
                wait_for("the partitions on 1, 2, 3 in sync", lambda: placed_on(bootstrap, [1, 2, 3]), cluster)
                wait_for("broker 1's copies", lambda: len(copies(cluster, "n1")) == PARTITIONS, cluster)

                load = Load(bootstrap, TOPIC)
                load.start()
                wait_for("acknowledgements", lambda: len(load.acked) > RECORDS_PER_S, cluster)

                execute = reassign_tool(net, bootstrap, tmp_path, "--execute", [2, 3, 4])
                assert execute.returncode == 0, execute.stdout + execute.stderr
                assert "Successfully started partition reassignment" in execute.stdout, execute.stdout

                last = {}

                def verified():
                    v = reassign_tool(net, bootstrap, tmp_path, "--verify", [2, 3, 4])
                    last["out"] = v.stdout + v.stderr
                    return v.returncode == 0 and all(f"Reassignment of partition {TOPIC}-{p} is completed" in v.stdout
                                                     for p in range(PARTITIONS))

                try:
                    wait_for("--verify to report the reassignment complete", verified, cluster, timeout_s=120,
                             interval_s=1)
                except AssertionError as e:
                    raise AssertionError(f"{e}\nlast --verify output:\n{last.get('out')}") from None
                # Writes go on to the new replicas for a moment, then stop.
                acked_at_move = len(load.acked)
                wait_for("acknowledgements after the move", lambda: len(load.acked) > acked_at_move + 100, cluster)
                load.stop.set()
                load.join(180)
                assert not load.errors, load.errors[:5]

                placed = wait_for("the partitions on 2, 3, 4 in sync", lambda: placed_on(bootstrap, [2, 3, 4]),
                                  cluster)
                assert all(leader in (2, 3, 4) for leader, _, _ in placed.values()), placed
                got, ends = read_all(bootstrap, TOPIC)
                read = set(got)
                lost = [a[:3] for a in load.acked if a[:3] not in read]
                assert not lost, f"{len(lost)} acknowledged records not read back at their offsets, e.g. " \
                                 f"{lost[:5]} (ends {ends}, read {len(got)})"
                wait_for("broker 1 to delete its copies", lambda: not copies(cluster, "n1"), cluster, timeout_s=30)
                assert len(copies(cluster, "n4")) == PARTITIONS, copies(cluster, "n4")
        finally:
            cluster.stop()
