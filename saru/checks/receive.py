"""``receive=``: ldirectord's Perl regular expressions, translated and compiled once for every check.

``perl_to_python(pattern)`` rewrites the Perl-only bits (``\\z``, ``\\Z``, ``(?<name>…)``, ``\\k<name>``);
``compile_receive(receive)`` compiles the result for searching bytes (HTTP bodies, FTP files, lines
of a simple TCP conversation: the raw data, like LWP's ``content``) and ``compile_receive_text``
for searching text (DNS answers, LDAP DNs, SQL column values). Both are cached, and an invalid
pattern is a ``CheckFailed`` saying so (checks compile before any I/O, so it fails at once).
``receive_found(pattern, data)`` searches: in place, or — for a pattern that can backtrack
catastrophically (``saru.config.regex_risk``) — in a worker process under ``MATCH_LIMIT`` seconds,
so one check can never stall the event loop and the others.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any

from saru.checks.base import CheckFailed
from saru.config.regex_risk import RECEIVE_MATCH_LIMIT, backtracking_risk


def perl_to_python(pattern: str) -> str:
    r"""Translate the Perl-only bits of a regex: ``\z``, ``\Z``, ``(?<name>…)``, ``\k<name>``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "z":
                out.append(r"\Z")
            elif nxt == "Z":
                out.append(r"(?=\n?\Z)")
            elif nxt == "k" and i + 2 < n and pattern[i + 2] in "<{'":
                close = {"<": ">", "{": "}", "'": "'"}[pattern[i + 2]]
                end = pattern.find(close, i + 3)
                if end > 0:
                    out.append(f"(?P={pattern[i + 3 : end]})")
                    i = end + 1
                    continue
                out.append(c + nxt)
            else:
                out.append(c + nxt)
            i += 2
            continue
        if pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _invalid(receive: str, exc: re.error) -> CheckFailed:
    return CheckFailed(f"invalid receive pattern '{receive}': {exc}")


@functools.lru_cache(maxsize=1024)
def compile_receive(receive: str) -> re.Pattern[bytes]:
    """The compiled ``receive`` pattern for searching bytes."""
    try:
        return re.compile(perl_to_python(receive).encode("utf-8"))
    except re.error as exc:
        raise _invalid(receive, exc) from None


@functools.lru_cache(maxsize=1024)
def compile_receive_text(receive: str) -> re.Pattern[str]:
    """The compiled ``receive`` pattern for searching text."""
    try:
        return re.compile(perl_to_python(receive))
    except re.error as exc:
        raise _invalid(receive, exc) from None


# --------------------------------------------------------------------------------------------------
# Bounded matching: a risky pattern (``saru.config.regex_risk``) is matched in a worker process under
# a time limit, so catastrophic backtracking can stall neither the event loop nor the other checks.
# --------------------------------------------------------------------------------------------------

MATCH_LIMIT = RECEIVE_MATCH_LIMIT
#: seconds a new worker may take to start (import, say it is ready): not counted in ``MATCH_LIMIT``
START_LIMIT = 30.0


@functools.lru_cache(maxsize=1024)
def _risky(pattern: str | bytes) -> bool:
    text = pattern.decode("utf-8", "replace") if isinstance(pattern, bytes) else pattern
    return backtracking_risk(text) is not None


def serve(fd: int) -> None:  # pragma: no cover - runs in the worker process
    """The worker: ``(pattern, data)`` in on socket ``fd``, whether it is found out, until it closes."""
    conn = Connection(fd)
    conn.send("ready")  # started and imported: from now on only matching counts against the limit
    compiled: dict[str | bytes, re.Pattern[Any]] = {}
    while True:
        try:
            pattern, data = conn.recv()
        except EOFError:
            return
        regex = compiled.get(pattern)
        if regex is None:
            if len(compiled) > 256:
                compiled.clear()
            regex = compiled[pattern] = re.compile(pattern)
        conn.send(regex.search(data) is not None)


class _Worker:
    """One matching process (``python -c … serve(fd)``, not multiprocessing: nothing of the daemon's
    main module is re-imported), started on first use, killed and replaced when a match overruns."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._lock: asyncio.Lock | None = None

    def _start(self) -> Connection:
        if self._process is None or self._process.poll() is not None or self._conn is None:
            self.kill()
            ours, theirs = socket.socketpair()
            with ours, theirs:
                fd = theirs.fileno()
                self._process = subprocess.Popen(
                    [sys.executable, "-c", f"from saru.checks.receive import serve; serve({fd})"],
                    pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
                self._conn = Connection(os.dup(ours.fileno()))
            if not self._conn.poll(START_LIMIT) or self._conn.recv() != "ready":
                self.kill()
                raise OSError(f"it did not start within {START_LIMIT:g}s")
        return self._conn

    def kill(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            process.kill()
            process.wait()

    async def search(self, pattern: str | bytes, data: str | bytes, limit: float) -> bool | None:
        """Whether ``pattern`` is found in ``data``; None when it took longer than ``limit``."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            done = False
            try:
                conn = await asyncio.to_thread(self._start)
                conn.send((pattern, data))
                if await asyncio.to_thread(conn.poll, limit):
                    found = bool(conn.recv())
                    done = True
                    return found
                return None
            except (OSError, EOFError) as exc:
                raise CheckFailed(f"the receive matching process failed: {exc}") from None
            finally:
                if not done:  # overran, cancelled (the check's timeout) or broken: start afresh next time
                    await asyncio.to_thread(self.kill)


_worker = _Worker()


async def receive_matches(pattern: re.Pattern[str], values: Iterable[str]) -> set[str]:
    """The values ``pattern`` is found in, each matched like ``receive_found`` (DNS answers, LDAP
    DNs, SQL values: the evaluators take the set instead of searching in place)."""
    return {value for value in values if await receive_found(pattern, value)}


def found_in_place(pattern: re.Pattern[Any], data: str | bytes | bytearray) -> bool | None:
    """``receive_found`` without a coroutine for a safe pattern: whether it is in ``data``; None for a
    risky pattern (then ``receive_found`` matches it in the worker)."""
    return None if _risky(pattern.pattern) else pattern.search(data) is not None


async def receive_found(pattern: re.Pattern[Any], data: str | bytes) -> bool:
    """Whether a compiled receive pattern is found in ``data``: in place for a safe pattern, in the
    worker process under ``MATCH_LIMIT`` for a risky one (a ``CheckFailed`` when it overruns)."""
    if not _risky(pattern.pattern):
        return pattern.search(data) is not None
    found = await _worker.search(pattern.pattern, data, MATCH_LIMIT)
    if found is None:
        shown = pattern.pattern.decode("utf-8", "replace") if isinstance(pattern.pattern, bytes) else pattern.pattern
        raise CheckFailed(f"receive pattern '{shown}' took longer than {MATCH_LIMIT:g}s to match "
                          f"(catastrophic backtracking: {backtracking_risk(shown)})")
    return found
