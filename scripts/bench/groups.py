#!/usr/bin/env python3
"""groups.py - consumer-group benchmark, Fjord vs Apache Kafka 4.3.1 on the same machine, in one run.

    python3 scripts/bench/groups.py [--broker fjord|kafka|both] [--quick] [--out BENCHMARKS.md]

Two measurements (issue 5, Performance):
  1. Rebalance: a group of 100 members over a 1,000-partition topic is formed and stable; then one more
     member joins. Measured: the time from the new member's first JoinGroup until all 101 members hold
     their SyncGroup answer for the new generation (the group is stable again). Then the new member leaves
     (LeaveGroup) and the time until the 100 are stable again is measured too. Repeated --trials times.
     Members learn of a rebalance from a Heartbeat answer (REBALANCE_IN_PROGRESS), as real clients do;
     they heartbeat every --heartbeat-ms (100 ms by default, both brokers), so about one heartbeat
     interval of every figure is the clients' detection delay, the rest is the broker.
  2. Commit throughput: a stable group of members that each commit one partition in a closed loop
     (OffsetCommit v7, one request in flight per connection, like commitSync) for --seconds; with 1 and
     with 16 committing members. Reported: commits/s and the broker's CPU time per commit.
Both are then run again with the brokers' data dirs in /dev/shm (tmpfs: fsync costs nothing), because Fjord
answers SyncGroup and OffsetCommit only once their records are fsynced and Kafka answers from the page cache.

The members speak the Kafka protocol directly (Python asyncio, one TCP connection per member, the
consumer protocol's "range" assignor computed by the leader), so the same client drives both brokers.
The broker is pinned to CPU 0 (taskset), this script to CPU 1. Brokers run one at a time: Kafka via
scripts/kafka.sh (its defaults: group.initial.rebalance.delay.ms=0, offsets.topic.num.partitions=1) and
target/release/fjord. Topics are created with the Kafka admin protocol (CreateTopics v4).

Writes the section between <!-- groups:begin --> and <!-- groups:end --> of --out (other sections are
kept) and scripts/bench/results/groups.json. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
from brokers import Fjord, Kafka, logger, pin_client  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS_DIR = os.path.join(HERE, "results")
MARK_BEGIN = "<!-- groups:begin -->"
MARK_END = "<!-- groups:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")

ERR_NONE = 0
ERR_COORDINATOR_LOAD_IN_PROGRESS = 14
ERR_COORDINATOR_NOT_AVAILABLE = 15
ERR_NOT_COORDINATOR = 16
ERR_REBALANCE_IN_PROGRESS = 27
ERR_TOPIC_ALREADY_EXISTS = 36
ERR_MEMBER_ID_REQUIRED = 79


log = logger("groups-bench")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ------------------------------------------------------------------------------------------ brokers


# ------------------------------------------------------------------------------------------ wire


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def byts(b):
    return i32(-1) if b is None else i32(len(b)) + b


def array(items):
    return i32(len(items)) + b"".join(items)


class R:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, n):
        v = self.b[self.o : self.o + n]
        self.o += n
        return v

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)


def subscription(topic):
    # ConsumerProtocolSubscription v0: version, topics, user_data
    return i16(0) + array([string(topic)]) + byts(None)


def assignment(topic, partitions):
    return i16(0) + array([string(topic) + array([i32(p) for p in partitions])]) + byts(None)


def range_assign(member_ids, partitions):
    ids = sorted(member_ids)
    n, per, extra = len(ids), partitions // len(ids), partitions % len(ids)
    out, start = {}, 0
    for i, m in enumerate(ids):
        k = per + (1 if i < extra else 0)
        out[m] = list(range(start, start + k))
        start += k
    assert start == partitions and n
    return out


class Conn:
    """One connection, one request in flight (like a consumer's coordinator connection)."""

    def __init__(self, reader, writer, client_id):
        self.r, self.w, self.client_id, self.corr = reader, writer, client_id, 0

    @classmethod
    async def open(cls, port, client_id):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, client_id)

    async def call(self, api_key, version, body):
        self.corr += 1
        payload = i16(api_key) + i16(version) + i32(self.corr) + string(self.client_id) + body
        self.w.write(i32(len(payload)) + payload)
        size = struct.unpack(">i", await self.r.readexactly(4))[0]
        resp = await self.r.readexactly(size)
        rd = R(resp)
        assert rd.i32() == self.corr
        return rd

    def close(self):
        self.w.close()


