"""Fjord started with a complete Kafka 4.3.1 server.properties (one KRaft node) via `fjord serve --config FILE`."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

import clients as c
from conftest import BROKER_KIND, FJORD_BIN, REPO, free_port, unique

FIXTURE = REPO / "tests" / "fixtures" / "kafka-server.properties"


def test_kafka_server_properties_starts_fjord(broker_factory):
    if BROKER_KIND != "fjord":
        pytest.skip("Kafka reads its own server.properties; this checks that Fjord does")
    br = broker_factory(start=False)
    cport = free_port()
    text = FIXTURE.read_text()
    # The file as shipped, with this test's ports and data directory.
    text = text.replace("PLAINTEXT://:9092", f"PLAINTEXT://127.0.0.1:{br.port}")
    text = text.replace("PLAINTEXT://localhost:9092", f"PLAINTEXT://127.0.0.1:{br.port}")
    text = re.sub(r"(CONTROLLER://|@|bootstrap\.servers=)(localhost)?:?9093", rf"\g<1>127.0.0.1:{cport}", text)
    text = text.replace("/tmp/kraft-combined-logs", str(br.data_dir))
    assert not re.search(r":909[23]\b", text) and "kraft-combined-logs" not in text, text
    config = br.root / "server.properties"
    config.write_text(text)
    br.config_file = config
    # As with Kafka (`kafka-storage format -t ID -c server.properties`), a KRaft node's data dir is formatted first.
    fmt = subprocess.run([str(FJORD_BIN), "format", "--config", str(config), "--cluster-id", "MkU3OEVBNTcwNTJENDM2Qg"],
                         capture_output=True, text=True, timeout=60)
    assert fmt.returncode == 0, fmt.stderr
    br.start()

    log = br.log_path.read_text()
    accepted = [line for line in log.splitlines() if "accepted, no effect in Fjord" in line]
    assert len(accepted) == 1, log
    for name in ("delete.topic.enable", "num.replica.fetchers",
                 "group.coordinator.rebalance.protocols", "share.coordinator.state.topic.replication.factor"):
        assert name in accepted[0], (name, accepted[0])
    # Configs Fjord acts on are not in that list.
    for name in ("replica.lag.time.max.ms", "offsets.topic.replication.factor", "num.partitions", "broker.rack",
                 "replica.selector.class"):
        assert f" {name}," not in accepted[0] and not accepted[0].endswith(f" {name}"), (name, accepted[0])
    assert "not Kafka" not in log, log

    b = br.bootstrap
    t = unique("serverprops")
    # The single voter elects itself right after start; until then the quorum has no leader.
    deadline = time.monotonic() + 30
    while True:
        try:
            c.create_topic(b, t, partitions=1)
            break
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then raised
            if time.monotonic() > deadline:
                raise
            print("create_topic retried:", e)
            time.sleep(0.5)
    recs = c.records(20, prefix="sp")
    dels = c.cf_produce(b, t, recs, {"acks": "all"})
    assert all(d.err is None for d in dels), [d.err for d in dels if d.err]
    got = c.cf_consume(b, t, len(recs))
    c.assert_same(recs, got, check_ts=False, check_offsets=False)
