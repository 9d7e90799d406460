"""The daemon's journal: every event is logged, the recent ones kept for ``status``, and the table
changes handed to the e-mail alerts."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from saru.events import Event, TableChange

LOGGER = logging.getLogger("saru")
#: events kept for ``status``
KEEP = 200


class Journal:
    """``emit(event)``: log it, keep it, alert on it; ``recent(n)``: the last ``n`` as log lines."""

    def __init__(self, on_table_change: Callable[[TableChange], None] | None = None, keep: int = KEEP) -> None:
        self._on_table_change = on_table_change
        self._lines: deque[str] = deque(maxlen=keep)

    def emit(self, event: Event) -> None:
        LOGGER.log(event.level, self.record(event))
        if isinstance(event, TableChange) and self._on_table_change is not None:
            self._on_table_change(event)

    def record(self, event: Event) -> str:
        """Keep the event for ``status`` without logging it; return its message."""
        message = event.message()
        self._lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(event.at))} {message}")
        return message

    def recent(self, count: int) -> list[str]:
        return list(self._lines)[-count:]
