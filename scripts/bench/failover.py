#!/usr/bin/env python3
"""failover.py - leader failover in a three-node cluster, Fjord vs Apache Kafka 4.3.1 on the same machine.

    python3 scripts/bench/failover.py [--broker fjord|kafka|both] [--partitions 1000,10000]
                                      [--roles combined,dedicated] [--session-ms MS] [--heartbeat-ms MS]
                                      [--smoke|--quick] [--out BENCHMARKS.md]

Issue 12, Performance. For each broker kind in turn (never both at once) and each partition count N:
  1. Three combined broker+controller nodes on loopback (a static KRaft quorum, Kafka's config names:
     process.roles, controller.quorum.voters, ...), each formatted and started as the README says;
     broker.session.timeout.ms and broker.heartbeat.interval.ms as given (default: Kafka's, 9000 and
     2000), the same on both kinds.
  2. Create N partitions with replication factor 3 (CreateTopics v2 sent to one node): one topic when N is
     at most 1,000, else topics of 1,000 partitions each, one CreateTopics request per topic (both kinds refuse
     a single proposal of more than 10,000 metadata records, and one topic of 10,000 partitions is 10,001).
     Metadata propagation: from the last CreateTopics answer until every node's Metadata shows every
     partition with a leader.
  3. Broker failover: kill -9 a node that is not the active controller. Measured: from the kill until a
     surviving node's Metadata names no partition led by the killed node (polled every 50 ms). The killed
     node is then restarted and waited for (registered again).
  4. Controller failover: kill -9 the active controller (the KRaft quorum leader, from DescribeQuorum; also
     a broker). Measured: until a surviving node's DescribeQuorum names another leader, and until its
     Metadata names no partition led by the killed node.
     Also from the kill: each surviving Fjord broker's first heartbeat answered by the new controller (its log
     line "heartbeat answered by a new controller", timestamps in UTC; Kafka's brokers log no such line), and
     whether a surviving broker was fenced (missing from Metadata's brokers, polled until the session
     timeout plus 2 s after the kill): a live broker must not be fenced for not having found the new
     controller yet.
  RSS of every node after step 2 (from /proc) is reported too.
  --roles dedicated: three controller-only nodes (1-3, process.roles=controller) and three broker-only nodes
  (4-6, process.roles=broker), the layout of tests/e2e/test_dedicated_roles.py; the broker kill kills a broker,
  the controller kill a controller (it leads no partition: "new leaders" is then when every partition is led
  by a live broker, and the heartbeat times and fencing are what matter).
The machine has 2 cores shared by the three nodes and this script, and other work may run on it: compare
the two kinds within one run. Writes the section between <!-- failover:begin --> and <!-- failover:end -->
of --out and scripts/bench/results/failover.json; rows of a partition count this run did not measure are kept
from the previous failover.json, each row with the date and load of its own run. --smoke: Fjord only, 100 partitions, session 2000 ms, heartbeat 500 ms,
exits non-zero on a failure. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
import kwire  # noqa: E402
from brokers import free_port, logger, port_open  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS_DIR = os.path.join(HERE, "results")
KAFKA_LIBS = os.environ.get("KAFKA_LIBS", os.path.expanduser("~/.cache/fjord-e2e/kafka-4.3.1/libs"))
MARK_BEGIN = "<!-- failover:begin -->"
MARK_END = "<!-- failover:end -->"
TOPIC = "failover"
TOPIC_PARTITIONS_MAX = 1000  # partitions per topic; more partitions are spread over several topics
POLL_S = 0.05
WAIT_S = 60
HEARTBEAT_MS = 2000  # Kafka's default broker.heartbeat.interval.ms
SMOKE_HEARTBEAT_MS = 500

log = logger("failover")


class Node:
    def __init__(self, kind, root, node_id, roles="broker,controller"):
        self.kind, self.id, self.roles = kind, node_id, roles
        self.dir = os.path.join(root, f"{kind}-n{node_id}")
        self.data = os.path.join(self.dir, "data")
        self.port, self.cport = free_port(), free_port()
        self.proc = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    @property
    def is_broker(self):
        return "broker" in self.roles

    @property
    def is_controller(self):
        return "controller" in self.roles

    def settings(self, voters, session_ms, heartbeat_ms):
        listeners = ([f"PLAINTEXT://127.0.0.1:{self.port}"] if self.is_broker else []) + \
            ([f"CONTROLLER://127.0.0.1:{self.cport}"] if self.is_controller else [])
        s = {
            "node.id": str(self.id),
            "process.roles": self.roles,
            "listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            "broker.session.timeout.ms": str(session_ms),
            "broker.heartbeat.interval.ms": str(heartbeat_ms),
        }
        if self.is_broker:
            s.update({"advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                      "inter.broker.listener.name": "PLAINTEXT"})
        return s


    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            pass
        return float("nan")

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()


def make_nodes(kind, root, roles):
    """Three combined nodes, or three controller-only (1-3) and three broker-only nodes (4-6)."""
    if roles == "combined":
        return [Node(kind, root, i) for i in (1, 2, 3)]
    return [Node(kind, root, i, "controller") for i in (1, 2, 3)] + [Node(kind, root, i, "broker") for i in (4, 5, 6)]


class FjordCluster:
    name = "Fjord"

    def __init__(self, root, binary, session_ms, heartbeat_ms, roles="combined", extra=None, name=None):
        self.binary, self.session_ms, self.heartbeat_ms, self.roles = binary, session_ms, heartbeat_ms, roles
        self.extra = dict(extra or {})  # further --set NAME=VALUE on every node
        if name:
            self.name = name
        self.nodes = make_nodes("fjord", root, roles)
        self.voters = ",".join(f"{n.id}@127.0.0.1:{n.cport}" for n in self.nodes if n.is_controller)
        self.cluster_id = "fjord-failover-bench"

    def args(self, n):
        out = ["--data-dir", n.data]
        settings = n.settings(self.voters, self.session_ms, self.heartbeat_ms)
        settings.update(self.extra)
        for k, v in settings.items():
            out += ["--set", f"{k}={v}"]
        return out

    def start_node(self, n):
        os.makedirs(n.dir, exist_ok=True)
        if not os.path.isdir(n.data):
            subprocess.run([self.binary, "format", "--cluster-id", self.cluster_id] + self.args(n),
                           check=True, capture_output=True, timeout=60)
        with open(os.path.join(n.dir, "fjord.log"), "ab") as logf:
            n.proc = subprocess.Popen([self.binary, "serve"] + self.args(n), stdout=logf, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      env=dict(os.environ, NO_COLOR="1"))

    def command(self):
        binary = os.path.relpath(self.binary, REPO)
        if self.roles == "combined":
            return f"{binary} serve {' '.join(self.args(self.nodes[0]))} (and nodes 2, 3 alike)"
        return (f"{binary} serve {' '.join(self.args(self.nodes[0]))} (and controllers 2, 3 alike); "
                f"{binary} serve {' '.join(self.args(self.nodes[3]))} (and brokers 5, 6 alike)")


class KafkaCluster:
    name = "Kafka"

    def __init__(self, root, session_ms, heartbeat_ms, roles="combined"):
        self.session_ms, self.heartbeat_ms, self.roles = session_ms, heartbeat_ms, roles
        self.nodes = make_nodes("kafka", root, roles)
        self.voters = ",".join(f"{n.id}@127.0.0.1:{n.cport}" for n in self.nodes if n.is_controller)
        while True:  # a Kafka Uuid in base64url; one starting with '-' would read as an option
            self.cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            if not self.cluster_id.startswith("-"):
                break

    def props(self, n):
        s = n.settings(self.voters, self.session_ms, self.heartbeat_ms)
        s.update({"log.dirs": n.data, "num.partitions": "1", "offsets.topic.replication.factor": "3",
                  "transaction.state.log.replication.factor": "3", "group.initial.rebalance.delay.ms": "0"})
        path = os.path.join(n.dir, "server.properties")
        with open(path, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in s.items()))
        return path

    def java(self, cls, *args):
        log4j = os.path.join(REPO, "tests", "e2e", "log4j2-tools.properties")
        return ["java", "-Xmx1g", "-Xms1g", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{KAFKA_LIBS}/*", cls, *args]

    def start_node(self, n):
        os.makedirs(n.dir, exist_ok=True)
        props = self.props(n)
        if not os.path.isdir(n.data):
            p = subprocess.run(self.java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", props), capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"kafka-storage format failed: {p.stdout[-1500:]} {p.stderr[-1500:]}")
        with open(os.path.join(n.dir, "kafka.log"), "ab") as logf:
            n.proc = subprocess.Popen(self.java("kafka.Kafka", props), stdout=logf,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def command(self):
        return (f"java -Xmx1g kafka.Kafka server.properties (x{len(self.nodes)}; {self.props(self.nodes[0])} for "
                f"node 1: {self.roles} roles, static voters, session {self.session_ms} ms)")


def log_tails(cluster, log):
    """Logs the last lines of every node's log (after a failure)."""
    for n in cluster.nodes:
        for name in ("fjord.log", "kafka.log"):
            path = os.path.join(n.dir, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-15:]
                log(f"{cluster.name} node {n.id}: last lines of {path}:\n" + "".join(tail))


