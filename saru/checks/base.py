"""The health-check contract, the registry of checks and ``run_check``.

A check is a coroutine ``check(spec) -> CheckResult`` registered under a (checktype, service)
pair; ``"*"`` as the service matches any service. Checks may raise: ``run_check`` is the one place
that applies the hard timeout, measures the latency and turns every exception into a down result
with a short readable reason ("connection refused", "timeout after 5s", "HTTP 503" …), so a
check can never hang or crash the monitor. It also tells a local fault (the director cannot check:
no file descriptor, no route, no resolver …) from the real's failure: ``local_fault``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import importlib
import math
import os
import pkgutil
import socket
import ssl
import time
from collections.abc import Callable, Coroutine, Generator
from typing import cast

from saru.model import CheckResult, CheckSpec
from saru.net.route import has_route

Check = Callable[[CheckSpec], Coroutine[object, object, CheckResult]]

#: (checktype, service) → check; service "*" is the wildcard.
_REGISTRY: dict[tuple[str, str], Check] = {}

#: modules of this package that register no check (every other module is imported, lazily, and
#: registers its checks with ``@register`` — adding a protocol is adding a module).
_NOT_CHECK_MODULES = frozenset({"base", "spec", "result_class", "tlsclient"})
_loaded = False


class CheckFailed(Exception):
    """Raised by a check with a short, human-readable reason (becomes the result's message).

    ``failure`` says what kind of failure it is (``CheckResult.failure``): a wrong answer
    ("response") unless the check knows better ("timeout", "connect", "socket", "tls", "status")."""

    def __init__(self, message: str, failure: str = "response") -> None:
        super().__init__(message)
        self.failure = failure


def register(checktype: str, *services: str) -> Callable[[Check], Check]:
    """Decorator: register a check for a checktype and one or more services (default ``"*"``)."""

    def decorate(check: Check) -> Check:
        for service in services or ("*",):
            _REGISTRY[(checktype, service)] = check
        _plan.cache_clear()
        return check

    return decorate


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        import saru.checks as package

        for info in pkgutil.iter_modules(package.__path__):
            if info.name not in _NOT_CHECK_MODULES and not info.name.startswith("_"):
                importlib.import_module(f"saru.checks.{info.name}")
        _loaded = True


def registered_checks() -> set[tuple[str, str]]:
    """Every (checktype, service) pair a check is registered for ("*" = any service)."""
    _load_builtins()
    return set(_REGISTRY)


def get_check(spec: CheckSpec) -> Check:
    """The check that implements ``spec`` (a "not implemented yet" check when none is registered)."""
    _load_builtins()
    checktype = "negotiate" if spec.checktype == "combined" else spec.checktype
    check = _REGISTRY.get((checktype, spec.service)) or _REGISTRY.get((checktype, "*"))
    return check or _not_implemented


async def _not_implemented(spec: CheckSpec) -> CheckResult:
    if spec.checktype in ("negotiate", "combined"):
        what = f"negotiate check for service {spec.service!r}"
    else:
        what = f"checktype {spec.checktype!r}"
    return CheckResult(ok=False, message=f"{what} is not implemented yet")


def timeout_for(spec: CheckSpec) -> float:
    """The hard timeout of one run of ``spec`` (ldirectord's choice of checktimeout/negotiatetimeout)."""
    if spec.checktype in ("negotiate", "combined"):
        return spec.negotiatetimeout
    if spec.checktype == "ping" or (spec.checktype == "connect" and spec.protocol == "udp"):
        return spec.checktimeout * max(1, spec.checkcount)  # ping: checkcount attempts
    return spec.checktimeout


def format_seconds(seconds: float) -> str:
    """``5`` for 5.0, ``0.25`` for 0.25 (for messages)."""
    return f"{seconds:g}"


_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network is unreachable",
    errno.ETIMEDOUT: "connection timed out",
    errno.EPIPE: "connection closed by peer",
    errno.EADDRNOTAVAIL: "address not available",
}


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """A short readable reason for an exception raised by a check."""
    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, TimeoutError) and timeout is not None:
        return f"timeout after {format_seconds(timeout)}s"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed by peer"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_TEXT.get(exc.errno) or os.strerror(exc.errno).lower()
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: errno values that mean "the connection could not be made" (HAProxy's L4CON)
_CONNECT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH,
                             errno.EPIPE, errno.ECONNABORTED, errno.EHOSTDOWN})


