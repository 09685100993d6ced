"""Dynamic controller quorums (issue 12, KIP-853), first part: formatting and starting from the voter set.

Nodes are configured with `controller.quorum.bootstrap.servers` only (no `controller.quorum.voters`) and
formatted the way Kafka 4.x documents: `--standalone` (this controller is the only voter) or
`--initial-controllers ID@HOST:PORT:DIRECTORY_ID,...`. The format writes the bootstrap snapshot
`__cluster_metadata-0/00000000000000000000-0000000000.checkpoint` with a KRaftVersionRecord (kraft.version 1)
and a VotersRecord, and `meta.properties` with the node's directory id; the node starts from that voter set.

Checked with Apache Kafka 4.3.1's own tools on loopback: `kafka-dump-log --cluster-metadata-decoder` decodes
the snapshot (the voter's id, directory id and CONTROLLER endpoint), `kafka-metadata-quorum describe
--status` / `--replication` show the voters (with their directory ids) and the leader, and a record produced
with acks=all is read back. With E2E_BROKER=kafka every node is Apache Kafka 4.3.1 formatted by its
`kafka-storage format`, which checks the test itself.

`kafka-metadata-quorum remove-controller` (RemoveRaftVoter) takes a voter out of a three-voter quorum formatted
with `--initial-controllers`; `describe --status` then shows two voters, and records still go through.

A controller formatted with `--no-initial-controllers` starts with no voter set, finds the leader through
`controller.quorum.bootstrap.servers` and follows it as an observer (`describe --replication` lists it with its
directory id); `kafka-metadata-quorum --bootstrap-controller ... --command-config <its properties> add-controller`
(AddRaftVoter, as Kafka's documentation says) makes it a voter.

Not here yet (issue 12, KIP-853 later slices): UpdateRaftVoter, broker-only nodes that find the quorum through
the bootstrap servers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import clients as c
import pytest
from conftest import BROKER_KIND, FJORD_BIN, KAFKA_LIBS, KEEP_DIRS, REPO, free_port, port_open, unique

# Kafka directory ids (URL-safe base64 of 16 bytes, none of the reserved ones below 100).
DIRECTORY_IDS = ["lQqNmqB4Ttu9caF5i2WITw", "4mDV6NFHRSCcwS25OgCqRA", "MvDxzVmcRsaTz33bUuRU6A"]
CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qg"
# Kafka's JVMs start slowly on a loaded machine.
WAIT_S = 90 if BROKER_KIND == "fjord" else 240


def java(*args, timeout=120):
    argv = ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={REPO}/tests/e2e/log4j2-tools.properties",
            "-cp", f"{KAFKA_LIBS}/*", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


class Node:
    """One combined broker+controller node on loopback, of the kind under test."""

    def __init__(self, root: Path, node_id: int, port: int, cport: int, bootstrap_controllers: str):
        self.root, self.node_id, self.port, self.cport = root / f"n{node_id}", node_id, port, cport
        self.root.mkdir(parents=True)
        self.data = self.root / "data"
        self.settings = {
            "node.id": str(node_id),
            "process.roles": "broker,controller",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": bootstrap_controllers,
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
        }
        self.proc = None

    def format(self, *format_args):
        if BROKER_KIND == "fjord":
            args = ["--data-dir", str(self.data)] + [a for k, v in self.settings.items() for a in ("--set", f"{k}={v}")]
            r = subprocess.run([str(FJORD_BIN), "format", "--cluster-id", CLUSTER_ID, *args, *format_args],
                               capture_output=True, text=True, timeout=60)
        else:
            props = self.props()
            r = java("kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(props), *format_args)
        assert r.returncode == 0, r.stdout + r.stderr

    def props(self) -> Path:
        p = self.root / "server.properties"
        s = dict(self.settings, **{"log.dirs": str(self.data)})
        p.write_text("".join(f"{k}={v}\n" for k, v in s.items()))
        return p

    def start(self):
        log = open(self.root / "node.log", "ab")
        if BROKER_KIND == "fjord":
            args = ["--data-dir", str(self.data)] + [a for k, v in self.settings.items() for a in ("--set", f"{k}={v}")]
            argv = [str(FJORD_BIN), "serve", *args]
        else:
            argv = ["java", "-Xmx512m", f"-Dlog4j2.configurationFile={REPO}/tests/e2e/log4j2-tools.properties",
                    "-cp", f"{KAFKA_LIBS}/*", "kafka.Kafka", str(self.props())]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, NO_COLOR="1"))
        log.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def directory_id(self) -> str:
        text = (self.data / "meta.properties").read_text()
        return re.search(r"^directory\.id=(\S+)$", text, re.M).group(1)

    def log_tail(self, lines=40) -> str:
        f = self.root / "node.log"
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else ""


class Cluster:
    def __init__(self, n: int, bootstrap_nodes: int | None = None):
        """`n` nodes whose controller.quorum.bootstrap.servers are the first `bootstrap_nodes` (all by default)."""
        self.tmp = Path(tempfile.mkdtemp(prefix="fjord-e2e-dynquorum-"))
        ports = [(free_port(), free_port()) for _ in range(n)]
        while len({p for pair in ports for p in pair}) < 2 * n:  # free_port() may hand out a port twice
            ports = [(free_port(), free_port()) for _ in range(n)]
        bootstrap = ",".join(f"127.0.0.1:{cp}" for _, cp in ports[:bootstrap_nodes])
        self.nodes = [Node(self.tmp, i + 1, p, cp, bootstrap) for i, (p, cp) in enumerate(ports)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for n in self.nodes:
            n.stop()
        if not KEEP_DIRS:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- node {n.node_id}:\n{n.log_tail()}" for n in self.nodes)

    def quorum(self, *how):
        """`kafka-metadata-quorum --bootstrap-controller <every controller> describe <how>`, retried until it
        names a leader."""
        controllers = ",".join(f"127.0.0.1:{n.cport}" for n in self.nodes)
        self.wait_listening(controllers=True)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                r = java("org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-controller", controllers,
                         "describe", *how, timeout=90)
                out = r.stdout + r.stderr
                if r.returncode == 0 and (re.search(r"LeaderId:\s+\d", r.stdout) or "Leader" in r.stdout):
                    return r.stdout
            except subprocess.TimeoutExpired as e:
                out = f"{e}"
            assert time.monotonic() < deadline, out + self.logs()
            time.sleep(1)

    def wait_listening(self, controllers=False):
        deadline = time.monotonic() + WAIT_S
        for n in self.nodes:
            while not port_open(n.cport if controllers else n.port):
                assert n.proc.poll() is None, self.logs()
                assert time.monotonic() < deadline, self.logs()
                time.sleep(0.2)


def bootstrap_snapshot(node: Node) -> str:
    path = node.data / "__cluster_metadata-0" / "00000000000000000000-0000000000.checkpoint"
    assert path.exists(), sorted(p.name for p in (node.data / "__cluster_metadata-0").iterdir())
    r = java("org.apache.kafka.tools.DumpLogSegments", "--cluster-metadata-decoder", "--files", str(path))
    assert r.returncode == 0 and "Snapshot end offset: 0, epoch: 0" in r.stdout, r.stdout + r.stderr
    return r.stdout


def voters_in(dump: str) -> list[dict]:
    m = re.search(r"KRaftVoters (\{.*\})$", dump, re.M)
    assert m, dump
    return json.loads(m.group(1))["voters"]


def test_standalone_controller_starts_from_its_bootstrap_snapshot():
    with Cluster(1) as cl:
        (n,) = cl.nodes
        n.format("--standalone")
        dump = bootstrap_snapshot(n)
        assert re.search(r'KRaftVersion \{"version":0,"kRaftVersion":1\}', dump), dump
        assert voters_in(dump) == [{
            "voterId": 1, "voterDirectoryId": n.directory_id(),
            "endpoints": [{"name": "CONTROLLER", "host": "127.0.0.1", "port": n.cport}],
            "kRaftVersionFeature": {"minSupportedVersion": 0, "maxSupportedVersion": 1},
        }], dump
        n.start()
        cl.wait_listening()
        status = cl.quorum("--status")
        assert re.search(r"LeaderId:\s+1\n", status), status
        voters = re.search(r"CurrentVoters:\s+(\[.*\])", status).group(1)
        assert json.loads(voters) == [{"id": 1, "directoryId": n.directory_id(),
                                       "endpoints": [f"CONTROLLER://127.0.0.1:{n.cport}"]}], status
        produce_and_read_back(cl, n)


def quorum_tool_until_done(cl: Cluster, controllers: str, *args) -> subprocess.CompletedProcess:
    """`kafka-metadata-quorum --bootstrap-controller <controllers> <args>`, retried until it succeeds."""
    deadline = time.monotonic() + WAIT_S
    while True:
        r = java("org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-controller", controllers, *args,
                 timeout=90)
        if r.returncode == 0:
            return r
        assert time.monotonic() < deadline, r.stdout + r.stderr + cl.logs()
        time.sleep(1)


def current_voters_once(cl: Cluster, ids: list[int]) -> tuple[str, list[dict]]:
    """`describe --status`, retried until its CurrentVoters are `ids`: the output and those voters."""
    deadline = time.monotonic() + WAIT_S
    while True:
        status = cl.quorum("--status")
        current = json.loads(re.search(r"CurrentVoters:\s+(\[.*\])", status).group(1))
        if sorted(v["id"] for v in current) == sorted(ids):
            return status, current
        assert time.monotonic() < deadline, status + cl.logs()
        time.sleep(1)


def produce_and_read_back(cl: Cluster, n: Node):
    """A topic created through node `n`'s broker, records produced with acks=all and read back."""
    b = f"127.0.0.1:{n.port}"
    t = unique("dynquorum")
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            c.create_topic(b, t, partitions=1)
            break
        except Exception:  # noqa: BLE001 - the broker may still be registering
            assert time.monotonic() < deadline, cl.logs()
            time.sleep(0.5)
    recs = c.records(5, prefix="dq")
    dels = c.cf_produce(b, t, recs, {"acks": "all"})
    assert all(d.err is None for d in dels), [d.err for d in dels if d.err]
    c.assert_same(recs, c.cf_consume(b, t, len(recs)), check_ts=False, check_offsets=False)


