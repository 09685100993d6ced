"""The `fjord` command line (topic, produce, consume, group) against the broker under test: the same script
passes against Fjord and against Apache Kafka 4.3.1 (E2E_BROKER=kafka), since the CLI speaks Kafka's protocol.

Covers: create, produce from stdin, consume --exit with a byte-for-byte comparison, tailing while another
process produces, describe, alter config, group describe with the lag kafka-consumer-groups reports, reset
offsets, delete; and bad input (unknown topic, unreachable broker, malformed --config, unknown template
field): one line on stderr and the documented non-zero exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import FJORD_BIN, free_port, unique
from test_groups import _cg, _table

# Exit codes documented in README.md (crates/fjord/src/cli/mod.rs, `exit`).
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4


@pytest.fixture(scope="module", autouse=True)
def _fjord_cli():
    if not FJORD_BIN.exists():
        pytest.fail(f"fjord binary not found at {FJORD_BIN}: the CLI tests run it against either broker")


def fj(broker, *args: str, input: bytes | None = None, timeout: float = 60, check: bool = True):
    """Runs `fjord ARGS --bootstrap BROKER`; returns the CompletedProcess (bytes)."""
    res = subprocess.run(
        [str(FJORD_BIN), *args, "--bootstrap", broker.bootstrap],
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"fjord {' '.join(args)} exited {res.returncode}: {res.stderr.decode(errors='replace')}")
    return res


def fj_json(broker, *args: str):
    return json.loads(fj(broker, *args, "--json").stdout)


def wait_until(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_create_produce_consume_bytes(broker):
    t = unique("cli")
    out = fj(broker, "topic", "create", t, "--partitions", "1", "--config", "retention.ms=86400000")
    assert t in out.stdout.decode()
    assert t in fj(broker, "topic", "list").stdout.decode().split()
    # Lines with UTF-8, tabs, an empty line and a line without its final newline.
    data = "".join(f"record {i}\tné {'x' * (i % 50)}\n" for i in range(2000)).encode() + b"\nlast"
    res = fj(broker, "produce", t, "--print-offsets", input=data)
    offsets = res.stdout.decode().splitlines()
    assert offsets[0] == "0 0" and offsets[-1] == "0 2001", offsets[-3:]
    got = fj(broker, "consume", t, "--from-beginning", "--exit").stdout
    assert got == data + b"\n"
    # -n, --offset, --last, key/value and JSON formats
    assert fj(broker, "consume", t, "--from-beginning", "-n", "2").stdout == b"record 0\tn\xc3\xa9 \nrecord 1\tn\xc3\xa9 x\n"
    assert fj(broker, "consume", t, "--offset", "2000", "--exit").stdout == b"\nlast\n"
    assert fj(broker, "consume", t, "--last", "1", "--exit").stdout == b"last\n"
    line = fj(broker, "consume", t, "--offset", "2001", "--exit", "--format", "json").stdout
    rec = json.loads(line)
    assert (rec["partition"], rec["offset"], rec["value"], rec["key"]) == (0, 2001, "last", None)
    assert rec["timestamp"] > 0

    # keys, headers, a chosen partition, compression, idempotence; the template shows them
    k = unique("cli-kv")
    fj(broker, "topic", "create", k, "--partitions", "3")
    fj(
        broker, "produce", k, "-K", ":", "-H", "h=1", "--partition", "2", "--compression", "gzip", "--idempotent",
        input=b"a:1\nb:2\n",
    )
    got = fj(broker, "consume", k, "--from-beginning", "--exit", "-t", "{partition}/{offset} {key}={value} {headers}")
    assert got.stdout == b"2/0 a=1 h=1\n2/1 b=2 h=1\n"
    # non-UTF-8 values: escaped, or base64
    fj(broker, "produce", k, "--partition", "1", input=b"\xff\xfeok\n")
    assert fj(broker, "consume", k, "-p", "1", "--from-beginning", "--exit").stdout == b"\\xff\\xfeok\n"
    assert fj(broker, "consume", k, "-p", "1", "--from-beginning", "--exit", "--binary", "base64").stdout == b"//5vaw==\n"


def test_tail_follows_another_producer(broker):
    t = unique("cli-tail")
    fj(broker, "topic", "create", t, "--partitions", "1")
    tail = subprocess.Popen(
        [str(FJORD_BIN), "consume", t, "--bootstrap", broker.bootstrap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The tail starts at the log end: produce pings until it shows one, then the real records.
        fd = tail.stdout.fileno()
        os.set_blocking(fd, False)
        seen = b""

        def read_more() -> bytes:
            nonlocal seen
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = b""
            seen += chunk
            return seen

        def pinged() -> bool:
            fj(broker, "produce", t, input=b"ping\n")
            time.sleep(0.3)
            return b"ping\n" in read_more()

        wait_until(pinged, 30, "the tail to show a ping")
        lines = b"".join(b"live %d\n" % i for i in range(300))
        for i in range(0, 300, 100):  # three separate producer processes
            fj(broker, "produce", t, input=b"".join(b"live %d\n" % j for j in range(i, i + 100)))
        wait_until(lambda: read_more().endswith(b"live 299\n"), 30, "the tail to show every record")
        assert seen[seen.index(b"live 0\n"):] == lines
        assert tail.poll() is None, "a tail without --exit keeps following"
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=10) == 0
        assert tail.stderr.read() == b""
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()


def test_describe_and_alter_config(broker):
    t = unique("cli-desc")
    fj(broker, "topic", "create", t, "--partitions", "2", "--config", "retention.ms=3600000")
    d = fj_json(broker, "topic", "describe", t)
    assert d["topic"] == t and len(d["partitions"]) == 2
    for p in d["partitions"]:
        assert p["leader"] >= 0 and p["replicas"] == [p["leader"]] and p["isr"] == [p["leader"]]
    configs = {c["name"]: c for c in d["configs"]}
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"]["source"] == "DEFAULT_CONFIG"
    text = fj(broker, "topic", "describe", t).stdout.decode()
    assert "retention.ms=3600000\t(DYNAMIC_TOPIC_CONFIG)" in text and "PartitionCount: 2" in text

    fj(broker, "topic", "alter", t, "--config", "retention.ms=7200000", "--config", "cleanup.policy=compact")
    configs = {c["name"]: c for c in fj_json(broker, "topic", "describe", t)["configs"]}
    assert configs["retention.ms"]["value"] == "7200000"
    assert configs["cleanup.policy"]["value"] == "compact"
    assert configs["cleanup.policy"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    fj(broker, "topic", "alter", t, "--delete-config", "cleanup.policy")
    configs = {c["name"]: c for c in fj_json(broker, "topic", "describe", t)["configs"]}
    assert (configs["cleanup.policy"]["value"], configs["cleanup.policy"]["source"]) == ("delete", "DEFAULT_CONFIG")

    fj(broker, "topic", "add-partitions", t, "--total", "4")
    assert len(fj_json(broker, "topic", "describe", t)["partitions"]) == 4

    fj(broker, "topic", "delete", t)
    wait_until(lambda: t not in fj(broker, "topic", "list").stdout.decode().split(), 30, "the topic to go")
    res = fj(broker, "topic", "describe", t, check=False)
    assert res.returncode == EXIT_NOT_FOUND, res


def test_group_lag_reset_delete_match_kafka_tool(broker, java):
    b = broker.bootstrap
    t = unique("cli-grp")
    g = unique("g-cli")
    fj(broker, "topic", "create", t, "--partitions", "3")
    for p, n in ((0, 10), (1, 20), (2, 5)):
        fj(broker, "produce", t, "--partition", str(p), input=b"".join(b"r%d\n" % i for i in range(n)))
    # Read 4 records of partition 0 and 15 of partition 1 as group g; nothing of partition 2.
    assert fj(broker, "consume", t, "-g", g, "-p", "0", "--from-beginning", "-n", "4").stdout == b"r0\nr1\nr2\nr3\n"
    assert len(fj(broker, "consume", t, "-g", g, "-p", "1", "--from-beginning", "-n", "15").stdout.splitlines()) == 15
    # The group resumes where it committed.
    assert fj(broker, "consume", t, "-g", g, "-p", "0", "-n", "1").stdout == b"r4\n"

    def compare() -> dict[int, dict]:
        ours = {p["partition"]: p for p in fj_json(broker, "group", "describe", g)["partitions"] if p["topic"] == t}
        theirs = {int(r["PARTITION"]): r for r in _table(_cg(java, "--bootstrap-server", b, "--describe", "--group", g), t)}
        assert sorted(ours) == sorted(theirs), (ours, theirs)
        for p, row in theirs.items():
            assert str(ours[p]["committed"]) == row["CURRENT-OFFSET"], (p, ours[p], row)
            assert str(ours[p]["log_end"]) == row["LOG-END-OFFSET"], (p, ours[p], row)
            assert str(ours[p]["lag"]) == row["LAG"], (p, ours[p], row)
        return ours

    ours = compare()
    assert {p: v["lag"] for p, v in ours.items()} == {0: 5, 1: 5}
    text = fj(broker, "group", "describe", g).stdout.decode()
    assert "CURRENT-OFFSET" in text and "LAG" in text
    assert g in fj(broker, "group", "list").stdout.decode().split()
    assert g in fj(broker, "groups", "list").stdout.decode().split()  # the old name still works

    # reset: a dry run changes nothing; --execute does
    fj(broker, "group", "reset-offsets", g, "--topic", t, "--to-earliest")
    assert compare()[0]["committed"] == 5
    fj(broker, "group", "reset-offsets", g, "--topic", t, "--to-earliest", "--execute")
    ours = compare()
    assert {p: (v["committed"], v["lag"]) for p, v in ours.items()} == {0: (0, 10), 1: (0, 20), 2: (0, 5)}
    fj(broker, "group", "reset-offsets", g, "--topic", t, "-p", "1", "--shift-by", "7", "--execute")
    assert compare()[1]["lag"] == 13
    fj(broker, "group", "reset-offsets", g, "--topic", t, "--to-latest", "--execute")
    assert all(v["lag"] == 0 for v in compare().values())

    fj(broker, "group", "delete", g)
    assert g not in fj(broker, "group", "list").stdout.decode().split()
    assert g not in _cg(java, "--bootstrap-server", b, "--list").split()


def _one_line_error(res, code: int, *mentions: str):
    err = res.stderr.decode()
    assert res.returncode == code, (res.returncode, err)
    assert err.startswith("fjord: ") and err.count("\n") == 1, err
    assert "panicked" not in err and "backtrace" not in err.lower(), err
    for m in mentions:
        assert m in err, (m, err)


def test_bad_input_is_one_line_and_a_documented_exit_code(broker):
    missing = unique("cli-missing")
    _one_line_error(fj(broker, "consume", missing, "--exit", check=False), EXIT_NOT_FOUND, missing)
    _one_line_error(fj(broker, "topic", "describe", missing, check=False), EXIT_NOT_FOUND, missing)
    _one_line_error(fj(broker, "produce", missing, input=b"x\n", check=False), EXIT_NOT_FOUND, missing)

    dead = f"127.0.0.1:{free_port()}"
    res = subprocess.run(
        [str(FJORD_BIN), "topic", "list"], capture_output=True, timeout=60, env={**os.environ, "FJORD_BOOTSTRAP": dead}
    )
    _one_line_error(res, EXIT_UNREACHABLE, dead)

    t = unique("cli-bad")
    _one_line_error(fj(broker, "topic", "create", t, "--config", "retention.ms", check=False), EXIT_USAGE, "--config")
    assert t not in fj(broker, "topic", "list").stdout.decode().split()
    fj(broker, "topic", "create", t)
    _one_line_error(fj(broker, "consume", t, "--exit", "-t", "{offset} {nope}", check=False), EXIT_USAGE, "{nope}")
    # Exists already: the broker's refusal, naming the topic.
    res = fj(broker, "topic", "create", t, check=False)
    _one_line_error(res, 5, t, "TOPIC_ALREADY_EXISTS")
