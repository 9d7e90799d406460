"""What nftables cannot do, refused before anything is rendered (pure).

``check_service`` refuses a service nftables cannot serve (protocol, scheduler, ops, persistence,
netmask, fwmark, addresses and ports of the service and its reals) and anything that is not plain
data (the script is text); ``classify`` says whether a service is NAT or direct routing (gate and
masq reals cannot be mixed); ``device_name`` checks a NIC name before it goes into a script.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from saru.dataplane.netmask import parse_netmask
from saru.dataplane.nft.environment import Environment, address_facts, is_local
from saru.dataplane.nft.names import RenderError
from saru.dataplane.nft.slots import SUPPORTED_SCHEDULERS, slots
from saru.model import Dest, Service

__all__ = ["check_service", "classify", "device_name"]


def classify(service: Service, drain: Mapping[tuple[str, int], Dest], env: Environment) -> str:
    """``dr`` when the service has a (non-local) gate destination, else ``nat``."""
    forwards = {d.forward for d in service.dests.values()} | {d.forward for d in drain.values()}
    if forwards <= {"masq"}:  # the common case, without a look at each real
        return "nat"
    kinds = set()
    for dest in [*service.dests.values(), *drain.values()]:
        if is_local(dest, env):
            continue
        if dest.forward not in ("gate", "masq"):
            raise RenderError(f"{service.key}: forwarding method {dest.forward!r} of {dest.hostport} "
                              "is not supported by nftables (use gate or masq)")
        kinds.add(dest.forward)
    if kinds == {"gate", "masq"}:
        raise RenderError(f"{service.key}: nftables cannot mix gate and masq reals in one virtual service")
    return "dr" if "gate" in kinds else "nat"


def _family_of(address: str, what: str) -> int:
    parsed = address_facts(address)
    if parsed is None:
        raise RenderError(f"{what}: {address!r} is not an IP address")
    return parsed[0]


def check_service(
    service: Service, draining: Mapping[tuple[str, int], Dest], fresh: Sequence[Dest] | None = None
) -> None:
    """Refuse what nftables cannot do, and anything that is not plain data (the script is text).
    ``fresh``: the reals to look at (default: all; the others passed at an earlier build)."""
    key, settings = service.key, service.settings
    if key.protocol not in ("tcp", "udp", "fwm"):
        raise RenderError(f"{key}: unknown protocol")
    if settings.scheduler not in SUPPORTED_SCHEDULERS:
        slots(settings, [])  # raises with the explanation
    if settings.ops:
        raise RenderError(f"{key}: one-packet scheduling (ops) is not supported by nftables")
    if settings.persistent is not None and not 0 <= int(settings.persistent) < 2**31:
        raise RenderError(f"{key}: invalid persistent timeout {settings.persistent}")
    try:
        parse_netmask(settings.netmask)
    except ValueError as exc:
        raise RenderError(f"{key}: {exc}") from None
    if key.protocol == "fwm":
        if not isinstance(key.fwmark, int) or not 0 < key.fwmark < 2**32:
            raise RenderError(f"{key}: firewall-mark service without a valid mark")
    else:
        if _family_of(key.address, str(key)) != key.family:
            raise RenderError(f"{key}: the address is not IPv{key.family}")
        if not 0 < key.port < 65536:
            raise RenderError(f"{key}: port {key.port} out of range")
    family = key.family
    for dest in [*(service.dests.values() if fresh is None else fresh), *draining.values()]:
        parsed = address_facts(dest.address)
        if parsed is None or parsed[0] != family or not 0 <= dest.port < 65536 or dest.weight < 0:
            _family_of(dest.address, f"{key}: destination")
            if parsed is not None and parsed[0] != family:
                raise RenderError(f"{key}: destination {dest.hostport} is not IPv{family}")
            if not 0 <= dest.port < 65536:
                raise RenderError(f"{key}: destination port {dest.port} out of range")
            raise RenderError(f"{key}: negative weight for {dest.hostport}")


_DEVICE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")


def device_name(name: str) -> str:
    if not _DEVICE.fullmatch(name):
        raise RenderError(f"unexpected network interface name {name!r}")
    return name
