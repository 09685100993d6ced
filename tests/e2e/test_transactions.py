"""Transactions (issue 15) with confluent-kafka-python's transactional producer: commit and abort, the
last stable offset (a read_committed consumer sees nothing of a transaction still open), a zombie producer
fenced by a new one with the same transactional id, DescribeTransactions/ListTransactions, and aborted
transactions dropped by read_committed consumers (confluent-kafka and the Java client; interleaved
transactions of two producers; across a clean restart and a kill -9) with ListOffsets' latest at the last
stable offset; KIP-890's checks on the partition leader (verification, the sequence rules of a verification in
progress) and the aborted transactions of a partition the producer wrote nothing to. Passes against Apache Kafka
too (E2E_BROKER=kafka).
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import KafkaException, Producer

import clients as c
import kschema
import wire
from conftest import unique

def txn_producer(bootstrap: str, txn_id: str, **conf) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
                  "transaction.timeout.ms": 60_000, **conf})
    p.init_transactions(30)
    return p


def produce_values(p: Producer, topic: str, values: list[str]) -> None:
    for v in values:
        p.produce(topic, value=v.encode(), key=b"k")
    p.flush(30)


def values_of(msgs: list[dict]) -> list[str]:
    return [m["value"] for m in msgs]


def test_commit_and_abort_seen_by_read_uncommitted(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn"))
    p = txn_producer(b, unique("txn-id"))
    p.begin_transaction()
    produce_values(p, t, [f"c{i}" for i in range(10)])
    p.commit_transaction(30)
    p.begin_transaction()
    produce_values(p, t, [f"a{i}" for i in range(5)])
    p.abort_transaction(30)
    p.begin_transaction()
    produce_values(p, t, [f"d{i}" for i in range(3)])
    p.commit_transaction(30)
    # read_uncommitted: every data record, committed or aborted, once, in order; markers are not records.
    got = c.cf_consume(b, t, 18, conf={"isolation.level": "read_uncommitted"}, timeout_s=20)
    assert values_of(got) == [f"c{i}" for i in range(10)] + [f"a{i}" for i in range(5)] + [
        f"d{i}" for i in range(3)], got
    # Three markers take offsets too: the records of the last transaction start after two of them.
    assert got[10]["offset"] == 11 and got[15]["offset"] == 17, [m["offset"] for m in got]


def test_read_committed_waits_for_the_commit(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-lso"))
    p = txn_producer(b, unique("txn-id"))
    p.begin_transaction()
    produce_values(p, t, ["open0", "open1"])
    # The transaction is open: the last stable offset stays before it.
    early = c.cf_consume(b, t, 1, conf={"isolation.level": "read_committed"}, timeout_s=3)
    assert early == [], early
    late = c.cf_consume(b, t, 2, conf={"isolation.level": "read_uncommitted"}, timeout_s=10)
    assert values_of(late) == ["open0", "open1"], late
    p.commit_transaction(30)
    got = c.cf_consume(b, t, 2, conf={"isolation.level": "read_committed"}, timeout_s=10)
    assert values_of(got) == ["open0", "open1"], got


def test_zombie_producer_is_fenced(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-zombie"))
    txn_id = unique("txn-id")
    zombie = txn_producer(b, txn_id)
    zombie.begin_transaction()
    produce_values(zombie, t, ["zombie"])
    # A new producer with the same transactional id fences the old one and aborts its transaction.
    fresh = txn_producer(b, txn_id)
    with pytest.raises(KafkaException) as err:
        zombie.commit_transaction(30)
    assert err.value.args[0].fatal() or "fenced" in str(err.value).lower(), err.value
    fresh.begin_transaction()
    produce_values(fresh, t, ["fresh"])
    fresh.commit_transaction(30)
    got = c.cf_consume(b, t, 2, conf={"isolation.level": "read_uncommitted"}, timeout_s=10)
    assert values_of(got) == ["zombie", "fresh"], got


def _describe(bootstrap: str, txn_id: str) -> dict:
    with kschema.Conn(bootstrap) as conn:
        r = conn.call("DescribeTransactions", 0, {"TransactionalIds": [txn_id]})
    (state,) = r["TransactionStates"]
    return {"error": state["ErrorCode"], "id": state["TransactionalId"], "state": state["TransactionState"]}


def _listed(bootstrap: str, txn_id: str) -> list[str]:
    with kschema.Conn(bootstrap) as conn:
        r = conn.call("ListTransactions", 1, {"StateFilters": [], "ProducerIdFilters": [], "DurationFilter": -1})
    assert r["ErrorCode"] == 0, r
    return [s["TransactionState"] for s in r["TransactionStates"] if s["TransactionalId"] == txn_id]


def test_describe_transactions_reports_the_state(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-describe"))
    txn_id = unique("txn-id")
    p = txn_producer(b, txn_id)
    p.begin_transaction()
    produce_values(p, t, ["x"])
    deadline = time.monotonic() + 10
    while True:
        d = _describe(b, txn_id)
        if d["state"] == "Ongoing" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert d == {"error": 0, "id": txn_id, "state": "Ongoing"}, d
    assert _listed(b, txn_id) == ["Ongoing"]
    p.commit_transaction(30)
    deadline = time.monotonic() + 10
    while True:
        d = _describe(b, txn_id)
        if d["state"] == "CompleteCommit" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert d["state"] == "CompleteCommit", d


def _interleaved_transactions(b: str, t: str) -> tuple[list[str], list[str]]:
    """Two transactional producers on one partition, their transactions interleaved in the log: some
    committed, some aborted. Returns (committed values in log order, every value in log order)."""
    p1, p2 = txn_producer(b, unique("txn-a")), txn_producer(b, unique("txn-b"))
    committed, everything = [], []

    def put(p, values, committed_too):
        for v in values:
            p.produce(t, value=v.encode(), key=b"k", partition=0)
        p.flush(30)
        everything.extend(values)
        if committed_too:
            committed.extend(values)

    for rnd in range(3):
        p1.begin_transaction()
        p2.begin_transaction()
        put(p1, [f"p1-r{rnd}-a{i}" for i in range(4)], rnd != 1)
        put(p2, [f"p2-r{rnd}-a{i}" for i in range(3)], rnd != 2)
        put(p1, [f"p1-r{rnd}-b{i}" for i in range(2)], rnd != 1)
        if rnd == 1:
            p2.commit_transaction(30)
            p1.abort_transaction(30)
        elif rnd == 2:
            p1.commit_transaction(30)
            p2.abort_transaction(30)
        else:
            p1.commit_transaction(30)
            p2.commit_transaction(30)
    # A transaction aborted alone, then a last committed record after every marker.
    p2.begin_transaction()
    put(p2, ["p2-lone-abort"], False)
    p2.abort_transaction(30)
    p1.begin_transaction()
    put(p1, ["p1-last"], True)
    p1.commit_transaction(30)
    return committed, everything


def _check_isolation(b: str, t: str, committed: list[str], everything: list[str], java=None) -> None:
    # Ask for one more record than exists: nothing else may arrive (aborted records nor duplicates).
    rc = c.cf_consume(b, t, len(committed) + 1, conf={"isolation.level": "read_committed"}, timeout_s=8)
    assert values_of(rc) == committed, values_of(rc)
    ru = c.cf_consume(b, t, len(everything) + 1, conf={"isolation.level": "read_uncommitted"}, timeout_s=8)
    assert values_of(ru) == everything, values_of(ru)
    if java is not None:
        recs, _, _ = c.java_consume(java, b, t, "end", conf={"isolation.level": "read_committed"})
        assert [r["value"] for r in recs] == committed, [r["value"] for r in recs]


def test_read_committed_drops_aborted_transactions(broker, java):
    """Fetch lists the aborted transactions of the range (the partition's .txnindex), so read_committed
    consumers (librdkafka's default, and the Java client's) see every committed record once and no
    aborted one, while read_uncommitted ones see both."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-rc"))
    committed, everything = _interleaved_transactions(b, t)
    assert len(everything) - len(committed) == 10
    _check_isolation(b, t, committed, everything, java)


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_aborted_transactions_survive_a_broker_restart(broker_factory, how):
    """The aborted-transaction index is recovered with the log: after a clean restart or a kill -9
    between the abort and the read, read_committed consumers still drop the aborted records."""
    br = broker_factory()
    b = br.bootstrap
    t = c.create_topic(b, unique("txn-restart"))
    committed, everything = _interleaved_transactions(b, t)
    if how == "kill9":
        br.kill9()
        br.start()
    else:
        br.restart()
    _check_isolation(br.bootstrap, t, committed, everything)


