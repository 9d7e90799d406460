"""The daemon's control socket: one JSON request per connection over a unix socket.

Request: ``{"command": "status"}`` followed by a newline; answer: one JSON object and a newline,
always with ``"ok": true|false`` (and ``"error"`` when false). The socket is created mode 0600
inside a 0700 directory, so only the daemon's user (root for a real director) can use it; that is
the access control for the write commands (``reload``, ``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024


def runtime_dir() -> Path:
    """Where sockets and pid files live by default: ``$SARU_RUNTIME_DIR``, else /run/saru (root) or a
    per-user directory."""
    override = os.environ.get("SARU_RUNTIME_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/saru")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "saru"
    return Path(f"/tmp/saru-{os.getuid()}")


def default_socket_path(config_path: str) -> Path:
    """The control socket of the daemon running ``config_path``."""
    return runtime_dir() / (Path(config_path).name + ".sock")


class ControlServer:
    """Serves requests with ``handlers[command](request)``."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file this server made

    async def start(self) -> None:
        """Bind the socket; ``OSError`` when a live daemon serves it (which is then left untouched)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await _alive(self.path):
                raise OSError(f"control socket {self.path} is in use by a running daemon")
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)
        st = self.path.lstat()
        self._bound = (st.st_dev, st.st_ino)

    async def close(self) -> None:
        """Stop serving and remove the socket file — only the one this server created: never a socket
        it failed to take over, nor one another daemon has bound at the same path since."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        bound, self._bound = self._bound, None
        with contextlib.suppress(FileNotFoundError):
            st = self.path.lstat()
            if bound == (st.st_dev, st.st_ino):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            answer = await self._answer(line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": "request too large"}
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not valid JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'request must be an object with a "command" string'}
        handler = self.handlers.get(request["command"])
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command {request['command']!r} (known: {known})"}
        try:
            return {"ok": True, **await handler(request)}
        except Exception as exc:  # a handler bug must not kill the daemon
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def _alive(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True


async def request(path: Path, command: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
    """Send one command to a running daemon and return its answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    try:
        writer.write(json.dumps({"command": command, **params}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ConnectionError(f"daemon closed {path} without answering")
    answer: dict[str, Any] = json.loads(line)
    return answer


def request_sync(path: Path, command: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
    return asyncio.run(request(path, command, timeout, **params))
