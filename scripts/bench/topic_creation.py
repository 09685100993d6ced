#!/usr/bin/env python3
"""topic_creation.py - how long creating many partitions takes, Fjord and Apache Kafka 4.3.1 side by side in
one run (issue 16).

    python3 scripts/bench/topic_creation.py --fjord-bin target/release/fjord [--rounds N] [--smoke]

Each round starts a fresh Fjord and a fresh Kafka (alternating which goes first; single node, replication
factor 1, broker on CPU 0, this client on CPU 1) and creates, one CreateTopics request after the other:
  - one topic of 1,000 partitions;
  - ten topics of 1,000 partitions (10,000 partitions; Kafka refuses a request that makes more than
    about 10,000 metadata records, so one request per topic).
Timed: from the first request to the last answer ("create"), and to the moment Metadata lists every
partition of those topics with a leader ("ready"). Also counted on Fjord: fsync/fdatasync calls of the
whole broker during the step, when `strace` is installed and --strace is given (it slows the broker; the
timed rows are from runs without it). Prints a Markdown table; without --smoke it rewrites the
topic-creation section of BENCHMARKS.md. Python standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import brokers  # noqa: E402
import kwire  # noqa: E402

BEGIN, END = "<!-- topic-creation:begin -->", "<!-- topic-creation:end -->"
log = brokers.logger("topic-creation")


def step(addr, prefix, topics, partitions):
    names = [f"{prefix}-{i}" for i in range(topics)]
    t0 = time.monotonic()
    for n in names:
        errs = kwire.create_topics(addr, {n: partitions})
        assert errs.get(n, (0,))[0] == 0, errs
    created = time.monotonic() - t0
    deadline = time.monotonic() + 600
    while not kwire.ready(addr, names, partitions, timeout_s=30):
        if time.monotonic() > deadline:
            raise RuntimeError("partitions not ready after 600 s")
        time.sleep(0.05)
    return created, time.monotonic() - t0


def count_syncs(pid, fn):
    """Runs fn() with strace counting the broker's fsync/fdatasync calls; (fn's result, calls)."""
    out = tempfile.mktemp(prefix="fjord-strace-")
    tracer = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    try:
        res = fn()
    finally:
        tracer.terminate()
        tracer.wait()
    calls = 0
    with open(out) as f:
        for line in f:
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync"):
                calls += int(parts[3])
    os.unlink(out)
    return res, calls


def run_round(fjord_bin, root, sizes, fjord_first, strace):
    results = {}
    order = ["Fjord", "Kafka"] if fjord_first else ["Kafka", "Fjord"]
    for name in order:
        d = os.path.join(root, f"{name}-{time.time_ns()}")
        broker = brokers.Fjord(d, fjord_bin) if name == "Fjord" else brokers.Kafka(d)
        broker.start()
        try:
            addr = f"127.0.0.1:{broker.port}"
            res = {}
            for label, topics, parts in sizes:
                if strace and name == "Fjord":
                    (c, r), syncs = count_syncs(broker.pid, lambda: step(addr, label, topics, parts))
                    res[label] = {"create_s": c, "ready_s": r, "syncs": syncs}
                else:
                    c, r = step(addr, label, topics, parts)
                    res[label] = {"create_s": c, "ready_s": r}
                log(f"{name} {label}: {res[label]}")
            results[name] = res
        finally:
            broker.stop()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="one round of 100 and 1,000 partitions, no BENCHMARKS.md")
    ap.add_argument("--strace", action="store_true", help="one more Fjord-only round counting fsyncs")
    args = ap.parse_args()
    sizes = [("p1k", 1, 1000), ("p10k", 10, 1000)]
    if args.smoke:
        args.rounds, sizes = 1, [("p100", 1, 100), ("p1k", 1, 1000)]
    brokers.pin_client()
    load = os.getloadavg()
    rounds = []
    syncs = {}
    with tempfile.TemporaryDirectory(prefix="fjord-topic-creation-") as root:
        for i in range(args.rounds):
            rounds.append(run_round(args.fjord_bin, root, sizes, i % 2 == 0, False))
        if args.strace:
            d = os.path.join(root, "strace")
            broker = brokers.Fjord(d, args.fjord_bin)
            broker.start()
            try:
                for label, topics, parts in sizes:
                    _, n = count_syncs(broker.pid, lambda: step(f"127.0.0.1:{broker.port}", label, topics, parts))
                    syncs[label] = n
                    log(f"Fjord {label}: {n} fsync/fdatasync calls")
            finally:
                broker.stop()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Topic creation: 1,000 and 10,000 partitions (issue 16)",
        "",
        f"Run of {when} by `python3 scripts/bench/topic_creation.py --rounds {args.rounds}"
        f"{' --strace' if args.strace else ''}`: {args.rounds} round(s), each a fresh Fjord and a fresh Kafka "
        "4.3.1 (alternating which goes first), single node, replication factor 1, broker on CPU 0, client on CPU 1. "
        "One CreateTopics request per topic of 1,000 partitions, one after the other; \"create\": first request "
        "to last answer; \"ready\": until Metadata lists every partition with a leader. Median over the rounds. "
        f"Load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores shared with other "
        "work: compare ratios).",
        "",
        "| partitions | Fjord create (s) | Kafka create (s) | Fjord/Kafka | Fjord ready (s) | Kafka ready (s) | Fjord/Kafka |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, topics, parts in sizes:
        med = {b: {k: statistics.median(r[b][label][k] for r in rounds) for k in ("create_s", "ready_s")}
               for b in ("Fjord", "Kafka")}
        f, k = med["Fjord"], med["Kafka"]
        lines.append(f"| {topics * parts:,} | {f['create_s']:.2f} | {k['create_s']:.2f} | "
                     f"{f['create_s'] / k['create_s']:.2f} | {f['ready_s']:.2f} | {k['ready_s']:.2f} | "
                     f"{f['ready_s'] / k['ready_s']:.2f} |")
    if syncs:
        lines += ["", "fsync + fdatasync calls of the Fjord broker during each step (strace -c, a separate run): "
                  + ", ".join(f"{label}: {n:,}" for label, n in syncs.items()) + "."]
    lines += ["", "Every round (create s, Fjord / Kafka):", ""]
    for i, r in enumerate(rounds):
        lines.append(f"- round {i + 1}: " + "; ".join(
            f"{label} {r['Fjord'][label]['create_s']:.2f} / {r['Kafka'][label]['create_s']:.2f}"
            for label, _, _ in sizes))
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.smoke:
        brokers.write_section(os.path.join(REPO, "BENCHMARKS.md"), section, BEGIN, END)


if __name__ == "__main__":
    main()
