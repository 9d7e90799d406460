"""Where a daemon's control socket (and its pid file and instance locks) live by default."""

from __future__ import annotations

import os
from pathlib import Path


def runtime_dir() -> Path:
    """Where sockets and pid files live by default: ``$SARU_RUNTIME_DIR``, else /run/saru (root) or a
    per-user directory."""
    override = os.environ.get("SARU_RUNTIME_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/saru")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "saru"
    return Path(f"/tmp/saru-{os.getuid()}")


def default_socket_path(config_path: str) -> Path:
    """The control socket of the daemon running ``config_path``."""
    return runtime_dir() / (Path(config_path).name + ".sock")
