"""End to end: ``saru run`` with the proxy data plane in front of real nginx servers on loopback."""

from __future__ import annotations

import http.client
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.director import Director, Load, get
from tests.helpers import free_port

CHECK = "/haCheker/haCheck.html"
INTERVAL = 1.0
TIMEOUT = 1.0
SLACK = 1.5


def config_text(workdir: Path, port: int, reals: list[tuple[int, int]], *, globals_: str = "",
                virtual: str = "", scheduler: str = "rr") -> str:
    real_lines = "\n".join(f"\treal=127.0.0.1:{p} masq {w}" for p, w in reals)
    return f"""\
checktimeout={TIMEOUT:g}
checkinterval={INTERVAL:g}
logfile="{workdir / 'ldirectord.log'}"
{globals_}
virtual=127.0.0.1:{port}
{real_lines}
\tservice=http
\tscheduler={scheduler}
\tprotocol=tcp
\tchecktype=negotiate
\trequest="haCheker/haCheck.html"
\treceive="up and running"
{virtual}
"""


@pytest.fixture
def backends(nginx):
    """Three real nginx servers with the guide's check page."""
    return [nginx(name=f"rs{i}", files={CHECK: "up and running\n", "/index.html": f"rs{i}\n"})
            for i in (1, 2, 3)]


@pytest.fixture
def director(tmp_path):
    started: list[Director] = []

    def start(text: str, *args: str) -> Director:
        d = Director(tmp_path, text, args)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def test_round_robin_and_weights_are_observed(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 3)], scheduler="wrr"))
    d.wait_ready()
    seen = [get(port)[1] for _ in range(40)]
    assert seen.count("rs1") == 10 and seen.count("rs2") == 30, seen
    # rr over the same reals alternates strictly
    d.config.write_text(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 3)], scheduler="rr"))
    after = time.monotonic()
    d.sighup()
    d.wait_for(rf"Changed virtual server: 127\.0\.0\.1:{port}", after=after)
    seen = [get(port)[1] for _ in range(20)]
    assert seen.count("rs1") == 10 and seen.count("rs2") == 10
    assert all(a != b for a, b in itertools.pairwise(seen)), seen
    # a second SIGHUP works too (each signal starts a fresh reload)
    d.config.write_text(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 3)], scheduler="wrr"))
    after = time.monotonic()
    d.sighup()
    d.wait_for(rf"Changed virtual server: 127\.0\.0\.1:{port}", after=after)
    seen = [get(port)[1] for _ in range(40)]
    assert seen.count("rs1") == 10 and seen.count("rs2") == 30, seen


def test_failed_real_removed_within_interval_plus_timeout_and_restored(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 1)]))
    d.wait_ready()
    removed_at = time.monotonic()
    rs2.remove(CHECK)
    at, _ = d.wait_for(rf"Deleted real server: 127\.0\.0\.1:{rs2.port} ", after=removed_at)
    assert at - removed_at <= INTERVAL + TIMEOUT + SLACK, f"took {at - removed_at:.2f}s"
    assert {get(port)[1] for _ in range(10)} == {"rs1"}
    assert d.real_states()[f"127.0.0.1:{rs2.port}"] == ("down", None)
    back_at = time.monotonic()
    rs2.write(CHECK, "up and running\n")
    at, _ = d.wait_for(rf"Added real server: 127\.0\.0\.1:{rs2.port} ", after=back_at)
    assert at - back_at <= INTERVAL + TIMEOUT + SLACK
    assert {get(port)[1] for _ in range(10)} == {"rs1", "rs2"}


def test_stopped_real_server_is_removed(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 1)]))
    d.wait_ready()
    stopped_at = time.monotonic()
    rs1.stop()
    d.wait_for(rf"Deleted real server: 127\.0\.0\.1:{rs1.port} ", after=stopped_at)
    assert {get(port)[1] for _ in range(6)} == {"rs2"}


