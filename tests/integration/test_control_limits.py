"""The daemon's front doors at their limits: answers of any size reach every client, bad requests get an
answer (never silence or a traceback), a failed reload — whatever broke the file — is reported and
keeps the running configuration. A real ``saru run`` on the proxy plane; the reals are 127.0.x.y
addresses that nothing listens on (``checktype=on``/``off``: no check traffic at all)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.director import Director, control_bytes
from tests.helpers import free_port

MAX_REQUEST = 16 * 1024 * 1024


def many_reals(log: Path, port: int, count: int, checktype: str) -> str:
    reals = "\n".join(f"\treal=127.0.{i // 250}.{i % 250 + 1}:8080 masq 1" for i in range(count))
    return (f'checktimeout=1\ncheckinterval=5\nlogfile="{log}"\n\nvirtual=127.0.0.1:{port}\n{reals}\n'
            f"\tchecktype={checktype}\n\tscheduler=rr\n\tprotocol=tcp\n")


def saru(director: Director, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saru", *args, "--control", str(director.control)],
                          capture_output=True, text=True, timeout=60)


def raw_request(path: Path, payload: bytes, half_close: bool = False) -> dict[str, object]:
    """Send ``payload`` as it is and read the answer up to EOF (what any client of the socket sees)."""
    data = control_bytes(path, payload, half_close)
    assert data, "the daemon closed the connection without answering"
    answer: dict[str, object] = json.loads(data)
    return answer


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


def test_big_answers_reach_every_client(director, tmp_path):
    """600 reals: status (text and JSON), ipvsadm -L -n and plan answers are far over 64 KiB."""
    d = director(many_reals(tmp_path / "saru.log", free_port(), 600, "on"))
    d.wait_ready(30)
    text = saru(d, "status")
    assert text.returncode == 0, text.stderr
    assert "127.0.2.100:8080" in text.stdout
    document = saru(d, "status", "--json")
    assert document.returncode == 0, document.stderr
    assert len(document.stdout) > 64 * 1024
    reals = json.loads(document.stdout)["virtuals"][0]["reals"]
    assert len(reals) == 600 and all(r["in_table"] for r in reals)
    listing = saru(d, "ipvsadm", "-L", "-n")
    assert listing.returncode == 0, listing.stderr
    assert sum(line.lstrip().startswith("-> 127.0.") for line in listing.stdout.splitlines()) == 600
    plan = saru(d, "plan", "-c", str(d.config))
    assert plan.returncode == 0, plan.stderr
    assert "# no changes" in plan.stdout


def test_status_of_many_unchecked_reals(director, tmp_path):
    d = director(many_reals(tmp_path / "saru.log", free_port(), 300, "off"))
    d.wait_ready(30)
    done = saru(d, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["virtuals"][0]["reals"]) == 300
    assert saru(d, "status").returncode == 0


def test_bad_requests_get_an_answer_and_the_daemon_keeps_serving(director, tmp_path):
    d = director(many_reals(tmp_path / "saru.log", free_port(), 2, "on"))
    d.wait_ready()
    too_large = raw_request(d.control, b'{"command": "status", "pad": "' + b"x" * MAX_REQUEST + b'"}\n')
    assert too_large == {"ok": False, "error": f"request too large (more than {MAX_REQUEST} bytes)"}
    # a request without its newline, ended by the client's half-close, is a request too
    assert raw_request(d.control, b"x" * (MAX_REQUEST + 1), half_close=True)["error"] == too_large["error"]
    assert raw_request(d.control, b'{"command": "status"}', half_close=True)["ok"] is True
    # just under the limit is read and parsed (then refused as an unknown command, not as too large)
    near = raw_request(d.control, b'{"command": "nope", "pad": "' + b"x" * (MAX_REQUEST - 100) + b'"}\n')
    assert near["ok"] is False and "unknown command 'nope'" in str(near["error"])
    assert raw_request(d.control, b"[" * 60000 + b"\n") == {"ok": False, "error": "request is nested too deeply"}
    assert raw_request(d.control, b"\xff\xfe\n") == {"ok": False, "error": "request is not valid JSON"}
    assert d.status()["ok"] is True
    assert "Traceback" not in d.log_text()


def test_failed_reload_with_a_huge_diagnostic_list(director, tmp_path):
    d = director(many_reals(tmp_path / "saru.log", free_port(), 2, "on"))
    d.wait_ready()
    good = d.config.read_text()
    d.config.write_text(good + "".join(f"bogusdirective{i}=1\n" for i in range(20000)))
    reload = saru(d, "reload")
    assert reload.returncode == 2, reload.stderr[-2000:]
    assert len(reload.stderr) > 1_000_000 and 'unknown directive "bogusdirective19999"' in reload.stderr
    status = saru(d, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    document = json.loads(status.stdout)
    assert document["last_reload_error"].count("unknown directive") == 20000
    assert [r["in_table"] for r in document["virtuals"][0]["reals"]] == [True, True]
    assert saru(d, "status").returncode == 0


@pytest.mark.parametrize(("broken", "message"), [
    ("[director]\nconfig = " + "[" * 5000 + "\n", ":2: not valid TOML: arrays or inline tables nested too deeply"),
    ('[director]\nconfig = "x\\u0000.cf"\n', ":2: [director] config: 'x\\x00.cf' contains a NUL byte"),
])
def test_a_settings_file_that_breaks_the_parser_fails_the_reload_visibly(director, tmp_path, broken, message):
    settings = tmp_path / "saru.toml"
    settings.write_text('[cluster]\ngroup = "G1"\n')
    d = director(many_reals(tmp_path / "saru.log", free_port(), 2, "on"), "--settings", str(settings))
    d.wait_ready()
    settings.write_text(broken)
    reload = saru(d, "reload")
    assert reload.returncode == 2, reload.stderr
    assert f"{settings}{message}" in reload.stderr
    status = d.status()
    assert f"{settings}{message}" in status["last_reload_error"]
    assert status["settings"] == str(settings) and status["reloads"] == 0
    # SIGHUP: the same error in the log, the daemon still serving
    after = time.monotonic()
    d.sighup()
    d.wait_for(r"Error reading configuration, keeping the running one", after=after)
    d.wait_for(re.escape(f"{settings}{message}"), after=after)
    assert d.status()["virtuals"][0]["in_table"] is True
    assert "Traceback" not in d.log_text()
