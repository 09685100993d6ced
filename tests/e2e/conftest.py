"""Fixtures for the end-to-end suite: the broker under test and the Java client/tool runner.

E2E_BROKER=fjord (default) runs FJORD_BIN (default <repo>/target/release/fjord) as
    FJORD_BIN serve --listen 127.0.0.1:PORT --data-dir DIR [--set NAME=VALUE ...]
E2E_BROKER=kafka runs Apache Kafka 4.3.1 through scripts/kafka.sh (NAME=VALUE become
server.properties lines).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
REPO = E2E_DIR.parent.parent
CACHE = Path(os.environ.get("FJORD_E2E_CACHE", Path.home() / ".cache" / "fjord-e2e"))
KAFKA_LIBS = Path(os.environ.get("KAFKA_LIBS", CACHE / "kafka-4.3.1" / "libs"))
STREAMS_LIBS = Path(os.environ.get("STREAMS_LIBS", CACHE / "kafka-4.3.1" / "streams-libs"))
BROKER_KIND = os.environ.get("E2E_BROKER", "fjord")
FJORD_BIN = Path(os.environ.get("FJORD_BIN", REPO / "target" / "release" / "fjord"))
KAFKA_SH = REPO / "scripts" / "kafka.sh"
KEEP_DIRS = os.environ.get("E2E_KEEP_DIRS") == "1"

if BROKER_KIND not in ("fjord", "kafka"):
    raise pytest.UsageError(f"E2E_BROKER must be 'fjord' or 'kafka', not {BROKER_KIND!r}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Broker:
    """One broker under test: a port, a data dir that survives restarts, and a log file."""

    def __init__(self, kind: str, root: Path, settings: dict[str, str] | None = None):
        self.kind = kind
        self.root = root
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.settings: dict[str, str] = dict(settings or {})
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid: int | None = None
        self._proc: subprocess.Popen | None = None  # fjord only (kafka is detached by kafka.sh)
        # fjord only: start with `serve --config FILE` alone (the file names the listener and data dir)
        self.config_file: Path | None = None
        self.last_exit_code: int | None = None
        if kind == "fjord":
            self.log_path = root / "fjord.log"
        else:
            self.log_path = self.data_dir / "kafka.log"

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 60.0) -> None:
        assert not self.running(), "broker already running"
        if self.kind == "fjord":
            if not FJORD_BIN.exists():
                raise RuntimeError(f"fjord binary not found at {FJORD_BIN} (build it or set FJORD_BIN)")
            if self.config_file is not None:
                cmd = [str(FJORD_BIN), "serve", "--config", str(self.config_file)]
            else:
                cmd = [str(FJORD_BIN), "serve", "--listen", self.bootstrap, "--data-dir", str(self.data_dir)]
                # The same test-friendly group setting scripts/kafka.sh gives Kafka.
                settings = {"group.initial.rebalance.delay.ms": "0", **self.settings}
                for k, v in settings.items():
                    cmd += ["--set", f"{k}={v}"]
            with open(self.log_path, "ab") as log:
                log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
            self.pid = self._proc.pid
            deadline = time.monotonic() + float(os.environ.get("FJORD_START_TIMEOUT_S", timeout_s))
            while not port_open(self.port, 0.2):
                code = self._proc.poll()
                if code is not None:
                    raise RuntimeError(f"fjord exited with {code} during start\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fjord did not accept connections in time\n{self.log_tail()}")
                time.sleep(0.05)
        else:
            cmd = [str(KAFKA_SH), "start", str(self.port), str(self.data_dir)]
            cmd += [f"{k}={v}" for k, v in self.settings.items()]
            env = dict(os.environ)
            env.setdefault("CONTROLLER_PORT", str(free_port()))
            env.setdefault("KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")  # faster start-up; tests are not benchmarks
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout_s, 150), env=env)
            if res.returncode != 0:
                raise RuntimeError(f"kafka.sh start failed: {res.stderr}\n{self.log_tail()}")
            self.pid = int(res.stdout.split()[0])

    def running(self) -> bool:
        if self.pid is None:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM and wait for the process to exit (a clean shutdown)."""
        if not self.running():
            self.pid = None
            return
        if self.kind == "kafka":
            subprocess.run([str(KAFKA_SH), "stop", str(self.data_dir)], check=True, timeout=timeout_s + 30)
        else:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)
            try:
                self.last_exit_code = self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise RuntimeError(f"fjord did not exit within {timeout_s}s of SIGTERM\n{self.log_tail()}")
            self._proc = None
        self.pid = None

    def kill9(self) -> None:
        """SIGKILL, no chance to flush anything."""
        if not self.running():
            return
        assert self.pid is not None
        if self._proc is not None:
            # fjord runs in its own session (start_new_session): kill its whole process group
            os.killpg(self.pid, signal.SIGKILL)
        else:
            os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            self.last_exit_code = self._proc.wait(timeout=30)
            self._proc = None
        else:
            deadline = time.monotonic() + 30
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.pid = None

    def restart(self, settings: dict[str, str] | None = None) -> None:
        self.stop()
        if settings is not None:
            self.settings = dict(settings)
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            data = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no broker log)"
        return "\n".join(data[-lines:])