def test_quiescent_keeps_real_at_weight_zero_and_established_connections_work(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 1)], globals_="quiescent=yes"))
    d.wait_ready()
    # open keep-alive connections until one lands on rs2
    conns = []
    held = None
    for _ in range(4):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        conns.append(c)
        if r.getheader("X-Real-Server") == "rs2":
            held = c
            break
    assert held is not None
    t0 = time.monotonic()
    rs2.remove(CHECK)
    d.wait_for(rf"Quiescent real server: 127\.0\.0\.1:{rs2.port} .*Weight set to 0", after=t0)
    assert d.real_states()[f"127.0.0.1:{rs2.port}"] == ("down", 0)
    assert {get(port)[1] for _ in range(8)} == {"rs1"}
    held.request("GET", "/")  # the established connection still reaches the quiesced real
    r = held.getresponse()
    assert r.status == 200 and r.getheader("X-Real-Server") == "rs2"
    r.read()
    for c in conns:
        c.close()


def test_fallback_when_every_real_is_down_and_fallbackcommand(nginx, backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    sorry = nginx(name="sorry", files={"/index.html": "sorry\n"})
    record = tmp_path / "fallback.log"
    script = tmp_path / "fallback.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    script.chmod(0o755)
    d = director(config_text(
        tmp_path, port, [(rs1.port, 1), (rs2.port, 1)],
        virtual=f"\tfallback=127.0.0.1:{sorry.port} masq\n\tfallbackcommand={script}",
    ))
    d.wait_ready()
    assert "fallback server" not in d.log_text()  # no flapping at start (ldirectord bug W4)
    t0 = time.monotonic()
    rs1.remove(CHECK)
    rs2.remove(CHECK)
    d.wait_for(rf"Added fallback server: 127\.0\.0\.1:{sorry.port} ", after=t0)
    assert {get(port)[1] for _ in range(4)} == {"sorry"}
    t1 = time.monotonic()
    rs1.write(CHECK, "up and running\n")
    d.wait_for(rf"Deleted fallback server: 127\.0\.0\.1:{sorry.port} ", after=t1)
    assert {get(port)[1] for _ in range(4)} == {"rs1"}
    deadline = time.monotonic() + 5
    expected = [f"start 127.0.0.1:{port} tcp", f"stop 127.0.0.1:{port} tcp"]

    def recorded() -> list[str]:
        return record.read_text().splitlines() if record.exists() else []

    while time.monotonic() < deadline and recorded() != expected:
        time.sleep(0.05)  # the hook runs asynchronously; its only trace is the file it writes
    assert recorded() == expected
    # all reals down again, then stop: fallbackcommand hears "stop" as the virtual goes away
    t2 = time.monotonic()
    rs1.remove(CHECK)
    d.wait_for(rf"Added fallback server: 127\.0\.0\.1:{sorry.port} ", after=t2)
    assert d.stop() == 0
    expected += [f"start 127.0.0.1:{port} tcp", f"stop 127.0.0.1:{port} tcp"]
    assert recorded() == expected


def test_reload_adds_and_removes_reals_under_load_without_failures(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, rs3 = backends
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 1)]))
    d.wait_ready()
    with Load(port, threads=4, max_requests=30000) as load:
        load.wait_requests(200)
        d.config.write_text(config_text(tmp_path, port, [(rs2.port, 1), (rs3.port, 1)]))
        t0 = time.monotonic()
        d.sighup()
        d.wait_for(rf"Added real server: 127\.0\.0\.1:{rs3.port} ", after=t0)
        d.wait_for(rf"Deleted real server: 127\.0\.0\.1:{rs1.port} ", after=t0)
        before = dict(load.servers)
        load.wait_requests(400)
    assert load.failures == []
    assert load.servers.get("rs3", 0) > 0
    # after the deletion was logged, at most the requests already in flight (one per thread) reach rs1
    assert load.servers.get("rs1", 0) - before.get("rs1", 0) <= 4


