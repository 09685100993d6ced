"""Log compaction seen by real clients: many versions of a few keys written to a
cleanup.policy=compact topic with small segments; once the broker's cleaner has run, a
consumer reading from the beginning builds the same table (each key's latest value) from
far fewer records, at the offsets they were written at. Runs against Kafka too
(E2E_BROKER=kafka): small segment.ms, min.cleanable.dirty.ratio and cleaner backoff make
its cleaner run within seconds."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import clients as c
from conftest import unique

KEYS = 10
CHUNKS = 20
PER_CHUNK = 100


def read_table(bootstrap, topic, last_offset, timeout_s=30.0):
    """Reads partition 0 from the beginning through `last_offset`: (key -> (offset, value), records read)."""
    consumer = c.cf_consumer(bootstrap)
    table: dict[str, tuple[int, str | None]] = {}
    count = 0
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        last_seen = -1
        while last_seen < last_offset:
            assert time.monotonic() < deadline, f"read only up to offset {last_seen} of {last_offset}"
            for m in consumer.consume(num_messages=500, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                assert m.offset() > last_seen, "offsets must grow"
                last_seen = m.offset()
                count += 1
                key = m.key().decode()
                value = m.value().decode() if m.value() is not None else None
                table[key] = (m.offset(), value)
    finally:
        consumer.close()
    return table, count


def test_compacted_topic_keeps_latest_value_per_key(broker_factory):
    br = broker_factory({"log.cleaner.backoff.ms": "100"})
    b = br.bootstrap
    t = unique("compact")
    c.create_topic(
        b,
        t,
        1,
        {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
        },
    )
    expected: dict[str, tuple[int, str]] = {}
    total = 0
    for chunk in range(CHUNKS + 1):
        n = PER_CHUNK if chunk < CHUNKS else 1
        recs = [
            {"key": f"k{(chunk * PER_CHUNK + i) % KEYS}", "value": f"v{chunk}-{i}"}
            for i in range(n)
        ]
        dels = c.cf_produce(b, t, recs, {"linger.ms": 0})
        for r, d in zip(recs, dels):
            assert d.err is None, d.err
            expected[r["key"]] = (d.offset, r["value"])
        total += n
        # The next append rolls the segment (segment.ms): many small sealed segments.
        time.sleep(0.15)
    last_offset = max(o for o, _ in expected.values())

    # Before compaction has necessarily run, the table is already right.
    table, _ = read_table(b, t, last_offset)
    assert table == expected

    deadline = time.monotonic() + 90
    while True:
        table, count = read_table(b, t, last_offset)
        assert table == expected, "the table changed under compaction"
        if count * 4 < total:
            break
        assert time.monotonic() < deadline, f"still {count} of {total} records after 90 s"
        time.sleep(1)
