"""The directives of ldirectord.cf: which exist, where they may appear, and how each value is read.

``GlobalState`` and ``BlockState`` collect what the lines say (values as written, still unresolved);
``saru.config.ldirectord`` turns them into the model.  Each ``set_*`` function handles one line and
returns the warnings it produced; problems raise ``Problem``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from saru.config.ldirectord import values as val
from saru.config.ldirectord.lex import Problem, clip, optionally_quoted, quoted
from saru.config.services import CHECKTYPES, SERVICES
from saru.model import FallbackConfig

#: directives accepted both at column 0 and inside a virtual section (the section's value wins).
SHARED = frozenset(
    {
        "checktimeout", "negotiatetimeout", "checkinterval", "checkcount", "failurecount",
        "fallback", "fallback6", "fallbackcommand", "quiescent", "cleanstop",
        "emailalert", "emailalertfreq", "emailalertstatus", "smtp",
    }
)  # fmt: skip
GLOBAL_ONLY = frozenset(
    {
        "autoreload", "callback", "logfile", "execute", "fork", "supervised", "readdquiescent",
        "emailalertfrom", "maintenancedir",
    }
)  # fmt: skip
VIRTUAL_ONLY = frozenset(
    {
        "real", "real6", "request", "receive", "checktype", "checkcommand", "checkport", "login",
        "passwd", "database", "secret", "load", "scheduler", "persistent", "schedflags", "netmask",
        "protocol", "ops", "service", "httpmethod", "virtualhost", "monitorfile", "servicename",
        "comment",
    }
)  # fmt: skip
REMOVED = {
    "connecttimeout": "connecttimeout directive deprecated in favour of negotiatetimeout",
    "timeout": "timeout directive deprecated in favour of checktimeout and negotiatetimeout",
}
ALL_DIRECTIVES = SHARED | GLOBAL_ONLY | VIRTUAL_ONLY | {"virtual", "virtual6"}

Warnings = list[str]


@dataclass
class GlobalState:
    """Column-0 directives as read (last one wins, ``execute`` accumulates)."""

    #: directive → value (Any: each has its own reader's type; ``build`` reads them by name)
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    execute: list[str] = field(default_factory=list)
    #: a logfile path problem: an error unless supervised=yes (then the file is never used)
    logfile_problem: tuple[int, str] | None = None


@dataclass
class BlockState:
    """One ``virtual=``/``virtual6=`` section as read."""

    line: int
    ipv6: bool
    spec: val.VirtualSpec
    protocol: str
    hostname: str  # for the ftp/sip login defaults
    #: directive → value (Any: each has its own reader's type; ``build`` reads them by name)
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    reals: list[tuple[val.RealSpec, int, str]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# value readers shared by both levels
# ------------------------------------------------------------------------------------------------


def _nonempty(value: str, message: str) -> str:
    if not value:
        raise Problem(message)
    return value


def _emailalert(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"') and '"' not in value[1:-1]:
        value = value[1:-1]
    return _nonempty(value, "no email address specified")


def _smtp(value: str) -> str:
    if re.fullmatch(r"[0-9A-Za-z._+-]+", value):
        return value
    if re.fullmatch(r"[0-9A-Za-z._+-]+:[0-9]+", value):
        raise Problem(
            f'invalid SMTP server address "{clip(value)}": give a host only; ldirectord always uses port 25 '
            "(it would silently drop the port)"
        )
    raise Problem(f'invalid SMTP server address "{clip(value)}": expected a host name or IPv4 address')


def _fallbackcommand(value: str, in_block: bool) -> str:
    # ldirectord strips the quotes of a per-virtual value but keeps those of the global one (the shell
    # removes them later); both give the same command line.
    if in_block:
        value = optionally_quoted(value, "fallbackcommand")
    return _nonempty(value, "invalid fallback command: empty")


#: directive → reader of its value (the values differ in type: seconds, counts, flags, texts)
SHARED_READERS: dict[str, Callable[[str], object]] = {
    "checktimeout": lambda v: val.seconds(v, "check timeout"),
    "negotiatetimeout": lambda v: val.seconds(v, "negotiate timeout"),
    "checkinterval": lambda v: val.seconds(v, "check interval"),
    "checkcount": lambda v: val.count(v, "check count"),
    "failurecount": lambda v: val.count(v, "failure count"),
    "quiescent": lambda v: val.yes_no(v, "quiescent"),
    "cleanstop": lambda v: val.yes_no(v, "cleanstop"),
    "emailalert": _emailalert,
    "emailalertfreq": lambda v: val.count(v, "email alert frequency", 0),
    "emailalertstatus": val.email_status,
    "smtp": _smtp,
}

CHECKCOUNT_WARNING = "checkcount option is deprecated and slated for removal.  please see 'failurecount'"


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------


def check_writable_file(path: str, what: str) -> Warnings:
    """Validate a log/monitor file path without creating anything; hard problems raise."""
    if "\0" in path:
        raise Problem(f"{what}: the path contains a NUL character")
    if not path.startswith("/"):
        raise Problem(f'{what} "{clip(path)}" must be an absolute path')
    try:
        if os.path.isdir(path):
            raise Problem(f'{what} "{clip(path)}" is a directory')
        parent = os.path.dirname(path) or "/"
        if not os.path.isdir(parent):
            raise Problem(f'unable to open {what} {clip(path)}: directory "{clip(parent)}" does not exist')
        target = path if os.path.exists(path) else parent
        if not os.access(target, os.W_OK):
            return [f"{what} {path} is not writable by the current user"]
    except (OSError, ValueError):
        raise Problem(f"unable to check {what} {clip(path)}") from None
    return []


def _logfile(state: GlobalState, value: str, line: int) -> tuple[str, Warnings]:
    path = quoted(value, "logfile", "/var/log/ldirectord.log")
    state.logfile_problem = None
    if path.startswith("/"):
        try:
            return path, check_writable_file(path, "logfile")
        except Problem as exc:
            state.logfile_problem = (line, str(exc))
            return path, []
    if path in val.SYSLOG_FACILITIES:
        return path, []
    raise Problem(
        f'invalid logfile "{clip(path)}": expected an absolute path or a syslog facility '
        "(daemon, local0 ... local7, ...)"
    )


# ------------------------------------------------------------------------------------------------
# column-0 lines
# ------------------------------------------------------------------------------------------------


def set_global(
    state: GlobalState,
    name: str,
    value: str | None,
    line: int,
    resolve_fallback: Callable[[val.FallbackSpec, bool], FallbackConfig],
) -> Warnings:
    """Record one column-0 directive (``virtual`` lines are handled by the caller)."""
    warnings: Warnings = []
    if name == "supervised" and value is None:
        state.values[name], state.lines[name] = True, line
        return ["please update your config not to use a bare supervised directive (supervised=yes)"]
    if value is None:
        raise Problem(f'{name}: "=" and a value expected')
    if name in SHARED_READERS:
        parsed: object = SHARED_READERS[name](value)
        if name == "checkcount":
            warnings.append(CHECKCOUNT_WARNING)
    elif name in ("fallback", "fallback6"):
        parsed = resolve_fallback(val.fallback(value, name == "fallback6"), name == "fallback6")
    elif name == "fallbackcommand":
        parsed = _fallbackcommand(value, in_block=False)
    elif name in ("autoreload", "fork", "supervised", "readdquiescent"):
        parsed = val.yes_no(value, name)
    elif name == "callback":
        parsed = _nonempty(quoted(value, "callback", "/path/to/callback"), "callback: empty path")
    elif name == "logfile":
        parsed, warnings = _logfile(state, value, line)
    elif name == "execute":
        instance = optionally_quoted(value, "execute")
        instance = _nonempty(instance, "execute: configuration name missing")
        if instance not in state.execute:
            state.execute.append(instance)
        return warnings
    elif name == "emailalertfrom":
        parsed = _nonempty(value, "no email from address specified")
    elif name == "maintenancedir":
        parsed = _nonempty(optionally_quoted(value, "maintenancedir"), "maintenance directory not specified")
        try:
            exists = os.path.isdir(parsed)
        except (OSError, ValueError):
            exists = False
        if not exists:
            warnings.append(f"maintenance directory {parsed} does not exist")
    else:  # pragma: no cover - the caller only passes known global directives
        raise Problem(f'unknown directive "{name}"')
    state.values[name], state.lines[name] = parsed, line
    return warnings


# ------------------------------------------------------------------------------------------------
# lines inside a virtual section
# ------------------------------------------------------------------------------------------------


def _checktype(value: str) -> str:
    if re.fullmatch(r"[0-9]{1,9}", value):
        return str(int(value))
    if value in CHECKTYPES:
        return value
    raise Problem(
        f'invalid checktype "{clip(value)}": checktype must be "connect", "negotiate", "on", "off", "ping", '
        '"external", "external-perl" or a number'
    )


def _scheduler(value: str) -> str:
    if re.fullmatch(r"[a-z]+", value):
        return value
    raise Problem(f'invalid scheduler "{clip(value)}", should be only lowercase letters (a-z), e.g. wrr')


def _schedflags(value: str) -> str:
    if re.fullmatch(r"[a-z0-9-]+(,[a-z0-9-]+)*", value):
        return value
    raise Problem(
        f'invalid sched-flags "{clip(value)}": expected a comma-separated list such as sh-port,sh-fallback'
    )


def _httpmethod(value: str) -> str:
    if value.upper() in ("GET", "HEAD"):
        return value.upper()
    raise Problem(f'httpmethod must be GET or HEAD (got "{clip(value)}")')


def _service(value: str) -> str:
    if value in SERVICES:
        return value
    raise Problem(f'invalid service "{clip(value)}": service must be one of {", ".join(sorted(SERVICES))}')


def _request(value: str) -> str:
    text = _nonempty(quoted(value, "request", "/index.html"), "no request string specified")
    return text if text.startswith("/") else "/" + text


BLOCK_READERS: dict[str, Callable[[str], object]] = {
    "request": _request,
    "receive": lambda v: _nonempty(quoted(v, "receive", "OK"), "invalid receive string: empty"),
    "checktype": _checktype,
    "checkcommand": lambda v: _nonempty(optionally_quoted(v, "checkcommand"), "invalid check command: empty"),
    "checkport": lambda v: val.count(v, "checkport", 1, 65535),
    "login": lambda v: _nonempty(quoted(v, "login", "user"), "invalid login string: empty"),
    "passwd": lambda v: _nonempty(quoted(v, "passwd", "secret"), "invalid password: empty"),
    "database": lambda v: _nonempty(quoted(v, "database", "name"), "invalid database: empty"),
    "secret": lambda v: _nonempty(quoted(v, "secret", "secret"), "invalid secret: empty"),
    "load": lambda v: quoted(v, "load", "x"),
    "scheduler": _scheduler,
    "persistent": lambda v: val.count(v, "persistent timeout", 1, val.MAX_PERSISTENT),
    "schedflags": _schedflags,
    "ops": lambda v: val.yes_no(v, "ops"),
    "service": _service,
    "httpmethod": _httpmethod,
    "virtualhost": lambda v: _nonempty(optionally_quoted(v, "virtualhost"), "invalid virtualhost: empty"),
    "servicename": lambda v: v,
    "comment": lambda v: v,
}


def set_block(block: BlockState, name: str, value: str | None, line: int) -> Warnings:
    """Record one directive of a virtual section."""
    if value is None:
        raise Problem(f'{name}: "=" and a value expected')
    warnings: Warnings = []
    if name in ("real", "real6"):
        if (name == "real6") != block.ipv6:
            want = "real6" if block.ipv6 else "real"
            raise Problem(f'cannot specify "{name}" here.  please use "{want}" instead')
        block.reals.append((val.real(value, block.ipv6), line, value))
        return warnings
    if name in ("fallback", "fallback6"):
        if (name == "fallback6") != block.ipv6:
            want = "fallback6" if block.ipv6 else "fallback"
            raise Problem(f'cannot specify "{name}" here.  please use "{want}" instead')
        parsed: object = val.fallback(value, block.ipv6)
        name = "fallback"
    elif name in SHARED_READERS:
        parsed = SHARED_READERS[name](value)
        if name == "checkcount":
            warnings.append(CHECKCOUNT_WARNING)
    elif name == "fallbackcommand":
        parsed = _fallbackcommand(value, in_block=True)
    elif name == "netmask":
        parsed = val.netmask(value, block.ipv6)
    elif name == "protocol":
        parsed = _protocol(block, value)
        block.protocol = parsed
    elif name == "monitorfile":
        parsed = _nonempty(optionally_quoted(value, "monitorfile"), "monitorfile: empty path")
        warnings += check_writable_file(parsed, "monitorfile")
    elif name in BLOCK_READERS:
        parsed = BLOCK_READERS[name](value)
        if name == "load":
            warnings.append("load= has no effect (ldirectord reads and ignores it too)")
            return warnings
    else:  # pragma: no cover - the caller only passes known section directives
        raise Problem(f'unknown directive "{name}"')
    block.values[name], block.lines[name] = parsed, line
    if name == "service":
        _login_defaults(block)
    return warnings


def _protocol(block: BlockState, value: str) -> str:
    if block.spec.fwmark is not None:
        if value != "fwm":
            raise Problem("protocol must be fwm if the virtual service is a fwmark (a number)")
        return value
    if value not in ("tcp", "udp"):
        raise Problem(
            f'invalid protocol "{clip(value)}": protocol must be tcp or udp if the virtual service is an '
            "address and port"
        )
    return value


def _login_defaults(block: BlockState) -> None:
    """ldirectord fills these when it reads ``service=ftp|sip`` and they are still empty then."""
    service, values = block.values["service"], block.values
    if service == "ftp" and not values.get("login"):
        values["login"] = "anonymous"
    elif service == "sip" and not values.get("login"):
        values["login"] = f"ldirectord@{block.hostname}"
    if service == "ftp" and not values.get("passwd"):
        values["passwd"] = f"ldirectord@{block.hostname}"
