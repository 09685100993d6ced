"""Consumer groups with real clients: a mixed group of confluent-kafka, Java and kafka-python members that join,
leave and are killed (exclusive ownership, every record consumed, resume at the last commit); a static member's
restart; committed offsets across broker restarts; kcat -G; the kafka-consumer-groups tool; two groups on one
topic."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import clients as c
from conftest import E2E_DIR, unique

pytestmark = pytest.mark.groups

MEMBER_PY = E2E_DIR / "tools" / "group_member.py"
# short session timeouts (6 s is the broker's minimum by default) so a killed member is noticed quickly
CF_FAST = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "max.poll.interval.ms": "20000"}
JAVA_FAST = {**CF_FAST}
KP_FAST = {"session_timeout_ms": "6000", "heartbeat_interval_ms": "500", "max_poll_interval_ms": "20000"}
JAVA_ASSIGNOR = {
    "range": "org.apache.kafka.clients.consumer.RangeAssignor",
    "cooperative-sticky": "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
}


def wait_until(pred, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Member:
    """A group member in its own process (tools/group_member.py or `E2EClient group`), read as JSON lines."""

    def __init__(self, name: str, cmd: list[str]):
        self.name = name
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self.killed_at: float | None = None
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                ev = json.loads(line)
                with self._lock:
                    self.events.append(ev)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-40]

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def owned(self) -> set[int]:
        owned: set[int] = set()
        for ev in self.snapshot():
            if ev["type"] == "assigned":
                owned |= set(ev["partitions"])
            elif ev["type"] in ("revoked", "lost"):
                owned -= set(ev["partitions"])
        return owned

    def consumed(self) -> int:
        return sum(len(ev["recs"]) for ev in self.snapshot() if ev["type"] == "records")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout_s: float = 30.0):
        if not self.alive():
            return
        try:
            self.proc.stdin.write("close\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not close within {timeout_s}s\n{self.diag()}") from None
        for t in self._threads:
            t.join(timeout=5)

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.killed_at = time.time()
        for t in self._threads:
            t.join(timeout=5)

    def diag(self) -> str:
        return f"--- {self.name} ({' '.join(self.cmd[-6:])}) stderr tail:\n" + "".join(self.stderr[-20:])


def spawn(kind: str, java, bootstrap: str, topic: str, group: str, name: str, conf: dict[str, str]) -> Member:
    args = [f"{k}={v}" for k, v in conf.items()]
    if kind == "java":
        cmd = java.cmd("E2EClient", "group", bootstrap, topic, group, f"client.id={name}", *args)
    else:
        cmd = [sys.executable, str(MEMBER_PY), kind, bootstrap, topic, group, *args]
    return Member(name, cmd)


def member_conf(kind: str, strategy: str) -> dict[str, str]:
    if kind == "java":
        return {**JAVA_FAST, "partition.assignment.strategy": JAVA_ASSIGNOR[strategy]}
    if kind == "kp":
        assert strategy == "range", "kafka-python has no cooperative assignor"
        return dict(KP_FAST)
    return {**CF_FAST, "partition.assignment.strategy": strategy}


def balanced(members: list[Member], partitions: int) -> bool:
    """Every partition owned by exactly one of `members`, and each member owns some."""
    sets = [m.owned() for m in members]
    if any(not s for s in sets):
        return False
    return sum(len(s) for s in sets) == partitions and set().union(*sets) == set(range(partitions))


class BackgroundProducer:
    """Produces numbered records round-robin over the partitions until stopped; keeps the delivery reports."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate_per_s: float = 300.0):
        self.delivered: dict[tuple[int, int], str] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(bootstrap, topic, partitions, rate_per_s), daemon=True)
        self._t.start()

    def _run(self, bootstrap, topic, partitions, rate):
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

        def cb(err, msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.delivered[(msg.partition(), msg.offset())] = msg.value().decode()

        i = 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            p.produce(topic, value=f"v-{i}".encode(), partition=i % partitions, on_delivery=cb)
            i += 1
            p.poll(0)
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        assert p.flush(30) == 0
        self.produced = i

    def stop(self):
        self._stop.set()
        self._t.join(timeout=60)
        assert not self._t.is_alive(), "producer did not stop"
        assert not self.errors, self.errors[:5]
        assert len(self.delivered) == self.produced

    def end_offsets(self, partitions: int) -> dict[int, int]:
        ends = {p: 0 for p in range(partitions)}
        for p, o in self.delivered:
            ends[p] = max(ends[p], o + 1)
        return ends


def check_group_history(members: list[Member], delivered: dict[tuple[int, int], str], partitions: int):
    """The history of a group run: exclusive ownership over time, records only from owned partitions,
    consecutive offsets within an ownership, hand-overs that resume at the last commit (or, after a killed
    owner, no later than right after what it consumed), and every delivered record consumed. Records read
    twice are only those a killed member, or one whose commit failed, read after its last commit."""
    intervals: dict[int, list[dict]] = {p: [] for p in range(partitions)}
    commits: dict[int, list[tuple[float, int]]] = {p: [] for p in range(partitions)}
    consumed: dict[tuple[int, int], list[str]] = {}
    failed_commits: set[str] = set()
    for m in members:
        evs = m.snapshot()
        end_of_life = m.killed_at
        if end_of_life is None:
            closed = [ev["t"] for ev in evs if ev["type"] == "closed"]
            assert closed, f"{m.name} neither closed nor was killed\n{m.diag()}"
            end_of_life = closed[0]
        open_: dict[int, dict] = {}
        for ev in evs:
            kind = ev["type"]
            if kind == "assigned":
                for p in ev["partitions"]:
                    assert p not in open_, f"{m.name}: partition {p} assigned twice without a revoke"
                    open_[p] = {"member": m, "start": ev["t"], "end": None, "offsets": [], "killed": False}
            elif kind in ("revoked", "lost"):
                for p in ev["partitions"]:
                    iv = open_.pop(p, None)
                    assert iv is not None, f"{m.name}: revoked partition {p} it did not own"
                    iv["end"] = ev["t"]
                    intervals[p].append(iv)
            elif kind == "records":
                for p, o, v in ev["recs"]:
                    assert p in open_, f"{m.name} consumed {p}@{o} without owning partition {p}"
                    open_[p]["offsets"].append(o)
                    consumed.setdefault((p, o), []).append(m.name)
                    assert delivered.get((p, o), v) == v, f"{p}@{o}: consumed {v!r}, produced {delivered[(p, o)]!r}"
            elif kind == "commit":
                for p, o in ev["offsets"].items():
                    commits[int(p)].append((ev["t"], o))
            elif kind == "commit_failed":
                failed_commits.add(m.name)
            elif kind == "error":
                raise AssertionError(f"{m.name}: {ev}")
        for p, iv in open_.items():
            iv["end"] = end_of_life
            iv["killed"] = m.killed_at is not None
            intervals[p].append(iv)

    def history(p: int) -> str:
        rows = []
        for iv in sorted(intervals[p], key=lambda iv: iv["start"]):
            o = iv["offsets"]
            span = f"{o[0]}..{o[-1]}" if o else "nothing"
            rows.append(f"  {iv['member'].name}: {iv['start']:.3f}-{iv['end']:.3f} read {span}")
        rows += [f"  commit {o} at {t:.3f}" for t, o in commits[p]]
        return f"partition {p}:\n" + "\n".join(rows)

    dup = 0
    for p in range(partitions):
        commits[p].sort()
        ivs = sorted(intervals[p], key=lambda iv: iv["start"])
        for a, b in zip(ivs, ivs[1:]):
            assert b["start"] >= a["end"], (
                f"partition {p} owned by {a['member'].name} until {a['end']:.3f} and by {b['member'].name} "
                f"from {b['start']:.3f}"
            )
        last_owner = None
        for iv in ivs:
            offs = iv["offsets"]
            name = iv["member"].name
            assert offs == list(range(offs[0], offs[0] + len(offs))) if offs else True, (
                f"{name} skipped offsets within its ownership of partition {p}: {offs[:20]}..."
            )
            if offs:
                known = [o for t, o in commits[p] if t < iv["start"]]
                last_commit = known[-1] if known else 0
                if last_owner is not None and last_owner["killed"] and last_owner["offsets"]:
                    hi = last_owner["offsets"][-1] + 1
                    assert last_commit <= offs[0] <= hi, (
                        f"{name} started partition {p} at {offs[0]}, after killed {last_owner['member'].name} "
                        f"(last commit seen {last_commit}, consumed up to {hi - 1})"
                    )
                    dup += hi - offs[0]
                else:
                    assert offs[0] == last_commit, (
                        f"{name} started partition {p} at {offs[0]}, last commit was {last_commit}"
                    )
                    if last_owner is not None and last_owner["offsets"]:
                        hi = last_owner["offsets"][-1] + 1
                        if offs[0] < hi:
                            # the previous owner could not commit what it read (its commit failed)
                            assert last_owner["member"].name in failed_commits, history(p)
                            dup += hi - offs[0]
                last_owner = iv
    missing = sorted(set(delivered) - set(consumed))
    assert not missing, f"{len(missing)} records never consumed, e.g. {missing[:10]}"
    more = {k: v for k, v in consumed.items() if len(v) > 1}
    assert len(more) == dup, (
        f"{len(more)} records consumed twice, {dup} explained by a killed member\n"
        + "\n".join(history(p) for p in sorted({p for p, _o in more}))
    )


def committed(bootstrap: str, group: str, topic: str, partitions: int, none_as: int | None = None) -> dict[int, int]:
    """The group's committed offsets (-1001 where there is none, or `none_as`)."""
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        res = cons.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
    finally:
        cons.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 or none_as is None else none_as) for tp in res}


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_group_members_join_leave_and_die(broker, java, strategy):
    """Three members (confluent-kafka, Java, and kafka-python or confluent-kafka) share a 6-partition topic
    while a producer keeps writing; one member is killed with SIGKILL, another joins, one leaves cleanly."""
    P = 6
    b = broker.bootstrap
    t = c.create_topic(b, unique(f"grp-{strategy[:4]}"), partitions=P)
    g = unique("g-mixed")
    third = "kp" if strategy == "range" else "cf"
    prod = BackgroundProducer(b, t, P)
    members: list[Member] = []

    def start(kind: str, name: str) -> Member:
        m = spawn(kind, java, b, t, g, name, member_conf(kind, strategy))
        members.append(m)
        return m

    def wait_balanced(ms: list[Member], what: str, timeout_s: float = 45):
        wait_until(lambda: balanced(ms, P), timeout_s, what + "\n" + "\n".join(m.diag() for m in members))

    try:
        a = start("cf", "A-cf")
        bj = start("java", "B-java")
        wait_balanced([a, bj], "A and B to share the partitions")
        wait_until(lambda: a.consumed() > 0 and bj.consumed() > 0, 20, "A and B to consume")
        cm = start(third, f"C-{third}")
        wait_balanced([a, bj, cm], "A, B and C to share the partitions")
        wait_until(lambda: cm.consumed() > 0, 20, "C to consume")
        a.kill()
        wait_balanced([bj, cm], "B and C to take over from the killed A")
        d = start("cf", "D-cf")
        wait_balanced([bj, cm, d], "B, C and D to share the partitions")
        wait_until(lambda: d.consumed() > 0, 20, "D to consume")
        bj.close()
        wait_balanced([cm, d], "C and D to take over from B, which left")
        prod.stop()
        ends = prod.end_offsets(P)

        def caught_up():
            last: dict[int, int] = {}
            for m in (cm, d):
                for ev in m.snapshot():
                    if ev["type"] == "commit":
                        for p, o in ev["offsets"].items():
                            last[int(p)] = max(last.get(int(p), 0), o)
            return all(last.get(p, 0) == ends[p] for p in range(P))

        wait_until(caught_up, 30, "C and D to commit up to the log end offsets")
        cm.close()
        d.close()
    finally:
        prod._stop.set()
        for m in members:
            if m.alive():
                m.kill()
    assert committed(b, g, t, P) == ends
    check_group_history(members, prod.delivered, P)
    # the Java member reports generations: they only grow
    gens = [ev["generation"] for ev in bj.snapshot() if ev["type"] == "assigned"]
    assert gens == sorted(gens) and gens[0] >= 1, gens


