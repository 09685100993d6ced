#!/usr/bin/env python3
"""replication.py - three nodes, replication factor 3, acks=all: Fjord vs Apache Kafka 4.3.1 on one machine.

    ~/.cache/fjord-e2e/venv/bin/python scripts/bench/replication.py [--broker fjord|kafka|both]
        [--fjord-fetch durable|page-cache|both] [--seconds S] [--partitions 1,6] [--latency-mb-s R] [--catchup-mib N] [--failover-rate N]
        [--smoke] [--fjord-bin PATH] [--out BENCHMARKS.md]

Issue 13, Performance. Runs with the e2e venv's Python (tests/e2e/setup.sh): the load generators are
confluent-kafka (librdkafka) producers and consumers, each in a child process of this script (the script
runs itself with --client ...), idempotent (enable.idempotence=true, acks=all), 1 KiB records whose first
16 bytes are the send time (CLOCK_REALTIME, ns) and a sequence number, sent round-robin over the partitions.
For each broker kind in turn (never both at once), on a fresh three-node cluster (three combined
broker+controller nodes on loopback, a static KRaft quorum, Kafka's config names, started as
scripts/bench/failover.py does; broker.session.timeout.ms 9000 and broker.heartbeat.interval.ms 2000,
Kafka's defaults; every other setting at each kind's default: Fjord durable, a record counts toward the
high watermark only once fsynced on the leader and the followers; Kafka without fsync), topics with
replication factor 3 and min.insync.replicas=2:
  1. throughput: for each partition count, one producer at full speed for --seconds (librdkafka's defaults:
     linger.ms 5, batch.size 1 MB); MB/s and records/s of acknowledged records, from the first send to the
     last acknowledgement; the producer's CPU share is reported so a client-bound row can be seen.
  2. latency: 6 partitions, a fixed rate of --latency-mb-s (the same on both kinds, below both peaks),
     linger.ms 0; the producer's acknowledgement latency per record (librdkafka's msg.latency(): produce()
     to the acknowledgement) and the end-to-end latency (send time in the value to a consumer's receipt,
     fetch.wait.max.ms 100, a consumer in another process) as p50/p99/p99.9/max. The producer first sends
     for --latency-warmup-seconds at the same rate and waits for those acknowledgements; they carry negative
     sequence numbers and count nowhere. Without the warm-up the first second made up most of the tail (a
     Fjord run on 2026-12-07: p99 730 ms over the first second, 110-230 ms over each later one): the topic
     had just been created and the producer was still connecting and getting its producer id.
  3. failover under load: 6 partitions, a steady --failover-rate records/s; after 5 s, kill -9 of the node
     that leads partition 0 (one that is not the active controller, so that this is a broker failover);
     measured from the producer's acknowledgement times (every acknowledgement is logged: partition, offset,
     sequence, time): the longest stretch without any acknowledgement on the partitions the killed node
     led and overall, and the time from the kill until every one of those partitions had acknowledged again.
     After the run every partition is read back from offset 0: an acknowledged record missing or at
     another offset is a failure. The node is restarted; the time until it is back in every ISR is reported.
  4. follower catch-up: 1 partition; kill -9 of a follower (not the active controller); wait until the ISR
     no longer lists it; produce --catchup-mib MiB (acks=all still succeeds with two in-sync replicas);
     restart the follower and measure, from the restart, the time until it is registered and until
     Metadata's ISR lists it again; catch-up rate = the leader's log growth while it was down / that time.
The machine has 2 cores shared by the three nodes, the load generators and any other work: compare the
kinds within one run; the load average before and after is in the report. Writes
scripts/bench/results/replication.json and the section between <!-- replication:begin --> and
<!-- replication:end --> of --out. --smoke: Fjord only, small sizes (about a minute), session 2000 ms,
exits non-zero on any failure, writes only scripts/bench/results/replication-smoke.json.
--fjord-fetch page-cache runs Fjord's nodes with replica.fetch.durable=false (a follower reports what it
fetched before flushing it, so acks=all means fsynced on the leader, in the page cache on the followers, as
Kafka's followers); both runs Fjord twice, at its default and so, each on a fresh cluster, in one run.
--broker fjord --fjord-fetch both writes scripts/bench/results/replication-fetch.json and its own subsection
(between <!-- replication-fetch:begin --> and <!-- replication-fetch:end -->, after the main section).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import brokers  # noqa: E402
import failover  # noqa: E402
import kwire  # noqa: E402
from brokers import logger, port_open  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS_DIR = os.path.join(HERE, "results")
MARK_BEGIN = "<!-- replication:begin -->"
MARK_END = "<!-- replication:end -->"
# A Fjord-only run of both replica.fetch.durable settings (--broker fjord --fjord-fetch both) writes its own
# subsection, right after the main one, so that neither run overwrites the other.
FETCH_BEGIN = "<!-- replication-fetch:begin -->"
FETCH_END = "<!-- replication-fetch:end -->"
RECORD = 1024
HEADER = struct.Struct(">qq")  # send time (ns, CLOCK_REALTIME), sequence number
TOPIC_CONFIGS = {"min.insync.replicas": "2"}
# The row name of Fjord with replica.fetch.durable=false (--fjord-fetch page-cache or both).
FJORD_PAGE_CACHE = "Fjord, replica.fetch.durable=false"
POLL_S = 0.1

log = logger("replication")


# ---------------------------------------------------------------- load generators (child processes)


def summary_ms(lat_s):
    """p50/p99/p99.9/max/mean in ms of a list of seconds."""
    if not lat_s:
        return None
    s = sorted(lat_s)
    n = len(s)
    return {"samples": n, "p50_ms": s[n // 2] * 1e3, "p99_ms": s[min(n - 1, int(n * 0.99))] * 1e3,
            "p999_ms": s[min(n - 1, int(n * 0.999))] * 1e3, "max_ms": s[-1] * 1e3, "mean_ms": sum(s) / n * 1e3}


def client_produce(a):
    """One idempotent acks=all producer; prints one JSON line. --rate 0: as fast as it can."""
    from confluent_kafka import KafkaException, Producer

    fatal = []
    conf = {"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "acks": "all",
            "compression.type": "none", "message.timeout.ms": 120_000, "log_level": 0,
            "error_cb": lambda e: fatal.append(str(e)) if e.fatal() else None}
    if a.linger_ms is not None:
        conf["linger.ms"] = a.linger_ms
    p = Producer(conf)
    pad = b"x" * (a.size - HEADER.size)
    lat, acks, errors = [], [], []
    state = {"acked": 0, "last": None}
    t0 = time.monotonic()

    def on_delivery(err, msg):
        now = time.monotonic()
        if err is not None:
            errors.append(str(err))
            return
        state["acked"] += 1
        state["last"] = now
        lat.append(msg.latency() or 0.0)
        if a.ack_log:
            acks.append((msg.partition(), msg.offset(), HEADER.unpack_from(msg.value())[1], now))

    if a.warmup_seconds > 0:
        # Records with negative sequence numbers, paced alike; the consumer skips them and their
        # acknowledgements are dropped below, so the measurement starts with a connected producer that
        # holds its producer id, on partitions whose followers are fetching.
        n_warm = max(a.partitions, int(a.rate * a.warmup_seconds)) if a.rate else a.partitions
        w0 = time.monotonic()
        for i in range(n_warm):
            while a.rate and time.monotonic() < w0 + i / a.rate:
                p.poll(0.001)
            while True:
                try:
                    p.produce(a.topic, HEADER.pack(time.time_ns(), -1 - i) + pad, partition=i % a.partitions)
                    break
                except BufferError:
                    p.poll(0.005)
        if p.flush(120) != 0:
            fatal.append("the warm-up records were not all acknowledged within 120 s")
        lat.clear()
        errors.clear()
        t0 = time.monotonic()

    sent = 0
    limit_n = a.count or None
    end = t0 + a.seconds if a.seconds else None
    first = None
    try:
        while not fatal:
            now = time.monotonic()
            if (end is not None and now >= end) or (limit_n is not None and sent >= limit_n):
                break
            if a.rate:
                due = min(int((now - t0) * a.rate) + 1, limit_n or 1 << 62)
            else:
                due = sent + 1000
            while sent < due:
                try:
                    p.produce(a.topic, HEADER.pack(time.time_ns(), sent) + pad, partition=sent % a.partitions,
                              on_delivery=on_delivery)
                except BufferError:
                    p.poll(0.005)
                    break
                if first is None:
                    first = time.monotonic()
                sent += 1
                if limit_n is not None and sent >= limit_n:
                    break
            p.poll(0.001 if a.rate else 0)
        p.flush(180)
    except KafkaException as e:
        fatal.append(str(e))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = (state["last"] - first) if state["last"] and first else 0.0
    out = {"sent": sent, "acked": state["acked"], "errors": len(errors), "error_sample": errors[:3],
           "fatal": fatal[:3], "elapsed_s": elapsed, "bytes": state["acked"] * a.size,
           "cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": time.monotonic() - t0, "latency": summary_ms(lat)}
    if a.ack_log:
        with open(a.ack_log, "w") as f:
            json.dump({"clock": "CLOCK_MONOTONIC", "acks": acks}, f)
    print(json.dumps(out), flush=True)
    return 0 if not fatal else 1


def client_e2e(a):
    """A consumer of every partition from its end; prints "ready" once positioned, then one JSON line with
    the end-to-end latency (send time in the value to receipt) after --count records or --seconds."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"repl-e2e-{time.time_ns()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100, "log_level": 0})
    # positioned at each partition's end (the high watermark) before the producer starts; a second of polls
    # lets the fetchers start
    tps = [TopicPartition(a.topic, p, c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=30)[1])
           for p in range(a.partitions)]
    c.assign(tps)
    t_ready = time.monotonic() + 1.0
    while time.monotonic() < t_ready:
        c.poll(0.1)
    print("ready", flush=True)
    lat, n = [], 0
    end = time.monotonic() + a.seconds
    while n < a.count and time.monotonic() < end:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        now = time.time_ns()
        sent_ns, seq = HEADER.unpack_from(m.value())
        if seq < 0:
            continue  # the producer's warm-up
        lat.append((now - sent_ns) / 1e9)
        n += 1
    c.close()
    print(json.dumps({"received": n, "latency": summary_ms(lat)}), flush=True)
    return 0


