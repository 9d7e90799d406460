"""Value grammar of ldirectord.cf: numbers, yes/no, addresses, ``virtual=``, ``real=``, ``fallback=``.

Pure syntax: nothing is resolved here (host and service names are returned as written and resolved by
``saru.config.ldirectord``).  Every function raises ``Problem`` with a message meant for the user.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from saru.config.ldirectord.lex import Problem, clip

HostKind = Literal["ipv4", "ipv6", "name"]

FORWARDS = ("gate", "masq", "ipip")
EMAIL_STATES = ("starting", "running", "stopping", "reloading")
SYSLOG_FACILITIES = frozenset(
    {"auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp"}
    | {f"local{i}" for i in range(8)}
)
MAX_WEIGHT = 65535  # ipvsadm: weight 0..65535
MAX_THRESHOLD = 2**31 - 1  # ipvsadm -x/-y
MAX_PERSISTENT = 31 * 86400  # ipvsadm: persistence timeout 1..2678400
MAX_FWMARK = 2**32 - 1
MAX_SECONDS = 31 * 86400  # a month: anything longer is a typo
MAX_RANGE = 65536  # reals produced by one a->b range

_NUMBER = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_INT = re.compile(r"[0-9]{1,12}")  # longer numbers are out of every range anyway
_DOTTED = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_PORT_NAME = re.compile(r"[A-Za-z0-9_-]+")
_BRACKET_RANGE = re.compile(r"\[([0-9]+)-([0-9]+)\]")


@dataclass(frozen=True)
class Host:
    """An address or host name as written (IPv6 without its brackets)."""

    text: str
    kind: HostKind


@dataclass(frozen=True)
class Port:
    """A port as written: a number, or a service name still to be looked up."""

    number: int | None
    name: str | None = None

    @property
    def text(self) -> str:
        return str(self.number) if self.name is None else self.name


@dataclass(frozen=True)
class VirtualSpec:
    """The value of ``virtual=``/``virtual6=``: a host and port, or a firewall mark."""

    host: Host | None
    port: Port | None
    fwmark: int | None


@dataclass(frozen=True)
class RealSpec:
    """The value of ``real=``/``real6=``, not yet resolved."""

    first: Host
    last: Host | None
    port: Port | None
    forward: str
    weight: int
    request: str | None
    receive: str | None
    lower: int | None
    upper: int | None


@dataclass(frozen=True)
class FallbackSpec:
    """The value of ``fallback=``/``fallback6=``, not yet resolved."""

    host: Host
    port: Port | None
    forward: str


# ------------------------------------------------------------------------------------------------
# scalars
# ------------------------------------------------------------------------------------------------


def yes_no(value: str, name: str) -> bool:
    if value in ("yes", "no"):
        return value == "yes"
    raise Problem(f"{name} must be 'yes' or 'no' (got \"{clip(value)}\")")


def seconds(value: str, what: str) -> float:
    """A positive number of seconds, optionally followed by ``s``; Saru also accepts decimals (2.5)."""
    number = value[:-1] if value.endswith("s") else value  # "10s" (ldirectord reads the digits: 10)
    if _NUMBER.fullmatch(number) and 0 < float(number) <= MAX_SECONDS:
        return float(number)
    raise Problem(
        f'invalid {what} "{clip(value)}": expected a number of seconds greater than 0 (at most {MAX_SECONDS})'
    )


def count(value: str, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``minimum..maximum``."""
    if _INT.fullmatch(value):
        n = int(value)
        if n >= minimum and (maximum is None or n <= maximum):
            return n
    bound = f"{minimum}..{maximum}" if maximum is not None else f"an integer >= {minimum}"
    if maximum is not None:
        bound = f"an integer in {bound}"
    raise Problem(f'invalid {what} "{clip(value)}": expected {bound}')


def email_status(value: str) -> tuple[str, ...]:
    """``emailalertstatus``: ``all``, ``none`` or a comma list of daemon states, in canonical order."""
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise Problem(
            f'invalid email alert status "{clip(value)}": expected all, none or a comma-separated list of '
            "starting, running, stopping, reloading"
        )
    chosen: set[str] = set()
    for item in items:
        if item == "all":
            chosen.update(EMAIL_STATES)
        elif item in EMAIL_STATES:
            chosen.add(item)
        elif item != "none":
            raise Problem(
                f'invalid email alert status at: "{clip(item)}" '
                "(expected all, none, starting, running, stopping or reloading)"
            )
    if "none" in items:
        if len(items) > 1:
            other = next(i for i in items if i != "none")
            raise Problem(f'invalid email alert status: "{clip(other)}" specified with "none"')
        return ()
    return tuple(s for s in EMAIL_STATES if s in chosen)