def test_static_member_restarts_without_rebalance(broker, java):
    """A Java member with group.instance.id is killed and restarted within its session timeout: it gets its
    partitions back and the other member (confluent-kafka) sees no rebalance."""
    P = 4
    b = broker.bootstrap
    t = c.create_topic(b, unique("grp-static"), partitions=P)
    g = unique("g-static")
    static = {**member_conf("java", "range"), "group.instance.id": "static-1", "session.timeout.ms": "15000"}
    members = []
    try:
        a = spawn("java", java, b, t, g, "A-static", static)
        members.append(a)
        other = spawn("cf", java, b, t, g, "B-cf", member_conf("cf", "range"))
        members.append(other)
        wait_until(lambda: balanced([a, other], P), 45, "A and B to share the partitions\n" + a.diag() + other.diag())
        mine = a.owned()
        b_events = len(other.snapshot())
        a.kill()
        a2 = spawn("java", java, b, t, g, "A-static-again", static)
        members.append(a2)
        wait_until(lambda: a2.owned() == mine, 30, "the restarted static member to get its partitions\n" + a2.diag())
        time.sleep(1.5)  # B would have noticed a rebalance by now (heartbeat every 0.5 s)
        later = [ev for ev in other.snapshot()[b_events:] if ev["type"] in ("assigned", "revoked", "lost")]
        assert not later, f"B saw a rebalance: {later}"
        assert balanced([a2, other], P)
        d = _describe(b, g)
        assert sorted(m.group_instance_id or "" for m in d.members) == ["", "static-1"], d.members
    finally:
        for m in members:
            m.close()
            m.kill()