def test_list_offsets_latest_is_the_lso_for_read_committed(broker):
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-lo"))
    p = txn_producer(b, unique("txn-id"))
    p.begin_transaction()
    produce_values(p, t, ["x0", "x1", "x2"])

    def latest(isolation: int) -> int:
        with kschema.Conn(b) as conn:
            r = conn.call("ListOffsets", 5, {"ReplicaId": -1, "IsolationLevel": isolation, "Topics": [
                {"Name": t, "Partitions": [{"PartitionIndex": 0, "CurrentLeaderEpoch": -1, "Timestamp": -1}]}]})
        (part,) = r["Topics"][0]["Partitions"]
        assert part["ErrorCode"] == 0, part
        return part["Offset"]

    # The transaction is open from offset 0: read_committed's end is its first offset.
    assert (latest(0), latest(1)) == (3, 0)
    p.commit_transaction(30)
    deadline = time.monotonic() + 10
    while latest(1) != 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    # The commit marker took offset 3.
    assert (latest(0), latest(1)) == (4, 4)


def _table(stdout: str) -> list[dict]:
    """The rows of a kafka-transactions table (a header line, then tab-separated rows)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = lines[0].split()
    rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in lines[1:]]
    return [dict(zip(header, (v.strip() for v in row))) for row in rows]


def test_kafka_transactions_tool_lists_and_describes(broker, java):
    """Apache Kafka's `kafka-transactions` tool: list, describe and describe-producers show an open
    transaction (its state, partitions, producer and first offset), then its completion."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-tool"))
    txn_id = unique("txn-tool-id")
    p = txn_producer(b, txn_id)
    p.begin_transaction()
    produce_values(p, t, ["a", "b"])
    tool = "org.apache.kafka.tools.TransactionsCommand"
    deadline = time.monotonic() + 20
    while True:
        res = java.run(tool, "--bootstrap-server", b, "describe", "--transactional-id", txn_id, timeout=90,
                       check=False)
        rows = _table(res.stdout) if res.returncode == 0 else []
        if (rows and rows[0].get("TransactionState") == "Ongoing") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows and rows[0]["TransactionState"] == "Ongoing", res.stdout + res.stderr
    assert rows[0]["TransactionalId"] == txn_id and f"{t}-0" in rows[0]["TopicPartitions"], rows
    producer_id = rows[0]["ProducerId"]
    listed = _table(java.run(tool, "--bootstrap-server", b, "list", timeout=90).stdout)
    assert [(r["ProducerId"], r["TransactionState"]) for r in listed if r["TransactionalId"] == txn_id] == [
        (producer_id, "Ongoing")], listed
    producers = _table(java.run(tool, "--bootstrap-server", b, "describe-producers", "--topic", t,
                                "--partition", "0", timeout=90).stdout)
    (mine,) = [r for r in producers if r["ProducerId"] == producer_id]
    assert mine["CurrentTransactionStartOffset"].strip("OptionalLong[]") == "0", producers
    p.commit_transaction(30)
    deadline = time.monotonic() + 20
    while True:
        rows = _table(java.run(tool, "--bootstrap-server", b, "describe", "--transactional-id", txn_id,
                               timeout=90).stdout)
        if rows[0]["TransactionState"] == "CompleteCommit" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows[0]["TransactionState"] == "CompleteCommit", rows
    producers = _table(java.run(tool, "--bootstrap-server", b, "describe-producers", "--topic", t,
                                "--partition", "0", timeout=90).stdout)
    (mine,) = [r for r in producers if r["ProducerId"] == producer_id]
    assert mine["CurrentTransactionStartOffset"] == "None", producers


