"""How busy the shared machine is: the benchmarks record it around their runs as a noise indicator."""

from __future__ import annotations

import time
from pathlib import Path


def jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Busy fraction of all CPUs between two ``jiffies()`` readings."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def foreign_load(seconds: float = 2.0) -> float:
    """Busy fraction of all CPUs while this benchmark runs nothing (other users of the machine)."""
    before = jiffies()
    time.sleep(seconds)  # sampling the machine's idle counters over a fixed window, not synchronisation
    return busy_share(before, jiffies())
