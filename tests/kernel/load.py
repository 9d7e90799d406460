"""Client programs run inside the client namespace by the kernel tests (results as JSON lines).

* ``burst URL N CONCURRENCY [PROGRESS]``: N HTTP/1.0 GETs, one TCP connection each; prints
  ``{"progress": done}`` every PROGRESS requests and finally ``{"servers": {...}, "errors": [...]}``
  (servers counted by the ``X-Real-Server`` header).
* ``keepalive HOST PORT``: one persistent HTTP/1.1 connection; one request per line read on stdin,
  answering ``{"server": ...}`` or ``{"error": ...}``.
* ``udp HOST PORT N``: N datagrams, each from a new socket (a new flow); counts the echoing servers.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


def out(**data: object) -> None:
    print(json.dumps(data), flush=True)


def get(url: str, timeout: float = 3.0) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return response.getheader("X-Real-Server", "?")
    finally:
        conn.close()


def burst(url: str, n: int, concurrency: int, progress: int) -> None:
    servers: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    done = 0

    def one(_: int) -> None:
        nonlocal done
        try:
            name = get(url)
            with lock:
                servers[name] += 1
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            done += 1
            if progress and done % progress == 0:
                out(progress=done)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    out(servers=dict(servers), errors=errors[:20], failed=len(errors))


def keepalive(host: str, port: int) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    for _ in sys.stdin:
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            out(server=response.getheader("X-Real-Server", "?"), status=response.status)
        except Exception as exc:
            out(error=f"{type(exc).__name__}: {exc}")


def udp(host: str, port: int, n: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    servers: Counter[str] = Counter()
    errors = 0
    for i in range(n):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(f"ping {i}".encode(), (host, port))
            try:
                data, _ = s.recvfrom(2048)
                servers[data.decode().split(":", 1)[0]] += 1
            except OSError:
                errors += 1
    out(servers=dict(servers), failed=errors)


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "burst":
        burst(argv[1], int(argv[2]), int(argv[3]), int(argv[4]) if len(argv) > 4 else 0)
    elif cmd == "keepalive":
        keepalive(argv[1], int(argv[2]))
    elif cmd == "udp":
        udp(argv[1], int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