@pytest.mark.timeout(600)  # three Kafka JVMs and several tool runs on a loaded machine; Fjord takes about 45 s
def test_initial_controllers_form_a_quorum_of_the_given_voters():
    with Cluster(3) as cl:
        initial = ",".join(f"{n.node_id}@127.0.0.1:{n.cport}:{d}" for n, d in zip(cl.nodes, DIRECTORY_IDS))
        for n in cl.nodes:
            n.format("--initial-controllers", initial)
            assert n.directory_id() == DIRECTORY_IDS[n.node_id - 1]
        dump = bootstrap_snapshot(cl.nodes[1])
        assert [(v["voterId"], v["voterDirectoryId"], v["endpoints"][0]["port"]) for v in voters_in(dump)] == [
            (n.node_id, DIRECTORY_IDS[n.node_id - 1], n.cport) for n in cl.nodes], dump
        for n in cl.nodes:
            n.start()
        replication = cl.quorum("--replication")
        rows = [line.split() for line in replication.splitlines()[1:] if line.strip()]
        voters = {int(r[0]): (r[1], r[-1]) for r in rows if r[-1] in ("Leader", "Follower")}
        assert {i: d for i, (d, _) in voters.items()} == {
            n.node_id: DIRECTORY_IDS[n.node_id - 1] for n in cl.nodes}, replication
        assert sorted(s for _, s in voters.values()) == ["Follower", "Follower", "Leader"], replication
        # remove-controller (RemoveRaftVoter): a follower leaves the voter set and stays as an observer.
        gone = max(i for i, (_, s) in voters.items() if s == "Follower")
        controllers = ",".join(f"127.0.0.1:{n.cport}" for n in cl.nodes)
        r = quorum_tool_until_done(cl, controllers, "remove-controller", "--controller-id", str(gone),
                                   "--controller-directory-id", DIRECTORY_IDS[gone - 1])
        assert re.search(rf"Removed\s+KRaft controller {gone} ", r.stdout), r.stdout + r.stderr
        status, current = current_voters_once(cl, sorted(set(voters) - {gone}))
        assert all(v["directoryId"] == DIRECTORY_IDS[v["id"] - 1] for v in current), status
        # A second removal of the same voter: Kafka's VOTER_NOT_FOUND.
        r = java("org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-controller", controllers,
                 "remove-controller", "--controller-id", str(gone),
                 "--controller-directory-id", DIRECTORY_IDS[gone - 1], timeout=90)
        assert r.returncode != 0 and "VoterNotFoundException" in r.stdout + r.stderr, r.stdout + r.stderr
        produce_and_read_back(cl, cl.nodes[0])