def netmask(value: str, ipv6: bool) -> str:
    if ipv6:
        if _INT.fullmatch(value) and 1 <= int(value) <= 128:
            return str(int(value))
        raise Problem(f'invalid netmask "{clip(value)}": a prefix length between 1 and 128 is required')
    if _DOTTED.fullmatch(value):
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            pass
    raise Problem(f'invalid netmask "{clip(value)}": dotted quad notation is required (e.g. 255.255.255.0)')


# ------------------------------------------------------------------------------------------------
# hosts and ports
# ------------------------------------------------------------------------------------------------


def host(token: str, ipv6: bool, directive: str) -> Host:
    """An IPv4 address, a bracketed IPv6 address or a host name; the family must match the directive."""
    if token.startswith("[") and token.endswith("]"):
        inner = token[1:-1]
        try:
            if "%" in inner:
                raise ValueError
            addr = ipaddress.IPv6Address(inner)
        except ValueError:
            raise Problem(f'invalid IPv6 address "{clip(token)}"') from None
        if not ipv6:
            raise Problem(
                f'cannot use the IPv6 address {token} with "{directive}": use "{directive}6" instead'
            )
        return Host(str(addr), "ipv6")
    if ":" in token:
        raise Problem(f'IPv6 addresses must be written in brackets, e.g. [{token}] (got "{clip(token)}")')
    if _DOTTED.fullmatch(token):
        try:
            addr4 = ipaddress.IPv4Address(token)
        except ValueError:
            raise Problem(f'invalid IPv4 address "{clip(token)}"') from None
        if ipv6:
            base = directive[:-1] if directive.endswith("6") else directive
            raise Problem(f'cannot use the IPv4 address {token} with "{directive}": use "{base}" instead')
        return Host(str(addr4), "ipv4")
    if re.fullmatch(r"[0-9.]+", token):
        raise Problem(f'invalid IPv4 address "{clip(token)}": write all four parts, e.g. 10.0.0.1')
    if _HOSTNAME.fullmatch(token):
        return Host(token, "name")
    raise Problem(f'invalid host "{clip(token)}"')


def port(token: str) -> Port:
    """A port number 0..65535 or a service name (looked up later in /etc/services)."""
    if re.fullmatch(r"[0-9]+", token):
        n = int(token) if len(token) <= 12 else 65536
        if n > 65535:
            raise Problem(f'invalid port "{clip(token)}": ports are 0..65535')
        return Port(n)
    if token.startswith(":"):
        raise Problem(f'invalid port "{clip(token)}": write address:port with a single colon')
    if not token:
        raise Problem("port missing after ':'")
    if _PORT_NAME.fullmatch(token):
        return Port(None, token)
    raise Problem(f'invalid port "{clip(token)}": expected a number or a service name from /etc/services')


def _host_port(token: str, ipv6: bool, directive: str) -> tuple[Host, Port | None]:
    if token.startswith("["):
        end = token.find("]")
        if end < 0:
            raise Problem(f'invalid address "{clip(token)}": missing "]"')
        rest = token[end + 1 :]
        if rest and not rest.startswith(":"):
            raise Problem(f'unexpected "{clip(rest)}" after {token[: end + 1]}')
        return host(token[: end + 1], ipv6, directive), (port(rest[1:]) if rest else None)
    if token.count(":") > 1 and not _DOTTED.fullmatch(token.partition(":")[0]):
        raise Problem(
            f'IPv6 addresses must be written in brackets, e.g. [2001:db8::1]:80 (got "{clip(token)}")'
        )
    name, sep, rest = token.partition(":")
    return host(name, ipv6, directive), (port(rest) if sep else None)


# ------------------------------------------------------------------------------------------------
# virtual=, real=, fallback=
# ------------------------------------------------------------------------------------------------


def virtual(value: str, ipv6: bool) -> VirtualSpec:
    directive = "virtual6" if ipv6 else "virtual"
    if not value:
        raise Problem(f"{directive}: address missing (expected HOST:PORT, [IPv6]:PORT or a firewall mark)")
    first, rest = _split_first(value)
    if rest:
        raise Problem(f'unexpected text "{clip(rest)}" after the virtual address {clip(first)}')
    if re.fullmatch(r"[0-9]+", value):
        mark = int(value) if len(value) <= 12 else 0
        if not 1 <= mark <= MAX_FWMARK:
            raise Problem(f"invalid firewall mark {value}: expected 1..{MAX_FWMARK}")
        return VirtualSpec(None, None, mark)
    try:
        h, p = _host_port(value, ipv6, directive)
    except Problem as exc:
        raise Problem(f'invalid address for virtual server "{clip(value)}": {exc}') from None
    if p is None:
        raise Problem(
            f'invalid address for virtual server "{clip(value)}": port missing '
            f"(write {directive}=HOST:PORT, or a firewall mark number)"
        )
    return VirtualSpec(h, p, None)


