"""Fetch sessions (KIP-227): a full fetch with epoch 0 opens a session, incremental fetches name only what
changed on either side, and session errors are Kafka's (FETCH_SESSION_ID_NOT_FOUND 70,
INVALID_FETCH_SESSION_EPOCH 71, FETCH_SESSION_TOPIC_ID_ERROR 106). Requests are encoded from Kafka's own
schemas (kschema.py); the Java consumer, which uses sessions, consumes through them. Every test passes
against Kafka (E2E_BROKER=kafka)."""

from __future__ import annotations

import subprocess
import time

import clients
import kschema
import wire
from conftest import unique

NOT_FOUND = 70
INVALID_EPOCH = 71
TOPIC_ID_ERROR = 106


def create_topic(bootstrap: str, name: str, partitions: int):
    r = kschema.call(
        bootstrap,
        "CreateTopics",
        7,
        {"Topics": [{"Name": name, "NumPartitions": partitions, "ReplicationFactor": 1}], "TimeoutMs": 30_000},
    )
    assert r is not None and r["Topics"][0]["ErrorCode"] == 0, r
    return r["Topics"][0]["TopicId"]


def produce(bootstrap: str, topic: str, partition: int, n: int) -> None:
    batch = wire.record_batch([(None, b"v%d" % i) for i in range(n)], int(time.time() * 1000))
    body = {
        "Acks": -1,
        "TimeoutMs": 10_000,
        "TopicData": [{"Name": topic, "PartitionData": [{"Index": partition, "Records": batch}]}],
    }
    deadline = time.monotonic() + 30
    while True:
        r = kschema.call(bootstrap, "Produce", 9, body)
        assert r is not None
        code = r["Responses"][0]["PartitionResponses"][0]["ErrorCode"]
        # Kafka answers NOT_LEADER_OR_FOLLOWER (6) or UNKNOWN_TOPIC_OR_PARTITION (3) for a moment after
        # CreateTopics, until its broker has applied the new metadata.
        if code in (3, 6) and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        assert code == 0, r
        return


def fetch(conn, version: int, topic: str, topic_id, sid: int, epoch: int, parts, forget=()):
    body = {
        "ReplicaId": -1,
        "MaxWaitMs": 0,
        "MinBytes": 1,
        "MaxBytes": 1 << 20,
        "SessionId": sid,
        "SessionEpoch": epoch,
        "Topics": [
            {
                "Topic": topic,
                "TopicId": topic_id,
                "Partitions": [
                    {"Partition": p, "FetchOffset": off, "PartitionMaxBytes": 1 << 20, "LogStartOffset": -1}
                    for p, off in parts
                ],
            }
        ]
        if parts
        else [],
        "ForgottenTopicsData": [{"Topic": topic, "TopicId": topic_id, "Partitions": list(forget)}] if forget else [],
    }
    r = conn.call("Fetch", version, body)
    assert r is not None, f"v{version}: connection closed"
    return r


def answered(r) -> list[tuple[int, int, int]]:
    """(partition, high watermark, record batches) of every partition in a response."""
    return [
        (p["PartitionIndex"], p["HighWatermark"], len(list(wire.batches(p["Records"] or b""))))
        for t in r["Responses"]
        for p in t["Partitions"]
    ]


