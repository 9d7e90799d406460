"""A real ``saru run`` process for end-to-end tests, with its log lines as awaitable events."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from saru.control import request_sync


class Director:
    """``saru run -c <config> --dataplane proxy`` in a subprocess; stderr lines are collected."""

    def __init__(self, workdir: Path, config_text: str, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> None:
        """``prefix``: run it under a wrapper, e.g. ``("ip", "netns", "exec", NAME)``."""
        self.workdir = workdir
        self.config = workdir / "ldirectord.cf"
        self.config.write_text(config_text)
        self.control = workdir / "control.sock"
        self.pidfile = workdir / "saru.pid"
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "saru", "run", "-c", str(self.config), "--dataplane", "proxy",
             "--control", str(self.control), "--pidfile", str(self.pidfile), *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 15.0, after: float = 0.0) -> tuple[float, str]:
        """Block until a log line matching ``pattern`` (logged at/after ``after``) appears."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines:
                    if at >= after and regex.search(line):
                        return at, line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    log = "\n".join(line for _, line in self.lines[-40:])
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout}s; log:\n{log}")
                self._cond.wait(remaining)

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_for(r"All real servers checked", timeout)

    def status(self) -> dict[str, Any]:
        answer = request_sync(self.control, "status", timeout=5)
        assert answer["ok"], answer
        return answer

    def command(self, name: str) -> dict[str, Any]:
        return request_sync(self.control, name, timeout=10)

    def command_with(self, name: str, **params: Any) -> dict[str, Any]:
        """A command with parameters; asserts the daemon accepted it."""
        answer = request_sync(self.control, name, timeout=10, **params)
        assert answer.get("ok"), answer
        return answer

    def sighup(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode

    def real_states(self) -> dict[str, tuple[str, int | None]]:
        """``{"127.0.0.1:18080": (state, weight in table)}`` for the first virtual."""
        doc = self.status()
        return {f"{r['address']}:{r['port']}": (r["state"], r["weight"]) for r in doc["virtuals"][0]["reals"]}


def control_bytes(path: Path, payload: bytes, half_close: bool = False) -> bytes:
    """Send ``payload`` to a control socket as it is (any bytes, any framing) and read the answer up to EOF
    (what any client of the socket sees); ``half_close``: shut the writing side after the payload."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def get(port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, str, str]:
    """One HTTP request on a new connection: (status, X-Real-Server, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode()
        return resp.status, resp.getheader("X-Real-Server") or "", body
    finally:
        conn.close()


class Load:
    """A bounded HTTP load through the director: ``threads`` clients, new connection per request."""

    def __init__(self, port: int, threads: int = 4, max_requests: int = 20000) -> None:
        self.port = port
        self.max_requests = max_requests
        self.ok = 0
        self.failures: list[str] = []
        self.servers: dict[str, int] = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self.ok + len(self.failures) >= self.max_requests:
                    return
            try:
                status, server, _ = get(self.port)
                with self._lock:
                    if status == 200:
                        self.ok += 1
                        self.servers[server] = self.servers.get(server, 0) + 1
                        self._lock.notify_all()
                    else:
                        self.failures.append(f"HTTP {status}")
            except OSError as exc:
                with self._lock:
                    self.failures.append(repr(exc))

    def wait_requests(self, count: int, timeout: float = 20.0) -> None:
        """Block until ``count`` more successful requests completed (the load is really flowing)."""
        with self._lock:
            target = self.ok + count
            if not self._lock.wait_for(lambda: self.ok >= target, timeout):
                raise AssertionError(f"load stalled: {self.ok}/{target} ok, failures {self.failures[:5]}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
