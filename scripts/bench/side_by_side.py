#!/usr/bin/env python3
"""side_by_side.py - Fjord vs Apache Kafka 4.3.1 on the same machine, in one run.

    python3 scripts/bench/side_by_side.py [--quick | --smoke] [--broker fjord|kafka|both] [--scenarios LIST]
    cargo xtask bench [same options]          (builds target/release/fjord and fetches the tools first)

    --smoke   CI check: Fjord only, every load generator and scenario for a second or two, exits non-zero
              on any failure; writes scripts/bench/results/smoke.md
    --quick   both brokers, every scenario at small scale (a few seconds each, 1-2 GiB stored); writes
              scripts/bench/results/quick.md
    (neither) the full run: >= 10 s per measured run, 10 GiB / 20 GiB stored; rewrites BENCHMARKS.md
    --help    for the rest (scenario selection, scale, rounds, extra broker settings)

What one run does:
  1. measures the machine's limits on the disk that holds the data dirs (sequential write with an
     fdatasync at the end, O_DIRECT sequential write, 4 KiB append + fdatasync rate) and the loopback TCP
     rate (a small C program compiled at run time: one stream, receiver on CPU 0, sender on CPU 1);
  2. locates librdkafka's rdkafka_performance and the kafka-topic helper through
     ../shared/tools/kafka-tools.sh (built from the crates.io crate rdkafka-sys on first use), Kafka's
     ProducerPerformance/ConsumerPerformance (kafka-producer-perf-test / kafka-consumer-perf-test) from the
     Maven Central jars through scripts/kafka.sh, and `fjord bench` from the release binary;
  3. for each broker in turn (never both at once; broker pinned to CPU 0, every load generator to CPU 1),
     in up to three sessions, each on a fresh data dir that is deleted afterwards:
       main     warm-up, then produce (100 B / 1 KiB, acks=1 / all, 1 / 16 / 256 partitions, 1 / 8
                producers) and consume (page cache) with rdkafka_performance; a few of the same rows with
                kafka-producer-perf-test / kafka-consumer-perf-test and with `fjord bench`; end-to-end
                latency (`fjord bench e2e`) at 10/25/50/80% of the broker's own peak and at a fixed 50 MB/s
       many     10,000 partitions (10 topics of 1,000): creation time, then a light load on all of them
       stored   produce into an empty broker; fill to 10 GiB; restart after kill -9 and after SIGTERM
                (time until Metadata shows every partition led); fill to 20 GiB; produce again
     and records, for every measured run, throughput, broker CPU-seconds per GB moved (utime+stime from
     /proc/PID/stat) and broker memory (peak VmRSS sampled every 100 ms from /proc/PID/status);
  4. writes the section between <!-- side-by-side:begin --> and <!-- side-by-side:end --> of the report
     (other sections are kept), SVG plots (throughput per scenario; latency percentiles vs offered load)
     and a JSON file of every number under scripts/bench/results/.

Python 3 standard library only. Needs: taskset, cc, java (for Kafka and its perf tools), the Kafka jars
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
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kwire  # noqa: E402
import report  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
KAFKA_SH = os.path.join(REPO, "scripts", "kafka.sh")
E2E_SETUP = os.path.join(REPO, "tests", "e2e", "setup.sh")
KAFKA_TOOLS = os.path.abspath(os.path.join(REPO, "..", "shared", "tools", "kafka-tools.sh"))
RESULTS_DIR = os.path.join(HERE, "results")
MARK_BEGIN = "<!-- side-by-side:begin -->"
MARK_END = "<!-- side-by-side:end -->"

CLK_TCK = os.sysconf("SC_CLK_TCK")
BROKER_CPU = "0"
CLIENT_CPU = "1"

# Commands worth showing in the report (exact argv, in order of first use).
COMMANDS = []
# Problems seen during the run (broker errors, failed deliveries, timeouts...), for the report.
PROBLEMS = []
FATAL = []
# Things to undo on exit, most recent first.
CLEANUPS = []
# The load-generator children currently running (killed on interrupt).
CHILDREN = []


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def excerpt(text, limit=1500):
    """The end of a tool's output, but from a Rust panic's message when there is one: a backtrace's
    last frames alone do not say what failed."""
    i = text.rfind("panicked at")
    if i >= 0:
        start = text.rfind("\n", 0, i) + 1
        return text[start:start + limit]
    return text[-limit:]


def problem(msg, fatal=True):
    """Records a problem for the report; a fatal one (failed deliveries, a failed scenario) also fails --smoke."""
    log("PROBLEM: " + msg)
    PROBLEMS.append(msg)
    if fatal:
        FATAL.append(msg)


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
                lines = f.readlines()
        except OSError:
            return ""
        panics = [i for i, ln in enumerate(lines) if "panicked at" in ln]
        if panics and panics[-1] < len(lines) - n:
            # the panic's message and location, then the tail (a backtrace's end says nothing)
            return "".join(lines[panics[-1]:panics[-1] + 3]) + "...\n" + "".join(lines[-n:])
        return "".join(lines[-n:])

    def partition_dirs(self, topics):
        """How many topic-partition directories of these topics exist in the data dir."""
        want = set(topics)
        n = 0
        try:
            for e in os.listdir(self.data):
                t, _, p = e.rpartition("-")
                if t in want and p.isdigit():
                    n += 1
        except OSError:
            pass
        return n


class KafkaBroker(Broker):
    name = "Kafka"

    def __init__(self, root, settings, tag):
        self.dir = os.path.join(root, f"kafka-{tag}")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "kafka.log")
        self.settings = settings
        self.launcher = None
        self.env = dict(os.environ, KAFKA_START_TIMEOUT_S="1800", KAFKA_STOP_TIMEOUT_S="900")
        # kafka.sh would pick a random port only checked for listeners; one the kernel hands out is also
        # not the local port of some client connection
        self.env["CONTROLLER_PORT"] = str(free_port())

    def _argv(self):
        return ["taskset", "-c", BROKER_CPU, "bash", KAFKA_SH, "start", str(self.port), self.dir] + self.settings

    def launch(self):
        """Starts kafka.sh start in the background (it formats on first use, then waits for the broker)."""
        os.makedirs(self.dir, exist_ok=True)
        try:
            os.unlink(os.path.join(self.dir, "kafka.pid"))
        except OSError:
            pass
        out = open(os.path.join(self.dir, "launcher.out"), "w")
        # its own process group, so that an interrupt can stop kafka.sh and the storage-format JVM it runs
        self.launcher = subprocess.Popen(self._argv(), stdout=out, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True, env=self.env)
        out.close()

    def launched_pid(self):
        try:
            with open(os.path.join(self.dir, "kafka.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    def launch_failed(self):
        return self.launcher is not None and self.launcher.poll() not in (None, 0)

    def finish_launch(self, timeout_s):
        try:
            self.launcher.wait(timeout=timeout_s)
        except BaseException:
            kill_group(self.launcher.pid)
            self.launcher.wait()
            raise
        if self.launcher.returncode != 0:
            with open(os.path.join(self.dir, "launcher.out"), errors="replace") as f:
                raise RuntimeError(f"kafka did not start:\n{f.read()[-3000:]}")
        self.pid = self.launched_pid()
        if self.pid is None:
            raise RuntimeError("kafka.sh started no broker (no live pid in kafka.pid)")

    def start(self):
        CLEANUPS.append(self.stop)
        for attempt in (1, 2):
            self.port = free_port()
            note_command(self._argv(), "start Apache Kafka (pinned to CPU 0)")
            t0 = time.monotonic()
            self.launch()
            try:
                self.finish_launch(300)
                break
            except RuntimeError as e:
                if attempt == 2 or "Address already in use" not in self.log_tail(200):
                    raise
                # a port taken between choosing it and binding it: once more with fresh ports and dir
                problem(f"Kafka could not bind its port ({str(e)[:120]}...); starting again on other ports",
                        fatal=False)
                self.stop()
                shutil.rmtree(self.dir, ignore_errors=True)
                self.env["CONTROLLER_PORT"] = str(free_port())
        self.start_seconds = time.monotonic() - t0
        log(f"Kafka serving on {self.addr} (pid {self.pid}, {self.start_seconds:.1f}s to serve incl. format)")

    def stop(self):
        # also when start was interrupted before the pid was known: kafka.sh finds it in DIR/kafka.pid
        subprocess.run(["bash", KAFKA_SH, "stop", self.dir], capture_output=True, env=self.env)
        self.pid = None

    def kill9(self):
        subprocess.run(["bash", KAFKA_SH, "kill", self.dir], capture_output=True, env=self.env)
        self.pid = None

    def durability(self, acks):
        if acks == "-1":
            return "page cache (acks=all, no fsync: Kafka's default flush settings)"
        if acks in ("1", "0"):
            return "page cache (no fsync)"
        return "—"

    def errors_in_log(self):
        return []


class FjordBroker(Broker):
    name = "Fjord"

    def __init__(self, root, binary, settings, tag):
        self.dir = os.path.join(root, f"fjord-{tag}")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "fjord.log")
        self.binary = binary
        self.settings = settings
        self.proc = None

    def _argv(self):
        argv = ["taskset", "-c", BROKER_CPU, self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", self.data]
        for s in self.settings:
            argv += ["--set", s]
        return argv

    def launch(self):
        os.makedirs(self.dir, exist_ok=True)
        logf = open(self.log_path, "ab")
        # taskset execs the broker, so the child pid is the broker's pid
        self.proc = subprocess.Popen(self._argv(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=dict(os.environ, NO_COLOR="1"))
        logf.close()
        self.pid = self.proc.pid

    def launched_pid(self):
        return self.pid if self.alive() else None

    def launch_failed(self):
        return self.proc is not None and self.proc.poll() is not None

    def finish_launch(self, timeout_s):
        pass

    def start(self):
        self.port = free_port()
        note_command(self._argv(), "start Fjord (pinned to CPU 0)")
        CLEANUPS.append(self.stop)
        t0 = time.monotonic()
        self.launch()
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
                self.proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                problem("fjord did not exit within 300 s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pid = None

    def kill9(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.pid = None

    def durability(self, acks):
        if acks == "-1":
            return "fdatasync before the acknowledgement (acks=all, Fjord's default group commit)"
        if acks in ("1", "0"):
            return "page cache (no fsync)"
        return "—"

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


def wait_ready(broker, topics, partitions, timeout_s, t0=None, want_dirs=True, dirs_grace_s=None):
    """Polls Metadata until every partition of the topics is led (and, with want_dirs, has its directory
    in the data dir: Kafka answers Metadata with a leader before the log exists, and a ListOffsets or
    Produce sent in between fails with NOT_LEADER_OR_FOLLOWER). With dirs_grace_s, gives up waiting for the
    directories that long after Metadata is ready. Returns (seconds since t0, broker CPU-seconds at that
    moment, seconds until Metadata was ready)."""
    t0 = t0 if t0 is not None else time.monotonic()
    n_dirs = len(topics) * partitions
    md_ok = None
    while True:
        if broker.launch_failed():
            raise RuntimeError(f"{broker.name} exited while starting:\n{broker.log_tail(20)}")
        now = time.monotonic()
        if md_ok is None and kwire.ready(broker.addr, topics, partitions, timeout_s=2.0):
            md_ok = now
        if md_ok is not None and dirs_grace_s is not None and now - md_ok > dirs_grace_s:
            log(f"{broker.name}: {broker.partition_dirs(topics)} of {n_dirs} partition dirs after {dirs_grace_s} s; "
                "going on")
            want_dirs = False
        if md_ok is not None and (not want_dirs or broker.partition_dirs(topics) >= n_dirs):
            pid = broker.launched_pid()
            cpu = proc_cpu_seconds(pid) if pid else None
            return time.monotonic() - t0, cpu, md_ok - t0
        if now - t0 > timeout_s:
            raise RuntimeError(f"{broker.name}: {len(topics)} topic(s) x {partitions} partitions not ready after "
                               f"{timeout_s:.0f} s (metadata {'ready' if md_ok else 'not ready'}, "
                               f"{broker.partition_dirs(topics)} of {n_dirs} partition dirs)")
        time.sleep(0.02)


# ----------------------------------------------------------------------------------------------
# load generators

PRODUCE_RE = re.compile(
    r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset (-?\d+), (\d+) failed\) in (\d+)ms: "
    r"(\d+) msgs/s and ([\d.]+) MB/s, (\d+) produce failures")
CONSUME_RE = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")
JAVA_PRODUCE_RE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency"
    r"(?:, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th)?")
JAVA_PRODUCE_SETTINGS = ["batch.size=131072", "linger.ms=5"]
RSS_SAMPLE_S = 0.1


class Tools:
    def __init__(self, fjord_bin, want_java):
        self.rdperf = self._path("rdkafka_performance")
        self.topic = self._path("kafka-topic")
        self.fjord = fjord_bin
        self.java = want_java and bool(shutil.which("java")) and kafka_jars_present()

    @staticmethod
    def _path(name):
        if not os.path.exists(KAFKA_TOOLS):
            raise RuntimeError(f"{KAFKA_TOOLS} not found (the shared tools folder must sit beside the repo)")
        r = subprocess.run(["bash", KAFKA_TOOLS, "path", name], stdout=subprocess.PIPE, text=True)
        p = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        if r.returncode != 0 or not os.access(p, os.X_OK):
            raise RuntimeError(f"kafka-tools.sh could not provide {name}")
        return p


def kafka_jars_present():
    return bool(os.environ.get("KAFKA_LIBS")) or os.path.exists(
        os.path.expanduser("~/.cache/fjord-e2e/kafka-4.3.1/libs/kafka_2.13-4.3.1.jar"))


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class RssSampler(threading.Thread):
    """Samples the broker's VmRSS every RSS_SAMPLE_S; `peak` is the highest reading."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(RSS_SAMPLE_S)

    def sample(self):
        try:
            self.peak = max(self.peak, proc_mem_kib(self.pid)[0])
        except OSError:
            pass

    def finish(self):
        self.stop_ev.set()
        self.join(2)
        self.sample()
        return self.peak


