"""Client quotas (issue 18, scope 5): producer_byte_rate and consumer_byte_rate set with Kafka's own kafka-configs
tool (AlterClientQuotas), read back with --describe (DescribeClientQuotas), and enforced as Kafka does (KIP-219):
the Java client and librdkafka see throttle_time_ms and their rate stays near the quota. The broker runs with
quota.window.num=2 (one whole window of one second), so that a burst allowance of ten windows does not dominate a
run of a few seconds. Runs against Fjord and, with E2E_BROKER=kafka, against Apache Kafka 4.3.1."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import clients as c
import kschema
import wire
from conftest import unique

CONFIGS = "kafka.admin.ConfigCommand"
QUOTA = 50_000  # bytes per second
RECORD_BYTES = 1000
RECORDS = 250  # 250 KB: about five seconds at the quota


@pytest.fixture(scope="module")
def quota_broker(tmp_path_factory):
    from conftest import BROKER_KIND, Broker, _tmp_root  # noqa: PLC0415 - a module-scoped private broker

    b = Broker(BROKER_KIND, _tmp_root("quotas"), {"quota.window.num": "2", "quota.window.size.seconds": "1"})
    try:
        b.start()
        yield b
    finally:
        b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)


def configs(java, b, *args):
    return java.run(CONFIGS, "--bootstrap-server", b.bootstrap, *args).stdout


def set_client_quota(java, b, client_id, key, value):
    configs(java, b, "--alter", "--add-config", f"{key}={value}", "--entity-type", "clients", "--entity-name",
            client_id)
    # Applied by the broker within a moment (Kafka applies the metadata log asynchronously).
    time.sleep(1.0)


def payload(n=RECORDS):
    return [{"key": f"k{i}", "value": None, "value_size": RECORD_BYTES} for i in range(n)]


def assert_near_quota(nbytes, elapsed_s, what):
    rate = nbytes / elapsed_s
    # Generous: under twice the quota over at least three seconds (one window of burst is allowed).
    assert elapsed_s >= 3.0 and rate < 2 * QUOTA, f"{what}: {nbytes} B in {elapsed_s:.2f} s = {rate:.0f} B/s"


def test_java_producer_is_throttled_to_its_quota(quota_broker, java):
    b = quota_broker
    client, topic = unique("jprod"), unique("quota-jp")
    set_client_quota(java, b, client, "producer_byte_rate", QUOTA)
    lines = java.run("E2EClient", "produce", b.bootstrap, topic, f"client.id={client}", "linger.ms=0",
                     input="\n".join(json.dumps(r) for r in payload()) + "\n", timeout=120).stdout
    done = [json.loads(x) for x in lines.splitlines() if x.startswith('{"type":"done"')][0]
    assert done["acked"] == RECORDS, done
    assert done["throttle_time_max"] > 0, done
    assert_near_quota(RECORDS * RECORD_BYTES, done["elapsed_s"], "java producer")


def test_librdkafka_producer_is_throttled_to_its_quota(quota_broker, java):
    b = quota_broker
    client, topic = unique("cfprod"), unique("quota-cf")
    set_client_quota(java, b, client, "producer_byte_rate", QUOTA)
    throttles = []
    # Requests of 16 KB, as the Java client sends them (librdkafka batches up to 1 MB by default).
    p = Producer({"bootstrap.servers": b.bootstrap, "client.id": client, "linger.ms": 0, "batch.size": 16384,
                  "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    acked = []
    start = time.monotonic()
    for i in range(RECORDS):
        while True:
            try:
                p.produce(topic, key=f"k{i}", value=b"x" * RECORD_BYTES,
                          on_delivery=lambda err, msg: acked.append(err))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    elapsed = time.monotonic() - start
    p.poll(0)
    assert len(acked) == RECORDS and all(e is None for e in acked), acked[:3]
    assert throttles and max(throttles) > 0, throttles
    assert_near_quota(RECORDS * RECORD_BYTES, elapsed, "librdkafka producer")


@pytest.fixture(scope="module")
def filled(quota_broker):
    """A topic of RECORDS records of RECORD_BYTES in batches of 16 KB, written without a quota (a fetch always
    returns at least one whole batch, so one batch of everything would be one answer whatever the quota)."""
    topic = unique("quota-fetch")
    p = Producer({"bootstrap.servers": quota_broker.bootstrap, "linger.ms": 5, "batch.size": 16384})
    for i in range(RECORDS):
        p.produce(topic, key=f"k{i}", value=b"x" * RECORD_BYTES)
    assert p.flush(30) == 0
    return topic


def test_java_consumer_is_throttled_to_its_quota(quota_broker, java, filled):
    b = quota_broker
    client = unique("jcons")
    set_client_quota(java, b, client, "consumer_byte_rate", QUOTA)
    recs, _, done = c.java_consume(java, b.bootstrap, [filled], RECORDS, conf={"client.id": client,
                                                                               "poll.total.ms": "60000"},
                                   timeout_s=120)
    assert len(recs) == RECORDS
    assert done["throttle_time_max"] > 0, done
    assert_near_quota(RECORDS * RECORD_BYTES, done["elapsed_s"], "java consumer")


def test_librdkafka_consumer_is_throttled_to_its_quota(quota_broker, java, filled):
    b = quota_broker
    client = unique("cfcons")
    set_client_quota(java, b, client, "consumer_byte_rate", QUOTA)
    throttles = []
    cons = Consumer({"bootstrap.servers": b.bootstrap, "client.id": client, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    try:
        cons.assign([TopicPartition(filled, 0, 0)])
        start = time.monotonic()
        got = 0
        while got < RECORDS and time.monotonic() - start < 60:
            for m in cons.consume(100, timeout=0.5):
                assert m.error() is None, m.error()
                got += 1
        elapsed = time.monotonic() - start
    finally:
        cons.close()
    assert got == RECORDS
    assert throttles and max(throttles) > 0, throttles
    assert_near_quota(RECORDS * RECORD_BYTES, elapsed, "librdkafka consumer")


def alter_client_quota(b, client_id, key, value):
    """AlterClientQuotas sent directly (no JVM start: seconds less than kafka-configs)."""
    r = kschema.call(b.bootstrap, "AlterClientQuotas", 0, {
        "Entries": [{"Entity": [{"EntityType": "client-id", "EntityName": client_id}],
                     "Ops": [{"Key": key, "Value": float(value), "Remove": False}]}],
        "ValidateOnly": False})
    assert r is not None and all(e["ErrorCode"] == 0 for e in r["Entries"]), r
    time.sleep(1.0)


def test_a_throttled_fetch_carries_no_records(quota_broker, filled):
    """KIP-219 as Kafka answers it (KafkaApis.handleFetchRequest, FetchContext.getThrottledResponse): a consumer
    over its consumer_byte_rate gets, at once, a Fetch response with throttle_time_ms and no partitions at all;
    the bytes it was not sent do not count against it, a fetch session keeps its id and epoch through throttled
    responses, and a client that honours each throttle time reads everything at about the quota."""
    b = quota_broker
    client = unique("rawcons")
    alter_client_quota(b, client, "consumer_byte_rate", QUOTA)
    offset, sid, epoch = 0, 0, 0
    throttled, answers = 0, 0
    start = time.monotonic()
    with kschema.Conn(b.bootstrap, client_id=client) as conn:
        while offset < RECORDS and time.monotonic() - start < 60:
            r = conn.call("Fetch", 12, {
                "ReplicaId": -1, "MaxWaitMs": 500, "MinBytes": 1, "MaxBytes": 1 << 20, "IsolationLevel": 0,
                "SessionId": sid, "SessionEpoch": epoch,
                "Topics": [{"Topic": filled, "Partitions": [
                    {"Partition": 0, "FetchOffset": offset, "PartitionMaxBytes": 1 << 20, "LogStartOffset": -1}]}],
                "ForgottenTopicsData": [], "RackId": ""})
            assert r is not None and r["ErrorCode"] == 0, r
            answers += 1
            got = [bt for t in r["Responses"] for p in t["Partitions"] for bt in wire.batches(p["Records"] or b"")]
            if r["ThrottleTimeMs"] > 0:
                throttled += 1
                assert r["Responses"] == [], f"a throttled fetch (answer {answers}) carried {len(got)} batches"
                # A full fetch opens no session when throttled; an incremental one keeps its session.
                assert r["SessionId"] == sid, (r["SessionId"], sid)
                time.sleep(r["ThrottleTimeMs"] / 1000)
            for bt in got:
                offset = max(offset, bt["base_offset"] + bt["last_offset_delta"] + 1)
            # The Java client's FetchSessionHandler: a full answer with a session id opens it at epoch 1, an
            # answered incremental fetch moves to the next epoch.
            if epoch == 0:
                sid = r["SessionId"]
                epoch = 1 if sid else 0
            else:
                epoch += 1
    elapsed = time.monotonic() - start
    assert offset == RECORDS, f"read up to {offset} of {RECORDS} in {answers} answers"
    assert throttled > 0, f"{answers} answers, none throttled"
    assert sid != 0, "no fetch session opened"
    assert_near_quota(RECORDS * RECORD_BYTES, elapsed, "raw consumer")


def test_request_percentage_throttle_time_is_in_the_response(quota_broker):
    """request_percentage (Kafka's request quota, ClientRequestQuotaManager): a client over it gets its throttle
    time in the response's throttle_time_ms (Kafka's sendResponseMaybeThrottle), not only a muted connection;
    a client without the quota is not touched."""
    b = quota_broker
    client = unique("reqpct")
    # A thousandth of a percent of one thread: a single request exceeds it.
    alter_client_quota(b, client, "request_percentage", 0.001)
    metadata = {"Topics": [], "AllowAutoTopicCreation": False, "IncludeTopicAuthorizedOperations": False}
    throttle, answers = 0, 0
    start = time.monotonic()
    with kschema.Conn(b.bootstrap, client_id=client, timeout_s=30) as conn:
        # The connection is muted after the first throttled answer: the loop ends there.
        while not throttle and time.monotonic() - start < 10:
            r = conn.call("Metadata", 12, metadata)
            assert r is not None
            answers += 1
            throttle = r["ThrottleTimeMs"]
    assert throttle > 0, f"{answers} Metadata answers without a throttle time"
    with kschema.Conn(b.bootstrap, client_id=unique("free")) as conn:
        r = conn.call("Metadata", 12, metadata)
        assert r is not None and r["ThrottleTimeMs"] == 0, r


@pytest.mark.parametrize("acks", [1, -1])
def test_request_percentage_throttle_time_is_in_the_produce_response(quota_broker, acks):
    """The same for Produce, whose throttle_time_ms follows its topics: acks=1 (answered at once) and acks=-1
    (answered once durable) both carry the request quota's throttle time, the records appended."""
    b = quota_broker
    client, topic = unique("reqpct-produce"), unique("reqpct")
    c.create_topic(b.bootstrap, topic)
    alter_client_quota(b, client, "request_percentage", 0.001)
    throttle, answers = 0, 0
    start = time.monotonic()
    with kschema.Conn(b.bootstrap, client_id=client, timeout_s=30) as conn:
        while not throttle and time.monotonic() - start < 10:
            batch = wire.record_batch([(b"k", b"v%d" % answers)], int(time.time() * 1000))
            r = conn.call("Produce", 9, {"TransactionalId": None, "Acks": acks, "TimeoutMs": 10_000, "TopicData": [
                {"Name": topic, "PartitionData": [{"Index": 0, "Records": batch}]}]})
            assert r is not None
            part = r["Responses"][0]["PartitionResponses"][0]
            assert part["ErrorCode"] == 0 and part["BaseOffset"] == answers, r
            answers += 1
            throttle = r["ThrottleTimeMs"]
    assert throttle > 0, f"{answers} Produce answers without a throttle time"


