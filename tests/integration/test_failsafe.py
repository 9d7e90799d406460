"""Fail-safe checking end to end (issue #14 §2, §5): a real ``saru run`` (proxy plane) in front of
real nginx servers on loopback.

* a catastrophic ``receive=`` pattern (the issue's reproducer) stalls neither the loop nor another
  virtual's checks: its healthy real stays up and its VIP serves the whole time;
* file descriptors exhausted (RLIMIT_NOFILE lowered on the running daemon): the reals keep their
  state, the local-fault alarm is raised (log, status, metric) and cleared;
* ``panic_threshold``: three of four reals failing together keep their place in the table (the
  alarm says so) until they recover; with ``panic_threshold = 0`` they leave it, as in ldirectord;
* a real that stays down and a reload that keeps failing are logged at start, then as reminders
  with a count (the reminder interval shortened through ``SARU_LOG_REMINDER_INTERVAL``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.director import Director, get
from tests.helpers import free_port

CHECK = "/check.html"


@pytest.fixture
def director(tmp_path):
    started: list[Director] = []

    def start(text: str, env: dict[str, str] | None = None, settings: str | None = None) -> Director:
        args: tuple[str, ...] = ()
        if settings is not None:
            (tmp_path / "saru.toml").write_text(settings)
            args = ("--settings", str(tmp_path / "saru.toml"))
        d = Director(tmp_path, text, args, env={**os.environ, **(env or {})})
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def virtual_block(port: int, real_port: int, receive: str, interval: float = 0.5) -> str:
    return f"""\
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real_port} masq
\tservice=http
\tchecktype=negotiate
\tcheckinterval={interval:g}
\trequest="check.html"
\treceive="{receive}"
"""


def test_catastrophic_receive_pattern_stalls_nobody(director, nginx, tmp_path: Path):
    evil = nginx(name="evil", files={CHECK: "a" * 26 + "!"})
    good = nginx(name="good", files={CHECK: "OK\n", "/index.html": "good\n"})
    vip_evil, vip_good = free_port(), free_port()
    text = "checktimeout=3\nnegotiatetimeout=3\n" + virtual_block(vip_evil, evil.port, "(a+)+$") \
        + virtual_block(vip_good, good.port, "OK")
    d = director(text)
    d.wait_for("can backtrack catastrophically", timeout=20)  # the load-time warning
    d.wait_ready(30)
    d.wait_for(rf"Real server down: .*{evil.port}.*took longer than 1s", timeout=20)
    served, failures, deadline = 0, [], time.monotonic() + 6
    while time.monotonic() < deadline:
        try:
            status, server, _ = get(vip_good, timeout=1.0)
            served += status == 200 and server == "good"
        except OSError as exc:
            failures.append(repr(exc))
    assert not failures, failures[:5]
    assert served > 50  # the old code served 11 requests in 40 s
    assert not [line for line in d.log_text().splitlines()
                if "Real server down" in line and str(good.port) in line]
    assert d.real_states()  # the control socket answers


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one rename (autoreload must never read it half written)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_fd_exhaustion_keeps_the_reals_and_raises_the_alarm(director, nginx):
    rs = nginx(name="rs", files={CHECK: "OK\n"})
    vip = free_port()
    d = director("checktimeout=1\n" + virtual_block(vip, rs.port, "OK", interval=0.2),
                 env={"SARU_LOG_REMINDER_INTERVAL": "0.5"})
    d.wait_ready(30)
    pid = d.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    started = time.monotonic()
    try:
        # no new descriptor at all (the open ones stay valid): 0-2 are always taken
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))
        d.wait_for(r"ALARM: local fault \(emfile\)", timeout=10, after=started)
        d.wait_for(r"ALARM: local fault \(emfile\) persists .* checks could not run", timeout=10, after=started)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    d.wait_for(r"Local fault \(emfile\) cleared after", timeout=10, after=started)
    log = d.log_text()
    assert "Real server down" not in log
    assert d.real_states()[f"127.0.0.1:{rs.port}"][0] == "up"
    doc = d.status()
    assert doc["alarms"] == {"active": False, "local_faults": [], "panic": []}


def test_persistent_conditions_are_reminded_not_repeated(director, nginx, tmp_path: Path):
    up = nginx(name="up", files={CHECK: "OK\n"})
    dead_port = free_port()
    vip = free_port()
    config = "checktimeout=1\nautoreload=yes\n" + virtual_block(vip, up.port, "OK", interval=0.1) \
        + virtual_block(free_port(), dead_port, "OK", interval=0.1)
    d = director(config, env={"SARU_LOG_REMINDER_INTERVAL": "1"})
    d.wait_ready(30)
    started = time.monotonic()
    d.wait_for(rf"Real server still down: 127.0.0.1:{dead_port} .*failed checks since the last message", timeout=10)
    # a reload that keeps failing: the same broken line, the file rewritten each time (autoreload)
    broken = config + "\tbogus_directive=1\n"
    for i in range(6):
        before = time.monotonic()
        write_atomically(d.config, broken + f"# edit {i}\n")
        d.wait_for(r"Reloading configuration", timeout=10, after=before)  # each attempt (logged or not)
    d.wait_for(r"still the same errors", timeout=10, after=started)
    lines = [line for at, line in d.lines if at >= started]
    full = [line for line in lines if "Error reading configuration, keeping the running one" in line]
    assert len(full) == 1, lines[-30:]  # the first failure in full, then reminders only
    write_atomically(d.config, config)
    d.wait_for(r"Configuration reads again after \d+ failed reloads", timeout=10, after=started)
    still = [line for at, line in d.lines if "Real server still down" in line]
    elapsed = time.monotonic() - started + 2
    assert 1 <= len(still) <= elapsed / 1 + 2, still  # at most one a second, not one per check (10/s)


def panic_config(vip: int, servers) -> str:
    reals = "".join(f"\treal=127.0.0.1:{rs.port} masq\n" for rs in servers)
    return f"""\
