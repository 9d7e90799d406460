"""Choosing a data plane: ``proxy`` explicitly, or ``auto`` (IPVS, then nftables, then the proxy).

Returns the data plane together with a sentence saying why it was chosen, which ``saru status``
shows. Only the proxy exists in this build; the kernel planes are probed so that ``auto`` says
honestly why it fell back.
"""

from __future__ import annotations

import os

from saru.dataplane.base import Capabilities, Dataplane, DataplaneError
from saru.model import Config, Diagnostic

CHOICES = ("auto", "proxy")


def _kernel_has_ipvs() -> bool:
    try:
        with open("/proc/net/ip_vs"):
            return True
    except OSError:
        return False


def select_dataplane(name: str) -> tuple[Dataplane, str]:
    """Build the named data plane; raise DataplaneError when it cannot run here."""
    if name == "proxy":
        from saru.dataplane.proxy import ProxyDataplane

        return ProxyDataplane(), "userspace proxy (--dataplane proxy)"
    if name == "auto":
        from saru.dataplane.proxy import ProxyDataplane

        ipvs = "kernel has IPVS" if _kernel_has_ipvs() else "no IPVS in this kernel"
        root = "running as root" if os.geteuid() == 0 else "not root"
        reason = (f"auto: userspace proxy ({ipvs}, {root}; the IPVS and nftables data planes "
                  "are not part of this build yet)")
        return ProxyDataplane(), reason
    raise DataplaneError(f"unknown data plane {name!r} (choose from {', '.join(CHOICES)})")


def unsupported(config: Config, caps: Capabilities) -> list[Diagnostic]:
    """What in ``config`` the data plane cannot do, one diagnostic each (empty = fine)."""
    problems: list[Diagnostic] = []

    def problem(line: int, message: str) -> None:
        problems.append(Diagnostic(config.path, line, message))

    for v in config.virtuals:
        if v.protocol not in caps.protocols:
            problem(v.line, f"virtual {v.name}: the {caps.name} data plane cannot serve "
                            f"{v.protocol} virtual services")
        if v.ipv6 and not caps.ipv6:
            problem(v.line, f"virtual {v.name}: the {caps.name} data plane has no IPv6")
        if v.scheduler not in caps.schedulers:
            problem(v.line, f"virtual {v.name}: scheduler {v.scheduler!r} is not supported by the "
                            f"{caps.name} data plane (supported: {', '.join(sorted(caps.schedulers))})")
        for r in v.reals:
            if r.forward not in caps.forwards:
                problem(r.line, f"real {r.hostport}: forwarding method {r.forward!r} is not "
                                f"supported by the {caps.name} data plane")
    return problems
