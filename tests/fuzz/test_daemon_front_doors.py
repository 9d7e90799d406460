"""Hostile requests to a REAL running daemon (``saru run``, proxy plane, control socket and HTTP API on):
broken framing, bad JSON, unknown commands, every field of every op with a wrong type or value, huge
and truncated requests, raw HTTP with malformed request lines and headers.

Every request gets an answer (a JSON error naming the problem), the daemon keeps running and serving,
and the table is exactly what it was: compared through the control socket after each request and with
``saru ipvsadm -L -n`` and ``saru status`` before and after.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.browser import ApiDirector, api_director
from tests.director import control_bytes
from tests.fuzz.budget import fuzz
from tests.helpers import free_port

SERVICE = {"protocol": "tcp", "address": "127.0.0.1", "port": 0, "fwmark": None, "family": 4}
DEST = {"address": "127.0.0.2", "port": 8080, "forward": "masq", "weight": 2, "upper_threshold": 0,
        "lower_threshold": 0}
SETTINGS = {"scheduler": "wrr", "persistent": None, "netmask": None, "schedflags": None, "ops": False}


class Daemon:
    """The daemon under attack and what it looked like before."""

    def __init__(self, api: ApiDirector, port: int) -> None:
        self.api = api
        self.port = port
        self.control = api.director.control
        self.table_before = self.table()
        self.listing_before = self.cli("ipvsadm", "-L", "-n")
        self.status_before = self.reals()

    def table(self) -> Any:
        answer = self.request({"command": "table"})
        assert answer["ok"], answer
        return answer["table"] if "table" in answer else answer

    def request(self, obj: object) -> dict[str, Any]:
        return self.raw(json.dumps(obj).encode() + b"\n")

    def raw(self, payload: bytes, half_close: bool = True) -> dict[str, Any]:
        """Send ``payload`` as it is; the answer, read to EOF, must be one JSON object with "ok"."""
        data = control_bytes(self.control, payload, half_close)
        assert data.endswith(b"\n") and data.count(b"\n") == 1, data[:200]
        answer: dict[str, Any] = json.loads(data)
        assert isinstance(answer.get("ok"), bool), answer
        if not answer["ok"]:
            assert isinstance(answer.get("error"), str) and answer["error"], answer
        return answer

    def reals(self) -> list[tuple[object, ...]]:
        """``saru status --json``: each real's address, state, weight and place in the table."""
        doc = json.loads(self.cli("status", "--json"))
        return [(r["address"], r["port"], r["state"], r["weight"], r["in_table"])
                for v in doc["virtuals"] for r in v["reals"]]

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "saru", *args, "--control", str(self.control)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def assert_unchanged(self) -> None:
        assert self.api.director.process.poll() is None, self.api.director.log_text()[-3000:]
        assert self.table() == self.table_before


