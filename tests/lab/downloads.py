"""Long-running downloads for the BGP bed, run inside a client namespace: ``python -I -S tests/lab/downloads.py``.

``COUNT URL [STALL]``: opens COUNT connections to URL (an nginx location rate-limited server-side), reads
each response's headers, prints ``ready <json>`` (each connection's local port and real server), then
reads every body to its end and prints ``done <json>``: per connection, local port, real, bytes
received, expected length and the error (None when complete). Bounded: every socket has a timeout
(``STALL`` seconds without a byte, default 6, counts as broken).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from urllib.parse import urlsplit

STALL = 6.0  # seconds without a byte before a connection counts as broken (default)


def main() -> None:
    count, url = int(sys.argv[1]), urlsplit(sys.argv[2])
    host, port, path = url.hostname or "", url.port or 80, url.path
    stall = float(sys.argv[3]) if len(sys.argv) > 3 else STALL
    conns = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=stall)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        conns.append(sock)
    results: list[dict[str, object]] = []
    heads = []
    for sock in conns:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode(errors="replace").split("\r\n")[1:] if ": " in line)
        heads.append((sock, sock.getsockname()[1], fields.get("X-Real-Server", "?"),
                      int(fields.get("Content-Length", "0")), len(body)))
    print("ready " + json.dumps([{"port": port, "real": real} for _, port, real, _, _ in heads]), flush=True)
    lock = threading.Lock()

    def finish(sock: socket.socket, port: int, real: str, length: int, got: int) -> None:
        error = None
        try:
            while got < length:
                chunk = sock.recv(65536)
                if not chunk:
                    error = "closed early"
                    break
                got += len(chunk)
        except OSError as exc:
            error = repr(exc)
        with lock:
            results.append({"port": port, "real": real,
                            "bytes": got, "length": length, "error": error})
        sock.close()

    threads = [threading.Thread(target=finish, args=h) for h in heads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("done " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
