"""Network namespaces for the tests: one ``Host`` per namespace, a ``Lab`` that makes and removes them.

```python
class Pair(Lab):
    roles = ("sw", "a", "b")
    def up(self) -> Self:
        super().up()                                  # namespaces saru-<id>-sw, -a, -b, lo up in each
        self.bridge("sw", "lan", "stp_state", "0")
        for role in ("a", "b"):
            self.plug(role, "sw", "lan", f"p-{role}")  # a's eth0 <-> sw's p-a, a port of lan
        self.add_address("a", "10.9.0.1/24")
        return self

with Pair() as lab:                                    # down() even when up() or the block fails
    lab["a"].run("ping", "-c1", "10.9.0.1")            # argv, no shell; RuntimeError if it fails
    lab.popen("b", "nginx", ...)                       # stopped at teardown
```

Every namespace is named ``saru-<id>-<role>`` with an id unique to the process and the lab; nothing is
created in the root namespace (veth pairs are made inside a namespace, their peer moved into another).
``down()`` stops the processes started through ``popen`` (SIGTERM, SIGKILL after 5 s), SIGKILLs whatever
else still runs in the namespaces, then deletes them; it is safe after a failed ``up`` and when called
twice. ``Lab.run(role, …)`` and the other role-addressed methods are shorthand for ``lab[role].run(…)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from tests.lab.probe import can_build
from tests.lab.procs import kill_namespace, stop_processes

ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
_counter = itertools.count()


def setns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (``/run/netns/<name>``, ``/proc/…``)."""
    with open(path, "rb") as ns:
        setns_fd(ns.fileno(), path)


