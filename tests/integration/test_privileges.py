"""Least privilege with real root daemons (``saru.daemon.privileges``, ``saru.subproc.RunAs``).

A real ``saru run`` started as root on the proxy plane: external checks and callbacks run as
saru.toml's ``[director] command_user`` (a system user the test creates and removes), ``root`` only
when written; the daemon itself drops to ``[director] user`` keeping exactly CAP_NET_ADMIN,
CAP_NET_RAW and CAP_NET_BIND_SERVICE (``/proc/PID/status``), and status, reload (a new proxy port
below 1024) and stop still work. The suite's other daemons run with the drop off (tests/conftest.py);
these run without that environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.cli.ldirectord import is_director
from saru.control import request_sync
from saru.daemon.privileges import KEEP, mask
from saru.subproc import RunAs
from tests.helpers import free_port, proc_status, readable_python, require, shared_workdir, system_user, wait_for_port

pytestmark = pytest.mark.timeout(120)


def wait_until(condition, timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def user() -> Iterator[RunAs]:
    with system_user() as made:
        yield made


@pytest.fixture
def workdir() -> Iterator[Path]:
    with shared_workdir() as path:
        yield path


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


CONFIG = """\
checktimeout=3
checkinterval=1
autoreload=yes
callback="{callback}"
{extra}
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real} masq
\tchecktype=external
\tcheckcommand="{check}"
"""


class RootDaemon:
    """``saru run`` as root, without the test suite's no-drop environment."""

    def __init__(self, workdir: Path, settings: str, port: int, extra: str = "",
                 args: tuple[str, ...] = (), drops: bool = False, prefix: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.check = script(workdir / "check.sh", f'grep ^Cap /proc/$$/status > {workdir}/out/check.caps; '
                                                  f'id -u > {workdir}/out/check.uid; exit 0')
        self.callback = script(workdir / "callback.sh", f'id -u > {workdir}/out/callback.uid')
        self.config = workdir / "ldirectord.cf"
        self.extra = extra
        self.write(port)
        self.settings = workdir / "saru.toml"
        self.settings.write_text(settings + f'config = "{self.config}"\ndataplane = "proxy"\n')
        self.run = workdir / "run"  # the runtime dir: control socket, pid file, lock
        env = {k: v for k, v in os.environ.items() if k not in ("SARU_DROP_PRIVILEGES", "SARU_COMMAND_USER")}
        env.update(SARU_RUNTIME_DIR=str(self.run), SARU_STATE_DIR=str(workdir / "state"))
        self.control = self.run / "ldirectord.cf.sock"
        self.log = (workdir / "daemon.log").open("w")
        python = sys.executable
        if drops or prefix:  # the dropped daemon reads its Python (see ``readable_python``)
            python, env["PYTHONPATH"] = readable_python()
        self.process = subprocess.Popen([*prefix, python, "-m", "saru", "run", "-c", str(self.settings), *args],
                                        env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def write(self, port: int, extra_virtual: str = "") -> None:
        self.config.write_text(CONFIG.format(callback=self.callback, extra=self.extra, port=port,
                                             real=free_port(), check=self.check) + extra_virtual)
        self.config.chmod(0o644)

    def out(self, name: str) -> str | None:
        path = self.workdir / "out" / name
        text = path.read_text().strip() if path.exists() else ""
        return text or None

    def check_caps(self) -> dict[str, str]:
        """CapInh/CapPrm/CapEff/CapBnd/CapAmb of the external check, once it has run."""
        text = wait_until(lambda: self.out("check.caps"), what="the check's capabilities")
        return dict(line.split(":\t") for line in text.splitlines())

    def status(self) -> dict[str, object]:
        return request_sync(self.control, "status", timeout=5)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log_text()}")
            try:
                return bool(self.status().get("ready"))
            except OSError:
                return False
        wait_until(ready, what="the daemon's first pass")

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.workdir / "daemon.log").read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            try:
                request_sync(self.control, "stop", timeout=5)
            except OSError:
                self.process.terminate()
        try:
            return self.process.wait(20)
        finally:
            self.log.close()


@pytest.fixture
def daemons() -> Iterator[list[RootDaemon]]:
    started: list[RootDaemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)


