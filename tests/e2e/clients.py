"""Thin wrappers that give the four clients one shape.

Records to produce are dicts: key (str|None), value (str|None), headers [(str, str)], timestamp (ms|None),
partition (int|None). Consumed records come back as dicts with topic, partition, offset, key, value,
headers [(str, str|None)], timestamp, timestamp_type ("create" | "log_append").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

KCAT = shutil.which("kcat") or "/usr/bin/kcat"


def _dec(b):
    if b is None:
        return None
    return b.decode() if isinstance(b, (bytes, bytearray)) else b


def _enc(s):
    return None if s is None else s.encode()


def records(n: int, prefix: str = "r", ts0: int | None = None, headers: bool = True, null_key_every: int = 0):
    """n deterministic records; ts0 gives explicit timestamps ts0 + i*1000."""
    out = []
    for i in range(n):
        r = {
            "key": None if null_key_every and i % null_key_every == null_key_every - 1 else f"{prefix}-k{i}",
            "value": f"{prefix}-value-{i}-" + "x" * (i % 7),
            "headers": [("h-index", str(i)), ("h-prefix", prefix)] if headers else [],
            "timestamp": None if ts0 is None else ts0 + i * 1000,
            "partition": None,
        }
        out.append(r)
    return out


def same_content(produced: dict, consumed: dict, check_ts: bool = True) -> bool:
    ok = (
        produced["key"] == consumed["key"]
        and produced["value"] == consumed["value"]
        and list(map(tuple, produced.get("headers") or [])) == list(map(tuple, consumed["headers"]))
    )
    if check_ts and produced.get("timestamp") is not None:
        ok = ok and produced["timestamp"] == consumed["timestamp"]
    return ok


def assert_same(produced: list[dict], consumed: list[dict], check_ts: bool = True, check_offsets: bool = True):
    assert len(consumed) == len(produced), f"consumed {len(consumed)} records, produced {len(produced)}"
    for i, (p, c) in enumerate(zip(produced, consumed)):
        assert same_content(p, c, check_ts), f"record {i} differs:\n produced {p}\n consumed {c}"
        if check_offsets:
            assert c["offset"] == i, f"record {i} at offset {c['offset']}"


# ---------------------------------------------------------------- confluent-kafka (current librdkafka)
class Delivery:
    def __init__(self, err, partition, offset, timestamp):
        self.err = err
        self.partition = partition
        self.offset = offset
        self.timestamp_type, self.timestamp = timestamp

    def __repr__(self):
        return f"Delivery(err={self.err}, p={self.partition}, off={self.offset}, ts={self.timestamp})"


def cf_produce(bootstrap, topic, recs, conf=None, flush_timeout_s=30.0) -> list[Delivery]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(conf or {})})
    out: list[Delivery | None] = [None] * len(recs)

    def cb(i):
        def f(err, msg):
            out[i] = Delivery(err, msg.partition(), msg.offset(), msg.timestamp())

        return f

    for i, r in enumerate(recs):
        kw = {}
        if r.get("timestamp") is not None:
            kw["timestamp"] = r["timestamp"]
        if r.get("partition") is not None:
            kw["partition"] = r["partition"]
        if r.get("headers"):
            kw["headers"] = [(k, _enc(v)) for k, v in r["headers"]]
        value = r["value"].encode() if r.get("value") is not None else None
        if r.get("value_size"):
            value = b"x" * r["value_size"]
        while True:
            try:
                p.produce(topic, value=value, key=_enc(r.get("key")), on_delivery=cb(i), **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(flush_timeout_s)
    assert left == 0, f"{left} messages still queued after {flush_timeout_s}s"
    return out  # type: ignore[return-value]


def _cf_norm(m):
    ts_type, ts = m.timestamp()
    return {
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "key": _dec(m.key()),
        "value": _dec(m.value()),
        "headers": [(k, _dec(v)) for k, v in (m.headers() or [])],
        "timestamp": ts,
        "timestamp_type": {1: "create", 2: "log_append"}.get(ts_type, "none"),
    }


def cf_consumer(bootstrap, conf=None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **(conf or {}),
        }
    )


def cf_poll(c: Consumer, count: int, timeout_s: float = 20.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for m in c.consume(num_messages=min(500, count - len(got)), timeout=0.3):
            err = m.error()
            if err:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                # errors about one partition, or fatal ones, fail the test; client-level notices
                # (e.g. about a group coordinator, which assign()-only consumers never need) do not
                if err.fatal() or m.topic():
                    raise AssertionError(f"consume error on {m.topic()} [{m.partition()}]: {err}")
                continue
            got.append(_cf_norm(m))
    return got


def cf_consume(bootstrap, topic, count, partitions=None, start=OFFSET_BEGINNING, timeout_s=20.0, conf=None):
    """Assign (no group) the given partitions (default: all) from `start` and read `count` records."""
    c = cf_consumer(bootstrap, conf)
    try:
        if partitions is None:
            md = c.list_topics(topic, timeout=10)
            partitions = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        return cf_poll(c, count, timeout_s)
    finally:
        c.close()


# ---------------------------------------------------------------- kafka-python
def kp_produce(bootstrap, topic, recs, conf=None):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, **{"linger_ms": 5, **(conf or {})})
    try:
        futs = []
        for r in recs:
            futs.append(
                p.send(
                    topic,
                    key=_enc(r.get("key")),
                    value=_enc(r.get("value")),
                    headers=[(k, _enc(v)) for k, v in (r.get("headers") or [])],
                    timestamp_ms=r.get("timestamp"),
                    partition=r.get("partition"),
                )
            )
        p.flush(timeout=30)
        return [f.get(timeout=30) for f in futs]
    finally:
        p.close(timeout=10)


def _kp_norm(m):
    return {
        "topic": m.topic,
        "partition": m.partition,
        "offset": m.offset,
        "key": _dec(m.key),
        "value": _dec(m.value),
        "headers": [(k, _dec(v)) for k, v in (m.headers or [])],
        "timestamp": m.timestamp,
        "timestamp_type": {0: "create", 1: "log_append"}.get(m.timestamp_type, "none"),
    }


def kp_consumer(bootstrap, **conf):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None, **conf
    )


def kp_poll(c, count, timeout_s=20.0):
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for _tp, msgs in c.poll(timeout_ms=300, max_records=count - len(got)).items():
            got.extend(_kp_norm(m) for m in msgs)
    got.sort(key=lambda r: (r["partition"], r["offset"]))
    return got


def kp_consume(bootstrap, topic, count, partitions=None, timeout_s=20.0, **conf):
    from kafka import TopicPartition as KTP

    c = kp_consumer(bootstrap, **conf)
    try:
        if partitions is None:
            deadline = time.monotonic() + 10
            ps = None
            while not ps and time.monotonic() < deadline:
                ps = c.partitions_for_topic(topic)
                if not ps:
                    time.sleep(0.2)
            assert ps, f"kafka-python sees no partitions for {topic}"
            partitions = sorted(ps)
        tps = [KTP(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        return kp_poll(c, count, timeout_s)
    finally:
        c.close()


# ---------------------------------------------------------------- kcat (Debian, librdkafka 2.0.2)
def kcat_produce(bootstrap, topic, recs, headers=(), partition=None, codec=None, extra=(), timeout_s=60):
    """kcat takes one header set for the whole run, and no per-record timestamps."""
    cmd = [KCAT, "-b", bootstrap, "-P", "-t", topic, "-K", ":"]
    for k, v in headers:
        cmd += ["-H", f"{k}={v}"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    if codec:
        cmd += ["-z", codec]
    cmd += list(extra)
    lines = []
    for r in recs:
        assert r["value"] is not None and "\n" not in r["value"]
        lines.append(r["value"] if r["key"] is None else f"{r['key']}:{r['value']}")
    res = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=timeout_s)
    assert res.returncode == 0, f"kcat produce failed ({res.returncode}): {res.stderr}"
    return res


def _kcat_norm(j):
    h = j.get("headers") or []
    return {
        "topic": j["topic"],
        "partition": j["partition"],
        "offset": j["offset"],
        "key": j.get("key"),
        "value": j.get("payload"),
        "headers": [(h[i], h[i + 1]) for i in range(0, len(h), 2)],
        "timestamp": j.get("ts"),
        "timestamp_type": {"create": "create", "logappend": "log_append"}.get(j.get("tstype"), "none"),
    }


def kcat_consume(bootstrap, topic, partition=None, offset="beginning", count=None, extra=(), timeout_s=60):
    """Read from `offset` (beginning | end | N | s@TS | -N) to the end of every partition (-e)."""
    cmd = [KCAT, "-b", bootstrap, "-C", "-t", topic, "-o", str(offset), "-e", "-J", "-q"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    if count is not None:
        cmd += ["-c", str(count)]
    cmd += list(extra)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    assert res.returncode == 0, f"kcat consume failed ({res.returncode}): {res.stderr}"
    out = [_kcat_norm(json.loads(line)) for line in res.stdout.splitlines() if line.strip()]
    out.sort(key=lambda r: (r["partition"], r["offset"]))
    return out


# ---------------------------------------------------------------- Java client (tests/e2e/java/E2EClient.java)
def _java_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def java_produce(java, bootstrap, topic, recs, conf=None, timeout_s=90):
    """Returns (acks, errors): ack lines sorted by input index, error lines."""
    payload = "\n".join(
        json.dumps(
            {
                "key": r.get("key"),
                "value": r.get("value"),
                "value_size": r.get("value_size"),
                "partition": r.get("partition"),
                "timestamp": r.get("timestamp"),
                "headers": [list(h) for h in (r.get("headers") or [])],
            }
        )
        for r in recs
    )
    args = [f"{k}={v}" for k, v in (conf or {}).items()]
    res = java.run("E2EClient", "produce", bootstrap, topic, *args, input=payload + "\n", timeout=timeout_s)
    lines = _java_lines(res.stdout)
    acks = sorted((x for x in lines if x["type"] == "ack"), key=lambda x: x["i"])
    errors = [x for x in lines if x["type"] == "error"]
    assert any(x["type"] == "done" for x in lines), f"java producer did not finish:\n{res.stderr[-3000:]}"
    return acks, errors


def java_consume(java, bootstrap, topics, count, start="earliest", conf=None, timeout_s=90):
    """Returns (records, start_positions, done_line)."""
    conf = dict(conf or {})
    args = [f"{k}={v}" for k, v in conf.items()]
    if isinstance(topics, str):
        topics = [topics]
    res = java.run("E2EClient", "consume", bootstrap, ",".join(topics), start, str(count), *args, timeout=timeout_s)
    lines = _java_lines(res.stdout)
    recs = []
    start_pos, done = {}, {}
    for x in lines:
        if x["type"] == "record":
            recs.append(
                {
                    "topic": x["topic"],
                    "partition": x["partition"],
                    "offset": x["offset"],
                    "key": x["key"],
                    "value": x["value"],
                    "value_size": x["value_size"],
                    "headers": [tuple(h) for h in x["headers"]],
                    "timestamp": x["timestamp"],
                    "timestamp_type": {"CreateTime": "create", "LogAppendTime": "log_append"}.get(
                        x["timestamp_type"], "none"
                    ),
                }
            )
        elif x["type"] == "start":
            start_pos = x["positions"]
        elif x["type"] == "done":
            done = x
    recs.sort(key=lambda r: (r["topic"], r["partition"], r["offset"]))
    return recs, start_pos, done


# ---------------------------------------------------------------- admin helpers
def cf_admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, topic, partitions=1, config=None, timeout_s=30):
    from confluent_kafka.admin import NewTopic

    a = cf_admin(bootstrap)
    fs = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    fs[topic].result(timeout=timeout_s)
    wait_topic(bootstrap, topic, partitions)
    return topic


def wait_topic(bootstrap, topic, partitions=None, timeout_s=20.0):
    """Wait until metadata shows the topic with a leader for every partition."""
    a = cf_admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        last = t
        if t is not None and t.error is None and t.partitions:
            if all(p.leader >= 0 and p.error is None for p in t.partitions.values()):
                if partitions is None or len(t.partitions) == partitions:
                    return t
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} not ready: {last}")
