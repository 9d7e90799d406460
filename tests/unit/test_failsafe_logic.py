"""Fail-safe checking, the pure parts: the panic rule (planner), the log throttle, the local-fault
classification, the route reply parser and the backtracking-risk heuristic."""

import asyncio
import errno
import socket
import ssl
import struct

import pytest

from saru.checks.base import CheckFailed, local_fault
from saru.checks.receive import compile_receive_text, receive_found, receive_matches
from saru.config.regex_risk import backtracking_risk
from saru.events.throttle import Kind, Throttle, lasting
from saru.model import CheckSpec, Config, FallbackConfig, GlobalConfig, RealConfig, RealRef, Table, VirtualConfig
from saru.model.operator import Override
from saru.net.netlink import nla
from saru.net.route import is_local, link_request, parse_link_reply, parse_route_reply, parse_route_type, route_request
from saru.planner import desired_table, panic_held, panic_start, panic_window, plan_service

REALS = tuple(RealConfig(f"10.0.0.{i}", 80, "masq", weight=1) for i in range(1, 5))


def virtual(**kw):
    base = dict(protocol="tcp", address="192.168.5.55", port=80, scheduler="rr", reals=REALS,
                checkinterval=2.0, checktimeout=1.0, checktype="connect")
    base.update(kw)
    return VirtualConfig(**base)


def refs(v):
    return [RealRef(v.key, r.address, r.port) for r in v.reals]


# ---- panic rule ---------------------------------------------------------------------------------


def test_panic_window_is_two_check_rounds():
    assert panic_window(virtual()) == 6.0
    assert panic_window(virtual(checktype="negotiate", negotiatetimeout=4.0)) == 12.0


def test_panic_enters_when_more_than_threshold_fail_together():
    v = virtual()
    a, b, c, _d = refs(v)
    assert panic_start(v, {a: 100.0, b: 100.5}, 50, None, known=True) is None  # 2/4 = 50 %: not more
    assert panic_start(v, {a: 100.0, b: 100.5, c: 101.0}, 50, None, known=True) == 100.0
    assert panic_start(v, {a: 100.0, b: 100.5, c: 101.0}, 0, None, known=True) is None  # 0 = off
    assert panic_start(v, {a: 100.0, b: 100.5, c: 101.0}, 50, None, known=False) is None  # nothing to keep


def test_reals_dying_one_by_one_are_believed():
    v = virtual()
    a, b, c, d = refs(v)
    apart = {a: 0.0, b: 100.0, c: 200.0, d: 300.0}
    assert panic_start(v, apart, 50, None, known=True) is None


def test_a_lone_real_never_panics():
    v = virtual(reals=REALS[:1])
    (a,) = refs(v)
    assert panic_start(v, {a: 1.0}, 50, None, known=True) is None


def test_panic_stays_while_too_many_are_down_and_leaves_after():
    v = virtual()
    a, b, c, _d = refs(v)
    assert panic_start(v, {a: 1.0, b: 1.0, c: 2.0}, 50, 1.0, known=True) == 1.0
    assert panic_start(v, {a: 1.0, b: 1.0}, 50, 1.0, known=True) is None  # 50 %: back at the threshold


def test_operator_disabled_reals_do_not_count():
    v = virtual()
    a, b, c, d = refs(v)
    disabled = {c: Override("disable", None, 0.0), d: Override("disable", None, 0.0)}
    assert panic_start(v, {a: 1.0, b: 1.0}, 50, None, known=True, overrides=disabled) == 1.0


def test_held_reals_are_planned_as_before_the_collapse():
    v = virtual(quiescent=True)
    a, b, c, d = refs(v)
    before = desired_table_for(v, dict.fromkeys(refs(v), True))
    failed = {a: 10.0, b: 10.2, c: 10.4, d: 10.6}
    health = dict.fromkeys(refs(v), False)
    started = panic_start(v, failed, 50, None, known=True)
    assert started == 10.0
    held = frozenset(panic_held(v, failed, started))
    assert held == set(refs(v))
    kept = plan_service(v, health, before.services[v.key], held=held)
    assert kept == before.services[v.key]  # same reals, same weights (not quiesced to 0)
    dropped = plan_service(v, health, before.services[v.key])
    assert {dest.weight for dest in dropped.dests.values()} == {0}  # not in panic: quiesced


