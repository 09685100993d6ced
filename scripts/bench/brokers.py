"""brokers.py - start and stop one benchmark broker (Fjord or Apache Kafka 4.3.1), shared by the Python benchmarks.

    Fjord(root, binary, settings={...})   target/release/fjord serve on a free port, data in ROOT/fjord/data
    Kafka(root, settings={...})           scripts/kafka.sh start on a free port, data in ROOT/kafka/data
    broker.start(); broker.port; broker.pid; broker.data; broker.command; broker.stop()
    write_section(path, section, begin, end)   a benchmark's section of BENCHMARKS.md, between its markers

The broker is pinned to CPU 0 (taskset); the benchmark pins itself to CPU 1 (pin_client()). `settings` are
broker configs with Kafka's names, passed as `--set k=v` to Fjord and as server properties to Kafka.
Python 3 standard library only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
KAFKA_SH = os.path.join(REPO, "scripts", "kafka.sh")
BROKER_CPU = "0"
CLIENT_CPU = 1
START_TIMEOUT_S = 60


def logger(prefix):
    def log(msg):
        print(f"[{prefix} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


def pin_client():
    try:
        os.sched_setaffinity(0, {CLIENT_CPU})
    except (AttributeError, OSError):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Kafka:
    name = "Kafka"

    def __init__(self, root, settings=None):
        self.dir = os.path.join(root, "kafka")
        self.data = os.path.join(self.dir, "data")
        self.settings = dict(settings or {})
        self.pid = None

    def start(self):
        self.port = free_port()
        argv = ["taskset", "-c", BROKER_CPU, "bash", KAFKA_SH, "start", str(self.port), self.dir]
        argv += [f"{k}={v}" for k, v in self.settings.items()]
        self.command = " ".join(["scripts/kafka.sh"] + argv[5:])
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"kafka did not start:\n{p.stderr[-3000:]}")
        self.pid = int([x for x in p.stdout.split() if x.isdigit()][-1])

    def stop(self):
        if self.pid is not None:
            subprocess.run(["bash", KAFKA_SH, "stop", self.dir], capture_output=True, timeout=120)
            self.pid = None


class Fjord:
    name = "Fjord"

    def __init__(self, root, binary, settings=None):
        self.dir = os.path.join(root, "fjord")
        self.data = os.path.join(self.dir, "data")
        self.binary = binary
        self.settings = dict(settings or {})
        self.proc = None
        self.pid = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        argv = ["taskset", "-c", BROKER_CPU, self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", self.data]
        for k, v in self.settings.items():
            argv += ["--set", f"{k}={v}"]
        self.command = "target/release/fjord " + " ".join(argv[4:])
        with open(os.path.join(self.dir, "fjord.log"), "ab") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=dict(os.environ, NO_COLOR="1"))
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fjord did not start (log: {self.dir}/fjord.log)")
            time.sleep(0.01)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pid = None


def write_section(path, section, begin, end):
    """Puts `section` (which starts with `begin` and ends with `end`) in place of the text between those
    markers in `path`, or at its end when they are not there yet; the rest of the file is kept."""
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text:
        a = text.index(begin)
        z = text.index(end) + len(end)
        text = text[:a] + section.rstrip("\n") + text[z:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