def _group_read(cons: Consumer, count: int, timeout_s: float = 40.0) -> list[dict]:
    """Read `count` records with a subscribed consumer, then commit what was read (synchronously)."""
    got = c.cf_poll(cons, count, timeout_s)
    nxt: dict[tuple[str, int], int] = {}
    for r in got:
        nxt[(r["topic"], r["partition"])] = r["offset"] + 1
    if nxt:
        cons.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in nxt.items()], asynchronous=False)
    return got


def _first_offsets(recs) -> dict[int, int]:
    first: dict[int, int] = {}
    for r in recs:
        first[r["partition"]] = min(first.get(r["partition"], r["offset"]), r["offset"])
    return first


def test_committed_offsets_survive_restart(broker_factory, java):
    """Commits from a confluent-kafka member survive a clean restart, a Java member resumes right after them;
    its commits survive kill -9, and a kafka-python member resumes right after those."""
    P = 3
    br = broker_factory()
    b = br.bootstrap
    t = c.create_topic(b, unique("grp-restart"), partitions=P)
    g = unique("g-restart")
    recs = c.records(300, "rs", headers=False)
    for i, r in enumerate(recs):
        r["partition"] = i % P
    assert all(d.err is None for d in c.cf_produce(b, t, recs))

    cons = c.cf_consumer(b, {"group.id": g, **CF_FAST})
    try:
        cons.subscribe([t])
        first = _group_read(cons, 120)
    finally:
        cons.close()
    assert len(first) == 120
    before = committed(b, g, t, P, none_as=0)
    assert sum(before.values()) == 120, before

    br.restart()
    assert committed(b, g, t, P, none_as=0) == before

    m = spawn("java", java, b, t, g, "java-restart", member_conf("java", "range"))
    try:
        wait_until(lambda: m.consumed() >= 180, 60, "the Java member to read the rest\n" + m.diag())
        m.close()
    finally:
        m.kill()
    seen = [(p, o) for ev in m.snapshot() if ev["type"] == "records" for p, o, _v in ev["recs"]]
    assert len(seen) == 180 and len(set(seen)) == 180
    starts = {}
    for p, o in seen:
        starts.setdefault(p, o)
    assert {p: starts.get(p, 100) for p in range(P)} == before, f"Java member started at {starts}, commits {before}"
    assert committed(b, g, t, P) == {p: 100 for p in range(P)}

    br.kill9()
    br.start()
    assert committed(b, g, t, P) == {p: 100 for p in range(P)}
    more = c.records(30, "rs2", headers=False)
    for i, r in enumerate(more):
        r["partition"] = i % P
    assert all(d.err is None for d in c.cf_produce(b, t, more))
    m = spawn("kp", java, b, t, g, "kp-restart", member_conf("kp", "range"))
    try:
        wait_until(lambda: m.consumed() >= 30, 60, "the kafka-python member to read the new records\n" + m.diag())
        m.close()
    finally:
        m.kill()
    seen = sorted((p, o) for ev in m.snapshot() if ev["type"] == "records" for p, o, _v in ev["recs"])
    assert seen == [(p, o) for p in range(P) for o in range(100, 110)]
    assert committed(b, g, t, P) == {p: 110 for p in range(P)}


