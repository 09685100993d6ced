#!/usr/bin/env python3
"""metrics.py - what Fjord's metrics cost, in one run: broker throughput with metrics off and on side by side,
and the time and size of a /metrics scrape with 10,000 partitions.

    python3 scripts/bench/metrics.py --fjord-bin target/release/fjord [--smoke] [--rounds N] [--seconds S]
    cargo xtask bench [--smoke]            (runs it after the side-by-side and compaction benchmarks)

Throughput: each round starts a fresh broker twice, metrics off (no --metrics-listen: nothing is counted) and
on (--metrics-listen, and a scraper reading /metrics every second, 15x Prometheus' default rate), in
alternating order; in each, `fjord bench produce` (1 KiB records, 16 partitions, acks=1 then acks=all) and
`fjord bench consume` of what was written. Broker on CPU 0, load generator on CPU 1 (taskset). The table
gives each row's median over the rounds and the ratio on/off.

Scrape: one broker with metrics on and 10 topics of 1,000 partitions; /metrics read 5 times, median time
and size.

Without --smoke it rewrites the section between the metrics markers of BENCHMARKS.md; --smoke (CI: one
short round, 1,000 partitions) writes scripts/bench/results/metrics-smoke.md. Python standard library only.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"
TASKSET = shutil.which("taskset")


def log(msg):
    print(f"[metrics-bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv if TASKSET else argv


def wait_port(port, proc, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fjord exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("fjord did not listen in time")


class Fjord:
    def __init__(self, binary, metrics):
        self.dir = tempfile.mkdtemp(prefix="fjord-metrics-bench-")
        self.port = free_port()
        self.metrics = f"127.0.0.1:{free_port()}" if metrics else None
        argv = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", os.path.join(self.dir, "data")]
        if self.metrics:
            argv += ["--metrics-listen", self.metrics]
        self.log = open(os.path.join(self.dir, "fjord.log"), "wb")
        self.proc = subprocess.Popen(pinned("0", argv), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, self.proc)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def scrape(addr):
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=60) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


class Scraper(threading.Thread):
    """Reads /metrics every second until stopped."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr, self.stopped, self.count = addr, threading.Event(), 0

    def run(self):
        while not self.stopped.wait(1.0):
            scrape(self.addr)
            self.count += 1


def bench(binary, bootstrap, mode, *args):
    argv = pinned("1", [binary, "bench", mode, "--bootstrap", bootstrap, "--quiet", "--json", *args])
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"fjord bench {mode} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


ROWS = [("produce 1 KiB, 16 partitions, acks=1", "1"), ("produce 1 KiB, 16 partitions, acks=all", "all")]


def one_broker(binary, metrics, seconds):
    b = Fjord(binary, metrics)
    scraper = Scraper(b.metrics) if metrics else None
    if scraper:
        scraper.start()
    out = {}
    try:
        for i, (label, acks) in enumerate(ROWS):
            topic = f"bench-{i}"
            p = bench(binary, b.bootstrap, "produce", "--topic", topic, "--partitions", "16", "--record-size", "1024",
                      "--acks", acks, "--duration", f"{seconds}s")
            out[label] = p["mb_per_s"]
            if i == 0:
                c = bench(binary, b.bootstrap, "consume", "--topic", topic, "--count", str(p["records"]))
                out["consume 1 KiB, 16 partitions (page cache)"] = c["mb_per_s"]
    finally:
        if scraper:
            scraper.stopped.set()
            scraper.join()
        b.stop()
    return out


def scrape_many(binary, topics, per_topic):
    b = Fjord(binary, True)
    try:
        t0 = time.monotonic()
        for i in range(topics):
            bench(binary, b.bootstrap, "produce", "--topic", f"wide-{i}", "--partitions", str(per_topic),
                  "--count", "1")
        log(f"created {topics} x {per_topic} partitions in {time.monotonic() - t0:.1f} s")
        samples = [scrape(b.metrics) for _ in range(5)]
        return statistics.median(t for t, _ in samples), statistics.median(n for _, n in samples)
    finally:
        b.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--out", default=None, help="file to write (default: BENCHMARKS.md, or the smoke file)")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.smoke else 5)
    seconds = args.seconds or (2 if args.smoke else 10)
    topics, per_topic = (1, 1_000) if args.smoke else (10, 1_000)

    load_before = os.getloadavg()
    runs = {"off": [], "on": []}
    for r in range(rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        for mode in order:
            log(f"round {r + 1}/{rounds}: metrics {mode}")
            runs[mode].append(one_broker(args.fjord_bin, mode == "on", seconds))
    labels = [label for label, _ in ROWS[:1]] + ["consume 1 KiB, 16 partitions (page cache)"] + \
        [label for label, _ in ROWS[1:]]
    med = {m: {l: statistics.median(run[l] for run in runs[m]) for l in labels} for m in runs}
    load_after = os.getloadavg()
    scrape_s, scrape_bytes = scrape_many(args.fjord_bin, topics, per_topic)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Metrics: throughput with metrics off and on, and the scrape",
        "",
        f"Run of {now} by `scripts/bench/metrics.py{' --smoke' if args.smoke else ''}` "
        f"(`cargo xtask bench` runs it): {rounds} round(s), each a fresh broker with metrics off (no "
        "`--metrics-listen`: nothing counted) and one with metrics on (`--metrics-listen` and /metrics read every "
        f"second), in alternating order; {seconds:g} s of `fjord bench produce` per row, then `fjord bench consume` "
        "of the acks=1 topic. Broker on CPU 0, load generator on CPU 1. Median MB/s (10^6 bytes of record values) "
        "over the rounds.",
        "",
        "| row | metrics off MB/s | metrics on MB/s | on / off |",
        "|---|---:|---:|---:|",
    ]
    for l in labels:
        off, on = med["off"][l], med["on"][l]
        lines.append(f"| {l} | {off:,.0f} | {on:,.0f} | {on / off:.3f} |")
    lines += [
        "",
        "Every round, for the spread: " + "; ".join(
            f"{m}: " + ", ".join(f"{run[l]:,.0f}" for run in runs[m] for l in labels[:1]) for m in ("off", "on")
        ) + " (first row, MB/s). Load average (1 min) before and after the throughput runs: "
        f"{load_before[0]:.1f} and {load_after[0]:.1f} on {os.cpu_count()} CPUs: a ratio is worth only as much as the "
        "spread between rounds is small against it.",
        "",
        f"Scrape with {topics * per_topic:,} partitions ({topics} topic(s) of {per_topic:,}; "
        f"`METRICS_PARTITION_SERIES_MAX` = 1,000 of them get per-partition series): "
        f"{scrape_s * 1000:.1f} ms and {scrape_bytes / 1024:,.0f} KiB (median of 5 reads).",
        END,
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    out = args.out or (os.path.join(HERE, "results", "metrics-smoke.md") if args.smoke
                       else os.path.join(REPO, "BENCHMARKS.md"))
    if out.endswith("BENCHMARKS.md"):
        doc = open(out).read()
        if BEGIN in doc and END in doc:
            doc = doc[:doc.index(BEGIN)] + section.rstrip("\n") + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + section
        open(out, "w").write(doc)
    else:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        open(out, "w").write(section)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
