#!/usr/bin/env python3
"""side_by_side.py - Fjord vs Apache Kafka 4.3.1 on the same machine, in one run.

    python3 scripts/bench/side_by_side.py [--quick] [--broker fjord|kafka|both] [--out BENCHMARKS.md]

    --quick   a few seconds per scenario (CI smoke test); writes scripts/bench/results/quick.md unless --out
    --keep    keep the temporary data dirs and broker logs;  --help for the rest

What one run does:
  1. measures the machine's limits on the disk that holds the data dirs (sequential write with an
     fdatasync at the end, 4 KiB append + fdatasync rate) and the loopback TCP rate (a small C program
     compiled with cc at run time: one stream, receiver on CPU 0, sender on CPU 1);
  2. locates librdkafka's rdkafka_performance and the kafka-topic helper through
     ../shared/tools/kafka-tools.sh (built from the crates.io crate rdkafka-sys on first use);
  3. starts each broker in turn (never both at once), pinned to CPU 0 with taskset, the load generator
     pinned to CPU 1: Apache Kafka 4.3.1 in KRaft single-node mode via scripts/kafka.sh, and
     target/release/fjord; a warm-up produce run comes first (the JVM needs it);
  4. runs the scenarios (produce 1 KiB acks=1 / acks=all on 1 and 16 partitions, consume 1 KiB from the
     page cache) and records throughput, broker CPU-seconds per GB moved (utime+stime from
     /proc/PID/stat) and broker memory (VmRSS/VmHWM from /proc/PID/status);
  5. writes the section between <!-- side-by-side:begin --> and <!-- side-by-side:end --> of
     BENCHMARKS.md (other sections are kept), scripts/bench/results/throughput.svg and
     scripts/bench/results/side_by_side.json.

Python 3 standard library only. Needs: taskset, cc, java (for Kafka), the Kafka jars
(tests/e2e/setup.sh or scripts/kafka.sh fetch), and target/release/fjord (cargo build --release -p fjord).
Ctrl-C (or SIGTERM) stops the brokers and removes the temporary directories.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
KAFKA_SH = os.path.join(REPO, "scripts", "kafka.sh")
E2E_SETUP = os.path.join(REPO, "tests", "e2e", "setup.sh")
KAFKA_TOOLS = os.path.abspath(os.path.join(REPO, "..", "shared", "tools", "kafka-tools.sh"))
RESULTS_DIR = os.path.join(HERE, "results")
MARK_BEGIN = "<!-- side-by-side:begin -->"
MARK_END = "<!-- side-by-side:end -->"

RECORD_BYTES = 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
BROKER_CPU = "0"
CLIENT_CPU = "1"

# Commands worth showing in the report (exact argv, in order of first use).
COMMANDS = []
# Problems seen during the run (broker errors, failed deliveries, timeouts...), for the report.
PROBLEMS = []
# Things to undo on exit, most recent first.
CLEANUPS = []
# The load-generator child currently running (killed on interrupt).
CURRENT_CHILD = [None]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def problem(msg):
    log("PROBLEM: " + msg)
    PROBLEMS.append(msg)


def note_command(argv, label):
    COMMANDS.append((label, " ".join(shlex.quote(a) for a in argv)))


def run_cleanups():
    while CLEANUPS:
        fn = CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # cleanup must go on whatever happens
            log(f"cleanup step failed: {e}")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def kill_group(pgid, wait_s=10.0):
    """SIGKILLs a process group and waits until none of its processes is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# /proc readings


def proc_cpu_split(pid):
    """(utime, stime) of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_seconds(pid):
    """utime+stime of the whole process (all threads), in seconds."""
    return sum(proc_cpu_split(pid))


def proc_mem_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def cpu_times():
    """{cpu index: (busy jiffies, total jiffies)} from /proc/stat; busy excludes idle and iowait."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+)\s+(.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                total = sum(v[:8])
                out[m.group(1)] = (total - v[3] - v[4], total)
    return out


def core_busy(t0, t1):
    out = {}
    for cpu in (BROKER_CPU, CLIENT_CPU):
        if cpu in t0 and cpu in t1:
            d_total = t1[cpu][1] - t0[cpu][1]
            out[cpu] = (t1[cpu][0] - t0[cpu][0]) / d_total if d_total > 0 else 0.0
    return out


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "mem_gib": round(mem_gib, 1),
    }


def fs_of(path):
    """(device, fstype, mount point) of the filesystem holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("?", "?", "/")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[2]):
                    best = (parts[0], parts[2], mnt)
    except OSError:
        pass
    return best


# ----------------------------------------------------------------------------------------------
# machine limits

LOOPBACK_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void pin(int cpu) { if (cpu < 0) return; cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }

/* usage: loopback SECONDS BUFSIZE RECV_CPU SEND_CPU ; prints bytes and bytes/s */
int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage\n"); return 2; }
  double secs = atof(argv[1]); size_t bufsz = (size_t)atol(argv[2]);
  int rcpu = atoi(argv[3]), scpu = atoi(argv[4]);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a; memset(&a, 0, sizeof a); a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (struct sockaddr *)&a, &al)) { perror("listen"); return 1; }
  char *buf = malloc(bufsz); memset(buf, 0x5a, bufsz);
  pid_t pid = fork();
  if (pid == 0) {
    pin(rcpu);
    int c = accept(ls, NULL, NULL); if (c < 0) { perror("accept"); _exit(1); }
    ssize_t n; while ((n = read(c, buf, bufsz)) > 0) {}
    _exit(0);
  }
  pin(scpu);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
  double t0 = now(), end = t0 + secs; long long total = 0; int i = 0;
  for (;;) {
    ssize_t n = write(c, buf, bufsz); if (n <= 0) { perror("write"); return 1; }
    total += n;
    if ((++i & 15) == 0 && now() >= end) break;
  }
  close(c); int st; waitpid(pid, &st, 0);
  double dt = now() - t0;
  printf("%lld %.0f\n", total, total / dt);
  return 0;
}
"""


