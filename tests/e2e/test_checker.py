"""The Jepsen-style replication checker (checker.py), a bounded run with a fixed seed: three nodes in network
namespaces, idempotent acks=all writers, one round of the fault kinds (kill -9 of a partition leader and of
the active controller, a leader cut off the network, a paused leader, a full disk), then every partition
read back from offset 0. Passes when the checker reports no anomaly. Against Apache Kafka 4.3.1 with
E2E_BROKER=kafka. The longer run is a documented command (RELIABILITY.md):
    python tests/e2e/checker.py --broker fjord --duration 600 --seed 7
Needs root (network namespaces, a tmpfs mount): skipped, with the reason, where the machine does not allow
it. CHECKER_DURATION_S and CHECKER_SEED change the bounded run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import checker
import netns
from conftest import BROKER_KIND, E2E_DIR, FJORD_BIN

DURATION_S = os.environ.get("CHECKER_DURATION_S", "0")
SEED = os.environ.get("CHECKER_SEED", "1")


@pytest.mark.skipif(netns.available() is not None, reason=f"network namespaces: {netns.available()}")
def test_checker_bounded_run_finds_no_anomaly(tmp_path):
    report_path = tmp_path / "report.json"
    p = subprocess.run([sys.executable, str(E2E_DIR / "checker.py"), "--broker", BROKER_KIND, "--duration",
                        DURATION_S, "--seed", SEED, "--fjord-bin", str(FJORD_BIN), "--json", str(report_path),
                        "--keep", str(tmp_path / "nodes")],
                       capture_output=True, text=True, timeout=600)
    print(p.stdout[-6000:], p.stderr[-3000:])
    assert p.returncode == 0, f"checker exit status {p.returncode}:\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    r = json.loads(report_path.read_text())
    assert r["anomaly_count"] == 0
    assert r["operations"]["acknowledged"] > 1000, r["operations"]
    ran = {k for k, n in r["fault_counts"].items() if n > 0}
    assert ran == set(checker.KINDS), f"fault kinds that ran: {r['fault_counts']}"


def test_analysis_reports_each_anomaly_kind():
    """The analysis on a hand-made history: a clean one gives nothing, and each planted fault in the final
    log gives exactly its kind."""
    P = checker.PARTITIONS

    def history():
        # writer 0 sent seq 0..3*P-1 (partition seq % P), all acknowledged at consecutive offsets
        acks = [(seq, seq % P, seq // P, float(seq)) for seq in range(3 * P)]
        log = {p: [(i, f"0:{p + i * P}") for i in range(3)] for p in range(P)}
        return [{"wid": 0, "sent": 3 * P, "acks": acks, "fatal": []}], log

    def run(writers, log, seen=None, conflicts=(), committed=None):
        final = {"read_committed": committed if committed is not None else log, "read_uncommitted": log}
        a = checker.analyze(writers, final, seen or {}, list(conflicts))
        return {k: len(v) for k, v in a.items() if v}

    w, log = history()
    assert run(w, log, seen={(0, 0): "0:0"}) == {}
    w, log = history()
    log[1].pop()  # the last record of partition 1 lost
    assert run(w, log) == {"lost": 1}
    w, log = history()
    log[2] = [log[2][0], (1, log[2][2][1]), (2, log[2][1][1])]  # two records swapped
    assert run(w, log) == {"moved": 2, "reordered": 1}
    w, log = history()
    log[3].append((3, log[3][2][1]))  # the last record stored twice (a retry appended again)
    assert run(w, log) == {"duplicate": 1}
    w, log = history()
    log[3].append((3, log[3][0][1]))  # the first record stored again at the end
    assert run(w, log) == {"duplicate": 1, "reordered": 1}
    w, log = history()
    w[0]["acks"].append((3 * P, 0, 0, 99.0))  # a second value acknowledged at (0, 0), never stored
    w[0]["sent"] += 1
    assert run(w, log) == {"ack-conflict": 1, "lost": 1}
    w, log = history()
    assert run(w, log, seen={(0, 5): "0:999"}) == {"read-then-lost": 1}
    w, log = history()
    assert run(w, log, conflicts=[(0, 0, "0:0", "0:6")]) == {"read-conflict": 1}
    w, log = history()
    committed = {p: list(v) for p, v in log.items()}
    committed[0] = committed[0][:1]
    assert run(w, log, committed=committed) == {"isolation": 1}
    w, log = history()
    log[0].append((3, "7:0"))
    assert run(w, log) == {"unknown": 1}
    w, log = history()
    w[0]["fatal"].append("OUT_OF_ORDER_SEQUENCE_NUMBER")
    assert run(w, log) == {"fatal": 1}


def test_txn_analysis_reports_each_anomaly_kind():
    """The transactional analysis on a hand-made history: writer 0 ran four transactions of
    RECORDS_PER_TXN records (0, 1 and 3 committed, 2 aborted); a clean history gives nothing, and each
    planted fault gives exactly its kind."""
    P, R = checker.PARTITIONS, checker.RECORDS_PER_TXN

    def history():
        txns, ru = [], {p: [] for p in range(P)}
        offsets = {}
        for n in range(4):
            recs = [(i, (n + i) % P) for i in range(R)]
            outcome = "aborted" if n == 2 else "committed"
            txns.append({"n": n, "intent": "abort" if n == 2 else "commit", "records": recs, "outcome": outcome,
                         "begin_s": 10.0 * n, "end_call_s": 10.0 * n + 5, "end_s": 10.0 * n + 6})
            for i, p in recs:
                offsets[(n, i)] = len(ru[p])
                ru[p].append((len(ru[p]), f"t0:{n}:{i}"))
                ru[p].append((len(ru[p]), "marker"))  # stands for the control batch's offset
        for p in ru:
            ru[p] = [(off, v) for off, v in ru[p] if v != "marker"]
        rc = {p: [(off, v) for off, v in recs if not v.startswith("t0:2:")] for p, recs in ru.items()}
        return [{"wid": 0, "txns": txns, "offsets": offsets, "fatal": []}], ru, rc

    def run(writers, ru, rc, seen=None, read_at=None, conflicts=()):
        a = checker.analyze_txn(writers, {"read_committed": rc, "read_uncommitted": ru}, seen or {},
                                read_at or {}, list(conflicts))
        return {k: len(v) for k, v in a.items() if v}

    w, ru, rc = history()
    p0 = w[0]["txns"][0]["records"][0][1]
    assert run(w, ru, rc, seen={(p0, 0): "t0:0:0"}, read_at={(p0, 0): 7.0}) == {}
    w, ru, rc = history()
    rc = {p: [(o, v) for o, v in recs] for p, recs in ru.items()}  # the aborted transaction read committed
    assert run(w, ru, rc) == {"aborted-read": R}
    w, ru, rc = history()
    assert run(w, ru, rc, seen={(p0, 0): "t0:0:0"}, read_at={(p0, 0): 4.0}) == {"uncommitted-read": 1}
    w, ru, rc = history()
    ab = next((p, o) for p, recs in ru.items() for o, v in recs if v == "t0:2:0")
    assert run(w, ru, rc, seen={ab: "t0:2:0"}, read_at={ab: 30.0}) == {"aborted-read": 1}
    w, ru, rc = history()
    p = w[0]["txns"][3]["records"][1][1]
    rc[p] = [(o, v) for o, v in rc[p] if v != "t0:3:1"]  # a committed record missing
    assert run(w, ru, rc) == {"lost": 1}
    w, ru, rc = history()
    w[0]["txns"][3]["outcome"] = "unknown"  # outcome unknown: all or nothing
    assert run(w, ru, rc) == {}
    rc[p] = [(o, v) for o, v in rc[p] if v != "t0:3:1"]
    assert run(w, ru, rc) == {"partial": 1}
    w, ru, rc = history()
    p = w[0]["txns"][1]["records"][2][1]  # a partition transaction 3 wrote to later
    dup = (max(o for o, _ in ru[p]) + 1, "t0:1:2")  # stored again at the end
    ru[p].append(dup)
    rc[p].append(dup)
    assert run(w, ru, rc) == {"duplicate": 1, "moved": 1, "reordered": 1}
    w, ru, rc = history()
    assert run(w, ru, rc, seen={(0, 99): "t0:0:0"}, read_at={(0, 99): 50.0}) == {"read-then-lost": 1}
    w, ru, rc = history()
    ru[0].append((99, "t5:0:0"))
    rc[0].append((99, "t5:0:0"))
    assert run(w, ru, rc) == {"unknown": 1}
    w, ru, rc = history()
    w[0]["fatal"].append("PRODUCER_FENCED")
    assert run(w, ru, rc, conflicts=[(0, 0, "t0:0:0", "t0:1:0")]) == {"fatal": 1, "read-conflict": 1}
