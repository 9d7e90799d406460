"""``monitorfile=``: one line per check result, in ldirectord's format, written off the event loop.

A line is ``[<ctime>] [<pid>] <real id> [up|down] <message>`` where

* the real id is ldirectord's ``get_real_id_str``: ``<check>:<protocol>:<rip>:<rport>:<virtualhost>:
  <checkport>:<weight>:<forward>:<quotemeta(request)>:<quotemeta(receive)>`` with ``<check>`` =
  ``negotiate:<service>`` / ``combined:<service>`` / ``external:<command>`` / ``external-perl:<file>`` /
  the bare checktype, IPv6 addresses in brackets and empty fields for an unset virtualhost or
  checkport; then every run of ``:`` becomes one space and every ``\\`` is removed (so
  ``negotiate http tcp 127.0.0.2 18082 1 masq /health OK``);
* ``[up|down]`` is the check's own result (a soft failure is written ``[down]``, as ldirectord does);
* the message is the check's reason (``-`` when empty) with ``%``, ``|``, CR and LF written ``%xx``.

Unlike ldirectord, every checktype is recorded (ldirectord skipped ping and external-perl and wrote
``-`` for external), lines are queued and appended by a worker thread (the file is opened per batch,
so log rotation needs no signal), and a write error is logged once and never stops the daemon
(ldirectord died on it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from saru.checks.spec import parse_checktype
from saru.files import open_append
from saru.model import CheckResult, CheckSpec, Config, RealConfig, RealRef, ServiceKey, VirtualConfig

log = logging.getLogger(__name__)

MAX_PENDING = 10000  # lines queued at most; beyond that lines are dropped (and counted)

_NOT_WORD = re.compile(r"([^A-Za-z0-9_])")
_ESCAPED = re.compile(r"[%|\r\n]")
_COLONS = re.compile(r":+")


# --------------------------------------------------------------------------------------------------
# Pure formatting
# --------------------------------------------------------------------------------------------------


def quotemeta(text: str) -> str:
    """Perl's ``quotemeta``: a backslash before every ASCII character that is not a word character."""
    return _NOT_WORD.sub(lambda m: "\\" + m.group(1) if m.group(1).isascii() else m.group(1), text)


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def real_id(virtual: VirtualConfig, real: RealConfig) -> str:
    """ldirectord's id of a real in a virtual (``get_real_id_str``), before squeezing."""
    checktype, _ = parse_checktype(virtual.checktype)
    if checktype in ("negotiate", "combined"):
        check = f"{checktype}:{virtual.service}"
    elif checktype in ("external", "external-perl"):
        check = f"{checktype}:{virtual.checkcommand}"
    else:
        check = checktype
    request = real.request if real.request is not None else virtual.request
    receive = real.receive if real.receive is not None else virtual.receive
    fields = [
        check, virtual.protocol, _bracket(real.address), str(real.port), virtual.virtualhost or "",
        str(virtual.checkport) if virtual.checkport else "", str(real.weight), real.forward,
        quotemeta(request), quotemeta(receive),
    ]
    return ":".join(fields)


def squeeze_id(identifier: str) -> str:
    """ldirectord's ``tr/:/ /s`` then ``s/\\\\//g`` on a real id."""
    return _COLONS.sub(" ", identifier).replace("\\", "")


def escape_message(message: str) -> str:
    """``%``, ``|``, CR and LF as ``%xx`` (lower-case hex, as ldirectord's sprintf("%%%.2x"))."""
    return _ESCAPED.sub(lambda m: f"%{ord(m.group()):02x}", message or "-")


def monitor_line(when: float, pid: int, identifier: str, ok: bool, message: str) -> str:
    """One monitorfile line (with its newline)."""
    state = "up" if ok else "down"
    return f"[{time.ctime(when)}] [{pid}] {squeeze_id(identifier)} [{state}] {escape_message(message)}\n"


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


@dataclass
class _Index:
    config: Config
    virtuals: dict[ServiceKey, tuple[VirtualConfig, dict[tuple[str, int], RealConfig]]]


def _append(path: str, text: str) -> None:
    # never through a symbolic link planted at the name (saru.files): UnsafeFile, logged by the writer
    with open(open_append(path), "a", encoding="utf-8", errors="replace") as handle:
        handle.write(text)


class MonitorFile:
    """Writes every check result of every real whose virtual has a ``monitorfile``.

    ``record`` is a ``Monitor.add_result_listener`` callback: it formats the line at once (time of
    the result) and queues it; a background task appends the queue in a worker thread. ``close()``
    writes what is still queued.
    """

    def __init__(self, config: Callable[[], Config | None], pid: int | None = None,
                 max_pending: int = MAX_PENDING) -> None:
        self._config = config
        self.pid = pid if pid is not None else os.getpid()
        self.max_pending = max_pending
        self._index: _Index | None = None
        self._pending: dict[str, list[str]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._failing: set[str] = set()
        self.dropped = 0
        self.written = 0

    # ---- recording -----------------------------------------------------------------------------

    def _lookup(self, service: ServiceKey, address: str, port: int
                ) -> tuple[VirtualConfig, RealConfig] | None:
        config = self._config()
        if config is None:
            return None
        if self._index is None or self._index.config is not config:
            virtuals = [v for v in config.virtuals if v.monitorfile]
            reals = {v.key: (v, {(r.address, r.port): r for r in v.reals}) for v in virtuals}
            self._index = _Index(config, reals)
        entry = self._index.virtuals.get(service)
        if entry is None:
            return None
        real = entry[1].get((address, port))
        return None if real is None else (entry[0], real)

    def record(self, ref: RealRef, spec: CheckSpec, result: CheckResult, up: bool | None = None) -> None:
        """Queue the line for one check result (a no-op when the virtual has no monitorfile)."""
        found = self._lookup(ref.service, ref.address, ref.port)
        if found is None:
            return
        virtual, real = found
        assert virtual.monitorfile is not None
        line = monitor_line(time.time(), self.pid, real_id(virtual, real), result.ok, result.message)
        if self._count >= self.max_pending:
            if not self.dropped:
                log.warning("monitorfile: %d lines waiting to be written, dropping new ones", self._count)
            self.dropped += 1
            return
        self._pending.setdefault(virtual.monitorfile, []).append(line)
        self._count += 1
        self._kick()

    def _kick(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): write right here
            self._write_batch(self._take())
            return
        self._task = loop.create_task(self._drain(), name="monitorfile")

    def _take(self) -> dict[str, list[str]]:
        batch, self._pending, self._count = self._pending, {}, 0
        return batch

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.to_thread(self._write_batch, self._take())

    def _write_batch(self, batch: dict[str, list[str]]) -> None:
        for path, lines in batch.items():
            try:
                _append(path, "".join(lines))
            except OSError as exc:
                if path not in self._failing:
                    self._failing.add(path)
                    log.error("cannot write monitorfile %s: %s (further errors not logged until it works)",
                              path, exc.strerror or exc)
                continue
            self.written += len(lines)
            if path in self._failing:
                self._failing.discard(path)
                log.info("monitorfile %s is writable again", path)
        if self.dropped:
            log.warning("monitorfile: %d lines were dropped (writing was too slow)", self.dropped)
            self.dropped = 0

    # ---- life cycle ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every queued line is written (or failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most ``timeout`` seconds), then stop."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.warning("monitorfile: gave up writing %d queued lines", self._count)
            if self._task is not None:
                self._task.cancel()
