"""Eligible leader replicas (KIP-966) on three nodes (issue 13).

Three combined broker+controller nodes in network namespaces (tests/e2e/netcluster.py). ELR is on in the new
cluster, as Kafka 4.3.1 formats one (from metadata.version 4.1-IV0), as `kafka-features describe` shows, with
the cluster-wide `min.insync.replicas` written at bootstrap (`kafka-configs --entity-default --describe`);
Kafka's `kafka-features upgrade --feature eligible.leader.replicas.version=1` then changes nothing. A topic with replication factor 3 and
`min.insync.replicas` 3 on brokers 1, 2, 3; a follower that is not the active controller is killed with
kill -9 (one follower only: a second kill would take the controller quorum's majority with it, and then
no ISR can change at all). Checked: the ISR shrinks to the two others, below min.insync.replicas, and the
killed follower is the partition's eligible leader replica, as DescribeTopicPartitions v0 answers it
(tests/e2e/kschema.py, a client of our own built from Kafka's schemas) and as Kafka's `kafka-topics
--describe` (the Java admin client) prints it (`Elr: N`); once the follower is back (an unclean restart:
it leaves the ELR) and has caught up, the ISR is whole again and the ELR empty. Then the same follower is
stopped cleanly (SIGTERM): it is in the ELR, has left Kafka's clean-shutdown file (`.kafka_cleanshutdown`,
the broker epoch it stopped with) in its data directory, and after its restart (which removes the file) it
is in the ELR or the ISR in every state seen until the ISR is whole again. With E2E_BROKER=kafka every node
is Apache Kafka 4.3.1. With ELR on, a node's own `min.insync.replicas` and removing the cluster-wide one
are refused (INVALID_CONFIG, Kafka's messages).
"""

from __future__ import annotations

import json
import re
import signal

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import kschema
import netns
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, REPO
from netcluster import HOSTS, NetCluster, active_controller, registered_brokers, running, wait_for

TOPIC = "elr"


def tool(net, main, *args):
    argv = ["java", f"-Dlog4j2.configurationFile={REPO}/tests/e2e/log4j2-tools.properties", "-cp",
            f"{KAFKA_LIBS}/*", main, *args]
    return net.run("client", argv, capture_output=True, text=True, timeout=120)


