"""A tiny HTTP/1.1 file server used as a real server by ``saru demo``.

Serves files below ``--root`` (GET and HEAD, keep-alive), adds ``X-Real-Server: <name>`` to every
answer, listens on loopback only. Run: ``python -m saru.demo.backends --port 18081 --name rs1
--root DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def resolve(root: Path, target: str) -> Path | None:
    """The file a request path names, or None if it is missing or escapes the root."""
    path = target.split("?", 1)[0]
    candidate = (root / path.lstrip("/")).resolve()
    if candidate.is_dir():
        candidate = candidate / "index.html"
    if root.resolve() not in candidate.parents or not candidate.is_file():
        return None
    return candidate


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, root: Path, name: str) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            headers = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            parts = request_line.decode("latin-1").split()
            status, body = 400, b"bad request\n"
            method, version = "GET", "HTTP/1.0"
            if len(parts) == 3:
                method, target, version = parts
                if method not in ("GET", "HEAD"):
                    status, body = 405, b"method not allowed\n"
                else:
                    found = resolve(root, target)
                    status, body = (200, found.read_bytes()) if found else (404, b"not found\n")
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\nX-Real-Server: {name}\r\n"
                    f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main_async(host: str, port: int, root: Path, name: str) -> None:
    server = await asyncio.start_server(lambda r, w: serve(r, w, root, name), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--name", default="rs")
    args = parser.parse_args()
    asyncio.run(main_async(args.host, args.port, args.root, args.name))


if __name__ == "__main__":
    main()