def measure_seq_write(dirpath, total_bytes):
    path = os.path.join(dirpath, "seqwrite.bin")
    chunk = os.urandom(4 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.monotonic()
        written = 0
        while written < total_bytes:
            written += os.write(fd, chunk)
        os.fdatasync(fd)
        dt = time.monotonic() - t0
    finally:
        os.close(fd)
        os.unlink(path)
    return {"bytes": written, "seconds": dt, "mb_s": written / dt / 1e6}


def measure_direct_write(dirpath, total_bytes):
    """Sequential O_DIRECT write in 4 MiB blocks: the device's rate without the page cache (None if refused)."""
    import mmap
    path = os.path.join(dirpath, "directwrite.bin")
    block = mmap.mmap(-1, 4 << 20)  # page-aligned, as O_DIRECT needs
    block.write(os.urandom(4 << 20))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    except (OSError, AttributeError):
        return None
    try:
        t0 = time.monotonic()
        written = 0
        while written < total_bytes:
            written += os.write(fd, block)
        os.fdatasync(fd)
        dt = time.monotonic() - t0
    except OSError:
        return None
    finally:
        os.close(fd)
        os.unlink(path)
    return {"bytes": written, "seconds": dt, "mb_s": written / dt / 1e6}


def disk_rate(limits):
    """The disk's sequential write rate used as the reference: the better of the two measurements."""
    rates = [x["mb_s"] for x in (limits.get("seq_write"), limits.get("direct_write")) if x]
    return max(rates) if rates else None


def measure_fdatasync(dirpath, seconds):
    path = os.path.join(dirpath, "fsync.bin")
    block = os.urandom(4096)
    lat = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    return {
        "count": len(lat),
        "median_us": statistics.median(lat) * 1e6,
        "p99_us": lat[int(len(lat) * 0.99) - 1] * 1e6 if len(lat) >= 100 else lat[-1] * 1e6,
        "syncs_s": len(lat) / sum(lat),
    }


def measure_loopback(workdir, seconds):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return {"skipped": "no C compiler (cc) found"}
    src = os.path.join(workdir, "loopback.c")
    exe = os.path.join(workdir, "loopback")
    with open(src, "w") as f:
        f.write(LOOPBACK_C)
    r = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True)
    if r.returncode != 0:
        return {"skipped": f"cc failed: {r.stderr.strip()[:200]}"}
    two = (os.cpu_count() or 1) >= 2
    argv = [exe, str(seconds), str(256 * 1024), BROKER_CPU if two else "-1", CLIENT_CPU if two else "-1"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if r.returncode != 0:
        return {"skipped": f"loopback test failed: {r.stderr.strip()[:200]}"}
    total, rate = r.stdout.split()
    return {"bytes": int(total), "mb_s": float(rate) / 1e6, "streams": 1, "write_bytes": 256 * 1024}


# ----------------------------------------------------------------------------------------------
# brokers


class Broker:
    name = "?"
    pid = None
    port = None
    start_seconds = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def alive(self):
        return self.pid is not None and os.path.exists(f"/proc/{self.pid}")

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class KafkaBroker(Broker):
    name = "Kafka"

    def __init__(self, root, settings):
        self.dir = os.path.join(root, "kafka")
        self.log_path = os.path.join(self.dir, "kafka.log")
        self.settings = settings

    def start(self):
        self.port = free_port()
        argv = ["taskset", "-c", BROKER_CPU, "bash", KAFKA_SH, "start", str(self.port), self.dir] + self.settings
        note_command(argv, "start Apache Kafka (pinned to CPU 0)")
        CLEANUPS.append(self.stop)
        t0 = time.monotonic()
        # its own process group, so that an interrupt can stop kafka.sh and the storage-format JVM it runs
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = p.communicate(timeout=300)
        except BaseException:
            kill_group(p.pid)
            p.wait()
            raise
        self.start_seconds = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError(f"kafka did not start:\n{err[-3000:]}")
        pids = [ln for ln in out.split() if ln.isdigit()]
        if not pids:
            raise RuntimeError(f"kafka.sh printed no pid: {out!r}")
        self.pid = int(pids[-1])
        log(f"Kafka serving on {self.addr} (pid {self.pid}, {self.start_seconds:.1f}s to serve incl. format)")

    def stop(self):
        # also when start was interrupted before the pid was known: kafka.sh finds it in DIR/kafka.pid
        if os.path.exists(os.path.join(self.dir, "kafka.pid")):
            subprocess.run(["bash", KAFKA_SH, "stop", self.dir], capture_output=True, timeout=120)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def durability(self, acks):
        if acks == "-1":
            return "acks=all acknowledged from the page cache (no fsync; Kafka's default flush settings)"
        if acks == "1":
            return "acknowledged from the page cache (no fsync)"
        return "reads from the page cache"

    def errors_in_log(self):
        return []


class FjordBroker(Broker):
    name = "Fjord"

    def __init__(self, root, binary, settings):
        self.dir = os.path.join(root, "fjord")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "fjord.log")
        self.binary = binary
        self.settings = settings
        self.proc = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        argv = ["taskset", "-c", BROKER_CPU, self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", self.data]
        for s in self.settings:
            argv += ["--set", s]
        note_command(argv, "start Fjord (pinned to CPU 0)")
        CLEANUPS.append(self.stop)
        logf = open(self.log_path, "ab")
        t0 = time.monotonic()
        # taskset execs the broker, so the child pid is the broker's pid
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=dict(os.environ, NO_COLOR="1"))
        logf.close()
        self.pid = self.proc.pid
        deadline = t0 + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fjord exited during start (status {self.proc.returncode}):\n{self.log_tail()}")
            if port_open(self.port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"fjord did not listen within 60 s:\n{self.log_tail()}")
            time.sleep(0.005)
        self.start_seconds = time.monotonic() - t0
        log(f"Fjord serving on {self.addr} (pid {self.pid}, {self.start_seconds * 1000:.0f} ms to listen)")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problem("fjord did not exit within 30 s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pid = None

    def durability(self, acks):
        if acks == "-1":
            return "acks=all acknowledged after fdatasync (Fjord's default group commit)"
        if acks == "1":
            return "acknowledged once written to the page cache (no fsync)"
        return "reads from the page cache"

    def errors_in_log(self):
        out = []
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if re.search(r"\b(ERROR|WARN|panicked)\b", line):
                        out.append(line.rstrip())
        except OSError:
            pass
        return out


# ----------------------------------------------------------------------------------------------
# load generator

PRODUCE_RE = re.compile(
    r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset (-?\d+), (\d+) failed\) in (\d+)ms: "
    r"(\d+) msgs/s and ([\d.]+) MB/s, (\d+) produce failures")
CONSUME_RE = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


class Tools:
    def __init__(self):
        self.rdperf = self._path("rdkafka_performance")
        self.topic = self._path("kafka-topic")

    @staticmethod
    def _path(name):
        if not os.path.exists(KAFKA_TOOLS):
            raise RuntimeError(f"{KAFKA_TOOLS} not found (the shared tools folder must sit beside the repo)")
        r = subprocess.run(["bash", KAFKA_TOOLS, "path", name], stdout=subprocess.PIPE, text=True)
        p = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        if r.returncode != 0 or not os.access(p, os.X_OK):
            raise RuntimeError(f"kafka-tools.sh could not provide {name}")
        return p


def run_client(argv, timeout, label):
    """Runs a load-generator command pinned to the client CPU; returns (stdout, stderr, rc, wall_s)."""
    argv = ["taskset", "-c", CLIENT_CPU] + argv
    note_command(argv, label)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CURRENT_CHILD[0] = p
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        problem(f"{label}: load generator still running after {timeout:.0f} s, killed")
    finally:
        CURRENT_CHILD[0] = None
    wall = time.monotonic() - t0
    return out, err, p.returncode, wall


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def create_topic(tools, broker, topic, partitions):
    argv = [tools.topic, "-b", broker.addr, "create", topic, str(partitions), "1"]
    note_command(argv, f"{broker.name}: create topic ({partitions} partition{'s' if partitions > 1 else ''}, RF 1)")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{broker.name}: creating topic {topic} failed: {r.stderr.strip()}")
    # give the broker a moment to have leaders everywhere (Kafka creates topics asynchronously)
    time.sleep(1.0 if broker.name == "Kafka" else 0.1)