def topic_layout(n_parts):
    """{topic: partitions} holding n_parts partitions in all."""
    if n_parts <= TOPIC_PARTITIONS_MAX:
        return {TOPIC: n_parts}
    out, i = {}, 0
    while n_parts > 0:
        out[f"{TOPIC}-{i}"] = min(n_parts, TOPIC_PARTITIONS_MAX)
        n_parts -= out[f"{TOPIC}-{i}"]
        i += 1
    return out


def metadata_full(node, topics):
    """(controller id, {broker ids}, {topic: leaders}) from one node, or None when it does not answer."""
    try:
        md = kwire.metadata_brokers(node.addr, topics, timeout_s=10.0)
    except (OSError, kwire.WireError, ValueError):
        return None
    return md


def active_controller(node):
    """The KRaft quorum leader (DescribeQuorum, which a broker forwards): Metadata's controller id is any
    live broker on Kafka (and on Fjord when the leader is not a live broker), not the active controller."""

    def ask():
        try:
            leader = kwire.quorum_leader(node.addr)
        except (OSError, kwire.WireError):
            return None
        return leader if leader >= 0 else None

    return wait_for("the active controller", ask)[1]


def first_heartbeat(node, controller, since):
    """Seconds from `since` (a wall-clock time) until Fjord broker `node` logged its first heartbeat answered by
    `controller`, or None (no such line: a Kafka node, or none yet)."""
    path = os.path.join(node.dir, "fjord.log")
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        for line in f:
            if "heartbeat answered by a new controller" not in line or f"controller={controller}" not in line:
                continue
            try:
                at = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if at >= since:
                return at - since
    return None