VERIFICATION = "transaction.partition.verification.enable"


def _set_cluster_config(bootstrap: str, name: str, value: str | None) -> None:
    """Set (or, with None, delete) a cluster-wide broker config with IncrementalAlterConfigs."""
    op = {"Name": name, "ConfigOperation": 0, "Value": value} if value is not None else {
        "Name": name, "ConfigOperation": 1, "Value": None}
    with kschema.Conn(bootstrap) as conn:
        r = conn.call("IncrementalAlterConfigs", 1, {"Resources": [
            {"ResourceType": 4, "ResourceName": "", "Configs": [op]}], "ValidateOnly": False})
    assert [x["ErrorCode"] for x in r["Responses"]] == [0], r


def _hanging_batch(bootstrap: str, topic: str, partition: int, values: list[bytes]) -> tuple[int, int]:
    """Append a transactional batch that no coordinator knows of (Produce v11 naming a transactional id never
    initialised, for an idempotent producer id): its transaction stays open in the partition. Stamped five minutes
    ago, so that `find-hanging --max-transaction-timeout 1` takes it. Returns (producer id, epoch)."""
    with kschema.Conn(bootstrap) as conn:
        ip = conn.call("InitProducerId", 4, {"TransactionalId": None, "TransactionTimeoutMs": -1,
                                             "ProducerId": -1, "ProducerEpoch": -1})
        assert ip["ErrorCode"] == 0, ip
        pid, epoch = ip["ProducerId"], ip["ProducerEpoch"]
        batch = wire.record_batch([(b"k", v) for v in values], int(time.time() * 1000) - 300_000,
                                  attributes=0x10, producer_id=pid, producer_epoch=epoch, base_sequence=0)
        r = conn.call("Produce", 11, {"TransactionalId": unique("never-initialised"), "Acks": -1, "TimeoutMs": 10_000,
                                      "TopicData": [{"Name": topic, "PartitionData": [
                                          {"Index": partition, "Records": batch}]}]})
    (part,) = r["Responses"][0]["PartitionResponses"]
    assert part["ErrorCode"] == 0, part
    return pid, epoch


