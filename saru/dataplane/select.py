"""Choosing a data plane: by name (``proxy``, ``nft``, ``ipvs``) or ``auto``.

``auto`` picks IPVS when the kernel has it, then nftables when we may program it, then the
userspace proxy — and returns a sentence saying why, which ``saru status`` shows. Each data plane
class may offer ``available(dry_run=False) -> tuple[bool, str]`` (a classmethod) telling whether it
can run here and why not (``dry_run``: without side effects such as loading a kernel module); its
package (``saru.dataplane.ipvs``, ``.nft``, ``.proxy``) is imported only when it is considered.
``choose`` is the decision alone, nothing built: ``saru check-config`` uses it to validate against
the plane ``saru run`` would pick.
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable, Iterable, Iterator

from saru.dataplane.base import Capabilities, Dataplane, DataplaneError
from saru.model import Config, Diagnostic, FallbackConfig, NftSettings, RealConfig, VirtualConfig, format_hostport

#: name → "package:Class" (what the plane's package offers), in ``auto``'s order of preference.
PLANES: dict[str, str] = {
    "ipvs": "saru.dataplane.ipvs:IpvsDataplane",
    "nft": "saru.dataplane.nft:NftDataplane",
    "proxy": "saru.dataplane.proxy:ProxyDataplane",
}
CHOICES = ("auto", *PLANES)


def _plane_class(name: str) -> type[Dataplane] | None:
    module_name, _, class_name = PLANES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls: type[Dataplane] = getattr(module, class_name)
    return cls


def availability(name: str, dry_run: bool = False) -> tuple[bool, str]:
    """Whether the named data plane can run here, and why (not).

    ``dry_run``: decide without side effects (IPVS: report a loadable ip_vs module as available
    rather than loading it)."""
    cls = _plane_class(name)
    if cls is None:
        return False, f"the {name} data plane is not part of this build"
    probe = getattr(cls, "available", None)
    if probe is None:
        return True, "available"
    ok, why = probe(dry_run=True) if dry_run else probe()
    return bool(ok), str(why)


def choose(name: str, dry_run: bool = False) -> tuple[str, str]:
    """The data plane ``name`` means on this machine, and why: ``auto`` is the first available of
    ``PLANES``. Builds nothing; raises DataplaneError when the plane cannot run here."""
    if name == "auto":
        reasons: list[str] = []
        for candidate in PLANES:
            ok, why = availability(candidate, dry_run)
            if ok:
                skipped = f" ({'; '.join(reasons)})" if reasons else ""
                return candidate, f"auto: {candidate}{skipped}"
            reasons.append(f"{candidate}: {why}")
        raise DataplaneError("no data plane can run here: " + "; ".join(reasons))
    if name not in PLANES:
        raise DataplaneError(f"unknown data plane {name!r} (choose from {', '.join(CHOICES)})")
    ok, why = availability(name, dry_run)
    if not ok:
        raise DataplaneError(f"the {name} data plane cannot run here: {why}")
    return name, f"{name} (--dataplane {name})"


def _options(name: str, nft: NftSettings | None) -> dict[str, object]:
    """The keyword arguments the named plane is built with from saru.toml (one place: the daemon's
    plane and ``capabilities`` — what ``saru check-config`` checks against — both use it)."""
    options: dict[str, object] = {}
    if name == "nft" and nft is not None and nft.nat != "stateful":
        options["nat"] = nft.nat
    if name == "nft" and nft is not None and nft.flowtable:
        options["flowtable"] = nft.flowtable
    return options


def capabilities(name: str, nft: NftSettings | None = None) -> Capabilities:
    """What the named data plane can do, built with the ``[nft]`` settings ``nft`` as ``saru run``
    would build it (nothing is started: a plane's constructor touches nothing)."""
    if name not in PLANES:
        raise DataplaneError(f"unknown data plane {name!r} (choose from {', '.join(CHOICES)})")
    cls = _plane_class(name)
    if cls is None:
        raise DataplaneError(f"the {name} data plane is not part of this build")
    options = _options(name, nft)
    return cls(**options).capabilities if options else cls.capabilities


def select_dataplane(name: str, nft: NftSettings | None = None) -> tuple[Dataplane, str]:
    """Build the named data plane; raise DataplaneError when it cannot run here. ``nft``: the
    ``[nft]`` settings, given to the nftables plane."""
    chosen, why = choose(name)
    cls = _plane_class(chosen)
    assert cls is not None
    options = _options(chosen, nft)
    notes = [f"NAT {options['nat']}"] if "nat" in options else []
    if "flowtable" in options:
        notes.append(f"flowtable on {', '.join(nft.flowtable if nft else ())}")
    return cls(**options), "; ".join([why, *notes])


def unsupported(config: Config, caps: Capabilities) -> list[Diagnostic]:
    """What in ``config`` the data plane cannot do, one diagnostic each (empty = fine)."""
    problems: list[Diagnostic] = []

    def problem(line: int, message: str) -> None:
        problems.append(Diagnostic(config.path, line, message))

    hint = f" — {caps.notes}" if caps.notes else ""
    for v in config.virtuals:
        if v.ops and v.protocol == "udp" and not caps.ops:
            problem(v.line, f"virtual {v.name}: the {caps.name} data plane cannot do one-packet "
                            f"scheduling (ops){hint}")
        if v.protocol not in caps.protocols:
            problem(v.line, f"virtual {v.name}: the {caps.name} data plane cannot serve "
                            f"{v.protocol} virtual services")
        if v.ipv6 and not caps.ipv6:
            problem(v.line, f"virtual {v.name}: the {caps.name} data plane has no IPv6")
        if v.scheduler not in caps.schedulers:
            problem(v.line, f"virtual {v.name}: scheduler {v.scheduler!r} is not supported by the "
                            f"{caps.name} data plane (supported: {', '.join(sorted(caps.schedulers))}){hint}")
        for r in v.reals:
            if r.forward not in caps.forwards:
                problem(r.line, f"real {r.hostport}: forwarding method {r.forward!r} is not "
                                f"supported by the {caps.name} data plane{hint}")
    if caps.stateless_nat:
        problems += _stateless_problems(config)
    if caps.flowtable:
        problems += _flowtable_problems(config)
    return problems


def _flowtable_problems(config: Config) -> list[Diagnostic]:
    """``[nft] flowtable`` offloads conntrack-NAT flows: refused when no virtual is NATed (direct
    routing is forwarded at ingress and never reaches the forward hook: nothing would be offloaded)."""
    if not config.virtuals or any(r.forward == "masq" for v in config.virtuals for r in v.reals):
        return []
    first = config.virtuals[0]
    return [Diagnostic(config.path, first.line, f"virtual {first.name}: [nft] flowtable offloads NAT (masq) "
                                                "flows, and no virtual here is NATed (direct routing never "
                                                "reaches the forward hook): remove [nft] flowtable")]


#: why a stateless refusal is made (appended to each message)
_STATELESS = ' with [nft] nat = "stateless"'


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _stateless_forwarded(v: VirtualConfig) -> bool:
    """Whether stateless NAT forwards ``v`` (at least while only its masq reals, or its masq
    fallback, are in the table): the nftables plane NATs a virtual that has no remote gate real."""
    ends: list[RealConfig | FallbackConfig] = [*v.reals, *([v.fallback] if v.fallback is not None else [])]
    return any(e.forward == "masq" and not _is_loopback(e.address) for e in ends)


def _no_firewall_mark(v: VirtualConfig) -> Iterator[tuple[int, str]]:
    if v.fwmark is not None and _stateless_forwarded(v):
        yield v.line, f"virtual {v.name}: firewall-mark virtuals cannot be NATed{_STATELESS}"


def _no_persistence(v: VirtualConfig) -> Iterator[tuple[int, str]]:
    if v.persistent is not None and _stateless_forwarded(v):
        yield v.line, f"virtual {v.name}: no persistence{_STATELESS} (use scheduler sh, or nat = \"stateful\")"


def _no_local_reals(v: VirtualConfig) -> Iterator[tuple[int, str]]:
    """A real (or the fallback) on the director itself: whenever it is the only one up the virtual
    is NATed, and stateless NAT cannot forward to the director (whatever its forwarding method)."""
    for r in v.reals:
        if _is_loopback(r.address):
            yield r.line, f"real {r.hostport}: the director itself cannot be a real{_STATELESS}"
    if v.fallback is not None and _is_loopback(v.fallback.address):
        where = format_hostport(v.fallback.address, v.fallback.port)
        yield v.line, (f"virtual {v.name}: fallback {where} is the director itself, which cannot be "
                       f"forwarded to{_STATELESS} (a fallback elsewhere, or nat = \"stateful\")")


#: what stateless NAT refuses in one virtual, each rule yielding (line, message); add a rule here
#: and ``unsupported`` — ``saru run``, reload and ``saru check-config`` — applies it
STATELESS_RULES: tuple[Callable[[VirtualConfig], Iterable[tuple[int, str]]], ...] = (
    _no_firewall_mark, _no_persistence, _no_local_reals,
)


def _stateless_problems(config: Config) -> list[Diagnostic]:
    """What stateless NAT cannot serve (``saru.dataplane.nft.stateless``, whose renderer refuses
    the same as a last line of defence): ``STATELESS_RULES`` for each virtual, and a real serving
    two stateless virtuals (its replies could not be told apart)."""
    problems: list[Diagnostic] = []
    owner: dict[tuple[str, str, int], str] = {}
    for v in config.virtuals:
        for rule in STATELESS_RULES:
            problems += [Diagnostic(config.path, line, message) for line, message in rule(v)]
        for r in v.reals:
            if r.forward != "masq" or _is_loopback(r.address):
                continue
            seen = owner.setdefault((v.protocol, r.address, r.port), v.name)
            if seen != v.name:
                problems.append(Diagnostic(config.path, r.line, f"real {r.hostport}: also a real of "
                                                                f"virtual {seen}; a real may serve one "
                                                                f"virtual{_STATELESS}"))
    return problems
