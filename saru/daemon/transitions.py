"""The last few transitions of each real — up, down (with the reason), and the operator's drain,
disable, enable and weight — kept from the journal's events for the status document; ``changed``
gets every real that got one (the status document's live part, ``saru.daemon.status_live``,
empties it)."""

from __future__ import annotations

from collections import deque
from typing import TypedDict

from saru.events import Event, OperatorAction, RealDown, RealUp
from saru.model import RealRef

#: transitions kept per real
KEEP = 5


class TransitionDoc(TypedDict):
    time: float
    to: str  # up, down, drain, disable, enable, weight
    reason: str


class Transitions:
    """``record(event)`` (a journal listener); ``of(ref)``: that real's last transitions, oldest first."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._by_real: dict[RealRef, deque[TransitionDoc]] = {}
        self.changed: set[RealRef] = set()

    def record(self, event: Event) -> None:
        if isinstance(event, RealUp | RealDown):
            to, reason, ref = ("up" if isinstance(event, RealUp) else "down"), event.detail, event.real
        elif isinstance(event, OperatorAction):
            to, ref = event.action, event.real
            reason = f"weight {event.weight} by {event.origin}" if event.action == "weight" else f"by {event.origin}"
        else:
            return
        kept = self._by_real.get(ref)
        if kept is None:
            kept = self._by_real[ref] = deque(maxlen=self.keep)
        kept.append({"time": event.at, "to": to, "reason": reason})
        self.changed.add(ref)

    def sizes(self) -> tuple[int, int]:
        """``(reals with a history, transitions kept in all)``: what the soak watches stay bounded."""
        return len(self._by_real), sum(len(kept) for kept in self._by_real.values())

    def of(self, ref: RealRef) -> list[TransitionDoc]:
        kept = self._by_real.get(ref)
        return list(kept) if kept else []