def failure_of(exc: BaseException) -> str:
    """The ``CheckResult.failure`` kind of an exception raised by a check."""
    if isinstance(exc, CheckFailed):
        return exc.failure
    if isinstance(exc, TimeoutError) or (isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT):
        return "timeout"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "response"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, OSError) and exc.errno in _CONNECT_ERRNOS:
        return "connect"
    return "socket"


#: errno values that say the director itself could not run the check, whatever the real does
#: (``local_fault``): the check's socket, buffer, port or process could not be had here
_LOCAL_ERRNOS: dict[int, str] = {
    errno.EMFILE: "emfile",  # this process is out of file descriptors
    errno.ENFILE: "enfile",  # the system is out of file descriptors
    errno.ENOBUFS: "enobufs",  # no socket buffer memory
    errno.ENOMEM: "enomem",
    errno.EADDRNOTAVAIL: "eaddrnotavail",  # no local port left, or the source address is gone
    errno.EPERM: "eperm",  # a local firewall (netfilter OUTPUT) refused the packet
}
#: errno values that are local only when this host has no route to the real (``has_route``)
_ROUTE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})
#: resolver failures that say the resolver could not answer (not "no such name")
_RESOLVER_DOWN = frozenset({socket.EAI_AGAIN, socket.EAI_FAIL, socket.EAI_SYSTEM})
#: every reason ``local_fault`` can give (the metric's ``reason`` label values)
LOCAL_FAULT_REASONS: tuple[str, ...] = (*_LOCAL_ERRNOS.values(), "no_route", "resolver")
#: the chain of causes followed looking for the errno (a check may wrap an OSError)
_CHAIN_LIMIT = 8


def local_fault(exc: BaseException, spec: CheckSpec) -> str:
    """Why a check's failure is the director's own fault ("" when it is the real's). The rule:

    * ``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``, ``EADDRNOTAVAIL``, ``EPERM`` (raised by the
      socket, connect or spawn of the check, or anywhere down its cause chain) are local: the check
      could not even be tried;
    * ``ENETUNREACH`` and ``EHOSTUNREACH`` are local ("no_route") only when this host's routing
      table has no usable route to the real (``ip route get`` answers unreachable, blackhole or
      prohibit, or the route's link is down); with a usable route they came from the network (an
      ICMP unreachable from a router, a neighbour that does not answer ARP) and are the real's;
    * a TLS error (``ssl.SSLError``: its errno is OpenSSL's error code, not the system's) is the
      real's;
    * a resolver that cannot answer (``EAI_AGAIN``, ``EAI_FAIL``, ``EAI_SYSTEM``) for a check
      addressed by name is local ("resolver"); "no such name" is the real's;
    * everything else — refused, reset, timeouts, wrong answers — is the real's.
    """
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < _CHAIN_LIMIT:
        if isinstance(cause, socket.gaierror):
            return "resolver" if cause.errno in _RESOLVER_DOWN else ""
        # an ssl.SSLError's errno is OpenSSL's error code (SSL_ERROR_SSL = 1 is not EPERM): the real's
        if isinstance(cause, OSError) and cause.errno is not None and not isinstance(cause, ssl.SSLError):
            reason = _LOCAL_ERRNOS.get(cause.errno)
            if reason:
                return reason
            if cause.errno in _ROUTE_ERRNOS:
                return "no_route" if has_route(spec.address) is False else ""
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return ""


def check_layer(spec: CheckSpec) -> str:
    """``CheckResult.layer`` of a run of ``spec``: "L4" (connect, ping), "PROC" (external), else "L7"."""
    if spec.checktype in ("connect", "ping"):
        return "L4"
    if spec.checktype in ("external", "external-perl"):
        return "PROC"
    if spec.checktype in ("on", "off") or spec.service == "none":
        return ""
    return "L7"


