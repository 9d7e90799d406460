"""Whether this process may program the kernel's network tables: CAP_NET_ADMIN in its effective set.

Root has it, and so has an unprivileged user given it by systemd (``saru.service``: ``User=saru``,
``AmbientCapabilities=CAP_NET_ADMIN …``) — the data planes ask for the capability, never for uid 0.
"""

from __future__ import annotations

import os
from pathlib import Path

CAP_NET_ADMIN = 12


def effective_capabilities(status: Path = Path("/proc/self/status")) -> int | None:
    """The effective capability set (``CapEff`` of /proc/self/status), ``None`` if it cannot be read."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def has_net_admin() -> bool:
    """Whether CAP_NET_ADMIN is effective (without /proc: whether we are root)."""
    caps = effective_capabilities()
    if caps is None:
        return os.geteuid() == 0
    return bool(caps >> CAP_NET_ADMIN & 1)