def test_bad_config_on_reload_keeps_the_running_table(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 1)]))
    d.wait_ready()
    good = d.config.read_text()
    d.config.write_text(good + "\treal=10.0.0.[2-5]:80 masq\n")
    result = subprocess.run([sys.executable, "-m", "saru", "reload", "--control", str(d.control)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{d.config}:" in result.stderr
    doc = d.status()
    assert doc["last_reload_error"]
    assert len(doc["virtuals"][0]["reals"]) == 2
    assert {get(port)[1] for _ in range(6)} == {"rs1", "rs2"}


def test_hung_real_does_not_delay_the_others(backends, hung_server, director, tmp_path):
    port = free_port()
    rs1 = backends[0]
    text = config_text(tmp_path, port, [(hung_server.port, 1), (rs1.port, 1)]).replace(
        f"checktimeout={TIMEOUT:g}", "checktimeout=4")
    t0 = time.monotonic()
    d = director(text)
    at, _ = d.wait_for(rf"Added real server: 127\.0\.0\.1:{rs1.port} ", after=t0)
    assert at - t0 < 3.0, f"healthy real added after {at - t0:.2f}s"
    assert get(port)[1] == "rs1"
    d.wait_ready(timeout=10)  # the hung real's verdict comes when its 4 s timeout fires
    assert d.real_states()[f"127.0.0.1:{hung_server.port}"][0] == "down"


def test_status_plan_and_log_vocabulary(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, rs3 = backends
    monitorfile = tmp_path / "monitor.log"
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 2)],
                             virtual=f'\tmonitorfile="{monitorfile}"'))
    d.wait_ready()
    out = subprocess.run([sys.executable, "-m", "saru", "status", "--control", str(d.control)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"127.0.0.1:{rs2.port}" in out.stdout and " up " in out.stdout
    assert "proxy" in out.stdout
    plan = [sys.executable, "-m", "saru", "plan", "-c", str(d.config), "--control", str(d.control)]
    first = subprocess.run(plan, capture_output=True, text=True, timeout=30)
    assert "# no changes" in first.stdout, first.stdout + first.stderr
    d.config.write_text(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 2), (rs3.port, 1)]))
    second = subprocess.run(plan, capture_output=True, text=True, timeout=30)
    assert f"-a -t 127.0.0.1:{port} -r 127.0.0.1:{rs3.port} -m -w 1" in second.stdout
    assert len([line for line in second.stdout.splitlines() if not line.startswith("#")]) == 1
    logfile = (tmp_path / "ldirectord.log").read_text()
    pid = d.process.pid
    expected = f"Added real server: 127.0.0.1:{rs2.port} (127.0.0.1:{port}) (Weight set to 2)"
    assert f"|ldirectord.cf|{pid}] {expected}" in logfile
    assert d.stop() == 0  # flushes the monitorfile
    lines = monitorfile.read_text().splitlines()
    real_id = f"negotiate http tcp 127.0.0.1 {rs2.port} "
    assert any(real_id in line and "[up]" in line for line in lines), lines


def test_autoreload_applies_saved_changes(backends, director, tmp_path):
    port = free_port()
    rs1, rs2, _ = backends
    record = tmp_path / "callback.log"
    script = tmp_path / "callback.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    script.chmod(0o755)
    globals_ = f'autoreload=yes\ncallback="{script}"'
    d = director(config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 1)], globals_=globals_))
    d.wait_ready()
    t0 = time.monotonic()
    d.config.touch()  # a new mtime alone is not a change (ldirectord compares the content)
    edited = config_text(tmp_path, port, [(rs1.port, 1), (rs2.port, 5)], globals_=globals_)
    d.config.write_text(edited)
    d.wait_for(r"Configuration file .* has changed on disk", after=t0)
    d.wait_for(rf"Changed real server: 127\.0\.0\.1:{rs2.port} .*Weight set to 5", after=t0)
    assert d.stop() == 0  # waits for the callback it started
    assert record.read_text().splitlines() == [str(d.config)]
    assert d.log_text().count("has changed on disk") == 1


def test_stop_cleans_up(backends, director, tmp_path):
    port = free_port()
    rs1 = backends[0]
    d = director(config_text(tmp_path, port, [(rs1.port, 1)]))
    d.wait_ready()
    assert d.pidfile.read_text().strip() == str(d.process.pid)
    assert d.stop() == 0
    assert not d.pidfile.exists() and not d.control.exists()
    with pytest.raises(OSError):
        get(port, timeout=2)
    assert "Purged virtual server" in d.log_text()


def test_demo_runs_and_balances(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "saru", "demo", "--port", str(port), "--dir", str(tmp_path),
            "--duration", "60"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "All real servers checked" in line:
                break
        else:
            pytest.fail(f"demo exited early: {proc.wait()}")
        bodies = {get(port)[2] for _ in range(6)}
        assert bodies == {f"Hello from real server {i}\n" for i in (1, 2, 3)}
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
