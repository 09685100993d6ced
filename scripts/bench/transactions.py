#!/usr/bin/env python3
"""transactions.py - transaction benchmark (issue 15, Performance), Fjord vs Apache Kafka 4.3.1 on the same
machine, in one run.

    tests/e2e/setup.sh                                   (once: the venv with confluent-kafka, Kafka's jars)
    ~/.cache/fjord-e2e/venv/bin/python scripts/bench/transactions.py [--broker fjord|kafka|both]
                                       [--smoke | --quick] [--fjord-bin target/release/fjord] [--out BENCHMARKS.md]

One broker at a time (never both at once), each a single node on a fresh data dir (Fjord: target/release/fjord
serve; Kafka: scripts/kafka.sh, a combined KRaft node with `transaction.state.log.replication.factor=1`), pinned
to CPU 0; the clients run on CPU 1. Three measurements:
  1. Idempotent vs plain produce: librdkafka's rdkafka_performance (../shared/tools/kafka-tools.sh) sends
     --messages records of 100 B with acks=all to a topic of 6 partitions three ways: plain
     (enable.idempotence=false, the client's default of 1,000,000 requests in flight), plain capped at 5
     requests in flight (max.in.flight=5, the cap librdkafka puts on an idempotent producer: like with like)
     and idempotent (enable.idempotence=true); --rounds interleaved rounds, each in a rotated order; median
     msgs/s. The broker's CPU time (utime + stime of its process, /proc/PID/stat) over each run divided by
     the records gives its cost per record, the broker's own share whichever side bounds the rate.
     Target (issue 15): idempotent within 5% of plain. rdkafka_performance on one core is the bottleneck
     at this size on both brokers, and librdkafka's idempotent producer is slower than its plain one on
     both (Kafka shows the same ratio): compare Fjord's ratio with Kafka's, and the CPU per record.
  2. Transactions per second: one transactional producer (confluent-kafka on librdkafka, the same client on
     both brokers) runs begin / one 100 B record to each of K partitions / commit in a closed loop for
     --seconds, on a topic of 100 partitions, for K = 1, 10 and 100 (transaction n writes partitions
     n*K .. n*K+K-1 modulo 100). Reported: transactions/s, records/s, and the p50/p99 of a transaction's
     time from begin to the commit's return.
  3. End-to-end latency of a read_committed consumer: a transactional producer commits a transaction of 10
     records (one to each partition of a 10-partition topic) every 1/--txn-rate s; a read_committed consumer
     (librdkafka defaults: fetch.wait.max.ms 500, fetch.min.bytes 1) assigned to every partition measures,
     for each record, the time from the producer's produce() call to the record's delivery to the
     consumer (the commit is part of it: a record is readable only once its transaction is committed and
     its marker written). The first 2 s are warm-up. Reported: p50, p99, max and the number of records.
Everything is durable on Fjord's side by default (acks=all is answered after fdatasync; a transaction's
markers are synced before the commit is visible) while Kafka answers from the page cache: both at their
defaults. The machine is shared with other work: compare the ratios within one run, not absolute figures.
Writes the section between <!-- transactions:begin --> and <!-- transactions:end --> of --out (others kept)
and scripts/bench/results/transactions.json. --smoke: Fjord only, seconds-long, no BENCHMARKS.md change,
exits non-zero on any failure. --quick: both brokers at small scale, BENCHMARKS.md untouched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
from brokers import Fjord, Kafka, logger, pin_client  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS_DIR = os.path.join(HERE, "results")
KAFKA_TOOLS = os.path.abspath(os.path.join(REPO, "..", "shared", "tools", "kafka-tools.sh"))
MARK_BEGIN = "<!-- transactions:begin -->"
MARK_END = "<!-- transactions:end -->"
PRODUCE_RE = re.compile(
    r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset (-?\d+), (\d+) failed\) in (\d+)ms: "
    r"(\d+) msgs/s and ([\d.]+) MB/s, (\d+) produce failures")
RECORD_BYTES = 100
PRODUCE_PARTITIONS = 6
TXN_TOPIC_PARTITIONS = 100
TXN_SIZES = (1, 10, 100)
LATENCY_PARTITIONS = 10
WARMUP_S = 2.0
CLIENT_CPU = str(brokers.CLIENT_CPU)

log = logger("transactions-bench")


def rdperf_path() -> str:
    r = subprocess.run(["bash", KAFKA_TOOLS, "path", "rdkafka_performance"], stdout=subprocess.PIPE, text=True)
    p = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode != 0 or not os.access(p, os.X_OK):
        raise RuntimeError("../shared/tools/kafka-tools.sh could not provide rdkafka_performance")
    return p


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    fs = admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()], operation_timeout=60)
    for f in fs.values():
        f.result(timeout=120)
    # Every partition led and writable: metadata names a leader for each.
    deadline = time.monotonic() + 60
    while True:
        md = admin.list_topics(timeout=10)
        if all(t in md.topics and len(md.topics[t].partitions) == n and
               all(p.leader >= 0 for p in md.topics[t].partitions.values()) for t, n in topics.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {topics} not ready")
        time.sleep(0.2)


# The produce runs: name -> rdkafka_performance settings.
PRODUCE_KINDS = {
    "plain": ["enable.idempotence=false"],
    "plain5": ["enable.idempotence=false", "max.in.flight=5"],
    "idempotent": ["enable.idempotence=true"],
}


def cpu_seconds(pid) -> float | None:
    """utime + stime of process `pid` (all its threads), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def produce_run(rdperf: str, bootstrap: str, topic: str, messages: int, kind: str, pid=None) -> dict:
    argv = ["taskset", "-c", CLIENT_CPU, rdperf, "-P", "-t", topic, "-b", bootstrap, "-s", str(RECORD_BYTES),
            "-c", str(messages), "-a", "-1", "-X", "compression.codec=none"]
    for setting in PRODUCE_KINDS[kind]:
        argv += ["-X", setting]
    cpu_before = cpu_seconds(pid) if pid else None
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    cpu_after = cpu_seconds(pid) if pid else None
    m = None
    for m in PRODUCE_RE.finditer(p.stdout):
        pass
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"rdkafka_performance failed (rc {p.returncode}): {p.stdout[-800:]} {p.stderr[-800:]}")
    delivered, failed, ms = int(m.group(3)), int(m.group(5)), int(m.group(6))
    if failed or delivered != messages:
        raise RuntimeError(f"rdkafka_performance: {delivered} of {messages} delivered, {failed} failed")
    cpu_us = (None if cpu_before is None or cpu_after is None
              else (cpu_after - cpu_before) * 1e6 / delivered)
    return {"msgs_per_s": delivered / (ms / 1000.0), "ms": ms, "delivered": delivered,
            "broker_cpu_us_per_record": cpu_us}