class Meter:
    """Broker CPU (utime/stime), the load generators' CPU, both cores' busy share and the broker's peak RSS
    over an interval."""

    def __init__(self, broker):
        self.broker = broker
        self.pid = broker.pid
        self.us0 = proc_cpu_split(self.pid)
        self.cc0 = children_cpu()
        self.ct0 = cpu_times()
        self.t0 = time.monotonic()
        self.sampler = RssSampler(self.pid)
        self.sampler.start()

    def stop(self):
        wall = time.monotonic() - self.t0
        peak = self.sampler.finish()
        ct1 = cpu_times()
        alive = self.broker.alive()
        us1 = proc_cpu_split(self.pid) if alive else self.us0
        out = {"wall_seconds": wall, "broker_cpu_s": sum(us1) - sum(self.us0), "broker_sys_s": us1[1] - self.us0[1],
               "client_cpu_s": children_cpu() - self.cc0, "core_busy": core_busy(self.ct0, ct1),
               "rss_peak_kib": peak}
        if alive:
            out["rss_kib"], out["hwm_kib"] = proc_mem_kib(self.pid)
        else:
            problem(f"{self.broker.name} is no longer running")
            out["rss_kib"] = out["hwm_kib"] = 0
        return out


def run_clients(broker, argvs, label, timeout_s):
    """Runs load-generator processes at once, each pinned to the client CPU, while metering the broker.
    Returns ([(stdout, stderr, returncode)], meter readings)."""
    procs = []
    meter = Meter(broker)
    try:
        for i, argv in enumerate(argvs):
            argv = ["taskset", "-c", CLIENT_CPU] + argv
            if i == 0:
                note_command(argv, label + (f" ({len(argvs)} such processes at once)" if len(argvs) > 1 else ""))
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            procs.append((p, out, err))
            CHILDREN.append(p)
        deadline = time.monotonic() + timeout_s
        for p, _, _ in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problem(f"{label}: load generator still running after {timeout_s:.0f} s, killed")
                for q, _, _ in procs:
                    if q.poll() is None:
                        q.kill()
                for q, _, _ in procs:
                    q.wait()
                break
    finally:
        for p, _, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p in CHILDREN:
                CHILDREN.remove(p)
    m = meter.stop()
    outs = []
    for p, out, err in procs:
        out.seek(0)
        err.seek(0)
        outs.append((out.read().decode(errors="replace"), err.read().decode(errors="replace"), p.returncode))
        out.close()
        err.close()
    return outs, m