def client_readback(a):
    """Reads every partition from offset 0 to its end and checks the acknowledgement log: prints one JSON
    line {"acked", "lost", "moved", "read"}."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    with open(a.ack_log) as f:
        acks = json.load(f)["acks"]
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"repl-read-{time.time_ns()}",
                  "enable.auto.commit": False, "log_level": 0})
    ends = {p: c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=30)[1] for p in range(a.partitions)}
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in range(a.partitions)])
    held = {}
    done = {p for p, e in ends.items() if e == 0}
    deadline = time.monotonic() + 120
    while len(done) < a.partitions and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        held[(m.partition(), m.offset())] = HEADER.unpack_from(m.value())[1]
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    by_seq = {seq: key for key, seq in held.items()}
    lost = moved = 0
    for part, off, seq, _t in acks:
        got = held.get((part, off))
        if got == seq:
            continue
        if seq in by_seq:
            moved += 1
        else:
            lost += 1
    print(json.dumps({"acked": len(acks), "lost": lost, "moved": moved, "read": len(held),
                      "complete": len(done) == a.partitions, "ends": ends}), flush=True)
    return 0 if lost == moved == 0 and len(done) == a.partitions else 1


def client_main(argv):
    ap = argparse.ArgumentParser(prog="replication.py --client")
    ap.add_argument("mode", choices=["produce", "e2e", "readback"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--size", type=int, default=RECORD)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--linger-ms", type=int)
    ap.add_argument("--warmup-seconds", type=float, default=0)
    ap.add_argument("--ack-log")
    a = ap.parse_args(argv)
    return {"produce": client_produce, "e2e": client_e2e, "readback": client_readback}[a.mode](a)


# ---------------------------------------------------------------- orchestration


CHILDREN = []  # every load generator started, killed on the way out


class Child:
    """A load generator: this script run with --client."""

    def __init__(self, args, label):
        self.argv = [sys.executable, os.path.abspath(__file__), "--client"] + [str(x) for x in args]
        self.label = label
        self.p = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL)
        CHILDREN.append(self)

    def readline(self, timeout_s):
        import select

        r, _, _ = select.select([self.p.stdout], [], [], timeout_s)
        return self.p.stdout.readline().strip() if r else None

    def result(self, timeout_s):
        try:
            out, err = self.p.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise RuntimeError(f"{self.label}: still running after {timeout_s:.0f} s, killed")
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"{self.label}: no result (rc {self.p.returncode}): {err[-1500:]}")
        return json.loads(lines[-1]), self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def produce(cluster, topic, partitions, label, **kw):
    args = ["produce", "--bootstrap", bootstrap(cluster), "--topic", topic, "--partitions", partitions]
    for k, v in kw.items():
        if v is not None:
            args += ["--" + k.replace("_", "-"), v]
    return Child(args, label)


def bootstrap(cluster):
    return ",".join(n.addr for n in cluster.nodes if n.proc is not None and n.proc.poll() is None)


def wait_for(what, pred, timeout_s=120):
    return failover.wait_for(what, pred, timeout_s)


def parts(node, topic):
    try:
        return kwire.partitions(node.addr, topic, timeout_s=5.0)
    except (OSError, kwire.WireError, struct.error):
        return None


def fully_in_sync(node, topic, n, rf=3):
    ps = parts(node, topic)
    return bool(ps) and len(ps) == n and all(p["error"] == 0 and p["leader"] >= 0 and len(p["isr"]) == rf
                                             for p in ps)


def create(cluster, topic, n):
    errs = kwire.create_topics(cluster.nodes[0].addr, {topic: n}, timeout_ms=60_000, replication_factor=3,
                               configs=TOPIC_CONFIGS)
    if errs.get(topic, (0,))[0] not in (0, 36):
        raise RuntimeError(f"CreateTopics {topic}: {errs}")
    wait_for(f"{topic}: every partition led with three in-sync replicas on every node",
             lambda: all(fully_in_sync(nd, topic, n) for nd in cluster.nodes))


def live(cluster, exclude=None):
    return next(n for n in cluster.nodes if n is not exclude and n.proc is not None and n.proc.poll() is None)


def check_produce(res, label, failed):
    if res.get("fatal") or res.get("errors") or res["acked"] != res["sent"]:
        failed.append(f"{label}: sent {res['sent']}, acknowledged {res['acked']}, errors {res.get('errors')} "
                      f"{res.get('error_sample')} fatal {res.get('fatal')}")


def gaps(times):
    """(longest gap, its start) over sorted times."""
    best = (0.0, None)
    for x, y in zip(times, times[1:]):
        if y - x > best[0]:
            best = (y - x, x)
    return best


def phase_throughput(cluster, cfg, failed):
    rows = []
    for n in cfg.partitions:
        topic = f"tput-{n}"
        create(cluster, topic, n)
        label = f"{cluster.name} throughput, {n} partition(s)"
        c = produce(cluster, topic, n, label, seconds=cfg.seconds)
        res, _ = c.result(cfg.seconds + 240)
        check_produce(res, label, failed)
        secs = max(res["elapsed_s"], 1e-6)
        row = {"partitions": n, "records": res["acked"], "seconds": secs, "mb_s": res["bytes"] / secs / 1e6,
               "records_s": res["acked"] / secs, "client_cpu_share": res["cpu_s"] / max(res["wall_s"], 1e-6),
               "latency_saturated": res["latency"]}
        log(f"{label}: {row['mb_s']:.1f} MB/s, {row['records_s']:,.0f} records/s (producer CPU "
            f"{row['client_cpu_share']:.0%})")
        rows.append(row)
        # the disk is shared and small: the next phases do not need this data
        errs = kwire.delete_topics(cluster.nodes[0].addr, [topic])
        if errs.get(topic) != 0:
            log(f"{cluster.name}: deleting {topic}: {errs}")
    return rows


class FsyncProbe(threading.Thread):
    """Every 50 ms, appends 4 KiB to a file beside the data dirs and times its fdatasync: how long a durable
    write takes on this disk while the run (and the machine's other work) goes on."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.path = os.path.join(root, "fsync-probe")
        self.lat, self.stop_ev = [], threading.Event()

    def run(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while not self.stop_ev.wait(0.05):
                os.write(fd, b"p" * 4096)
                t0 = time.monotonic()
                os.fdatasync(fd)
                self.lat.append(time.monotonic() - t0)
        finally:
            os.close(fd)
            os.remove(self.path)

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        return summary_ms(self.lat)


def phase_latency(cluster, cfg, root, failed):
    topic, n = "latency", 6
    create(cluster, topic, n)
    rate = cfg.latency_mb_s * 1e6 / RECORD
    count = int(rate * cfg.latency_seconds)
    cons = Child(["e2e", "--bootstrap", bootstrap(cluster), "--topic", topic, "--partitions", n, "--count", count,
                  "--seconds", cfg.latency_seconds + 60], f"{cluster.name} e2e consumer")
    line = cons.readline(90)
    if line != "ready":
        cons.kill()
        raise RuntimeError(f"{cluster.name}: the end-to-end consumer did not get ready: {line}")
    label = f"{cluster.name} latency at {cfg.latency_mb_s:g} MB/s"
    probe = FsyncProbe(root)
    probe.start()
    prod = produce(cluster, topic, n, label, rate=f"{rate:.1f}", count=count, linger_ms=0,
                   warmup_seconds=cfg.latency_warmup_seconds)
    try:
        res, _ = prod.result(cfg.latency_seconds + 240)
    finally:
        fsync = probe.finish()
    check_produce(res, label, failed)
    e2e, _ = cons.result(120)
    if e2e.get("received") != count:
        failed.append(f"{label}: the end-to-end consumer received {e2e.get('received')} of {count}")
    out = {"mb_s": cfg.latency_mb_s, "records_s": rate, "records": res["acked"], "seconds": res["elapsed_s"],
           "ack": res["latency"], "e2e": e2e.get("latency"), "fdatasync": fsync}
    a, e = out["ack"] or {}, out["e2e"] or {}
    log(f"{label}: ack p50 {a.get('p50_ms', 0):.2f} p99 {a.get('p99_ms', 0):.2f} p99.9 {a.get('p999_ms', 0):.2f} ms; "
        f"e2e p50 {e.get('p50_ms', 0):.2f} p99 {e.get('p99_ms', 0):.2f} p99.9 {e.get('p999_ms', 0):.2f} ms; "
        f"the disk's 4 KiB fdatasync meanwhile p50 {(fsync or {}).get('p50_ms', 0):.2f} p99 "
        f"{(fsync or {}).get('p99_ms', 0):.2f} ms")
    return out


def phase_failover(cluster, cfg, root, failed):
    topic, n = "failover", 6
    create(cluster, topic, n)
    witness = cluster.nodes[0]
    controller = failover.active_controller(witness)
    ps = parts(witness, topic)
    # the leader of the lowest partition whose leader is not the active controller
    victim_id = next((p["leader"] for p in ps if p["leader"] != controller), None)
    if victim_id is None:
        raise RuntimeError(f"every partition is led by the active controller {controller}")
    victim = next(x for x in cluster.nodes if x.id == victim_id)
    led = [p["partition"] for p in ps if p["leader"] == victim_id]
    ack_log = os.path.join(root, f"{cluster.name}-failover-acks.json")
    total_s = cfg.failover_before_s + cfg.failover_after_s
    label = f"{cluster.name} failover under load"
    prod = produce(cluster, topic, n, label, rate=cfg.failover_rate, seconds=total_s, ack_log=ack_log)
    t_start = time.monotonic()
    time.sleep(cfg.failover_before_s)
    victim.kill9()
    t_kill = time.monotonic()  # CLOCK_MONOTONIC, the clock of the producer's acknowledgement log too
    log(f"{label}: kill -9 of node {victim_id} (leader of partitions {led}; active controller {controller}) "
        f"{t_kill - t_start:.2f} s after the producer started")
    res, _ = prod.result(total_s + 300)
    check_produce(res, label, failed)
    with open(ack_log) as f:
        acks = json.load(f)["acks"]
    t_kill_p = t_kill
    all_times = sorted(t for *_, t in acks)
    overall_gap, _ = gaps(all_times)
    per_part = {}
    for p in led:
        ts = sorted(t for part, _o, _s, t in acks if part == p)
        g, g_at = gaps(ts)
        # acks resume at the end of the longest gap that ends after the kill (answers already on the wire at
        # the kill may still arrive just after it)
        tail = [(y - x, y) for x, y in zip(ts, ts[1:]) if y > t_kill_p]
        resume = (max(tail)[1] - t_kill_p) if tail else None
        per_part[p] = {"longest_gap_s": g, "gap_start_after_kill_s": None if g_at is None else g_at - t_kill_p,
                       "resume_s": resume}
    resume = [v["resume_s"] for v in per_part.values()]
    out = {"rate": cfg.failover_rate, "victim": victim_id, "controller": controller, "led": led,
           "kill_after_start_s": t_kill - t_start, "acked": res["acked"], "sent": res["sent"],
           "longest_gap_led_s": max(v["longest_gap_s"] for v in per_part.values()),
           "longest_gap_all_s": overall_gap,
           "resume_s": max(resume) if None not in resume else None, "per_partition": per_part}
    log(f"{label}: longest stretch without an acknowledgement {out['longest_gap_led_s']:.2f} s on the killed "
        f"node's partitions ({overall_gap:.2f} s over all); acknowledgements on all of them again "
        f"{out['resume_s'] if out['resume_s'] is None else round(out['resume_s'], 2)} s after the kill")
    # restart the node, then read everything back
    t0 = time.monotonic()
    cluster.start_node(victim)
    wait_for("the killed node back in every ISR", lambda: fully_in_sync(live(cluster, victim), topic, n))
    out["rejoin_s"] = time.monotonic() - t0
    rb = Child(["readback", "--bootstrap", bootstrap(cluster), "--topic", topic, "--partitions", n,
                "--ack-log", ack_log], f"{label}: read back")
    check, rc = rb.result(300)
    out["readback"] = check
    if rc != 0 or check["lost"] or check["moved"] or not check["complete"]:
        failed.append(f"{label}: read back: {check}")
    log(f"{label}: restarted node in every ISR after {out['rejoin_s']:.2f} s; read back {check['read']} records: "
        f"{check['acked']} acknowledged, {check['lost']} lost, {check['moved']} moved")
    os.remove(ack_log)
    return out


def phase_catchup(cluster, cfg, failed):
    topic, n = "catchup", 1
    create(cluster, topic, n)
    witness = cluster.nodes[0]
    controller = failover.active_controller(witness)
    p0 = parts(witness, topic)[0]
    followers = [r for r in p0["replicas"] if r != p0["leader"]]
    fid = next((r for r in followers if r != controller), followers[0])
    victim = next(x for x in cluster.nodes if x.id == fid)
    other = live(cluster, victim)
    victim.kill9()
    t0 = time.monotonic()
    wait_for("the ISR to drop the killed follower", lambda: (lambda ps: bool(ps) and fid not in ps[0]["isr"])(
        parts(other, topic)), timeout_s=120)
    shrink_s = time.monotonic() - t0
    log(f"{cluster.name} catch-up: follower {fid} killed (leader {p0['leader']}, active controller {controller}); "
        f"out of the ISR after {shrink_s:.2f} s")
    count = cfg.catchup_mib * 1024 * 1024 // RECORD
    label = f"{cluster.name} catch-up: produce {cfg.catchup_mib} MiB"
    prod = produce(cluster, topic, n, label, count=count)
    res, _ = prod.result(1800)
    check_produce(res, label, failed)
    behind = res["acked"] * RECORD
    t0 = time.monotonic()
    cluster.start_node(victim)
    wait_for("the restarted follower registered", lambda: failover.registered(other, [fid]), timeout_s=300)
    reg_s = time.monotonic() - t0
    wait_for("the restarted follower back in the ISR", lambda: (lambda ps: bool(ps) and fid in ps[0]["isr"])(
        parts(other, topic)), timeout_s=1800)
    isr_s = time.monotonic() - t0
    out = {"follower": fid, "behind_bytes": behind, "records": res["acked"], "produce_mb_s": behind / max(
        res["elapsed_s"], 1e-6) / 1e6, "isr_shrink_s": shrink_s, "registered_s": reg_s, "isr_s": isr_s,
        "catchup_mb_s": behind / isr_s / 1e6, "after_registered_s": isr_s - reg_s,
        "catchup_after_registered_mb_s": behind / max(isr_s - reg_s, 1e-6) / 1e6}
    log(f"{cluster.name} catch-up: {behind / 2**20:.0f} MiB behind; registered {reg_s:.2f} s, in the ISR "
        f"{isr_s:.2f} s after the restart ({out['catchup_mb_s']:.0f} MB/s)")
    return out


def run_kind(kind, cfg, root, failed):
    sub = os.path.join(root, kind)
    os.makedirs(sub)
    if kind == "fjord":
        cluster = failover.FjordCluster(sub, cfg.fjord_bin, cfg.session_ms, cfg.heartbeat_ms)
    elif kind == "fjord-page-cache":
        cluster = failover.FjordCluster(sub, cfg.fjord_bin, cfg.session_ms, cfg.heartbeat_ms,
                                        extra={"replica.fetch.durable": "false"}, name=FJORD_PAGE_CACHE)
    else:
        cluster = failover.KafkaCluster(sub, cfg.session_ms, cfg.heartbeat_ms)
    res = {"broker": cluster.name, "load_before": loadavg()}
    for nd in cluster.nodes:
        cluster.start_node(nd)
    try:
        ids = [nd.id for nd in cluster.nodes]
        wait_for("the cluster to start", lambda: all(port_open(nd.port) for nd in cluster.nodes))
        wait_for("all brokers registered", lambda: failover.registered(cluster.nodes[0], ids))
        log(f"{cluster.name}: three nodes up")
        res["command"] = cluster.command()
        for name, fn in (("throughput", lambda: phase_throughput(cluster, cfg, failed)),
                         ("latency", lambda: phase_latency(cluster, cfg, root, failed)),
                         ("failover", lambda: phase_failover(cluster, cfg, root, failed)),
                         ("catchup", lambda: phase_catchup(cluster, cfg, failed))):
            if name not in cfg.phases:
                continue
            try:
                res[name] = fn()
            except Exception as e:  # noqa: BLE001 - reported, and fails --smoke
                res[name] = {"error": str(e)[:400]}
                failed.append(f"{cluster.name} {name}: {e}")
                log(f"{cluster.name} {name} failed: {e}")
        res["rss_mib"] = [round(nd.rss_mib(), 1) for nd in cluster.nodes]
        res["data_mib"] = [round(dir_bytes(nd.data) / 2**20) for nd in cluster.nodes]
    except Exception:
        failover.log_tails(cluster, log)
        raise
    finally:
        for nd in cluster.nodes:
            nd.stop()
        res["load_after"] = loadavg()
        if not cfg.keep:
            for nd in cluster.nodes:
                shutil.rmtree(nd.data, ignore_errors=True)
    return res


def dir_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(v, d=1):
    return "-" if v is None or v != v else f"{v:,.{d}f}"


def ratio(a, b):
    return (a / b) if a and b else None


def phase_rows(lines, res, phase, columns, cells):
    """One table row per kind that ran `phase`: the kind, then `cells(result)`, or the failure."""
    for b in res:
        r = res.get(b)
        if not r or phase not in r:
            continue
        if "error" in r[phase]:
            lines.append(f"| {b} | failed: {r[phase]['error']} |" + " |" * (columns - 2))
            continue
        lines.append(f"| {b} | " + " | ".join(cells(r[phase])) + " |")


def render(doc, fetch_run=False):
    cfg, res = doc["config"], {r["broker"]: r for r in doc["results"]}
    begin, end = (FETCH_BEGIN, FETCH_END) if fetch_run else (MARK_BEGIN, MARK_END)
    heading = ("### Fjord: replica.fetch.durable=false against the default" if fetch_run
               else "## Replication: three nodes, RF 3, acks=all (issue 13)")
    fetch_note = (f" **{FJORD_PAGE_CACHE}** rows: Fjord's nodes with that setting, so a follower reports what it "
                  "fetched before flushing it: acks=all is answered once the record is fsynced on the leader and in "
                  "the followers' page cache, as by Kafka's followers." if FJORD_PAGE_CACHE in res else "")
    lines = [begin, heading, ""]
    lines.append(
        f"Run on {doc['meta']['date']} (release build of {doc['meta']['commit']}) with `{doc['meta']['command']}` "
        f"on this shared 2-core machine: the three nodes of a kind, the load generators and other engineers' "
        f"work share the two cores (load average before {doc['meta']['load_before']}, after "
        f"{doc['meta']['load_after']}). Method: `scripts/bench/replication.py` (its docstring has the details). "
        "Each kind in turn on a fresh cluster of three combined broker+controller nodes on loopback (Kafka's "
        "config names, broker.session.timeout.ms 9000, broker.heartbeat.interval.ms 2000); topics with "
        "replication factor 3 and min.insync.replicas=2. **Fjord at its defaults is durable**: a record counts "
        "toward the high watermark (and acks=all is answered) only once it is fsynced on the leader and on the "
        "followers of the ISR."
        + (" **Kafka at its defaults does not fsync** (it acknowledges once the followers have the record in "
           "their page cache)." if "Kafka" in res else "")
        + f"{fetch_note} Load generator: confluent-kafka "
        f"{doc['meta'].get('client', '')}, idempotent producer, acks=all, 1 KiB records, one "
        "producer process, each in a process of its own.")
    lines.append("")
    lines.append("**Throughput** (one producer at full speed for "
                 f"{cfg['seconds']:g} s, librdkafka's default linger.ms 5; acknowledged records, first send to "
                 "last acknowledgement):")
    lines.append("")
    versus = "Kafka" if "Kafka" in res else FJORD_PAGE_CACHE
    lines.append(f"| partitions | broker | MB/s | records/s | producer CPU | "
                 f"{'Fjord / Kafka' if versus == 'Kafka' else 'this / Fjord default'} |")
    lines.append("|---:|---|---:|---:|---:|---:|")
    for n in cfg["partitions"]:
        vals = {}
        for b in res:
            r = res.get(b)
            if not r or "throughput" not in r:
                continue
            if "error" in r["throughput"]:
                lines.append(f"| {n} | {b} | failed: {r['throughput']['error']} | | | |")
                continue
            row = next((x for x in r["throughput"] if x["partitions"] == n), None)
            if row:
                vals[b] = row["mb_s"]
                rt = None
                if b == versus == "Kafka":
                    rt = ratio(vals.get("Fjord"), vals.get("Kafka"))
                elif b == versus:
                    rt = ratio(vals.get(b), vals.get("Fjord"))
                lines.append(f"| {n} | {b} | {fmt(row['mb_s'])} | {fmt(row['records_s'], 0)} | "
                             f"{row['client_cpu_share']:.0%} | {fmt(rt, 2) + '×' if rt else ''} |")
    lines.append("")
    lines.append(f"**Latency** at a fixed {cfg['latency_mb_s']:g} MB/s ({cfg['latency_mb_s'] * 1e6 / RECORD:,.0f} "
                 f"records/s) for {cfg['latency_seconds']:g} s, 6 partitions, linger.ms 0, after "
                 f"{cfg.get('latency_warmup_seconds', 0):g} s of warm-up at that rate by the same producer (not "
                 "counted). Acknowledgement: "
                 "librdkafka's per-record latency from produce() to the acknowledgement; end-to-end: the send time "
                 "in the record to a consumer's receipt (another process, fetch.wait.max.ms 100); fdatasync: a "
                 "4 KiB append + fdatasync every 50 ms on the data dirs' disk during the same run (the cost of "
                 "a durable write at that moment). Milliseconds:")
    lines.append("")
    lines.append("| broker | ack p50 | ack p99 | ack p99.9 | ack max | e2e p50 | e2e p99 | e2e p99.9 | e2e max | "
                 "fdatasync p50 | fdatasync p99 |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    phase_rows(lines, res, "latency", 11, lambda lt: [fmt(x.get(k), 2) for x in (lt.get("ack") or {}, lt.get("e2e") or {})
                                                    for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")]
               + [fmt((lt.get("fdatasync") or {}).get(k), 2) for k in ("p50_ms", "p99_ms")])
    lines.append("")
    lines.append(f"**Failover under load**: {cfg['failover_rate']:,} records/s of 1 KiB over 6 partitions; kill -9 of "
                 "the node leading partition 0 (not the active controller) after "
                 f"{cfg['failover_before_s']:g} s; from the producer's acknowledgement times. Then every "
                 "partition is read back from offset 0:")
    lines.append("")
    lines.append("| broker | partitions led by the killed node | longest stretch without an ack on them (s) | "
                 "over all partitions (s) | kill → acks on all of them again (s) | restarted node back in every "
                 "ISR (s) | acknowledged | lost / moved on read-back |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
    phase_rows(lines, res, "failover", 8, lambda f: [
        str(len(f["led"])), fmt(f["longest_gap_led_s"], 2), fmt(f["longest_gap_all_s"], 2), fmt(f["resume_s"], 2),
        fmt(f.get("rejoin_s"), 2), f"{f['acked']:,}",
        f"{(f.get('readback') or {}).get('lost', '-')} / {(f.get('readback') or {}).get('moved', '-')}"])
    lines.append("")
    lines.append(f"**Follower catch-up**: 1 partition; kill -9 of a follower; once the ISR dropped it, "
                 f"{cfg['catchup_mib']:,} MiB produced (acks=all with two in-sync replicas); the follower "
                 "restarted; times from the restart:")
    lines.append("")
    lines.append("| broker | ISR dropped it after (s) | produce while down (MB/s) | registered (s) | back in the "
                 "ISR (s) | catch-up from the restart (MB/s) | from registration to the ISR (s) | that rate (MB/s) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    phase_rows(lines, res, "catchup", 8, lambda c: [
        fmt(c["isr_shrink_s"], 2), fmt(c["produce_mb_s"]), fmt(c["registered_s"], 2), fmt(c["isr_s"], 2),
        fmt(c["catchup_mb_s"]), fmt(c["after_registered_s"], 2), fmt(c["catchup_after_registered_mb_s"])])
    lines.append("")
    lines.append("Load average per kind: " + "; ".join(
        f"{r['broker']} before {r['load_before']}, after {r['load_after']}" for r in doc["results"]) + ". RSS per "
        "node at the end (MiB): " + "; ".join(f"{r['broker']} {', '.join(fmt(x, 0) for x in r.get('rss_mib', []))}"
                                             for r in doc["results"]) + ".")
    lines.append("")
    lines.append("Commands: " + "; ".join(f"{r['broker']}: `{r['command']}`" for r in doc["results"]
                                          if "command" in r) + ".")
    if doc.get("reading"):
        lines.append("")
        lines.append(doc["reading"])
    lines.append(end)
    return "\n".join(lines) + "\n"


def write(out, section, fetch_run):
    """The main section between its markers; a fetch run's subsection between its own, put right after the
    main section the first time."""
    if not fetch_run:
        brokers.write_section(out, section, MARK_BEGIN, MARK_END)
        return
    text = open(out).read() if os.path.exists(out) else ""
    if FETCH_BEGIN not in text and MARK_END in text:
        z = text.index(MARK_END) + len(MARK_END)
        text = text[:z] + "\n\n" + FETCH_BEGIN + "\n" + FETCH_END + text[z:]
        with open(out, "w") as f:
            f.write(text)
    brokers.write_section(out, section, FETCH_BEGIN, FETCH_END)


def git_commit():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        sys.exit(client_main(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--fjord-fetch", choices=["durable", "page-cache", "both"], default="durable",
                    help="Fjord's replica.fetch.durable: true (durable, the default), false (page-cache), or a "
                         "Fjord run with each (both)")
    ap.add_argument("--seconds", type=float, default=20.0, help="each throughput run (default 20)")
    ap.add_argument("--partitions", default="1,6", help="throughput rows (default 1,6)")
    ap.add_argument("--latency-mb-s", type=float, default=5.0)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--latency-warmup-seconds", type=float, default=2.0,
                    help="the latency producer first sends this long at the same rate, not counted")
    ap.add_argument("--failover-rate", type=int, default=2000, help="records/s during the failover (default 2000)")
    ap.add_argument("--catchup-mib", type=int, default=1024)
    ap.add_argument("--phases", default="throughput,latency,failover,catchup")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--quick", action="store_true", help="both kinds, small sizes; BENCHMARKS.md untouched")
    ap.add_argument("--reading", help="a file whose text is the Reading paragraph of the section")
    ap.add_argument("--render-only", action="store_true", help="rewrite the section from results/replication.json")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    cfg = ap.parse_args()
    fetch_run = cfg.broker == "fjord" and cfg.fjord_fetch == "both"
    path = os.path.join(RESULTS_DIR, "replication-fetch.json" if fetch_run else "replication.json")
    if cfg.render_only:
        with open(path) as f:
            doc = json.load(f)
        if cfg.reading:
            doc["reading"] = open(cfg.reading).read().strip()
            with open(path, "w") as f:
                json.dump(doc, f, indent=1)
        write(cfg.out, render(doc, fetch_run), fetch_run)
        return
    try:
        import confluent_kafka
    except ImportError:
        sys.exit("replication.py needs confluent-kafka: run it with the e2e venv's Python "
                 "(~/.cache/fjord-e2e/venv/bin/python, from tests/e2e/setup.sh)")
    cfg.partitions = [int(x) for x in cfg.partitions.split(",")]
    cfg.phases = set(cfg.phases.split(","))
    cfg.session_ms, cfg.heartbeat_ms = 9000, failover.HEARTBEAT_MS
    cfg.failover_before_s, cfg.failover_after_s = 5.0, 15.0
    kinds = ["fjord", "kafka"] if cfg.broker == "both" else [cfg.broker]
    fjord_kinds = {"durable": ["fjord"], "page-cache": ["fjord-page-cache"],
                   "both": ["fjord", "fjord-page-cache"]}[cfg.fjord_fetch]
    kinds = [k for kind in kinds for k in (fjord_kinds if kind == "fjord" else [kind])]
    if cfg.smoke:
        kinds, cfg.seconds, cfg.partitions = ["fjord"], 3.0, [1, 6]
        cfg.latency_mb_s, cfg.latency_seconds, cfg.failover_rate, cfg.catchup_mib = 2.0, 3.0, 500, 32
        cfg.latency_warmup_seconds = 1.0
        cfg.session_ms, cfg.heartbeat_ms = 2000, failover.SMOKE_HEARTBEAT_MS
        cfg.failover_before_s, cfg.failover_after_s = 3.0, 6.0
    elif cfg.quick:
        cfg.seconds, cfg.latency_seconds, cfg.catchup_mib = 5.0, 5.0, 128
        cfg.failover_before_s, cfg.failover_after_s = 4.0, 14.0
    if any(k.startswith("fjord") for k in kinds) and not os.access(cfg.fjord_bin, os.X_OK):
        sys.exit(f"{cfg.fjord_bin} missing: cargo build --release -p fjord")
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python scripts/bench/replication.py " + " ".join(sys.argv[1:]), "commit": git_commit(),
            "client": f"{confluent_kafka.version()} (librdkafka {confluent_kafka.libversion()[0]})",
            "fjord_bin": cfg.fjord_bin,
            "load_before": loadavg()}
    failed, results = [], []
    need = (2 * cfg.seconds * 60e6 + cfg.catchup_mib * 2**20) * 3 * 1.3
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < need:
        sys.exit(f"{tempfile.gettempdir()} has {free / 1e9:.1f} GB free; this run needs about {need / 1e9:.1f} GB")
    keep = tempfile.mkdtemp(prefix="fjord-bench-replication-keep-") if cfg.keep else None
    with tempfile.TemporaryDirectory(prefix="fjord-bench-replication-") as tmp:
        root = keep or tmp
        for kind in kinds:
            log(f"{kind}: start")
            try:
                results.append(run_kind(kind, cfg, root, failed))
            except Exception as e:  # noqa: BLE001 - reported, and fails --smoke
                failed.append(f"{kind}: {e}")
                results.append({"broker": FJORD_PAGE_CACHE if kind == "fjord-page-cache" else kind.capitalize(), "error": str(e)[:400], "load_before": "-",
                                "load_after": loadavg()})
                log(f"{kind} failed: {e}")
            finally:
                for c in CHILDREN:
                    c.kill()
    meta["load_after"] = loadavg()
    conf = {k: getattr(cfg, k) for k in ("seconds", "partitions", "latency_mb_s", "latency_seconds",
                                         "latency_warmup_seconds", "failover_rate",
                                         "catchup_mib", "session_ms", "heartbeat_ms", "failover_before_s")}
    doc = {"meta": meta, "config": conf, "results": results, "failed": failed}
    if cfg.reading:
        doc["reading"] = open(cfg.reading).read().strip()
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = ("replication-smoke.json" if cfg.smoke else "replication-quick.json" if cfg.quick
            else os.path.basename(path))
    with open(os.path.join(RESULTS_DIR, name), "w") as f:
        json.dump(doc, f, indent=1)
    section = render(doc, fetch_run)
    if not (cfg.smoke or cfg.quick):
        write(cfg.out, section, fetch_run)
    print(section)
    if failed:
        log("FAILED: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
