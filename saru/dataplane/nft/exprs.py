"""The nft text of one rule part: matching a virtual, hashing a client, acting on a real (pure).

Hashing is per connection, never per packet: ``hash_expr`` is ``jhash`` of the client address
(``sh-port``/``mh-port``: . port; ``dh``: the destination address; persistence: the address alone)
with a fixed seed (``HASH_SEED``, so that two directors with the same table pick the same real), or
``numgen inc`` (exact round robin) for a NAT service without persistence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from saru.dataplane.netmask import parse_netmask
from saru.dataplane.nft.environment import Environment, is_local, is_loopback
from saru.dataplane.nft.names import RenderError
from saru.dataplane.nft.validation import device_name
from saru.model import Dest, ServiceKey, ServiceSettings
from saru.model.schedflags import flag_names

__all__ = [
    "HASH_SEED", "PERSIST_SET_SIZE", "dr_action", "hash_expr", "ip_keyword", "l4_keyword", "match_dr", "match_nat",
    "nat_action", "persist_key", "persist_spec", "vmap",
]


HASH_SEED = 0x53415255  # "SARU": fixed, so every director hashes alike
PERSIST_SET_SIZE = 65536


def ip_keyword(family: int) -> str:
    return "ip6" if family == 6 else "ip"


def l4_keyword(key: ServiceKey) -> str:
    return "th" if key.protocol == "fwm" else key.protocol


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def persist_key(key: ServiceKey, settings: ServiceSettings) -> str:
    v4mask, v6prefix = parse_netmask(settings.netmask)
    ip = ip_keyword(key.family)
    if key.family == 6:
        if v6prefix >= 128:
            return f"{ip} saddr"
        mask = ipaddress.IPv6Address(((1 << 128) - 1) ^ ((1 << (128 - v6prefix)) - 1))
        return f"{ip} saddr & {mask}"
    if v4mask == 0xFFFFFFFF:
        return f"{ip} saddr"
    return f"{ip} saddr & {ipaddress.IPv4Address(v4mask)}"


def persist_spec(key: ServiceKey, settings: ServiceSettings) -> str:
    kind = "ipv6_addr" if key.family == 6 else "ipv4_addr"
    return (f"type {kind}; size {PERSIST_SET_SIZE}; flags dynamic,timeout; "
            f"timeout {max(1, settings.persistent or 0)}s;")


def hash_expr(key: ServiceKey, settings: ServiceSettings, size: int, dr: bool) -> str:
    ip, l4 = ip_keyword(key.family), l4_keyword(key)
    sched = settings.scheduler
    flags = flag_names(settings.schedflags, sched)
    if sched in ("sh", "mh"):
        fields = f"{ip} saddr"
        if f"{sched}-port" in flags:
            fields += f" . {l4} sport"
    elif sched == "dh":
        fields = f"{ip} daddr"
    elif settings.persistent is not None:
        # a client's first connections may race before its persistence entry exists: hashing on
        # the client address alone sends them all to the same real
        fields = f"{ip} saddr"
    elif dr:
        fields = f"{ip} saddr . {l4} sport"
    else:
        return f"numgen inc mod {size}"
    return f"jhash {fields} mod {size} seed {HASH_SEED:#x}"


def match_nat(key: ServiceKey) -> str:
    if key.protocol == "fwm":
        nfproto = "ipv6" if key.family == 6 else "ipv4"
        return f"meta nfproto {nfproto} meta mark {key.fwmark or 0:#x}"
    return f"{ip_keyword(key.family)} daddr {key.address} {key.protocol} dport {key.port}"


def match_dr(key: ServiceKey) -> str:
    if key.protocol == "fwm":
        proto = "ip6" if key.family == 6 else "ip"
        return f"meta protocol {proto} meta mark {key.fwmark or 0:#x} meta l4proto {{ tcp, udp }}"
    return f"{ip_keyword(key.family)} daddr {key.address} {key.protocol} dport {key.port}"


def _intervals(table: Sequence[int]) -> list[tuple[int, int, int]]:
    """Runs of equal owners: (first slot, last slot, owner)."""
    runs: list[tuple[int, int, int]] = []
    for slot, owner in enumerate(table):
        if runs and runs[-1][2] == owner and runs[-1][1] == slot - 1:
            runs[-1] = (runs[-1][0], slot, owner)
        else:
            runs.append((slot, slot, owner))
    return runs


def vmap(table: Sequence[int], target: Sequence[str]) -> str:
    parts = []
    for first, last, owner in _intervals(table):
        slot = str(first) if first == last else f"{first}-{last}"
        parts.append(f"{slot} : goto {target[owner]}")
    return "{ " + ", ".join(parts) + " }"


def nat_action(key: ServiceKey, d: Dest) -> str:
    if is_loopback(d.address):
        if key.protocol == "fwm" or d.port in (0, key.port):
            return "accept"
        return f"meta l4proto {key.protocol} redirect to :{d.port}"
    ip = ip_keyword(key.family)
    if d.port == 0:
        return f"dnat {ip} to {d.address}"
    proto = "{ tcp, udp }" if key.protocol == "fwm" else key.protocol
    return f"meta l4proto {proto} dnat {ip} to {_host(d.address)}:{d.port}"


def dr_action(key: ServiceKey, d: Dest, env: Environment) -> str:
    if is_local(d, env):
        return "accept"
    device = env.devices.get(d.address)
    if device is None:
        raise RenderError(f"{key}: no network interface known for gate real {d.address}")
    return f'fwd {ip_keyword(key.family)} to {d.address} device "{device_name(device)}"'
