#!/usr/bin/env python3
"""`fjord consume` to /dev/null vs kcat on the same topic (issue 17's CLI benchmark).

Starts a Fjord broker (FJORD_BIN, default target/release/fjord) on a free port with a temporary data dir,
fills one topic with `fjord bench produce`, then reads the whole topic to /dev/null, alternating
`fjord consume TOPIC --from-beginning --exit` and `kcat -C -t TOPIC -o beginning -e -q` (both print each
value and a newline), `--rounds` times each, and prints the median and best wall time and records/s of each.

    python3 scripts/bench/cli_consume.py --records 2000000 --record-size 100 --partitions 4
    python3 scripts/bench/cli_consume.py --bootstrap HOST:PORT --topic T   # an existing broker and topic

Numbers in BENCHMARKS.md ("fjord consume vs kcat").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"broker on port {port} did not start")


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.decode(errors='replace')}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fjord-bin", default=os.environ.get("FJORD_BIN", str(REPO / "target/release/fjord")))
    ap.add_argument("--kcat", default=shutil.which("kcat") or "kcat")
    ap.add_argument("--bootstrap", help="use this broker (and --topic) instead of starting one")
    ap.add_argument("--topic", default="cli-bench")
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    fjord = args.fjord_bin

    broker = None
    data = None
    bootstrap = args.bootstrap
    try:
        if bootstrap is None:
            port = free_port()
            bootstrap = f"127.0.0.1:{port}"
            data = tempfile.mkdtemp(prefix="fjord-cli-bench-")
            broker = subprocess.Popen(
                [fjord, "serve", "--listen", bootstrap, "--data-dir", data],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_port(port)
            subprocess.run(
                [fjord, "topic", "create", args.topic, "--partitions", str(args.partitions), "--bootstrap", bootstrap],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(
                [
                    fjord, "bench", "produce", "--bootstrap", bootstrap, "--topic", args.topic,
                    "--partitions", str(args.partitions), "--record-size", str(args.record_size),
                    "--count", str(args.records), "--acks", "1", "--quiet",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        ours = [fjord, "consume", args.topic, "--from-beginning", "--exit", "--bootstrap", bootstrap]
        kcat = [args.kcat, "-b", bootstrap, "-C", "-t", args.topic, "-o", "beginning", "-e", "-q"]
        # Warm the page cache and both programs once.
        timed(ours)
        timed(kcat)
        times: dict[str, list[float]] = {"fjord consume": [], "kcat": []}
        for _ in range(args.rounds):
            times["fjord consume"].append(timed(ours))
            times["kcat"].append(timed(kcat))
        print(f"{args.records} records of {args.record_size} B, {args.partitions} partitions, {args.rounds} rounds")
        print(f"{'tool':<14} {'median s':>9} {'best s':>8} {'records/s (median)':>19}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:<14} {med:>9.2f} {min(ts):>8.2f} {args.records / med:>19,.0f}")
    finally:
        if broker is not None:
            broker.send_signal(signal.SIGTERM)
            try:
                broker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                broker.kill()
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
