"""The daemon's journal: every event is logged, the recent ones kept for ``status``, the table
changes and panic-mode changes handed to the e-mail alerts, and every event handed to the listeners
(the event bus of the HTTP API, the reals' transition history). Its log records carry ``saru_journal=True`` so that the
bus's log handler (``saru.daemon.bus``) does not publish them twice."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from saru.events import Event, PanicMode, TableChange

LOGGER = logging.getLogger("saru")
#: events kept for ``status``
KEEP = 200
#: marks the journal's own log records (``record.saru_journal``)
JOURNAL_EXTRA = {"saru_journal": True}


class Journal:
    """``emit(event)``: log it, keep it, alert on it; ``recent(n)``: the last ``n`` as log lines."""

    def __init__(self, on_alert: Callable[[Event], None] | None = None, keep: int = KEEP) -> None:
        self._on_alert = on_alert  # the e-mail alerts: table changes and panic mode
        self._lines: deque[str] = deque(maxlen=keep)
        self._listeners: list[Callable[[Event], None]] = []

    def add_listener(self, callback: Callable[[Event], None]) -> None:
        """``callback(event)`` for every event emitted or recorded from now on (it must not block)."""
        self._listeners.append(callback)

    def emit(self, event: Event) -> None:
        LOGGER.log(event.level, self.record(event), extra=JOURNAL_EXTRA)
        if isinstance(event, TableChange | PanicMode) and self._on_alert is not None:
            self._on_alert(event)

    def record(self, event: Event) -> str:
        """Keep the event for ``status`` without logging it; return its message."""
        message = event.message()
        self._lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(event.at))} {message}")
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                LOGGER.exception("event listener failed on %r", event)
        return message

    def __len__(self) -> int:
        return len(self._lines)

    def recent(self, count: int) -> list[str]:
        return list(self._lines)[-count:]