def _lso(bootstrap: str, topic: str, partitions: int) -> list[int]:
    with kschema.Conn(bootstrap) as conn:
        r = conn.call("ListOffsets", 5, {"ReplicaId": -1, "IsolationLevel": 1, "Topics": [
            {"Name": topic, "Partitions": [{"PartitionIndex": p, "CurrentLeaderEpoch": -1, "Timestamp": -1}
                                           for p in range(partitions)]}]})
    parts = sorted(r["Topics"][0]["Partitions"], key=lambda x: x["PartitionIndex"])
    assert all(x["ErrorCode"] == 0 for x in parts), parts
    return [x["Offset"] for x in parts]


def test_kafka_transactions_tool_finds_and_aborts_hanging_transactions(broker, java):
    """Apache Kafka's `kafka-transactions` tool on a hanging transaction (a transactional batch appended without
    its coordinator knowing, Produce v11): `find-hanging` lists it, `abort` (by --start-offset, and by
    --producer-id/--producer-epoch/--coordinator-epoch) has the admin client send WriteTxnMarkers to the leader,
    which writes an ABORT marker; the last stable offset moves past it and a read_committed consumer reads the
    records after it, none of the aborted ones. Both brokers check a Produce v11's transactional batches with the
    coordinator (KIP-890 part 1) unless `transaction.partition.verification.enable` is off, which the test turns
    off (cluster-wide, dynamically) for the append."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-hanging"), partitions=2)
    _set_cluster_config(b, VERIFICATION, "false")
    try:
        deadline = time.monotonic() + 20
        while True:  # Kafka applies a cluster-wide config once its metadata record reaches the broker
            try:
                hanging = {p: _hanging_batch(b, t, p, [f"hanging-{p}-{i}".encode() for i in range(3)])
                           for p in (0, 1)}
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        _set_cluster_config(b, VERIFICATION, None)
    after = Producer({"bootstrap.servers": b, "linger.ms": 0})
    for p in (0, 1):
        after.produce(t, value=f"after-{p}".encode(), key=b"k", partition=p)
    assert after.flush(30) == 0
    # Offsets 0-2 hang open on both partitions: read_committed ends at 0.
    assert _lso(b, t, 2) == [0, 0]

    tool = "org.apache.kafka.tools.TransactionsCommand"
    found = _table(java.run(tool, "--bootstrap-server", b, "find-hanging", "--topic", t,
                            "--max-transaction-timeout", "1", timeout=90).stdout)
    assert sorted((int(r["Partition"]), int(r["ProducerId"]), int(r["ProducerEpoch"]), int(r["StartOffset"]))
                  for r in found) == [(p, pid, epoch, 0) for p, (pid, epoch) in sorted(hanging.items())], found

    java.run(tool, "--bootstrap-server", b, "abort", "--topic", t, "--partition", "0", "--start-offset", "0",
             timeout=90)
    (row1,) = [r for r in found if r["Partition"] == "1"]
    java.run(tool, "--bootstrap-server", b, "abort", "--topic", t, "--partition", "1",
             "--producer-id", row1["ProducerId"], "--producer-epoch", row1["ProducerEpoch"],
             "--coordinator-epoch", row1["CoordinatorEpoch"], timeout=90)
    # The markers took offset 4: everything is stable, and only the records after the aborted ones are read.
    assert _lso(b, t, 2) == [5, 5]
    got = c.cf_consume(b, t, 2, conf={"isolation.level": "read_committed"}, timeout_s=15)
    assert sorted(values_of(got)) == ["after-0", "after-1"], got
    with kschema.Conn(b) as conn:
        r = conn.call("DescribeProducers", 0, {"Topics": [{"Name": t, "PartitionIndexes": [0, 1]}]})
    open_txns = [(p["PartitionIndex"], s["ProducerId"], s["CurrentTxnStartOffset"])
                 for p in r["Topics"][0]["Partitions"] for s in p["ActiveProducers"]
                 if s["CurrentTxnStartOffset"] >= 0]
    assert open_txns == [], r


def test_txn_offset_commit_outside_the_transaction_is_transaction_abortable_from_v4(broker):
    """TxnOffsetCommit for a group whose offsets partition is not in the producer's transaction (no
    AddOffsetsToTxn): INVALID_TXN_STATE up to v3 and TRANSACTION_ABORTABLE from v4 (KIP-890: the versions whose
    clients know it), as Kafka's group coordinator answers once the transaction coordinator says the partition is
    not in the transaction; nothing is committed."""
    invalid_txn_state, transaction_abortable = 48, 120
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-abortable"))
    txn_id, group = unique("txn-abortable-id"), unique("txn-abortable-g")
    with kschema.Conn(b) as conn:
        deadline = time.monotonic() + 30
        while True:  # the first FindCoordinator of a kind creates its internal topic; then its shards load
            found = conn.call("FindCoordinator", 4, {"KeyType": 0, "CoordinatorKeys": [group]})
            conn.call("FindCoordinator", 4, {"KeyType": 1, "CoordinatorKeys": [txn_id]})
            ip = conn.call("InitProducerId", 4, {"TransactionalId": txn_id, "TransactionTimeoutMs": 60_000,
                                                 "ProducerId": -1, "ProducerEpoch": -1})
            ready = ip["ErrorCode"] == 0 and found["Coordinators"][0]["ErrorCode"] == 0
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ip["ErrorCode"] == 0 and found["Coordinators"][0]["ErrorCode"] == 0, (ip, found)
        codes = {}
        for v in range(5):
            r = conn.call("TxnOffsetCommit", v, {
                "TransactionalId": txn_id, "GroupId": group, "ProducerId": ip["ProducerId"],
                "ProducerEpoch": ip["ProducerEpoch"], "GenerationId": -1, "MemberId": "", "GroupInstanceId": None,
                "Topics": [{"Name": t, "Partitions": [{"PartitionIndex": 0, "CommittedOffset": 7,
                                                       "CommittedLeaderEpoch": -1, "CommittedMetadata": None}]}]})
            codes[v] = r["Topics"][0]["Partitions"][0]["ErrorCode"]
        fetched = conn.call("OffsetFetch", 1, {"GroupId": group, "Topics": [{"Name": t, "PartitionIndexes": [0]}]})
    assert codes == {0: invalid_txn_state, 1: invalid_txn_state, 2: invalid_txn_state, 3: invalid_txn_state,
                     4: transaction_abortable}, codes
    assert fetched["Topics"][0]["Partitions"][0]["CommittedOffset"] == -1, fetched


def _init_transactional(conn, txn_id: str) -> tuple[int, int]:
    """InitProducerId for txn_id, once its coordinator is ready: (producer id, epoch)."""
    deadline = time.monotonic() + 30
    while True:  # the first FindCoordinator creates __transaction_state; then its shards load
        conn.call("FindCoordinator", 4, {"KeyType": 1, "CoordinatorKeys": [txn_id]})
        ip = conn.call("InitProducerId", 4, {"TransactionalId": txn_id, "TransactionTimeoutMs": 60_000,
                                             "ProducerId": -1, "ProducerEpoch": -1})
        if ip["ErrorCode"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ip["ErrorCode"] == 0, ip
    return ip["ProducerId"], ip["ProducerEpoch"]


def _txn_produce(conn, version: int, txn_id: str, topic: str, partition: int, pid: int, epoch: int,
                 value: bytes, sequence: int = 0) -> int:
    """One transactional batch (one record at `sequence`, stamped five minutes ago) by Produce `version`: its error
    code."""
    batch = wire.record_batch([(b"k", value)], int(time.time() * 1000) - 300_000, attributes=0x10,
                              producer_id=pid, producer_epoch=epoch, base_sequence=sequence)
    r = conn.call("Produce", version, {"TransactionalId": txn_id, "Acks": -1, "TimeoutMs": 10_000,
                                       "TopicData": [{"Name": topic, "PartitionData": [
                                           {"Index": partition, "Records": batch}]}]})
    (part,) = r["Responses"][0]["PartitionResponses"]
    return part["ErrorCode"]


def test_produce_outside_the_transaction_is_refused_so_nothing_hangs(broker, java):
    """KIP-890 part 1 (`transaction.partition.verification.enable`, on by default): before appending a
    transactional batch of Produce v11 or older for a producer whose transaction is not open on the partition,
    the leader asks the transaction coordinator (AddPartitionsToTxn `verify_only`) whether the partition is in
    it. One that the client never added is refused (TRANSACTION_ABORTABLE to v11, INVALID_TXN_STATE to older
    versions, which do not know it; INVALID_PRODUCER_ID_MAPPING for a producer id that is not the transactional
    id's) and nothing is appended, so the commit leaves no transaction open: `kafka-transactions find-hanging`
    finds none, DescribeProducers lists no open transaction, and the last stable offset is the log end. Without
    the check, partitions 1 and 2 would hang open (their batches appended, no marker ever written)."""
    invalid_txn_state, invalid_pid_mapping, transaction_abortable = 48, 49, 120
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-verify"), partitions=3)
    txn_id = unique("txn-verify-id")
    with kschema.Conn(b) as conn:
        pid, epoch = _init_transactional(conn, txn_id)
        added = conn.call("AddPartitionsToTxn", 3, {
            "V3AndBelowTransactionalId": txn_id, "V3AndBelowProducerId": pid, "V3AndBelowProducerEpoch": epoch,
            "V3AndBelowTopics": [{"Name": t, "Partitions": [0]}]})
        assert [p["PartitionErrorCode"] for r in added["ResultsByTopicV3AndBelow"]
                for p in r["ResultsByPartition"]] == [0], added
        codes = {
            "added-v11": _txn_produce(conn, 11, txn_id, t, 0, pid, epoch, b"in"),
            "not-added-v11": _txn_produce(conn, 11, txn_id, t, 1, pid, epoch, b"out-v11"),
            "not-added-v9": _txn_produce(conn, 9, txn_id, t, 1, pid, epoch, b"out-v9"),
        }
        idem = conn.call("InitProducerId", 4, {"TransactionalId": None, "TransactionTimeoutMs": -1,
                                               "ProducerId": -1, "ProducerEpoch": -1})
        codes["other-producer-v11"] = _txn_produce(conn, 11, txn_id, t, 2, idem["ProducerId"],
                                                   idem["ProducerEpoch"], b"stranger")
        assert codes == {"added-v11": 0, "not-added-v11": transaction_abortable, "not-added-v9": invalid_txn_state,
                         "other-producer-v11": invalid_pid_mapping}, codes
        ended = conn.call("EndTxn", 3, {"TransactionalId": txn_id, "ProducerId": pid, "ProducerEpoch": epoch,
                                        "Committed": True})
        assert ended["ErrorCode"] == 0, ended
        deadline = time.monotonic() + 20
        while _lso(b, t, 3) != [2, 0, 0] and time.monotonic() < deadline:  # the commit marker is written after
            time.sleep(0.2)
        r = conn.call("DescribeProducers", 0, {"Topics": [{"Name": t, "PartitionIndexes": [0, 1, 2]}]})
    # Partition 0: the record and the commit marker; nothing was appended to the others.
    assert _lso(b, t, 3) == [2, 0, 0]
    open_txns = [(p["PartitionIndex"], s["ProducerId"], s["CurrentTxnStartOffset"])
                 for p in r["Topics"][0]["Partitions"] for s in p["ActiveProducers"]
                 if s["CurrentTxnStartOffset"] >= 0]
    assert open_txns == [], r
    found = java.run("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", b, "find-hanging",
                     "--topic", t, "--max-transaction-timeout", "1", timeout=90).stdout
    assert _table(found) == [], found
    got = c.cf_consume(b, t, 1, conf={"isolation.level": "read_committed"}, timeout_s=15)
    assert values_of(got) == ["in"], got


def _transaction_version(conn) -> int:
    r = conn.call("ApiVersions", 3, {"ClientSoftwareName": "e2e", "ClientSoftwareVersion": "1"})
    return next((f["MaxVersionLevel"] for f in r.get("FinalizedFeatures", []) if f["Name"] == "transaction.version"), 0)


def _set_transaction_version(bootstrap: str, level: int) -> None:
    """kafka-features upgrade/downgrade of transaction.version (UpdateFeatures v1), then wait until this broker
    advertises it."""
    with kschema.Conn(bootstrap) as conn:
        upgrade = 1 if _transaction_version(conn) < level else 2
        r = conn.call("UpdateFeatures", 1, {"TimeoutMs": 30_000, "ValidateOnly": False, "FeatureUpdates": [
            {"Feature": "transaction.version", "MaxVersionLevel": level, "UpgradeType": upgrade}]})
        assert r["ErrorCode"] == 0, r
        deadline = time.monotonic() + 20
        while _transaction_version(conn) != level:
            assert time.monotonic() < deadline, "transaction.version not advertised"
            time.sleep(0.2)


def test_java_producer_pinned_to_transaction_version_1_is_verified_and_commits(broker, java):
    """The Java producer 4.3.1 on a cluster whose `transaction.version` is 1 (`kafka-features downgrade`) runs
    transaction version 1: it adds partitions itself and produces with Produce v11, whose batches the leader
    verifies with the coordinator (KIP-890 part 1) before appending. Its transactions commit and abort as before
    (no epoch bump between them), with the offsets sent in one of them committed for the group."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("tv1-java"))
    group, txn_id = unique("tv1-java-group"), unique("tv1-java-txn")
    _set_transaction_version(b, 1)
    try:
        res = java.run("E2EClient", "txnepochs", b, t, txn_id, group, "max.block.ms=60000", timeout=120)
    finally:
        _set_transaction_version(b, 2)
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["type"] == "done", (lines, res.stderr[-3000:])
    done = lines[-1]
    assert done["transaction_version"] == 1, done
    assert len(set(done["epochs"])) == 1 and len(set(done["producer_ids"])) == 1, done
    got = c.cf_consume(b, t, 3, conf={"isolation.level": "read_committed"}, timeout_s=20)
    assert values_of(got) == ["c0", "c2", "c3"], got
    with kschema.Conn(b) as conn:
        fetched = conn.call("OffsetFetch", 1, {"GroupId": group, "Topics": [{"Name": t, "PartitionIndexes": [0]}]})
    assert fetched["Topics"][0]["Partitions"][0]["CommittedOffset"] == 7, fetched


OUT_OF_ORDER_SEQUENCE, TRANSACTION_ABORTABLE = 45, 120


def _add_partitions(conn, txn_id: str, pid: int, epoch: int, topic: str, partitions: list[int]) -> None:
    added = conn.call("AddPartitionsToTxn", 3, {
        "V3AndBelowTransactionalId": txn_id, "V3AndBelowProducerId": pid, "V3AndBelowProducerEpoch": epoch,
        "V3AndBelowTopics": [{"Name": topic, "Partitions": partitions}]})
    assert [p["PartitionErrorCode"] for r in added["ResultsByTopicV3AndBelow"]
            for p in r["ResultsByPartition"]] == [0] * len(partitions), added


def test_a_batch_above_the_lowest_sequence_being_verified_is_out_of_order(broker):
    """KIP-890 part 1 on the leader (Kafka's `VerificationStateEntry`): a verification keeps the lowest sequence
    of the requests that started it until the producer's first append or marker, and a batch of that producer
    starting above it is OUT_OF_ORDER_SEQUENCE_NUMBER, so no gap is appended. Here a Produce v11 at sequence 3 for
    a partition not yet added is refused (TRANSACTION_ABORTABLE) and leaves its verification behind; once the
    partition is added, sequence 5 is out of order, 3 then 4 go in and commit (read by librdkafka)."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-lowest-seq"))
    txn_id = unique("txn-lowest-seq-id")
    with kschema.Conn(b) as conn:
        pid, epoch = _init_transactional(conn, txn_id)
        first = _txn_produce(conn, 11, txn_id, t, 0, pid, epoch, b"early", sequence=3)
        _add_partitions(conn, txn_id, pid, epoch, t, [0])
        codes = [first] + [_txn_produce(conn, 11, txn_id, t, 0, pid, epoch, v, sequence=s)
                           for v, s in [(b"five", 5), (b"three", 3), (b"four", 4)]]
        assert codes == [TRANSACTION_ABORTABLE, OUT_OF_ORDER_SEQUENCE, 0, 0], codes
        ended = conn.call("EndTxn", 3, {"TransactionalId": txn_id, "ProducerId": pid, "ProducerEpoch": epoch,
                                        "Committed": True})
        assert ended["ErrorCode"] == 0, ended
    got = c.cf_consume(b, t, 2, conf={"isolation.level": "read_committed"}, timeout_s=20)
    assert values_of(got) == ["three", "four"], got


def test_a_transaction_version_2_producer_with_no_state_starts_at_sequence_0(broker):
    """Transaction version 2 (Produce v12, the leader adds the partition itself): a producer with no state on the
    partition must start its transaction there at sequence 0 (Kafka 4.3.1's `ProducerAppendInfo.checkSequence`),
    or the batch is OUT_OF_ORDER_SEQUENCE_NUMBER and nothing is appended; at 0 it goes in and commits (EndTxn v5,
    read by librdkafka)."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-tv2-seq"))
    txn_id = unique("txn-tv2-seq-id")
    with kschema.Conn(b) as conn:
        assert _transaction_version(conn) == 2
        pid, epoch = _init_transactional(conn, txn_id)
        codes = [_txn_produce(conn, 12, txn_id, t, 0, pid, epoch, v, sequence=s)
                 for v, s in [(b"one", 1), (b"zero", 0)]]
        assert codes == [OUT_OF_ORDER_SEQUENCE, 0], codes
        ended = conn.call("EndTxn", 5, {"TransactionalId": txn_id, "ProducerId": pid, "ProducerEpoch": epoch,
                                        "Committed": True})
        assert ended["ErrorCode"] == 0, ended
    got = c.cf_consume(b, t, 1, conf={"isolation.level": "read_committed"}, timeout_s=20)
    assert values_of(got) == ["zero"], got