CONFIG = """\
checktimeout=1
checkinterval=30
virtual=127.0.0.1:{port}
\treal=127.0.0.2:8080 masq 2
\treal=127.0.0.3:8080 masq 1
\tchecktype=on
\tscheduler=wrr
\tprotocol=tcp
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    port = free_port()
    SERVICE["port"] = port
    api = api_director(tmp_path_factory.mktemp("front-doors"), CONFIG.format(port=port))
    try:
        d = Daemon(api, port)
        yield d
        # afterwards, as the operator sees it: the same table, the same status, no traceback logged
        assert d.cli("ipvsadm", "-L", "-n") == d.listing_before
        assert d.reals() == d.status_before
        assert "Traceback" not in api.director.log_text(), api.director.log_text()[-3000:]
    finally:
        api.director.stop()


# -- the control socket: framing -------------------------------------------------------------------

FRAMING = [
    (b"", "not valid JSON"),
    (b"\n", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe\x00garbage\n", "not valid JSON"),
    (b"[1, 2]\n", "must be an object"),
    (b'"status"\n', "must be an object"),
    (b'{"command": 5}\n', "must be an object"),
    (b'{"command": null}\n', "must be an object"),
    (b'{"command": "nope"}\n', "unknown command"),
    (b'{"command": "' + b"x" * 100_000 + b'"}\n', "unknown command"),
    (b'{"command": "status"}{"command": "stop"}\n', "not valid JSON"),
    (b"[" * 200_000 + b"\n", "nested too deeply"),
    (b'{"command": "apply", "ops": ' + b"[" * 100_000 + b"\n", "nested too deeply"),
    (b'{"command": "stat\\u0000us"}\n', "unknown command"),
    (b'{"command": "stat\x00us"}\n', "not valid JSON"),
    (b'{"command": "\\ud800"}\n', "unknown command"),
    (b"NaN\n", "must be an object"),
]


@pytest.mark.parametrize(("payload", "error"), FRAMING, ids=[repr(p[:20]) for p, _ in FRAMING])
def test_framing(daemon: Daemon, payload: bytes, error: str) -> None:
    answer = daemon.raw(payload)
    assert not answer["ok"] and error in answer["error"], answer
    daemon.assert_unchanged()


def test_a_request_over_the_limit_is_refused_whole(daemon: Daemon) -> None:
    line = b'{"command": "apply", "ops": [], "pad": "' + b"a" * (16 * 1024 * 1024) + b'"}\n'
    answer = daemon.raw(line, half_close=False)
    assert not answer["ok"] and "too large" in answer["error"], answer
    daemon.assert_unchanged()


def test_a_second_line_is_not_obeyed(daemon: Daemon) -> None:
    answer = daemon.raw(b'{"command": "status"}\n{"command": "stop"}\n')
    assert answer["ok"]
    daemon.assert_unchanged()


def test_clients_that_go_away_or_never_speak(daemon: Daemon) -> None:
    """Silent and vanishing clients do not stop the next one from being served."""
    silent = []
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(daemon.control))
        silent.append(s)
    for _ in range(20):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(daemon.control))
            s.sendall(b'{"command": "sta')  # and gone, mid-request
    try:
        assert daemon.request({"command": "status"})["ok"]
    finally:
        for s in silent:
            s.close()
    daemon.assert_unchanged()


# -- the control socket: commands with every field wrong ------------------------------------------

NOT_INT = [None, "80", 80.5, True, [], {}, -1, 2**70, "0x50"]
NOT_OPTIONAL_INT = ["x", 1.5, True, -1, 2**70, [], {}]
NOT_STR = [None, 5, 1.5, True, [], {}]
BAD = {
    # field: values that are never valid for it
    "protocol": [*NOT_STR, "bogus", "", "TCP"], "address": [*NOT_STR, "not-an-ip", "", "999.1.1.1", "1.2.3.4\x00"],
    "port": NOT_INT, "fwmark": NOT_OPTIONAL_INT, "family": [*NOT_INT, 5, 0],
    "forward": [*NOT_STR, "bogus", "", "MASQ"], "weight": [*NOT_INT, 65536], "upper_threshold": NOT_INT,
    "lower_threshold": NOT_INT, "scheduler": [*NOT_STR, "bogus", ""], "persistent": NOT_OPTIONAL_INT,
    "netmask": [5, 1.5, True, [], "garbage"], "schedflags": [5, True, [], "no-such-flag"], "ops": [None, 1, "yes"],
}


#: Python's own errors: what an answer shows when a bad request got past the decoding
INTERNAL = re.compile(r"\b(TypeError|KeyError|AttributeError|ValueError|IndexError|RecursionError)\b|not supported "
                      r"between|object is not|unexpected keyword")


@st.composite
def one_bad_op(draw: st.DrawFn) -> dict[str, Any]:
    """An op on the running service with exactly one field wrong (or an unknown field, or a wrong shape)."""
    kind = draw(st.sampled_from(["AddService", "EditService", "DelService", "AddDest", "EditDest", "DelDest"]))
    op: dict[str, Any] = {"op": kind, "service": dict(SERVICE)}
    if kind in ("AddService", "EditService"):
        op["settings"] = dict(SETTINGS)
    if kind in ("AddDest", "EditDest"):
        op["dest"] = {**DEST, "address": "127.0.0.9"} if kind == "AddDest" else dict(DEST)
    if kind == "DelDest":
        op["address"], op["port"] = "127.0.0.2", 8080
    parts = [("service", k) for k in SERVICE if k != "fwmark" or kind == "DelService"]
    parts += [("settings", k) for k in op.get("settings", {})] + [("dest", k) for k in op.get("dest", {})]
    parts += [("", "address"), ("", "port")] if kind == "DelDest" else []
    where, field = draw(st.sampled_from(parts))
    target = op[where] if where else op
    how = draw(st.sampled_from(["value", "value", "value", "unknown", "shape", "missing"]))
    if how == "value":
        target[field] = draw(st.sampled_from(BAD.get(field, NOT_STR)))
    elif how == "unknown" and where in ("settings", "dest"):
        target["bogus"] = 1
    elif how == "shape" and where:
        op[where] = draw(st.sampled_from([None, "x", 5, [], [dict(target)]]))
    elif field in ("address", "port", "protocol") or where == "":
        del target[field]
    else:
        target[field] = draw(st.sampled_from(BAD.get(field, NOT_STR)))
    return op


@fuzz(60)
@given(one_bad_op(), st.integers(0, 2))
@example({"op": "EditDest", "service": SERVICE, "dest": {**DEST, "forward": "bogus"}}, 0)  # was applied
@example({"op": "EditDest", "service": SERVICE, "dest": {**DEST, "weight": 10**30}}, 0)  # was applied
@example({"op": "EditDest", "service": SERVICE, "dest": {**DEST, "weight": "x"}}, 0)  # "'<' not supported…"
@example({"op": "AddDest", "service": SERVICE, "dest": {**DEST, "address": "127.0.0.9", "port": "80"}}, 0)
@example({"op": "EditService", "service": SERVICE, "settings": {**SETTINGS, "netmask": "bad"}}, 0)
@example({"op": "AddService", "service": {**SERVICE, "address": "1.2.3.4\x00"}, "settings": SETTINGS}, 0)  # ValueError
def test_apply_with_one_field_wrong(daemon: Daemon, op: dict[str, Any], good_before: int) -> None:
    """A batch of good ops and one bad one: refused whole, with an error naming the problem."""
    good = [{"op": "EditDest", "service": SERVICE, "dest": {**DEST, "weight": 7}}] * good_before
    answer = daemon.request({"command": "apply", "ops": [*good, op]})
    assert not answer["ok"], (op, answer)
    # a sentence, not a Python error leaking out of the decoding ("DataplaneError: …" is the documented
    # form of a plane's refusal: tests/unit/test_daemon_service.py)
    assert not INTERNAL.search(answer["error"]), answer
    daemon.assert_unchanged()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
HARMLESS = ["status", "table", "stats", "connections", "ha", "ha-resign", "ha-takeover", "zero", "drain", "disable",
            "enable", "weight", "apply", "nope"]


@fuzz(80)
@given(st.sampled_from(HARMLESS), st.dictionaries(st.sampled_from(["ops", "service", "proxy", "server", "weight",
                                                                   "hold", "x"]), JSON, max_size=3))
def test_any_json_for_any_command(daemon: Daemon, command: str, fields: dict[str, Any]) -> None:
    """Whatever the arguments, an answer; those that could change the table must not, given these."""
    if command in ("drain", "disable", "enable", "weight"):  # never a real that exists: nothing to change
        fields["server"] = "127.0.0.99:1"
    if command == "apply" and isinstance(fields.get("ops"), list):
        fields["ops"] = [{"op": "DelService", "service": {**SERVICE, "port": 1}}, *fields["ops"]]  # unknown service
    answer = daemon.request({"command": command, **fields})
    if command in ("status", "table", "stats", "connections", "ha", "zero"):
        pass  # read-only (zero resets counters only)
    elif command == "apply":
        assert not answer["ok"] or answer["applied"] == 0, answer  # "ops" missing or []: nothing to do
    else:
        assert not answer["ok"] or command == "ha-resign", answer
    daemon.assert_unchanged()


# -- the HTTP API ----------------------------------------------------------------------------------


def http_raw(daemon: Daemon, payload: bytes) -> bytes:
    """Send raw bytes to the API; its whole answer (it closes or answers once)."""
    url_port = int(daemon.api.url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", url_port), timeout=15) as s:
        s.sendall(payload)  # and keep the connection open for writing: the server decides when it ends
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def post(path: str, body: bytes, token: str | None, extra: bytes = b"") -> bytes:
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1."), response[:200]
    return int(response.split(b" ", 2)[1])


HTTP_CASES = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /api/v1/status HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n", 400),
    (b"GET /api/v1/status HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n", 400),
    (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"GET /api/v1/\x00status HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /api/v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    (b"DELETE /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
]


@pytest.mark.parametrize(("payload", "code"), HTTP_CASES, ids=[repr(p[:24]) for p, _ in HTTP_CASES])
def test_http_malformed_requests(daemon: Daemon, payload: bytes, code: int) -> None:
    response = http_raw(daemon, payload)
    assert status_of(response) == code, response[:300]
    daemon.assert_unchanged()


def test_a_malformed_http_request_is_logged_in_one_line(daemon: Daemon) -> None:
    """Not a traceback per bad request (aiohttp's default: any client could fill the log with them)."""
    response = http_raw(daemon, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: zzz\r\n\r\n")
    assert status_of(response) == 400
    daemon.api.director.wait_for(r"API: refused a malformed HTTP request from 127\.0\.0\.1 \(400\): .*Content-Length")
    assert "Traceback" not in daemon.api.director.log_text()


WRITES = ["/api/v1/servers/drain", "/api/v1/servers/disable", "/api/v1/servers/weight", "/api/v1/servers/enable",
          "/api/v1/reload", "/api/v1/ha/resign", "/api/v1/ha/takeover"]


@fuzz(60)
@given(st.sampled_from(WRITES), st.one_of(st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode())),
       st.sampled_from([None, "wrong", "right"]))
@example("/api/v1/servers/weight", b'{"proxy": "tcp/127.0.0.1:1", "server": "127.0.0.2:8080", "weight": 1e999}',
         "right")
@example("/api/v1/servers/drain", b'{"proxy": "tcp/127.0.0.1:1", "server": "127.0.0.2:8080"}' * 400, "right")
def test_http_writes_with_hostile_bodies(daemon: Daemon, path: str, body: bytes, token: str | None) -> None:
    """Bad bodies with no, a wrong or the right token: a JSON error, nothing changed."""
    key = daemon.api.token if token == "right" else token
    if path == "/api/v1/reload" or path.startswith("/api/v1/ha/"):
        key = None if token == "right" else key  # these would act on a good body: only refusals here
    response = http_raw(daemon, post(path, body, key))
    code = status_of(response)
    _head, _, payload = response.partition(b"\r\n\r\n")
    if code != 200:
        assert 400 <= code < 500, response[:300]
        assert "error" in json.loads(payload), response[:300]
    else:  # a well-formed write naming no real of this daemon's service cannot be; a 200 must be a no-op
        pytest.fail(f"accepted: {response[:300]!r}")
    daemon.assert_unchanged()


def test_the_proxy_still_serves(daemon: Daemon, tmp_path: Path) -> None:
    """After all this the virtual still accepts connections (nothing listens on the reals: refused by
    the proxy, not by the kernel for a closed port)."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5):
        pass
    daemon.assert_unchanged()
