"""The HTTP API on aiohttp: JSON status, Server-Sent Events, the operator's writes, metrics, dashboard.

``APIServer(service, settings)`` serves ``[api]`` (``saru.model.APISettings``) in the daemon's loop;
``start()`` raises ``APIStartError`` with a sentence (port in use, certificate unreadable…), and
``close()`` releases what it took (the listening socket, a unix socket's file, the SSE streams).
Every route calls the service layer (``saru.daemon.service``), never the daemon's internals;
``add_routes(app, service)`` is the one place routes are registered:

* ``GET /api/v1/status`` — ``saru status --json``'s document (with each real's check class, reason,
  latency, time, transitions and operator override), its text written by ``saru.api.status_json``
  (the parts that did not change since the last request are not encoded again);
* ``GET /api/v1/events`` — Server-Sent Events, one JSON object per event the daemon logs, a
  heartbeat comment every ``HEARTBEAT`` seconds;
* ``POST /api/v1/servers/drain|enable|disable|weight`` (``{"proxy", "server"[, "weight"]}``),
  ``POST /api/v1/reload``, ``POST /api/v1/ha/resign`` (``{"hold": S}`` optional), ``POST
  /api/v1/ha/takeover`` — each needs ``Authorization: Bearer <token>`` (401 without, 403 wrong,
  compared in constant time; 403 too when no ``token_file`` is configured: writes are off), and
  each accepted write is logged with what it did;
* ``GET /metrics`` (``saru.api.metrics.metrics_handler``, when that module is installed);
* ``GET /`` (``/index.html``, ``/app.js``, ``/style.css``): the dashboard (``saru.api.dashboard``).

Every error is JSON, ``{"error": "…"}``, naming the problem (unknown real 404, bad JSON 400, body
over ``MAX_BODY`` 413, wrong method 405, unknown path 404), and a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import importlib
import json
import logging
import math
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from saru.api.dashboard import dashboard_routes
from saru.api.status_json import StatusEncoder, dumps
from saru.files import bind_unix
from saru.model import APISettings, Endpoint

if TYPE_CHECKING:
    from saru.daemon.bus import Subscription
    from saru.daemon.service import DaemonService

LOGGER = logging.getLogger("saru")
#: the largest request body accepted (the writes' bodies are a few dozen bytes)
MAX_BODY = 16 * 1024
#: seconds between two heartbeat comments on an idle event stream (``SARU_API_HEARTBEAT`` overrides)
HEARTBEAT = 15.0
#: seconds the server waits for open requests on the way out
SHUTDOWN_TIMEOUT = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVICE: web.AppKey[DaemonService] = web.AppKey("service")
TOKEN: web.AppKey[str | None] = web.AppKey("token")
STREAMS: web.AppKey[set[Subscription]] = web.AppKey("streams")
OPENED: web.AppKey[Callable[[], bool]] = web.AppKey("opened")


class APIStartError(Exception):
    """The API could not start (``str()`` says why and what to do)."""


class BadRequest(Exception):
    """A request refused before anything is done: ``status`` and the message of its JSON error."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


_dumps = dumps


def answer(doc: object, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=_dumps)


# --------------------------------------------------------------------------------------------------
# middleware: JSON errors, authentication of writes
# --------------------------------------------------------------------------------------------------


