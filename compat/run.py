#!/usr/bin/env python3
"""Compatibility suites: third-party Kafka client test suites run against Fjord and Apache Kafka.

    python3 compat/run.py [SUITE ...] [--quick] [--broker fjord|kafka|both] [--out FILE]
    python3 compat/run.py --report [--out FILE]      rebuild the report from stored results only
    python3 compat/run.py --list                     list the suites

Suites (all fetched from package registries, built once, cached under ~/.cache/fjord-compat):
  librdkafka    librdkafka 2.12.1's own test suite (tests/ of the crates.io crate rdkafka-sys 4.10.0+2.12.1)
  kafka-python  kafka-python's integration tests (test/integration of its PyPI sdist)
  rust-rdkafka  rust-rdkafka's integration tests (tests/ of the crates.io crate rdkafka)

For each suite and broker: a fresh broker on a free port with a fresh data dir, the suite's tests one by
one with a per-test timeout, results stored as JSON under ~/.cache/fjord-compat/results/. The report
(a per-test table on stdout, and the part of COMPATIBILITY.md between the compat markers) is built from
the stored results, so `--broker fjord` and `--broker kafka` can run at different times.

Environment: FJORD_BIN (default target/release/fjord), FJORD_COMPAT_CACHE (default ~/.cache/fjord-compat),
FJORD_COMPAT_TIMEOUT_S (per-test timeout override), KAFKA_TOOLS_SH (default ../shared/tools/kafka-tools.sh).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FJORD_COMPAT_CACHE", Path.home() / ".cache" / "fjord-compat"))
RESULTS = CACHE / "results"
RUNS = CACHE / "runs"
FJORD_BIN = Path(os.environ.get("FJORD_BIN", ROOT / "target" / "release" / "fjord"))
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
KAFKA_TOOLS_SH = Path(os.environ.get("KAFKA_TOOLS_SH", ROOT.parent / "shared" / "tools" / "kafka-tools.sh"))
KAFKA_VERSION = "4.3.1"
E2E_VENV_PY = Path.home() / ".cache" / "fjord-e2e" / "venv" / "bin" / "python"

BEGIN = "<!-- compat:begin -->"
END = "<!-- compat:end -->"

PASS, FAIL, SKIP = "pass", "fail", "skip"

# Kafka's StandardAuthorizer letting every client do what no ACL forbids (Kafka's names; Fjord takes them too).
AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "allow.everyone.if.no.acl.found": "true"}
MERGE = False  # --merge

# Why a test fails on Fjord while it passes on Kafka: filled in by whoever investigates, keyed
# "suite::test". Printed in COMPATIBILITY.md; a failure missing here reads "not investigated yet".
CAUSES_FILE = Path(__file__).resolve().parent / "causes.json"
# Kafka's results on this harness, committed (`--write-baseline` refreshes it from the stored results), so
# that `--strict --broker fjord` can gate CI without running Kafka on every submission.
BASELINE_FILE = Path(__file__).resolve().parent / "baseline.json"
# Fjord-only failures that are known and tracked ("suite::test" -> why); `--strict` tolerates these and
# only these, and says so when one of them starts passing (then remove it from the file).
EXPECTED_FILE = Path(__file__).resolve().parent / "expected_failures.json"
RETRY_FAILED = False  # --strict: run each failing test once more on a fresh broker before counting it


def log(msg: str) -> None:
    print(f"[compat] {msg}", file=sys.stderr, flush=True)


def sh(cmd, cwd=None, env=None, log_to=None, check=True, timeout=None):
    """Run a build step; output goes to log_to (a path) or is inherited."""
    log(f"$ {' '.join(str(c) for c in cmd)}" + (f"   (log: {log_to})" if log_to else ""))
    out = open(log_to, "ab") if log_to else None
    try:
        r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=out,
                           stderr=subprocess.STDOUT if out else None, timeout=timeout)
    finally:
        if out:
            out.close()
    if check and r.returncode != 0:
        tail = ""
        if log_to and Path(log_to).exists():
            tail = "\n".join(Path(log_to).read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(str(c) for c in cmd)}\n{tail}")
    return r


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_free(port: int) -> bool:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run_test_proc(cmd, cwd, env, timeout_s, log_path):
    """Run one test command in its own process group; returns (exit code or None on timeout, output)."""
    with open(log_path, "ab") as f:
        f.write(f"\n===== {time.strftime('%H:%M:%S')} $ {' '.join(map(str, cmd))}\n".encode())
    p = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout_s)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
        rc = None
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    text = out.decode(errors="replace")
    with open(log_path, "ab") as f:
        f.write(out)
        f.write(f"\n===== exit {rc}\n".encode())
    return rc, text


# --------------------------------------------------------------------------------------------- brokers

_SNAPSHOT = None
_BUILD_INFO = None


def fjord_snapshot() -> Path:
    """A private copy of the Fjord binary taken once per run: the shared target/ may be rebuilt while
    the suites run, and every broker of one run must be the same build."""
    global _SNAPSHOT
    if _SNAPSHOT is None:
        if not FJORD_BIN.exists():
            raise RuntimeError(f"{FJORD_BIN} missing: cargo build --release -p fjord")
        d = CACHE / "bin"
        d.mkdir(parents=True, exist_ok=True)
        _SNAPSHOT = d / f"fjord-{os.getpid()}"
        global _BUILD_INFO
        _BUILD_INFO = fjord_build_info()
        shutil.copy2(FJORD_BIN, _SNAPSHOT)
    return _SNAPSHOT


def fjord_build_info() -> str:
    """The git revision of the source tree the binary came from (plus '+dirty' if it has local edits)."""
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        mtime = time.strftime("%Y-%m-%d %H:%M", time.gmtime(FJORD_BIN.stat().st_mtime))
        profile = FJORD_BIN.resolve().parent.name  # target/<profile>/fjord
        return f"{rev}{'+dirty' if dirty else ''}, {profile} binary built {mtime} UTC"
    except OSError:
        return "unknown"

def resolve_ports(settings: dict, port: int, ports: dict) -> dict:
    """Settings with `{port}` replaced by the client (PLAINTEXT) listener's port and `{port:NAME}` by a free
    port picked for NAME (kept in `ports`, so that a node keeps its ports for the settings' life)."""
    def one(v):
        v = str(v).replace("{port}", str(port))
        for name in re.findall(r"\{port:(\w+)\}", v):
            if name not in ports:
                ports[name] = free_port()
            v = v.replace(f"{{port:{name}}}", str(ports[name]))
        return v
    return {k: one(v) for k, v in settings.items()}


class Broker:
    """One broker instance (Fjord or Kafka) on a free port with a fresh data dir."""

    def __init__(self, kind: str, settings: dict, workdir: Path, preferred_port: int | None = None):
        self.kind = kind
        self.settings = dict(settings)
        self.workdir = workdir
        self.preferred_port = preferred_port
        self.port = 0
        self.proc = None
        self.dir = None
        self.restarts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        if self.preferred_port and port_free(self.preferred_port):
            self.port = self.preferred_port
        self.dir = self.workdir / f"{self.kind}-{self.port}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        kv = [f"{k}={v}" for k, v in self.effective_settings().items()]
        env = None
        if self.kind == "kafka" and "listeners" in self.settings:
            # Kafka's node needs its CONTROLLER listener among `listeners`: scripts/kafka.sh takes its port
            # from CONTROLLER_PORT, the settings here replace the listeners it writes.
            cport = free_port()
            env = dict(os.environ, CONTROLLER_PORT=str(cport))
            kv = [f"{line},CONTROLLER://127.0.0.1:{cport}" if line.startswith("listeners=") else
                  f"{line},CONTROLLER:PLAINTEXT" if line.startswith("listener.security.protocol.map=") else line
                  for line in kv]
        if self.kind == "fjord":
            cmd = [str(fjord_snapshot()), "serve", "--listen", self.bootstrap, "--data-dir", str(self.dir / "data")]
            for s in kv:
                cmd += ["--set", s]
            logf = open(self.dir / "fjord.log", "ab")
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            logf.close()
            deadline = time.monotonic() + 30
            while not port_open(self.port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"fjord exited at start: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("fjord did not listen within 30 s")
                time.sleep(0.1)
        else:
            sh(["bash", KAFKA_SH, "fetch"])
            sh(["bash", KAFKA_SH, "start", str(self.port), str(self.dir)] + kv, env=env,
               log_to=self.dir / "start.log")
        log(f"{self.kind} serving on {self.bootstrap} (dir {self.dir}, settings {kv})")

    def effective_settings(self) -> dict:
        """The settings with their port placeholders resolved (resolve_ports)."""
        if getattr(self, "_ports_for", None) != self.port:
            self._ports, self._ports_for = {}, self.port
        return resolve_ports(self.settings, self.port, self._ports)

    def listener(self, protocol: str) -> str:
        """host:port of the listener of that security protocol (PLAINTEXT: the bootstrap)."""
        for entry in self.effective_settings().get("listeners", f"PLAINTEXT://{self.bootstrap}").split(","):
            name, _, addr = entry.partition("://")
            if name == protocol:
                return addr
        raise KeyError(f"no {protocol} listener in {self.settings.get('listeners')}")

    def alive(self) -> bool:
        if self.kind == "fjord":
            return self.proc is not None and self.proc.poll() is None
        pidf = self.dir / "kafka.pid"
        if not pidf.exists():
            return False
        try:
            os.kill(int(pidf.read_text().strip()), 0)
            return True
        except (OSError, ValueError):
            return False

    def log_tail(self, n=20) -> str:
        f = self.dir / ("fjord.log" if self.kind == "fjord" else "kafka.log")
        if not f.exists():
            return ""
        lines = f.read_text(errors="replace").splitlines()
        panics = [i for i, ln in enumerate(lines) if "panicked at" in ln]
        if panics and panics[-1] < len(lines) - n:
            # the panic's message and location first: a backtrace's last frames say nothing
            return "\n".join(lines[panics[-1]:panics[-1] + 3] + ["..."] + lines[-n:])
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.kind == "fjord":
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        elif self.dir is not None:
            sh(["bash", KAFKA_SH, "stop", str(self.dir)], check=False, log_to=self.dir / "start.log")

    def restart_fresh(self) -> None:
        """After a crash: keep the old dir (and log) for inspection, start anew on another port."""
        self.stop()
        self.restarts += 1
        self.start()


class Cluster:
    """Three combined broker+controller nodes on 127.0.0.1 with static voters (README "Run a three-node
    cluster on one machine"; Kafka: the same settings, `kafka-storage format` and `kafka.Kafka` per node),
    for tests that create topics with replication factor 3 (trivup's 3-broker cluster). Same interface as
    Broker; node N has broker.rack RACKN (trivup's racks)."""

    SIZE = 3

    def __init__(self, kind: str, settings: dict, workdir: Path, preferred_port: int | None = None):
        self.kind = kind
        self.settings = dict(settings)
        self.workdir = workdir
        self.port = 0
        self.dir = None
        self.restarts = 0
        self.nodes = []  # [{"id", "port", "cport", "dir", "proc"}]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n['port']}" for n in self.nodes)

    def listener(self, protocol: str) -> str:
        """The nodes' host:port of the listener of that security protocol, comma-separated."""
        out = []
        for n in self.nodes:
            s = self.node_settings(n, "")
            for entry in s["listeners"].split(","):
                name, _, addr = entry.partition("://")
                if name == protocol:
                    out.append(addr)
        if not out:
            raise KeyError(f"the cluster has no {protocol} listener")
        return ",".join(out)

    def node_settings(self, n: dict, voters: str) -> dict:
        s = {"node.id": n["id"], "process.roles": "broker,controller",
             "listeners": f"PLAINTEXT://127.0.0.1:{n['port']},CONTROLLER://127.0.0.1:{n['cport']}",
             "advertised.listeners": f"PLAINTEXT://127.0.0.1:{n['port']}",
             "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "PLAINTEXT",
             "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
             "controller.quorum.voters": voters, "broker.rack": f"RACK{n['id']}",
             "group.initial.rebalance.delay.ms": 0}
        extra = resolve_ports(self.settings, n["port"], n.setdefault("ports", {}))
        if "listeners" in extra:
            # secured listeners besides the cluster's own (secured_settings())
            extra["listeners"] += f",CONTROLLER://127.0.0.1:{n['cport']}"
            extra["listener.security.protocol.map"] += ",CONTROLLER:PLAINTEXT"
        s.update(extra)
        return s

    def start(self) -> None:
        self.nodes = [{"id": i + 1, "port": free_port(), "cport": free_port()} for i in range(self.SIZE)]
        self.port = self.nodes[0]["port"]
        self.dir = self.workdir / f"{self.kind}-cluster-{self.port}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        voters = ",".join(f"{n['id']}@127.0.0.1:{n['cport']}" for n in self.nodes)
        # a Kafka cluster id: a Uuid in base64url (one starting with '-' would read as an option)
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if self.kind == "kafka":
            sh(["bash", KAFKA_SH, "fetch"])
            kafka_libs = Path(os.environ.get("KAFKA_LIBS", Path.home() / ".cache" / "fjord-e2e" /
                                             f"kafka-{KAFKA_VERSION}" / "libs"))
        for n in self.nodes:
            n["dir"] = self.dir / f"node{n['id']}"
            n["dir"].mkdir(parents=True)
            s = self.node_settings(n, voters)
            logf = open(n["dir"] / "node.log", "ab")
            if self.kind == "fjord":
                args = ["--data-dir", str(n["dir"] / "data")]
                for k, v in s.items():
                    args += ["--set", f"{k}={v}"]
                sh([fjord_snapshot(), "format", "--cluster-id", cluster_id, *args], log_to=n["dir"] / "node.log")
                argv = [str(fjord_snapshot()), "serve", *args]
            else:
                s["log.dirs"] = str(n["dir"] / "data")
                props = n["dir"] / "server.properties"
                props.write_text("".join(f"{k}={v}\n" for k, v in s.items()))
                java = ["java", "-Xmx768m", "-Xms768m",
                        f"-Dlog4j2.configurationFile={ROOT / 'tests' / 'e2e' / 'log4j2-tools.properties'}",
                        "-cp", f"{kafka_libs}/*"]
                sh([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", props],
                   log_to=n["dir"] / "node.log")
                argv = [*java, "kafka.Kafka", str(props)]
            n["proc"] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            logf.close()
        deadline = time.monotonic() + 120
        while not self.registered():
            if not self.alive():
                raise RuntimeError(f"{self.kind} cluster: a node exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} cluster: three brokers not registered within 120 s: {self.log_tail()}")
            time.sleep(1)
        log(f"{self.kind} cluster serving on {self.bootstrap} (dir {self.dir})")

    def registered(self) -> bool:
        """Every node serves and lists the three brokers in its Metadata (librdkafka's own client)."""
        if not all(port_open(n["port"]) for n in self.nodes):
            return False
        r = subprocess.run([str(E2E_VENV_PY), "-c",
                            "import sys; from confluent_kafka.admin import AdminClient\n"
                            "for b in sys.argv[1:]:\n"
                            "    md = AdminClient({'bootstrap.servers': b}).list_topics(timeout=5)\n"
                            "    assert len(md.brokers) == 3, md.brokers\n",
                            *[f"127.0.0.1:{n['port']}" for n in self.nodes]], capture_output=True, timeout=60)
        return r.returncode == 0

    def alive(self) -> bool:
        return bool(self.nodes) and all(n.get("proc") is not None and n["proc"].poll() is None for n in self.nodes)

    def log_tail(self, n=20) -> str:
        out = []
        for node in self.nodes:
            f = node.get("dir", Path("/nonexistent")) / "node.log"
            if f.exists():
                out.append(f"node {node['id']}: " + "\n".join(f.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)

    def stop(self) -> None:
        for n in self.nodes:
            p = n.get("proc")
            if p is not None and p.poll() is None:
                p.terminate()
        for n in self.nodes:
            p = n.get("proc")
            if p is not None:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def restart_fresh(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()


# --------------------------------------------------------------------------------------------- TLS/SASL

# The SASL user of the secured listeners, as librdkafka's tests/sasl_test.py sets up trivup
# (`sasl_users: myuser=mypassword`): PLAIN from the listener's JAAS line, SCRAM-SHA-512 created with
# Kafka's kafka-configs tool once the broker serves.
SASL_USER, SASL_PASSWORD = "myuser", "mypassword"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-512")
# The password of the client's private key and PKCS#12 file (trivup encrypts them too).
CLIENT_KEY_PASSWORD = "fjord-compat-client"
_PKI = None


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {r.stderr[-1000:]}")


def pki() -> dict:
    """Certificates made with openssl once per run, the files trivup's SslApp provides: a CA (and an unused
    second one, both in all_cas.pem), the broker's key and chain for 127.0.0.1/localhost in one PEM file
    (Kafka's ssl.keystore.type=PEM), and a client key (encrypted, PEM and DER), certificate (PEM and DER)
    and PKCS#12 bundle with the CA."""
    global _PKI
    if _PKI is not None:
        return _PKI
    d = CACHE / "pki" / str(os.getpid())
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    pw = f"pass:{CLIENT_KEY_PASSWORD}"
    for ca in ("ca", "unused-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-days", "7", "-subj", f"/CN=fjord-compat-{ca}", cwd=d)
    openssl("x509", "-in", "ca.pem", "-outform", "der", "-out", "ca.der", cwd=d)
    (d / "all_cas.pem").write_text((d / "ca.pem").read_text() + (d / "unused-ca.pem").read_text())
    # X.509 v3 certificates (rustls refuses v1 ones, which `x509 -req` makes without an extension file)
    (d / "broker.cnf").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.cnf").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, subj in (("broker", "/CN=localhost"), ("client", "/CN=librdkafka")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.plain.key", "-out", f"{name}.csr",
                "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "7", "-extfile", f"{name}.cnf", cwd=d)
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.plain.key", "-out", "broker.p8", cwd=d)
    (d / "broker-keystore.pem").write_text((d / "broker.p8").read_text() + (d / "broker.pem").read_text())
    openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client.plain.key", "-out", "client.key",
            "-passout", pw, cwd=d)
    openssl("pkey", "-in", "client.plain.key", "-outform", "der", "-out", "client.key.der", cwd=d)
    openssl("x509", "-in", "client.pem", "-outform", "der", "-out", "client.der", cwd=d)
    openssl("pkcs12", "-export", "-in", "client.pem", "-inkey", "client.plain.key", "-certfile", "ca.pem",
            "-out", "client.p12", "-passout", pw, cwd=d)
    # An OpenSSL configuration that caps the client at TLS 1.2 (OPENSSL_CONF of one test process, see
    # LIBRDKAFKA_TLS12).
    (d / "openssl-tls12.cnf").write_text("openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n"
                                         "[ssl_sect]\nsystem_default = system_default_sect\n"
                                         "[system_default_sect]\nMaxProtocol = TLSv1.2\n")
    _PKI = {"dir": d, "ca": d / "ca.pem", "keystore": d / "broker-keystore.pem",
            "tls12": d / "openssl-tls12.cnf",
            # trivup's names (LibrdkafkaTestApp.py): the SSL_* variables 0097_ssl_verify reads
            "env": {"SSL_pkcs": str(d / "client.p12"), "SSL_pub_pem": str(d / "client.pem"),
                    "SSL_pub_der": str(d / "client.der"), "SSL_priv_pem": str(d / "client.key"),
                    "SSL_priv_der": str(d / "client.key.der"), "SSL_ca_pem": str(d / "ca.pem"),
                    "SSL_ca_der": str(d / "ca.der"), "SSL_all_cas_pem": str(d / "all_cas.pem"),
                    "SSL_password": CLIENT_KEY_PASSWORD, "SSL_client_auth": "required"},
            "client_conf": {"ssl.ca.location": str(d / "ca.pem"), "ssl.certificate.location": str(d / "client.pem"),
                            "ssl.key.location": str(d / "client.key"), "ssl.key.password": CLIENT_KEY_PASSWORD}}
    return _PKI


def secured_settings() -> dict:
    """Kafka's settings for a node with PLAINTEXT (the harness's own, `{port}`), SSL (client certificates
    required), SASL_PLAINTEXT and SASL_SSL listeners, PLAIN and SCRAM-SHA-512 on both SASL ones, sessions
    that must re-authenticate every 10 s (trivup's default --max-reauth-ms)."""
    p = pki()
    listeners = ",".join(["PLAINTEXT://127.0.0.1:{port}"] +
                         [f"{proto}://127.0.0.1:{{port:{proto}}}" for proto in ("SSL", "SASL_PLAINTEXT", "SASL_SSL")])
    out = {"listeners": listeners, "advertised.listeners": listeners,
           "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                             "SASL_SSL:SASL_SSL",
           "ssl.keystore.type": "PEM", "ssl.keystore.location": str(p["keystore"]),
           "ssl.truststore.type": "PEM", "ssl.truststore.location": str(p["ca"]),
           "listener.name.ssl.ssl.client.auth": "required",
           "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
           "connections.max.reauth.ms": 10000}
    for listener in ("sasl_plaintext", "sasl_ssl"):
        out[f"listener.name.{listener}.plain.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{SASL_USER}" password="{SASL_PASSWORD}" user_{SASL_USER}="{SASL_PASSWORD}";')
        out[f"listener.name.{listener}.scram-sha-512.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    return out


def add_scram_user(broker) -> None:
    """The SCRAM-SHA-512 user, with Kafka's own kafka-configs over the PLAINTEXT listener (an
    AlterUserScramCredentials request), then wait until it is usable (DescribeUserScramCredentials)."""
    sh(["bash", KAFKA_SH, "java", "kafka.admin.ConfigCommand", "--bootstrap-server", broker.bootstrap, "--alter",
        "--entity-type", "users", "--entity-name", SASL_USER, "--add-config",
        f"SCRAM-SHA-512=[iterations=8192,password={SASL_PASSWORD}]"], log_to=broker.dir / "scram.log")
    deadline = time.monotonic() + 30
    while True:
        r = subprocess.run(["bash", str(KAFKA_SH), "java", "kafka.admin.ConfigCommand", "--bootstrap-server",
                            broker.bootstrap, "--describe", "--entity-type", "users", "--entity-name", SASL_USER],
                           capture_output=True, text=True)
        if "SCRAM-SHA-512" in r.stdout or time.monotonic() > deadline:
            return
        time.sleep(1)


# --------------------------------------------------------------------------------------------- suites

class Suite:
    name = ""
    description = ""
    timeout_s = 300
    # A port the suite's tests assume (when it is free the broker gets it, else a free one).
    preferred_port: int | None = None

    def __init__(self, quick: bool):
        self.quick = quick
        self.timeout_s = int(os.environ.get("FJORD_COMPAT_TIMEOUT_S", self.timeout_s))

    def prepare(self) -> None:
        raise NotImplementedError

    def tests(self) -> list:
        """[(test, group, skip_both_reason, fjord_only_skip_reason)] in run order."""
        raise NotImplementedError

    def broker_settings(self, group: str) -> dict:
        return {}

    def kafka_settings(self, group: str) -> dict:
        """Extra settings for Apache Kafka only (names Fjord does not know)."""
        return {}

    def make_broker(self, kind: str, group: str, settings: dict, logdir: Path):
        return Broker(kind, settings, logdir, self.preferred_port)

    def run_group(self, broker: Broker, group: str, names: list, logdir: Path) -> dict:
        raise NotImplementedError

    def command(self) -> str:
        return ""


# ---- librdkafka

LIBRDKAFKA_VERSION = "2.12.1"
RDKAFKA_SYS_VERSION = "4.10.0+2.12.1"

# Tests of librdkafka's suite that need something Fjord does not have yet: skipped on Fjord only
# (still run on Kafka). Leave this list when the feature lands. Empty since Fjord has ACLs
# (StandardAuthorizer, kafka-acls.sh) and transactions.
LIBRDKAFKA_FJORD_SKIPS: dict[str, str] = {}
# Tests that need trivup's 3-broker cluster (topics with replication factor 3; 0101: brokers in three racks):
# run on a three-node cluster (Cluster), group "cluster" or, for the noautocreate scenario,
# "cluster-noautocreate".
LIBRDKAFKA_CLUSTER = {"0101_fetch_from_follower", "0103_transactions", "0107_topic_recreate",
                      "0111_delay_create_topics", "0142_reauthentication"}
# Tests whose time limit leaves no room for the Kafka tools they run (each kafka-acls.sh call starts a JVM,
# ~10 s on a loaded 2-core machine, and 0119 makes two within its 20 s): test.timeout.multiplier in their
# test.conf, 3 as upstream's CI runs every test (test.c: test_on_ci adds 2).
LIBRDKAFKA_TIMEOUT_MULTIPLIER = {"0119": 3}
# Tests run without -Q (upstream's quick mode), whose sub-tests are all non-quick ones (SUB_TEST, not
# SUB_TEST_QUICK): with -Q they return at once and the test passes having checked nothing.
LIBRDKAFKA_FULL_MODE = {"0142"}
# Tests (and the protocol) whose client is capped at TLS 1.2 (OPENSSL_CONF): 0097_ssl_verify expects the broker's
# refusal of an untrusted client certificate as a failed handshake (alert 42); with TLS 1.3 the client has
# finished its handshake before the broker checks its certificate, so librdkafka reports the alert as a
# transport failure and the test fails, on Kafka 4.3.1 as on Fjord.
LIBRDKAFKA_TLS12 = {("0097", "SSL")}
# SSL/SASL tests: run on a broker with secured listeners (secured_settings()), with the test.conf and the
# SSL_* environment trivup would give them, once per security protocol (and SASL mechanism) listed; the
# first is the test's own row, the others are rows "NAME@PROTOCOL[/MECHANISM]". As librdkafka's
# tests/sasl_test.py: SSL, SASL_PLAINTEXT with PLAIN and SCRAM-SHA-512, SASL_SSL with PLAIN.
LIBRDKAFKA_SECURED = {
    "0097_ssl_verify": ["SSL", "SASL_SSL/PLAIN"],
    "0135_sasl_credentials": ["SASL_PLAINTEXT/PLAIN", "SASL_PLAINTEXT/SCRAM-SHA-512", "SASL_SSL/PLAIN"],
    "0142_reauthentication": ["SASL_PLAINTEXT/PLAIN", "SASL_PLAINTEXT/SCRAM-SHA-512"],
}
# Skipped on both brokers: the single-node set-ups used here cannot serve them.
LIBRDKAFKA_BOTH_SKIPS = {
    "0126_oauthbearer_oidc": "needs a SASL/OAUTHBEARER listener and an OIDC token endpoint (client credentials "
                             "grant), which this harness does not run",
}
# --quick: produce (0001, 0012, 0013, 0017), fetch (0022, 0040), offsets (0030, 0031, 0034, 0130),
# admin (0063, 0081), groups (0019, 0099)
LIBRDKAFKA_QUICK = ["0001", "0012", "0013", "0017", "0019", "0022", "0030", "0031", "0034", "0040", "0063", "0081",
                    "0099", "0130"]


class Librdkafka(Suite):
    name = "librdkafka"
    description = (f"librdkafka {LIBRDKAFKA_VERSION}'s own test suite (`tests/` of the crates.io crate "
                   f"rdkafka-sys {RDKAFKA_SYS_VERSION}), C and C++ tests, run one test number at a time with "
                   f"`TESTS=NNNN ./test-runner -p1 -Q -L`")
    timeout_s = 300

    def __init__(self, quick):
        super().__init__(quick)
        self.build = CACHE / f"librdkafka-{LIBRDKAFKA_VERSION}"

    def source_dir(self) -> Path:
        kt = Path(os.environ.get("KAFKA_TOOLS_DIR", Path.home() / ".cache" / "kafka-tools"))
        src = kt / "src" / f"rdkafka-sys-{RDKAFKA_SYS_VERSION}" / "librdkafka"
        if not src.exists():
            # kafka-tools.sh fetches the crate from crates.io (checksum-pinned) and builds librdkafka
            sh(["bash", KAFKA_TOOLS_SH, "path", "rdkafka_performance"])
        if not src.exists():
            raise RuntimeError(f"{src} missing after kafka-tools.sh")
        return src

    def prepare(self) -> None:
        stamp = self.build / ".fjord-compat-ok"
        if stamp.exists() and (self.build / "tests" / "test-runner").exists():
            return
        src = self.source_dir()
        kt_build = src.parent.parent.parent / "build" / f"librdkafka-{LIBRDKAFKA_VERSION}"
        if self.build.exists():
            shutil.rmtree(self.build)
        CACHE.mkdir(parents=True, exist_ok=True)
        blog = CACHE / "librdkafka-build.log"
        if (kt_build / "src" / "librdkafka.a").exists():
            log(f"reusing kafka-tools' configured librdkafka build {kt_build}")
            sh(["cp", "-a", kt_build, self.build])
        else:
            sh(["cp", "-a", src, self.build])
            sh(["./configure", "--disable-debug-symbols", "--enable-zlib", "--enable-zstd", "--enable-ssl",
                "--enable-gssapi", "--enable-curl", "--enable-lz4-ext"], cwd=self.build, log_to=blog)
            sh(["make", "-C", "src", f"-j{os.cpu_count() or 2}"], cwd=self.build, log_to=blog)
        sh(["make", "-C", "src-cpp", f"-j{os.cpu_count() or 2}"], cwd=self.build, log_to=blog)
        sh(["make", "-C", "tests", f"-j{os.cpu_count() or 2}", "test-runner"], cwd=self.build, log_to=blog)
        stamp.touch()

    def _parse_tests(self) -> list:
        text = (self.build / "tests" / "test.c").read_text()
        start = text.index("struct test tests[] = {")
        body = text[start:text.index("{NULL}", start)]
        out = []
        for m in re.finditer(r"_TEST\((\w+),", body):
            depth, i = 1, m.end()
            while depth and i < len(body):
                depth += {"(": 1, ")": -1}.get(body[i], 0)
                i += 1
            entry = body[m.start():i]
            flags = entry[len(m.group(0)):].split(",")[0]
            sc = re.search(r'\.scenario\s*=\s*"([^"]*)"', entry)
            out.append((m.group(1), flags, sc.group(1) if sc else "default"))
        return out

    def tests(self) -> list:
        rows = []
        for name, flags, scenario in self._parse_tests():
            num = name[:4]
            both = None
            if "TEST_F_LOCAL" in flags:
                both = "broker-less test (TEST_F_LOCAL: client internals or its built-in mock cluster)"
            elif "TEST_F_MANUAL" in flags:
                both = "manual test (TEST_F_MANUAL)"
            elif "TEST_F_KNOWN_ISSUE" in flags and "WIN32" not in flags and "OSX" not in flags:
                both = "marked TEST_F_KNOWN_ISSUE upstream"
            elif name in LIBRDKAFKA_BOTH_SKIPS:
                both = LIBRDKAFKA_BOTH_SKIPS[name]
            elif self.quick and num not in LIBRDKAFKA_QUICK:
                continue
            group = "noautocreate" if scenario == "noautocreate" else "default"
            if name in LIBRDKAFKA_CLUSTER:
                group = "cluster-noautocreate" if group == "noautocreate" else "cluster"
            if both and self.quick:
                continue
            if name in LIBRDKAFKA_SECURED and not both:
                for i, variant in enumerate(LIBRDKAFKA_SECURED[name]):
                    rows.append((name if i == 0 else f"{name}@{variant}",
                                 "cluster-secured" if name in LIBRDKAFKA_CLUSTER else "secured", None,
                                 LIBRDKAFKA_FJORD_SKIPS.get(name)))
                continue
            rows.append((name, group, both, LIBRDKAFKA_FJORD_SKIPS.get(name)))
        return rows

    @staticmethod
    def variant(name: str) -> str | None:
        """The security protocol[/mechanism] a row runs over (None: the PLAINTEXT listener)."""
        base, _, v = name.partition("@")
        return v or (LIBRDKAFKA_SECURED[base][0] if base in LIBRDKAFKA_SECURED else None)

    def write_conf(self, conf: Path, broker: Broker, variant: str | None, num: str) -> dict:
        """test.conf as trivup's LibrdkafkaTestApp writes it for the listener; returns the extra environment."""
        extra = (f"test.timeout.multiplier={LIBRDKAFKA_TIMEOUT_MULTIPLIER[num]}\n"
                 if num in LIBRDKAFKA_TIMEOUT_MULTIPLIER else "")
        if variant is None:
            conf.write_text(f"metadata.broker.list={broker.bootstrap}\ntest.topic.random=true\n{extra}")
            return {}
        proto, _, mech = variant.partition("/")
        lines = [f"bootstrap.servers={broker.listener(proto)}", f"security.protocol={proto}",
                 "test.topic.random=true"] + extra.splitlines()
        if mech:
            lines += [f"sasl.mechanisms={mech}", f"sasl.username={SASL_USER}", f"sasl.password={SASL_PASSWORD}"]
        p = pki()
        if "SSL" in proto:
            lines += [f"{k}={v}" for k, v in p["client_conf"].items()]
        conf.write_text("\n".join(lines) + "\n")
        env = dict(p["env"]) if "SSL" in proto else {}
        if (num, variant) in LIBRDKAFKA_TLS12:
            env["OPENSSL_CONF"] = str(p["tls12"])
        return env

    def make_broker(self, kind, group, settings, logdir):
        if group.startswith("cluster"):
            return Cluster(kind, settings, logdir)
        return super().make_broker(kind, group, settings, logdir)

    def broker_settings(self, group):
        # trivup's scenarios (tests/scenarios/*.json): 4 partitions, auto-create on except "noautocreate".
        # 0081_admin, 0109, 0115 and 0119 create ACLs: both brokers get the StandardAuthorizer, one that lets
        # every client do what no ACL forbids.
        return {"num.partitions": 4,
                "auto.create.topics.enable": "false" if "noautocreate" in group else "true",
                **AUTHORIZER, **(secured_settings() if group.endswith("secured") else {}),
                # 0101: the leader picks the replica in the consumer's rack (KIP-392), as trivup configures it.
                # The nodes talk to each other over PLAINTEXT as User:ANONYMOUS, which the authorizer must let
                # in before it has loaded the metadata (Kafka's controllers refuse Vote requests otherwise:
                # AuthorizerNotReadyException).
                **({"replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector",
                    "super.users": "User:ANONYMOUS"} if group.startswith("cluster") else {})}

    def command(self):
        return ("cd ~/.cache/fjord-compat/librdkafka-2.12.1/tests && "
                "TESTS=NNNN TEST_KAFKA_VERSION=4.3.1 RDKAFKA_TEST_CONF=test.conf "
                "LD_LIBRARY_PATH=../src:../src-cpp ./test-runner -p1 -Q -L")

    def run_group(self, broker, group, names, logdir):
        tdir = self.build / "tests"
        conf = logdir / f"librdkafka-{broker.kind}-{group}.conf"
        env = dict(os.environ)
        env.update({
            "TEST_KAFKA_VERSION": KAFKA_VERSION,
            "RDKAFKA_TEST_CONF": str(conf),
            "LD_LIBRARY_PATH": f"{self.build / 'src'}:{self.build / 'src-cpp'}",
            # trivup's scenario (a test runs only in its own): the group names it
            "TEST_SCENARIO": "noautocreate" if "noautocreate" in group else "default",
        })
        env.pop("CI", None)  # CI=... would make test-runner run 3 tests in parallel
        # A few tests run Kafka's CLI ($KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server $BROKERS ...), as
        # trivup provides it: stand-ins run the same tool class from the Kafka jars (scripts/kafka.sh java).
        kpath = CACHE / "kafka-path"
        (kpath / "bin").mkdir(parents=True, exist_ok=True)
        for script, cls in (("kafka-topics.sh", "org.apache.kafka.tools.TopicCommand"),
                            ("kafka-configs.sh", "kafka.admin.ConfigCommand"),
                            ("kafka-acls.sh", "org.apache.kafka.tools.AclCommand")):
            f = kpath / "bin" / script
            f.write_text(f'#!/bin/sh\nexec bash "{KAFKA_SH}" java {cls} "$@"\n')
            f.chmod(0o755)
        env["KAFKA_PATH"] = str(kpath)
        by_num = {}
        for n in names:
            by_num.setdefault((n[:4], self.variant(n)), []).append(n)
        results = {}
        logp = logdir / f"librdkafka-{broker.kind}.log"
        scram_for = None
        for (num, variant), members in by_num.items():
            if not broker.alive():
                broker.restart_fresh()
            if variant and "SCRAM" in variant and scram_for != broker.port:
                add_scram_user(broker)
                scram_for = broker.port
            env["BROKERS"] = broker.bootstrap
            for k in [*pki()["env"], "OPENSSL_CONF"] if group.endswith("secured") else ():
                env.pop(k, None)
            env.update(self.write_conf(conf, broker, variant, num))
            env["TESTS"] = num
            t0 = time.monotonic()
            quick = [] if num in LIBRDKAFKA_FULL_MODE else ["-Q"]
            rc, out = run_test_proc(["./test-runner", "-p1", *quick, "-L"], tdir, env, self.timeout_s, logp)
            secs = time.monotonic() - t0
            clean = re.sub(r"\x1b\[[0-9;]*m", "", out)
            seen = {}
            for line in clean.splitlines():
                m = re.match(r"\|\s*(\S+)\s*\|\s*(PASSED|FAILED|SKIPPED|RUNNING|DNS)\s*\|\s*([\d.]+)s\s*\|\s*(.*)$",
                             line)
                if m and m.group(1)[:4] == num:
                    seen[m.group(1)] = (m.group(2), m.group(4).strip())
            for n in members:
                base = n.partition("@")[0]
                st, detail = seen.get(base, (None, ""))
                if rc is None:
                    results[n] = {"status": FAIL, "detail": f"timeout after {self.timeout_s}s", "secs": secs}
                elif st == "PASSED":
                    results[n] = {"status": PASS, "detail": "", "secs": secs}
                elif st == "SKIPPED":
                    results[n] = {"status": SKIP, "detail": detail or "skipped by test-runner", "secs": secs}
                elif st == "FAILED":
                    results[n] = {"status": FAIL, "detail": detail[:300], "secs": secs}
                else:
                    # a failing test makes test-runner abort before its summary: use the first failure report
                    m = re.search(r'### Test "' + re.escape(base) + r'([^"]*)" failed at ([^\n]*?) at \w{3} \w{3} [^\n]*'
                                  r'###\n([^\n]*)', clean)
                    if m:
                        detail = f"{m.group(3).strip()} [{(m.group(1).strip() + ' ').lstrip()}at {m.group(2)}]"
                    else:
                        lines = clean.strip().splitlines()
                        detail = f"exit {rc}, no summary line; " + (lines[-1] if lines else "")
                    results[n] = {"status": FAIL, "detail": detail[:300], "secs": secs}
                if not broker.alive():
                    results[n]["detail"] = (results[n]["detail"] + "; broker exited").strip("; ")
            log(f"librdkafka/{broker.kind} {num}{' over ' + variant if variant else ''}: " +
                ", ".join(f"{n}={results[n]['status']}" for n in members) + f" ({secs:.0f}s)")
        return results


# ---- kafka-python

KAFKA_PYTHON_DEFAULT = "3.0.12"
KAFKA_PYTHON_BOTH_SKIPS = {
    "test/integration/test_sasl_integration.py": "spawns its own SASL-enabled Kafka from a Kafka distribution "
                                                  "directory; cannot be pointed at an external broker",
    "test/integration/test_ssl_integration.py": "spawns its own SSL-enabled Kafka from a Kafka distribution "
                                                 "directory; cannot be pointed at an external broker",
}
# Substring of a node id -> why it is skipped on Fjord only (a feature Fjord does not have yet). Empty
# since Fjord has ACLs and transactions.
KAFKA_PYTHON_FJORD_SKIPS: dict[str, str] = {}
KAFKA_PYTHON_QUICK = ["test/integration/test_producer_integration.py", "test/integration/test_consumer_integration.py",
                      "test/integration/test_admin_integration.py"]


class KafkaPython(Suite):
    name = "kafka-python"
    timeout_s = 120

    def __init__(self, quick):
        super().__init__(quick)
        self.version = self._version()
        self.src = CACHE / f"kafka-python-{self.version}"
        self.venv = CACHE / f"venv-kafka-python-{self.version}"
        self.description = (f"kafka-python {self.version}'s integration tests (`test/integration` of its PyPI "
                            f"sdist), pytest with KAFKA_URI pointing at the broker")
        self._collected = None

    @staticmethod
    def _version() -> str:
        if E2E_VENV_PY.exists():
            r = subprocess.run([str(E2E_VENV_PY), "-c", "import kafka; print(kafka.__version__)"],
                               capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.strip()
        return KAFKA_PYTHON_DEFAULT

    @property
    def py(self) -> Path:
        return self.venv / "bin" / "python"

    def _write_shims(self):
        """The sdist ships test/integration but not test/__init__.py nor test/service.py, which the
        fixtures import. With KAFKA_URI set the fixtures only need an object standing for an external
        broker, so a minimal stand-in (ours) goes into the cached copy; the suite's files stay as shipped."""
        t = self.src / "test"
        if not (t / "__init__.py").exists():
            (t / "__init__.py").write_text("# added by fjord compat/run.py: the sdist omits this file\n")
        if not (t / "service.py").exists():
            (t / "service.py").write_text(
                '"""Stand-in written by fjord compat/run.py (the sdist omits test/service.py)."""\n\n\n'
                "class ExternalService:\n"
                "    def __init__(self, host, port):\n"
                "        self.host, self.port = host, port\n\n"
                "    def start(self):\n        pass\n\n"
                "    def stop(self):\n        pass\n\n"
                "    def dump_logs(self):\n        pass\n\n"
                "    def wait_for(self, pattern, timeout=30):\n        return True\n\n\n"
                "class SpawnedService:\n"
                "    def __init__(self, *args, **kwargs):\n"
                "        raise RuntimeError('compat harness: spawning brokers is not supported; set KAFKA_URI')\n")

    def prepare(self):
        stamp = self.src / ".fjord-compat-ok"
        if stamp.exists() and self.py.exists():
            self._write_shims()
            return
        dl = CACHE / "dl"
        dl.mkdir(parents=True, exist_ok=True)
        if not self.py.exists():
            # the venv's pip also does the download: a system python3 may have no pip
            sh([sys.executable, "-m", "venv", self.venv])
        sdist = dl / f"kafka_python-{self.version}.tar.gz"
        if not sdist.exists():
            sh([self.py, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", dl,
                f"kafka-python=={self.version}"])
        if self.src.exists():
            shutil.rmtree(self.src)
        tmp = CACHE / "unpack"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(sdist) as t:
            t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
        shutil.move(str(tmp / f"kafka_python-{self.version}"), self.src)
        shutil.rmtree(tmp, ignore_errors=True)
        sh([self.py, "-m", "pip", "install", "-q", "pytest", "pytest-mock", "pytest-timeout", "lz4", "zstandard",
            "python-snappy", "crc32c", sdist])
        self._write_shims()
        stamp.touch()

    def _env(self, broker=None):
        env = dict(os.environ)
        env["KAFKA_VERSION"] = KAFKA_VERSION
        env.pop("PYTHONPATH", None)
        # The fixtures insist that a Kafka distribution directory exists even for an external broker
        # (they only check that it is a directory); an empty one will do.
        root = CACHE / "kafka-python-no-kafka-dist"
        root.mkdir(parents=True, exist_ok=True)
        env["KAFKA_ROOT"] = str(root)
        if broker is not None:
            env["KAFKA_URI"] = f"PLAINTEXT://{broker.bootstrap}"
        return env

    def _collect(self):
        if self._collected is None:
            r = subprocess.run([str(self.py), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "test/integration"], cwd=self.src, env=self._env(), capture_output=True, text=True)
            ids = [l.strip() for l in r.stdout.splitlines() if "::" in l and not l.startswith(" ")]
            if not ids:
                raise RuntimeError(f"kafka-python: no tests collected\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
            self._collected = ids
        return self._collected

    def tests(self):
        rows = []
        for nodeid in self._collect():
            f = nodeid.split("::")[0]
            if self.quick and f not in KAFKA_PYTHON_QUICK:
                continue
            both = KAFKA_PYTHON_BOTH_SKIPS.get(f)
            if both and self.quick:
                continue
            fjord_only = next((why for pat, why in KAFKA_PYTHON_FJORD_SKIPS.items() if pat in nodeid), None)
            rows.append((nodeid, "default", both, fjord_only))
        return rows

    def broker_settings(self, group):
        # as the suite's own fixture: broker id 0 (test_create_partitions assigns replicas to broker 0), and
        # an authorizer (test_create_describe_delete_acls)
        return {"node.id": 0, "num.partitions": 4, "auto.create.topics.enable": "true", **AUTHORIZER}

    def command(self):
        return (f"cd ~/.cache/fjord-compat/kafka-python-{self.version} && KAFKA_VERSION=4.3.1 "
                f"KAFKA_URI=PLAINTEXT://127.0.0.1:PORT python -m pytest -o addopts= --timeout=120 "
                f"test/integration/...")

    def run_group(self, broker, group, names, logdir):
        junit = logdir / f"kafka-python-{broker.kind}.xml"
        logp = logdir / f"kafka-python-{broker.kind}.log"
        argsf = logdir / f"kafka-python-{broker.kind}.args"
        argsf.write_text("\n".join(names) + "\n")
        cmd = [self.py, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", f"--timeout={self.timeout_s}",
               "--timeout-method=thread", "-q", "-rs", f"--junitxml={junit}", f"@{argsf}"]
        if junit.exists():
            junit.unlink()
        # overall bound: every test at its timeout would be far more than needed
        rc, out = run_test_proc(cmd, self.src, self._env(broker), self.timeout_s * max(len(names), 1) // 2 + 300, logp)
        results = {}
        if junit.exists():
            for tc in ET.parse(junit).getroot().iter("testcase"):
                cls = tc.get("classname", "")
                name = tc.get("name", "")
                parts = cls.split(".")
                # classname "test.integration.test_x[.Class]" -> node id "test/integration/test_x.py[::Class]::name"
                mod_end = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
                nodeid = "/".join(parts[:mod_end + 1]) + ".py"
                for p in parts[mod_end + 1:]:
                    nodeid += "::" + p
                nodeid += "::" + name
                secs = float(tc.get("time", "0") or 0)
                fail = tc.find("failure")
                if fail is None:
                    fail = tc.find("error")
                skipped = tc.find("skipped")
                if fail is not None:
                    msg = (fail.get("message") or "").splitlines()
                    results[nodeid] = {"status": FAIL, "detail": (msg[0] if msg else "failed")[:300], "secs": secs}
                elif skipped is not None:
                    results[nodeid] = {"status": SKIP, "detail": (skipped.get("message") or "skipped")[:300],
                                       "secs": secs}
                else:
                    results[nodeid] = {"status": PASS, "detail": "", "secs": secs}
        for n in names:
            if n not in results:
                results[n] = {"status": FAIL, "detail": "no result (pytest " +
                              ("timed out" if rc is None else f"exit {rc}") + ")", "secs": 0}
        return results


# ---- rust-rdkafka

RUST_RDKAFKA_VERSION = "0.39.0"
RUST_RDKAFKA_FJORD_SKIPS_FILES: dict[str, str] = {}
RUST_RDKAFKA_QUICK = {"test_high_producers", "test_metadata", "test_admin", "test_low_producers"}
RUST_RDKAFKA_QUICK_TESTS = {"test_high_consumers::test_produce_consume_base",
                            "test_high_consumers::test_consumer_commit_message",
                            "test_low_consumers::test_produce_consume_seek"}


class RustRdkafka(Suite):
    name = "rust-rdkafka"
    # Some of its tests ignore KAFKA_HOST: `future_producer` bootstraps from "localhost" (port 9092)
    # and test_metadata asserts port 9092 (its docker-compose set-up).
    preferred_port = 9092
    description = (f"rust-rdkafka {RUST_RDKAFKA_VERSION}'s integration tests (`tests/` of the crates.io crate "
                   f"rdkafka, bundling librdkafka {LIBRDKAFKA_VERSION}), each test binary's tests one at a time with "
                   f"KAFKA_HOST pointing at the broker")
    timeout_s = 120

    def __init__(self, quick):
        super().__init__(quick)
        self.src = CACHE / f"rdkafka-{RUST_RDKAFKA_VERSION}"
        self.target = CACHE / "rdkafka-target"
        self.bins_file = CACHE / f"rdkafka-{RUST_RDKAFKA_VERSION}.bins.json"

    def prepare(self):
        if self.bins_file.exists() and all(Path(p).exists() for p in json.loads(self.bins_file.read_text()).values()):
            return
        cargo = os.environ.get("CARGO", "cargo")
        if not (self.src / "Cargo.toml").exists():
            fetch = CACHE / "fetch-rdkafka"
            (fetch / "src").mkdir(parents=True, exist_ok=True)
            (fetch / "Cargo.toml").write_text(
                '[package]\nname = "fjord-compat-fetch"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
                f'[dependencies]\nrdkafka = "={RUST_RDKAFKA_VERSION}"\n')
            (fetch / "src" / "main.rs").write_text("fn main() {}\n")
            sh([cargo, "fetch", "--manifest-path", fetch / "Cargo.toml"])
            home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
            crates = glob.glob(str(home / "registry" / "cache" / "*" / f"rdkafka-{RUST_RDKAFKA_VERSION}.crate"))
            if not crates:
                raise RuntimeError("rdkafka crate not found in cargo's registry cache")
            tmp = CACHE / "unpack"
            shutil.rmtree(tmp, ignore_errors=True)
            with tarfile.open(crates[0]) as t:
                t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
            if self.src.exists():
                shutil.rmtree(self.src)
            shutil.move(str(tmp / f"rdkafka-{RUST_RDKAFKA_VERSION}"), self.src)
            shutil.rmtree(tmp, ignore_errors=True)
        env = dict(os.environ, CARGO_TARGET_DIR=str(self.target))
        blog = CACHE / "rust-rdkafka-build.log"
        log("building rust-rdkafka's integration tests (compiles librdkafka; minutes on 2 cores)")
        r = subprocess.run([cargo, "test", "--tests", "--no-run", "--locked", "--message-format=json"],
                           cwd=self.src, env=env, stdout=subprocess.PIPE, stderr=open(blog, "ab"))
        if r.returncode != 0:
            raise RuntimeError(f"rust-rdkafka test build failed, see {blog}")
        bins = {}
        for line in r.stdout.decode(errors="replace").splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            tgt = msg.get("target", {})
            if msg.get("reason") == "compiler-artifact" and msg.get("executable") and "test" in tgt.get("kind", []):
                bins[tgt["name"]] = msg["executable"]
        if not bins:
            raise RuntimeError("rust-rdkafka: no integration test binaries built")
        self.bins_file.write_text(json.dumps(bins, indent=1))

    def bins(self) -> dict:
        return json.loads(self.bins_file.read_text())

    def tests(self):
        rows = []
        for stem, exe in sorted(self.bins().items()):
            r = subprocess.run([exe, "--list", "--format=terse"], capture_output=True, text=True)
            for line in r.stdout.splitlines():
                if not line.endswith(": test"):
                    continue
                tname = f"{stem}::{line[:-len(': test')]}"
                if self.quick and stem not in RUST_RDKAFKA_QUICK and tname not in RUST_RDKAFKA_QUICK_TESTS:
                    continue
                # every binary also carries utils.rs's own broker test, which needs no missing feature
                fjord_only = None if "::utils::" in tname else RUST_RDKAFKA_FJORD_SKIPS_FILES.get(stem)
                rows.append((tname, "default", None, fjord_only))
        return rows

    def broker_settings(self, group):
        # rust-rdkafka's docker-compose.yaml: node id 0, 3 partitions per auto-created topic
        return {"node.id": 0, "num.partitions": 3, "auto.create.topics.enable": "true"}

    def command(self):
        return ("KAFKA_HOST=127.0.0.1:PORT KAFKA_VERSION=4.3.1 "
                "~/.cache/fjord-compat/rdkafka-target/debug/deps/<test_binary>-HASH --exact <test> --test-threads=1")

    def run_group(self, broker, group, names, logdir):
        bins = self.bins()
        env = dict(os.environ, KAFKA_HOST=broker.bootstrap, KAFKA_VERSION=KAFKA_VERSION, RUST_LOG="off",
                   RUST_BACKTRACE="1")
        logp = logdir / f"rust-rdkafka-{broker.kind}.log"
        results = {}
        for n in names:
            if not broker.alive():
                broker.restart_fresh()
                env["KAFKA_HOST"] = broker.bootstrap
            stem, tname = n.split("::", 1)
            t0 = time.monotonic()
            rc, out = run_test_proc([bins[stem], "--exact", tname, "--test-threads=1"], self.src, env,
                                    self.timeout_s, logp)
            secs = time.monotonic() - t0
            if rc is None:
                res = {"status": FAIL, "detail": f"timeout after {self.timeout_s}s"}
            elif rc == 0 and re.search(r"test result: ok\. 1 passed", out):
                res = {"status": PASS, "detail": ""}
            elif rc == 0 and re.search(r"1 ignored", out):
                res = {"status": SKIP, "detail": "#[ignore] upstream"}
            else:
                m = re.search(r"panicked at [^\n]*\n((?:[^\n]+\n?){1,3})", out)
                detail = " / ".join(l.strip() for l in m.group(1).splitlines() if l.strip()) if m else f"exit {rc}"
                res = {"status": FAIL, "detail": detail[:300]}
            res["secs"] = secs
            if not broker.alive():
                res["detail"] = (res["detail"] + "; broker exited").strip("; ")
            results[n] = res
            log(f"rust-rdkafka/{broker.kind} {n}: {res['status']} ({secs:.0f}s) {res['detail'][:120]}")
        return results


SUITES = {"librdkafka": Librdkafka, "kafka-python": KafkaPython, "rust-rdkafka": RustRdkafka}


# --------------------------------------------------------------------------------------------- running

def result_path(suite: str, broker: str, quick: bool) -> Path:
    return RESULTS / f"{suite}.{broker}.{'quick' if quick else 'full'}.json"


def run_suite(suite: Suite, kind: str, only: str | None = None) -> dict:
    rows = suite.tests()
    if only:
        pats = [p for p in only.split(",") if p]
        rows = [r for r in rows if any(p in r[0] for p in pats)]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = RUNS / f"{stamp}-{suite.name}-{kind}"
    logdir.mkdir(parents=True, exist_ok=True)
    results = {}
    groups = []
    for name, group, both, fjord_only in rows:
        if both:
            results[name] = {"status": SKIP, "detail": both, "secs": 0}
        elif kind == "fjord" and fjord_only:
            results[name] = {"status": SKIP, "detail": fjord_only, "secs": 0}
        else:
            if group not in groups:
                groups.append(group)
    started = time.monotonic()
    for group in groups:
        names = [r[0] for r in rows if r[1] == group and r[0] not in results]
        if not names:
            continue
        settings = suite.broker_settings(group)
        if kind == "kafka":
            settings.update(suite.kafka_settings(group))
        broker = suite.make_broker(kind, group, settings, logdir)
        broker.start()
        try:
            results.update(suite.run_group(broker, group, names, logdir))
        finally:
            broker.stop()
    if RETRY_FAILED:
        retry_failed(suite, kind, rows, results, logdir)
    ordered = {r[0]: results[r[0]] for r in rows if r[0] in results}
    doc = {"suite": suite.name, "broker": kind, "quick": suite.quick,
           "build": (_BUILD_INFO or fjord_build_info()) if kind == "fjord" else f"Apache Kafka {KAFKA_VERSION}", "date": _dt.date.today().isoformat(),
           "seconds": round(time.monotonic() - started), "logs": str(logdir), "description": suite.description,
           "command": suite.command(), "results": ordered}
    RESULTS.mkdir(parents=True, exist_ok=True)
    if only:
        print(json.dumps(ordered, indent=1))
        if not MERGE:
            return doc
        old = load(suite.name, kind, suite.quick)
        if old is None:
            raise RuntimeError(f"--merge: no stored results for {suite.name}/{kind}")
        old["results"].update(ordered)
        old.setdefault("reruns", []).append({"tests": only, "date": doc["date"], "logs": doc["logs"]})
        doc = old
    result_path(suite.name, kind, suite.quick).write_text(json.dumps(doc, indent=1))
    log(f"{suite.name}/{kind}: {counts(ordered)} in {doc['seconds']}s (logs {logdir})")
    return doc


def retry_failed(suite: Suite, kind: str, rows: list, results: dict, logdir: Path) -> None:
    """Runs each failed test once more, on a fresh broker per group; the second result counts and the
    detail says that it was a retry (timing-sensitive tests on a shared 2-core machine flake)."""
    failed = [r for r in rows if results.get(r[0], {}).get("status") == FAIL]
    for group in dict.fromkeys(r[1] for r in failed):
        names = [r[0] for r in failed if r[1] == group]
        settings = suite.broker_settings(group)
        if kind == "kafka":
            settings.update(suite.kafka_settings(group))
        log(f"{suite.name}/{kind}: retrying {', '.join(names)}")
        broker = suite.make_broker(kind, group, settings, logdir)
        broker.start()
        try:
            again = suite.run_group(broker, group, names, logdir)
        finally:
            broker.stop()
        for n, r in again.items():
            first = results[n]["detail"]
            r["detail"] = (f"passed on retry (first run: {first})" if r["status"] == PASS
                           else f"failed twice: {r['detail']}")[:2000]
            results[n] = r


def load_baseline(suite: str, quick: bool):
    """Kafka's stored results for the suite, else the committed baseline."""
    kf = load(suite, "kafka", quick)
    if kf is not None or not BASELINE_FILE.exists():
        return kf
    base = json.loads(BASELINE_FILE.read_text()).get(suite, {}).get("quick" if quick else "full")
    if base is None:
        return None
    return {"results": {t: {"status": st, "detail": "committed baseline", "secs": 0} for t, st in base.items()}}


def write_baseline() -> None:
    old_doc = json.loads(BASELINE_FILE.read_text()) if BASELINE_FILE.exists() else {}
    doc = {}
    for s in SUITES:
        full = load(s, "kafka", False)
        for q in (True, False):
            kf = load(s, "kafka", q)
            if kf:
                # The quick subset's tests take their result from the newer full run when it has them.
                newer = full and full["date"] >= kf["date"] and q
                doc.setdefault(s, {})["quick" if q else "full"] = {
                    t: (full["results"].get(t, r) if newer else r)["status"] for t, r in kf["results"].items()}
            elif q and full and "quick" in old_doc.get(s, {}):
                # No stored quick run: the committed quick subset, each test's result from the full run.
                doc.setdefault(s, {})["quick"] = {
                    t: full["results"].get(t, {"status": st})["status"] for t, st in old_doc[s]["quick"].items()}
            elif s in old_doc and ("quick" if q else "full") in old_doc[s]:
                doc.setdefault(s, {})["quick" if q else "full"] = old_doc[s]["quick" if q else "full"]
    BASELINE_FILE.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    log(f"wrote {BASELINE_FILE}")


def counts(results: dict) -> dict:
    c = {PASS: 0, FAIL: 0, SKIP: 0}
    for r in results.values():
        c[r["status"]] += 1
    return c


def load(suite: str, broker: str, quick: bool):
    p = result_path(suite, broker, quick)
    return json.loads(p.read_text()) if p.exists() else None


def load_causes() -> dict:
    if CAUSES_FILE.exists():
        return json.loads(CAUSES_FILE.read_text())
    return {}


# --------------------------------------------------------------------------------------------- report

def cell(r) -> str:
    return r["status"] if r else "-"


def print_table(suite: str, fj, kf) -> None:
    names = list((fj or {}).get("results", {}).keys())
    for n in (kf or {}).get("results", {}):
        if n not in names:
            names.append(n)
    w = max([len(n) for n in names] + [4])
    print(f"\n== {suite}")
    print(f"{'test':<{w}}  {'fjord':<5}  {'kafka':<5}  reason")
    for n in names:
        a = (fj or {}).get("results", {}).get(n)
        b = (kf or {}).get("results", {}).get(n)
        reason = ""
        for r in (a, b):
            if r and r["status"] != PASS and r.get("detail") and r["detail"] not in reason:
                reason += ("; " if reason else "") + r["detail"]
        print(f"{n:<{w}}  {cell(a):<5}  {cell(b):<5}  {reason[:160]}")
    for label, d in (("fjord", fj), ("kafka", kf)):
        if d:
            c = counts(d["results"])
            print(f"{label}: {c[PASS]} passed, {c[FAIL]} failed, {c[SKIP]} skipped ({d['seconds']}s, {d['date']})")


def md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def rate(c: dict) -> str:
    ran = c[PASS] + c[FAIL]
    return f"{100.0 * c[PASS] / ran:.0f}%" if ran else "-"


def render_md(quick: bool) -> str:
    causes = load_causes()
    out = [BEGIN, "", f"## Results ({'quick subset' if quick else 'full run'})", ""]
    out.append("Generated by `python3 compat/run.py` (also `cargo xtask compat`); do not edit between the markers.")
    out.append("")
    out.append("| suite | broker | passed | failed | skipped | pass rate (of run) | date | duration |")
    out.append("|---|---|---:|---:|---:|---:|---|---:|")
    docs = {}
    for s in SUITES:
        for b in ("fjord", "kafka"):
            d = load(s, b, quick)
            docs[(s, b)] = d
            if d:
                c = counts(d["results"])
                out.append(f"| {s} | {b} | {c[PASS]} | {c[FAIL]} | {c[SKIP]} | {rate(c)} | {d['date']} | "
                           f"{d['seconds']} s |")
    out.append("")
    for s in SUITES:
        fj, kf = docs[(s, "fjord")], docs[(s, "kafka")]
        if not fj and not kf:
            continue
        d = fj or kf
        out += [f"### {s}", "", d["description"] + ".", "", f"Per test: `{d['command']}`", ""]
        if fj:
            out += [f"Fjord: {fj.get('build', 'unknown build')}; logs of the run: `{fj['logs']}`.", ""]
        for label, dd in (("Fjord", fj), ("Kafka", kf)):
            for r in (dd or {}).get("reruns", []):
                out += [f"{label}: re-ran `{r['tests']}` on {r['date']} after harness fixes (logs `{r['logs']}`).", ""]
        fr, kr = (fj or {}).get("results", {}), (kf or {}).get("results", {})
        regress = [n for n in fr if fr[n]["status"] == FAIL and kr.get(n, {}).get("status") == PASS]
        if fj and kf:
            out.append(f"Fjord failures that pass on Kafka: {len(regress)}.")
            out.append("")
            for n in regress:
                cause = causes.get(f"{s}::{n}") or f"not investigated yet (Fjord: {fr[n]['detail']})"
                out.append(f"- `{n}`: {md_escape(cause)}")
            if regress:
                out.append("")
            both_fail = [n for n in fr if fr[n]["status"] == FAIL and kr.get(n, {}).get("status") == FAIL]
            if both_fail:
                out.append(f"Failing on both brokers ({len(both_fail)}):")
                out.append("")
                for n in both_fail:
                    why = causes.get(f"{s}::{n}") or f"Kafka: {kr[n]['detail']}"
                    out.append(f"- `{n}`: {md_escape(why[:400])}")
                out.append("")
            only_kafka = [n for n in fr if fr[n]["status"] == PASS and kr.get(n, {}).get("status") == FAIL]
            if only_kafka:
                out.append(f"Passing on Fjord, failing on Kafka ({len(only_kafka)}):")
                out.append("")
                for n in only_kafka:
                    why = causes.get(f"{s}::{n}") or f"Kafka: {kr[n]['detail']}"
                    out.append(f"- `{n}`: {md_escape(why[:400])}")
                out.append("")
        out += ["<details><summary>all tests</summary>", "", "| test | Fjord | Kafka | reason / detail |",
                "|---|---|---|---|"]
        names = list(fr.keys()) + [n for n in kr if n not in fr]
        for n in names:
            a, b = fr.get(n), kr.get(n)
            reason = ""
            for r in (a, b):
                if r and r["status"] != PASS and r.get("detail") and r["detail"] not in reason:
                    reason += ("; " if reason else "") + r["detail"]
            out.append(f"| `{n}` | {cell(a)} | {cell(b)} | {md_escape(reason[:200])} |")
        out += ["", "</details>", ""]
    out.append(END)
    return "\n".join(out) + "\n"


HEADER = """# Compatibility

Third-party Kafka client test suites, written by the clients' authors, run against Fjord and, on the
same machine, against Apache Kafka {kv} (single-node KRaft from the Maven Central jars, `scripts/kafka.sh`).

## How to run

    cargo xtask compat                      # full run, both brokers, rewrites the results below
    cargo xtask compat --quick              # CI subset (produce, fetch, offsets, admin, groups); prints only;
                                            # ~7 min on 2 cores with warm caches, ~15-18 min cold
    cargo xtask compat librdkafka --broker fjord
    python3 compat/run.py -k 0081 --merge librdkafka --broker fjord   # re-run some tests into the stored results
    python3 compat/run.py --report          # rebuild this file from the stored results

`cargo xtask compat` builds the release binary, runs `tests/e2e/setup.sh` (JDK, Kafka jars) and then
`python3 compat/run.py` with the same arguments.

## Method

- Suites come from the package registries only: librdkafka's tests from the crates.io crate
  `rdkafka-sys` 4.10.0+2.12.1 (the source and build that `../shared/tools/kafka-tools.sh` already
  prepared), kafka-python's from its PyPI sdist (the version pinned in `tests/e2e/setup.sh`), rust-rdkafka's
  from the crates.io crate `rdkafka`. Builds are cached under `~/.cache/fjord-compat`.
- Each suite gets a fresh broker on a free port with a fresh data dir, per broker; tests run one at a time
  with a per-test timeout (librdkafka 300 s per test number, kafka-python 120 s, rust-rdkafka 120 s). Fjord
  runs from a private copy of `target/release/fjord` taken at the start.
- Broker settings mirror each suite's own set-up: librdkafka (trivup's scenarios) 4 partitions per
  auto-created topic, auto-creation on (off for the `noautocreate` scenario, run on a second broker);
  kafka-python node id 0, 4 partitions; rust-rdkafka (its docker-compose) node id 0, 3 partitions.
  Both brokers get Kafka's `StandardAuthorizer` with `allow.everyone.if.no.acl.found=true` for the
  librdkafka and kafka-python suites, whose admin and auth tests create ACLs (kafka-python's own fixture
  does the same).
- librdkafka's SSL and SASL tests run on a broker of their own with SSL (client certificates required),
  SASL_PLAINTEXT and SASL_SSL listeners (PLAIN and SCRAM-SHA-512), certificates made with openssl, and the
  `test.conf` and `SSL_*` variables trivup gives them.
- librdkafka: `test-runner -p1 -Q -L` per test number (`-Q` is upstream's CI "quick" mode; `-L` leaves
  out broker-less tests, listed as skipped). Tests that call Kafka's CLI (`$KAFKA_PATH/bin/kafka-topics.sh`,
  `kafka-configs.sh`, `kafka-acls.sh`) get stand-ins that run the same tool classes from the Kafka jars,
  against whichever broker is under test.
- kafka-python: `pytest test/integration` with `KAFKA_URI` pointing at the broker. Its sdist omits
  `test/__init__.py` and `test/service.py`, which the fixtures import; the harness writes minimal
  stand-ins into the cached copy (an external-broker placeholder; nothing of the suite is changed).
- Skips: a test that needs a feature Fjord lacks yet would be skipped on Fjord only and still run on
  Kafka (none is, since Fjord has transactions and ACLs); a test that needs a set-up this harness does not
  provide (an OIDC token endpoint, a Kafka distribution the test starts itself) is skipped on both;
  every skip shows its reason.
- Tests that need trivup's 3-broker cluster run on three combined nodes (racks RACK1-3) of either broker.
- The full run below ran the Fjord and the Kafka passes at the same time on a 2-core machine shared with
  other work, so timing-sensitive tests can flake on either side; a flaky test is marked as such.

Date of the last full run: {date}.

"""


def write_md(path: Path, quick: bool) -> None:
    body = render_md(quick)
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + body + text[text.index(END) + len(END):].lstrip("\n")
            path.write_text(text)
            log(f"updated {path}")
            return
    path.write_text(HEADER.format(kv=KAFKA_VERSION, date=_dt.date.today().isoformat()) + body)
    log(f"wrote {path}")


# --------------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="the CI subset of every suite")
    ap.add_argument("--broker", choices=["fjord", "kafka", "both"], default="both")
    ap.add_argument("--out", help="write the report here (default: COMPATIBILITY.md for a full run, none for --quick)")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from stored results")
    ap.add_argument("--prepare", action="store_true", help="only fetch and build the suites")
    ap.add_argument("--list", action="store_true", help="list the suites")
    ap.add_argument("-k", dest="only", help="only tests whose name contains one of these comma-separated strings (results not stored, unless --merge)")
    ap.add_argument("--merge", action="store_true",
                    help="with -k: put the results of those tests into the stored results of the suite")
    ap.add_argument("--strict", action="store_true",
                    help="retry failures once; exit 1 if a test fails on Fjord but passes on Kafka (stored "
                         "results, else compat/baseline.json) and is not in compat/expected_failures.json (for CI)")
    ap.add_argument("--write-baseline", action="store_true",
                    help="write compat/baseline.json from the stored Kafka results and exit")
    a = ap.parse_args()
    global MERGE, RETRY_FAILED
    MERGE = a.merge
    RETRY_FAILED = a.strict
    if a.write_baseline:
        write_baseline()
        return 0
    # SIGTERM unwinds like Ctrl-C, so that the brokers and test processes started here are stopped
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if a.list:
        for n, cls in SUITES.items():
            print(f"{n}: {cls.description or 'kafka-python integration tests (PyPI sdist)'}")
        return 0
    names = a.suites or list(SUITES)
    for n in names:
        if n not in SUITES:
            ap.error(f"unknown suite {n!r} (have: {', '.join(SUITES)})")
    kinds = ["fjord", "kafka"] if a.broker == "both" else [a.broker]
    t0 = time.monotonic()
    if not a.report:
        for n in names:
            suite = SUITES[n](a.quick)
            t = time.monotonic()
            suite.prepare()
            log(f"{n}: prepared in {time.monotonic() - t:.0f}s")
            if a.prepare:
                continue
            for k in kinds:
                run_suite(suite, k, a.only)
    if a.prepare or (a.only and not a.merge):
        return 0
    regressions = 0
    new_failures = []
    expected = json.loads(EXPECTED_FILE.read_text()) if EXPECTED_FILE.exists() else {}
    for n in names:
        fj, kf = load(n, "fjord", a.quick), load(n, "kafka", a.quick)
        print_table(n, fj, kf)
        kf = kf or load_baseline(n, a.quick)
        if fj and kf:
            for t, r in fj["results"].items():
                on_kafka = kf["results"].get(t, {}).get("status")
                key = f"{n}::{t}"
                if r["status"] == FAIL and on_kafka == PASS:
                    if key in expected:
                        log(f"known Fjord-only failure {key}: {expected[key]}")
                    else:
                        log(f"NEW Fjord-only failure {key}: {r['detail'][:300]}")
                        new_failures.append(key)
                        regressions += 1
                elif r["status"] == PASS and key in expected:
                    log(f"{key} passes now: remove it from {EXPECTED_FILE.name}")
    out = a.out or (None if a.quick else str(ROOT / "COMPATIBILITY.md"))
    if out:
        write_md(Path(out), a.quick)
    if _SNAPSHOT is not None:
        _SNAPSHOT.unlink(missing_ok=True)
    log(f"done in {time.monotonic() - t0:.0f}s; {regressions} new Fjord-only failure(s)"
        + (f": {', '.join(new_failures)} (logs under {RUNS})" if new_failures else ""))
    return 1 if (a.strict and regressions) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        if _SNAPSHOT is not None:
            _SNAPSHOT.unlink(missing_ok=True)