checktimeout=1
virtual=127.0.0.1:{vip}
{reals}\tservice=http
\tchecktype=negotiate
\tcheckinterval=0.3
\trequest="check.html"
\treceive="OK"
"""


def plan(d: Director) -> str:
    """``saru plan`` against the running daemon (its stdout)."""
    done = subprocess.run([sys.executable, "-m", "saru", "plan", "-c", str(d.config), "--control", str(d.control)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("threshold", [50, 0])
def test_reals_failing_together_keep_the_table_in_panic_mode(director, nginx, threshold: int):
    servers = [nginx(name=f"rs{i}", files={CHECK: "OK\n"}) for i in range(4)]
    vip = free_port()
    d = director(panic_config(vip, servers), settings=f"[director]\npanic_threshold = {threshold}\n")
    d.wait_ready(30)
    started = time.monotonic()
    for rs in servers[:3]:  # the check page goes away on three reals at once: 75 % fail together
        rs.remove(CHECK)
    for rs in servers[:3]:
        d.wait_for(rf"Real server down: 127.0.0.1:{rs.port} ", timeout=10, after=started)
    if threshold:
        d.wait_for(r"ALARM: panic mode for tcp 127.0.0.1:\d+: 3 of 4 reals failed together", timeout=10,
                   after=started)
    states = d.real_states()
    in_table = {key: weight for key, (_, weight) in states.items()}
    for rs in servers[:3]:
        assert states[f"127.0.0.1:{rs.port}"][0] == "down"
        assert in_table[f"127.0.0.1:{rs.port}"] == (1 if threshold else None), states
    doc = d.status()
    assert doc["alarms"]["active"] is bool(threshold)
    assert len(doc["alarms"]["panic"]) == (1 if threshold else 0)
    # saru plan shows what the daemon applies: in panic the three reals stay, and it says why
    planned = plan(d)
    panic_line = f"# panic: virtual 127.0.0.1:{vip} keeps its last known set: 3 of its 4 reals are down"
    assert (panic_line in planned) is bool(threshold), planned
    assert "# no changes" in planned, planned
    # ... and the operator's overrides: a drained real stays drained in the plan
    d.command_with("drain", proxy=f"tcp/127.0.0.1:{vip}", server=f"127.0.0.1:{servers[3].port}")
    assert "# no changes" in plan(d), plan(d)
    d.command_with("enable", proxy=f"tcp/127.0.0.1:{vip}", server=f"127.0.0.1:{servers[3].port}")
    recovered = time.monotonic()
    for rs in servers[:3]:
        rs.write(CHECK, "OK\n")
    for rs in servers[:3]:
        d.wait_for(rf"Real server up: 127.0.0.1:{rs.port} ", timeout=10, after=recovered)
    if threshold:
        d.wait_for(r"Panic mode over for tcp 127.0.0.1:\d+", timeout=10, after=recovered)
    assert d.status()["alarms"]["active"] is False
    assert all(weight == 1 for _, weight in d.real_states().values())


def test_autoreload_never_applies_a_file_caught_empty(director, nginx):
    """Found while writing these tests: an autoreload that read the file between an editor's truncate
    and write purged every virtual. An empty file is now skipped until it changes again."""
    rs = nginx(name="rs", files={CHECK: "OK\n"})
    vip = free_port()
    config = "checktimeout=1\nautoreload=yes\n" + virtual_block(vip, rs.port, "OK")
    d = director(config)
    d.wait_ready(30)
    at = time.monotonic()
    write_atomically(d.config, "")  # what a truncating editor leaves for an instant
    d.wait_for(r"the file is empty \(being written\?\): not reloaded", timeout=10, after=at)
    assert d.real_states() == {f"127.0.0.1:{rs.port}": ("up", 1)}
    assert "Purged virtual server" not in d.log_text()
    write_atomically(d.config, config + "# edited\n")
    d.wait_for(r"Configuration reloaded from", timeout=10, after=at)
    assert d.real_states() == {f"127.0.0.1:{rs.port}": ("up", 1)}