class _Resumed:
    """Awaitable that carries on a check coroutine whose first step already ran and is waiting on
    ``waiting`` (what it yielded): every later step runs inside the awaiting task, so a cancellation
    (the hard timeout) is thrown into the check and its ``finally`` blocks close what it opened."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Coroutine[object, object, CheckResult], waiting: object) -> None:
        self.coro = coro
        self.waiting = waiting

    def __await__(self) -> Generator[object, object, CheckResult]:
        coro, value = self.coro, self.waiting
        self.waiting = None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: thrown into the check
                try:
                    value = coro.throw(exc)
                except StopIteration as finished:
                    return cast(CheckResult, finished.value)
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as finished:
                    return cast(CheckResult, finished.value)


@functools.lru_cache(maxsize=65536)
def _plan(spec: CheckSpec) -> tuple[Check, float, str]:
    """(check, hard timeout, layer) of ``spec`` — fixed per spec, so computed once."""
    return get_check(spec), timeout_for(spec), check_layer(spec)


#: hard timeouts are grouped in slots of this many seconds (one loop timer per slot)
TIMEOUT_GRAIN = 0.01


class _Slot:
    """The checks (their tasks) whose hard timeout falls in one ``TIMEOUT_GRAIN`` of loop time."""

    __slots__ = ("fired", "tasks")

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()
        self.fired = False


#: per event loop: slot number → its checks (a loop's entry goes with its last slot)
_SLOTS: dict[asyncio.AbstractEventLoop, dict[int, _Slot]] = {}


def _expire(loop: asyncio.AbstractEventLoop, number: int) -> None:
    slots = _SLOTS[loop]
    slot = slots.pop(number)
    if not slots:
        del _SLOTS[loop]
    slot.fired = True
    for task in slot.tasks:
        task.cancel()


def _slot_for(loop: asyncio.AbstractEventLoop, deadline: float) -> _Slot:
    """The slot of a check due to time out at loop time ``deadline`` (rounded up to the grain)."""
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = {}
    number = math.ceil(deadline / TIMEOUT_GRAIN)
    slot = slots.get(number)
    if slot is None:
        slot = slots[number] = _Slot()
        loop.call_at(number * TIMEOUT_GRAIN, _expire, loop, number)
    return slot


async def run_check(spec: CheckSpec) -> CheckResult:
    """Run the check for ``spec`` under its hard timeout; never raises (except on cancellation).

    The check's first step (up to its first wait for I/O) runs at once; only if it then waits is the
    rest run under the timeout, counted from the start. The first step cannot overrun (checks do
    non-blocking I/O; a timer could not interrupt it anyway), and a check that completes without
    waiting — a connect to a local or refused port — costs no timer at all. Timeouts are kept in
    10 ms slots, one loop timer per slot (the checks started together share it), so a check times
    out at most 10 ms after its deadline.
    """
    check, timeout, layer = _plan(spec)
    start = time.monotonic()
    coro = check(spec)
    try:
        try:
            waiting = coro.send(None)
        except StopIteration as finished:
            result = cast(CheckResult, finished.value)
        else:
            result = await _waited(coro, waiting, timeout - (time.monotonic() - start))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        message, fault = describe_error(exc, timeout), local_fault(exc, spec)
        if fault:
            message = f"{message} (local fault)"
        return CheckResult(ok=False, message=message, latency=time.monotonic() - start,
                           layer=layer, failure=failure_of(exc), local_fault=fault)
    failure = "" if result.ok else result.failure or "response"
    return CheckResult(ok=result.ok, message=result.message, latency=time.monotonic() - start,
                       layer=layer, failure=failure)


async def _waited(coro: Coroutine[object, object, CheckResult], waiting: object, remaining: float) -> CheckResult:
    """The rest of a check that waits, cancelled ``remaining`` seconds from now: TimeoutError then
    (a cancellation from elsewhere stays a cancellation, as with ``asyncio.timeout``)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("run_check must run inside a task")
    loop = asyncio.get_running_loop()
    slot = _slot_for(loop, loop.time() + remaining)
    cancelling = task.cancelling()
    slot.tasks.add(task)
    try:
        return await _Resumed(coro, waiting)
    except asyncio.CancelledError as exc:
        if slot.fired and task.uncancel() <= cancelling:
            raise TimeoutError from exc
        raise
    finally:
        slot.tasks.discard(task)
