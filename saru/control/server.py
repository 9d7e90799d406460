"""The daemon's end of the control socket: one JSON request per connection over a unix socket.

Request: ``{"command": "status"}`` followed by a newline (or the end of the client's writing), at most
``MAX_REQUEST`` bytes; answer: one JSON object of any size followed by a newline, always with
``"ok": true|false`` (and ``"error"`` when false), after which the daemon closes the connection — a
client reads until end of file, so no answer is ever too long to receive. An answer may carry open
descriptors (a handler puts them under ``FDS``, a list of ints): they go first, as ``SCM_RIGHTS`` on
one NUL byte, then the JSON answer (``saru.control.client.request_fds`` reads both) — the
``listeners`` command hands the proxy's listening sockets to the daemon that replaces this one. A request that is too
large, not JSON, nested too deeply or not an object gets an error answer, never silence. The socket is
created mode 0600 inside a 0700 directory, so only the daemon's user (root for a real director) can
use it; that is the access control for the write commands (``reload``, ``stop``). A directory that
another user owns or can write is refused (``saru.files.private_dir``): that user could replace the
socket. The client is
``saru.control.client``; what each command does is the daemon's (``saru.daemon.commands``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from saru.files import bind_unix, private_dir

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
#: the answer key under which a handler returns descriptors to pass (not sent as JSON)
FDS = "_fds"
#: the largest request line accepted (``saru ipvsadm -R`` of a big table sends every rule at once)
MAX_REQUEST = 16 * 1024 * 1024
#: seconds a client has to send its request, and to take the answer
IO_TIMEOUT = 10.0
_CHUNK = 64 * 1024
LOGGER = logging.getLogger("saru")


class RequestTooLarge(Exception):
    """The request line is longer than ``MAX_REQUEST``; ``ended``: its newline (or EOF) was read."""

    def __init__(self, ended: bool) -> None:
        super().__init__("request too large")
        self.ended = ended


async def read_request(reader: asyncio.StreamReader, limit: int = MAX_REQUEST) -> bytes:
    """The request line, without its newline; EOF also ends it. ``RequestTooLarge`` past ``limit``."""
    data = bytearray()
    while True:
        chunk = await reader.read(_CHUNK)
        newline = chunk.find(b"\n")
        data += chunk if newline < 0 else chunk[:newline]
        ended = not chunk or newline >= 0
        if len(data) > limit:
            raise RequestTooLarge(ended)
        if ended:
            return bytes(data)


async def _discard_line(reader: asyncio.StreamReader) -> None:
    """Read the rest of an oversized request (until its newline or EOF) so that the client's writes
    complete and it gets to read the answer."""
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk or b"\n" in chunk:
            return


def encode_answer(answer: dict[str, Any]) -> bytes:
    """One JSON line; an answer that cannot be encoded becomes an error answer."""
    try:
        return json.dumps(answer).encode() + b"\n"
    except (TypeError, ValueError, RecursionError) as exc:
        LOGGER.error("control socket: cannot encode the answer: %s", exc)
        return json.dumps({"ok": False, "error": f"internal error: cannot encode the answer ({exc})"}).encode() + b"\n"


def decode_request(line: bytes) -> dict[str, Any] | str:
    """The request object, or the error message to answer with."""
    try:
        request = json.loads(line)
    except RecursionError:
        return "request is nested too deeply"
    except ValueError:
        return "request is not valid JSON"
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        return 'request must be an object with a "command" string'
    return request


class ControlServer:
    """Serves requests with ``handlers[command](request)``."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file this server made

    async def start(self) -> None:
        """Bind the socket; ``OSError`` when a live daemon serves it (which is then left untouched)."""
        private_dir(self.path.parent)  # not a directory another user made or can write (saru.files)
        if self.path.exists() or self.path.is_symlink():
            if await _alive(self.path):
                raise OSError(f"control socket {self.path} is in use by a running daemon")
            self.path.unlink()
        sock = bind_unix(self.path, 0o600)  # not the umask: it is every thread's (saru.files.bind_unix)
        try:
            self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        except BaseException:
            sock.close()
            raise
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
            try:
                line = await asyncio.wait_for(read_request(reader), IO_TIMEOUT)
            except RequestTooLarge as exc:
                answer: dict[str, Any] = {"ok": False,
                                          "error": f"request too large (more than {MAX_REQUEST} bytes)"}
                if not exc.ended:
                    await asyncio.wait_for(_discard_line(reader), IO_TIMEOUT)
            else:
                answer = await self._answer(line)
            fds = answer.pop(FDS, None)
            if fds:
                _send_fds(writer, fds)
            writer.write(encode_answer(answer))
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass
        except Exception:  # the front door never falls: log it, the next client is served
            LOGGER.exception("control socket: serving a request failed")
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        request = decode_request(line)
        if isinstance(request, str):
            return {"ok": False, "error": request}
        handler = self.handlers.get(request["command"])
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command {request['command']!r} (known: {known})"}
        try:
            return {"ok": True, **await handler(request)}
        except Exception as exc:  # a handler bug must not kill the daemon
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _send_fds(writer: asyncio.StreamWriter, fds: list[int]) -> None:
    """One NUL byte carrying ``fds`` (duplicates for the client), ahead of anything the transport
    writes; the connection's send buffer is empty at this point, so the message goes at once."""
    transport_sock = writer.get_extra_info("socket")
    with socket.socket(fileno=os.dup(transport_sock.fileno())) as sock:
        sock.setblocking(True)
        socket.send_fds(sock, [b"\0"], fds)
        sock.setblocking(False)


async def _alive(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True