def finish(res, m):
    res.update(m)
    secs = max(res["seconds"], 1e-3)
    res["msgs_s"] = res["msgs"] / secs
    res["mb_s"] = res["bytes"] / secs / 1e6
    gb = res["bytes"] / 1e9
    res["cpu_s_per_gb"] = res["broker_cpu_s"] / gb if gb > 0 else None
    # busy fractions over the wall time of the client processes (which includes their start-up)
    res["broker_busy"] = res["broker_cpu_s"] / max(res["wall_seconds"], 1e-3)
    res["client_busy"] = res["client_cpu_s"] / max(res["wall_seconds"], 1e-3)
    return res


def merge_runs(runs):
    """Sums several runs of the same scenario into one result."""
    out = {k: sum(r[k] for r in runs) for k in ("msgs", "bytes", "seconds", "wall_seconds", "broker_cpu_s",
                                                  "broker_sys_s", "client_cpu_s")}
    out["runs"] = len(runs)
    walls = [r["wall_seconds"] for r in runs]
    out["core_busy"] = {c: sum(r["core_busy"].get(c, 0) * w for r, w in zip(runs, walls)) / max(sum(walls), 1e-3)
                        for c in (BROKER_CPU, CLIENT_CPU)}
    out["rss_kib"] = runs[-1]["rss_kib"]
    out["hwm_kib"] = max(r["hwm_kib"] for r in runs)
    out["rss_peak_kib"] = max(r["rss_peak_kib"] for r in runs)
    for k in ("gen", "latency"):
        if k in runs[-1]:
            out[k] = runs[-1][k]
    return finish(out, {})


def create_topic(tools, broker, topic, partitions):
    argv = [tools.topic, "-b", broker.addr, "create", topic, str(partitions), "1"]
    note_command(argv, f"{broker.name}: create topic ({partitions} partition{'s' if partitions > 1 else ''}, RF 1)")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{broker.name}: creating topic {topic} failed: {r.stderr.strip()}")
    # every partition led and its log created before the load starts (Kafka creates topics asynchronously)
    wait_ready(broker, [topic], partitions, 120, dirs_grace_s=20)


def delete_topic(tools, broker, topic):
    argv = [tools.topic, "-b", broker.addr, "delete", topic]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        log(f"{broker.name}: deleting topic {topic} failed (ignored): {r.stderr.strip()}")


def acks_name(acks):
    return "all" if acks == "-1" else acks


# --- rdkafka_performance


def produce_rdkafka(tools, broker, topic, size, acks, count, producers, label, timeout_s, strict=True):
    per = [count // producers + (1 if i < count % producers else 0) for i in range(producers)]
    argvs = [[tools.rdperf, "-P", "-t", topic, "-b", broker.addr, "-s", str(size), "-c", str(n), "-a", acks,
              "-X", "compression.codec=none"] for n in per]
    outs, m = run_clients(broker, argvs, label, timeout_s)
    msgs = delivered = failed = 0
    ms = 0
    for out, err, rc in outs:
        mt = None
        for mt in PRODUCE_RE.finditer(out):
            pass
        if rc != 0 or mt is None:
            raise RuntimeError(f"{broker.name} {label}: rdkafka_performance failed (rc {rc}):\n{excerpt(out)}\n{excerpt(err)}")
        msgs += int(mt.group(1))
        delivered += int(mt.group(3))
        failed += int(mt.group(5))
        ms = max(ms, int(mt.group(6)))
        errs = [ln for ln in err.splitlines() if "ERROR" in ln or "FAIL" in ln or "Error" in ln]
        if errs and strict:
            problem(f"{broker.name} {label}: client reported {len(errs)} error lines, e.g. {errs[0][:300]}")
    if failed or delivered != msgs:
        problem(f"{broker.name} {label}: {failed} of {msgs} messages failed, {delivered} delivered")
    res = {"gen": "rdkafka", "msgs": delivered, "bytes": delivered * size, "seconds": ms / 1000.0,
           "failed": failed, "attempted": msgs}
    return finish(res, m)


def consume_rdkafka(tools, broker, topic, partitions, count, label, timeout_s):
    argv = [tools.rdperf, "-C", "-t", topic, "-b", broker.addr, "-o", "beginning", "-c", str(count), "-e"]
    for p in range(partitions):
        argv += ["-p", str(p)]
    [(out, err, rc)], m = run_clients(broker, [argv], label, timeout_s)
    mt = None
    for mt in CONSUME_RE.finditer(out):
        pass
    if rc != 0 or mt is None:
        raise RuntimeError(f"{broker.name} {label}: rdkafka_performance failed (rc {rc}):\n{excerpt(out)}\n{excerpt(err)}")
    cerrs = [ln for ln in out.splitlines() if ln.startswith("% Consume error")]
    if cerrs:
        problem(f"{broker.name} {label}: {len(cerrs)} consume errors, e.g. {cerrs[0][:300]}")
    msgs, nbytes, ms = int(mt.group(1)), int(mt.group(2)), int(mt.group(3))
    if msgs != count:
        problem(f"{broker.name} {label}: consumed {msgs} of {count} messages (stderr: {err.strip()[-300:]})")
    return finish({"gen": "rdkafka", "msgs": msgs, "bytes": nbytes, "seconds": ms / 1000.0}, m)


# --- fjord bench


def fjord_bench_json(broker, label, out, err, rc):
    line = None
    for ln in out.splitlines():
        if ln.startswith("{"):
            line = ln
    if rc != 0 or line is None:
        raise RuntimeError(f"{label}: fjord bench failed (rc {rc}):\n{excerpt(out)}\n{excerpt(err)}")
    return json.loads(line)


def latency_of(j):
    lat = j.get("latency") or {}
    if not lat.get("samples"):
        return None
    return {"kind": lat.get("kind"), "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"),
            "p999_ms": lat.get("p999_ms"), "max_ms": lat.get("max_ms"), "mean_ms": lat.get("mean_ms"),
            "samples": lat.get("samples")}


def produce_fjord(tools, broker, topic, size, acks, partitions, producers, seconds, label, timeout_s=None,
                  count=None):
    argv = [tools.fjord, "bench", "produce", "--bootstrap", broker.addr, "--topic", topic, "--partitions",
            str(partitions), "--replication-factor", "1", "--record-size", str(size), "--acks", acks_name(acks),
            "--producers", str(producers), "--json", "--quiet"]
    argv += ["--count", str(count)] if count else ["--duration", f"{seconds:g}"]
    [(out, err, rc)], m = run_clients(broker, [argv], label, timeout_s or (60 + 4 * (seconds or 60)))
    j = fjord_bench_json(broker, label, out, err, rc)
    res = {"gen": "fjord", "msgs": j["records"], "bytes": j["bytes"], "seconds": j["elapsed_s"],
           "latency": latency_of(j)}
    return finish(res, m)


def consume_fjord(tools, broker, topic, count, label, timeout_s):
    argv = [tools.fjord, "bench", "consume", "--bootstrap", broker.addr, "--topic", topic, "--count", str(count),
            "--json", "--quiet"]
    [(out, err, rc)], m = run_clients(broker, [argv], label, timeout_s)
    j = fjord_bench_json(broker, label, out, err, rc)
    if j["records"] != count:
        problem(f"{broker.name} {label}: consumed {j['records']} of {count} records")
    return finish({"gen": "fjord", "msgs": j["records"], "bytes": j["bytes"], "seconds": j["elapsed_s"]}, m)


