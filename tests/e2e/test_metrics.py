"""Fjord's metrics listener (`fjord serve --metrics-listen`), scraped with the Prometheus client library's
text-format parser: counters move as a real client produces and consumes, the consumer lag the broker
computes equals what kafka-consumer-groups reports, /health and /ready answer, bad HTTP gets a 4xx or a
closed connection (the broker keeps serving), and `--log-format json` writes one JSON object per line.

Fjord only (Kafka exposes JMX, not this listener).
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import clients as c
from conftest import BROKER_KIND, REPO, free_port, unique
from test_groups import _cg, _table, wait_until

pytestmark = pytest.mark.skipif(BROKER_KIND != "fjord", reason="Fjord's own metrics listener")


def http_get(addr: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(addr: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (sample name, sorted labels), parsed by prometheus_client."""
    status, text = http_get(addr, "/metrics")
    assert status == 200, text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def raw(addr: str, data: bytes) -> bytes:
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out


@pytest.fixture
def metered(broker_factory, monkeypatch):
    addr = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FJORD_METRICS_LISTEN", addr)
    monkeypatch.setenv("FJORD_LOG_FORMAT", "json")
    b = broker_factory()
    wait_until(lambda: http_get(addr, "/ready")[0] == 200, 30, "/ready")
    return b, addr


def test_metrics_follow_a_real_client_and_lag_matches_kafka_consumer_groups(metered, java):
    b, addr = metered
    status, body = http_get(addr, "/health")
    assert status == 200, body
    status, body = http_get(addr, "/ready")
    assert status == 200 and "listener: ok" in body, body

    P = 3
    t = c.create_topic(b.bootstrap, unique("metrics"), partitions=P)
    g = unique("g-metrics")
    topic = (("topic", t),)
    before = scrape(addr)
    assert before[("fjord_topic_records_in_total", topic)] == 0

    recs = [{"key": f"k{i}", "value": f"v{i}" * 10, "headers": [], "partition": i % P} for i in range(90)]
    assert all(d.err is None for d in c.cf_produce(b.bootstrap, t, recs))
    m = scrape(addr)
    assert m[("fjord_topic_records_in_total", topic)] == 90
    assert m[("fjord_topic_bytes_in_total", topic)] > 90 * 20
    for p in range(P):
        assert m[("fjord_partition_log_end_offset", (("partition", str(p)), ("topic", t)))] == 30
    assert m[("fjord_requests_total", (("api", "Produce"),))] >= 1
    assert m[("fjord_request_duration_seconds_count", (("api", "Produce"),))] >= 1

    # A consumer group reads everything, then commits 10, 20 and 30.
    cons = Consumer({"bootstrap.servers": b.bootstrap, "group.id": g, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})
    cons.subscribe([t])
    got = 0
    deadline = time.monotonic() + 30
    while got < 90 and time.monotonic() < deadline:
        msg = cons.poll(0.5)
        if msg is not None and msg.error() is None:
            got += 1
    assert got == 90
    cons.commit(offsets=[TopicPartition(t, p, 10 * (p + 1)) for p in range(P)], asynchronous=False)
    cons.close()

    m = scrape(addr)
    assert m[("fjord_topic_bytes_out_total", topic)] >= m[("fjord_topic_bytes_in_total", topic)]
    assert m[("fjord_requests_total", (("api", "Fetch"),))] > before.get(("fjord_requests_total", (("api", "Fetch"),)), 0)
    assert m[("fjord_requests_total", (("api", "OffsetCommit"),))] >= 1

    out = _cg(java, "--bootstrap-server", b.bootstrap, "--describe", "--group", g)
    rows = {int(r["PARTITION"]): r for r in _table(out, t)}
    assert sorted(rows) == list(range(P)), out
    for p in range(P):
        labels = (("group", g), ("partition", str(p)), ("topic", t))
        assert m[("fjord_consumer_group_committed_offset", labels)] == int(rows[p]["CURRENT-OFFSET"]), out
        assert m[("fjord_consumer_group_lag", labels)] == int(rows[p]["LAG"]), out
        assert int(rows[p]["LAG"]) == 30 - 10 * (p + 1), out

    # Bad HTTP: a 4xx or a close, and the broker keeps serving both listeners.
    for data, wants in [
        (b"POST /metrics HTTP/1.1\r\n\r\n", [b"HTTP/1.1 405 "]),
        (b"GET /nope HTTP/1.1\r\n\r\n", [b"HTTP/1.1 404 "]),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", [b"HTTP/1.1 400 "]),
        # Past the head limit: 431, or a closed connection if the client was still sending.
        (b"GET /" + b"a" * 1_000_000, [b"HTTP/1.1 431 ", b""]),
        (b"GET /metrics HTTP/1.1\r\n", [b""]),
    ]:
        got = raw(addr, data)
        assert any(got.startswith(w) if w else got == b"" for w in wants), (data[:40], got[:80])
    assert http_get(addr, "/health")[0] == 200
    assert b.running()
    assert all(d.err is None for d in c.cf_produce(b.bootstrap, t, recs[:3]))

    # --log-format json (FJORD_LOG_FORMAT): every line the broker wrote is one JSON object.
    lines = [line for line in b.log_path.read_text().splitlines() if line and not line.startswith("=== ")]
    assert lines, "no log lines"
    for line in lines:
        entry = json.loads(line)
        assert {"timestamp", "level", "target"} <= entry.keys(), line
    assert any(json.loads(line).get("message") == "fjord is serving" for line in lines)

    # The Grafana dashboard asks only for series the broker exposes.
    dashboard = json.loads((REPO / "deploy" / "grafana" / "fjord.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    wanted = {n for e in exprs for n in re.findall(r"\b((?:fjord|process)_[a-z_]+)\b", e)}
    exposed = {name for name, _ in scrape(addr)}
    assert wanted and wanted <= exposed, sorted(wanted - exposed)
