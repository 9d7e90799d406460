"""Connection scheduling algorithms with IPVS semantics, for the userspace proxy (no I/O in here).

A ``Scheduler`` picks one of a service's destinations (``DestState``: weight, thresholds, live
counters) for a new connection; ``balancer.Balancer`` holds a service's destinations, its scheduler
and its persistence templates.

Schedulers (``SCHEDULERS``), as in the Linux kernel's ``ip_vs_*.c``:

* ``rr``, ``wrr`` (interleaved, gcd-stepped: weights 3:1 give A A A B), ``lc``/``wlc`` (overhead =
  active * 256 + inactive), ``sed``, ``nq``, ``fo`` (highest weight), ``ovf`` (highest weight whose
  active connections do not exceed its weight);
* ``sh``: source hash over IPVS's 256-bucket weighted table; flags ``sh-fallback``, ``sh-port``;
* ``dh``: destination hash. IPVS hashes the packet's destination address, which for an ordinary
  (non-fwm) service is always the virtual address, so every connection of the service goes to one
  real. A proxy sees the same thing, so ``dh`` hashes the virtual address and port: all of a
  service's connections go to the one real that owns that bucket, and when that real is unavailable
  the connection is refused (IPVS has no fallback for ``dh`` either);
* ``mh``: Maglev consistent hashing over a ``MH_TABLE_SIZE`` (16381) slot lookup table, built
  lazily at the first connection after a change (about 6 ms); flags ``mh-fallback``, ``mh-port``.
  IPVS's default of 251 slots moves ~8 % of the other reals' flows when one of ten is removed;
  16381 slots move ~0.6 %. Like IPVS, a real whose weight drops to 0 keeps its slots
  (its flows are refused, or fall back with ``mh-fallback``) so that nobody else's flows move;
  removing a real rebuilds the table, which moves (almost) only that real's flows;
* ``twos`` (weighted random two choices), and ``lblc``/``lblcr``, whose cache IPVS keys by the
  packet's destination address: for a proxied service that is always the virtual address, so the
  service as a whole sticks to one real (lblc) or a small set (lblcr) while it is not too busy.

Weight-0 destinations never receive new connections. Upper/lower thresholds follow IPVS's overload
rule: a destination becomes overloaded when active+inactive >= upper, and is available again below
lower (or below 3/4 of upper when lower is 0); overloaded destinations are skipped.
"""

from __future__ import annotations

import abc
import math
import random
import socket
import time
from dataclasses import dataclass

from saru.dataplane.maglev import digest64, maglev_table
from saru.model import Dest

MH_TABLE_SIZE = 16381  # a prime; IPVS's CONFIG_IP_VS_MH_TAB_INDEX=14 (its default is 251)
SH_TABLE_BITS = 8  # IPVS's IP_VS_SH_TAB_BITS (and dh's)
_GOLDEN_RATIO_32 = 0x61C88647


@dataclass(eq=False, slots=True)
class DestState:
    """A destination as the scheduler sees it, with live counters (updated by the data plane)."""

    address: str
    port: int
    weight: int = 1
    upper: int = 0
    lower: int = 0
    last_weight: int = 1  # the last non-zero weight (mh keeps a quiesced real's slots)
    active: int = 0
    inactive: int = 0
    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    overloaded: bool = False
    removed: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def available(self) -> bool:
        return self.weight > 0 and not self.overloaded

    def configure(self, dest: Dest) -> None:
        self.weight = dest.weight
        if dest.weight > 0:
            self.last_weight = dest.weight
        self.upper = dest.upper_threshold
        self.lower = dest.lower_threshold
        self._update_overload()

    def bind(self) -> None:
        """A new connection to this destination."""
        self.active += 1
        self.connections += 1
        if self.upper and self.active + self.inactive >= self.upper:
            self.overloaded = True

    def unbind(self) -> None:
        """A connection to this destination ended."""
        self.active -= 1
        if self.overloaded:
            self._update_overload()

    def _update_overload(self) -> None:
        total = self.active + self.inactive
        if self.upper and total >= self.upper:
            self.overloaded = True
        elif self.lower:
            if total < self.lower:
                self.overloaded = False
        elif self.upper:
            if total * 4 < self.upper * 3:
                self.overloaded = False
        else:
            self.overloaded = False


