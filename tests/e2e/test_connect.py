"""Kafka Connect 4.3.1 in distributed mode on the broker: its config, offset and status
topics (cleanup.policy=compact, which the worker checks) are created on the broker; a source
connector (java/SeqSourceConnector.java, a numbered sequence) runs; after the worker is
stopped and started again, the connector's config comes back from the config topic and its
task goes on from the source offset stored in the offset topic (the sequence has no gap and
does not start over). Runs against Kafka too (E2E_BROKER=kafka). It takes about a minute (two
worker starts, each scanning the classpath for plugins, and their group joins): it runs only
with E2E_CONNECT=1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import clients as c
from conftest import free_port, unique


def http(method, url, body=None, timeout_s=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        text = r.read().decode()
        return r.status, (json.loads(text) if text else None)


def wait_for(what, probe, timeout_s, proc):
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"the Connect worker exited while waiting for {what}"
        try:
            v = probe()
            if v:
                return v
        except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
            pass
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s} s"
        time.sleep(0.2)


def end_offset(bootstrap, topic):
    consumer = c.cf_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
    finally:
        consumer.close()


def read_values(bootstrap, topic, end):
    consumer = c.cf_consumer(bootstrap)
    out = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        last = -1
        while last < end - 1:
            assert time.monotonic() < deadline, f"read only up to offset {last} of {end}"
            for m in consumer.consume(num_messages=500, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                last = m.offset()
                if last < end:
                    out.append(int(m.value().decode()))
    finally:
        consumer.close()
    return out


@pytest.mark.skipif(os.environ.get("E2E_CONNECT") != "1", reason="about a minute: set E2E_CONNECT=1")
def test_connect_distributed_survives_a_worker_restart(broker, java, tmp_path):
    b = broker.bootstrap
    group = unique("connect")
    topic = unique("connect-out")
    c.create_topic(b, topic, 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    props = tmp_path / "worker.properties"
    props.write_text(
        "\n".join(
            [
                f"bootstrap.servers={b}",
                f"group.id={group}",
                f"config.storage.topic={group}-configs",
                f"offset.storage.topic={group}-offsets",
                f"status.storage.topic={group}-status",
                "config.storage.replication.factor=1",
                "offset.storage.replication.factor=1",
                "status.storage.replication.factor=1",
                "offset.storage.partitions=3",
                "status.storage.partitions=3",
                "key.converter=org.apache.kafka.connect.storage.StringConverter",
                "value.converter=org.apache.kafka.connect.storage.StringConverter",
                "offset.flush.interval.ms=500",
                f"listeners=http://127.0.0.1:{port}",
                "rest.advertised.host.name=127.0.0.1",
                f"rest.advertised.port={port}",
                "plugin.discovery=only_scan",
                # A restarted worker takes the dead member's place without waiting out its session.
                "session.timeout.ms=6000",
                "heartbeat.interval.ms=1000",
                "scheduled.rebalance.max.delay.ms=0",
            ]
        )
        + "\n"
    )
    log = open(tmp_path / "connect.log", "w")

    def start():
        return java.popen(
            "org.apache.kafka.connect.cli.ConnectDistributed", str(props), stdout=log, stderr=subprocess.STDOUT
        )

    def stop(proc):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the Connect worker did not stop on SIGTERM within 30 s")

    def task_running():
        _, st = http("GET", f"{url}/connectors/seq/status")
        return st["connector"]["state"] == "RUNNING" and [t["state"] for t in st["tasks"]] == ["RUNNING"]

    proc = start()
    try:
        wait_for("the REST API", lambda: http("GET", f"{url}/")[0] == 200, 60, proc)
        status, _ = http(
            "POST",
            f"{url}/connectors",
            {
                "name": "seq",
                "config": {
                    "connector.class": "SeqSourceConnector",
                    "tasks.max": "1",
                    "topic": topic,
                    "batch": "10",
                    "interval.ms": "50",
                },
            },
        )
        assert status == 201
        wait_for("the task running", task_running, 60, proc)
        wait_for("200 records", lambda: end_offset(b, topic) >= 200, 60, proc)
        stop(proc)
        first_end = end_offset(b, topic)

        proc = start()
        wait_for("the REST API after the restart", lambda: http("GET", f"{url}/")[0] == 200, 60, proc)
        # The connector's config came back from the config topic.
        _, names = http("GET", f"{url}/connectors")
        assert names == ["seq"]
        _, cfg = http("GET", f"{url}/connectors/seq/config")
        assert cfg["topic"] == topic
        wait_for("the task running after the restart", task_running, 60, proc)
        wait_for("200 more records", lambda: end_offset(b, topic) >= first_end + 200, 60, proc)
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    values = read_values(b, topic, end_offset(b, topic))
    assert values[0] == 0
    # The restarted task went on from its stored source offset: no gap, and it did not start
    # over (at-least-once may repeat the last unflushed records, never the whole sequence).
    top = -1
    for i, v in enumerate(values):
        assert v <= top + 1, f"gap at index {i}: {v} after {top}"
        top = max(top, v)
    assert values.count(0) == 1, "the restarted task started the sequence over"
    assert top > first_end, f"the sequence did not go on after the restart: {top} vs {first_end}"