def test_with_a_fallback_panic_holds_the_reals_only_while_some_are_up():
    v = virtual(fallback=FallbackConfig("10.0.0.9", 80, "masq"))
    a, b, c, d = refs(v)
    before = desired_table_for(v, dict.fromkeys(refs(v), True))
    three = {a: 10.0, b: 10.2, c: 10.4}
    started = panic_start(v, three, 50, None, known=True)
    assert started == 10.0
    health = {a: False, b: False, c: False, d: True}
    kept = plan_service(v, health, before.services[v.key], held=frozenset(panic_held(v, three, started)))
    assert kept == before.services[v.key]  # no fallback: a real is up
    every = {**three, d: 10.6}
    assert panic_start(v, every, 50, None, known=True) is None  # all down: the sorry server, as asked
    assert panic_start(v, every, 50, started, known=True) is None  # also ends a panic
    sorry = plan_service(v, dict.fromkeys(refs(v), False), before.services[v.key])
    assert [dest.address for dest in sorry.dests.values()] == ["10.0.0.9"]


def test_failures_older_than_the_panic_stay_believed():
    v = virtual()
    a, b, c, d = refs(v)
    failed = {a: 0.0, b: 500.0, c: 500.1, d: 500.2}
    started = panic_start(v, failed, 50, None, known=True)
    assert started == 500.0
    assert panic_held(v, failed, started) == {b, c, d}


def desired_table_for(v, health):
    return desired_table(Config("x.cf", GlobalConfig(), (v,)), health, Table.of([]))


# ---- throttle -----------------------------------------------------------------------------------


def test_throttle_start_change_reminder_resolved():
    t = Throttle(60)
    assert t.observe("veto", "mac a", 0.0).kind is Kind.START
    for i in range(1, 100):  # every 0.36 s for ~36 s: silent
        assert t.observe("veto", "mac a", i * 0.36) is None
    reminder = t.observe("veto", "mac a", 60.0)
    assert reminder is not None and reminder.kind is Kind.REMINDER and reminder.count == 100
    assert t.observe("veto", "mac a", 61.0) is None
    change = t.observe("veto", "mac b", 62.0)
    assert change is not None and change.kind is Kind.CHANGE and change.since == 0.0
    resolved = t.clear("veto", 70.0)
    assert resolved is not None and resolved.kind is Kind.RESOLVED and resolved.count == 103
    assert t.clear("veto", 71.0) is None
    assert t.observe("veto", "mac b", 72.0).kind is Kind.START


def test_throttle_forget_and_lasting():
    t = Throttle(1)
    t.observe("a", "x", 0.0)
    t.observe("b", "x", 0.0)
    t.forget({"a"})
    assert t.active("a") and not t.active("b")
    assert lasting(5) == "5s" and lasting(192) == "3m12s" and lasting(7300) == "2h01m"


# ---- local faults -------------------------------------------------------------------------------


SPEC = CheckSpec(checktype="connect", service="none", protocol="tcp", address="127.0.0.1", port=80)


def test_local_errnos_are_local_and_the_reals_errors_are_not():
    for code, reason in ((errno.EMFILE, "emfile"), (errno.ENFILE, "enfile"), (errno.ENOBUFS, "enobufs"),
                         (errno.EADDRNOTAVAIL, "eaddrnotavail"), (errno.EPERM, "eperm")):
        assert local_fault(OSError(code, "x"), SPEC) == reason
    for code in (errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT):
        assert local_fault(OSError(code, "x"), SPEC) == ""
    assert local_fault(TimeoutError(), SPEC) == ""


