"""Kafka parity (issue 19): answers where Fjord differed from Apache Kafka 4.3.1, checked with requests
encoded from Kafka's own schemas (kschema.py) and with real clients. Every test passes against Kafka."""

from __future__ import annotations

import re
import time

import kschema
import wire
from conftest import unique

INVALID_REQUEST = 42
FETCH_SESSION_ID_NOT_FOUND = 70


def advertised(bootstrap: str) -> dict[int, tuple[int, int]]:
    r = kschema.call(bootstrap, "ApiVersions", 3, {"ClientSoftwareName": "parity", "ClientSoftwareVersion": "1"})
    assert r is not None and r["ErrorCode"] == 0, r
    return {k["ApiKey"]: (k["MinVersion"], k["MaxVersion"]) for k in r["ApiKeys"]}


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> kschema.uuid.UUID:
    r = kschema.call(
        bootstrap,
        "CreateTopics",
        7,
        {"Topics": [{"Name": name, "NumPartitions": partitions, "ReplicationFactor": 1}], "TimeoutMs": 30_000},
    )
    assert r is not None and r["Topics"][0]["ErrorCode"] == 0, r
    return r["Topics"][0]["TopicId"]


def produce(bootstrap: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    batch = wire.record_batch([(None, v) for v in values], int(time.time() * 1000))
    body = {
        "Acks": -1,
        "TimeoutMs": 10_000,
        "TopicData": [{"Name": topic, "PartitionData": [{"Index": partition, "Records": batch}]}],
    }
    r = kschema.call(bootstrap, "Produce", 9, body)
    assert r is not None
    assert r["Responses"][0]["PartitionResponses"][0]["ErrorCode"] == 0, r


def fetch_body(topic: str, topic_id, session_id: int, session_epoch: int) -> dict:
    return {
        "ReplicaId": -1,
        "MaxWaitMs": 0,
        "MinBytes": 1,
        "MaxBytes": 1 << 20,
        "SessionId": session_id,
        "SessionEpoch": session_epoch,
        "Topics": [
            {
                "Topic": topic,
                "TopicId": topic_id,
                "Partitions": [{"Partition": 0, "FetchOffset": 0, "PartitionMaxBytes": 1 << 20, "LogStartOffset": -1}],
            }
        ],
    }


def test_sessionless_fetch_is_a_full_fetch_on_every_version(broker):
    """session_id=-1 / session_epoch=-1 (no session) and epoch 0 are full fetches: records, no error 70,
    session id 0 in the answer for epoch -1. Any other epoch names a session the broker does not know."""
    b = broker.bootstrap
    topic = unique("sessionless")
    topic_id = create_topic(b, topic)
    produce(b, topic, [b"a", b"b", b"c"])
    lo, hi = advertised(b)[1]
    assert hi >= 12
    with kschema.Conn(b) as conn:
        for v in range(lo, hi + 1):
            for sid, epoch in [(-1, -1), (0, -1), (0, 0)] if v >= 7 else [(0, -1)]:
                r = conn.call("Fetch", v, fetch_body(topic, topic_id, sid, epoch))
                assert r is not None, f"v{v} ({sid}, {epoch}): connection closed"
                assert r.get("ErrorCode", 0) == 0, f"v{v} ({sid}, {epoch}): {r}"
                if epoch == -1:
                    assert r.get("SessionId", 0) == 0, f"v{v}"
                p = r["Responses"][0]["Partitions"][0]
                assert p["ErrorCode"] == 0 and p["HighWatermark"] == 3, f"v{v} ({sid}, {epoch}): {p}"
                recs = list(wire.batches(p["Records"] or b""))
                assert recs, f"v{v} ({sid}, {epoch}): no records"
            if v >= 7:
                r = conn.call("Fetch", v, fetch_body(topic, topic_id, 2_000_000_001, 1))
                assert r is not None
                assert r["ErrorCode"] == FETCH_SESSION_ID_NOT_FOUND, f"v{v}: {r}"
                assert r["Responses"] == [], f"v{v}"


def test_create_topics_with_a_duplicate_name_creates_nothing_for_it(broker):
    """Kafka's controller answers INVALID_REQUEST ("Duplicate topic name.") once per name given more than
    once, after the other results, and creates none of them."""
    b = broker.bootstrap
    dup, ok = unique("dup"), unique("ok")
    topics = [
        {"Name": dup, "NumPartitions": 1, "ReplicationFactor": 1},
        {"Name": ok, "NumPartitions": 2, "ReplicationFactor": 1},
        {"Name": dup, "NumPartitions": 3, "ReplicationFactor": 1},
    ]
    lo, hi = advertised(b)[19]
    for v in range(max(lo, 2), hi + 1):
        d, o = f"{dup}-{v}", f"{ok}-{v}"
        body = {"Topics": [{**t, "Name": f"{t['Name']}-{v}"} for t in topics], "TimeoutMs": 30_000}
        r = kschema.call(b, "CreateTopics", v, body)
        assert r is not None
        got = [(t["Name"], t["ErrorCode"], t["ErrorMessage"]) for t in r["Topics"]]
        assert got == [(o, 0, None), (d, INVALID_REQUEST, "Duplicate topic name.")], f"v{v}: {got}"
        meta = kschema.call(b, "Metadata", 12, {"Topics": [{"Name": d}, {"Name": o}], "AllowAutoTopicCreation": False})
        errors = {t["Name"]: t["ErrorCode"] for t in meta["Topics"]}
        assert errors == {d: 3, o: 0}, f"v{v}: {errors}"


SECURITY_DISABLED = 54
TRANSACTIONAL_ID_NOT_FOUND = 105
INVALID_UPDATE_VERSION = 95


def test_acl_apis_answer_security_disabled(broker, java):
    """Without an authorizer Kafka advertises DescribeAcls/CreateAcls/DeleteAcls 1-3 and answers each with
    SECURITY_DISABLED; kafka-acls then reports that instead of an unsupported API."""
    b = broker.bootstrap
    av = advertised(b)
    for key in (29, 30, 31):
        assert av.get(key) == (1, 3), f"api {key}: {av.get(key)}"
    acl = {"ResourceType": 2, "ResourceName": "t", "ResourcePatternType": 3, "Principal": "User:a", "Host": "*",
           "Operation": 3, "PermissionType": 3}
    flt = {"ResourceTypeFilter": 2, "ResourceNameFilter": "t", "PatternTypeFilter": 3, "PrincipalFilter": None,
           "HostFilter": None, "Operation": 3, "PermissionType": 3}
    with kschema.Conn(b) as conn:
        for v in (1, 2, 3):
            r = conn.call("DescribeAcls", v, {"ResourceTypeFilter": 1, "ResourceNameFilter": None, "PatternTypeFilter": 1,
                                              "PrincipalFilter": None, "HostFilter": None, "Operation": 1,
                                              "PermissionType": 1})
            assert (r["ErrorCode"], r["Resources"]) == (SECURITY_DISABLED, []), f"v{v}: {r}"
            r = conn.call("CreateAcls", v, {"Creations": [acl, acl]})
            assert [x["ErrorCode"] for x in r["Results"]] == [SECURITY_DISABLED] * 2, f"v{v}: {r}"
            r = conn.call("DeleteAcls", v, {"Filters": [flt]})
            assert [(x["ErrorCode"], x["MatchingAcls"]) for x in r["FilterResults"]] == [(SECURITY_DISABLED, [])]
    res = java.run("org.apache.kafka.tools.AclCommand", "--bootstrap-server", b, "--list", check=False, timeout=90)
    out = res.stdout + res.stderr
    assert "SecurityDisabledException" in out or "No Authorizer is configured" in out, out[-2000:]
    assert "UnsupportedVersion" not in out, out[-2000:]


def test_transaction_listing_is_empty_and_ids_are_not_found(broker, java):
    """ListTransactions lists nothing and DescribeTransactions answers TRANSACTIONAL_ID_NOT_FOUND for an id
    no producer used; `kafka-transactions list` prints an empty table."""
    b = broker.bootstrap
    with kschema.Conn(b) as conn:
        # Kafka creates its transaction state topic on the first transaction coordinator lookup; until it
        # is loaded it answers NOT_COORDINATOR (16) / COORDINATOR_LOAD_IN_PROGRESS (14), both retriable.
        deadline = time.monotonic() + 30
        while True:
            conn.call("FindCoordinator", 4, {"KeyType": 1, "CoordinatorKeys": [unique("tx")]})
            r = conn.call("DescribeTransactions", 0, {"TransactionalIds": [unique("never-used")]})
            err = r["TransactionStates"][0]["ErrorCode"]
            if err not in (14, 15, 16) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert err == TRANSACTIONAL_ID_NOT_FOUND, r
        lo, hi = advertised(b)[66]
        for v in range(lo, hi + 1):
            r = conn.call("ListTransactions", v, {"StateFilters": ["Bogus"], "DurationFilter": -1})
            assert r["ErrorCode"] == 0, f"v{v}: {r}"
            assert r["UnknownStateFilters"] == ["Bogus"], f"v{v}: {r}"
            assert all(t["TransactionalId"] != "never-used" for t in r["TransactionStates"]), f"v{v}"
    res = java.run("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", b, "list", timeout=90)
    assert "TransactionalId" in res.stdout, res.stdout + res.stderr


def test_transactional_producer_gets_an_answer_promptly(broker):
    """A transactional producer's init_transactions succeeds promptly: it never retries until its timeout."""
    from confluent_kafka import KafkaException, Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("tx"), "log_level": 3})
    start = time.monotonic()
    try:
        p.init_transactions(60)
        outcome = "ok"
    except KafkaException as e:
        err = e.args[0]
        outcome = ("fatal" if err.fatal() else "error", err.code(), err.str())
    elapsed_s = time.monotonic() - start
    print(f"init_transactions: {outcome} after {elapsed_s:.2f} s")
    assert outcome == "ok"
    assert elapsed_s < 15, f"init_transactions took {elapsed_s:.1f} s ({outcome})"


