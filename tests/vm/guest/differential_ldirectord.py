"""Helpers of the differential test: the original Perl ldirectord in the foreground, loopback HTTP
real servers, and a settled, comparable view of the kernel's IPVS table.

ldirectord is run as ``ldirectord -d <cf> start`` (foreground, no pid file, every log line and
debug line on stderr; research ldirectord.md §3.1) and stopped with SIGTERM, after which its
``cleanstop`` removes its virtual services (§3.2).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from tests.vm.guest.conftest import ipvsadm
from tests.vm.guest.lvs_nat import port_open, wait_until

#: One line of ldirectord's debug output per real server checked (l.2870-2932 of ldirectord).
LD_CHECK_LINE = re.compile(r"^DEBUG\d: Checking (negotiate|connect|ping|external|on|off|combined)")

#: A settled table: service line → sorted destination lines, counters dropped.
Listing = dict[str, list[str]]


def comparable_listing() -> Listing:
    """``ipvsadm -Ln`` without the connection counters (they depend on traffic, not on the director):
    each service line maps to its sorted ``-> address:port Forward Weight`` lines."""
    out: Listing = {}
    current: list[str] | None = None
    for line in ipvsadm("-Ln").splitlines()[3:]:  # version and two column-header lines
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "->":
            assert current is not None, line
            current.append(" ".join(fields[:4]))
        else:
            current = out.setdefault(" ".join(fields), [])
    return {service: sorted(dests) for service, dests in sorted(out.items())}


def render(table: Listing) -> list[str]:
    """A listing as text lines, services and destinations sorted."""
    lines = []
    for service, dests in table.items():
        lines.append(service)
        lines += [f"  {dest}" for dest in dests]
    return lines


def table_diff(expected: Listing, actual: Listing, names: tuple[str, str]) -> str:
    """A unified diff of two listings (empty when they are equal)."""
    return "\n".join(difflib.unified_diff(render(expected), render(actual), *names, lineterm=""))


def settled_listing(interval: float, timeout: float) -> Listing:
    """Poll the table every ``interval`` until two consecutive reads agree (deadline ``timeout``)."""
    deadline = time.monotonic() + timeout
    previous = comparable_listing()
    while True:
        time.sleep(interval)  # polling the kernel table with a deadline, not synchronisation
        current = comparable_listing()
        if current == previous:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"the IPVS table did not settle within {timeout}s:\n" + "\n".join(render(current)))
        previous = current


class OriginalLdirectord:
    """``ldirectord -d <config> start`` as a child process; its stderr lines are collected."""

    def __init__(self, config: Path, workdir: Path) -> None:
        binary = shutil.which("ldirectord")
        assert binary, "the Debian package ldirectord is needed by the differential test"
        self.lines: list[str] = []
        self._cond = threading.Condition()
        # cwd: with -d, ldirectord would prefer a ./ipvsadm in its working directory (l.913).
        # PERLIO=perlio: what ldirectord sets before re-executing itself (l.929-932); set here, it
        # spares that second perl start-up (~3 s under emulation) and changes nothing else.
        self.process = subprocess.Popen(
            [binary, "-d", str(config), "start"], cwd=workdir, env={**os.environ, "PERLIO": "perlio"},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def log_text(self, last: int = 60) -> str:
        with self._cond:
            return "\n".join(self.lines[-last:])

    def wait_checks(self, count: int, timeout: float) -> None:
        """Block until ``count`` real-server checks have started (one debug line each)."""
        def enough() -> bool:
            return sum(1 for line in self.lines if LD_CHECK_LINE.match(line)) >= count

        deadline = time.monotonic() + timeout
        with self._cond:
            while not enough():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"ldirectord did not run {count} checks within {timeout}s "
                                         f"(exit status {self.process.poll()}):\n{self.log_text()}")
                self._cond.wait(remaining)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (acted on between checks, then cleanstop), wait for the exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode


class LoopbackHttpd:
    """busybox httpd instances on 127.x addresses of the guest, each with its own document root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[subprocess.Popen[bytes]] = []

    def start(self, host: str, port: int, files: dict[str, str]) -> None:
        docroot = self.root / f"www-{host}-{port}"
        docroot.mkdir(parents=True)
        for name, body in files.items():
            (docroot / name).write_text(body)
        self.servers.append(subprocess.Popen(
            ["busybox", "httpd", "-f", "-p", f"{host}:{port}", "-h", str(docroot)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait_listening(self, addresses: Iterable[tuple[str, int]]) -> None:
        for host, port in addresses:
            wait_until(lambda h=host, p=port: port_open(h, p), f"httpd on {host}:{port}")

    def stop(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait()
        self.servers.clear()


def assert_empty_table(what: str) -> None:
    """The table must be empty (cleanstop removed every virtual service)."""
    left = comparable_listing()
    assert not left, f"the IPVS table is not empty after {what}:\n" + "\n".join(render(left))
