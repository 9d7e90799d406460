"""What the nftables renderer knows about the director: NICs, its own addresses, flow timeouts (pure).

The plane finds it (``routes.discover``, which runs ``ip``); ``is_loopback`` and ``is_local`` say
which destinations the director serves itself.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from saru.model import Dest

__all__ = ["CLOSING_TIMEOUT", "FLOW_TIMEOUT", "Environment", "address_facts", "is_local", "is_loopback"]


FLOW_TIMEOUT = {"tcp": 900, "udp": 300, "fwm": 900}  # IPVS's tcp established / udp timeouts
CLOSING_TIMEOUT = 120  # a TCP flow after FIN/RST (IPVS's fin_wait / time_wait)


@dataclass(frozen=True)
class Environment:
    """What the renderer needs to know about the director (found by the data plane).

    ``devices``: NIC through which each non-local gate destination is reached (on-link);
    ``local``: addresses of the director itself (gate destinations there are served locally);
    ``ingress``: NICs whose ingress carries direct-routing virtuals;
    ``flow_timeouts`` / ``closing_timeout``: idle seconds of a DR flow by protocol, and of a TCP flow
    after its FIN or RST (they apply to flow sets created from then on);
    ``nat``: ``stateful`` (conntrack and ``dnat``) or ``stateless`` (``stateless``: no conntrack);
    ``flowtable``: devices of the flowtable that offloads established NAT flows (``offload``; empty: none).
    """

    devices: Mapping[str, str] = field(default_factory=dict)
    local: frozenset[str] = frozenset()
    ingress: tuple[str, ...] = ()
    flow_timeouts: Mapping[str, int] = field(default_factory=lambda: dict(FLOW_TIMEOUT))
    closing_timeout: int = CLOSING_TIMEOUT
    #: how NAT virtuals are forwarded: "stateful" (conntrack + dnat) or "stateless" (``stateless``)
    nat: str = "stateful"
    flowtable: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1 << 16)
def address_facts(address: str) -> tuple[int, bool] | None:
    """(IP version, loopback?) of an address, None if it is not one (cached: the hot path of a
    10,000-real apply must not build 10,000 ``ipaddress`` objects each time)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return ip.version, ip.is_loopback


def is_loopback(address: str) -> bool:
    parsed = address_facts(address)
    return parsed is not None and parsed[1]


def is_local(dest: Dest, env: Environment) -> bool:
    """A destination on the director itself (loopback, or a gate real at one of its addresses)."""
    return is_loopback(dest.address) or (dest.forward == "gate" and dest.address in env.local)
