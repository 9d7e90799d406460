"""Stand-ins for the daemon's unit tests: an in-memory data plane implementing
``saru.dataplane.base.Dataplane`` (pure: a ``Table`` in memory, ops applied with ``saru.diff``),
ldirectord.cf text for it, and ``until`` (poll a condition with a deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from saru.config.ldirectord import parse_text
from saru.dataplane.base import Capabilities, Dataplane, DataplaneError, DestStats, ServiceStats
from saru.diff import OpError, apply_ops
from saru.model import Config, Op, ServiceKey, Table

CAPABILITIES = Capabilities("memory", frozenset({"masq", "gate", "ipip"}), frozenset({"rr", "wrr", "wlc"}),
                            rewrites_gate_ports=True)


class MemoryPlane(Dataplane):
    """A table in memory. ``fail`` makes the next applies fail (one message per attempt, in order);
    ``applied`` keeps every batch; ``counters`` is what ``stats()`` answers."""

    capabilities = CAPABILITIES

    def __init__(self, table: Table | None = None) -> None:
        self.table = table or Table()
        self.applied: list[list[Op]] = []
        self.fail: list[str] = []
        self.started = self.closed = False
        self.counters: dict[ServiceKey, ServiceStats] = {}

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def read(self) -> Table:
        return self.table

    async def apply(self, ops: Sequence[Op]) -> None:
        if self.fail:
            raise DataplaneError(self.fail.pop(0))
        try:
            self.table = apply_ops(self.table, ops)
        except OpError as exc:
            raise DataplaneError(str(exc)) from exc
        self.applied.append(list(ops))

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        return dict(self.counters)


def config(text: str, path: str = "/etc/ha.d/test.cf") -> Config:
    return parse_text(text, path)


#: two virtuals: one always up (checktype on), one never checked (off); the first cleanstops
TWO_VIRTUALS = """\
virtual=10.0.0.1:80
\treal=10.1.0.1:80 masq 2
\treal=10.1.0.2:80 masq 1
\tchecktype=on
\tscheduler=wrr
\tcleanstop=yes
virtual=10.0.0.2:53
\tprotocol=udp
\treal=10.1.0.3:53 masq
\tchecktype=off
\tscheduler=rr
\tcleanstop=no
"""

UP = ServiceKey("tcp", "10.0.0.1", 80)
OFF = ServiceKey("udp", "10.0.0.2", 53)


def stats_for(key: ServiceKey) -> ServiceStats:
    return ServiceStats(connections=7, bytes_in=100, bytes_out=200,
                        dests={("10.1.0.1", 80): DestStats(active_connections=1, connections=5)})


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        await asyncio.sleep(0.005)
