"""What every benchmark does at its end: the machine's load average, and the results saved as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_average() -> list[str]:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."""
    return Path("/proc/loadavg").read_text().split()[:3]


def save(path: Path, results: dict[str, Any], load_before: list[str]) -> None:
    """Print the load average before and after, write ``results`` to ``path`` (JSON) and say where."""
    print(f"load average before / after: {' '.join(load_before)} / {' '.join(load_average())}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path}")
