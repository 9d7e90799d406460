"""JSON view of a parsed configuration (``saru check-config --json``): keys named after the directives.

Every default is already resolved in the model, so the view is a plain projection.  Shape::

    {"path": ..., "globals": {<every GlobalConfig field>},
     "virtuals": [{"protocol", "address", "port", "fwmark", "service", "checktype", "scheduler",
                   "persistent", "netmask", "checkport", "request", "receive", "virtualhost",
                   "checktimeout", "negotiatetimeout", "checkinterval", "failurecount", "quiescent",
                   "fallback", "reals": [{"address", "port", "forward", "weight", "request", "receive",
                   "checkport", "l", "u", "line"}], ... every other VirtualConfig field ...}],
     "warnings": ["FILE:LINE: warning: ..."]}

``passwd`` and ``secret`` are shown as ``HIDDEN`` when set (``""`` when not): the view is printed,
piped and pasted into tickets, and a password has no business there (docs/security.md).

``checkport`` of a virtual is the effective port: the ``checkport=`` value if set, else the port its
first real server is checked on (the real's port, or the service's default port when the real's port is
0), else the virtual's port.  Each real also carries its own effective ``checkport``.  A real's
``request``/``receive`` are the effective strings (its own override, else the virtual's).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from saru.config.services import default_port
from saru.model import Config, FallbackConfig, GlobalConfig, RealConfig, VirtualConfig


def config_to_dict(config: Config) -> dict[str, Any]:
    """The whole configuration as JSON-serialisable data."""
    return {
        "path": config.path,
        "globals": globals_to_dict(config.globals),
        "virtuals": [virtual_to_dict(v) for v in config.virtuals],
        "warnings": [str(w) for w in config.warnings],
    }


def globals_to_dict(g: GlobalConfig) -> dict[str, Any]:
    return {f.name: _plain(getattr(g, f.name)) for f in fields(g)}


def fallback_to_dict(fb: FallbackConfig | None) -> dict[str, Any] | None:
    if fb is None:
        return None
    return {"address": fb.address, "port": fb.port, "forward": fb.forward}


def real_checkport(v: VirtualConfig, r: RealConfig) -> int:
    """The port ldirectord checks for this real (``ld_checkport``): checkport, real port, service port."""
    if v.checkport is not None:
        return v.checkport
    return r.port if r.port > 0 else default_port(v.service)


def virtual_checkport(v: VirtualConfig) -> int:
    """The single effective check port shown for a virtual (see the module docstring)."""
    if v.checkport is not None:
        return v.checkport
    if v.reals:
        return real_checkport(v, v.reals[0])
    return v.port or default_port(v.service)


def real_to_dict(v: VirtualConfig, r: RealConfig) -> dict[str, Any]:
    return {
        "address": r.address,
        "port": r.port,
        "forward": r.forward,
        "weight": r.weight,
        "request": r.request if r.request is not None else v.request,
        "receive": r.receive if r.receive is not None else v.receive,
        "checkport": real_checkport(v, r),
        "l": r.lower_threshold,
        "u": r.upper_threshold,
        "line": r.line,
    }


#: how a set password or RADIUS secret is shown
HIDDEN = "********"
#: the fields that hold one
SECRET_FIELDS = frozenset({"passwd", "secret"})


def virtual_to_dict(v: VirtualConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        f.name: _plain(getattr(v, f.name)) for f in fields(v) if f.name not in ("reals", "fallback")
    }
    for name in SECRET_FIELDS & out.keys():
        out[name] = HIDDEN if out[name] else ""
    out["checkport"] = virtual_checkport(v)
    out["fallback"] = fallback_to_dict(v.fallback)
    out["reals"] = [real_to_dict(v, r) for r in v.reals]
    return out


def _plain(value: object) -> object:
    if isinstance(value, FallbackConfig):
        return fallback_to_dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value
