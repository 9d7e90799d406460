"""Test fixture helper: N hosts on one Ethernet segment, each in its own network namespace.

```python
with Segment({"a": ["10.98.0.1/24"], "b": ["10.98.0.2/24", "fd00:98::2/64"]}) as lan:
    lan["a"].run("ping", "-c1", "10.98.0.2")        # argv, no shell; raises on failure
    proc = lan["b"].popen("keepalived", "-n", ...)  # killed at teardown
    lan["b"].addresses(4)                           # ['10.98.0.2']
    with lan["a"].enter():                          # this thread is in a's namespace:
        sock = socket.socket(...)                   # sockets opened here stay there
```

Layout: namespace ``saru-<pid><n>-br`` holds bridge ``br0`` (STP and multicast snooping off, so
224.0.0.18 / ff02::12 reach every port); every host namespace ``saru-<pid><n>-<name>`` has ``eth0``,
a veth whose peer ``p<i>`` is a port of ``br0``. Both ends are created inside the namespaces, never in
the root one. IPv6 DAD is off (addresses are usable at once). ``down()`` (or leaving the ``with``)
kills the processes started through ``popen`` and anything else still running in the namespaces,
then deletes the namespaces, even after a failure; it is safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers import netns_usable

ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
_counter = itertools.count()
T = TypeVar("T")


def available() -> tuple[bool, str]:
    """Whether this machine can build segments (root, iproute2, network namespaces)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if shutil.which("ip") is None:
        return False, "iproute2 (ip) is not installed"
    return netns_usable()