# Last in the file: the quotas it leaves (the default client-id's) must not touch the tests above. Each
# kafka-configs run starts a JVM (several seconds on a loaded machine).
@pytest.mark.timeout(300)
def test_kafka_configs_alters_and_describes_quotas(quota_broker, java):
    b = quota_broker
    user, client = unique("alice"), unique("app")
    configs(java, b, "--alter", "--add-config", "producer_byte_rate=1048576,request_percentage=50.5",
            "--entity-type", "users", "--entity-name", user)
    configs(java, b, "--alter", "--add-config", "consumer_byte_rate=2048", "--entity-type", "clients",
            "--entity-default")
    configs(java, b, "--alter", "--add-config", "producer_byte_rate=4096", "--entity-type", "users",
            "--entity-name", user, "--entity-type", "clients", "--entity-name", client)
    out = configs(java, b, "--describe", "--entity-type", "users", "--entity-name", user)
    assert f"user-principal '{user}'" in out and "producer_byte_rate=1048576.0" in out, out
    assert "request_percentage=50.5" in out, out
    # Only the user's own entity: not its (user, client-id) one.
    assert "4096" not in out, out
    out = configs(java, b, "--describe", "--entity-type", "clients", "--entity-default")
    assert "consumer_byte_rate=2048.0" in out, out
    # A key quotas do not have is refused.
    res = java.run(CONFIGS, "--bootstrap-server", b.bootstrap, "--alter", "--add-config", "no_such_rate=1",
                   "--entity-type", "clients", "--entity-name", client, check=False)
    assert res.returncode != 0
    # Removed again: described without them.
    configs(java, b, "--alter", "--delete-config", "producer_byte_rate,request_percentage", "--entity-type",
            "users", "--entity-name", user)
    out = configs(java, b, "--describe", "--entity-type", "users", "--entity-name", user)
    assert "producer_byte_rate" not in out and "request_percentage" not in out, out
