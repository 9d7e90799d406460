"""check_spec_for: the effective check of a real, and the check registry's choices for a spec."""

from __future__ import annotations

from dataclasses import replace

import pytest

from saru.checks.base import get_check, run_check, timeout_for
from saru.checks.spec import check_spec_for, parse_checktype
from saru.model import CheckSpec, RealConfig, VirtualConfig

HTTP = VirtualConfig("tcp", "192.0.2.1", 80, service="http", request="/check.html", receive="OK",
                     virtualhost="www.example.test", checktimeout=3, negotiatetimeout=7, checkcount=2)
REAL = RealConfig("10.0.0.5", 8080)


@pytest.mark.parametrize(("value", "expected"), [
    ("negotiate", ("negotiate", 0)), ("connect", ("connect", 0)), ("3", ("combined", 3)),
    ("10", ("combined", 10)), ("off", ("off", 0)),
])
def test_parse_checktype(value, expected):
    assert parse_checktype(value) == expected


def test_basic_fields_are_copied():
    spec = check_spec_for(HTTP, REAL)
    assert (spec.checktype, spec.service, spec.protocol) == ("negotiate", "http", "tcp")
    assert (spec.address, spec.port) == ("10.0.0.5", 8080)
    assert (spec.request, spec.receive, spec.virtualhost) == ("/check.html", "OK", "www.example.test")
    assert (spec.checktimeout, spec.negotiatetimeout, spec.checkcount) == (3, 7, 2)
    assert (spec.virtual_address, spec.virtual_port) == ("", 0)


def test_integer_checktype_is_combined():
    spec = check_spec_for(replace(HTTP, checktype="4"), REAL)
    assert (spec.checktype, spec.connects_per_negotiate) == ("combined", 4)


def test_port_resolution_order():
    assert check_spec_for(replace(HTTP, checkport=9000), REAL).port == 9000
    assert check_spec_for(HTTP, REAL).port == 8080
    assert check_spec_for(HTTP, RealConfig("10.0.0.5", 0)).port == 80
    assert check_spec_for(replace(HTTP, service="https"), RealConfig("10.0.0.5", 0)).port == 443
    fwm = VirtualConfig("fwm", "", 0, fwmark=7, service="none", checktype="connect")
    assert check_spec_for(fwm, RealConfig("10.0.0.5", 0)).port == 0


def test_per_real_request_and_receive_override():
    real = RealConfig("10.0.0.5", 80, request="/other", receive="alive")
    spec = check_spec_for(HTTP, real)
    assert (spec.request, spec.receive) == ("/other", "alive")
    only_request = check_spec_for(HTTP, RealConfig("10.0.0.5", 80, request="/x"))
    assert (only_request.request, only_request.receive) == ("/x", "OK")


def test_httpmethod_is_upper_case():
    assert check_spec_for(replace(HTTP, httpmethod="head"), REAL).httpmethod == "HEAD"


def test_only_external_checks_carry_the_virtual():
    ext = check_spec_for(replace(HTTP, checktype="external", checkcommand="/bin/check"), REAL)
    assert (ext.virtual_address, ext.virtual_port, ext.checkcommand) == ("192.0.2.1", 80, "/bin/check")
    fwm = VirtualConfig("fwm", "", 0, fwmark=5, checktype="external")
    spec = check_spec_for(fwm, RealConfig("10.0.0.5", 0))
    assert (spec.virtual_address, spec.virtual_port) == ("5", 0)


def test_same_real_in_two_virtuals_gives_equal_specs():
    other = replace(HTTP, address="192.0.2.2", port=8080)
    assert check_spec_for(HTTP, REAL) == check_spec_for(other, REAL)


def test_connect_checks_ignore_http_fields_so_they_deduplicate():
    a = replace(HTTP, checktype="connect")
    b = replace(a, request="/elsewhere", receive="x", virtualhost=None, negotiatetimeout=99)
    assert check_spec_for(a, REAL) == check_spec_for(b, REAL)
    assert check_spec_for(a, REAL).checktimeout == 3


def test_negotiate_checks_keep_http_fields_apart():
    assert check_spec_for(HTTP, REAL) != check_spec_for(replace(HTTP, virtualhost="other.test"), REAL)
    assert check_spec_for(HTTP, REAL) != check_spec_for(replace(HTTP, receive="other"), REAL)


# ---- registry and timeouts -------------------------------------------------------------------------

def spec(checktype: str = "negotiate", service: str = "http", protocol: str = "tcp") -> CheckSpec:
    return CheckSpec(checktype, service, protocol, "127.0.0.1", 80, checktimeout=2, negotiatetimeout=9,
                     checkcount=3)


def test_timeouts_follow_ldirectord():
    assert timeout_for(spec("negotiate")) == 9
    assert timeout_for(spec("combined")) == 9
    assert timeout_for(spec("connect")) == 2
    assert timeout_for(spec("external")) == 2
    assert timeout_for(spec("ping")) == 6  # checkcount attempts
    assert timeout_for(spec("connect", protocol="udp")) == 6  # UDP connect is a ping


@pytest.mark.parametrize("service", ["gopher", "x-unknown"])
async def test_unregistered_services_say_not_implemented(service):
    result = await run_check(spec(service=service))
    assert not result.ok
    assert result.message == f"negotiate check for service {service!r} is not implemented yet"


async def test_unregistered_checktype_says_not_implemented():
    result = await run_check(spec("x-unknown"))
    assert not result.ok and "not implemented yet" in result.message


async def test_on_off_and_none():
    assert (await run_check(spec("on"))).ok
    assert not (await run_check(spec("off"))).ok
    assert (await run_check(spec("negotiate", service="none"))).ok


def test_get_check_picks_service_then_wildcard():
    from saru.checks import http, simple, tcp

    assert get_check(spec("negotiate", "http")) is http.check_http
    assert get_check(spec("negotiate", "https")) is http.check_http
    assert get_check(spec("negotiate", "none")) is simple.check_none
    assert get_check(spec("connect", "ldap")) is tcp.check_connect
    assert get_check(spec("combined", "http")) is http.check_http


def test_mail_checks_ignore_request_and_receive_for_deduplication():
    from dataclasses import replace as _replace

    from saru.checks.spec import normalize

    a = normalize(spec("negotiate", service="smtp"))
    b = normalize(_replace(spec("negotiate", service="smtp"), request="/x", receive="y", login="u"))
    assert a == b
    pop = normalize(_replace(spec("negotiate", service="pop"), login="u", passwd="p", request="/x"))
    assert (pop.login, pop.passwd, pop.request) == ("u", "p", "/")
    http = _replace(spec("negotiate", service="http"), request="/x")
    assert normalize(http).request == "/x"
