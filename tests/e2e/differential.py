#!/usr/bin/env python3
"""Differential protocol test: the same scripted raw requests to Fjord and to Apache Kafka 4.3.1, started side
by side, and their responses compared field by field (issue 19).

    tests/e2e/differential.py              # start both brokers, run every case, report
    tests/e2e/differential.py -k fetch     # only cases whose id contains "fetch"
    tests/e2e/differential.py --require-coverage --report COMPATIBILITY.md   # also fail on an advertised
                                           # API version without a case; write the result to the file
    tests/e2e/differential.py --fjord HOST:PORT --kafka HOST:PORT   # brokers already running

Requests and responses are encoded and decoded from Kafka's own schemas (kschema.py). Before comparing, what
legitimately differs is normalised: throttle times, cluster ids, topic ids (non-zero ids become "<id>"), node
ids, hosts and ports, record batches (compared as their base offsets and record counts), timestamps the
broker assigns. A difference fails the run unless `parity-known-differences.txt` lists it with a reason:
that file is meant to shrink. Exit status: 0 when every difference is known, 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kschema  # noqa: E402
import wire  # noqa: E402

KNOWN = HERE / "parity-known-differences.txt"
NIL = uuid.UUID(int=0)

# Field names whose values legitimately differ between two brokers.
VOLATILE = {"ThrottleTimeMs": 0, "ClusterId": "<cluster>", "Host": "<host>", "Port": "<port>",
            "FinalizedFeaturesEpoch": "<metadata offset>"}
# Lists that are maps in Kafka (their order is a hash map's): compared sorted by this key.
UNORDERED = {"SupportedFeatures": "Name", "FinalizedFeatures": "Name"}
# The same, for one API: Kafka answers DeleteGroups and DeleteTopics as each shard or deletion finishes.
# DescribeConfigs lists a resource's configs in its own order (clients read them as a map).
UNORDERED_BY_API = {"DeleteGroups": {"Results": "GroupId"}, "DescribeConfigs": {"Configs": "Name"},
                    "DeleteTopics": {"Responses": "Name"},
                    # Kafka's ScramImage and ScramControlManager answer from hash maps.
                    "DescribeUserScramCredentials": {"Results": "User"},
                    "AlterUserScramCredentials": {"Results": "User"}}
# Per API: fields of a broker's own state (disk sizes and paths, its metadata log's offsets and clocks).
VOLATILE_BY_API = {
    "DescribeLogDirs": {"LogDir": "<dir>", "TotalBytes": "<bytes>", "UsableBytes": "<bytes>",
                        "PartitionSize": "<bytes>"},
    "DescribeQuorum": {"LogEndOffset": "<offset>", "HighWatermark": "<offset>", "LastFetchTimestamp": "<time>",
                       "LastCaughtUpTimestamp": "<time>", "LeaderEpoch": "<epoch>", "DirectoryId": "<dir id>"},
}
# Ids a broker makes up: compared as present (non-empty / not negative) or not.
MADE_UP = {"MemberId": "<member>", "ProducerId": "<producer id>"}
NODE_FIELDS = {"NodeId", "BrokerId", "ControllerId", "LeaderId", "ReplicaNodes", "IsrNodes", "OfflineReplicas",
               "VoterId", "ReplicaId"}
TIME_FIELDS = {"LogAppendTimeMs", "TransactionStartTimeMs", "LastTimestamp"}


def normalise(value, key: str = "", volatile: dict | None = None, unordered: dict | None = None):
    volatile = VOLATILE if volatile is None else volatile
    unordered = UNORDERED if unordered is None else unordered
    if isinstance(value, dict):
        return {k: normalise(v, k, volatile, unordered) for k, v in value.items()}
    if isinstance(value, list):
        if key in unordered:
            value = sorted(value, key=lambda e: str(e.get(unordered[key])))
        return [normalise(v, key, volatile, unordered) for v in value]
    if key == "ErrorMessage" and value:
        return "<message>"  # human text: only null, empty and present are compared
    if key in volatile and value is not None:
        return volatile[key]
    if key in MADE_UP and value not in (None, "", -1):
        return MADE_UP[key]
    if key == "SessionId" and isinstance(value, int) and value > 0:
        return "<session>"  # a fetch session's id is random; 0 (no session) is compared
    if isinstance(value, uuid.UUID):
        return "<nil-id>" if value == NIL else "<id>"
    if key in NODE_FIELDS and isinstance(value, int) and value >= 0:
        return "<node>"
    if key in TIME_FIELDS and isinstance(value, int) and value > 0:
        return "<time>"
    if key == "Records" and isinstance(value, (bytes, bytearray)):
        return [(b["base_offset"], b["record_count"]) for b in wire.batches(bytes(value))]
    if isinstance(value, bytes):
        return value.hex()
    return value


def diff(a, b, path: str = "") -> list[tuple[str, object, object]]:
    """(path, fjord, kafka) for every leaf that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = [] if len(a) == len(b) else [(f"{path}.length", len(a), len(b))]
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [(path, a, b)]


def literal_brackets(glob: str) -> str:
    """Square brackets in a known-difference glob are the field path's indexes, not character classes."""
    return glob.replace("[", "[[]")