def txn_producer(bootstrap: str, name: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{name}-{time.time_ns()}",
                  "linger.ms": 1, "log_level": 0})
    p.init_transactions(60)
    return p


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def txn_rate_run(bootstrap: str, topic: str, k: int, seconds: float) -> dict:
    p = txn_producer(bootstrap, f"bench-txn-{k}")
    value = b"x" * RECORD_BYTES
    durations = []
    n = 0

    def one(n):
        p.begin_transaction()
        for j in range(k):
            p.produce(topic, value, partition=(n * k + j) % TXN_TOPIC_PARTITIONS)
        p.commit_transaction(60)

    one(0)  # warm-up: the first AddPartitionsToTxn, connections to the partition leaders
    n = 1
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        t = time.monotonic()
        one(n)
        durations.append(time.monotonic() - t)
        n += 1
    wall = time.monotonic() - start
    p.flush(30)
    txns = len(durations)
    return {"partitions_per_txn": k, "txns": txns, "txns_per_s": txns / wall, "records_per_s": txns * k / wall,
            "txn_p50_ms": pct(durations, 0.50) * 1e3, "txn_p99_ms": pct(durations, 0.99) * 1e3}


def latency_run(bootstrap: str, topic: str, seconds: float, txn_rate: float) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-latency-{time.time_ns()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed", "log_level": 0})
    # The topic is fresh and written only here: from the beginning, every committed record is read.
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(LATENCY_PARTITIONS)])
    for _ in range(5):
        consumer.poll(0.1)
    samples: list[tuple[float, float]] = []  # (produced at, latency s)
    stop = threading.Event()
    errors: list[str] = []

    def consume():
        while not stop.is_set():
            m = consumer.poll(0.1)
            if m is None:
                continue
            if m.error():
                errors.append(str(m.error()))
                continue
            now = time.time()
            (sent,) = struct.unpack(">d", m.value()[:8])
            samples.append((sent, now - sent))

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    p = txn_producer(bootstrap, "bench-latency")
    pad = b"x" * (RECORD_BYTES - 8)
    t0 = time.time()
    start = time.monotonic()
    n = 0
    committed = 0
    while time.monotonic() - start < seconds:
        due = start + n / txn_rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        p.begin_transaction()
        for j in range(LATENCY_PARTITIONS):
            p.produce(topic, struct.pack(">d", time.time()) + pad, partition=j)
        p.commit_transaction(60)
        committed += LATENCY_PARTITIONS
        n += 1
    wall = time.monotonic() - start
    deadline = time.monotonic() + 10
    while len(samples) < committed and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    th.join(5)
    consumer.close()
    lat = [x for sent, x in samples if sent - t0 >= WARMUP_S]
    if len(samples) < committed:
        errors.append(f"{committed - len(samples)} of {committed} committed records not read")
    return {"txns_per_s": n / wall, "records_per_txn": LATENCY_PARTITIONS, "records": len(lat),
            "p50_ms": pct(lat, 0.50) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "max_ms": (max(lat) if lat else float("nan")) * 1e3, "errors": errors[:5]}


