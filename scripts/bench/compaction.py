#!/usr/bin/env python3
"""compaction.py - log compaction benchmark, Fjord vs Apache Kafka 4.3.1 on the same machine, in one run.

    tests/e2e/setup.sh                                   (once: the venv with confluent-kafka, Kafka's jars)
    ~/.cache/fjord-e2e/venv/bin/python scripts/bench/compaction.py [--broker fjord|kafka|both] [--smoke]
                                                                 [--out BENCHMARKS.md]

Issue 14, Performance. For each broker in turn (never both at once; broker pinned to CPU 0, this script to
CPU 1), on a fresh data dir, with log.cleaner.backoff.ms=100 on both (Kafka's default is 15 s):
  1. Cleaner throughput: a cleanup.policy=compact topic (1 partition, segment.bytes 1 MiB) with
     min.compaction.lag.ms of a day, so the cleaner leaves it alone, is filled with --fill-mb of 1 KiB
     records over --keys keys; then min.compaction.lag.ms is set to 0 (IncrementalAlterConfigs) and the
     partition's *.log bytes are sampled every 50 ms. Cleaning time: from the alter's answer until the
     last change of those bytes (once they are below half and have not changed for 3 s). Reported:
     MB/s of log cleaned (bytes before / cleaning time), bytes before and after.
  2. Produce with and without a running cleaner: 1 KiB records over --keys keys (acks=all, linger.ms 5,
     confluent-kafka), first to a cleanup.policy=delete topic (no cleaning), then to a compact topic with
     min.cleanable.dirty.ratio 0.01 and 1 MiB segments (the cleaner runs all the time). Each for
     --seconds unthrottled (MB/s) and then at a fixed --rate records/s (p50/p99 of the produce latency
     the client reports, Message.latency()).
The machine is shared (other work runs on it), so compare the ratios within one run, not absolute figures.
Writes the section between <!-- compaction:begin --> and <!-- compaction:end --> of --out (others kept)
and scripts/bench/results/compaction.json. --smoke: Fjord only, seconds-long, exits non-zero on failure. --quick: both brokers at small scale (32 MiB, 3 s),
BENCHMARKS.md untouched (scripts/bench/results/compaction-quick.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
from brokers import Fjord, Kafka, logger, pin_client  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS_DIR = os.path.join(HERE, "results")
MARK_BEGIN = "<!-- compaction:begin -->"
MARK_END = "<!-- compaction:end -->"
SETTINGS = {"log.cleaner.backoff.ms": "100"}
VALUE_BYTES = 1000
MIB = 1 << 20


log = logger("compaction")


def bootstrap(broker):
    return f"127.0.0.1:{broker.port}"


def create_topic(broker, topic, config):
    admin = AdminClient({"bootstrap.servers": bootstrap(broker), "log_level": 3})
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)],
                             operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while not os.path.isdir(os.path.join(broker.data, f"{topic}-0")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no directory for {topic}-0")
        time.sleep(0.05)


def alter_topic(broker, topic, name, value):
    admin = AdminClient({"bootstrap.servers": bootstrap(broker), "log_level": 3})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=30)


def log_bytes(broker, topic):
    """Bytes of the partition's segment files (*.log; not Kafka's *.log.deleted awaiting removal)."""
    d = os.path.join(broker.data, f"{topic}-0")
    total = 0
    for name in os.listdir(d):
        if name.endswith(".log"):
            try:
                total += os.path.getsize(os.path.join(d, name))
            except FileNotFoundError:
                pass
    return total


VALUES = bytes((65 + (i * 7919) % 26) for i in range(VALUE_BYTES + 4096))


def produce(broker, topic, keys, seconds=None, count=None, rate=None):
    """Produces 1 KiB keyed records: for `seconds` or `count` records, unthrottled or at `rate` records/s.
    Returns {records, mb_per_s, p50_ms, p99_ms, errors}."""
    p = Producer({
        "bootstrap.servers": bootstrap(broker),
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 256 * 1024,
        "queue.buffering.max.messages": 200_000,
        "enable.idempotence": False,
        "log_level": 3,
    })
    lat = []
    errors = [0]

    def cb(err, msg):
        if err is not None:
            errors[0] += 1
        else:
            lat.append(msg.latency())

    n = 0
    t0 = time.monotonic()
    end = t0 + seconds if seconds else None
    while True:
        now = time.monotonic()
        if (end is not None and now >= end) or (count is not None and n >= count):
            break
        burst = 1000
        if rate is not None:
            due = int((now - t0) * rate)
            burst = due - n
            if burst <= 0:
                p.poll(0.001)
                continue
        for _ in range(burst):
            at = (n * 61) % 4096
            try:
                p.produce(topic, VALUES[at:at + VALUE_BYTES], f"k{n % keys:07d}".encode(), on_delivery=cb)
            except BufferError:
                p.poll(0.01)
                continue
            n += 1
        p.poll(0)
    p.flush(60)
    elapsed = time.monotonic() - t0
    lat.sort()
    q = (lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000) if lat else (lambda f: float("nan"))
    return {"records": n, "mb_per_s": n * VALUE_BYTES / MIB / elapsed, "p50_ms": q(0.5), "p99_ms": q(0.99),
            "errors": errors[0] + (n - len(lat) - errors[0])}


def cleaner_throughput(broker, cfg):
    topic = "clean"
    create_topic(broker, topic, {"cleanup.policy": "compact", "segment.bytes": str(MIB),
                                 "min.compaction.lag.ms": str(86_400_000), "min.cleanable.dirty.ratio": "0.01"})
    count = cfg["fill_mb"] * MIB // VALUE_BYTES
    r = produce(broker, topic, cfg["keys"], count=count)
    time.sleep(1.0)
    before = log_bytes(broker, topic)
    log(f"{broker.name}: {before / MIB:.1f} MiB in {topic}; starting the cleaner on it")
    alter_topic(broker, topic, "min.compaction.lag.ms", "0")
    t0 = time.monotonic()
    last, last_change = before, t0
    deadline = t0 + cfg["clean_timeout_s"]
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        b = log_bytes(broker, topic)
        if b != last:
            last, last_change = b, now
        if last < before / 2 and now - last_change >= 3.0:
            break
        if now > deadline:
            return {"error": f"not cleaned after {cfg['clean_timeout_s']} s ({last} of {before} bytes)",
                    "bytes_before": before, "fill": r}
    secs = last_change - t0
    return {"bytes_before": before, "bytes_after": last, "seconds": secs,
            "mb_per_s": before / MIB / secs if secs > 0 else float("nan"), "fill": r}


def produce_effect(broker, cfg):
    out = {}
    for name, config in [
        ("delete", {"cleanup.policy": "delete", "segment.bytes": str(MIB)}),
        ("compact", {"cleanup.policy": "compact", "segment.bytes": str(MIB), "min.cleanable.dirty.ratio": "0.01"}),
    ]:
        topic = f"produce-{name}"
        create_topic(broker, topic, config)
        thr = produce(broker, topic, cfg["keys"], seconds=cfg["seconds"])
        fixed = produce(broker, topic, cfg["keys"], seconds=cfg["seconds"], rate=cfg["rate"])
        time.sleep(1.0)
        out[name] = {"unthrottled": thr, "fixed_rate": fixed, "log_bytes_after": log_bytes(broker, topic),
                     "bytes_produced": (thr["records"] + fixed["records"]) * VALUE_BYTES}
        log(f"{broker.name} {name}: {thr['mb_per_s']:.1f} MB/s unthrottled; at {cfg['rate']}/s "
            f"p50 {fixed['p50_ms']:.1f} ms p99 {fixed['p99_ms']:.1f} ms")
    return out


def run_broker(broker, cfg):
    broker.start()
    try:
        res = {"command": broker.command}
        res["cleaner"] = cleaner_throughput(broker, cfg)
        log(f"{broker.name} cleaner: {res['cleaner']}")
        res["produce"] = produce_effect(broker, cfg)
        return res
    finally:
        broker.stop()


def fmt(v, digits=1):
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:,.{digits}f}"


def render(results, cfg, meta):
    brokers = [b for b in ("Fjord", "Kafka") if b in results]
    lines = [MARK_BEGIN, "## Log compaction (issue 14)", ""]
    lines.append(
        f"Run on {meta['date']} with `{meta['command']}` on this shared 2-core machine (load average before "
        f"{meta['load_before']}, after {meta['load_after']}): other work runs at the same time, so the figures "
        "are noisy; compare the two brokers within this run, not across runs.")
    lines.append("")
    lines.append(
        f"Method: `scripts/bench/compaction.py` (its docstring has the details). Broker pinned to CPU 0, the "
        f"client (confluent-kafka, acks=all, linger.ms 5) to CPU 1; brokers one at a time on fresh data dirs, "
        f"both with `log.cleaner.backoff.ms=100`. Records of {VALUE_BYTES} B over {cfg['keys']:,} keys; "
        "topics of one partition with 1 MiB segments.")
    lines.append("")
    head = "| | " + " | ".join(brokers) + (" | Fjord / Kafka |" if len(brokers) == 2 else " |")
    sep = "|---|" + "---|" * (len(brokers) + (1 if len(brokers) == 2 else 0))
    lines += [f"**Cleaner throughput**: {cfg['fill_mb']} MiB written with the cleaner held off "
              "(min.compaction.lag.ms of a day), then released; MB/s of log cleaned = bytes before / time "
              "until the partition's segment bytes stop changing (includes the cleaner's 100 ms backoff and "
              "the config change reaching the log).", "", head, sep]

    def row(label, get, digits=1):
        vals = []
        for b in brokers:
            try:
                vals.append(get(results[b]))
            except (KeyError, TypeError):
                vals.append(None)
        cells = [fmt(v, digits) for v in vals]
        if len(vals) == 2:
            ratio = vals[0] / vals[1] if vals[0] is not None and vals[1] else None
            cells.append(fmt(ratio, 2))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("MB/s of log cleaned", lambda r: r["cleaner"]["mb_per_s"])
    row("cleaning time (s)", lambda r: r["cleaner"]["seconds"], 2)
    row("log before (MiB)", lambda r: r["cleaner"]["bytes_before"] / MIB)
    row("log after (MiB)", lambda r: r["cleaner"]["bytes_after"] / MIB, 2)
    lines += ["", f"**Produce with and without a running cleaner**: {cfg['seconds']} s unthrottled, then "
              f"{cfg['seconds']} s at {cfg['rate']:,} records/s ({cfg['rate'] * VALUE_BYTES / MIB:.1f} MiB/s); "
              "`delete`: a cleanup.policy=delete topic (no cleaning); `compact`: cleanup.policy=compact with "
              "min.cleanable.dirty.ratio 0.01, so the cleaner works on it the whole time. Latency: produce() "
              "to acknowledgement as the client reports it.", "", head, sep]
    for pol in ("delete", "compact"):
        row(f"`{pol}`: MB/s unthrottled", lambda r, p=pol: r["produce"][p]["unthrottled"]["mb_per_s"])
        row(f"`{pol}`: p50 ms at the fixed rate", lambda r, p=pol: r["produce"][p]["fixed_rate"]["p50_ms"], 2)
        row(f"`{pol}`: p99 ms at the fixed rate", lambda r, p=pol: r["produce"][p]["fixed_rate"]["p99_ms"], 2)
        row(f"`{pol}`: log left / bytes produced (%)",
            lambda r, p=pol: 100 * r["produce"][p]["log_bytes_after"] / r["produce"][p]["bytes_produced"])
    errs = {b: sum(results[b]["produce"][p][k]["errors"] for p in ("delete", "compact")
                   for k in ("unthrottled", "fixed_rate")) for b in brokers if "produce" in results[b]}
    lines += ["", "Delivery errors: " + ", ".join(f"{b} {n}" for b, n in errs.items()) + ".", ""]
    lines.append("Brokers: " + "; ".join(f"{b}: `{results[b].get('command', '?')}`" for b in brokers) + ".")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_section(path, section):
    brokers.write_section(path, section, MARK_BEGIN, MARK_END)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--quick", action="store_true", help="both brokers at small scale; BENCHMARKS.md untouched")
    ap.add_argument("--fill-mb", type=int, default=200)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = ap.parse_args()
    cfg = {"fill_mb": args.fill_mb, "keys": args.keys, "seconds": args.seconds, "rate": args.rate,
           "clean_timeout_s": 300}
    want = ["fjord", "kafka"] if args.broker == "both" else [args.broker]
    if args.smoke:
        cfg.update(fill_mb=8, keys=1000, seconds=1.0, rate=2000, clean_timeout_s=60)
        want = ["fjord"]
    elif args.quick:
        cfg.update(fill_mb=32, seconds=3.0, rate=5000, clean_timeout_s=120)
    pin_client()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python3 scripts/bench/compaction.py " + " ".join(sys.argv[1:]),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results = {}
    failed = []
    with tempfile.TemporaryDirectory(prefix="fjord-bench-compaction-") as root:
        for w in want:
            broker = Fjord(root, args.fjord_bin, SETTINGS) if w == "fjord" else Kafka(root, SETTINGS)
            log(f"{broker.name}: starting")
            try:
                results[broker.name] = run_broker(broker, cfg)
            except Exception as e:  # noqa: BLE001 - reported, and fails --smoke
                failed.append(f"{broker.name}: {e}")
                log(f"{broker.name} failed: {e}")
                broker.stop()
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for b, r in results.items():
        if "error" in r.get("cleaner", {}):
            failed.append(f"{b}: {r['cleaner']['error']}")
        for p in r.get("produce", {}).values():
            for k in ("unthrottled", "fixed_rate"):
                if p[k]["errors"]:
                    failed.append(f"{b}: {p[k]['errors']} delivery errors")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = "compaction-smoke.json" if args.smoke else "compaction-quick.json" if args.quick else "compaction.json"
    with open(os.path.join(RESULTS_DIR, name), "w") as f:
        json.dump({"meta": meta, "config": cfg, "results": results, "failed": failed}, f, indent=1)
    section = render(results, cfg, meta)
    if not (args.smoke or args.quick):
        write_section(args.out, section)
    print(section)
    if failed:
        log("FAILED: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