def delete_topic(tools, broker, topic):
    argv = [tools.topic, "-b", broker.addr, "delete", topic]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        log(f"{broker.name}: deleting topic {topic} failed (ignored): {r.stderr.strip()}")


def produce(tools, broker, topic, count, acks, label, timeout_s, measure=True):
    argv = [tools.rdperf, "-P", "-t", topic, "-b", broker.addr, "-s", str(RECORD_BYTES), "-c", str(count),
            "-a", acks, "-X", "compression.codec=none"]
    us0 = proc_cpu_split(broker.pid)
    cpu0 = sum(us0)
    ccpu0 = children_cpu()
    ct0 = cpu_times()
    out, err, rc, wall = run_client(argv, timeout=timeout_s, label=label)
    ct1 = cpu_times()
    us1 = proc_cpu_split(broker.pid) if broker.alive() else us0
    cpu1 = sum(us1)
    ccpu1 = children_cpu()
    m = None
    for m in PRODUCE_RE.finditer(out):
        pass
    if rc != 0 or m is None:
        raise RuntimeError(f"{broker.name} {label}: rdkafka_performance failed (rc {rc}):\n{out[-1500:]}\n{err[-1500:]}")
    msgs, _bytes, delivered, _offset, failed, ms = (int(m.group(i)) for i in range(1, 7))
    res = {
        "msgs": delivered, "bytes": delivered * RECORD_BYTES, "seconds": ms / 1000.0, "wall_seconds": wall,
        "failed": failed, "attempted": msgs,
        "broker_cpu_s": cpu1 - cpu0, "client_cpu_s": ccpu1 - ccpu0, "core_busy": core_busy(ct0, ct1),
        "broker_sys_s": us1[1] - us0[1],
    }
    if failed or delivered != msgs:
        problem(f"{broker.name} {label}: {failed} of {msgs} messages failed, {delivered} delivered "
                f"(stderr: {err.strip()[-400:]})")
    errs = [ln for ln in err.splitlines() if "ERROR" in ln or "FAIL" in ln or "Error" in ln]
    if errs and measure:
        problem(f"{broker.name} {label}: client reported {len(errs)} error lines, e.g. {errs[0][:300]}")
    return finish(res, broker)


def consume(tools, broker, topic, partitions, count, label, timeout_s):
    argv = [tools.rdperf, "-C", "-t", topic, "-b", broker.addr, "-o", "beginning", "-c", str(count), "-e"]
    for p in range(partitions):
        argv += ["-p", str(p)]
    us0 = proc_cpu_split(broker.pid)
    cpu0 = sum(us0)
    ccpu0 = children_cpu()
    ct0 = cpu_times()
    out, err, rc, wall = run_client(argv, timeout=timeout_s, label=label)
    ct1 = cpu_times()
    us1 = proc_cpu_split(broker.pid) if broker.alive() else us0
    cpu1 = sum(us1)
    ccpu1 = children_cpu()
    m = None
    for m in CONSUME_RE.finditer(out):
        pass
    if rc != 0 or m is None:
        raise RuntimeError(f"{broker.name} {label}: rdkafka_performance failed (rc {rc}):\n{out[-1500:]}\n{err[-1500:]}")
    cerrs = [ln for ln in out.splitlines() if ln.startswith("% Consume error")]
    if cerrs:
        problem(f"{broker.name} {label}: {len(cerrs)} consume errors, e.g. {cerrs[0][:300]}")
    msgs, nbytes, ms = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if msgs != count:
        problem(f"{broker.name} {label}: consumed {msgs} of {count} messages (stderr: {err.strip()[-300:]})")
    res = {"msgs": msgs, "bytes": nbytes, "seconds": ms / 1000.0, "wall_seconds": wall,
           "broker_cpu_s": cpu1 - cpu0, "client_cpu_s": ccpu1 - ccpu0, "core_busy": core_busy(ct0, ct1),
           "broker_sys_s": us1[1] - us0[1]}
    return finish(res, broker)


def finish(res, broker):
    secs = max(res["seconds"], 1e-3)
    res["msgs_s"] = res["msgs"] / secs
    res["mb_s"] = res["bytes"] / secs / 1e6
    gb = res["bytes"] / 1e9
    res["cpu_s_per_gb"] = res["broker_cpu_s"] / gb if gb > 0 else None
    # busy fractions over the wall time of the client process (which includes its start-up)
    res["broker_busy"] = res["broker_cpu_s"] / max(res["wall_seconds"], 1e-3)
    res["client_busy"] = res["client_cpu_s"] / max(res["wall_seconds"], 1e-3)
    if broker.alive():
        res["rss_kib"], res["hwm_kib"] = proc_mem_kib(broker.pid)
    else:
        problem(f"{broker.name} is no longer running")
        res["rss_kib"] = res["hwm_kib"] = 0
    return res


def merge_runs(runs):
    """Sums several consume runs of the same scenario into one result."""
    out = {k: sum(r[k] for r in runs) for k in ("msgs", "bytes", "seconds", "wall_seconds", "broker_cpu_s",
                                                  "broker_sys_s", "client_cpu_s")}
    out["runs"] = len(runs)
    secs = max(out["seconds"], 1e-3)
    out["msgs_s"] = out["msgs"] / secs
    out["mb_s"] = out["bytes"] / secs / 1e6
    gb = out["bytes"] / 1e9
    out["cpu_s_per_gb"] = out["broker_cpu_s"] / gb if gb > 0 else None
    out["broker_busy"] = out["broker_cpu_s"] / max(out["wall_seconds"], 1e-3)
    out["client_busy"] = out["client_cpu_s"] / max(out["wall_seconds"], 1e-3)
    out["rss_kib"] = runs[-1]["rss_kib"]
    walls = [r["wall_seconds"] for r in runs]
    out["core_busy"] = {c: sum(r["core_busy"].get(c, 0) * w for r, w in zip(runs, walls)) / sum(walls)
                        for c in (BROKER_CPU, CLIENT_CPU)}
    out["hwm_kib"] = max(r["hwm_kib"] for r in runs)
    return out


# ----------------------------------------------------------------------------------------------
# scenarios


def scenario_list(partition_counts):
    out = []
    for parts in partition_counts:
        out.append({"id": f"produce-acks1-p{parts}", "kind": "produce", "acks": "1", "partitions": parts,
                    "title": f"produce 1 KiB, acks=1, {parts} partition{'s' if parts > 1 else ''}"})
        out.append({"id": f"consume-p{parts}", "kind": "consume", "acks": None, "partitions": parts,
                    "source": f"produce-acks1-p{parts}",
                    "title": f"consume 1 KiB, {parts} partition{'s' if parts > 1 else ''} (page cache)"})
        out.append({"id": f"produce-acksall-p{parts}", "kind": "produce", "acks": "-1", "partitions": parts,
                    "title": f"produce 1 KiB, acks=all, {parts} partition{'s' if parts > 1 else ''}"})
    return out


