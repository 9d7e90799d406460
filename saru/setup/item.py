"""One line of a checklist: what was checked, its status, a detail and (when not ok) the fix.

Statuses: ``ok``; ``fail`` (breaks the load balancer; exit 1); ``warn`` (works, but not as the guide
says, or could not be verified); ``standby`` (with HA, the floating IP legitimately lives on the peer);
``missing`` (``saru realserver check``: not done yet; exit 1). Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "fail", "warn", "standby", "missing"]

TAGS: dict[str, str] = {"ok": "[ ok ]", "fail": "[fail]", "warn": "[warn]", "standby": "[stby]",
                        "missing": "[miss]"}
BAD: frozenset[str] = frozenset({"fail", "missing"})


@dataclass(frozen=True)
class Item:
    """One checklist entry. ``fix`` is one line: an exact command or sysctl, empty when ok."""

    name: str
    status: Status
    detail: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        """True unless the item fails (warnings and standby do not change the exit status)."""
        return self.status not in BAD

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def render(items: Sequence[Item]) -> str:
    """The checklist as text: ``[ ok ] name: detail`` and an indented ``fix:`` line for each problem."""
    lines = []
    for item in items:
        detail = f": {item.detail}" if item.detail else ""
        lines.append(f"{TAGS[item.status]} {item.name}{detail}")
        if item.fix and item.status != "ok":
            lines.append(f"       fix: {item.fix}")
    return "\n".join(lines)


def all_ok(items: Sequence[Item]) -> bool:
    return all(item.ok for item in items)


def exit_status(items: Sequence[Item]) -> int:
    """0 when nothing fails or is missing, else 1."""
    return 0 if all_ok(items) else 1
