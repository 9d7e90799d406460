"""The pure parts of the SQL checks: the query taken from ``request``, the verdict, error wording."""

from __future__ import annotations

import errno

import pytest

from saru.checks.base import CheckFailed
from saru.checks.sql import evaluate, failure, query_of, text_of
from saru.model import CheckSpec


def spec(service: str = "mysql", **kw: str) -> CheckSpec:
    return CheckSpec("negotiate", service, "tcp", "127.0.0.1", 3306, **{"login": "u", **kw})


def test_query_is_the_request_without_one_leading_slash():
    assert query_of(spec(request="/SELECT 1")) == "SELECT 1"
    assert query_of(spec(request="SELECT 1")) == "SELECT 1"
    assert query_of(spec(request="//x")) == "/x"


@pytest.mark.parametrize("kw", [{"request": "/"}, {"request": "/  "}, {"request": "/SELECT 1", "login": ""}])
def test_login_and_request_are_required(kw):
    with pytest.raises(CheckFailed, match=r"^pgsql check needs a login and a request"):
        query_of(spec("pgsql", **kw))


def test_oracle_needs_its_sid():
    with pytest.raises(CheckFailed, match="needs a database"):
        query_of(spec("oracle", request="/SELECT 1 FROM dual"))
    assert query_of(spec("oracle", request="/SELECT 1 FROM dual", database="XE")) == "SELECT 1 FROM dual"


def test_verdict():
    assert evaluate([], "") == evaluate([], "x")
    assert not evaluate([], "").ok
    assert evaluate([(1,)], "").message == "query returned 1 row"
    assert evaluate([(None, b"ok\xff")], r"^ok").message == "query returned 1 row, 'ok\ufffd' matches receive"
    down = evaluate([(None,), ("a",)], "None")
    assert (down.ok, down.message) == (False, "receive pattern 'None' matches no value of 2 rows")


def test_text_of():
    assert text_of(memoryview(b"abc")) == "abc"
    assert text_of(42) == "42"


def test_failure_prefers_the_socket_error_and_words_timeouts():
    refused = RuntimeError("cannot connect")
    refused.__cause__ = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    assert str(failure(refused, str, 5)) == "connection refused"
    late = RuntimeError("DPY-6005: cannot connect")
    late.__context__ = TimeoutError()
    assert str(failure(late, str, 2.5)) == "timeout after 2.5s"
    assert str(failure(RuntimeError("ORA-01017: denied"), str, 5)) == "ORA-01017: denied"
