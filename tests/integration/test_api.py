"""The HTTP API end to end: real ``saru run`` daemons (proxy data plane) in front of real nginx reals,
spoken to with http.client and curl — every endpoint, every error path, the bearer token, SSE,
drain/disable/enable/weight on the data plane, persistence across reload and restart, TLS, unix."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from saru.daemon.service import COUNTERS_MAX_AGE
from tests.director import Director
from tests.helpers import Nginx, Watch, free_port, make_self_signed_cert, require, start_nginx

pytestmark = pytest.mark.needs_nginx

TOKEN = "t0ken-for-tests"
SARU = [sys.executable, "-m", "saru"]


def config_text(vport: int, reals: list[Nginx], extra: str = "") -> str:
    lines = ["checktimeout=1", "checkinterval=1", extra, f"virtual=127.0.0.1:{vport}"]
    lines += [f"\treal=127.0.0.1:{r.port} masq {i + 1}" for i, r in enumerate(reals)]
    lines += ["\tscheduler=wrr", "\tprotocol=tcp", "\tservice=http", "\tchecktype=negotiate",
              '\trequest="/check.html"', '\treceive="ok"']
    return "\n".join(line for line in lines if line) + "\n"


@dataclass
class Bed:
    """A daemon with ``[api]`` on loopback, two nginx reals, a state directory of its own."""

    tmp: Path
    reals: list[Nginx]
    vport: int
    aport: int
    settings: Path
    director: Director | None = None
    extra: str = ""
    api_lines: list[str] = field(default_factory=list)

    @property
    def proxy(self) -> str:
        return f"tcp/127.0.0.1:{self.vport}"

    def server(self, i: int) -> str:
        return f"127.0.0.1:{self.reals[i].port}"

    def start(self) -> Director:
        workdir = self.tmp / "director"
        workdir.mkdir(exist_ok=True)
        self.director = Director(workdir, config_text(self.vport, self.reals, self.extra),
                                 ("--settings", str(self.settings)))
        self.director.wait_ready()
        return self.director

    def restart(self) -> Director:
        assert self.director is not None
        assert self.director.stop() == 0
        return self.start()

    def call(self, method: str, path: str, body: object = None, token: str | None = TOKEN,
             raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return http_call("127.0.0.1", self.aport, method, path, body, token, raw, headers)

    def write(self, action: str, i: int, **extra: object) -> tuple[int, Any]:
        return self.call("POST", f"/api/v1/servers/{action}", {"proxy": self.proxy, "server": self.server(i), **extra})

    def real(self, i: int) -> dict[str, Any]:
        status, doc = self.call("GET", "/api/v1/status")
        assert status == 200, doc
        return next(r for r in doc["virtuals"][0]["reals"] if r["server"] == self.server(i))

    def wait_real(self, i: int, predicate: Callable[[dict[str, Any]], bool], what: str,
                  timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            real = self.real(i)
            if predicate(real):
                return real
            if time.monotonic() > deadline:
                raise AssertionError(f"real {i} never became {what}: {real}")
            time.sleep(0.05)


def http_call(host: str, port: int, method: str, path: str, body: object = None, token: str | None = TOKEN,
              raw: bytes | None = None, headers: dict[str, str] | None = None,
              conn: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
    conn = conn or http.client.HTTPConnection(host, port, timeout=10)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        text = response.read()
        kind = response.getheader("Content-Type", "")
    finally:
        conn.close()
    return response.status, json.loads(text) if kind.startswith("application/json") else text.decode()


@pytest.fixture
def bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    monkeypatch.setenv("SARU_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SARU_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("SARU_API_HEARTBEAT", "0.2")
    reals = [start_nginx(tmp_path / f"rs{i}", f"rs{i}", files={"/check.html": "ok\n", "/index.html": f"rs{i}\n"})
             for i in (1, 2)]
    token = tmp_path / "api.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    aport = free_port()
    settings = tmp_path / "saru.toml"
    settings.write_text(f'[api]\nlisten = "127.0.0.1:{aport}"\ntoken_file = "{token}"\n')
    settings.chmod(0o600)
    b = Bed(tmp_path, reals, free_port(), aport, settings)
    try:
        yield b
    finally:
        if b.director is not None:
            b.director.stop()
        for real in reals:
            real.stop()


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


def test_status_is_the_status_document_with_check_details(bed: Bed) -> None:
    d = bed.start()
    status, doc = bed.call("GET", "/api/v1/status", token=None)
    assert status == 200
    control = d.status()
    control.pop("ok", None)
    assert set(doc) == set(control)
    virtual = doc["virtuals"][0]
    assert virtual["proxy"] == bed.proxy
    real = bed.real(0)
    assert real["status"] == "UP" and real["weight"] == 1 and real["operator"] is None
    check = real["last_check"]
    assert check["result_class"] == "L7OK" and check["message"] == "HTTP 200 OK"
    assert 0 <= check["latency"] < 1 and abs(check["at"] - time.time()) < 30
    assert real["transitions"][-1]["to"] == "up"


def test_a_real_going_down_is_told_on_the_event_stream_with_its_reason(bed: Bed) -> None:
    bed.start()
    with EventStream(bed.aport) as stream:
        stream.wait_comment("heartbeat")  # SARU_API_HEARTBEAT=0.2: idle streams get comments
        bed.reals[0].stop()
        event = stream.wait_event(lambda e: e.get("type") == "real_down")
        assert event["server"] == bed.server(0) and event["proxy"] == bed.proxy
        assert event["reason"] == "connection refused" and "Real server down" in event["message"]
        deleted = stream.wait_event(lambda e: e.get("type") == "table_change")
        assert deleted["verb"] == "Deleted" and deleted["server"] == bed.server(0)
    real = bed.real(0)
    assert real["status"] == "DOWN" and real["last_check"]["result_class"] == "L4CON"
    assert [t["to"] for t in real["transitions"]][-2:] == ["up", "down"]


def test_a_reload_with_errors_answers_and_streams_file_line(bed: Bed) -> None:
    d = bed.start()
    with EventStream(bed.aport) as stream:
        good = d.config.read_text()
        d.config.write_text(good + "\tscheduler=nonsense\n")
        status, doc = bed.call("POST", "/api/v1/reload")
        assert status == 422 and doc["reloaded"] is False
        assert any(f"{d.config}:" in line and "scheduler" in line for line in doc["errors"]), doc
        event = stream.wait_event(lambda e: e.get("type") == "reload_failed")
        assert any(f"{d.config}:" in line for line in event["errors"])
        d.config.write_text(good)
        status, doc = bed.call("POST", "/api/v1/reload")
        assert (status, doc["reloaded"]) == (200, True)
        assert stream.wait_event(lambda e: e.get("type") == "config_reloaded")["reloads"] == 1
    d.wait_for(r"API: POST /api/v1/reload from 127\.0\.0\.1: reloaded")


# --------------------------------------------------------------------------------------------------
# authentication and bad requests
# --------------------------------------------------------------------------------------------------


WRITES = [("/api/v1/servers/drain", True), ("/api/v1/servers/enable", True), ("/api/v1/servers/disable", True),
          ("/api/v1/servers/weight", True), ("/api/v1/reload", False), ("/api/v1/ha/resign", False),
          ("/api/v1/ha/takeover", False)]


def test_every_write_needs_the_right_token(bed: Bed) -> None:
    bed.start()
    body = {"proxy": bed.proxy, "server": bed.server(0)}
    for path, _ in WRITES:
        status, doc = bed.call("POST", path, body, token=None)
        assert status == 401 and "Authorization: Bearer" in doc["error"], (path, doc)
        status, doc = bed.call("POST", path, body, token="wrong")
        assert (status, doc) == (403, {"error": "wrong token"}), path
        status, doc = bed.call("POST", path, body, token=None, headers={"Authorization": "Basic eDp5"})
        assert status == 401, path
    assert bed.real(0)["weight"] == 1 and bed.real(0)["operator"] is None  # nothing changed
    assert not (bed.tmp / "state").exists()
    status, doc = bed.write("weight", 0, weight=3)
    assert status == 200 and doc["weight"] == 3


def test_without_a_token_file_writes_are_refused_with_how_to(bed: Bed) -> None:
    bed.settings.write_text(f'[api]\nlisten = "127.0.0.1:{bed.aport}"\n')
    d = bed.start()
    status, doc = bed.write("drain", 0)
    assert status == 403 and "token_file" in doc["error"] and "[api]" in doc["error"]
    assert bed.call("GET", "/api/v1/status", token=None)[0] == 200
    d.wait_for(r"HTTP API listening on http://127\.0\.0\.1:\d+/ \(read-only: no token_file\)")


def test_bad_requests_get_json_errors_and_change_nothing(bed: Bed) -> None:
    bed.start()
    proxy, server = bed.proxy, bed.server(0)
    cases: list[tuple[str, str, Any, bytes | None, int, str]] = [
        ("POST", "/api/v1/servers/drain", None, b"{not json", 400, "not valid JSON"),
        ("POST", "/api/v1/servers/drain", [proxy, server], None, 400, "must be a JSON object"),
        ("POST", "/api/v1/servers/drain", {"proxy": proxy}, None, 400, "missing field(s) 'server'"),
        ("POST", "/api/v1/servers/drain", {"proxy": proxy, "server": server, "x": 1}, None, 400,
         "unknown field(s) 'x'"),
        ("POST", "/api/v1/servers/drain", {"proxy": proxy, "server": 80}, None, 400, "'server' must be a string"),
        ("POST", "/api/v1/servers/weight", {"proxy": proxy, "server": server}, None, 400, "missing field(s) 'weight'"),
        ("POST", "/api/v1/servers/weight", {"proxy": proxy, "server": server, "weight": "5"}, None, 400,
         "'weight' must be a whole number"),
        ("POST", "/api/v1/servers/weight", {"proxy": proxy, "server": server, "weight": True}, None, 400,
         "'weight' must be a whole number"),
        ("POST", "/api/v1/servers/weight", {"proxy": proxy, "server": server, "weight": 70000}, None, 400,
         "weight must be a whole number 0-65535"),
        ("POST", "/api/v1/servers/drain", {"proxy": proxy, "server": "127.0.0.1:1"}, None, 404,
         f"no real server 127.0.0.1:1 in {proxy}"),
        ("POST", "/api/v1/servers/drain", {"proxy": "tcp/127.0.0.1:1", "server": server}, None, 404,
         "no virtual service tcp/127.0.0.1:1"),
        ("POST", "/api/v1/servers/drain", {"proxy": "sctp/1.2.3.4:5", "server": server}, None, 400,
         "protocol must be tcp, udp or fwmark"),
        ("POST", "/api/v1/servers/drain", {"proxy": proxy, "server": "host:80"}, None, 400, "is not an IP address"),
        ("POST", "/api/v1/servers/drain", None, b"{" + b" " * 20000 + b"}", 413, "too large"),
        ("GET", "/api/v1/servers/drain", None, None, 405, "method GET is not allowed"),
        ("DELETE", "/api/v1/status", None, None, 405, "method DELETE is not allowed"),
        ("POST", "/api/v1/servers/nonsense", {"proxy": proxy, "server": server}, None, 404, "no such path"),
        ("GET", "/api/v2/status", None, None, 404, "no such path"),
        ("POST", "/api/v1/reload", {"now": True}, None, 400, "unknown field(s) 'now'"),
        ("POST", "/api/v1/ha/resign", {"hold": "long"}, None, 400, "'hold' must be a number"),
        ("POST", "/api/v1/ha/takeover", None, None, 409, "HA is not configured"),
        ("POST", "/api/v1/ha/resign", None, None, 409, "HA is not configured"),
    ]
    for method, path, body, raw, code, words in cases:
        status, doc = bed.call(method, path, body, raw=raw)
        assert isinstance(doc, dict) and status == code and words in doc.get("error", ""), (method, path, body,
                                                                                            status, doc)
    real = bed.real(0)
    assert (real["weight"], real["operator"], real["status"]) == (1, None, "UP")
    assert not (bed.tmp / "state").exists()


# --------------------------------------------------------------------------------------------------
# the operator's writes on the data plane
# --------------------------------------------------------------------------------------------------


def ipvsadm_weights(d: Director) -> dict[str, int]:
    """``saru ipvsadm -L -n`` through the daemon's control socket: real → weight."""
    run = subprocess.run([*SARU, "ipvsadm", "--control", str(d.control), "-L", "-n"], capture_output=True,
                         text=True, check=True)
    weights: dict[str, int] = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "->" and parts[1][0].isdigit():
            weights[parts[1]] = int(parts[3])
    return weights


