"""Durability: a clean restart (SIGTERM) keeps everything; kill -9 during an acks=all run loses no
acknowledged record."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from confluent_kafka import Producer, TopicPartition

import clients as c
from conftest import unique


def _read_all(bootstrap, topic, timeout_s=60.0):
    """Every record of every partition, via confluent-kafka: {partition: {offset: record}}."""
    cons = c.cf_consumer(bootstrap)
    try:
        md = cons.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        total = 0
        for p in parts:
            lo, hi = cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            total += hi - lo
        cons.assign([TopicPartition(topic, p, 0) for p in parts])
        got = c.cf_poll(cons, total, timeout_s)
    finally:
        cons.close()
    out: dict[int, dict[int, dict]] = {}
    for r in got:
        out.setdefault(r["partition"], {})[r["offset"]] = r
    assert len(got) == total, f"read {len(got)} of {total} records"
    return out


def test_restart_reads_everything_back(broker_factory, java):
    br = broker_factory()
    b = br.bootstrap
    a = c.cf_admin(b)

    t = c.create_topic(b, unique("restart"), partitions=3, config={"retention.ms": "86400000"})
    lat = c.create_topic(b, unique("restart-lat"), config={"message.timestamp.type": "LogAppendTime"})
    ts0 = (int(time.time()) - 600) * 1000
    recs = c.records(90, "cf", ts0=ts0, null_key_every=9)
    for i, r in enumerate(recs):
        r["partition"] = i % 3
    assert all(d.err is None for d in c.cf_produce(b, t, recs[:45], {"compression.codec": "lz4"}))
    java_recs = recs[45:]
    acks, errors = c.java_produce(java, b, t, java_recs, {"compression.type": "zstd"})
    assert not errors
    c.kcat_produce(b, lat, c.records(5, "lat", headers=False))

    from confluent_kafka.admin import ConfigResource, ResourceType

    fs = a.delete_records([TopicPartition(t, 2, 4)], request_timeout=15)
    list(fs.values())[0].result(timeout=20)

    before = {p: sorted(d.items()) for p, d in _read_all(b, t).items()}
    before_lat = c.kcat_consume(b, lat)
    assert sum(len(v) for v in before.values()) == 86

    br.stop()
    if br.kind == "fjord":
        assert br.last_exit_code == 0, f"fjord exited with {br.last_exit_code} after SIGTERM"
    br.start()

    after = {p: sorted(d.items()) for p, d in _read_all(b, t).items()}
    assert after == before
    got, start, done = c.java_consume(java, b, [t, lat], 86 + 5)
    assert start == {f"{t}:0": 0, f"{t}:1": 0, f"{t}:2": 4, f"{lat}:0": 0}
    assert done["end_offsets"] == {f"{t}:0": 30, f"{t}:1": 30, f"{t}:2": 30, f"{lat}:0": 5}
    by_part = {}
    for r in got:
        if r["topic"] == t:
            by_part.setdefault(r["partition"], []).append(r)
    for p in range(3):
        expected = [r for i, r in enumerate(recs) if i % 3 == p][4 if p == 2 else 0 :]
        c.assert_same(expected, by_part[p], check_offsets=False)
    after_lat = c.kcat_consume(b, lat)
    assert after_lat == before_lat
    assert all(r["timestamp_type"] == "log_append" for r in after_lat)

    # configs survive too
    res = ConfigResource(ResourceType.TOPIC, t)
    assert a.describe_configs([res], request_timeout=15)[res].result(timeout=20)["retention.ms"].value == "86400000"
    res = ConfigResource(ResourceType.TOPIC, lat)
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert cfg["message.timestamp.type"].value == "LogAppendTime"

    # and new records continue the offsets
    more = c.records(3, "more")
    for r in more:
        r["partition"] = 1
    dels = c.cf_produce(b, t, more)
    assert [d.offset for d in dels] == [30, 31, 32]


def _check_acked(bootstrap, topic, acked: list[tuple[str, int, int, str]]):
    stored = _read_all(bootstrap, topic)
    missing = []
    for key, p, off, value in acked:
        r = stored.get(p, {}).get(off)
        if r is None or r["key"] != key or r["value"] != value:
            missing.append((key, p, off, r and (r["key"], r["value"])))
    assert not missing, f"{len(missing)} acknowledged records not read back, e.g. {missing[:5]}"


def _kill_and_restart(br) -> threading.Thread:
    """SIGKILL the broker and start it again on the same port and data dir, in the background so the
    producer keeps producing (and queueing) meanwhile."""

    def run():
        br.kill9()
        time.sleep(0.3)
        br.start()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_kill9_during_acks_all_confluent(broker_factory):
    br = broker_factory()
    b = br.bootstrap
    t = c.create_topic(b, unique("kill9-cf"), partitions=2)
    total, kill_after = 20_000, 4_000

    p = Producer(
        {
            "bootstrap.servers": b,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 2,
            "message.timeout.ms": 90_000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
        }
    )
    acked: list[tuple[str, int, int, str]] = []
    failed: list = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked.append((msg.key().decode(), msg.partition(), msg.offset(), msg.value().decode()))
            else:
                failed.append(err)

    restarter = None
    rate_per_s = 2_000
    started = time.monotonic()
    for i in range(total):
        while True:
            try:
                p.produce(t, key=f"k{i}", value=f"value-{i}", on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        ahead = started + i / rate_per_s - time.monotonic()
        p.poll(max(ahead, 0))
        if restarter is None and len(acked) >= kill_after:
            restarter = _kill_and_restart(br)
    assert restarter is not None, "the broker was never killed: the run finished too fast"
    restarter.join(timeout=150)
    assert p.flush(120) == 0
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    assert len(acked) == total
    _check_acked(b, t, acked)


def test_kill9_during_acks_all_java(broker_factory, java):
    br = broker_factory()
    b = br.bootstrap
    t = c.create_topic(b, unique("kill9-java"), partitions=2)
    total, kill_after = 8_000, 2_000
    proc = java.popen(
        "E2EClient", "produce", b, t, "--gen", str(total), "--rate-per-s", "1000",
        "acks=all", "enable.idempotence=false", "linger.ms=2", "delivery.timeout.ms=120000",
        "request.timeout.ms=10000", "reconnect.backoff.max.ms=500", "max.block.ms=120000",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acked: list[tuple[str, int, int, str]] = []
    errors, done = [], None
    restarter = None
    stderr_lines: list[str] = []
    t_err = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    t_err.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            x = json.loads(line)
            if x["type"] == "ack":
                acked.append((x["key"], x["partition"], x["offset"], "v" + x["key"][1:]))
            elif x["type"] == "error":
                errors.append(x)
            elif x["type"] == "done":
                done = x
            if restarter is None and len(acked) >= kill_after:
                restarter = _kill_and_restart(br)
        proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert restarter is not None, "the broker was never killed"
    restarter.join(timeout=150)
    assert done is not None, "".join(stderr_lines[-50:])
    assert not errors, errors[:3]
    assert len(acked) == total
    _check_acked(b, t, acked)
