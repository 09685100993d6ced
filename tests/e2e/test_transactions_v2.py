"""Transaction version 2 (KIP-890, issue 15): a new node finalizes `transaction.version` 2, so the Java
producer 4.3.1 runs its transactions with an epoch bump at the end of each (EndTxn v5), adds partitions
implicitly through Produce v12 and the group's offsets partition through TxnOffsetCommit v5 (no
AddPartitionsToTxn / AddOffsetsToTxn of its own). A librdkafka transactional producer (transaction
version 1 requests) keeps working on the same broker. Passes against Apache Kafka too
(E2E_BROKER=kafka).
"""

from __future__ import annotations

import json

from confluent_kafka import Consumer, TopicPartition

import clients as c
from conftest import unique
from test_transactions import produce_values, txn_producer, values_of


def test_java_producer_uses_transaction_version_2_and_librdkafka_still_works(broker, java):
    b = broker.bootstrap
    t = c.create_topic(b, unique("tv2"))
    group = unique("tv2-group")
    txn_id = unique("tv2-txn")
    res = java.run("E2EClient", "txnepochs", b, t, txn_id, group, "max.block.ms=60000", timeout=120)
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["type"] == "done", (lines, res.stderr[-3000:])
    done = lines[-1]
    assert done["transaction_version"] == 2, done
    # Each transaction ended with a bumped epoch under the same producer id: the client ran version 2
    # (with version 1 the epoch stays at the one InitProducerId gave).
    epochs = done["epochs"]
    assert epochs == list(range(epochs[0], epochs[0] + 4)) and epochs[0] >= 1, done
    assert len(set(done["producer_ids"])) == 1, done

    # librdkafka (transaction version 1 requests) on the same broker.
    p = txn_producer(b, unique("tv1-txn"))
    p.begin_transaction()
    produce_values(p, t, ["r0"])
    p.commit_transaction(30)
    p.begin_transaction()
    produce_values(p, t, ["ra1"])
    p.abort_transaction(30)
    p.begin_transaction()
    produce_values(p, t, ["r2"])
    p.commit_transaction(30)

    committed = ["c0", "c2", "c3", "r0", "r2"]
    got = c.cf_consume(b, t, len(committed), conf={"isolation.level": "read_committed"}, timeout_s=20)
    assert values_of(got) == committed, got
    # Nothing more, under read_committed (the aborted ones are in the log: read_uncommitted sees them).
    everything = c.cf_consume(b, t, len(committed) + 2, conf={"isolation.level": "read_uncommitted"},
                              timeout_s=20)
    assert sorted(values_of(everything)) == sorted(committed + ["a1", "ra1"]), everything

    # The offsets sent in the third transaction (TxnOffsetCommit v5) are the group's.
    consumer = Consumer({"bootstrap.servers": b, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(t, 0)], timeout=20)
    finally:
        consumer.close()
    assert offsets[0].offset == 7, offsets
