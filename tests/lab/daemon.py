"""Directors in lab namespaces: a ``saru run`` reached through its control socket (``<workdir>/saru.sock``),
and the NIC filter every director namespace on a bridge needs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from saru.control import request_sync

#: A veth delivers every frame the bridge floods, including those for another host's MAC (a bridge
#: floods unicast to a MAC whose port went down); a NIC drops them in hardware. Without this filter a
#: director's netdev ingress table (a standby's warm table, or another active director's) would
#: forward frames meant for another director, and failover would look instant or flows be doubled. It
#: runs before Saru's direct-routing chain (priority -500 < Saru's).
NIC_FILTER = """\
add table netdev nicfilter
add chain netdev nicfilter in { type filter hook ingress device "eth0" priority -500; policy accept; }
add rule netdev nicfilter in meta pkttype other drop
"""


class NsDaemon:
    """One ``saru run`` in namespace ``role``; ``log``: where its output goes (default ``<workdir>/saru.out``)."""

    def __init__(self, role: str, workdir: Path, proc: subprocess.Popen[str], log: Path | None = None) -> None:
        self.role, self.workdir, self.proc = role, workdir, proc
        self.log = log if log is not None else workdir / "saru.out"
        self.control = workdir / "saru.sock"

    def ask(self, command: str, **params: Any) -> dict[str, Any]:
        """The daemon's answer to ``command``; ``RuntimeError`` with its error when it refuses."""
        answer = request_sync(self.control, command, timeout=5, **params)
        if not answer.get("ok"):
            raise RuntimeError(f"{self.role} {command}: {answer.get('error')}")
        return answer

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
