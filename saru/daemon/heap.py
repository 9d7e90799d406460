"""Keeping Python's cyclic garbage collector off the daemon's long-lived objects.

A director of 10,000 reals holds some 360,000 objects that live as long as its configuration (the
config, the monitor's state, the data plane's tables). Every full collection walks all of them —
about 0.2 s on a 2-core machine — and the work a check pass or a ``/metrics`` scrape allocates
triggers one every few seconds. ``settle()`` collects once and moves what survives into the
collector's permanent generation (``gc.freeze``), so later collections walk only what was made since.
It runs once the daemon is ready and again a little after each reload (``settle_later``): first
``gc.unfreeze()``, so that what the old configuration held can be collected, then the same.
"""

from __future__ import annotations

import asyncio
import gc

#: seconds after a reload before the heap is settled again (the old config's check tasks have ended)
RESETTLE_DELAY = 10.0


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
