"""metadata.version across releases (issue 12): a node formatted at an older release, as Kafka's
`kafka-storage format --release-version 3.9` makes one, runs at 3.9-IV0; `kafka-features upgrade --metadata 4.3`
moves it to 4.3-IV0 (Kafka 4.3.1's default and Fjord's highest); the dependency of eligible leader replicas on
4.0-IV1 and the refusal of a downgrade across a level that changed the metadata are Kafka's. Fjord is formatted
with `fjord format --release-version 3.9`, Kafka with its own tool, so both runs are the same scenario."""

from __future__ import annotations

import re
import subprocess

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kschema
from conftest import BROKER_KIND, FJORD_BIN, unique

INVALID_UPDATE_VERSION = 95
UPGRADE, SAFE_DOWNGRADE = 1, 2


def features(java, bootstrap):
    res = java.run("org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", bootstrap, "describe", timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {}
    for line in res.stdout.splitlines():
        fields = dict(re.findall(r"(\w+): (\S+)", line))
        if "Feature" in fields:
            rows[fields["Feature"]] = fields
    return rows


def update(bootstrap, name, level, upgrade_type):
    body = {"timeoutMs": 30_000, "ValidateOnly": False, "FeatureUpdates": [
        {"Feature": name, "MaxVersionLevel": level, "AllowDowngrade": upgrade_type != UPGRADE,
         "UpgradeType": upgrade_type}]}
    return kschema.call(bootstrap, "UpdateFeatures", 1, body)


@pytest.fixture
def old_node(broker_factory, monkeypatch):
    if BROKER_KIND == "kafka":
        monkeypatch.setenv("KAFKA_FORMAT_ARGS", "--release-version 3.9")
        return broker_factory()
    b = broker_factory(start=False)
    subprocess.run([str(FJORD_BIN), "format", "--cluster-id", "mv-upgrade", "--data-dir", str(b.data_dir),
                    "--listen", b.bootstrap, "--release-version", "3.9"], check=True, capture_output=True,
                   timeout=60)
    b.start()
    return b


def test_upgrade_from_3_9_to_4_3(old_node, java):
    b = old_node.bootstrap
    before = features(java, b)
    assert before["metadata.version"]["FinalizedVersionLevel"] == "3.9-IV0", before
    assert before["metadata.version"]["SupportedMaxVersion"] == "4.3-IV0", before

    # Eligible leader replicas need 4.0-IV1.
    r = update(b, "eligible.leader.replicas.version", 1, UPGRADE)
    assert r["ErrorCode"] == INVALID_UPDATE_VERSION, r
    assert r["ErrorMessage"].endswith("eligible.leader.replicas.version could not be set to 1 because it depends "
                                    "on metadata.version level 23"), r

    up = java.run("org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", b, "upgrade", "--metadata", "4.3",
                  timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    after = features(java, b)
    assert after["metadata.version"]["FinalizedVersionLevel"] == "4.3-IV0", after

    # 4.3-IV0 changed the metadata (cordoned log directories): no way back to 4.2.
    r = update(b, "metadata.version", 29, SAFE_DOWNGRADE)
    assert r["ErrorCode"] == INVALID_UPDATE_VERSION, r
    assert r["ErrorMessage"].endswith("Unsupported metadata.version downgrade from 30 to 29. Refusing to perform "
                                    "the requested downgrade because it might delete metadata information."), r
    assert update(b, "eligible.leader.replicas.version", 1, UPGRADE)["ErrorCode"] == 0

    # The node works at the new level: a topic, records in and out (librdkafka).
    topic = unique("mv")
    admin = AdminClient({"bootstrap.servers": b})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": b})
    for i in range(10):
        p.produce(topic, str(i).encode())
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": b, "group.id": unique("g"), "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    for _ in range(60):
        m = c.poll(1)
        if m is not None and not m.error():
            got.append(m.value().decode())
        if len(got) == 10:
            break
    c.close()
    assert got == [str(i) for i in range(10)]
