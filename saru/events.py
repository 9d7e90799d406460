"""Typed events: what happened to reals, virtuals and the daemon, rendered by sinks elsewhere.

The monitor emits health events (``RealUp``, ``RealDown``, ``SoftFailure``, ``FailuresReset``);
the daemon emits table events (``TableChange``) and lifecycle events. ``message()`` renders each in
ldirectord's log vocabulary so that operators' log scrapers keep working.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from saru.model import Dest, RealRef, ServiceKey


@dataclass(frozen=True)
class Event:
    """Base of every event; ``at`` is wall-clock time."""

    at: float = field(default_factory=time.time, kw_only=True)

    def message(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class RealUp(Event):
    """A real's check passes again (after ``rise`` successes)."""

    real: RealRef
    detail: str = ""

    def message(self) -> str:
        return f"Real server up: {self.real}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class RealDown(Event):
    """A real's check failed ``failurecount`` times in a row (or it entered maintenance)."""

    real: RealRef
    detail: str = ""

    def message(self) -> str:
        return f"Real server down: {self.real}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class SoftFailure(Event):
    """A check failed while the real is up, but fewer than ``failurecount`` times in a row."""

    real: RealRef
    count: int
    limit: int
    detail: str = ""

    def message(self) -> str:
        return f"Soft failure real server: {self.real} failure {self.count}/{self.limit}"


@dataclass(frozen=True)
class FailuresReset(Event):
    """A check succeeded after soft failures."""

    real: RealRef

    def message(self) -> str:
        return f"Resetting soft failure count: {self.real}"


#: verbs of ldirectord's table log lines
TABLE_VERBS = ("Added", "Restored", "Quiescent", "Deleted", "Changed", "Purged")


@dataclass(frozen=True)
class TableChange(Event):
    """A change the daemon applied to the data plane, in ldirectord's words.

    ``verb`` is one of TABLE_VERBS; ``kind`` is "real", "fallback" or "virtual".
    """

    verb: str
    kind: str
    service: ServiceKey
    dest: Dest | None = None

    def message(self) -> str:
        if self.kind == "virtual" or self.dest is None:
            return f"{self.verb} virtual server: {self.service.hostport}"
        text = f"{self.verb} {self.kind} server: {self.dest.hostport} ({self.service.hostport})"
        if self.verb in ("Added", "Restored", "Quiescent", "Changed"):
            text += f" (Weight set to {self.dest.weight})"
        return text


@dataclass(frozen=True)
class DaemonEvent(Event):
    """Lifecycle: starting, reloading, stopping, config errors kept old config, …"""

    text: str

    def message(self) -> str:
        return self.text
