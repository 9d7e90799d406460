"""Where the nftables plane's gate reals and direct-routed VIPs are: their NICs, found with ``ip``.

``discover`` runs ``ip -j route get`` for each gate real it does not know yet (exec'd without a
shell, remembered per address in ``Routes``) and ``ip -j addr`` for the NICs holding direct-routed
VIPs, and returns the renderer's ``Environment``; ``device_exists`` checks a flowtable's device.
Blocking; the plane calls it from a thread.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from saru.dataplane.base import DataplaneError
from saru.dataplane.nft.environment import Environment, is_loopback
from saru.model import Dest, ServiceKey, Table

__all__ = ["Routes", "device_exists", "discover"]


def device_exists(name: str) -> bool:
    """Whether this network namespace has a network interface of that name (for ``[nft] flowtable``)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _ip_json(*args: str) -> Any:
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise DataplaneError(f"ip {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return json.loads(proc.stdout or b"[]")


@dataclass
class Routes:
    """What ``discover`` learnt about gate reals (address → NIC, or "" for the director itself)
    and which NICs hold which VIPs; kept between applies, dropped when a transaction fails."""

    reals: dict[str, str] = field(default_factory=dict)
    ingress: dict[frozenset[str], tuple[str, ...]] = field(default_factory=dict)


def discover(
    table: Table, draining: Mapping[ServiceKey, Mapping[tuple[str, int], Dest]],
    base: Environment = Environment(), routes: Routes | None = None,
) -> Environment:
    """Devices of the gate reals and of the direct-routed VIPs (blocking: runs ``ip`` for what
    ``routes`` does not know yet)."""
    routes = routes if routes is not None else Routes()
    vips: set[str] = set()
    wanted: set[str] = set()
    for key, service in table.services.items():
        gates = [d for d in [*service.dests.values(), *draining.get(key, {}).values()]
                 if d.forward == "gate" and not is_loopback(d.address)]
        for d in gates:
            wanted.add(d.address)
            if d.address in routes.reals:
                continue
            found = _ip_json("route", "get", d.address)
            route = found[0] if found else {}
            if route.get("type") == "local" or route.get("dev") == "lo":
                routes.reals[d.address] = ""
            elif route.get("gateway"):
                raise DataplaneError(f"{key}: gate real {d.address} is behind a router "
                                     f"({route['gateway']}); direct routing needs it on the director's LAN")
            elif route.get("dev"):
                routes.reals[d.address] = str(route["dev"])
        if gates and key.address:
            vips.add(key.address)
    devices = {a: routes.reals[a] for a in wanted if routes.reals.get(a)}
    local = frozenset(a for a in wanted if routes.reals.get(a) == "")
    frozen = frozenset(vips)
    if frozen not in routes.ingress:
        found_nics: set[str] = set()
        if vips:
            for link in _ip_json("addr", "show"):
                name = link.get("ifname")
                if name and name != "lo" and any(a.get("local") in vips for a in link.get("addr_info", [])):
                    found_nics.add(str(name))
        routes.ingress[frozen] = tuple(sorted(found_nics))
    ingress = set(devices.values()) | set(routes.ingress[frozen])
    return replace(base, devices=devices, local=local, ingress=tuple(sorted(ingress)))
