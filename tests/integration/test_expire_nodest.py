"""``[director] expire_nodest_conn`` on the proxy plane, with a real ``saru run`` and real nginx.

A client holds a keep-alive connection through the proxy to one of two nginx reals; that real is
frozen with SIGSTOP (master and worker) while the client waits for its answer. The check times out,
the real is marked down and (quiescent=no) leaves the table. With ``expire_nodest_conn = true`` the
client's connection is reset within check interval + timeout + a margin; with ``false`` it stays open
after the real is down, and once the real is thawed the waiting request is answered on it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.director import Director
from tests.helpers import Nginx, free_port, start_nginx

pytestmark = [pytest.mark.needs_nginx, pytest.mark.timeout(60)]

INTERVAL, TIMEOUT, MARGIN = 1, 1, 4.0

CONFIG = """\
checktimeout={timeout}
checkinterval={interval}
quiescent=no
logfile="{log}"
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{rs1} masq
\treal=127.0.0.1:{rs2} masq
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
\trequest="check.html"
\treceive="ok"
"""


def family(pid: int) -> list[int]:
    """nginx's master and its workers."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


@pytest.fixture
def reals(tmp_path: Path) -> Iterator[dict[str, Nginx]]:
    started: dict[str, Nginx] = {}
    try:
        for name in ("rs1", "rs2"):
            started[name] = start_nginx(tmp_path / name, name, files={"check.html": "ok\n", "index.html": name})
        yield started
    finally:
        for server in started.values():
            if server.process is not None:
                for pid in family(server.process.pid):
                    os.kill(pid, signal.SIGCONT)
            server.stop()


def request(sock: socket.socket) -> None:
    sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")


def answer(sock: socket.socket) -> str:
    """The X-Real-Server of one keep-alive response read from sock."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before the response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    length = int(headers["Content-Length"])
    while len(body) < length:
        body += sock.recv(4096)
    return headers["X-Real-Server"]


@pytest.mark.parametrize("expire", [True, False])
def test_a_frozen_real_s_connections(reals: dict[str, Nginx], tmp_path: Path, expire: bool) -> None:
    port = free_port()
    settings = tmp_path / "saru.toml"
    settings.write_text(f"[director]\nexpire_nodest_conn = {'true' if expire else 'false'}\n")
    text = CONFIG.format(timeout=TIMEOUT, interval=INTERVAL, log=tmp_path / "saru.log", port=port,
                         rs1=reals["rs1"].port, rs2=reals["rs2"].port)
    d = Director(tmp_path, text, ("--settings", str(settings)))
    try:
        d.wait_ready()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client:
            request(client)
            name = answer(client)
            frozen = reals[name]
            assert frozen.process is not None
            pids = family(frozen.process.pid)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            request(client)  # waits: the real will not answer
            hostport = f"127.0.0.1:{frozen.port}"
            if expire:
                client.settimeout(INTERVAL + TIMEOUT + MARGIN)
                try:
                    data = client.recv(4096)
                except ConnectionResetError:
                    data = b""
                except TimeoutError:
                    raise AssertionError(f"still open: {d.real_states()}\n{d.log_text()}") from None
                elapsed = time.monotonic() - stopped
                assert data == b"", f"the frozen real answered? {data[:100]!r}"
                assert elapsed < INTERVAL + TIMEOUT + MARGIN
                assert d.real_states()[hostport][0] == "down"
            else:
                deadline = time.monotonic() + INTERVAL + TIMEOUT + MARGIN
                while d.real_states()[hostport][0] != "down":
                    assert time.monotonic() < deadline, d.real_states()
                    time.sleep(0.1)
                client.settimeout(1.0)  # down and out of the table: the connection is still open
                with pytest.raises(TimeoutError):
                    client.recv(4096)
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
                client.settimeout(5)
                assert answer(client) == name  # the waiting request is answered on the kept connection
    finally:
        assert d.stop() == 0, d.log_text()