def test_java_transactional_producer_gets_an_answer_promptly(broker, java):
    """The Java client's transactional producer (max.block.ms 60 s) commits, promptly."""
    import json

    topic = unique("txn")
    create_topic(broker.bootstrap, topic)
    res = java.run("E2EClient", "txn", broker.bootstrap, topic, unique("tx"), "max.block.ms=60000", timeout=120)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"java transactional producer: {out}")
    assert out["type"] == "committed", out
    assert out["elapsed_ms"] < 15_000, out


def test_kafka_features_describe_shows_supported_and_finalized_levels(broker, java):
    """ApiVersions carries the supported and finalized features (v3+), so `kafka-features describe` lists
    metadata.version with the broker's supported range and its finalized level; an UpdateFeatures that
    keeps the finalized level (a dry-run upgrade to it) succeeds, one to an unsupported level fails."""
    b = broker.bootstrap
    res = java.run("org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", b, "describe", timeout=90)
    print(res.stdout)
    rows = {}
    for line in res.stdout.splitlines():
        fields = dict(re.findall(r"(\w+): (\S+)", line))
        if "Feature" in fields:
            rows[fields["Feature"]] = fields
    mv = rows.get("metadata.version")
    assert mv is not None, res.stdout + res.stderr
    assert mv["SupportedMinVersion"] == "3.3-IV3", mv
    assert mv["FinalizedVersionLevel"] not in ("", "-", "0"), mv
    assert int(mv["Epoch"]) >= 0, mv
    r = kschema.call(b, "ApiVersions", 3, {"ClientSoftwareName": "parity", "ClientSoftwareVersion": "1"})
    level = next(f["MaxVersionLevel"] for f in r["FinalizedFeatures"] if f["Name"] == "metadata.version")
    with kschema.Conn(b) as conn:
        for v in (0, 1, 2):
            same = {"timeoutMs": 30_000, "ValidateOnly": v >= 1, "FeatureUpdates": [
                {"Feature": "metadata.version", "MaxVersionLevel": level, "AllowDowngrade": False, "UpgradeType": 1}]}
            r = conn.call("UpdateFeatures", v, same)
            assert (r["ErrorCode"], r["ErrorMessage"]) == (0, None), f"v{v}: {r}"
            bad = {**same, "FeatureUpdates": [{**same["FeatureUpdates"][0], "MaxVersionLevel": 999}]}
            r = conn.call("UpdateFeatures", v, bad)
            assert r["ErrorCode"] == INVALID_UPDATE_VERSION and r["ErrorMessage"], f"v{v}: {r}"
