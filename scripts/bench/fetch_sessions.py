#!/usr/bin/env python3
"""fetch_sessions.py - what a poll of a 1,000-partition consumer costs the broker with and without fetch
sessions (KIP-227), Fjord and Apache Kafka 4.3.1 side by side in one run.

    python3 scripts/bench/fetch_sessions.py --fjord-bin target/release/fjord [--rounds N] [--polls N]
                                            [--partitions N] [--smoke]

Each round starts a fresh Fjord and a fresh Kafka (alternating which goes first), creates one topic of
PARTITIONS partitions with one record in each, and sends POLLS Fetch v13 requests as a caught-up consumer
of every partition does (MaxWaitMs 0, nothing new to read):
  - sessionless: session epoch -1, every partition named in every request, every partition answered;
  - session: one full fetch with epoch 0 (opens a session), then incremental fetches with the next epoch,
    naming no partition and answered with none.
Broker CPU is read from /proc/PID/stat (user+system) around each mode, minus the broker's idle CPU rate
over the same time (measured for 3 s before; Kafka's JVM has background threads), divided by POLLS. The
client (this script, pinned to CPU 1) encodes requests from Kafka's own schemas (tests/e2e/kschema.py);
the broker is pinned to CPU 0. Prints a Markdown table; without --smoke it rewrites the fetch-sessions
section of BENCHMARKS.md. Python standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import brokers  # noqa: E402
import kschema  # noqa: E402
import wire  # noqa: E402

BEGIN, END = "<!-- fetch-sessions:begin -->", "<!-- fetch-sessions:end -->"
FETCH_VERSION = 13
log = brokers.logger("fetch-sessions")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def java_pid(broker) -> int:
    """Kafka's scripts/kafka.sh reports the JVM's pid; Fjord's is the process started."""
    return broker.pid


def fetch_body(topic_id, partitions: int, sid: int, epoch: int, with_partitions: bool) -> dict:
    parts = [{"Partition": p, "FetchOffset": 1, "PartitionMaxBytes": 1 << 20, "LogStartOffset": -1}
             for p in range(partitions)] if with_partitions else []
    return {"ReplicaId": -1, "MaxWaitMs": 0, "MinBytes": 1, "MaxBytes": 50 << 20, "IsolationLevel": 0,
            "SessionId": sid, "SessionEpoch": epoch,
            "Topics": [{"Topic": "", "TopicId": topic_id, "Partitions": parts}] if parts else []}


def setup(bootstrap: str, partitions: int):
    with kschema.Conn(bootstrap, timeout_s=600) as conn:
        r = conn.call("CreateTopics", 7, {
            "Topics": [{"Name": "polls", "NumPartitions": partitions, "ReplicationFactor": 1}], "TimeoutMs": 600_000})
    assert r is not None and r["Topics"][0]["ErrorCode"] == 0, r
    topic_id = r["Topics"][0]["TopicId"]
    batch = wire.record_batch([(None, b"x")], int(time.time() * 1000))
    # Exactly one record per partition (a partition refused for a moment after creation is retried alone),
    # so that a fetch at offset 1 is at the end of every partition.
    pending = set(range(partitions))
    deadline = time.monotonic() + 120
    while pending:
        body = {"Acks": 1, "TimeoutMs": 30_000, "TopicData": [{"Name": "polls", "PartitionData": [
            {"Index": p, "Records": batch} for p in sorted(pending)]}]}
        with kschema.Conn(bootstrap, timeout_s=600) as conn:
            r = conn.call("Produce", 9, body)
        errors = {}
        for p in r["Responses"][0]["PartitionResponses"]:
            if p["ErrorCode"] == 0:
                pending.discard(p["Index"])
            else:
                errors[p["Index"]] = p["ErrorCode"]
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"produce errors {errors}")
        if pending:
            time.sleep(0.5)
    return topic_id


def measure(broker, topic_id, partitions: int, polls: int) -> dict:
    pid = java_pid(broker)
    bootstrap = f"127.0.0.1:{broker.port}"
    out = {}
    with kschema.Conn(bootstrap, timeout_s=60) as conn:
        # Idle CPU rate (Kafka's background threads; Fjord's flusher and timers).
        c0, t0 = cpu_s(pid), time.monotonic()
        time.sleep(3)
        idle_rate = (cpu_s(pid) - c0) / (time.monotonic() - t0)
        for mode in ("sessionless", "session"):
            sid, epoch = 0, -1
            if mode == "session":
                r = conn.call("Fetch", FETCH_VERSION, fetch_body(topic_id, partitions, 0, 0, True))
                sid, epoch = r["SessionId"], 1
                assert sid > 0, f"{broker.name}: no session"
            answered = 0
            c0, t0 = cpu_s(pid), time.monotonic()
            for _ in range(polls):
                body = fetch_body(topic_id, partitions, sid, epoch, mode == "sessionless")
                r = conn.call("Fetch", FETCH_VERSION, body)
                assert r is not None and r["ErrorCode"] == 0, r
                for t in r["Responses"]:
                    for p in t["Partitions"]:
                        assert p["ErrorCode"] == 0 and p["HighWatermark"] == 1, f"{broker.name}: {p}"
                        answered += 1
                if mode == "session":
                    epoch += 1
            wall = time.monotonic() - t0
            used = cpu_s(pid) - c0 - idle_rate * wall
            out[mode] = {"cpu_us_per_poll": max(used, 0.0) / polls * 1e6, "wall_ms_per_poll": wall / polls * 1e3,
                         "partitions_answered": answered / polls, "idle_rate": idle_rate}
            log(f"{broker.name} {mode}: {out[mode]}")
    return out