def _describe(bootstrap: str, group: str):
    a = c.cf_admin(bootstrap)
    return a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)


def test_kcat_balanced_consumers(broker):
    """Debian's kcat -G (librdkafka 2.0.2): two, then three balanced consumers split a 4-partition topic."""
    P = 4
    b = broker.bootstrap
    t = c.create_topic(b, unique("grp-kcat"), partitions=P)
    g = unique("g-kcat")
    procs: list[subprocess.Popen] = []

    def start():
        cmd = [c.KCAT, "-b", b, "-G", g, "-J", "-q", "-u", "-X", "auto.offset.reset=earliest"]
        cmd += ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", t]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

    def stable_with(n):
        try:
            d = _describe(b, g)
        except Exception:  # noqa: BLE001 - not there yet
            return False
        parts = [sorted(tp.partition for tp in m.assignment.topic_partitions) for m in d.members]
        ok = str(d.state).endswith("STABLE") and len(parts) == n and all(parts)
        return ok and sorted(p for ps in parts for p in ps) == list(range(P))

    lines: list[list[str]] = []

    def reader(proc, out):
        for line in proc.stdout:
            if line.startswith("{"):
                out.append(line)

    def produce(n, prefix):
        recs = c.records(n, prefix, headers=False)
        for i, r in enumerate(recs):
            r["partition"] = i % P
        assert all(d.err is None for d in c.cf_produce(b, t, recs))

    def got():
        return [json.loads(x) for out in lines for x in out]

    try:
        for _ in range(2):
            start()
        for pr in procs:
            lines.append([])
            threading.Thread(target=reader, args=(pr, lines[-1]), daemon=True).start()
        wait_until(lambda: stable_with(2), 45, "two kcat members to be stable", 0.5)
        produce(200, "k1")
        wait_until(lambda: len(got()) >= 200, 30, "kcat to consume 200 records")
        start()
        lines.append([])
        threading.Thread(target=reader, args=(procs[-1], lines[-1]), daemon=True).start()
        wait_until(lambda: stable_with(3), 45, "three kcat members to be stable", 0.5)
        produce(200, "k2")
        wait_until(lambda: len({(r["partition"], r["offset"]) for r in got()}) >= 400, 30, "kcat to consume 400")
        time.sleep(0.5)
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGTERM)
        for pr in procs:
            try:
                pr.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pr.kill()
    seen = {(r["partition"], r["offset"]) for r in got()}
    assert seen == {(p, o) for p in range(P) for o in range(100)}
    # the second batch (offsets 50..99, produced once three members were stable): each partition went to
    # exactly one kcat, which read it once
    owners: dict[int, set[int]] = {}
    late = []
    for i, out in enumerate(lines):
        for x in out:
            r = json.loads(x)
            if r["offset"] >= 50:
                owners.setdefault(r["partition"], set()).add(i)
                late.append((r["partition"], r["offset"]))
    assert all(len(o) == 1 for o in owners.values()), owners
    assert sorted(late) == sorted(set(late)), "a record of the second batch was read twice"
    assert len({i for o in owners.values() for i in o}) == 3, owners
    # kcat commits (auto commit) what it consumed; the group is empty after they all left
    wait_until(lambda: committed(b, g, t, P) == {p: 100 for p in range(P)}, 10, "kcat's commits")


