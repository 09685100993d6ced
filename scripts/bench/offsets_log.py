#!/usr/bin/env python3
"""offsets_log.py - size of __consumer_offsets under a million offset commits, Fjord vs Apache Kafka 4.3.1.

    python3 scripts/bench/offsets_log.py [--broker fjord|kafka|both] [--commits N] [--groups G]
                                         [--smoke] [--out BENCHMARKS.md]

Issue 14, Performance: "__consumer_offsets size after a million commits to 100 groups (bounded, not growing
with commits)". For each broker in turn (never both at once; broker pinned to CPU 0, this script to CPU 1),
on a fresh data dir, and for each of two settings of offsets.topic.segment.bytes:
  - Kafka's default (100 MiB): a segment of __consumer_offsets is compacted only once it has rolled, so
    with this little data per partition nothing rolls and the topic holds every commit on both brokers;
  - 1 MiB: segments roll, the cleaner compacts them, and the size should level off.
Both brokers get offsets.topic.num.partitions=50 (Kafka's default; Fjord always uses 50) and
log.cleaner.backoff.ms=100 (Kafka's default is 15 s; it only delays cleaning).

Load: a topic of --partitions partitions; --groups groups (g000, g001, ...), each with one connection that
commits offsets of that topic with OffsetCommit v2 as a "simple" consumer does (generation -1, no member),
one partition per request, the partitions in turn, --window requests in flight per connection. A commit
is one request = one offset record in __consumer_offsets; the latest state is groups x partitions keys.
Sampled: the bytes of __consumer_offsets's segment files (*.log, all 50 partitions) after every tenth of
the commits (while the load runs on), then after the load stops, until they have not changed for 5 s
(or 60 s passed): "settled". Every commit's answer is checked (error code 0).

Writes the section between <!-- offsets-log:begin --> and <!-- offsets-log:end --> of --out (others kept)
and scripts/bench/results/offsets_log.json. --smoke: Fjord only, 20,000 commits from 2 groups, 1 MiB segments only,
exits non-zero on a failed commit or when the settled size is not below the largest sample. --quick: both
brokers, 200,000 commits, BENCHMARKS.md untouched (scripts/bench/results/offsets_log-quick.json).
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
from brokers import Fjord, Kafka, logger, pin_client  # noqa: E402
from kwire import Reader, array, i16, i32, i64, string  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS_DIR = os.path.join(HERE, "results")
MARK_BEGIN = "<!-- offsets-log:begin -->"
MARK_END = "<!-- offsets-log:end -->"
MIB = 1 << 20
KAFKA_DEFAULT_SEGMENT_BYTES = 100 * MIB
SMALL_SEGMENT_BYTES = MIB
TOPIC = "committed"
OFFSETS_TOPIC = "__consumer_offsets"
SETTLE_QUIET_S = 5.0
SETTLE_MAX_S = 60.0

API_OFFSET_COMMIT = 8
API_FIND_COORDINATOR = 10
API_METADATA = 3
API_CREATE_TOPICS = 19
ERR_NONE = 0
RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
MAX_TRIES = 100

log = logger("offsets-log")


class Conn:
    """One connection with requests pipelined; answers come back in order (Kafka's per-connection rule)."""

    def __init__(self, reader, writer):
        self.r, self.w, self.corr = reader, writer, 0

    @classmethod
    async def open(cls, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def send(self, api_key, version, body):
        self.corr += 1
        payload = i16(api_key) + i16(version) + i32(self.corr) + string("offsets-log-bench") + body
        self.w.write(i32(len(payload)) + payload)
        return self.corr

    async def recv(self, corr):
        size = struct.unpack(">i", await self.r.readexactly(4))[0]
        rd = Reader(await self.r.readexactly(size))
        got = rd.i32()
        if got != corr:
            raise RuntimeError(f"correlation id {got}, expected {corr}")
        return rd

    async def call(self, api_key, version, body):
        return await self.recv(self.send(api_key, version, body))

    def close(self):
        self.w.close()


async def create_topic(port, name, partitions):
    c = await Conn.open(port)
    body = array([string(name) + i32(partitions) + i16(1) + array([]) + array([])]) + i32(30000) + bytes([0])
    rd = await c.call(API_CREATE_TOPICS, 4, body)
    c.close()
    rd.i32(), rd.i32(), rd.string()
    err = rd.i16()
    if err not in (ERR_NONE, 36):  # TOPIC_ALREADY_EXISTS
        raise RuntimeError(f"CreateTopics {name}: error {err}")
    for _ in range(300):
        c = await Conn.open(port)
        rd = await c.call(API_METADATA, 1, array([string(name)]))
        c.close()
        for _ in range(rd.i32()):
            rd.i32(), rd.string(), rd.i32(), rd.string()
        rd.i32(), rd.i32()
        err = rd.i16()
        rd.string(), rd.take(1)
        if err == ERR_NONE and rd.i32() == partitions:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {name} has no leaders")


def commit_body(group, partition, offset):
    # OffsetCommit v2: group, generation -1, member "", retention -1, [topic [partition, offset, metadata]]
    return (string(group) + i32(-1) + string("") + i64(-1)
            + array([string(TOPIC) + array([i32(partition) + i64(offset) + string("")])]))


def commit_error(rd):
    err = ERR_NONE
    for _ in range(rd.i32()):
        rd.string()
        for _ in range(rd.i32()):
            rd.i32()
            e = rd.i16()
            err = err or e
    return err


async def wait_coordinator(port, group):
    for _ in range(600):
        c = await Conn.open(port)
        rd = await c.call(API_FIND_COORDINATOR, 1, string(group) + bytes([0]))
        c.close()
        rd.i32()
        if rd.i16() == ERR_NONE:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no coordinator for {group}")


async def committer(port, group, count, partitions, window, done):
    """Commits `count` offsets for `group`, `window` requests in flight; retries answers that say retry."""
    c = await Conn.open(port)
    try:
        sent = 0
        inflight = []
        while sent < count or inflight:
            while sent < count and len(inflight) < window:
                p = sent % partitions
                inflight.append((c.send(API_OFFSET_COMMIT, 2, commit_body(group, p, sent)), p, sent, 0))
                sent += 1
            corr, p, off, tries = inflight.pop(0)
            err = commit_error(await c.recv(corr))
            if err in RETRIABLE and tries < MAX_TRIES:
                # Sent again behind the ones in flight (answers come in order on a connection).
                await asyncio.sleep(0.05)
                inflight.append((c.send(API_OFFSET_COMMIT, 2, commit_body(group, p, off)), p, off, tries + 1))
                continue
            if err != ERR_NONE:
                raise RuntimeError(f"OffsetCommit {group} partition {p}: error {err}")
            done[0] += 1
    finally:
        c.close()


def offsets_log_bytes(data_dir):
    total = 0
    for d in os.listdir(data_dir):
        if not d.startswith(OFFSETS_TOPIC + "-"):
            continue
        for name in os.listdir(os.path.join(data_dir, d)):
            if name.endswith(".log"):
                try:
                    total += os.path.getsize(os.path.join(data_dir, d, name))
                except FileNotFoundError:
                    pass
    return total


async def load(broker, cfg):
    await create_topic(broker.port, TOPIC, cfg["partitions"])
    groups = [f"g{i:03d}" for i in range(cfg["groups"])]
    for g in groups:
        await wait_coordinator(broker.port, g)
    per_group = cfg["commits"] // len(groups)
    total = per_group * len(groups)
    done = [0]
    samples = []
    t0 = time.monotonic()
    tasks = [asyncio.create_task(committer(broker.port, g, per_group, cfg["partitions"], cfg["window"], done))
             for g in groups]
    next_mark = total // 10
    while not all(t.done() for t in tasks):
        await asyncio.sleep(0.02)
        if done[0] >= next_mark and next_mark <= total:
            samples.append({"mark": next_mark, "commits": done[0], "seconds": time.monotonic() - t0,
                            "log_bytes": offsets_log_bytes(broker.data)})
            log(f"{broker.name}: {done[0]:,} commits, {samples[-1]['log_bytes'] / MIB:.1f} MiB")
            next_mark += total // 10
    for t in tasks:
        t.result()  # raises a committer's error
    elapsed = time.monotonic() - t0
    # Settle: the cleaner catches up after the load stops.
    last, last_change = offsets_log_bytes(broker.data), time.monotonic()
    s0 = last_change
    while time.monotonic() - last_change < SETTLE_QUIET_S and time.monotonic() - s0 < SETTLE_MAX_S:
        await asyncio.sleep(0.2)
        b = offsets_log_bytes(broker.data)
        if b != last:
            last, last_change = b, time.monotonic()
    return {"commits": done[0], "seconds": elapsed, "commits_per_s": done[0] / elapsed, "samples": samples,
            "settled_bytes": last, "settle_seconds": last_change - s0, "keys": len(groups) * cfg["partitions"]}


def run_broker(kind, root, binary, segment_bytes, cfg):
    settings = {"offsets.topic.segment.bytes": str(segment_bytes), "offsets.topic.num.partitions": "50",
                "log.cleaner.backoff.ms": "100"}
    sub = os.path.join(root, f"{kind}-{segment_bytes}")
    broker = Fjord(sub, binary, settings) if kind == "fjord" else Kafka(sub, settings)
    log(f"{broker.name}: starting, offsets.topic.segment.bytes={segment_bytes}")
    broker.start()
    try:
        r = asyncio.run(load(broker, cfg))
        r["command"] = broker.command
        r["segment_bytes"] = segment_bytes
        log(f"{broker.name}: {r['commits']:,} commits at {r['commits_per_s']:,.0f}/s; settled at "
            f"{r['settled_bytes'] / MIB:.1f} MiB")
        return broker.name, r
    finally:
        broker.stop()


def mib(b):
    return f"{b / MIB:,.1f}"


def reading(results):
    """One sentence per broker and setting, computed from the samples (no figure typed in by hand)."""
    out = []
    for b, rs in results.items():
        for r in sorted(rs, key=lambda r: r["segment_bytes"]):
            sizes = [x["log_bytes"] for x in r["samples"]]
            if not sizes:
                continue
            per_commit = sizes[-1] / max(r["samples"][-1]["commits"], 1)
            later = sizes[len(sizes) // 2:]
            out.append(f"{b} with {mib(r['segment_bytes'])} MiB segments: {per_commit:,.0f} bytes per commit at the "
                       f"end of the load; over its second half the size stayed between {mib(min(later))} and "
                       f"{mib(max(later))} MiB; settled at {mib(r['settled_bytes'])} MiB.")
    out.append("A __consumer_offsets segment is compacted only once it has rolled, so with Kafka's default "
               "100 MiB segments and about 2 MiB per partition here nothing is compacted on either broker and "
               "the size grows with every commit until segments roll; with 1 MiB segments it stays bounded.")
    return " ".join(out)


def render(results, cfg, meta):
    lines = [MARK_BEGIN, "## `__consumer_offsets` size under a million commits (issue 14)", ""]
    lines.append(f"Run on {meta['date']} with `{meta['command']}` on this shared 2-core machine (load average "
                 f"before {meta['load_before']}, after {meta['load_after']}). Method: "
                 "`scripts/bench/offsets_log.py` (its docstring has the details): "
                 f"{cfg['commits']:,} OffsetCommit requests (one offset each) from {cfg['groups']} groups over "
                 f"a {cfg['partitions']}-partition topic, so {cfg['groups'] * cfg['partitions']:,} distinct keys; "
                 "`__consumer_offsets` with 50 partitions on both brokers; sizes are the bytes of its segment "
                 "files (`*.log`) while the load runs and after it stops (settled: unchanged for 5 s).")
    lines.append("")
    for seg in sorted({r["segment_bytes"] for rs in results.values() for r in rs}):
        lines.append(f"**offsets.topic.segment.bytes = {mib(seg)} MiB**"
                     + (" (Kafka's default)" if seg == KAFKA_DEFAULT_SEGMENT_BYTES else ""))
        lines.append("")
        rows = {b: r for b, rs in results.items() for r in rs if r["segment_bytes"] == seg}
        names = list(rows)
        lines.append("| commits | " + " | ".join(f"{n} MiB" for n in names) + " |")
        lines.append("|---:|" + "---:|" * len(names))
        n_samples = max(len(r["samples"]) for r in rows.values())
        for i in range(n_samples):
            cells = []
            label = None
            for n in names:
                s = rows[n]["samples"]
                if i < len(s):
                    label = label or f"{s[i]['mark']:,}"
                    cells.append(mib(s[i]["log_bytes"]))
                else:
                    cells.append("-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("| settled | " + " | ".join(mib(rows[n]["settled_bytes"]) for n in names) + " |")
        lines.append("| commits/s | " + " | ".join(f"{rows[n]['commits_per_s']:,.0f}" for n in names) + " |")
        lines.append("")
    lines.append("Reading: " + reading(results) + " ")
    lines.append("")
    lines.append("Brokers: " + "; ".join(f"{b} ({mib(r['segment_bytes'])} MiB): `{r['command']}`"
                                         for b, rs in results.items() for r in rs) + ".")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_section(path, section):
    brokers.write_section(path, section, MARK_BEGIN, MARK_END)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--commits", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--quick", action="store_true", help="both brokers, 200,000 commits; BENCHMARKS.md untouched")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = ap.parse_args()
    cfg = {"commits": args.commits, "groups": args.groups, "partitions": args.partitions, "window": args.window}
    kinds = ["fjord", "kafka"] if args.broker == "both" else [args.broker]
    segments = [KAFKA_DEFAULT_SEGMENT_BYTES, SMALL_SEGMENT_BYTES]
    if args.smoke:
        # Two groups, so that their __consumer_offsets partitions roll segments within 20,000 commits.
        cfg["commits"], cfg["groups"] = 20_000, 2
        kinds, segments = ["fjord"], [SMALL_SEGMENT_BYTES]
    elif args.quick:
        cfg["commits"] = 200_000
    pin_client()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python3 scripts/bench/offsets_log.py " + " ".join(sys.argv[1:]),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results, failed = {}, []
    with tempfile.TemporaryDirectory(prefix="fjord-bench-offsets-") as root:
        for kind in kinds:
            for seg in segments:
                try:
                    name, r = run_broker(kind, root, args.fjord_bin, seg, cfg)
                    results.setdefault(name, []).append(r)
                except Exception as e:  # noqa: BLE001 - reported, and fails --smoke
                    failed.append(f"{kind} ({seg} B segments): {e}")
                    log(f"{kind} failed: {e}")
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.smoke:
        for rs in results.values():
            for r in rs:
                peak = max((x["log_bytes"] for x in r["samples"]), default=0)
                if r["settled_bytes"] >= peak:
                    failed.append(f"not compacted: settled at {r['settled_bytes']} B, peak sample {peak} B")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = "offsets_log-smoke.json" if args.smoke else "offsets_log-quick.json" if args.quick else "offsets_log.json"
    with open(os.path.join(RESULTS_DIR, name), "w") as f:
        json.dump({"meta": meta, "config": cfg, "results": results, "failed": failed}, f, indent=1)
    section = render(results, cfg, meta) if results else ""
    if not (args.smoke or args.quick) and results:
        write_section(args.out, section)
    print(section)
    if failed:
        log("FAILED: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
