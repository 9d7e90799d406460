"""``negotiate`` for services ``mysql``, ``pgsql`` and ``oracle``: run the health query, up if rows come back.

What a check does (ldirectord's DBI check, research §2.2)::

    connect to <real>:<port> as <login>/<passwd>, database <database>
    execute <request> without its leading "/"      (the SQL, e.g. "SELECT 1 FROM t WHERE enabled")
    fetch the rows, close

* Up when the query returns at least one row and, when ``receive`` is set, some returned value
  (``str()`` of every non-NULL column of the first ``MAX_ROWS`` rows) matches ``receive`` — a Perl
  regular expression searched anywhere in the value. ldirectord ignores ``receive`` here: the
  match is a Saru extension, and an empty ``receive`` behaves exactly like ldirectord.
* ``login`` and ``request`` are mandatory (ldirectord refuses the check without them), and so is
  ``database`` for Oracle, where it is the SID (``dbi:Oracle:sid=<database>``, as ldirectord).
* Drivers: aiomysql (MySQL, MariaDB), asyncpg (PostgreSQL, TLS when the server offers it, like
  libpq's ``sslmode=prefer``), python-oracledb in thin mode (no Oracle client needed). Each is
  imported on first use, in a worker thread so that the import does not stall the event loop.
* Unlike ldirectord (which had no timeout at all), every check runs under ``run_check``'s hard
  timeout and leaves nothing behind when that fires: the connection is closed without waiting for
  the server (aiomysql ``close``, asyncpg ``terminate``, which also cancels asyncpg's background
  cancel request). python-oracledb answers a cancellation after login by sending a break and
  *waiting* for the server's reply, which never comes from a silent server; so the Oracle session
  runs in its own task, and on timeout its socket is aborted, which ends that task at once.
* Credentials come from the configuration only: ``PGPASSWORD``, ``~/.pgpass`` and ``my.cnf`` are not
  read (an empty ``passwd`` is an empty password). An empty ``database`` means none for MySQL and
  the login name for PostgreSQL, as with ldirectord's DBD drivers.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import types
from collections.abc import Awaitable, Callable, Container, Iterator, Sequence
from typing import Any

from saru.checks.base import CheckFailed, describe_error, failure_of, register
from saru.checks.receive import compile_receive_text, receive_matches
from saru.model import CheckResult, CheckSpec

#: rows looked at for the verdict (all of them still travel: the drivers buffer whole results)
MAX_ROWS = 1000

Row = Sequence[object]  # one row of a result: the driver's column values

_DRIVERS = {"mysql": "aiomysql", "pgsql": "asyncpg", "oracle": "oracledb"}
_PACKAGES = {"aiomysql": "aiomysql", "asyncpg": "asyncpg", "oracledb": "python-oracledb"}


# --------------------------------------------------------------------------------------------------
# Pure parts: the query, the verdict, error messages
# --------------------------------------------------------------------------------------------------


def query_of(spec: CheckSpec) -> str:
    """The SQL to run: ``request`` without the leading "/" the config adds; CheckFailed if unusable."""
    query = spec.request[1:] if spec.request.startswith("/") else spec.request
    if not spec.login or not query.strip():
        raise CheckFailed(f"{spec.service} check needs a login and a request (the SQL query)")
    if spec.service == "oracle" and not spec.database:
        raise CheckFailed("oracle check needs a database (the Oracle SID)")
    return query


def text_of(value: object) -> str:
    """A column value as text for ``receive`` (bytes as UTF-8, undecodable bytes replaced)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(rows: Sequence[Row]) -> str:
    return "1 row" if len(rows) == 1 else f"{len(rows)} rows"