class Host:
    """One host of a segment: namespace ``netns`` with interface ``eth0`` on the bridge."""

    interface = "eth0"

    def __init__(self, name: str, netns: str) -> None:
        self.name = name
        self.netns = netns
        self.procs: list[subprocess.Popen[str]] = []

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    def run(self, *argv: str, check: bool = True, timeout: float = 20,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the namespace and wait; ``RuntimeError`` with its stderr if it fails."""
        proc = subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False, input=input, env=_env(), cwd=str(ROOT))
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def popen(self, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` in the namespace (text mode); it is killed at teardown if still running."""
        kwargs.setdefault("env", _env())
        kwargs.setdefault("cwd", str(ROOT))
        proc: subprocess.Popen[str] = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], text=True,
                                                       **kwargs)
        self.procs.append(proc)
        return proc

    def ip(self, *args: str) -> str:
        """``ip -n <netns> ARGS``; returns stdout."""
        proc = subprocess.run(["ip", "-n", self.netns, *args], capture_output=True, text=True, check=False,
                              timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: ip {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def add_address(self, *cidrs: str, interface: str | None = None) -> None:
        """Add addresses (``10.0.0.1/24``, ``fd00::1/64``) to ``eth0`` (or ``interface``)."""
        for cidr in cidrs:
            extra = ["nodad"] if ":" in cidr else []
            self.ip("addr", "add", cidr, "dev", interface or self.interface, *extra)

    def addresses(self, family: int | None = None, interface: str | None = None,
                  scope: str | None = None) -> list[str]:
        """Addresses on ``eth0`` (or ``interface``) right now, optionally one family / scope only."""
        out = self.ip("-j", "addr", "show", "dev", interface or self.interface)
        found = []
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                fam = 4 if info.get("family") == "inet" else 6
                if (family is None or fam == family) and (scope is None or info.get("scope") == scope):
                    found.append(info["local"])
        return found

    def link_local(self, interface: str | None = None) -> str:
        """The IPv6 link-local address of ``eth0`` (or ``interface``)."""
        found = self.addresses(6, interface, scope="link")
        if not found:
            raise RuntimeError(f"{self.name}: no IPv6 link-local address on {interface or self.interface}")
        return found[0]

    def mac(self, interface: str | None = None) -> str:
        out = self.ip("-j", "link", "show", "dev", interface or self.interface)
        return str(json.loads(out)[0]["address"])

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Switch the *calling thread* into this namespace for the block (sockets opened inside stay here).

        Only this thread moves; subprocesses started inside inherit the namespace. Keep the block short
        and free of ``await`` on other work that opens sockets: the event loop's thread is the one moved.
        """
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{self.netns}", "rb") as there:
            if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({self.netns}): {os.strerror(err)}")
            try:
                yield
            finally:
                if libc.setns(home.fileno(), CLONE_NEWNET) != 0:  # pragma: no cover - would be fatal
                    err = ctypes.get_errno()
                    raise OSError(err, f"cannot return to the original namespace: {os.strerror(err)}")

    def stop_processes(self) -> None:
        """Terminate (then kill) what ``popen`` started and whatever else still runs in the namespace."""
        for proc in self.procs:
            stop_process(proc)
        self.procs.clear()
        pids = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


class Segment:
    """Hosts named by ``hosts`` (name -> addresses for eth0) on one bridge; see the module docstring."""

    def __init__(self, hosts: Mapping[str, Sequence[str]], *, tag: str = "") -> None:
        self.id = f"{os.getpid()}{tag}{next(_counter)}"
        self.spec = {name: tuple(addrs) for name, addrs in hosts.items()}
        self.bridge_ns = f"saru-{self.id}-br"
        self.hosts = {name: Host(name, f"saru-{self.id}-{name}") for name in hosts}
        self._made: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Segment:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> Segment:
        """Create namespaces, bridge, veths and addresses; tears down what was made if a step fails."""
        try:
            self._add_ns(self.bridge_ns)
            _ip(self.bridge_ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
            _ip(self.bridge_ns, "link", "set", "br0", "up")
            for i, (name, host) in enumerate(self.hosts.items(), 1):
                self._add_ns(host.netns)
                for key in ("all", "default"):
                    host.sysctl(f"net.ipv6.conf.{key}.accept_dad", "0")
                _ip(self.bridge_ns, "link", "add", f"p{i}", "type", "veth", "peer", "name", host.interface,
                    "netns", host.netns)
                _ip(self.bridge_ns, "link", "set", f"p{i}", "master", "br0", "up")
                _ip(host.netns, "link", "set", host.interface, "up")
                host.add_address(*self.spec[name])
            for host in self.hosts.values():
                wait_for(lambda h=host: bool(h.addresses(6, scope="link")), 5,
                         what=f"{host.name}: IPv6 link-local address")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Kill processes, delete every namespace made (each step tolerant of the others failing)."""
        for host in self.hosts.values():
            if host.netns in self._made:
                host.stop_processes()
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self._made.clear()

    def _add_ns(self, name: str) -> None:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self._made.append(name)
        _ip(name, "link", "set", "lo", "up")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL (by the process's own pid)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_for(predicate: Callable[[], T], timeout: float, *, interval: float = 0.01, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float, *, interval: float = 0.01,
                         what: str = "condition") -> T:
    """``wait_for`` for coroutines: the loop keeps running (timers, sockets) while we poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)


def _ip(netns: str, *args: str) -> None:
    proc = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False, timeout=20)
    if proc.returncode != 0:
        raise RuntimeError(f"ip -n {netns} {' '.join(args)} failed: {proc.stderr.strip()}")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class NsLoop:
    """An asyncio loop on a thread that entered ``host``'s network namespace and never leaves it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=f"ns-{host.name}", daemon=True)
        self.thread.start()
        ready.wait(10)
        if self.error is not None or self.loop is None:
            raise RuntimeError(f"cannot run a loop in {host.netns}: {self.error}")

    def _main(self, ready: threading.Event) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            path = f"/run/netns/{self.host.netns}"
            with open(path, "rb") as ns:
                if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({path}) failed")
            if os.stat("/proc/thread-self/ns/net").st_ino != os.stat(path).st_ino:
                raise RuntimeError("the thread is not in the namespace after setns")
            loop = asyncio.new_event_loop()
            self.loop = loop
        except BaseException as exc:  # reported by the constructor
            self.error = exc
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Any, *args: Any) -> Any:
        """Run a plain function in the namespace's thread (for namespace-dependent sync calls)."""
        async def wrapper() -> Any:
            return func(*args)
        return self.run(wrapper())

    def close(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
