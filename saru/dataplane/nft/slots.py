"""Scheduling in nftables: the slot table of a service, slot number → real (pure).

* ``rr``/``wrr``: a slot sequence like IPVS's wrr (weights / gcd, interleaved), at most
  ``MAX_SLOTS`` long; ``stable_slots`` keeps each slot's previous owner where it can, so a change
  touches only the map elements it must;
* ``sh``/``mh``/``dh``: a Maglev lookup table of ``MAGLEV_SIZE`` slots (``saru.dataplane.maglev``),
  identical on every director;
* ``fo``: every new connection to the highest-weight real.

The other IPVS schedulers need per-real connection counts, which nftables does not keep. A real
without a slot (weight 0, the reals ``fo`` does not pick) is parked in its service's slot map at
``park_key``.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence

from saru.dataplane.maglev import maglev_table
from saru.dataplane.nft.names import RenderError
from saru.model import Dest, ServiceSettings

__all__ = [
    "MAGLEV_SIZE", "MAX_SLOTS", "PARK", "SUPPORTED_SCHEDULERS", "maglev", "park_key", "slots", "stable_slots",
    "wrr_sequence",
]


MAGLEV_SIZE = 1021  # prime; slots of the sh/mh/dh lookup table
MAX_SLOTS = 1024  # rr/wrr sequences longer than this are scaled down
SUPPORTED_SCHEDULERS = frozenset({"rr", "wrr", "sh", "mh", "dh", "fo"})
PARK = 1 << 31  # slot-map keys from here on hold reals without a slot (no slot number gets there)


def wrr_sequence(weights: Sequence[int]) -> list[int]:
    """Indices in IPVS wrr order for one full cycle (weights / gcd; 3:1 → 0 0 0 1)."""
    live = [w for w in weights if w > 0]
    if not live:
        return []
    if min(live) == max(live):  # equal weights (the common case): one slot each, in order
        return [i for i, w in enumerate(weights) if w > 0]
    g = math.gcd(*live)
    scaled = [w // g if w > 0 else 0 for w in weights]
    total = sum(scaled)
    if total > MAX_SLOTS:  # keep the map small: proportional, at least one slot each
        factor = MAX_SLOTS / total
        scaled = [max(1, round(w * factor)) if w > 0 else 0 for w in scaled]
        g2 = math.gcd(*[w for w in scaled if w > 0])
        scaled = [w // g2 for w in scaled]
    seq: list[int] = []
    for cw in range(max(scaled), 0, -1):
        seq.extend(i for i, w in enumerate(scaled) if w >= cw)
    return seq


def maglev(dests: Sequence[tuple[str, int]], weights: Sequence[int], size: int = MAGLEV_SIZE) -> list[int]:
    """A Maglev lookup table: slot → index into ``dests`` (``saru.dataplane.maglev``)."""
    return maglev_table(dests, weights, size)


def slots(settings: ServiceSettings, dests: Sequence[Dest]) -> list[int]:
    """The slot table of a service: slot number → index into ``dests`` (sorted by key)."""
    weights = [d.weight for d in dests]
    sched = settings.scheduler
    if sched == "rr":
        return [i for i, w in enumerate(weights) if w > 0]
    if sched == "wrr":
        return wrr_sequence(weights)
    if sched == "fo":
        live = [i for i, w in enumerate(weights) if w > 0]
        if not live:
            return []
        best = max(weights[i] for i in live)
        return [next(i for i in live if weights[i] == best)]
    if sched in ("sh", "mh", "dh"):
        return maglev([d.key for d in dests], weights)
    raise RenderError(f"scheduler {sched!r} needs connection counts, which nftables does not keep "
                      f"(supported: {', '.join(sorted(SUPPORTED_SCHEDULERS))})")


def stable_slots(
    table: Sequence[int], keys: Sequence[tuple[str, int]], previous: Sequence[tuple[str, int]] | None
) -> list[int]:
    """``table`` (slot → dest index) rearranged so that slots keep their previous owner where the
    owner keeps that many slots: a change touches only the map elements it must (rr/wrr/fo only;
    the hashing schedulers need the canonical table, identical on every director)."""
    if not previous:
        return list(table)
    index = {k: i for i, k in enumerate(keys)}
    need = Counter(table)
    out = [-1] * len(table)
    for pos in range(min(len(table), len(previous))):
        i = index.get(previous[pos])
        if i is not None and need[i] > 0:
            out[pos] = i
            need[i] -= 1
    rest = []
    for i in table:
        if need[i] > 0:
            rest.append(i)
            need[i] -= 1
    fill = iter(rest)
    return [i if i >= 0 else next(fill) for i in out]


def park_key(key: tuple[str, int]) -> int:
    """Where a real without a slot is kept in its service's slot map: a key no slot number reaches
    (>= ``PARK``), derived from the real so that it stays put from apply to apply."""
    return PARK | (zlib.crc32(f"{key[0]}|{key[1]}".encode()) & (PARK - 1))
