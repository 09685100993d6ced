"""A whole three-node cluster restarts and keeps every acknowledged write; a node keeps logs only for the
partitions it hosts (issues 12/13).

Three combined broker+controller nodes in network namespaces (tests/e2e/netcluster.py). A topic of three
partitions with replication factor 3 gets records from an idempotent acks=all producer (confluent-kafka); a
topic of one partition is placed on broker 1 alone. Then all three nodes are killed with kill -9 and started
again on the same data. Checked: every acknowledged record is read back at its offset after the restart;
the first high watermarks served after the restart already cover them (saved before the kill, as Kafka's
replication-offset-checkpoint); only broker 1 has a directory for the one-partition topic, before and after
the restart. On Fjord also: a
copy of that partition planted on broker 2 while the cluster is down (a stray log, as an old version or a
reassignment that moved it away could leave) is moved aside (`<dir>.<uuid>-stray`) once broker 2 has caught
up with the metadata, as Kafka's LogManager does with stray logs in KRaft. With E2E_BROKER=kafka every node is Apache Kafka 4.3.1.
"""

from __future__ import annotations

import shutil
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import HOSTS, NetCluster, registered_brokers, running, wait_for
from test_netns_cluster import PARTITIONS, RECORDS_PER_S, Load, check_acked_read_back, leaders, read_all

TOPIC = "restarted"
HERE = "on-one"  # one partition, on broker 1 only


def log_ends(bootstrap):
    """{partition: high watermark} of TOPIC ({} while a partition has none to give)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "restart-ends", "log_level": 0})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=5)[1] for p in range(PARTITIONS)}
    except Exception:  # noqa: BLE001 - not served yet
        return {}
    finally:
        c.close()


def copies(cluster, host):
    """The directories of HERE's partition on `host` (renamed ones being deleted included; stray copies moved
    aside, as Kafka keeps them, left out)."""
    return sorted(d.name for d in cluster.data_dir(host).iterdir()
                  if d.name.startswith(f"{HERE}-0") and not d.name.endswith("-stray"))


def strays(cluster, host):
    return sorted(d.name for d in cluster.data_dir(host).iterdir() if d.name.endswith("-stray"))


def log_dir_partitions(bootstrap):
    """{broker id: {(topic, partition)}} from DescribeLogDirs sent to every broker (kafka-python)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        out = {}
        for entry in admin.describe_log_dirs():
            found = out.setdefault(entry["broker"], set())
            for d in entry["log_dirs"]:
                for t in d["topics"]:
                    name = t.get("name", t.get("topic"))
                    found.update((name, p["partition_index"]) for p in t["partitions"])
        return out
    finally:
        admin.close()


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.timeout(600)
def test_a_restarted_cluster_keeps_acknowledged_writes_and_only_replicas_hold_logs(tmp_path):
    with netns.Topology(HOSTS + ["client"]) as net:
        cluster = NetCluster(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO)
        with running(net, cluster) as bootstrap:
            admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
            fs = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"}),
                                      NewTopic(HERE, num_partitions=1, replica_assignment=[[1]])])
            for f in fs.values():
                f.result(timeout=60)
            wait_for("leaders for every partition", lambda: leaders(bootstrap, TOPIC), cluster)
            load = Load(bootstrap, TOPIC)
            load.start()
            wait_for("acknowledgements", lambda: len(load.acked) > RECORDS_PER_S, cluster)
            load.stop.set()
            load.join(150)
            # Both brokers save every replicated partition's high watermark within 5 s of its last move
            # (Kafka's replica.high.watermark.checkpoint.interval.ms; Fjord the same).
            time.sleep(6)
            assert copies(cluster, "n1") == [f"{HERE}-0"]
            assert copies(cluster, "n2") == [] and copies(cluster, "n3") == [], "a copy on a non-replica"

            for h in HOSTS:
                cluster.kill(h)
            if BROKER_KIND == "fjord":
                shutil.copytree(cluster.data_dir("n1") / f"{HERE}-0", cluster.data_dir("n2") / f"{HERE}-0")
            for h in HOSTS:
                cluster.start(h)
            wait_for("three registered brokers after the restart", lambda: registered_brokers(bootstrap) == 3,
                     cluster, timeout_s=120)
            wait_for("leaders after the restart", lambda: leaders(bootstrap, TOPIC), cluster)
            # The restarted leaders start from the high watermark saved before the kill (Kafka's
            # replication-offset-checkpoint), not from their log start: the first high watermarks served
            # already cover every acknowledged record, before the followers have fetched again.
            need = {p: max(off for q, off, *_ in load.acked if q == p) + 1 for p in range(PARTITIONS)}
            first = wait_for("high watermarks after the restart",
                             lambda: (lambda e: e if len(e) == PARTITIONS else None)(log_ends(bootstrap)),
                             cluster)
            assert all(first[p] >= need[p] for p in range(PARTITIONS)), (first, need)
            got, ends = read_all(bootstrap, TOPIC)
            wait_for("the stray copy on n2 moved aside", lambda: copies(cluster, "n2") == [], cluster)
            if BROKER_KIND == "fjord":
                assert [n.split(".")[0] for n in strays(cluster, "n2")] == [f"{HERE}-0"], strays(cluster, "n2")
            assert copies(cluster, "n1") == [f"{HERE}-0"]
            assert copies(cluster, "n3") == []
            # DescribeLogDirs (kafka-python, sent to every broker) lists a partition only where it has a copy.
            listed = log_dir_partitions(bootstrap)
            assert sorted(listed) == [1, 2, 3], listed
            assert [(HERE, 0) in listed[b] for b in (1, 2, 3)] == [True, False, False], listed
            assert all((TOPIC, p) in listed[b] for b in (1, 2, 3) for p in range(PARTITIONS)), listed

    check_acked_read_back(load, got)
    print(f"\n{BROKER_KIND}: {len(load.acked)} records acknowledged before a kill -9 of all three nodes, all read "
          f"back at their offsets after the restart; log ends {ends}; {HERE}-0 only on broker 1")
