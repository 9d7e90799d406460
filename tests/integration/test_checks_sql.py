"""mysql / pgsql / oracle negotiate checks against a real MariaDB and a real PostgreSQL 15.

There is no free Oracle server to run: the oracle check is tested for what needs no server (a
refused connection, a server that accepts and never answers, configuration errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from saru.checks.base import CheckFailed, run_check
from saru.checks.spec import check_spec_for
from saru.checks.sql import _oracle_session, _walkable, abort_oracle, load_driver, oracle_transports
from saru.config.ldirectord import parse_text
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port
from tests.servers.databases import (
    DB_NAME,
    DB_PASSWORD,
    DB_USER,
    QUERY_NO_ROW,
    QUERY_ONE_ROW,
    Database,
    start_mariadb,
    start_postgresql,
)

TIMEOUT = 1.0
DRIVERS = {"mysql": "aiomysql", "pgsql": "asyncpg", "oracle": "oracledb"}


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    server = start_mariadb(tmp_path_factory.mktemp("mariadb"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    server = start_postgresql(tmp_path_factory.mktemp("postgresql"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["mysql", "pgsql"])
def db(request: pytest.FixtureRequest) -> tuple[str, Database]:
    """Each server test runs against MariaDB (service mysql) and PostgreSQL (service pgsql)."""
    name = "mariadb" if request.param == "mysql" else "postgresql"
    return request.param, request.getfixturevalue(name)


def sql(service: str, port: int, query: str = QUERY_ONE_ROW, timeout: float = 2.0, **kw: str) -> CheckSpec:
    fields = {"login": DB_USER, "passwd": DB_PASSWORD, "database": DB_NAME, "request": "/" + query, **kw}
    return CheckSpec("negotiate", service, "tcp", "127.0.0.1", port, negotiatetimeout=timeout, **fields)


ERRORS = {
    "wrong password": {"mysql": "MySQL error 1045: Access denied for user 'saru'",
                       "pgsql": 'PostgreSQL error 28P01: password authentication failed for user "saru"'},
    "unknown database": {"mysql": "MySQL error 1049: Unknown database 'nosuchdb'",
                         "pgsql": 'PostgreSQL error 3D000: database "nosuchdb" does not exist'},
    "bad sql": {"mysql": "MySQL error 1146: Table 'saruhealth.nosuchtable' doesn't exist",
                "pgsql": 'PostgreSQL error 42P01: relation "nosuchtable" does not exist'},
}


# ---- up -----------------------------------------------------------------------------------------------

async def test_up_when_the_query_returns_a_row(db):
    service, server = db
    result = await run_check(sql(service, server.port))
    assert (result.ok, result.message) == (True, "query returned 1 row")
    assert 0 < result.latency < 1


async def test_up_with_several_rows_and_a_request_without_leading_slash(db):
    service, server = db
    spec = sql(service, server.port, request="SELECT name, status FROM health ORDER BY name")
    result = await run_check(spec)
    assert (result.ok, result.message) == (True, "query returned 2 rows")


async def test_receive_must_match_a_returned_value(db):
    """Saru extension: ldirectord ignores receive for SQL checks."""
    service, server = db
    result = await run_check(sql(service, server.port, receive="^enab"))
    assert (result.ok, result.message) == (True, "query returned 1 row, 'enabled' matches receive")
    all_rows = "SELECT name, status FROM health"
    assert (await run_check(sql(service, server.port, all_rows, receive=r"^web\d$"))).ok
    result = await run_check(sql(service, server.port, receive="^disabled$"))
    assert (result.ok, result.message) == (False, "receive pattern '^disabled$' matches no value of 1 row")


async def test_non_text_values_are_matched_as_text(db):
    service, server = db
    result = await run_check(sql(service, server.port, "SELECT 40 + 2, NULL", receive="^42$"))
    assert result.ok, result


async def test_mysql_without_a_database(mariadb):
    spec = sql("mysql", mariadb.port, f"SELECT status FROM {DB_NAME}.health", database="")
    assert (await run_check(spec)).ok


async def test_an_ldirectord_cf_block_reaches_the_check(db):
    """service/login/passwd/database/request as written in ldirectord.cf, through check_spec_for."""
    service, server = db
    config = parse_text(
        "virtual=127.0.0.1:7000\n"
        f"\treal=127.0.0.1:{server.port} masq\n"
        f"\tservice={service}\n\tchecktype=negotiate\n\tnegotiatetimeout=3\n"
        f'\tlogin="{DB_USER}"\n\tpasswd="{DB_PASSWORD}"\n\tdatabase="{DB_NAME}"\n'
        f'\trequest="{QUERY_ONE_ROW}"\n'
    )
    virtual = config.virtuals[0]
    spec = check_spec_for(virtual, virtual.reals[0])
    assert spec.request == "/" + QUERY_ONE_ROW
    result = await run_check(spec)
    assert (result.ok, result.message) == (True, "query returned 1 row")


# ---- down ---------------------------------------------------------------------------------------------

async def test_down_when_the_query_returns_no_row(db):
    service, server = db
    result = await run_check(sql(service, server.port, QUERY_NO_ROW))
    assert (result.ok, result.message) == (False, "query returned no rows")


@pytest.mark.parametrize("case", ["wrong password", "unknown database", "bad sql"])
async def test_down_on_server_errors(db, case):
    service, server = db
    spec = {
        "wrong password": sql(service, server.port, passwd="not-the-password"),
        "unknown database": sql(service, server.port, database="nosuchdb"),
        "bad sql": sql(service, server.port, "SELECT * FROM nosuchtable"),
    }[case]
    result = await run_check(spec)
    assert not result.ok
    assert result.message.startswith(ERRORS[case][service]), result.message
    assert DB_PASSWORD not in result.message and "not-the-password" not in result.message


@pytest.mark.parametrize("service", ["mysql", "pgsql", "oracle"])
@pytest.mark.parametrize("missing", ["login", "request"])
async def test_login_and_request_are_mandatory(service, missing):
    spec = sql(service, free_port(), **{missing: "/" if missing == "request" else ""})
    result = await run_check(spec)
    assert (result.ok, result.message) == (
        False, f"{service} check needs a login and a request (the SQL query)")


@pytest.fixture
def stopped(db: tuple[str, Database]) -> Iterator[tuple[str, Database]]:
    """The server of ``db``, stopped for the test and started again afterwards."""
    service, server = db
    server.stop()
    try:
        yield service, server
    finally:
        server.start()


async def test_down_when_the_server_is_stopped_and_up_again_after_restart(stopped):
    service, server = stopped
    result = await run_check(sql(service, server.port))
    assert (result.ok, result.message) == (False, "connection refused")
    await asyncio.to_thread(server.start)
    assert (await run_check(sql(service, server.port))).ok


# ---- a server that accepts and never answers: the timeout, and nothing left behind --------------------

def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled() -> int:
    """The open-fd count after a few loop turns (a transport closes its socket on the next turn)."""
    for _ in range(5):
        await asyncio.sleep(0)
    return _open_fds()


async def _accept(server: HungServer) -> socket.socket:
    """The check's connection, from the backlog of the server that never answers."""
    server.sock.setblocking(False)
    conn, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(server.sock), 1.0)
    return conn