def _cg(java, *args: str, check: bool = True) -> str:
    """Runs kafka-consumer-groups (ConsumerGroupCommand) and returns its stdout and stderr."""
    res = java.run(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", *args, timeout=60, check=check
    )
    return res.stdout + res.stderr


def _table(out: str, topic: str) -> list[dict]:
    """Rows of kafka-consumer-groups' --describe table for `topic`, keyed by the header names."""
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(line for line in lines if line[:1] == ["GROUP"])
    return [dict(zip(header, line)) for line in lines if len(line) >= 3 and line[1] == topic]


def test_kafka_consumer_groups_tool(broker, java):
    """kafka-consumer-groups lists, describes (with lag), resets offsets (earliest, datetime, shift) and deletes."""
    P = 3
    b = broker.bootstrap
    t = c.create_topic(b, unique("grp-tool"), partitions=P)
    g = unique("g-tool")
    live = unique("g-live")
    ts0 = (int(time.time()) - 3600) * 1000
    recs = []
    for p in range(P):
        for i in range(30):
            recs.append(
                {"key": f"k{i}", "value": f"p{p}-{i}", "headers": [], "timestamp": ts0 + i * 1000, "partition": p}
            )
    assert all(d.err is None for d in c.cf_produce(b, t, recs))
    def cg(*args: str, check: bool = True) -> str:
        return _cg(java, "--bootstrap-server", b, *args, check=check)

    # a live group with one member (joins while the rest is set up)
    m = spawn("cf", java, b, t, live, "live", member_conf("cf", "range"))
    try:
        cons = Consumer({"bootstrap.servers": b, "group.id": g, "enable.auto.commit": False})
        cons.commit(offsets=[TopicPartition(t, p, 10 * (p + 1)) for p in range(P)], asynchronous=False)
        cons.close()
        wait_until(lambda: m.consumed() >= 90, 45, "the live member to read the topic\n" + m.diag())

        out = cg("--list")
        assert g in out.split() and live in out.split(), out

        out = cg("--describe", "--group", g)
        rows = {int(r["PARTITION"]): r for r in _table(out, t)}
        assert sorted(rows) == [0, 1, 2], out
        for p in range(P):
            assert rows[p]["CURRENT-OFFSET"] == str(10 * (p + 1)), out
            assert rows[p]["LOG-END-OFFSET"] == "30", out
            assert rows[p]["LAG"] == str(30 - 10 * (p + 1)), out
            assert rows[p]["CONSUMER-ID"] == "-", out
        assert f"Consumer group '{g}' has no active members." in out

        out = cg("--describe", "--group", live, "--members")
        member_rows = [line.split() for line in out.splitlines() if line.startswith(live)]
        assert len(member_rows) == 1, out
        assert member_rows[0][-1] == "3", out  # #PARTITIONS
        out = cg("--describe", "--group", live, "--state")
        assert "Stable" in out and "range" in out, out
        out = cg("--describe", "--group", live)
        rows = _table(out, t)
        assert len(rows) == 3 and all(r["LAG"] == "0" and r["CONSUMER-ID"] != "-" for r in rows), out

        out = cg("--reset-offsets", "--group", g, "--topic", t, "--to-earliest", "--execute")
        assert committed(b, g, t, P) == {0: 0, 1: 0, 2: 0}, out
        at = datetime.fromtimestamp((ts0 + 15_000) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        out = cg("--reset-offsets", "--group", g, "--all-topics", "--to-datetime", at, "--execute")
        assert committed(b, g, t, P) == {0: 15, 1: 15, 2: 15}, out
        out = cg("--reset-offsets", "--group", g, "--topic", f"{t}:0,2", "--shift-by", "-5", "--execute")
        assert committed(b, g, t, P) == {0: 10, 1: 15, 2: 10}, out
        # a reset of a group with active members is refused
        out = cg("--reset-offsets", "--group", live, "--topic", t, "--to-earliest", "--execute", check=False)
        assert committed(b, live, t, P) == {0: 30, 1: 30, 2: 30}, out

        out = cg("--delete-offsets", "--group", g, "--topic", f"{t}:1")
        assert committed(b, g, t, P) == {0: 10, 1: -1001, 2: 10}, out

        out = cg("--delete", "--group", g, "--group", live, check=False)
        assert f"These consumer groups were deleted successfully: '{g}'" in out, out
        assert re.search(rf"'{live}' could not be deleted due to: \S*GroupNotEmptyException", out), out
        admin = c.cf_admin(b)
        res = admin.list_consumer_groups(request_timeout=15).result()
        listed = [x.group_id for x in res.valid] + [str(e) for e in res.errors]
        assert g not in listed and live in listed, listed
        assert committed(b, g, t, P) == {0: -1001, 1: -1001, 2: -1001}
    finally:
        m.close()
        m.kill()


def test_two_groups_read_at_their_own_pace(broker):
    """Two groups on one topic: one reads everything as it comes, the other a part, stops, and later goes on;
    each sees every record exactly once and has its own committed offsets."""
    P = 3
    b = broker.bootstrap
    t = c.create_topic(b, unique("grp-two"), partitions=P)
    g1, g2 = unique("g-fast"), unique("g-slow")
    recs = c.records(150, "two", headers=False)
    for i, r in enumerate(recs):
        r["partition"] = i % P
    assert all(d.err is None for d in c.cf_produce(b, t, recs))

    fast = c.cf_consumer(b, {"group.id": g1, **CF_FAST})
    slow = c.cf_consumer(b, {"group.id": g2, **CF_FAST})
    seen1, seen2 = [], []
    try:
        fast.subscribe([t])
        slow.subscribe([t])
        seen2 += _group_read(slow, 60)
        seen1 += _group_read(fast, 150)
        slow.close()
        assert sum(committed(b, g2, t, P, none_as=0).values()) == 60
        assert committed(b, g1, t, P) == {p: 50 for p in range(P)}
        more = c.records(90, "two2", headers=False)
        for i, r in enumerate(more):
            r["partition"] = i % P
        assert all(d.err is None for d in c.cf_produce(b, t, more))
        seen1 += _group_read(fast, 90)
    finally:
        fast.close()
    before2 = committed(b, g2, t, P, none_as=0)
    slow = c.cf_consumer(b, {"group.id": g2, **CF_FAST})
    try:
        slow.subscribe([t])
        rest = _group_read(slow, 180)
    finally:
        slow.close()
    assert {p: _first_offsets(rest).get(p, 80) for p in range(P)} == before2
    seen2 += rest
    everything = sorted((p, o) for p in range(P) for o in range(80))
    assert sorted((r["partition"], r["offset"]) for r in seen1) == everything
    assert sorted((r["partition"], r["offset"]) for r in seen2) == everything
    assert committed(b, g1, t, P) == committed(b, g2, t, P) == {p: 80 for p in range(P)}
