"""Files a real daemon writes where others may write too (docs/security.md), with real files and sockets.

* monitorfile, logfile, a maintenance file written by ``disable`` and the pid file: a symbolic link
  planted at the name in a directory others can write (0777, not sticky: the kernel's
  ``protected_symlinks`` does not guard it) is refused, never followed — the file it points at keeps
  its content (before: the root daemon appended to it, or overwrote it);
* the runtime directory: ``/tmp/saru-UID`` (the last fallback of ``saru.control.paths``) made
  beforehand by another user is refused by the daemon (before: it put its control socket and lock
  there, where that user could replace them), and ``saru status`` does not talk to a socket that
  user serves there (before: it showed that user's answer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.control import request_sync
from saru.subproc import RunAs
from tests.director import Director
from tests.helpers import free_port, readable_python, require, shared_workdir, system_user
from tests.lab import wait_for

pytestmark = pytest.mark.timeout(90)

PRECIOUS = "precious: must not change\n"


@pytest.fixture
def public(tmp_path: Path) -> Path:
    """A directory everyone can write (no sticky bit), and the file an attacker's links point at."""
    tmp_path.chmod(0o755)
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o777)
    (tmp_path / "victim").write_text(PRECIOUS)
    return public


@pytest.fixture
def directors() -> Iterator[list[Director]]:
    started: list[Director] = []
    yield started
    for d in started:
        d.stop()


def test_monitorfile_and_logfile_links_are_not_followed(public: Path, tmp_path: Path, directors) -> None:
    victim = tmp_path / "victim"
    (public / "monitor.log").symlink_to(victim)
    (public / "saru.log").symlink_to(victim)
    d = Director(tmp_path, f'logfile="{public / "saru.log"}"\ncheckinterval=1\n'
                           f"virtual=127.0.0.1:{free_port()}\n\treal=127.0.0.1:{free_port()} masq\n"
                           f"\tchecktype=connect\n\tmonitorfile=\"{public / 'monitor.log'}\"\n")
    directors.append(d)
    d.wait_ready()
    d.wait_for(r"monitor\.log.*symbolic link", timeout=10)
    assert d.stop() == 0
    assert victim.read_text() == PRECIOUS
    assert (public / "monitor.log").is_symlink() and (public / "saru.log").is_symlink()
    assert "saru.log: is a symbolic link" in d.log_text()


def test_a_maintenance_file_link_is_not_followed(public: Path, tmp_path: Path, directors) -> None:
    victim = tmp_path / "victim"
    port, real = free_port(), free_port()
    d = Director(tmp_path, f"maintenancedir={public}\ncheckinterval=1\n"
                           f"virtual=127.0.0.1:{port}\n\treal=127.0.0.1:{real} masq\n\tchecktype=on\n")
    directors.append(d)
    d.wait_ready()
    (public / f"127.0.0.1:{real}").symlink_to(victim)
    answer = request_sync(d.control, "disable", proxy=f"tcp/127.0.0.1:{port}", server=f"127.0.0.1:{real}")
    assert answer["ok"] is False and "is a symbolic link" in answer["error"], answer
    assert victim.read_text() == PRECIOUS


def test_a_pid_file_link_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    (tmp_path / "saru.pid").symlink_to(victim)  # where Director's --pidfile points
    d = Director(tmp_path, f"virtual=127.0.0.1:{free_port()}\n\treal=127.0.0.1:{free_port()} masq\n\tchecktype=on\n")
    assert d.process.wait(20) == 1  # refused at start, before anything else
    d.stop()
    assert "saru.pid: is a symbolic link" in d.log_text()
    assert victim.read_text() == PRECIOUS


# -- the runtime directory -------------------------------------------------------------------------


FAKE_DAEMON = """\
import json, os, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o777)
server.listen()
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.recv(65536)
    answer = {"ok": True, "pid": 1, "ready": True, "virtuals": [], "planted": "by another user"}
    conn.sendall(json.dumps(answer).encode())
    conn.close()
"""


@pytest.fixture
def two_users() -> Iterator[tuple[RunAs, RunAs]]:
    with system_user() as victim, system_user() as attacker:
        yield victim, attacker


