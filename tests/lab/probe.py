"""Whether this machine can build a lab: root, the programs it needs, network namespaces that work."""

from __future__ import annotations

import os
import shutil
import subprocess


def netns_usable() -> tuple[bool, str]:
    """Whether this process can create (and delete) a network namespace."""
    probe = f"saru-probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return False, f"cannot create network namespaces: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return True, "ok"


def can_build(*tools: str, what: str = "network namespaces", path: str | None = None,
              hint: str = "") -> tuple[bool, str]:
    """``(True, "ok")`` when we are root, ``ip`` and ``tools`` are on ``path`` (default ``$PATH``) and a
    namespace can be made; else ``(False, why)`` (``what`` says what needs root, ``hint`` how to install)."""
    if os.geteuid() != 0:
        return False, f"{what} need root"
    for tool in ("ip", *tools):
        if shutil.which(tool, path=path) is None:
            return False, f"{tool} is not installed{hint}"
    return netns_usable()