def best_of(rounds, cfg):
    """Per scenario, the round with the highest throughput; keeps every round's MB/s for the report."""
    out = dict(rounds[0]) if rounds else {}
    for sc in cfg["scenarios"]:
        rs = [r[sc["id"]] for r in rounds if sc["id"] in r]
        if not rs:
            out.pop(sc["id"], None)
            continue
        best = dict(max(rs, key=lambda r: r["mb_s"]))
        best["mb_s_rounds"] = [r["mb_s"] for r in rs]
        out[sc["id"]] = best
    hwm = [r.get("_final_hwm_kib") or 0 for r in rounds]
    out["_final_hwm_kib"] = max(hwm) if hwm else None
    return out


def disk_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def run_broker(broker, tools, cfg, root):
    """Starts one broker, runs every scenario against it, stops it. Returns {scenario id: result}."""
    results = {"_load_at_start": loadavg()}
    broker.start()
    try:
        results["_start_seconds"] = broker.start_seconds
        rss0, _ = proc_mem_kib(broker.pid)
        results["_idle_rss_kib"] = rss0
        # warm-up: a short acks=1 produce run (JIT for the JVM, page cache and allocator for both)
        create_topic(tools, broker, "bench-warmup", 1)
        # timeouts assume at least 5,000 records/s: anything slower is a problem worth reporting anyway
        warm = produce(tools, broker, "bench-warmup", cfg["warmup_msgs"], "1", f"{broker.name}: warm-up produce",
                       timeout_s=60 + cfg["warmup_msgs"] / 5000, measure=False)
        log(f"{broker.name} warm-up: {warm['msgs_s']:,.0f} msgs/s ({warm['mb_s']:.0f} MB/s)")
        delete_topic(tools, broker, "bench-warmup")
        topic_msgs = {}
        for sc in cfg["scenarios"]:
            sid = sc["id"]
            if not broker.alive():
                problem(f"{broker.name} died before scenario {sid}:\n{broker.log_tail(15)}")
                break
            try:
                if sc["kind"] == "produce":
                    topic = f"bench-{sid}"
                    create_topic(tools, broker, topic, sc["partitions"])
                    # probe: a short run to size the measured run to target_seconds at this scenario's rate
                    probe_n = max(cfg["min_msgs"] // 2, int(warm["msgs_s"] * cfg["probe_seconds"]))
                    probe = produce(tools, broker, topic, probe_n, sc["acks"], f"{broker.name} {sid}: probe run (sizes the measured run)",
                                    timeout_s=60 + probe_n / 5000, measure=False)
                    # the probe tends to underestimate (a cold topic, a short run): aim 30% past the target
                    n = int(probe["msgs_s"] * cfg["target_seconds"] * 1.3)
                    n = max(cfg["min_msgs"], min(cfg["max_msgs"], n))
                    free = disk_free(root)
                    if n * RECORD_BYTES * 1.3 > free - (4 << 30):
                        n = max(cfg["min_msgs"], int((free - (4 << 30)) / RECORD_BYTES / 1.3))
                        problem(f"{broker.name} {sid}: disk space limits the run to {n} messages")
                    log(f"{broker.name} {sid}: probe {probe['msgs_s']:,.0f} msgs/s; measuring {n:,} messages")
                    # start every measured run with no dirty pages left over from earlier runs
                    os.sync()
                    res = produce(tools, broker, topic, n, sc["acks"], f"{broker.name}: measured {sc['title']}",
                                  timeout_s=60 + 5 * n / probe["msgs_s"])
                    if res["seconds"] < cfg["target_seconds"] * 0.75:
                        log(f"{broker.name} {sid}: only {res['seconds']:.1f} s measured (target {cfg['target_seconds']} s)")
                    written = probe_n + n
                    if res["seconds"] < cfg["target_seconds"] * 0.75 and n < cfg["max_msgs"]:
                        # too short to mean much: once more, sized from the rate just measured
                        n2 = int(res["msgs_s"] * cfg["target_seconds"] * 1.1)
                        n2 = max(cfg["min_msgs"], min(cfg["max_msgs"], n2))
                        log(f"{broker.name} {sid}: measuring again with {n2:,} messages")
                        os.sync()
                        res = produce(tools, broker, topic, n2, sc["acks"],
                                      f"{broker.name}: measured again {sc['title']}",
                                      timeout_s=60 + 5 * n2 / res["msgs_s"])
                        written += n2
                    res["probe_msgs_s"] = probe["msgs_s"]
                    topic_msgs[sid] = (topic, written)
                    if sc["acks"] == "-1":
                        delete_topic(tools, broker, topic)
                else:
                    src = topic_msgs.get(sc["source"])
                    if src is None:
                        problem(f"{broker.name} {sid}: no data to consume (scenario {sc['source']} failed)")
                        continue
                    topic, total = src
                    os.sync()
                    runs = []
                    t_spent = 0.0
                    while True:
                        r = consume(tools, broker, topic, sc["partitions"], total,
                                    f"{broker.name}: measured {sc['title']}", timeout_s=60 + total / 5000)
                        runs.append(r)
                        t_spent += r["seconds"]
                        if t_spent >= cfg["target_seconds"] or len(runs) >= cfg["max_consume_runs"]:
                            break
                    res = merge_runs(runs)
                    delete_topic(tools, broker, topic)
                log(f"{broker.name} {sid}: {res['msgs_s']:,.0f} msgs/s, {res['mb_s']:.0f} MB/s, "
                    f"{res['seconds']:.1f} s, broker {res['cpu_s_per_gb']:.2f} CPU-s/GB, "
                    f"RSS {res['rss_kib'] / 1024:.0f} MiB; broker {res['broker_busy'] * 100:.0f}% / client "
                    f"{res['client_busy'] * 100:.0f}% of a core; CPU{BROKER_CPU} {res['core_busy'].get(BROKER_CPU, 0) * 100:.0f}% "
                    f"CPU{CLIENT_CPU} {res['core_busy'].get(CLIENT_CPU, 0) * 100:.0f}% busy")
                res["durability"] = broker.durability(sc["acks"])
                results[sid] = res
            except RuntimeError as e:
                problem(f"{broker.name} {sid}: {e}")
        results["_final_hwm_kib"] = proc_mem_kib(broker.pid)[1] if broker.alive() else None
        for line in broker.errors_in_log()[:20]:
            problem(f"{broker.name} log: {line[:300]}")
    finally:
        broker.stop()
        CLEANUPS.remove(broker.stop) if broker.stop in CLEANUPS else None
    return results


# ----------------------------------------------------------------------------------------------
# report


def fmt_num(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def svg_chart(data, path):
    """data: list of (label, fjord MB/s or None, kafka MB/s or None). Grouped horizontal-free bar chart."""
    w_group, bar_w, gap = 110, 38, 10
    left, top, bottom, right = 70, 40, 110, 20
    height = 300
    vmax = max([v for _, f, k in data for v in (f, k) if v] + [1.0])
    # a round axis maximum
    step = 10 ** max(0, len(str(int(vmax))) - 1)
    axis_max = ((int(vmax) // step) + 1) * step
    width = left + right + w_group * len(data)
    h = top + height + bottom
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{h}" fill="white"/>',
         f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
         f'Throughput, 1 KiB records, MB/s (broker pinned to one core)</text>']
    for i in range(6):
        v = axis_max * i / 5
        y = top + height - height * v / axis_max
        o.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    o.append(f'<line x1="{left}" y1="{top + height}" x2="{width - right}" y2="{top + height}" stroke="#333"/>')
    colors = {"Fjord": "#1f77b4", "Kafka": "#ff7f0e"}
    for gi, (label, f, k) in enumerate(data):
        x0 = left + gi * w_group + (w_group - 2 * bar_w - gap) / 2
        for bi, (name, v) in enumerate((("Fjord", f), ("Kafka", k))):
            x = x0 + bi * (bar_w + gap)
            if v is None:
                o.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + height - 4}" text-anchor="middle" '
                         f'fill="#999">n/a</text>')
                continue
            bh = height * v / axis_max
            y = top + height - bh
            o.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w}" height="{bh:.1f}" fill="{colors[name]}">'
                     f'<title>{name}: {v:,.0f} MB/s</title></rect>')
            o.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{v:,.0f}</text>')
        cx = left + gi * w_group + w_group / 2
        lines = label.split("\n")
        for li, ln in enumerate(lines):
            o.append(f'<text x="{cx:.1f}" y="{top + height + 16 + 13 * li}" text-anchor="middle">{ln}</text>')
    ly = h - 22
    for i, name in enumerate(("Fjord", "Kafka")):
        lx = left + i * 110
        o.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colors[name]}"/>')
        o.append(f'<text x="{lx + 18}" y="{ly}">{name}{" 4.3.1" if name == "Kafka" else ""}</text>')
    o.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(o) + "\n")