def address_value(address: str) -> tuple[int, int]:
    """(family bits, integer value) of an IP literal."""
    if ":" in address:
        return 128, int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
    return 32, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")


def _fold(address: str) -> int:
    """IPVS's 32-bit fold of an address (IPv6: xor of its four words)."""
    bits, value = address_value(address)
    if bits == 32:
        return value
    return (value >> 96 ^ value >> 64 ^ value >> 32 ^ value) & 0xFFFFFFFF


def _hash32(value: int, bits: int) -> int:
    """The kernel's ``hash_32``."""
    return ((value * _GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - bits)


class Scheduler(abc.ABC):
    """Picks one destination among a service's destinations."""

    name = ""

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        self.flags = flags
        self.service = service
        self.dests: list[DestState] = []

    def update(self, dests: list[DestState]) -> None:
        """The destination list or a weight changed (``dests`` in insertion order)."""
        self.dests = dests

    @abc.abstractmethod
    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        """The destination for a new connection from client:port, or None."""


class RoundRobin(Scheduler):
    name = "rr"

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        super().__init__(flags, service)
        self.index = -1  # position of the last pick
        self.last: DestState | None = None

    def update(self, dests: list[DestState]) -> None:
        # Like IPVS, keep the cursor; when its real is removed, continue with the one after it.
        if self.last is not None and self.last in dests:
            self.index = dests.index(self.last)
        elif self.last is not None:
            self.index -= 1
        super().update(dests)

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        dests = self.dests
        n = len(dests)
        i = self.index
        for _ in range(n):
            i += 1
            if i >= n:
                i = 0
            d = dests[i]
            if d.weight > 0 and not d.overloaded and d is not exclude:
                self.index = i
                self.last = d
                return d
        return None


class WeightedRoundRobin(Scheduler):
    name = "wrr"

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        super().__init__(flags, service)
        self.index = -1
        self.cw = 0
        self.mw = 0
        self.di = 1

    def update(self, dests: list[DestState]) -> None:
        super().update(dests)
        # Like ip_vs_wrr_dest_changed: restart from the head of the list, keep cw when still valid.
        weights = [d.weight for d in dests if d.weight > 0]
        self.di = math.gcd(*weights) if weights else 1
        self.mw = max(weights, default=0) - (self.di - 1)
        if self.cw > self.mw:
            self.cw = 0
        self.index = -1

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        dests = self.dests
        n = len(dests)
        if not n or self.mw <= 0:
            return None
        # At most one full cycle: n positions for each of the mw/di weight levels.
        for _ in range(n * (self.mw // self.di + 1)):
            i = self.index + 1
            if i >= n:
                i = 0
            if i == 0:  # passing the head of the list: next weight level
                self.cw -= self.di
                if self.cw <= 0:
                    self.cw = self.mw
            self.index = i
            d = dests[i]
            if d.weight >= self.cw and d.weight > 0 and not d.overloaded and d is not exclude:
                return d
        return None


class LeastConnection(Scheduler):
    name = "lc"

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        least: DestState | None = None
        loh = 0
        for d in self.dests:
            if d.weight <= 0 or d.overloaded or d is exclude:
                continue
            doh = (d.active << 8) + d.inactive
            if least is None or doh < loh:
                least, loh = d, doh
        return least


class WeightedLeastConnection(Scheduler):
    name = "wlc"

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        least: DestState | None = None
        loh = 0
        for d in self.dests:
            if d.weight <= 0 or d.overloaded or d is exclude:
                continue
            doh = (d.active << 8) + d.inactive
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class ShortestExpectedDelay(Scheduler):
    name = "sed"

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        least: DestState | None = None
        loh = 0
        for d in self.dests:
            if d.weight <= 0 or d.overloaded or d is exclude:
                continue
            doh = d.active + 1
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class NeverQueue(ShortestExpectedDelay):
    name = "nq"

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        for d in self.dests:
            if d.weight > 0 and not d.overloaded and d is not exclude and d.active == 0:
                return d
        return super().pick(client, port, exclude)


class WeightedFailover(Scheduler):
    name = "fo"

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        best: DestState | None = None
        for d in self.dests:
            if d.weight <= 0 or d.overloaded or d is exclude:
                continue
            if best is None or d.weight > best.weight:
                best = d
        return best


class Overflow(Scheduler):
    name = "ovf"

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        best: DestState | None = None
        for d in self.dests:
            if d.weight <= 0 or d.overloaded or d is exclude or d.active > d.weight:
                continue
            if best is None or d.weight > best.weight:
                best = d
        return best


class _BucketHash(Scheduler):
    """IPVS's sh/dh 256-bucket table: each destination fills ``weight`` consecutive buckets in turn."""

    fallback_flag = ""
    port_flag = ""

    def update(self, dests: list[DestState]) -> None:
        super().update(dests)
        size = 1 << SH_TABLE_BITS
        buckets: list[DestState | None] = [None] * size
        if dests:
            i = count = 0
            for b in range(size):
                d = dests[i]
                buckets[b] = d
                count += 1
                if count >= d.weight:
                    i = (i + 1) % len(dests)
                    count = 0
        self.buckets = buckets

    def key(self, client: str, port: int) -> int:
        raise NotImplementedError

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        if not self.dests:
            return None
        h = self.key(client, port)
        d = self.buckets[h]
        if d is not None and d.weight > 0 and not d.overloaded and d is not exclude:
            return d
        if self.fallback_flag not in self.flags and exclude is None:
            return None
        size = len(self.buckets)
        for offset in range(1, size):
            d = self.buckets[(h + offset) % size]
            if d is not None and d.weight > 0 and not d.overloaded and d is not exclude:
                return d
        return None


class SourceHash(_BucketHash):
    name = "sh"
    fallback_flag = "sh-fallback"

    def key(self, client: str, port: int) -> int:
        p = port if "sh-port" in self.flags else 0
        return _hash32((p + _fold(client)) & 0xFFFFFFFF, SH_TABLE_BITS)


class DestinationHash(_BucketHash):
    """dh: hash of the virtual address and port (see the module docstring)."""

    name = "dh"

    def key(self, client: str, port: int) -> int:
        address, vport = self.service
        return _hash32((vport + _fold(address or "0.0.0.0")) & 0xFFFFFFFF, SH_TABLE_BITS)


class MaglevHash(Scheduler):
    """mh: Maglev lookup table; weights by turns (weight / gcd), quiesced reals keep their slots."""

    name = "mh"

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        super().__init__(flags, service)
        self.stale = True
        self._table: list[DestState | None] = []

    def update(self, dests: list[DestState]) -> None:
        super().update(dests)
        self.stale = True

    @property
    def table(self) -> list[DestState | None]:
        if self.stale:
            self._table = self.build(self.dests)
            self.stale = False
        return self._table

    @staticmethod
    def build(dests: list[DestState]) -> list[DestState | None]:
        """The lookup table (``saru.dataplane.maglev``); a quiesced real keeps its last weight's slots."""
        weights = [d.weight if d.weight > 0 else d.last_weight for d in dests]
        slots = maglev_table([d.key for d in dests], weights, MH_TABLE_SIZE)
        if not slots:
            return [None] * MH_TABLE_SIZE
        return [dests[i] for i in slots]

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        if not self.dests:
            return None
        raw = socket.inet_pton(socket.AF_INET6 if ":" in client else socket.AF_INET, client)
        if "mh-port" in self.flags:
            raw += port.to_bytes(2, "big")
        table = self.table
        size = len(table)
        h = digest64(raw, b"saru-mh-client") % size
        d = table[h]
        if d is not None and d.weight > 0 and not d.overloaded and d is not exclude:
            return d
        if "mh-fallback" not in self.flags and exclude is None:
            return None
        # IPVS's fallback: rehash with an increasing offset until an available real turns up.
        for offset in range(1, size):
            d = table[(h + offset) % size]
            if d is not None and d.weight > 0 and not d.overloaded and d is not exclude:
                return d
        return None


class WeightedRandomTwos(Scheduler):
    """twos: two reals drawn at random in proportion to weight; the less loaded one wins."""

    name = "twos"

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        super().__init__(flags, service)
        self.random = random.Random()

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        usable = [d for d in self.dests if d.weight > 0 and not d.overloaded and d is not exclude]
        if not usable:
            return None
        total = sum(d.weight for d in usable)
        r1, r2 = self.random.randrange(total), self.random.randrange(total)
        c1 = c2 = usable[-1]
        acc = 0
        first = second = False
        for d in usable:
            acc += d.weight
            if not first and acc > r1:
                c1, first = d, True
            if not second and acc > r2:
                c2, second = d, True
        oh1, oh2 = (c1.active << 8) + c1.inactive, (c2.active << 8) + c2.inactive
        return c2 if oh2 * c1.weight < oh1 * c2.weight else c1


def _busy(dest: DestState, dests: list[DestState]) -> bool:
    """IPVS lblc/lblcr ``is_overloaded``: more active than its weight while another is half idle."""
    return dest.active > dest.weight and any(d.active * 2 < d.weight for d in dests)


class LocalityLeastConnection(WeightedLeastConnection):
    """lblc: IPVS keys its cache by the packet's destination address, which for a proxied service is
    always the virtual address: so the whole service sticks to one real (chosen like wlc) until that
    real is unavailable, or busier than its weight while another real is under half its weight."""

    name = "lblc"

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        super().__init__(flags, service)
        self.cached: DestState | None = None

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        d = self.cached
        if (d is not None and not d.removed and d.weight > 0 and not d.overloaded and d is not exclude
                and not _busy(d, self.dests)):
            return d
        d = super().pick(client, port, exclude)
        if d is not None:
            self.cached = d
        return d


class LocalityLeastConnectionReplicated(WeightedLeastConnection):
    """lblcr: like lblc, but the service's cache is a set of reals that grows (by a wlc choice) when
    its least loaded member is busy, and loses its most loaded member when unchanged for a day."""

    name = "lblcr"
    expiration = 24 * 60 * 60.0  # IPVS's lblcr_expiration sysctl default

    def __init__(self, flags: frozenset[str] = frozenset(), service: tuple[str, int] = ("", 0)) -> None:
        super().__init__(flags, service)
        self.members: list[DestState] = []
        self.changed = time.monotonic()

    def pick(self, client: str, port: int, exclude: DestState | None = None) -> DestState | None:
        self.members = [d for d in self.members if not d.removed]
        best: DestState | None = None
        for d in self.members:
            if d.weight <= 0 or d.overloaded or d is exclude:
                continue
            if best is None or ((best.active << 8) + best.inactive) * d.weight > (
                (d.active << 8) + d.inactive
            ) * best.weight:
                best = d
        if len(self.members) > 1 and time.monotonic() - self.changed > self.expiration:
            worst = max(self.members, key=lambda d: ((d.active << 8) + d.inactive) / max(d.weight, 1))
            self.members.remove(worst)
            self.changed = time.monotonic()
        if best is not None and not _busy(best, self.dests):
            return best
        chosen = super().pick(client, port, exclude)
        if chosen is not None and chosen not in self.members:
            self.members.append(chosen)
            self.changed = time.monotonic()
        return chosen


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls
    for cls in (
        RoundRobin, WeightedRoundRobin, LeastConnection, WeightedLeastConnection, ShortestExpectedDelay,
        NeverQueue, WeightedFailover, Overflow, SourceHash, DestinationHash, MaglevHash,
        WeightedRandomTwos, LocalityLeastConnection, LocalityLeastConnectionReplicated,
    )
}
