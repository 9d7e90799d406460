"""Persistence netmasks as the userspace proxy and the nftables plane read them (pure).

A service's ``netmask`` (ldirectord's ``netmask``, ipvsadm's ``-M``) groups clients for persistence:
``255.255.255.0`` is an IPv4 mask, ``64`` or ``/64`` a prefix length (IPv4 up to /32, IPv6 up to
/128). The IPVS plane has its own reading (``ipvs.codec.validation.netmask_value``), because the
kernel wants the netmask in the service's family only.
"""

from __future__ import annotations

import socket

__all__ = ["parse_netmask"]


def parse_netmask(netmask: str | None) -> tuple[int, int]:
    """(IPv4 mask, IPv6 prefix length). ``255.255.255.0`` is an IPv4 mask; ``64`` or ``/64`` a prefix."""
    if not netmask:
        return 0xFFFFFFFF, 128
    text = netmask.strip().lstrip("/")
    if "." in text:
        try:
            mask = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        except OSError:
            raise ValueError(f"invalid netmask {netmask!r}") from None
        return mask, 128
    if not text.isdigit() or not 0 <= int(text) <= 128:
        raise ValueError(f"invalid netmask {netmask!r}: expected a dotted IPv4 mask or a prefix length")
    prefix = int(text)
    v4 = (0xFFFFFFFF << (32 - min(prefix, 32))) & 0xFFFFFFFF
    return v4, prefix
