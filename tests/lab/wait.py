"""Waiting for a condition with a deadline (polling, never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str = "condition", interval: float = 0.01, *,
             tolerate: tuple[type[BaseException], ...] = ()) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or raise ``TimeoutError`` naming ``what``.

    An exception of a ``tolerate`` type raised by ``predicate`` counts as "not yet" (and is reported as the
    last answer on timeout); any other propagates at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: T | BaseException = predicate()
        except tolerate as exc:
            value = exc
        if value and not isinstance(value, BaseException):
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s (last: {value!r})")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float, *, interval: float = 0.01,
                         what: str = "condition") -> T:
    """``wait_for`` for coroutines: the loop keeps running (timers, sockets) while we poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(interval)
