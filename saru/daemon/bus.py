"""The daemon's event bus: every event it logs, as a JSON-able dict, to every subscriber.

``EventBus.publish(doc)`` never blocks and never fails: each subscriber has a bounded queue, and a
subscriber that reads too slowly loses its oldest events — the next one it reads is then an
``events_lost`` marker saying how many. ``subscribe()`` returns a ``Subscription``: an async
iterator of event dicts, registered at once (nothing published after the call is missed), ended by
``close()`` (or by leaving ``async with``).

The journal's typed events are published by ``event_doc`` (``type``: the event's name in
snake_case, ``time``, ``level``, ``message``: the log line, and its fields with reals and virtual
services named as the API names them); everything else the daemon logs (apply failures, warnings,
HA errors) comes through ``BusLogHandler`` as ``{"type": "log", …}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any

from saru.api.names import proxy_name, server_name
from saru.events import Event, RealDown, RealUp, SoftFailure
from saru.model import Dest, RealRef, ServiceKey

#: events a subscriber may fall behind by before it loses the oldest
QUEUE_SIZE = 1000

EventDoc = dict[str, Any]


def _snake(name: str) -> str:
    """``HAStateChange`` → ``ha_state_change``, ``VIPChange`` → ``vip_change``, ``RealDown`` → ``real_down``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _dest(dest: Dest) -> dict[str, object]:
    return {"server": server_name(dest.address, dest.port), "weight": dest.weight, "forward": dest.forward}


def _real(ref: RealRef) -> dict[str, object]:
    return {"proxy": proxy_name(ref.service), "server": server_name(ref.address, ref.port)}


def _value(value: object) -> object:
    if isinstance(value, ServiceKey):
        return proxy_name(value)
    if isinstance(value, Dest):
        return _dest(value)
    if isinstance(value, RealRef):
        return _real(value)
    if isinstance(value, tuple | list):
        return [_value(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def event_doc(event: Event) -> EventDoc:
    """One typed event as the bus publishes it (see the module docstring)."""
    doc: EventDoc = {"type": _snake(type(event).__name__), "time": event.at,
                     "level": logging.getLevelName(event.level), "message": event.message()}
    kind = getattr(event, "kind", None)
    if isinstance(kind, str) and not any(f.name == "kind" for f in dataclasses.fields(event)):
        doc["ha_kind"] = kind  # the HA events' class-level counter name
    for f in dataclasses.fields(event):
        if f.name == "at":
            continue
        value = getattr(event, f.name)
        if isinstance(value, RealRef):
            doc.update(_real(value))
        elif isinstance(value, ServiceKey):
            doc["proxy"] = proxy_name(value)
        elif isinstance(value, Dest):
            doc.update(_dest(value))
        elif f.name == "detail" and isinstance(event, RealUp | RealDown | SoftFailure):
            doc["reason"] = value
        else:
            doc[f.name] = _value(value)
    return doc


class Subscription:
    """One subscriber's queue; iterate it with ``async for``; ``close()`` unsubscribes."""

    def __init__(self, bus: EventBus, size: int) -> None:
        self._bus = bus
        self._queue: deque[EventDoc] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self._lost = 0
        self.closed = False

    def put(self, doc: EventDoc) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._lost += 1  # the deque drops the oldest
        self._queue.append(doc)
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EventDoc:
        while not self._queue and not self._lost:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        if self._lost:
            lost, self._lost = self._lost, 0
            return {"type": "events_lost", "time": time.time(), "level": "WARNING", "count": lost,
                    "message": f"{lost} event(s) lost: this subscriber read too slowly"}
        return self._queue.popleft()

    def pending(self) -> int:
        """Events queued and not read yet."""
        return len(self._queue)

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._bus.unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()


class EventBus:
    """Publishes event dicts to every subscriber (see the module docstring)."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()

    def publish(self, doc: EventDoc) -> None:
        for subscriber in list(self._subscribers):
            subscriber.put(doc)

    def publish_event(self, event: Event) -> None:
        if self._subscribers:
            self.publish(event_doc(event))

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self.queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class BusLogHandler(logging.Handler):
    """Publishes the ``saru`` logger's records that are not the journal's own (those come typed)."""

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.INFO)
        self._bus = bus
        self._loop = loop
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "saru_journal", False) or not self._bus.subscribers:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        doc = {"type": "log", "time": record.created, "level": record.levelname, "message": message,
               "logger": record.name}
        if threading.get_ident() == self._thread:
            self._bus.publish(doc)
        else:  # logged from a worker thread: hand it to the loop (the queues are not thread-safe)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                self._loop.call_soon_threadsafe(self._bus.publish, doc)