async def _read_to_eof(conn: socket.socket) -> bytes:
    """What the check sent before closing the connection (EOF required within 2 s)."""
    received = b""
    with conn:
        async with asyncio.timeout(2.0):
            while chunk := await asyncio.get_running_loop().sock_recv(conn, 65536):
                received += chunk
    return received


async def _peer_closes(server: HungServer) -> bytes:
    return await _read_to_eof(await _accept(server))


@pytest.mark.parametrize("service", ["mysql", "pgsql", "oracle"])
async def test_down_within_the_timeout_when_the_server_never_answers(service, hung_server):
    await load_driver(DRIVERS[service])  # import first: the import's worker thread is no leak
    fds, threads = _open_fds(), threading.active_count()
    result = await run_check(sql(service, hung_server.port, timeout=TIMEOUT))
    assert (result.ok, result.message) == (False, f"timeout after {TIMEOUT:g}s")
    assert TIMEOUT * 0.95 <= result.latency < TIMEOUT + 0.5
    assert await _settled() == fds, "the check left a socket open"
    assert threading.active_count() == threads
    await _peer_closes(hung_server)


async def test_down_within_the_timeout_when_the_query_hangs(db):
    """Logged in, then no answer: the connection is dropped at the timeout, nothing left behind."""
    service, server = db
    await load_driver(DRIVERS[service])
    query = {"mysql": "SELECT SLEEP(5)", "pgsql": "SELECT pg_sleep(5)"}[service]
    fds, threads = _open_fds(), threading.active_count()
    result = await run_check(sql(service, server.port, query, timeout=TIMEOUT))
    assert (result.ok, result.message) == (False, f"timeout after {TIMEOUT:g}s")
    assert TIMEOUT * 0.95 <= result.latency < TIMEOUT + 0.5
    assert await _settled() == fds, "the check left a socket open"
    assert threading.active_count() == threads
    assert (await run_check(sql(service, server.port))).ok