def wait_for(what, pred, timeout_s=WAIT_S):
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return time.monotonic() - t0, v
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def all_led(node, layout, exclude=None):
    md = metadata_full(node, list(layout))
    if md is None:
        return None
    controller, brokers, topics = md
    for name, n in layout.items():
        t = topics.get(name)
        if not t or t["error"] != 0 or len(t["leaders"]) != n:
            return None
        if any(leader < 0 or leader == exclude for leader in t["leaders"]):
            return None
    return md


def registered(node, ids):
    md = metadata_full(node, [])
    return md is not None and set(ids) <= md[1]


def run_cluster(cluster, n_parts):
    res = {"partitions": n_parts, "roles": cluster.roles}
    for n in cluster.nodes:
        cluster.start_node(n)
    brokers_ = [n for n in cluster.nodes if n.is_broker]
    try:
        ids = [n.id for n in brokers_]
        wait_for("the cluster to start",
                 lambda: all(port_open(n.port if n.is_broker else n.cport) for n in cluster.nodes))
        secs, _ = wait_for("all brokers registered", lambda: registered(brokers_[0], ids))
        log(f"{cluster.name}: three nodes up")
        layout = topic_layout(n_parts)
        # Both kinds need minutes for 10,000 partitions on this loaded machine (Kafka's nodes took over 60 s
        # to show them all led).
        wait_s = WAIT_S + n_parts // 50
        t0 = time.monotonic()
        res["create_error"] = 0
        for name, parts in layout.items():
            errs = kwire.create_topics(brokers_[0].addr, {name: parts}, replication_factor=3)
            # TOPIC_ALREADY_EXISTS: a forwarded create whose first answer was lost (the active controller moved
            # meanwhile) and that was sent again; the topic is there.
            if errs.get(name, (0,))[0] not in (0, 36):
                raise RuntimeError(f"CreateTopics {name}: {errs}")
            res["create_error"] = max(res["create_error"], errs.get(name, (0,))[0])
        res["create_s"] = time.monotonic() - t0
        res["topics"] = len(layout)
        secs, _ = wait_for("every node to see every partition led",
                           lambda: all(all_led(n, layout) for n in brokers_), timeout_s=wait_s)
        res["propagation_s"] = secs
        log(f"{cluster.name}: {n_parts} partitions created in {res['create_s']:.2f} s, on every node "
            f"{secs:.2f} s later")
        time.sleep(2.0)
        res["rss_mib"] = [round(n.rss_mib(), 1) for n in cluster.nodes]

        # Broker failover: the node that leads the most partitions among those that are not the active controller.
        controller = active_controller(brokers_[0])
        _, _, topics = wait_for("metadata", lambda: metadata_full(brokers_[0], list(layout)))[1]
        leaders = [leader for name in layout for leader in topics[name]["leaders"]]
        res["leaders_per_node"] = {n.id: leaders.count(n.id) for n in brokers_}
        log(f"{cluster.name}: active controller {controller}, partitions led per node {res['leaders_per_node']}")
        victim = max((n for n in brokers_ if n.id != controller), key=lambda n: leaders.count(n.id))
        witness = next(n for n in brokers_ if n is not victim)
        led_by_victim = leaders.count(victim.id)
        if led_by_victim == 0:
            raise RuntimeError(f"no partition is led by a node other than the controller: {res['leaders_per_node']}")
        victim.kill9()
        t0 = time.monotonic()
        wait_for("new leaders after the broker kill", lambda: all_led(witness, layout, exclude=victim.id),
                 timeout_s=wait_s)
        res["broker_failover_s"] = time.monotonic() - t0
        res["broker_led"] = led_by_victim
        log(f"{cluster.name}: kill -9 of broker {victim.id} (leader of {led_by_victim}): all partitions on new "
            f"leaders after {res['broker_failover_s']:.2f} s")
        cluster.start_node(victim)
        wait_for("the killed broker back", lambda: registered(witness, ids), timeout_s=wait_s)
        time.sleep(1.0)

        # Controller failover: the active controller (also a broker).
        controller = active_controller(witness)
        victim = next(n for n in cluster.nodes if n.id == controller)
        witness = next(n for n in brokers_ if n is not victim)
        survivors = [n for n in brokers_ if n is not victim]
        victim.kill9()
        t0 = time.monotonic()
        killed_at = time.time()

        def new_controller():
            try:
                return kwire.quorum_leader(witness.addr) not in (-1, victim.id)
            except (OSError, kwire.WireError):
                return False

        wait_for("a new active controller", new_controller)
        res["controller_failover_s"] = time.monotonic() - t0
        wait_for("new leaders after the controller kill", lambda: all_led(witness, layout, exclude=victim.id),
                 timeout_s=wait_s)
        res["controller_kill_leaders_s"] = time.monotonic() - t0
        new = kwire.quorum_leader(witness.addr)
        # A live broker must not be fenced for not having found the new controller yet: watch Metadata's brokers
        # (the unfenced ones) until the session has passed.
        fenced = set()
        while time.monotonic() - t0 < cluster.session_ms / 1000 + 2:
            md = metadata_full(witness, [])
            if md is not None:
                fenced |= {n.id for n in survivors if n.id not in md[1]}
            time.sleep(POLL_S)
        res["live_brokers_fenced"] = sorted(fenced)
        res["new_controller"] = new
        res["heartbeat_s"] = {n.id: first_heartbeat(n, new, killed_at) for n in survivors}
        log(f"{cluster.name}: kill -9 of the active controller {victim.id}: a new controller ({new}) after "
            f"{res['controller_failover_s']:.2f} s, all partitions led after {res['controller_kill_leaders_s']:.2f} s, "
            f"first heartbeats answered by it {res['heartbeat_s']}, live brokers fenced {res['live_brokers_fenced']}")
        res["command"] = cluster.command()
        return res
    except Exception:
        log_tails(cluster, log)
        raise
    finally:
        for n in cluster.nodes:
            n.stop()