def pytest_sessionstart(session):
    if session.config.option.collectonly:
        return
    if BROKER_KIND == "fjord" and not FJORD_BIN.exists():
        pytest.exit(
            f"fjord binary not found at {FJORD_BIN}: build it (cargo build --release) or set FJORD_BIN, "
            "or run against Apache Kafka with E2E_BROKER=kafka",
            returncode=2,
        )


def _register(request, broker: Broker) -> None:
    brokers = getattr(request.node, "_e2e_brokers", [])
    brokers.append(broker)
    request.node._e2e_brokers = brokers


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_e2e_brokers", []):
            rep.sections.append((f"{b.kind} broker log tail ({b.log_path})", b.log_tail()))


def _tmp_root(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"fjord-e2e-{prefix}-"))


@pytest.fixture(scope="session")
def _session_broker():
    root = _tmp_root("shared")
    b = Broker(BROKER_KIND, root)
    b.start()
    yield b
    b.stop()
    if not KEEP_DIRS:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def broker(request, _session_broker) -> Broker:
    """The shared broker (default settings), started once per session. Use unique topic names."""
    _register(request, _session_broker)
    if not _session_broker.running():
        # a previous test may have broken it; start it again so later tests still run
        _session_broker.start()
    return _session_broker


@pytest.fixture
def broker_factory(request):
    """Start a private broker: broker_factory(settings={"num.partitions": "3"}) -> started Broker."""
    made: list[tuple[Broker, Path]] = []

    def make(settings: dict[str, str] | None = None, start: bool = True) -> Broker:
        root = _tmp_root("own")
        b = Broker(BROKER_KIND, root, settings)
        made.append((b, root))
        _register(request, b)
        if start:
            b.start()
        return b

    yield make
    for b, root in made:
        try:
            b.kill9() if b.kind == "kafka" else b.stop(timeout_s=20)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            b.kill9()
        if not KEEP_DIRS:
            shutil.rmtree(root, ignore_errors=True)


class Java:
    """Runs Kafka's Java tools and the compiled tests/e2e/java programs."""

    def __init__(self, classes: Path, classpath: str | None = None):
        self.classes = classes
        self.classpath = classpath or f"{classes}:{KAFKA_LIBS}/*"
        self.log4j = E2E_DIR / "log4j2-tools.properties"

    def cmd(self, cls: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            f"-Dlog4j2.configurationFile={self.log4j}",
            "-cp",
            self.classpath,
            cls,
            *args,
        ]

    def run(self, cls: str, *args: str, input: str | None = None, timeout: float = 60, check: bool = True):
        res = subprocess.run(self.cmd(cls, *args), input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(
                f"java {cls} {' '.join(args)} exited {res.returncode}\nstdout:\n{res.stdout[-3000:]}\n"
                f"stderr:\n{res.stderr[-3000:]}"
            )
        return res

    def popen(self, cls: str, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(cls, *args), **kw)


@pytest.fixture(scope="session")
def java() -> Java:
    if shutil.which("java") is None or shutil.which("javac") is None:
        pytest.fail("java/javac not found: run tests/e2e/setup.sh")
    if not (KAFKA_LIBS / "kafka-clients-4.3.1.jar").exists():
        pytest.fail(f"Kafka jars not found in {KAFKA_LIBS}: run tests/e2e/setup.sh")
    return Java(_compile_java(E2E_DIR / "java", f"{KAFKA_LIBS}/*"))


@pytest.fixture(scope="session")
def java_streams() -> Java:
    """Runs the tests/e2e/java-streams programs, built against Kafka Streams 4.3.1 (scripts/kafka.sh
    fetch-streams); Kafka's jars come after the Streams ones, for the log4j binding."""
    if shutil.which("java") is None or shutil.which("javac") is None:
        pytest.fail("java/javac not found: run tests/e2e/setup.sh")
    if not (STREAMS_LIBS / "kafka-streams-4.3.1.jar").exists():
        pytest.fail(f"Kafka Streams jars not found in {STREAMS_LIBS}: run tests/e2e/setup.sh")
    cp = f"{STREAMS_LIBS}/*:{KAFKA_LIBS}/*"
    classes = _compile_java(E2E_DIR / "java-streams", cp)
    return Java(classes, f"{classes}:{cp}")


def _compile_java(src_dir: Path, classpath: str) -> Path:
    """Compiles src_dir/*.java once per content into the cache; returns the classes directory."""
    sources = sorted(src_dir.glob("*.java"))
    h = hashlib.sha256()
    for s in sources:
        h.update(s.name.encode())
        h.update(s.read_bytes())
    classes = CACHE / "classes" / h.hexdigest()[:16]
    if not (classes / ".ok").exists():
        tmp = classes.with_name(classes.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        res = subprocess.run(
            ["javac", "-nowarn", "-d", str(tmp), "-cp", classpath, *map(str, sources)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if res.returncode != 0:
            pytest.fail(f"javac failed:\n{res.stderr}")
        (tmp / ".ok").write_text("ok")
        shutil.rmtree(classes, ignore_errors=True)
        tmp.rename(classes)
    return classes