def open_on(port: int, name: str) -> http.client.HTTPConnection:
    """A kept-alive connection through the director that landed on real ``name``."""
    for _ in range(50):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/index.html")
        response = conn.getresponse()
        response.read()
        if response.getheader("X-Real-Server") == name:
            return conn
        conn.close()
    raise AssertionError(f"no connection landed on {name}")


def test_drain_sets_weight_zero_and_existing_connections_stay(bed: Bed) -> None:
    d = bed.start()
    kept = open_on(bed.vport, "rs1")
    try:
        status, doc = bed.write("drain", 0)
        assert status == 200, doc
        assert (doc["action"], doc["weight"], doc["kept"], doc["applied"]) == ("drain", 0, "state file", True)
        real = bed.real(0)
        assert (real["weight"], real["in_table"], real["status"], real["operator"]["state"]) == (0, True, "DRAIN",
                                                                                               "drain")
        assert ipvsadm_weights(d)[bed.server(0)] == 0
        kept.request("GET", "/index.html")  # the connection made before the drain still works
        response = kept.getresponse()
        assert (response.status, response.getheader("X-Real-Server"), response.read()) == (200, "rs1", b"rs1\n")
        for _ in range(6):  # new connections go to the other real
            conn = http.client.HTTPConnection("127.0.0.1", bed.vport, timeout=5)
            conn.request("GET", "/index.html")
            assert conn.getresponse().getheader("X-Real-Server") == "rs2"
            conn.close()
    finally:
        kept.close()
    d.wait_for(r"Operator: real server .* drained .* by the HTTP API \(127\.0\.0\.1\); kept in ")
    status, doc = bed.write("drain", 0)
    assert status == 200 and doc["changed"] is False


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(bed: Bed) -> Samples:
    """Every sample of one ``GET /metrics``."""
    status, text = bed.call("GET", "/metrics", token=None)
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_reals_change_shows_in_the_next_scrape(bed: Bed) -> None:
    """The metrics' rows are kept between scrapes and redone where something changed: what the daemon
    saw (a connection, a real stopping, a drain) is in the next scrape (connections within the
    documented COUNTERS_MAX_AGE)."""
    bed.start()

    def key(name: str, i: int | None = None, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
        real = {"server": bed.server(i)} if i is not None else {}
        return name, frozenset({"proxy": bed.proxy, **real, **labels}.items())

    first = scrape(bed)
    assert first[key("saru_server_status", 0, state="UP")] == 1 == first[key("saru_server_check_status", 0,
                                                                                state="L7OK")]
    assert first[key("saru_backend_active_servers")] == 2
    kept = open_on(bed.vport, "rs1")
    try:
        deadline = time.monotonic() + COUNTERS_MAX_AGE + 2
        while scrape(bed)[key("saru_server_connections_active", 0)] != 1:
            assert time.monotonic() < deadline, "a connection held open never showed in the scrapes"
            time.sleep(0.1)
    finally:
        kept.close()
    bed.reals[0].stop()
    bed.wait_real(0, lambda r: r["status"] == "DOWN", "DOWN")
    down = scrape(bed)
    assert (down[key("saru_server_status", 0, state="DOWN")], down[key("saru_server_status", 0, state="UP")]) == (1, 0)
    assert down[key("saru_server_check_status", 0, state="L4CON")] == 1
    assert down[key("saru_server_check_up_down_total", 0)] == 1 and down[key("saru_server_weight", 0)] == 0
    assert down[key("saru_backend_active_servers")] == 1
    assert down[key("saru_server_status", 1, state="UP")] == 1  # the other real, as it was
    # a failed check of a real already down changes nothing in the table, only its statistics
    failures = scrape(bed)[key("saru_server_check_failures_total", 0)]
    seen = bed.real(0)["last_check"]["at"]
    bed.wait_real(0, lambda r: r["last_check"]["at"] > seen, "checked again")  # after the scrape
    assert scrape(bed)[key("saru_server_check_failures_total", 0)] > failures
    status, doc = bed.write("drain", 1)
    assert status == 200, doc
    drained = scrape(bed)
    assert drained[key("saru_server_status", 1, state="DRAIN")] == 1 and drained[key("saru_server_weight", 1)] == 0
    assert drained[key("saru_backend_active_servers")] == 0


def test_disable_enable_and_weight(bed: Bed) -> None:
    d = bed.start()
    status, doc = bed.write("disable", 1)
    assert status == 200 and doc["weight"] is None
    real = bed.real(1)
    assert (real["in_table"], real["status"]) == (False, "MAINT")
    assert bed.server(1) not in ipvsadm_weights(d)
    status, doc = bed.write("weight", 1, weight=5)
    assert status == 409 and "disabled: enable it first" in doc["error"]
    status, doc = bed.write("enable", 1)
    assert status == 200 and doc["weight"] == 2 and doc["override"] is None
    real = bed.real(1)
    assert (real["weight"], real["status"], real["operator"]) == (2, "UP", None)
    status, doc = bed.write("weight", 1, weight=7)
    assert status == 200 and doc["weight"] == 7
    assert ipvsadm_weights(d)[bed.server(1)] == 7 and bed.real(1)["operator"]["weight"] == 7
    status, doc = bed.write("weight", 1, weight=0)
    assert bed.real(1)["status"] == "DRAIN"
    bed.write("enable", 1)
    assert ipvsadm_weights(d)[bed.server(1)] == 2
    assert [t["to"] for t in bed.real(1)["transitions"]][-5:] == ["disable", "enable", "weight", "weight", "enable"]


def test_the_cli_does_the_same_over_the_control_socket(bed: Bed) -> None:
    d = bed.start()

    def saru(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SARU, *args[:1], "-c", str(d.config), "--control", str(d.control), *args[1:]],
                              capture_output=True, text=True)

    run = saru("drain", bed.proxy, bed.server(0))
    assert run.returncode == 0 and "drained (weight 0)" in run.stdout, run.stderr
    assert bed.real(0)["weight"] == 0
    run = saru("weight", bed.proxy, bed.server(1), "9")
    assert run.returncode == 0 and bed.real(1)["weight"] == 9
    run = saru("disable", bed.proxy, "127.0.0.1:1")
    assert run.returncode == 1 and "no real server 127.0.0.1:1" in run.stderr
    run = saru("enable", bed.proxy, bed.server(0))
    assert run.returncode == 0 and bed.real(0)["weight"] == 1
    run = saru("status")
    assert "[weight 9 by operator]" in run.stdout
    d.wait_for(r"weight set to 9 by the control socket")


