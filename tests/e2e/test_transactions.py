"""Transactions (issue 15) with confluent-kafka-python's transactional producer: commit and abort, the
last stable offset (a read_committed consumer sees nothing of a transaction still open), a zombie producer
fenced by a new one with the same transactional id, and DescribeTransactions/ListTransactions. Passes
against Apache Kafka too (E2E_BROKER=kafka).
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException, Producer

import clients as c
import kschema
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