STARTING = "the daemon is starting: its data plane is not open yet; try again in a moment"


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (no such path, wrong method, body too large) as JSON errors; 503 while
    the daemon's data plane is not open yet."""
    try:
        if request.path.startswith("/api/") and not request.app[OPENED]():
            return error(503, STARTING, {"Retry-After": "1"})
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error(405, f"method {request.method} is not allowed on {request.path} (allowed: {allowed})",
                     {"Allow": allowed})
    except web.HTTPNotFound:
        return error(404, f"no such path: {request.path} (the API is under /api/v1/, see docs/api.md)")
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"request body too large (at most {MAX_BODY} bytes)")
    except BadRequest as exc:
        return error(exc.status, str(exc), {"WWW-Authenticate": 'Bearer realm="saru"'} if exc.status == 401 else None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:  # a data plane failure, or a bug: answered as JSON, logged with its traceback
        LOGGER.exception("API: %s %s failed", request.method, request.path)
        return error(500, f"the daemon could not answer: {type(exc).__name__}: {exc}")


def _peer(request: web.Request) -> str:
    peer = request.remote
    return peer if peer else "a unix socket client"


def authorize(request: web.Request) -> None:
    """Writes need ``Authorization: Bearer <token>``: BadRequest 401 without, 403 wrong or no token set."""
    token = request.app[TOKEN]
    if token is None:
        raise BadRequest("writes are off: this daemon has no write token. Put one in a file (e.g. `openssl "
                         "rand -hex 32 > /etc/saru/api.token; chmod 600 /etc/saru/api.token`), set "
                         "token_file in saru.toml's [api] section and restart the daemon", 403)
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not header:
        raise BadRequest("this write needs the header Authorization: Bearer <token>", 401)
    if scheme.lower() != "bearer" or not given.strip():
        raise BadRequest("the Authorization header must be: Bearer <token>", 401)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        LOGGER.warning("API: %s %s from %s refused: wrong token", request.method, request.path, _peer(request))
        raise BadRequest("wrong token", 403)


async def read_json(request: web.Request, fields: dict[str, type | tuple[type, ...]],
                    required: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object body (empty body: ``{}``), with only ``fields`` of their types and
    every ``required`` one; BadRequest naming the problem otherwise."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise BadRequest(f"request body too large ({length} bytes; at most {MAX_BODY})", 413)
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise BadRequest(f"request body too large (at most {MAX_BODY} bytes)", 413)
    if not body.strip():
        doc: Any = {}
    else:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object, like {\"proxy\": \"tcp/10.0.0.1:80\", "
                         "\"server\": \"10.0.0.2:80\"}")
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; this request takes "
                         f"{', '.join(map(repr, fields)) or 'no body'}")
    missing = [name for name in required if name not in doc]
    if missing:
        raise BadRequest(f"missing field(s) {', '.join(map(repr, missing))}")
    for name, kind in fields.items():
        if name in doc and (isinstance(doc[name], bool) or not isinstance(doc[name], kind)):
            wanted = "a string" if kind is str else "a whole number" if kind is int else "a number"
            raise BadRequest(f"{name!r} must be {wanted}, not {json.dumps(doc[name])}")
    return doc


def service_error(exc: Exception) -> web.Response:
    """A ``ServiceError`` as a JSON error with its HTTP status."""
    status = getattr(exc, "status", 500)
    return error(status if isinstance(status, int) and 400 <= status < 600 else 500, str(exc))


# --------------------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------------------


def add_routes(app: web.Application, service: DaemonService) -> None:
    """Every route of the API (the one place they are registered; see the module docstring)."""
    from saru.daemon.service import ServiceError

    encoder = StatusEncoder()  # keeps the text of the reals that did not change (saru.api.status_json)

    async def status(_request: web.Request) -> web.Response:
        doc = await service.status()  # a data plane failure: the middleware's JSON 500
        return web.json_response(text=encoder.encode(doc))

    def server_write(action: str) -> Handler:
        fields: dict[str, type | tuple[type, ...]] = {"proxy": str, "server": str}
        if action == "weight":
            fields["weight"] = int

        async def write(request: web.Request) -> web.Response:
            authorize(request)
            doc = await read_json(request, fields, tuple(fields))
            origin = f"the HTTP API ({_peer(request)})"
            try:
                if action == "drain":
                    done = await service.drain(doc["proxy"], doc["server"], origin=origin)
                elif action == "disable":
                    done = await service.disable(doc["proxy"], doc["server"], origin=origin)
                elif action == "enable":
                    done = await service.enable(doc["proxy"], doc["server"], origin=origin)
                else:
                    done = await service.set_weight(doc["proxy"], doc["server"], doc["weight"], origin=origin)
            except ServiceError as exc:
                return service_error(exc)
            return answer(done)

        return write

    async def reload(request: web.Request) -> web.Response:
        authorize(request)
        await read_json(request, {}, ())
        try:
            done = await service.reload()
        except ServiceError as exc:
            return service_error(exc)
        outcome = "reloaded" if done["reloaded"] else f"refused ({len(done['errors'])} error(s); running config kept)"
        service.note(f"API: POST /api/v1/reload from {_peer(request)}: {outcome}")
        return answer(done, 200 if done["reloaded"] else 422)

    async def ha_resign(request: web.Request) -> web.Response:
        authorize(request)
        doc = await read_json(request, {"hold": (int, float)}, ())
        hold = float(doc.get("hold", 30.0))
        if not math.isfinite(hold):
            raise BadRequest("'hold' must be a number of seconds")
        try:
            done = await service.ha_resign(hold)
        except ServiceError as exc:
            return service_error(exc)
        service.note(f"API: POST /api/v1/ha/resign from {_peer(request)}: resigned mastership for {hold:g}s")
        return answer(done)

    async def ha_takeover(request: web.Request) -> web.Response:
        authorize(request)
        await read_json(request, {}, ())
        try:
            done = await service.ha_takeover()
        except ServiceError as exc:
            return service_error(exc)
        service.note(f"API: POST /api/v1/ha/takeover from {_peer(request)}: taking over as master")
        return answer(done)

    async def events(request: web.Request) -> web.StreamResponse:
        return await event_stream(request, service)

    app.add_routes([
        web.get("/api/v1/status", status),
        web.get("/api/v1/events", events),
        *(web.post(f"/api/v1/servers/{action}", server_write(action))
          for action in ("drain", "enable", "disable", "weight")),
        web.post("/api/v1/reload", reload),
        web.post("/api/v1/ha/resign", ha_resign),
        web.post("/api/v1/ha/takeover", ha_takeover),
    ])
    metrics = _optional("saru.api.metrics", "metrics_handler")
    if metrics is not None:
        app.router.add_get("/metrics", metrics(service))
    app.add_routes(dashboard_routes())


def _optional(module: str, name: str) -> Any:
    """``module.name`` when the module is installed (the metrics and the dashboard are separate
    modules), else None."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return getattr(found, name, None)


def heartbeat_interval() -> float:
    text = os.environ.get("SARU_API_HEARTBEAT")
    try:
        value = float(text) if text else HEARTBEAT
    except ValueError:
        return HEARTBEAT
    return value if 0.05 <= value <= 3600 else HEARTBEAT


async def event_stream(request: web.Request, service: DaemonService) -> web.StreamResponse:
    """``text/event-stream``: ``data: {json}`` per event (``id`` counts them), a ``: heartbeat``
    comment when idle; it ends when the client goes or the daemon stops."""
    subscription = service.subscribe()
    streams = request.app[STREAMS]
    streams.add(subscription)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    interval = heartbeat_interval()
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n: connected to saru's event stream\n\n")
        count = 0
        while True:
            try:
                doc = await asyncio.wait_for(anext(subscription), interval)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            except StopAsyncIteration:
                break
            count += 1
            await response.write(f"id: {count}\ndata: {_dumps(doc)}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        streams.discard(subscription)
        subscription.close()
    return response


# --------------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------------


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log: a request that is not valid HTTP (a bad request line or header, a line too
    long, a Content-Length that is not a number …) is one line saying who sent what, not a traceback
    (aiohttp logs those with ``exception``: anyone who can connect could fill the log with them). A
    failure of Saru's own code still gets its traceback."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            reason = " ".join(str(exc_info.message).split())[:200]
            peer = args[0] if args else "?"
            self.logger.warning("API: refused a malformed HTTP request from %s (%d): %s", peer, exc_info.code,
                                reason)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]


def make_app(service: DaemonService, token: str | None,
             opened: Callable[[], bool] = lambda: True) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)
    app[SERVICE] = service
    app[TOKEN] = token
    app[STREAMS] = set()
    app[OPENED] = opened
    add_routes(app, service)
    return app


def read_token(settings: APISettings) -> str | None:
    """The write token (None without ``token_file``); APIStartError when it cannot be read."""
    if settings.token_file is None:
        return None
    try:
        token = Path(settings.token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise APIStartError(f"[api] token_file {settings.token_file}: cannot read it: "
                            f"{getattr(exc, 'strerror', None) or exc}") from exc
    if not token:
        raise APIStartError(f"[api] token_file {settings.token_file} is empty")
    return token


def tls_context(settings: APISettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise APIStartError(f"[api] cannot load tls_cert {settings.tls_cert} / tls_key {settings.tls_key}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from exc
    return context


def _unix_socket_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class APIServer:
    """The HTTP API of one daemon (see the module docstring)."""

    def __init__(self, service: DaemonService, settings: APISettings, endpoint: Endpoint,
                 opened: Callable[[], bool] = lambda: True) -> None:
        self.service = service
        self.settings = settings
        self.endpoint = endpoint
        self._opened = opened
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self._unix_created = False
        self.tls = False

    @property
    def url(self) -> str:
        """Where to point a browser or curl (``http(s)://HOST:PORT/`` or ``unix:/PATH``)."""
        if self.endpoint.unix:
            return f"unix:{self.endpoint.path}"
        host = self.endpoint.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.endpoint.port}/"

    async def start(self) -> None:
        token = read_token(self.settings)
        context = tls_context(self.settings)
        self.tls = context is not None
        app = self._app = make_app(self.service, token, self._opened)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT, handle_signals=False,
                               logger=ProtocolLog(LOGGER))
        await runner.setup()
        self._runner = runner
        endpoint = self.endpoint
        try:
            if endpoint.unix:
                await self._start_unix(runner, context)
            else:
                site = web.TCPSite(runner, endpoint.host, endpoint.port, ssl_context=context, reuse_address=True)
                await site.start()
        except OSError as exc:
            await self.close()
            if exc.errno == errno.EADDRINUSE:
                raise APIStartError(f"[api] cannot listen on {endpoint}: the address is already in use (another "
                                    "saru or another program has it; change [api] listen)") from exc
            raise APIStartError(f"[api] cannot listen on {endpoint}: {exc.strerror or exc}") from exc
        if token is None:
            LOGGER.info("API: no [api] token_file: the API is read-only (writes are answered 403)")

    async def _start_unix(self, runner: web.AppRunner, context: ssl.SSLContext | None) -> None:
        path = self.endpoint.path
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None:
            if not stat.S_ISSOCK(mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
            if _unix_socket_in_use(path):
                raise OSError(errno.EADDRINUSE, "in use")
            os.unlink(path)  # a stale socket of a daemon that died
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sock = bind_unix(path, 0o660)  # 0660 from the first moment the path exists (saru.files)
        self._unix_created = True
        site = web.SockSite(runner, sock, ssl_context=context)
        try:
            await site.start()
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        """Stop serving: the event streams end, open requests get ``SHUTDOWN_TIMEOUT`` seconds."""
        if self._app is not None:
            streams: set[Subscription] = self._app[STREAMS]
            for subscription in list(streams):
                subscription.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if self._unix_created:
            self._unix_created = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.path)