# ---- 1. commands run as the configured user ------------------------------------------------------


def test_checks_and_callback_run_as_the_configured_user(user, workdir, daemons) -> None:
    d = RootDaemon(workdir, f'[director]\ncommand_user = "{user.name}"\ndrop_privileges = false\n', free_port())
    daemons.append(d)
    d.wait_ready()
    assert wait_until(lambda: d.out("check.uid"), what="the check's id -u") == str(user.uid)
    assert proc_status(d.process.pid)["Uid"].split()[0] == "0"  # the daemon itself stayed root
    d.write(free_port())  # autoreload + callback
    assert wait_until(lambda: d.out("callback.uid"), what="the callback's id -u") == str(user.uid)
    assert d.stop() == 0


def test_command_user_root_only_when_written(workdir, daemons) -> None:
    require(os.geteuid() == 0, "needs root")
    d = RootDaemon(workdir, '[director]\ncommand_user = "root"\n', free_port())
    daemons.append(d)
    d.wait_ready()
    assert wait_until(lambda: d.out("check.uid"), what="the check's id -u") == "0"
    assert "stays root" in d.log_text()
    assert d.stop() == 0


def test_unknown_command_user_is_refused_with_file_and_line(workdir) -> None:
    settings = workdir / "saru.toml"
    settings.write_text('[director]\n\ncommand_user = "no-such-user-saru"\n')
    result = subprocess.run([sys.executable, "-m", "saru", "check-config", "-c", str(settings)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"{settings}:3: [director] command_user: 'no-such-user-saru': no such user" in result.stdout + result.stderr


# ---- 2. the drop from root -----------------------------------------------------------------------


def test_root_daemon_drops_to_the_user_with_exactly_three_capabilities(user, workdir, daemons) -> None:
    port = free_port()
    pidfile = workdir / "run" / "saru.pid"
    d = RootDaemon(workdir, f'[director]\nuser = "{user.name}"\ncommand_user = "{user.name}"\n', port,
                   args=("--pidfile", str(pidfile)), drops=True)
    daemons.append(d)
    d.wait_ready()
    assert pidfile.read_text().strip() == str(d.process.pid)
    status = proc_status(d.process.pid)
    assert status["Uid"].split() == [str(user.uid)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(user.gid)] * 4, status["Gid"]
    three, none = f"{mask(KEEP):016x}", "0" * 16
    assert (status["CapEff"], status["CapPrm"], status["CapBnd"]) == (three,) * 3
    assert (status["CapInh"], status["CapAmb"]) == (none, none)  # nothing for the programs it starts
    assert d.out("check.uid") == str(user.uid) or wait_until(lambda: d.out("check.uid")) == str(user.uid)
    caps = d.check_caps()
    assert (caps["CapInh"], caps["CapPrm"], caps["CapEff"], caps["CapAmb"]) == (none,) * 4, caps
    wait_for_port("127.0.0.1", port)
    # a reload adding a virtual on a privileged port: CAP_NET_BIND_SERVICE after the drop
    low = next(p for p in range(880, 1000) if _free(p))
    d.write(port, f"\nvirtual=127.0.0.2:{low}\n\treal=127.0.0.1:{free_port()} masq\n\tchecktype=on\n")
    answer = request_sync(d.control, "reload", timeout=10)
    assert answer["ok"], answer
    wait_for_port("127.0.0.2", low)
    assert d.status()["ok"]
    assert d.stop() == 0
    assert not pidfile.exists()  # removed by the dropped daemon (the runtime dir was handed over)
    assert "Dropped privileges" in d.log_text()


def test_daemon_given_ambient_caps_keeps_them_for_itself(user, workdir, daemons) -> None:
    """As systemd starts it (User=, AmbientCapabilities= the three): the daemon keeps them effective and
    permitted, the external check it runs gets none (before: it inherited all three as ambient)."""
    require(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    caps = ",".join(f"+{name}" for name in ("net_admin", "net_raw", "net_bind_service"))
    systemd_like = ("setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", f"--inh-caps={caps}",
                    f"--ambient-caps={caps}", f"--bounding-set=-all,{caps}")
    (workdir / "run").mkdir(mode=0o700)
    os.chown(workdir / "run", user.uid, user.gid)
    d = RootDaemon(workdir, "[director]\n", free_port(), prefix=systemd_like)
    daemons.append(d)
    d.wait_ready()
    status = proc_status(d.process.pid)
    three, none = f"{mask(KEEP):016x}", "0" * 16
    assert status["Uid"].split()[0] == str(user.uid)
    assert (status["CapEff"], status["CapPrm"], status["CapInh"], status["CapAmb"]) == (three, three, none, none)
    check = d.check_caps()
    assert (check["CapInh"], check["CapPrm"], check["CapEff"], check["CapAmb"]) == (none,) * 4, check
    assert d.stop() == 0


def test_no_drop_keeps_root(user, workdir, daemons) -> None:
    d = RootDaemon(workdir, f'[director]\nuser = "{user.name}"\ncommand_user = "{user.name}"\n', free_port(),
                   args=("--no-drop",))
    daemons.append(d)
    d.wait_ready()
    assert proc_status(d.process.pid)["Uid"].split()[0] == "0"
    assert d.stop() == 0


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", port))
        except OSError:
            return False
    return True


# ---- 3. saru-ldirectord start: the same drop ----------------------------------------------------


def test_saru_ldirectord_start_drops_like_saru_run(user, workdir) -> None:
    """``saru-ldirectord start`` as root: the detached daemon becomes [director] user with the three
    capabilities (before: it stayed root), writes ldirectord's pid file in root's directory, and status,
    stop and status again keep ldirectord's contract."""
    check = script(workdir / "check.sh", f'grep ^Cap /proc/$$/status > {workdir}/out/check.caps; exit 0')
    config = workdir / "ld.cf"
    config.write_text(f"checkinterval=1\nvirtual=127.0.0.1:{free_port()}\n"
                      f"\treal=127.0.0.1:{free_port()} masq\n\tchecktype=external\n\tcheckcommand=\"{check}\"\n")
    config.chmod(0o644)
    settings = workdir / "saru.toml"
    settings.write_text(f'[director]\nuser = "{user.name}"\ncommand_user = "{user.name}"\n')
    piddir = workdir / "piddir"  # root's, like /var/run
    piddir.mkdir(mode=0o755)
    python, pythonpath = readable_python()
    env = {k: v for k, v in os.environ.items() if k not in ("SARU_DROP_PRIVILEGES", "SARU_COMMAND_USER")}
    env.update(PYTHONPATH=pythonpath, SARU_RUNTIME_DIR=str(workdir / "run"), SARU_STATE_DIR=str(workdir / "state"),
               SARU_SETTINGS=str(settings), SARU_DATAPLANE="proxy", SARU_LDIRECTORD_PIDDIR=str(piddir))

    def ld(verb: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-m", "saru.cli.ldirectord", str(config), verb], env=env, text=True,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)

    pidfile = piddir / "ldirectord.ld.cf.pid"
    started = ld("start")
    pid = int(pidfile.read_text()) if pidfile.exists() and pidfile.read_text().strip() else 0
    try:
        assert started.returncode == 0, started.stderr
        status = proc_status(pid)
        three, none = f"{mask(KEEP):016x}", "0" * 16
        assert status["Uid"].split() == [str(user.uid)] * 4, status["Uid"]
        assert (status["CapEff"], status["CapPrm"], status["CapInh"], status["CapAmb"]) == (three, three, none, none)
        caps = dict(line.split(":\t") for line in
                    wait_until(lambda: (workdir / "out" / "check.caps").exists()
                               and (workdir / "out" / "check.caps").read_text().strip(),
                               what="the check's capabilities").splitlines())
        assert (caps["CapInh"], caps["CapPrm"], caps["CapEff"], caps["CapAmb"]) == (none,) * 4, caps
        assert ld("status").returncode == 0
        assert ld("stop").returncode == 0
        assert not is_director(pid)  # gone (or a zombie waiting for its reaper)
        assert ld("status").returncode == 3  # stopped, not a stale pid file
    finally:
        if pid and is_director(pid):
            os.kill(pid, 9)
