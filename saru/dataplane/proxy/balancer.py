"""One service's state in the userspace proxy: destinations, scheduler, persistence (no I/O).

A ``Balancer`` holds one service's destinations (``schedulers.DestState``: weight, thresholds, live
counters), its scheduler (``schedulers.SCHEDULERS``) and its persistence templates.
``schedule(client, port)`` picks a destination for a new connection and counts it; ``release``
uncounts it when the connection ends.

Persistence (``persistent`` seconds, ``netmask``: IPv4 dotted mask or prefix length): a client,
masked by netmask, sticks to the destination of its first connection while it has connections and
for ``persistent`` seconds after the later of its last new connection and its last close. A template
whose destination has weight 0 or was removed is dropped at the next lookup and the client is
scheduled afresh, like IPVS with ``expire_quiescent_template=1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from saru.dataplane.netmask import parse_netmask
from saru.dataplane.proxy.schedulers import SCHEDULERS, DestState, address_value
from saru.model import Dest, ServiceSettings
from saru.model.schedflags import flag_names


def parse_flags(schedflags: str | None, scheduler: str = "") -> frozenset[str]:
    """``"sh-fallback,sh-port"`` (ipvsadm -b) → the canonical flag names (``flag-2`` on sh = ``sh-port``)."""
    return flag_names(schedflags, scheduler)


def check_settings(settings: ServiceSettings) -> None:
    """Raise ValueError when a balancer cannot honour these settings."""
    if settings.scheduler not in SCHEDULERS:
        known = ", ".join(sorted(SCHEDULERS))
        raise ValueError(f"unknown scheduler {settings.scheduler!r} (this data plane knows {known})")
    if settings.persistent is not None and settings.persistent < 0:
        raise ValueError(f"invalid persistent timeout {settings.persistent}")
    parse_netmask(settings.netmask)


@dataclass(eq=False, slots=True)
class Template:
    """A persistence template: a masked client stuck to a destination."""

    dest: DestState
    conns: int = 0
    expires: float = 0.0  # meaningful once conns == 0


class Balancer:
    """One service's destinations, scheduler and persistence templates."""

    def __init__(
        self,
        settings: ServiceSettings,
        service: tuple[str, int] = ("", 0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.clock = clock
        self.dests: dict[tuple[str, int], DestState] = {}
        self.templates: dict[tuple[int, int], Template] = {}
        self.released = 0  # connections ended so far (with the service's totals: whether a counter moved)
        self.settings = settings
        self.configure(settings)

    def configure(self, settings: ServiceSettings) -> None:
        """Apply (new) service settings; raises ValueError when they are invalid."""
        check_settings(settings)
        old = self.settings
        self.settings = settings
        self.persistent = settings.persistent
        self.v4mask, self.v6prefix = parse_netmask(settings.netmask)
        if not settings.persistent or settings.netmask != old.netmask:
            self.templates.clear()
        flags = parse_flags(settings.schedflags, settings.scheduler)
        self.scheduler = SCHEDULERS[settings.scheduler](flags, self.service)
        self.scheduler.update(list(self.dests.values()))

    def set_dest(self, dest: Dest, refresh: bool = True) -> DestState:
        """Add a destination or change its weight and thresholds.

        ``refresh=False`` defers the scheduler's recomputation: a batch of changes then calls
        ``refresh()`` once (linear instead of quadratic in the number of destinations)."""
        state = self.dests.get(dest.key)
        if state is None:
            state = DestState(dest.address, dest.port)
            self.dests[dest.key] = state
        state.configure(dest)
        if refresh:
            self.refresh()
        return state

    def remove_dest(self, key: tuple[str, int], refresh: bool = True) -> None:
        """Forget a destination; its live connections keep their DestState until they end."""
        state = self.dests.pop(key, None)
        if state is not None:
            state.removed = True
            if refresh:
                self.refresh()

    def refresh(self) -> None:
        """Recompute the scheduler's view of the destinations (after deferred changes)."""
        self.scheduler.update(list(self.dests.values()))

    def _client_key(self, client: str) -> tuple[int, int]:
        bits, value = address_value(client)
        if bits == 32:
            return 4, value & self.v4mask
        return 6, value >> (128 - self.v6prefix) if self.v6prefix else 0

    def schedule(
        self, client: str, port: int, exclude: DestState | None = None
    ) -> tuple[DestState, Template | None] | None:
        """Choose and count the destination of a new connection; None when nothing is available."""
        if not self.persistent:
            d = self.scheduler.pick(client, port, exclude)
            if d is None:
                return None
            d.bind()
            return d, None
        key = self._client_key(client)
        t = self.templates.get(key)
        if t is not None:
            d = t.dest
            stale = t.conns == 0 and t.expires <= self.clock()
            if stale or d.removed or d.weight <= 0 or d is exclude:
                del self.templates[key]  # connections still holding it release it harmlessly
                t = None
        if t is None:
            d = self.scheduler.pick(client, port, exclude)
            if d is None:
                return None
            t = self.templates[key] = Template(d)
        d = t.dest
        t.conns += 1
        t.expires = self.clock() + self.persistent
        d.bind()
        return d, t

    def release(self, dest: DestState, template: Template | None) -> None:
        """A connection scheduled by ``schedule`` ended."""
        dest.unbind()
        self.released += 1
        if template is not None:
            template.conns -= 1
            template.expires = max(template.expires, self.clock() + (self.persistent or 0))

    def expire(self) -> int:
        """Drop expired templates; returns how many were dropped."""
        now = self.clock()
        dead = [k for k, t in self.templates.items() if t.conns <= 0 and t.expires <= now]
        for k in dead:
            del self.templates[k]
        return len(dead)


def weights_of(dests: Iterable[DestState]) -> dict[tuple[str, int], int]:
    """Helper for diagnostics and tests: destination → weight."""
    return {d.key: d.weight for d in dests}
