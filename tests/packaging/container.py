"""A Debian root booted with systemd as PID 1 under ``systemd-nspawn``, and commands run inside it.

The machine that runs the tests is not booted by systemd (it may be a container or a micro-VM with
another PID 1 and no systemd-machined), so the container is started without registering with
machined and without a scope of its own (``--register=no --keep-unit``); commands are run in it with
``nsenter`` into all of the namespaces of its PID 1 (``machinectl shell`` and ``systemd-run -M``
need machined). ``--private-network``: the container has only its own loopback, so whatever the
tests send stays inside it. ``stop()`` powers it off (SIGTERM to nspawn, which asks the container's
systemd to shut down), kills it if that takes too long, and is safe to call twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

#: the environment of commands run inside (the test process's own must not leak in)
INSIDE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
              "TERM": "dumb", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}


def nspawn_usable() -> tuple[bool, str]:
    """Whether this machine has what booting a container needs (not yet whether the boot works)."""
    if os.geteuid() != 0:
        return False, "booting a container with systemd-nspawn needs root"
    for tool in ("systemd-nspawn", "nsenter", "mmdebstrap"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed (Debian packages systemd-container, util-linux, mmdebstrap)"
    if not Path("/sys/fs/cgroup").is_dir():
        return False, "no cgroup file system at /sys/fs/cgroup"
    return True, "ok"


class BootError(RuntimeError):
    """The container did not come up; the message carries the tail of its console."""


class Container:
    """One booted root directory."""

    def __init__(self, root: Path, name: str, console_log: Path) -> None:
        self.root = root
        self.name = name
        self.console_log = console_log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def boot(self, timeout: float = 60) -> float:
        """Start the container and wait until its systemd says the system is up (``running`` or
        ``degraded``); returns the seconds it took. ``BootError`` with the console's tail otherwise."""
        started = time.monotonic()
        with self.console_log.open("wb") as console:
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--directory", str(self.root), "--machine", self.name,
                 "--private-network", "--register=no", "--keep-unit", "--console=read-only"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BootError(f"systemd-nspawn exited with {self.proc.returncode}:\n{self.console_tail()}")
            if self.leader is None:
                self.leader = self._find_leader()
            if self.leader is not None:
                state = self.run("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    return time.monotonic() - started
            time.sleep(0.2)
        raise BootError(f"the container's systemd did not finish booting within {timeout}s:\n{self.console_tail()}")

    def _find_leader(self) -> int | None:
        """The container's PID 1 as seen from here: the descendant of nspawn in another PID namespace."""
        assert self.proc is not None
        own = os.readlink("/proc/self/ns/pid")
        queue = [self.proc.pid]
        while queue:
            pid = queue.pop(0)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                try:
                    if os.readlink(f"/proc/{child}/ns/pid") != own:
                        return child
                except OSError:
                    continue
                queue.append(child)
        return None

    def stop(self, timeout: float = 30) -> None:
        """Power the container off (killed after ``timeout`` seconds)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.leader = None

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- commands inside ------------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside (all of PID 1's namespaces, its root); ``RuntimeError`` on failure."""
        if self.leader is None:
            raise RuntimeError("the container is not running")
        proc = subprocess.run(["nsenter", "--target", str(self.leader), "--all", "--wdns=/", "--", *argv],
                              capture_output=True, text=True, timeout=timeout, check=False, input=input,
                              env=INSIDE_ENV)
        if check and proc.returncode != 0:
            raise RuntimeError(f"in the container: {' '.join(argv)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}")
        return proc

    def sh(self, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside."""
        return self.run("sh", "-ec", script, check=check, timeout=timeout)

    def write(self, path: str, content: str, mode: int = 0o644) -> None:
        """Write a file inside (through the root directory: the container sees it at once)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()

    def wait_for(self, what: str, predicate: object, timeout: float = 30, interval: float = 0.2) -> object:
        """Poll ``predicate()`` until it returns something true (returned), or fail saying ``what``."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    # -- systemd ----------------------------------------------------------------------------------------

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p …`` as a dict."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, lines: int = 60) -> str:
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", "-n", str(lines), "-u", unit,
                        check=False).stdout