def fmt(v, d=2):
    return "-" if v is None or v != v else f"{v:,.{d}f}"


def render(results, args):
    lines = [MARK_BEGIN, "## Leader failover in a three-node cluster (issue 12)", ""]
    runs = []
    for r in results:
        if r["run"] not in runs:
            runs.append(r["run"])
    lines.append("Method: `scripts/bench/failover.py` (its docstring has the details), on this shared 2-core machine: "
                 "the nodes of a kind and the script share the two cores. Both kinds: three combined "
                 "broker+controller nodes, or (roles \"dedicated\") three controller-only and three broker-only nodes, "
                 f"broker.session.timeout.ms {args.session_ms}, "
                 f"broker.heartbeat.interval.ms {args.heartbeat_ms}, replication factor 3, at most "
                 f"{TOPIC_PARTITIONS_MAX:,} partitions per topic; times are seconds from `kill -9` until a surviving "
                 "node's Metadata shows the change. Runs:")
    lines.append("")
    for i, m in enumerate(runs, 1):
        lines.append(f"{i}. {m['date']}: `{m['command']}` (load average before {m['load_before']}, "
                     f"after {m['load_after']})")
    lines.append("")
    lines.append("| partitions | roles | broker | run | create (s) | on every node (s) | broker kill → new leaders (s) | "
                 "controller kill → new controller (s) | → new leaders (s) | → each live broker's first heartbeat "
                 "to it (s) | live brokers fenced | RSS per node (MiB) |")
    lines.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|---|")

    def beats(r):
        hb = r.get("heartbeat_s")
        if not hb or all(v is None for v in hb.values()):
            return "-"
        return ", ".join(f"{k}: {fmt(v)}" for k, v in sorted(hb.items()))

    def fenced(r):
        f = r.get("live_brokers_fenced")
        return "-" if f is None else ", ".join(map(str, f)) or "none"

    for r in sorted(results, key=lambda r: (r["partitions"], r.get("roles", "combined"), r["broker"] != "Fjord")):
        run = runs.index(r["run"]) + 1
        roles = r.get("roles", "combined")
        if "error" in r:
            lines.append(f"| {r['partitions']:,} | {roles} | {r['broker']} | {run} | failed: {r['error']} "
                         "| | | | | | | |")
            continue
        lines.append(f"| {r['partitions']:,} | {roles} | {r['broker']} | {run} | {fmt(r['create_s'])} | "
                     f"{fmt(r['propagation_s'])} | {fmt(r['broker_failover_s'])} | {fmt(r['controller_failover_s'])} | "
                     f"{fmt(r['controller_kill_leaders_s'])} | {beats(r)} | {fenced(r)} | "
                     f"{', '.join(fmt(x, 0) for x in r['rss_mib'])} |")
    lines.append("")
    lines.append("Commands: " + "; ".join(f"{r['broker']} ({r['partitions']:,}, {r.get('roles', 'combined')}): "
                                          f"`{r['command']}`"
                                          for r in results if "command" in r) + ".")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def previous_rows(path, counts, kinds, roles):
    """Rows of earlier full runs for (partition count, broker kind, roles) this run does not measure."""
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return []
    rows = []
    for r in old.get("results", []):
        r.setdefault("run", old.get("meta"))
        if r["run"] and not (r["partitions"] in counts and r["broker"].lower() in kinds
                             and r.get("roles", "combined") in roles):
            rows.append(r)
    return rows