def e2e_fjord(tools, broker, topics, size, acks, partitions, total_rate, seconds, label):
    """`fjord bench e2e` on each topic at once (total_rate records/s split evenly; None: unlimited).
    Latency percentiles are the worst over the topics (one process per topic)."""
    argvs = []
    for t in topics:
        argv = [tools.fjord, "bench", "e2e", "--bootstrap", broker.addr, "--topic", t, "--partitions",
                str(partitions), "--replication-factor", "1", "--record-size", str(size), "--acks",
                acks_name(acks), "--duration", f"{seconds:g}", "--json", "--quiet"]
        # without --rate, e2e runs at a modest default rate: the peak is a rate no broker reaches
        argv += ["--rate", f"{total_rate / len(topics):.1f}" if total_rate else "1000000000"]
        argvs.append(argv)
    outs, m = run_clients(broker, argvs, label, 120 + 4 * seconds)
    js = [fjord_bench_json(broker, label, out, err, rc) for out, err, rc in outs]
    secs = max(j["elapsed_s"] for j in js)
    lats = [latency_of(j) for j in js]
    lat = None
    if all(lats):
        lat = {k: max(x[k] for x in lats) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
        lat["samples"] = sum(x["samples"] for x in lats)
        lat["kind"] = lats[0]["kind"] + (f" (worst of {len(lats)} topics)" if len(lats) > 1 else "")
    res = {"gen": "fjord", "msgs": sum(j["records"] for j in js), "bytes": sum(j["bytes"] for j in js),
           "seconds": secs, "latency": lat,
           "offered_mb_s": total_rate * size / 1e6 if total_rate else None}
    return finish(res, m)


# --- Kafka's perf tools (kafka-producer-perf-test / kafka-consumer-perf-test)


def produce_java(tools, broker, topic, size, acks, count, label, timeout_s):
    argv = ["bash", KAFKA_SH, "java", "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
            "--num-records", str(count), "--record-size", str(size), "--throughput", "-1",
            "--producer-props", f"bootstrap.servers={broker.addr}", f"acks={acks}"] + JAVA_PRODUCE_SETTINGS
    [(out, err, rc)], m = run_clients(broker, [argv], label, timeout_s)
    mt = None
    for mt in JAVA_PRODUCE_RE.finditer(out):
        pass
    if rc != 0 or mt is None:
        raise RuntimeError(f"{broker.name} {label}: kafka-producer-perf-test failed (rc {rc}):\n{excerpt(out)}\n{excerpt(err)}")
    n, rate = int(mt.group(1)), float(mt.group(2))
    if n != count:
        problem(f"{broker.name} {label}: {n} of {count} records sent")
    lat = None
    if mt.group(6):
        lat = {"kind": "send to acknowledgement, per record", "p50_ms": float(mt.group(6)),
               "p99_ms": float(mt.group(8)), "p999_ms": float(mt.group(9)), "max_ms": float(mt.group(5))}
    res = {"gen": "java", "msgs": n, "bytes": n * size, "seconds": n / rate if rate > 0 else 0.0, "latency": lat}
    return finish(res, m)


def consume_java(tools, broker, topic, size, count, label, timeout_s, group):
    argv = ["bash", KAFKA_SH, "java", "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
            broker.addr, "--topic", topic, "--num-records", str(count), "--group", group, "--timeout", "30000"]
    [(out, err, rc)], m = run_clients(broker, [argv], label, timeout_s)
    row = None
    for ln in out.splitlines():
        parts = [p.strip() for p in ln.split(",")]
        if len(parts) >= 10 and re.match(r"^\d+$", parts[4] or ""):
            row = parts
    if rc != 0 or row is None:
        raise RuntimeError(f"{broker.name} {label}: kafka-consumer-perf-test failed (rc {rc}):\n{excerpt(out)}\n{excerpt(err)}")
    n, fetch_ms = int(row[4]), float(row[7])
    if n < count:
        problem(f"{broker.name} {label}: consumed {n} of {count} records")
    return finish({"gen": "java", "msgs": n, "bytes": n * size, "seconds": fetch_ms / 1000.0,
                   "rebalance_ms": float(row[6])}, m)


# ----------------------------------------------------------------------------------------------
# scenarios

GEN_NAMES = {"rdkafka": "rdkafka_performance", "java": "kafka-*-perf-test", "fjord": "fjord bench"}
E2E_FRACTIONS = "0.1,0.25,0.5,0.8"
GROUPS = ("produce", "consume", "java", "fjordgen", "e2e", "many", "restart", "retained")


def size_tag(size):
    return f"{size // 1024}KiB" if size % 1024 == 0 else f"{size}B"


def size_name(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def sc_produce(gen, size, acks, partitions, producers, group):
    return {"id": f"produce-{gen}-{size_tag(size)}-acks{acks_name(acks)}-p{partitions}-x{producers}",
            "kind": "produce", "gen": gen, "size": size, "acks": acks, "partitions": partitions,
            "producers": producers, "group": group,
            "title": f"produce {size_name(size)}, acks={acks_name(acks)}, {partitions} partition"
                     f"{'s' if partitions > 1 else ''}, {producers} producer{'s' if producers > 1 else ''}"}


def sc_consume(gen, src, group):
    return {"id": f"consume-{gen}-{size_tag(src['size'])}-p{src['partitions']}", "kind": "consume", "gen": gen,
            "size": src["size"], "acks": None, "partitions": src["partitions"], "producers": None,
            "source": src["id"], "group": group,
            "title": f"consume {size_name(src['size'])}, {src['partitions']} partition"
                     f"{'s' if src['partitions'] > 1 else ''} (page cache)"}


def main_scenarios(cfg):
    """The throughput rows of the main session, in run order."""
    groups = cfg["groups"]
    out = []
    for parts in cfg["partitions"]:
        for size in cfg["sizes"]:
            src = None
            for acks in cfg["acks"]:
                for prod in cfg["producers"]:
                    if "produce" in groups or ("consume" in groups and acks == "1" and prod == 1):
                        sc = sc_produce("rdkafka", size, acks, parts, prod, "produce")
                        out.append(sc)
                        if acks == "1" and prod == 1:
                            src = sc
            if "consume" in groups and src is not None:
                out.append(sc_consume("rdkafka", src, "consume"))
    mid = 16 if 16 in cfg["partitions"] else cfg["partitions"][0]
    if "java" in groups:
        src = sc_produce("java", 1024, "1", mid, 1, "java")
        out += [src, sc_consume("java", src, "java"), sc_produce("java", 1024, "-1", mid, 1, "java")]
    if "fjordgen" in groups:
        src = sc_produce("fjord", 1024, "1", mid, 1, "fjordgen")
        out += [src, sc_consume("fjord", src, "fjordgen"), sc_produce("fjord", 1024, "-1", mid, 8, "fjordgen"),
                sc_produce("fjord", 100, "1", mid, 8, "fjordgen")]
    return out


def e2e_points(cfg):
    pts = [{"id": "e2e-peak", "kind": "peak", "title": "unthrottled (the peak)"}]
    for f in cfg["e2e_fractions"]:
        pts.append({"id": f"e2e-{int(round(f * 100))}pct", "kind": "fraction", "fraction": f,
                    "title": f"{f * 100:.0f}% of peak"})
    if cfg["e2e_fixed_mb_s"]:
        pts.append({"id": f"e2e-fixed{cfg['e2e_fixed_mb_s']:g}", "kind": "fixed", "mb_s": cfg["e2e_fixed_mb_s"],
                    "title": f"fixed {cfg['e2e_fixed_mb_s']:g} MB/s"})
    return pts


def best_of(rounds):
    """Per scenario, the round with the highest throughput (results without one: the first round); keeps
    every round's MB/s for the report."""
    out = dict(rounds[0]) if rounds else {}
    keys = set()
    for r in rounds:
        keys.update(k for k in r if not k.startswith("_"))
    for k in keys:
        rs = [r[k] for r in rounds if k in r and isinstance(r[k], dict)]
        if not rs:
            continue
        if all("mb_s" in x for x in rs):
            best = dict(max(rs, key=lambda x: x["mb_s"]))
            best["mb_s_rounds"] = [x["mb_s"] for x in rs]
        else:
            best = rs[0]
        out[k] = best
    hwm = [r.get("_final_hwm_kib") or 0 for r in rounds]
    out["_final_hwm_kib"] = max(hwm) if hwm else None
    return out


def disk_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def clip_count(n, size, cfg, root, broker, sid):
    n = max(cfg["min_msgs"], min(cfg["max_msgs"], int(cfg["max_bytes"] / size), n))
    free = disk_free(root)
    if n * size * 1.3 > free - (6 << 30):
        n = max(cfg["min_msgs"] // 4, int((free - (6 << 30)) / size / 1.3))
        problem(f"{broker.name} {sid}: disk space limits the run to {n} messages")
    return n


def measure_counted(run, sc, cfg, root, broker, first_rate):
    """A count-based produce generator: a probe run sizes the measured run to last target_seconds; a run
    that ends too early is measured once more. Returns (result, records written)."""
    sid = sc["id"]
    probe_n = max(cfg["min_msgs"] // 2, int(first_rate * cfg["probe_seconds"]))
    probe_n = clip_count(probe_n, sc["size"], cfg, root, broker, sid)
    probe = run(probe_n, f"{broker.name} {sid}: probe run (sizes the measured run)", 60 + probe_n / 2000, False)
    # the probe tends to underestimate (a cold topic, a short run): aim 30% past the target
    n = clip_count(int(probe["msgs_s"] * cfg["target_seconds"] * 1.3), sc["size"], cfg, root, broker, sid)
    log(f"{broker.name} {sid}: probe {probe['msgs_s']:,.0f} msgs/s; measuring {n:,} messages")
    # start every measured run with no dirty pages left over from earlier runs
    os.sync()
    res = run(n, f"{broker.name}: measured {sc['title']}", 60 + 5 * n / max(probe["msgs_s"], 1000), True)
    written = probe_n + n
    short = cfg["target_seconds"] * (0.9 if cfg["mode"] == "full" else 0.75)
    if res["seconds"] < short and n < cfg["max_msgs"] and n * sc["size"] < cfg["max_bytes"]:
        # too short to mean much: once more, sized from the rate just measured
        n2 = clip_count(int(res["msgs_s"] * cfg["target_seconds"] * 1.25), sc["size"], cfg, root, broker, sid)
        log(f"{broker.name} {sid}: only {res['seconds']:.1f} s measured; measuring again with {n2:,} messages")
        os.sync()
        res = run(n2, f"{broker.name}: measured again {sc['title']}", 60 + 5 * n2 / max(res["msgs_s"], 1000), True)
        written += n2
    res["probe_msgs_s"] = probe["msgs_s"]
    return res, written


def run_produce(sc, tools, broker, cfg, root, warm_rate, topic):
    gen = sc["gen"]
    if gen == "fjord":
        os.sync()
        res = produce_fjord(tools, broker, topic, sc["size"], sc["acks"], sc["partitions"], sc["producers"],
                            cfg["target_seconds"], f"{broker.name}: measured {sc['title']}")
        return res, res["msgs"]
    if gen == "rdkafka":
        def run(n, label, timeout_s, strict):
            return produce_rdkafka(tools, broker, topic, sc["size"], sc["acks"], n, sc["producers"], label,
                                   timeout_s, strict)
    else:
        def run(n, label, timeout_s, strict):
            return produce_java(tools, broker, topic, sc["size"], sc["acks"], n, label, timeout_s)
    # the warm-up ran 1 KiB records; smaller records go at more records per second
    first = warm_rate * (1024 / sc["size"]) ** 0.5
    return measure_counted(run, sc, cfg, root, broker, first)


def run_consume(sc, tools, broker, cfg, topic, total):
    os.sync()
    runs = []
    t_spent = 0.0
    n_run = 0
    while True:
        n_run += 1
        label = f"{broker.name}: measured {sc['title']}"
        timeout_s = 120 + total / 5000
        if sc["gen"] == "rdkafka":
            r = consume_rdkafka(tools, broker, topic, sc["partitions"], total, label, timeout_s)
        elif sc["gen"] == "fjord":
            r = consume_fjord(tools, broker, topic, total, label, timeout_s)
        else:
            r = consume_java(tools, broker, topic, sc["size"], total, label, timeout_s,
                             group=f"bench-perf-{int(time.time())}-{n_run}")
        runs.append(r)
        t_spent += r["seconds"]
        if t_spent >= cfg["target_seconds"] or len(runs) >= cfg["max_consume_runs"]:
            break
    return merge_runs(runs)


def log_result(broker, sid, res):
    log(f"{broker.name} {sid}: {res['msgs_s']:,.0f} msgs/s, {res['mb_s']:.1f} MB/s, {res['seconds']:.1f} s, "
        f"broker {fmt_opt(res['cpu_s_per_gb'], 2)} CPU-s/GB, RSS peak {res['rss_peak_kib'] / 1024:.0f} MiB; "
        f"broker {res['broker_busy'] * 100:.0f}% / client {res['client_busy'] * 100:.0f}% of a core"
        + (f"; latency p50 {res['latency']['p50_ms']:.2f} p99 {res['latency']['p99_ms']:.2f} ms"
           if res.get("latency") else ""))


def fmt_opt(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


def warm_up(tools, broker, cfg):
    """A short acks=1 produce run (JIT for the JVM, page cache and allocator for both). Returns records/s."""
    create_topic(tools, broker, "bench-warmup", 1)
    n = cfg["warmup_msgs"]
    warm = produce_rdkafka(tools, broker, "bench-warmup", 1024, "1", n, 1, f"{broker.name}: warm-up produce",
                           timeout_s=60 + n / 5000, strict=False)
    log(f"{broker.name} warm-up: {warm['msgs_s']:,.0f} msgs/s ({warm['mb_s']:.0f} MB/s)")
    delete_topic(tools, broker, "bench-warmup")
    return warm["msgs_s"]


def session_main(broker, tools, cfg, root, results):
    warm_rate = warm_up(tools, broker, cfg)
    scenarios = main_scenarios(cfg)
    needed = {sc["source"] for sc in scenarios if sc["kind"] == "consume"}
    kept = {}
    for sc in scenarios:
        sid = sc["id"]
        if not broker.alive():
            problem(f"{broker.name} died before scenario {sid}:\n{broker.log_tail(15)}")
            return
        if sc["gen"] == "java" and not tools.java:
            continue
        try:
            if sc["kind"] == "produce":
                topic = f"bench-{sid}"
                create_topic(tools, broker, topic, sc["partitions"])
                res, written = run_produce(sc, tools, broker, cfg, root, warm_rate, topic)
                if sid in needed:
                    kept[sid] = (topic, written)
                else:
                    delete_topic(tools, broker, topic)
            else:
                src = kept.pop(sc["source"], None)
                if src is None:
                    problem(f"{broker.name} {sid}: no data to consume (scenario {sc['source']} failed)")
                    continue
                topic, total = src
                try:
                    res = run_consume(sc, tools, broker, cfg, topic, total)
                finally:
                    delete_topic(tools, broker, topic)
            res["durability"] = broker.durability(sc["acks"])
            log_result(broker, sid, res)
            results[sid] = res
        except RuntimeError as e:
            problem(f"{broker.name} {sid}: {e}")
    for topic, _ in kept.values():
        delete_topic(tools, broker, topic)
    if "e2e" in cfg["groups"]:
        session_e2e(broker, tools, cfg, results)


def session_e2e(broker, tools, cfg, results):
    size, acks, parts, secs = cfg["e2e_size"], cfg["e2e_acks"], cfg["e2e_partitions"], cfg["target_seconds"]
    peak = None
    for i, pt in enumerate(e2e_points(cfg)):
        topic = f"bench-e2e-{i}"
        try:
            create_topic(tools, broker, topic, parts)
            if pt["kind"] == "peak":
                rate = None
            elif pt["kind"] == "fraction":
                if not peak:
                    problem(f"{broker.name} {pt['id']}: no peak measured")
                    continue
                rate = peak * pt["fraction"]
            else:
                rate = pt["mb_s"] * 1e6 / size
            os.sync()
            res = e2e_fjord(tools, broker, [topic], size, acks, parts, rate, secs,
                            f"{broker.name}: end-to-end latency, {pt['title']}")
            if pt["kind"] == "peak":
                peak = res["msgs_s"]
            res["durability"] = broker.durability(acks)
            res["point"] = pt
            log_result(broker, pt["id"], res)
            results[pt["id"]] = res
        except RuntimeError as e:
            problem(f"{broker.name} {pt['id']}: {e}")
        finally:
            delete_topic(tools, broker, topic)


def session_many(broker, tools, cfg, results):
    n_topics = cfg["many_topics"]
    per = cfg["many_partitions"] // n_topics
    topics = [f"bench-many-{i}" for i in range(n_topics)]
    idle0 = proc_mem_kib(broker.pid)[0]
    cpu0 = proc_cpu_seconds(broker.pid)
    t0 = time.monotonic()
    create_s = []
    for t in topics:
        t1 = time.monotonic()
        note_command(["(CreateTopics v2 request)", t, f"partitions={per}", "replication_factor=1"],
                     f"{broker.name}: create topic ({per} partitions, RF 1) from the harness (scripts/bench/kwire.py)")
        r = kwire.create_topics(broker.addr, {t: per}, timeout_ms=900_000)
        err, msg = r.get(t, (-1, "no answer"))
        if err != 0:
            raise RuntimeError(f"{broker.name}: creating {t} ({per} partitions) failed: error {err} {msg}")
        create_s.append(time.monotonic() - t1)
    answered_s = time.monotonic() - t0
    ready_s, _, md_s = wait_ready(broker, topics, per, 1800, t0=t0, dirs_grace_s=300)
    cpu_create = proc_cpu_seconds(broker.pid) - cpu0
    idle1 = proc_mem_kib(broker.pid)[0]
    log(f"{broker.name}: {n_topics * per:,} partitions: CreateTopics answered after {answered_s:.1f} s, every "
        f"partition led after {md_s:.1f} s and on disk after {ready_s:.1f} s; RSS {idle0 / 1024:.0f} -> "
        f"{idle1 / 1024:.0f} MiB")
    rate = cfg["many_rate"] * n_topics * per
    os.sync()
    res = e2e_fjord(tools, broker, topics, cfg["many_size"], cfg["many_acks"], per, rate, cfg["target_seconds"],
                    f"{broker.name}: light load on {n_topics * per:,} partitions")
    res.update({"partitions": n_topics * per, "topics": n_topics, "create_answered_s": answered_s,
                "create_each_s": create_s, "leaders_s": md_s, "ready_s": ready_s, "create_cpu_s": cpu_create,
                "rss_before_kib": idle0, "rss_after_create_kib": idle1, "durability": broker.durability(cfg["many_acks"])})
    log_result(broker, "many", res)
    results["many"] = res


def fill(tools, broker, topic, partitions, nbytes, label):
    """Writes nbytes of 1 KiB records with `fjord bench produce` (acks=1, 2 producers)."""
    count = max(1, int(nbytes / 1024))
    res = produce_fjord(tools, broker, topic, 1024, "1", partitions, 2, None, label, timeout_s=120 + nbytes / 20e6,
                        count=count)
    log(f"{broker.name}: {label}: {res['bytes'] / 2**30:.2f} GiB at {res['mb_s']:.0f} MB/s")
    return res


def restart_timed(broker, kill, topics, partitions):
    t0 = time.monotonic()
    if kill:
        broker.kill9()
    else:
        broker.stop()
    down_s = time.monotonic() - t0
    # the restart must not pay for write-back of the pages the load left dirty
    os.sync()
    t1 = time.monotonic()
    broker.launch()
    ready_s, cpu, md_s = wait_ready(broker, topics, partitions, 1800, t0=t1, want_dirs=False)
    broker.finish_launch(1800)
    rss = proc_mem_kib(broker.pid)[0] if broker.alive() else 0
    return {"down_s": down_s, "ready_s": ready_s, "cpu_s": cpu, "rss_kib": rss}


def wait_deleted(broker, topic, timeout_s):
    """Waits until no directory of a deleted topic is left (Kafka renames them and deletes them later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            left = [e for e in os.listdir(broker.data) if e.startswith(topic + "-")]
        except OSError:
            return
        if not left:
            return
        time.sleep(0.2)
    log(f"{broker.name}: {topic} still has directories {timeout_s} s after its deletion; going on")


def dir_bytes(path):
    total = 0
    for dp, _, fs in os.walk(path):
        for f in fs:
            try:
                total += os.lstat(os.path.join(dp, f)).st_blocks * 512
            except OSError:
                pass
    return total


def session_stored(broker, tools, cfg, root, results):
    groups = cfg["groups"]
    warm_rate = warm_up(tools, broker, cfg)
    parts = cfg["retained_partitions"]
    ret_sc = sc_produce("rdkafka", 1024, "1", parts, 1, "retained")
    limit = cfg["max_bytes"]
    cfg_ret = dict(cfg, max_bytes=min(limit, cfg["retained_measure_bytes"]))
    if "retained" in groups:
        topic = "bench-retained-empty"
        create_topic(tools, broker, topic, parts)
        res, _ = run_produce(dict(ret_sc, id="retained-empty"), tools, broker, cfg_ret, root, warm_rate, topic)
        res["stored_bytes"] = dir_bytes(broker.data)
        delete_topic(tools, broker, topic)
        res["durability"] = broker.durability("1")
        log_result(broker, "retained-empty", res)
        results["retained-empty"] = res
        wait_deleted(broker, topic, 120)
    stored_topic = "bench-stored"
    fill_parts = cfg["fill_partitions"]
    create_topic(tools, broker, stored_topic, fill_parts)
    stored = 0
    if "restart" in groups:
        want = int(cfg["restart_gib"] * 2**30)
        if want > disk_free(root) - (8 << 30):
            want = max(1 << 20, disk_free(root) - (8 << 30))
            problem(f"{broker.name}: disk space limits the restart scenario to {want / 2**30:.1f} GiB")
        r = fill(tools, broker, stored_topic, fill_parts, want, f"fill to {cfg['restart_gib']:g} GiB")
        stored += r["bytes"]
        results["fill-restart"] = r
        on_disk = dir_bytes(broker.data)
        for kill, sid in ((True, "restart-kill9"), (False, "restart-clean")):
            try:
                rr = restart_timed(broker, kill, [stored_topic], fill_parts)
                rr["stored_bytes"] = on_disk
                log(f"{broker.name} {sid}: {'kill -9' if kill else 'SIGTERM'} took {rr['down_s']:.2f} s; serving "
                    f"every partition {rr['ready_s']:.2f} s after exec ({fmt_opt(rr['cpu_s'], 2)} CPU-s, RSS "
                    f"{rr['rss_kib'] / 1024:.0f} MiB) with {on_disk / 2**30:.1f} GiB stored")
                results[sid] = rr
            except RuntimeError as e:
                problem(f"{broker.name} {sid}: {e}")
                return
    if "retained" in groups:
        want = int(cfg["retained_gib"] * 2**30) - stored
        if want > 0:
            room = disk_free(root) - (int(cfg_ret["max_bytes"] * 1.3) + (6 << 30))
            if want > room:
                want = max(1 << 20, room)
                problem(f"{broker.name}: disk space limits the retained scenario to {(stored + want) / 2**30:.1f} GiB")
            r = fill(tools, broker, stored_topic, fill_parts, want, f"fill to {cfg['retained_gib']:g} GiB")
            results["fill-retained"] = r
        on_disk = dir_bytes(broker.data)
        topic = "bench-retained-full"
        create_topic(tools, broker, topic, parts)
        res, _ = run_produce(dict(ret_sc, id="retained-full"), tools, broker, cfg_ret, root, warm_rate, topic)
        res["stored_bytes"] = on_disk
        res["durability"] = broker.durability("1")
        log_result(broker, "retained-full", res)
        results["retained-full"] = res


def run_sessions(make_broker, tools, cfg, root, keep):
    """Runs every selected session against one broker type. Returns {scenario id: result} plus meta keys."""
    results = {}
    sessions = []
    if set(cfg["groups"]) & {"produce", "consume", "java", "fjordgen", "e2e"}:
        sessions.append("main")
    if "many" in cfg["groups"]:
        sessions.append("many")
    if set(cfg["groups"]) & {"restart", "retained"}:
        sessions.append("stored")
    hwm = 0
    for s in sessions:
        broker = make_broker(s)
        log(f"=== {broker.name}: {s} session ===")
        load = loadavg()
        try:
            broker.start()
            if s == "main" or "_start_seconds" not in results:
                results["_start_seconds"] = broker.start_seconds
                results["_load_at_start"] = load
                results["_idle_rss_kib"] = proc_mem_kib(broker.pid)[0]
            if s == "main":
                session_main(broker, tools, cfg, root, results)
            elif s == "many":
                session_many(broker, tools, cfg, results)
            else:
                session_stored(broker, tools, cfg, root, results)
            if broker.alive():
                hwm = max(hwm, proc_mem_kib(broker.pid)[1])
            for line in broker.errors_in_log()[:20]:
                problem(f"{broker.name} log ({s} session): {line[:300]}", fatal=False)
        except (RuntimeError, OSError, kwire.WireError) as e:
            problem(f"{broker.name} {s} session: {e}")
        finally:
            if s == "many":
                # stopping a broker with 10,000 partitions cleanly takes minutes for Kafka; not measured
                broker.kill9()
            else:
                broker.stop()
            if broker.stop in CLEANUPS:
                CLEANUPS.remove(broker.stop)
            if keep:
                log(f"keeping {broker.dir}")
            else:
                shutil.rmtree(broker.dir, ignore_errors=True)
    results["_final_hwm_kib"] = hwm or None
    return results


# ----------------------------------------------------------------------------------------------
# main


def build_config(args):
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    groups = [g.strip() for g in (args.scenarios or ",".join(GROUPS)).split(",") if g.strip()]
    for g in groups:
        if g not in GROUPS:
            sys.exit(f"unknown scenario group {g!r} (known: {', '.join(GROUPS)})")
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    floats = lambda s: [float(x) for x in s.split(",") if x.strip()]  # noqa: E731
    acks = [{"all": "-1", "-1": "-1", "1": "1"}[a.strip()] for a in args.acks.split(",") if a.strip()]
    scale = {
        "full": dict(target_seconds=10.0, probe_seconds=1.5, warmup_msgs=1_500_000, min_msgs=300_000,
                     max_msgs=60_000_000, max_bytes=8e9, max_consume_runs=4, restart_gib=10.0, retained_gib=20.0,
                     retained_measure_bytes=4e9, many_partitions=10_000, many_topics=10),
        "quick": dict(target_seconds=3.0, probe_seconds=1.0, warmup_msgs=200_000, min_msgs=100_000,
                      max_msgs=20_000_000, max_bytes=2e9, max_consume_runs=2, restart_gib=1.0, retained_gib=2.0,
                      retained_measure_bytes=1e9, many_partitions=2_000, many_topics=2),
        "smoke": dict(target_seconds=1.5, probe_seconds=0.5, warmup_msgs=50_000, min_msgs=20_000,
                      max_msgs=5_000_000, max_bytes=5e8, max_consume_runs=1, restart_gib=0.05, retained_gib=0.1,
                      retained_measure_bytes=2e8, many_partitions=200, many_topics=2),
    }[mode]
    cfg = dict(scale)
    cfg.update({
        "mode": mode, "quick": mode != "full", "groups": groups,
        "sizes": ints(args.sizes or ("1024,100" if mode != "smoke" else "1024")),
        "acks": acks,
        "partitions": ints(args.partitions or ("1,16,256" if mode != "smoke" else "1")),
        "producers": ints(args.producers or ("1,8" if mode != "smoke" else "1")),
        "e2e_fractions": floats(args.e2e_fractions), "e2e_fixed_mb_s": args.e2e_fixed_mb_s,
        "e2e_partitions": args.e2e_partitions, "e2e_size": 1024, "e2e_acks": "-1",
        "many_rate": args.many_rate, "many_size": 1024, "many_acks": "-1",
        "retained_partitions": 16, "fill_partitions": 8,
        "fjord_set": args.fjord_set, "kafka_set": args.kafka_set, "rounds": args.rounds,
    })
    for k in ("seconds", "restart_gib", "retained_gib", "many_partitions", "many_topics"):
        v = getattr(args, k)
        if v is not None:
            cfg["target_seconds" if k == "seconds" else k] = v
    if mode == "smoke" and args.e2e_fixed_mb_s == 50.0:
        cfg["e2e_fixed_mb_s"] = 5.0
    if mode == "smoke" and args.e2e_fractions == E2E_FRACTIONS:
        cfg["e2e_fractions"] = [0.5]
    if cfg["many_partitions"] % cfg["many_topics"]:
        sys.exit("--many-partitions must be a multiple of --many-topics")
    cfg["scenarios"] = main_scenarios(cfg)
    cfg["e2e_points"] = e2e_points(cfg) if "e2e" in groups else []
    return cfg


def main():
    ap = argparse.ArgumentParser(description="Fjord vs Apache Kafka 4.3.1, side by side on this machine.")
    m = ap.add_mutually_exclusive_group()
    m.add_argument("--quick", action="store_true", help="both brokers, every scenario at small scale")
    m.add_argument("--smoke", action="store_true",
                   help="CI check: Fjord only, a second or two of load per generator and scenario; non-zero exit "
                        "on any failure")
    ap.add_argument("--broker", choices=("fjord", "kafka", "both"), default=None,
                    help="default both (--smoke: fjord)")
    ap.add_argument("--scenarios", default=None,
                    help=f"comma-separated groups to run (default all): {', '.join(GROUPS)}")
    ap.add_argument("--out", default=None,
                    help="report file (default: BENCHMARKS.md; --quick: scripts/bench/results/quick.md; --smoke: "
                         "scripts/bench/results/smoke.md)")
    ap.add_argument("--sizes", default=None, help="record sizes of the produce matrix (default 1024,100)")
    ap.add_argument("--acks", default="1,all", help="acks of the produce matrix (default 1,all)")
    ap.add_argument("--partitions", default=None, help="partition counts of the produce matrix (default 1,16,256)")
    ap.add_argument("--producers", default=None, help="producer counts of the produce matrix (default 1,8)")
    ap.add_argument("--seconds", type=float, help="target seconds per measured run (default 10, quick 3, smoke 1.5)")
    ap.add_argument("--e2e-fractions", default=E2E_FRACTIONS,
                    help="end-to-end latency points as fractions of each broker's peak (default 0.1,0.25,0.5,0.8)")
    ap.add_argument("--e2e-fixed-mb-s", type=float, default=50.0, help="fixed-rate latency point, MB/s (default 50)")
    ap.add_argument("--e2e-partitions", type=int, default=16, help="partitions of the latency topic (default 16)")
    ap.add_argument("--many-partitions", type=int, help="partitions of the many-partitions scenario (default 10000)")
    ap.add_argument("--many-topics", type=int, help="topics they are spread over (default 10; Kafka refuses "
                                                    "to create more than ~10,000 records in one request)")
    ap.add_argument("--many-rate", type=float, default=2.0,
                    help="records/s per partition in the many-partitions scenario (default 2)")
    ap.add_argument("--restart-gib", type=float, help="GiB stored for the restart scenario (default 10)")
    ap.add_argument("--retained-gib", type=float, help="GiB retained for the retained scenario (default 20)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run everything N times, alternating which broker goes first; report each scenario's "
                         "best round (default 1)")
    ap.add_argument("--fjord-bin", default=os.path.join(REPO, "target", "release", "fjord"))
    ap.add_argument("--work-dir", default=None,
                    help="parent of the temporary data dirs (default: $TMPDIR or /tmp); the disk test runs there too")
    ap.add_argument("--fjord-direct", action="store_true",
                    help=f"also run Fjord with --set {DIRECT_SET} (direct writes and the batch cache) as a broker of "
                         f"its own, \"{DIRECT_LABEL}\"")
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
    cfg = build_config(args)
    mode = cfg["mode"]
    invocation = "python3 scripts/bench/side_by_side.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    broker_choice = args.broker or ("fjord" if mode == "smoke" else "both")
    want = ["fjord", "kafka"] if broker_choice == "both" else [broker_choice]
    if args.fjord_direct:
        # Fjord's direct write path (log.direct.io=auto, with its batch cache) as a broker of its own, run next to
        # the default (buffered) Fjord, in the same alternating order
        want.insert(1 if "fjord" in want else 0, "fjord-direct")
    if (os.cpu_count() or 1) < 2:
        log("WARNING: fewer than 2 CPUs: broker and load generator share one core")
    if not shutil.which("taskset"):
        sys.exit("taskset not found (util-linux)")
    if not os.access(args.fjord_bin, os.X_OK):
        sys.exit(f"{args.fjord_bin} not found: build it with `cargo build --release -p fjord` (it is also the "
                 "`fjord bench` load generator)")
    need_java = "kafka" in want or "java" in cfg["groups"]
    if need_java:
        if not shutil.which("java"):
            if "kafka" in want:
                sys.exit("java not found: run tests/e2e/setup.sh")
            log("java not found: the kafka-*-perf-test rows are skipped")
        elif not kafka_jars_present():
            log("Kafka jars missing: running scripts/kafka.sh fetch")
            subprocess.run(["bash", KAFKA_SH, "fetch"], check=True)
    # a deleted topic's files go after log.segment.delete.delay.ms (60 s by default): with a topic per
    # scenario, that would keep tens of GB of deleted data on the disk
    kafka_set = ["log.segment.delete.delay.ms=1000"] + args.kafka_set
    cfg["kafka_set_effective"] = kafka_set

    if args.wait_quiet > 0:
        deadline = time.monotonic() + args.wait_quiet
        while float(loadavg().split()[0]) >= args.quiet_load and time.monotonic() < deadline:
            log(f"waiting for a quiet machine (load {loadavg()})")
            time.sleep(15)
    meta = machine_info()
    meta["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    meta["load_before"] = loadavg()
    meta["started"] = time.time()
    log(f"mode {mode}; groups {','.join(cfg['groups'])}; brokers {','.join(want)}; load average {meta['load_before']}")

    root = tempfile.mkdtemp(prefix="fjord-bench-", dir=args.work_dir)
    meta["fs"] = fs_of(root)
    if not args.keep:
        CLEANUPS.insert(0, lambda: shutil.rmtree(root, ignore_errors=True))
    else:
        log(f"keeping {root}")
    rounds = {}
    limits = {}
    try:
        # a private copy: a rebuild of target/release/fjord during the run must not change what is measured
        fjord_bin = os.path.join(root, "fjord-bin")
        shutil.copy2(args.fjord_bin, fjord_bin)
        st = os.stat(args.fjord_bin)
        meta["fjord_bin"] = {"path": os.path.relpath(args.fjord_bin, REPO),
                             "mtime": datetime.datetime.fromtimestamp(st.st_mtime).astimezone().strftime(
                                 "%Y-%m-%d %H:%M %Z"), "bytes": st.st_size}
        tools = Tools(fjord_bin, need_java)
        if need_java and not tools.java:
            problem("java or the Kafka jars are missing: the kafka-*-perf-test rows were skipped")
        r = subprocess.run([tools.rdperf, "-h"], capture_output=True, text=True)
        mt = re.search(r"librdkafka version ([^\s]+)", r.stdout + r.stderr)
        meta["librdkafka"] = mt.group(1) if mt else "?"

        small = mode != "full"
        log("measuring the machine: sequential write ...")
        limits["seq_write"] = measure_seq_write(root, (256 << 20) if small else (2 << 30))
        log(f"  sequential write {limits['seq_write']['mb_s']:,.0f} MB/s")
        limits["direct_write"] = measure_direct_write(root, (256 << 20) if small else (2 << 30))
        if limits["direct_write"]:
            log(f"  sequential O_DIRECT write {limits['direct_write']['mb_s']:,.0f} MB/s")
        limits["fdatasync"] = measure_fdatasync(root, 0.5 if small else 3.0)
        log(f"  4 KiB append+fdatasync {limits['fdatasync']['syncs_s']:,.0f}/s "
            f"(median {limits['fdatasync']['median_us']:.0f} µs)")
        limits["loopback"] = measure_loopback(root, 0.5 if small else 3.0)
        if "mb_s" in limits["loopback"]:
            log(f"  loopback TCP {limits['loopback']['mb_s']:,.0f} MB/s")
        else:
            log(f"  loopback TCP skipped: {limits['loopback']['skipped']}")

        for rnd in range(args.rounds):
            # alternate the order so that neither broker always runs on a machine warmed (or tired) by the other
            order = want if rnd % 2 == 0 else list(reversed(want))
            for name in order:
                if name == "kafka":
                    def make(tag, rnd=rnd):
                        return KafkaBroker(root, kafka_set, f"{tag}-r{rnd + 1}")
                elif name == "fjord-direct":
                    def make(tag, rnd=rnd):
                        b = FjordBroker(root, fjord_bin, args.fjord_set + [DIRECT_SET], f"direct-{tag}-r{rnd + 1}")
                        b.name = DIRECT_LABEL
                        return b
                else:
                    def make(tag, rnd=rnd):
                        return FjordBroker(root, fjord_bin, args.fjord_set, f"{tag}-r{rnd + 1}")
                label = LABELS[name]
                log(f"=== {label} (round {rnd + 1} of {args.rounds}) ===")
                rounds.setdefault(label, []).append(run_sessions(make, tools, cfg, root, args.keep))
        results = {name: best_of(rs) for name, rs in rounds.items()}
    except KeyboardInterrupt:
        log("interrupted: stopping brokers and cleaning up")
        for p in list(CHILDREN):
            p.kill()
        run_cleanups()
        sys.exit(130)
    except RuntimeError as e:
        problem(str(e))
        results = {name: best_of(rs) for name, rs in rounds.items()}
    finally:
        for p in list(CHILDREN):
            if p.poll() is None:
                p.kill()
        run_cleanups()

    meta["load_after"] = loadavg()
    meta["invocation"] = invocation
    meta["wall_minutes"] = (time.time() - meta["started"]) / 60
    log(f"load average after: {meta['load_after']}; {meta['wall_minutes']:.1f} minutes")

    if args.out:
        out_path = os.path.abspath(args.out)
    else:
        out_path = os.path.join(RESULTS_DIR, f"{mode}.md") if mode != "full" else os.path.join(REPO, "BENCHMARKS.md")
    suffix = output_suffix(mode, args.out)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    doc = {"meta": meta, "limits": limits, "config": cfg, "results": results, "rounds": rounds,
           "problems": PROBLEMS, "commands": COMMANDS}
    if not args.no_report:
        json_path = os.path.join(RESULTS_DIR, f"side_by_side{suffix}.json")
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        render(doc, out_path, suffix)
    failed = summarize(cfg, results, want, tools_java=need_java)
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s) recorded; see the report", file=sys.stderr)
    if mode == "smoke" and (failed or FATAL):
        for p in FATAL:
            print(f"PROBLEM: {p[:500]}", file=sys.stderr)
        return 1
    return 1 if failed or any(not v for v in results.values()) else 0


# the brokers of a run: --broker's choice, plus Fjord's direct write path with --fjord-direct
DIRECT_SET = "log.direct.io=auto"
DIRECT_LABEL = report.DIRECT_LABEL
LABELS = {"fjord": "Fjord", "fjord-direct": DIRECT_LABEL, "kafka": "Kafka"}


def expected_ids(cfg, java):
    ids = [sc["id"] for sc in cfg["scenarios"] if sc["gen"] != "java" or java]
    ids += [p["id"] for p in cfg["e2e_points"]]
    if "many" in cfg["groups"]:
        ids.append("many")
    if "restart" in cfg["groups"]:
        ids += ["restart-kill9", "restart-clean"]
    if "retained" in cfg["groups"]:
        ids += ["retained-empty", "retained-full"]
    return ids


def summarize(cfg, results, want, tools_java):
    """Prints one line per scenario; returns the number of expected results missing."""
    missing = 0
    java = tools_java and bool(shutil.which("java")) and kafka_jars_present()
    for sid in expected_ids(cfg, java):
        parts = []
        for key, b in LABELS.items():
            if key not in want:
                continue
            r = results.get(b, {}).get(sid)
            if not r:
                parts.append(f"{b} MISSING")
                missing += 1
            elif "mb_s" in r:
                lat = r.get("latency") if sid.startswith(("e2e", "many")) else None
                parts.append(f"{b} {r['mb_s']:,.1f} MB/s {fmt_opt(r['cpu_s_per_gb'], 2)} CPU-s/GB"
                             + (f" p99 {lat['p99_ms']:.1f} ms" if lat else ""))
            else:
                parts.append(f"{b} ready after {r['ready_s']:.2f} s")
        print(f"{sid:45s} " + " | ".join(parts))
    return missing


def output_suffix(mode, out):
    """The plots and the JSON go to scripts/bench/results/: throughput.svg for the full run into
    BENCHMARKS.md, throughput-quick.svg for --quick, throughput-NAME.svg for --out NAME.md."""
    if out:
        stem = os.path.splitext(os.path.basename(out))[0]
        return "" if stem == "BENCHMARKS" else f"-{stem}"
    return "" if mode == "full" else f"-{mode}"


def render(doc, out_path, suffix):
    svg_tp = os.path.join(RESULTS_DIR, f"throughput{suffix}.svg")
    svg_lat = os.path.join(RESULTS_DIR, f"latency{suffix}.svg")
    report.svg_throughput(doc, svg_tp)
    have_lat = report.svg_latency(doc, svg_lat)
    rel = lambda p: os.path.relpath(p, os.path.dirname(out_path))  # noqa: E731
    section = report.render_section(doc, rel(svg_tp), rel(svg_lat) if have_lat else None,
                                    BROKER_CPU, CLIENT_CPU, GEN_NAMES)
    report.write_report(out_path, section)
    log(f"wrote {out_path}, {svg_tp}" + (f" and {svg_lat}" if have_lat else ""))


def render_only(args):
    with open(args.render_only) as f:
        doc = json.load(f)
    mode = doc["config"].get("mode", "quick" if doc["config"].get("quick") else "full")
    suffix = output_suffix(mode, args.out)
    out_path = os.path.abspath(args.out) if args.out else (
        os.path.join(RESULTS_DIR, f"{mode}.md") if mode != "full" else os.path.join(REPO, "BENCHMARKS.md"))
    render(doc, out_path, suffix)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        run_cleanups()
        sys.exit(130)