# --------------------------------------------------------------------------------------------------
# persistence across reload and restart
# --------------------------------------------------------------------------------------------------


def test_drain_and_disable_survive_reload_and_restart_in_the_state_file(bed: Bed) -> None:
    bed.start()
    assert bed.write("drain", 0)[0] == 200
    assert bed.write("disable", 1)[0] == 200
    files = list((bed.tmp / "state" / "operator").glob("*.json"))
    assert len(files) == 1 and {o["state"] for o in json.loads(files[0].read_text())["overrides"]} == {"drain",
                                                                                                         "disable"}
    assert bed.call("POST", "/api/v1/reload")[0] == 200
    assert (bed.real(0)["weight"], bed.real(1)["in_table"]) == (0, False)
    d = bed.restart()
    assert (bed.real(0)["weight"], bed.real(0)["status"]) == (0, "DRAIN")
    assert (bed.real(1)["in_table"], bed.real(1)["status"]) == (False, "MAINT")
    assert bed.server(1) not in ipvsadm_weights(d)
    assert bed.write("enable", 0)[0] == 200 and bed.write("enable", 1)[0] == 200
    d = bed.restart()
    assert (bed.real(0)["weight"], bed.real(1)["weight"]) == (1, 2)


def test_disable_with_maintenancedir_is_ldirectords_file(bed: Bed) -> None:
    maint = bed.tmp / "maintenance"
    maint.mkdir()
    bed.extra = f"maintenancedir={maint}"
    d = bed.start()
    status, doc = bed.write("disable", 1)
    assert status == 200 and doc["kept"] == "maintenancedir"
    marker = maint / bed.server(1)
    assert doc["path"] == str(marker) and marker.exists()
    bed.wait_real(1, lambda r: r["state"] == "maintenance", "in maintenance")  # the monitor reads the file
    assert bed.real(1)["last_check"]["message"] == "Server in maintenance"
    assert not (bed.tmp / "state").exists()  # nothing in the state file
    assert bed.call("POST", "/api/v1/reload")[0] == 200
    assert bed.real(1)["status"] == "MAINT"
    d = bed.restart()
    assert (bed.real(1)["in_table"], bed.real(1)["status"]) == (False, "MAINT")
    assert bed.real(1)["operator"]["state"] == "disable"
    status, doc = bed.write("enable", 1)
    assert status == 200 and not marker.exists()
    real = bed.wait_real(1, lambda r: r["in_table"], "back in the table")
    assert (real["weight"], real["status"]) == (2, "UP")
    assert bed.server(1) in ipvsadm_weights(d)


