"""Keeping Python's cyclic garbage collector off the daemon's long-lived objects.

A director of 10,000 reals holds some 360,000 objects that live as long as its configuration (the
config, the monitor's state, the data plane's tables). Every full collection walks all of them —
about 0.2 s on a 2-core machine — and the work a check pass or a ``/metrics`` scrape allocates
triggers one every few seconds. ``settle()`` collects once and moves what survives into the
collector's permanent generation (``gc.freeze``), so later collections walk only what was made since.
It runs once the daemon is ready and again a little after each reload (``settle_later``): first
``gc.unfreeze()``, so that what the old configuration held can be collected, then the same.

``tune()`` (at the daemon's start) raises the collector's first threshold from CPython's 700 to
``YOUNG_THRESHOLD``. A young collection runs whenever the tracked objects made minus those freed pass
the threshold; a daemon checking 2,000 reals a second (each check's coroutine, socket, futures and
buffers live for milliseconds) crosses 700 back and forth some 36 times a second, and with a young
collection every tenth goes a middle one and, as objects are promoted, full ones: measured at 10,000
reals, 14-16 % of the daemon's CPU was the collector's, and a ``/metrics`` scrape a second (whose
rows and lists set off more of them) added 7-28 ms to each scrape. At 10,000 the same daemon ran
no collection in a 30 s window: what the checks and the scrapes make is freed by reference counting,
not by the collector, which is left to what it is for, the cycles (a few hundred objects a second
here: they now wait for the next collection, bounded by the threshold's count of objects).
"""

from __future__ import annotations

import asyncio
import gc

#: seconds after a reload before the heap is settled again (the old config's check tasks have ended)
RESETTLE_DELAY = 10.0
#: the collector's first threshold (CPython's default: 700); the other two stay CPython's
YOUNG_THRESHOLD = 10_000


def tune() -> None:
    """The collector's first threshold raised to ``YOUNG_THRESHOLD`` (module docstring)."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def settle() -> None:
    """Collect, then freeze what survives (the daemon's long-lived objects)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Settler:
    """``settle_later()``: settle the heap once, ``delay`` seconds from now (a later call replaces it)."""

    def __init__(self, delay: float = RESETTLE_DELAY) -> None:
        self.delay = delay
        self._handle: asyncio.TimerHandle | None = None

    def settle_later(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(self.delay, self._settle)

    def _settle(self) -> None:
        self._handle = None
        settle()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
