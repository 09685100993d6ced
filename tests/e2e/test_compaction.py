"""Log compaction seen by real clients: many versions of a few keys written to a
cleanup.policy=compact topic with small segments; once the broker's cleaner has run, a
consumer (confluent-kafka, then the Java client) reading from the beginning builds the same
table (each key's latest value) from far fewer records, at the offsets they were written at.
A Kafka Streams KTable is restored from its compacted changelog after its local state is
wiped. Runs against Kafka too (E2E_BROKER=kafka): small segment.ms,
min.cleanable.dirty.ratio and cleaner backoff make its cleaner run within seconds."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter

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


def java_table(java, bootstrap, topic):
    """The Java consumer reads partition 0 from the beginning to its end: (key -> (offset, value), records read)."""
    recs, _, done = c.java_consume(java, bootstrap, topic, "end", conf={"poll.total.ms": "30000"})
    assert done["count"] == len(recs)
    table: dict[str, tuple[int, str | None]] = {}
    last = -1
    for r in recs:
        assert r["offset"] > last, "offsets must grow"
        last = r["offset"]
        table[r["key"]] = (r["offset"], r["value"])
    return table, len(recs)


def test_compacted_topic_keeps_latest_value_per_key(broker_factory, java):
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
    # The Java client too, from the full (or partly cleaned) log.
    java_before, _ = java_table(java, b, t)
    assert java_before == expected

    deadline = time.monotonic() + 90
    while True:
        table, count = read_table(b, t, last_offset)
        assert table == expected, "the table changed under compaction"
        if count * 4 < total:
            break
        assert time.monotonic() < deadline, f"still {count} of {total} records after 90 s"
        time.sleep(1)

    # A Java consumer reading the compacted log from the beginning builds the table it built
    # before compaction, from the fewer records that are left.
    java_after, java_count = java_table(java, b, t)
    assert java_after == java_before
    assert java_count * 4 < total, f"the Java consumer read {java_count} of {total} records"


def changelog_records(bootstrap, topic, timeout_s=30.0):
    """How many records partition 0 of `topic` holds from its beginning to its end now."""
    consumer = c.cf_consumer(bootstrap)
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        count, last_seen = 0, -1
        deadline = time.monotonic() + timeout_s
        while last_seen < high - 1:
            assert time.monotonic() < deadline, f"read only up to offset {last_seen} of {high}"
            for m in consumer.consume(num_messages=500, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                last_seen = m.offset()
                count += 1
        return count
    finally:
        consumer.close()


def wait_end_offset(bootstrap, topic, end, proc, timeout_s=60.0):
    """Waits until partition 0 of `topic` (made by the Streams process `proc`) ends at `end` or later."""
    consumer = c.cf_consumer(bootstrap)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, "StreamsTable exited early"
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
            except Exception:  # noqa: BLE001 - the changelog is not created yet
                high = -1
            if high >= end:
                return
            assert time.monotonic() < deadline, f"{topic} ends at {high}, not {end}, after {timeout_s} s"
            time.sleep(0.05)
    finally:
        consumer.close()


def streams_lines(proc, timeout_s):
    out, err = proc.communicate(timeout=timeout_s)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert proc.returncode == 0, f"StreamsTable exited {proc.returncode}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    return lines


def test_streams_restores_ktable_from_compacted_changelog(broker_factory, java_streams, tmp_path):
    """Kafka Streams (at_least_once) counts records per key into a KTable; its changelog topic is
    compacted by the broker; with the application's local state wiped, a new instance restores the
    table from the compacted changelog (far fewer records than updates) and goes on counting from it."""
    br = broker_factory({"log.cleaner.backoff.ms": "100", "group.initial.rebalance.delay.ms": "0"})
    b = br.bootstrap
    src = unique("streams-in")
    app = unique("streams-app")
    changelog = f"{app}-counts-changelog"
    c.create_topic(b, src, 1)
    # Streams creates the changelog (cleanup.policy=compact); topic.* settings go into its config.
    # Streams members do not leave the group on close: a short session lets the second instance's
    # rebalance go on without waiting 45 s for the first one's session to expire.
    conf = [
        "topic.segment.ms=100",
        "topic.min.cleanable.dirty.ratio=0.01",
        "consumer.session.timeout.ms=6000",
        "consumer.heartbeat.interval.ms=1000",
        "streams.total.ms=60000",
    ]
    expected: Counter[str] = Counter()

    def produce(chunk, n):
        recs = [{"key": f"k{(chunk * n + i) % KEYS}", "value": f"v{chunk}-{i}"} for i in range(n)]
        for d in c.cf_produce(b, src, recs, {"linger.ms": 0}):
            assert d.err is None, d.err
        expected.update(r["key"] for r in recs)

    # First instance: counts the input as it arrives in chunks, so that its changelog updates
    # are spread over many small segments (each chunk's updates are in before the next chunk
    # comes, 150 ms later: the last one, alone in the active segment, is one record); it stops
    # once the table adds up to everything.
    chunks = 15
    first_total = chunks * PER_CHUNK + 1
    proc = java_streams.popen(
        "StreamsTable", b, app, src, str(tmp_path / "state1"), str(first_total), *conf,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for chunk in range(chunks):
            produce(chunk, PER_CHUNK)
            wait_end_offset(b, changelog, (chunk + 1) * PER_CHUNK, proc)
            time.sleep(0.15)
        produce(chunks, 1)
        lines = streams_lines(proc, 90)
    finally:
        if proc.poll() is None:
            proc.kill()

    table = [x for x in lines if x["type"] == "table"][-1]
    assert table["counts"] == dict(expected)
    assert sum(expected.values()) == first_total

    # The broker's cleaner compacts the changelog: one update per record counted, a few left.
    deadline = time.monotonic() + 90
    while (left := changelog_records(b, changelog)) * 4 >= first_total:
        assert time.monotonic() < deadline, f"changelog still has {left} of {first_total} records after 90 s"
        time.sleep(1)

    # Local state wiped (a new state dir): the second instance restores from the compacted
    # changelog, then counts the new input on top of the restored table.
    shutil.rmtree(tmp_path / "state1")
    produce(chunks + 1, PER_CHUNK)
    total = sum(expected.values())
    proc = java_streams.popen(
        "StreamsTable", b, app, src, str(tmp_path / "state2"), str(total), *conf,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = streams_lines(proc, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
    restored = [x for x in lines if x["type"] == "restored" and x["store"] == "counts"]
    assert restored, f"no restoration reported: {lines}"
    assert 0 < sum(x["records"] for x in restored) <= left

    table = [x for x in lines if x["type"] == "table"][-1]
    assert table["counts"] == dict(expected)
