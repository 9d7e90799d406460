"""The control socket's commands: each request decoded, handed to the service layer, answered.

``control_handlers(service, opened)`` is what ``saru.control.server.ControlServer`` serves. Decoding
(service keys, ops, numbers) is done here, with the codec (``saru.control.codec``); what a command
does is the service's. A ``ServiceError`` becomes ``{"ok": false, "error": …}``; any other exception
is answered by the server (with its type's name). Until the data plane is open (``opened()``), every
command is answered with an error saying the daemon is starting.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any

from saru.control.codec import key_from_dict, op_from_dict
from saru.control.server import Handler
from saru.daemon.service import DaemonService, ServiceError

Request = dict[str, Any]
Answer = Mapping[str, Any]
STARTING = "the daemon is starting: its data plane is not open yet"
#: who an operator's action came from, in the log
ORIGIN = "the control socket (saru CLI)"


def control_handlers(service: DaemonService, opened: Callable[[], bool] = lambda: True) -> dict[str, Handler]:
    """The command table of the control socket."""

    async def zero(request: Request) -> Answer:
        try:
            key = key_from_dict(request["service"]) if request.get("service") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ServiceError(f"malformed service: {exc}") from exc
        return await service.zero(key)

    async def apply(request: Request) -> Answer:
        items = request.get("ops", [])
        if not isinstance(items, list):
            raise ServiceError(f"malformed ops: expected a list of ops, got {type(items).__name__}")
        try:
            ops = [op_from_dict(item, f"ops[{i}]") for i, item in enumerate(items)]
        except (KeyError, TypeError, ValueError) as exc:
            raise ServiceError(f"malformed ops: {exc}") from exc
        return await service.apply(ops)

    def names(request: Request) -> tuple[str, str]:
        proxy, server = request.get("proxy"), request.get("server")
        if not isinstance(proxy, str) or not isinstance(server, str):
            raise ServiceError("give the real as \"proxy\" (tcp/ADDR:PORT, udp/ADDR:PORT, fwmark/N) and "
                               "\"server\" (ADDR:PORT)")
        return proxy, server

    async def drain(request: Request) -> Answer:
        return await service.drain(*names(request), origin=ORIGIN)

    async def disable(request: Request) -> Answer:
        return await service.disable(*names(request), origin=ORIGIN)

    async def enable(request: Request) -> Answer:
        return await service.enable(*names(request), origin=ORIGIN)

    async def weight(request: Request) -> Answer:
        proxy, server = names(request)
        value = request.get("weight")
        if type(value) is not int:
            raise ServiceError(f"weight must be a whole number, not {value!r}")
        return await service.set_weight(proxy, server, value, origin=ORIGIN)

    async def ha_resign(request: Request) -> Answer:
        hold = request.get("hold", 30.0)
        number = isinstance(hold, int | float) and not isinstance(hold, bool)
        return await service.ha_resign(float(hold) if number else math.nan)  # NaN: refused as not seconds

    def seconds(request: Request, key: str, default: float) -> float:
        value = request.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
            raise ServiceError(f"{key} must be a number of seconds (0-86400), not {value!r}")
        return float(value)

    async def drain_director(request: Request) -> Answer:
        return await service.drain_director(seconds(request, "within", 300.0), seconds(request, "quiet", 2.0))

    commands: dict[str, Callable[[Request], Awaitable[Answer]]] = {
        "status": lambda _r: service.status(),
        "reload": lambda _r: service.reload(),
        "table": lambda _r: service.table(),
        "stop": lambda _r: service.stop(),
        "listeners": lambda _r: service.listeners(),
        "stats": lambda _r: service.stats(),
        "apply": apply,
        "zero": zero,
        "connections": lambda _r: service.connections(),
        "runtime": lambda _r: service.runtime(),
        "ha": lambda _r: service.ha(),
        "ha-resign": ha_resign,
        "ha-takeover": lambda _r: service.ha_takeover(),
        "drain": drain,
        "drain-director": drain_director,
        "disable": disable,
        "enable": enable,
        "weight": weight,
    }
    return {name: _answering(command, opened) for name, command in commands.items()}


def _answering(command: Callable[[Request], Awaitable[Answer]], opened: Callable[[], bool]) -> Handler:
    @wraps(command)
    async def handler(request: Request) -> dict[str, Any]:
        if not opened():
            return {"ok": False, "error": STARTING}
        try:
            return dict(await command(request))
        except ServiceError as exc:
            return {"ok": False, "error": str(exc)}

    return handler
