#!/usr/bin/env python3
"""group_commit.py - group commit across partitions (issue 16): Fjord with syncfs group commit (the default,
`log.group.commit.syncfs=auto`), Fjord with one fdatasync per partition (`log.group.commit.syncfs=false`, the
behaviour before) and Apache Kafka 4.3.1, side by side in one run.

    python3 scripts/bench/group_commit.py --fjord-bin target/release/fjord [--rounds N] [--seconds S] [--smoke]

Each round starts each broker fresh (rotating which goes first; single node, replication factor 1, broker on
CPU 0, load generator on CPU 1) and runs, with `fjord bench` as the load generator for all three:
  - light load on many partitions: one topic of 1,000 partitions, `fjord bench e2e` at 2 records/s per
    partition (1 KiB records, acks=all);
  - full load on 16 partitions: `fjord bench produce`, 8 producers, 1 KiB records, acks=all, unthrottled.
Measured: MB/s of record values, the broker's CPU-seconds per GB (utime+stime from /proc), the end-to-end
latency of the light load, and the broker's fdatasync, fsync and syncfs calls per second during the load
(`perf stat` on the syscall tracepoints, no slowdown; needs perf and tracefs, else "-"). Kafka acknowledges
acks=all from the page cache (no fsync with its default flush settings); Fjord only once the data is on disk.
Prints a Markdown section; without --smoke it rewrites the group-commit section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import brokers  # noqa: E402
import kwire  # noqa: E402

BEGIN, END = "<!-- group-commit:begin -->", "<!-- group-commit:end -->"
log = brokers.logger("group-commit")
SYSCALLS = ("fdatasync", "fsync", "syncfs")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def perf_counter(pid, seconds):
    """Starts `perf stat` counting the broker's sync syscalls for about `seconds`; None without perf."""
    if not shutil.which("perf"):
        return None
    out = tempfile.mktemp(prefix="fjord-perf-stat-")
    events = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS)
    p = subprocess.Popen(["perf", "stat", "-x", ",", "-o", out, "-e", events, "-p", str(pid), "--", "sleep",
                          f"{seconds:g}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, out


def perf_result(handle, seconds):
    if handle is None:
        return None
    p, out = handle
    p.wait()
    counts = {}
    try:
        with open(out) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                    name = parts[2].rsplit("_", 1)[-1]
                    counts[name] = int(parts[0]) / seconds if parts[0].isdigit() else None
        os.unlink(out)
    except OSError:
        return None
    return counts or None


def bench(fjord_bin, argv, label, timeout_s):
    p = subprocess.run(["taskset", "-c", str(brokers.CLIENT_CPU), fjord_bin, "bench"] + argv +
                       ["--json", "--quiet"], capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise RuntimeError(f"{label}: fjord bench failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def scenario(fjord_bin, broker, kind, seconds):
    addr = f"127.0.0.1:{broker.port}"
    if kind == "p1k":
        topic, parts = "gc-many", 1000
        argv = ["e2e", "--bootstrap", addr, "--topic", topic, "--partitions", str(parts), "--replication-factor",
                "1", "--record-size", "1024", "--acks", "all", "--duration", f"{seconds:g}", "--rate",
                str(2 * parts)]
    else:
        topic, parts = "gc-16", 16
        argv = ["produce", "--bootstrap", addr, "--topic", topic, "--partitions", str(parts),
                "--replication-factor", "1", "--record-size", "1024", "--acks", "all", "--producers", "8",
                "--duration", f"{seconds:g}"]
    errs = kwire.create_topics(addr, {topic: parts}, timeout_ms=600_000)
    assert errs.get(topic, (0,))[0] == 0, errs
    deadline = time.monotonic() + 600
    while not kwire.ready(addr, [topic], parts, timeout_s=30):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic} not ready")
        time.sleep(0.05)
    os.sync()
    cpu0 = cpu_seconds(broker.pid)
    # Count over the middle of the run (the generator connects and creates its producers first).
    window = max(1.0, seconds - 2.0)
    t0 = time.monotonic()
    box = {}

    def run():
        try:
            try:
                box["j"] = bench(fjord_bin, argv, f"{broker.name} {kind}", 120 + 4 * seconds)
            except RuntimeError as e:
                # Kafka lists a leader in Metadata a moment before that broker serves the partition.
                log(f"{broker.name} {kind}: {e}; retrying once in 5 s")
                time.sleep(5)
                box["j"] = bench(fjord_bin, argv, f"{broker.name} {kind}", 120 + 4 * seconds)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            box["error"] = repr(e)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(1.0)
    handle = perf_counter(broker.pid, window)
    th.join()
    syscalls = perf_result(handle, window)
    cpu = cpu_seconds(broker.pid) - cpu0
    if "j" not in box:
        raise RuntimeError(f"{broker.name} {kind}: {box.get('error')}")
    j = box["j"]
    gb = j["bytes"] / 1e9
    lat = j.get("latency") or {}
    return {"mb_s": j["bytes"] / 1e6 / j["elapsed_s"], "cpu_s_per_gb": cpu / gb if gb else None,
            "p99_ms": lat.get("p99_ms") if lat.get("samples") else None, "syscalls": syscalls,
            "wall_s": time.monotonic() - t0}


def run_round(fjord_bin, root, seconds, rotate):
    configs = [("Fjord syncfs", {}), ("Fjord fdatasync", {"log.group.commit.syncfs": "false"}), ("Kafka", None)]
    configs = configs[rotate % 3:] + configs[:rotate % 3]
    results = {}
    for name, settings in configs:
        res = {}
        for kind in ("p1k", "p16"):
            d = os.path.join(root, f"{name.replace(' ', '-')}-{kind}-{time.time_ns()}")
            broker = brokers.Kafka(d) if settings is None else brokers.Fjord(d, fjord_bin, settings)
            broker.name = name
            broker.start()
            try:
                res[kind] = scenario(fjord_bin, broker, kind, seconds)
                log(f"{name} {kind}: {res[kind]}")
            except RuntimeError as e:
                log(f"{name} {kind} failed: {e}")
                res[kind] = {"mb_s": None, "cpu_s_per_gb": None, "p99_ms": None, "syscalls": None}
            finally:
                broker.stop()
                shutil.rmtree(d, ignore_errors=True)
        results[name] = res
    return results


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--smoke", action="store_true", help="one short round, no BENCHMARKS.md")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 4
    brokers.pin_client()
    load0 = os.getloadavg()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="fjord-group-commit-", dir=os.path.join(REPO, "target"),
                                     ignore_cleanup_errors=True) as root:
        for i in range(args.rounds):
            rounds.append(run_round(args.fjord_bin, root, args.seconds, i))
    load1 = os.getloadavg()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = ["Fjord syncfs", "Fjord fdatasync", "Kafka"]
    lines = [
        BEGIN,
        "## Group commit across partitions (issue 16)",
        "",
        f"Run of {when} by `python3 scripts/bench/group_commit.py --rounds {args.rounds} --seconds "
        f"{args.seconds:g}`: each round starts every broker fresh for each scenario (rotating the order), single "
        "node, replication factor 1, broker on CPU 0, `fjord bench` on CPU 1 for all three. \"Fjord syncfs\" is "
        "the default (`log.group.commit.syncfs=auto`), \"Fjord fdatasync\" the behaviour before "
        "(`log.group.commit.syncfs=false`: an fdatasync per partition per round). Fjord acknowledges acks=all "
        "after the data is on disk, Kafka from the page cache. Median over the rounds. Syscalls per second of "
        "the broker during the load (`perf stat` on the syscall tracepoints). Load average "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start, {load1[0]:.2f} {load1[1]:.2f} "
        f"{load1[2]:.2f} at the end (2 cores shared with other work: compare ratios within a round).",
        "",
        "| scenario | broker | MB/s | CPU-s/GB | p99 ms | fdatasync/s | fsync/s | syncfs/s | MB/s vs Kafka | CPU-s/GB vs Kafka |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"p1k": "1,000 partitions, 2 records/s each, 1 KiB, acks=all [fjord bench e2e]",
              "p16": "16 partitions, 8 producers, 1 KiB, acks=all, unthrottled [fjord bench produce]"}

    def med(name, kind, key, sub=None):
        vals = []
        for r in rounds:
            v = r[name][kind][key]
            if sub is not None:
                v = (v or {}).get(sub)
            if v is not None:
                vals.append(v)
        return statistics.median(vals) if vals else None

    for kind in ("p1k", "p16"):
        k_mb, k_cpu = med("Kafka", kind, "mb_s"), med("Kafka", kind, "cpu_s_per_gb")
        for name in names:
            mb, cpu = med(name, kind, "mb_s"), med(name, kind, "cpu_s_per_gb")
            lines.append(
                f"| {labels[kind]} | {name} | {fmt(mb)} | {fmt(cpu, 2)} | {fmt(med(name, kind, 'p99_ms'), 2)} | "
                + " | ".join(fmt(med(name, kind, "syscalls", s), 0) for s in SYSCALLS)
                + f" | {fmt(mb / k_mb if mb and k_mb else None, 2)}× | "
                f"{fmt(cpu / k_cpu if cpu and k_cpu else None, 2)}× |")
    lines += ["", "Every round (MB/s, CPU-s/GB, fdatasync/s, syncfs/s):", ""]
    for i, r in enumerate(rounds):
        parts = []
        for kind in ("p1k", "p16"):
            for name in names:
                x = r[name][kind]
                sc = x["syscalls"] or {}
                parts.append(f"{kind} {name} {fmt(x['mb_s'])}, {fmt(x['cpu_s_per_gb'], 2)}, "
                             f"{fmt(sc.get('fdatasync'), 0)}, {fmt(sc.get('syncfs'), 0)}")
        lines.append(f"- round {i + 1}: " + "; ".join(parts))
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.smoke:
        brokers.write_section(os.path.join(REPO, "BENCHMARKS.md"), section, BEGIN, END)


if __name__ == "__main__":
    main()