async def create_topic(port, name, partitions):
    c = await Conn.open(port, "bench-admin")
    body = array([string(name) + i32(partitions) + i16(1) + array([]) + array([])]) + i32(30000) + bytes([0])
    rd = await c.call(19, 4, body)  # CreateTopics v4
    rd.i32()  # throttle
    rd.i32()
    rd.string()
    err = rd.i16()
    c.close()
    if err not in (ERR_NONE, ERR_TOPIC_ALREADY_EXISTS):
        raise RuntimeError(f"CreateTopics {name}: error {err}")
    # wait for metadata (Metadata v1 for the topic) to show all partitions with a leader
    for _ in range(200):
        c = await Conn.open(port, "bench-admin")
        rd = await c.call(3, 1, array([string(name)]))
        c.close()
        for _ in range(rd.i32()):  # brokers
            rd.i32(), rd.string(), rd.i32(), rd.string()
        rd.i32()  # controller
        rd.i32()  # topics
        err = rd.i16()
        rd.string()
        rd.take(1)
        n = rd.i32()
        if err == 0 and n == partitions:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {name} not ready")


async def find_coordinator(port, group):
    for _ in range(300):
        c = await Conn.open(port, "bench")
        rd = await c.call(10, 2, string(group) + bytes([0]))  # FindCoordinator v2
        c.close()
        rd.i32()
        err = rd.i16()
        if err == ERR_NONE:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("no coordinator")


class Member:
    """A consumer-group member: JoinGroup v5 / SyncGroup v3 / Heartbeat v3 / OffsetCommit v7."""

    def __init__(self, port, group, topic, partitions, name, heartbeat_ms, bench):
        self.port, self.group, self.topic, self.partitions = port, group, topic, partitions
        self.name, self.heartbeat_ms, self.bench = name, heartbeat_ms, bench
        self.member_id, self.generation, self.assigned = "", -1, []
        self.stop = False
        self.synced_at = {}  # generation -> time its SyncGroup answer arrived
        self.round_started = {}  # generation -> when this member sent its first JoinGroup of that round

    async def run(self):
        self.conn = await Conn.open(self.port, self.name)
        try:
            while not self.stop:
                await self.join_and_sync()
                await self.heartbeat_until_rebalance()
            if self.member_id:
                # LeaveGroup v3
                await self.conn.call(13, 3, string(self.group) + array([string(self.member_id) + string(None)]))
        finally:
            self.conn.close()

    async def join_and_sync(self):
        started = time.monotonic()
        while True:
            body = (string(self.group) + i32(30000) + i32(60000) + string(self.member_id) + string(None)
                    + string("consumer") + array([string("range") + byts(subscription(self.topic))]))
            rd = await self.conn.call(11, 5, body)
            rd.i32()
            err, gen, _proto, leader, mid = rd.i16(), rd.i32(), rd.string(), rd.string(), rd.string()
            ids = []
            for _ in range(rd.i32()):
                ids.append(rd.string())
                rd.string()  # group_instance_id
                rd.bytes()  # subscription
            if err == ERR_MEMBER_ID_REQUIRED:
                self.member_id = mid
                continue
            if err == ERR_REBALANCE_IN_PROGRESS:
                continue
            if err in (ERR_COORDINATOR_LOAD_IN_PROGRESS, ERR_COORDINATOR_NOT_AVAILABLE, ERR_NOT_COORDINATOR):
                await asyncio.sleep(0.1)  # the coordinator is still loading (Kafka, just after start)
                continue
            if err != ERR_NONE:
                raise RuntimeError(f"{self.name}: JoinGroup error {err}")
            self.member_id, self.generation = mid, gen
            assignments = []
            if leader == mid:
                plan = range_assign(ids, self.partitions)
                assignments = [string(m) + byts(assignment(self.topic, ps)) for m, ps in plan.items()]
            body = string(self.group) + i32(gen) + string(mid) + string(None) + array(assignments)
            rd = await self.conn.call(14, 3, body)
            rd.i32()
            err = rd.i16()
            if err == ERR_REBALANCE_IN_PROGRESS:
                continue
            if err != ERR_NONE:
                raise RuntimeError(f"{self.name}: SyncGroup error {err}")
            a = R(rd.bytes() or i16(0) + i32(0))
            a.i16()
            self.assigned = []
            for _ in range(a.i32()):
                a.string()
                self.assigned += [a.i32() for _ in range(a.i32())]
            self.synced_at[gen] = time.monotonic()
            self.round_started[gen] = started
            return

    async def heartbeat_until_rebalance(self):
        while not self.stop:
            await asyncio.sleep(self.heartbeat_ms / 1000)
            rd = await self.conn.call(12, 3, string(self.group) + i32(self.generation) + string(self.member_id)
                                      + string(None))
            rd.i32()
            err = rd.i16()
            if err == ERR_REBALANCE_IN_PROGRESS:
                return
            if err != ERR_NONE:
                raise RuntimeError(f"{self.name}: Heartbeat error {err}")