def test_a_tls_error_is_the_reals_though_its_errno_reads_as_eperm():
    """ssl.SSLError's errno is OpenSSL's error code (SSL_ERROR_SSL = 1 = EPERM): a real speaking no TLS
    is the real's fault, raised directly (HTTPS) or as the context of a CheckFailed (mail, news)."""
    tls = ssl.SSLError(ssl.SSL_ERROR_SSL, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert tls.errno == errno.EPERM
    assert local_fault(tls, SPEC) == ""
    try:
        try:
            raise tls
        except ssl.SSLError:
            raise CheckFailed("TLS handshake failed: WRONG_VERSION_NUMBER", failure="tls") from None
    except CheckFailed as wrapped:
        assert local_fault(wrapped, SPEC) == ""


def test_unreachable_is_local_only_without_a_route():
    routed = CheckSpec(checktype="connect", service="none", protocol="tcp", address="127.0.0.1",
                       port=80)  # loopback: always routed
    assert local_fault(OSError(errno.EHOSTUNREACH, "x"), routed) == ""


def test_resolver_down_is_local_but_no_such_name_is_not():
    assert local_fault(socket.gaierror(socket.EAI_AGAIN, "x"), SPEC) == "resolver"
    assert local_fault(socket.gaierror(socket.EAI_NONAME, "x"), SPEC) == ""


def test_a_wrapped_local_error_is_found_down_the_cause_chain():
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as inner:
            raise RuntimeError("check failed") from inner
    except RuntimeError as outer:
        assert local_fault(outer, SPEC) == "emfile"


def test_route_and_link_reply_parsers():
    request = route_request("10.1.2.3")
    assert struct.unpack_from("=H", request, 4)[0] == 26  # RTM_GETROUTE
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -errno.ENETUNREACH) + bytes(16)
    assert parse_route_reply(error) == (False, 0)
    oif = nla(4, struct.pack("=i", 7))  # RTA_OIF
    route = struct.pack("=IHHII", 36, 24, 0, 1, 0) + struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, 1, 0) + oif
    assert parse_route_reply(route) == (True, 7)
    blackhole = route[:16] + struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, 6, 0)
    assert parse_route_reply(blackhole) == (False, 0)
    linkdown = route[:16] + struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, 1, 16) + oif
    assert parse_route_reply(linkdown)[0] is False
    assert parse_route_reply(b"") == (None, 0)
    assert struct.unpack_from("=H", link_request(7), 4)[0] == 18  # RTM_GETLINK
    link = struct.pack("=IHHII", 32, 16, 0, 2, 0) + struct.pack("=BxHiII", 0, 1, 7, 0x10043, 0)
    assert parse_link_reply(link) is True  # UP, RUNNING, LOWER_UP
    assert parse_link_reply(link[:16] + struct.pack("=BxHiII", 0, 1, 7, 0x1003, 0)) is False  # no carrier
    assert parse_link_reply(error) is None


def test_route_type_and_local_addresses():
    """A VIP the routers send to an IPVS director must be local there (the BGP announcer warns otherwise)."""
    local = struct.pack("=IHHII", 36, 24, 0, 1, 0) + struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 255, 0, 254, 2, 0)
    unicast = struct.pack("=IHHII", 36, 24, 0, 1, 0) + struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, 1, 0)
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -errno.ENETUNREACH) + bytes(16)
    assert parse_route_type(local) == 2 and parse_route_type(unicast) == 1
    assert parse_route_type(error) is None and parse_route_type(b"") is None
    assert is_local("127.0.0.1") is True  # the kernel's answer: a local route (lo)
    assert is_local("192.0.2.1") is False  # TEST-NET-1: routed (default route) or unreachable, not ours
    assert is_local("not-an-address") is None


# ---- backtracking risk --------------------------------------------------------------------------


def test_backtracking_risk():
    assert backtracking_risk("(a+)+$") == "nested quantifier"
    assert backtracking_risk(r"(\w*)*x") == "nested quantifier"
    assert backtracking_risk("(a|ab)*c") == "quantified alternation"
    assert backtracking_risk(r"(\w)\1") == "backreference"
    assert backtracking_risk(r"(?<w>\w)\k<w>\z") == "backreference"  # Perl spellings parse
    for safe in ("OK", r"^HTTP/1\.[01] 200", "Welcome.*server", "(foo|bar)", "[0-9]+ OK", "(?:abc)+", "(["):
        assert backtracking_risk(safe) is None, safe


def test_risky_patterns_are_matched_in_the_worker_under_the_limit():
    risky = compile_receive_text("(a+)+$")
    assert asyncio.run(receive_found(risky, "aaaa"))  # the worker answers
    assert asyncio.run(receive_matches(risky, ["aaa", "b!", "a"])) == {"aaa", "a"}
    with pytest.raises(CheckFailed, match="took longer than 1s"):
        asyncio.run(receive_found(risky, "a" * 26 + "!"))
    assert asyncio.run(receive_found(risky, "aa"))  # a fresh worker after the overrun