# --------------------------------------------------------------------------------------------------
# listening: refused, TLS, unix socket, port in use, the demo
# --------------------------------------------------------------------------------------------------


def run_saru(bed: Bed, settings: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    bed.settings.write_text(settings)
    workdir = bed.tmp / "once"
    workdir.mkdir(exist_ok=True)
    config = workdir / "ldirectord.cf"
    config.write_text(config_text(bed.vport, bed.reals))
    return subprocess.run([*SARU, "run", "-c", str(config), "--settings", str(bed.settings), "--dataplane", "proxy",
                           "--control", str(workdir / "c.sock")], capture_output=True, text=True, timeout=timeout)


def test_a_non_loopback_listen_is_refused_without_token_and_tls(bed: Bed) -> None:
    run = run_saru(bed, f'[api]\nlisten = "0.0.0.0:{bed.aport}"\n')
    assert run.returncode == 2
    assert f"{bed.settings}:2: [api] listen: 0.0.0.0:{bed.aport} is reachable from other hosts" in run.stderr
    check = subprocess.run([*SARU, "check-config", str(bed.settings)], capture_output=True, text=True)
    assert check.returncode == 2 and "reachable from other hosts" in check.stdout + check.stderr
    with socket.socket() as probe:  # nothing listens
        assert probe.connect_ex(("127.0.0.1", bed.aport)) != 0


def test_a_port_in_use_fails_fast_with_exit_1(bed: Bed) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", bed.aport))
        taken.listen()
        started = time.monotonic()
        run = run_saru(bed, f'[api]\nlisten = "127.0.0.1:{bed.aport}"\n')
    assert run.returncode == 1 and time.monotonic() - started < 10
    assert f"cannot listen on 127.0.0.1:{bed.aport}: the address is already in use" in run.stderr
    assert not (bed.tmp / "once" / "c.sock").exists()  # released its control socket on the way out
    with socket.socket() as probe:  # never opened its virtual service
        assert probe.connect_ex(("127.0.0.1", bed.vport)) != 0


def test_tls_with_a_self_signed_certificate(bed: Bed, tmp_path: Path) -> None:
    require(shutil.which("openssl") is not None, "openssl is not installed")
    (tmp_path / "tls").mkdir()
    cert, key = make_self_signed_cert(tmp_path / "tls")
    bed.settings.write_text(f'[api]\nlisten = "127.0.0.1:{bed.aport}"\ntoken_file = "{tmp_path / "api.token"}"\n'
                            f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    d = bed.start()
    d.wait_for(rf"HTTP API listening on https://127\.0\.0\.1:{bed.aport}/")
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", bed.aport, timeout=10, context=context)
    status, doc = http_call("127.0.0.1", bed.aport, "GET", "/api/v1/status", conn=conn)
    assert status == 200 and doc["virtuals"][0]["proxy"] == bed.proxy
    conn = http.client.HTTPSConnection("127.0.0.1", bed.aport, timeout=10, context=context)
    status, doc = http_call("127.0.0.1", bed.aport, "POST", "/api/v1/servers/drain",
                            {"proxy": bed.proxy, "server": bed.server(0)}, conn=conn)
    assert status == 200 and doc["weight"] == 0
    curl = subprocess.run(["curl", "-s", "--cacert", str(cert), f"https://127.0.0.1:{bed.aport}/api/v1/status"],
                          capture_output=True, text=True)
    assert json.loads(curl.stdout)["virtuals"][0]["reals"][0]["status"] == "DRAIN"
    plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{bed.aport}/api/v1/status"], capture_output=True, text=True)
    assert plain.stdout != "200"  # no clear-text answer on the TLS port


def test_unix_socket_listen(bed: Bed, tmp_path: Path) -> None:
    path = tmp_path / "api" / "saru-api.sock"
    bed.settings.write_text(f'[api]\nlisten = "unix:{path}"\ntoken_file = "{tmp_path / "api.token"}"\n')
    path.parent.mkdir()
    run = tmp_path / "director"  # Bed.start's workdir: the control socket's
    run.mkdir()
    # each socket has its mode from its first moment: created, never chmod-ed after (saru.files.bind_unix)
    with Watch(path.parent) as api_watch, Watch(run) as control_watch:
        d = bed.start()
        assert [e for e in api_watch.events() if e[0] == path.name] == [(path.name, "create")]
        control = [e for e in control_watch.events() if e[0] == "control.sock"]
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert control == [("control.sock", "create")]
    assert stat.S_IMODE((run / "control.sock").lstat().st_mode) == 0o600
    curl = subprocess.run(["curl", "-s", "--unix-socket", str(path), "http://saru/api/v1/status"],
                          capture_output=True, text=True)
    assert json.loads(curl.stdout)["virtuals"][0]["proxy"] == bed.proxy
    curl = subprocess.run(["curl", "-s", "--unix-socket", str(path), "-X", "POST", "-H",
                           f"Authorization: Bearer {TOKEN}", "-d",
                           json.dumps({"proxy": bed.proxy, "server": bed.server(1)}),
                           "http://saru/api/v1/servers/disable"], capture_output=True, text=True)
    assert json.loads(curl.stdout)["action"] == "disable"
    d.wait_for(r"disabled \(out of the table\) by the HTTP API \(a unix socket client\)")
    assert d.stop() == 0
    assert not path.exists()  # released on the way out


def test_the_demo_turns_the_api_on_and_prints_the_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, aport = free_port(), free_port()
    env = {**os.environ, "SARU_RUNTIME_DIR": str(tmp_path / "run"), "SARU_STATE_DIR": str(tmp_path / "state"),
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([*SARU, "demo", "--port", str(port), "--api-port", str(aport), "--dir",
                                 str(tmp_path / "demo"), "--duration", "60"], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while f"Dashboard: http://127.0.0.1:{aport}/" not in log.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        token = text.split("write token for its Drain/Enable/Disable buttons: ", 1)[1].split(")", 1)[0]
        assert len(token) == 32
        assert oct((tmp_path / "demo" / "api.token").stat().st_mode & 0o777) == "0o600"
        status, page = http_call("127.0.0.1", aport, "GET", "/", token=None)
        assert status == 200 and "<" in page
        status, doc = http_call("127.0.0.1", aport, "GET", "/api/v1/status", token=None)
        real = doc["virtuals"][0]["reals"][0]["server"]
        status, done = http_call("127.0.0.1", aport, "POST", "/api/v1/servers/drain",
                                 {"proxy": f"tcp/127.0.0.1:{port}", "server": real}, token=token)
        assert status == 200 and done["weight"] == 0, done
    finally:
        demo.terminate()
        demo.wait(20)


# --------------------------------------------------------------------------------------------------
# an SSE reader
# --------------------------------------------------------------------------------------------------


class EventStream:
    """``GET /api/v1/events`` read in a thread: events (parsed JSON) and comments as they come."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> EventStream:
        self.conn.request("GET", "/api/v1/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")
        self._thread.start()
        self.wait_comment("connected")  # subscribed: nothing published from now on is missed
        return self

    def __exit__(self, *exc: object) -> None:
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the reader sees the end of the stream
        self._thread.join(5)
        self.conn.close()

    def _read(self) -> None:
        data: list[str] = []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                with self._cond:
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif not line and data:
                        self.events.append(json.loads("\n".join(data)))
                        data = []
                    self._cond.notify_all()
        except (OSError, ValueError, AttributeError):  # AttributeError: http.client's, on a closed stream
            pass

    def _wait(self, found: Callable[[], Any], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = found()
                if value is not None:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout}s; events: {self.events}")
                self._cond.wait(remaining)

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        return self._wait(lambda: next((e for e in self.events if predicate(e)), None), "matching event", timeout)

    def wait_comment(self, word: str, timeout: float = 10.0) -> str:
        return self._wait(lambda: next((c for c in self.comments if word in c), None), f"comment {word!r}",
                          timeout)
