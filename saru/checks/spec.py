"""The effective check of one real in one virtual service: ``check_spec_for(virtual, real)``.

Resolution follows ldirectord's ``ld_setup``: an integer checktype N means "combined" (N connect
checks, then one negotiate); the port checked is ``checkport``, else the real's port, else the
service's default port; a real's own request/receive override the virtual's. Fields the checktype
does not use are reset to their defaults so that equal checks compare equal and are run once for
every virtual that shares them (only external checks see the virtual's address and port).
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields, replace
from typing import Any

from saru.config.services import default_port
from saru.model import CheckSpec, RealConfig, VirtualConfig

#: the optional fields' defaults (Any: one value per field, each of its own field's type)
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CheckSpec) if f.default is not MISSING}

#: fields that matter on the wire, per checktype (address, port, checktype, service, protocol always do)
_USED: dict[str, frozenset[str]] = {
    "connect": frozenset({"checktimeout", "checkcount"}),
    "ping": frozenset({"checktimeout", "checkcount"}),
    "external": frozenset({"checkcommand", "checktimeout", "virtual_address", "virtual_port"}),
    "external-perl": frozenset({"checkcommand", "checktimeout", "virtual_address", "virtual_port"}),
    "on": frozenset(),
    "off": frozenset(),
}
_ALWAYS = frozenset({"checktype", "service", "protocol", "address", "port"})

#: for negotiate checks of these services, the fields that matter (the rest is reset); services
#: not listed may use any field
_NEGOTIATE_TIMEOUTS = frozenset({"checktimeout", "negotiatetimeout", "connects_per_negotiate"})
_SERVICE_USED: dict[str, frozenset[str]] = {
    "smtp": _NEGOTIATE_TIMEOUTS,
    "submission": _NEGOTIATE_TIMEOUTS,
    "nntp": _NEGOTIATE_TIMEOUTS,
    "pop": _NEGOTIATE_TIMEOUTS | {"login", "passwd"},
    "pops": _NEGOTIATE_TIMEOUTS | {"login", "passwd"},
    "imap": _NEGOTIATE_TIMEOUTS | {"login", "passwd"},
    "imaps": _NEGOTIATE_TIMEOUTS | {"login", "passwd"},
    "none": frozenset(),
}


def parse_checktype(checktype: str) -> tuple[str, int]:
    """(checktype, connects_per_negotiate): any value containing digits N is "combined" N."""
    digits = re.search(r"\d+", checktype)
    if digits:
        return "combined", int(digits.group())
    return checktype, 0


def check_port(virtual: VirtualConfig, real: RealConfig) -> int:
    """checkport, else the real's port, else the service's default port (0 if none)."""
    return virtual.checkport or real.port or default_port(virtual.service)


def normalize(spec: CheckSpec) -> CheckSpec:
    """Reset the fields ``spec.checktype`` ignores, so that equivalent checks are deduplicated."""
    used = _USED.get(spec.checktype)
    if used is None:  # negotiate / combined: what matters depends on the service
        used = _SERVICE_USED.get(spec.service)
        if used is None:
            return spec
    resets = {
        name: default
        for name, default in _DEFAULTS.items()
        if name not in used and name not in _ALWAYS and getattr(spec, name) != default
    }
    return replace(spec, **resets) if resets else spec


def check_spec_for(virtual: VirtualConfig, real: RealConfig) -> CheckSpec:
    """The check Saru runs for ``real`` as configured in ``virtual``."""
    checktype, connects = parse_checktype(virtual.checktype)
    external = checktype in ("external", "external-perl")
    spec = CheckSpec(
        checktype=checktype,
        service=virtual.service,
        protocol=virtual.protocol,
        address=real.address,
        # ldirectord hands an external command the real's own port, not the checkport
        port=real.port if external else check_port(virtual, real),
        request=real.request if real.request is not None else virtual.request,
        receive=real.receive if real.receive is not None else virtual.receive,
        virtualhost=virtual.virtualhost,
        httpmethod=virtual.httpmethod.upper(),
        login=virtual.login,
        passwd=virtual.passwd,
        database=virtual.database,
        secret=virtual.secret,
        checkcommand=virtual.checkcommand,
        checktimeout=virtual.checktimeout,
        negotiatetimeout=virtual.negotiatetimeout,
        checkcount=virtual.checkcount,
        connects_per_negotiate=connects,
        virtual_address=(virtual.address or str(virtual.fwmark or "")) if external else "",
        virtual_port=virtual.port if external else 0,
    )
    return normalize(spec)