def bottleneck(r):
    cb = r.get("core_busy", {})
    if r["client_busy"] >= 0.9:
        return "client (load generator)"
    if r["broker_busy"] >= 0.9:
        return "broker"
    if cb.get(BROKER_CPU, 0) - r["broker_busy"] > 0.2 or cb.get(CLIENT_CPU, 0) - r["client_busy"] > 0.2:
        return "other processes share the cores: numbers disturbed"
    return "neither (waiting on round trips or the disk)"


def short_label(sc):
    if sc["kind"] == "consume":
        return f"consume\n{sc['partitions']} part."
    return f"produce\nacks={'all' if sc['acks'] == '-1' else '1'}\n{sc['partitions']} part."


def render_section(meta, limits, results, cfg, svg_rel, invocation):
    brokers = [b for b in ("Fjord", "Kafka") if b in results]
    L = [MARK_BEGIN, "## Fjord vs Apache Kafka 4.3.1, side by side", ""]
    L.append(f"Generated by `{invocation}` on {meta['date']} ({'quick smoke mode: runs of a few seconds, numbers are indicative only' if cfg['quick'] else 'full mode'}). "
             "Regenerate with the same command; only this section (between the side-by-side markers) is rewritten.")
    L.append("")
    L.append(f"- Machine: {meta['nproc']} CPUs ({meta['cpu_model']}), {meta['mem_gib']} GiB RAM, Linux {meta['kernel']}; "
             f"data dirs on `{meta['fs'][0]}` ({meta['fs'][1]}, mounted at `{meta['fs'][2]}`).")
    L.append(f"- Load average (1/5/15 min): {meta['load_before']} before the run, {meta['load_after']} after. "
             "The machine is shared: other work on these cores disturbs the numbers, so compare ratios from the same run.")
    if meta.get("fjord_bin"):
        fb = meta["fjord_bin"]
        L.append(f"- Fjord: `{fb['path']}` built {fb['mtime']} (`cargo build --release -p fjord`), default settings"
                 + (f" plus `--set {' '.join(cfg['fjord_set'])}`" if cfg.get("fjord_set") else "") + ".")
    if "Kafka" in results:
        L.append("- Apache Kafka 4.3.1 from the Maven Central jars, KRaft combined broker+controller, started by "
                 "`scripts/kafka.sh` (heap `-Xmx1g -Xms1g`, G1), default settings otherwise"
                 + (f" plus `{' '.join(cfg['kafka_set'])}`" if cfg.get("kafka_set") else "") + ".")
    L.append(f"- Broker pinned to CPU {BROKER_CPU} (`taskset -c {BROKER_CPU}`), load generator pinned to CPU {CLIENT_CPU}; "
             "one broker at a time; a warm-up produce run before measuring each broker.")
    L.append(f"- Load generator: librdkafka {meta.get('librdkafka', '?')} `rdkafka_performance` (its defaults: linger.ms=1000, "
             "batch.size 1,000,000 bytes, no compression, no idempotence); 1 KiB values, no keys. Topics created with "
             "replication factor 1. Consume runs use the simple consumer from offset 0 of the topic written by the "
             "acks=1 run, reading from the page cache; they are repeated until they add up to the target time.")
    if cfg.get("rounds", 1) > 1:
        L.append(f"- {cfg['rounds']} rounds, the brokers' order alternating; each row shows the round with the "
                 "highest throughput (with its own CPU and memory figures) and lists every round's MB/s.")
    L.append(f"- Each measured produce run is sized from a short probe run of the same scenario to last about "
             f"{cfg['target_seconds']} s (at least {cfg['min_msgs']:,} and at most {cfg['max_msgs']:,} messages); "
             "`sync` runs before every measured run so that no run pays for the dirty pages of an earlier one. "
             "MB/s is 10^6 bytes of record values per second; CPU-s/GB is the broker's utime+stime "
             "(/proc/PID/stat, all threads) during the run divided by the GB (10^9 bytes) of values moved.")
    L.append("- Durability: Fjord acknowledges acks=all only after fdatasync (its default); Kafka acknowledges "
             "acks=all from the page cache (no fsync with its default flush settings), so the acks=all rows "
             "compare a durable Fjord against a non-durable Kafka. acks=1 is page cache on both.")
    L.append("")
    L.append("### Machine limits (same run, same disk)")
    L.append("")
    L.append("| limit | value | how |")
    L.append("|---|---|---|")
    sw = limits.get("seq_write")
    if sw:
        L.append(f"| sequential write | {sw['mb_s']:,.0f} MB/s | {sw['bytes'] / 2**30:.1f} GiB in 4 MiB writes, one fdatasync at the end |")
    dw = limits.get("direct_write")
    if dw:
        L.append(f"| sequential write, O_DIRECT | {dw['mb_s']:,.0f} MB/s | {dw['bytes'] / 2**30:.1f} GiB in 4 MiB O_DIRECT writes (no page cache) |")
    if disk_rate(limits):
        L.append(f"| **disk reference** | {disk_rate(limits):,.0f} MB/s | the better of the two lines above; "
                 "\"% of disk\" figures use it |")
    fs = limits.get("fdatasync")
    if fs:
        L.append(f"| 4 KiB append + fdatasync | {fs['syncs_s']:,.0f} syncs/s (median {fs['median_us']:.0f} µs, p99 {fs['p99_us']:.0f} µs) | {fs['count']:,} appends, one file |")
    lb = limits.get("loopback", {})
    if "mb_s" in lb:
        L.append(f"| loopback TCP | {lb['mb_s']:,.0f} MB/s | one stream, 256 KiB writes, receiver on CPU {BROKER_CPU}, sender on CPU {CLIENT_CPU} (C, compiled at run time) |")
    else:
        L.append(f"| loopback TCP | not measured | {lb.get('skipped', '?')} |")
    L.append("")
    L.append("The loopback figure is one stream of write(2) calls copying from user space; a broker that sends "
             "from the page cache with sendfile(2) avoids one copy and can go past it. On these virtual machines the "
             "page cache itself is erratic: a plain loop of 1 MiB write(2) calls into fresh files (no fsync) ran "
             "anywhere between ~0.3 and ~2.6 GB/s from one 4 GiB file to the next, the difference being kernel CPU "
             "time in the copy into the page cache (`copy_folio_from_iter_atomic` in perf). Produce rows of both "
             "brokers, and their CPU-s/GB (which includes that kernel time), swing with it: compare rounds and "
             "ratios, not single numbers.")
    L.append("")
    L.append("### Summary")
    L.append("")
    if "Fjord" in brokers and "Kafka" in brokers:
        L.append("| scenario | Fjord MB/s | Kafka MB/s | Fjord/Kafka | Fjord CPU-s/GB | Kafka CPU-s/GB | CPU ratio | Fjord vs limit |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        b = brokers[0] if brokers else "?"
        L.append(f"| scenario | {b} msgs/s | {b} MB/s | {b} CPU-s/GB | {b} RSS MiB |")
        L.append("|---|---:|---:|---:|---:|")
    for sc in cfg["scenarios"]:
        f = results.get("Fjord", {}).get(sc["id"])
        k = results.get("Kafka", {}).get(sc["id"])
        if "Fjord" in brokers and "Kafka" in brokers:
            L.append(f"| {sc['title']} | {fmt_num(f and f['mb_s'])} | {fmt_num(k and k['mb_s'])} | "
                     f"{ratio(f and f['mb_s'], k and k['mb_s'])} | {fmt_num(f and f['cpu_s_per_gb'], 2)} | "
                     f"{fmt_num(k and k['cpu_s_per_gb'], 2)} | {ratio(f and f['cpu_s_per_gb'], k and k['cpu_s_per_gb'])} | "
                     f"{limit_fraction(sc, f, limits)} |")
        else:
            r = f or k
            L.append(f"| {sc['title']} | {fmt_num(r and r['msgs_s'])} | {fmt_num(r and r['mb_s'])} | "
                     f"{fmt_num(r and r['cpu_s_per_gb'], 2)} | {fmt_num(r and r['rss_kib'] / 1024)} |")
    L.append("")
    L.append("acks=1 produce lands in the page cache, so it can run past the disk's rate for as long as memory "
             "absorbs it; for Fjord's acks=all (fdatasync before the acknowledgement) the disk is the real limit "
             "(issue 7's target: at least 70% of it).")
    L.append("")
    L.append(f"![throughput per scenario]({svg_rel})")
    L.append("")
    L.append("### Per scenario")
    for sc in cfg["scenarios"]:
        L.append("")
        L.append(f"#### {sc['title']}")
        L.append("")
        hdr = "| | " + " | ".join(brokers) + (" | Fjord/Kafka |" if len(brokers) == 2 else " |")
        L.append(hdr)
        L.append("|---|" + "---:|" * (len(brokers) + (1 if len(brokers) == 2 else 0)))
        rs = [results[b].get(sc["id"]) for b in brokers]

        def row(name, fn, digits=0, with_ratio=True):
            vals = [fn(r) if r else None for r in rs]
            cells = [fmt_num(v, digits) if isinstance(v, (int, float)) or v is None else str(v) for v in vals]
            extra = ""
            if len(brokers) == 2:
                extra = " " + (ratio(vals[0], vals[1]) if with_ratio and all(isinstance(v, (int, float)) for v in vals) else "") + " |"
            L.append(f"| {name} | " + " | ".join(cells) + " |" + extra)

        row("records/s", lambda r: r["msgs_s"])
        row("MB/s", lambda r: r["mb_s"])
        if cfg.get("rounds", 1) > 1:
            row("MB/s in each round", lambda r: ", ".join(f"{v:,.0f}" for v in r.get("mb_s_rounds", [])),
                with_ratio=False)
        row("records measured", lambda r: r["msgs"], with_ratio=False)
        row("seconds measured", lambda r: r["seconds"], 1, with_ratio=False)
        row("broker CPU-s per GB", lambda r: r["cpu_s_per_gb"], 2)
        row("broker CPU in the kernel (stime share)",
            lambda r: f"{r['broker_sys_s'] / r['broker_cpu_s'] * 100:.0f}%" if r["broker_cpu_s"] > 0 else "—",
            with_ratio=False)
        row("broker process CPU (share of one core)", lambda r: f"{r['broker_busy'] * 100:.0f}%", with_ratio=False)
        row("client process CPU (share of one core)", lambda r: f"{r['client_busy'] * 100:.0f}%", with_ratio=False)
        row(f"CPU {BROKER_CPU} / CPU {CLIENT_CPU} busy, all processes",
            lambda r: f"{r['core_busy'].get(BROKER_CPU, 0) * 100:.0f}% / {r['core_busy'].get(CLIENT_CPU, 0) * 100:.0f}%",
            with_ratio=False)
        row("saturated core", bottleneck, with_ratio=False)
        row("broker RSS after / peak (MiB)", lambda r: f"{r['rss_kib'] / 1024:.0f} / {r['hwm_kib'] / 1024:.0f}",
            with_ratio=False)
        row("durability", lambda r: r["durability"], with_ratio=False)
        f = results.get("Fjord", {}).get(sc["id"])
        if f:
            L.append("")
            L.append(f"Fjord vs the machine: {limit_fraction(sc, f, limits, long=True)}.")
    L.append("")
    L.append("### Broker start and memory")
    L.append("")
    L.append("| | " + " | ".join(brokers) + " |")
    L.append("|---|" + "---:|" * len(brokers))
    L.append("| start to serving (s) | " + " | ".join(
        f"{results[b].get('_start_seconds', 0):.2f}" for b in brokers) + " |")
    L.append("| load average when it started | " + " | ".join(results[b].get("_load_at_start", "?") for b in brokers) + " |")
    L.append("| idle RSS after start (MiB) | " + " | ".join(
        f"{(results[b].get('_idle_rss_kib') or 0) / 1024:.0f}" for b in brokers) + " |")
    L.append("| peak RSS over the run, VmHWM (MiB) | " + " | ".join(
        f"{(results[b].get('_final_hwm_kib') or 0) / 1024:.0f}" for b in brokers) + " |")
    L.append("")
    L.append("Kafka's start time includes `kafka.sh` formatting the storage and the JVM start; its heap is "
             "`-Xmx1g -Xms1g` (kafka.sh's default). Fjord's is the time from exec to accepting connections.")
    L.append("")
    L.append("### Commands")
    L.append("")
    L.append("Exact commands of this run (ports and temporary paths change from run to run):")
    L.append("")
    L.append("```")
    for label, cmd in COMMANDS:
        L.append(f"# {label}")
        L.append(cmd)
    L.append("```")
    L.append("")
    L.append("### Problems seen in this run")
    L.append("")
    if PROBLEMS:
        for p in PROBLEMS:
            L.append("- " + p.replace("\n", " ")[:600])
    else:
        L.append("None.")
    L.append(MARK_END)
    return "\n".join(L) + "\n"


def limit_fraction(sc, f, limits, long=False):
    if not f:
        return "—"
    if sc["kind"] == "produce":
        disk = disk_rate(limits)
        if not disk:
            return "—"
        frac = f["mb_s"] / disk
        s = f"{frac * 100:.0f}% of disk" + (" (page cache)" if sc["acks"] == "1" else " (fdatasync)")
        if long:
            s = (f"{f['mb_s']:,.0f} MB/s is {frac * 100:.0f}% of the disk's sequential write rate "
                 f"({disk:,.0f} MB/s)")
            lb = limits.get("loopback", {})
            if "mb_s" in lb:
                s += f" and {f['mb_s'] / lb['mb_s'] * 100:.0f}% of the loopback TCP rate ({lb['mb_s']:,.0f} MB/s)"
            if sc["acks"] == "-1" and limits.get("fdatasync"):
                s += (f"; at {limits['fdatasync']['syncs_s']:,.0f} fdatasync/s the disk allows about "
                      f"{limits['fdatasync']['syncs_s']:,.0f} group commits per second")
        return s
    lb = limits.get("loopback", {})
    if "mb_s" not in lb:
        return "—"
    frac = f["mb_s"] / lb["mb_s"]
    if long:
        return f"{f['mb_s']:,.0f} MB/s is {frac * 100:.0f}% of the loopback TCP rate ({lb['mb_s']:,.0f} MB/s)"
    return f"{frac * 100:.0f}% of loopback"


def write_report(out_path, section):
    if os.path.exists(out_path):
        with open(out_path) as f:
            text = f.read()
        b, e = text.find(MARK_BEGIN), text.find(MARK_END)
        if b != -1 and e != -1 and e > b:
            text = text[:b] + section + text[e + len(MARK_END):].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = ("# Benchmarks\n\n"
                "Numbers measured on the project's development machines. Each section says how to regenerate it.\n\n"
                + section)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out_path)