def load_known() -> list[tuple[str, str, str]]:
    """(case glob, path glob, reason) from the known-differences file."""
    out = []
    for n, line in enumerate(KNOWN.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, reason = line.partition("|")
        parts = head.split()
        if not sep or len(parts) != 2 or not reason.strip():
            raise SystemExit(f"{KNOWN}:{n}: want '<case glob> <field path glob> | <reason>'")
        out.append((parts[0], parts[1], reason.strip()))
    return out


# ------------------------------------------------------------------ the cases
TOPIC = "diff-t"


def cases(fjord_apis: dict[int, tuple[int, int]]):
    """(case id, API name, version, body); the setup cases come first and both brokers must accept them."""
    def every(api: str, key: int):
        lo, hi = fjord_apis.get(key, (0, -1))
        return range(lo, hi + 1)

    yield "setup-create", "CreateTopics", 7, {
        "Topics": [{"Name": TOPIC, "NumPartitions": 2, "ReplicationFactor": 1}], "TimeoutMs": 30_000}
    batch = wire.record_batch([(None, b"a"), (b"k", b"b"), (None, None)], 1_700_000_000_000)
    yield "setup-produce", "Produce", 9, {
        "Acks": -1, "TimeoutMs": 10_000,
        "TopicData": [{"Name": TOPIC, "PartitionData": [{"Index": 0, "Records": batch}]}]}

    # CreateTopics edge cases, at every version Fjord advertises.
    for v in every("CreateTopics", 19):
        t = lambda name, p=1, rf=1: {"Name": name, "NumPartitions": p, "ReplicationFactor": rf}  # noqa: E731
        edge = {
            "duplicate": [t(f"dup{v}"), t(f"ok{v}"), t(f"dup{v}")],
            "exists": [t(TOPIC)],
            "bad-name": [t("bad/name")],
            "dot-name": [t(".")],
            "long-name": [t("x" * 250)],
            "zero-partitions": [t(f"zp{v}", 0)],
            "rf-too-big": [t(f"rf{v}", 1, 3)],
            "empty": [],
        }
        for name, topics in edge.items():
            yield f"create-topics-{name}-v{v}", "CreateTopics", v, {"Topics": topics, "TimeoutMs": 30_000}
        yield f"create-topics-validate-only-v{v}", "CreateTopics", v, {
            "Topics": [t(f"vo{v}")], "TimeoutMs": 30_000, "ValidateOnly": True}
        # max.message.bytes: Kafka takes any value up to 2^31-1 (Fjord applies at most a request frame).
        for name, value in (("large", "200000000"), ("int-max", "2147483647"), ("negative", "-1"),
                            ("too-big", "2147483648")):
            yield f"create-topics-max-message-bytes-{name}-v{v}", "CreateTopics", v, {
                "Topics": [{**t(f"mmb-{name}{v}"), "Configs": [{"Name": "max.message.bytes", "Value": value}]}],
                "TimeoutMs": 30_000, "ValidateOnly": True}

    # Metadata of unknown topics (no auto-creation).
    for v in every("Metadata", 3):
        if v < 4:
            continue
        yield f"metadata-unknown-v{v}", "Metadata", v, {
            "Topics": [{"Name": "no-such-topic"}], "AllowAutoTopicCreation": False}

    # ListOffsets edge cases: one partition query per request (Kafka keys a request's partitions by
    # topic-partition, so repeated partitions are a case of their own).
    for v in every("ListOffsets", 2):
        queries = {"latest": (0, -1), "earliest": (0, -2), "future": (0, 1 << 60), "by-time": (0, 1_699_999_999_999),
                   "empty-partition": (1, -1), "unknown-partition": (9, -1), "negative-partition": (-1, -1)}
        if v >= 7:
            queries["max-timestamp"] = (0, -3)
        if v >= 8:
            queries["earliest-local"] = (0, -4)
        if v >= 9:
            queries["latest-tiered"] = (0, -5)
        for name, (part, ts) in queries.items():
            yield f"list-offsets-{name}-v{v}", "ListOffsets", v, {
                "ReplicaId": -1, "IsolationLevel": 0,
                "Topics": [{"Name": TOPIC, "Partitions": [
                    {"PartitionIndex": part, "CurrentLeaderEpoch": -1, "Timestamp": ts}]}]}
        yield f"list-offsets-unknown-topic-v{v}", "ListOffsets", v, {
            "ReplicaId": -1, "Topics": [{"Name": "no-such-topic", "Partitions": [{"PartitionIndex": 0, "Timestamp": -1}]}]}
        yield f"list-offsets-repeated-partition-v{v}", "ListOffsets", v, {
            "ReplicaId": -1, "Topics": [{"Name": TOPIC, "Partitions": [
                {"PartitionIndex": 0, "Timestamp": -1}, {"PartitionIndex": 0, "Timestamp": -2}]}]}

    # Fetch: sessionless and session fetches, offsets in and out of range, unknown partitions.
    def fetch(v, sid, epoch, parts, **extra):
        return {"ReplicaId": -1, "MaxWaitMs": 0, "MinBytes": 0, "MaxBytes": 1 << 20, "SessionId": sid,
                "SessionEpoch": epoch, **extra,
                "Topics": [{"Topic": TOPIC, "TopicId": "<topic-id>", "Partitions": [
                    {"Partition": i, "FetchOffset": off, "PartitionMaxBytes": 1 << 20, "CurrentLeaderEpoch": -1,
                     "LogStartOffset": -1} for i, off in parts]}]}

    for v in every("Fetch", 1):
        for sid, epoch in ((-1, -1), (0, -1), (0, 0), (123, 1), (0, 1), (123, -1)):
            if v < 7 and (sid, epoch) != (0, -1):
                continue
            yield f"fetch-session({sid},{epoch})-v{v}", "Fetch", v, fetch(v, sid, epoch, [(0, 0), (1, 0), (7, 0)])
        for name, off in (("middle", 1), ("end", 3), ("past-end", 4), ("far", 100), ("negative", -5)):
            yield f"fetch-offset-{name}-v{v}", "Fetch", v, fetch(v, 0, -1, [(0, off)])
        yield f"fetch-repeated-partition-v{v}", "Fetch", v, fetch(v, 0, -1, [(0, 0), (0, 1)])
        yield f"fetch-max-bytes-zero-v{v}", "Fetch", v, {**fetch(v, 0, -1, [(0, 0)]), "MaxBytes": 0}

    # Features that are off: ACLs, transactions; coordinators.
    for v in every("DescribeAcls", 29):
        yield f"describe-acls-v{v}", "DescribeAcls", v, {
            "ResourceTypeFilter": 1, "ResourceNameFilter": None, "PatternTypeFilter": 1, "PrincipalFilter": None,
            "HostFilter": None, "Operation": 1, "PermissionType": 1}
    for v in every("ListTransactions", 66):
        yield f"list-transactions-v{v}", "ListTransactions", v, {"StateFilters": ["Ongoing", "Bogus"],
                                                                 "DurationFilter": -1}
    for v in every("FindCoordinator", 10):
        if v == 0:
            yield f"find-coordinator-group-v{v}", "FindCoordinator", v, {"Key": "diff-g"}
            continue
        for kt in (0, 1, 2, 9):
            body = {"KeyType": kt}
            body.update({"CoordinatorKeys": ["diff-k"]} if v >= 4 else {"Key": "diff-k"})
            yield f"find-coordinator-type{kt}-v{v}", "FindCoordinator", v, body
    for v in every("DescribeGroups", 15):
        yield f"describe-groups-unknown-v{v}", "DescribeGroups", v, {"Groups": ["no-such-group", ""]}
    for v in every("ListGroups", 16):
        yield f"list-groups-v{v}", "ListGroups", v, {}
    for v in every("DescribeCluster", 60):
        yield f"describe-cluster-v{v}", "DescribeCluster", v, {"EndpointType": 1}
    for v in every("OffsetForLeaderEpoch", 23):
        yield f"offset-for-leader-epoch-v{v}", "OffsetForLeaderEpoch", v, {
            "ReplicaId": -1,
            "Topics": [{"Topic": TOPIC, "Partitions": [
                {"Partition": 0, "CurrentLeaderEpoch": -1, "LeaderEpoch": 0},
                {"Partition": 0, "CurrentLeaderEpoch": -1, "LeaderEpoch": 5},
                {"Partition": 1, "CurrentLeaderEpoch": -1, "LeaderEpoch": 0},
                {"Partition": 0, "CurrentLeaderEpoch": 3, "LeaderEpoch": 0},
                {"Partition": 9, "CurrentLeaderEpoch": -1, "LeaderEpoch": 0}]},
                {"Topic": "no-such-topic", "Partitions": [{"Partition": 0, "LeaderEpoch": 0}]}]}
    # OffsetCommit / OffsetFetch with a classic (or no) group: simple commits, generations for groups that do
    # not exist, bad group ids, metadata too large, unknown topics and partitions; v10 names topics by id.
    def commit_topics(v, parts, metadata="m", topic=TOPIC):
        key = {"TopicId": "<topic-id>"} if v >= 10 else {"Name": topic}
        return [{**key, "Partitions": [{"PartitionIndex": p, "CommittedOffset": off, "CommittedLeaderEpoch": -1,
                                        "CommittedMetadata": metadata} for p, off in parts]}]

    for v in every("OffsetCommit", 8):
        def commit(group, generation, topics, member="", instance=None):
            return {"GroupId": group, "GenerationIdOrMemberEpoch": generation, "MemberId": member,
                    "GroupInstanceId": instance, "RetentionTimeMs": -1, "Topics": topics}
        g = f"diff-commit-v{v}"
        yield f"offset-commit-simple-v{v}", "OffsetCommit", v, commit(g, -1, commit_topics(v, [(0, 2), (1, 0), (9, 1)]))
        yield f"offset-commit-again-v{v}", "OffsetCommit", v, commit(g, -1, commit_topics(v, [(0, 3)], None))
        yield f"offset-commit-generation-unknown-group-v{v}", "OffsetCommit", v, commit(
            f"diff-nogroup-v{v}", 5, commit_topics(v, [(0, 1)]), member="m-1")
        yield f"offset-commit-generation-simple-group-v{v}", "OffsetCommit", v, commit(
            g, 5, commit_topics(v, [(0, 1)]), member="m-1")
        yield f"offset-commit-member-no-generation-v{v}", "OffsetCommit", v, commit(
            g, -1, commit_topics(v, [(0, 1)]), member="m-1")
        yield f"offset-commit-empty-group-id-v{v}", "OffsetCommit", v, commit("", -1, commit_topics(v, [(0, 1)]))
        yield f"offset-commit-metadata-too-large-v{v}", "OffsetCommit", v, commit(
            g, -1, commit_topics(v, [(0, 4)], "x" * 4097))
        yield f"offset-commit-no-topics-v{v}", "OffsetCommit", v, commit(g, -1, [])
        if v < 10:
            yield f"offset-commit-unknown-topic-v{v}", "OffsetCommit", v, commit(
                g, -1, commit_topics(v, [(0, 1)], topic="no-such-topic"))
        else:
            yield f"offset-commit-unknown-topic-id-v{v}", "OffsetCommit", v, commit(
                g, -1, [{"TopicId": uuid.UUID(int=7), "Partitions": [{"PartitionIndex": 0, "CommittedOffset": 1}]}])

    COMMITTED_GROUP = "diff-commit-v8"  # the offset-commit cases of v8 committed for it
    for v in every("OffsetFetch", 9):
        def fetch_offsets(group, topics, member=None, epoch=-1):
            if v < 8:
                return {"GroupId": group, "Topics": None if topics is None else [
                    {"Name": t, "PartitionIndexes": ps} for t, ps in topics], "RequireStable": False}
            key = (lambda t: {"TopicId": "<topic-id>" if t == TOPIC else uuid.UUID(int=7)}) if v >= 10 else (
                lambda t: {"Name": t})
            return {"Groups": [{"GroupId": group, "MemberId": member, "MemberEpoch": epoch, "Topics": None if topics
                                is None else [{**key(t), "PartitionIndexes": ps} for t, ps in topics]}],
                    "RequireStable": False}

        yield f"offset-fetch-committed-v{v}", "OffsetFetch", v, fetch_offsets(
            COMMITTED_GROUP, [(TOPIC, [0, 1, 9]), ("no-such-topic", [0])])
        if v >= 2:
            yield f"offset-fetch-all-v{v}", "OffsetFetch", v, fetch_offsets(COMMITTED_GROUP, None)
            yield f"offset-fetch-all-unknown-group-v{v}", "OffsetFetch", v, fetch_offsets("no-such-group", None)
        yield f"offset-fetch-unknown-group-v{v}", "OffsetFetch", v, fetch_offsets("no-such-group", [(TOPIC, [0])])
        yield f"offset-fetch-empty-group-id-v{v}", "OffsetFetch", v, fetch_offsets("", [(TOPIC, [0])])
        if v >= 9:
            yield f"offset-fetch-member-epoch-v{v}", "OffsetFetch", v, fetch_offsets(
                COMMITTED_GROUP, [(TOPIC, [0])], member="m-1", epoch=3)
            yield f"offset-fetch-member-epoch-unknown-group-v{v}", "OffsetFetch", v, fetch_offsets(
                "no-such-group", [(TOPIC, [0])], member="m-1", epoch=3)
        if v >= 8:
            yield f"offset-fetch-two-groups-v{v}", "OffsetFetch", v, {"Groups": [
                fetch_offsets(COMMITTED_GROUP, [(TOPIC, [0])])["Groups"][0],
                fetch_offsets("no-such-group", None)["Groups"][0]], "RequireStable": True}

    # ApiVersions: the supported and finalized features (v3+; the API ranges are compared on their own).
    for v in every("ApiVersions", 18):
        if v >= 3:
            yield f"api-versions-features-v{v}", "ApiVersions", v, {"ClientSoftwareName": "diff",
                                                                    "ClientSoftwareVersion": "1"}
    # UpdateFeatures: "<mv>" is the broker's finalized metadata.version (Fjord's and Kafka's differ).
    for v in every("UpdateFeatures", 57):
        def update(*updates, validate_only=False):
            return {"timeoutMs": 30_000, "ValidateOnly": validate_only, "FeatureUpdates": [
                {"Feature": f, "MaxVersionLevel": level, "AllowDowngrade": kind in (2, 3), "UpgradeType": kind}
                for f, level, kind in updates]}
        edge = {
            "noop": [("metadata.version", "<mv>", 1)],
            "unknown-feature": [("no.such.feature", 1, 1)],
            "unknown-feature-level-0": [("no.such.feature", 0, 1)],
            "too-high": [("metadata.version", 999, 1)],
            "negative": [("metadata.version", -1, 1)],
            "downgrade-as-upgrade": [("metadata.version", "<mv-1>", 1)],
            "one-bad-of-two": [("metadata.version", "<mv>", 1), ("no.such.feature", 1, 1)],
            "empty": [],
        }
        if v >= 1:
            edge["unknown-upgrade-type"] = [("metadata.version", "<mv>", 9)]
            edge["upgrade-as-downgrade"] = [("metadata.version", 999, 2)]
        for name, updates in edge.items():
            yield f"update-features-{name}-v{v}", "UpdateFeatures", v, update(*updates)
        if v >= 1:
            yield f"update-features-validate-only-v{v}", "UpdateFeatures", v, update(
                ("metadata.version", "<mv>", 1), validate_only=True)

    for v in every("DescribeProducers", 61):
        yield f"describe-producers-v{v}", "DescribeProducers", v, {
            "Topics": [{"Name": TOPIC, "PartitionIndexes": [0, 9]},
                       {"Name": "no-such-topic", "PartitionIndexes": [0]}]}

    # SASL requests on a PLAINTEXT listener: both brokers answer ILLEGAL_SASL_STATE. The harness's brokers have
    # no SASL listener, so authentication itself is not compared here: tests/e2e/test_security.py drives it
    # with real clients against both brokers.
    for v in every("SaslHandshake", 17):
        yield f"sasl-handshake-plaintext-v{v}", "SaslHandshake", v, {"Mechanism": "PLAIN"}
    for v in every("SaslAuthenticate", 36):
        yield f"sasl-authenticate-plaintext-v{v}", "SaslAuthenticate", v, {"AuthBytes": b"\0alice\0secret"}

    # SCRAM credentials (KIP-554): refusals, then a set / describe / delete round trip.
    def upsert(name, mechanism=1, iterations=4096):
        return {"Name": name, "Mechanism": mechanism, "Iterations": iterations, "Salt": b"diff-salt",
                "SaltedPassword": bytes(range(32))}
    for v in every("DescribeUserScramCredentials", 50):
        yield f"scram-describe-all-empty-v{v}", "DescribeUserScramCredentials", v, {"Users": None}
        yield f"scram-describe-unknown-v{v}", "DescribeUserScramCredentials", v, {
            "Users": [{"Name": "nobody"}, {"Name": "dup"}, {"Name": "dup"}]}
    for v in every("AlterUserScramCredentials", 51):
        yield f"scram-alter-refused-v{v}", "AlterUserScramCredentials", v, {
            "Deletions": [{"Name": "nobody", "Mechanism": 1}, {"Name": "", "Mechanism": 1}],
            "Upsertions": [upsert("few", iterations=1000), upsert("many", iterations=20_000),
                           upsert("mech", mechanism=9), upsert("twice"), upsert("twice", mechanism=2)]}
        yield f"scram-alter-upsert-v{v}", "AlterUserScramCredentials", v, {
            "Deletions": [], "Upsertions": [upsert("diff-alice"), upsert("diff-bob", 2, 8192)]}
    for v in every("DescribeUserScramCredentials", 50):
        yield f"scram-describe-all-v{v}", "DescribeUserScramCredentials", v, {"Users": []}
        yield f"scram-describe-one-v{v}", "DescribeUserScramCredentials", v, {"Users": [{"Name": "diff-bob"}]}
    for v in every("AlterUserScramCredentials", 51):
        yield f"scram-alter-delete-v{v}", "AlterUserScramCredentials", v, {
            "Deletions": [{"Name": "diff-alice", "Mechanism": 1}, {"Name": "diff-bob", "Mechanism": 2}],
            "Upsertions": []}

    # Client quotas (KIP-546): refusals, then a set / describe / remove round trip. One entry per request:
    # Kafka's controller answers entries from a hash map keyed by entity.
    def quota(entity, ops, validate_only=False):
        return {"Entries": [{"Entity": [{"EntityType": t, "EntityName": n} for t, n in entity],
                             "Ops": [{"Key": k, "Value": 0.0 if val is None else val, "Remove": val is None}
                                     for k, val in ops]}],
                "ValidateOnly": validate_only}
    for v in every("DescribeClientQuotas", 48):
        yield f"quotas-describe-all-empty-v{v}", "DescribeClientQuotas", v, {"Components": [], "Strict": False}
        yield f"quotas-describe-bad-filter-v{v}", "DescribeClientQuotas", v, {
            "Components": [{"EntityType": "user", "MatchType": 0, "Match": None}], "Strict": False}
    for v in every("AlterClientQuotas", 49):
        yield f"quotas-alter-empty-entity-v{v}", "AlterClientQuotas", v, quota([], [("producer_byte_rate", 1.0)])
        yield f"quotas-alter-unknown-type-v{v}", "AlterClientQuotas", v, quota(
            [("group", "g")], [("producer_byte_rate", 1.0)])
        yield f"quotas-alter-validate-only-v{v}", "AlterClientQuotas", v, quota(
            [("user", "diff-q")], [("producer_byte_rate", 2048.0)], validate_only=True)
        yield f"quotas-alter-set-v{v}", "AlterClientQuotas", v, quota(
            [("user", "diff-q"), ("client-id", None)], [("producer_byte_rate", 1024.0)])
    for v in every("DescribeClientQuotas", 48):
        yield f"quotas-describe-one-v{v}", "DescribeClientQuotas", v, {
            "Components": [{"EntityType": "user", "MatchType": 0, "Match": "diff-q"},
                           {"EntityType": "client-id", "MatchType": 1, "Match": None}], "Strict": True}
    for v in every("AlterClientQuotas", 49):
        yield f"quotas-alter-remove-v{v}", "AlterClientQuotas", v, quota(
            [("user", "diff-q"), ("client-id", None)], [("producer_byte_rate", None)])

    yield from more_cases(every)


def bind_topic_id(body, topic_id: uuid.UUID):
    """`body` with every "<topic-id>" replaced by this broker's id of the harness topic."""
    if isinstance(body, dict):
        return {k: bind_topic_id(v, topic_id) for k, v in body.items()}
    if isinstance(body, list):
        return [bind_topic_id(v, topic_id) for v in body]
    return topic_id if body == "<topic-id>" else body


def more_cases(every):
    """Cases of the APIs the first slices did not cover: produce, group membership error paths, group and
    offset deletion, configs, records deletion, partitions, topics deletion, producer ids, ACLs,
    transactions, log dirs, elections, reassignments, the quorum and topic-partition descriptions."""
    # ApiVersions v0-2 (v3+ above): the API ranges are compared on their own, the rest here.
    for v in every("ApiVersions", 18):
        if v < 3:
            yield f"api-versions-v{v}", "ApiVersions", v, {}
    # Metadata v0-3 (no auto-creation flag: the harness topic only).
    for v in every("Metadata", 3):
        if v < 4:
            yield f"metadata-known-v{v}", "Metadata", v, {"Topics": [{"Name": TOPIC}]}
    # Produce at every version (v0-v2 are refused by both), to partition 1, plus error paths.
    for v in every("Produce", 0):
        def produce(acks, topic=TOPIC, partition=1, records=None):
            key = {"TopicId": "<topic-id>" if topic == TOPIC else uuid.UUID(int=7)} if v >= 13 else {"Name": topic}
            batch = records or wire.record_batch([(None, b"p"), (b"k", b"q")], 1_700_000_000_000)
            return {"TransactionalId": None, "Acks": acks, "TimeoutMs": 10_000,
                    "TopicData": [{**key, "PartitionData": [{"Index": partition, "Records": batch}]}]}
        yield f"produce-acks-all-v{v}", "Produce", v, produce(-1)
        yield f"produce-acks-1-v{v}", "Produce", v, produce(1)
        yield f"produce-bad-acks-v{v}", "Produce", v, produce(2)
        yield f"produce-unknown-partition-v{v}", "Produce", v, produce(-1, partition=9)
        yield f"produce-unknown-topic-v{v}", "Produce", v, produce(-1, topic="no-such-topic")
    # Group membership: the error paths that answer at once (no rebalance wait).
    for v in every("JoinGroup", 11):
        def join(group, member="", session_ms=10_000, protocol_type="consumer"):
            return {"GroupId": group, "SessionTimeoutMs": session_ms, "RebalanceTimeoutMs": 10_000,
                    "MemberId": member, "GroupInstanceId": None, "ProtocolType": protocol_type,
                    "Protocols": [{"Name": "range", "Metadata": b""}], "Reason": None}
        yield f"join-group-empty-group-id-v{v}", "JoinGroup", v, join("")
        yield f"join-group-unknown-member-v{v}", "JoinGroup", v, join(f"diff-join-v{v}", member="bogus")
        yield f"join-group-bad-session-timeout-v{v}", "JoinGroup", v, join(f"diff-join-v{v}", session_ms=1)
        yield f"join-group-no-protocols-v{v}", "JoinGroup", v, {**join(f"diff-join-v{v}"), "Protocols": []}
    for v in every("SyncGroup", 14):
        body = {"GroupId": "diff-no-group", "GenerationId": 1, "MemberId": "bogus", "GroupInstanceId": None,
                "ProtocolType": "consumer", "ProtocolName": "range", "Assignments": []}
        yield f"sync-group-unknown-v{v}", "SyncGroup", v, body
        yield f"sync-group-empty-group-id-v{v}", "SyncGroup", v, {**body, "GroupId": ""}
    for v in every("Heartbeat", 12):
        body = {"GroupId": "diff-no-group", "GenerationId": 1, "MemberId": "bogus", "GroupInstanceId": None}
        yield f"heartbeat-unknown-v{v}", "Heartbeat", v, body
        yield f"heartbeat-simple-group-v{v}", "Heartbeat", v, {**body, "GroupId": "diff-commit-v8"}
        yield f"heartbeat-empty-group-id-v{v}", "Heartbeat", v, {**body, "GroupId": ""}
    for v in every("LeaveGroup", 13):
        body = {"GroupId": "diff-no-group", "MemberId": "bogus",
                "Members": [{"MemberId": "bogus", "GroupInstanceId": None, "Reason": None}]}
        yield f"leave-group-unknown-v{v}", "LeaveGroup", v, body
        yield f"leave-group-simple-group-v{v}", "LeaveGroup", v, {**body, "GroupId": "diff-commit-v8"}
    # Group and offset deletion: one simple group of the offset-commit cases per version.
    for v in every("OffsetDelete", 47):
        yield f"offset-delete-v{v}", "OffsetDelete", v, {"GroupId": "diff-commit-v9", "Topics": [
            {"Name": TOPIC, "Partitions": [{"PartitionIndex": 0}, {"PartitionIndex": 9}]},
            {"Name": "no-such-topic", "Partitions": [{"PartitionIndex": 0}]}]}
        yield f"offset-delete-unknown-group-v{v}", "OffsetDelete", v, {"GroupId": "diff-no-group", "Topics": [
            {"Name": TOPIC, "Partitions": [{"PartitionIndex": 0}]}]}
    for v in every("DeleteGroups", 42):
        yield f"delete-groups-v{v}", "DeleteGroups", v, {
            "GroupsNames": [f"diff-commit-v{v + 2}", "diff-no-group", ""]}
    # Configs: describe, alter (validate-only: nothing changes), invalid values and unknown names.
    for v in every("DescribeConfigs", 32):
        for name, resource in (
                ("topic", {"ResourceType": 2, "ResourceName": TOPIC, "ConfigurationKeys": [
                    "retention.ms", "cleanup.policy", "max.message.bytes", "no.such.config"]}),
                ("unknown-topic", {"ResourceType": 2, "ResourceName": "no-such-topic", "ConfigurationKeys": None}),
                ("unknown-resource-type", {"ResourceType": 9, "ResourceName": "x", "ConfigurationKeys": None})):
            yield f"describe-configs-{name}-v{v}", "DescribeConfigs", v, {
                "Resources": [resource], "IncludeSynonyms": False, "IncludeDocumentation": False}
    for v in every("AlterConfigs", 33):
        def alter(name, value, topic=TOPIC):
            return {"Resources": [{"ResourceType": 2, "ResourceName": topic,
                                   "Configs": [{"Name": name, "Value": value}]}], "ValidateOnly": True}
        yield f"alter-configs-ok-v{v}", "AlterConfigs", v, alter("retention.ms", "1000")
        yield f"alter-configs-bad-value-v{v}", "AlterConfigs", v, alter("retention.ms", "abc")
        yield f"alter-configs-unknown-name-v{v}", "AlterConfigs", v, alter("no.such.config", "1")
        yield f"alter-configs-unknown-topic-v{v}", "AlterConfigs", v, alter("retention.ms", "1", "no-such-topic")
    for v in every("IncrementalAlterConfigs", 44):
        def incremental(name, op, value, topic=TOPIC):
            return {"Resources": [{"ResourceType": 2, "ResourceName": topic,
                                   "Configs": [{"Name": name, "ConfigOperation": op, "Value": value}]}],
                    "ValidateOnly": True}
        yield f"incremental-alter-configs-set-v{v}", "IncrementalAlterConfigs", v, incremental("retention.ms", 0, "1000")
        yield f"incremental-alter-configs-bad-value-v{v}", "IncrementalAlterConfigs", v, incremental(
            "retention.ms", 0, "abc")
        yield f"incremental-alter-configs-bad-op-v{v}", "IncrementalAlterConfigs", v, incremental(
            "retention.ms", 9, "1")
        yield f"incremental-alter-configs-delete-v{v}", "IncrementalAlterConfigs", v, incremental(
            "retention.ms", 1, None)
        yield f"incremental-alter-configs-append-non-list-v{v}", "IncrementalAlterConfigs", v, incremental(
            "retention.ms", 2, "1")
        yield f"incremental-alter-configs-unknown-topic-v{v}", "IncrementalAlterConfigs", v, incremental(
            "retention.ms", 0, "1", "no-such-topic")
    # DeleteRecords on partition 1 (the produce cases wrote there).
    for v in every("DeleteRecords", 21):
        yield f"delete-records-v{v}", "DeleteRecords", v, {"Topics": [
            {"Name": TOPIC, "Partitions": [{"PartitionIndex": 1, "Offset": 1 + v}, {"PartitionIndex": 9, "Offset": 0}]},
            {"Name": "no-such-topic", "Partitions": [{"PartitionIndex": 0, "Offset": 0}]}], "TimeoutMs": 10_000}
        yield f"delete-records-out-of-range-v{v}", "DeleteRecords", v, {"Topics": [
            {"Name": TOPIC, "Partitions": [{"PartitionIndex": 1, "Offset": 1_000_000}]}], "TimeoutMs": 10_000}
    # CreatePartitions errors (validate-only where it would succeed).
    for v in every("CreatePartitions", 37):
        def grow(topic, count, validate_only=True, assignments=None):
            return {"Topics": [{"Name": topic, "Count": count, "Assignments": assignments}],
                    "TimeoutMs": 10_000, "ValidateOnly": validate_only}
        yield f"create-partitions-validate-v{v}", "CreatePartitions", v, grow(TOPIC, 5)
        yield f"create-partitions-fewer-v{v}", "CreatePartitions", v, grow(TOPIC, 1)
        yield f"create-partitions-same-v{v}", "CreatePartitions", v, grow(TOPIC, 2)
        yield f"create-partitions-unknown-topic-v{v}", "CreatePartitions", v, grow("no-such-topic", 3)
        yield f"create-partitions-bad-assignment-v{v}", "CreatePartitions", v, grow(
            TOPIC, 3, assignments=[{"BrokerIds": [12345]}])
        yield f"create-partitions-twice-v{v}", "CreatePartitions", v, {
            "Topics": [{"Name": TOPIC, "Count": 3, "Assignments": None}] * 2, "TimeoutMs": 10_000,
            "ValidateOnly": True}
    # DeleteTopics: a topic created for it, an unknown name, an unknown id (v6).
    for v in every("DeleteTopics", 20):
        yield f"setup-create-for-delete-topics-v{v}", "CreateTopics", 7, {
            "Topics": [{"Name": f"del{v}", "NumPartitions": 1, "ReplicationFactor": 1}], "TimeoutMs": 30_000}
        if v >= 6:
            body = {"Topics": [{"Name": f"del{v}", "TopicId": NIL}, {"Name": "no-such-topic", "TopicId": NIL},
                               {"Name": None, "TopicId": uuid.UUID(int=7)}], "TimeoutMs": 30_000}
        else:
            body = {"TopicNames": [f"del{v}", "no-such-topic"], "TimeoutMs": 30_000}
        yield f"delete-topics-v{v}", "DeleteTopics", v, body
    # InitProducerId without a transactional id (the transactional path belongs to issue 15).
    for v in every("InitProducerId", 22):
        yield f"init-producer-id-v{v}", "InitProducerId", v, {
            "TransactionalId": None, "TransactionTimeoutMs": 60_000, "ProducerId": -1, "ProducerEpoch": -1}
        if v >= 3:
            yield f"init-producer-id-unknown-pid-v{v}", "InitProducerId", v, {
                "TransactionalId": None, "TransactionTimeoutMs": 60_000, "ProducerId": 424242, "ProducerEpoch": 3}
    # Transactions: a transactional id's first InitProducerId, a bad timeout, and requests naming a
    # transactional id the coordinator does not know (or a topic that does not exist).
    for v in every("InitProducerId", 22):
        yield f"init-producer-id-transactional-v{v}", "InitProducerId", v, {
            "TransactionalId": f"diff-txn-{v}", "TransactionTimeoutMs": 60_000, "ProducerId": -1,
            "ProducerEpoch": -1}
        yield f"init-producer-id-transactional-bad-timeout-v{v}", "InitProducerId", v, {
            "TransactionalId": f"diff-txn-timeout-{v}", "TransactionTimeoutMs": 0, "ProducerId": -1,
            "ProducerEpoch": -1}
    for v in every("AddPartitionsToTxn", 24):
        for name, topics in (("unknown-id", [{"Name": TOPIC, "Partitions": [0, 1]}]),
                             ("unknown-topic", [{"Name": TOPIC, "Partitions": [0]},
                                                {"Name": "no-such-topic", "Partitions": [0]}])):
            if v < 4:
                body = {"V3AndBelowTransactionalId": "diff-never-used", "V3AndBelowProducerId": 4242,
                        "V3AndBelowProducerEpoch": 0, "V3AndBelowTopics": topics}
            else:
                body = {"Transactions": [{"TransactionalId": "diff-never-used", "ProducerId": 4242,
                                          "ProducerEpoch": 0, "VerifyOnly": False, "Topics": topics}]}
            yield f"add-partitions-to-txn-{name}-v{v}", "AddPartitionsToTxn", v, body
        if v >= 4:  # a partition leader's KIP-890 check for a transactional id the coordinator does not know
            # (one partition: Kafka lists a verification's partitions in hash order)
            yield f"add-partitions-to-txn-verify-only-unknown-id-v{v}", "AddPartitionsToTxn", v, {
                "Transactions": [{"TransactionalId": "diff-never-used", "ProducerId": 4242, "ProducerEpoch": 0,
                                  "VerifyOnly": True, "Topics": [{"Name": TOPIC, "Partitions": [0]}]}]}
    for v in every("AddOffsetsToTxn", 25):
        yield f"add-offsets-to-txn-unknown-id-v{v}", "AddOffsetsToTxn", v, {
            "TransactionalId": "diff-never-used", "ProducerId": 4242, "ProducerEpoch": 0, "GroupId": "diff-g"}
    for v in every("EndTxn", 26):
        yield f"end-txn-unknown-id-v{v}", "EndTxn", v, {
            "TransactionalId": "diff-never-used", "ProducerId": 4242, "ProducerEpoch": 0, "Committed": True}
    # TxnOffsetCommit from a producer the transaction coordinator does not know: nothing is committed.
    for v in every("TxnOffsetCommit", 28):
        def txn_commit(group, topics):
            return {"TransactionalId": "diff-never-used", "GroupId": group, "ProducerId": 4242, "ProducerEpoch": 0,
                    "GenerationId": -1, "MemberId": "", "GroupInstanceId": None, "Topics": [
                        {"Name": name, "Partitions": [{"PartitionIndex": p, "CommittedOffset": 1,
                                                       "CommittedLeaderEpoch": -1, "CommittedMetadata": None}
                                                      for p in parts]} for name, parts in topics]}
        yield f"txn-offset-commit-unknown-id-v{v}", "TxnOffsetCommit", v, txn_commit(
            "diff-g", [(TOPIC, [0, 1])])
        yield f"txn-offset-commit-unknown-topic-v{v}", "TxnOffsetCommit", v, txn_commit(
            "diff-g", [(TOPIC, [0]), ("no-such-topic", [0]), (TOPIC, [9])])
        yield f"txn-offset-commit-empty-group-id-v{v}", "TxnOffsetCommit", v, txn_commit("", [(TOPIC, [0])])
    # WriteTxnMarkers for partitions that do not exist (nothing is written). One topic per case: Kafka answers
    # the topics of a marker in hash order.
    for v in every("WriteTxnMarkers", 27):
        for name, (topic, part) in {"unknown-topic": ("no-such-topic", 0), "unknown-partition": (TOPIC, 9)}.items():
            yield f"write-txn-markers-{name}-v{v}", "WriteTxnMarkers", v, {"Markers": [
                {"ProducerId": 4242, "ProducerEpoch": 0, "TransactionResult": False, "CoordinatorEpoch": 0,
                 "Topics": [{"Name": topic, "PartitionIndexes": [part]}]}]}
    # WriteTxnMarkers v2 (KIP-1228) in order, on a topic of their own, for a producer with no data there: a
    # transaction version 2 marker opens the producer's entry at its epoch; the same epoch again is the retry of
    # a marker already written (nothing open: accepted), a lower one INVALID_PRODUCER_EPOCH at version 2 and 0.
    if 2 in every("WriteTxnMarkers", 27):
        yield "setup-create-for-write-txn-markers-v2", "CreateTopics", 7, {
            "Topics": [{"Name": "diff-markers", "NumPartitions": 1, "ReplicationFactor": 1}], "TimeoutMs": 30_000}
        for step, (epoch, tv) in enumerate([(3, 2), (3, 2), (2, 2), (2, 0), (3, 0), (4, 2)]):
            yield f"write-txn-markers-tv{tv}-epoch{epoch}-step{step}-v2", "WriteTxnMarkers", 2, {"Markers": [
                {"ProducerId": 5150, "ProducerEpoch": epoch, "TransactionResult": step % 2 == 0,
                 "CoordinatorEpoch": 0, "TransactionVersion": tv,
                 "Topics": [{"Name": "diff-markers", "PartitionIndexes": [0]}]}]}
    # ACLs without an authorizer.
    for v in every("CreateAcls", 30):
        yield f"create-acls-v{v}", "CreateAcls", v, {"Creations": [
            {"ResourceType": 2, "ResourceName": TOPIC, "ResourcePatternType": 3, "Principal": "User:a",
             "Host": "*", "Operation": 3, "PermissionType": 3}]}
    for v in every("DeleteAcls", 31):
        yield f"delete-acls-v{v}", "DeleteAcls", v, {"Filters": [
            {"ResourceTypeFilter": 1, "ResourceNameFilter": None, "PatternTypeFilter": 1, "PrincipalFilter": None,
             "HostFilter": None, "Operation": 1, "PermissionType": 1}]}
    for v in every("DescribeTransactions", 65):
        yield f"describe-transactions-v{v}", "DescribeTransactions", v, {"TransactionalIds": ["diff-never-used"]}
    # Log dirs, elections, reassignments, the quorum, topic partitions, config resources.
    for v in every("DescribeLogDirs", 35):
        yield f"describe-log-dirs-v{v}", "DescribeLogDirs", v, {"Topics": [
            {"Topic": TOPIC, "Partitions": [0, 9]}, {"Topic": "no-such-topic", "Partitions": [0]}]}
    for v in every("AlterReplicaLogDirs", 34):
        yield f"alter-replica-log-dirs-v{v}", "AlterReplicaLogDirs", v, {"Dirs": [
            {"Path": "/no/such/dir", "Topics": [{"Name": TOPIC, "Partitions": [0]}]}]}
    for v in every("ElectLeaders", 43):
        yield f"elect-leaders-v{v}", "ElectLeaders", v, {"ElectionType": 0, "TimeoutMs": 10_000,
                                                          "TopicPartitions": [{"Topic": TOPIC, "Partitions": [0, 9]},
                                                                              {"Topic": "no-such-topic",
                                                                               "Partitions": [0]}]}
    for v in every("AlterPartitionReassignments", 45):
        yield f"alter-partition-reassignments-v{v}", "AlterPartitionReassignments", v, {
            "TimeoutMs": 10_000, "AllowReplicationFactorChange": True, "Topics": [
                {"Name": TOPIC, "Partitions": [{"PartitionIndex": 0, "Replicas": None},
                                               {"PartitionIndex": 1, "Replicas": [12345]}]},
                {"Name": "no-such-topic", "Partitions": [{"PartitionIndex": 0, "Replicas": None}]}]}
    for v in every("ListPartitionReassignments", 46):
        yield f"list-partition-reassignments-v{v}", "ListPartitionReassignments", v, {
            "TimeoutMs": 10_000, "Topics": None}
    for v in every("DescribeQuorum", 55):
        yield f"describe-quorum-v{v}", "DescribeQuorum", v, {"Topics": [
            {"TopicName": "__cluster_metadata", "Partitions": [{"PartitionIndex": 0}]}]}
        yield f"describe-quorum-unknown-v{v}", "DescribeQuorum", v, {"Topics": [
            {"TopicName": TOPIC, "Partitions": [{"PartitionIndex": 0}]}]}
    for v in every("DescribeTopicPartitions", 75):
        yield f"describe-topic-partitions-v{v}", "DescribeTopicPartitions", v, {
            "Topics": [{"Name": TOPIC}, {"Name": "no-such-topic"}], "ResponsePartitionLimit": 2000, "Cursor": None}
    for v in every("ListConfigResources", 74):
        yield f"list-config-resources-v{v}", "ListConfigResources", v, {"ResourceTypes": [16]}


def bind(body, values: dict):
    """`body` with every placeholder string that is a key of `values` replaced by its value."""
    if isinstance(body, dict):
        return {k: bind(v, values) for k, v in body.items()}
    if isinstance(body, list):
        return [bind(v, values) for v in body]
    return values.get(body, body) if isinstance(body, str) else body


def metadata_version(bootstrap: str) -> int:
    r = send(bootstrap, "ApiVersions", 3, {"ClientSoftwareName": "diff", "ClientSoftwareVersion": "1"})
    return next(f["MaxVersionLevel"] for f in r["FinalizedFeatures"] if f["Name"] == "metadata.version")


def send(bootstrap: str, api: str, version: int, body: dict):
    try:
        with kschema.Conn(bootstrap) as c:
            r = c.call(api, version, body)
        return r if r is not None else "<connection closed>"
    except (OSError, ValueError) as e:
        return f"<error: {e}>"


def topic_id(bootstrap: str) -> uuid.UUID:
    r = send(bootstrap, "Metadata", 12, {"Topics": [{"Name": TOPIC}], "AllowAutoTopicCreation": False})
    return r["Topics"][0]["TopicId"]


def produce_error(answer) -> int:
    if not isinstance(answer, dict):
        return -1
    return answer["Responses"][0]["PartitionResponses"][0]["ErrorCode"]


RETRIABLE_COORDINATOR_ERRORS = (14, 15, 16)  # loading, not available, not coordinator


def warm_up(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Wait until the broker's group and transaction coordinators answer for good: a new Kafka creates
    `__consumer_offsets` and `__transaction_state` on the first lookup and answers retriable errors until
    they are loaded, which is start-up timing, not behaviour worth comparing."""
    deadline = time.monotonic() + timeout_s
    while True:
        errors = []
        for key_type, key in ((0, "diff-g"), (0, "no-such-group"), (0, ""), (1, "diff-k")):
            r = send(bootstrap, "FindCoordinator", 4, {"KeyType": key_type, "CoordinatorKeys": [key]})
            errors.append(r["Coordinators"][0]["ErrorCode"] if isinstance(r, dict) else -1)
        r = send(bootstrap, "DescribeGroups", 5, {"Groups": ["no-such-group", ""]})
        errors += [g["ErrorCode"] for g in r["Groups"]] if isinstance(r, dict) else [-1]
        # Kafka's producer id manager fetches its first block from the controller on first use.
        r = send(bootstrap, "InitProducerId", 4, {"TransactionalId": None, "TransactionTimeoutMs": 60_000,
                                                  "ProducerId": -1, "ProducerEpoch": -1})
        errors.append(r["ErrorCode"] if isinstance(r, dict) else -1)
        if not any(e in RETRIABLE_COORDINATOR_ERRORS or e < 0 for e in errors):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{bootstrap}: coordinators still not ready after {timeout_s:.0f} s: {errors}")
        time.sleep(0.5)


def scram_users_visible(answer) -> bool:
    """A DescribeUserScramCredentials answer lists users, each found (the scram-alter-upsert case's)."""
    results = answer.get("Results") if isinstance(answer, dict) else None
    return bool(results) and all(r.get("ErrorCode") == 0 for r in results)


def compare_api_versions(fjord: dict, kafka: dict):
    """(case, path, fjord, kafka) for every API Fjord advertises whose range is not Kafka's."""
    for key, (lo, hi) in sorted(fjord.items()):
        k = kafka.get(key)
        if k != (lo, hi):
            yield ("api-versions", f"ApiKeys[{key}]", f"{lo}-{hi}", f"{k[0]}-{k[1]}" if k else "<absent>")


def advertised(bootstrap: str) -> dict[int, tuple[int, int]]:
    r = send(bootstrap, "ApiVersions", 3, {"ClientSoftwareName": "diff", "ClientSoftwareVersion": "1"})
    return {k["ApiKey"]: (k["MinVersion"], k["MaxVersion"]) for k in r["ApiKeys"]}


def coverage(fjord_apis: dict[int, tuple[int, int]], covered: set[tuple[str, int]]) -> list[tuple[str, int, str, str]]:
    """(API, key, versions covered, versions advertised but not covered) for every API Fjord advertises."""
    names = {key: api.name for key, api in kschema.Schemas.load().apis().items()}
    rows = []
    for key, (lo, hi) in sorted(fjord_apis.items()):
        name = names.get(key, f"api{key}")
        have = [v for v in range(lo, hi + 1) if (name, v) in covered]
        missing = [v for v in range(lo, hi + 1) if (name, v) not in covered]
        rows.append((name, key, ranges(have), ranges(missing)))
    return rows


def ranges(versions: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"; [] -> "-"."""
    out: list[str] = []
    for v in versions:
        if out and "-" in out[-1] and int(out[-1].split("-")[1]) == v - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        elif out and "-" not in out[-1] and int(out[-1]) == v - 1:
            out[-1] = f"{out[-1]}-{v}"
        else:
            out.append(str(v))
    return ",".join(out) or "-"


def marker_error(answer) -> int | None:
    """The error code of a one-partition WriteTxnMarkers answer."""
    try:
        return answer["Markers"][0]["Topics"][0]["Partitions"][0]["ErrorCode"]
    except (KeyError, IndexError, TypeError):
        return None


def run(fjord: str, kafka: str, select: str | None, require_coverage: bool = False,
        report: str | None = None) -> int:
    known = load_known()
    used: set[int] = set()
    for b in (fjord, kafka):
        warm_up(b)
    fjord_apis, kafka_apis = advertised(fjord), advertised(kafka)
    found = list(compare_api_versions(fjord_apis, kafka_apis))
    ids: dict[str, uuid.UUID] = {}
    n_cases = 0
    # ApiVersions itself is covered by advertised() and compare_api_versions at v3.
    covered: set[tuple[str, int]] = {("ApiVersions", 3)}
    for case, api, version, body in cases(fjord_apis):
        if select and select not in case and not case.startswith("setup"):
            continue
        n_cases += 1
        covered.add((api, version))
        answers = []
        for name, b in (("fjord", fjord), ("kafka", kafka)):
            if name not in ids and "'<topic-id>'" in repr(body):
                ids[name] = topic_id(b)
            bb = bind_topic_id(body, ids.get(name, NIL))
            if "'<mv" in repr(bb):
                mv = metadata_version(b)
                bb = bind(bb, {"<mv>": mv, "<mv-1>": mv - 1})
            answer = send(b, api, version, bb)
            if case == "setup-produce":
                # Kafka's partitions may not be served yet right after CreateTopics: retry what is retriable.
                deadline = time.monotonic() + 30
                while produce_error(answer) in (3, 5, 6) and time.monotonic() < deadline:
                    time.sleep(0.3)
                    answer = send(b, api, version, bb)
            if case.startswith("write-txn-markers-tv2-epoch3-step0"):
                # The first marker into the topic just created: wait until Kafka serves its partition.
                deadline = time.monotonic() + 30
                while marker_error(answer) in (3, 5, 6) and time.monotonic() < deadline:
                    time.sleep(0.3)
                    answer = send(b, api, version, bb)
            if case.startswith(("scram-describe-all-v", "scram-describe-one-v")):
                # Kafka's broker answers from its metadata cache, which applies the upsert a moment after
                # AlterUserScramCredentials answered: wait until the upserted users are visible there.
                deadline = time.monotonic() + 10
                while not scram_users_visible(answer) and time.monotonic() < deadline:
                    time.sleep(0.3)
                    answer = send(b, api, version, bb)
            if case.startswith("quotas-describe-one-v"):
                # Kafka's broker answers from its metadata cache, a moment behind AlterClientQuotas.
                deadline = time.monotonic() + 10
                while not (isinstance(answer, dict) and answer.get("Entries")) and time.monotonic() < deadline:
                    time.sleep(0.3)
                    answer = send(b, api, version, bb)
            if api == "ApiVersions" and isinstance(answer, dict):
                answer.pop("ApiKeys", None)  # compared on their own (compare_api_versions)
            answers.append(normalise(answer, volatile={**VOLATILE, **VOLATILE_BY_API.get(api, {})},
                                     unordered={**UNORDERED, **UNORDERED_BY_API.get(api, {})}))
        for path, f, k in diff(*answers):
            found.append((case, path, f, k))
    unexpected = []
    for case, path, f, k in found:
        hit = next((i for i, (cg, pg, _) in enumerate(known) if fnmatch.fnmatchcase(case, literal_brackets(cg))
                    and fnmatch.fnmatchcase(path, literal_brackets(pg))), None)
        if hit is None:
            unexpected.append((case, path, f, k))
        else:
            used.add(hit)
    print(f"differential: {n_cases} cases, {len(found)} differing fields, {len(found) - len(unexpected)} known, "
          f"{len(unexpected)} unexpected")
    for case, path, f, k in unexpected:
        print(f"  UNEXPECTED {case} {path}: fjord={f!r} kafka={k!r}")
    uncovered = 0
    rows = []
    if not select:
        for i, (cg, pg, reason) in enumerate(known):
            if i not in used:
                print(f"  unused known difference (remove it?): {cg} {pg} | {reason}")
        rows = coverage(fjord_apis, covered)
        uncovered = sum(1 for r in rows if r[3] != "-")
        print(f"coverage: {len(rows)} advertised APIs, {len(rows) - uncovered} with a case at every version")
        print(f"  {'API':<30} {'key':>4}  {'versions covered':<18} not covered")
        for name, key, have, missing in rows:
            print(f"  {name:<30} {key:>4}  {have:<18} {missing}")
    if uncovered and require_coverage:
        print(f"differential: {uncovered} advertised APIs have versions without a case")
    failed = bool(unexpected or (uncovered and require_coverage))
    if report and not select:
        write_report(Path(report), n_cases, found, unexpected, known, used, rows)
    return 1 if failed else 0


REPORT_BEGIN, REPORT_END = "<!-- differential:begin -->", "<!-- differential:end -->"


def write_report(path: Path, n_cases: int, found, unexpected, known, used: set[int], rows) -> None:
    """Rewrites the part of `path` between the differential markers with this run's result: the counts,
    the coverage table and the known differences that occurred, grouped by reason."""
    out = [REPORT_BEGIN, "",
           f"Result of the last full run ({time.strftime('%Y-%m-%d', time.gmtime())}, generated by "
           f"`tests/e2e/differential.py --report COMPATIBILITY.md`): {n_cases} cases, {len(found)} differing "
           f"fields, {len(found) - len(unexpected)} of them known, {len(unexpected)} unexpected.", "",
           "Coverage (every API Fjord advertises; a version is covered when at least one case sends it):", "",
           "| API | key | versions covered | not covered yet |", "|---|---|---|---|"]
    out += [f"| {name} | {key} | {have} | {missing} |" for name, key, have, missing in rows]
    out += ["", "Known differences that occurred in this run (`tests/e2e/parity-known-differences.txt`), "
            "by reason:", "", "| cases | fields | reason |", "|---|---|---|"]
    by_reason: dict[str, list[tuple[str, str]]] = {}
    for i, (cg, pg, reason) in enumerate(known):
        if i in used:
            by_reason.setdefault(reason, []).append((cg, pg))
    for reason, globs in by_reason.items():
        cases_ = ", ".join(sorted({f"`{c}`" for c, _ in globs}))
        fields = ", ".join(sorted({f"`{f}`" for _, f in globs}))
        out.append(f"| {cases_} | {fields} | {reason.replace('|', '/')} |")
    out += ["", REPORT_END]
    text = path.read_text()
    begin, end = text.find(REPORT_BEGIN), text.find(REPORT_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{path}: no {REPORT_BEGIN} ... {REPORT_END} section to rewrite")
    path.write_text(text[:begin] + "\n".join(out) + text[end + len(REPORT_END):])
    print(f"differential: wrote the result to {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fjord", help="a running Fjord (host:port); default: start target/release/fjord")
    ap.add_argument("--kafka", help="a running Kafka 4.3.1 (host:port); default: start one with scripts/kafka.sh")
    ap.add_argument("-k", dest="select", help="only cases whose id contains this")
    ap.add_argument("--require-coverage", action="store_true",
                    help="fail when an advertised API version has no case (full runs only)")
    ap.add_argument("--report", metavar="FILE",
                    help="write the result of a full run between the differential markers of FILE "
                         "(COMPATIBILITY.md)")
    args = ap.parse_args()
    from conftest import Broker  # the e2e suite's broker runner

    started = []
    roots = []
    try:
        addrs = {}
        for kind in ("fjord", "kafka"):
            given = getattr(args, kind)
            if given:
                addrs[kind] = given
                continue
            root = Path(tempfile.mkdtemp(prefix=f"fjord-diff-{kind}-"))
            roots.append(root)
            b = Broker(kind, root)
            b.start()
            started.append(b)
            addrs[kind] = b.bootstrap
        return run(addrs["fjord"], addrs["kafka"], args.select, args.require_coverage, args.report)
    finally:
        for b in started:
            try:
                b.stop()
            except Exception as e:  # noqa: BLE001 - report and go on cleaning up
                print(f"stopping {b.kind}: {e}", file=sys.stderr)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
