"""Second half of the ldirectord.cf reader: resolve names, apply defaults, build the model, warn.

Defaults follow ldirectord's code (``read_config``, ``ld_setup``, ``fallback_find``), not its POD:
timeouts per the resolution order of docs/configuration.md, ``quiescent=no``, service from the port.
"""

from __future__ import annotations

import ipaddress
from typing import TypeVar

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import values as val
from saru.config.ldirectord.directives import BlockState, GlobalState
from saru.config.ldirectord.lex import Problem, clip
from saru.config.ldirectord.resolve import Resolver
from saru.config.regex_risk import RECEIVE_MATCH_LIMIT, backtracking_risk
from saru.config.services import default_port, service_for_port
from saru.model import (
    Config,
    Diagnostic,
    FallbackConfig,
    Forward,
    GlobalConfig,
    Protocol,
    RealConfig,
    ServiceKey,
    VirtualConfig,
    format_hostport,
)

DEFAULT_CHECKTIMEOUT = 5.0
DEFAULT_NEGOTIATETIMEOUT = 30.0


T = TypeVar("T")


def _first(*values: T | None) -> T:
    return next(v for v in values if v is not None)


class Builder:
    """Collects diagnostics while the lines are read, then turns the collected state into a Config."""

    def __init__(self, path: str, resolver: Resolver) -> None:
        self.path = path
        self.resolver = resolver
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def error(self, line: int, message: str) -> None:
        self.errors.append(Diagnostic(self.path, line, message))

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(Diagnostic(self.path, line, message, "warning"))

    # -- names ------------------------------------------------------------------------------------

    def address(self, host: val.Host, family: int) -> str:
        if host.kind != "name":
            return host.text
        found = self.resolver.host(host.text, family)
        try:
            addr = ipaddress.ip_address(found or "")
        except ValueError:
            addr = None
        if addr is None or addr.version != family:
            raise Problem(f'could not resolve host "{clip(host.text)}" to an IPv{family} address')
        return str(addr)

    def port(self, port: val.Port, protocol: str | None) -> int:
        if port.number is not None:
            return port.number
        assert port.name is not None
        found = self.resolver.service(port.name, protocol)
        if found is None or not 0 <= found <= 65535:
            where = f" for {protocol}" if protocol else ""
            raise Problem(
                f'could not resolve port "{clip(port.name)}" (no such service{where} in /etc/services)'
            )
        return found

    def global_fallback(self, spec: val.FallbackSpec, ipv6: bool) -> FallbackConfig:
        """A column-0 ``fallback``/``fallback6``; port 0 stands for "the virtual's port"."""
        address = self.address(spec.host, 6 if ipv6 else 4)
        port = 0
        if spec.port is not None:
            try:
                port = self.port(spec.port, "tcp")
            except Problem:
                port = self.port(spec.port, "udp")
        return FallbackConfig(address, port, _forward(spec.forward))

    # -- the whole file ---------------------------------------------------------------------------

    def build(self, gs: GlobalState, blocks: list[BlockState], last_line: int) -> Config:
        g = _global_config(gs)
        if gs.logfile_problem is not None:
            line, message = gs.logfile_problem
            if g.supervised:
                self.warn(line, f"{message} (not used: supervised=yes logs to stdout)")
            else:
                self.error(line, message)
        virtuals: list[VirtualConfig] = []
        seen: dict[ServiceKey, int] = {}
        for block in blocks:
            v = self._virtual(block, g)
            if v is None:
                continue
            if v.key in seen:
                self.error(
                    block.line, f"duplicate virtual server {v.key} (first defined on line {seen[v.key]})"
                )
                continue
            seen[v.key] = block.line
            virtuals.append(v)
        if not blocks and not self.errors:
            self.warn(last_line, "no virtual services defined: nothing will be load balanced")
        warnings = sorted(self.warnings, key=lambda d: d.line)
        if self.errors:
            raise ConfigError(sorted(self.errors, key=lambda d: d.line) + warnings)
        return Config(self.path, g, tuple(virtuals), tuple(warnings))

    # -- one virtual section ----------------------------------------------------------------------

    def _virtual(self, b: BlockState, g: GlobalConfig) -> VirtualConfig | None:
        family = 6 if b.ipv6 else 4
        vals = b.values
        spec = b.spec
        address, port = "", 0
        if spec.fwmark is None:
            assert spec.host is not None and spec.port is not None
            try:
                address = self.address(spec.host, family)
                port = self.port(spec.port, b.protocol)
            except Problem as exc:
                self.error(b.line, f"invalid address for virtual server: {exc}")
                self._reals(b, family)  # still report the section's other problems
                return None
        protocol: Protocol = "fwm" if spec.fwmark is not None else ("udp" if b.protocol == "udp" else "tcp")
        service = vals.get("service") or ("none" if spec.fwmark is not None else service_for_port(port))
        reals = self._reals(b, family)
        fallback = self._fallback(b, g, family, port)
        checktimeout = _first(
            vals.get("checktimeout"), vals.get("negotiatetimeout"), g.checktimeout, g.negotiatetimeout,
            DEFAULT_CHECKTIMEOUT,
        )  # fmt: skip
        negotiatetimeout = _first(
            vals.get("negotiatetimeout"), vals.get("checktimeout"), g.negotiatetimeout, g.checktimeout,
            DEFAULT_NEGOTIATETIMEOUT,
        )  # fmt: skip
        v = VirtualConfig(
            protocol=protocol,
            address=address,
            port=port,
            fwmark=spec.fwmark,
            ipv6=b.ipv6,
            service=service,
            checktype=vals.get("checktype", "negotiate"),
            scheduler=vals.get("scheduler", "wrr"),
            persistent=vals.get("persistent"),
            netmask=vals.get("netmask"),
            schedflags=vals.get("schedflags"),
            ops=vals.get("ops", False),
            checkport=vals.get("checkport"),
            request=vals.get("request", "/"),
            receive=vals.get("receive", ""),
            virtualhost=vals.get("virtualhost"),
            httpmethod=vals.get("httpmethod", "GET"),
            login=vals.get("login", ""),
            passwd=vals.get("passwd", ""),
            database=vals.get("database", ""),
            secret=vals.get("secret", ""),
            checkcommand=vals.get("checkcommand", "/bin/true"),
            checktimeout=checktimeout,
            negotiatetimeout=negotiatetimeout,
            checkinterval=vals.get("checkinterval", g.checkinterval),
            checkcount=vals.get("checkcount", g.checkcount),
            failurecount=vals.get("failurecount", g.failurecount),
            quiescent=vals.get("quiescent", g.quiescent),
            cleanstop=vals.get("cleanstop", g.cleanstop),
            fallback=fallback,
            fallbackcommand=vals.get("fallbackcommand", g.fallbackcommand),
            monitorfile=vals.get("monitorfile"),
            emailalert=vals.get("emailalert", g.emailalert),
            emailalertfreq=vals.get("emailalertfreq", g.emailalertfreq),
            emailalertstatus=vals.get("emailalertstatus", g.emailalertstatus),
            smtp=vals.get("smtp", g.smtp),
            servicename=vals.get("servicename"),
            comment=vals.get("comment"),
            reals=tuple(reals),
            line=b.line,
        )
        self._warn_virtual(v, b, g)
        return v

    def _reals(self, b: BlockState, family: int) -> list[RealConfig]:
        reals: list[RealConfig] = []
        seen: dict[tuple[str, int], RealConfig] = {}
        for spec, line, raw in b.reals:
            try:
                addresses = self._real_addresses(spec, family)
                port = 0 if spec.port is None else self.port(spec.port, None)
            except Problem as exc:
                self.error(line, f'invalid real server "{clip(raw)}": {exc}')
                continue
            for address in addresses:
                real = RealConfig(
                    address, port, _forward(spec.forward), spec.weight, spec.request, spec.receive,
                    spec.lower, spec.upper, line,
                )  # fmt: skip
                first = seen.get((address, port))
                if first is None:
                    seen[(address, port)] = real
                    reals.append(real)
                elif _same_real(first, real):
                    self.warn(
                        line, f"real server {real.hostport} listed twice (also on line {first.line}); ignored"
                    )
                else:
                    self.error(
                        line,
                        f"real server {real.hostport} is already defined on line {first.line} "
                        "with other settings",
                    )
        return reals

    def _real_addresses(self, spec: val.RealSpec, family: int) -> list[str]:
        first = self.address(spec.first, family)
        if spec.last is None:
            return [first]
        last = self.address(spec.last, family)
        lo, hi = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
        if lo > hi:
            raise Problem(
                f"invalid range {first}->{last}: the first address must not be greater than the last"
            )
        if hi - lo + 1 > val.MAX_RANGE:
            raise Problem(
                f"range {first}->{last} has {hi - lo + 1} addresses; at most {val.MAX_RANGE} are allowed"
            )
        return [str(ipaddress.IPv4Address(i)) for i in range(lo, hi + 1)]

    def _fallback(self, b: BlockState, g: GlobalConfig, family: int, vport: int) -> FallbackConfig | None:
        spec = b.values.get("fallback")
        if spec is not None:
            protocol = None if b.spec.fwmark is not None else b.protocol
            try:
                address = self.address(spec.host, family)
                port = vport if spec.port is None else self.port(spec.port, protocol)
            except Problem as exc:
                self.error(b.lines["fallback"], f"invalid fallback server: {exc}")
                return None
            return FallbackConfig(address, port, _forward(spec.forward))
        glob = g.fallback6 if family == 6 else g.fallback
        if glob is None:
            return None
        if b.spec.fwmark is not None:
            self.warn(
                b.line,
                f"global fallback {format_hostport(glob.address, glob.port)} applied to "
                f"firewall-mark virtual {b.spec.fwmark} (ldirectord issues a broken ipvsadm command here)",
            )
        return FallbackConfig(glob.address, glob.port or vport, glob.forward)

    # -- warnings ---------------------------------------------------------------------------------

    def _warn_virtual(self, v: VirtualConfig, b: BlockState, g: GlobalConfig) -> None:
        vals, name = b.values, v.name
        patterns = [(b.lines.get("receive", b.line), v.receive)] + [(r.line, r.receive) for r in v.reals if r.receive]
        for line, pattern in patterns:
            risk = backtracking_risk(pattern) if pattern else None
            if risk:
                self.warn(line, f"receive pattern '{clip(pattern)}' can backtrack catastrophically ({risk}): "
                          f"Saru matches it in a worker process under a {RECEIVE_MATCH_LIMIT:g} s limit, "
                          "a check that overruns fails; prefer a pattern without nested repetition")
        if v.checktype == "negotiate" and v.service == "none":
            why = (
                "firewall-mark virtuals default to service none"
                if v.fwmark is not None
                else f"port {v.port} has no default service"
            )
            self.warn(
                b.line,
                f"virtual {name} is NEVER health-checked: service is none ({why}) and checktype "
                "is negotiate, so every real server is always considered up; "
                "set service=, or checktype=connect (checktype=on silences this warning)",
            )
        if "checkinterval" in vals and not g.fork:
            self.warn(
                b.lines["checkinterval"],
                f"checkinterval in virtual {name} is honoured by Saru "
                "(ldirectord ignores it unless fork=yes)",
            )
        if v.ops and v.protocol != "udp":
            self.warn(b.lines["ops"], f"ops=yes only applies to udp virtual services; ignored for {name}")
        if v.netmask is not None and v.persistent is None:
            self.warn(b.lines["netmask"], "netmask is only used together with persistent=; ignored")
        if v.checktype in ("external", "external-perl") and "checkcommand" not in vals:
            self.warn(b.line, f"checktype={v.checktype} without checkcommand: /bin/true always succeeds")
        warned: set[int] = set()
        for r in v.reals:
            if r.line in warned:
                continue
            if v.protocol != "fwm" and r.forward != "masq" and r.port not in (0, v.port):
                warned.add(r.line)
                self.warn(
                    r.line,
                    f"real {r.hostport} uses {r.forward} forwarding: LVS sends it traffic on port {v.port} "
                    f"(only masq can change the port); port {r.port} is only used for health checks",
                )
            elif (
                v.protocol == "fwm" and r.port == 0 and v.checkport is None and default_port(v.service) == 0
                and (v.checktype == "connect" or v.checktype.isdigit())
            ):  # fmt: skip
                warned.add(r.line)
                self.warn(r.line, f"connect check of real {r.address} has no port to check: set checkport=")


def _forward(text: str) -> Forward:
    if text == "masq":
        return "masq"
    if text == "ipip":
        return "ipip"
    return "gate"


def _same_real(a: RealConfig, b: RealConfig) -> bool:
    return (a.forward, a.weight, a.request, a.receive, a.lower_threshold, a.upper_threshold) == (
        b.forward, b.weight, b.request, b.receive, b.lower_threshold, b.upper_threshold,
    )  # fmt: skip


def _global_config(gs: GlobalState) -> GlobalConfig:
    values = gs.values
    defaults = GlobalConfig()
    kwargs = {name: values[name] for name in defaults.__dataclass_fields__ if name in values}
    kwargs["execute"] = tuple(gs.execute)
    return GlobalConfig(**kwargs)