def replication_rows_once(cl: Cluster, controllers: str, done) -> dict[int, tuple[str, str]]:
    """`describe --replication` through `controllers`, retried until `done(rows)`: the rows, node id ->
    (directory id, status)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        r = quorum_tool_until_done(cl, controllers, "describe", "--replication")
        rows = [line.split() for line in r.stdout.splitlines()[1:] if line.strip()]
        rows = {int(row[0]): (row[1], row[-1]) for row in rows}
        if done(rows):
            return rows
        assert time.monotonic() < deadline, f"{rows}\n" + cl.logs()
        time.sleep(1)


@pytest.mark.timeout(600)  # two Kafka JVMs and several tool runs on a loaded machine
def test_a_controller_formatted_without_voters_joins_with_add_controller():
    with Cluster(2, bootstrap_nodes=1) as cl:
        first, joiner = cl.nodes
        first.format("--standalone")
        joiner.format("--no-initial-controllers")
        first.start()
        joiner.start()
        cl.wait_listening(controllers=True)
        controllers = f"127.0.0.1:{first.cport}"
        # The joiner finds the leader through the bootstrap server and fetches as an observer.
        rows = replication_rows_once(
            cl, controllers, lambda rows: rows.get(joiner.node_id, ("", ""))[1] == "Observer")
        assert rows[joiner.node_id][0] == joiner.directory_id(), rows
        assert rows[first.node_id][1] == "Leader", rows
        # add-controller (AddRaftVoter) with the joiner's own properties, as Kafka's documentation says.
        r = quorum_tool_until_done(cl, controllers, "--command-config", str(joiner.props()), "add-controller")
        assert re.search(rf"Added controller {joiner.node_id} ", r.stdout), r.stdout + r.stderr
        status, current = current_voters_once(cl, [first.node_id, joiner.node_id])
        dirs = {v["id"]: v["directoryId"] for v in current}
        assert dirs == {first.node_id: first.directory_id(), joiner.node_id: joiner.directory_id()}, status
        joined = [v for v in current if v["id"] == joiner.node_id][0]
        assert joined["endpoints"] == [f"CONTROLLER://127.0.0.1:{joiner.cport}"], status
        # Both voters now hold every commit: records go through. (Kept to four tool runs for the CI budget:
        # describe --replication would show Leader and Follower, a second add-controller DuplicateVoterException.)
        produce_and_read_back(cl, first)
