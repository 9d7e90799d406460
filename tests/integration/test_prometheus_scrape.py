"""A real Prometheus (Debian's ``prometheus``) scrapes a running ``saru run`` (the proxy plane in front of
real nginx servers on loopback) every second, and a PromQL query through Prometheus's HTTP API sees
``saru_server_status{state="DOWN"}`` of a real become 1 when the test stops that nginx, and 0 again
when it comes back. Prometheus scrapes through a relay of the test's that keeps the bytes both ways:
Prometheus asks for gzip (``Accept-Encoding: gzip``) and the daemon answers it gzipped, one member
(``saru.api.blocks``), which Prometheus reads.

The daemon serves ``GET /metrics`` on ``saru.toml``'s ``[api] listen`` (issue 12's contract; the HTTP
server is ``saru/api/server.py``). Prometheus listens on 127.0.0.1 with its storage in the test's
temporary directory, and is stopped at the end, even on failure.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.director import Director
from tests.helpers import free_port, require, wait_for_port

CHECK = "/check.html"
DEADLINE = 30.0  # seconds for Prometheus to see a change (checks 1 s + scrape 1 s + slack on a busy CI)


def config_text(workdir: Path, port: int, reals: list[int]) -> str:
    real_lines = "\n".join(f"\treal=127.0.0.1:{p} masq 1" for p in reals)
    return f"""\
checktimeout=1
checkinterval=1
logfile="{workdir / 'ldirectord.log'}"
virtual=127.0.0.1:{port}
{real_lines}
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
\trequest="check.html"
\treceive="alive"
"""


class Relay:
    """A TCP relay on 127.0.0.1 to ``target``, keeping (up to ``KEEP`` bytes of) what went each way."""

    KEEP = 1 << 20

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = bytearray()
        self.answers = bytearray()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, self.requests), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.answers), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, kept: bytearray) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if len(kept) < self.KEEP:
                        kept.extend(data)
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def seen(self) -> tuple[bytes, bytes]:
        """What went to the target and what came back, so far."""
        with self._lock:
            return bytes(self.requests), bytes(self.answers)

    def stop(self) -> None:
        with self._lock:
            for s in self._sockets:
                s.close()


class Prometheus:
    """``prometheus`` scraping one target every second, on 127.0.0.1, storage in ``directory``."""

    def __init__(self, directory: Path, target: str) -> None:
        directory.mkdir()
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: saru\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = (directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.directory = directory

    def get(self, path: str, **params: str) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for_port("127.0.0.1", self.port, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready within {timeout}s:\n{self.log_tail()}")

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) of each series."""
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", answer
        data = answer["data"]
        assert isinstance(data, dict)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def wait_value(self, promql: str, expected: float, timeout: float = DEADLINE) -> float:
        """Poll the query until it gives one series with ``expected``; the seconds that took."""
        start = time.monotonic()
        seen: list[tuple[dict[str, str], float]] = []
        while time.monotonic() - start < timeout:
            seen = self.query(promql)
            if len(seen) == 1 and seen[0][1] == expected:
                return time.monotonic() - start
            time.sleep(0.2)
        targets = self.get("/api/v1/targets")
        raise AssertionError(f"{promql} did not become {expected} within {timeout}s (last: {seen}); "
                             f"targets: {targets}\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.directory / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    require(shutil.which("prometheus") is not None, "prometheus is not installed (Debian package prometheus)")
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus-{len(started)}", target)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_prometheus_sees_a_stopped_real_down_and_back_up(nginx, prometheus, tmp_path: Path) -> None:
    rs1 = nginx(name="rs1", files={CHECK: "alive\n"})
    rs2 = nginx(name="rs2", files={CHECK: "alive\n"})
    api = free_port()
    settings = tmp_path / "saru.toml"
    settings.write_text(f'[api]\nlisten = "127.0.0.1:{api}"\n')
    director = Director(tmp_path, config_text(tmp_path, free_port(), [rs1.port, rs2.port]),
                        ("--settings", str(settings)))
    relay: Relay | None = None
    try:
        director.wait_ready()
        wait_for_port("127.0.0.1", api)
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert b'saru_server_status{proxy="tcp/127.0.0.1:' in answer.read()
        relay = Relay(("127.0.0.1", api))
        server = prometheus(f"127.0.0.1:{relay.port}")
        server.wait_ready()
        down = f'saru_server_status{{server="127.0.0.1:{rs1.port}",state="DOWN"}}'
        server.wait_value(down, 0.0)  # scraped, and the real is up
        up_target = server.query('up{job="saru"}')
        assert up_target and up_target[0][1] == 1.0, up_target

        rs1.stop()
        server.wait_value(down, 1.0)
        server.wait_value(f'saru_server_status{{server="127.0.0.1:{rs1.port}",state="UP"}}', 0.0)
        server.wait_value(f'saru_server_check_status{{server="127.0.0.1:{rs1.port}",state="L4CON"}}', 1.0)
        server.wait_value(f'saru_server_status{{server="127.0.0.1:{rs2.port}",state="UP"}}', 1.0)

        rs1.start()
        server.wait_value(down, 0.0)
        server.wait_value(f'saru_server_check_up_down_total{{server="127.0.0.1:{rs1.port}"}}', 1.0)
        server.wait_value('saru_backend_active_servers', 2.0)

        asked, answered = relay.seen()
        assert b"GET /metrics HTTP/1.1\r\n" in asked and b"\r\naccept-encoding: gzip\r\n" in asked.lower(), asked[:500]
        head = answered.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200 ") and b"\r\ncontent-encoding: gzip\r\n" in head, head
        assert b"saru_server_status" not in answered  # every answer was gzipped
    finally:
        director.stop()
        if relay is not None:
            relay.stop()
