"""A damaged `__consumer_offsets` partition never makes a group forget its commits silently.

200 commits for one group, a clean stop, the magic byte of one batch in the middle of the group's
`__consumer_offsets-N` segment damaged, a restart. Real consumers of that group with
auto.offset.reset=earliest must not start again from the beginning: confluent-kafka (subscribe) and
kafka-python (assign, which reads the committed offset with OffsetFetch) get nothing and keep
retrying, and confluent-kafka's committed() fails instead of answering "no offset". Against Kafka
4.3.1 the group's requests answer NOT_COORDINATOR; Fjord answers the same. Once the batch is
repaired and the broker restarted, the consumer resumes at the committed offset.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

import clients as c
from conftest import unique

COMMITS = 200
RECORDS = 300
MAGIC_AT = 16  # byte position of the magic byte in a v2 batch header
QUIET_S = 8.0  # how long the consumers are watched after the restart


def java_hash(s: str) -> int:
    """Java's String.hashCode (the group ids here are ASCII, one UTF-16 unit per byte)."""
    h = 0
    for b in s.encode("ascii"):
        h = (h * 31 + b) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group: str, partitions: int) -> int:
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def offsets_dirs(data_dir: Path) -> dict[int, Path]:
    """The `__consumer_offsets-N` directories under a broker's data dir (Kafka keeps them one level down)."""
    found = {}
    for d in data_dir.rglob("__consumer_offsets-*"):
        if d.is_dir():
            found[int(d.name.rsplit("-", 1)[1])] = d
    return found


def batch_positions(seg: bytes) -> list[int]:
    out, at = [], 0
    while at + 12 <= len(seg):
        length = int.from_bytes(seg[at + 8 : at + 12], "big", signed=True)
        if length <= 0:
            break
        out.append(at)
        at += 12 + length
    return out


def group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": 6000,
        }
    )


def cf_watch(bootstrap: str, topic: str, group: str) -> list[int]:
    """Offsets a subscribed confluent-kafka consumer of `group` delivers within QUIET_S."""
    cons = group_consumer(bootstrap, group)
    got: list[int] = []
    try:
        cons.subscribe([topic])
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            for m in cons.consume(num_messages=100, timeout=0.3):
                if m.error() is None:
                    got.append(m.offset())
    finally:
        cons.close()
    return got


def kp_watch(bootstrap: str, topic: str, group: str) -> list[int]:
    """Offsets an assigned kafka-python consumer of `group` (position from its committed offset)
    delivers within QUIET_S. Runs in a thread: a client blocked retrying counts as delivering nothing."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    got: list[int] = []
    stop = threading.Event()

    def run():
        kc = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=5000,
        )
        try:
            kc.assign([KTP(topic, 0)])
            while not stop.is_set():
                for _tp, msgs in kc.poll(timeout_ms=300).items():
                    got.extend(m.offset for m in msgs)
        except Exception:  # noqa: BLE001 - an error is not a silent reset
            pass
        finally:
            try:
                kc.close()
            except Exception:  # noqa: BLE001
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(QUIET_S)
    stop.set()
    t.join(timeout=15)
    return list(got)


def committed(bootstrap: str, topic: str, group: str, timeout_s: float = 5.0) -> int | None:
    """confluent-kafka's committed offset of topic-0 for `group`; None if the call fails."""
    cons = group_consumer(bootstrap, group)
    try:
        return cons.committed([TopicPartition(topic, 0)], timeout=timeout_s)[0].offset
    except KafkaException:
        return None
    finally:
        cons.close()


def test_damaged_offsets_partition_is_not_read_as_no_commit(broker_factory):
    br = broker_factory()
    b = br.bootstrap
    t = c.create_topic(b, unique("coord-load"))
    assert all(d.err is None for d in c.cf_produce(b, t, c.records(RECORDS, "r", headers=False)))
    group = f"victim-{uuid.uuid4().hex[:8]}"
    cons = group_consumer(b, group)
    try:
        for offset in range(1, COMMITS + 1):
            cons.commit(offsets=[TopicPartition(t, 0, offset)], asynchronous=False)
    finally:
        cons.close()
    assert committed(b, t, group) == COMMITS
    # a group in another shard (when there is more than one), to check it keeps working
    dirs = offsets_dirs(br.data_dir)
    assert dirs, "no __consumer_offsets directory"
    n = len(dirs)
    victim_p = offsets_partition(group, n)
    other = next(
        g for g in (f"other-{i}-{uuid.uuid4().hex[:6]}" for i in range(1000)) if n == 1 or offsets_partition(g, n) != victim_p
    )
    other_cons = group_consumer(b, other)
    try:
        other_cons.commit(offsets=[TopicPartition(t, 0, 7)], asynchronous=False)
    finally:
        other_cons.close()
    br.stop()

    seg = dirs[victim_p] / "00000000000000000000.log"
    data = bytearray(seg.read_bytes())
    positions = batch_positions(bytes(data))
    assert len(positions) >= COMMITS, f"{len(positions)} batches"
    # the middle of the victim's commits (the partition may hold other records before them)
    magic_at = positions[len(positions) - COMMITS // 2] + MAGIC_AT
    assert data[magic_at] == 2
    data[magic_at] = 0
    seg.write_bytes(bytes(data))

    br.start()
    try:
        # neither client silently starts again from the beginning (or anywhere)
        assert cf_watch(b, t, group) == [], "confluent-kafka consumed after losing its commit"
        assert kp_watch(b, t, group) == [], "kafka-python consumed after losing its commit"
        # librdkafka's committed() fails (or, never, answers the real offset): not OFFSET_INVALID (-1001)
        got = committed(b, t, group)
        assert got in (None, COMMITS), f"committed() answered {got}"
        if n > 1:
            assert committed(b, t, other) == 7, "a group of another shard stopped working"
    finally:
        br.stop()

    # repaired and restarted: the consumer resumes where it committed
    data[magic_at] = 2
    seg.write_bytes(bytes(data))
    br.start()
    assert committed(b, t, group, timeout_s=30) == COMMITS
    cons = group_consumer(b, group)
    try:
        cons.subscribe([t])
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            for m in cons.consume(num_messages=1, timeout=0.5):
                if m.error() is None:
                    first = m.offset()
    finally:
        cons.close()
    assert first == COMMITS