def _split_first(value: str) -> tuple[str, str]:
    """First blank-separated token and the (stripped) rest."""
    parts = value.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _range_hint(token: str) -> str | None:
    """``10.0.0.[2-5]:80`` → ``10.0.0.2->10.0.0.5`` (the notation ldirectord actually has)."""
    m = _BRACKET_RANGE.search(token)
    if not m:
        return None
    head = token[: m.start()]
    tail = token[m.end() :].split(":", 1)[0]
    return f"{head}{m.group(1)}{tail}->{head}{m.group(2)}{tail}"


_FLAGS = re.compile(r"(?P<forward>\S+)(?:\s+(?P<weight>[0-9]+)(?=\s|$))?")
_PAIR = re.compile(r'\s+"(?P<request>.*)"(?:\s*,\s*|\s+)"(?P<receive>.*)"')
_THRESHOLD = re.compile(r"\s+(?P<which>[lu]):(?P<value>\S*)")


def real(value: str, ipv6: bool) -> RealSpec:
    """``HOST[->HOST][:PORT] gate|masq|ipip [WEIGHT] ["REQUEST" "RECEIVE"] [l:N] [u:N]``."""
    directive = "real6" if ipv6 else "real"
    try:
        return _real(value, ipv6, directive)
    except Problem as exc:
        raise Problem(f'invalid real server "{clip(value)}": {exc}') from None


def _real(value: str, ipv6: bool, directive: str) -> RealSpec:
    if not value:
        raise Problem("address missing")
    token, rest = _split_first(value)
    hint = _range_hint(token)
    if hint:
        raise Problem(f"ranges are written {hint}")
    first_text, arrow, last_text = token.partition("->")
    last: Host | None = None
    if arrow:
        if ":" in first_text and not first_text.startswith("["):
            raise Problem("the port goes after the last address of a range: FIRST->LAST:PORT")
        first = host(first_text, ipv6, directive)
        last, p = _host_port(last_text, ipv6, directive)
        if ipv6:
            raise Problem("address ranges are not supported for IPv6")
    else:
        first, p = _host_port(token, ipv6, directive)
    rest = " " + rest.strip()
    if not rest.strip():
        raise Problem("forwarding method missing: expected gate, masq or ipip after the address")
    m = _FLAGS.match(rest.strip())
    assert m is not None  # rest is not blank
    forward = m.group("forward")
    if forward not in FORWARDS:
        raise Problem(f'forward method must be gate, masq or ipip (got "{clip(forward)}")')
    weight = count(m.group("weight"), "weight", 0, MAX_WEIGHT) if m.group("weight") else 1
    rest = " " + rest.strip()[m.end() :]
    request = receive = None
    pair = _PAIR.match(rest)
    if pair:
        request, receive = pair.group("request"), pair.group("receive")
        if not request.startswith("/"):
            request = "/" + request
        rest = rest[pair.end() :]
    elif rest.strip().startswith('"'):
        raise Problem(
            'a per-real request and receive must both be given, each in double quotes: "REQUEST" "RECEIVE"'
        )
    thresholds: dict[str, int] = {}
    while rest.strip():
        t = _THRESHOLD.match(rest)
        if not t:
            raise Problem(f'unexpected text around "{clip(rest.strip())}"')
        which = t.group("which")
        if which in thresholds:
            raise Problem(f"{which}: threshold given twice")
        thresholds[which] = count(t.group("value"), f"{which}: threshold", 0, MAX_THRESHOLD)
        rest = rest[t.end() :]
    return RealSpec(
        first, last, p, forward, weight, request, receive, thresholds.get("l"), thresholds.get("u")
    )


def fallback(value: str, ipv6: bool) -> FallbackSpec:
    """``HOST[:PORT] [gate|masq|ipip]``."""
    directive = "fallback6" if ipv6 else "fallback"
    fields = value.split()
    try:
        if not fields:
            raise Problem("address missing")
        if len(fields) > 2:
            raise Problem(
                f'unexpected text "{clip(" ".join(fields[2:]))}" (expected HOST[:PORT] [gate|masq|ipip])'
            )
        h, p = _host_port(fields[0], ipv6, directive)
        forward = fields[1] if len(fields) == 2 else "gate"
        if forward not in FORWARDS:
            raise Problem(f'forward method must be gate, masq or ipip (got "{clip(forward)}")')
    except Problem as exc:
        raise Problem(f'invalid fallback server "{clip(value)}": {exc}') from None
    return FallbackSpec(h, p, forward)