def setns_fd(fd: int, what: str) -> None:
    """Move the calling thread into the network namespace open as ``fd`` (``what`` names it in errors)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


def checked(proc: subprocess.CompletedProcess[str], who: str,
            argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``proc`` if it exited 0, else ``RuntimeError`` naming ``who``, the command and its stderr (or stdout)."""
    if proc.returncode != 0:
        raise RuntimeError(f"{who}: {' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc


class Host:
    """One network namespace ``netns`` of a lab, known in the test as ``name`` (its role)."""

    interface = "eth0"

    def __init__(self, name: str, netns: str, lab: Lab) -> None:
        self.name = name
        self.netns = netns
        self.lab = lab
        self.procs: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    def run(self, *argv: str, check: bool = True, timeout: float | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the namespace and wait; ``RuntimeError`` with its stderr if it fails."""
        proc = subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True,
                              timeout=timeout or self.lab.timeout, check=False, input=input, env=self.lab.environ(),
                              cwd=self.lab.cwd)
        return checked(proc, self.name, argv) if check else proc

    def popen(self, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` in the namespace (text mode); it is stopped at teardown if still running."""
        kwargs.setdefault("env", self.lab.environ())
        kwargs.setdefault("cwd", self.lab.cwd)
        proc: subprocess.Popen[str] = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], text=True,
                                                       **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, module: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """``python -m module args`` (this interpreter, the repository on ``PYTHONPATH``) via ``popen``."""
        return self.popen(sys.executable, "-m", module, *args, **kwargs)

    def ip(self, *args: str) -> str:
        """``ip -n <netns> ARGS``; returns stdout."""
        proc = subprocess.run(["ip", "-n", self.netns, *args], capture_output=True, text=True, check=False,
                              timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: ip {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def sysctl(self, *settings: str) -> None:
        """``sysctl -w key=value …`` in the namespace."""
        self.run("sysctl", "-qw", *settings)

    def nft(self, script: str) -> None:
        """``nft -f -`` with ``script`` in the namespace."""
        self.run("nft", "-f", "-", input=script)

    def add_address(self, *cidrs: str, interface: str | None = None) -> None:
        """Add addresses (``10.0.0.1/24``, ``fd00::1/64``: no DAD) to ``eth0`` (or ``interface``)."""
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
        with open("/proc/thread-self/ns/net", "rb") as home:
            setns(f"/run/netns/{self.netns}")
            try:
                yield
            finally:
                setns_fd(home.fileno(), "the original namespace")


class Lab:
    """The namespaces ``saru-<id>-<role>`` of one test (``roles``), their links, processes and teardown.

    Subclasses name their ``roles`` and extend ``up()``; ``env``, ``cwd`` and ``timeout`` are what
    ``Host.run``/``popen`` use (by default the repository on ``PYTHONPATH`` and as working directory).
    """

    roles: ClassVar[tuple[str, ...]] = ()
    tag: ClassVar[str] = "l"
    env: ClassVar[Mapping[str, str]] = {"PYTHONPATH": str(ROOT)}
    cwd: ClassVar[Path | None] = ROOT
    timeout: ClassVar[float] = 20

    def __init__(self, roles: Iterable[str] | None = None, *, tag: str | None = None) -> None:
        self.id = f"{tag if tag is not None else self.tag}{os.getpid() % 100000}x{next(_counter)}"
        self.namespaces = {role: Host(role, f"saru-{self.id}-{role}", self)
                           for role in (self.roles if roles is None else roles)}
        self.made: list[str] = []

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether this machine can build the lab (root, iproute2, network namespaces); subclasses that
        need more programs say so here."""
        return can_build()

    def __getitem__(self, role: str) -> Host:
        return self.namespaces[role]

    def __enter__(self) -> Self:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    # -- building ---------------------------------------------------------------------------------

    def up(self) -> Self:
        """Create every namespace (``lo`` up); subclasses add links and addresses."""
        self.create(*self.namespaces)
        return self

    def create(self, *roles: str) -> None:
        for role in roles:
            name = self[role].netns
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            self.made.append(name)
            self[role].ip("link", "set", "lo", "up")

    def bridge(self, role: str, name: str, *options: str) -> None:
        """A bridge ``name`` in ``role``'s namespace (``options``: ``stp_state 0`` …), up."""
        self[role].ip("link", "add", name, "type", "bridge", *options)
        self[role].ip("link", "set", name, "up")

    def veth(self, role: str, interface: str, peer_role: str, peer_interface: str) -> None:
        """A veth pair: ``interface`` in ``role``'s namespace, ``peer_interface`` in ``peer_role``'s (both down)."""
        self[role].ip("link", "add", interface, "type", "veth", "peer", "name", peer_interface, "netns",
                      self[peer_role].netns)

    def plug(self, role: str, bridge_role: str, bridge: str, port: str, interface: str = "eth0") -> None:
        """``role``'s ``interface`` cabled to port ``port`` of ``bridge`` in ``bridge_role``; both ends up."""
        self.veth(role, interface, bridge_role, port)
        self[bridge_role].ip("link", "set", port, "master", bridge, "up")
        self[role].ip("link", "set", interface, "up")

    # -- role-addressed shorthand for lab[role].… ---------------------------------------------------

    def run(self, role: str, *argv: str, check: bool = True, timeout: float | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self[role].run(*argv, check=check, timeout=timeout, input=input)

    def popen(self, role: str, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
        return self[role].popen(*argv, **kwargs)

    def python(self, role: str, module: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return self[role].python(module, *args, **kwargs)

    def ip(self, role: str, *args: str) -> str:
        return self[role].ip(*args)

    def sysctl(self, role: str, *settings: str) -> None:
        self[role].sysctl(*settings)

    def nft(self, role: str, script: str) -> None:
        self[role].nft(script)

    def add_address(self, role: str, *cidrs: str, interface: str | None = None) -> None:
        self[role].add_address(*cidrs, interface=interface)

    def mac(self, role: str, interface: str | None = None) -> str:
        return self[role].mac(interface)

    # -- teardown ---------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop processes, SIGKILL the rest, delete every namespace made (each step tolerant of the others)."""
        stop_processes([proc for host in self.namespaces.values() for proc in host.procs])
        for host in self.namespaces.values():
            host.procs.clear()
        for name in self.made:
            kill_namespace(name)
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.made.clear()