def stable_at(members):
    """The generation all members are synced in, or None."""
    gens = {m.generation for m in members}
    if len(gens) != 1:
        return None
    g = gens.pop()
    if all(g in m.synced_at for m in members):
        owned = sorted(p for m in members for p in m.assigned)
        if owned == list(range(members[0].partitions)):
            return g
    return None


async def wait_stable(members, after_gen, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        g = stable_at(members)
        if g is not None and g > after_gen:
            return g
        await asyncio.sleep(0.002)
    raise RuntimeError(f"group not stable after generation {after_gen} within {timeout_s}s")


async def bench_rebalance(port, members_n, partitions, trials, heartbeat_ms, warmup):
    topic, group = f"rebalance-{partitions}", "bench-rebalance"
    await create_topic(port, topic, partitions)
    await find_coordinator(port, group)
    ms = [Member(port, group, topic, partitions, f"m{i}", heartbeat_ms, None) for i in range(members_n)]
    tasks = [asyncio.create_task(m.run()) for m in ms]
    t0 = time.monotonic()
    gen = await wait_stable(ms, -1, 180)
    formed_s = time.monotonic() - t0
    log(f"  {members_n} members stable at generation {gen} after {formed_s:.2f}s")
    joins, leaves, join_broker, leave_broker = [], [], [], []

    def broker_part(members, g):
        # from the last member's (re)join until the last SyncGroup answer: the broker's share
        return max(m.synced_at[g] for m in members) - max(m.round_started[g] for m in members)

    for k in range(warmup + trials):
        # a random phase against the members' heartbeats (they are in step after a rebalance, as real ones are)
        await asyncio.sleep(1.0 + random.uniform(0, heartbeat_ms / 1000))
        new = Member(port, group, topic, partitions, f"new{k}", heartbeat_ms, None)
        all_ = ms + [new]
        t0 = time.monotonic()
        nt = asyncio.create_task(new.run())
        gen = await wait_stable(all_, gen)
        joins.append(max(m.synced_at[gen] for m in all_) - t0)
        join_broker.append(broker_part(all_, gen))
        await asyncio.sleep(1.0 + random.uniform(0, heartbeat_ms / 1000))
        new.stop = True
        # it leaves after its current heartbeat pause; measure from its LeaveGroup answer
        while not nt.done():
            await asyncio.sleep(0.001)
        t0 = time.monotonic()
        gen = await wait_stable(ms, gen)
        leaves.append(max(m.synced_at[gen] for m in ms) - t0)
        leave_broker.append(broker_part(ms, gen))
        log(f"  {'warm-up' if k < warmup else 'trial'} {k + 1}: join -> stable {joins[-1] * 1000:.0f} ms"
            f" (broker part {join_broker[-1] * 1000:.0f}),"
            f" leave -> stable {leaves[-1] * 1000:.0f} ms (broker part {leave_broker[-1] * 1000:.0f})")
        if k < warmup:
            joins.pop(), join_broker.pop(), leaves.pop(), leave_broker.pop()
    for m in ms:
        m.stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    ms_ = lambda xs: [x * 1000 for x in xs]  # noqa: E731
    return {"formed_s": formed_s, "join_ms": ms_(joins), "leave_ms": ms_(leaves),
            "join_broker_ms": ms_(join_broker), "leave_broker_ms": ms_(leave_broker)}


async def bench_commits(port, pid, committers, seconds):
    topic, group = f"commits-{committers}", f"bench-commit-{committers}"
    await create_topic(port, topic, committers)
    await find_coordinator(port, group)
    ms = [Member(port, group, topic, committers, f"c{i}", 1000, None) for i in range(committers)]
    tasks = [asyncio.create_task(m.run()) for m in ms]
    gen = await wait_stable(ms, -1, 120)
    counts = [0] * committers
    errors = [0]
    stop = [False]

    async def loop(i, m):
        conn = await Conn.open(port, f"committer{i}")
        p = m.assigned[0]
        off = 0
        try:
            while not stop[0]:
                off += 1
                body = (string(group) + i32(gen) + string(m.member_id) + string(None)
                        + array([string(topic) + array([i32(p) + i64(off) + i32(-1) + string(None)])]))
                rd = await conn.call(8, 7, body)  # OffsetCommit v7
                rd.i32()
                rd.i32()
                rd.string()
                rd.i32()
                rd.i32()
                if rd.i16() == ERR_NONE:
                    counts[i] += 1
                else:
                    errors[0] += 1
        finally:
            conn.close()

    # warm-up
    stop[0] = False
    warm = [asyncio.create_task(loop(i, m)) for i, m in enumerate(ms)]
    await asyncio.sleep(min(3.0, seconds / 3))
    stop[0] = True
    await asyncio.gather(*warm)
    counts[:] = [0] * committers
    errors[0] = 0
    stop[0] = False
    cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
    run = [asyncio.create_task(loop(i, m)) for i, m in enumerate(ms)]
    await asyncio.sleep(seconds)
    stop[0] = True
    await asyncio.gather(*run)
    elapsed, cpu = time.monotonic() - t0, proc_cpu_seconds(pid) - cpu0
    for m in ms:
        m.stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    total = sum(counts)
    return {"committers": committers, "commits": total, "errors": errors[0], "seconds": elapsed,
            "commits_per_s": total / elapsed, "broker_cpu_us_per_commit": cpu / max(total, 1) * 1e6}


def run_broker(broker, args):
    log(f"starting {broker.name} in {broker.dir}")
    broker.start()
    try:
        out = {"command": broker.command}
        log(f"{broker.name}: rebalance, {args.members} members over {args.partitions} partitions")
        out["rebalance"] = asyncio.run(bench_rebalance(broker.port, args.members, args.partitions, args.trials,
                                                       args.heartbeat_ms, args.warmup))
        out["commits"] = []
        for n in (1, 16):
            log(f"{broker.name}: commits, {n} committing member(s), {args.seconds}s")
            r = asyncio.run(bench_commits(broker.port, broker.pid, n, args.seconds))
            log(f"  {r['commits_per_s']:.0f} commits/s, {r['broker_cpu_us_per_commit']:.1f} broker CPU-us/commit")
            out["commits"].append(r)
        return out
    finally:
        broker.stop()


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(results, args, load_before, load_after, when):
    L = [MARK_BEGIN, "## Consumer groups (issue 5)", ""]
    L.append(f"Run on {when} with `python3 scripts/bench/groups.py{' --quick' if args.quick else ''}` "
             f"(load average before {load_before}, after {load_after}; the machine is shared, so compare the "
             "ratios of this one run, not absolute numbers).")
    L.append("")
    L.append("Method: the members are a small asyncio client that speaks the Kafka protocol directly "
             "(JoinGroup v5, SyncGroup v3, Heartbeat v3, OffsetCommit v7, one TCP connection per member, "
             "\"range\" assignment computed by the leader), so the same client drives both brokers. "
             "Broker pinned to CPU 0, client to CPU 1; brokers run one at a time. Kafka 4.3.1 runs through "
             "`scripts/kafka.sh` (group.initial.rebalance.delay.ms=0, one `__consumer_offsets` partition); "
             "Fjord with its defaults. Kafka acknowledges commits from the page cache; Fjord's commits are "
             "fsynced (group commit) before the answer.")
    L.append("")
    L.append(f"**Rebalance**: {args.members} members over a {args.partitions}-partition topic are stable; one "
             "more member joins; time from its first JoinGroup until all members hold their SyncGroup answer "
             "for the new generation. Then it leaves (LeaveGroup) and the time until the others are stable "
             f"again. Members heartbeat every {args.heartbeat_ms} ms and learn of a rebalance from the "
             f"heartbeat answer, so up to one heartbeat interval of each figure is client-side detection; "
             "the *broker part* leaves that out: from the moment the last member sent its JoinGroup of the "
             "round until the last SyncGroup answer arrived (includes the leader computing the assignment "
             f"and one round trip). {args.trials} trials after {args.warmup} unmeasured ones, each at a random "
             "phase against the heartbeats.")
    L.append("")
    names = [n for n in ("Fjord", "Kafka") if n in results]
    both = len(names) == 2
    tmpfs = all("tmpfs" in results[n] for n in names)
    variants = [("", lambda n: results[n])] + ([(" (tmpfs)", lambda n: results[n]["tmpfs"])] if tmpfs else [])

    def header():
        cols = []
        for suffix, _ in variants:
            cols += [n + suffix for n in names] + (["Fjord / Kafka" + suffix] if both else [])
        L.append("| | " + " | ".join(cols) + " |")
        L.append("|---|" + "---|" * len(cols))

    def row(label, f, fmt, ratio=True):
        cells = []
        for _suffix, get in variants:
            vals = [f(get(n)) for n in names]
            cells += [fmt(v) for v in vals]
            if both:
                cells.append(f"{vals[0] / vals[1]:.2f}" if ratio and vals[1] else "")
        L.append(f"| {label} | " + " | ".join(cells) + " |")

    if tmpfs:
        L.append("Each figure comes twice: with the data dirs on the disk (the real case), and on tmpfs "
                 "(`/dev/shm`, where fsync costs nothing). Fjord writes the group's metadata record and every "
                 "commit to `__consumer_offsets` and fsyncs it before answering SyncGroup or OffsetCommit "
                 "(ARCHITECTURE.md: records on stable storage before any answer that depends on them); Kafka "
                 "answers once the record is in the page cache. The tmpfs columns show the brokers without that "
                 "difference; on this shared machine the disk's fsync latency varies a lot with other load.")
        L.append("")
    header()
    for what, key in (("joins", "join"), ("leaves", "leave")):
        row(f"member {what} → stable, median (ms)", lambda r, k=key: med(r["rebalance"][f"{k}_ms"]),
            lambda v: f"{v:.1f}")
        row("  max of the trials (ms)", lambda r, k=key: max(r["rebalance"][f"{k}_ms"]), lambda v: f"{v:.1f}")
        row("  broker part: last (re)join → last SyncGroup answer, median (ms)",
            lambda r, k=key: med(r["rebalance"][f"{k}_broker_ms"]), lambda v: f"{v:.1f}")
    row(f"forming the {args.members}-member group (s)", lambda r: r["rebalance"]["formed_s"],
        lambda v: f"{v:.2f}", ratio=False)
    L.append("")
    L.append("Forming the group takes Fjord longer because its `group.initial.rebalance.delay.ms` is Kafka's "
             "default (3 s, extended while members keep arriving) and cannot be set yet; `scripts/kafka.sh` "
             "sets it to 0 for Kafka.")
    L.append("")
    L.append(f"**Commit throughput**: members of a stable group commit one offset each per OffsetCommit, one "
             f"request in flight per member (like `commitSync`), {args.seconds} s after a warm-up. "
             "Higher is better for commits/s; lower for CPU.")
    L.append("")
    header()
    for i, n in enumerate((1, 16)):
        row(f"{n} committing member{'s' if n > 1 else ''}: commits/s", lambda r, i=i: r["commits"][i]["commits_per_s"],
            lambda v: f"{v:,.0f}")
        row(f"{n} committing member{'s' if n > 1 else ''}: broker CPU µs/commit",
            lambda r, i=i: r["commits"][i]["broker_cpu_us_per_commit"], lambda v: f"{v:.1f}")
    if both:
        verdict = []
        for suffix, get in variants:
            f, k = get("Fjord"), get("Kafka")
            parts = []
            for what, key in (("joins", "join_ms"), ("leaves", "leave_ms")):
                a, b = med(f["rebalance"][key]), med(k["rebalance"][key])
                parts.append(f"stable after a member {what}: {'yes' if a <= b else 'no'} ({a:.0f} vs {b:.0f} ms)")
            for i, n in enumerate((1, 16)):
                a, b = f["commits"][i]["commits_per_s"], k["commits"][i]["commits_per_s"]
                parts.append(f"commits/s with {n}: {'yes' if a >= b else 'no'} ({a:,.0f} vs {b:,.0f})")
            verdict.append(f"on {'tmpfs' if suffix else 'disk'}: " + ", ".join(parts))
        L.append("")
        L.append("Fjord at least as good as Kafka (the issue's target)? " + "; ".join(verdict) + ".")
    errs = {n: sum(c["errors"] for c in results[n]["commits"] + results[n].get("tmpfs", {}).get("commits", []))
            for n in names}
    L.append("")
    L.append("Commit errors: " + ", ".join(f"{n} {e}" for n, e in errs.items()) + ".")
    L.append("")
    L.append("Brokers: " + "; ".join(f"{n}: `{results[n]['command']}`" for n in names) + ".")
    L.append(MARK_END)
    return "\n".join(L)


def write_section(path, section):
    brokers.write_section(path, section, MARK_BEGIN, MARK_END)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured join/leave cycles first (the JVM needs them)")
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-tmpfs", dest="tmpfs", action="store_false",
                    help="skip the second run with the data dirs in /dev/shm")
    ap.add_argument("--quick", action="store_true", help="2 trials, 3 s of commits (smoke test)")
    ap.add_argument("--out", default=None, help="markdown file to update (default BENCHMARKS.md, or none with --quick)")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    args = ap.parse_args()
    if args.quick:
        args.trials, args.seconds, args.warmup = 2, 3.0, 1
    out = args.out or (None if args.quick else os.path.join(REPO, "BENCHMARKS.md"))
    pin_client()
    root = tempfile.mkdtemp(prefix="fjord-bench-groups-")
    load_before = loadavg()
    when = datetime.date.today().isoformat()
    results = {}
    brokers = []
    if args.broker in ("fjord", "both"):
        brokers.append(Fjord(root, args.fjord_bin))
    if args.broker in ("kafka", "both"):
        brokers.append(Kafka(root))
    shm_root = None
    try:
        for b in brokers:
            results[b.name] = run_broker(b, args)
        if args.tmpfs:
            # everything again with the data dirs on tmpfs, where fsync costs nothing
            shm_root = tempfile.mkdtemp(prefix="fjord-bench-groups-", dir="/dev/shm")
            again = [Fjord(shm_root, args.fjord_bin) if b.name == "Fjord" else Kafka(shm_root) for b in brokers]
            brokers += again
            for b in again:
                results[b.name]["tmpfs"] = run_broker(b, args)
    finally:
        for b in brokers:
            b.stop()
        subprocess.run(["rm", "-rf", root] + ([shm_root] if shm_root else []))
    load_after = loadavg()
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "groups.json"), "w") as f:
        json.dump({"date": when, "load_before": load_before, "load_after": load_after, "args": vars(args),
                   "results": results}, f, indent=1)
    section = report(results, args, load_before, load_after, when)
    print(section)
    if out:
        write_section(out, section)
        log(f"wrote the groups section of {out}")


if __name__ == "__main__":
    main()