# ---- oracle (no server available) ---------------------------------------------------------------------

async def test_oracle_refused():
    result = await run_check(sql("oracle", free_port(), "SELECT 1 FROM dual", database="XE"))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_oracle_needs_a_database():
    result = await run_check(sql("oracle", free_port(), "SELECT 1 FROM dual", database=""))
    assert (result.ok, result.message) == (False, "oracle check needs a database (the Oracle SID)")


async def test_oracle_without_the_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "oracledb", None)  # what an interpreter without it sees
    result = await run_check(sql("oracle", free_port(), "SELECT 1 FROM dual"))
    assert (result.ok, result.message) == (False, "oracle check needs the python-oracledb package")


def _reachable(root: object, type_name: str) -> list[object]:
    """Objects of type ``type_name`` in the graph ``oracle_transports`` walks from ``root``."""
    frontier, seen, found = [root], {id(root)}, []
    while frontier:
        following = []
        for obj in frontier:
            for ref in gc.get_referents(obj):
                if id(ref) not in seen and (_walkable(ref) or isinstance(ref, dict)):
                    seen.add(id(ref))
                    following.append(ref)
                    if type(ref).__name__ == type_name:
                        found.append(ref)
        frontier = following
    return found


async def test_an_oracle_session_socket_is_found_and_aborted(hung_server):
    """What a timeout does to an Oracle session (no server: shown on one that is connecting).

    The socket is found through oracledb's own objects — from the connecting coroutine, and from a
    connection object holding that session's impl, as it does once logged in — and aborted without
    a goodbye: the peer sees the connection closed at once, while the session task still waits.
    """
    oracledb = await load_driver("oracledb")
    conn = oracledb.connect_async(user="u", password="p", host="127.0.0.1", port=hung_server.port, sid="XE")
    task = asyncio.ensure_future(_oracle_session(oracledb, conn, "SELECT 1 FROM dual", TIMEOUT))
    logged_in = oracledb.AsyncConnection()
    peer = None
    try:
        peer = await _accept(hung_server)
        [logged_in._impl] = _reachable(task.get_coro(), "ThinConnImpl")
        for _ in range(20):  # oracledb takes the socket over a loop turn or two after the connect
            if oracle_transports(logged_in):
                break
            await asyncio.sleep(0)
        [transport] = oracle_transports(logged_in)
        assert oracle_transports(task.get_coro()) == [transport]
        abort_oracle(logged_in)
        assert not task.done()
        await _read_to_eof(peer)  # EOF at once, not after the session's timeout
    finally:
        if peer is not None:
            peer.close()
        logged_in._impl = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, CheckFailed):  # the session fails either way
            await task


async def test_invalid_receive_pattern():
    result = await run_check(sql("mysql", free_port(), receive="(unclosed"))
    assert not result.ok
    assert result.message.startswith("invalid receive pattern '(unclosed'")