def run_round(fjord_bin, root, partitions, polls, fjord_first):
    results = {}
    order = ["Fjord", "Kafka"] if fjord_first else ["Kafka", "Fjord"]
    for name in order:
        d = os.path.join(root, f"{name}-{time.time_ns()}")
        broker = brokers.Fjord(d, fjord_bin) if name == "Fjord" else brokers.Kafka(d)
        broker.start()
        try:
            topic_id = setup(f"127.0.0.1:{broker.port}", partitions)
            results[name] = measure(broker, topic_id, partitions, polls)
        finally:
            broker.stop()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--polls", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="one short round, no BENCHMARKS.md change")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.polls, args.partitions = 1, 50, 100
    brokers.pin_client()
    load = os.getloadavg()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="fjord-fetch-sessions-") as root:
        for i in range(args.rounds):
            rounds.append(run_round(args.fjord_bin, root, args.partitions, args.polls, i % 2 == 0))
    med = {b: {m: {k: statistics.median(r[b][m][k] for r in rounds) for k in rounds[0][b][m]}
               for m in ("sessionless", "session")} for b in ("Fjord", "Kafka")}
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Fetch sessions (KIP-227): broker CPU per poll of a 1,000-partition consumer (issue 16)",
        "",
        f"Run of {when} by `python3 scripts/bench/fetch_sessions.py --rounds {args.rounds} --polls {args.polls} "
        f"--partitions {args.partitions}`: {args.rounds} round(s), each a fresh Fjord and a fresh Kafka 4.3.1 "
        f"(alternating which goes first); one topic of {args.partitions} partitions holding one record each; "
        f"{args.polls} Fetch v{FETCH_VERSION} polls of a caught-up consumer (MaxWaitMs 0) per mode. Broker on CPU 0, "
        "client on CPU 1. CPU is the broker's user+system time (/proc) over the polls minus its idle rate, per "
        f"poll; median over the rounds. Load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(2 cores shared with other work: compare ratios).",
        "",
        "| broker | mode | broker CPU µs/poll | wall ms/poll (client incl.) | partitions answered/poll |",
        "|---|---|---:|---:|---:|",
    ]
    for b in ("Fjord", "Kafka"):
        for m in ("sessionless", "session"):
            x = med[b][m]
            lines.append(f"| {b} | {m} | {x['cpu_us_per_poll']:.0f} | {x['wall_ms_per_poll']:.2f} | "
                         f"{x['partitions_answered']:.0f} |")
    f, k = med["Fjord"], med["Kafka"]

    def ratio(a, b):
        return a / b if b > 0 else float("nan")

    lines += [
        "",
        f"Sessions cut Fjord's CPU per poll {ratio(f['sessionless']['cpu_us_per_poll'], f['session']['cpu_us_per_poll']):.1f}x "
        f"and Kafka's {ratio(k['sessionless']['cpu_us_per_poll'], k['session']['cpu_us_per_poll']):.1f}x; "
        f"Fjord/Kafka CPU per poll: sessionless {ratio(f['sessionless']['cpu_us_per_poll'], k['sessionless']['cpu_us_per_poll']):.2f}, "
        f"session {ratio(f['session']['cpu_us_per_poll'], k['session']['cpu_us_per_poll']):.2f}.",
        "",
        "Every round (CPU µs/poll, sessionless / session):",
        "",
    ]
    for i, r in enumerate(rounds):
        lines.append(f"- round {i + 1}: Fjord {r['Fjord']['sessionless']['cpu_us_per_poll']:.0f} / "
                     f"{r['Fjord']['session']['cpu_us_per_poll']:.0f}, Kafka {r['Kafka']['sessionless']['cpu_us_per_poll']:.0f} / "
                     f"{r['Kafka']['session']['cpu_us_per_poll']:.0f}")
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.smoke:
        brokers.write_section(os.path.join(REPO, "BENCHMARKS.md"), section, BEGIN, END)


if __name__ == "__main__":
    main()