def _aborted_transactions(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, int]]]:
    """A read_committed Fetch v11 of every partition from offset 0: each one's aborted transactions."""
    with kschema.Conn(bootstrap) as conn:
        r = conn.call("Fetch", 11, {
            "ReplicaId": -1, "MaxWaitMs": 0, "MinBytes": 0, "MaxBytes": 1 << 20, "IsolationLevel": 1,
            "SessionId": 0, "SessionEpoch": -1, "Topics": [{"Topic": topic, "Partitions": [
                {"Partition": p, "CurrentLeaderEpoch": -1, "FetchOffset": 0, "LogStartOffset": -1,
                 "PartitionMaxBytes": 1 << 20} for p in range(partitions)]}],
            "ForgottenTopicsData": [], "RackId": ""})
    assert r["ErrorCode"] == 0, r
    parts = r["Responses"][0]["Partitions"]
    assert all(p["ErrorCode"] == 0 for p in parts), parts
    return {p["PartitionIndex"]: [(a["ProducerId"], a["FirstOffset"]) for a in p["AbortedTransactions"] or []]
            for p in parts}


def test_an_abort_marker_where_the_producer_wrote_nothing_aborts_no_transaction(broker):
    """A transaction that added two partitions but wrote to one only, then aborted: both get an ABORT marker, but
    only the partition with data had a transaction to abort. Kafka's producer state completes none for a marker
    of a producer with nothing open (`ProducerAppendInfo.appendEndTxnMarker`), so that partition's aborted
    transactions (its .txnindex), which a read_committed Fetch carries, stay empty; the other lists the producer
    from its first offset. librdkafka's read_committed consumer reads nothing of either."""
    b = broker.bootstrap
    t = c.create_topic(b, unique("txn-empty-abort"), partitions=2)
    txn_id = unique("txn-empty-abort-id")
    with kschema.Conn(b) as conn:
        pid, epoch = _init_transactional(conn, txn_id)
        _add_partitions(conn, txn_id, pid, epoch, t, [0, 1])
        assert _txn_produce(conn, 11, txn_id, t, 0, pid, epoch, b"gone") == 0
        ended = conn.call("EndTxn", 3, {"TransactionalId": txn_id, "ProducerId": pid, "ProducerEpoch": epoch,
                                        "Committed": False})
        assert ended["ErrorCode"] == 0, ended
    deadline = time.monotonic() + 20
    while _lso(b, t, 2) != [2, 1] and time.monotonic() < deadline:  # the markers are written after EndTxn
        time.sleep(0.2)
    assert _lso(b, t, 2) == [2, 1]
    assert _aborted_transactions(b, t, 2) == {0: [(pid, 0)], 1: []}
    got = c.cf_consume(b, t, 1, conf={"isolation.level": "read_committed"}, timeout_s=5)
    assert got == [], got