# ----------------------------------------------------------------------------------------------
# main


def render_only(args):
    with open(args.render_only) as f:
        d = json.load(f)
    COMMANDS.extend(tuple(c) for c in d["commands"])
    PROBLEMS.extend(d["problems"])
    cfg = d["config"]
    out_path = os.path.abspath(args.out) if args.out else (
        os.path.join(RESULTS_DIR, "quick.md") if cfg["quick"] else os.path.join(REPO, "BENCHMARKS.md"))
    svg_path = os.path.join(RESULTS_DIR, "throughput-quick.svg" if cfg["quick"] else "throughput.svg")
    chart = [(short_label(sc), d["results"].get("Fjord", {}).get(sc["id"], {}).get("mb_s"),
              d["results"].get("Kafka", {}).get(sc["id"], {}).get("mb_s")) for sc in cfg["scenarios"]]
    svg_chart(chart, svg_path)
    section = render_section(d["meta"], d["limits"], d["results"], cfg,
                             os.path.relpath(svg_path, os.path.dirname(out_path)),
                             d["meta"].get("invocation") or ("python3 scripts/bench/side_by_side.py"
                                                             + (" --quick" if cfg["quick"] else "")
                                                             + (f" --rounds {cfg['rounds']}" if cfg.get("rounds", 1) > 1
                                                                else "")))
    write_report(out_path, section)
    log(f"rewrote {out_path} and {svg_path} from {args.render_only}")
    return 0