def test_incremental_fetches_carry_only_what_changed(broker):
    b = broker.bootstrap
    for v in (12, 13):
        topic = unique(f"sessions-v{v}")
        topic_id = create_topic(b, topic, 3)
        produce(b, topic, 0, 2)
        with kschema.Conn(b) as conn:
            r = fetch(conn, v, topic, topic_id, 0, 0, [(0, 0), (1, 0), (2, 0)])
            assert r["ErrorCode"] == 0, r
            sid = r["SessionId"]
            assert sid > 0, f"v{v}: no session opened"
            assert sorted(answered(r)) == [(0, 2, 1), (1, 0, 0), (2, 0, 0)], f"v{v}: {answered(r)}"
            # The consumer moved partition 0 past its records: nothing changed, nothing answered.
            r = fetch(conn, v, topic, topic_id, sid, 1, [(0, 2)])
            assert (r["ErrorCode"], r["SessionId"], answered(r)) == (0, sid, []), f"v{v}: {r}"
            # Records on partition 1: only it is answered.
            produce(b, topic, 1, 3)
            r = fetch(conn, v, topic, topic_id, sid, 2, [])
            assert (r["ErrorCode"], answered(r)) == (0, [(1, 3, 1)]), f"v{v}: {r}"
            # The same epoch again (a duplicate request) and an epoch from the future.
            for bad in (2, 9):
                r = fetch(conn, v, topic, topic_id, sid, bad, [])
                assert (r["ErrorCode"], r["Responses"]) == (INVALID_EPOCH, []), f"v{v} epoch {bad}: {r}"
            # Partitions 0 and 2 forgotten: records on 0 are not answered any more.
            r = fetch(conn, v, topic, topic_id, sid, 3, [(1, 3)], forget=(0, 2))
            assert (r["ErrorCode"], answered(r)) == (0, []), f"v{v}: {r}"
            produce(b, topic, 0, 1)
            r = fetch(conn, v, topic, topic_id, sid, 4, [])
            assert (r["ErrorCode"], answered(r)) == (0, []), f"v{v}: {r}"
            # A session opened with names (v12) is not served by ids (v13), and the other way round.
            other = 13 if v == 12 else 12
            r = fetch(conn, other, topic, topic_id, sid, 5, [])
            assert r["ErrorCode"] == TOPIC_ID_ERROR, f"v{v} then v{other}: {r}"
            # An id the broker never gave.
            r = fetch(conn, v, topic, topic_id, sid ^ 0x5A5A5A5, 1, [])
            assert (r["ErrorCode"], r["SessionId"], r["Responses"]) == (NOT_FOUND, 0, []), f"v{v}: {r}"
            # A full fetch with epoch -1 closes the session it names and opens none.
            r = fetch(conn, v, topic, topic_id, sid, -1, [(1, 0)])
            assert (r["ErrorCode"], r["SessionId"]) == (0, 0), f"v{v}: {r}"
            r = fetch(conn, v, topic, topic_id, sid, 5, [])
            assert r["ErrorCode"] == NOT_FOUND, f"v{v}: {r}"


def test_java_consumer_fetches_incrementally(broker, java, tmp_path):
    """The Java consumer opens a session and then sends incremental fetches (its FetchSessionHandler logs
    each one at debug), with no session error, while records keep arriving on 8 partitions."""
    b = broker.bootstrap
    topic = unique("sessions-java")
    clients.create_topic(b, topic, partitions=8)
    recs = clients.records(400, prefix="s")
    clients.cf_produce(b, topic, recs)
    log4j = tmp_path / "log4j2.properties"
    log4j.write_text(
        java.log4j.read_text()
        + "logger.fsh.name = org.apache.kafka.clients.FetchSessionHandler\nlogger.fsh.level = DEBUG\n"
    )
    j = type(java)(java.classes, java.classpath)
    j.log4j = log4j
    proc = j.popen(
        "E2EClient",
        "consume",
        b,
        topic,
        "earliest",
        "800",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Records arrive while the consumer polls: its incremental fetches must carry them.
    time.sleep(3)
    more = clients.records(400, prefix="t")
    clients.cf_produce(b, topic, more)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    got = [x for x in clients._java_lines(out) if x["type"] == "record"]
    assert len(got) == 800, f"{len(got)} records\n{err[-3000:]}"
    assert sorted(x["value"] for x in got) == sorted(r["value"] for r in recs + more)
    assert "Built incremental fetch" in err, err[-3000:]
    assert "unable to process the fetch request" not in err, err[-3000:]
