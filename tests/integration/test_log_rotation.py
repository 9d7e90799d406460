"""Log rotation: a running ``saru run`` follows its ``logfile=`` when it is moved away (as logrotate does)
— the next line lands in a new file at the configured path, not in ``ldirectord.log.1`` — and SIGUSR1
makes it reopen the file at once. The shipped packaging/logrotate/saru is run by the real logrotate."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.director import Director
from tests.helpers import free_port, require

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT / "packaging" / "logrotate" / "saru"


def config(log: Path, port: int) -> str:
    return (f'checktimeout=1\ncheckinterval=1\nlogfile="{log}"\n\nvirtual=127.0.0.1:{port}\n'
            "\treal=127.0.0.2:8080 masq\n\tchecktype=on\n\tprotocol=tcp\n")


def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {path} within {timeout}s; it holds:\n{content}")
        time.sleep(0.05)


def open_files(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue
    return found


@pytest.fixture
def director(tmp_path):
    started: list[Director] = []

    def start(text: str) -> Director:
        d = Director(tmp_path, text)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def test_a_moved_log_file_is_followed(director, tmp_path):
    log = tmp_path / "ldirectord.log"
    d = director(config(log, free_port()))
    d.wait_ready()
    wait_for_text(log, "All real servers checked")
    rotated = tmp_path / "ldirectord.log.1"
    log.rename(rotated)  # logrotate without "create": the program makes the new file
    assert d.command("reload")["reloaded"] is True
    new = wait_for_text(log, "Reloading configuration")
    assert "All real servers checked" not in new
    assert "Reloading configuration" not in rotated.read_text()
    # logrotate's "create": an empty file is put in place first
    log.rename(tmp_path / "ldirectord.log.2")
    log.touch()
    assert d.command("reload")["reloaded"] is True
    assert wait_for_text(log, "Reloading configuration").count("Reloading configuration") == 1
    assert (tmp_path / "ldirectord.log.2").read_text().count("Reloading configuration") == 1  # the first one
    # logrotate's "copytruncate": same file, emptied; the daemon appends at its new end
    os.truncate(log, 0)
    assert d.command("reload")["reloaded"] is True
    assert wait_for_text(log, "Reloading configuration").startswith("[")  # no hole of NUL bytes


def test_sigusr1_reopens_the_log_file_at_once(director, tmp_path):
    log = tmp_path / "ldirectord.log"
    d = director(config(log, free_port()))
    d.wait_ready()
    wait_for_text(log, "All real servers checked")
    rotated = tmp_path / "ldirectord.log.1"
    log.rename(rotated)
    assert str(rotated) in open_files(d.process.pid)  # still held: nothing was logged since
    d.process.send_signal(signal.SIGUSR1)
    wait_for_text(log, "Reopened the log file")
    assert str(rotated) not in open_files(d.process.pid)
    assert str(log) in open_files(d.process.pid)
    assert d.process.poll() is None and d.status()["ok"] is True


def test_the_shipped_logrotate_file_with_the_real_logrotate(director, tmp_path):
    logrotate = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    require(logrotate is not None, "logrotate is not installed (apt-get install logrotate)")
    assert logrotate is not None
    log = tmp_path / "ldirectord.log"
    shipped = SHIPPED.read_text()
    assert "/var/log/ldirectord.log {" in shipped
    conf = tmp_path / "logrotate.conf"
    conf.write_text(shipped.replace("/var/log/ldirectord.log", str(log)))
    conf.chmod(0o644)
    d = director(config(log, free_port()))
    d.wait_ready()
    wait_for_text(log, "All real servers checked")
    done = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rotated = tmp_path / "ldirectord.log.1"
    assert "All real servers checked" in rotated.read_text()  # delaycompress: .1 stays plain text
    assert d.command("reload")["reloaded"] is True
    assert "Reloading configuration" in wait_for_text(log, "Reloading configuration")
    assert "Reloading configuration" not in rotated.read_text()


def test_a_log_directory_that_vanished_costs_lines_not_the_daemon(director, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "ldirectord.log"
    d = director(config(log, free_port()))
    d.wait_ready()
    wait_for_text(log, "All real servers checked")
    logs.rename(tmp_path / "logs.old")  # the file cannot be reopened at its path any more
    after = time.monotonic()
    d.sighup()
    d.wait_for(r"cannot write log file .*ldirectord\.log: No such file or directory; lines are lost", after=after)
    d.wait_for(r"Error reading configuration, keeping the running one", after=after)  # logfile's directory
    assert d.status()["ok"] is True
    logs.mkdir()
    d.process.send_signal(signal.SIGUSR1)
    wait_for_text(log, "Reopened the log file")
    assert d.process.poll() is None