def test_a_runtime_directory_made_by_another_user_is_refused(two_users: tuple[RunAs, RunAs]) -> None:
    require(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    victim, attacker = two_users
    planted = Path(f"/tmp/saru-{victim.uid}")  # runtime_dir() of a user without XDG_RUNTIME_DIR
    require(not planted.exists(), f"{planted} exists already")
    python, pythonpath = readable_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARU_", "XDG_"))}
    env["PYTHONPATH"] = pythonpath

    def as_user(user: RunAs, *argv: str, **kwargs: object) -> list[str]:
        return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", *argv]

    fake: subprocess.Popen[str] | None = None
    with shared_workdir() as work:
        try:
            subprocess.run(as_user(attacker, "mkdir", "-m", "0777", str(planted)), check=True)
            sock = planted / "ldirectord.cf.sock"
            fake = subprocess.Popen(as_user(attacker, python, "-c", FAKE_DAEMON, str(sock)), stdout=subprocess.PIPE,
                                    text=True, env=env)
            assert fake.stdout is not None and fake.stdout.readline().strip() == "listening"
            config = work / "ldirectord.cf"
            config.write_text(f"virtual=127.0.0.1:{free_port()}\n\treal=127.0.0.1:{free_port()} masq\n"
                              "\tchecktype=on\n")
            config.chmod(0o644)
            # the victim's client does not take the planted socket's word
            status = subprocess.run(as_user(victim, python, "-m", "saru", "status", "-c", str(config), "--json"),
                                    capture_output=True, text=True, env=env, timeout=30, cwd=work)
            assert "by another user" not in status.stdout and status.returncode != 0, status.stdout
            assert f"{planted}: can be written by group or others (mode 777)" in status.stderr, status.stderr
            # the victim's daemon does not start there (nothing bound, the planted socket left alone)
            run = subprocess.run(as_user(victim, python, "-m", "saru", "run", "-c", str(config), "--dataplane",
                                         "proxy"), capture_output=True, text=True, env=env, timeout=30, cwd=work)
            assert run.returncode == 1, run.stderr
            assert f"{planted}: can be written by group or others (mode 777)" in run.stderr, run.stderr
            # ... nor in one that other user made 0755 (only that user can write it, and replace the socket)
            subprocess.run(["chmod", "0755", str(planted)], check=True)
            status = subprocess.run(as_user(victim, python, "-m", "saru", "status", "-c", str(config), "--json"),
                                    capture_output=True, text=True, env=env, timeout=30, cwd=work)
            assert "by another user" not in status.stdout and status.returncode != 0, status.stdout
            assert f"{planted}: is owned by uid {attacker.uid}" in status.stderr, status.stderr
            assert sorted(p.name for p in planted.iterdir()) == ["ldirectord.cf.sock"]
        finally:
            if fake is not None:
                fake.kill()
                fake.wait(5)
            shutil.rmtree(planted, ignore_errors=True)


def test_sticky_and_own_directories_are_fine(tmp_path: Path) -> None:
    """The check is not a nuisance: a control socket directly in /tmp (sticky) and the suite's own
    runtime directories still work."""
    sock = Path(f"/tmp/saru-sec-{os.getpid()}.sock")
    d = Director(tmp_path, f"virtual=127.0.0.1:{free_port()}\n\treal=127.0.0.1:{free_port()} masq\n\tchecktype=on\n",
                 ("--control", str(sock)))
    try:
        d.wait_ready()
        assert request_sync(sock, "status", timeout=5)["ok"] is True
        status = subprocess.run([sys.executable, "-m", "saru", "status", "-c", str(d.config), "--control", str(sock)],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
    finally:
        assert d.stop() == 0


def test_only_the_daemons_user_can_use_its_control_socket(two_users: tuple[RunAs, RunAs]) -> None:
    """The runtime directory the daemon makes is 0700 and the socket 0600: another local user can neither
    ask the status nor send reload/stop (the socket is the access control of the write commands)."""
    other, _ = two_users
    with shared_workdir() as work:
        run = work / "run"
        env = {**os.environ, "SARU_RUNTIME_DIR": str(run)}
        config = work / "ldirectord.cf"
        config.write_text(f"virtual=127.0.0.1:{free_port()}\n\treal=127.0.0.1:{free_port()} masq\n\tchecktype=on\n")
        config.chmod(0o644)
        daemon = subprocess.Popen([sys.executable, "-m", "saru", "run", "-c", str(config), "--dataplane", "proxy"],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        sock = run / "ldirectord.cf.sock"
        try:
            wait_for(sock.exists, timeout=20, what="the control socket")
            assert (run.stat().st_mode & 0o777, sock.stat().st_mode & 0o777) == (0o700, 0o600)
            python, pythonpath = readable_python()
            for command in ("status", "stop"):
                asked = subprocess.run(["setpriv", f"--reuid={other.uid}", f"--regid={other.gid}", "--clear-groups",
                                        python, "-m", "saru", command, "-c", str(config), "--control", str(sock)],
                                       capture_output=True, text=True, timeout=30,
                                       env={**env, "PYTHONPATH": pythonpath})
                assert asked.returncode != 0 and "ermission denied" in asked.stderr, asked.stderr
            assert daemon.poll() is None  # the stop was refused
            assert request_sync(sock, "status", timeout=5)["ok"] is True  # the daemon's own user may
        finally:
            daemon.terminate()
            daemon.wait(20)


def test_the_drop_does_not_give_a_planted_log_file_link_to_the_user() -> None:
    """``saru run`` as root hands the log file over to the daemon's user before it drops: a link planted
    at the log file's name must not make root chown (or create) what it points at — before, the victim
    file became the daemon user's."""
    with system_user() as user, shared_workdir() as work:
        public, victim = work / "public", work / "victim"
        public.mkdir()
        public.chmod(0o777)
        victim.write_text(PRECIOUS)
        (public / "saru.log").symlink_to(victim)
        config = work / "ldirectord.cf"
        config.write_text(f'logfile="{public / "saru.log"}"\nvirtual=127.0.0.1:{free_port()}\n'
                          f"\treal=127.0.0.1:{free_port()} masq\n\tchecktype=on\n")
        config.chmod(0o644)
        settings = work / "saru.toml"
        settings.write_text(f'[director]\nconfig = "{config}"\ndataplane = "proxy"\nuser = "{user.name}"\n'
                            f'command_user = "{user.name}"\n')
        python, pythonpath = readable_python()
        env = {k: v for k, v in os.environ.items() if k not in ("SARU_DROP_PRIVILEGES", "SARU_COMMAND_USER")}
        env.update(PYTHONPATH=pythonpath, SARU_RUNTIME_DIR=str(work / "run"), SARU_STATE_DIR=str(work / "state"))
        daemon = subprocess.Popen([python, "-m", "saru", "run", "-c", str(settings)], env=env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = daemon.communicate(timeout=20)  # refused at once (before: it started and ran)
        except subprocess.TimeoutExpired:
            daemon.kill()
            out, _ = daemon.communicate(timeout=10)
        assert (victim.stat().st_uid, victim.read_text()) == (0, PRECIOUS), out
        assert daemon.returncode == 1, out
        assert "saru.log: is a symbolic link" in out, out