def write_section(path, section):
    brokers.write_section(path, section, MARK_BEGIN, MARK_END)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--partitions", default="1000,10000")
    ap.add_argument("--roles", default="combined,dedicated",
                    help="combined (three broker+controller nodes), dedicated (three controllers, three brokers)")
    ap.add_argument("--session-ms", type=int, default=9000)
    ap.add_argument("--heartbeat-ms", type=int, default=HEARTBEAT_MS)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data dirs and logs (path printed)")
    ap.add_argument("--quick", action="store_true", help="1,000 partitions only; BENCHMARKS.md untouched")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = ap.parse_args()
    counts = [int(x) for x in args.partitions.split(",")]
    kinds = ["fjord", "kafka"] if args.broker == "both" else [args.broker]
    roles_list = args.roles.split(",")
    if any(r not in ("combined", "dedicated") for r in roles_list):
        ap.error(f"--roles: combined and/or dedicated, not {args.roles}")
    if args.smoke:
        counts, kinds, args.session_ms, args.heartbeat_ms = [100], ["fjord"], 2000, SMOKE_HEARTBEAT_MS
    elif args.quick:
        counts = [1000]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python3 scripts/bench/failover.py " + " ".join(sys.argv[1:]),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results, failed = [], []
    keep = tempfile.mkdtemp(prefix="fjord-bench-failover-keep-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="fjord-bench-failover-") as tmp:
        root = keep or tmp
        for n_parts in counts:
            for roles in roles_list:
                for kind in kinds:
                    sub = os.path.join(root, f"{kind}-{n_parts}-{roles}")
                    os.makedirs(sub)
                    try:
                        cluster = (FjordCluster(sub, args.fjord_bin, args.session_ms, args.heartbeat_ms, roles)
                                   if kind == "fjord" else KafkaCluster(sub, args.session_ms, args.heartbeat_ms, roles))
                        log(f"{cluster.name}: {n_parts} partitions, {roles} roles")
                        r = run_cluster(cluster, n_parts)
                        r["broker"] = cluster.name
                        if r["live_brokers_fenced"]:
                            failed.append(f"{kind} {n_parts} {roles}: live brokers {r['live_brokers_fenced']} fenced "
                                          "after the controller kill")
                    except Exception as e:  # noqa: BLE001 - reported, and fails --smoke
                        r = {"partitions": n_parts, "roles": roles, "broker": kind, "error": str(e)[:300]}
                        failed.append(f"{kind} {n_parts} {roles}: {e}")
                        log(f"{kind} {n_parts} {roles} failed: {e}")
                    results.append(r)
    if keep:
        log(f"data dirs and logs kept in {keep}")
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for r in results:
        r["run"] = meta
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = "failover-smoke.json" if args.smoke else "failover-quick.json" if args.quick else "failover.json"
    path = os.path.join(RESULTS_DIR, name)
    if not (args.smoke or args.quick):
        results = previous_rows(path, counts, kinds, roles_list) + results
    with open(path, "w") as f:
        json.dump({"meta": meta, "session_ms": args.session_ms, "results": results, "failed": failed}, f, indent=1)
    section = render(results, args)
    if not (args.smoke or args.quick):
        write_section(args.out, section)
    print(section)
    if failed:
        log("FAILED: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
