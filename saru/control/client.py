"""The client side of the control socket: send one JSON request, read the answer until end of file.

The framing is the server's (``saru.control.server``): one request line (at most ``MAX_REQUEST``
bytes) ending with a newline; the daemon answers with one JSON object and closes the connection,
so an answer of any size is received whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from saru.files import UnsafeFile, dir_problem

#: the most descriptors one answer may carry (the proxy's listening sockets: one per virtual)
MAX_FDS = 4096


def _safe_dir(path: Path) -> None:
    """``UnsafeFile`` (an OSError) when the socket's directory is one another user controls."""
    problem = dir_problem(path.parent)
    if problem:
        raise UnsafeFile(path.parent, f"{problem}; not asking a socket there (another user may serve it)")


async def request(path: Path, command: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
    """Send one command to a running daemon and return its answer (of any size: read until EOF).
    ``UnsafeFile`` (an OSError) when the socket's directory is one another user controls."""
    _safe_dir(path)
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    try:
        writer.write(json.dumps({"command": command, **params}).encode() + b"\n")
        with contextlib.suppress(ConnectionError):  # the daemon may answer (and close) before reading it all
            await asyncio.wait_for(writer.drain(), timeout)
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return _parse(path, data)


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise ConnectionError(f"daemon closed {path} without answering")
    try:
        answer = json.loads(data)
    except ValueError:
        raise ConnectionError(f"daemon at {path} sent a malformed answer ({len(data)} bytes)") from None
    if not isinstance(answer, dict):
        raise ConnectionError(f"daemon at {path} sent a malformed answer (not an object)")
    return answer


def request_fds(path: Path, command: str, timeout: float = 30.0) -> tuple[dict[str, Any], list[int]]:
    """A command whose answer carries descriptors (``listeners``): the answer and the descriptors,
    which the caller now owns (close-on-exec). Blocking; OSError/ConnectionError as ``request``."""
    _safe_dir(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        first, fds, _flags, _addr = socket.recv_fds(sock, 1, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        try:
            data = b"" if fds else first  # without descriptors the first byte is the answer's
            while chunk := sock.recv(65536):
                data += chunk
            return _parse(path, data), fds
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise


def request_sync(path: Path, command: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
    """``request`` from synchronous code (the command-line front ends)."""
    return asyncio.run(request(path, command, timeout, **params))