def described(bootstrap):
    """(leader, ISR, ELR, last known ELR) of TOPIC-0 from DescribeTopicPartitions v0, or None."""
    for host in bootstrap.split(","):
        try:
            resp = kschema.call(host, "DescribeTopicPartitions", 0,
                                {"Topics": [{"Name": TOPIC}], "ResponsePartitionLimit": 10})
        except OSError:
            continue
        if not resp or not resp["Topics"] or resp["Topics"][0]["ErrorCode"] != 0:
            continue
        parts = resp["Topics"][0]["Partitions"]
        if not parts:
            continue
        p = parts[0]
        return (p["LeaderId"], sorted(p["IsrNodes"]), sorted(p["EligibleLeaderReplicas"] or []),
                sorted(p["LastKnownElr"] or []))
    return None


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
@pytest.mark.timeout(600)
def test_a_follower_leaving_an_isr_below_min_isr_is_an_eligible_leader_replica(tmp_path):
    with netns.Topology(HOSTS + ["client"]) as net:
        cluster = NetCluster(BROKER_KIND, net, tmp_path, fjord_bin=FJORD_BIN, kafka_libs=KAFKA_LIBS, repo=REPO)
        with running(net, cluster) as bootstrap:
            elr_on = (r"Feature: eligible\.leader\.replicas\.version\s+SupportedMinVersion: 0\s+"
                      r"SupportedMaxVersion: 1\s+FinalizedVersionLevel: 1")
            # On in a new cluster (Kafka 4.3.1 formats one at 4.3-IV0, and turns ELR on from 4.1-IV0), with the
            # cluster-wide min.insync.replicas (the static one, 1) written at bootstrap.
            desc = tool(net, "org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", bootstrap,
                        "describe")
            assert re.search(elr_on, desc.stdout), desc.stdout
            configs = tool(net, "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap, "--describe",
                           "--entity-type", "brokers", "--entity-default")
            assert configs.returncode == 0, configs.stdout + configs.stderr
            assert re.search(r"min\.insync\.replicas=1 sensitive=false "
                             r"synonyms=\{DYNAMIC_DEFAULT_BROKER_CONFIG:min\.insync\.replicas=1", configs.stdout), \
                configs.stdout
            up = tool(net, "org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", bootstrap,
                      "upgrade", "--feature", "eligible.leader.replicas.version=1")
            assert up.returncode == 0, up.stdout + up.stderr
            desc = tool(net, "org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", bootstrap,
                        "describe")
            assert re.search(elr_on, desc.stdout), desc.stdout
            # While ELR is on, Kafka's controller refuses a node's own min.insync.replicas and removing the
            # cluster-wide one (which enabling ELR wrote).
            node1 = bootstrap.split(",")[0]
            for name, op, value, message in [
                ("1", 0, "2", "Broker-level min.insync.replicas cannot be altered while ELR is enabled."),
                ("", 1, None, "Cluster-level min.insync.replicas cannot be removed while ELR is enabled."),
            ]:
                resp = kschema.call(node1, "IncrementalAlterConfigs", 1, {
                    "Resources": [{"ResourceType": 4, "ResourceName": name, "Configs": [
                        {"Name": "min.insync.replicas", "ConfigOperation": op, "Value": value}]}],
                    "ValidateOnly": False})
                r = resp["Responses"][0]
                assert (r["ErrorCode"], r["ErrorMessage"]) == (40, message), (name, r)
            admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
            fs = admin.create_topics([NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2, 3]],
                                               config={"min.insync.replicas": "3"})])
            for f in fs.values():
                f.result(timeout=60)
            wait_for("the whole ISR", lambda: described(bootstrap) == (1, [1, 2, 3], [], []), cluster)

            controller = wait_for("the active controller", lambda: active_controller(net), cluster)
            victim = 3 if controller != 3 else 2
            others = sorted({1, 2, 3} - {victim})
            cluster.kill(cluster.host(victim))
            live = ",".join(a for a in bootstrap.split(",") if not a.startswith(net.addr(cluster.host(victim))))
            state = wait_for(f"broker {victim} in the ELR",
                             lambda: (s := described(live)) and s[1] == others and s[2] == [victim] and s,
                             cluster)
            assert state == (1, others, [victim], []), state

            shown = tool(net, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", live,
                         "--describe", "--topic", TOPIC)
            assert shown.returncode == 0, shown.stdout + shown.stderr
            line = next(ln for ln in shown.stdout.splitlines() if "Partition: 0" in ln)
            assert re.search(rf"\bIsr: {others[0]},{others[1]}\s+Elr: {victim}\s+LastKnownElr:\s*$", line), line

            cluster.start(cluster.host(victim))
            seen = []

            def whole():
                s = described(bootstrap)
                seen.append(s)
                return s and s[1] == [1, 2, 3] and s[2] == [] and s

            try:
                wait_for("the whole ISR again, the ELR empty", whole, cluster, timeout_s=120)
            except AssertionError as e:
                raise AssertionError(f"last seen {seen[-3:]}") from e

            # A clean stop: the controlled shutdown takes the follower out of the ISR, into the ELR, and
            # it leaves its clean-shutdown proof (Kafka's `.kafka_cleanshutdown`, the broker epoch it
            # stopped with) in its data directory; its next start reads and removes it, and registers
            # with that epoch, so it is not dropped from the ELR as after kill -9.
            host = cluster.host(victim)
            cluster.signal(host, signal.SIGTERM)
            cluster.procs[host].wait(timeout=60)
            proof = cluster.data_dir(host) / ".kafka_cleanshutdown"
            assert proof.exists(), sorted(p.name for p in cluster.data_dir(host).iterdir())
            saved = json.loads(proof.read_text())
            assert saved["version"] == 0 and saved["brokerEpoch"] >= 0, saved
            state = wait_for(f"broker {victim} in the ELR after its clean stop",
                             lambda: (s := described(live)) and s[1] == others and s[2] == [victim] and s,
                             cluster)
            assert state == (1, others, [victim], []), state
            cluster.start(host)
            seen.clear()
            try:
                wait_for("the whole ISR after the clean restart", whole, cluster, timeout_s=120)
            except AssertionError as e:
                raise AssertionError(f"last seen {seen[-3:]}") from e
            assert not proof.exists(), "read and removed at start"
            # Registered again with its proof, it never left the ELR before it was back in the ISR.
            assert all(victim in s[1] or victim in s[2] for s in seen if s), seen