def main():
    ap = argparse.ArgumentParser(description="Fjord vs Apache Kafka 4.3.1, side by side on this machine.")
    ap.add_argument("--quick", action="store_true", help="a few seconds per scenario (CI smoke test)")
    ap.add_argument("--broker", choices=("fjord", "kafka", "both"), default="both")
    ap.add_argument("--out", default=None,
                    help="report file (default: BENCHMARKS.md; with --quick: scripts/bench/results/quick.md, so that "
                         "a smoke run does not overwrite the real numbers)")
    ap.add_argument("--partitions", default="1,16", help="partition counts to run (default 1,16)")
    ap.add_argument("--seconds", type=float, help="target seconds per measured run (default 12, quick 3)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run everything N times, alternating which broker goes first; report each scenario's "
                         "best round (default 1)")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--work-dir", default=None,
                    help="parent of the temporary data dirs (default: $TMPDIR or /tmp); the disk test runs there too")
    ap.add_argument("--fjord-set", action="append", default=[], metavar="NAME=VALUE", help="extra fjord --set")
    ap.add_argument("--kafka-set", action="append", default=[], metavar="NAME=VALUE", help="extra Kafka setting")
    ap.add_argument("--keep", action="store_true", help="keep the temporary dirs (broker logs) for inspection")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the 1-minute load average to drop below --quiet-load")
    ap.add_argument("--quiet-load", type=float, default=0.7, help="load average counted as quiet (default 0.7)")
    ap.add_argument("--no-report", action="store_true", help="print results only; do not touch --out")
    ap.add_argument("--render-only", metavar="JSON",
                    help="only rewrite the report from a results JSON written by an earlier run")
    args = ap.parse_args()
    if args.render_only:
        return render_only(args)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    quick = args.quick
    cfg = {
        "quick": quick,
        "target_seconds": args.seconds or (3.0 if quick else 12.0),
        "probe_seconds": 1.0 if quick else 2.0,
        "warmup_msgs": 200_000 if quick else 1_500_000,
        "min_msgs": 200_000 if quick else 500_000,
        "max_msgs": 3_000_000 if quick else 12_000_000,
        "max_consume_runs": 2 if quick else 4,
        "fjord_set": args.fjord_set,
        "rounds": args.rounds,
        "kafka_set": args.kafka_set,
        "scenarios": scenario_list([int(p) for p in args.partitions.split(",") if p.strip()]),
    }
    invocation = "python3 scripts/bench/side_by_side.py" + "".join(
        f" {shlex.quote(a)}" for a in sys.argv[1:])

    want = ["fjord", "kafka"] if args.broker == "both" else [args.broker]
    if (os.cpu_count() or 1) < 2:
        log("WARNING: fewer than 2 CPUs: broker and load generator share one core")
    for tool in ("taskset",):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (util-linux)")
    if "fjord" in want and not os.access(args.fjord_bin, os.X_OK):
        sys.exit(f"{args.fjord_bin} not found: build it with `cargo build --release -p fjord`")
    if "kafka" in want:
        if not shutil.which("java"):
            sys.exit("java not found: run tests/e2e/setup.sh")
        if not os.path.exists(os.path.expanduser("~/.cache/fjord-e2e/kafka-4.3.1/libs/kafka_2.13-4.3.1.jar")) \
                and not os.environ.get("KAFKA_LIBS"):
            log("Kafka jars missing: running scripts/kafka.sh fetch")
            subprocess.run(["bash", KAFKA_SH, "fetch"], check=True)

    if args.wait_quiet > 0:
        deadline = time.monotonic() + args.wait_quiet
        while float(loadavg().split()[0]) >= args.quiet_load and time.monotonic() < deadline:
            log(f"waiting for a quiet machine (load {loadavg()})")
            time.sleep(15)
    meta = machine_info()
    meta["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    meta["load_before"] = loadavg()
    log(f"load average before: {meta['load_before']}")

    root = tempfile.mkdtemp(prefix="fjord-bench-", dir=args.work_dir)
    meta["fs"] = fs_of(root)
    if not args.keep:
        CLEANUPS.insert(0, lambda: shutil.rmtree(root, ignore_errors=True))
    else:
        log(f"keeping {root}")
    results = {}
    rounds = {}
    limits = {}
    try:
        tools = Tools()
        r = subprocess.run([tools.rdperf, "-h"], capture_output=True, text=True)
        m = re.search(r"librdkafka version ([^\s]+)", r.stdout + r.stderr)
        meta["librdkafka"] = m.group(1) if m else "?"

        log("measuring the machine: sequential write ...")
        limits["seq_write"] = measure_seq_write(root, (512 << 20) if quick else (2 << 30))
        log(f"  sequential write {limits['seq_write']['mb_s']:,.0f} MB/s")
        limits["direct_write"] = measure_direct_write(root, (512 << 20) if quick else (2 << 30))
        if limits["direct_write"]:
            log(f"  sequential O_DIRECT write {limits['direct_write']['mb_s']:,.0f} MB/s")
        limits["fdatasync"] = measure_fdatasync(root, 1.0 if quick else 3.0)
        log(f"  4 KiB append+fdatasync {limits['fdatasync']['syncs_s']:,.0f}/s "
            f"(median {limits['fdatasync']['median_us']:.0f} µs)")
        limits["loopback"] = measure_loopback(root, 1.0 if quick else 3.0)
        if "mb_s" in limits["loopback"]:
            log(f"  loopback TCP {limits['loopback']['mb_s']:,.0f} MB/s")
        else:
            log(f"  loopback TCP skipped: {limits['loopback']['skipped']}")

        fjord_bin = args.fjord_bin
        if "fjord" in want:
            # a private copy: a rebuild of target/release/fjord during the run must not change what is measured
            fjord_bin = os.path.join(root, "fjord-bin")
            shutil.copy2(args.fjord_bin, fjord_bin)
            st = os.stat(args.fjord_bin)
            meta["fjord_bin"] = {"path": os.path.relpath(args.fjord_bin, REPO),
                                 "mtime": datetime.datetime.fromtimestamp(st.st_mtime).astimezone().strftime(
                                     "%Y-%m-%d %H:%M %Z"), "bytes": st.st_size}
        for rnd in range(args.rounds):
            # alternate the order so that neither broker always runs on a machine warmed (or tired) by the other
            order = want if rnd % 2 == 0 else list(reversed(want))
            for name in order:
                if name == "kafka":
                    broker = KafkaBroker(root, args.kafka_set)
                else:
                    broker = FjordBroker(root, fjord_bin, args.fjord_set)
                log(f"=== {broker.name} (round {rnd + 1} of {args.rounds}) ===")
                try:
                    rounds.setdefault(broker.name, []).append(run_broker(broker, tools, cfg, root))
                except RuntimeError as e:
                    problem(f"{broker.name}: {e}")
                    rounds.setdefault(broker.name, []).append({})
                # free the disk before the next broker (a new round starts from a fresh data dir)
                if args.keep:
                    os.rename(broker.dir, f"{broker.dir}-round{rnd + 1}")
                else:
                    shutil.rmtree(broker.dir, ignore_errors=True)
        results = {name: best_of(rs, cfg) for name, rs in rounds.items()}
    except KeyboardInterrupt:
        log("interrupted: stopping brokers and cleaning up")
        if CURRENT_CHILD[0] is not None:
            CURRENT_CHILD[0].kill()
        run_cleanups()
        sys.exit(130)
    finally:
        if CURRENT_CHILD[0] is not None and CURRENT_CHILD[0].poll() is None:
            CURRENT_CHILD[0].kill()
        run_cleanups()

    meta["load_after"] = loadavg()
    meta["invocation"] = invocation
    log(f"load average after: {meta['load_after']}")

    if args.out:
        out_path = os.path.abspath(args.out)
    else:
        out_path = os.path.join(RESULTS_DIR, "quick.md") if quick else os.path.join(REPO, "BENCHMARKS.md")
    # a smoke run gets its own chart and JSON too
    suffix = "-quick" if quick else ""
    svg_path = os.path.join(RESULTS_DIR, f"throughput{suffix}.svg")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    chart = [(short_label(sc), results.get("Fjord", {}).get(sc["id"], {}).get("mb_s"),
              results.get("Kafka", {}).get(sc["id"], {}).get("mb_s")) for sc in cfg["scenarios"]]
    if not args.no_report:
        svg_chart(chart, svg_path)
        svg_rel = os.path.relpath(svg_path, os.path.dirname(out_path))
        section = render_section(meta, limits, results, cfg, svg_rel, invocation)
        write_report(out_path, section)
        with open(os.path.join(RESULTS_DIR, f"side_by_side{suffix}.json"), "w") as f:
            json.dump({"meta": meta, "limits": limits, "config": cfg, "results": results,
                       "rounds": rounds, "problems": PROBLEMS, "commands": COMMANDS}, f, indent=1, default=str)
        log(f"wrote {out_path} and {svg_path}")
    for sc in cfg["scenarios"]:
        parts = []
        for b in ("Fjord", "Kafka"):
            r = results.get(b, {}).get(sc["id"])
            if r:
                parts.append(f"{b} {r['mb_s']:,.0f} MB/s {r['cpu_s_per_gb']:.2f} CPU-s/GB")
        print(f"{sc['title']:45s} " + " | ".join(parts))
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s) recorded; see the report", file=sys.stderr)
    return 1 if any(not v for v in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        run_cleanups()
        sys.exit(130)
