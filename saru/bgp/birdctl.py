"""BIRD's control socket (what ``birdc`` speaks), as an asyncio client: one command, its reply lines.

The protocol: on connect BIRD greets with ``0001 BIRD <version> ready.``; each command is one line;
each reply line starts with a four-digit code followed by ``-`` (more lines follow) or a space (the
last line), and a line starting with a space continues the previous code. Codes 0xxx end a command
successfully, 1xxx/2xxx carry data and headings, 8xxx are run-time errors and 9xxx parse errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["BirdControl", "BirdError", "Reply"]

TIMEOUT = 5.0  # seconds for one command's reply
LINE_LIMIT = 1 << 20  # bytes of one reply line


class BirdError(Exception):
    """BIRD refused a command (8xxx/9xxx), closed the socket, or could not be reached."""


@dataclass(frozen=True)
class Reply:
    """A command's reply: ``(code, text)`` lines (continuations carry their code) and the final code."""

    code: int
    lines: tuple[tuple[int, str], ...]

    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)


class BirdControl:
    """One connection to BIRD's control socket at ``path``, opened on first use and again after a failure.
    Commands are serialised (one in flight)."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def command(self, line: str) -> Reply:
        """Send ``line`` and return the reply; ``BirdError`` for an error reply or a broken socket."""
        if "\n" in line or "\r" in line:
            raise BirdError(f"not one line: {line!r}")
        async with self._lock:
            try:
                return await asyncio.wait_for(self._exchange(line), self.timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                await self.close()
                raise BirdError(f"BIRD control socket {self.path}: {exc or type(exc).__name__}") from exc

    async def _exchange(self, line: str) -> Reply:
        if self._streams is None:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=LINE_LIMIT)
            self._streams = reader, writer
            greeting = await self._read(reader)
            if greeting.code != 1:
                raise BirdError(f"unexpected greeting from BIRD: {greeting.text()}")
        reader, writer = self._streams
        writer.write(line.encode() + b"\n")
        await writer.drain()
        reply = await self._read(reader)
        if reply.code >= 8000:
            raise BirdError(f"BIRD: {line}: {reply.text()}")
        return reply

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Reply:
        lines: list[tuple[int, str]] = []
        code = 0
        while True:
            raw = await reader.readline()
            if not raw:
                raise asyncio.IncompleteReadError(b"", None)
            text = raw.decode(errors="replace").rstrip("\n")
            if text.startswith(" "):
                lines.append((code, text[1:]))
                continue
            if len(text) < 5 or not text[:4].isdigit() or text[4] not in "- ":
                raise ValueError(f"not a BIRD reply line: {text!r}")
            code = int(text[:4])
            lines.append((code, text[5:]))
            if text[4] == " ":
                return Reply(code, tuple(lines))

    async def close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            try:
                await streams[1].wait_closed()
            except OSError:
                pass
