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

from saru.dataplane.base import Capabilities, Dataplane, DataplaneError
from saru.model import Config, Diagnostic, NftSettings

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


def capabilities(name: str) -> Capabilities:
    """What the named data plane can do (its class's ``capabilities``; nothing is built)."""
    if name not in PLANES:
        raise DataplaneError(f"unknown data plane {name!r} (choose from {', '.join(CHOICES)})")
    cls = _plane_class(name)
    if cls is None:
        raise DataplaneError(f"the {name} data plane is not part of this build")
    return cls.capabilities


def select_dataplane(name: str, nft: NftSettings | None = None) -> tuple[Dataplane, str]:
    """Build the named data plane; raise DataplaneError when it cannot run here. ``nft``: the
    ``[nft]`` settings, given to the nftables plane."""
    chosen, why = choose(name)
    cls = _plane_class(chosen)
    assert cls is not None
    if chosen == "nft" and nft is not None and nft.nat != "stateful":
        return cls(nat=nft.nat), f"{why}; NAT {nft.nat}"  # type: ignore[call-arg]
    return cls(), why


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
    return problems


def _stateless_problems(config: Config) -> list[Diagnostic]:
    """What stateless NAT cannot serve (``saru.dataplane.nft.stateless``): checked for the virtuals
    whose reals are all masq, the ones it forwards."""
    problems: list[Diagnostic] = []
    owner: dict[tuple[str, str, int], str] = {}
    why = ' with [nft] nat = "stateless"'
    for v in config.virtuals:
        if not v.reals or any(r.forward != "masq" for r in v.reals):
            continue
        if v.fwmark is not None:
            problems.append(Diagnostic(config.path, v.line, f"virtual {v.name}: firewall-mark virtuals "
                                                            f"cannot be NATed{why}"))
        if v.persistent is not None:
            problems.append(Diagnostic(config.path, v.line, f"virtual {v.name}: no persistence{why} "
                                                            "(use scheduler sh, or nat = \"stateful\")"))
        for r in v.reals:
            seen = owner.setdefault((v.protocol, r.address, r.port), v.name)
            if seen != v.name:
                problems.append(Diagnostic(config.path, r.line, f"real {r.hostport}: also a real of "
                                                                f"virtual {seen}; a real may serve one "
                                                                f"virtual{why}"))
    return problems