def evaluate(rows: Sequence[Row], receive: str, matching: Container[str] | None = None) -> CheckResult:
    """Up when there is a row and (no ``receive``, or some non-NULL value matches it; ``matching``:
    the values it was found in, under a time limit, ``receive_matches``; else it is searched here)."""
    if not rows:
        return CheckResult(ok=False, message="query returned no rows")
    if not receive:
        return CheckResult(ok=True, message=f"query returned {_count(rows)}")
    pattern = compile_receive_text(receive)
    for row in rows[:MAX_ROWS]:
        for value in row:
            text = text_of(value) if value is not None else None
            if text is not None and (text in matching if matching is not None else pattern.search(text)):
                message = f"query returned {_count(rows)}, {_clip(text)!r} matches receive"
                return CheckResult(ok=True, message=message)
    return CheckResult(ok=False, message=f"receive pattern '{receive}' matches no value of {_count(rows)}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def network_error(exc: BaseException) -> OSError | None:
    """The socket error (or timeout) behind a driver's "cannot connect" exception, if there is one."""
    for error in _chain(exc):
        if isinstance(error, TimeoutError) or (isinstance(error, OSError) and error.errno is not None):
            return error
    return None


def describe_mysql(exc: Exception) -> str:
    """``MySQL error 1045: Access denied …`` (pymysql errors carry (code, message))."""
    if len(exc.args) == 2 and isinstance(exc.args[0], int):
        return f"MySQL error {exc.args[0]}: {exc.args[1]}"
    return _protocol_error("MySQL", exc)


def _protocol_error(database: str, exc: Exception) -> str:
    """A driver's complaint about what the server sent (``Packet sequence number wrong …``, ``rejected SSL
    upgrade``) as a sentence naming the protocol, not as the driver's exception class."""
    text = " ".join(str(exc).split())[:200]
    return f"{database} protocol error: {text}" if text else describe_error(exc)


def describe_pgsql(exc: Exception) -> str:
    """``PostgreSQL error 28P01: password authentication failed for user "saru"``."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"PostgreSQL error {sqlstate}: {exc}" if sqlstate else _protocol_error("PostgreSQL", exc)


def describe_oracle(exc: Exception) -> str:
    """The first line of an oracledb error (``ORA-01017: …``, ``DPY-6005: …``): it carries its code."""
    text = str(exc).strip().splitlines()
    return text[0] if text else describe_error(exc)


def failure(exc: Exception, describe: Callable[[Exception], str], timeout: float) -> CheckFailed:
    """A driver exception as a short reason: the socket error if there is one, else the driver's.

    A driver's own timeout reads like ``run_check``'s: "timeout after 5s".
    """
    cause = network_error(exc)
    if cause is not None:
        return CheckFailed(describe_error(cause, timeout), failure=failure_of(cause))
    return CheckFailed(describe(exc))


# --------------------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------------------


#: drivers whose import has completed (``sys.modules`` has a module while it is still importing)
_LOADED: dict[str, types.ModuleType] = {}
#: the one import in flight per driver, shared by every check that needs it meanwhile
_LOADING: dict[str, asyncio.Future[types.ModuleType]] = {}


async def load_driver(module: str) -> types.ModuleType:
    """Import a client library (in a worker thread the first time); CheckFailed if not installed.

    Checks that start together share one import: none of them sees a half-initialised module.
    """
    loaded = _LOADED.get(module)
    if loaded is not None and sys.modules.get(module) is loaded:
        return loaded
    pending = _LOADING.get(module)
    if pending is None or pending.get_loop() is not asyncio.get_running_loop():
        pending = _LOADING[module] = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, module))
    try:
        loaded = await asyncio.shield(pending)
    except ImportError:
        _LOADING.pop(module, None)
        raise CheckFailed(f"{_SERVICE_OF[module]} check needs the {_PACKAGES[module]} package") from None
    _LOADING.pop(module, None)
    _LOADED[module] = loaded
    return loaded


_SERVICE_OF = {driver: service for service, driver in _DRIVERS.items()}


def _host(address: str) -> str:
    return address.strip("[]")


async def mysql_rows(spec: CheckSpec, query: str) -> list[Row]:
    """Rows of ``query`` on a MySQL/MariaDB server (aiomysql)."""
    aiomysql = await load_driver("aiomysql")
    try:
        # a cancellation during the handshake closes the socket (aiomysql's _close_on_cancel)
        conn = await aiomysql.connect(
            host=_host(spec.address), port=spec.port, user=spec.login, password=spec.passwd,
            db=spec.database or None, autocommit=True, local_infile=False, program_name="saru",
        )
    except aiomysql.Error as exc:
        raise failure(exc, describe_mysql, spec.negotiatetimeout) from None
    try:
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(query)
                rows = list(await cursor.fetchmany(MAX_ROWS))
        except aiomysql.Error as exc:
            raise failure(exc, describe_mysql, spec.negotiatetimeout) from None
        await conn.ensure_closed()  # COM_QUIT: no "aborted connection" in the server's log
    finally:
        conn.close()  # idempotent; the only clean-up on timeout (no awaiting a silent server)
    return rows


async def pgsql_rows(spec: CheckSpec, query: str) -> list[Row]:
    """Rows of ``query`` on a PostgreSQL server (asyncpg)."""
    asyncpg = await load_driver("asyncpg")
    try:
        conn = await asyncpg.connect(
            host=_host(spec.address), port=spec.port, user=spec.login,
            password=spec.passwd,  # a str, even empty: PGPASSWORD and ~/.pgpass stay out of it
            database=spec.database or spec.login,  # libpq's default for an empty dbname
            ssl="prefer", timeout=spec.negotiatetimeout, command_timeout=spec.negotiatetimeout,
            statement_cache_size=0, server_settings={"application_name": "saru"},
        )
    except TimeoutError:
        raise  # asyncpg's own connect timeout: run_check words it
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise failure(exc, describe_pgsql, spec.negotiatetimeout) from None
    try:
        try:
            rows = list(await conn.fetch(query))
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise failure(exc, describe_pgsql, spec.negotiatetimeout) from None
        await conn.close(timeout=spec.negotiatetimeout)
    finally:
        conn.terminate()  # no-op after close(); on timeout: drop the socket and pending cancels
    return rows


#: Oracle sessions abandoned on timeout, kept referenced until their task has finished
_ORACLE_TASKS: set[asyncio.Task[list[Row]]] = set()


def oracle_transports(*roots: object) -> list[asyncio.BaseTransport]:
    """The asyncio transports (sockets) held by oracledb objects reachable from ``roots``.

    oracledb offers no synchronous way to drop a connection, and its ``close()`` waits for the
    server. Its Cython objects are visible to the garbage collector's ``get_referents`` though:
    walk through oracledb's own objects (and their ``__dict__``), coroutines and frames only —
    connection → impl → protocol → transport wrapper → asyncio transport once logged in, the
    connecting coroutine's state before that.
    """
    frontier: list[object] = list(roots)
    seen: set[int] = {id(root) for root in roots}
    found: list[asyncio.BaseTransport] = []
    for _ in range(_WALK_DEPTH):
        following: list[object] = []
        for obj in frontier:
            owned = _is_oracledb(obj)
            for ref in gc.get_referents(obj):
                if id(ref) in seen:
                    continue
                seen.add(id(ref))
                if isinstance(ref, asyncio.BaseTransport):
                    found.append(ref)
                elif _walkable(ref) or (owned and isinstance(ref, dict)):
                    following.append(ref)
        if not following:
            break
        frontier = following
    return found


_WALK_DEPTH = 16


def _is_oracledb(obj: object) -> bool:
    module = getattr(type(obj), "__module__", None)  # a descriptor, not a str, for a few builtin types
    return isinstance(module, str) and module.startswith("oracledb")


def _walkable(obj: object) -> bool:
    """Objects the walk goes through: oracledb's own, coroutines (Python's and Cython's), frames."""
    return _is_oracledb(obj) or "coroutine" in type(obj).__name__ or isinstance(obj, types.FrameType)


def abort_oracle(*roots: object) -> None:
    """Drop the oracledb sockets reachable from ``roots`` at once (no goodbye to the server)."""
    for transport in oracle_transports(*roots):
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.abort()


def _consume(task: asyncio.Task[list[Row]]) -> None:
    _ORACLE_TASKS.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" noise


async def _oracle_session(oracledb: types.ModuleType, conn: Any, query: str, timeout: float) -> list[Row]:
    try:
        await conn  # connect; a cancellation here closes the socket (oracledb is still "connecting")
        cursor = conn.cursor()
        cursor.arraysize = MAX_ROWS
        await cursor.execute(query)
        rows = list(await cursor.fetchmany(MAX_ROWS)) if cursor.description else []
        cursor.close()
        await conn.close()
    except oracledb.Error as exc:
        raise failure(exc, describe_oracle, timeout) from None
    finally:
        abort_oracle(conn)  # nothing left after close(); after an error, no logoff round trip
    return rows


async def oracle_rows(spec: CheckSpec, query: str) -> list[Row]:
    """Rows of ``query`` on an Oracle server (python-oracledb thin mode, ``sid=<database>``).

    The session runs in a task of its own: on timeout this coroutine is cancelled at once, aborts
    the session's socket and cancels the task, whatever oracledb was waiting for.
    """
    oracledb = await load_driver("oracledb")
    try:
        conn = oracledb.connect_async(
            user=spec.login, password=spec.passwd, host=_host(spec.address), port=spec.port,
            sid=spec.database, tcp_connect_timeout=spec.negotiatetimeout,
        )
    except oracledb.Error as exc:
        raise failure(exc, describe_oracle, spec.negotiatetimeout) from None
    task = asyncio.ensure_future(_oracle_session(oracledb, conn, query, spec.negotiatetimeout))
    _ORACLE_TASKS.add(task)
    task.add_done_callback(_consume)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        abort_oracle(conn, task.get_coro())  # after login: ends oracledb's wait for a break reply
        task.cancel()  # while connecting, this is
        raise


_ROWS: dict[str, Callable[[CheckSpec, str], Awaitable[list[Row]]]] = {
    "mysql": mysql_rows,
    "pgsql": pgsql_rows,
    "oracle": oracle_rows,
}


@register("negotiate", "mysql", "pgsql", "oracle")
async def check_sql(spec: CheckSpec) -> CheckResult:
    """Run ``request`` as SQL on the real's database server; up when rows (matching receive) come back."""
    query = query_of(spec)
    if spec.receive:
        compile_receive_text(spec.receive)  # a bad pattern fails before any I/O
    rows = await _ROWS[spec.service](spec, query)
    matching = None
    if spec.receive:
        texts = (text_of(value) for row in rows[:MAX_ROWS] for value in row if value is not None)
        matching = await receive_matches(compile_receive_text(spec.receive), texts)
    return evaluate(rows, spec.receive, matching)
