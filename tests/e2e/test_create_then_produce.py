"""Producing right after CreateTopics answers (issues 12 and 16).

Kafka's controller answers CreateTopics once the topic's records are committed and the brokers create the
partitions' logs behind the answer; Fjord does the same. A client that sends Metadata or Produce at once may be
told the topic is not there yet, with retriable errors only (UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
NOT_LEADER_OR_FOLLOWER), never a non-retriable one, and every acknowledged record is kept. The topics have many
partitions so that creating their logs takes a while after the answer.
"""

from __future__ import annotations

import time

import clients as c
import kschema
import wire
from conftest import unique

PARTITIONS = 200
UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER = 3, 5, 6
RETRIABLE = {UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER}


def create(conn, name: str, partitions: int) -> None:
    r = conn.call(
        "CreateTopics",
        7,
        {"Topics": [{"Name": name, "NumPartitions": partitions, "ReplicationFactor": -1}], "TimeoutMs": 60_000},
    )
    assert r is not None and r["Topics"][0]["ErrorCode"] == 0, r
    assert r["Topics"][0]["NumPartitions"] == partitions, r


def test_raw_produce_and_metadata_right_after_the_answer(broker):
    """On the connection that created the topic: Metadata (auto-creation allowed, as clients ask) and Produce
    to the last partition at once, then until they succeed; every error seen on the way is retriable."""
    b = broker.bootstrap
    topic = unique("create-raw")
    seen: list[tuple[str, int]] = []
    with kschema.Conn(b, timeout_s=60) as conn:
        create(conn, topic, PARTITIONS)
        md = {"Topics": [{"Name": topic}], "AllowAutoTopicCreation": True, "IncludeTopicAuthorizedOperations": False}
        deadline = time.monotonic() + 60
        while True:
            r = conn.call("Metadata", 12, md)
            assert r is not None
            t = r["Topics"][0]
            code = t["ErrorCode"]
            if code == 0 and len(t["Partitions"]) == PARTITIONS:
                assert all(p["ErrorCode"] == 0 and p["LeaderId"] >= 0 for p in t["Partitions"]), t
                break
            assert code in RETRIABLE or code == 0, f"Metadata: {code} {t}"
            seen.append(("Metadata", code))
            assert time.monotonic() < deadline, "the topic never appeared in Metadata"
            time.sleep(0.01)
    # Produce before Metadata lists it: on another topic, straight after its answer.
    other = unique("create-raw-produce")
    with kschema.Conn(b, timeout_s=60) as conn:
        create(conn, other, PARTITIONS)
    acked = []
    with wire.connect(b, timeout_s=60) as s:
        deadline = time.monotonic() + 60
        cid = 0
        while len(acked) < 3:
            cid += 1
            batch = wire.record_batch([(b"k", b"v%d" % len(acked))], int(time.time() * 1000))
            s.sendall(wire.frame(wire.produce_v3(other, PARTITIONS - 1, batch, acks=-1, correlation_id=cid)))
            _, out = wire.parse_produce_v3(wire.recv_frame(s))
            code, offset, _ = out[(other, PARTITIONS - 1)]
            if code == 0:
                acked.append((b"v%d" % len(acked), offset))
                continue
            assert code in RETRIABLE, f"Produce: {code}"
            seen.append(("Produce", code))
            assert time.monotonic() < deadline, "Produce never succeeded"
            time.sleep(0.01)
    assert [o for _, o in acked] == [0, 1, 2], acked
    got = c.cf_consume(b, other, 3, partitions=[PARTITIONS - 1])
    assert [m["value"] for m in got] == ["v0", "v1", "v2"], got
    print(f"retriable answers before success: {seen[:5]}{'...' if len(seen) > 5 else ''} ({len(seen)})")


def test_clients_produce_right_after_create_topics(broker):
    """confluent-kafka and kafka-python create a topic with their admin clients and produce to every
    partition without waiting for it: each record is acknowledged once and read back."""
    from confluent_kafka.admin import NewTopic
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KpNewTopic

    b = broker.bootstrap
    cf = unique("create-cf")
    cf_admin = c.cf_admin(b)  # kept: its futures fail once it is destroyed
    fs = cf_admin.create_topics([NewTopic(cf, num_partitions=PARTITIONS, replication_factor=1)],
                                operation_timeout=60, request_timeout=60)
    fs[cf].result(timeout=60)
    recs = [{"key": f"k{i}", "value": f"cf{i}", "partition": i} for i in range(PARTITIONS)]
    dels = c.cf_produce(b, cf, recs, {"acks": "all"}, flush_timeout_s=60)
    assert all(d.err is None for d in dels), [d for d in dels if d.err is not None][:5]
    assert sorted((d.partition, d.offset) for d in dels) == [(p, 0) for p in range(PARTITIONS)]

    kp = unique("create-kp")
    admin = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=60_000)
    try:
        admin.create_topics([KpNewTopic(kp, PARTITIONS, 1)], timeout_ms=60_000)
    finally:
        admin.close()
    recs = [{"key": f"k{i}", "value": f"kp{i}", "partition": i} for i in range(PARTITIONS)]
    mds = c.kp_produce(b, kp, recs, {"acks": "all"})
    assert sorted((m.partition, m.offset) for m in mds) == [(p, 0) for p in range(PARTITIONS)]

    for topic, prefix in ((cf, "cf"), (kp, "kp")):
        got = c.kcat_consume(b, topic, count=PARTITIONS)
        assert sorted(m["value"] for m in got) == sorted(f"{prefix}{i}" for i in range(PARTITIONS)), topic