def run_broker(broker, cfg: dict, rdperf: str) -> dict:
    broker.start()
    try:
        bootstrap = f"127.0.0.1:{broker.port}"
        create_topics(bootstrap, {"produce": PRODUCE_PARTITIONS, "txn": TXN_TOPIC_PARTITIONS,
                                  "latency": LATENCY_PARTITIONS})
        out: dict = {"command": broker.command, "produce": {k: [] for k in PRODUCE_KINDS}}
        produce_run(rdperf, bootstrap, "produce", cfg["messages"] // 10, "idempotent")  # warm-up
        kinds = list(PRODUCE_KINDS)
        for r in range(cfg["rounds"]):
            order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
            for kind in order:
                res = produce_run(rdperf, bootstrap, "produce", cfg["messages"], kind, broker.pid)
                log(f"{broker.name} round {r + 1} {kind}: {res['msgs_per_s']:.0f} msgs/s, broker "
                    f"{res['broker_cpu_us_per_record']} CPU us/record")
                out["produce"][kind].append(res)
        out["txn"] = []
        for k in TXN_SIZES:
            res = txn_rate_run(bootstrap, "txn", k, cfg["seconds"])
            log(f"{broker.name} {k} partitions per transaction: {res}")
            out["txn"].append(res)
        out["latency"] = latency_run(bootstrap, "latency", cfg["latency_s"], cfg["txn_rate"])
        log(f"{broker.name} read_committed latency: {out['latency']}")
        return out
    finally:
        broker.stop()


def client_version(v) -> str:
    return v[0] if isinstance(v, tuple) else str(v)


def med(rs: list[dict], key: str = "msgs_per_s") -> float:
    xs = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(xs) if xs else float("nan")


def idem_ratio(r: dict) -> float:
    return med(r["produce"]["idempotent"]) / med(r["produce"]["plain"])


def render(results: dict, cfg: dict, meta: dict) -> str:
    lines = [
        MARK_BEGIN,
        "## Transactions (issue 15): idempotent produce, transactions per second, read_committed latency",
        "",
        f"Run of {meta['date']} by `{meta['command']}`; load average {meta['load_before']} before and "
        f"{meta['load_after']} after (2 cores shared with other work: compare ratios within the run). "
        "**Single node each**, one broker at a time on a fresh data dir, broker on CPU 0, clients on CPU 1: "
        + "; ".join(f"{b}: `{r['command']}`" for b, r in results.items())
        + ". Fjord is durable at its defaults (acks=all answered after fdatasync), Kafka answers from the page "
        "cache (its defaults). Method: the docstring of scripts/bench/transactions.py.",
        "",
        f"Idempotent vs plain produce (rdkafka_performance, {cfg['messages']:,} records of {RECORD_BYTES} B, "
        f"acks=all, {PRODUCE_PARTITIONS} partitions, median of {cfg['rounds']} interleaved rounds; plain 5: "
        "plain with max.in.flight=5, the cap of librdkafka's idempotent producer; broker CPU: its process's CPU "
        "time per record; target: idempotent within 5% of plain):",
        "",
        "| broker | plain msgs/s | plain 5 msgs/s | idempotent msgs/s | idempotent / plain | idempotent / plain 5 "
        "| per-round idempotent / plain 5 | broker CPU µs/record plain | idempotent |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for b, r in results.items():
        pr = r["produce"]
        pl, pl5, idem = med(pr["plain"]), med(pr["plain5"]), med(pr["idempotent"])
        rounds = " ".join(f"{i['msgs_per_s'] / p['msgs_per_s']:.2f}" for i, p in zip(pr["idempotent"], pr["plain5"]))
        cpu_pl = med(pr["plain"], "broker_cpu_us_per_record")
        cpu_idem = med(pr["idempotent"], "broker_cpu_us_per_record")
        lines.append(f"| {b} | {pl:,.0f} | {pl5:,.0f} | {idem:,.0f} | {idem / pl:.3f} | {idem / pl5:.3f} | {rounds} | "
                     f"{cpu_pl:.2f} | {cpu_idem:.2f} |")
    lines += [
        "",
        f"Transactions per second (one confluent-kafka {meta['client']} transactional producer in a closed loop "
        f"for {cfg['seconds']:g} s: begin, one {RECORD_BYTES} B record to each of K partitions of a "
        f"{TXN_TOPIC_PARTITIONS}-partition topic, commit):",
        "",
        "| broker | partitions per transaction | transactions/s | records/s | transaction p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b, r in results.items():
        for t in r["txn"]:
            lines.append(f"| {b} | {t['partitions_per_txn']} | {t['txns_per_s']:,.1f} | {t['records_per_s']:,.0f} | "
                         f"{t['txn_p50_ms']:.1f} | {t['txn_p99_ms']:.1f} |")
    lines += [
        "",
        f"End-to-end latency of a read_committed consumer (a transactional producer paced at up to "
        f"{cfg['txn_rate']:g} transactions/s, the rate reached in the table, of {LATENCY_PARTITIONS} records, one "
        f"per partition, for {cfg['latency_s']:g} s; from "
        f"produce() to the consumer's delivery; the first {WARMUP_S:g} s are warm-up):",
        "",
        "| broker | transactions/s | records measured | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b, r in results.items():
        x = r["latency"]
        lines.append(f"| {b} | {x['txns_per_s']:.1f} | {x['records']:,} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | "
                     f"{x['max_ms']:.1f} |")
    if "Fjord" in results and "Kafka" in results:
        f, k = results["Fjord"], results["Kafka"]
        ratios = ", ".join(f"K={a['partitions_per_txn']} {a['txns_per_s'] / b['txns_per_s']:.2f}"
                           for a, b in zip(f["txn"], k["txn"]))
        lines += ["", f"Fjord / Kafka: transactions/s {ratios}; read_committed p99 latency "
                      f"{f['latency']['p99_ms'] / k['latency']['p99_ms']:.2f}; idempotent msgs/s "
                      f"{med(f['produce']['idempotent']) / med(k['produce']['idempotent']):.2f}; "
                      f"idempotent / plain, Fjord's over Kafka's: {idem_ratio(f) / idem_ratio(k):.3f}."]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--smoke", action="store_true", help="Fjord only, seconds-long, BENCHMARKS.md untouched")
    ap.add_argument("--quick", action="store_true", help="both brokers at small scale; BENCHMARKS.md untouched")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="per transaction size")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--txn-rate", type=float, default=50.0, help="transactions/s of the latency run")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = ap.parse_args()
    cfg = {"messages": args.messages, "rounds": args.rounds, "seconds": args.seconds,
           "latency_s": args.latency_seconds, "txn_rate": args.txn_rate}
    want = ["fjord", "kafka"] if args.broker == "both" else [args.broker]
    if args.smoke:
        cfg.update(messages=100_000, rounds=1, seconds=1.5, latency_s=4.0)
        want = ["fjord"]
    elif args.quick:
        cfg.update(messages=300_000, rounds=1, seconds=3.0, latency_s=8.0)
    pin_client()
    import confluent_kafka

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python scripts/bench/transactions.py " + " ".join(
                a for a in sys.argv[1:] if not a.startswith("--fjord-bin") and "/" not in a),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "client": f"{client_version(confluent_kafka.version())} (librdkafka {confluent_kafka.libversion()[0]})"}
    rdperf = rdperf_path()
    results = {}
    failed = []
    with tempfile.TemporaryDirectory(prefix="fjord-bench-transactions-") as root:
        for w in want:
            broker = Fjord(root, args.fjord_bin) if w == "fjord" else Kafka(root)
            log(f"{broker.name}: starting")
            try:
                results[broker.name] = run_broker(broker, cfg, rdperf)
                if results[broker.name]["latency"]["errors"]:
                    failed.append(f"{broker.name}: {results[broker.name]['latency']['errors']}")
            except (RuntimeError, KafkaException) as e:
                failed.append(f"{broker.name}: {e}")
                log(f"{broker.name} failed: {e}")
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = ("transactions-smoke.json" if args.smoke else "transactions-quick.json" if args.quick
            else "transactions.json")
    with open(os.path.join(RESULTS_DIR, name), "w") as f:
        json.dump({"meta": meta, "config": cfg, "results": results, "failed": failed}, f, indent=1)
    if results:
        section = render(results, cfg, meta)
        if not (args.smoke or args.quick or failed):
            brokers.write_section(args.out, section, MARK_BEGIN, MARK_END)
        print(section)
    if failed:
        log("FAILED: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
