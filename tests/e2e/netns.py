"""Network namespaces for fault tests: hosts on a private bridge that a test can cut off and heal.

    with Topology(["n1", "n2", "n3", "client"]) as net:
        net.addr("n1")                    # "10.213.K.1": the host's address on the bridge
        net.popen("n1", argv, ...)        # a process inside host n1's namespace
        with net.inside("client"):        # this thread (and threads it starts now) in the client's namespace
            ...
        net.cut("n1"); net.heal("n1")     # the host's link down / up: no packet in or out

Every host is a namespace of its own with one veth into a bridge that lives in a namespace of its own too,
so nothing is added to the machine's own network (no address, no route, no interface outside the
namespaces made here). Addresses are 10.213.K.i/24 with K from the process id, so that two runs at the
same time do not share a bridge. Needs root and iproute2 (`ip netns`); `available()` says whether this
machine allows it. Everything is removed on exit, also after a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    probe = f"fjprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        return f"ip netns add failed: {e}"
    _ip("netns", "del", probe)
    return None


class Topology:
    def __init__(self, hosts: list[str]):
        self.k = 20 + os.getpid() % 200
        self.tag = f"fj{self.k}"
        self.bridge_ns = f"{self.tag}-br"
        self.hosts = {h: i + 1 for i, h in enumerate(hosts)}
        self.made: list[str] = []
        self._libc = ctypes.CDLL(None, use_errno=True)

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def addr(self, host: str) -> str:
        return f"10.213.{self.k}.{self.hosts[host]}"

    def __enter__(self) -> "Topology":
        try:
            _ip("netns", "add", self.bridge_ns)
            self.made.append(self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            for host, i in self.hosts.items():
                ns = self.ns(host)
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", self.bridge_ns)
                _ip("-n", self.bridge_ns, "link", "set", f"p{i}", "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made.clear()

    def popen(self, host: str, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], **kw)

    def run(self, host: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], **kw)

    def cut(self, host: str) -> None:
        """The host's only link goes down: nothing reaches it, nothing leaves it (its processes keep running)."""
        _ip("-n", self.ns(host), "link", "set", "eth0", "down")

    def heal(self, host: str) -> None:
        _ip("-n", self.ns(host), "link", "set", "eth0", "up")

    @contextlib.contextmanager
    def inside(self, host: str):
        """Runs the calling thread in `host`'s namespace (threads it starts meanwhile stay there); back after."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.ns(host)}", os.O_RDONLY)
        try:
            if self._libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.ns(host))
            yield
        finally:
            if self._libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(home)
            os.close(target)
