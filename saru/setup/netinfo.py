"""What the kernel says about this host's network, through netlink (pyroute2): addresses, routes,
neighbours, link-layer addresses — and adding/removing an address. The I/O edge of ``saru realserver``
and ``saru doctor``; everything is read fresh on each call (these commands run once and exit).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where it is used (pyroute2 has no type information: Any to mypy)
    from pyroute2 import IPRoute


class NetError(Exception):
    """A netlink request failed; the message says which and why."""


@dataclass(frozen=True)
class Route:
    """The kernel's answer to ``ip route get ADDRESS``."""

    interface: str
    gateway: str | None
    source: str | None
    kind: str = "unicast"  # "local" when the address is this host's


def _ipr() -> IPRoute:
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise NetError(f"pyroute2 is not installed: {exc}") from exc
    return IPRoute()


def _names(ipr: IPRoute) -> dict[int, str]:
    return {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}


def addresses() -> dict[str, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
    """Interface name → its addresses with prefix length."""
    with _ipr() as ipr:
        names = _names(ipr)
        result: dict[str, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
        for msg in ipr.get_addr():
            address = msg.get("IFA_ADDRESS") or msg.get("IFA_LOCAL")
            if address is None:
                continue
            name = names.get(msg["index"], str(msg["index"]))
            result.setdefault(name, []).append(ipaddress.ip_interface(f"{address}/{msg['prefixlen']}"))
        return result


def local_interface_of(address: str) -> str | None:
    """The interface holding ``address``, if this host has it."""
    wanted = ipaddress.ip_address(address)
    for name, items in addresses().items():
        if any(item.ip == wanted for item in items):
            return name
    return None


def default_interface(family: int = 4) -> str | None:
    """The outgoing interface of the default route (main table), if there is one."""
    with _ipr() as ipr:
        names = _names(ipr)
        for route in ipr.get_default_routes(family=socket.AF_INET if family == 4 else socket.AF_INET6):
            oif = route.get("RTA_OIF")
            if oif is None:
                multipath = route.get("RTA_MULTIPATH") or []
                oif = multipath[0]["oif"] if multipath else None
            if oif is not None:
                return names.get(oif)
    return None


def route_get(address: str) -> Route | None:
    """How this host reaches ``address`` (None when it cannot)."""
    try:
        with _ipr() as ipr:
            names = _names(ipr)
            answer = ipr.route("get", dst=address)
    except Exception:
        return None
    for msg in answer:
        kinds = {1: "unicast", 2: "local", 3: "broadcast"}
        oif = msg.get("RTA_OIF")
        return Route(interface=names.get(oif, "lo" if oif is None else str(oif)), gateway=msg.get("RTA_GATEWAY"),
                     source=msg.get("RTA_PREFSRC"), kind=kinds.get(msg["type"], str(msg["type"])))
    return None


def link_mac(interface: str) -> str | None:
    with _ipr() as ipr:
        for link in ipr.get_links(ifname=interface):
            mac = link.get("IFLA_ADDRESS")
            return str(mac).lower() if mac else None
    return None


def link_exists(interface: str) -> bool:
    with _ipr() as ipr:
        return bool(ipr.link_lookup(ifname=interface))


def neighbours(interface: str | None = None) -> dict[str, str]:
    """IP address → MAC from the kernel's neighbour table (entries with a link-layer address)."""
    with _ipr() as ipr:
        names = _names(ipr)
        result: dict[str, str] = {}
        for msg in ipr.get_neighbours():
            if interface is not None and names.get(msg["ifindex"]) != interface:
                continue
            address, mac = msg.get("NDA_DST"), msg.get("NDA_LLADDR")
            if address and mac and mac != "00:00:00:00:00:00":
                result[address] = str(mac).lower()
        return result


def _change(command: str, interface: str, cidr: str) -> None:
    item = ipaddress.ip_interface(cidr)
    try:
        with _ipr() as ipr:
            index = ipr.link_lookup(ifname=interface)
            if not index:
                raise NetError(f"no interface {interface!r}")
            ipr.addr(command, index=index[0], address=str(item.ip), prefixlen=item.network.prefixlen,
                     family=socket.AF_INET if item.version == 4 else socket.AF_INET6)
    except NetError:
        raise
    except Exception as exc:
        raise NetError(f"cannot {command} {cidr} on {interface}: {exc}") from exc


def add_address(interface: str, cidr: str) -> None:
    _change("add", interface, cidr)


def del_address(interface: str, cidr: str) -> None:
    _change("del", interface, cidr)
